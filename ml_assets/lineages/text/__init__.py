"""The platform's text search index, declared in defs.yaml (a SearchIndex component)."""
