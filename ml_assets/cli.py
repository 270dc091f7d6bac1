"""`ml-assets up`: the whole platform on the embedded default, in one command.

Starts (or attaches to) the embedded PostgreSQL, an MLflow server on it, the Dagster daemon and
webserver; materializes the asset graph once when anything in it was never materialized; then
stays in the foreground until Ctrl-C, stopping everything it started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ml_assets.stack import (
    Settings,
    ensure_databases,
    platform_env,
    start_embedded_postgres,
    stop_embedded_postgres,
)

REPO = Path(__file__).resolve().parents[1]
# The whole asset graph, as two jobs: the fraud lineage, then the search lineage.
JOBS = ("fraud_lineage_job", "search_lineage_job")


def _say(msg: str) -> None:
    print(f"[ml-assets] {msg}", flush=True)


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"{proc.args[0]} exited with {proc.returncode} before {url} answered"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def prepare(settings: Settings) -> dict[str, str]:
    """Databases, directories, environment; the embedded Postgres unless ML_PG_DSN is set."""
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.artifact_root.mkdir(parents=True, exist_ok=True)
    if settings.pg_dsn:
        server_dsn = settings.pg_dsn
        _say("using the external PostgreSQL from ML_PG_DSN")
    else:
        started = time.monotonic()
        server_dsn = start_embedded_postgres(settings.home / "pg", stop_on_exit=False)
        _say(
            f"embedded PostgreSQL 18 ready in {time.monotonic() - started:.1f} s "
            f"(data in {settings.home / 'pg'})"
        )
    ensure_databases(server_dsn)
    mlflow_uri = settings.mlflow_tracking_uri or f"http://127.0.0.1:{settings.mlflow_port}"
    env = platform_env(settings, server_dsn, mlflow_uri)
    dagster_home = Path(env["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    return env


def _needs_materialization(env: dict[str, str]) -> bool:
    os.environ.update(env)
    from dagster import AssetKey, DagsterInstance

    from ml_assets.definitions import defs

    with DagsterInstance.get() as instance:
        keys = defs.resolve_asset_graph().get_all_asset_keys()
        return any(
            instance.get_latest_materialization_event(AssetKey(k.path)) is None for k in keys
        )


def up(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    env = prepare(settings)
    child_env = {**os.environ, **env}
    procs: list[subprocess.Popen] = []

    def stop_all(*_: object) -> None:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not settings.pg_dsn and not args.keep_db:
            stop_embedded_postgres(settings.home / "pg")
            _say("embedded PostgreSQL stopped (data kept)")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    logs = settings.home / "logs"
    logs.mkdir(exist_ok=True)
    try:
        if not settings.mlflow_tracking_uri:
            artifacts = settings.home / "mlflow-artifacts"
            artifacts.mkdir(exist_ok=True)
            procs.append(
                subprocess.Popen(
                    [
                        _bin("mlflow"),
                        "server",
                        "--backend-store-uri",
                        env["MLFLOW_BACKEND_STORE_URI"],
                        "--artifacts-destination",
                        str(artifacts),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(settings.mlflow_port),
                        "--workers",
                        "1",
                    ],
                    env=child_env,
                    stdout=open(logs / "mlflow.log", "ab"),
                    stderr=subprocess.STDOUT,
                )
            )
            _wait_http(f"{env['MLFLOW_TRACKING_URI']}/health", 120, procs[-1])
            _say(f"MLflow UI at {env['MLFLOW_TRACKING_URI']}")
        workspace = str(REPO / "workspace.yaml")
        procs.append(
            subprocess.Popen(
                [_bin("dagster-daemon"), "run", "-w", workspace],
                cwd=REPO,
                env=child_env,
                stdout=open(logs / "dagster-daemon.log", "ab"),
                stderr=subprocess.STDOUT,
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    _bin("dagster-webserver"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(settings.dagster_port),
                    "-w",
                    workspace,
                ],
                cwd=REPO,
                env=child_env,
                stdout=open(logs / "dagster-webserver.log", "ab"),
                stderr=subprocess.STDOUT,
            )
        )
        dagster_url = f"http://127.0.0.1:{settings.dagster_port}"
        _wait_http(f"{dagster_url}/server_info", 180, procs[-1])
        _say(f"Dagster UI at {dagster_url} (logs in {logs})")
        if args.rematerialize or _needs_materialization(env):
            started = time.monotonic()
            failed = []
            for job in JOBS:
                _say(f"materializing {job}; follow it in the UI")
                config = ["-c", args.config] if args.config and job == JOBS[0] else []
                done = subprocess.run(
                    [
                        _bin("dagster"),
                        "job",
                        "execute",
                        "-m",
                        "ml_assets.definitions",
                        "-j",
                        job,
                        *config,
                    ],
                    cwd=REPO,
                    env=child_env,
                )
                if done.returncode != 0:
                    failed.append(job)
            if failed:
                _say(f"{', '.join(failed)} failed; the UI shows which step and why")
            else:
                _say(f"asset graph materialized in {time.monotonic() - started:.0f} s")
        else:
            _say("every asset is already materialized; data kept from the last start")
        if args.no_wait:
            return 0
        _say("running; press Ctrl-C to stop")
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        dead = [p.args[0] for p in procs if p.poll() is not None]
        _say(f"{', '.join(dead)} exited; see {logs}. Stopping the rest.")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop_all()


def env_cmd(_: argparse.Namespace) -> int:
    """Print the environment for running dagster/mlflow commands against the platform."""
    settings = Settings.from_env()
    env = prepare(settings)
    for key, value in sorted(env.items()):
        print(f"export {key}='{value}'")
    return 0


def stop_cmd(_: argparse.Namespace) -> int:
    settings = Settings.from_env()
    stopped = stop_embedded_postgres(settings.home / "pg")
    _say("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ml-assets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    p_up = sub.add_parser("up", help="start the platform on the embedded default")
    p_up.add_argument(
        "--rematerialize",
        action="store_true",
        help="materialize the asset graph even if everything exists",
    )
    p_up.add_argument(
        "--config",
        help="run config YAML for fraud_lineage_job (e.g. rows, seed, source_path)",
    )
    p_up.add_argument(
        "--no-wait",
        action="store_true",
        help="stop everything again after the first materialization",
    )
    p_up.add_argument(
        "--keep-db", action="store_true", help="leave the embedded PostgreSQL running on exit"
    )
    p_up.set_defaults(func=up)
    sub.add_parser("env", help="print the platform's environment variables").set_defaults(
        func=env_cmd
    )
    sub.add_parser("stop", help="stop a left-over embedded PostgreSQL").set_defaults(func=stop_cmd)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        args = parser.parse_args(["up", *(argv or [])])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
