"""Ops: the nightly validation and smoke runs as daily-partitioned assets with blocking
regression checks (ml_assets/nightly/validation.py, nightly_smoke.py), and the recorded
action that adopts a smoke baseline."""

from dagster import Definitions

from ml_assets.components.model_lineage.deps import after_lineages
from ml_assets.nightly.common import GROUP, SMOKE, VALIDATION, nightly_dir
from ml_assets.nightly.smoke import (
    nightly_smoke,
    nightly_smoke_job,
    read_baseline,
    set_smoke_baseline_job,
)
from ml_assets.nightly.validation import nightly_validation, nightly_validation_job
from ml_assets.platform.catalog import Catalog
from ml_assets.platform.daily import DAILY

__all__ = [
    "DAILY",
    "GROUP",
    "SMOKE",
    "VALIDATION",
    "build_defs",
    "nightly_dir",
    "nightly_smoke",
    "nightly_smoke_job",
    "nightly_validation",
    "nightly_validation_job",
    "read_baseline",
    "set_smoke_baseline_job",
]


def build_defs(catalog: Catalog) -> Definitions:
    """The nightly assets; validation downstream of every declared lineage's report."""
    return Definitions(
        assets=[
            after_lineages(nightly_validation, "export_validation_report", catalog),
            nightly_smoke,
        ],
        jobs=[nightly_validation_job, nightly_smoke_job, set_smoke_baseline_job],
    )
