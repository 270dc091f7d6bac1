"""Production feedback in Dagster: drift of the logged traffic against the training split."""
