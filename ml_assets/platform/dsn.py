"""Postgres connection strings: one server, several databases (Dagster, MLflow, vectors)."""

from __future__ import annotations

import urllib.parse


def with_database(dsn: str, database: str, driver: str | None = None) -> str:
    """The same server DSN pointed at another database (and optionally a SQLAlchemy driver)."""
    parts = urllib.parse.urlsplit(dsn)
    scheme = "postgresql" if driver is None else f"postgresql+{driver}"
    return urllib.parse.urlunsplit((scheme, parts.netloc, f"/{database}", parts.query, ""))
