"""The same bytes in every process: the default run's exports under two PYTHONHASHSEEDs, and the
golden hashes the README quotes ("Hashed provenance")."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata

import pytest

from ml_assets.platform.environment import simd_flags
from ml_assets.resources.storage import latest_ref
from tests.conftest import REPO
from tests.helpers import CATALOG, STAGES

# Seeds 0 and 1 order skl2onnx's set of opset domains differently (12345 orders it as 0 does):
# before canonical_onnx the fraud export was 8c4fb76523fa under one and 5d25edeb82d6 under the
# other.
SEEDS = ("0", "1")
SEARCH_ASSETS = (
    "search_corpus",
    "embedding_model_onnx",
    "embedding_index",
    "search_quality_report",
)
# Computed from ONNX Runtime's int8 embeddings, whose kernels follow the CPU's SIMD set: its
# golden holds on a CPU with the SIMD set the README names, and is asserted only there.
SIMD_BOUND = "search_quality_report"
GOLDEN_HEADING = "### Golden hashes"


@pytest.fixture(scope="module")
def probes() -> list[dict[str, str]]:
    """tests/reproduce_probe.py (the default run's lineages + the embedder's export) in two fresh
    processes at once, one per seed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MLFLOW_"))}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.reproduce_probe", "--embedder"],
            cwd=REPO,
            env={**env, "PYTHONHASHSEED": seed},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in SEEDS
    ]
    out = []
    for seed, proc in zip(SEEDS, procs, strict=True):
        try:
            stdout, stderr = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"the probe under PYTHONHASHSEED={seed} ran past 600 s")
        assert proc.returncode == 0, f"PYTHONHASHSEED={seed}:\n{stderr[-3000:]}"
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def readme_golden() -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The README's golden table ({asset: sha256}), the package versions it says the hashes
    hold for, and the SIMD set the SIMD-bound row was recorded on."""
    text = (REPO / "README.md").read_text()
    section = text.split(GOLDEN_HEADING, 1)[1].split("\n## ", 1)[0]
    hashes = dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|", section, re.M))
    versions = dict(re.findall(r"`([A-Za-z0-9_.-]+)==([^`]+)`", section))
    simd = re.search(r"`simd` = `([^`]+)`", section)
    assert simd, "the README names no SIMD set for the SIMD-bound golden"
    return hashes, versions, " ".join(simd.group(1).split()).split()


def test_every_export_is_the_same_bytes_under_two_hash_seeds(probes):
    first, second = probes
    want = {f"{s.name}/{stage}" for s in CATALOG.lineages for stage in STAGES}
    assert set(first) == want | {"embedding_model_onnx fp32", "embedding_model_onnx int8"}
    differ = {k: (first[k][:12], second[k][:12]) for k in first if first[k] != second[k]}
    assert not differ, f"bytes depend on PYTHONHASHSEED ({SEEDS}): {differ}"


def test_the_default_run_gives_the_readme_golden_hashes(probes, search_golden):
    golden, versions, recorded_simd = readme_golden()
    installed = {name: metadata.version(name) for name in versions if name != "python"}
    installed["python"] = f"{sys.version_info.major}.{sys.version_info.minor}"
    moved = {n: (v, installed[n]) for n, v in versions.items() if installed[n] != v}
    if moved:
        # The table is a claim for the versions it names; with others it claims nothing.
        pytest.skip(
            f"the README's golden hashes hold for other versions (README, installed): {moved}; "
            "rerun `python -m tests.reproduce_probe --embedder` and record the new hashes"
        )
    produced = dict(probes[0])
    root = search_golden["base"] / "artifacts"
    for asset in SEARCH_ASSETS:
        produced[asset] = latest_ref(root, asset).sha256
    assert set(golden) == set(produced), sorted(set(golden) ^ set(produced))
    if simd_flags() != recorded_simd:
        # Not this CPU's golden to prove (README: "holds for one SIMD set only").
        del golden[SIMD_BOUND], produced[SIMD_BOUND]
    wrong = {a: (golden[a][:12], produced[a][:12]) for a in golden if produced[a] != golden[a]}
    assert not wrong, f"(README, this run) on a CPU with {simd_flags()}: {wrong}"


SET_MODEL = """
import skops.io as sio
from sklearn.preprocessing import FunctionTransformer
from ml_assets.platform.hashing import canonical_skops, sha256_bytes
model = FunctionTransformer(kw_args={"cols": {"alpha", "beta", "gamma"}, "d": frozenset("xyz")})
print(sha256_bytes(canonical_skops(sio.dumps(model))))
"""


def test_a_model_holding_a_set_gives_the_same_skops_bytes_under_two_hash_seeds():
    """skops writes a set in its iteration order; canonical_skops sorts it (under seeds 0 and 1
    the raw archives differ)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SET_MODEL],
            env={**env, "PYTHONHASHSEED": seed},
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in SEEDS
    ]
    hashes = {proc.communicate(timeout=120)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(hashes) == 1, hashes
