"""Serving: the promoted models → a Bento (serving_bundle), smoke-tested over HTTP, and the job
the model_promotion_sensor launches, which also switches the running endpoint to it
(bundle/deployment.py; the promotion gate's job: bundle/promotion_job.py)."""

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetSelection,
    Definitions,
    MetadataValue,
    Output,
    ResourceParam,
    asset,
    asset_check,
    define_asset_job,
)

from ml_assets.bundle.deployment import serving_deployment
from ml_assets.bundle.model_cards import attach_cards, publish
from ml_assets.bundle.serving_process import start_server
from ml_assets.components.model_lineage.deps import after_lineages
from ml_assets.platform.artifacts import ArtifactRef
from ml_assets.platform.catalog import Catalog
from ml_assets.platform.dagster_records import DagsterRecords
from ml_assets.platform.hashing import canonical_json, sha256_bytes
from ml_assets.platform.provenance import hashed_output, md_table, timed
from ml_assets.platform.serving_bundle import (
    EMBEDDER,
    PRODUCTION_ALIAS,
    bundle_manifest,
    entries_of,
    score_role,
    served_lineages,
)
from ml_assets.platform.serving_gate import (
    gate_production,
    model_entry,
    refuse,
    served_roles,
)
from ml_assets.platform.validation_records import EMBEDDER_ASSET, search_evidence
from ml_assets.resources.bento import BentoResource
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.postgres import PostgresResource
from ml_assets.resources.storage import ArtifactStore

GROUP = "serving"
CODE_VERSION = "serving_bundle@1"


def declared_lineages(served: set[str], catalog: Catalog) -> dict[str, dict[str, Any]]:
    """Every declared lineage, served by this bundle or not (and what to do about it): the
    service answers a declared lineage's routes 503 with the reason until it is served, and
    any other name 404."""
    out: dict[str, dict[str, Any]] = {}
    for spec in catalog.lineages:
        status: dict[str, Any] = {"registered_model": spec.registered_model}
        status["served"] = spec.name in served
        if not status["served"]:
            status["reason"] = (
                f"{spec.registered_model} has no '{PRODUCTION_ALIAS}' version yet: materialize "
                f"{spec.name}_lineage_job, then `ml-assets promote {spec.registered_model} "
                "<version> --reason ...` (the next serving bundle serves it)"
            )
        out[spec.name] = status
    return out


@asset(
    group_name=GROUP,
    code_version=CODE_VERSION,
    # Each declared lineage's ONNX export is added by build_defs (ml_assets/definitions.py).
    deps=["embedding_model_onnx", "search_quality_report"],
)
def serving_bundle(
    context: AssetExecutionContext,
    store: ArtifactStore,
    mlflow: MlflowResource,
    bento: BentoResource,
    postgres: PostgresResource,
    catalog: ResourceParam[Catalog],
) -> Output[ArtifactRef]:
    """A Bento of the `production` models, each gated on the platform's records, by sha256."""
    records = DagsterRecords.of(context)
    with timed() as t, tempfile.TemporaryDirectory(prefix="ml-bundle-") as tmp:
        stage = Path(tmp)
        client = mlflow.client
        context.log.info("fetching the production versions from MLflow; gating their bytes")
        roles = served_roles(client, context.log, catalog)
        gated = gate_production(client, records, stage, roles, catalog)
        rejected = [d for _, _, _, d in gated if not d.approved]
        if rejected:
            raise refuse(context, postgres.dsn, rejected)
        entries = [model_entry(role, mv, files, d, stage, catalog) for role, mv, files, d in gated]
        embedder_sha = next(e for e in entries if e.role == EMBEDDER).files["model.onnx"]
        search = search_evidence(records, embedder_sha)
        content = store.content()
        entries = attach_cards(entries, records, content, client, postgres.dsn, stage, search)
        if not search["enabled"]:
            context.log.warning(f"search will not be served: {search['reason']}")
        manifest = bundle_manifest(entries, search)
        manifest["lineages"] = declared_lineages({e.role for e in entries}, catalog)
        manifest_bytes = canonical_json(manifest)
        bundle_sha = sha256_bytes(manifest_bytes)
        spec = {
            "bundle": manifest,
            "bundle_sha256": bundle_sha,
            "staging": str(stage),
            "models": [{"entry": e.to_json(), "dir": str(stage / e.role)} for e in entries],
        }
        context.log.info(
            "building the Bento for "
            + ", ".join(e.label for e in entries)
            + f" into {bento.home} (bentoml build, offline)"
        )
        built = bento.build(spec, stage / "spec.json")
        show_cards(context, client, entries)
        ref = store.content().put(
            "serving_bundle",
            manifest_bytes,
            ".json",
            code_version=CODE_VERSION,
            extra={"bento_tag": built["tag"], "bento_path": built["path"]},
        )
    rows = [
        {
            "role": e.role,
            "model": e.label,
            "bento model": e.bento_tag,
            **{f"sha256 {k}": v[:16] for k, v in e.files.items() if k == "model.onnx"},
        }
        for e in entries
    ] + [
        {
            "role": name,
            "model": status["registered_model"],
            "bento model": "not served: " + status["reason"],
            "sha256 model.onnx": "",
        }
        for name, status in manifest["lineages"].items()
        if not status["served"]
    ]
    verdicts = [
        {
            "model": e.label,
            "asset": v.asset,
            "check": v.check,
            "data version": str(v.data_version)[:16],
            "verdict": "passed" if v.passed else "FAILED",
            "run": v.run_id,
            "evaluation": v.evaluation_id,
        }
        for e in entries
        for v in (e.gate.verdicts if e.gate is not None else ())
    ]
    chain = [
        {
            "model": e.label,
            "asset": link.get("asset", ""),
            "sha256": str(link.get("sha256", ""))[:16],
            "code_version": link.get("code_version", link.get("note", "")),
        }
        for e in entries
        for link in e.provenance
    ]
    return hashed_output(
        ref,
        wall_time_s=t["seconds"],
        metadata={
            "verdict": MetadataValue.text(
                f"{len(entries)} models passed the gate and are bundled: "
                + ", ".join(e.label for e in entries)
                + ("" if search["enabled"] else "; search is not served")
            ),
            "bento_tag": MetadataValue.text(built["tag"]),
            "bento_path": MetadataValue.path(built["path"]),
            "bento_size_mb": MetadataValue.float(round(built["size_bytes"] / 1e6, 2)),
            "dockerfile": MetadataValue.path(built["dockerfile"] or "not generated"),
            "reused_existing_bento": MetadataValue.bool(built["reused"]),
            "models": MetadataValue.md(md_table(rows)),
            "gate_verdicts": MetadataValue.md(md_table(verdicts)),
            "search": MetadataValue.json(search),
            "provenance": MetadataValue.md(md_table(chain)),
        },
    )


def show_cards(context: AssetExecutionContext, client: Any, entries: list[Any]) -> None:
    """Each card as its MLflow version's description and on its model asset's page."""
    for entry in entries:
        markdown = publish(client, entry)
        if markdown is None:
            continue
        context.log_event(
            AssetObservation(
                # The embedder's model asset is its export; a lineage's is `<lineage>/model`.
                asset_key=AssetKey(
                    [EMBEDDER_ASSET] if entry.role == EMBEDDER else [entry.role, "model"]
                ),
                metadata={
                    "model_card": MetadataValue.md(markdown),
                    "registered_model": MetadataValue.text(entry.label),
                    "card_sha256": MetadataValue.text(entry.info["card_sha256"]),
                },
            )
        )


def smoke(url: str, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Call every model endpoint once; each row: endpoint, ok, ms, detail."""
    rows: list[dict[str, Any]] = []
    want = {r: f"{m['registered_model']}@{m['version']}" for r, m in manifest["models"].items()}
    entries = entries_of(manifest)
    scorer = score_role(entries)
    lineages = served_lineages(entries)
    with httpx.Client(base_url=url, timeout=30.0) as client:

        def call(name: str, method: str, path: str, check: Any, **kw: Any) -> None:
            start = time.perf_counter()
            try:
                resp = client.request(method, path, **kw)
                ok, detail = check(resp)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            rows.append(
                {
                    "endpoint": name,
                    "ok": ok,
                    "ms": round((time.perf_counter() - start) * 1000, 2),
                    "detail": detail,
                }
            )

        def score_ok(r: httpx.Response) -> tuple[bool, str]:
            body = r.json()
            good = r.status_code == 200 and body["model_version"] == want[scorer]
            return good, f"{r.status_code} p={body.get('probability')} {body.get('model_version')}"

        def embed_ok(r: httpx.Response) -> tuple[bool, str]:
            body = r.json()
            good = (
                r.status_code == 200
                and body["model_version"] == want[EMBEDDER]
                and len(body["vectors"]) == 2
            )
            return good, f"{r.status_code} dim={body.get('dim')} {body.get('model_version')}"

        def models_ok(r: httpx.Response) -> tuple[bool, str]:
            served = r.json()["models"]
            got = {k: f"{v['registered_model']}@{v['version']}" for k, v in served.items()}
            return r.status_code == 200 and got == want, f"serves {got}"

        def predict_ok(role: str) -> Any:
            def ok(r: httpx.Response) -> tuple[bool, str]:
                body = r.json()
                good = r.status_code == 200 and body["model_version"] == want[role]
                return good, f"{r.status_code} {body.get('prediction')} {body.get('model_version')}"

            return ok

        def waiting_ok(r: httpx.Response) -> tuple[bool, str]:
            good = r.status_code == 503 and r.headers.get("retry-after") is not None
            return good, f"{r.status_code} {r.json().get('error', '')[:200]}"

        call("/readyz", "GET", "/readyz", lambda r: (r.status_code == 200, str(r.status_code)))
        row = lineages[scorer].example_row()
        call("/v1/score", "POST", "/v1/score", score_ok, json={"transaction": row})
        for role, spec in sorted(lineages.items()):
            path = f"/v1/models/{spec.name}/predict"
            call(path, "POST", path, predict_ok(role), json={"features": spec.example_row()})
        for name, status in sorted(manifest.get("lineages", {}).items()):
            if not status["served"]:  # declared since: "not yet served", a 503 that says why
                path = f"/v1/models/{name}/predict"
                call(f"{path} (not yet served)", "POST", path, waiting_ok, json={"features": {}})
        call(
            "/embed",
            "POST",
            "/embed",
            embed_ok,
            json={"texts": ["Henry Hub balance-of-month gas", "EUA Dec futures"]},
        )
        call("/models", "GET", "/models", models_ok)
    return rows


@asset_check(
    asset=serving_bundle,
    blocking=True,
    name="smoke",
    description="Serve the Bento with `bentoml serve` on loopback and call every model endpoint.",
)
def serving_bundle_smoke(
    context: AssetCheckExecutionContext, serving_bundle: ArtifactRef, bento: BentoResource
) -> AssetCheckResult:
    manifest = json.loads(serving_bundle.read_verified())
    tag = serving_bundle.extra["bento_tag"]
    with tempfile.TemporaryDirectory(prefix="ml-smoke-") as tmp:
        server = start_server(
            tag,
            bentoml_home=bento.home,
            workers=1,
            env={"ML_SERVING_RELEASE_FILE": str(Path(tmp) / "release.json")},
            log_path=Path(tmp) / "serve.log",
        )
        with server:
            try:
                ready_s = server.wait_ready(timeout_s=120)
            except (RuntimeError, TimeoutError) as exc:
                return AssetCheckResult(
                    passed=False,
                    severity=AssetCheckSeverity.ERROR,
                    description=f"the Bento did not become ready: {exc}"[:2000],
                )
            rows = smoke(server.url, manifest)
    passed = all(r["ok"] for r in rows)
    context.log.info(f"smoke of {tag}: " + ("passed" if passed else "FAILED"))
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=f"{tag}: ready in {ready_s:.1f} s; "
        + ("every endpoint answered" if passed else "an endpoint failed"),
        metadata={
            "bento_tag": MetadataValue.text(tag),
            "ready_s": MetadataValue.float(round(ready_s, 2)),
            "results": MetadataValue.md(md_table(rows)),
        },
    )


serving_job = define_asset_job(
    "serving_job",
    selection=AssetSelection.assets("serving_bundle", "serving_deployment"),
    description="Bundle the production models into a Bento, smoke-test it over HTTP, and switch "
    "the running endpoint (if ML_SERVING_URL is set) to it.",
)


def build_defs(catalog: Catalog) -> Definitions:
    """The serving assets, the bundle downstream of every declared lineage's ONNX export (the
    edges the UI's graph shows; the gate, not the edge, decides what is served)."""
    return Definitions(
        assets=[after_lineages(serving_bundle, "onnx", catalog), serving_deployment],
        asset_checks=[serving_bundle_smoke],
        jobs=[serving_job],
    )
