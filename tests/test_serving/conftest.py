"""The serving package's platform, built once for its modules (which run in their numbered order
and build on each other's state, as the one module they were): two fraud versions on a copy of
the session's search chain, an MLflow server, and `bentoml serve` of the bundle."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import materialize

from ml_assets.bundle.serving_process import free_port
from ml_assets.resources import MlflowResource
from ml_assets.resources.defaults import local_resources
from tests.conftest import search_state_copy
from tests.helpers import (
    CATALOG,
    FRAUD_ASSETS,
    MODEL,
    materialize_fraud,
    op,
    wait_until_up,
)
from tests.helpers import materialized_ref as _ref
from tests.test_serving.support import (
    API_KEY,
    RETRAIN,
    serve_first_bundle,
)


@pytest.fixture(scope="package")
def search_state(search_golden: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The package's one copy of the session's search chain (tests/conftest.py search_state)."""
    yield from search_state_copy(search_golden, tmp_path_factory, "test_serving")


@pytest.fixture(scope="package")
def vector_dsn(search_state) -> str:
    """The package's copy of the session's search index."""
    return search_state["dsn"]


@pytest.fixture(scope="package")
def platform(tmp_path_factory, mlflow_resource: MlflowResource, vector_dsn: str, search_state):
    """Two fraud versions materialized here, on a copy of the session's search chain (embedder,
    index, report and their Dagster records); an MLflow server for /reload."""
    root = search_state["root"]
    home = tmp_path_factory.mktemp("bentoml_home")
    # The shipped catalog; a test that declares another lineage swaps it here for its span.
    resources = local_resources(root, mlflow_resource, vector_dsn, home, CATALOG)
    instance = search_state["instance"]
    first = materialize_fraud(resources, instance)
    assert first.success
    fraud_a = _ref(root, MODEL).extra["model_version"]
    embedder = _ref(root, "embedding_model_onnx").extra["registered_versions"]["int8"]
    second = materialize(
        FRAUD_ASSETS,
        selection=RETRAIN,
        resources=resources,
        instance=instance,
        run_config={"ops": {op("model"): {"config": {"seed": 11, "params": {"max_iter": 120}}}}},
    )
    assert second.success
    fraud_b = _ref(root, MODEL).extra["model_version"]
    assert fraud_a != fraud_b
    port = free_port()
    logs = root / "mlflow.log"
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            mlflow_resource.tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=open(logs, "ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/health", server, logs, "mlflow server")
    yield {
        "root": root,
        "home": home,
        "resources": resources,
        "instance": instance,
        "client": mlflow_resource.client,
        "events_dsn": vector_dsn,
        "fraud_a": fraud_a,
        "fraud_b": fraud_b,
        "embedder": embedder,
        "mlflow_url": url,
    }
    server.terminate()
    server.wait(timeout=20)


@pytest.fixture(scope="package")
def server(platform, vector_dsn):
    env = {
        "MLFLOW_TRACKING_URI": platform["mlflow_url"],
        "ML_VECTOR_PG_DSN": vector_dsn,
        "ML_SERVING_API_KEY": API_KEY,
    }
    yield from serve_first_bundle(platform, workers=2, env=env)
