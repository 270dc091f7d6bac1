"""A bounded cache of text embeddings, keyed by (embedder sha256, text): a repeated `/search`
query or `/embed` text skips the model. The service drops it whenever it installs a release
(a reload), and the key carries the embedder's hash, so a vector never outlives its model.

Bounded by entries and by bytes (vector + text), least recently used out first; a text longer
than `max_text_chars` is embedded but not kept. Thread-safe: the sync APIs share it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_ENTRIES = 20_000
DEFAULT_MB = 64
DEFAULT_MAX_TEXT_CHARS = 2_000


@dataclass
class Lookup:
    """One request's texts against the cache: rows found, and where each new text goes."""

    sha256: str
    rows: list[tuple[np.ndarray, bool] | None]
    missing: dict[str, list[int]]  # text -> its positions in the request
    hits: int

    @property
    def new_texts(self) -> list[str]:
        return list(self.missing)

    @property
    def misses(self) -> int:
        return len(self.rows) - self.hits


class EmbeddingCache:
    def __init__(
        self,
        max_entries: int = DEFAULT_ENTRIES,
        max_bytes: int = DEFAULT_MB << 20,
        max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
    ) -> None:
        self.max_entries, self.max_bytes, self.max_text_chars = (
            max_entries,
            max_bytes,
            max_text_chars,
        )
        self._items: OrderedDict[tuple[str, str], tuple[np.ndarray, bool]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @classmethod
    def from_env(cls) -> EmbeddingCache:
        """ML_SERVING_EMBED_CACHE_ENTRIES (0: off), ML_SERVING_EMBED_CACHE_MB."""
        return cls(
            int(os.environ.get("ML_SERVING_EMBED_CACHE_ENTRIES", DEFAULT_ENTRIES)),
            int(os.environ.get("ML_SERVING_EMBED_CACHE_MB", DEFAULT_MB)) << 20,
        )

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def _size(key: tuple[str, str], vector: np.ndarray) -> int:
        return vector.nbytes + len(key[1]) * 2 + 100  # text as stored, plus per-entry overhead

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def embed(
        self, embedder: Any, sha256: str, texts: Sequence[str]
    ) -> tuple[np.ndarray, list[bool], int]:
        """(vectors, truncated per text, hits): cached rows from here, the rest from one call
        of `embedder.embed_flagged` on the texts not cached (each distinct text once)."""
        lookup = self.lookup(sha256, texts)
        if lookup.missing:
            self.fill(lookup, *embedder.embed_flagged(lookup.new_texts))
        return (*self.assemble(lookup), lookup.hits)

    def lookup(self, sha256: str, texts: Sequence[str]) -> Lookup:
        """The cached rows of `texts`, and the distinct texts still to embed."""
        rows: list[tuple[np.ndarray, bool] | None] = [None] * len(texts)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                found = self._items.get((sha256, text))
                if found is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._items.move_to_end((sha256, text))
                    rows[i] = found
            hits = len(texts) - sum(len(v) for v in missing.values())
            self.hits += hits
            self.misses += len(texts) - hits
        return Lookup(sha256, rows, missing, hits)

    def fill(self, lookup: Lookup, vectors: np.ndarray, truncated: Sequence[bool]) -> None:
        """Put the embeddings of `lookup.new_texts` into its rows, and keep them."""
        with self._lock:
            for text, vector, cut in zip(lookup.new_texts, vectors, truncated, strict=True):
                row = (vector.copy(), bool(cut))
                for i in lookup.missing[text]:
                    lookup.rows[i] = row
                if self.max_entries > 0 and len(text) <= self.max_text_chars:
                    self._put((lookup.sha256, text), row)

    @staticmethod
    def assemble(lookup: Lookup) -> tuple[np.ndarray, list[bool]]:
        rows = lookup.rows
        if any(r is None for r in rows):
            raise RuntimeError("assemble() before fill(): some texts have no embedding")
        out = np.stack([r[0] for r in rows]) if rows else np.empty((0, 0), np.float32)
        return out, [r[1] for r in rows]

    def _put(self, key: tuple[str, str], row: tuple[np.ndarray, bool]) -> None:
        if key in self._items:
            return
        self._items[key] = row
        self._bytes += self._size(key, row[0])
        while self._items and (len(self._items) > self.max_entries or self._bytes > self.max_bytes):
            old_key, (old_vec, _) = self._items.popitem(last=False)
            self._bytes -= self._size(old_key, old_vec)


class CachedEmbedder:
    """What ml_assets.search.query calls (`dim`, `embed`), through the cache."""

    def __init__(self, cache: EmbeddingCache, embedder: Any, sha256: str, on_lookup: Any) -> None:
        self._cache, self._embedder, self._sha256 = cache, embedder, sha256
        self._on_lookup = on_lookup  # (hits, misses) -> None: the service's metrics

    @property
    def dim(self) -> int:
        return self._embedder.dim

    def embed_flagged(self, texts: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        vectors, truncated, hits = self._cache.embed(self._embedder, self._sha256, texts)
        self._on_lookup(hits, len(texts) - hits)
        return vectors, truncated

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_flagged(texts)[0]
