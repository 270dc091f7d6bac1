"""The ml_assets code location: the per-stage Definitions, merged."""

from dagster import Definitions, definitions, in_process_executor

from ml_assets.bundle import assets as serving
from ml_assets.bundle import promotion_job, promotion_sensor
from ml_assets.components.defs_folder import load_defs_folder
from ml_assets.components.search_index import jobs
from ml_assets.nightly import defs as ops
from ml_assets.nightly import schedules
from ml_assets.resources.defaults import resource_defs


def build_definitions() -> Definitions:
    """The defs folder read once (ml_assets/lineages: fraud/… and curves/… are ModelLineage
    components, text the SearchIndex), then the platform-wide assets, sensors and the gate
    over its Catalog, passed to each of them."""
    folder = load_defs_folder()
    catalog = folder.catalog
    return Definitions.merge(
        serving.build_defs(catalog),
        promotion_job.defs,
        ops.build_defs(catalog),
        jobs.defs,
        promotion_sensor.build_defs(catalog),
        schedules.defs,
        schedules.monitoring_defs(catalog),
        folder.defs,
        resource_defs(catalog),
        # One process per run: the graph is a chain, and a step process per asset would spend
        # more time importing than working on a 2-core machine.
        Definitions(executor=in_process_executor),
    )


@definitions
def defs() -> Definitions:
    """The code location, built when Dagster loads it (Python callers: `build_definitions`)."""
    return build_definitions()
