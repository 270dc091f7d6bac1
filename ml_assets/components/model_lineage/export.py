"""Where a lineage's ONNX export lives in the registry. A registered version is immutable.

The model stage registers a version without an export; its first export completes it (the ONNX
file, provenance.json and the sha256 tags, each written once). Exporting that model again either
finds the same bytes on its version, or on a version derived from it, and changes nothing, or
registers a new version derived from it: a new MLflow run holding a copy of the model's files,
the new export and its provenance, tagged with the lineage that produced it. Nothing a
registered version holds is ever rewritten.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import ModelVersion

from ml_assets.platform.artifacts import ArtifactRef
from ml_assets.platform.environment import environment_snapshot
from ml_assets.platform.hashing import canonical_json, sha256_bytes
from ml_assets.platform.provenance import PROVENANCE_FILE, provenance_document
from ml_assets.resources.mlflow import MlflowResource

ONNX_FILE = "onnx/model.onnx"
# What belongs to one export (not copied to a derived version, which holds its own).
EXPORT_TAGS = ("onnx_sha256", "provenance_sha256", "provenance_uri", "export_validation")
EXPORT_FILES = ("onnx", PROVENANCE_FILE, "validation")


@dataclass(frozen=True)
class ExportHome:
    """The registered version that holds an export, and what this materialization did."""

    run_id: str
    version: str
    action: str  # "unchanged", "first export" or "new version"
    derived_from: str | None = None

    def summary(self, name: str, onnx_sha: str) -> str:
        where = f"{name} v{self.version}"
        if self.action == "unchanged":
            return f"{where} already holds ONNX {onnx_sha[:12]}: nothing changed"
        if self.action == "new version":
            return (
                f"{name} v{self.derived_from} holds another export and is never rewritten: "
                f"ONNX {onnx_sha[:12]} registered as {where}"
            )
        return f"tagged {where} with onnx_sha256 {onnx_sha[:12]}"


def _version_key(mv: ModelVersion) -> int:
    return int(mv.version)


def record_export(
    mlflow: MlflowResource,
    name: str,
    version: str,
    ref: ArtifactRef,
    data: bytes,
    dagster_run_id: str,
) -> ExportHome:
    """Put `data` (ONNX, sha256 `ref.sha256`) of `name` v`version`'s model into the registry,
    never changing what an already registered version holds."""
    client = mlflow.client
    source = client.get_model_version(name, version)
    held = source.tags.get("onnx_sha256")
    if held == ref.sha256:
        return ExportHome(source.run_id, str(source.version), "unchanged")
    if held is None:
        _write_export(mlflow, name, str(source.version), source.run_id, ref, data)
        return ExportHome(source.run_id, str(source.version), "first export")
    origin = f"{name} v{source.version}"
    derived = sorted(
        (
            mv
            for mv in client.search_model_versions(f"name='{name}'")
            if mv.tags.get("derived_from") == origin and mv.tags.get("onnx_sha256") == ref.sha256
        ),
        key=_version_key,
    )
    if derived:
        return ExportHome(
            derived[0].run_id, str(derived[0].version), "unchanged", str(source.version)
        )
    run_id, new = _derive_version(mlflow, source, ref, dagster_run_id)
    _write_export(mlflow, name, new, run_id, ref, data)
    return ExportHome(run_id, new, "new version", derived_from=str(source.version))


def _write_export(
    mlflow: MlflowResource, name: str, version: str, run_id: str, ref: ArtifactRef, data: bytes
) -> None:
    """The export's files and tags on a version that holds none yet (written once)."""
    provenance = canonical_json(provenance_document(ref, name, version))
    mlflow.log_bytes(run_id, data, ONNX_FILE)
    mlflow.log_bytes(run_id, provenance, PROVENANCE_FILE)
    mlflow.log_json(run_id, environment_snapshot(), "onnx/environment.json")
    client = mlflow.client
    client.set_model_version_tag(name, version, "onnx_sha256", ref.sha256)
    client.set_model_version_tag(name, version, "provenance_sha256", sha256_bytes(provenance))
    client.set_model_version_tag(
        name, version, "provenance_uri", f"runs:/{run_id}/{PROVENANCE_FILE}"
    )


def _derive_version(
    mlflow: MlflowResource, source: ModelVersion, ref: ArtifactRef, dagster_run_id: str
) -> tuple[str, str]:
    """A new run with a copy of `source`'s model files, params, metrics and lineage tags,
    registered as a new version of the same model; returns (run id, version)."""
    client = mlflow.client
    src = client.get_run(source.run_id)
    lineage_tags = {
        k: v
        for k, v in src.data.tags.items()
        if not k.startswith("mlflow.") and k != "dagster_run_id"
    }
    with mlflow.start_run(
        run_name=f"{src.info.run_name} export {ref.sha256[:12]}",
        tags={**lineage_tags, "derived_from_run": source.run_id},
    ) as run_id:
        params = [Param(k, v) for k, v in sorted(src.data.params.items())]
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in sorted(src.data.metrics.items())]
        for i in range(0, max(len(params), len(metrics)), 100):
            client.log_batch(run_id, metrics=metrics[i : i + 100], params=params[i : i + 100])
        with tempfile.TemporaryDirectory(prefix="derive-") as tmp:
            for info in client.list_artifacts(source.run_id):
                if info.path in EXPORT_FILES:
                    continue
                local = client.download_artifacts(source.run_id, info.path, tmp)
                if info.is_dir:
                    client.log_artifacts(run_id, local, info.path)
                else:
                    client.log_artifact(run_id, local)
    tags = {k: v for k, v in source.tags.items() if k not in EXPORT_TAGS and k != "dagster_run_id"}
    version = mlflow.register_version(
        source.name,
        run_id,
        "model",
        tags={
            **tags,
            "dagster_run_id": dagster_run_id,
            "derived_from": f"{source.name} v{source.version}",
        },
        description=f"{source.description or ''} (export {ref.sha256[:12]}; the model of "
        f"v{source.version}, whose export is never rewritten)".strip(),
    )
    return run_id, version
