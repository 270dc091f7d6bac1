"""The curve forecaster: next settlement of a forward-curve point (regression)."""
