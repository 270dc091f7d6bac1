"""Dagster side of hashed provenance: data version = sha256 of the bytes, plus the metadata."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster import DataVersion, MetadataValue, Output

from ml_assets.platform.artifacts import ArtifactRef
from ml_assets.platform.environment import environment_snapshot


def md_table(rows: list[Mapping[str, Any]]) -> str:
    """A Markdown table from a list of dicts with the same keys."""
    if not rows:
        return "_(empty)_"
    headers = list(rows[0].keys())
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[h]) for h in headers) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("|", "\\|")


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    out: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - start


PROVENANCE_FILE = "provenance.json"


def provenance_document(onnx_ref: ArtifactRef, registered_model: str, version: str) -> dict:
    """The chain of hashes from the raw data to the ONNX file, for the registry version."""
    return {
        "schema": "ml-assets.provenance.v1",
        "registered_model": registered_model,
        "version": version,
        "chain": onnx_ref.chain(),
        "artifact": {"asset": onnx_ref.asset, "sha256": onnx_ref.sha256, "format": "onnx"},
    }


# The order a person reads an asset's page in (Dagster shows metadata in the order given): a
# one-line verdict, the headline metrics, the plots, the thresholds and verdicts, the rest of
# the asset's own figures, then the provenance, the environment last. Keys name their place.
VERDICT_KEYS = ("verdict", "summary")
HEADLINE_KEYS = ("headline",)
CHECK_KEYS = ("thresholds", "checks", "verdicts", "gate_verdicts", "gates")
PROVENANCE_KEYS = (
    "sha256",
    "code_version",
    "path",
    "size_bytes",
    "upstream_data_versions",
    "lineage",
    "seeds",
    "wall_time_s",
)


def _place(key: str) -> int:
    if key in VERDICT_KEYS:
        return 0
    if key in HEADLINE_KEYS or key.startswith("headline_"):
        return 1
    if key.endswith("_plot"):
        return 2
    if key in CHECK_KEYS or key.endswith("_verdicts") or key.startswith("threshold"):
        return 3
    if key in PROVENANCE_KEYS:
        return 5
    if key == "environment":
        return 6
    return 4


def people_first(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """`metadata` in the order people read it (stable within each place): verdict, headline,
    plots (`*_plot`), thresholds and verdicts, the asset's other figures, provenance,
    environment."""
    return dict(sorted(metadata.items(), key=lambda kv: _place(kv[0])))


def hashed_output(
    ref: ArtifactRef,
    *,
    upstream: Mapping[str, ArtifactRef] | None = None,
    seeds: Mapping[str, int] | None = None,
    wall_time_s: float | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Output[ArtifactRef]:
    """An Output whose data version is the sha256 of the asset's bytes, with its metadata for
    people first and its provenance after (`people_first`)."""
    upstream = upstream or {}
    md: dict[str, Any] = {
        "sha256": MetadataValue.text(ref.sha256),
        "code_version": MetadataValue.text(ref.code_version),
        "path": MetadataValue.path(ref.path),
        "size_bytes": MetadataValue.int(ref.size_bytes),
        "upstream_data_versions": MetadataValue.json(
            {name: r.sha256 for name, r in sorted(upstream.items())}
        ),
        "lineage": MetadataValue.json(ref.lineage),
        "seeds": MetadataValue.json(dict(seeds or {})),
        "environment": MetadataValue.json(environment_snapshot()),
    }
    if wall_time_s is not None:
        md["wall_time_s"] = MetadataValue.float(round(wall_time_s, 3))
    md.update(metadata or {})
    return Output(ref, data_version=DataVersion(ref.sha256), metadata=people_first(md))
