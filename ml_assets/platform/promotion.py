"""The promotion gate: a registered version becomes MLflow alias `production` only if its
lineage's blocking checks passed and it is not worse than the champion beyond a margin.

The verdicts come from the platform's own records (`ValidationRecords`: the Dagster instance),
keyed by the sha256 of the bytes the version's MLflow run really holds: the export materialized
with that data version, the blocking checks of the report over it, the expectations verdict of
its raw data. Registry tags are a copy for people; a forged tag changes no verdict. The same
gate runs wherever a model can enter serving: promotion (job, CLI), the serving bundle, and
the service itself checks the verdicts the bundle carries.

Promotion records who, when and why as version tags and appends an `ml.model.promoted.v1`
event to Postgres. A rejected promotion changes nothing. Rollback is promoting an earlier
version (the champion comparison is skipped, the checks are not); the history stays in the
event table and the version tags.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ml_assets.platform import events, gate_subjects
from ml_assets.platform.catalog import Catalog
from ml_assets.platform.gate_record import Gate, GateRecord, Margin, RecordedVerdict
from ml_assets.platform.gate_subjects import Subject
from ml_assets.platform.hashing import sha256_bytes
from ml_assets.platform.serving_bundle import PRODUCTION_ALIAS
from ml_assets.platform.validation_records import Evidence, ValidationRecords

EVENT_TYPE = events.MODEL_PROMOTED
EVENTS_SCHEMA = events.EVENTS_SCHEMA
EVENTS_TABLE = events.EVENTS_TABLE
ensure_events_table = events.ensure_events_table


class PromotionRejected(RuntimeError):
    """A gate failed; the message lists every gate and its verdict."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        failed = [g for g in decision.gates if not g.passed]
        super().__init__(
            f"{decision.model} v{decision.version} was not promoted; failed gate(s): "
            + "; ".join(f"{g.name}: {g.detail}" for g in failed)
        )


@dataclass
class Decision:
    model: str
    version: str
    kind: str  # promotion | rollback | serving
    metric: str
    candidate_value: float | None
    champion_version: str | None
    champion_value: float | None
    margin: float  # relative to the champion's value
    gates: list[Gate] = field(default_factory=list)
    margin_source: str = "the platform default"
    higher_is_better: bool = True
    evidence: Evidence = field(default_factory=Evidence)
    evaluated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def approved(self) -> bool:
        return all(g.passed for g in self.gates)

    def table(self) -> list[dict[str, str]]:
        return [
            {"gate": g.name, "verdict": "pass" if g.passed else "**FAIL**", "detail": g.detail}
            for g in self.gates
        ]

    def record(self) -> GateRecord:
        """What a bundle carries: every gate, the check evaluations behind them, the facts."""
        return GateRecord(
            approved=self.approved,
            evaluated_at=self.evaluated_at,
            gates=tuple(self.gates),
            verdicts=tuple(RecordedVerdict.of(v) for v in self.evidence.verdicts),
            evidence=dict(self.evidence.facts),
            records_used=tuple(self.evidence.used),
            records_ignored=tuple(self.evidence.ignored),
            margin=Margin(self.margin, True, self.margin_source),
            source="dagster asset check evaluations by data version, written by this code "
            "location's own successful runs (ml_assets/platform/evidence.py)",
        )


def event_schema() -> dict[str, Any]:
    return events.schema(EVENT_TYPE)


def _tags(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    return dict(client.get_model_version(name, version).tags)


def champion_version(client: MlflowClient, name: str) -> str | None:
    """The version `name`'s production alias points at, or None."""
    try:
        return str(client.get_model_version_by_alias(name, PRODUCTION_ALIAS).version)
    except MlflowException:
        return None


def promotable(catalog: Catalog) -> list[str]:
    """Every registered model the gate knows: the built-in ones and each declared lineage."""
    return gate_subjects.names(catalog)


def file_paths(catalog: Catalog, name: str, tags: dict[str, str]) -> dict[str, str]:
    """{served file name: its path in the version's MLflow run}."""
    return gate_subjects.subject(catalog, name).files(tags)


def fetch_files(
    client: MlflowClient, catalog: Catalog, name: str, version: str, dst: Path
) -> dict[str, bytes]:
    """The bytes a version's MLflow run holds for each served file (what would be served)."""
    mv = client.get_model_version(name, version)
    out: dict[str, bytes] = {}
    for fname, path in file_paths(catalog, name, dict(mv.tags)).items():
        if not mv.run_id:
            raise FileNotFoundError(f"{name} v{version} has no MLflow run to fetch {path} from")
        try:
            local = client.download_artifacts(mv.run_id, path, str(dst))
        except (MlflowException, OSError) as exc:
            raise FileNotFoundError(
                f"{name} v{version}: its run {mv.run_id} holds no {path} ({exc})"
            ) from exc
        out[fname] = Path(local).read_bytes()
    return out


def _evidence(
    records: ValidationRecords, subject: Subject, version: str, tags: dict[str, str], files: dict
) -> Evidence:
    ev = subject.evidence(records, f"{subject.name}@{version}", files, tags)
    onnx_sha = sha256_bytes(files["model.onnx"])
    tagged = tags.get(subject.hash_tag)
    if tagged != onnx_sha:
        # Only a symptom (tags are not the proof), but worth naming: the file was swapped.
        ev.gate(
            "registry_hash",
            False,
            f"the run's model.onnx hashes to {onnx_sha[:12]}, the registry tag says "
            f"{str(tagged)[:12]}",
        )
    return ev


def _champion_metric(
    records: ValidationRecords, client: MlflowClient, subject: Subject, version: str
) -> float | None:
    """The champion's primary metric from the records (found by its registry hash: it is
    only the yardstick; the champion itself was gated when it entered serving)."""
    tags = _tags(client, subject.name, version)
    return subject.champion_metric(records, f"{subject.name}@{version}", tags)


def evaluate(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    catalog: Catalog,
    records: ValidationRecords,
    margin: float | None = None,
    rollback: bool = False,
    files: dict[str, bytes] | None = None,
) -> Decision:
    """Every gate's verdict for `name` v`version` (changes nothing).

    `margin`: an explicit override of the model's declared `promotion_margin` (relative).
    `files`: the bytes that would be served (the bundle passes what it downloaded); fetched
    from the version's MLflow run when omitted.
    """
    subject = gate_subjects.subject(catalog, name)
    if margin is None:
        margin, margin_source = subject.margin, subject.margin_source
    else:
        margin_source = "an explicit override (--margin / the job's config)"
    version = str(version)
    try:
        mv = client.get_model_version(name, version)
    except MlflowException as exc:
        raise ValueError(f"{name} has no version {version} in the MLflow registry") from exc
    tags = dict(mv.tags)
    champion = champion_version(client, name)
    gates = [Gate("registered", mv.status == "READY", f"status {mv.status}")]
    if files is None:
        try:
            with tempfile.TemporaryDirectory(prefix="ml-gate-") as tmp:
                files = fetch_files(client, catalog, name, version, Path(tmp))
        except FileNotFoundError as exc:
            files = None
            gates.append(Gate("files", False, str(exc)))
    evidence = Evidence() if files is None else _evidence(records, subject, version, tags, files)
    gates.extend(Gate(*g) for g in evidence.gates)
    decision = Decision(
        model=name,
        version=version,
        kind="rollback" if rollback else "promotion",
        metric=subject.metric,
        candidate_value=evidence.metric,
        champion_version=champion,
        champion_value=None
        if champion is None or champion == version
        else _champion_metric(records, client, subject, champion),
        margin=margin,
        gates=gates,
        evidence=evidence,
        higher_is_better=subject.higher_is_better,
        margin_source=margin_source,
    )
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
    # Relative, as the YAML field says: a margin of 0.05 tolerates 5% of the champion's value.
    slack = d.margin * abs(d.champion_value)
    if d.higher_is_better:
        ok = d.candidate_value >= d.champion_value - slack
    else:
        ok = d.candidate_value <= d.champion_value + slack
    return Gate(
        "champion",
        ok,
        f"{d.metric} {d.candidate_value:.4f} vs champion v{d.champion_version} "
        f"{d.champion_value:.4f} (margin {d.margin:g} relative, from {d.margin_source})",
    )


def promote(
    client: MlflowClient,
    events_dsn: str,
    name: str,
    version: str,
    *,
    catalog: Catalog,
    records: ValidationRecords,
    actor: str,
    reason: str,
    margin: float | None = None,
    rollback: bool = False,
    source: str = "cli",
) -> dict[str, Any]:
    """Move `production` to `name` v`version` if every gate passes; returns the event."""
    if not reason.strip():
        raise ValueError("a promotion needs a reason")
    decision = evaluate(
        client, name, version, catalog=catalog, records=records, margin=margin, rollback=rollback
    )
    if not decision.approved:
        raise PromotionRejected(decision)
    tags = _tags(client, name, decision.version)
    event = events.new_event(
        EVENT_TYPE,
        kind=decision.kind,
        model=name,
        version=decision.version,
        previous_version=decision.champion_version,
        alias=PRODUCTION_ALIAS,
        actor=actor,
        reason=reason,
        source=source,
        metric={
            "name": decision.metric,
            "candidate": decision.candidate_value,
            "champion": decision.champion_value,
            "margin": decision.margin,
        },
        gates=[asdict(g) for g in decision.gates],
        artifacts={k: v for k, v in tags.items() if k.endswith("sha256")},
    )
    with psycopg.connect(events_dsn, connect_timeout=10) as conn:
        events.append(conn, event, f"{name}@{decision.version}")
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


def rejection_event(decision: Decision, *, source: str, run_id: str | None) -> dict[str, Any]:
    """An `ml.model.promotion.rejected.v1` event for a refused version (validated, not written)."""
    event = events.new_event(
        events.PROMOTION_REJECTED,
        model=decision.model,
        version=decision.version,
        alias=PRODUCTION_ALIAS,
        kind=decision.kind,
        source=source,
        dagster_run_id=run_id,
        gates=[asdict(g) for g in decision.gates],
        failed=[g.name for g in decision.gates if not g.passed],
        evidence=decision.evidence.facts,
    )
    events.validate(event)
    return event


def history(events_dsn: str, name: str) -> list[dict[str, Any]]:
    """Every promotion event of one model, oldest first."""
    return [e for e in events.read(events_dsn, EVENT_TYPE) if e.get("model") == name]


def bootstrap(
    client: MlflowClient,
    events_dsn: str,
    *,
    catalog: Catalog,
    records: ValidationRecords,
    actor: str,
    variant: str = "int8",
) -> dict[str, str]:
    """On a fresh platform: promote, per model without a champion, its newest version that
    passes every gate (for the embedder, of `variant`, the one the index is built with)."""
    promoted: dict[str, str] = {}
    for name in gate_subjects.names(catalog):
        if champion_version(client, name) is not None:
            continue
        versions = sorted(
            client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version)
        )
        for mv in versions:
            if not gate_subjects.subject(catalog, name).first_candidate(dict(mv.tags), variant):
                continue
            if evaluate(client, name, str(mv.version), catalog=catalog, records=records).approved:
                promote(
                    client,
                    events_dsn,
                    name,
                    str(mv.version),
                    catalog=catalog,
                    records=records,
                    actor=actor,
                    reason="first production version of a fresh platform",
                )
                promoted[name] = str(mv.version)
                break
    return promoted
