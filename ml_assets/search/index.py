"""The pgvector index: one table per embedding-model version, a live view switched atomically.

The tables, their statistics and their DDL are in `search.tables`; the switch of the live view
(one transaction, bounded lock waits) in `search.switch`; the one writer of an index table in
`search.writer`. This module embeds and reindexes: only new or changed documents are embedded,
a new model version is built beside the live table; the writer says how the switch waits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from ml_assets.search.corpus import Document
from ml_assets.search.switch import (
    SWITCH_ATTEMPTS,
    SWITCH_BACKOFF_S,
    SWITCH_LOCK_TIMEOUT_S,
    IndexLockTimeout,
    live_index,
    lock_holders,
)
from ml_assets.search.tables import (
    connect,
    copy_rows,
    table_name,
)
from ml_assets.search.writer import (
    REINDEX_LOCK_KEY,
    IndexStats,
    ReindexBusyError,
    Rows,
    Source,
    index_documents,
)

__all__ = [
    "REINDEX_LOCK_KEY",
    "Embedder",
    "IndexLockTimeout",
    "IndexStats",
    "ReindexBusyError",
    "Rows",
    "Source",
    "connect",
    "embed_documents",
    "embedding_text",
    "live_index",
    "lock_holders",
    "reindex",
    "index_documents",
    "table_name",
]


class Embedder(Protocol):
    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def embedding_text(doc: Document) -> str:
    return f"{doc.title}. {doc.text}"


def embed_documents(embedder: Embedder, docs: Sequence[Document]) -> tuple[np.ndarray, int]:
    """Embed the documents' text: (float32 vectors, how many texts were truncated)."""
    if not docs:
        return np.zeros((0, embedder.dim), dtype=np.float32), 0
    vectors = embedder.embed([embedding_text(d) for d in docs])
    truncated = int(getattr(embedder, "last_truncated", 0))
    if vectors.shape != (len(docs), embedder.dim) or not np.all(np.isfinite(vectors)):
        raise ValueError(
            f"the embedder returned {vectors.shape} (finite: {np.all(np.isfinite(vectors))}); "
            f"expected ({len(docs)}, {embedder.dim})"
        )
    return vectors.astype(np.float32), truncated


def reindex(
    dsn: str,
    docs: Sequence[Document],
    embedder: Embedder,
    model_version: str,
    corpus_sha256: str,
    log: Callable[[str], None] = lambda _msg: None,
    *,
    lock_timeout_s: float = SWITCH_LOCK_TIMEOUT_S,
    switch_attempts: int = SWITCH_ATTEMPTS,
    switch_backoff_s: float = SWITCH_BACKOFF_S,
) -> IndexStats:
    """Bring the index for `model_version` in line with `docs` and make it live.

    The table of the model version is built beside the live one when it does not exist yet
    (a full build, switched to in one transaction), or updated in place when it does: only
    documents whose content hash changed are embedded, removed ones are deleted, all in one
    transaction. Each change appends a `search.index.updated.v1` event in that transaction; a
    reindex that changes nothing appends none. The switch waits at most `lock_timeout_s` per
    attempt, `switch_attempts` times (backoff doubling from `switch_backoff_s`), then raises
    IndexLockTimeout with the live index unchanged. Raises ReindexBusyError while another
    reindex runs.
    """
    if not re.fullmatch(r"[0-9a-f]{64}", model_version):
        raise ValueError(
            f"model_version must be the embedder's sha256 (64 hex digits), got {model_version!r}"
        )

    def embedded(todo: Sequence[Document]) -> Rows:
        vectors, truncated = embed_documents(embedder, todo)
        return Rows(
            lambda conn, table: copy_rows(conn, table, todo, vectors, model_version),
            embedded=len(todo),
            truncated=truncated,
        )

    return index_documents(
        dsn,
        docs,
        model_version,
        corpus_sha256,
        lambda _conn: Source(embedder.dim, "the embedder", embedded),
        log,
        lock_timeout_s=lock_timeout_s,
        switch_attempts=switch_attempts,
        switch_backoff_s=switch_backoff_s,
    )
