"""The shipped search corpus and labelled queries, and the strict corpus loader."""

from __future__ import annotations

import json
import runpy
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml_assets.search.corpus import (
    DATASETS,
    DOC_TYPES,
    CorpusError,
    Document,
    content_hash,
    default_corpus_path,
    default_queries_path,
    known_tenants,
    load_corpus,
    load_queries,
)

REPO = Path(__file__).resolve().parents[1]

ROWS = [
    {
        "id": "t-inst-0001",
        "tenant_id": "northwind-energy",
        "type": "instrument",
        "title": "NG_HH_BALMO — Henry Hub balance-of-month",
        "text": "Balance-of-month natural gas at Henry Hub, physically settled.",
        "tags": ["natural-gas", "balmo"],
        "updated_at": "2025-03-01T09:00:00Z",
    },
    {
        "id": "t-scen-0001",
        "tenant_id": "helios-trading",
        "type": "scenario",
        "title": "Dunkelflaute",
        "text": "Ten days of low wind in Germany; baseload up 75%.",
        "tags": ["weather", "eu-power"],
        "updated_at": "2025-11-20T08:30:00Z",
    },
]


@pytest.fixture(scope="module")
def shipped():
    return load_corpus(default_corpus_path(), known_tenants())


def write_jsonl(path: Path, rows: list[dict], indent: int | None = None) -> Path:
    lines = [
        json.dumps(r) if indent is None else json.dumps(r, separators=(", ", ": ")) for r in rows
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_shipped_corpus_is_large_multi_tenant_and_complete(shipped):
    docs = shipped.documents
    assert len(docs) >= 1000
    assert shipped.skipped == {}
    assert len({d.id for d in docs}) == len(docs)
    assert [d.id for d in docs] == sorted(d.id for d in docs)
    per_tenant = Counter(d.tenant_id for d in docs)
    assert set(per_tenant) == set(known_tenants()) and len(per_tenant) == 3
    # One deliberately small tenant: filtered search must still fill its result pages.
    assert 0.04 <= min(per_tenant.values()) / len(docs) <= 0.09
    assert {d.type for d in docs} == set(DOC_TYPES)
    for tenant in per_tenant:
        assert {d.type for d in docs if d.tenant_id == tenant} == set(DOC_TYPES)
    prefixes = defaultdict(set)
    for d in docs:
        prefixes[d.tenant_id].add(d.id.split("-")[0])
    assert all(len(p) == 1 for p in prefixes.values()) and len(set().union(*prefixes.values())) == 3
    for d in docs:
        assert d.text.strip() and d.title.strip()
        assert 40 <= len(d.text.split()) <= 160, d.id
        assert 2 <= len(d.tags) <= 6 and all(t == t.lower() for t in d.tags), d.id
        assert d.updated_at.endswith("Z") and d.updated_at[:4] in ("2025", "2026"), d.id


def test_shipped_queries_are_labelled_against_their_own_tenant(shipped):
    queries = load_queries()
    assert load_queries(default_queries_path()) == queries
    assert len(queries) >= 60
    assert len({q.id for q in queries}) == len(queries)
    by_id = {d.id: d for d in shipped.documents}
    titles = [d.title.lower() for d in shipped.documents]
    for q in queries:
        assert 1 <= len(q.relevant_ids) <= 8, q.id
        for rid in q.relevant_ids:
            assert rid in by_id, (q.id, rid)
            assert by_id[rid].tenant_id == q.tenant_id, (q.id, rid)
        assert not any(q.query.lower() in t for t in titles), q.id
    assert {q.split for q in queries} == {"tune", "eval"}
    assert {q.tenant_id for q in queries} == set(known_tenants())
    covered = {by_id[r].type for q in queries for r in q.relevant_ids}
    assert covered == set(DOC_TYPES)
    splits = Counter(q.split for q in queries)
    assert abs(splits["tune"] - splits["eval"]) <= len(queries) // 5


def test_content_hash_ignores_updated_at_and_tracks_content():
    doc = Document(
        "a-1",
        "northwind-energy",
        "curve",
        "HH curve",
        "Some text.",
        ("b", "a"),
        "2025-01-01T00:00:00Z",
    )
    assert content_hash(doc) == content_hash(replace(doc, updated_at="2026-04-01T12:00:00Z"))
    assert content_hash(doc) == content_hash(replace(doc, tags=("a", "b")))
    assert content_hash(doc) != content_hash(replace(doc, text="Some other text."))
    assert content_hash(doc) != content_hash(replace(doc, tenant_id="helios-trading"))


def test_corpus_sha256_is_format_independent(tmp_path):
    jsonl = load_corpus(write_jsonl(tmp_path / "c.jsonl", ROWS, indent=1))
    # Same content as Parquet, rows reversed, tags as a comma string, padded title.
    rows = [{**r, "tags": ", ".join(r["tags"]), "title": f"  {r['title']} "} for r in ROWS[::-1]]
    parquet = load_corpus(write_parquet(tmp_path / "c.parquet", rows))
    assert jsonl.corpus_sha256 == parquet.corpus_sha256
    assert jsonl.source_sha256 != parquet.source_sha256
    assert jsonl.documents == parquet.documents
    # Parquet may carry real timestamps; they load as the same ISO-8601 UTC strings.
    stamped = [{**r, "updated_at": datetime.fromisoformat(r["updated_at"])} for r in ROWS]
    assert load_corpus(write_parquet(tmp_path / "ts.parquet", stamped)).documents == (
        jsonl.documents
    )
    touched = [dict(ROWS[0], updated_at="2026-01-01T00:00:00Z"), ROWS[1]]
    assert load_corpus(write_jsonl(tmp_path / "t.jsonl", touched)).corpus_sha256 == (
        jsonl.corpus_sha256
    )
    edited = [dict(ROWS[0], text="A different text."), ROWS[1]]
    assert load_corpus(write_jsonl(tmp_path / "e.jsonl", edited)).corpus_sha256 != (
        jsonl.corpus_sha256
    )


def test_empty_text_is_skipped_and_counted(tmp_path):
    rows = [*ROWS, {**ROWS[0], "id": "t-inst-0002", "text": "   "}]
    load = load_corpus(write_jsonl(tmp_path / "c.jsonl", rows))
    assert [d.id for d in load.documents] == ["t-inst-0001", "t-scen-0001"]
    assert load.skipped == {"empty_text": 1}


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([ROWS[0], ROWS[0]], r"duplicate id 't-inst-0001'.*line 2.*first seen.*line 1"),
        ([{**ROWS[0], "tenant_id": "acme"}], r"unknown tenant 'acme'.*helios-trading"),
        ([{**ROWS[0], "type": "memo"}], r"line 1 \(id 't-inst-0001'\): unknown type 'memo'"),
        ([{k: v for k, v in ROWS[0].items() if k != "title"}], r"line 1.*missing.*title"),
        ([{**ROWS[0], "tags": 3}], r"line 1: 'tags' must be"),
    ],
)
def test_bad_rows_raise_corpus_error(tmp_path, rows, match):
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    with pytest.raises(CorpusError, match=match):
        load_corpus(path, known_tenants())


def test_bad_files_raise_corpus_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad.jsonl, line 2: malformed JSON"):
        load_corpus(bad)
    with pytest.raises(CorpusError, match="not found"):
        load_corpus(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="is empty"):
        load_corpus(empty)
    with pytest.raises(CorpusError, match=r"unsupported corpus format '\.csv'"):
        load_corpus(tmp_path / "c.csv")
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"definitely not parquet")
    with pytest.raises(CorpusError, match="not a readable Parquet"):
        load_corpus(junk)
    partial = write_parquet(tmp_path / "p.parquet", [{"id": "x", "text": "y"}])
    with pytest.raises(CorpusError, match="missing required column"):
        load_corpus(partial)


def test_the_docs_set_loads_by_name_beside_the_first():
    assert set(DATASETS) == {"search", "docs"}
    assert default_corpus_path() == default_corpus_path("search")
    assert default_queries_path("docs").name == "docs_queries.jsonl"
    assert load_queries(default_queries_path("docs")) == load_queries(dataset="docs")
    assert load_queries() == load_queries(dataset="search")
    assert not set(known_tenants("docs")) & set(known_tenants())
    with pytest.raises(CorpusError, match="unknown dataset 'nope'"):
        default_corpus_path("nope")


def test_bad_queries_raise_corpus_error(tmp_path):
    good = {
        "id": "q1",
        "tenant_id": "northwind-energy",
        "query": "hh balmo",
        "relevant_ids": ["nw-inst-0001"],
        "split": "tune",
    }
    for bad, match in [
        ({**good, "split": "test"}, "unknown split 'test'"),
        ({**good, "relevant_ids": []}, "relevant_ids"),
        ({k: v for k, v in good.items() if k != "query"}, "missing.*query"),
    ]:
        path = write_jsonl(tmp_path / "q.jsonl", [bad])
        with pytest.raises(CorpusError, match=match):
            load_queries(path)
    path = write_jsonl(tmp_path / "q.jsonl", [good, good])
    with pytest.raises(CorpusError, match="duplicate query id 'q1'"):
        load_queries(path)


def test_generator_reproduces_the_shipped_corpus(tmp_path):
    # run_path registers the module while it executes (its dataclasses need that).
    main = runpy.run_path(str(REPO / "scripts" / "build_corpus.py"), run_name="build_corpus")[
        "main"
    ]
    out = main(["--out", str(tmp_path / "corpus.jsonl")])
    assert out.read_bytes() == default_corpus_path().read_bytes()
