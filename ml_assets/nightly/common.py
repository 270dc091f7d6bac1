"""What the nightly assets share: the daily partitions, the per-night record files, the alert,
a night that stops being recorded as failed, the `no_regression` check, and the serving bundles
found in the records.

Each night writes `<ML_ARTIFACT_ROOT>/nightly/<asset>/<YYYY-MM-DD>.json`, completed or failed
with the reason, so a night is never silently a pass; the trend is read back from those files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    Failure,
    MetadataValue,
    asset,
)

from ml_assets.nightly import records as nightly
from ml_assets.platform.artifacts import atomic_write
from ml_assets.platform.catalog import Catalog
from ml_assets.platform.daily import BUNDLE, DAILY, alert
from ml_assets.platform.hashing import canonical_json
from ml_assets.platform.validation_records import ValidationRecords
from ml_assets.resources.storage import ArtifactStore

GROUP = "ops"
VALIDATION, SMOKE = "nightly_validation", "nightly_smoke"
NO_REGRESSION = "no_regression"


def nightly_asset(
    name: str, code_version: str, deps: list[str], check: str
) -> Callable[[Callable[..., Any]], AssetsDefinition]:
    """`@asset` of a nightly: daily partitions in group `ops`, with the blocking `no_regression`
    check (`check` describes it): tonight against what the night is judged by."""
    return asset(
        name=name,
        group_name=GROUP,
        code_version=code_version,
        partitions_def=DAILY,
        deps=deps,
        check_specs=[AssetCheckSpec(NO_REGRESSION, asset=name, blocking=True, description=check)],
    )


def no_regression_result(regressions: list[str], passed: str) -> AssetCheckResult:
    """The check's verdict: failed naming every regression, or passed saying `passed`."""
    return AssetCheckResult(
        check_name=NO_REGRESSION,
        passed=not regressions,
        severity=AssetCheckSeverity.ERROR,
        description="; ".join(regressions)[:2000] or passed,
        metadata={"regressions": MetadataValue.json(regressions)},
    )


def nightly_dir(store: ArtifactStore, asset_name: str) -> Path:
    return Path(store.base_dir) / "nightly" / asset_name


@contextmanager
def recorded_night(context: AssetExecutionContext, store: ArtifactStore) -> Iterator[None]:
    """Anything that stops the night is written down as a failed night, then fails the run."""
    try:
        yield
    except Exception as exc:
        reason = exc.description if isinstance(exc, Failure) else f"{type(exc).__name__}: {exc}"
        name, key = context.asset_key.to_user_string(), context.partition_key
        record = {
            "schema": nightly.SMOKE_SCHEMA if name == SMOKE else nightly.VALIDATION_SCHEMA,
            "partition": key,
            "status": nightly.FAILED,
            "reason": reason,
            "run_id": context.run.run_id,
            "recorded_at": datetime.now(UTC).isoformat(),
        }
        atomic_write(nightly_dir(store, name) / f"{key}.json", canonical_json(record))
        alert(context, "ml.nightly.failed", [reason])
        raise Failure(f"{name} {key} is recorded as failed: {reason}") from exc


@dataclass(frozen=True)
class Bundle:
    """One recorded serving_bundle materialization and the manifest its data version names."""

    sha256: str
    bento_tag: str
    manifest: dict[str, Any]


def find_bundle(records: ValidationRecords, store: ArtifactStore) -> Bundle | None:
    """The newest serving_bundle Dagster recorded (its manifest read by data version), or None."""
    mat = next(iter(records.materializations(BUNDLE)), None)
    if mat is None or not mat.data_version:
        return None
    data = store.content().ref_for(BUNDLE, mat.data_version, ".json").read_verified()
    tag = mat.metadata.get("bento_tag")
    if not isinstance(tag, str):
        raise Failure(f"{BUNDLE} {mat.data_version[:12]} recorded no bento_tag")
    return Bundle(mat.data_version, tag, json.loads(data))


def newest_bundle(records: ValidationRecords, store: ArtifactStore) -> Bundle:
    bundle = find_bundle(records, store)
    if bundle is None:
        raise Failure(f"{BUNDLE} has never been materialized; run the serving_job first.")
    return bundle


def not_yet_served(manifest: dict[str, Any], catalog: Catalog) -> dict[str, str]:
    """Declared lineages the bundle `manifest` does not serve, and why: a night reports them as
    "not yet served", never as a failure (it covers the set the bundle serves)."""
    served, waiting = manifest.get("models", {}), manifest.get("lineages", {})
    return {
        spec.name: waiting.get(spec.name, {}).get("reason")
        or "declared since the newest serving bundle was built: the serving_job serves it once "
        f"{spec.registered_model} has a production version"
        for spec in catalog.lineages
        if spec.name not in served
    }
