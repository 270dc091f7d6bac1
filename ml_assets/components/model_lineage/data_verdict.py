"""The raw data's expectations verdict, recorded by content hash, and the guard every
lineage's splits apply: blocking checks stop downstream assets only within one run, so a
split refuses raw data whose recorded verdict is missing or failed, whatever run it is in."""

import json
from pathlib import Path

from dagster import Failure

from ml_assets.platform.artifacts import ArtifactRef
from ml_assets.resources.storage import ArtifactStore


def validation_record_path(store: ArtifactStore, ref: ArtifactRef) -> Path:
    return Path(store.base_dir) / "validations" / ref.asset / f"{ref.sha256}.json"


def require_validated(store: ArtifactStore, ref: ArtifactRef) -> None:
    """Refuse data whose expectations check has not passed (blocking only holds within a run)."""
    path = validation_record_path(store, ref)
    if not path.exists():
        raise Failure(
            f"{ref.asset} version {ref.sha256[:12]} has not been through its expectations check; "
            f"materialize {ref.asset} with its check first."
        )
    record = json.loads(path.read_text())
    if not record["passed"]:
        reasons = "; ".join(f"{f['column']}: {f['expectation']}" for f in record["failed"][:5])
        raise Failure(
            f"{ref.asset} version {ref.sha256[:12]} failed its expectations ({reasons}); "
            f"fix the source data and rematerialize {ref.asset}."
        )
