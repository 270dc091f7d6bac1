"""The seeded energy & commodities trading catalogue: 3 tenants, 5 document types.

Tables and templates are data in scripts/corpus_phrases/; `build.build_corpus` runs one builder
per document type for each tenant, each on a random stream seeded by tenant and type.
"""
