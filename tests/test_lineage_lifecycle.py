"""Lineages that come and go, the parts without a server: which release a restarted endpoint
starts on, how a predict route answers for a lineage it does not serve, and what
`ml-assets status` reports. The served behaviour is tested over HTTP in tests/test_serving/
(a live endpoint) and tests/test_platform.py (`ml-assets up` in a home that served before)."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from ml_assets.local.status import bundle_lags, compare, summary
from ml_assets.platform.serving_bundle import EMBEDDER, ModelEntry
from serving import lineage_path, runtime
from tests.conftest import REPO


def _entry(role: str, version: str = "1") -> ModelEntry:
    return ModelEntry(role, f"{role}-model", version, {"model.onnx": "ab" * 32})


def test_a_release_is_followed_only_by_the_server_that_wrote_it(tmp_path):
    path = tmp_path / "release.json"
    models = runtime.LoadedModels(
        {EMBEDDER: _entry(EMBEDDER, "7")}, embedder=None, generation=3, declared={}
    )
    runtime.write_release(path, models, server="111@5000")
    assert runtime.read_release(path, server="111@5000").generation == 3
    # A later server (a restart: same file, maybe the same pid) starts on its own bundle.
    assert runtime.read_release(path, server="111@9000") is None
    assert runtime.read_release(path, server="222@5000") is None


def test_workers_of_one_parent_share_an_identity_and_a_restart_does_not():
    probe = "from serving.runtime import server_identity; print(server_identity())"

    def child() -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
        )
        return done.stdout.strip()

    first, second = child(), child()  # two "workers" of this process
    assert first == second and first.startswith(f"{os.getpid()}@")
    assert runtime.server_identity() != first  # another parent: another server


@pytest.mark.parametrize(
    "path, route",
    [
        ("/v1/models/loans/predict", ("loans", False)),
        ("/v1/models/loans/predict/batch", ("loans", True)),
        ("/v1/models/loans", None),
        ("/v1/models//predict", None),
        ("/v1/models/loans/predict/other", None),
        ("/v1/score", None),
    ],
)
def test_predict_routes_are_recognised_by_path(path, route):
    assert lineage_path.parse(path) == route


def test_an_unserved_lineage_is_404_unless_declared_then_503_with_the_reason():
    models = SimpleNamespace(
        declared={
            "fraud": {"registered_model": "fraud-detector", "served": True},
            "loans": {"registered_model": "loan-default", "served": False, "reason": "no v"},
        }
    )
    status, message = lineage_path.not_served(models, "loans")
    assert status == 503 and message.endswith("is declared but not served yet: no v")
    status, message = lineage_path.not_served(models, "gone")
    assert status == 404
    assert message == "model 'gone' is not served (declared lineages: fraud, loans)"


def _bundle(**models: str) -> dict:
    return {
        "models": {r: {"registered_model": f"{r}-model", "version": v} for r, v in models.items()},
        "lineages": {"new": {"registered_model": "new-model", "served": False, "reason": "wait"}},
    }


def test_status_lists_declared_promoted_bundled_served_and_where_they_differ():
    declared = {"fraud": "fraud-model", "new": "new-model", EMBEDDER: "embedder-model"}
    promoted = {"fraud-model": "2", "new-model": None, "embedder-model": "1", "old-model": "4"}
    bundle = _bundle(fraud="1", old="4", embedder="1")
    served = {"models": bundle["models"]}
    rows = {s.name: s for s in compare(declared, promoted, bundle, served)}
    assert list(rows) == ["fraud", "new", "old", EMBEDDER]
    assert rows["fraud"].row()["promoted"] == "v2" and rows["fraud"].row()["served"] == "v1"
    assert "promoted v2, the newest bundle pins v1" in rows["fraud"].note
    assert rows["new"].note == "wait"  # the bundle's reason for not serving it
    assert not rows["old"].declared and "no longer declared" in rows["old"].note
    assert rows[EMBEDDER].note == ""
    assert bundle_lags(list(rows.values())) == [
        f"fraud: {rows['fraud'].note}",
        f"old: {rows['old'].note}",
    ]
    lines = summary(list(rows.values()))
    assert lines[0].startswith("serving: fraud (fraud-model v1), old (old-model v4)")
    assert "not served: new (new-model): wait" in lines
    # Without an endpoint, every model says so; a bundle in step with production lags nothing.
    quiet = compare(declared, promoted, _bundle(fraud="2", embedder="1"), None)
    assert {s.name: s.note for s in quiet}["fraud"] == "the endpoint is not running"
    assert bundle_lags(quiet) == []
