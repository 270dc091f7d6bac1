"""What one night measures for search: the labelled queries on the live index, with the
configuration the production embedder's passed quality report judged, against that report.

The report is found by the embedder's sha256 in Dagster's records (as the serving bundle finds
it), never as the latest materialization; a live index that another embedder built, or that
no longer holds the labelled queries' tenants and documents, fails the part with that reason.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg

from ml_assets.components.search_index.assets import load_embedder
from ml_assets.nightly.lineage import PartFailed, failed_gates, run_part
from ml_assets.platform.hashing import sha256_bytes
from ml_assets.platform.promotion import Decision
from ml_assets.platform.validation_records import SEARCH_CHECK, ValidationRecords, search_evidence
from ml_assets.resources.postgres import PostgresResource
from ml_assets.resources.storage import ArtifactStore
from ml_assets.search.config import SearchServing
from ml_assets.search.corpus import LabelledQuery, load_queries
from ml_assets.search.evaluation import embed_queries, evaluate
from ml_assets.search.index import live_index


def _coverage(conn: psycopg.Connection, queries: tuple[LabelledQuery, ...]) -> dict[str, Any]:
    """Which of the labelled queries' tenants and relevant documents the live index holds."""
    tenants = sorted({q.tenant_id for q in queries})
    relevant = sorted({(q.tenant_id, d) for q in queries for d in q.relevant_ids})
    with conn.transaction():
        present_tenants = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT tenant_id FROM search.live_documents WHERE tenant_id = ANY(%s)",
                (tenants,),
            )
        }
        present_docs = {
            (r[0], r[1])
            for r in conn.execute(
                "SELECT tenant_id, doc_id FROM search.live_documents WHERE doc_id = ANY(%s)",
                (sorted({d for _, d in relevant}),),
            )
        }
    missing = [f"{t}/{d}" for t, d in relevant if (t, d) not in present_docs]
    return {
        "tenants": len(tenants),
        "missing_tenants": sorted(set(tenants) - present_tenants),
        "relevant_documents": len(relevant),
        "missing_documents": len(missing),
        "missing_examples": missing[:5],
    }


def search_part(
    mv: Any,
    files: dict[str, bytes],
    decision: Decision,
    records: ValidationRecords,
    store: ArtifactStore,
    postgres: PostgresResource,
    bundled: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The labelled queries on the live index, with the search configuration the production
    embedder's passed quality report judged, against that report's figures.

    `bundled`: the search record of the newest serving bundle; when it judged this embedder,
    its report (the configuration being served) is the one used, else the records' newest
    passed report for the embedder (what the next bundle will serve)."""
    return run_part(
        mv,
        decision,
        lambda part: _measure_search(files, decision, records, store, postgres, part, bundled),
    )


def _report_tolerance(records: ValidationRecords, report_sha: str) -> float:
    report = next(
        (m for m in records.materializations(SEARCH_CHECK[0]) if m.data_version == report_sha),
        None,
    )
    verdict = None if report is None else records.verdict(report, SEARCH_CHECK[1])
    tolerance = None if verdict is None else verdict.metadata.get("tolerance")
    if tolerance is None:
        raise PartFailed(f"{SEARCH_CHECK[1]} of report {report_sha[:12]} recorded no tolerance")
    return float(tolerance)


def _measure_search(
    files: dict[str, bytes],
    decision: Decision,
    records: ValidationRecords,
    store: ArtifactStore,
    postgres: PostgresResource,
    part: dict[str, Any],
    bundled: dict[str, Any] | None,
) -> dict[str, Any]:
    if "model.onnx" not in files:
        raise PartFailed(f"its MLflow run holds no ONNX file: {failed_gates(decision)}")
    embedder_sha = sha256_bytes(files["model.onnx"])
    export_sha = decision.evidence.facts.get("export_sha256")
    used = part["lineage"]
    used.update(embedder_sha256=embedder_sha, export_sha256=export_sha)
    if not export_sha:
        raise PartFailed(f"no embedding_model_onnx export holds it: {failed_gates(decision)}")
    if bundled and bundled.get("enabled") and bundled.get("embedder_sha256") == embedder_sha:
        judged, used["report_from"] = bundled, "serving bundle"
    else:
        judged, used["report_from"] = search_evidence(records, embedder_sha), "records"
    if not judged["enabled"]:
        raise PartFailed(judged["reason"])
    report_sha = judged["report_sha256"]
    used.update(report_sha256=report_sha, report_run_id=judged["report_run_id"])
    tolerance = _report_tolerance(records, report_sha)
    content = store.content()
    report = json.loads(content.ref_for(SEARCH_CHECK[0], report_sha, ".json").read_verified())
    queries = load_queries()
    if set(report["hybrid_rankings"]) != {q.id for q in queries}:
        raise PartFailed(
            f"the shipped labelled queries are not the ones report {report_sha[:12]} judged"
        )
    manifest = content.ref_for("embedding_model_onnx", export_sha, ".manifest.json")
    embedder, _ = load_embedder(store, manifest, "int8", embedder_sha)
    with postgres.connect() as conn:
        try:
            live = live_index(conn)
        except psycopg.errors.UndefinedTable:
            live = None
        if live is None:
            raise PartFailed("there is no live index; materialize embedding_index")
        used["index"] = {
            "table": f"search.{live['table_name']}",
            "embedder_sha256": live["model_version"],
            "corpus_sha256": live["corpus_sha256"],
        }
        if live["model_version"] != embedder_sha:
            raise PartFailed(
                f"the live index search.{live['table_name']} holds vectors of embedder "
                f"{live['model_version'][:12]}, production {part['version']} is "
                f"{embedder_sha[:12]}: queries and documents would be embedded by different "
                "models. Rebuild embedding_index with the production embedder."
            )
        coverage = _coverage(conn, queries)
        if coverage["missing_tenants"] or coverage["missing_documents"]:
            raise PartFailed(
                f"the live index (corpus {live['corpus_sha256'][:12]}) no longer holds what the "
                f"labelled queries were written for: {len(coverage['missing_tenants'])} of "
                f"{coverage['tenants']} tenants {coverage['missing_tenants']} and "
                f"{coverage['missing_documents']} of {coverage['relevant_documents']} relevant "
                f"documents (e.g. {coverage['missing_examples']}) are absent, so nDCG@10 would "
                "measure the corpus, not search. Label queries for this corpus, or reindex the "
                "corpus they were written for."
            )
        vectors = embed_queries(embedder, queries)
        try:
            serving = SearchServing.from_json(judged["config"], judged.get("embedder_sha256"))
        except ValueError as exc:
            raise PartFailed(f"report {report_sha[:12]}'s search configuration: {exc}") from None
        scores = evaluate(conn, queries, vectors, serving)
    tonight = {s.mode: s.ndcg_at_10 for s in scores if s.split == "eval"}
    return {
        "thresholds": {"tolerance": tolerance},
        "coverage": coverage,
        "validated": {
            "eval_ndcg_at_10": {
                r["mode"]: r["ndcg_at_10"] for r in report["scores"] if r["split"] == "eval"
            }
        },
        "tonight": {"eval_ndcg_at_10": tonight},
    }
