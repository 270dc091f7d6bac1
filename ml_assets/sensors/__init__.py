"""Sensors and schedules of the code location (promotion and reindex sensors live here)."""
