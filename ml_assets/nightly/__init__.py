"""The nightly: validation and smoke runs as daily-partitioned assets over the catalog, their
schedules, records and verdicts.
"""
