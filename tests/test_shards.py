"""The sharded index (`shards:`): shard runs through the real daemon's queue, a failing shard,
and an edit that touches two shards. A 240-document slice of the shipped corpus in 4 shards
keeps it cheap; the embedder and the artifact root come from the session's search chain."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import psycopg
import pytest
from dagster import DagsterEventType, DagsterRunStatus, RunRequest, materialize
from pgvector.psycopg import register_vector

from ml_assets.components.search_index.assets import (
    build_search_corpus,
    documents_from_bytes,
    load_embedder,
)
from ml_assets.components.search_index.reindex_shards_sensor import plan, sharded_jobs, start
from ml_assets.components.search_index.shard_assets import (
    build_embedding_shards,
    build_sharded_index,
)
from ml_assets.resources.defaults import local_resources
from ml_assets.resources.storage import latest_ref
from ml_assets.search.corpus import (
    content_hash,
    default_corpus_path,
    default_queries_path,
    load_corpus,
)
from ml_assets.search.index import reindex
from ml_assets.search.shards import (
    shard_digest,
    shard_keys,
    shard_lock_key,
    shard_of,
    shard_status,
    split,
    staging_table,
)
from ml_assets.search.spec import SearchIndexSpec, shipped
from tests.conftest import REPO, fresh_vector_database
from tests.shard_daemon import daemon_fixture, wait_runs  # noqa: F401  (fixture `daemon`)

SHARDS = 4
DOCS = 240
# The index is built with the fp32 embedder here: its vectors for a text do not depend on the
# batch it was embedded in beyond float rounding. (The int8 export's dynamic quantisation
# scales each batch by its own range: the same text embedded in its shard's batches and in the
# whole corpus's measured cosine 0.989 apart, so int8 "same vectors" would not be testable.)
VARIANT, OTHER = "fp32", "int8"
VECTOR_TOL = 1e-4
COSINE_MIN = 0.9999


def _spec(corpus: Path) -> SearchIndexSpec:
    return replace(
        shipped(), corpus_path=corpus, queries_path=default_queries_path(), shards=SHARDS,
        labelled_sets=(), variant=VARIANT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def shards_env(search_state, tmp_path_factory, pg_dsn, mlflow_resource):
    """The slice corpus materialized as search_corpus, a monolithic reference index of it,
    and an empty vector store for the sharded one."""
    base = tmp_path_factory.mktemp("shards")
    corpus = base / "corpus.jsonl"
    lines = default_corpus_path().read_text().splitlines()[:DOCS]
    corpus.write_text("\n".join(lines) + "\n")
    spec = _spec(corpus)
    root = search_state["root"]
    sharded = fresh_vector_database(pg_dsn, "vec_shards_sharded")
    result = materialize(
        [build_search_corpus(spec)],
        resources=local_resources(root, mlflow_resource, sharded),
        instance=search_state["instance"],
    )
    assert result.success
    ref = latest_ref(root, "search_corpus")
    docs = documents_from_bytes(ref.read_verified())
    from ml_assets.resources.storage import ArtifactStore

    embedder, model_sha = load_embedder(
        ArtifactStore(base_dir=str(root)), latest_ref(root, "embedding_model_onnx"), VARIANT, None
    )
    reference = fresh_vector_database(pg_dsn, "vec_shards_reference")
    reindex(reference, docs, embedder, model_sha, ref.extra["corpus_sha256"])
    return {
        "base": base, "corpus": corpus, "spec": spec, "root": root, "docs": docs,
        "sharded": sharded, "reference": reference, "model_sha": model_sha,
        "instance": search_state["instance"], "mlflow": mlflow_resource, "pg": pg_dsn,
    }  # fmt: skip


def _rows(dsn: str) -> dict:
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        rows = conn.execute(
            "SELECT tenant_id, doc_id, content_hash, title, body, tags, tsv::text, embedding"
            " FROM search.live_documents"
        ).fetchall()
    return {(r[0], r[1]): (r[2:7], r[7].to_numpy()) for r in rows}


def _live(dsn: str) -> tuple:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT table_name, model_version, corpus_sha256 FROM search.live_index"
        ).fetchone()


def test_a_document_keeps_its_shard_when_its_content_changes(shards_env):
    keys = shard_keys(16)
    assert keys == [f"{i:x}" for i in range(16)] and len(shard_keys(256)) == 256
    assert shard_keys(4) == ["0-3", "4-7", "8-b", "c-f"]
    doc = shards_env["docs"][0]
    edited = replace(doc, text=doc.text + " Revised.")
    assert content_hash(doc) != content_hash(edited)
    assert all(shard_of(doc, n) == shard_of(edited, n) for n in (2, 4, 16, 256))
    sizes = [len(v) for v in split(shards_env["docs"], SHARDS).values()]
    assert sum(sizes) == DOCS and min(sizes) > 20  # the key hash spreads the slice


def test_the_yaml_field_alone_makes_the_shipped_index_sharded():
    from dagster import AssetKey, Definitions

    from ml_assets.components import SearchIndex, Tenant
    from ml_assets.resources.defaults import resource_defs
    from tests.helpers import CATALOG, EMBEDDER_MODEL

    index = SearchIndex(
        registered_model=EMBEDDER_MODEL, tenants=[Tenant(id="acme")], shards=16
    ).definitions()
    defs = Definitions.merge(index, resource_defs(CATALOG))
    graph = defs.resolve_asset_graph()
    node = graph.get(AssetKey("embedding_shards"))
    assert node.partitions_def.get_partition_keys() == shard_keys(16)
    assert node.pools == {"embedder"}
    assert AssetKey("embedding_shards") in graph.get(AssetKey("embedding_index")).parent_keys
    assert {"reindex_corpus_job", "reindex_shards_job", "reindex_job"} <= {
        j.name for j in defs.resolve_all_job_defs()
    }
    with pytest.raises(ValueError, match="shards must be one of"):
        SearchIndex(registered_model="e", tenants=[Tenant(id="acme")], shards=12).spec()


def test_a_backfill_of_every_shard_through_the_daemon_equals_a_monolithic_build(shards_env, daemon):
    cli = daemon["bin"] / "dagster"
    ws = str(daemon["base"] / "workspace.yaml")
    subprocess.run(
        [cli, "job", "backfill", "-w", ws, "-j", "reindex_shards_job",
         "--partitions", ",".join(shard_keys(SHARDS)), "--noprompt"],
        env=daemon["env"], cwd=REPO, check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    runs = wait_runs(daemon, "reindex_shards_job", SHARDS)
    assert all(r.dagster_run.status == DagsterRunStatus.SUCCESS for r in runs)
    assert sorted(r.dagster_run.tags["dagster/partition"] for r in runs) == shard_keys(SHARDS)
    # Through the queue: never more than max_concurrent_runs (2) in progress at once (how
    # many overlapped depends on how fast the backfill daemon submits them).
    spans = [(r.start_time, r.end_time) for r in runs]
    overlap = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    print(f"shard runs in progress at once: at most {overlap}")
    assert 1 <= overlap <= 2, spans
    for r in runs:  # each one waited in the QueuedRunCoordinator's queue
        queued = daemon["instance"].get_records_for_run(
            r.dagster_run.run_id, of_type=DagsterEventType.RUN_ENQUEUED
        )
        assert queued.records, r.dagster_run.run_id
    assert _live(shards_env["sharded"]) is None  # shards alone switch nothing

    subprocess.run(
        [cli, "job", "launch", "-w", ws, "-j", "index_job"],
        env=daemon["env"], cwd=REPO, check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    (index_run,) = wait_runs(daemon, "index_job", 1)
    assert index_run.dagster_run.status == DagsterRunStatus.SUCCESS

    assert _live(shards_env["sharded"]) == _live(shards_env["reference"])
    sharded, reference = _rows(shards_env["sharded"]), _rows(shards_env["reference"])
    assert sharded.keys() == reference.keys() and len(sharded) == DOCS
    worst, cos = 0.0, 1.0
    for key, (fields, vec) in reference.items():
        assert sharded[key][0] == fields, key
        worst = max(worst, float(np.abs(sharded[key][1] - vec).max()))
        cos = min(cos, float(sharded[key][1] @ vec))
    print(f"sharded vs monolithic vectors: max |diff| {worst:.2e}, min cosine {cos:.6f}")
    assert worst <= VECTOR_TOL and cos >= COSINE_MIN


def _materialize(shards_env, assets, **kwargs):
    """Materialize `assets`; the other assets of the sharded index are their sources."""
    from ml_assets.components.search_index.embedder_assets import embedding_model_onnx

    spec = shards_env["spec"]
    names = {a.key.to_user_string() for a in assets}
    everything = [
        embedding_model_onnx, build_search_corpus(spec), build_embedding_shards(spec),
        build_sharded_index(spec),
    ]  # fmt: skip
    sources = [a.to_source_asset() for a in everything if a.key.to_user_string() not in names]
    return materialize(
        [*sources, *assets],
        resources=local_resources(shards_env["root"], shards_env["mlflow"], shards_env["sharded"]),
        instance=shards_env["instance"],
        raise_on_error=False,
        **kwargs,
    )


def test_an_edit_in_two_shards_re_embeds_only_their_changed_documents(shards_env):
    spec, docs = shards_env["spec"], shards_env["docs"]
    by_shard = split(docs, SHARDS)
    a, b, c = shard_keys(SHARDS)[:3]
    edits = {by_shard[a][0].id, by_shard[b][1].id}
    rows = [json.loads(line) for line in shards_env["corpus"].read_text().splitlines()]
    for row in rows:
        if row["id"] in edits:
            row["text"] += " Revised guidance."
    corpus = shards_env["base"] / "corpus_edited.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    edited = list(load_corpus(corpus).documents)
    before = _rows(shards_env["sharded"])

    assert _materialize(
        shards_env,
        [build_search_corpus(spec)],
        run_config={"ops": {"search_corpus": {"config": {"source_path": str(corpus)}}}},
    ).success
    with psycopg.connect(shards_env["sharded"]) as conn:
        status = shard_status(conn, edited, SHARDS, shards_env["model_sha"])
    assert {k for k, s in status.items() if s != "complete"} == {a, b}
    # The sensor's next stage asks for exactly those two shard runs, with the same run keys
    # on every evaluation (a restarted daemon's Dagster skips the ones it launched).
    pending = start(None, [RunRequest(run_key="k", run_config={}, tags={})])
    runs, cursor, _ = plan(pending, True, status)
    again, _, _ = plan(pending, True, status)
    assert (
        [r.run_key for r in runs] == [f"k/shard:{a}", f"k/shard:{b}"] == [r.run_key for r in again]
    )
    assert cursor == pending  # still pending until the index run is requested

    shards_asset = build_embedding_shards(spec)
    embedded = {}
    for key in (a, b, c):
        result = _materialize(shards_env, [shards_asset], partition_key=key)
        assert result.success
        (mat,) = result.asset_materializations_for_node("embedding_shards")
        embedded[key] = mat.metadata["embedded"].value
        assert mat.metadata["digest"].value == shard_digest(split(edited, SHARDS)[key])
    assert embedded == {a: 1, b: 1, c: 0}

    result = _materialize(shards_env, [build_sharded_index(spec)])
    assert result.success
    (mat,) = result.asset_materializations_for_node("embedding_index")
    assert mat.metadata["mode"].value == "incremental"
    assert (mat.metadata["updated"].value, mat.metadata["switched_live_index"].value) == (2, False)
    after = _rows(shards_env["sharded"])
    for key, (fields, vec) in before.items():
        if key[1] in edits:
            assert after[key][0][0] != fields[0] and not np.array_equal(after[key][1], vec)
        else:
            assert after[key][0] == fields and np.array_equal(after[key][1], vec), key


def test_the_sensor_walks_the_stages_with_run_keys_a_restart_repeats(
    shards_env, tmp_path, monkeypatch
):
    from dagster import build_sensor_context

    from ml_assets.components.search_index.reindex_shards_sensor import build_sharded_reindex_sensor
    from ml_assets.resources import MlflowResource
    from ml_assets.resources.postgres import PostgresResource
    from ml_assets.resources.storage import ArtifactStore

    spec = shards_env["spec"]
    sensor = build_sharded_reindex_sensor(spec, sharded_jobs(spec))
    resources = {
        # No production embedder in this store: the shards' model is the declared variant's.
        "mlflow": MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
        "postgres": PostgresResource(dsn=shards_env["sharded"]),
        "store": ArtifactStore(base_dir=str(shards_env["root"])),
    }

    def tick(cursor):
        context = build_sensor_context(
            cursor=cursor, resources=resources, instance=shards_env["instance"]
        )
        result = sensor(context)
        return [(r.job_name, r.run_key) for r in result.run_requests], result.cursor

    # The sensor watches the original slice; search_corpus holds the edited one: corpus first.
    monkeypatch.setenv("ML_CORPUS_PATH", str(shards_env["corpus"]))
    runs, cursor = tick(None)
    assert [job for job, _ in runs] == ["reindex_corpus_job"]
    assert tick(None)[0] == runs  # a restarted daemon asks for the same run key: Dagster skips it
    # Watching the edited file (what search_corpus holds, every shard done): straight to the
    # index run, and then nothing pending.
    monkeypatch.setenv("ML_CORPUS_PATH", str(shards_env["base"] / "corpus_edited.jsonl"))
    runs, cursor = tick(None)
    assert [job for job, _ in runs] == ["reindex_job"] and runs[0][1].endswith("/index")
    assert "pending" not in json.loads(cursor)
    assert tick(cursor)[0] == []


def test_a_failing_shard_keeps_the_live_index_and_a_retry_of_it_alone_switches(shards_env):
    spec = shards_env["spec"]
    live_before, rows_before = _live(shards_env["sharded"]), _rows(shards_env["sharded"])
    other = {"variant": OTHER}
    shards_asset, index = build_embedding_shards(spec), build_sharded_index(spec)
    held = shard_keys(SHARDS)[-1]
    manifest = json.loads(latest_ref(shards_env["root"], "embedding_model_onnx").read_verified())
    other_sha = manifest["variants"][OTHER]["sha256"]
    # Another session holds the shard (a stuck run): its run fails in bounded time.
    with psycopg.connect(shards_env["sharded"], autocommit=True) as holder:
        holder.execute(
            "SELECT pg_advisory_lock(%s)", (shard_lock_key(staging_table(other_sha, SHARDS), held),)
        )
        for key in shard_keys(SHARDS):
            config = {**other, "lock_wait_s": 0.5} if key == held else other
            result = _materialize(
                shards_env, [shards_asset], partition_key=key,
                run_config={"ops": {"embedding_shards": {"config": config}}},
            )  # fmt: skip
            assert result.success == (key != held), key
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert "another run holds shard" in failure.step_failure_data.error.message
    refused = _materialize(
        shards_env, [index], run_config={"ops": {"embedding_index": {"config": other}}}
    )
    assert not refused.success
    message = next(
        e for e in refused.all_events if e.is_step_failure
    ).step_failure_data.error.message
    assert f"{held} (missing)" in message and "Nothing was switched" in message
    assert _live(shards_env["sharded"]) == live_before
    assert _rows(shards_env["sharded"]).keys() == rows_before.keys()

    retry = _materialize(
        shards_env, [shards_asset], partition_key=held,
        run_config={"ops": {"embedding_shards": {"config": other}}},
    )  # fmt: skip
    assert retry.success
    done = _materialize(
        shards_env, [index], run_config={"ops": {"embedding_index": {"config": other}}}
    )
    assert done.success
    table, model, _ = _live(shards_env["sharded"])
    assert model == other_sha and table != live_before[0]
    assert len(_rows(shards_env["sharded"])) == DOCS


def test_no_shard_run_before_the_embedder_export_exists_and_the_tick_says_why(
    shards_env, tmp_path, monkeypatch
):
    """A first start (issue 27): the corpus is materialized, the export is not yet. The shard
    runs would fail loading embedding_model_onnx, so the sensor waits and names it."""
    from dagster import build_sensor_context

    from ml_assets.components.search_index.reindex_shards_sensor import build_sharded_reindex_sensor
    from ml_assets.resources import MlflowResource
    from ml_assets.resources.postgres import PostgresResource
    from ml_assets.resources.storage import ArtifactStore

    spec, root = shards_env["spec"], tmp_path / "artifacts"
    fresh = fresh_vector_database(shards_env["pg"], "vec_shards_first_start")
    result = materialize(
        [build_search_corpus(spec)],
        resources=local_resources(root, shards_env["mlflow"], fresh),
        instance=shards_env["instance"],
    )
    assert result.success and latest_ref(root, "embedding_model_onnx") is None
    monkeypatch.setenv("ML_CORPUS_PATH", str(shards_env["corpus"]))
    sensor = build_sharded_reindex_sensor(spec, sharded_jobs(spec))
    resources = {
        "mlflow": MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
        "postgres": PostgresResource(dsn=fresh),
        "store": ArtifactStore(base_dir=str(root)),
    }
    cursor = None
    for _ in range(2):  # the first tick starts the reindex, the second finds it still waiting
        context = build_sensor_context(
            cursor=cursor, resources=resources, instance=shards_env["instance"]
        )
        tick = sensor(context)
        assert tick.run_requests == [], [r.run_key for r in tick.run_requests]
        assert "waiting for embedding_model_onnx" in tick.skip_reason.skip_message
        cursor = tick.cursor
    assert json.loads(cursor)["pending"]  # the reindex waits; it is not dropped


def test_nothing_is_requested_while_a_run_writing_the_index_inputs_is_in_flight():
    pending = start(None, [RunRequest(run_key="k", run_config={}, tags={})])
    runs, cursor, what = plan(pending, True, {"0-7": "missing"}, busy=["backfill abc"])
    assert runs == [] and cursor == pending and "waiting for backfill abc" in what
    runs, _, _ = plan(pending, True, {"0-7": "missing"})
    assert [r.run_key for r in runs] == ["k/shard:0-7"]


def test_an_index_already_built_and_judged_from_these_inputs_is_not_built_again():
    """After `ml-assets up`'s first backfill, the sensor's own reindex of the same corpus and
    model ends without an index run; an operator's request still runs it."""
    done = {"0-7": "complete", "8-f": "complete"}
    pending = start(None, [RunRequest(run_key="k", run_config={}, tags={})])
    runs, cursor, what = plan(pending, True, done, judged=True)
    assert runs == [] and "pending" not in json.loads(cursor) and "already hold" in what
    asked = start(None, [RunRequest(run_key="r", tags={"ml-assets/reindex_request": "e1"})])
    runs, _, _ = plan(asked, True, done, judged=True)
    assert [r.run_key for r in runs] == ["r/index"]
