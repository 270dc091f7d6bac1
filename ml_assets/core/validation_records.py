"""What the platform itself recorded about a model's validation, and how the gate reads it.

The proof that a version was validated is never a registry tag (any MLflow client can write
one). It is the platform's own record: the materialization of the export whose data version is
the sha256 of the very bytes to be served, the blocking check evaluations of the report over
that export, and the expectations verdict of the raw data's sha256. `ValidationRecords` is that
record store (the Dagster instance in production, see ml_assets/dagster_records.py); this module
is Dagster-free, so the gate logic can be read and tested without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

EMBEDDER_CHECKS = {"embedding_model_onnx": ("fp32_parity", "int8_parity", "int8_retrieval")}
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
        """The latest evaluation of `check` that targeted exactly `mat`."""
        ...


@dataclass
class Evidence:
    """What one model's records say: gate rows, the verdicts behind them, and the facts found."""

    gates: list[tuple[str, bool, str]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    metric: float | None = None

    def gate(self, name: str, passed: bool, detail: str) -> None:
        self.gates.append((name, passed, detail))


def first(mats: Iterable[Materialization], where: Callable[[Materialization], bool]) -> Iterator:
    return (m for m in mats if where(m))


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
    """The chain of a declared lineage (a LineageSpec from ml_assets/core/lineage_spec.py)."""
    return Chain(
        export=spec.asset("onnx"),
        report=spec.asset("export_validation_report"),
        raw=spec.asset("raw_data"),
        report_checks=tuple(spec.report_checks),
        expectations=spec.expectations_check,
        metric=f"native_{spec.primary_metric}",
    )


def model_evidence(
    records: ValidationRecords,
    chain: Chain,
    label: str,
    onnx_sha256: str,
    provenance: dict[str, Any] | None,
) -> Evidence:
    """A tabular model's chain: its ONNX export, the report over it, the raw data's verdict."""
    ev = Evidence(facts={"onnx_sha256": onnx_sha256})
    exports = [m for m in records.materializations(chain.export) if m.data_version == onnx_sha256]
    own = [m for m in exports if m.metadata.get("registered_model") == label.replace("@", " v")]
    if own:
        ev.facts["export_run_id"] = own[0].run_id
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
            f"no {chain.export} materialization has sha256 {onnx_sha256[:12]}: these bytes "
            "were never exported (or were altered) by this platform",
        )
    if provenance is not None:
        claimed = (provenance.get("artifact") or {}).get("sha256")
        ev.gate(
            "provenance",
            claimed == onnx_sha256,
            f"provenance.json names ONNX {str(claimed)[:12]}",
        )
    report = next(
        first(
            records.materializations(chain.report),
            lambda m: _upstream(m, chain.export) == onnx_sha256,
        ),
        None,
    )
    if report is None:
        ev.gate("export_validation", False, f"no {chain.report} over {onnx_sha256[:12]}")
        ev.gate(chain.expectations, False, "no report, so no raw data to check")
        return ev
    verdicts = _checks(records, report, chain.report_checks)
    ev.verdicts.extend(verdicts)
    ev.facts.update(
        report_sha256=report.data_version,
        report_run_id=report.run_id,
        thresholds=report.metadata.get("thresholds"),
    )
    ev.metric = report.metadata.get(chain.metric)
    ev.gate(
        "export_validation",
        all(v.passed for v in verdicts),
        f"report {str(report.data_version)[:12]} (run {report.run_id}): {_verdict_text(verdicts)}",
    )
    raw = _lineage_sha(report, chain.raw)
    ev.facts["raw_sha256"] = raw
    raw_mat = next(
        first(records.materializations(chain.raw), lambda m: m.data_version == raw),
        None,
    )
    if raw is None or raw_mat is None:
        ev.gate(chain.expectations, False, f"{chain.raw} {str(raw)[:12]} was never materialized")
        return ev
    verdict = records.verdict(raw_mat, chain.expectations)
    ev.verdicts.append(verdict)
    ev.gate(chain.expectations, verdict.passed is True, f"{chain.raw} {raw[:12]}: {verdict.word}")
    return ev


def embedder_evidence(
    records: ValidationRecords, variant: str, onnx_sha256: str, tokenizer_sha256: str
) -> Evidence:
    """The text embedder's chain: the export holding these bytes and its blocking checks."""
    ev = Evidence(facts={"onnx_sha256": onnx_sha256, "variant": variant})
    export = next(
        first(
            records.materializations("embedding_model_onnx"),
            lambda m: m.metadata.get(f"{variant}_sha256") == onnx_sha256,
        ),
        None,
    )
    if export is None:
        ev.gate(
            "onnx_export",
            False,
            f"no embedding_model_onnx materialization has a {variant} export with sha256 "
            f"{onnx_sha256[:12]}: these bytes were never exported by this platform",
        )
        return ev
    tok = export.metadata.get("tokenizer_sha256")
    ev.gate(
        "onnx_export",
        tok == tokenizer_sha256,
        f"embedding_model_onnx {str(export.data_version)[:12]} (run {export.run_id}), "
        f"tokenizer {'matches' if tok == tokenizer_sha256 else 'differs: ' + str(tok)[:12]}",
    )
    verdicts = _checks(records, export, EMBEDDER_CHECKS["embedding_model_onnx"])
    ev.verdicts.extend(verdicts)
    for v in verdicts:
        ev.gate(v.check, v.passed is True, f"{v.word} (run {v.run_id})")
    parity = export.metadata.get("parity") or {}
    ev.metric = parity.get(f"ndcg_{variant}")
    ev.facts.update(export_sha256=export.data_version, export_run_id=export.run_id)
    return ev


def search_evidence(records: ValidationRecords, embedder_sha256: str) -> dict[str, Any]:
    """The search configuration the latest quality report for this embedder chose and judged.

    {"enabled": True, fusion, params, report...} when its blocking check passed, else
    {"enabled": False, "reason": ...}: search is then not served rather than served unjudged.
    """
    report = next(
        first(
            records.materializations(SEARCH_CHECK[0]),
            lambda m: m.metadata.get("embedder_sha256") == embedder_sha256,
        ),
        None,
    )
    if report is None:
        return {
            "enabled": False,
            "reason": f"no search_quality_report for embedder {embedder_sha256[:12]}: "
            "materialize embedding_index and search_quality_report with the served embedder",
        }
    verdict = records.verdict(report, SEARCH_CHECK[1])
    config = report.metadata.get("search_config")
    if verdict.passed is not True or not isinstance(config, dict):
        return {
            "enabled": False,
            "reason": f"search_quality_report {str(report.data_version)[:12]}: "
            f"{SEARCH_CHECK[1]} {verdict.word}",
            "verdict": verdict.to_dict(),
        }
    return {
        "enabled": True,
        "embedder_sha256": embedder_sha256,
        "config": config,
        "report_sha256": report.data_version,
        "report_run_id": report.run_id,
        "verdict": verdict.to_dict(),
    }
