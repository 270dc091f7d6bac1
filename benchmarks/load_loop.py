"""The closed-loop HTTP load of the serving benchmarks: N client threads, one keep-alive
connection each (http.client), posting back to back for a fixed time."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Loop:
    """What one loop saw: per-request times of the answered requests, its wall time, errors."""

    ms: np.ndarray
    wall_s: float
    errors: list[str]

    @property
    def rps(self) -> float:
        return len(self.ms) / self.wall_s

    def percentile(self, q: float) -> float:
        """The q-th percentile of the answered requests' times, in ms."""
        return float(np.percentile(self.ms, q))


def post_loop(
    url: str,
    path: str,
    clients: int,
    seconds: float,
    body: Callable[[], str],
    check: Callable[[int, bytes], str | None] = lambda status, _: (
        None if status == 200 else f"HTTP {status}"
    ),
    *,
    timeout: float = 60,
) -> Loop:
    """`clients` threads posting body() to `path` until `seconds` have passed.

    Every answer is timed, whatever its status; check(status, body) names what is wrong with
    it (None: nothing). A request that gets no answer (a reset connection) is an error, not a
    time, and its client reconnects.
    """
    host, port = url.removeprefix("http://").split(":")
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    barrier = threading.Barrier(clients)
    stop = [0.0]

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        barrier.wait()
        while time.monotonic() < stop[0]:
            payload = body()
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, payload, HEADERS)
                resp = conn.getresponse()
                answer = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
                continue
            lat[i].append(time.perf_counter() - t0)
            wrong = check(resp.status, answer)
            if wrong is not None:
                errors.append(wrong)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    stop[0] = time.monotonic() + seconds
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    return Loop(np.array([x for xs in lat for x in xs]) * 1000, wall, errors)
