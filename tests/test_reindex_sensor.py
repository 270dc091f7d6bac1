"""reindex_sensor: one run per corpus or production-embedder change, cursor carried across ticks."""

from __future__ import annotations

import json
import shutil

import pytest
from dagster import build_sensor_context

from ml_assets.core.corpus import default_corpus_path
from ml_assets.resources import MlflowResource
from ml_assets.sensors.reindex import (
    PRODUCTION_ALIAS,
    REGISTERED_EMBEDDER,
    IndexInputs,
    decide,
    reindex_sensor,
)


def test_decide_is_pure_and_deliberate():
    first, cursor = decide(None, IndexInputs("a" * 64, None))
    assert first is not None and first.run_key == f"corpus:{'a' * 12}@model:upstream"
    again, same = decide(cursor, IndexInputs("a" * 64, None))
    assert again is None and same == cursor
    model, cursor2 = decide(cursor, IndexInputs("a" * 64, "b" * 64))
    assert model.run_key == f"corpus:{'a' * 12}@model:{'b' * 12}"
    assert model.run_config["ops"]["embedding_index"]["config"]["model_sha256"] == "b" * 64
    assert json.loads(cursor2) == {"corpus": "a" * 64, "model": "b" * 64}


def _tick(mlflow: MlflowResource, cursor: str | None):
    context = build_sensor_context(cursor=cursor, resources={"mlflow": mlflow})
    result = reindex_sensor(context)
    return result, context.cursor if result.cursor is None else result.cursor


def test_sensor_ticks_on_corpus_and_promotion(mlflow_resource, tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.jsonl"
    shutil.copy(default_corpus_path(), corpus)
    monkeypatch.setenv("ML_CORPUS_PATH", str(corpus))
    client = mlflow_resource.client
    try:
        client.delete_registered_model_alias(REGISTERED_EMBEDDER, PRODUCTION_ALIAS)
    except Exception:  # noqa: BLE001 - no model or alias yet
        pass

    first, cursor = _tick(mlflow_resource, None)
    assert len(first.run_requests) == 1
    # A restart hands the same cursor back: nothing changed, nothing requested.
    second, cursor_b = _tick(mlflow_resource, cursor)
    assert not second.run_requests and second.skip_reason and cursor_b == cursor

    # Edit one document: exactly one new request, with a new run key.
    lines = corpus.read_text().splitlines()
    row = json.loads(lines[0])
    row["text"] += " Updated."
    corpus.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    third, cursor_c = _tick(mlflow_resource, cursor)
    assert len(third.run_requests) == 1
    assert third.run_requests[0].run_key != first.run_requests[0].run_key
    assert not _tick(mlflow_resource, cursor_c)[0].run_requests

    # Promote a text-embedder version: one request that pins its sha256.
    with mlflow_resource.start_run("sensor-test") as run_id:
        mlflow_resource.log_json(run_id, {"x": 1}, "model/info.json")
        version = mlflow_resource.register_version(
            REGISTERED_EMBEDDER,
            run_id,
            "model",
            tags={"sha256": "c" * 64, "variant": "int8"},
            description="sensor test",
        )
    client.set_registered_model_alias(REGISTERED_EMBEDDER, PRODUCTION_ALIAS, version)
    try:
        fourth, cursor_d = _tick(mlflow_resource, cursor_c)
        (request,) = fourth.run_requests
        assert request.run_key.endswith("@model:" + "c" * 12)
        assert request.run_config["ops"]["embedding_index"]["config"]["model_sha256"] == "c" * 64
        assert not _tick(mlflow_resource, cursor_d)[0].run_requests
    finally:
        client.delete_registered_model_alias(REGISTERED_EMBEDDER, PRODUCTION_ALIAS)


def test_sensor_reports_a_broken_corpus(mlflow_resource, tmp_path, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    monkeypatch.setenv("ML_CORPUS_PATH", str(bad))
    with pytest.raises(Exception, match="bad.jsonl"):
        _tick(mlflow_resource, None)
