"""Ops: the nightly validation and smoke runs as daily-partitioned assets with blocking
regression checks, and the recorded action that adopts a smoke baseline.

Each night writes `<ML_ARTIFACT_ROOT>/nightly/<asset>/<YYYY-MM-DD>.json`, completed or failed
with the reason, so a night is never silently a pass; the trend is read back from those files.
"""

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSelection,
    Config,
    DailyPartitionsDefinition,
    Definitions,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Output,
    asset,
    define_asset_job,
    job,
    op,
)
from pydantic import Field

from ml_assets.assets.search import load_embedder
from ml_assets.assets.serving import SMOKE_TRANSACTION
from ml_assets.assets.validation import ExportValidationConfig, latencies_ms
from ml_assets.core import nightly, promotion
from ml_assets.core.alerts import send_alert
from ml_assets.core.artifacts import ArtifactRef, atomic_write
from ml_assets.core.corpus import load_queries
from ml_assets.core.expectations import validate_transactions
from ml_assets.core.fraud_data import FEATURES, LABEL
from ml_assets.core.fraud_model import from_skops_bytes, quality
from ml_assets.core.fraud_scorer import OnnxFraudScorer
from ml_assets.core.hashing import canonical_json, read_parquet_bytes, sha256_bytes
from ml_assets.core.plots import md_image
from ml_assets.core.search import FusionWeights
from ml_assets.core.search_eval import evaluate
from ml_assets.core.serving_bundle import EMBEDDER, FRAUD, REGISTERED
from ml_assets.dagster_records import DagsterRecords
from ml_assets.provenance import hashed_output, md_table, timed
from ml_assets.resources.bento import BentoResource
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.postgres import PostgresResource
from ml_assets.resources.storage import ArtifactStore
from ml_assets.resources.storage import latest_ref as stored_ref
from ml_assets.serving_gate import production_version
from ml_assets.serving_process import start_server

GROUP = "ops"
DAILY = DailyPartitionsDefinition(start_date="2026-11-01", timezone="UTC")
VALIDATION, SMOKE = "nightly_validation", "nightly_smoke"
VALIDATION_CODE_VERSION, SMOKE_CODE_VERSION = "nightly_validation@1", "nightly_smoke@1"
SEARCH_TOLERANCE = 0.02  # SearchQualityConfig.tolerance, the hybrid_not_worse threshold
EMBED_TEXTS = ["Henry Hub balance-of-month gas", "EUA Dec futures"]


def nightly_dir(store: ArtifactStore, asset_name: str) -> Path:
    return Path(store.base_dir) / "nightly" / asset_name


def latest_ref(store: ArtifactStore, asset_name: str) -> ArtifactRef:
    """The latest materialization's ref, as ArtifactRefIOManager stored it."""
    ref = stored_ref(store.base_dir, asset_name)
    if ref is None:
        raise Failure(f"{asset_name} has never been materialized; materialize it first.")
    return ref


def alert(context: AssetExecutionContext, event: str, reasons: list[str], **extra: Any) -> None:
    """POST the alert to ML_ALERT_WEBHOOK_URL when set; the run's failure is the other channel."""
    payload = {
        "event": event,
        "asset": context.asset_key.to_user_string(),
        "partition": context.partition_key,
        "run_id": context.run.run_id,
        "reasons": reasons,
        **extra,
    }
    send_alert(payload, context.log)


@contextmanager
def recorded_night(context: AssetExecutionContext, store: ArtifactStore) -> Iterator[None]:
    """Anything that stops the night is written down as a failed night, then fails the run."""
    try:
        yield
    except Exception as exc:
        reason = exc.description if isinstance(exc, Failure) else f"{type(exc).__name__}: {exc}"
        name, key = context.asset_key.to_user_string(), context.partition_key
        record = {
            "schema": nightly.SMOKE_SCHEMA if name == SMOKE else nightly.VALIDATION_SCHEMA,
            "partition": key,
            "status": nightly.FAILED,
            "reason": reason,
            "run_id": context.run.run_id,
            "recorded_at": datetime.now(UTC).isoformat(),
        }
        atomic_write(nightly_dir(store, name) / f"{key}.json", canonical_json(record))
        alert(context, "ml.nightly.failed", [reason])
        raise Failure(f"{name} {key} is recorded as failed: {reason}") from exc


def _download_verified(client: Any, run_id: str, path: str, sha256: str, label: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="ml-nightly-") as tmp:
        data = Path(client.download_artifacts(run_id, path, tmp)).read_bytes()
    if sha256_bytes(data) != sha256:
        raise Failure(f"{label}: {path} no longer hashes to {sha256[:12]}; it was altered.")
    return data


def _fraud_parity(
    client: Any, store: ArtifactStore, config: "NightlyValidationConfig"
) -> dict[str, Any]:
    """The production fraud version, re-fetched and verified, scored native vs ONNX."""
    mv = production_version(client, REGISTERED[FRAUD])
    tags, label = dict(mv.tags), f"{mv.name} v{mv.version}"
    missing = {"model_sha256", "onnx_sha256", "training_splits_sha256"} - tags.keys()
    if missing:
        raise Failure(f"{label} lacks tags {sorted(missing)}; it was not built by this platform.")
    model = from_skops_bytes(
        _download_verified(client, mv.run_id, "fraud_model.skops", tags["model_sha256"], label)
    )
    scorer = OnnxFraudScorer(
        _download_verified(client, mv.run_id, "onnx/fraud_model.onnx", tags["onnx_sha256"], label)
    )
    splits = store.content().ref_for("training_splits", tags["training_splits_sha256"], ".parquet")
    df = read_parquet_bytes(splits.read_verified())
    test = df[df["split"] == "test"].reset_index(drop=True)
    y = test[LABEL].to_numpy()
    p_native = model.predict_proba(test[list(FEATURES)])[:, 1]
    p_onnx = scorer.predict_proba(test)
    q_native, q_onnx = quality(y, p_native), quality(y, p_onnx)
    n = min(config.latency_rows, len(test))
    rows = [test.iloc[[i]][list(FEATURES)] for i in range(n)]
    records = test[list(FEATURES)].head(n).to_dict("records")
    warm = min(config.warmup_rows, n)
    lat_native = latencies_ms(lambda i: model.predict_proba(rows[i]), n, warm)
    lat_onnx = latencies_ms(lambda i: scorer.predict_records([records[i]]), n, warm)
    return {
        "version": f"{mv.name}@{mv.version}",
        "onnx_sha256": tags["onnx_sha256"],
        "test_rows": int(len(test)),
        "native": q_native,
        "onnx": q_onnx,
        "relative_delta": {
            k: abs(q_onnx[k] - q_native[k]) / max(q_native[k], 1e-12) for k in q_native
        },
        "max_abs_proba_diff": float(np.max(np.abs(p_native - p_onnx))),
        "latency": {
            "rows": n,
            "native_p95_ms": float(np.percentile(lat_native, 95)),
            "onnx_p95_ms": float(np.percentile(lat_onnx, 95)),
        },
    }


def _search_quality(store: ArtifactStore, postgres: PostgresResource) -> dict[str, Any]:
    """The labelled queries against the live index, with the fusion the last report tuned."""
    report_ref = latest_ref(store, "search_quality_report")
    report = json.loads(report_ref.read_verified())
    index = latest_ref(store, "embedding_index")
    embedder, model_sha = load_embedder(
        store, latest_ref(store, "embedding_model_onnx"), "int8", index.extra["model_sha256"]
    )
    queries = load_queries()
    # One query per call, as /search embeds it (int8 quantizes activations per input tensor).
    vectors = np.stack([embedder.embed([q.query])[0] for q in queries])
    with postgres.connect() as conn:
        scores = evaluate(conn, queries, vectors, FusionWeights(**report["fusion"]))
    tonight = {s.mode: s.ndcg_at_10 for s in scores if s.split == "eval"}
    reported = {r["mode"]: r["ndcg_at_10"] for r in report["scores"] if r["split"] == "eval"}
    return {
        "report_sha256": report_ref.sha256,
        "index_sha256": index.sha256,
        "embedder_sha256": model_sha,
        "eval_ndcg_at_10": tonight,
        "reported_eval_ndcg_at_10": reported,
        "hybrid_ndcg_at_10": tonight["hybrid"],
        "best_single_ndcg_at_10": max(tonight["lexical"], tonight["vector"]),
    }


class NightlyValidationConfig(Config):
    latency_rows: int = Field(default=200, description="Test rows timed one at a time.")
    warmup_rows: int = 20


@asset(
    group_name=GROUP,
    code_version=VALIDATION_CODE_VERSION,
    partitions_def=DAILY,
    deps=["raw_transactions", "export_validation_report", "search_quality_report"],
    check_specs=[
        AssetCheckSpec(
            "no_regression",
            asset=VALIDATION,
            blocking=True,
            description="Tonight within the original checks' thresholds, also vs the last night.",
        )
    ],
)
def nightly_validation(
    context: AssetExecutionContext,
    config: NightlyValidationConfig,
    store: ArtifactStore,
    mlflow: MlflowResource,
    postgres: PostgresResource,
) -> Iterator[Output[ArtifactRef] | AssetCheckResult]:
    """Expectations, export parity and search quality re-run on the production models."""
    key, out_dir = context.partition_key, nightly_dir(store, VALIDATION)
    with timed() as t, recorded_night(context, store):
        raw = latest_ref(store, "raw_transactions")
        outcomes = validate_transactions(read_parquet_bytes(raw.read_verified()))
        export_report = json.loads(latest_ref(store, "export_validation_report").read_verified())
        thresholds = {
            **ExportValidationConfig().model_dump(
                include={"max_quality_delta", "max_proba_diff", "max_latency_regression"}
            ),
            **export_report["thresholds"],
            "search_tolerance": SEARCH_TOLERANCE,
        }
        client = mlflow.client
        context.log.info("re-scoring the test split with the production fraud model")
        fraud = _fraud_parity(client, store, config)
        context.log.info("re-running the labelled search queries against the live index")
        search = _search_quality(store, postgres)
        gates = []
        for role in (FRAUD, EMBEDDER):
            mv = production_version(client, REGISTERED[role])
            decision = promotion.evaluate(
                client, mv.name, str(mv.version), records=DagsterRecords(context.instance)
            )
            gates += [
                {"model": f"{mv.name}@{mv.version}", **g.__dict__}
                for g in decision.gates
                if g.name != "champion"
            ]
        record = {
            "schema": nightly.VALIDATION_SCHEMA,
            "partition": key,
            "status": nightly.COMPLETED,
            "raw_transactions_sha256": raw.sha256,
            "expectations": {
                "evaluated": len(outcomes),
                "passed": all(o.success for o in outcomes),
                "failed": [f"{o.column}: {o.expectation}" for o in outcomes if not o.success],
            },
            "thresholds": thresholds,
            "fraud": fraud,
            "search": search,
            "gates": gates,
        }
        earlier = nightly.read_records(out_dir, before=key)
        regressions = nightly.validation_regressions(record, earlier)
        record["regressions"] = regressions
        atomic_write(out_dir / f"{key}.json", canonical_json(record))
        ref = store.content().put(
            VALIDATION, canonical_json(record), ".json", code_version=VALIDATION_CODE_VERSION
        )
    if regressions:
        alert(context, "ml.nightly.regression", regressions, record=str(out_dir / f"{key}.json"))
    nights = [*earlier, record]
    chart = nightly.trend_png(
        nights,
        {
            "fraud ONNX PR-AUC": "fraud.onnx.pr_auc",
            "fraud ONNX ROC-AUC": "fraud.onnx.roc_auc",
            "search hybrid nDCG@10": "search.hybrid_ndcg_at_10",
            "search vector nDCG@10": "search.eval_ndcg_at_10.vector",
        },
        "Nightly validation",
    )
    table = [
        {
            "night": n["partition"],
            "status": n["status"],
            "PR-AUC": n.get("fraud", {}).get("onnx", {}).get("pr_auc", "-"),
            "max |Δp|": n.get("fraud", {}).get("max_abs_proba_diff", "-"),
            "hybrid nDCG@10": n.get("search", {}).get("hybrid_ndcg_at_10", "-"),
            "regressions / reason": len(n["regressions"]) if "regressions" in n else n["reason"],
        }
        for n in nights[-14:]
    ]
    yield hashed_output(
        ref,
        wall_time_s=t["seconds"],
        metadata={
            "trend": MetadataValue.md(md_image(chart, "nightly validation trend")),
            "nights": MetadataValue.md(md_table(table)),
            "fraud_version": MetadataValue.text(fraud["version"]),
            "onnx_pr_auc": MetadataValue.float(fraud["onnx"]["pr_auc"]),
            "max_abs_proba_diff": MetadataValue.float(fraud["max_abs_proba_diff"]),
            "hybrid_ndcg_at_10": MetadataValue.float(search["hybrid_ndcg_at_10"]),
            "expectations_passed": MetadataValue.bool(record["expectations"]["passed"]),
        },
    )
    yield AssetCheckResult(
        check_name="no_regression",
        passed=not regressions,
        severity=AssetCheckSeverity.ERROR,
        description="; ".join(regressions)[:2000] or "every check within its threshold",
        metadata={"regressions": MetadataValue.json(regressions)},
    )


class NightlySmokeConfig(Config):
    target_url: str | None = Field(
        default=None, description="Load this URL instead of serving the latest Bento locally."
    )
    bento_tag: str | None = Field(
        default=None, description="Serve this Bento instead of the latest serving_bundle's."
    )
    warmup_users: int = 10
    ramp_users: int = 50
    peak_users: int = 100
    warmup_s: float = 60.0
    ramp_s: float = 120.0
    peak_s: float = 300.0
    cooldown_s: float = 60.0
    wait_min_s: float = Field(default=0.5, description="Think time between a user's requests.")
    wait_max_s: float = 1.5
    workers: int = Field(default=2, description="Server workers of the locally served Bento.")
    ready_timeout_s: float = 120.0
    p95_factor: float = Field(default=1.10, description="p95 may be at most baseline x this.")
    max_error_rate: float = 0.01


def _serve_and_load(
    context: AssetExecutionContext,
    config: NightlySmokeConfig,
    bento: BentoResource,
    tag: str,
    spec: dict[str, Any],
    tmp: Path,
) -> dict[str, Any]:
    if config.target_url:
        return _load(spec, config.target_url, tmp)
    server = start_server(
        tag,
        bentoml_home=bento.home,
        workers=config.workers,
        env={"ML_SERVING_RELEASE_FILE": str(tmp / "release.json")},
        log_path=tmp / "serve.log",
    )
    with server:
        try:
            ready_s = server.wait_ready(timeout_s=config.ready_timeout_s)
        except (RuntimeError, TimeoutError) as exc:
            raise Failure(f"the Bento {tag} did not become ready: {exc}"[:3000]) from exc
        context.log.info(f"{tag} ready on {server.url} in {ready_s:.1f} s")
        return _load(spec, server.url, tmp)


def _load(spec: dict[str, Any], url: str, tmp: Path) -> dict[str, Any]:
    """The load profile in a child process (Locust's gevent patching stays out of Dagster's)."""
    path = tmp / "load.json"
    path.write_text(json.dumps({**spec, "url": url}))
    budget = sum(s["duration_s"] for s in spec["stages"]) + 120
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ml_assets.core.nightly", str(path)],
            capture_output=True,
            text=True,
            timeout=budget,
        )
    except subprocess.TimeoutExpired as exc:
        raise Failure(f"the load run did not finish within {budget:.0f} s") from exc
    if proc.returncode != 0:
        raise Failure(f"the load tool failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "url": url}


def baseline_path(store: ArtifactStore) -> Path:
    return nightly_dir(store, SMOKE) / "baseline.json"


def read_baseline(store: ArtifactStore) -> dict[str, Any] | None:
    """The adopted smoke baseline, or None before the first adoption."""
    path = baseline_path(store)
    return json.loads(path.read_text()) if path.exists() else None


@asset(
    group_name=GROUP,
    code_version=SMOKE_CODE_VERSION,
    partitions_def=DAILY,
    deps=["serving_bundle"],
    check_specs=[
        AssetCheckSpec(
            "no_regression",
            asset=SMOKE,
            blocking=True,
            description="p95 <= adopted baseline x 1.10 and error rate <= 1% per endpoint.",
        )
    ],
)
def nightly_smoke(
    context: AssetExecutionContext,
    config: NightlySmokeConfig,
    store: ArtifactStore,
    bento: BentoResource,
) -> Iterator[Output[ArtifactRef] | AssetCheckResult]:
    """The production Bento under the warm-up → ramp → peak → cool-down load profile."""
    key, out_dir = context.partition_key, nightly_dir(store, SMOKE)
    with timed() as t, recorded_night(context, store):
        stages = nightly.load_profile(
            warmup_users=config.warmup_users,
            ramp_users=config.ramp_users,
            peak_users=config.peak_users,
            warmup_s=config.warmup_s,
            ramp_s=config.ramp_s,
            peak_s=config.peak_s,
            cooldown_s=config.cooldown_s,
        )
        bundle = latest_ref(store, "serving_bundle")
        manifest = json.loads(bundle.read_verified())
        tag = config.bento_tag or bundle.extra["bento_tag"]
        spec = {
            "stages": nightly.stages_as_dicts(stages),
            "wait_min_s": config.wait_min_s,
            "wait_max_s": config.wait_max_s,
            "transaction": SMOKE_TRANSACTION,
            "texts": EMBED_TEXTS,
            "expected_versions": {
                role: f"{m['registered_model']}@{m['version']}"
                for role, m in manifest["models"].items()
            },
        }
        context.log.info(
            f"load profile against {config.target_url or tag}: "
            + ", ".join(f"{s.name} {s.users} users {s.duration_s:g} s" for s in stages)
        )
        started = datetime.now(UTC).isoformat()
        with tempfile.TemporaryDirectory(prefix="ml-nightly-smoke-") as tmp:
            result = _serve_and_load(context, config, bento, tag, spec, Path(tmp))
        baseline = read_baseline(store)
        regressions = nightly.smoke_regressions(
            result["endpoints"],
            baseline,
            p95_factor=config.p95_factor,
            max_error_rate=config.max_error_rate,
        )
        record = {
            "schema": nightly.SMOKE_SCHEMA,
            "partition": key,
            "status": nightly.COMPLETED,
            "started_at": started,
            "target": result["url"] if config.target_url else f"bento {tag} (loopback)",
            "bento_tag": tag,
            "bundle_sha256": bundle.sha256,
            "stages": result["stages"],
            "wall_s": result["wall_s"],
            "endpoints": result["endpoints"],
            "errors": result["errors"],
            "baseline": None if baseline is None else baseline["partition"],
            "regressions": regressions,
        }
        atomic_write(out_dir / f"{key}.json", canonical_json(record))
        ref = store.content().put(
            SMOKE, canonical_json(record), ".json", code_version=SMOKE_CODE_VERSION
        )
    if regressions:
        alert(context, "ml.nightly.regression", regressions, record=str(out_dir / f"{key}.json"))
    base = (baseline or {}).get("endpoints", {})
    rows = [
        {
            "endpoint": name,
            "requests": s["requests"],
            "error rate": f"{s['error_rate']:.2%}",
            "p50 ms": s["p50_ms"],
            "p95 ms": s["p95_ms"],
            "p99 ms": s["p99_ms"],
            "req/s": round(s["rps"], 1),
            "baseline p95 ms": base.get(name, {}).get("p95_ms", "-"),
        }
        for name, s in sorted(result["endpoints"].items())
    ]
    nights = [*nightly.read_records(out_dir, before=key), record]
    chart = nightly.trend_png(
        nights,
        {f"{e} p95 ms": f"endpoints.{e}.p95_ms" for e in nightly.ENDPOINTS},
        "Nightly smoke: p95 latency under the load profile",
    )
    yield hashed_output(
        ref,
        wall_time_s=t["seconds"],
        metadata={
            "results": MetadataValue.md(md_table(rows)),
            "trend": MetadataValue.md(md_image(chart, "nightly smoke trend")),
            "bento_tag": MetadataValue.text(tag),
            "baseline": MetadataValue.text(record["baseline"] or "none adopted"),
            **{
                f"{name.strip('/').replace('/', '_')}_p95_ms": MetadataValue.float(s["p95_ms"])
                for name, s in result["endpoints"].items()
            },
        },
    )
    yield AssetCheckResult(
        check_name="no_regression",
        passed=not regressions,
        severity=AssetCheckSeverity.ERROR,
        description="; ".join(regressions)[:2000]
        or (
            f"within baseline {baseline['partition']}"
            if baseline
            else "error rates within limit; no p95 baseline adopted (set_smoke_baseline_job)"
        ),
        metadata={"regressions": MetadataValue.json(regressions)},
    )


class AdoptBaselineConfig(Config):
    partition: str = Field(description="The night (YYYY-MM-DD) whose results become the baseline.")
    reason: str = Field(description="Why this night is the new reference; recorded.")
    actor: str = Field(default_factory=lambda: os.environ.get("USER", "dagster"))


@op
def adopt_smoke_baseline(
    context: OpExecutionContext, config: AdoptBaselineConfig, store: ArtifactStore
) -> Output[None]:
    """Adopt one completed smoke night as the p95 baseline, recording who, when and why."""
    if not config.reason.strip():
        raise Failure("adopting a baseline needs a reason")
    path = nightly_dir(store, SMOKE) / f"{config.partition}.json"
    if not path.exists():
        raise Failure(f"no nightly_smoke record for {config.partition}; run that night first.")
    data = path.read_bytes()
    night = json.loads(data)
    if night["status"] != nightly.COMPLETED:
        raise Failure(f"{config.partition} failed ({night['reason']}); it cannot be a baseline.")
    previous = read_baseline(store)
    baseline = {
        "schema": nightly.BASELINE_SCHEMA,
        "partition": config.partition,
        "record_sha256": sha256_bytes(data),
        "endpoints": night["endpoints"],
        "set_by": config.actor,
        "set_at": datetime.now(UTC).isoformat(),
        "reason": config.reason,
        "run_id": context.run.run_id,
        "previous": None if previous is None else previous["partition"],
    }
    atomic_write(baseline_path(store), canonical_json(baseline))
    with open(baseline_path(store).with_name("baseline_history.jsonl"), "a") as fh:
        fh.write(json.dumps(baseline, sort_keys=True) + "\n")
    context.log.info(f"smoke baseline is now {config.partition} (was {baseline['previous']})")
    return Output(
        None,
        metadata={
            "partition": MetadataValue.text(config.partition),
            "set_by": MetadataValue.text(config.actor),
            "reason": MetadataValue.text(config.reason),
            "p95_ms": MetadataValue.json({k: v["p95_ms"] for k, v in night["endpoints"].items()}),
        },
    )


@job(description="Adopt a nightly_smoke night as the p95 baseline (an explicit, recorded act).")
def set_smoke_baseline_job() -> None:
    adopt_smoke_baseline()


nightly_validation_job = define_asset_job(
    "nightly_validation_job",
    selection=AssetSelection.assets(nightly_validation),
    description="Re-run expectations, export parity and search quality on the production models.",
)
nightly_smoke_job = define_asset_job(
    "nightly_smoke_job",
    selection=AssetSelection.assets(nightly_smoke),
    description="Load the production Bento with the nightly profile; compare with the baseline.",
)

defs = Definitions(
    assets=[nightly_validation, nightly_smoke],
    jobs=[nightly_validation_job, nightly_smoke_job, set_smoke_baseline_job],
)
