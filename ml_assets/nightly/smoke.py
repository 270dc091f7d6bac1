"""The nightly smoke run: the production Bento under the load profile, a blocking p95/error
check against an adopted baseline, and the recorded action that adopts a baseline."""

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetSelection,
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Output,
    ResourceParam,
    define_asset_job,
    job,
    op,
)
from pydantic import Field

from ml_assets.bundle.serving_process import start_server
from ml_assets.nightly import records
from ml_assets.nightly.common import (
    SMOKE,
    newest_bundle,
    nightly_asset,
    nightly_dir,
    no_regression_result,
    not_yet_served,
    recorded_night,
)
from ml_assets.platform.artifacts import ArtifactRef, atomic_write
from ml_assets.platform.catalog import Catalog
from ml_assets.platform.child_json import child_answer
from ml_assets.platform.dagster_records import DagsterRecords
from ml_assets.platform.daily import alert
from ml_assets.platform.hashing import canonical_json, sha256_bytes
from ml_assets.platform.plots import md_image
from ml_assets.platform.provenance import hashed_output, md_table, timed
from ml_assets.platform.serving_bundle import entries_of, score_role, served_lineages
from ml_assets.resources.bento import BentoResource
from ml_assets.resources.storage import ArtifactStore

SMOKE_CODE_VERSION = "nightly_smoke@1"
EMBED_TEXTS = ["Henry Hub balance-of-month gas", "EUA Dec futures"]


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
            [sys.executable, "-m", "ml_assets.nightly.records", str(path)],
            capture_output=True,
            text=True,
            timeout=budget,
        )
    except subprocess.TimeoutExpired as exc:
        raise Failure(f"the load run did not finish within {budget:.0f} s") from exc
    if proc.returncode != 0:
        raise Failure(f"the load tool failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return {**child_answer(proc.stdout), "url": url}


def baseline_path(store: ArtifactStore) -> Path:
    return nightly_dir(store, SMOKE) / "baseline.json"


def read_baseline(store: ArtifactStore) -> dict[str, Any] | None:
    """The adopted smoke baseline, or None before the first adoption."""
    path = baseline_path(store)
    return json.loads(path.read_text()) if path.exists() else None


@nightly_asset(
    SMOKE,
    SMOKE_CODE_VERSION,
    deps=["serving_bundle"],
    check="p95 <= adopted baseline x 1.10 and error rate <= 1% per endpoint.",
)
def nightly_smoke(
    context: AssetExecutionContext,
    config: NightlySmokeConfig,
    store: ArtifactStore,
    bento: BentoResource,
    catalog: ResourceParam[Catalog],
) -> Iterator[Output[ArtifactRef] | AssetCheckResult]:
    """The production Bento under the warm-up → ramp → peak → cool-down load profile."""
    key, out_dir = context.partition_key, nightly_dir(store, SMOKE)
    with timed() as t, recorded_night(context, store):
        stages = records.load_profile(
            warmup_users=config.warmup_users,
            ramp_users=config.ramp_users,
            peak_users=config.peak_users,
            warmup_s=config.warmup_s,
            ramp_s=config.ramp_s,
            peak_s=config.peak_s,
            cooldown_s=config.cooldown_s,
        )
        bundle = newest_bundle(DagsterRecords.of(context), store)
        manifest = bundle.manifest
        entries = entries_of(manifest)
        tag = config.bento_tag or bundle.bento_tag
        spec = {
            "stages": records.stages_as_dicts(stages),
            "wait_min_s": config.wait_min_s,
            "wait_max_s": config.wait_max_s,
            # /v1/score's model (the score_routes lineage) and a row inside its schema.
            "score_role": score_role(entries),
            "transaction": served_lineages(entries)[score_role(entries)].example_row(),
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
        regressions = records.smoke_regressions(
            result["endpoints"],
            baseline,
            p95_factor=config.p95_factor,
            max_error_rate=config.max_error_rate,
        )
        record = {
            "schema": records.SMOKE_SCHEMA,
            "partition": key,
            "status": records.COMPLETED,
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
            # Declared lineages the bundle does not serve yet: reported, not loaded, no failure.
            "not_yet_served": not_yet_served(manifest, catalog),
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
    nights = [*records.read_records(out_dir, before=key), record]
    chart = records.trend_png(
        nights,
        {f"{e} p95 ms": f"endpoints.{e}.p95_ms" for e in records.ENDPOINTS},
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
            "not_yet_served": MetadataValue.json(record["not_yet_served"]),
            **{
                f"{name.strip('/').replace('/', '_')}_p95_ms": MetadataValue.float(s["p95_ms"])
                for name, s in result["endpoints"].items()
            },
        },
    )
    yield no_regression_result(
        regressions,
        f"within baseline {baseline['partition']}"
        if baseline
        else "error rates within limit; no p95 baseline adopted (set_smoke_baseline_job)",
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
    if night["status"] != records.COMPLETED:
        raise Failure(f"{config.partition} failed ({night['reason']}); it cannot be a baseline.")
    previous = read_baseline(store)
    baseline = {
        "schema": records.BASELINE_SCHEMA,
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


nightly_smoke_job = define_asset_job(
    "nightly_smoke_job",
    selection=AssetSelection.assets(nightly_smoke),
    description="Load the production Bento with the nightly profile; compare with the baseline.",
)
