"""Static checks of deploy/: the serving Kubernetes manifests against the serving app's real routes,
and the Dagster Helm values."""

from __future__ import annotations

import ast
import re
from functools import cache
from typing import Any

import pytest
import yaml

from tests.container_files import (
    HELM_VALUES,
    REPO,
    SECRET_KEY,
    SERVICE_ROUTES,
    SERVING_K8S,
    dockerfile,
    env_of,
    exact_pin,
    pyproject_requirements,
)

# ---- deploy/k8s/serving.yaml --------------------------------------------------------------


@cache
def manifests() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(SERVING_K8S.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), "one object of each kind"
    return by_kind


def bentoml_system_routes() -> set[str]:
    """The routes BentoML's HTTP app adds to every service (liveness, readiness, metrics)."""
    base_app = pytest.importorskip("bentoml._internal.server.base_app")

    class _App(base_app.BaseAppFactory):
        name = "probe"

    app = object.__new__(_App)
    return {route.path for route in base_app.BaseAppFactory.get_system_routes(app)}


def service_routes() -> set[str]:
    """The routes serving/service.py declares: @bentoml.api(route=...) and mounted Routes."""
    tree = ast.parse((REPO / "serving" / "service.py").read_text())
    routes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func == "bentoml.api":
                # Literal routes only: a declared lineage's routes (/v1/models/<name>/predict)
                # are built from the bundle at import time.
                routes |= {
                    k.value.value
                    for k in node.keywords
                    if k.arg == "route" and isinstance(k.value, ast.Constant)
                }
            if func == "Route" and node.args and isinstance(node.args[0], ast.Constant):
                routes.add(node.args[0].value)
    return routes


def test_probes_hit_real_endpoints() -> None:
    assert service_routes() == SERVICE_ROUTES
    system = bentoml_system_routes()
    assert {"/livez", "/readyz", "/metrics"} <= system
    container = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 3000}
    expected = {"livenessProbe": "/livez", "readinessProbe": "/readyz", "startupProbe": "/livez"}
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path and get["path"] in system, f"{probe}: {get}"
        assert ports.get(get["port"], get["port"]) == 3000, f"{probe}: {get}"
    annotations = manifests()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in service_routes()


def test_serving_deployment_is_locked_down() -> None:
    deployment = manifests()["Deployment"]
    assert deployment["apiVersion"] == "apps/v1"
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    image = container["image"]
    assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image
    uid = int(dockerfile("serving")[-1].all("USER")[-1].args.split(":")[0])
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == uid
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    # A read-only root: the image's only writable paths are emptyDirs.
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {env_of(dockerfile("serving")[-1])["BENTOML_HOME"], "/tmp"} <= mounts
    secret_env = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e
    }
    assert {"ML_SERVING_API_KEY", "ML_VECTOR_PG_DSN"} <= set(secret_env)
    assert all("value" not in e for e in container["env"]), "secrets only by reference"
    config = manifests()["ConfigMap"]["data"]
    assert not [k for k in config if SECRET_KEY.search(k) or k.endswith("_DSN")], config
    assert {"MLFLOW_TRACKING_URI", "ML_SERVING_WORKERS", "HF_HUB_OFFLINE"} <= set(config)
    assert (
        container["envFrom"][0]["configMapRef"]["name"]
        == manifests()["ConfigMap"]["metadata"]["name"]
    )


def test_service_pdb_and_hpa_target_the_deployment() -> None:
    objects = manifests()
    deployment = objects["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service = objects["Service"]
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pdb = objects["PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )
    # With minAvailable 1 a single replica could never be evicted (a node drain would hang).
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]
    assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # HPA utilization is relative to requests: the container must request CPU.
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["cpu"]


# ---- deploy/helm/dagster-values.yaml ------------------------------------------------------

# The top-level keys the official chart's values schema knows.
HELM_KEYS = {
    "global",
    "dagsterWebserver",
    "dagster-user-deployments",
    "postgresql",
    "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret",
    "rabbitmq",
    "redis",
    "flower",
    "ingress",
    "imagePullSecrets",
    "computeLogManager",
    "scheduler",
    "runLauncher",
    "pythonLogs",
    "dagsterDaemon",
    "busybox",
    "migrate",
    "telemetry",
    "serviceAccount",
    "retention",
    "additionalInstanceConfig",
}


@cache
def helm_values() -> dict[str, Any]:
    return yaml.safe_load(HELM_VALUES.read_text())


def test_helm_values_external_postgres_and_queue() -> None:
    values = helm_values()
    assert set(values) <= HELM_KEYS, set(values) - HELM_KEYS
    pg = values["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"]
    assert pg["postgresqlPassword"] == "", "the password comes from the Secret, not values"
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True and coordinator["type"] == "QueuedRunCoordinator"
    limit = coordinator["config"]["queuedRunCoordinator"]["maxConcurrentRuns"]
    assert isinstance(limit, int) and limit > 0
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher" and "k8sRunLauncher" in launcher["config"]
    pools = values["additionalInstanceConfig"]["concurrency"]["pools"]
    root = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert pools == root["concurrency"]["pools"], "the same pool limits as the embedded default"


def test_helm_values_images_and_user_deployment() -> None:
    values = helm_values()
    dagster_version = exact_pin(pyproject_requirements()["dagster"])
    for component in ("dagsterWebserver", "dagsterDaemon"):
        image = values[component]["image"]
        assert image["tag"] == dagster_version, f"{component}: {image}"
    deployments = values["dagster-user-deployments"]
    assert deployments["enabled"] is True
    (deployment,) = deployments["deployments"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", deployment["name"]), "a DNS-1123 name"
    image = deployment["image"]
    assert image["tag"] and image["tag"] != "latest" and "code-location" in image["repository"]
    args = deployment["codeServerArgs"]
    assert args[args.index("-m") + 1] == "ml_assets.definitions"
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    env = {e["name"]: e["value"] for e in deployment["env"]}
    final = env_of(dockerfile("code-location")[-1])
    assert env["ML_ARTIFACT_ROOT"] == final["ML_ARTIFACT_ROOT"]
    assert env["BENTOML_HOME"] == final["BENTOML_HOME"]
    assert not [k for k in env if SECRET_KEY.search(k) or k.endswith("_DSN")], env
    assert deployment["envSecrets"], "the DSNs come from a Secret"
    mounts = [m["mountPath"] for m in deployment["volumeMounts"]]
    assert any(env["ML_ARTIFACT_ROOT"].startswith(m) for m in mounts)
    uid = int(dockerfile("code-location")[-1].all("USER")[-1].args.split(":")[0])
    assert deployment["podSecurityContext"]["runAsUser"] == uid
    assert deployment["podSecurityContext"]["runAsNonRoot"] is True
    run_pod = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    assert run_pod["podSpecConfig"]["securityContext"]["runAsUser"] == uid
    assert run_pod["containerConfig"]["resources"]["limits"]["memory"]
    assert values["dagsterDaemon"]["image"]["repository"].endswith("dagster-k8s")
