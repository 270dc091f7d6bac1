"""Sharded embedding: each shard run embeds its own documents into a staging table.

A document's shard comes from the sha256 of its identity (tenant_id, id), not of its content:
an edit changes the content hash, and a shard keyed by it would move the document to another
shard on every edit (two shards to re-run, and a stale copy left in the first). Keyed by
identity, a document's shard never changes and a shard owns a fixed set of keys.

Layout (schema `search`, beside the index tables of `search_tables`):
- `search.<index table>_s<N>`: the staging table of one model version split into N shards,
  one row per document with its shard, content hash and embedding (no index: only the
  assembly reads it, in bulk).
- `search.shard_state`: per staging table and shard, the digest of the documents it holds
  (tenant, id, content hash), written in the same transaction as its rows. The assembly
  (`search_assemble`) builds the index only when every shard's digest matches the corpus.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ml_assets.platform.hashing import canonical_json
from ml_assets.search.corpus import Document, content_hash
from ml_assets.search.index import Embedder, embed_documents
from ml_assets.search.spec import SHARD_COUNTS
from ml_assets.search.tables import SCHEMA, connect, copy_rows, ensure_schema, table_name

SHARD_STATE = "shard_state"
# Shard runs of one staging table lock per shard (two runs of one shard never interleave);
# the key mixes the table and shard so other tables' shards never contend.
_LOCK_NAMESPACE = 0x73686172  # "shar"
DEFAULT_LOCK_WAIT_S = 600.0


class ShardBusyError(RuntimeError):
    """Another run holds this shard's lock for longer than the run may wait."""


class ShardsIncomplete(RuntimeError):
    """Some shards of a model version are missing or were embedded for another corpus."""


def check_shard_count(n: int) -> int:
    if n not in SHARD_COUNTS:
        raise ValueError(f"shards must be one of {SHARD_COUNTS}, got {n}")
    return n


def shard_keys(n: int) -> list[str]:
    """The partition keys: the hex prefix range each shard owns ("0".."f" for 16)."""
    check_shard_count(n)
    digits = 1 if n <= 16 else 2
    span = 16**digits // n
    keys = []
    for i in range(n):
        lo, hi = i * span, (i + 1) * span - 1
        keys.append(f"{lo:0{digits}x}" if span == 1 else f"{lo:0{digits}x}-{hi:0{digits}x}")
    return keys


def key_hash(tenant_id: str, doc_id: str) -> str:
    """sha256 of a document's identity: what its shard is taken from."""
    return hashlib.sha256(canonical_json([tenant_id, doc_id])).hexdigest()


def shard_of(doc: Document, n: int) -> str:
    """The key of the shard that owns `doc` among `n` shards."""
    digits = 1 if n <= 16 else 2
    prefix = int(key_hash(doc.tenant_id, doc.id)[:digits], 16)
    return shard_keys(n)[prefix * n // 16**digits]


def split(docs: Iterable[Document], n: int) -> dict[str, list[Document]]:
    """Every shard key (empty shards too) with its documents."""
    out: dict[str, list[Document]] = {k: [] for k in shard_keys(n)}
    for d in docs:
        out[shard_of(d, n)].append(d)
    return out


def shard_digest(docs: Iterable[Document]) -> str:
    """sha256 of a shard's (tenant, id, content hash) listing: what it must hold."""
    listing = sorted([d.tenant_id, d.id, content_hash(d)] for d in docs)
    return hashlib.sha256(canonical_json(listing)).hexdigest()


def staging_table(model_version: str, n: int) -> str:
    return f"{table_name(model_version)}_s{check_shard_count(n)}"


def ensure_staging(conn: psycopg.Connection, table: str, dim: int) -> None:
    ident = sql.Identifier(SCHEMA), sql.Identifier(table)
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} ("
            " tenant_id text NOT NULL, doc_id text NOT NULL, shard text NOT NULL,"
            " type text NOT NULL, title text NOT NULL, body text NOT NULL,"
            " tags text[] NOT NULL, updated_at timestamptz NOT NULL,"
            " content_hash text NOT NULL, model_version text NOT NULL,"
            " embedding vector({}) NOT NULL, PRIMARY KEY (tenant_id, doc_id))"
        ).format(*ident, sql.Literal(dim))
    )
    conn.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} (shard)").format(
            sql.Identifier(f"{table}_shard"), *ident
        )
    )
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} (staging_table text NOT NULL, shard text NOT NULL,"
            " digest text NOT NULL, documents int NOT NULL, embedded int NOT NULL,"
            " run_id text, completed_at timestamptz NOT NULL,"
            " PRIMARY KEY (staging_table, shard))"
        ).format(sql.Identifier(SCHEMA), sql.Identifier(SHARD_STATE))
    )
    conn.commit()


@dataclass(frozen=True)
class ShardStats:
    staging_table: str
    shard: str
    digest: str
    documents: int
    embedded: int
    copied: int  # unchanged documents whose vector came from the live versioned table
    deleted: int
    truncated: int
    seconds: float


def shard_lock_key(table: str, shard: str) -> int:
    """The advisory lock key that one shard's writer holds on its staging table."""
    digest = hashlib.sha256(f"{table}/{shard}".encode()).digest()
    return (_LOCK_NAMESPACE << 32 | int.from_bytes(digest[:4], "big")) & 0x7FFF_FFFF_FFFF_FFFF


def _existing(conn: psycopg.Connection, table: str, where: sql.Composable, params) -> dict:
    if not conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{table}",)).fetchone()[0]:
        return {}
    rows = conn.execute(
        sql.SQL("SELECT tenant_id, doc_id, content_hash FROM {}.{} WHERE {}").format(
            sql.Identifier(SCHEMA), sql.Identifier(table), where
        ),
        params,
    )
    return {(t, d): h for t, d, h in rows}


_COLUMNS = (
    "tenant_id", "doc_id", "shard", "type", "title", "body", "tags", "updated_at",
    "content_hash", "model_version", "embedding",
)  # fmt: skip


def embed_shard(
    dsn: str,
    docs: Sequence[Document],
    n: int,
    shard: str,
    embedder: Embedder,
    model_version: str,
    *,
    run_id: str | None = None,
    lock_wait_s: float = DEFAULT_LOCK_WAIT_S,
    log: Callable[[str], None] = lambda _msg: None,
) -> ShardStats:
    """Make shard `shard` of the staging table hold exactly its documents of `docs`.

    Only its new or changed documents are embedded; an unchanged one keeps its staged vector,
    or takes the one the model's index table already holds (an index built without shards).
    Its rows and its state are replaced in one transaction, so a retried or repeated run
    replaces exactly what this shard owns. Waits at most `lock_wait_s` for another run of the
    same shard, then raises ShardBusyError.
    """
    if not re.fullmatch(r"[0-9a-f]{64}", model_version):
        raise ValueError(f"model_version must be a sha256 (64 hex digits), got {model_version!r}")
    if shard not in shard_keys(n):
        raise ValueError(f"shard {shard!r} is not one of the {n} shards {shard_keys(n)}")
    started = time.perf_counter()
    mine = [d for d in docs if shard_of(d, n) == shard]
    digest = shard_digest(mine)
    stage = staging_table(model_version, n)
    index_table = table_name(model_version)
    with connect(dsn) as conn:
        ensure_schema(conn)
        ensure_staging(conn, stage, embedder.dim)
        try:
            conn.execute(
                sql.SQL("SET lock_timeout = {}").format(
                    sql.Literal(f"{max(1, round(lock_wait_s * 1000))}ms")
                )
            )
            conn.execute("SELECT pg_advisory_lock(%s)", (shard_lock_key(stage, shard),))
        except psycopg.errors.LockNotAvailable as exc:
            raise ShardBusyError(
                f"another run holds shard {shard} of {SCHEMA}.{stage} for more than "
                f"{lock_wait_s:g} s; let it finish (or end it) and retry this shard"
            ) from exc
        conn.execute("SET lock_timeout = 0")
        conn.commit()
        try:
            staged = _existing(conn, stage, sql.SQL("shard = %s"), (shard,))
            wanted = {(d.tenant_id, d.id): d for d in mine}
            stale = [d for k, d in wanted.items() if staged.get(k) != content_hash(d)]
            in_index = _existing(
                conn,
                index_table,
                sql.SQL("(tenant_id, doc_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"),
                ([d.tenant_id for d in stale], [d.id for d in stale]),
            )
            reuse = [d for d in stale if in_index.get((d.tenant_id, d.id)) == content_hash(d)]
            reused = {(d.tenant_id, d.id) for d in reuse}
            changed = [d for d in stale if (d.tenant_id, d.id) not in reused]
            stale_keys = {(d.tenant_id, d.id) for d in stale}
            gone = [k for k in staged if k not in wanted or k in stale_keys]
            conn.commit()
            log(
                f"shard {shard}/{n}: {len(wanted)} documents, {len(changed)} to embed, "
                f"{len(reuse)} taken from {SCHEMA}.{index_table}, {len(gone)} replaced or removed"
            )
            vectors, truncated = embed_documents(embedder, changed)
            with conn.transaction():
                _write(
                    conn, stage, shard, gone, changed, vectors, reuse, index_table, model_version
                )
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.{} VALUES (%s, %s, %s, %s, %s, %s, now())"
                        " ON CONFLICT (staging_table, shard) DO UPDATE SET digest ="
                        " EXCLUDED.digest, documents = EXCLUDED.documents, embedded ="
                        " EXCLUDED.embedded, run_id = EXCLUDED.run_id,"
                        " completed_at = EXCLUDED.completed_at"
                    ).format(sql.Identifier(SCHEMA), sql.Identifier(SHARD_STATE)),
                    (stage, shard, digest, len(wanted), len(changed), run_id),
                )
        finally:
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (shard_lock_key(stage, shard),))
            conn.commit()
    return ShardStats(
        staging_table=stage,
        shard=shard,
        digest=digest,
        documents=len(wanted),
        embedded=len(changed),
        copied=len(reuse),
        deleted=len([k for k in gone if k not in wanted]),
        truncated=truncated,
        seconds=time.perf_counter() - started,
    )


def _write(conn, stage, shard, gone, changed, vectors, reuse, index_table, model_version) -> None:
    ident = sql.Identifier(SCHEMA), sql.Identifier(stage)
    conn.execute(
        sql.SQL(
            "DELETE FROM {}.{} s USING unnest(%s::text[], %s::text[]) k(t, d)"
            " WHERE s.tenant_id = k.t AND s.doc_id = k.d AND s.shard = %s"
        ).format(*ident),
        ([k[0] for k in gone], [k[1] for k in gone], shard),
    )
    if reuse:
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.{} SELECT i.tenant_id, i.doc_id, %s, i.type, i.title, i.body,"
                " i.tags, i.updated_at, i.content_hash, i.model_version, i.embedding"
                " FROM {}.{} i JOIN unnest(%s::text[], %s::text[]) k(t, d)"
                " ON i.tenant_id = k.t AND i.doc_id = k.d"
            ).format(*ident, sql.Identifier(SCHEMA), sql.Identifier(index_table)),
            (shard, [d.tenant_id for d in reuse], [d.id for d in reuse]),
        )
    copy_rows(
        conn, stage, changed, vectors, model_version, columns=_COLUMNS, fixed={"shard": shard}
    )


def shard_status(
    conn: psycopg.Connection, docs: Sequence[Document], n: int, model_version: str
) -> dict[str, str]:
    """Each shard's state for `docs`: "complete", "stale" (another corpus) or "missing"."""
    stage = staging_table(model_version, n)
    recorded: dict[str, str] = {}
    if conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{SHARD_STATE}",)).fetchone()[0]:
        recorded = dict(
            conn.execute(
                sql.SQL("SELECT shard, digest FROM {}.{} WHERE staging_table = %s").format(
                    sql.Identifier(SCHEMA), sql.Identifier(SHARD_STATE)
                ),
                (stage,),
            ).fetchall()
        )
    status = {}
    for key, mine in split(docs, n).items():
        if key not in recorded:
            status[key] = "missing"
        else:
            status[key] = "complete" if recorded[key] == shard_digest(mine) else "stale"
    return status


def incomplete(status: dict[str, str]) -> list[str]:
    return [k for k, s in status.items() if s != "complete"]
