"""The generators of the shipped labelled search sets (ml_assets/data/), run by scripts/build_*.py.

`trading` writes the seeded energy & commodities catalogue (search_corpus.jsonl); `docstrings`
writes the Python standard-library docstring passages and their labelled queries (docs_*.jsonl).
"""
