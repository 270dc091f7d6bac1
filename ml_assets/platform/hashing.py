"""Canonical serialisation and sha256 helpers: same content, same bytes, same hash."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_json(obj: Any) -> bytes:
    """JSON with sorted keys and fixed separators, so equal objects give equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """Parquet with fixed writer settings and no index; the file holds no timestamps."""
    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        compression_level=3,
        use_dictionary=True,
        write_statistics=True,
        version="2.6",
        data_page_version="1.0",
        row_group_size=1 << 20,
    )
    return sink.getvalue()


def read_parquet_bytes(data: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data)).to_pandas()


def deterministic_zip(members: dict[str, bytes]) -> bytes:
    """A zip archive with sorted entries and a fixed timestamp."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            dst.writestr(info, members[name])
    return out.getvalue()


def _without_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_ids(v) for k, v in node.items() if k != "__id__"}
    if isinstance(node, list):
        return [_without_ids(v) for v in node]
    return node


def _set_elements(node: dict) -> list | None:
    """The element list of a skops set or frozenset node (in the set's iteration order)."""
    if node.get("__loader__") == "SetNode":
        return node.get("content")
    if node.get("__class__") == "frozenset" and node.get("__module__") == "builtins":
        try:
            return node["content"]["content"][0]["content"]
        except (KeyError, IndexError, TypeError):
            return None
    return None


def canonical_skops(data: bytes) -> bytes:
    """Make a skops archive byte-stable across processes.

    skops names nodes and array files after `id(obj)` (memory addresses), stamps zip entries
    with the wall clock and writes a set's elements in its iteration order (which follows
    Python's string-hash seed); ids are renumbered in traversal order, timestamps fixed and set
    elements sorted, which keeps the object graph (shared references included) as it was.
    """
    src = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(src.read("schema.json"))
    mapping: dict[int, int] = {}

    def new_id(old: int) -> int:
        return mapping.setdefault(old, len(mapping) + 1)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            elements = _set_elements(node)
            if isinstance(elements, list):
                elements.sort(key=lambda e: json.dumps(_without_ids(e), sort_keys=True))
            out = {}
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int):
                    out[key] = new_id(value)
                elif key == "file" and isinstance(value, str) and value.endswith(".npy"):
                    out[key] = f"{new_id(int(value[:-4]))}.npy"
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    members = {"schema.json": json.dumps(walk(schema), indent=2).encode()}
    for name in src.namelist():
        if name.endswith(".npy"):
            members[f"{new_id(int(name[:-4]))}.npy"] = src.read(name)
        elif name != "schema.json":
            members[name] = src.read(name)
    return deterministic_zip(members)
