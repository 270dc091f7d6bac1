"""`ml-assets up`: the whole platform on the embedded default, in one command.

Starts (or attaches to) the embedded PostgreSQL, an MLflow server on it, the Dagster daemon and
webserver; materializes the asset graph once when anything in it was never materialized; then
stays in the foreground until Ctrl-C, stopping everything it started.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ml_assets.serving_process import ServerProcess, start_server
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
    # Status goes to stderr: stdout is for what a caller consumes (`eval "$(ml-assets env)"`).
    print(f"[ml-assets] {msg}", file=sys.stderr, flush=True)


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
    env["ML_SERVING_API_KEY"] = serving_api_key(settings)
    return env


def serving_api_key(settings: Settings) -> str:
    """ML_SERVING_API_KEY, or a random key kept in $ML_HOME/serving_api_key (mode 0600)."""
    if key := os.environ.get("ML_SERVING_API_KEY"):
        return key
    path = settings.home / "serving_api_key"
    if not path.exists():
        import secrets

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _unmaterialized(env: dict[str, str], jobs: tuple[str, ...]) -> bool:
    """True when any asset of `jobs` was never materialized (partitioned ops assets and the
    optional deployment step are not part of the first start)."""
    os.environ.update(env)
    from dagster import AssetKey, DagsterInstance

    from ml_assets.definitions import defs

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
    """The built-in lineages' jobs, then each declared lineage's (ml_assets/lineages)."""
    os.environ.update(env)
    from ml_assets.core import lineage_spec
    from ml_assets.definitions import defs

    known = {job.name for job in defs.resolve_all_job_defs()}
    return (
        *JOBS,
        *(
            f"{s.name}_lineage_job"
            for s in lineage_spec.declared()
            if f"{s.name}_lineage_job" in known
        ),
    )


def _execute_job(job: str, env: dict[str, str], config: list[str], log_path: Path) -> bool:
    """One job run; Dagster's event stream goes to `log_path`, one line per asset to stderr."""
    from dagster import DagsterInstance

    from ml_assets.progress import run_with_progress

    os.environ.update(env)
    with DagsterInstance.get() as instance:
        code = run_with_progress(
            [_bin("dagster"), "job", "execute", "-m", "ml_assets.definitions", "-j", job, *config],
            job=job,
            instance=instance,
            log_path=log_path,
            say=lambda line: _say(f"  {line}"),
            cwd=REPO,
            env=env,
        )
    return code == 0


def bootstrap_production(env: dict[str, str]) -> dict[str, str]:
    """Promote the first versions through the gate when nothing is in production yet."""
    from mlflow.tracking import MlflowClient

    from ml_assets.core import promotion

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    os.environ.update(env)
    from dagster import DagsterInstance

    import ml_assets.definitions  # noqa: F401  (declares the lineages the gate knows)
    from ml_assets.dagster_records import DagsterRecords

    with DagsterInstance.get() as instance:
        return promotion.bootstrap(
            client,
            env["ML_VECTOR_PG_DSN"],
            records=DagsterRecords(instance),
            actor=f"ml-assets up ({os.environ.get('USER', 'local')})",
        )


def latest_bento(env: dict[str, str]) -> str | None:
    from ml_assets.resources.storage import latest_ref

    ref = latest_ref(env["ML_ARTIFACT_ROOT"], "serving_bundle")
    return ref.extra["bento_tag"] if ref else None


def up(args: argparse.Namespace) -> int:
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
        if not settings.pg_dsn and not args.keep_db:
            stop_embedded_postgres(settings.home / "pg")
            _say("embedded PostgreSQL stopped (data kept)")

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
        jobs = all_jobs(env)
        if args.rematerialize or _unmaterialized(env, jobs):
            started = time.monotonic()
            failed = []
            for job in jobs:
                _say(f"materializing {job} (UI: {dagster_url}/jobs/{job}; log: {logs}/runs.log)")
                config = ["-c", args.config] if args.config and job == JOBS[0] else []
                if not _execute_job(job, child_env, config, logs / "runs.log"):
                    failed.append(job)
            if failed:
                _say(f"{', '.join(failed)} failed; the UI shows which step and why")
            else:
                _say(f"asset graph materialized in {time.monotonic() - started:.0f} s")
        else:
            _say("every asset is already materialized; data kept from the last start")
        promoted = bootstrap_production(env)
        if promoted:
            _say(
                "promoted the first production versions through the gate: "
                + ", ".join(f"{n} v{v}" for n, v in promoted.items())
            )
        if promoted or args.rematerialize or _unmaterialized(env, ("serving_job",)):
            _say("building the serving Bento from the production versions (serving_job)")
            # No endpoint runs yet: build and smoke-test only (the deployment step skips).
            build_env = {k: v for k, v in child_env.items() if k != "ML_SERVING_URL"}
            if not _execute_job("serving_job", build_env, [], logs / "runs.log"):
                _say("serving_job failed; the UI shows which step and why")
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
            _say(
                f"serving endpoint at {server.url} ({tag}); promotions switch it by themselves "
                f"(reload key in {settings.home / 'serving_api_key'})"
            )
        else:
            _say("no serving bundle yet: promote versions (ml-assets promote ...) to serve them")
        if args.no_wait:
            return 0
        _say("running; press Ctrl-C to stop")
        while all(p.poll() is None for p in [*procs, *(s.proc for s in servers)]):
            time.sleep(1)
        # Ctrl-C reaches the whole process group: a child can exit on it a moment before our
        # own KeyboardInterrupt is raised. Give it time to arrive before calling this a crash.
        time.sleep(1)
        dead = [p.args[0] for p in [*procs, *(s.proc for s in servers)] if p.poll() is not None]
        _say(f"{', '.join(dead)} exited; see {logs}. Stopping the rest.")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop_all()


def env_cmd(_: argparse.Namespace) -> int:
    """Print the environment for running dagster/mlflow commands against the platform: only
    `export` lines on stdout, shell-quoted, for `eval "$(ml-assets env)"`."""
    settings = Settings.from_env()
    env = prepare(settings)
    for key, value in sorted(env.items()):
        print(f"export {key}={shlex.quote(value)}")
    return 0


def promote_cmd(args: argparse.Namespace) -> int:
    """Promote (or roll back to) a registered version through the gate."""
    from mlflow.tracking import MlflowClient

    from ml_assets.core import promotion

    settings = Settings.from_env()
    env = prepare(settings)
    # The registry lives in MLflow's database: reachable with or without `ml-assets up`.
    client = MlflowClient(settings.mlflow_tracking_uri or env["MLFLOW_BACKEND_STORE_URI"])
    os.environ.update(env)
    from dagster import DagsterInstance

    import ml_assets.definitions  # noqa: F401  (declares the lineages the gate knows)
    from ml_assets.dagster_records import DagsterRecords

    try:
        with DagsterInstance.get() as instance:
            event = promotion.promote(
                client,
                env["ML_VECTOR_PG_DSN"],
                args.model,
                args.version,
                records=DagsterRecords(instance),
                actor=args.actor or os.environ.get("USER", "cli"),
                reason=args.reason,
                margin=args.margin,
                rollback=args.command == "rollback",
            )
    except promotion.PromotionRejected as exc:
        _say(str(exc))
        for gate in exc.decision.gates:
            _say(f"  {'pass' if gate.passed else 'FAIL'}  {gate.name}: {gate.detail}")
        return 1
    except ValueError as exc:
        _say(str(exc))
        return 2
    for gate in event["gates"]:
        _say(f"  pass  {gate['name']}: {gate['detail']}")
    _say(
        f"{args.model} v{args.version} is now {promotion.PRODUCTION_ALIAS} "
        f"(was v{event['previous_version']}); event {event['event_id']}. The "
        "model_promotion_sensor bundles it and switches the endpoint."
    )
    return 0


def reindex_cmd(args: argparse.Namespace) -> int:
    """Append an `ml.embedding.reindex.request.v1` event; reindex_sensor runs reindex_job once."""
    from ml_assets.core import reindex_requests

    settings = Settings.from_env()
    env = prepare(settings)
    actor = args.actor or os.environ.get("USER", "cli")
    try:
        event = reindex_requests.append_request(env["ML_VECTOR_PG_DSN"], actor, args.reason)
    except ValueError as exc:
        _say(str(exc))
        return 2
    _say(
        f"reindex requested by {actor}: event {event['event_id']}. reindex_sensor starts one "
        f"reindex_job run for it (run key reindex-request:{event['event_id']})."
    )
    print(event["event_id"])  # stdout: the id alone, for scripts
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
    p_reindex = sub.add_parser(
        "reindex", help="ask reindex_sensor for one reindex of the search index now"
    )
    p_reindex.add_argument("--reason", required=True, help="why (recorded with the event)")
    p_reindex.add_argument("--actor", help="who (default: $USER)")
    p_reindex.set_defaults(func=reindex_cmd)
    for name, text in (
        ("promote", "move a model's production alias to a version, through the gate"),
        ("rollback", "move it back to an earlier version (checks still apply)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "model", help="registered model: fraud-detector, text-embedder or a declared lineage's"
        )
        p.add_argument("version")
        p.add_argument("--reason", required=True, help="why (recorded with the event)")
        p.add_argument("--actor", help="who (default: $USER)")
        p.add_argument(
            "--margin",
            type=float,
            default=0.01,
            help="how much worse than the champion's primary metric is tolerated",
        )
        p.set_defaults(func=promote_cmd)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        args = parser.parse_args(["up", *(argv or [])])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
