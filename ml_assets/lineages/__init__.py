"""The defs folder: one subfolder per declared lineage (a defs.yaml plus its domain code)."""
