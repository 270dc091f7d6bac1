"""A real `dagster-daemon run` over a small sharded code location, for tests/test_shards.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, RunsFilter

from ml_assets.platform.dsn import with_database
from tests.conftest import REPO, fresh_vector_database

LOCATION = """
import dagster as dg
from pathlib import Path
from dataclasses import replace
from ml_assets.components.search_index.embedder_assets import embedding_model_onnx
from ml_assets.components.search_index.assets import build_search_corpus
from ml_assets.components.search_index.shard_assets import (
    build_embedding_shards,
    build_sharded_index,
)
from ml_assets.platform.catalog import Catalog
from ml_assets.search.corpus import default_queries_path
from ml_assets.search.spec import shipped
from ml_assets.resources.defaults import resource_defs
from ml_assets.components.search_index.reindex_shards_sensor import sharded_jobs

spec = replace(shipped(), corpus_path=Path({corpus!r}), queries_path=default_queries_path(),
               shards={shards}, labelled_sets=(), variant={variant!r})
index_job = dg.define_asset_job("index_job", selection=["embedding_index"])
defs = dg.Definitions.merge(
    dg.Definitions(
        assets=[embedding_model_onnx, build_search_corpus(spec), build_embedding_shards(spec),
                build_sharded_index(spec)],
        jobs=[sharded_jobs(spec)[1], index_job],
    ),
    resource_defs(Catalog(index=spec)),
    dg.Definitions(executor=dg.in_process_executor),
)
"""


@pytest.fixture(scope="module", name="daemon")
def daemon_fixture(shards_env, pg_dsn, mlflow_resource):
    """`dagster-daemon run` on the repo's dagster.yaml (its queue: max_concurrent_runs 2)."""
    base, shards = shards_env["base"], shards_env["spec"].shards
    home = base / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    # The repo's queue and limits, polled every second instead of Dagster's 5 s, so that each
    # queued shard run starts as soon as a slot frees (the backfill daemon's own 30 s loop is
    # fixed in Dagster: no setting shortens it).
    with open(home / "dagster.yaml", "a") as config:
        config.write("\nrun_queue:\n  dequeue_interval_seconds: 1\n")
    (base / "location.py").write_text(
        LOCATION.format(
            corpus=str(shards_env["corpus"]), shards=shards, variant=shards_env["spec"].variant
        )
    )
    (base / "workspace.yaml").write_text(
        f"load_from:\n  - python_file:\n      relative_path: {base / 'location.py'}\n"
        f"      working_directory: {REPO}\n      location_name: shards\n"
    )
    fresh_vector_database(pg_dsn, "dagster_shards")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "ML_"))},
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": with_database(pg_dsn, "dagster_shards", "psycopg2"),
        "ML_ARTIFACT_ROOT": str(shards_env["root"]),
        "ML_VECTOR_PG_DSN": shards_env["sharded"],
        "MLFLOW_TRACKING_URI": mlflow_resource.tracking_uri,
        "PYTHONPATH": str(REPO),
    }
    bin_dir = Path(sys.executable).parent
    # The README's command: two shard runs may embed at once.
    subprocess.run(
        [bin_dir / "dagster", "instance", "concurrency", "set", "embedder", "2"],
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    log = open(base / "daemon.log", "w+")
    proc = subprocess.Popen(
        [bin_dir / "dagster-daemon", "run", "-w", str(base / "workspace.yaml")],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as environ:
        for k in ("DAGSTER_HOME", "DAGSTER_PG_URL"):
            environ.setenv(k, env[k])
        instance = DagsterInstance.get()
        try:
            yield {"env": env, "instance": instance, "bin": bin_dir, "base": base, "log": log}
        finally:
            instance.dispose()
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def wait_runs(daemon, job: str, count: int, timeout_s: float = 420) -> list:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = daemon["instance"].get_run_records(RunsFilter(job_name=job))
        if len(runs) >= count and all(r.dagster_run.is_finished for r in runs):
            return runs
        time.sleep(2)
    daemon["log"].flush()
    pytest.fail(
        f"{job}: {count} runs did not finish:\n"
        + (daemon["base"] / "daemon.log").read_text()[-4000:]
    )
