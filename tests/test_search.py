"""Corpus → embedder export → pgvector index → quality report, on real Postgres and model."""

from __future__ import annotations

import json
import threading
import typing
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import psycopg
import pytest
from dagster import materialize
from psycopg import sql

from ml_assets.components.search_index.assets import (
    documents_from_bytes,
    embedding_index,
    load_embedder,
    search_corpus,
)
from ml_assets.components.search_index.embedder_assets import embedding_model_onnx
from ml_assets.platform.dsn import with_database
from ml_assets.platform.inline_plots import INLINE_LIMIT
from ml_assets.search.corpus import default_corpus_path, load_corpus, load_queries
from ml_assets.search.evaluation import hnsw_recall, rank_all
from ml_assets.search.index import (
    REINDEX_LOCK_KEY,
    ReindexBusyError,
    connect,
    live_index,
    reindex,
    table_name,
)
from ml_assets.search.query import (
    DEFAULT_FUSION,
    MODES,
    FusionWeights,
    SearchOptions,
    SearchRequest,
    UnknownTenantError,
    run_search,
    search,
)
from ml_assets.search.tables import lexical_tsvector
from ml_assets.search.tuning import FEEDBACK_CHOOSABLE, fetch_candidates, rerank_all
from tests.helpers import failure_text, latest_metadata
from tests.search_env import env_embedder as _embedder
from tests.search_env import env_ref as _ref
from tests.search_env import (  # the fixtures `env`, `vector_dsn`, `dagster_instance`
    search_env,  # noqa: F401
    search_state_dsn,  # noqa: F401
    search_state_instance,  # noqa: F401
)


def test_search_lineage_is_green_with_checks(env, dagster_instance):
    assert env["checks"] == {
        "fp32_parity": True,
        "int8_parity": True,
        "int8_retrieval": True,
        "hybrid_not_worse": True,
    }
    md = latest_metadata(dagster_instance, "embedding_index")
    assert md["mode"] == "full" and md["embedded"] == md["dagster/row_count"] >= 1000
    report = json.loads(
        Path(latest_metadata(dagster_instance, "search_quality_report")["path"]).read_text()
    )
    assert set(report["hnsw_recall_at_10"]) == {q.tenant_id for q in load_queries()}
    assert min(report["hnsw_recall_at_10"].values()) >= 0.9
    client = env["resources"]["mlflow"].client
    registered = _ref(env, "embedding_model_onnx").extra["registered_versions"]
    shas = {
        variant: client.get_model_version("text-embedder", version).tags["sha256"]
        for variant, version in registered.items()
    }
    md = latest_metadata(dagster_instance, "embedding_model_onnx")
    assert shas == {"int8": md["int8_sha256"], "fp32": md["fp32_sha256"]}


def _report(dagster_instance) -> dict:
    md = latest_metadata(dagster_instance, "search_quality_report")
    return json.loads(Path(md["path"]).read_text())


def test_report_judges_both_labelled_sets_and_search_reproduces_its_ranking(env, dagster_instance):
    report = _report(dagster_instance)
    md = latest_metadata(dagster_instance, "search_quality_report")
    assert md["search_config"] == report["search_config"]
    assert set(report["sets"]) == set(report["verdicts"]) == {"search", "docs"}
    # The modes per labelled set, drawn inline after the headline, before the verdicts.
    keys = list(md)
    assert keys.index("headline") < keys.index("modes_plot") < keys.index("verdicts")
    assert len(md["modes_plot"]) < INLINE_LIMIT
    for name, v in report["verdicts"].items():
        figures = ", ".join(f"{m} {v[m]:.3f}" for m in ("lexical", "vector", "hybrid"))
        assert f"{name}: {figures}" in md["modes_plot"]
    for name, v in report["verdicts"].items():
        assert v["passed"] and v["cross_tenant_hits"] == 0, (name, v)
        modes = {r["mode"] for r in report["sets"][name]["scores"]}
        assert {"vector", "lexical", "lexical:ts_rank_cd", "hybrid"} <= modes
        # BM25 against ts_rank_cd, side by side (the target is on the real-text set).
        assert v["lexical"] >= v["lexical_ts_rank_cd"] + 0.03, (name, v)
    families = {r["family"]: r for r in report["fusion_families"]}
    assert set(families) == {
        m + a
        for m in ("rrf", "minmax", "zscore")
        for a in ("", "+known_terms", "+query_terms", "+top_match")
    } | {"zscore+feedback"}
    assert [r["chosen"] for r in families.values()].count(True) == 1
    # Every trial was scored on the tune split only; the chosen one is the best of those tune
    # may choose (lexical feedback is reported, not chosen, unless FEEDBACK_CHOOSABLE).
    best = max(
        t["tune_ndcg_at_10_mean"]
        for t in report["fusion_trials"]
        if FEEDBACK_CHOOSABLE or t["feedback"] == 0
    )
    chosen = next(r for r in families.values() if r["chosen"])
    assert (chosen["search_tune"] + chosen["docs_tune"]) / 2 == pytest.approx(best)
    # What the service does with the bundled config: FusionWeights(**config["fusion"]).
    fusion = FusionWeights(**json.loads(json.dumps(report["search_config"]["fusion"])))
    assert asdict(fusion) == report["fusion"]
    embedder = _embedder(env)
    queries = load_queries()
    assert set(report["hybrid_rankings"]) == {q.id for q in queries}
    with connect(env["dsn"], autocommit=True) as conn:
        for q in queries:
            hits = search(conn, embedder, q.query, q.tenant_id, limit=10, fusion=fusion)
            assert [h.doc_id for h in hits] == report["hybrid_rankings"][q.id], q.id


def test_tuning_reranks_the_candidates_exactly_as_the_sql_does(env):
    embedder = _embedder(env)
    queries = load_queries()
    vectors = embedder.embed([q.query for q in queries])
    budget = DEFAULT_FUSION.lexical_budget
    configs = [
        DEFAULT_FUSION,
        replace(DEFAULT_FUSION, method="zscore", adapt="query_terms", lexical_at_1=0.1),
        FusionWeights(ranker="bm25", k=10, lexical=0.7, candidates=20),
        FusionWeights(
            ranker="bm25", k=5, lexical=0.0, adapt="top_match", lexical_at_1=1.5, candidates=100
        ),
        FusionWeights(ranker="bm25", k1=1.5, b=0.3, adapt="known_terms", lexical_at_1=1.0),
        # Lexical feedback alone: the vector list of the moved query vector.
        FusionWeights(ranker="bm25", method="minmax", lexical=0.0, feedback=1.0, feedback_docs=5),
    ]
    with connect(env["dsn"], autocommit=True) as conn:
        cands = fetch_candidates(conn, queries, vectors, lexical_budget=budget)
        vector = rank_all(conn, queries, vectors, "vector", DEFAULT_FUSION)
        for f in (replace(c, lexical_budget=budget) for c in configs):
            python, sql_ranked = rerank_all(cands, f), rank_all(conn, queries, vectors, "hybrid", f)
            same = sum(a == b for a, b in zip(python, sql_ranked, strict=True))
            # z-score's mean and deviation may round differently, and so may the moved query
            # vector (float4 in the SQL); the rest is the same floats.
            exact = f.method != "zscore" and f.feedback == 0
            assert same >= (1.0 if exact else 0.95) * len(queries), f
            if f.feedback:
                # The feedback does move the vector list.
                assert sum(a != b for a, b in zip(sql_ranked, vector, strict=True)) >= 10, f


def test_docs_set_scratch_index_keeps_tenants_apart(env, dagster_instance):
    report = _report(dagster_instance)
    embedder = _embedder(env)
    docs = load_corpus(default_corpus_path("docs")).documents
    tenant_of = {d.id: d.tenant_id for d in docs}
    queries = load_queries(dataset="docs")
    vectors = embedder.embed([q.query for q in queries])
    tenants = sorted(set(tenant_of.values()))
    with connect(with_database(env["dsn"], "ml_assets_eval"), autocommit=True) as conn:
        assert live_index(conn)["model_version"] == report["embedder_sha256"]
        counts = dict(
            conn.execute("SELECT tenant_id, count(*) FROM search.live_documents GROUP BY 1")
        )
        assert counts == Counter(tenant_of.values())
        # Each query asked in every tenant, not only its own: only that tenant's documents.
        for q, v in list(zip(queries, vectors, strict=True))[::6]:
            for tenant in tenants:
                for mode in MODES:
                    hits = run_search(conn, q.query, v, tenant, limit=20, mode=mode)
                    assert all(h.tenant_id == tenant == tenant_of[h.doc_id] for h in hits)
                    assert hits or mode == "lexical"
    # The report's own rankings of the set are in-tenant too.
    for qid, ids in report["sets"]["docs"]["hybrid_rankings"].items():
        q = next(q for q in queries if q.id == qid)
        assert ids and all(tenant_of[d] == q.tenant_id for d in ids)


def test_lexical_search_meets_identifiers_by_their_words(env, dagster_instance):
    report = _report(dagster_instance)
    with connect(with_database(env["dsn"], "ml_assets_eval"), autocommit=True) as conn:
        # A table of the current layout: one of another layout is rebuilt, never reused.
        assert live_index(conn)["table_name"] == table_name(report["embedder_sha256"])
        text = "configparser.RawConfigParser.read_file os.path.join JSONEncoder"
        lexemes = conn.execute(
            f"SELECT tsvector_to_array({lexical_tsvector('%(x)s')})", {"x": text}
        ).fetchone()[0]
        # The whole identifiers stay lexemes; their parts are lexemes too.
        assert {"configparser.rawconfigparser.read", "os.path.join", "jsonencod"} <= set(lexemes)
        assert {"raw", "config", "parser", "read", "file", "os", "path", "join", "json"} <= set(
            lexemes
        )
        # `bisect.insort_left` is one host-like token to Postgres' parser, and neither "bisect"
        # nor "insort" is a word of its passage: the title's parts find it.
        hits = run_search(conn, "bisect insort", None, "stdlib-data", limit=5, mode="lexical")
        assert {"sd-bisect.insort_left-1", "sd-bisect.insort_right-1"} <= {h.doc_id for h in hits}


def test_known_queries_find_their_documents(env):
    embedder = _embedder(env)
    queries = load_queries()
    found = 0
    for q in queries:
        hits = search(env["dsn"], embedder, q.query, q.tenant_id, limit=10)
        assert all(h.tenant_id == q.tenant_id for h in hits)
        found += bool({h.doc_id for h in hits} & set(q.relevant_ids))
    # Most labelled queries have a relevant document in the hybrid top 10.
    assert found / len(queries) >= 0.7
    hit = search(env["dsn"], embedder, queries[0].query, queries[0].tenant_id, limit=3)[0]
    assert hit.score > 0 and (hit.vector_rank is not None or hit.lexical_rank is not None)


def test_tenant_isolation_and_small_tenant_gets_limit(env):
    embedder = _embedder(env)
    docs = documents_from_bytes(Path(_ref(env, "search_corpus").path).read_bytes())
    counts: dict[str, int] = {}
    for d in docs:
        counts[d.tenant_id] = counts.get(d.tenant_id, 0) + 1
    small = min(counts, key=counts.get)
    others = {d.id for d in docs if d.tenant_id != small}
    for mode in ("vector", "lexical", "hybrid"):
        hits = search(env["dsn"], embedder, "natural gas forward curve", small, limit=20, mode=mode)
        assert hits and all(h.tenant_id == small for h in hits)
        assert not {h.doc_id for h in hits} & others
    # HNSW filters after the walk; iterative scans must still fill the page for a 5% tenant.
    hits = search(env["dsn"], embedder, "power price", small, limit=20, mode="vector")
    assert len(hits) == 20
    with pytest.raises(UnknownTenantError):
        search(env["dsn"], embedder, "power price", "no-such-tenant", limit=5)
    with pytest.raises(ValueError, match="limit"):
        search(env["dsn"], embedder, "power price", small, limit=10_000)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"query": "gas\x00price"}, r"query must not contain the NUL character \(U\+0000\)"),
        ({"tags": ["curve", "x\x00"]}, "tags must not contain the NUL"),
        ({"mode": "semantic"}, "mode must be one of"),
        ({"tenant_id": ""}, "tenant_id is required"),
        ({"query": "  "}, "query must not be empty"),
        ({"limit": 0}, r"limit must be within 1\.\.100, got 0"),
        ({"limit": 101}, "got 101"),
    ],
)
def test_a_bad_request_is_refused_when_it_is_made(options, match):
    with pytest.raises(ValueError, match=match):
        SearchRequest(**{"query": "gas price", "tenant_id": "acme", **options})


def test_search_options_are_the_request_fields_after_the_tenant():
    fields = typing.get_type_hints(SearchRequest)
    assert list(fields)[:2] == ["query", "tenant_id"]
    after = {k: v for k, v in fields.items() if k not in ("query", "tenant_id")}
    assert typing.get_type_hints(SearchOptions) == after


def test_corpus_edit_reindexes_only_changed_documents(env, dagster_instance, tmp_path):
    docs = documents_from_bytes(Path(_ref(env, "search_corpus").path).read_bytes())
    edited = [dict(d.__dict__, tags=list(d.tags)) for d in docs]
    for row in edited[:3]:
        row["text"] = row["text"] + " Revised after the latest broker survey."
    removed = edited.pop(10)
    added = dict(edited[0], id="added-doc-0001", title="Freshly added methodology note")
    edited.append(added)
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in edited) + "\n")
    result = materialize(
        [search_corpus, embedding_model_onnx.to_source_asset(), embedding_index],
        resources=env["resources"],
        instance=dagster_instance,
        run_config={"ops": {"search_corpus": {"config": {"source_path": str(path)}}}},
    )
    assert result.success
    md = latest_metadata(dagster_instance, "embedding_index")
    assert (md["mode"], md["embedded"], md["deleted"]) == ("incremental", 4, 1)
    with connect(env["dsn"]) as conn:
        ids = {r[0] for r in conn.execute("SELECT doc_id FROM search.live_documents")}
    assert "added-doc-0001" in ids and removed["id"] not in ids


def _tenant_sizes(conn):
    return conn.execute(
        "SELECT tenant_id, ndoc FROM search.tenant_stats WHERE table_name ="
        " (SELECT table_name FROM search.live_index WHERE name = 'default') AND ndoc > 0"
    ).fetchall()


def test_lexeme_and_tenant_statistics_stay_in_step_with_the_index(env):
    # Runs after the incremental reindex above: counts kept in step must equal a recount.
    with connect(env["dsn"]) as conn:
        drift = conn.execute(
            "WITH actual AS (SELECT d.tenant_id, u.lexeme, count(*)::int AS ndoc"
            " FROM search.live_documents d, unnest(d.tsv) u GROUP BY 1, 2),"
            " live AS (SELECT * FROM search.lexeme_stats WHERE table_name ="
            " (SELECT table_name FROM search.live_index WHERE name = 'default'))"
            " SELECT count(*) FROM actual a FULL JOIN live s"
            " USING (tenant_id, lexeme) WHERE a.ndoc IS DISTINCT FROM s.ndoc"
        ).fetchone()[0]
        assert drift == 0
        tenants = dict(_tenant_sizes(conn))
        actual = dict(
            conn.execute("SELECT tenant_id, count(*) FROM search.live_documents GROUP BY 1")
        )
        assert tenants == actual
        assert _lengths(conn) == _recounted_lengths(conn)
        live = live_index(conn)
        # Statistics from before the BM25 lengths existed are recounted by the next reindex.
        conn.execute(
            "UPDATE search.tenant_stats SET total_len = NULL WHERE table_name = %s",
            (live["table_name"],),
        )
        conn.commit()
    docs = documents_from_bytes(Path(_ref(env, "search_corpus").path).read_bytes())
    stats = reindex(env["dsn"], docs, _embedder(env), live["model_version"], live["corpus_sha256"])
    assert stats.embedded == 0
    with connect(env["dsn"]) as conn:
        assert _lengths(conn) == _recounted_lengths(conn)


def _lengths(conn) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT tenant_id, total_len FROM search.tenant_stats WHERE table_name ="
            " (SELECT table_name FROM search.live_index WHERE name = 'default') AND ndoc > 0"
        ).fetchall()
    )


def _recounted_lengths(conn) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT tenant_id, sum(length(tsv))::bigint FROM search.live_documents GROUP BY 1"
        ).fetchall()
    )


def test_hnsw_graph_recall_and_odd_queries(env):
    embedder = _embedder(env)
    queries = load_queries()
    vectors = embedder.embed([q.query for q in queries])
    with connect(env["dsn"]) as conn:
        # exact_scan_max_docs=0: the filtered HNSW walk itself, not the small-tenant exact scan.
        for tenant in {q.tenant_id for q in queries}:
            pairs = [(tenant, v) for v in vectors[:20]]
            assert hnsw_recall(conn, pairs, exact_scan_max_docs=0) >= 0.9
            assert hnsw_recall(conn, pairs) >= 0.9
        small = min(
            dict(_tenant_sizes(conn)).items(),
            key=lambda kv: kv[1],
        )[0]
        for exact in (0, 10_000):
            hits = run_search(
                conn,
                "power price",
                vectors[0],
                small,
                limit=20,
                mode="vector",
                exact_scan_max_docs=exact,
            )
            assert len(hits) == 20 and all(h.tenant_id == small for h in hits)
        # Quotes, backslashes and operators in the text are lexemes, never tsquery syntax.
        for text in ("o'neil's \\ back-slash 'quoted' & | ! <-> :*", "the of and", "zzzqqq"):
            for mode in ("lexical", "hybrid"):
                run_search(conn, text, vectors[0], small, limit=5, mode=mode)
        assert run_search(conn, "the of and", None, small, limit=5, mode="lexical") == []


def test_model_switch_is_atomic_while_searches_run(env):
    store = env["resources"]["store"]
    model_ref = _ref(env, "embedding_model_onnx")
    fp32, fp32_sha = load_embedder(store, model_ref, "fp32", None)
    int8 = _embedder(env)
    docs = documents_from_bytes(Path(_ref(env, "search_corpus").path).read_bytes())
    before = live_index(connect(env["dsn"]))
    errors: list[BaseException] = []
    answered = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            try:
                hits = search(
                    env["dsn"],
                    int8,
                    "carbon allowance price",
                    docs[0].tenant_id,
                    limit=5,
                    mode="lexical",
                )
                answered.append(len(hits))
            except BaseException as exc:  # noqa: BLE001 - any failure fails the test
                errors.append(exc)

    thread = threading.Thread(target=searcher)
    thread.start()
    try:
        stats = reindex(env["dsn"], docs, fp32, fp32_sha, "test-corpus")
    finally:
        stop.set()
        thread.join()
    assert not errors and answered and min(answered) == 5
    assert stats.mode == "full" and stats.switched
    with connect(env["dsn"]) as conn:
        after = live_index(conn)
        assert after["table_name"] != before["table_name"]
        assert after["model_version"] == fp32_sha
        # The old table stays for a rollback.
        old = conn.execute(
            sql.SQL("SELECT count(*) FROM search.{}").format(sql.Identifier(before["table_name"]))
        ).fetchone()[0]
        assert old == len(docs)
    # Switch back to the int8 table by reindexing with it (incremental, nothing changed).
    back = reindex(env["dsn"], docs, int8, before["model_version"], "test-corpus")
    assert back.mode == "incremental" and back.embedded == 0 and back.switched


def test_bad_index_input_keeps_the_live_index(env):
    docs = documents_from_bytes(Path(_ref(env, "search_corpus").path).read_bytes())
    live_before = live_index(connect(env["dsn"]))

    class WrongDim:
        dim = 8

        def embed(self, texts):
            return np.ones((len(texts), 8), dtype=np.float32)

    with pytest.raises(ValueError, match="vector"):
        reindex(env["dsn"], docs, WrongDim(), live_before["model_version"], "x")
    # Another reindex in progress → a clear refusal.
    with psycopg.connect(env["dsn"]) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (REINDEX_LOCK_KEY,))
        with pytest.raises(ReindexBusyError):
            reindex(env["dsn"], docs, _embedder(env), live_before["model_version"], "x")
    assert live_index(connect(env["dsn"])) == live_before
    hits = search(env["dsn"], _embedder(env), "gas", docs[0].tenant_id, limit=3)
    assert len(hits) == 3


def test_duplicate_ids_fail_the_corpus_and_keep_the_index(env, dagster_instance, tmp_path):
    docs = documents_from_bytes(Path(_ref(env, "search_corpus").path).read_bytes())
    rows = [dict(d.__dict__, tags=list(d.tags)) for d in docs[:20]]
    rows.append(dict(rows[0]))
    path = tmp_path / "dup.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    live_before = live_index(connect(env["dsn"]))
    result = materialize(
        [search_corpus, embedding_model_onnx.to_source_asset(), embedding_index],
        resources=env["resources"],
        instance=dagster_instance,
        run_config={"ops": {"search_corpus": {"config": {"source_path": str(path)}}}},
        raise_on_error=False,
    )
    assert not result.success
    assert rows[0]["id"] in failure_text(result)
    assert live_index(connect(env["dsn"])) == live_before
