"""Each served lineage version's model card, gathered from its YAML and the platform's records.

The serving bundle calls `attach_cards` once the gate has approved its entries: every figure on
a card comes from a file or record the gate itself relied on (the report it chose, by sha256
and run id; the raw data and model its provenance chain names, read from the content store and
verified; the promotion events), and the lineage's `card:` fields give the words. The card
goes into the entry (and so the bundle manifest and the Bento, with its sha256), becomes the
MLflow version's description, and is shown on the model asset's page. The embedder's card
(ml_assets/bundle/embedder_card.py) goes the same way.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from ml_assets.bundle.embedder_card import embedder_card
from ml_assets.platform import events
from ml_assets.platform.artifacts import ContentStore
from ml_assets.platform.hashing import canonical_json, read_parquet_bytes
from ml_assets.platform.lineage_spec import FeatureSpec, LineageSpec
from ml_assets.platform.model_card import CARD_SCHEMA, card_markdown, card_sha256
from ml_assets.platform.serving_bundle import EMBEDDER, MODEL_MANIFEST, ModelEntry, served_lineages
from ml_assets.platform.validation_records import Materialization, ValidationRecords

LATENCY_KEYS = tuple(f"{rt}_{p}" for rt in ("native", "onnx") for p in ("p50_ms", "p95_ms"))


class CardError(RuntimeError):
    """A record the card needs is missing: the card is never filled with guesses."""


def _link(entry: ModelEntry, asset: str) -> dict[str, Any]:
    link = next((x for x in entry.provenance if x.get("asset") == asset), None)
    if link is None:
        raise CardError(f"{entry.label}: its provenance chain names no {asset}")
    return link


def _materialization(
    records: ValidationRecords, asset: str, sha256: str, run_id: str | None = None
) -> Materialization:
    """The newest counting materialization of `asset` over `sha256` (from `run_id` if given)."""
    for mat in records.materializations(asset):
        if mat.data_version == sha256 and (run_id is None or mat.run_id == run_id):
            return mat
    raise CardError(f"no materialization of {asset} {sha256[:12]} by this platform's runs")


def _observed(df: pd.DataFrame, feature: FeatureSpec) -> dict[str, Any]:
    col = df[feature.name]
    if feature.kind == "category":
        return {"categories": sorted(str(v) for v in col.dropna().unique())}
    return {"min": float(col.min()), "max": float(col.max())}


def _declared(feature: FeatureSpec) -> dict[str, Any]:
    if feature.kind == "category":
        return {"categories": list(feature.categories)}
    return {"min": feature.min, "max": feature.max}


def _date_range(df: pd.DataFrame) -> list[str] | None:
    dates = [c for c in df.columns if pd.api.types.is_datetime64_any_dtype(df[c])]
    if not dates:
        return None
    col = df[dates[0]]
    return [col.min().isoformat(), col.max().isoformat()]


def data_section(spec: LineageSpec, entry: ModelEntry, content: ContentStore) -> dict[str, Any]:
    """The raw data the chain starts from: its hash, size, label rate, dates and schema."""
    raw = _link(entry, spec.asset("raw_data"))
    ref = content.ref_for(raw["asset"], raw["sha256"], ".parquet")
    df = read_parquet_bytes(ref.read_verified())
    label = df[spec.label]
    return {
        "asset": raw["asset"],
        "sha256": raw["sha256"],
        "rows": int(len(df)),
        "label_rate": float(label.mean()) if spec.task == "classification" else None,
        "label_mean": float(label.mean()),
        "date_range": _date_range(df),
        "features": [
            {
                "name": f.name,
                "kind": f.kind,
                "description": f.description,
                "declared": _declared(f),
                "observed": _observed(df, f),
            }
            for f in spec.features
        ],
    }


def _param(value: str) -> Any:
    """An MLflow param (a string) back as the number or literal it was logged from."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def training_section(
    spec: LineageSpec, entry: ModelEntry, records: ValidationRecords, client: Any
) -> dict[str, Any]:
    """The train function, its code version, seed and parameters, from the model's own run."""
    link = _link(entry, spec.asset("model"))
    mat = _materialization(records, link["asset"], link["sha256"])
    run_id = str(mat.metadata.get("mlflow_run_id") or "")
    if not run_id:
        raise CardError(f"{link['asset']} {link['sha256'][:12]} names no MLflow run")
    params = client.get_run(run_id).data.params
    seeds = mat.metadata.get("seeds") or {}
    return {
        "function": mat.metadata.get("trainer") or params.get("trainer"),
        "code_version": link["code_version"],
        "seed": seeds.get("model_seed", _param(params.get("seed", "null"))),
        "params": {
            k.removeprefix("trainer."): _param(v)
            for k, v in sorted(params.items())
            if k.startswith("trainer.")
        },
        "model_sha256": link["sha256"],
        "mlflow_run_id": run_id,
        "dagster_run_id": mat.run_id,
    }


def validation_section(
    spec: LineageSpec, entry: ModelEntry, records: ValidationRecords, content: ContentStore
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the validation the gate chose, the environment it ran in): the report's figures."""
    facts = entry.gate.evidence if entry.gate is not None else {}
    sha, run_id = facts.get("report_sha256"), facts.get("report_run_id")
    if not sha or not run_id:
        raise CardError(f"{entry.label}: the gate record names no export validation report")
    asset = spec.asset("export_validation_report")
    report = json.loads(content.ref_for(asset, sha, ".json").read_verified())
    mat = _materialization(records, asset, sha, run_id)
    section = {
        "report_sha256": sha,
        "report_run_id": run_id,
        "test_rows": report["test_rows"],
        "native": report["native"],
        "onnx": report["onnx"],
        "relative_delta": report["relative_delta"],
        "max_abs_output_diff": report["max_abs_output_diff"],
        "thresholds": report["thresholds"],
        "latency_ms": {k: mat.metadata[k] for k in LATENCY_KEYS if k in mat.metadata},
        "verdicts": [
            {k: getattr(v, k) for k in ("asset", "check", "passed", "run_id", "evaluation_id")}
            for v in (entry.gate.verdicts if entry.gate is not None else ())
        ],
    }
    return section, dict(mat.metadata.get("environment") or {})


def promotion_history(history: list[dict[str, Any]], entry: ModelEntry) -> list[dict[str, Any]]:
    """Every move of the production alias to or away from this version, oldest first."""
    return [
        {
            "at": e.get("occurred_at"),
            "kind": e.get("kind"),
            "from_version": e.get("previous_version"),
            "to_version": e.get("version"),
            "actor": e.get("actor"),
            "reason": e.get("reason"),
            "event_id": e.get("event_id"),
        }
        for e in history
        if e.get("model") == entry.registered_model
        and entry.version in (str(e.get("version")), str(e.get("previous_version")))
    ]


def lineage_card(
    spec: LineageSpec,
    entry: ModelEntry,
    records: ValidationRecords,
    content: ContentStore,
    client: Any,
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """One version's card as JSON (see ml_assets/platform/model_card.py for its Markdown)."""
    validation, environment = validation_section(spec, entry, records, content)
    return {
        "schema": CARD_SCHEMA,
        "model": {
            "registered_model": entry.registered_model,
            "version": entry.version,
            "lineage": spec.name,
            "task": spec.task,
            "label": spec.label,
            "mlflow_run_id": entry.info.get("mlflow_run_id"),
            "onnx_sha256": entry.files.get("model.onnx"),
        },
        "declared": dict(spec.card),
        "data": data_section(spec, entry, content),
        "training": training_section(spec, entry, records, client),
        "validation": validation,
        "promotion_history": promotion_history(history, entry),
        "environment": environment,
    }


def attach_cards(
    entries: list[ModelEntry],
    records: ValidationRecords,
    content: ContentStore,
    client: Any,
    events_dsn: str,
    stage: Path,
    search: dict[str, Any],
) -> list[ModelEntry]:
    """Each entry with its card and the card's sha256 in `info` (its ml_model.json in `stage`
    rewritten to match): a lineage's card, or the embedder's (`search`: the bundle's search
    evidence, what the embedder's card says search is served with)."""
    specs = served_lineages({e.role: e for e in entries})
    history = events.read(events_dsn, events.MODEL_PROMOTED)
    out = []
    for entry in entries:
        spec = specs.get(entry.role)
        if spec is not None:
            card = lineage_card(spec, entry, records, content, client, history)
        elif entry.role == EMBEDDER:
            promotions = promotion_history(history, entry)
            card = embedder_card(entry, records, content, promotions, search)
        else:
            out.append(entry)
            continue
        entry = replace(entry, info={**entry.info, "card": card, "card_sha256": card_sha256(card)})
        (stage / entry.role / MODEL_MANIFEST).write_bytes(canonical_json(entry.to_json()))
        out.append(entry)
    return out


def publish(client: Any, entry: ModelEntry) -> str | None:
    """Set the card's Markdown as the MLflow version's description; returns the Markdown."""
    card = entry.info.get("card")
    if card is None:
        return None
    markdown = card_markdown(card)
    client.update_model_version(entry.registered_model, entry.version, description=markdown)
    return markdown
