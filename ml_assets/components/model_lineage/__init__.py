"""`ModelLineage`: the component and what it builds: its assets, checks, MLflow tracking, export,
report, monitoring block and scaffolder.
"""
