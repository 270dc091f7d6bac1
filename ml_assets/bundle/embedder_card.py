"""The text embedder's card, one per registered version, gathered from the platform's records.

Like a lineage's card (ml_assets/bundle/model_cards.py), every figure comes from a file or
record the gate or the bundle relied on: the export's manifest (package, dimension, pooling),
the export's materialization and checks (parity and the int8 retrieval guard, each verdict with
its run id), the search quality report the bundle serves search with (by sha256 and run id),
the index it judged, and the promotion events.
"""

from __future__ import annotations

import json
from typing import Any

from ml_assets.platform.artifacts import ContentStore
from ml_assets.platform.model_card import EMBEDDER_CARD_SCHEMA
from ml_assets.platform.serving_bundle import ModelEntry
from ml_assets.platform.validation_records import (
    EMBEDDER_ASSET as EXPORT,
)
from ml_assets.platform.validation_records import (
    SEARCH_CHECK,
    ValidationRecords,
)

INDEX = "embedding_index"
REPORT = SEARCH_CHECK[0]
INDEX_FIGURES = ("dagster/row_count", "mode", "embedded", "table", "model_sha256")


class EmbedderCardError(RuntimeError):
    """A record the embedder's card needs is missing: the card is never filled with guesses."""


def _export(entry: ModelEntry, records: ValidationRecords, content: ContentStore) -> tuple:
    facts = entry.gate.evidence if entry.gate is not None else {}
    sha, run_id = facts.get("export_sha256"), facts.get("export_run_id")
    if not sha or not run_id:
        raise EmbedderCardError(f"{entry.label}: the gate record names no {EXPORT}")
    mat = next(
        (
            m
            for m in records.materializations(EXPORT)
            if m.data_version == sha and m.run_id == run_id
        ),
        None,
    )
    if mat is None:
        raise EmbedderCardError(f"no materialization of {EXPORT} {sha[:12]} in run {run_id}")
    manifest = json.loads(content.ref_for(EXPORT, sha, ".manifest.json").read_verified())
    return sha, run_id, manifest, mat


def _index(records: ValidationRecords, sha256: str) -> dict[str, Any]:
    """The index the report judged: its figures from its own materialization, if recorded."""
    mat = next((m for m in records.materializations(INDEX) if m.data_version == sha256), None)
    if mat is None:
        return {"sha256": sha256, "recorded": False}
    return {
        "sha256": sha256,
        "recorded": True,
        "run_id": mat.run_id,
        **{k.removeprefix("dagster/"): mat.metadata[k] for k in INDEX_FIGURES if k in mat.metadata},
    }


def search_section(search: dict[str, Any], content: ContentStore) -> dict[str, Any]:
    """What search is served with: the quality report's figures per labelled set, or why not."""
    if not search.get("enabled"):
        return {"served": False, "reason": search.get("reason")}
    sha = search["report_sha256"]
    report = json.loads(content.ref_for(REPORT, sha, ".json").read_verified())
    return {
        "served": True,
        "report_sha256": sha,
        "report_run_id": search["report_run_id"],
        "verdict": {k: search["verdict"].get(k) for k in ("check", "passed", "run_id")},
        "index_sha256": report["index"],
        "fusion": report["fusion"],
        "sets": {
            name: {
                **{m: v[m] for m in ("lexical", "vector", "hybrid", "best_single")},
                "passed": v["passed"],
                "cross_tenant_hits": v["cross_tenant_hits"],
                "queries": report["sets"][name]["queries"],
                "min_hnsw_recall_at_10": min(report["sets"][name]["hnsw_recall_at_10"].values()),
            }
            for name, v in sorted(report["verdicts"].items())
        },
    }


def embedder_card(
    entry: ModelEntry,
    records: ValidationRecords,
    content: ContentStore,
    promotions: list[dict[str, Any]],
    search: dict[str, Any],
) -> dict[str, Any]:
    """One embedder version's card as JSON (its Markdown: ml_assets/platform/model_card.py);
    `promotions`: its moves of the production alias; `search`: the bundle's search evidence."""
    sha, run_id, manifest, mat = _export(entry, records, content)
    variant = entry.info.get("variant")
    served = manifest["variants"].get(variant, {})
    if served.get("sha256") != entry.files.get("model.onnx"):
        raise EmbedderCardError(
            f"{entry.label}: {EXPORT} {sha[:12]} has no {variant} variant with the served bytes"
        )
    section = search_section(search, content)
    index = _index(records, section["index_sha256"]) if section["served"] else None
    return {
        "schema": EMBEDDER_CARD_SCHEMA,
        "model": {
            "registered_model": entry.registered_model,
            "version": entry.version,
            "variant": variant,
            "mlflow_run_id": entry.info.get("mlflow_run_id"),
            "onnx_sha256": entry.files.get("model.onnx"),
            "tokenizer_sha256": entry.files.get("tokenizer.json"),
            "size_bytes": served.get("size_bytes"),
        },
        "what": {
            "base_model": manifest["base_model"],
            "dim": manifest["dim"],
            "max_length": manifest["max_length"],
            "pooling": manifest["pooling"],
        },
        "export": {
            "sha256": sha,
            "run_id": run_id,
            "code_version": mat.metadata.get("code_version"),
            "parity": dict(mat.metadata.get("parity") or {}),
            "verdicts": [
                {k: getattr(v, k) for k in ("asset", "check", "passed", "run_id", "evaluation_id")}
                for v in (entry.gate.verdicts if entry.gate is not None else ())
            ],
        },
        "search": section,
        "index": index,
        "promotion_history": promotions,
        "environment": dict(mat.metadata.get("environment") or {}),
    }
