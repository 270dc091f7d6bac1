"""The search corpus and its labelled queries: typed records, strict loaders, content hashes."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

DOC_TYPES: tuple[str, ...] = ("instrument", "curve", "scenario", "backtest", "document")
SPLITS: tuple[str, ...] = ("tune", "eval")
REQUIRED: tuple[str, ...] = ("id", "tenant_id", "type", "title", "text", "tags", "updated_at")
QUERY_FIELDS: tuple[str, ...] = ("id", "tenant_id", "query", "relevant_ids", "split")
SUFFIXES: tuple[str, ...] = (".jsonl", ".parquet")


class CorpusError(ValueError):
    """A corpus or query file that cannot be used; the message says where and what to fix."""


@dataclass(frozen=True)
class Document:
    id: str
    tenant_id: str
    type: str
    title: str
    text: str
    tags: tuple[str, ...]
    updated_at: str


@dataclass(frozen=True)
class CorpusLoad:
    documents: tuple[Document, ...]
    skipped: dict[str, int]
    source_sha256: str
    corpus_sha256: str


@dataclass(frozen=True)
class LabelledQuery:
    id: str
    tenant_id: str
    query: str
    relevant_ids: tuple[str, ...]
    split: str


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def content_hash(doc: Document) -> str:
    """sha256 of what a reader sees (not the id or updated_at): a touch does not reindex."""
    payload = {
        "tenant_id": doc.tenant_id,
        "type": doc.type,
        "title": doc.title,
        "text": doc.text,
        "tags": sorted(doc.tags),
    }
    return hashlib.sha256(_canonical(payload)).hexdigest()


def corpus_hash(documents: Collection[Document]) -> str:
    """sha256 of the (id, content_hash) listing sorted by id: independent of file format."""
    listing = sorted([d.id, content_hash(d)] for d in documents)
    return hashlib.sha256(_canonical(listing)).hexdigest()


def _data_file(name: str) -> Path:
    # importlib.resources finds the file wherever the package is installed (not only in-repo).
    return Path(str(resources.files("ml_assets").joinpath("data", name)))


# The labelled sets shipped with the package: name -> (corpus, queries, tenant list) files.
# "search": the generated energy-trading catalogue; "docs": passages of Python standard-library
# docstrings (scripts/build_docs_corpus.py), real text nobody here wrote.
DATASETS: dict[str, tuple[str, str, str]] = {
    "search": ("search_corpus.jsonl", "search_queries.jsonl", "tenants.json"),
    "docs": ("docs_corpus.jsonl", "docs_queries.jsonl", "docs_tenants.json"),
}


def _dataset_files(dataset: str) -> tuple[str, str, str]:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise CorpusError(
            f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}"
        ) from None


def default_corpus_path(dataset: str = "search") -> Path:
    """The corpus shipped inside the package (`dataset` names one of DATASETS)."""
    return _data_file(_dataset_files(dataset)[0])


def default_queries_path(dataset: str = "search") -> Path:
    """The labelled query set shipped inside the package (`dataset` names one of DATASETS)."""
    return _data_file(_dataset_files(dataset)[1])


def known_tenants(dataset: str = "search") -> tuple[str, ...]:
    """The tenant ids listed in the dataset's packaged tenant file (tenants.json by default)."""
    path = _data_file(_dataset_files(dataset)[2])
    try:
        tenants = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CorpusError(f"cannot read the tenant list {path}: {exc}") from exc
    if not isinstance(tenants, list) or not all(isinstance(t, str) and t for t in tenants):
        raise CorpusError(f"{path} must be a JSON list of non-empty tenant id strings")
    if len(set(tenants)) != len(tenants):
        raise CorpusError(f"{path} lists a tenant id more than once")
    return tuple(tenants)


def _read_bytes(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise CorpusError(f"{what} file not found: {path}; pass the path of an existing file")
    data = path.read_bytes()
    if not data.strip():
        raise CorpusError(f"{what} file {path} is empty; it needs at least one record")
    return data


def _jsonl_rows(path: Path, data: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    for n, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(
                f"{where}: malformed JSON ({exc.msg} at column {exc.colno}); fix or remove the line"
            ) from exc
        if not isinstance(row, dict):
            raise CorpusError(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield where, row


def _parquet_rows(path: Path, data: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise CorpusError(f"{path} is not a readable Parquet file: {exc}") from exc
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise CorpusError(f"{path}: missing required column(s) {', '.join(missing)}")
    if table.num_rows == 0:
        raise CorpusError(f"corpus file {path} is empty; it needs at least one record")
    for n, row in enumerate(table.to_pylist(), start=1):
        yield f"{path}, row {n}", row


def _tags(value: Any, where: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(t, str) for t in items):
        raise CorpusError(f"{where}: 'tags' must be a list of strings or a comma-separated string")
    return tuple(t.strip() for t in items if t.strip())


def _timestamp(value: Any, where: str) -> str:
    if isinstance(value, datetime):
        # Parquet may hold real timestamps; naive ones are taken as UTC, like the JSONL strings.
        utc = value.astimezone(UTC) if value.tzinfo else value
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise CorpusError(f"{where}: 'updated_at' must be an ISO-8601 string or a timestamp")


def _document(row: dict[str, Any], where: str) -> Document:
    missing = [f for f in REQUIRED if row.get(f) is None]
    if missing:
        ident = f" (id {row['id']!r})" if isinstance(row.get("id"), str) else ""
        raise CorpusError(f"{where}{ident}: missing required field(s) {', '.join(missing)}")
    for f in ("id", "tenant_id", "type", "title", "text"):
        if not isinstance(row[f], str):
            raise CorpusError(f"{where}: field {f!r} must be a string, got {type(row[f]).__name__}")
    for f in ("id", "tenant_id", "title"):
        if not row[f].strip():
            raise CorpusError(f"{where}: field {f!r} is empty; give it a value")
    return Document(
        id=row["id"].strip(),
        tenant_id=row["tenant_id"].strip(),
        type=row["type"].strip(),
        title=row["title"].strip(),
        text=row["text"].strip(),
        tags=_tags(row["tags"], where),
        updated_at=_timestamp(row["updated_at"], where),
    )


def load_corpus(
    path: str | Path,
    known_tenants: Collection[str] | None = None,
    tenant_hint: str = "fix the row or declare the tenant in the index's defs.yaml",
) -> CorpusLoad:
    """Load a .jsonl or .parquet corpus; raise CorpusError on fatal problems, skip empty texts.
    A row of a tenant not in `known_tenants` is refused; `tenant_hint` says what to do."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise CorpusError(
            f"unsupported corpus format {path.suffix or '(no suffix)'!r} for {path}; "
            f"use one of {', '.join(SUFFIXES)}"
        )
    data = _read_bytes(path, "corpus")
    rows = _parquet_rows if path.suffix.lower() == ".parquet" else _jsonl_rows
    seen: dict[str, str] = {}
    docs: list[Document] = []
    skipped: Counter[str] = Counter()
    for where, row in rows(path, data):
        doc = _document(row, where)
        if doc.type not in DOC_TYPES:
            raise CorpusError(
                f"{where} (id {doc.id!r}): unknown type {doc.type!r}; "
                f"expected one of {', '.join(DOC_TYPES)}"
            )
        if known_tenants is not None and doc.tenant_id not in known_tenants:
            raise CorpusError(
                f"{where} (id {doc.id!r}): unknown tenant {doc.tenant_id!r}; known tenants are "
                f"{', '.join(sorted(known_tenants))}; {tenant_hint}"
            )
        if doc.id in seen:
            raise CorpusError(
                f"duplicate id {doc.id!r} at {where}, first seen at {seen[doc.id]}; "
                "ids must be unique"
            )
        seen[doc.id] = where
        if not doc.text:
            skipped["empty_text"] += 1
            continue
        docs.append(doc)
    if not docs:
        raise CorpusError(f"{path} has no usable documents (skipped: {dict(skipped)})")
    docs.sort(key=lambda d: d.id)
    return CorpusLoad(
        documents=tuple(docs),
        skipped=dict(skipped),
        source_sha256=hashlib.sha256(data).hexdigest(),
        corpus_sha256=corpus_hash(docs),
    )


def _query(row: dict[str, Any], where: str) -> LabelledQuery:
    missing = [f for f in QUERY_FIELDS if row.get(f) is None]
    if missing:
        raise CorpusError(f"{where}: missing required field(s) {', '.join(missing)}")
    for f in ("id", "tenant_id", "query", "split"):
        if not isinstance(row[f], str) or not row[f].strip():
            raise CorpusError(f"{where}: field {f!r} must be a non-empty string")
    if row["split"] not in SPLITS:
        raise CorpusError(
            f"{where} (query {row['id']!r}): unknown split {row['split']!r}; "
            f"use one of {', '.join(SPLITS)}"
        )
    rel = row["relevant_ids"]
    if not isinstance(rel, list) or not rel or not all(isinstance(r, str) and r for r in rel):
        raise CorpusError(
            f"{where} (query {row['id']!r}): 'relevant_ids' must be a non-empty list of doc ids"
        )
    return LabelledQuery(
        id=row["id"].strip(),
        tenant_id=row["tenant_id"].strip(),
        query=row["query"].strip(),
        relevant_ids=tuple(dict.fromkeys(rel)),
        split=row["split"],
    )


def load_queries(
    path: str | Path | None = None, dataset: str = "search"
) -> tuple[LabelledQuery, ...]:
    """Load labelled queries (JSONL); defaults to the `dataset` set shipped with the package."""
    path = Path(path) if path is not None else default_queries_path(dataset)
    data = _read_bytes(path, "query")
    queries: list[LabelledQuery] = []
    seen: set[str] = set()
    for where, row in _jsonl_rows(path, data):
        q = _query(row, where)
        if q.id in seen:
            raise CorpusError(f"{where}: duplicate query id {q.id!r}; ids must be unique")
        seen.add(q.id)
        queries.append(q)
    return tuple(queries)
