"""The README's run command, for real: embedded Postgres, MLflow server, Dagster UI + daemon."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(url: str, query: str) -> dict:
    req = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["data"]


def stop_up(proc: subprocess.Popen, timeout_s: float = 60) -> None:
    """Ctrl-C to `ml-assets up`'s process group (as a terminal sends it), then SIGKILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def up_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an `ml-assets up` on `home`: this process's, without the platform's
    own variables, the servers on free ports (`extra` overrides)."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MLFLOW_", "ML_"))},
        "ML_HOME": str(home),
        "ML_DAGSTER_PORT": str(_free_port()),
        "ML_MLFLOW_PORT": str(_free_port()),
        "ML_SERVING_PORT": str(_free_port()),
        **extra,
    }


def start_up(args: list[str], cwd: Path, env: dict[str, str], log) -> subprocess.Popen:
    """`ml-assets up ARGS` in the background, as its own process group (stop_up's Ctrl-C)."""
    return subprocess.Popen(
        [sys.executable, "-m", "ml_assets.local.cli", "up", *args],
        cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def wait_up(proc: subprocess.Popen, log_path: Path, timeout_s: float) -> str:
    """Waits until `up` says it is running; fails with the end of its log if it exits or the
    bound passes first. Returns the log so far."""
    deadline = time.monotonic() + timeout_s
    while "press Ctrl-C to stop" not in (out := log_path.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail("ml-assets up did not come up:\n" + out[-5000:])
        time.sleep(1)
    return out


def processes_naming(path: Path) -> list[str]:
    """Command lines of this machine's live processes that name `path` (a home or a clone):
    after `up` stops, none of the servers it started, nor their children, may be left."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            status = (proc / "status").read_text()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if "\nState:\tZ" in status:
            continue  # a zombie holds nothing
        line = " ".join(a.decode(errors="replace") for a in argv if a)
        if str(path) in line:
            found.append(f"{proc.name}: {line[:300]}")
    return found


def search_hits(serving: str) -> list:
    """The served /search's hits for a query the shipped corpus answers."""
    req = urllib.request.Request(
        f"{serving}/search",
        data=json.dumps({"query": "henry hub balmo", "tenant_id": "northwind-energy"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["hits"]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


# The platform fixture bounds its own start (1200 s, with up's log in the failure); the suite's
# 600 s per test would cut it first on a shared machine, with no log.
pytestmark = pytest.mark.timeout(1500)

ASSET_QUERY = """
{ assetNodes { assetKey { path } dataVersion staleStatus
               assetMaterializations(limit: 1) { runId } } }
"""
DAEMON_QUERY = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("platform_home")
    config = home / "run_config.yaml"
    config.write_text("ops:\n  fraud__raw_data:\n    config:\n      rows: 8000\n")
    env = up_env(home)
    log = open(home / "up.log", "w+")
    proc = start_up(["--config", str(config)], REPO, env, log)
    try:
        # A bound for a start that hangs: about 3 minutes on a quiet 2-core machine, over 10 on
        # a shared one.
        wait_up(proc, home / "up.log", 1200)
        yield {
            "dagster": f"http://127.0.0.1:{env['ML_DAGSTER_PORT']}",
            "mlflow": f"http://127.0.0.1:{env['ML_MLFLOW_PORT']}",
            "serving": f"http://127.0.0.1:{env['ML_SERVING_PORT']}",
            "home": home,
            "proc": proc,
        }
    finally:
        stop_up(proc)
        log.close()


def test_ui_shows_the_lineage_green_with_hashes(platform):
    nodes = _graphql(platform["dagster"], ASSET_QUERY)["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    for asset in (
        "fraud/raw_data",
        "fraud/splits",
        "fraud/model",
        "fraud/onnx",
        "fraud/export_validation_report",
    ):
        node = by_key[asset]
        assert node["assetMaterializations"], asset
        assert len(node["dataVersion"]) == 64, asset  # a sha256, not Dagster's default hash
        assert node["staleStatus"] == "FRESH", asset


def test_up_prints_one_line_per_asset_and_keeps_the_event_stream_in_a_log(platform):
    out = (platform["home"] / "up.log").read_text()
    assert " - DEBUG - " not in out  # Dagster's event stream is in the log file, not here
    lines = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[1] in ("ok", "FAIL"):
            lines[parts[2].rstrip(",")] = line
    for asset in ("fraud/raw_data", "fraud/model", "embedding_index", "curves/model"):
        assert asset in lines, out[-3000:]
        assert lines[asset].split()[1] == "ok" and "sha256 " in lines[asset], lines[asset]
    assert "expectations passed" in lines["fraud/raw_data:expectations"]
    assert "output_parity passed" in lines["fraud/export_validation_report"]
    runs_log = (platform["home"] / "logs" / "runs.log").read_text()
    assert "STEP_SUCCESS" in runs_log and "fraud_lineage_job" in runs_log
    # The total comes last, after the endpoint is up: the figure a newcomer waits for.
    total = re.search(r"\] up in (\d+) s \(materialize, promote, bundle and serve\)\n", out)
    assert total and out.index("serving endpoint at") < total.start(), out[-2000:]
    assert int(total.group(1)) >= 1


def test_daemon_is_healthy(platform):
    statuses = _graphql(platform["dagster"], DAEMON_QUERY)["instance"]["daemonHealth"]
    required = [s for s in statuses["allDaemonStatuses"] if s["required"]]
    assert required and all(s["healthy"] for s in required), required


def test_mlflow_server_has_the_registered_version_with_provenance(platform):
    url = f"{platform['mlflow']}/api/2.0/mlflow/registered-models/get?name=fraud-detector"
    model = _get_json(url)["registered_model"]
    latest = model["latest_versions"][-1]
    tags = {t["key"]: t["value"] for t in latest.get("tags", [])}
    assert len(tags["onnx_sha256"]) == 64
    assert tags["provenance_uri"].endswith("provenance.json")
    assert tags["export_validation"] == "passed"


def test_first_versions_are_promoted_and_served(platform):
    served = _get_json(f"{platform['serving']}/models")
    # The two built-in models and the shipped declared lineage (ml_assets/lineages/curves).
    assert served["ready"] and set(served["models"]) == {"fraud", "embedder", "curves"}
    alias = _get_json(
        f"{platform['mlflow']}/api/2.0/mlflow/registered-models/alias"
        "?name=fraud-detector&alias=production"
    )["model_version"]
    assert served["models"]["fraud"]["version"] == alias["version"]
    assert search_hits(platform["serving"])
    assert "promoted the first production versions" in (platform["home"] / "up.log").read_text()


def test_alias_moved_in_mlflow_reaches_the_endpoint_by_itself(platform):
    """What a user does in the MLflow UI: move the alias. Sensor → serving_job → reload."""
    versions = _get_json(
        f"{platform['mlflow']}/api/2.0/mlflow/model-versions/search?filter=name%3D%27text-embedder%27"
    )["model_versions"]
    fp32 = next(
        v["version"]
        for v in versions
        if {t["key"]: t["value"] for t in v.get("tags", [])}.get("variant") == "fp32"
    )
    req = urllib.request.Request(
        f"{platform['mlflow']}/api/2.0/mlflow/registered-models/alias",
        data=json.dumps({"name": "text-embedder", "alias": "production", "version": fp32}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=30).read()
    deadline = time.monotonic() + 300
    served = None
    while time.monotonic() < deadline:
        served = _get_json(f"{platform['serving']}/models")["models"]["embedder"]["version"]
        if served == fp32:
            break
        time.sleep(3)
    assert served == fp32, (platform["home"] / "logs" / "dagster-daemon.log").read_text()[-3000:]


def test_ctrl_c_stops_everything_and_data_survives_a_restart(platform):
    proc, home = platform["proc"], platform["home"]
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    log = (home / "up.log").read_text()
    assert "embedded PostgreSQL stopped (data kept)" in log
    assert not (home / "pg" / "postmaster.pid").exists()
    assert processes_naming(home) == []  # no server, nor a code server it started, outlives up

    env = up_env(home)
    again = subprocess.run(
        [sys.executable, "-m", "ml_assets.local.cli", "up", "--no-wait"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "every asset is already materialized" in again.stderr  # status lines: stderr


def test_a_lineage_added_to_a_home_that_served_is_served_by_the_next_up(platform, tmp_path):
    """The README's "Add your own model" in a home that has served before: a lineage scaffolded
    with `dg scaffold defs` (in a copy of the project: a temporary defs folder), then `up`
    again on the same home and serving port. `up` materializes only the new lineage, promotes
    it, bundles it and serves that Bento (not the previous endpoint's release), and says what
    is served; `ml-assets status` agrees."""
    from ml_assets.platform.lineage_spec import LineageSpec
    from tests.helpers import dg_env, run_dg

    home, proc = platform["home"], platform["proc"]
    assert proc.poll() is not None, "the first platform is stopped by the test before"
    project = tmp_path / "project"
    for name in ("ml_assets", "serving"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "workspace.yaml", "dagster.yaml"):
        shutil.copy(REPO / name, project / name)
    scaffold_env = {**dg_env(tmp_path), "PYTHONPATH": str(project)}
    done = run_dg(
        ["scaffold", "defs", "ml_assets.components.ModelLineage", "my_model"], project, scaffold_env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (project / "ml_assets" / "lineages" / "my_model" / "defs.yaml").exists()
    serving = platform["serving"]  # the port of the first endpoint, whose release file stays
    env = up_env(home, PYTHONPATH=str(project), ML_SERVING_PORT=serving.rsplit(":", 1)[1])
    log_path = tmp_path / "up-again.log"
    log = open(log_path, "w+")
    again = start_up([], project, env, log)
    try:
        out = wait_up(again, log_path, 600)
        assert "materializing my_model_lineage_job" in out, out[-3000:]
        assert "materializing fraud_lineage_job" not in out  # only what was never materialized
        served = _get_json(f"{serving}/models")
        assert {"fraud", "curves", "embedder", "my_model"} <= set(served["models"]), served
        entry = served["models"]["my_model"]
        row = LineageSpec.from_dict(entry["info"]["lineage"]).example_row()
        req = urllib.request.Request(
            f"{serving}/v1/models/my_model/predict",
            data=json.dumps({"features": row}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = json.loads(resp.read())
        assert body["model_version"] == f"my-model@{entry['version']}", body
        assert f"my_model (my-model v{entry['version']})" in out, out[-3000:]
        status = subprocess.run(
            [sys.executable, "-m", "ml_assets.local.cli", "status"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert status.returncode == 0, status.stderr[-3000:]
        v = entry["version"]
        assert f"| my_model | my-model | yes | v{v} | v{v} | v{v} |  |" in status.stdout, (
            status.stdout
        )
    finally:
        if again.poll() is None:
            os.killpg(again.pid, signal.SIGINT)
            try:
                again.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(again.pid, signal.SIGKILL)
        log.close()
