"""Shared fixtures: real embedded PostgreSQL, MLflow store/registry and Dagster instance."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from dagster import DagsterInstance

from ml_assets.local.stack import ensure_databases, start_embedded_postgres
from ml_assets.platform.alerts import WEBHOOK_ENV
from ml_assets.platform.dsn import with_database
from ml_assets.resources import MlflowResource

REPO = Path(__file__).resolve().parents[1]


def tree_status(root: Path) -> set[str] | None:
    """`git status --porcelain` of `root`, untracked files listed one by one; None when `root`
    is no git checkout (an unpacked sdist): then there is nothing to compare."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=root, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(done.stdout.splitlines()) if done.returncode == 0 else None


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    # Under pytest-xdist the controller compares the tree once, around all workers: a worker
    # that finishes first would otherwise see another worker's files in flight.
    if not _is_xdist_worker(session.config):
        session.config.stash[_TREE_BEFORE] = tree_status(REPO)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite fails when it leaves files in the source tree (anything `git status` did not
    show before it ran): tests write under their tmp_path, never into the checkout."""
    if _is_xdist_worker(session.config):
        return
    before, after = session.config.stash.get(_TREE_BEFORE, None), tree_status(REPO)
    if before is None or after is None:
        return
    left = sorted(after - before)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "the suite left files in the source tree (git status):\n  " + "\n  ".join(left)
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(text, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_TREE_BEFORE = pytest.StashKey[set[str] | None]()

# How scripts/test.sh spreads the suite over pytest-xdist workers (`--dist loadscope`): one unit
# per test module, except the test_serving package, whose eight modules share one
# package-scoped platform and so run on one worker. The modules that start `ml-assets up` on a
# fresh home (the longest units, mostly waiting on the daemon and the job launches) go first, so
# the rest of the suite runs beside them instead of after them.
FIRST = ("tests/test_first_start_shards.py", "tests/test_platform.py")


def work_unit(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return "tests/test_serving" if path.startswith("tests/test_serving/") else path


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _is_xdist_worker(config):
        return  # a serial run keeps pytest's own order
    rank = {path: i for i, path in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(FIRST)))


# Small enough to keep the suite fast, large enough for stable metrics and every check.
TEST_ROWS = 20_000


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL 18 + pgvector server (embedded wheel) for the whole session."""
    root = tmp_path_factory.mktemp("pg")
    (root / "run").mkdir(mode=0o700, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(root / "run"))
    dsn = start_embedded_postgres(root / "data", stop_on_exit=True)
    ensure_databases(dsn)
    yield dsn


@pytest.fixture(scope="session")
def dagster_instance(
    pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagsterInstance]:
    """A persistent Dagster instance on Postgres, configured by the repo's own dagster.yaml."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", str(home))
        env.setenv("DAGSTER_PG_URL", with_database(pg_dsn, "dagster", "psycopg2"))
        instance = DagsterInstance.get()
        yield instance
        instance.dispose()


@pytest.fixture(scope="session")
def mlflow_resource(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> MlflowResource:
    """MLflow's SQL tracking store and registry on the embedded Postgres."""
    artifacts = tmp_path_factory.mktemp("mlflow_artifacts")
    return MlflowResource(
        tracking_uri=with_database(pg_dsn, "mlflow", "psycopg2"),
        experiment_name="ml-assets-tests",
        artifact_location=str(artifacts),
    )


def fresh_vector_database(pg_dsn: str, name: str) -> str:
    """An empty database `name` with pgvector on the session's server (dropped first if any)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(with_database(pg_dsn, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = with_database(pg_dsn, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return dsn


@pytest.fixture(scope="module")
def vector_dsn(pg_dsn: str, request: pytest.FixtureRequest) -> str:
    """A fresh database with pgvector for one test module's index."""
    return fresh_vector_database(pg_dsn, "vec_" + request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture
def webhook(monkeypatch):
    """A tiny HTTP receiver on loopback that ML_ALERT_WEBHOOK_URL points at."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{server.server_port}/alerts")
    yield received
    server.shutdown()


@pytest.fixture(scope="session")
def search_golden(
    tmp_path_factory: pytest.TempPathFactory, mlflow_resource: MlflowResource, pg_dsn: str
) -> dict:
    """The search chain (embedder export, corpus, index, quality report) materialized once per
    session: modules that need it as a starting point take a `clone_search_state` copy."""
    from dagster import materialize

    from ml_assets.components.search_index.assets import embedding_index, search_corpus
    from ml_assets.components.search_index.embedder_assets import embedding_model_onnx
    from ml_assets.components.search_index.validation import search_quality_report
    from ml_assets.resources.defaults import local_resources

    base = tmp_path_factory.mktemp("search_golden")
    dsn = fresh_vector_database(pg_dsn, "vec_search_golden")
    (base / "dagster").mkdir()
    instance = DagsterInstance.local_temp(tempdir=str(base / "dagster"))
    try:
        result = materialize(
            [embedding_model_onnx, search_corpus, embedding_index, search_quality_report],
            resources=local_resources(base / "artifacts", mlflow_resource, dsn),
            instance=instance,
        )
        assert result.success, "the session's search chain failed to materialize"
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    finally:
        instance.dispose()
    return {"base": base, "database": "vec_search_golden", "pg_dsn": pg_dsn, "checks": checks}


def clone_search_state(
    golden: dict, into: Path, database: str
) -> tuple[Path, str, DagsterInstance]:
    """A private copy of the golden search state: artifact root, Dagster instance (its records:
    the checks the gate reads) and the vector database (CREATE DATABASE ... TEMPLATE)."""
    import psycopg
    from dagster._core.instance.ref import InstanceRef
    from psycopg import sql

    root = into / "artifacts"
    shutil.copytree(golden["base"] / "artifacts", root)
    shutil.copytree(golden["base"] / "dagster", into / "dagster")
    admin = with_database(golden["pg_dsn"], "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(database), sql.Identifier(golden["database"])
            )
        )
    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(into / "dagster")))
    return root, with_database(golden["pg_dsn"], database), instance


@pytest.fixture(scope="module")
def search_state(search_golden: dict, tmp_path_factory: pytest.TempPathFactory, request):
    """This module's own copy of the session's search chain: {"root", "dsn", "instance"}. A
    module that takes it overrides `vector_dsn` with its "dsn"."""
    yield from search_state_copy(
        search_golden, tmp_path_factory, request.module.__name__.rsplit(".", 1)[-1]
    )


def search_state_copy(golden: dict, factory: pytest.TempPathFactory, name: str) -> Iterator[dict]:
    """The body of a `search_state` fixture: a copy named `name`, disposed of afterwards."""
    root, dsn, instance = clone_search_state(golden, factory.mktemp(f"{name}_state"), f"vec_{name}")
    yield {"root": root, "dsn": dsn, "instance": instance, "checks": golden["checks"]}
    instance.dispose()
