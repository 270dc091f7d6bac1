"""Validation of search on two labelled sets: every mode and fusion variant, BM25 vs ts_rank_cd,
the fusion tuned on both tune splits, HNSW recall, and a blocking check of the served config.

The labelled sets: the live index's queries (the shipped corpus, `queries_path` to replace
them), and each packaged set in `labelled_sets` (real text: Python docstrings), which is not in
the live index and is searched in a scratch index built by the same code with the same
embedder (search_eval.labelled_set_index, cached per embedder).
"""

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict

import dagster as dg
from pydantic import Field

from ml_assets.components.search_index.assets import load_embedder
from ml_assets.platform.artifacts import ArtifactRef, lineage_of
from ml_assets.platform.hashing import canonical_json
from ml_assets.platform.inline_plots import inline_bars
from ml_assets.platform.plots import md_image, mode_bars_png
from ml_assets.platform.provenance import hashed_output, md_table, timed
from ml_assets.resources.postgres import PostgresResource
from ml_assets.resources.storage import ArtifactStore
from ml_assets.search.corpus import load_queries
from ml_assets.search.evaluation import (
    SetJudgement,
    embed_queries,
    hnsw_recall,
    judge_set,
    labelled_set_index,
    served_config,
)
from ml_assets.search.index import connect
from ml_assets.search.query import FusionWeights
from ml_assets.search.spec import SearchIndexSpec, shipped
from ml_assets.search.tuning import Tuning, family_rows, fetch_candidates, tune

GROUP = "validation"
CODE_VERSION = "search_quality_report@4"
ASSET = "search_quality_report"
# The metrics of the page's headline table and chart, per search mode on the eval queries.
HEADLINE_METRICS = ("recall_at_10", "mrr", "ndcg_at_10")
# The live index's labelled set, named like its packaged dataset.
LIVE = "search"
# The targets (eval split), reported beside the check: hybrid over vector per set, and
# BM25 over ts_rank_cd on the real-text set.
HYBRID_GAIN_TARGETS = {"search": 0.02, "docs": 0.03}
BM25_GAIN_TARGET = 0.03


class SearchQualityConfig(dg.Config):
    tolerance: float | None = Field(
        default=None,
        description="Hybrid nDCG@10 may trail the better single mode by this much "
        "(default: the index's declared quality_tolerance).",
    )
    queries_path: str | None = Field(
        default=None,
        description="A labelled query JSONL file for the live index (default: the declared one).",
    )
    labelled_sets: list[str] | None = Field(
        default=None,
        description="Packaged labelled sets (corpus.DATASETS) judged in a scratch index too "
        "(default: the declared ones).",
    )
    eval_database: str = Field(
        default="ml_assets_eval",
        description="Database on the vector store's server that holds the scratch indexes.",
    )


def _eval_ndcg(j: SetJudgement, label: str) -> float:
    return next(s.ndcg_at_10 for s in j.scores if s.mode == label and s.split == "eval")


def _verdict(j: SetJudgement, tolerance: float) -> dict:
    """The check on one labelled set: served hybrid vs the better single mode, eval split."""
    v = {
        "hybrid": _eval_ndcg(j, "hybrid"),
        "vector": _eval_ndcg(j, "vector"),
        "lexical": _eval_ndcg(j, "lexical"),
        "lexical_ts_rank_cd": _eval_ndcg(j, "lexical:ts_rank_cd"),
        "cross_tenant_hits": j.cross_tenant_hits,
    }
    v["best_single"] = max(v["vector"], v["lexical"])
    v["passed"] = v["hybrid"] >= v["best_single"] - tolerance and v["cross_tenant_hits"] == 0
    return v


def build_search_quality_report(spec: SearchIndexSpec) -> dg.AssetsDefinition:
    """The `search_quality_report` asset of a declared index: its queries and tolerance."""

    @dg.asset(
        name=ASSET,
        group_name=GROUP,
        code_version=CODE_VERSION,
        check_specs=[
            dg.AssetCheckSpec(
                "hybrid_not_worse",
                asset=ASSET,
                blocking=True,
                description="On every labelled set: hybrid nDCG@10 (eval split) with the served "
                "configuration >= best of lexical/vector - tolerance, and no cross-tenant hit.",
            ),
        ],
    )
    def search_quality_report(
        context: dg.AssetExecutionContext,
        config: SearchQualityConfig,
        store: ArtifactStore,
        postgres: PostgresResource,
        embedding_index: ArtifactRef,
        embedding_model_onnx: ArtifactRef,
    ) -> Iterator[dg.Output[ArtifactRef] | dg.AssetCheckResult]:
        """Every search mode and fusion on two labelled sets; fusion tuned on their tune splits."""
        model_sha = embedding_index.extra["model_sha256"]
        tolerance = spec.quality_tolerance if config.tolerance is None else config.tolerance
        labelled_sets = spec.labelled_sets if config.labelled_sets is None else config.labelled_sets
        with timed() as t, ExitStack() as stack:
            embedder, _ = load_embedder(store, embedding_model_onnx, "int8", model_sha)
            queries = {LIVE: load_queries(config.queries_path or spec.queries())}
            conns = {LIVE: stack.enter_context(postgres.connect())}
            built = {}
            for dataset in labelled_sets:
                dsn, stats = stack.enter_context(
                    labelled_set_index(
                        postgres.dsn,
                        config.eval_database,
                        dataset,
                        embedder,
                        model_sha,
                        context.log.info,
                    )
                )
                built[dataset] = {
                    "table": f"{config.eval_database}: search.{stats.table}",
                    "documents": stats.total,
                    "embedded_this_run": stats.embedded,
                }
                conns[dataset] = stack.enter_context(connect(dsn))
                queries[dataset] = load_queries(dataset=dataset)
            vectors = {name: embed_queries(embedder, qs) for name, qs in queries.items()}
            candidates = {
                name: fetch_candidates(conns[name], queries[name], vectors[name])
                for name in queries
            }
            tuning = tune(candidates)
            fusion = tuning.fusion
            context.log.info(f"fusion tuned on the tune splits of {sorted(queries)}: {fusion}")
            # What is judged below is what the bundle will serve: the same object, to the SQL.
            serving = served_config(fusion, model_sha)
            # Judged by the SQL too: the best of each method (fixed or query-adaptive weight).
            others = {m: f for m, f in tuning.method_best().items() if f != fusion}
            judged = {
                name: judge_set(conns[name], queries[name], vectors[name], serving, others)
                for name in queries
            }
            recall = {}
            for name, qs in queries.items():
                pairs: dict[str, list] = {}
                for q, v in zip(qs, vectors[name], strict=True):
                    pairs.setdefault(q.tenant_id, []).append((q.tenant_id, v))
                recall[name] = {
                    t: hnsw_recall(conns[name], p, **serving.scan_options())
                    for t, p in sorted(pairs.items())
                }
        families = _families_table(tuning, family_rows(tuning, candidates), judged)
        search_config = serving.to_json()
        sets = {
            name: {
                "index": built.get(name, {"table": "the live index"})["table"],
                "queries": len(queries[name]),
                "scores": [asdict(s) for s in j.scores],
                "hnsw_recall_at_10": recall[name],
                "cross_tenant_hits": j.cross_tenant_hits,
                "hybrid_rankings": j.rankings["hybrid"],
            }
            for name, j in judged.items()
        }
        live = judged[LIVE]
        live_rows = [asdict(s) for s in live.scores if s.mode in ("hybrid", "vector", "lexical")]
        verdicts = {name: _verdict(j, tolerance) for name, j in judged.items()}
        targets = _targets(verdicts)
        report = {
            "schema": "ml-assets.search-quality.v2",
            "index": embedding_index.sha256,
            "fusion": asdict(fusion),
            "search_config": search_config,
            "embedder_sha256": model_sha,
            "tuned_on": {
                "split": "tune",
                "sets": sorted(queries),
                "objective": "mean over the sets of each set's mean nDCG@10",
            },
            "bm25_trials": tuning.bm25_trials,
            "fusion_trials": tuning.fusion_trials,
            "fusion_families": families,
            # The judged configuration's own ranking of every labelled query of the live index:
            # what the bundle serves must reproduce it (tests/test_serving/ asks the endpoint).
            "hybrid_rankings": live.rankings["hybrid"],
            "scores": live_rows,
            "hnsw_recall_at_10": recall[LIVE],
            "sets": sets,
            "verdicts": verdicts,
            "targets": targets,
        }
        ref = store.content().put(
            ASSET,
            canonical_json(report),
            ".json",
            code_version=CODE_VERSION,
            lineage=lineage_of(embedding_index, embedding_model_onnx),
            extra={"fusion": asdict(fusion)},
        )
        eval_rows = {r["mode"]: r for r in live_rows if r["split"] == "eval"}
        chart = mode_bars_png(list(eval_rows.values()), list(HEADLINE_METRICS))
        passed = all(v["passed"] for v in verdicts.values())
        yield hashed_output(
            ref,
            upstream={
                "embedding_index": embedding_index,
                "embedding_model_onnx": embedding_model_onnx,
            },
            wall_time_s=t["seconds"],
            metadata={
                "verdict": dg.MetadataValue.text(
                    f"{'PASSED' if passed else 'FAILED'}: hybrid not worse than the best single "
                    "mode on "
                    f"{sum(v['passed'] for v in verdicts.values())}/{len(verdicts)} labelled sets; "
                    f"eval nDCG@10 hybrid {verdicts[LIVE]['hybrid']:.4f} vs best single "
                    f"{verdicts[LIVE]['best_single']:.4f}."
                ),
                "headline": dg.MetadataValue.md(
                    md_table(
                        [
                            {"mode": mode, **{m: r[m] for m in HEADLINE_METRICS}}
                            for mode, r in eval_rows.items()
                        ]
                    )
                ),
                "modes_plot": dg.MetadataValue.md(modes_plot(verdicts)),
                "quality": dg.MetadataValue.md(_quality_md(judged)),
                "chart": dg.MetadataValue.md(md_image(chart, "search quality")),
                "fusion": dg.MetadataValue.json(asdict(fusion)),
                "search_config": dg.MetadataValue.json(search_config),
                "embedder_sha256": dg.MetadataValue.text(model_sha),
                "fusion_families": dg.MetadataValue.md(md_table(families)),
                "bm25_trials": dg.MetadataValue.md(md_table(tuning.bm25_trials)),
                "fusion_trials": dg.MetadataValue.int(len(tuning.fusion_trials)),
                "labelled_set_indexes": dg.MetadataValue.json(built),
                "hnsw_recall_at_10": dg.MetadataValue.json(recall[LIVE]),
                "hnsw_recall_at_10_sets": dg.MetadataValue.json(recall),
                "verdicts": dg.MetadataValue.json(verdicts),
                "targets": dg.MetadataValue.md(md_table(targets)),
                "eval_ndcg_at_10_hybrid": dg.MetadataValue.float(verdicts[LIVE]["hybrid"]),
            },
        )
        yield dg.AssetCheckResult(
            check_name="hybrid_not_worse",
            passed=passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(
                f"{name}: hybrid nDCG@10 {v['hybrid']:.4f} vs best single mode "
                f"{v['best_single']:.4f} (tolerance {tolerance}), "
                f"{v['cross_tenant_hits']} cross-tenant hits"
                for name, v in verdicts.items()
            ),
            metadata={
                **{
                    f"{name}_{k}": dg.MetadataValue.float(float(v[k]))
                    for name, v in verdicts.items()
                    for k in ("hybrid", "best_single")
                },
                "hybrid": dg.MetadataValue.float(verdicts[LIVE]["hybrid"]),
                "best_single": dg.MetadataValue.float(verdicts[LIVE]["best_single"]),
                "tolerance": dg.MetadataValue.float(tolerance),
            },
        )

    return search_quality_report


def _families_table(
    tuning: Tuning, rows: list[dict], judged: dict[str, SetJudgement]
) -> list[dict]:
    """The families' re-ranking nDCG@10, with the SQL's eval nDCG@10 where it judged one."""
    labels = {"hybrid": tuning.fusion}
    labels |= {f"hybrid:{m}": f for m, f in tuning.method_best().items() if f != tuning.fusion}
    by_config: dict[FusionWeights, str] = {f: label for label, f in labels.items()}
    out = []
    for row, f in zip(rows, tuning.families.values(), strict=True):
        label = by_config.get(f)
        sql = {
            f"{name}_eval_sql": None if label is None else _eval_ndcg(j, label)
            for name, j in judged.items()
        }
        out.append({**row, **sql})
    return out


def modes_plot(verdicts: dict[str, dict]) -> str:
    """Inline grouped bars: eval nDCG@10 of each mode on each labelled set."""
    groups = {
        name: {m: v[m] for m in ("lexical", "vector", "hybrid")} for name, v in verdicts.items()
    }
    return inline_bars("search modes per labelled set", groups, "eval nDCG@10")


def _targets(verdicts: dict) -> list[dict]:
    rows = []
    for name, gain in HYBRID_GAIN_TARGETS.items():
        if name in verdicts:
            v = verdicts[name]
            rows.append(
                {
                    "set": name,
                    "target": f"hybrid >= vector + {gain}",
                    "measured": v["hybrid"] - v["vector"],
                    "met": v["hybrid"] - v["vector"] >= gain,
                }
            )
    for name, v in verdicts.items():
        if name != LIVE:
            gain = v["lexical"] - v["lexical_ts_rank_cd"]
            rows.append(
                {
                    "set": name,
                    "target": f"BM25 >= ts_rank_cd + {BM25_GAIN_TARGET}",
                    "measured": gain,
                    "met": gain >= BM25_GAIN_TARGET,
                }
            )
    return rows


def _quality_md(judged: dict[str, SetJudgement]) -> str:
    parts = []
    for name, j in judged.items():
        rows = [asdict(s) for s in j.scores if s.split != "all"]
        parts.append(f"**{name}**\n\n{md_table(rows)}")
    return "\n\n".join(parts)


# The shipped index's report asset, for code that uses the assets without the defs folder.
search_quality_report = build_search_quality_report(shipped())
