"""Start and stop a real `bentoml serve` process on loopback (smoke check, tests, benchmarks).

Dagster-free: the smoke check, the test fixture, `ml-assets serve` and the serving benchmark
all start the served Bento the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

# What the service logs when it refuses the bundle it was started on (serving/service.py,
# `_start_release`): it will never become ready, so waiting for it is pointless.
REFUSAL = "models not loaded, service not ready: "


class ServiceRefused(RuntimeError):
    """The service under start refused its models (its log says why); it will not be ready."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    url: str
    log_path: Path
    log_offset: int = 0  # where this process's output starts in a log shared with earlier ones

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def refusal(self) -> str | None:
        """The service's refusal of its models, as it logged it, if it logged one."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self.log_offset)
                text = fh.read().decode(errors="replace")
        except FileNotFoundError:
            return None
        for line in text.splitlines():
            if REFUSAL in line:
                return line[line.index(REFUSAL) + len(REFUSAL) :].strip()
        return None

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        """Seconds until /readyz answered 200; raises with the server's log if it never does,
        and at once (ServiceRefused, quoting it) when the service logs a refusal of its models."""
        start = time.monotonic()
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() - start < timeout_s:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"bentoml serve exited with {self.proc.returncode}:\n{self.log_tail()}"
                    )
                if (refused := self.refusal()) is not None:
                    raise ServiceRefused(f"the service refused its models: {refused}")
                try:
                    if client.get(f"{self.url}/readyz").status_code == 200:
                        return time.monotonic() - start
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        raise TimeoutError(f"{self.url} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def wait_live(self, timeout_s: float = 120.0) -> None:
        start = time.monotonic()
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() - start < timeout_s:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"bentoml serve exited:\n{self.log_tail()}")
                try:
                    if client.get(f"{self.url}/livez").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        raise TimeoutError(f"{self.url} not live after {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    target: str,
    *,
    bentoml_home: str | Path,
    port: int | None = None,
    workers: int | None = None,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    cwd: Path | None = None,
) -> ServerProcess:
    """`bentoml serve TARGET` on 127.0.0.1 (a Bento tag, or a service import path)."""
    port = port or free_port()
    run_env = {**os.environ, **(env or {}), "BENTOML_HOME": str(bentoml_home)}
    run_env.setdefault("ML_SERVING_RELEASE_FILE", str(Path(bentoml_home) / f"release-{port}.json"))
    run_env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    run_env.setdefault("HF_HUB_OFFLINE", "1")
    if workers is not None:
        run_env["ML_SERVING_WORKERS"] = str(workers)
    log_path = log_path or Path(bentoml_home) / f"serve-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    offset = log_path.stat().st_size if log_path.exists() else 0
    bentoml = Path(sys.executable).with_name("bentoml")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(bentoml), "serve", target, "--host", "127.0.0.1", "--port", str(port)],
            env=run_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(cwd) if cwd else None,
        )
    return ServerProcess(proc, f"http://127.0.0.1:{port}", log_path, offset)
