"""Run jobs of the code location one after the other in one process.

`ml-assets up` materializes a fresh platform job by job (each lineage's, then the search
lineage's). One `dagster job execute` per job imported the code location once per job, about 5 s
each on 2 cores; this runs them all after one import, each as its own Dagster run, exactly as
`dagster job execute -m ml_assets.definitions -j JOB` would (same module, same in-process
executor, same records). A failed job does not stop the ones after it; the exit status says
whether all succeeded.

    python -m ml_assets.local.job_runner [--config FILE --config-job JOB] [--started-by ID] JOB ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

MODULE = "ml_assets.definitions"
RUN_TAG = "ml_assets/started_by"


def run_jobs(
    jobs: list[str], config: dict[str, dict], working_directory: Path, started_by: str = ""
) -> list[str]:
    """Executes each job in order on the instance of `DAGSTER_HOME`, each run tagged
    `RUN_TAG: started_by` (so its caller follows these runs, not a sensor's run of the same
    job); returns the failed ones."""
    from dagster import DagsterInstance, execute_job
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repository = ReconstructableRepository.for_module(
        MODULE, "defs", working_directory=str(working_directory)
    )
    tags = {RUN_TAG: started_by} if started_by else None
    failed = []
    with DagsterInstance.get() as instance:
        for job in jobs:
            recon = repository.get_reconstructable_job(job)
            with execute_job(
                recon, instance, run_config=config.get(job), tags=tags, raise_on_error=False
            ) as result:
                if not result.success:
                    failed.append(job)
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml_assets.local.job_runner")
    parser.add_argument("jobs", nargs="+")
    parser.add_argument("--config", type=Path, help="run config (YAML) of --config-job's run")
    parser.add_argument("--config-job")
    parser.add_argument("--started-by", default="", help=f"value of each run's {RUN_TAG} tag")
    args = parser.parse_args(argv)
    config = {}
    if args.config:
        config[args.config_job or args.jobs[0]] = yaml.safe_load(args.config.read_text()) or {}
    failed = run_jobs(args.jobs, config, Path.cwd(), args.started_by)
    for job in failed:
        print(f"job_runner: {job} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
