"""What the platform itself recorded about a model's validation, and how the gate reads it.

The proof that a version was validated is never a registry tag (any MLflow client can write
one). It is the platform's own record: the materialization of the export whose data version is
the sha256 of the very bytes to be served, the blocking check evaluations of the report over
that export, and the expectations verdict of the raw data's sha256. `ValidationRecords` is that
record store (the Dagster instance in production, see
ml_assets/platform/dagster_records.py); this module
is Dagster-free, so the gate logic can be read and tested without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

EMBEDDER_ASSET = "embedding_model_onnx"
EMBEDDER_CHECKS = {EMBEDDER_ASSET: ("fp32_parity", "int8_parity", "int8_retrieval")}
SEARCH_CHECK = ("search_quality_report", "hybrid_not_worse")


@dataclass(frozen=True)
class Materialization:
    """One recorded materialization: its data version (sha256) and metadata values."""

    asset: str
    storage_id: int
    run_id: str
    timestamp: float
    data_version: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Who wrote it (run id, job, step, run status, code location): ml_assets/platform/evidence.py.
    origin: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """One blocking check's evaluation of one materialization (None: never evaluated)."""

    asset: str
    check: str
    data_version: str | None
    passed: bool | None
    run_id: str | None = None
    evaluation_id: int | None = None
    evaluated_at: float | None = None
    target_storage_id: int | None = None
    # The run, job, step, status and code location of the evaluation (the bundle keeps it and
    # the service judges it again by the same rule).
    origin: dict[str, Any] = field(default_factory=dict, compare=False)
    # The evaluation's own metadata (e.g. the tolerance a check applied); not carried into
    # bundles, which pin the verdict, not its figures.
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("metadata")
        return out

    @property
    def word(self) -> str:
        return {True: "passed", False: "FAILED", None: "never evaluated"}[self.passed]


class ValidationRecords(Protocol):
    def materializations(self, asset: str) -> Iterable[Materialization]:
        """Every recorded materialization of `asset`, newest first."""
        ...

    def verdict(self, mat: Materialization, check: str) -> Verdict:
        """The latest evaluation of `check` that targeted exactly `mat` and counts."""
        ...


@dataclass
class Evidence:
    """What one model's records say: gate rows, the verdicts behind them, and the facts found."""

    gates: list[tuple[str, bool, str]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    metric: float | None = None
    used: list[str] = field(default_factory=list)  # the records the verdicts came from
    ignored: list[str] = field(default_factory=list)  # what the evidence rule left out, why

    def gate(self, name: str, passed: bool, detail: str) -> None:
        self.gates.append((name, passed, detail))


def _upstream(m: Materialization, asset: str) -> str | None:
    value = m.metadata.get("upstream_data_versions") or {}
    return value.get(asset) if isinstance(value, dict) else None


def _lineage_sha(m: Materialization, asset: str) -> str | None:
    for link in m.metadata.get("lineage") or []:
        if isinstance(link, dict) and link.get("asset") == asset:
            return link.get("sha256")
    return None


def _checks(records: ValidationRecords, mat: Materialization, names: Iterable[str]) -> list:
    return [records.verdict(mat, c) for c in names]


def _verdict_text(verdicts: list[Verdict]) -> str:
    return ", ".join(f"{v.check} {v.word}" for v in verdicts)


@dataclass(frozen=True)
class Chain:
    """Where a tabular model's validation lives: the assets and blocking checks of its chain."""

    export: str  # the ONNX export asset (data version = the ONNX file's sha256)
    report: str  # the export validation report over it
    raw: str  # the raw data asset the report's lineage names
    report_checks: tuple[str, ...]
    expectations: str
    metric: str  # the report metadata key of the primary metric (native model, test split)


def chain_of(spec: Any) -> Chain:
    """The chain of a declared lineage (a LineageSpec from ml_assets/platform/lineage_spec.py)."""
    return Chain(
        export=spec.asset("onnx"),
        report=spec.asset("export_validation_report"),
        raw=spec.asset("raw_data"),
        report_checks=tuple(spec.report_checks),
        expectations=spec.expectations_check,
        metric=f"native_{spec.primary_metric}",
    )


def _all_passed(verdicts: list[Verdict]) -> bool:
    return bool(verdicts) and all(v.passed is True for v in verdicts)


def choose(
    records: ValidationRecords, mats: Iterable[Materialization], checks: Iterable[str]
) -> tuple[Materialization | None, list[Verdict]]:
    """The newest materialization whose verdicts all passed, with them; when none passed, the
    newest one with its verdicts (to say why). A failing record beside a passing one over the
    same bytes neither admits nor blocks: the passing one is chosen."""
    names = tuple(checks)
    newest: tuple[Materialization | None, list[Verdict]] = (None, [])
    for mat in mats:
        verdicts = _checks(records, mat, names)
        if not names or _all_passed(verdicts):
            return mat, verdicts
        if newest[0] is None:
            newest = (mat, verdicts)
    return newest


def _ignored(records: ValidationRecords, assets: Iterable[str]) -> list[str]:
    """What the evidence rule ignored among these assets' records (the gate table says it)."""
    ignored = getattr(records, "ignored", None)
    return [] if ignored is None else ignored.lines(assets)


def _used(mat: Materialization) -> str:
    origin = mat.origin or {}
    return (
        f"{mat.asset} {str(mat.data_version)[:12]} (run {mat.run_id[:8]}, "
        f"{origin.get('job')}, step {origin.get('step')})"
    )


def _records_gate(ev: Evidence, records: ValidationRecords, assets: Iterable[str]) -> None:
    """An informational row: the records the gate used and the ones the rule ignored."""
    ev.ignored = _ignored(records, assets)
    detail = "; ".join(ev.used) or "no qualifying record"
    if ev.ignored:
        detail += "; " + "; ".join(ev.ignored)
    ev.gate("evidence", True, detail)


def model_evidence(
    records: ValidationRecords,
    chain: Chain,
    label: str,
    onnx_sha256: str,
    provenance: dict[str, Any] | None,
) -> Evidence:
    """A tabular model's chain: its ONNX export, the report over it, the raw data's verdict."""
    ev = Evidence(facts={"onnx_sha256": onnx_sha256})
    _model_chain(ev, records, chain, label, onnx_sha256, provenance)
    _records_gate(ev, records, (chain.export, chain.report, chain.raw))
    return ev


def _model_chain(
    ev: Evidence,
    records: ValidationRecords,
    chain: Chain,
    label: str,
    onnx_sha256: str,
    provenance: dict[str, Any] | None,
) -> None:
    registered = label.replace("@", " v")
    everything = list(records.materializations(chain.export))
    exports = [m for m in everything if m.data_version == onnx_sha256]
    own = [m for m in exports if m.metadata.get("registered_model") == registered]
    exported = [m for m in everything if m.metadata.get("registered_model") == registered]
    if not own and exported:
        ev.gate(
            "onnx_export",
            False,
            f"{label}'s run holds a model.onnx with sha256 {onnx_sha256[:12]}, but this "
            f"platform exported {str(exported[0].data_version)[:12]} for that version (run "
            f"{exported[0].run_id[:8]}): the registered artifact model.onnx was changed after "
            "registration; register the new bytes as a new version instead",
        )
    elif own:
        ev.facts["export_run_id"] = own[0].run_id
        ev.used.append(_used(own[0]))
        ev.gate("onnx_export", True, f"{chain.export} {onnx_sha256[:12]} (run {own[0].run_id})")
    elif exports:
        other = exports[0].metadata.get("registered_model")
        ev.gate(
            "onnx_export",
            False,
            f"ONNX {onnx_sha256[:12]} was exported for {other}, not {label}",
        )
    else:
        ev.gate(
            "onnx_export",
            False,
            f"no {chain.export} materialization by this platform's runs has sha256 "
            f"{onnx_sha256[:12]}: these bytes were never exported (or were altered) here",
        )
    if provenance is not None:
        claimed = (provenance.get("artifact") or {}).get("sha256")
        ev.gate(
            "provenance",
            claimed == onnx_sha256,
            f"provenance.json names ONNX {str(claimed)[:12]}",
        )
    report, verdicts = choose(
        records,
        (
            m
            for m in records.materializations(chain.report)
            if _upstream(m, chain.export) == onnx_sha256
        ),
        chain.report_checks,
    )
    if report is None:
        ev.gate("export_validation", False, f"no {chain.report} over {onnx_sha256[:12]}")
        ev.gate(chain.expectations, False, "no report, so no raw data to check")
        return
    ev.used.append(_used(report))
    ev.verdicts.extend(verdicts)
    ev.facts.update(
        report_sha256=report.data_version,
        report_run_id=report.run_id,
        thresholds=report.metadata.get("thresholds"),
    )
    ev.metric = report.metadata.get(chain.metric)
    ev.gate(
        "export_validation",
        _all_passed(verdicts),
        f"report {str(report.data_version)[:12]} (run {report.run_id}): {_verdict_text(verdicts)}",
    )
    raw = _lineage_sha(report, chain.raw)
    ev.facts["raw_sha256"] = raw
    raw_mat, raw_verdicts = choose(
        records,
        (m for m in records.materializations(chain.raw) if m.data_version == raw),
        (chain.expectations,),
    )
    if raw is None or raw_mat is None:
        ev.gate(chain.expectations, False, f"{chain.raw} {str(raw)[:12]} was never materialized")
        return
    ev.used.append(_used(raw_mat))
    ev.verdicts.extend(raw_verdicts)
    ev.gate(
        chain.expectations,
        _all_passed(raw_verdicts),
        f"{chain.raw} {raw[:12]}: {_verdict_text(raw_verdicts)}",
    )


def embedder_evidence(
    records: ValidationRecords, variant: str, onnx_sha256: str, tokenizer_sha256: str
) -> Evidence:
    """The text embedder's chain: the export holding these bytes and its blocking checks."""
    ev = Evidence(facts={"onnx_sha256": onnx_sha256, "variant": variant})
    _embedder_chain(ev, records, variant, onnx_sha256, tokenizer_sha256)
    _records_gate(ev, records, (EMBEDDER_ASSET,))
    return ev


def _embedder_chain(
    ev: Evidence, records: ValidationRecords, variant: str, onnx_sha256: str, tok_sha256: str
) -> None:
    export, verdicts = choose(
        records,
        (
            m
            for m in records.materializations(EMBEDDER_ASSET)
            if m.metadata.get(f"{variant}_sha256") == onnx_sha256
            and m.metadata.get("tokenizer_sha256") == tok_sha256
        ),
        EMBEDDER_CHECKS[EMBEDDER_ASSET],
    )
    if export is None:
        ev.gate(
            "onnx_export",
            False,
            f"no {EMBEDDER_ASSET} materialization by this platform's runs has a {variant} "
            f"export with sha256 {onnx_sha256[:12]} and tokenizer {tok_sha256[:12]}: these "
            "bytes were never exported here",
        )
        return
    ev.used.append(_used(export))
    ev.gate(
        "onnx_export",
        True,
        f"{EMBEDDER_ASSET} {str(export.data_version)[:12]} (run {export.run_id}), "
        "tokenizer matches",
    )
    ev.verdicts.extend(verdicts)
    for v in verdicts:
        ev.gate(v.check, v.passed is True, f"{v.word} (run {v.run_id})")
    parity = export.metadata.get("parity") or {}
    ev.metric = parity.get(f"ndcg_{variant}")
    ev.facts.update(export_sha256=export.data_version, export_run_id=export.run_id)


def search_evidence(records: ValidationRecords, embedder_sha256: str) -> dict[str, Any]:
    """The search configuration judged for this embedder by the newest quality report that
    passed its blocking check in one of this platform's runs.

    {"enabled": True, "config", "report_sha256", ...} when one passed, else
    {"enabled": False, "reason": ...}: search is then not served rather than served unjudged.
    """
    report, verdicts = choose(
        records,
        (
            m
            for m in records.materializations(SEARCH_CHECK[0])
            if m.metadata.get("embedder_sha256") == embedder_sha256
            and isinstance(m.metadata.get("search_config"), dict)
        ),
        (SEARCH_CHECK[1],),
    )
    ignored = _ignored(records, (SEARCH_CHECK[0],))
    if report is None:
        return {
            "enabled": False,
            "reason": f"no search_quality_report for embedder {embedder_sha256[:12]}: "
            "materialize embedding_index and search_quality_report with the served embedder",
            "ignored": ignored,
        }
    verdict = verdicts[0]
    if verdict.passed is not True:
        return {
            "enabled": False,
            "reason": f"search_quality_report {str(report.data_version)[:12]}: "
            f"{SEARCH_CHECK[1]} {verdict.word}",
            "verdict": verdict.to_dict(),
            "ignored": ignored,
        }
    return {
        "enabled": True,
        "embedder_sha256": embedder_sha256,
        "config": report.metadata["search_config"],
        "report_sha256": report.data_version,
        "report_run_id": report.run_id,
        "verdict": verdict.to_dict(),
        "ignored": ignored,
    }
