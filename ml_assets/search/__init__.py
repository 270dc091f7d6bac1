"""Search without Dagster: the corpus, embedders and their ONNX export, the pgvector tables and
the atomic switch, the SQL of every mode, fusion tuning, quality evaluation and shards.
"""
