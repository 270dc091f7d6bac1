"""What the serving modules share: the keys, the promotion and sensor calls on the package's
platform, /metrics sums, a scoring client under load, the served models, forged versions."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import psycopg
import pytest
from dagster import (
    build_sensor_context,
    materialize,
)

from ml_assets.bundle.assets import (
    serving_bundle,
    serving_bundle_smoke,
    serving_deployment,
)
from ml_assets.bundle.promotion_sensor import promotion_sensor
from ml_assets.bundle.serving_process import ServerProcess, start_server
from ml_assets.lineages.fraud.generator import SMOKE_TRANSACTION
from ml_assets.platform import events, promotion
from ml_assets.platform.dagster_records import DagsterRecords
from ml_assets.platform.hashing import canonical_json, sha256_bytes
from ml_assets.platform.serving_bundle import PRODUCTION_ALIAS
from tests.helpers import (
    CATALOG,
    EMBEDDER_MODEL,
    FRAUD_MODEL,
    failure_text,
    fraud_asset,
)

RETRAIN = [fraud_asset("model"), fraud_asset("onnx"), fraud_asset("export_validation_report")]

API_KEY = "test-reload-key"
FRAUD, EMBEDDER = FRAUD_MODEL, EMBEDDER_MODEL


def _promote(platform, name: str, version: str, **kw):
    return promotion.promote(
        platform["client"],
        platform["events_dsn"],
        name,
        version,
        catalog=platform["resources"]["catalog"],
        records=DagsterRecords(platform["instance"]),
        actor=kw.pop("actor", "pytest"),
        reason=kw.pop("reason", "test promotion"),
        **kw,
    )


def _alias(platform, name: str) -> str | None:
    try:
        return str(platform["client"].get_model_version_by_alias(name, PRODUCTION_ALIAS).version)
    except Exception:
        return None


def _events(platform) -> list[dict]:
    with psycopg.connect(platform["events_dsn"]) as conn:
        promotion.ensure_events_table(conn)
        return [r[0] for r in conn.execute("SELECT payload FROM ml_events.events ORDER BY 1")]


def _gate_rows(decision) -> dict[str, promotion.Gate]:
    return {g.name: g for g in decision.gates}


def _evaluate(platform, version: str, name: str = FRAUD) -> promotion.Decision:
    """The gate's decision on `name` v`version` over the module's registry and records."""
    return promotion.evaluate(
        platform["client"],
        name,
        version,
        catalog=CATALOG,
        records=DagsterRecords(platform["instance"]),
    )


def _records_metric(platform, version: str) -> float:
    decision = _evaluate(platform, version)
    assert decision.approved, decision.table()
    return decision.candidate_value


def _sensor_tick(platform, cursor: str | None):
    """model_promotion_sensor on the module's instance, registry, artifact store and catalog."""
    resources = {k: platform["resources"][k] for k in ("mlflow", "store")}
    context = build_sensor_context(
        cursor=cursor, resources=resources, instance=platform["instance"]
    )
    return promotion_sensor(platform["resources"]["catalog"])(context)


def _metric(c: httpx.Client, name: str, headers: dict | None = None, **labels: str) -> float:
    """The sum of `name`'s samples on /metrics whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    text = c.get("/metrics", headers=headers).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def _hammer(url: str, stop: threading.Event, seen: list, failures: list) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            try:
                r = c.post("/v1/score", json={"transaction": SMOKE_TRANSACTION})
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
                continue
            if r.status_code != 200:
                failures.append(f"{r.status_code} {r.text[:200]}")
            else:
                seen.append((time.monotonic(), r.json()["model_version"]))


def _served(url: str) -> dict[str, tuple[str, str]]:
    """What the endpoint serves, asserted the same on every worker (a new connection each time:
    a kept-alive one always reaches the same worker)."""
    answers = []
    for _ in range(8):
        with httpx.Client(base_url=url, timeout=30, headers={"Connection": "close"}) as c:
            answers.append(c.get("/models").json()["models"])
    assert all(a == answers[0] for a in answers), "the workers serve different models"
    models = answers[0]
    return {
        r: (f"{m['registered_model']}@{m['version']}", m["sha256"]["model.onnx"])
        for r, m in models.items()
    }


def _serving_run(platform):
    return materialize(
        [serving_bundle, serving_bundle_smoke, serving_deployment],
        resources=platform["resources"],
        instance=platform["instance"],
        raise_on_error=False,
    )


def _rejections(platform, version: str) -> list[dict]:
    return [
        e
        for e in events.read(platform["events_dsn"], events.PROMOTION_REJECTED)
        if e["model"] == FRAUD and e["version"] == version
    ]


def _move_alias_and_refuse(
    platform, server, version: str, cursor: str, webhook
) -> tuple[str, dict]:
    """A plain MlflowClient moves the alias; the serving run must refuse and change nothing."""
    client = platform["client"]
    before = _served(server.url)
    client.set_registered_model_alias(FRAUD, PRODUCTION_ALIAS, version)
    tick = _sensor_tick(platform, cursor)
    assert [r.run_key for r in tick.run_requests] == [f"{FRAUD}@{version}"]
    run = _serving_run(platform)
    assert not run.success
    text = failure_text(run)
    assert f"refused to serve {FRAUD} v{version}" in text, text
    (failure,) = run.get_step_failure_events()
    gates = failure.step_failure_data.user_failure_data.metadata["gates"].value
    assert "**FAIL**" in gates, gates
    assert _served(server.url) == before, "the endpoint keeps the last validated bundle"
    (event,) = _rejections(platform, version)
    jsonschema.validate(event, events.schema(events.PROMOTION_REJECTED))
    assert any(a["model"] == FRAUD and a["version"] == version for a in webhook)
    # One run per move: the next tick does not ask again for the refused version.
    again = _sensor_tick(platform, tick.cursor)
    assert not again.run_requests
    return tick.cursor, event


def _register_perturbed(platform, base_version: str) -> tuple[str, bytes]:
    """A version registered by a plain MLflow client: `base_version`'s ONNX file with one bit
    flipped, a provenance.json and tags that name the new bytes. Returns (version, bytes)."""
    client = platform["client"]
    good = client.get_model_version(FRAUD, base_version)
    mlflow = platform["resources"]["mlflow"]
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(client.download_artifacts(good.run_id, "onnx/model.onnx", tmp)).read_bytes()
        prov = json.loads(
            Path(client.download_artifacts(good.run_id, "provenance.json", tmp)).read_bytes()
        )
    middle = len(onnx) // 2
    perturbed = onnx[:middle] + bytes([onnx[middle] ^ 0x01]) + onnx[middle + 1 :]
    prov["artifact"]["sha256"] = sha256_bytes(perturbed)
    prov_bytes = canonical_json(prov)
    run = client.create_run(client.get_run(good.run_id).info.experiment_id)
    mlflow.log_bytes(run.info.run_id, perturbed, "onnx/model.onnx")
    mlflow.log_bytes(run.info.run_id, prov_bytes, "provenance.json")
    forged = client.create_model_version(
        FRAUD,
        f"runs:/{run.info.run_id}/onnx",
        run_id=run.info.run_id,
        tags={
            **dict(good.tags),
            "onnx_sha256": sha256_bytes(perturbed),
            "provenance_sha256": sha256_bytes(prov_bytes),
            "export_validation": "passed",
        },
    )
    return str(forged.version), perturbed


def _declared_schema(doc: dict, path: str, status: int) -> dict:
    response = doc["paths"][path]["post"]["responses"][str(status)]
    return {**response["content"]["application/json"]["schema"], "components": doc["components"]}


def serve_first_bundle(platform, workers: int, env: dict[str, str]) -> Iterator[ServerProcess]:
    """A `server` fixture's body: `bentoml serve` of the package's first bundle, until ready
    (skipped when test_2_bundle did not build it)."""
    if "bento_tag" not in platform:
        pytest.skip("the bundle was not built")
    proc = start_server(
        platform["bento_tag"], bentoml_home=platform["home"], workers=workers, env=env
    )
    with proc:
        proc.wait_ready(timeout_s=120)
        yield proc
