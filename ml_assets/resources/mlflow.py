"""MLflow tracking and registry as a ConfigurableResource over MLflow's client API.

dagster-mlflow's own resource is a legacy function resource (dagster issue 15053); this one is
configured with EnvVar and tags every MLflow run with the Dagster run that produced it. It also
implements `end_run`, so dagster-mlflow's `end_mlflow_on_run_finished` hook can close the runs.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource, InitResourceContext
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from pydantic import Field, PrivateAttr


class MlflowResource(ConfigurableResource):
    """A tracking store + model registry (any MLflow URI: a server, or a database directly)."""

    tracking_uri: str = Field(description="MLflow tracking URI (MLFLOW_TRACKING_URI).")
    registry_uri: str | None = Field(
        default=None, description="Registry URI; defaults to the tracking URI."
    )
    experiment_name: str = "ml-assets"
    artifact_location: str | None = Field(
        default=None,
        description="Artifact root for a new experiment when tracking straight to a database.",
    )

    _client: MlflowClient | None = PrivateAttr(default=None)
    _dagster_run_id: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
        self._dagster_run_id = context.run.run_id if context.run else None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.registry_uri
            )
        return self._client

    def experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment_name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if self.artifact_location:
            location = Path(self.artifact_location).resolve().as_uri()
        return self.client.create_experiment(self.experiment_name, artifact_location=location)

    @contextlib.contextmanager
    def start_run(self, run_name: str, tags: dict[str, str] | None = None) -> Iterator[str]:
        """A run that ends FINISHED on success and FAILED on an exception."""
        all_tags = {"dagster_run_id": self._dagster_run_id or "", **(tags or {})}
        run = self.client.create_run(self.experiment_id(), run_name=run_name, tags=all_tags)
        run_id = run.info.run_id
        try:
            yield run_id
        except BaseException:
            self.client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FAILED))
            raise
        self.client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FINISHED))

    def end_run(self, status: str = "FINISHED") -> None:
        """Close any run this Dagster run left open (called by dagster-mlflow's hook)."""
        if not self._dagster_run_id:
            return
        runs = self.client.search_runs(
            [self.experiment_id()],
            filter_string=f"tags.dagster_run_id = '{self._dagster_run_id}'",
        )
        for run in runs:
            if run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, status=status)

    def register_version(
        self,
        name: str,
        run_id: str,
        artifact_path: str,
        tags: dict[str, str],
        description: str,
    ) -> str:
        """Register the run's `artifact_path` as a new version of `name`; returns the version."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        source = f"{self.client.get_run(run_id).info.artifact_uri}/{artifact_path}"
        version = self.client.create_model_version(
            name, source=source, run_id=run_id, tags=tags, description=description
        )
        return str(version.version)

    def log_json(self, run_id: str, obj: Any, artifact_file: str) -> None:
        self.log_bytes(run_id, json.dumps(obj, indent=2, sort_keys=True).encode(), artifact_file)

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            path.write_bytes(data)
            parent = str(Path(artifact_file).parent)
            self.client.log_artifact(run_id, str(path), None if parent == "." else parent)
