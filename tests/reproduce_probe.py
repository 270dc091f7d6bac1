"""Run in a fresh process by tests/test_reproducible.py: materialize every declared lineage (real
Dagster, a throw-away SQLite MLflow store, the content store; default rows unless `--rows`) and
export the text embedder; prints the sha256 of every file written, as JSON on its last line.

Two such processes with different PYTHONHASHSEEDs must print the same hashes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from pathlib import Path

from dagster import DagsterInstance, materialize

from ml_assets.components.defs_folder import load_catalog
from ml_assets.definitions import build_definitions
from ml_assets.platform.hashing import sha256_bytes
from ml_assets.resources import MlflowResource
from ml_assets.resources.defaults import local_resources
from ml_assets.search.embedder_export import export_fp32, quantize_int8
from tests.helpers import assets_of_lineage, data_versions


def lineage_hashes(root: Path, mlflow: MlflowResource, rows: int | None) -> dict[str, str]:
    out: dict[str, str] = {}
    defs = build_definitions()
    for spec in load_catalog().lineages:
        config = {"rows": rows} if rows else {}
        result = materialize(
            assets_of_lineage(defs, spec.name),
            resources=local_resources(root, mlflow),
            instance=DagsterInstance.ephemeral(),
            run_config={"ops": {f"{spec.name}__raw_data": {"config": config}}},
        )
        if not result.success:
            sys.exit(f"{spec.name}'s lineage failed to materialize")
        out.update(data_versions(result))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracking-uri", help="an MLflow store (default: SQLite, thrown away)")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--embedder", action="store_true", help="also export the embedder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reproduce-") as tmp:
        mlflow = MlflowResource(
            tracking_uri=args.tracking_uri or f"sqlite:///{tmp}/mlflow.db",
            experiment_name=f"ml-assets-reproduce-{uuid.uuid4().hex[:12]}",
            artifact_location=str(Path(tmp) / "mlflow"),
        )
        hashes = lineage_hashes(Path(tmp) / "artifacts", mlflow, args.rows)
    if args.embedder:
        fp32 = export_fp32()
        hashes["embedding_model_onnx fp32"] = sha256_bytes(fp32)
        hashes["embedding_model_onnx int8"] = sha256_bytes(quantize_int8(fp32))
    print(json.dumps(hashes, sort_keys=True))


if __name__ == "__main__":
    main()
