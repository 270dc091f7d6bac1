"""A registered model version never changes: exporting again finds the same bytes and changes
nothing, or registers a new version (real Dagster materialize, MLflow registry and store)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from ml_assets.components.search_index.embedder_assets import register_embedder
from ml_assets.platform.artifacts import ArtifactRef
from ml_assets.platform.hashing import sha256_file
from ml_assets.platform.promotion import PRODUCTION_ALIAS, champion_version
from ml_assets.resources import MlflowResource
from ml_assets.resources.defaults import local_resources
from ml_assets.resources.storage import latest_ref
from ml_assets.tabular import model
from tests.helpers import (
    FRAUD_ASSETS,
    FRAUD_MODEL,
    MODEL,
    ONNX,
    REPORT,
    latest_metadata,
    run_config,
)

ROWS = 8_000


def _snapshot(client, name: str, version: str) -> dict:
    """Everything a version holds: its tags and the sha256 of every file in its run."""
    mv = client.get_model_version(name, version)
    files: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(client.download_artifacts(mv.run_id, "", tmp))
        for path in sorted(local.rglob("*")):
            if path.is_file():
                files[str(path.relative_to(local))] = sha256_file(path)
    return {"tags": dict(mv.tags), "source": mv.source, "run_id": mv.run_id, "files": files}


def _versions(client, name: str) -> list[str]:
    return sorted(
        (str(mv.version) for mv in client.search_model_versions(f"name='{name}'")), key=int
    )


@pytest.fixture(scope="module")
def lineage(tmp_path_factory, mlflow_resource: MlflowResource, dagster_instance: DagsterInstance):
    root = tmp_path_factory.mktemp("immutable")
    resources = local_resources(root, mlflow_resource)
    result = materialize(
        FRAUD_ASSETS, resources=resources, instance=dagster_instance, run_config=run_config(ROWS)
    )
    assert result.success
    return {"root": root, "resources": resources}


def _export(lineage, instance, selection=(ONNX,)) -> str:
    result = materialize(
        FRAUD_ASSETS,
        selection=list(selection),
        resources=lineage["resources"],
        instance=instance,
    )
    assert result.success
    return latest_metadata(instance, ONNX)["registered_model"]


def test_a_new_export_never_rewrites_the_production_version(
    lineage, dagster_instance, mlflow_resource, monkeypatch
):
    client = mlflow_resource.client
    onnx_ref = latest_ref(lineage["root"], ONNX)
    prod = onnx_ref.extra["model_version"]
    assert (
        onnx_ref.extra["model_version"] == latest_ref(lineage["root"], MODEL).extra["model_version"]
    ), "the first export completes the model's own version"
    # The registry is the session's: whatever was production before is production again after.
    previous = champion_version(client, FRAUD_MODEL)
    client.set_registered_model_alias(FRAUD_MODEL, PRODUCTION_ALIAS, prod)
    try:
        _reexport(lineage, dagster_instance, client, onnx_ref, prod, monkeypatch)
    finally:
        if previous is None:
            client.delete_registered_model_alias(FRAUD_MODEL, PRODUCTION_ALIAS)
        else:
            client.set_registered_model_alias(FRAUD_MODEL, PRODUCTION_ALIAS, previous)


def _reexport(lineage, dagster_instance, client, onnx_ref, prod, monkeypatch) -> None:
    before = _snapshot(client, FRAUD_MODEL, prod)
    assert before["tags"]["onnx_sha256"] == onnx_ref.sha256
    count = len(_versions(client, FRAUD_MODEL))

    # The same code again: the same bytes, held by the same version; nothing changes.
    assert _export(lineage, dagster_instance) == f"{FRAUD_MODEL} v{prod}"
    assert latest_metadata(dagster_instance, ONNX)["registry"] == "unchanged"
    assert len(_versions(client, FRAUD_MODEL)) == count
    assert _snapshot(client, FRAUD_MODEL, prod) == before

    # An edited export (another target opset: other bytes for the same model), with the report
    # over it, as the UI's Materialize button runs a stale asset.
    monkeypatch.setattr(model, "ONNX_TARGET_OPSET", {"": 15, "ai.onnx.ml": 3})
    label = _export(lineage, dagster_instance, selection=(ONNX, REPORT))
    new_ref = latest_ref(lineage["root"], ONNX)
    new = new_ref.extra["model_version"]
    assert new_ref.sha256 != onnx_ref.sha256
    assert label == f"{FRAUD_MODEL} v{new}" and int(new) > int(prod)
    assert latest_metadata(dagster_instance, ONNX)["registry"] == "new version"
    assert latest_metadata(dagster_instance, REPORT)["registered_model"] == label
    assert _versions(client, FRAUD_MODEL)[-1] == new

    # The production version: the same files (byte for byte), tags and alias as before.
    assert _snapshot(client, FRAUD_MODEL, prod) == before
    alias = client.get_model_version_by_alias(FRAUD_MODEL, PRODUCTION_ALIAS)
    assert str(alias.version) == prod

    # The new version carries the lineage that produced it: the same model, data and provenance.
    after = _snapshot(client, FRAUD_MODEL, new)
    assert after["run_id"] != before["run_id"]
    tags = after["tags"]
    assert (
        tags["onnx_sha256"] == new_ref.sha256 and tags["derived_from"] == f"{FRAUD_MODEL} v{prod}"
    )
    for key in ("model_sha256", "fraud/raw_data_sha256", "fraud/splits_sha256", "lineage"):
        assert tags[key] == before["tags"][key], key
    assert after["files"]["onnx/model.onnx"] == new_ref.sha256
    for copied in ("model.skops", "model/model.skops", "data_hashes.json"):
        assert after["files"][copied] == before["files"][copied], copied
    with tempfile.TemporaryDirectory() as tmp:
        provenance = json.loads(
            Path(client.download_artifacts(after["run_id"], "provenance.json", tmp)).read_text()
        )
    assert provenance["version"] == new and provenance["artifact"]["sha256"] == new_ref.sha256
    assert [link["sha256"] for link in provenance["chain"]][:3] == [
        before["tags"]["fraud/raw_data_sha256"],
        before["tags"]["fraud/splits_sha256"],
        before["tags"]["model_sha256"],
    ]

    # The edited export once more: its bytes are already registered; no third version.
    new_snapshot = _snapshot(client, FRAUD_MODEL, new)
    assert _export(lineage, dagster_instance) == label
    assert latest_metadata(dagster_instance, ONNX)["registry"] == "unchanged"
    assert _versions(client, FRAUD_MODEL)[-1] == new
    assert _snapshot(client, FRAUD_MODEL, new) == new_snapshot
    assert _snapshot(client, FRAUD_MODEL, prod) == before


def test_the_embedder_keeps_a_version_that_holds_the_same_bytes(search_golden, mlflow_resource):
    client = mlflow_resource.client
    name = "immutable-test-embedder"  # its own registered model: the session's stays as it is
    root = search_golden["base"] / "artifacts"
    manifest = json.loads(latest_ref(root, "embedding_model_onnx").read_verified())
    objects = root / "objects" / "embedding_model_onnx"

    def ref(sha: str, path: Path) -> ArtifactRef:
        return ArtifactRef("embedding_model_onnx", sha, str(path), path.stat().st_size, "")

    refs = {
        v: ref(m["sha256"], objects / f"{m['sha256']}.onnx")
        for v, m in manifest["variants"].items()
    }
    tok = manifest["tokenizer"]["sha256"]
    tok_ref = ref(tok, objects / f"{tok}.json")
    registered = register_embedder(mlflow_resource, name, refs, tok_ref, {}, "first")
    before = {v: _snapshot(client, name, n) for v, n in registered.items()}
    count = len(_versions(client, name))

    assert register_embedder(mlflow_resource, name, refs, tok_ref, {}, "again") == registered
    assert len(_versions(client, name)) == count
    assert {v: _snapshot(client, name, n) for v, n in registered.items()} == before

    # Other int8 bytes: a new version for int8 alone; fp32 and the old int8 stay as they were.
    other = Path(tempfile.mkdtemp()) / "int8.onnx"
    other.write_bytes(Path(refs["int8"].path).read_bytes()[:-1])
    got = register_embedder(
        mlflow_resource, name, {**refs, "int8": ref(sha256_file(other), other)}, tok_ref, {}, "b"
    )
    assert got["fp32"] == registered["fp32"] and int(got["int8"]) > int(registered["int8"])
    assert client.get_model_version(name, got["int8"]).tags["sha256"] == sha256_file(other)
    assert {v: _snapshot(client, name, n) for v, n in registered.items()} == before
