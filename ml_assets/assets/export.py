"""Export stage: the fraud model as ONNX, loaded back by ONNX Runtime, with its provenance."""

import numpy as np
from dagster import AssetExecutionContext, Definitions, Failure, MetadataValue, Output, asset

from ml_assets.core.artifacts import ArtifactRef, lineage_of
from ml_assets.core.environment import environment_snapshot
from ml_assets.core.fraud_data import generate_transactions
from ml_assets.core.fraud_model import ONNX_TARGET_OPSET, from_skops_bytes, to_onnx_bytes
from ml_assets.core.fraud_scorer import OnnxFraudScorer
from ml_assets.core.hashing import canonical_json, sha256_bytes
from ml_assets.provenance import hashed_output, md_table, timed
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.storage import ArtifactStore

GROUP = "export"
CODE_VERSION = "fraud_model_onnx@1"
PROVENANCE_FILE = "provenance.json"


def provenance_document(onnx_ref: ArtifactRef, registered_model: str, version: str) -> dict:
    """The chain of hashes from the raw data to the ONNX file, for the registry version."""
    return {
        "schema": "ml-assets.provenance.v1",
        "registered_model": registered_model,
        "version": version,
        "chain": onnx_ref.chain(),
        "artifact": {"asset": onnx_ref.asset, "sha256": onnx_ref.sha256, "format": "onnx"},
    }


@asset(group_name=GROUP, code_version=CODE_VERSION)
def fraud_model_onnx(
    context: AssetExecutionContext,
    store: ArtifactStore,
    mlflow: MlflowResource,
    fraud_model: ArtifactRef,
) -> Output[ArtifactRef]:
    """The fraud model converted by skl2onnx and checked to load and score in ONNX Runtime."""
    with timed() as t:
        model = from_skops_bytes(fraud_model.read_verified())
        context.log.info("converting the pipeline with skl2onnx")
        data = to_onnx_bytes(model)
        context.log.info(f"exported {len(data):,} bytes; loading back in ONNX Runtime")
        scorer = OnnxFraudScorer(data)
        probe = generate_transactions(200, seed=0)
        native = model.predict_proba(probe)[:, 1]
        onnx = scorer.predict_proba(probe)
        if not np.all(np.isfinite(onnx)) or onnx.shape != native.shape:
            raise Failure("the exported ONNX model returned malformed probabilities on probe rows")
        probe_diff = float(np.max(np.abs(native - onnx)))
        ref = store.content().put(
            "fraud_model_onnx",
            data,
            ".onnx",
            code_version=CODE_VERSION,
            lineage=lineage_of(fraud_model),
            extra={
                k: fraud_model.extra[k]
                for k in ("mlflow_run_id", "registered_model", "model_version")
            },
        )
        run_id = fraud_model.extra["mlflow_run_id"]
        name, version = fraud_model.extra["registered_model"], fraud_model.extra["model_version"]
        provenance = provenance_document(ref, name, version)
        provenance_bytes = canonical_json(provenance)
        mlflow.log_bytes(run_id, data, "onnx/fraud_model.onnx")
        mlflow.log_bytes(run_id, provenance_bytes, PROVENANCE_FILE)
        mlflow.log_json(run_id, environment_snapshot(), "onnx/environment.json")
        client = mlflow.client
        client.set_model_version_tag(name, version, "onnx_sha256", ref.sha256)
        client.set_model_version_tag(
            name, version, "provenance_sha256", sha256_bytes(provenance_bytes)
        )
        client.set_model_version_tag(
            name, version, "provenance_uri", f"runs:/{run_id}/{PROVENANCE_FILE}"
        )
    context.log.info(f"tagged {name} v{version} with onnx_sha256 {ref.sha256[:12]}")
    return hashed_output(
        ref,
        upstream={"fraud_model": fraud_model},
        wall_time_s=t["seconds"],
        metadata={
            "opset": MetadataValue.json(ONNX_TARGET_OPSET),
            "probe_max_abs_diff": MetadataValue.float(probe_diff),
            "registered_model": MetadataValue.text(f"{name} v{version}"),
            "provenance_chain": MetadataValue.md(md_table(provenance["chain"])),
        },
    )


defs = Definitions(assets=[fraud_model_onnx])
