"""The platform on one machine: the embedded stack, `ml-assets up` and the CLI, the local
environment, the serving process, progress lines, status and the first sharded backfill.
"""
