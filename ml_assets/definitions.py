"""The ml_assets code location: the per-stage Definitions, merged."""

from dagster import Definitions, in_process_executor

from ml_assets import jobs, schedules
from ml_assets.assets import (
    data,
    export,
    ops,
    search,
    search_validation,
    serving,
    training,
    validation,
)
from ml_assets.components.defs_folder import lineage_defs
from ml_assets.resources.defaults import resource_defs
from ml_assets.sensors import promotion, reindex

defs = Definitions.merge(
    data.defs,
    training.defs,
    export.defs,
    validation.defs,
    search.defs,
    search_validation.defs,
    serving.defs,
    ops.defs,
    jobs.defs,
    reindex.defs,
    promotion.defs,
    schedules.defs,
    # The declared lineages (Dagster Components in ml_assets/lineages), e.g. curves/….
    lineage_defs(),
    resource_defs(),
    # One process per run: the graph is a chain, and a step process per asset would spend
    # more time importing than working on a 2-core machine.
    Definitions(executor=in_process_executor),
)
