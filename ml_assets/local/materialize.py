"""What `ml-assets up` materializes on a start: the jobs of the asset graph that hold an asset
never materialized (each declared lineage's, then the search lineage's), run one after the other
in one runner process (ml_assets/local/job_runner.py), or, for a sharded index, the search part
as one asset backfill through the daemon's queue (ml_assets/local/backfill.py).
"""

from __future__ import annotations

import os
import urllib.error
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from ml_assets.local.env import REPO, say

if TYPE_CHECKING:
    from dagster import Definitions

    from ml_assets.platform.catalog import Catalog

# The whole asset graph: each declared lineage's job, then the search lineage's. `--config` is
# the run config of the first lineage's job (the one that declares `score_routes`).
SEARCH_JOB = "search_lineage_job"
# A sharded index's first build (the export, every shard, the index, the report) on 2 cores.
BACKFILL_TIMEOUT_S = 3600


def load_catalog() -> Catalog:
    """The defs folder's declarations (ml_assets/components/defs_folder.py)."""
    # Dagster and the defs folder are heavy: imported when a step needs them, not for --help.
    from ml_assets.components.defs_folder import load_catalog as load

    return load()


@cache
def code_location() -> Definitions:
    """The code location's Definitions, built once per `up` (after `prepare` set the env)."""
    from ml_assets.definitions import build_definitions

    return build_definitions()


def unmaterialized(env: dict[str, str], jobs: tuple[str, ...]) -> bool:
    """True when any asset of `jobs` was never materialized (partitioned ops assets and the
    optional deployment step are not part of the first start)."""
    os.environ.update(env)
    from dagster import AssetKey, DagsterInstance

    defs = code_location()

    keys = {
        k
        for job in jobs
        for k in defs.resolve_job_def(job).asset_layer.executable_asset_keys
        if k.to_user_string() != "serving_deployment"
    }
    with DagsterInstance.get() as instance:
        return any(
            instance.get_latest_materialization_event(AssetKey(k.path)) is None for k in keys
        )


def all_jobs(env: dict[str, str]) -> tuple[str, ...]:
    """Each declared lineage's job (ml_assets/lineages; the one behind /v1/score first), then
    the search lineage's."""
    os.environ.update(env)
    defs = code_location()

    known = {job.name for job in defs.resolve_all_job_defs()}
    lineages = sorted(load_catalog().lineages, key=lambda s: (not s.score_routes, s.name))
    return (
        *(f"{s.name}_lineage_job" for s in lineages if f"{s.name}_lineage_job" in known),
        SEARCH_JOB,
    )


def execute_jobs(
    jobs: list[str],
    env: dict[str, str],
    log_path: Path,
    config: Path | None = None,
    dagster_url: str | None = None,
) -> list[str]:
    """The jobs' runs one after the other in one process (the code location imported once);
    Dagster's event stream goes to `log_path`, one line per asset to stderr. Returns the jobs
    that failed. `config` is the run config of the first job's run; with `dagster_url`, each
    run's start is announced with where to watch it."""
    from dagster import DagsterInstance

    from ml_assets.local.progress import run_with_progress

    def announce(job: str) -> None:
        if dagster_url:
            say(f"materializing {job} (UI: {dagster_url}/jobs/{job}; log: {log_path})")

    os.environ.update(env)
    with DagsterInstance.get() as instance:
        outcome = run_with_progress(
            jobs,
            instance=instance,
            log_path=log_path,
            say=lambda line: say(f"  {line}"),
            announce=announce,
            config=config,
            cwd=REPO,
            env=env,
        )
    return [job for job, ok in outcome.items() if not ok]


def sharded_search(env: dict[str, str]) -> bool:
    """Whether the declared SearchIndex spreads its embedding over shard runs (`shards:`)."""
    os.environ.update(env)
    index = load_catalog().index
    return bool(index and index.shards)


def backfill_search(dagster_url: str, env: dict[str, str]) -> bool:
    """A sharded index's first build: one asset backfill (the roots, every shard, the index and
    report) through the daemon's run queue; one line per step, each shard's named."""
    from dagster import DagsterInstance

    from ml_assets.local import backfill

    os.environ.update(env)
    try:
        backfill_id = backfill.launch(
            dagster_url, backfill.SEARCH_ASSETS, "ml-assets up: first build of the sharded index"
        )
        say(f"  backfill {backfill_id} (UI: {dagster_url}/runs/b/{backfill_id})")
        with DagsterInstance.get() as instance:
            return backfill.follow(
                instance, backfill_id, lambda line: say(f"  {line}"), timeout_s=BACKFILL_TIMEOUT_S
            )
    except (RuntimeError, TimeoutError, urllib.error.URLError) as exc:
        say(f"  {exc}")
        return False


def jobs_to_materialize(env: dict[str, str], jobs: tuple[str, ...], everything: bool) -> list[str]:
    """The jobs with an asset never materialized (all with `everything`): a lineage declared
    since the last start runs its own job, not the whole graph again."""
    return list(jobs) if everything else [j for j in jobs if unmaterialized(env, (j,))]


def materialize_graph(
    env: dict[str, str], todo: list[str], log_path: Path, config: Path | None, dagster_url: str
) -> list[str]:
    """The jobs `todo` (in the graph's order); returns the failed ones. Every job of a fresh
    platform runs in one runner process; a sharded search is an asset backfill instead, after
    the lineages. `config` is the run config of the first job's run."""
    backfill = SEARCH_JOB in todo and sharded_search(env)
    batch = [job for job in todo if not (backfill and job == SEARCH_JOB)]
    failed = execute_jobs(batch, env, log_path, config, dagster_url) if batch else []
    if backfill:
        say(f"materializing {SEARCH_JOB} (UI: {dagster_url}/jobs/{SEARCH_JOB})")
        if not backfill_search(dagster_url, env):
            failed.append(SEARCH_JOB)
    return failed
