"""The search modules' shared starting point: a module's own copy of the session's search chain
(conftest.py search_state) as its `vector_dsn`, `dagster_instance` and `env`. A module takes the
fixtures by importing them (tests/test_search.py, tests/test_search_declared.py)."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance

from ml_assets.components.search_index.assets import load_embedder
from ml_assets.platform.artifacts import ArtifactRef
from ml_assets.resources import MlflowResource
from ml_assets.resources.defaults import local_resources
from tests.helpers import materialized_ref, search_state_dsn

__all__ = ["search_env", "search_state_dsn", "search_state_instance", "env_ref", "env_embedder"]


@pytest.fixture(scope="module", name="dagster_instance")
def search_state_instance(search_state) -> DagsterInstance:
    """The copy's Dagster instance: it holds the search chain's materializations and checks."""
    return search_state["instance"]


@pytest.fixture(scope="module", name="env")
def search_env(mlflow_resource: MlflowResource, search_state, vector_dsn: str):
    """The session's search chain (materialized once, tests/conftest.py), this module's copy."""
    root = search_state["root"]
    resources = local_resources(root, mlflow_resource, vector_dsn)
    return {
        "resources": resources,
        "root": root,
        "checks": search_state["checks"],
        "dsn": vector_dsn,
    }


def env_ref(env, asset: str) -> ArtifactRef:
    """The newest ref of `asset` in the module's copy."""
    return materialized_ref(env["root"], asset)


def env_embedder(env):
    """The int8 embedder the copy's export registered, loaded from its artifact store."""
    embedder, _ = load_embedder(
        env["resources"]["store"], env_ref(env, "embedding_model_onnx"), "int8", None
    )
    return embedder
