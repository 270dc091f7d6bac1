"""The ml_assets code location: the per-stage Definitions, merged."""

from dagster import Definitions, in_process_executor

from ml_assets import jobs, schedules
from ml_assets.assets import (
    data,
    export,
    ops,
    promotion_job,
    serving,
    training,
    validation,
)
from ml_assets.components.defs_folder import lineage_defs
from ml_assets.resources.defaults import resource_defs
from ml_assets.sensors import promotion

defs = Definitions.merge(
    data.defs,
    training.defs,
    export.defs,
    validation.defs,
    serving.defs,
    promotion_job.defs,
    ops.defs,
    jobs.defs,
    promotion.defs,
    schedules.defs,
    # The declared lineages and the search index (Dagster Components in ml_assets/lineages):
    # curves/… (ModelLineage) and text (SearchIndex: corpus, index, report, reindex sensor).
    lineage_defs(),
    resource_defs(),
    # One process per run: the graph is a chain, and a step process per asset would spend
    # more time importing than working on a 2-core machine.
    Definitions(executor=in_process_executor),
)
