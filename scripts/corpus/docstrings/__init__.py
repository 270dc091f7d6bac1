"""The second labelled set: Python standard-library docstrings, chunked into passages.

`modules` lists the documented modules and their tenants, `introspect` walks each one's public
API, `chunking` cuts long docstrings, `passages` builds the corpus, `labels` holds the labelled
queries and `queries` resolves them to passage ids.
"""
