"""Asset files live in a content-addressed store; the IO manager passes small refs along."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableIOManager, ConfigurableResource, InputContext, OutputContext
from pydantic import Field

from ml_assets.platform.artifacts import ArtifactRef, ContentStore, atomic_write


def ref_path(base_dir: str | Path, asset: str, partition: str | None = None) -> Path:
    """Where ArtifactRefIOManager keeps an asset's latest ref (per partition if partitioned).

    `asset`: its key as a user string (`credit/onnx`) or its path joined by `__`."""
    asset = asset.replace("/", "__")
    leaf = f"{asset}@{partition}.json" if partition else f"{asset}.json"
    return Path(base_dir) / "refs" / leaf


def latest_ref(base_dir: str | Path, asset: str) -> ArtifactRef | None:
    """The latest materialization's ref of an unpartitioned asset, or None if there is none."""
    path = ref_path(base_dir, asset)
    return ArtifactRef.from_json(path.read_text()) if path.exists() else None


class ArtifactStore(ConfigurableResource):
    """Where asset bytes are written: `<base_dir>/<asset>/<sha256><suffix>`."""

    base_dir: str = Field(description="Local directory for asset files (ML_ARTIFACT_ROOT).")

    def content(self) -> ContentStore:
        return ContentStore(Path(self.base_dir) / "objects")


class ArtifactRefIOManager(ConfigurableIOManager):
    """Stores each asset's latest `ArtifactRef` as JSON (never pickle) and hands it downstream.

    The ref is written only after the asset function returned, so a failed step leaves the
    previous materialization's ref (and its bytes) exactly as they were.
    """

    base_dir: str = Field(description="Same directory as the ArtifactStore (ML_ARTIFACT_ROOT).")

    def _ref_path(self, key_path: list[str], partition: str | None) -> Path:
        return ref_path(self.base_dir, "__".join(key_path), partition)

    def handle_output(self, context: OutputContext, obj: ArtifactRef) -> None:
        if not isinstance(obj, ArtifactRef):
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; "
                "assets on this IO manager return an ArtifactRef from the ArtifactStore."
            )
        partition = context.partition_key if context.has_partition_key else None
        atomic_write(self._ref_path(context.asset_key.path, partition), obj.to_json().encode())

    def load_input(self, context: InputContext) -> ArtifactRef:
        key = context.asset_key
        partition = context.asset_partition_key if context.has_asset_partitions else None
        path = self._ref_path(key.path, partition)
        if not path.exists():
            raise FileNotFoundError(
                f"No materialization of {key.to_user_string()} found under {self.base_dir}; "
                f"materialize {key.to_user_string()} first."
            )
        return ArtifactRef.from_json(path.read_text())
