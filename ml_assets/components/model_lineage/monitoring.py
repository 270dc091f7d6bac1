"""`monitoring:` of a ModelLineage's YAML: how the service samples its traffic into the
inference log, how long the log keeps it, and the drift thresholds of the nightly."""

from __future__ import annotations

from typing import Annotated

import dagster as dg
from pydantic import model_validator

from ml_assets.platform.lineage_spec import MonitoringSpec

_DEFAULT = MonitoringSpec()


def _about(text: str) -> dg.Resolver:
    return dg.Resolver.default(description=text)


class Monitoring(dg.Model, dg.Resolvable):
    """Production feedback: the inference log's sampling and retention, drift thresholds."""

    sample_rate: Annotated[
        float,
        _about(
            "Share of scoring requests the service records in the inference log, in (0, 1] "
            "(ML_INFERENCE_LOG_SAMPLE_RATE overrides it for every lineage of a server)."
        ),
    ] = _DEFAULT.sample_rate
    retention_days: Annotated[
        int,
        _about(
            "Days the inference log keeps a record. The daily `<name>/inference_log_retention` "
            "asset deletes records (and their labels) logged before the end of its partition's "
            "day minus this many days; the service's log writer also deletes records older "
            "than this, counted from now, about once an hour. ML_INFERENCE_LOG_RETENTION_DAYS "
            "overrides it where it is set: in the service for its writer, in the Dagster run "
            "for the asset."
        ),
    ] = _DEFAULT.retention_days
    psi_warn: Annotated[
        float, _about("Population stability index of a feature above which drift is reported.")
    ] = _DEFAULT.psi_warn
    psi_fail: Annotated[
        float, _about("PSI of a feature above which the night's blocking drift check fails.")
    ] = _DEFAULT.psi_fail
    min_rows: Annotated[
        int, _about("Logged records a day needs before its drift is judged at all.")
    ] = _DEFAULT.min_rows

    @model_validator(mode="after")
    def _bounds(self) -> Monitoring:
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"monitoring.sample_rate {self.sample_rate}: expected (0, 1]")
        if self.retention_days < 1:
            raise ValueError(f"monitoring.retention_days {self.retention_days}: expected >= 1")
        if self.min_rows < 1:
            raise ValueError(f"monitoring.min_rows {self.min_rows}: expected >= 1")
        if not 0.0 < self.psi_warn <= self.psi_fail:
            raise ValueError(
                f"monitoring: expected 0 < psi_warn <= psi_fail, got {self.psi_warn} and "
                f"{self.psi_fail}"
            )
        return self

    def spec(self) -> MonitoringSpec:
        return MonitoringSpec(**self.model_dump())
