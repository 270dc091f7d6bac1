"""reindex_sensor: one run per corpus or production-embedder change and one per operator's
reindex request, cursor carried across ticks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance, RunRequest, build_sensor_context

from ml_assets.components.search_index.reindex_sensor import (
    PRODUCTION_ALIAS,
    REQUEST_LOOKBACK,
    IndexInputs,
    decide,
    hold,
    honour_requests,
    reindex_sensor,
)
from ml_assets.platform import events
from ml_assets.platform.dsn import with_database
from ml_assets.resources import MlflowResource
from ml_assets.resources.postgres import PostgresResource
from ml_assets.resources.storage import ArtifactStore
from ml_assets.search import reindex_requests
from ml_assets.search.corpus import default_corpus_path
from ml_assets.search.reindex_requests import Request
from tests.helpers import EMBEDDER_MODEL


def test_decide_is_pure_and_deliberate():
    first, cursor = decide(None, IndexInputs("a" * 64, None))
    assert first is not None and first.run_key == f"corpus:{'a' * 12}@model:upstream"
    again, same = decide(cursor, IndexInputs("a" * 64, None))
    assert again is None and same == cursor
    model, cursor2 = decide(cursor, IndexInputs("a" * 64, "b" * 64))
    assert model.run_key == f"corpus:{'a' * 12}@model:{'b' * 12}"
    assert model.run_config["ops"]["embedding_index"]["config"]["model_sha256"] == "b" * 64
    assert json.loads(cursor2) == {"corpus": "a" * 64, "model": "b" * 64}


@pytest.fixture
def no_requests(vector_dsn: str) -> str:
    """The module's vector store with no reindex requests in its event table."""
    with psycopg.connect(vector_dsn) as conn:
        events.ensure_events_table(conn)
        conn.execute(
            "DELETE FROM ml_events.events WHERE event_type = %s", (events.REINDEX_REQUEST,)
        )
    return vector_dsn


@pytest.fixture(scope="module")
def store(search_golden) -> ArtifactStore:
    """The session's artifact root: embedding_model_onnx is materialized there, so a due
    reindex is requested rather than held until the export exists."""
    return ArtifactStore(base_dir=str(search_golden["base"] / "artifacts"))


def _tick(mlflow: MlflowResource, cursor: str | None, dsn: str, store: ArtifactStore):
    resources = {"mlflow": mlflow, "postgres": PostgresResource(dsn=dsn), "store": store}
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(cursor=cursor, resources=resources, instance=instance)
        result = reindex_sensor(context)
    return result, context.cursor if result.cursor is None else result.cursor


def test_sensor_ticks_on_corpus_and_promotion(
    mlflow_resource, tmp_path, monkeypatch, no_requests, store
):
    corpus = tmp_path / "corpus.jsonl"
    shutil.copy(default_corpus_path(), corpus)
    monkeypatch.setenv("ML_CORPUS_PATH", str(corpus))
    client = mlflow_resource.client
    try:
        client.delete_registered_model_alias(EMBEDDER_MODEL, PRODUCTION_ALIAS)
    except Exception:  # noqa: BLE001 - no model or alias yet
        pass

    first, cursor = _tick(mlflow_resource, None, no_requests, store)
    assert len(first.run_requests) == 1
    # A restart hands the same cursor back: nothing changed, nothing requested.
    second, cursor_b = _tick(mlflow_resource, cursor, no_requests, store)
    assert not second.run_requests and second.skip_reason and cursor_b == cursor

    # Edit one document: exactly one new request, with a new run key.
    lines = corpus.read_text().splitlines()
    row = json.loads(lines[0])
    row["text"] += " Updated."
    corpus.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    third, cursor_c = _tick(mlflow_resource, cursor, no_requests, store)
    assert len(third.run_requests) == 1
    assert third.run_requests[0].run_key != first.run_requests[0].run_key
    assert not _tick(mlflow_resource, cursor_c, no_requests, store)[0].run_requests

    # Promote an embedder version: one request that pins its sha256.
    with mlflow_resource.start_run("sensor-test") as run_id:
        mlflow_resource.log_json(run_id, {"x": 1}, "model/info.json")
        version = mlflow_resource.register_version(
            EMBEDDER_MODEL,
            run_id,
            "model",
            tags={"sha256": "c" * 64, "variant": "int8"},
            description="sensor test",
        )
    client.set_registered_model_alias(EMBEDDER_MODEL, PRODUCTION_ALIAS, version)
    try:
        fourth, cursor_d = _tick(mlflow_resource, cursor_c, no_requests, store)
        (request,) = fourth.run_requests
        assert request.run_key.endswith("@model:" + "c" * 12)
        assert request.run_config["ops"]["embedding_index"]["config"]["model_sha256"] == "c" * 64
        assert not _tick(mlflow_resource, cursor_d, no_requests, store)[0].run_requests
    finally:
        client.delete_registered_model_alias(EMBEDDER_MODEL, PRODUCTION_ALIAS)


def test_a_due_reindex_waits_for_the_embedder_export_and_says_why(
    mlflow_resource, tmp_path, monkeypatch, no_requests
):
    """A first start: the daemon ticks before the export exists. The reindex_job run would
    fail loading embedding_model_onnx, so none is requested, and the cursor stays."""
    monkeypatch.setenv("ML_CORPUS_PATH", str(default_corpus_path()))
    empty = ArtifactStore(base_dir=str(tmp_path / "artifacts"))
    result, cursor = _tick(mlflow_resource, None, no_requests, empty)
    assert not result.run_requests and cursor is None
    assert "waiting for embedding_model_onnx" in result.skip_reason.skip_message
    due = [RunRequest(run_key="k")]
    assert "waiting for run 1234 (search_lineage_job)" in hold(
        due, True, ["run 1234 (search_lineage_job)"]
    )
    assert hold(due, True, []) is None and hold([], False, []) is None


def test_sensor_reports_a_broken_corpus(mlflow_resource, tmp_path, monkeypatch, vector_dsn, store):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    monkeypatch.setenv("ML_CORPUS_PATH", str(bad))
    with pytest.raises(Exception, match="bad.jsonl"):
        _tick(mlflow_resource, None, vector_dsn, store)


# ---- operator requests (ml.embedding.reindex.request.v1) ------------------------------------

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
INPUTS = IndexInputs("a" * 64, "b" * 64)


def _request(n: int, at: datetime, error: str | None = None) -> Request:
    return Request(f"00000000-0000-4000-8000-{n:012d}", at, "alice", f"reason {n}", error)


def test_honour_requests_is_pure_and_once_each():
    one = _request(1, T0)
    runs, rejected, cursor = honour_requests(None, INPUTS, [one])
    assert [r.run_key for r in runs] == [f"reindex-request:{one.event_id}"] and not rejected
    assert runs[0].tags["ml-assets/requested_by"] == "alice"
    assert runs[0].run_config["ops"]["embedding_index"]["config"]["model_sha256"] == "b" * 64
    # The request's run indexes the current inputs: no second run for the same state.
    assert decide(cursor, INPUTS)[0] is None
    # Same rows again (the next tick, or a restarted daemon with the stored cursor): nothing.
    assert honour_requests(cursor, INPUTS, [one]) == ([], [], cursor)
    # A second request, and one that committed late with an earlier time: one run each.
    two, late = _request(2, T0 + timedelta(minutes=5)), _request(3, T0 - timedelta(minutes=1))
    runs, _, cursor2 = honour_requests(cursor, INPUTS, [late, one, two])
    assert sorted(r.run_key for r in runs) == sorted(
        f"reindex-request:{r.event_id}" for r in (late, two)
    )
    assert honour_requests(cursor2, INPUTS, [late, one, two])[0] == []
    # An invalid row is reported once and never run.
    bad = _request(4, T0 + timedelta(minutes=6), error="payload lacks reason")
    runs, rejected, cursor3 = honour_requests(cursor2, INPUTS, [late, one, two, bad])
    assert runs == [] and rejected == [bad]
    assert honour_requests(cursor3, INPUTS, [late, one, two, bad])[:2] == ([], [])
    # The cursor keeps only the lookback window's ids.
    far = _request(5, T0 + REQUEST_LOOKBACK * 3)
    _, _, cursor4 = honour_requests(cursor3, INPUTS, [one, two, bad, far])
    assert json.loads(cursor4)["requests"]["seen"] == [far.event_id]


def test_cursor_of_the_previous_format_still_works():
    old = json.dumps({"corpus": "a" * 64, "model": "b" * 64}, sort_keys=True)
    assert decide(old, INPUTS) == (None, old)
    runs, _, cursor = honour_requests(old, INPUTS, [_request(1, T0)])
    assert len(runs) == 1
    state = json.loads(cursor)
    assert (state["corpus"], state["model"]) == ("a" * 64, "b" * 64)
    # A changed corpus after a request: one corpus run, the request part kept.
    request, cursor2 = decide(cursor, IndexInputs("c" * 64, "b" * 64))
    assert request is not None and json.loads(cursor2)["requests"] == state["requests"]


SQL_REQUEST = """
INSERT INTO ml_events.events (event_id, event_type, occurred_at, subject, payload)
SELECT id, 'ml.embedding.reindex.request.v1', now(), 'search.live_documents',
       jsonb_build_object('event_id', id, 'event_type', 'ml.embedding.reindex.request.v1',
                          'occurred_at', now(), 'actor', %s::text, 'reason', %s::text)
FROM gen_random_uuid() AS id
RETURNING event_id::text
"""


def _sql_request(dsn: str, actor: str, reason: str | None) -> str:
    query = SQL_REQUEST if reason is not None else SQL_REQUEST.replace(", 'reason', %s::text", "")
    with psycopg.connect(dsn) as conn:
        params = (actor, reason) if reason is not None else (actor,)
        return conn.execute(query, params).fetchone()[0]


def test_sensor_honours_each_request_exactly_once(mlflow_resource, no_requests, monkeypatch, store):
    monkeypatch.delenv("ML_CORPUS_PATH", raising=False)
    first, cursor = _tick(mlflow_resource, None, no_requests, store)
    assert len(first.run_requests) == 1  # the first look at the corpus
    assert not _tick(mlflow_resource, cursor, no_requests, store)[0].run_requests

    event = reindex_requests.append_request(no_requests, "alice", "index rows drifted")
    result, cursor1 = _tick(mlflow_resource, cursor, no_requests, store)
    (run,) = result.run_requests
    assert run.run_key == f"reindex-request:{event['event_id']}"
    assert run.tags["ml-assets/reason"] == "index rows drifted"
    # Evaluated again, and after a restart (a new context with the stored cursor): nothing.
    again, cursor_again = _tick(mlflow_resource, cursor1, no_requests, store)
    assert not again.run_requests and again.skip_reason and cursor_again == cursor1
    assert not _tick(mlflow_resource, cursor_again, no_requests, store)[0].run_requests

    # A plain SQL row (the README's recipe) is a request too: one more run.
    row_id = _sql_request(no_requests, "bob", "after a manual repair")
    result, cursor2 = _tick(mlflow_resource, cursor1, no_requests, store)
    assert [r.run_key for r in result.run_requests] == [f"reindex-request:{row_id}"]
    assert not _tick(mlflow_resource, cursor2, no_requests, store)[0].run_requests

    # A row that does not match the schema is not a request: no run, now or later.
    _sql_request(no_requests, "carol", None)
    result, cursor3 = _tick(mlflow_resource, cursor2, no_requests, store)
    assert not result.run_requests and cursor3 != cursor2
    assert not _tick(mlflow_resource, cursor3, no_requests, store)[0].run_requests


def test_cli_appends_a_valid_request(tmp_path):
    cli = str(Path(sys.executable).with_name("ml-assets"))
    home = tmp_path / "home"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ML_", "DAGSTER_"))},
        "ML_HOME": str(home),
        "USER": "operator",
    }
    try:
        done = subprocess.run(
            [cli, "reindex", "--reason", "new synonyms in the corpus"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        event_id = done.stdout.strip()
        assert "reindex-request:" + event_id in done.stderr
        dsn = with_database(f"postgresql://postgres:@/postgres?host={home / 'pg'}", "ml_assets")
        (stored,) = events.read(dsn, events.REINDEX_REQUEST)
        events.validate(stored)
        assert stored["event_id"] == event_id and stored["actor"] == "operator"
        assert stored["reason"] == "new synonyms in the corpus"
        runs, _, _ = honour_requests(None, INPUTS, reindex_requests.read_requests(dsn))
        assert [r.run_key for r in runs] == [f"reindex-request:{event_id}"]

        blank = subprocess.run(
            [cli, "reindex", "--reason", "  "], env=env, capture_output=True, text=True
        )
        assert blank.returncode == 2 and "reason" in blank.stderr and not blank.stdout
        assert len(events.read(dsn, events.REINDEX_REQUEST)) == 1
    finally:
        subprocess.run([cli, "stop"], env=env, capture_output=True, timeout=60)
