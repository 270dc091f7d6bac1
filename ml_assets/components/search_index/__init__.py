"""`SearchIndex`: the component and what it builds: corpus, embedder export, index (one table or
shards), quality report, reindex sensors and the search job.
"""
