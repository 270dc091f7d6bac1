"""The vector store's Postgres (pgvector), from an env-configured DSN."""

from __future__ import annotations

import psycopg
from dagster import ConfigurableResource
from pydantic import Field

from ml_assets.search.index import connect


class PostgresResource(ConfigurableResource):
    """A Postgres with pgvector; the DSN comes from ML_VECTOR_PG_DSN (secrets stay in env)."""

    dsn: str = Field(description="libpq DSN of the vector-store database (ML_VECTOR_PG_DSN).")

    def connect(self) -> psycopg.Connection:
        try:
            return connect(self.dsn)
        except psycopg.OperationalError as exc:
            raise RuntimeError(
                f"cannot reach the vector store's Postgres ({exc}); check ML_VECTOR_PG_DSN and "
                "that the server is running (`ml-assets up` starts the embedded one)"
            ) from exc
