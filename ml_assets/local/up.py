"""`ml-assets up`: the whole platform on the embedded default, in one command.

Starts (or attaches to) the embedded PostgreSQL, an MLflow server on it, the Dagster daemon and
webserver; materializes the asset graph once when anything in it was never materialized (one
line per asset as it finishes; Dagster's event stream goes to $ML_HOME/logs/runs.log); promotes
the first versions through the gate, builds the Bento again when the newest one is behind
production, and serves the newest Bento (a restarted endpoint serves its own Bento's bundle);
prints which models are served and which are not, and why; then stays in the foreground until
Ctrl-C, stopping everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ml_assets.bundle.serving_process import ServerProcess, start_server
from ml_assets.local.env import REPO, bin_path, prepare, say
from ml_assets.local.materialize import (
    all_jobs,
    code_location,
    execute_jobs,
    jobs_to_materialize,
    load_catalog,
    materialize_graph,
    unmaterialized,
)
from ml_assets.local.stack import Settings, stop_embedded_postgres


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


def bootstrap_production(env: dict[str, str]) -> dict[str, str]:
    """Promote the first versions through the gate when nothing is in production yet."""
    from mlflow.tracking import MlflowClient

    from ml_assets.platform import promotion

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    os.environ.update(env)
    from dagster import DagsterInstance

    from ml_assets.platform.dagster_records import DagsterRecords, rule_of

    defs = code_location()

    with DagsterInstance.get() as instance:
        return promotion.bootstrap(
            client,
            env["ML_VECTOR_PG_DSN"],
            catalog=load_catalog(),
            records=DagsterRecords(instance, rule_of(defs.get_repository_def())),
            actor=f"ml-assets up ({os.environ.get('USER', 'local')})",
        )


def _statuses(env: dict[str, str], serving_url: str | None) -> list:
    from mlflow.tracking import MlflowClient

    from ml_assets.local.status import collect

    os.environ.update(env)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    return collect(client, env["ML_ARTIFACT_ROOT"], serving_url, load_catalog())


def bundle_lags(env: dict[str, str]) -> list[str]:
    """Why the newest serving bundle is not what production is (empty: it is)."""
    from ml_assets.local.status import bundle_lags as lags

    try:
        return lags(_statuses(env, None))
    except Exception as exc:  # informational: the platform runs on without it
        say(f"could not compare the newest bundle with production ({exc}); not rebuilding it")
        return []


def report_served(env: dict[str, str], serving_url: str) -> None:
    """Which models the endpoint serves, and which declared ones it does not, with why."""
    from ml_assets.local.status import summary

    try:
        lines = summary(_statuses(env, serving_url))
    except Exception as exc:  # informational: the platform runs on without it
        lines = [f"could not say which models are served ({exc}); try `ml-assets status`"]
    for line in lines:
        say(line)


def latest_bento(env: dict[str, str]) -> str | None:
    from ml_assets.resources.storage import latest_ref

    ref = latest_ref(env["ML_ARTIFACT_ROOT"], "serving_bundle")
    return ref.extra["bento_tag"] if ref else None


def up(args: argparse.Namespace) -> int:
    began = time.monotonic()
    settings = Settings.from_env()
    env = prepare(settings)
    child_env = {**os.environ, **env}
    procs: list[subprocess.Popen] = []
    servers: list[ServerProcess] = []

    def stop_all(*_: object) -> None:
        for server in servers:
            server.stop()
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)
            # Each server leads its own process group: what it started (the daemon's and the
            # webserver's `dagster api grpc` code servers) goes with it, even a child that
            # ignores SIGTERM or outlives its parent.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if not settings.pg_dsn and not args.keep_db:
            stop_embedded_postgres(settings.home / "pg")
            say("embedded PostgreSQL stopped (data kept)")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # A shell starting us in the background (`up &`, CI) leaves SIGINT ignored, and Python then
    # installs no KeyboardInterrupt: take Ctrl-C back, or the group's Ctrl-C stops only our
    # children and we report their exit as a crash.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logs = settings.home / "logs"
    logs.mkdir(exist_ok=True)
    try:
        if not settings.mlflow_tracking_uri:
            artifacts = settings.home / "mlflow-artifacts"
            artifacts.mkdir(exist_ok=True)
            procs.append(
                subprocess.Popen(
                    [
                        bin_path("mlflow"),
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
                    start_new_session=True,
                )
            )
            _wait_http(f"{env['MLFLOW_TRACKING_URI']}/health", 120, procs[-1])
            say(f"MLflow UI at {env['MLFLOW_TRACKING_URI']}")
        workspace = str(REPO / "workspace.yaml")
        procs.append(
            subprocess.Popen(
                [bin_path("dagster-daemon"), "run", "-w", workspace],
                cwd=REPO,
                env=child_env,
                stdout=open(logs / "dagster-daemon.log", "ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    bin_path("dagster-webserver"),
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
                start_new_session=True,
            )
        )
        dagster_url = f"http://127.0.0.1:{settings.dagster_port}"
        _wait_http(f"{dagster_url}/server_info", 180, procs[-1])
        say(f"Dagster UI at {dagster_url} (logs in {logs})")
        jobs = all_jobs(env)
        todo = jobs_to_materialize(env, jobs, args.rematerialize)
        if todo:
            started = time.monotonic()
            config = Path(args.config) if args.config and todo[0] == jobs[0] else None
            failed = materialize_graph(child_env, todo, logs / "runs.log", config, dagster_url)
            if failed:
                say(f"{', '.join(failed)} failed; the UI shows which step and why")
            else:
                say(f"asset graph materialized in {time.monotonic() - started:.0f} s")
        else:
            say("every asset is already materialized; data kept from the last start")
        promoted = bootstrap_production(env)
        if promoted:
            say(
                "promoted the first production versions through the gate: "
                + ", ".join(f"{n} v{v}" for n, v in promoted.items())
            )
        lags = [] if promoted or args.rematerialize else bundle_lags(env)
        if lags:
            say("the newest serving bundle is behind production: " + "; ".join(lags))
        if promoted or args.rematerialize or lags or unmaterialized(env, ("serving_job",)):
            say("building the serving Bento from the production versions (serving_job)")
            # No endpoint runs yet: build and smoke-test only (the deployment step skips).
            build_env = {k: v for k, v in child_env.items() if k != "ML_SERVING_URL"}
            if execute_jobs(["serving_job"], build_env, logs / "runs.log"):
                say("serving_job failed; the UI shows which step and why")
        tag = latest_bento(env)
        if tag:
            server = start_server(
                tag,
                bentoml_home=env["BENTOML_HOME"],
                port=settings.serving_port,
                env=child_env,
                log_path=logs / "serving.log",
            )
            servers.append(server)
            server.wait_ready(timeout_s=180)
            say(
                f"serving endpoint at {server.url} ({tag}); promotions switch it by themselves "
                f"(reload key in {settings.home / 'serving_api_key'})"
            )
            report_served(env, server.url)
        else:
            say("no serving bundle yet: promote versions (ml-assets promote ...) to serve them")
        say(f"up in {time.monotonic() - began:.0f} s (materialize, promote, bundle and serve)")
        if args.no_wait:
            return 0
        say("running; press Ctrl-C to stop")
        while all(p.poll() is None for p in [*procs, *(s.proc for s in servers)]):
            time.sleep(1)
        # The servers lead their own process groups, so a terminal's Ctrl-C reaches only us;
        # a signal sent to all of them (a session ending) can still stop a child a moment
        # before our own KeyboardInterrupt is raised. Give it time before calling this a crash.
        time.sleep(1)
        dead = [p.args[0] for p in [*procs, *(s.proc for s in servers)] if p.poll() is not None]
        say(f"{', '.join(dead)} exited; see {logs}. Stopping the rest.")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop_all()
