"""Helpers for reading what a run materialized back out of the Dagster instance."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from dagster import AssetKey, DagsterInstance, ExecuteInProcessResult, materialize

from ml_assets.bundle.assets import serving_bundle
from ml_assets.components.defs_folder import load_catalog, load_defs_folder
from ml_assets.definitions import build_definitions
from ml_assets.platform import promotion
from ml_assets.platform.artifacts import ArtifactRef
from ml_assets.platform.dagster_records import DagsterRecords
from ml_assets.resources.defaults import local_resources
from ml_assets.resources.storage import latest_ref
from tests.conftest import TEST_ROWS

# The fraud lineage (ml_assets/lineages/fraud/defs.yaml): its stages' asset keys, in order.
FRAUD = "fraud"
STAGES = ("raw_data", "splits", "model", "onnx", "export_validation_report")
LINEAGE = tuple(f"{FRAUD}/{s}" for s in STAGES)
RAW, SPLITS, MODEL, ONNX, REPORT = LINEAGE
# The code location, and the shipped declarations (ml_assets/lineages) its builders get.
DEFS = build_definitions()
CATALOG = load_catalog()
FRAUD_MODEL = CATALOG.lineage(FRAUD).registered_model
# The text embedder's registered model, from the SearchIndex YAML.
EMBEDDER_MODEL = CATALOG.embedder_model()


def op(stage: str, lineage: str = FRAUD) -> str:
    """The op name of a lineage stage's asset (its key joined by "__"), for run config."""
    return f"{lineage}__{stage}"


def run_config(rows: int, seed: int = 7, source_path: str | None = None, **ops: Any) -> dict:
    """Run config of the fraud lineage: the raw data's rows/seed/file, plus `ops` by stage
    (e.g. model={"config": {"seed": 11}})."""
    raw: dict[str, Any] = {"rows": rows, "seed": seed}
    if source_path:
        raw["source_path"] = source_path
    return {"ops": {op("raw_data"): {"config": raw}, **{op(k): v for k, v in ops.items()}}}


def data_versions(result: ExecuteInProcessResult) -> dict[str, str]:
    out = {}
    for mat in result.get_asset_materialization_events():
        m = mat.materialization
        out[m.asset_key.to_user_string()] = m.tags["dagster/data_version"]
    return out


def latest_metadata(instance: DagsterInstance, asset: str) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(AssetKey.from_user_string(asset))
    assert event is not None and event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def latest_storage_id(instance: DagsterInstance, asset: str) -> int | None:
    records = instance.fetch_materializations(AssetKey.from_user_string(asset), limit=1).records
    return records[0].storage_id if records else None


def failure_text(result: ExecuteInProcessResult) -> str:
    """Every message in the first failed step's error chain (Dagster wraps user errors)."""
    error = result.get_step_failure_events()[0].step_failure_data.error
    parts = []
    while error is not None:
        parts.append(error.message)
        error = error.cause
    return "\n".join(parts)


def assets_of_lineage(defs: Any, name: str) -> list[Any]:
    """The assets and checks of one declared lineage's chain (keys `<name>/...`), for
    `materialize`; not its daily-partitioned inference_drift, which judges served traffic."""
    items = [*(defs.assets or []), *(defs.asset_checks or [])]
    return [
        a
        for a in items
        if getattr(a, "partitions_def", None) is None
        and all(
            k.path[0] == name
            for k in (list(getattr(a, "keys", [])) or [c.asset_key for c in a.check_specs])
        )
    ]


# The fraud lineage's asset definitions (with the expectations check), for `materialize`.
FRAUD_ASSETS = assets_of_lineage(DEFS, FRAUD)


def fraud_asset(stage: str) -> Any:
    """One stage's asset definition of the fraud lineage (for a `selection`)."""
    return next(a for a in DEFS.assets or [] if AssetKey([FRAUD, stage]) in getattr(a, "keys", ()))


# The raw data, its blocking expectations check and the splits: the data half of the lineage.
FRAUD_DATA = [
    fraud_asset("raw_data"),
    *(
        c
        for c in DEFS.asset_checks or []
        if AssetKey([FRAUD, "raw_data"]) in {k.asset_key for k in c.check_keys}
    ),
    fraud_asset("splits"),
]


def promoted_and_bundled(
    search_state: dict, mlflow: Any, home: Path, reason: str, margin: float | None = None
) -> dict[str, Any]:
    """The fraud lineage materialized on a module's copy of the session's search chain, it and
    the int8 embedder promoted through the gate (`reason`, `margin`), serving_bundle built: what
    a test of the served platform starts from."""
    root, instance, dsn = search_state["root"], search_state["instance"], search_state["dsn"]
    resources = local_resources(root, mlflow, dsn, home, CATALOG)
    lineage = materialize(
        FRAUD_ASSETS, resources=resources, instance=instance, run_config=run_config(TEST_ROWS)
    )
    assert lineage.success
    version = latest_ref(root, MODEL).extra["model_version"]
    embedder = latest_ref(root, "embedding_model_onnx").extra["registered_versions"]["int8"]
    events = [
        promotion.promote(
            mlflow.client,
            dsn,
            name,
            v,
            catalog=CATALOG,
            records=DagsterRecords(instance),
            actor="pytest",
            reason=f"{reason} {name}",
            margin=margin,
        )
        for name, v in ((FRAUD_MODEL, version), (EMBEDDER_MODEL, embedder))
    ]
    bundle = materialize([serving_bundle], resources=resources, instance=instance)
    assert bundle.success
    return {
        "root": root,
        "home": home,
        "resources": resources,
        "instance": instance,
        "client": mlflow.client,
        "version": version,
        "lineage_run": lineage.run_id,
        "event": events[0],
        "bundle_md": bundle.get_asset_materialization_events()[0].materialization.metadata,
    }


def materialize_fraud(
    resources: Any,
    instance: DagsterInstance,
    rows: int = TEST_ROWS,
    seed: int = 7,
    assets: list[Any] = FRAUD_ASSETS,
    **kwargs: Any,
) -> ExecuteInProcessResult:
    """The fraud lineage (or `assets` of it) materialized from `rows` generated rows with
    `seed`; `kwargs` go to `materialize` (a selection, raise_on_error)."""
    return materialize(
        assets,
        resources=resources,
        instance=instance,
        run_config=run_config(rows, seed),
        **kwargs,
    )


def materialize_shipped_curves(resources: Any, instance: DagsterInstance) -> ExecuteInProcessResult:
    """The shipped curves lineage (ml_assets/lineages/curves) from 5,000 rows."""
    curves = assets_of_lineage(load_defs_folder().defs, "curves")
    return materialize(
        curves,
        resources=resources,
        instance=instance,
        run_config={"ops": {"curves__raw_data": {"config": {"rows": 5_000}}}},
    )


def rerun_on_stored(upstream: str, stage: str, resources: Any, instance: DagsterInstance):
    """The fraud lineage's `stage` alone, on `upstream`'s stored output; a failure is returned."""
    return materialize(
        [fraud_asset(upstream).to_source_asset(), fraud_asset(stage)],
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )


def wait_until_up(
    url: str, proc: subprocess.Popen, log: Path, what: str, timeout_s: float = 120
) -> None:
    """Until GET `url` answers 200; kill `proc` and fail the test with its log if it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail(f"{what} did not start:\n{log.read_text()[-3000:]}")


@contextmanager
def dagster_webserver(dagster_home: str, log: Path) -> Iterator[str]:
    """A real `dagster-webserver` for the code location on the instance at `dagster_home`;
    yields its URL once /server_info answers (fails the test if it never does)."""
    from ml_assets.bundle.serving_process import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster-webserver")),
            *("-m", "ml_assets.definitions", "-h", "127.0.0.1", "-p", str(port)),
        ],
        env={**os.environ, "DAGSTER_HOME": dagster_home},
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/server_info", proc, log, "dagster-webserver", timeout_s=180)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def materialized_ref(root: Path, asset: str) -> ArtifactRef:
    """The newest ref of `asset` under the artifact root `root`; fails if it was never written."""
    ref = latest_ref(root, asset)
    assert ref is not None, f"{asset} was not materialized"
    return ref


@pytest.fixture(scope="module", name="vector_dsn")
def search_state_dsn(search_state: dict) -> str:
    """A module's `vector_dsn`: its copy of the session's search index (conftest.py
    search_state). A module takes it with `from tests.helpers import search_state_dsn`."""
    return search_state["dsn"]


# The curves lineage's asset keys, and the checks every lineage's chain runs.
CURVES_LINEAGE = tuple(f"curves/{s}" for s in STAGES)
ALL_CHECKS = {"expectations", "quality_delta", "output_parity", "latency"}


def metadata_of(result: ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    for e in result.get_asset_materialization_events():
        if e.materialization.asset_key.to_user_string() == asset:
            return {k: v.value for k, v in e.materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


def checks_of(result: ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def at_once(clients: int, call: Callable[[int], None], timeout_s: float = 120) -> None:
    """`call(0)` ... `call(clients - 1)`, one thread each, released together by a barrier."""
    barrier = threading.Barrier(clients)

    def run(i: int) -> None:
        barrier.wait()
        call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout_s)


def dg_env(dagster_home: Path) -> dict[str, str]:
    """The environment for a `dg` subprocess: this venv first on PATH, its own DAGSTER_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    venv = Path(sys.executable).parent.parent
    env.update(
        DAGSTER_HOME=str(dagster_home),
        VIRTUAL_ENV=str(venv),
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def run_dg(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    dg = Path(sys.executable).parent / "dg"
    return subprocess.run(
        [str(dg), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
