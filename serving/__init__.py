"""The BentoML service that serves the promoted models (no torch, no scikit-learn)."""
