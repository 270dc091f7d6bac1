"""The ml_assets code location: the per-stage Definitions, merged."""

from dagster import Definitions, in_process_executor

from ml_assets import jobs, schedules
from ml_assets.assets import ops, promotion_job, serving
from ml_assets.components.defs_folder import lineage_defs
from ml_assets.resources.defaults import resource_defs
from ml_assets.sensors import promotion


def _merged() -> Definitions:
    # The declared lineages and the search index (Dagster Components in ml_assets/lineages):
    # fraud/… and curves/… (ModelLineage), text (SearchIndex: corpus, embedder export, index,
    # quality report, reindex sensor). Loaded first: it registers the lineages that the
    # serving and nightly assets depend on. (A local: Dagster allows one module-level
    # Definitions per code location.)
    lineages = lineage_defs()
    return Definitions.merge(
        serving.build_defs(),
        promotion_job.defs,
        ops.build_defs(),
        jobs.defs,
        promotion.defs,
        schedules.defs,
        lineages,
        resource_defs(),
        # One process per run: the graph is a chain, and a step process per asset would spend
        # more time importing than working on a 2-core machine.
        Definitions(executor=in_process_executor),
    )


defs = _merged()
