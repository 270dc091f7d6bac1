"""Nightly validation and smoke runs: the verdicts (pure), the per-night records, and the load
run itself (Locust as a library, in a child process: `python -m ml_assets.nightly.records SPEC`).

Locust monkey-patches the standard library with gevent when it is imported, so it never runs
inside the Dagster process: the asset writes a spec, this module runs the profile in a child
and prints one JSON line of per-endpoint statistics.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ml_assets.platform.child_json import child_main

SMOKE_SCHEMA = "ml-assets.nightly-smoke.v1"
VALIDATION_SCHEMA = "ml-assets.nightly-validation.v2"
BASELINE_SCHEMA = "ml-assets.smoke-baseline.v1"
COMPLETED, FAILED = "completed", "failed"
ENDPOINTS = ("/v1/score", "/embed")


@dataclass(frozen=True)
class Stage:
    """Hold `users` users (reached at `spawn_rate` users/s) for `duration_s` seconds."""

    name: str
    users: int
    spawn_rate: float
    duration_s: float


def load_profile(
    *,
    warmup_users: int = 10,
    ramp_users: int = 50,
    peak_users: int = 100,
    warmup_s: float = 60.0,
    ramp_s: float = 120.0,
    peak_s: float = 300.0,
    cooldown_s: float = 60.0,
) -> list[Stage]:
    """The replaced platform's shape: warm-up, ramp, peak, cool-down back to the warm-up level."""
    if not 0 < warmup_users <= ramp_users <= peak_users:
        raise ValueError("users must satisfy 0 < warmup <= ramp <= peak")
    if min(warmup_s, ramp_s, peak_s, cooldown_s) <= 0:
        raise ValueError("every stage needs a positive duration")
    return [
        Stage("warm-up", warmup_users, warmup_users / warmup_s, warmup_s),
        Stage("ramp", ramp_users, (ramp_users - warmup_users) / ramp_s or 1.0, ramp_s),
        # The peak is reached quickly and then held: it is the level being measured.
        Stage("peak", peak_users, max((peak_users - ramp_users) / (peak_s / 4), 1.0), peak_s),
        Stage("cool-down", warmup_users, (peak_users - warmup_users) / cooldown_s, cooldown_s),
    ]


def smoke_regressions(
    endpoints: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, Any] | None,
    *,
    p95_factor: float = 1.10,
    max_error_rate: float = 0.01,
) -> list[str]:
    """Every regression of one night against the adopted baseline (empty: no regression)."""
    found = []
    for name, stats in sorted(endpoints.items()):
        if stats["requests"] == 0:
            found.append(f"{name}: no requests completed")
            continue
        if stats["error_rate"] > max_error_rate:
            found.append(
                f"{name}: error rate {stats['error_rate']:.2%} > {max_error_rate:.0%} "
                f"({int(stats['failures'])} of {int(stats['requests'])})"
            )
        base = (baseline or {}).get("endpoints", {}).get(name)
        if base is not None:
            limit = base["p95_ms"] * p95_factor
            if stats["p95_ms"] > limit:
                found.append(
                    f"{name}: p95 {stats['p95_ms']:.1f} ms > baseline {base['p95_ms']:.1f} ms "
                    f"x {p95_factor:.2f} = {limit:.1f} ms"
                )
    return found


def _worse_by(now: float, ref: float, higher_is_better: bool) -> float:
    """How much worse `now` is than `ref`, relative to `ref` (negative: better)."""
    change = ref - now if higher_is_better else now - ref
    return change / max(abs(ref), 1e-12)


def _failed_gates(label: str, part: Mapping[str, Any]) -> list[str]:
    return [
        f"{label} gate {g['name']}: {g['detail']}" for g in part.get("gates", []) if not g["passed"]
    ]


def model_regressions(
    part: Mapping[str, Any], previous: tuple[str, Mapping[str, Any]] | None = None
) -> list[str]:
    """One production model's night: its validation's own thresholds, and its primary metric
    against the validated report and the last night that measured the same ONNX bytes."""
    label = part["version"]
    if part["status"] != COMPLETED:
        return [f"{label}: {part['reason']}", *_failed_gates(label, part)]
    found = []
    lim, now, used = part["limits"], part["tonight"], part["lineage"]
    exp = part["expectations"]
    if not exp["passed"]:
        found.append(
            f"{label} expectations on {used['raw']} {used['raw_sha256'][:12]}: "
            f"{exp['failed']} failed"
        )
    for metric, delta in now["relative_delta"].items():
        if delta > lim["quality_delta"][metric]:
            found.append(
                f"{label} {metric}: ONNX vs native {delta:.2%} > {lim['quality_delta'][metric]:.2%}"
            )
    if now["max_abs_diff"] > lim["output_diff"]:
        found.append(
            f"{label} parity: max |native - ONNX| {now['max_abs_diff']:.2e} "
            f"> {lim['output_diff']:.0e}"
        )
    if lim.get("latency_regression") is not None:
        lat = now["latency"]
        limit = lat["native_p95_ms"] * (1 + lim["latency_regression"])
        if lat["onnx_p95_ms"] > limit:
            found.append(f"{label} latency: ONNX p95 {lat['onnx_p95_ms']:.3f} ms > {limit:.3f} ms")
    metric, higher = part["primary_metric"], part["higher_is_better"]
    allowed = lim["quality_delta"][metric]
    refs = [(f"validated report {used['report_sha256'][:12]}", part["validated"]["onnx"][metric])]
    if previous is not None:
        night, prev = previous
        if (
            prev.get("status") == COMPLETED
            and prev["lineage"]["onnx_sha256"] == used["onnx_sha256"]
        ):
            refs.append((f"night {night}", prev["tonight"]["onnx"][metric]))
    value = now["onnx"][metric]
    for where, ref in refs:
        worse = _worse_by(value, ref, higher)
        if worse > allowed:
            found.append(
                f"{label} ONNX {metric} {value:.4f} is {worse:.2%} worse than {ref:.4f} in the "
                f"{where} (> {allowed:.2%})"
            )
    return found + _failed_gates(label, part)


SEARCH_MODES = ("hybrid", "vector", "lexical")


def search_regressions(
    part: Mapping[str, Any], previous: tuple[str, Mapping[str, Any]] | None = None
) -> list[str]:
    """Search on the live index: hybrid vs the better single mode, every mode against the
    validated report (the absolute floor), and hybrid against the last night of the same
    embedder, each within the quality check's own tolerance."""
    label = f"search ({part['version']})"
    if part["status"] != COMPLETED:
        return [f"{label}: {part['reason']}", *_failed_gates(label, part)]
    found = []
    tol = part["thresholds"]["tolerance"]
    now, validated = part["tonight"]["eval_ndcg_at_10"], part["validated"]["eval_ndcg_at_10"]
    best = max(now["lexical"], now["vector"])
    if now["hybrid"] < best - tol:
        found.append(
            f"{label}: hybrid nDCG@10 {now['hybrid']:.4f} < best single mode {best:.4f} - {tol}"
        )
    report = part["lineage"]["report_sha256"][:12]
    for mode in SEARCH_MODES:
        if now[mode] < validated[mode] - tol:
            found.append(
                f"{label}: {mode} nDCG@10 {now[mode]:.4f} < {validated[mode]:.4f} of the validated "
                f"report {report} - {tol}"
            )
    if previous is not None:
        night, prev = previous
        same = prev.get("lineage", {}).get("embedder_sha256") == part["lineage"]["embedder_sha256"]
        if prev.get("status") == COMPLETED and same:
            before = prev["tonight"]["eval_ndcg_at_10"]["hybrid"]
            if before - now["hybrid"] > tol:
                found.append(
                    f"{label}: hybrid nDCG@10 {now['hybrid']:.4f} dropped from {before:.4f} on "
                    f"{night} (> {tol})"
                )
    return found + _failed_gates(label, part)


def validation_regressions(
    tonight: Mapping[str, Any], earlier: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Every regression of one night: each production model's and search's, against what
    validated them and against the most recent earlier completed night of this schema."""
    nights = [
        e for e in earlier if e.get("status") == COMPLETED and e.get("schema") == VALIDATION_SCHEMA
    ]
    prev = max(nights, key=lambda e: e["partition"]) if nights else None

    def before(part: Mapping[str, Any] | None) -> tuple[str, Mapping[str, Any]] | None:
        return None if prev is None or part is None else (prev["partition"], part)

    found = []
    for role, part in sorted(tonight["models"].items()):
        found += model_regressions(part, before((prev or {}).get("models", {}).get(role)))
    found += search_regressions(tonight["search"], before((prev or {}).get("search")))
    return found


def read_records(directory: Path, before: str | None = None) -> list[dict[str, Any]]:
    """The per-night records in `directory` (one `<YYYY-MM-DD>.json` each), oldest first."""
    out = []
    for path in sorted(Path(directory).glob("????-??-??.json")):
        if before is None or path.stem < before:
            out.append(json.loads(path.read_text()))
    return out


def run_load(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run the staged profile against spec["url"] with Locust; per-endpoint statistics."""
    import gevent
    from locust import FastHttpUser, between, task
    from locust.env import Environment

    transaction, expected = spec["transaction"], spec.get("expected_versions", {})
    texts = spec["texts"]

    def check(resp: Any, role: str) -> None:
        if resp.status_code != 200:
            resp.failure(f"HTTP {resp.status_code}")
            return
        version = resp.json().get("model_version")
        if role in expected and version != expected[role]:
            resp.failure(f"served {version}, expected {expected[role]}")

    class PlatformUser(FastHttpUser):
        wait_time = between(spec["wait_min_s"], spec["wait_max_s"])
        network_timeout = spec.get("timeout_s", 30.0)
        connection_timeout = spec.get("timeout_s", 30.0)

        @task(spec.get("score_weight", 4))
        def score(self) -> None:
            with self.client.post(
                "/v1/score", json={"transaction": transaction}, catch_response=True
            ) as resp:
                check(resp, spec["score_role"])

        @task(spec.get("embed_weight", 1))
        def embed(self) -> None:
            with self.client.post("/embed", json={"texts": texts}, catch_response=True) as resp:
                check(resp, "embedder")

    env = Environment(user_classes=[PlatformUser], host=spec["url"])
    runner = env.create_local_runner()
    started = time.monotonic()
    stages = []
    for stage in spec["stages"]:
        runner.start(stage["users"], spawn_rate=stage["spawn_rate"])
        gevent.sleep(stage["duration_s"])
        stages.append({**stage, "users_reached": runner.user_count})
    runner.quit()
    wall_s = time.monotonic() - started
    if runner.exceptions:
        first = next(iter(runner.exceptions.values()))
        raise RuntimeError(f"the load users raised {len(runner.exceptions)} error(s): {first}")
    endpoints = {}
    for name in ENDPOINTS:
        entry = env.stats.get(name, "POST")
        n, failures = entry.num_requests, entry.num_failures
        endpoints[name] = {
            "requests": n,
            "failures": failures,
            "error_rate": failures / n if n else 1.0,
            "p50_ms": float(entry.get_response_time_percentile(0.50) or 0.0),
            "p95_ms": float(entry.get_response_time_percentile(0.95) or 0.0),
            "p99_ms": float(entry.get_response_time_percentile(0.99) or 0.0),
            "rps": n / wall_s,
        }
    errors = [
        {"endpoint": e.name, "error": str(e.error)[:300], "count": e.occurrences}
        for e in env.stats.errors.values()
    ]
    return {"endpoints": endpoints, "errors": errors, "wall_s": wall_s, "stages": stages}


def stages_as_dicts(stages: Iterable[Stage]) -> list[dict[str, Any]]:
    return [asdict(s) for s in stages]


def trend_png(nights: list[Mapping[str, Any]], series: Mapping[str, str], title: str) -> bytes:
    """One line per series (label -> dotted path into each record) over the nights; failed
    nights are marked on the x axis, so a gap in the trend is visible as a failure."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def get(record: Mapping[str, Any], path: str) -> float | None:
        value: Any = record
        for part in path.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
        return float(value)

    days = [n["partition"] for n in nights]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, path in series.items():
        points = [(i, get(n, path)) for i, n in enumerate(nights)]
        ax.plot(
            [i for i, v in points if v is not None],
            [v for _, v in points if v is not None],
            marker="o",
            label=label,
        )
    failed = [i for i, n in enumerate(nights) if n.get("status") == FAILED]
    if failed:
        ax.scatter(failed, [0] * len(failed), marker="x", color="red", label="failed night")
    ax.set_xticks(range(len(days)), days, rotation=45, ha="right")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


if __name__ == "__main__":
    # Locust patches the standard library on import: do it before anything else imports it.
    import locust  # noqa: F401

    sys.exit(child_main(run_load, sys.argv))
