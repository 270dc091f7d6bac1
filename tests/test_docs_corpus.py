"""The second labelled set: Python standard-library docstrings (scripts/build_docs_corpus.py)."""

from __future__ import annotations

import runpy
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ml_assets.search.corpus import (
    DATASETS,
    default_corpus_path,
    known_tenants,
    load_corpus,
    load_queries,
)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "build_docs_corpus.py"
# The text is the docstrings of the interpreter that builds it; the shipped files come from this.
BUILT_WITH = runpy.run_path(str(SCRIPT), run_name="build_docs_corpus")["PYTHON_VERSION"]


@pytest.fixture(scope="module")
def docs():
    return load_corpus(default_corpus_path("docs"), known_tenants("docs"))


@pytest.fixture(scope="module")
def queries():
    return load_queries(dataset="docs")


def test_docs_corpus_is_multi_tenant_passages_of_real_text(docs):
    documents = docs.documents
    assert 1500 <= len(documents) <= 5000
    assert docs.skipped == {}
    per_tenant = Counter(d.tenant_id for d in documents)
    assert set(per_tenant) == set(known_tenants("docs")) and len(per_tenant) >= 2
    assert min(per_tenant.values()) >= 100
    for d in documents:
        assert d.id.split("-")[0] in ("sd", "ss", "sv"), d.id
        assert d.title.strip() and d.text.strip()
        assert 6 <= len(d.text.split()) <= 240, d.id
        assert "pydoc_data" not in d.text and "pydoc_data" not in d.title, d.id
    # Identical docstrings are kept once; two different ones may still share a passage.
    assert len({d.text for d in documents}) >= 0.99 * len(documents)
    # A module lives in one tenant: the first tag is the top-level module.
    tenants_of_module: dict[str, set[str]] = {}
    for d in documents:
        tenants_of_module.setdefault(d.tags[0], set()).add(d.tenant_id)
    assert all(len(t) == 1 for t in tenants_of_module.values()), tenants_of_module


def test_docs_queries_are_labelled_against_their_own_tenant(docs, queries):
    by_id = {d.id: d for d in docs.documents}
    assert len(queries) >= 60
    assert len({q.id for q in queries}) == len(queries)
    assert len({q.query.lower() for q in queries}) == len(queries)
    for q in queries:
        assert 1 <= len(q.relevant_ids) <= 4, q.id
        for rid in q.relevant_ids:
            assert rid in by_id, (q.id, rid)
            assert by_id[rid].tenant_id == q.tenant_id, (q.id, rid)
            # Written in a user's words, not lifted from the answer.
            assert q.query.lower() not in by_id[rid].text.lower(), (q.id, rid)
        # A passage that answers a query answers it wherever its text appears.
        texts = {by_id[rid].text for rid in q.relevant_ids}
        twins = {d.id for d in docs.documents if d.tenant_id == q.tenant_id and d.text in texts}
        assert twins <= set(q.relevant_ids), (q.id, twins - set(q.relevant_ids))
    tenants = set(known_tenants("docs"))
    assert {q.tenant_id for q in queries} == tenants
    for tenant in tenants:
        splits = Counter(q.split for q in queries if q.tenant_id == tenant)
        assert set(splits) == {"tune", "eval"}, tenant
        assert abs(splits["tune"] - splits["eval"]) <= 2, (tenant, splits)


@pytest.mark.skipif(
    ".".join(map(str, sys.version_info[:3])) != BUILT_WITH,
    reason=f"the shipped docs corpus holds Python {BUILT_WITH}'s docstrings",
)
def test_generator_reproduces_the_shipped_docs_set(tmp_path):
    # A fresh interpreter: the build reads live module objects, which a test run may patch.
    out = {name: tmp_path / name for name in DATASETS["docs"]}
    subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--out",
            str(out["docs_corpus.jsonl"]),
            "--queries-out",
            str(out["docs_queries.jsonl"]),
            "--tenants-out",
            str(out["docs_tenants.json"]),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    shipped = default_corpus_path("docs").parent
    for name, path in out.items():
        assert path.read_bytes() == (shipped / name).read_bytes(), name
