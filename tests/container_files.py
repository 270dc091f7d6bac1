"""What the container checks read: the repo's docker/ and deploy/ paths, a small Dockerfile parser
and the project's pins (pyproject.toml, lock files), for tests/test_containers*.py."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

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


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())
