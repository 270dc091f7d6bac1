"""The judged search configuration as a typed contract (SearchServing): what a quality report
records is what the bundle carries and what the service's SQL runs, every parameter of it."""

from __future__ import annotations

import hashlib
import json

import jsonschema
import numpy as np
import pytest

from ml_assets.platform.serving_bundle import EMBEDDER, ModelEntry
from ml_assets.search.config import (
    DEFAULT_FUSION,
    SEARCH_SERVING_SCHEMA,
    SearchServing,
)
from ml_assets.search.corpus import Document
from ml_assets.search.index import connect, reindex
from ml_assets.search.query import run_search
from serving import runtime
from serving.batcher import BatchConfig
from serving.cache import EmbeddingCache
from serving.embed_path import EmbedPath
from serving.metrics import create_metrics
from serving.search_path import SearchPath
from tests.conftest import REPO, fresh_vector_database

SCHEMA = json.loads((REPO / "ml_assets" / "schemas" / "ml.search.serving.v1.json").read_text())
SHA = "ab" * 32


def _valid(doc: dict) -> bool:
    return not list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(doc))


def test_the_json_form_round_trips_and_matches_its_schema():
    serving = SearchServing(SHA, DEFAULT_FUSION, ef_search=40, exact_scan_max_docs=0)
    doc = serving.to_json()
    assert doc["schema"] == SEARCH_SERVING_SCHEMA and _valid(doc)
    assert SearchServing.from_json(json.loads(json.dumps(doc))) == serving
    assert serving.scan_options() == {"ef_search": 40, "exact_scan_max_docs": 0}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(ef_search_typo=10), "unknown keys"),
        (lambda d: d["fusion"].update(boost=2.0), "unknown fusion keys"),
        (lambda d: d.update(ef_search=0), "ef_search must be"),
        (lambda d: d.update(ef_search=1001), "ef_search must be"),
        (lambda d: d.update(ef_search=True), "ef_search must be"),
        (lambda d: d.update(exact_scan_max_docs="2000"), "exact_scan_max_docs must be"),
        (lambda d: d["fusion"].update(vector="1.0"), "fusion"),
        (lambda d: d["fusion"].update(method="max"), "method must be one of"),
        (lambda d: d.update(schema="ml-assets.search-serving.v9"), "schema"),
        (lambda d: d.pop("ef_search"), "does not say"),
        (lambda d: d.update(embedder_sha256="cd" * 32), "judged for embedder"),
    ],
)
def test_a_configuration_nobody_judged_is_refused_by_the_code_and_the_schema(edit, message):
    doc = SearchServing(SHA, DEFAULT_FUSION).to_json()
    edit(doc)
    with pytest.raises(ValueError, match=message):
        SearchServing.from_json(doc, SHA)
    if message != "judged for embedder":  # the schema cannot know which embedder is served
        assert not _valid(doc)


def test_a_report_from_before_the_contract_keeps_its_meaning():
    """Reports (and bundles) written before `schema`: their four keys, for the embedder their
    record names."""
    legacy = {
        "fusion": json.loads(json.dumps(SearchServing(SHA).to_json()["fusion"])),
        "ef_search": 100,
        "exact_scan_max_docs": 2000,
        "limit_evaluated": 10,
    }
    assert SearchServing.from_json(legacy, SHA) == SearchServing(SHA)
    with pytest.raises(ValueError, match="sha256"):
        SearchServing.from_json(legacy)  # no record: no embedder it holds for


class HashEmbedder:
    """Deterministic random unit vectors, one per text (seeded by its sha256): data on which an
    HNSW walk is measurably approximate, for the platform's own index and SQL to search."""

    dim = 384

    def embed(self, texts) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out

    def embed_flagged(self, texts) -> tuple[np.ndarray, list[bool]]:
        return self.embed(texts), [False] * len(texts)  # nothing is ever cut


DOCS = 3000
WORDS = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega".split()


@pytest.fixture(scope="module")
def served(pg_dsn):
    """A SearchPath (the service's /search) over a fresh index of one tenant's DOCS documents;
    `models(config)` is a generation carrying that search configuration."""
    from prometheus_client import CollectorRegistry

    dsn = fresh_vector_database(pg_dsn, "vec_scan_parameters")
    rng = np.random.default_rng(7)
    docs = [
        Document(
            f"d{i:05d}", "acme", "guide", f"doc {i}",
            " ".join(rng.choice(WORDS, size=12)), ("t",), "2026-01-01T00:00:00Z",
        )
        for i in range(DOCS)
    ]  # fmt: skip
    embedder = HashEmbedder()
    reindex(dsn, docs, embedder, SHA, "scan-parameters-corpus")
    metrics = create_metrics(CollectorRegistry())
    path = SearchPath(EmbedPath(metrics, EmbeddingCache(), BatchConfig(enabled=False)), _raise)
    entry = ModelEntry(EMBEDDER, "text-embedder", "1", {"model.onnx": SHA})

    def models(config: dict) -> runtime.LoadedModels:
        search = runtime.search_for(
            entry, {"enabled": True, "config": config, "embedder_sha256": SHA}
        )
        return runtime.LoadedModels({EMBEDDER: entry}, embedder, 1, search=search)

    return {"path": path, "models": models, "dsn": dsn, "embedder": embedder}


def _raise(kind: str, endpoint: str, exc: Exception) -> None:
    raise AssertionError(f"{endpoint}: {kind}: {exc}")


def test_the_service_runs_the_scan_parameters_it_was_given(served, monkeypatch):
    """ef_search and exact_scan_max_docs reach the SQL: served with an exact scan, and with
    HNSW at ef_search 1, /search gives what run_search gives with exactly those parameters,
    and the two differ (so a service that ignored them could not pass)."""
    monkeypatch.setenv("ML_VECTOR_PG_DSN", served["dsn"])
    exact = SearchServing(SHA, exact_scan_max_docs=DOCS)
    starved = SearchServing(SHA, ef_search=1, exact_scan_max_docs=0)
    differ = 0
    with connect(served["dsn"], autocommit=True) as conn:
        for n in range(20):
            query = f"{WORDS[n % len(WORDS)]} query {n}"
            vec = served["embedder"].embed([query])[0]
            got, want = {}, {}
            for serving in (exact, starved):
                for mode in ("vector", "hybrid"):
                    models = served["models"](serving.to_json())
                    hits = served["path"].search(models, query, "acme", limit=10, mode=mode)
                    got[serving, mode] = _ranked(hits.hits)
                    want[serving, mode] = _ranked(
                        run_search(
                            conn, query, vec, "acme", limit=10, mode=mode,
                            fusion=serving.fusion, **serving.scan_options(),
                        )
                    )  # fmt: skip
            assert got == want, query
            differ += want[exact, "vector"] != want[starved, "vector"]
    assert differ, "HNSW at ef_search 1 ranked every query as the exact scan: nothing tested"


def _ranked(hits) -> list[tuple[str, float]]:
    return [(h.doc_id, round(h.score, 6)) for h in hits]


def test_a_bundled_configuration_the_server_cannot_apply_disables_search(served):
    doc = SearchServing(SHA).to_json()
    doc["ef_search"] = 5000
    search = served["models"](doc).search
    assert not search["enabled"] and "ef_search must be" in search["reason"], search
