"""The promotion gate: a registered version becomes MLflow alias `production` only if its
lineage's blocking checks passed and it is not worse than the champion beyond a margin.

Promotion records who, when and why as version tags and appends an `ml.model.promoted.v1`
event (schema: ml_assets/schemas/ml.model.promoted.v1.json) to Postgres. A rejected promotion
changes nothing. Rollback is promoting an earlier version (the champion comparison is skipped,
the checks are not); the history stays in the event table and the version tags.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import psycopg
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from psycopg import sql
from psycopg.types.json import Jsonb

from ml_assets.core.serving_bundle import PRODUCTION_ALIAS

EVENT_TYPE = "ml.model.promoted.v1"
EVENTS_SCHEMA = "ml_events"
FRAUD_MODEL, TEXT_EMBEDDER = "fraud-detector", "text-embedder"
PRIMARY_METRIC = {FRAUD_MODEL: "test_pr_auc", TEXT_EMBEDDER: "ndcg@10"}
# The thresholds of the blocking checks of embedding_model_onnx (EmbeddingExportConfig).
EVENTS_TABLE = sql.Identifier(EVENTS_SCHEMA, "events")
EMBEDDER_LIMITS = {"fp32_min_cosine": 0.9999, "int8_mean_cosine": 0.98, "max_ndcg_drop": 0.01}


class PromotionRejected(RuntimeError):
    """A gate failed; the message lists every gate and its verdict."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        failed = [g for g in decision.gates if not g.passed]
        super().__init__(
            f"{decision.model} v{decision.version} was not promoted; failed gate(s): "
            + "; ".join(f"{g.name}: {g.detail}" for g in failed)
        )


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    detail: str


@dataclass
class Decision:
    model: str
    version: str
    kind: str  # promotion | rollback
    metric: str
    candidate_value: float | None
    champion_version: str | None
    champion_value: float | None
    margin: float
    gates: list[Gate] = field(default_factory=list)

    @property
    def approved(self) -> bool:
        return all(g.passed for g in self.gates)

    def table(self) -> list[dict[str, str]]:
        return [
            {"gate": g.name, "verdict": "pass" if g.passed else "**FAIL**", "detail": g.detail}
            for g in self.gates
        ]


def event_schema() -> dict[str, Any]:
    text = resources.files("ml_assets").joinpath(f"schemas/{EVENT_TYPE}.json").read_text()
    return json.loads(text)


def _tags(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    return dict(client.get_model_version(name, version).tags)


def champion_version(client: MlflowClient, name: str) -> str | None:
    """The version `name`'s production alias points at, or None."""
    try:
        return str(client.get_model_version_by_alias(name, PRODUCTION_ALIAS).version)
    except MlflowException:
        return None


def _metrics(client: MlflowClient, name: str, version: str) -> dict[str, float]:
    mv = client.get_model_version(name, version)
    return dict(client.get_run(mv.run_id).data.metrics) if mv.run_id else {}


def primary_value(client: MlflowClient, name: str, version: str) -> float | None:
    metrics = _metrics(client, name, version)
    if name == TEXT_EMBEDDER:
        variant = _tags(client, name, version).get("variant", "fp32")
        return metrics.get(f"ndcg_{variant}")
    return metrics.get(PRIMARY_METRIC[name])


def _fraud_gates(client: MlflowClient, version: str, artifact_root: Path | None) -> list[Gate]:
    tags = _tags(client, FRAUD_MODEL, version)
    gates = [
        Gate(
            "onnx_export",
            "onnx_sha256" in tags and "provenance_sha256" in tags,
            f"onnx sha256 {tags.get('onnx_sha256', 'missing')[:12]}",
        ),
        Gate(
            "export_validation",
            tags.get("export_validation") == "passed",
            "quality delta, output parity and latency checks: "
            + tags.get("export_validation", "never ran"),
        ),
    ]
    raw = tags.get("raw_transactions_sha256")
    if raw is None:
        gates.append(Gate("expectations", False, "the version records no raw data hash"))
    elif artifact_root is None:
        gates.append(Gate("expectations", False, "no artifact root to read the verdict from"))
    else:
        record = artifact_root / "validations" / "raw_transactions" / f"{raw}.json"
        verdict = json.loads(record.read_text())["passed"] if record.exists() else None
        gates.append(
            Gate(
                "expectations",
                verdict is True,
                f"raw_transactions {raw[:12]}: "
                + {True: "passed", False: "failed", None: "no verdict recorded"}[verdict],
            )
        )
    return gates


def _embedder_gates(client: MlflowClient, version: str) -> list[Gate]:
    tags = _tags(client, TEXT_EMBEDDER, version)
    m = _metrics(client, TEXT_EMBEDDER, version)
    lim = EMBEDDER_LIMITS
    drop = m["ndcg_fp32"] - m["ndcg_int8"] if {"ndcg_fp32", "ndcg_int8"} <= m.keys() else None
    return [
        Gate(
            "files",
            "sha256" in tags and "tokenizer_sha256" in tags,
            f"model {tags.get('sha256', 'missing')[:12]}, "
            f"tokenizer {tags.get('tokenizer_sha256', 'missing')[:12]}",
        ),
        Gate(
            "fp32_parity",
            m.get("fp32_min_cosine", 0.0) >= lim["fp32_min_cosine"],
            f"min cosine to PyTorch {m.get('fp32_min_cosine')} (>= {lim['fp32_min_cosine']})",
        ),
        Gate(
            "int8_parity",
            m.get("int8_mean_cosine", 0.0) >= lim["int8_mean_cosine"],
            f"mean int8 cosine {m.get('int8_mean_cosine')} (>= {lim['int8_mean_cosine']})",
        ),
        Gate(
            "int8_retrieval",
            drop is not None and drop <= lim["max_ndcg_drop"],
            f"nDCG@10 drop {drop} (<= {lim['max_ndcg_drop']})",
        ),
    ]


def evaluate(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    margin: float = 0.01,
    rollback: bool = False,
    artifact_root: Path | None = None,
) -> Decision:
    """Every gate's verdict for promoting `name` v`version` (changes nothing)."""
    if name not in PRIMARY_METRIC:
        raise ValueError(f"unknown model {name!r}; promotable models: {sorted(PRIMARY_METRIC)}")
    version = str(version)
    try:
        mv = client.get_model_version(name, version)
    except MlflowException as exc:
        raise ValueError(f"{name} has no version {version} in the MLflow registry") from exc
    champion = champion_version(client, name)
    decision = Decision(
        model=name,
        version=version,
        kind="rollback" if rollback else "promotion",
        metric=PRIMARY_METRIC[name],
        candidate_value=primary_value(client, name, version),
        champion_version=champion,
        champion_value=None if champion is None else primary_value(client, name, champion),
        margin=margin,
    )
    decision.gates.append(Gate("registered", mv.status == "READY", f"status {mv.status}"))
    if name == FRAUD_MODEL:
        decision.gates.extend(_fraud_gates(client, version, artifact_root))
    else:
        decision.gates.extend(_embedder_gates(client, version))
    decision.gates.append(_champion_gate(decision, rollback))
    return decision


def _champion_gate(d: Decision, rollback: bool) -> Gate:
    if d.candidate_value is None:
        return Gate("champion", False, f"the version has no {d.metric} metric")
    if d.champion_version is None:
        return Gate("champion", True, f"no champion yet; {d.metric} {d.candidate_value:.4f}")
    if d.champion_version == d.version:
        return Gate("champion", True, "already the champion")
    if rollback:
        return Gate(
            "champion",
            True,
            f"rollback from v{d.champion_version}: comparison skipped "
            f"({d.metric} {d.candidate_value:.4f} vs {d.champion_value})",
        )
    if d.champion_value is None:
        return Gate("champion", True, f"champion v{d.champion_version} has no {d.metric}")
    ok = d.candidate_value >= d.champion_value - d.margin
    return Gate(
        "champion",
        ok,
        f"{d.metric} {d.candidate_value:.4f} vs champion v{d.champion_version} "
        f"{d.champion_value:.4f} (margin {d.margin})",
    )


def ensure_events_table(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(EVENTS_SCHEMA)))
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " event_id uuid PRIMARY KEY, event_type text NOT NULL,"
            " occurred_at timestamptz NOT NULL, subject text NOT NULL, payload jsonb NOT NULL)"
        ).format(EVENTS_TABLE)
    )
    conn.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS events_subject ON {} (subject, occurred_at)").format(
            EVENTS_TABLE
        )
    )


def promote(
    client: MlflowClient,
    events_dsn: str,
    name: str,
    version: str,
    *,
    actor: str,
    reason: str,
    margin: float = 0.01,
    rollback: bool = False,
    artifact_root: Path | None = None,
    source: str = "cli",
) -> dict[str, Any]:
    """Move `production` to `name` v`version` if every gate passes; returns the event."""
    if not reason.strip():
        raise ValueError("a promotion needs a reason")
    decision = evaluate(
        client, name, version, margin=margin, rollback=rollback, artifact_root=artifact_root
    )
    if not decision.approved:
        raise PromotionRejected(decision)
    now = datetime.now(UTC)
    tags = _tags(client, name, decision.version)
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": EVENT_TYPE,
        "occurred_at": now.isoformat(),
        "kind": decision.kind,
        "model": name,
        "version": decision.version,
        "previous_version": decision.champion_version,
        "alias": PRODUCTION_ALIAS,
        "actor": actor,
        "reason": reason,
        "source": source,
        "metric": {
            "name": decision.metric,
            "candidate": decision.candidate_value,
            "champion": decision.champion_value,
            "margin": margin,
        },
        "gates": [asdict(g) for g in decision.gates],
        "artifacts": {k: v for k, v in tags.items() if k.endswith("sha256")},
    }
    jsonschema.validate(event, event_schema())
    with psycopg.connect(events_dsn) as conn:
        ensure_events_table(conn)
        conn.execute(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s)").format(EVENTS_TABLE),
            (event["event_id"], EVENT_TYPE, now, f"{name}@{decision.version}", Jsonb(event)),
        )
        # The alias moves last: if it fails, the transaction rolls back and nothing changed.
        for key, value in {
            "promoted_by": actor,
            "promoted_at": event["occurred_at"],
            "promotion_reason": reason,
            "promotion_kind": decision.kind,
        }.items():
            client.set_model_version_tag(name, decision.version, key, value)
        client.set_registered_model_alias(name, PRODUCTION_ALIAS, decision.version)
    return event


def history(events_dsn: str, name: str) -> list[dict[str, Any]]:
    """Every promotion event of one model, oldest first."""
    with psycopg.connect(events_dsn) as conn:
        ensure_events_table(conn)
        rows = conn.execute(
            sql.SQL(
                "SELECT payload FROM {} WHERE event_type = %s"
                " AND payload->>'model' = %s ORDER BY occurred_at"
            ).format(EVENTS_TABLE),
            (EVENT_TYPE, name),
        ).fetchall()
    return [r[0] for r in rows]


def bootstrap(
    client: MlflowClient,
    events_dsn: str,
    *,
    artifact_root: Path | None,
    actor: str,
    variant: str = "int8",
) -> dict[str, str]:
    """On a fresh platform: promote, per model without a champion, its newest version that
    passes every gate (for the embedder, of `variant`, the one the index is built with)."""
    promoted: dict[str, str] = {}
    for name in (FRAUD_MODEL, TEXT_EMBEDDER):
        if champion_version(client, name) is not None:
            continue
        versions = sorted(
            client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version)
        )
        for mv in versions:
            if name == TEXT_EMBEDDER and mv.tags.get("variant") != variant:
                continue
            if evaluate(client, name, str(mv.version), artifact_root=artifact_root).approved:
                promote(
                    client,
                    events_dsn,
                    name,
                    str(mv.version),
                    actor=actor,
                    reason="first production version of a fresh platform",
                    artifact_root=artifact_root,
                )
                promoted[name] = str(mv.version)
                break
    return promoted
