"""What one night measures for each tabular production model, found through that version's own
lineage (search: ml_assets/nightly/search.py).

Nothing here reads a "latest" materialization. A production version is gated as serving gates
it (the bytes its MLflow run holds, looked up in Dagster's records by sha256); the report the
gate found names the splits, model and ONNX it judged, its lineage names the raw data, and its
JSON holds the thresholds and figures that validated the version. Those records are read back
from the content store by their sha256, and tonight's figures are measured on them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml_assets.components.model_lineage.report import latencies_ms
from ml_assets.nightly.records import COMPLETED, FAILED
from ml_assets.platform.catalog import Catalog
from ml_assets.platform.hashing import read_parquet_bytes, sha256_bytes
from ml_assets.platform.lineage_spec import LineageSpec
from ml_assets.platform.promotion import Decision
from ml_assets.platform.validation_records import Chain, chain_of
from ml_assets.resources.storage import ArtifactStore
from ml_assets.tabular import model as tabular_model
from ml_assets.tabular.expectations import validate_frame
from ml_assets.tabular.scorer import OnnxTabularScorer


class PartFailed(Exception):
    """This part of the night cannot be judged; the message is recorded as its reason."""


@dataclass(frozen=True)
class Subject:
    """A tabular production model and where its lineage's records live."""

    role: str
    chain: Chain
    splits: str
    model: str
    primary_metric: str
    higher_is_better: bool
    spec: LineageSpec


def subject(catalog: Catalog, role: str, registered_model: str) -> Subject:
    spec = catalog.by_model(registered_model)
    if spec is None:
        raise ValueError(f"{registered_model} is not a declared lineage's model")
    return Subject(
        spec.name,
        chain_of(spec),
        spec.asset("splits"),
        spec.asset("model"),
        spec.primary_metric,
        spec.higher_is_better,
        spec,
    )


def start_part(mv: Any, decision: Decision) -> dict[str, Any]:
    return {
        "status": COMPLETED,
        "version": f"{mv.name}@{mv.version}",
        "gates": [asdict(g) for g in decision.gates if g.name != "champion"],
        "lineage": {},
    }


def run_part(
    mv: Any, decision: Decision, measure: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """One production model's part of the night: what `measure(part)` finds, or why it failed."""
    part = start_part(mv, decision)
    try:
        part.update(measure(part))
    except PartFailed as exc:
        part.update(status=FAILED, reason=str(exc))
    return part


def failed_gates(decision: Decision) -> str:
    return "; ".join(f"{g.name}: {g.detail}" for g in decision.gates if not g.passed)


def _limits(s: Subject, thresholds: dict[str, Any], metrics: list[str]) -> dict[str, Any]:
    """The report's thresholds in the shape tonight's figures are compared in."""
    try:
        return {
            "quality_delta": {m: thresholds[f"max_relative_delta_{m}"] for m in metrics},
            "output_diff": thresholds["max_output_diff"],
            "latency_regression": thresholds.get("max_latency_regression"),
        }
    except KeyError as exc:
        raise PartFailed(f"the validated report records no threshold {exc}") from exc


def _expectations(s: Subject, raw: pd.DataFrame) -> dict[str, Any]:
    outcomes = validate_frame(
        raw,
        s.spec.features,
        label=s.spec.label,
        task=s.spec.task,
        id_column=s.spec.id_column,
        min_rows=s.spec.min_rows,
        label_rate=s.spec.label_rate,
        name=s.spec.asset("raw_data"),
    )
    return {
        "evaluated": len(outcomes),
        "passed": all(o.success for o in outcomes),
        "failed": [f"{o.column}: {o.expectation}" for o in outcomes if not o.success],
    }


def _scorers(
    s: Subject, model_bytes: bytes, onnx_bytes: bytes
) -> tuple[Callable[[pd.DataFrame], np.ndarray], Any, list[str], Callable[..., dict]]:
    """(native predict, ONNX scorer, feature names, metrics function) of one lineage."""
    import skops.io as sio

    spec = s.spec
    # The bytes hashed to the model sha256 the validated report names (the lineage wrote them):
    # the types they hold are the ones recorded for them at write time.
    estimator = tabular_model.from_skops_bytes(
        model_bytes, sorted(sio.get_untrusted_types(data=model_bytes))
    )

    def native(frame: pd.DataFrame) -> np.ndarray:
        with tabular_model.native_threads(1):
            return tabular_model.predict(estimator, spec.task, frame)

    return (
        native,
        OnnxTabularScorer(onnx_bytes, spec.features, spec.task),
        [f.name for f in spec.features],
        lambda y, p: tabular_model.evaluate(spec.task, y, p),
    )


def _onnx_all(s: Subject, scorer: Any, test: pd.DataFrame, names: list[str]) -> np.ndarray:
    return scorer.predict_columns({n: test[n].to_numpy() for n in names})


def tabular_part(
    s: Subject,
    mv: Any,
    files: dict[str, bytes],
    decision: Decision,
    store: ArtifactStore,
    latency_rows: int,
    warmup_rows: int,
) -> dict[str, Any]:
    """One tabular production model, re-validated on its own lineage's records."""
    return run_part(
        mv,
        decision,
        lambda part: _measure_tabular(s, files, decision, store, part, latency_rows, warmup_rows),
    )


def _measure_tabular(
    s: Subject,
    files: dict[str, bytes],
    decision: Decision,
    store: ArtifactStore,
    part: dict[str, Any],
    latency_rows: int,
    warmup_rows: int,
) -> dict[str, Any]:
    if "model.onnx" not in files:
        raise PartFailed(f"its MLflow run holds no ONNX file: {failed_gates(decision)}")
    onnx_sha = sha256_bytes(files["model.onnx"])
    facts = decision.evidence.facts
    used = part["lineage"]
    used.update(onnx_sha256=onnx_sha, raw=s.chain.raw, report=s.chain.report)
    report_sha, raw_sha = facts.get("report_sha256"), facts.get("raw_sha256")
    if not report_sha or not raw_sha:
        raise PartFailed(
            f"the platform's records hold no validated lineage for ONNX {onnx_sha[:12]} "
            f"({failed_gates(decision)})"
        )
    content = store.content()
    report = json.loads(content.ref_for(s.chain.report, report_sha, ".json").read_verified())
    inputs = report["inputs"]
    if inputs.get(s.chain.export) != onnx_sha:
        raise PartFailed(
            f"report {report_sha[:12]} judged ONNX {str(inputs.get(s.chain.export))[:12]}, "
            f"not the production bytes {onnx_sha[:12]}"
        )
    used.update(
        report_sha256=report_sha,
        report_run_id=facts.get("report_run_id"),
        raw_sha256=raw_sha,
        splits_sha256=inputs[s.splits],
        model_sha256=inputs[s.model],
    )
    raw = read_parquet_bytes(content.ref_for(s.chain.raw, raw_sha, ".parquet").read_verified())
    splits = content.ref_for(s.splits, inputs[s.splits], ".parquet").read_verified()
    model_bytes = content.ref_for(s.model, inputs[s.model], ".skops").read_verified()
    df = read_parquet_bytes(splits)
    test = df[df["split"] == "test"].reset_index(drop=True)
    label = s.spec.label
    y = test[label].to_numpy()
    native, scorer, names, metrics = _scorers(s, model_bytes, files["model.onnx"])
    p_native, p_onnx = native(test[names]), _onnx_all(s, scorer, test, names)
    q_native, q_onnx = metrics(y, p_native), metrics(y, p_onnx)
    n = min(latency_rows, len(test))
    rows = [test.iloc[[i]][names] for i in range(n)]
    records = test[names].head(n).to_dict("records")
    warm = min(warmup_rows, n)
    lat_native = latencies_ms(lambda i: native(rows[i]), n, warm)
    lat_onnx = latencies_ms(lambda i: scorer.predict_records([records[i]]), n, warm)
    validated_diff = report.get("max_abs_proba_diff", report.get("max_abs_output_diff"))
    return {
        "thresholds": report["thresholds"],
        "limits": _limits(s, report["thresholds"], list(q_native)),
        "primary_metric": s.primary_metric,
        "higher_is_better": s.higher_is_better,
        "expectations": _expectations(s, raw),
        "validated": {
            "native": report["native"],
            "onnx": report["onnx"],
            "max_abs_diff": validated_diff,
        },
        "tonight": {
            "test_rows": int(len(test)),
            "native": q_native,
            "onnx": q_onnx,
            "relative_delta": {
                m: abs(q_onnx[m] - q_native[m]) / max(abs(q_native[m]), 1e-12) for m in q_native
            },
            "max_abs_diff": float(np.max(np.abs(p_native - p_onnx))),
            "latency": {
                "rows": n,
                "native_p95_ms": float(np.percentile(lat_native, 95)),
                "onnx_p95_ms": float(np.percentile(lat_onnx, 95)),
            },
        },
    }
