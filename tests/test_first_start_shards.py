"""Issue 27, for real: a fresh clone with `shards: 2` in ml_assets/lineages/text/defs.yaml and a
fresh home runs `ml-assets up`; search is served at the end and nothing is reported failed.

The clone is this checkout's files (tracked and untracked, not ignored) in a temporary folder,
with the YAML edited as a user would. `labelled_sets: []` keeps the quality report to the
shipped set (the docs set's scratch index adds minutes and nothing sharding-specific).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_platform import (
    _get_json,
    _graphql,
    processes_naming,
    search_hits,
    start_up,
    stop_up,
    up_env,
    wait_up,
)

FAILED_RUNS = """
{ runsOrError(filter: {statuses: [FAILURE, CANCELED]}) {
    ... on Runs { results { runId jobName } } } }
"""


def _clone(into: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, into / name)
    yaml = into / "ml_assets" / "lineages" / "text" / "defs.yaml"
    text = yaml.read_text()
    assert "  # shards: 16\n" in text and "labelled_sets: [docs]" in text
    yaml.write_text(
        text.replace("  # shards: 16\n", "  shards: 2\n").replace(
            "labelled_sets: [docs]", "labelled_sets: []"
        )
    )
    return into


@pytest.mark.timeout(1500)
def test_a_first_start_with_shards_serves_search_and_reports_no_failure(tmp_path):
    repo, home = _clone(tmp_path / "clone"), tmp_path / "home"
    home.mkdir()
    config = home / "run_config.yaml"
    config.write_text("ops:\n  fraud__raw_data:\n    config:\n      rows: 8000\n")
    env = up_env(home, PYTHONPATH=str(repo))
    log_path = home / "up.log"
    log = open(log_path, "w+")
    proc = start_up(["--config", str(config)], repo, env, log)
    dagster = f"http://127.0.0.1:{env['ML_DAGSTER_PORT']}"
    serving = f"http://127.0.0.1:{env['ML_SERVING_PORT']}"
    try:
        out = wait_up(proc, log_path, 1300)
        print(out)
        shard_lines = [line for line in out.splitlines() if "embedding_shards[" in line]
        assert len(shard_lines) == 2 and all(" ok " in f" {line} " for line in shard_lines), out
        assert {line.split("embedding_shards[")[1].split("]")[0] for line in shard_lines} == {
            "0-7",
            "8-f",
        }
        assert "FAIL" not in out and "failed" not in out, out
        assert "asset graph materialized" in out
        search = _get_json(f"{serving}/models")["search"]
        assert search["enabled"], search
        assert search_hits(serving)
        failed = _graphql(dagster, FAILED_RUNS)["runsOrError"]["results"]
        assert failed == [], failed
    finally:
        stop_up(proc, timeout_s=90)
        log.close()
    assert proc.returncode == 0, log_path.read_text()[-3000:]
    assert processes_naming(home) == [] and processes_naming(repo) == []
