"""`eval "$(ml-assets env)"` (README, Configuration) in a real bash sets the variables."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("ml-assets"))
# Shell metacharacters in a value must arrive as data, not run as code.
TRICKY_KEY = 'it\'s a key; $(touch pwned) `touch pwned` "quoted"'
SHOWN = ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "ML_VECTOR_PG_DSN", "ML_SERVING_API_KEY")


@pytest.fixture
def home(tmp_path: Path):
    """An ML_HOME of its own; the embedded Postgres that `env` starts is stopped afterwards."""
    home = tmp_path / "home"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MLFLOW_", "ML_"))},
        "ML_HOME": str(home),
        "ML_SERVING_API_KEY": TRICKY_KEY,
    }
    yield home, env
    subprocess.run([CLI, "stop"], env=env, check=True, capture_output=True, timeout=60)
    assert not (home / "pg" / "postmaster.pid").exists()


def test_env_prints_only_shell_on_stdout(home):
    home_dir, env = home
    done = subprocess.run(
        [CLI, "env"], env=env, cwd=home_dir.parent, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(re.fullmatch(r"export [A-Z_][A-Z0-9_]*=\S.*", line) for line in lines), (
        done.stdout
    )
    assert "[ml-assets] embedded PostgreSQL 18 ready" in done.stderr


def test_eval_in_bash_sets_the_variables(home):
    home_dir, env = home
    script = (
        "set -euo pipefail\n"
        f'eval "$({CLI} env)"\n'
        'printf "%s\\n" ' + " ".join(f'"${name}"' for name in SHOWN) + "\n"
    )
    done = subprocess.run(
        ["bash", "-c", script],
        env=env,
        cwd=home_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    values = dict(zip(SHOWN, done.stdout.splitlines(), strict=True))
    assert values["DAGSTER_HOME"] == str(home_dir / "dagster")
    assert values["MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")
    assert values["ML_VECTOR_PG_DSN"].endswith(f"/ml_assets?host={home_dir / 'pg'}")
    assert values["ML_SERVING_API_KEY"] == TRICKY_KEY
    assert not (home_dir.parent / "pwned").exists()
