"""The nightly validation: every production model re-validated on its own lineage's records
(ml_assets/nightly/lineage.py), judged against what validated it and the last night."""

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetSelection,
    Config,
    MetadataValue,
    Output,
    ResourceParam,
    define_asset_job,
)
from pydantic import Field

from ml_assets.nightly import records as nightly
from ml_assets.nightly.common import (
    VALIDATION,
    find_bundle,
    nightly_asset,
    nightly_dir,
    no_regression_result,
    not_yet_served,
    recorded_night,
)
from ml_assets.nightly.lineage import subject, tabular_part
from ml_assets.nightly.search import search_part
from ml_assets.platform.artifacts import ArtifactRef, atomic_write
from ml_assets.platform.catalog import Catalog
from ml_assets.platform.dagster_records import DagsterRecords
from ml_assets.platform.daily import alert
from ml_assets.platform.hashing import canonical_json
from ml_assets.platform.inline_plots import inline_plot, inline_verdicts
from ml_assets.platform.plots import md_image
from ml_assets.platform.provenance import hashed_output, md_table, timed
from ml_assets.platform.serving_bundle import EMBEDDER
from ml_assets.platform.serving_gate import gate_production, served_roles
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.postgres import PostgresResource
from ml_assets.resources.storage import ArtifactStore

VALIDATION_CODE_VERSION = "nightly_validation@2"


class NightlyValidationConfig(Config):
    latency_rows: int = Field(default=200, description="Test rows timed one at a time.")
    warmup_rows: int = 20


def _bundled(part: dict[str, Any], role: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """What the newest bundle pins for this role, and whether it is what was validated."""
    entry = manifest.get("models", {}).get(role)
    if entry is None:
        return {"pins": None}
    pins = f"{entry['registered_model']}@{entry['version']}"
    out: dict[str, Any] = {"pins": pins}
    used = part["lineage"]
    onnx = used.get("embedder_sha256" if role == EMBEDDER else "onnx_sha256")
    if pins == part["version"] and onnx:
        out["onnx_matches"] = entry["files"].get("model.onnx") == onnx
    if pins == part["version"] and "report_sha256" in used and role != EMBEDDER:
        out["report_matches"] = (
            entry["info"].get("export_validation_report_sha256") == used["report_sha256"]
        )
    return out


def _bundle_regressions(record: dict[str, Any]) -> list[str]:
    found: list[str] = []
    if record["bundle"] is None:
        return found
    sha = record["bundle"]["sha256"][:12]
    for part in [*record["models"].values(), record["search"]]:
        b = part.get("bundle", {})
        for key, what in (("onnx_matches", "ONNX"), ("report_matches", "validation report")):
            if b.get(key) is False:
                found.append(
                    f"{part['version']}: bundle {sha} pins another {what} than the version's "
                    "own lineage records"
                )
    return found


def lineage_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The records a night used, one row each: what a person reads to see why it passed."""
    rows = []
    for name, part in [*sorted(record["models"].items()), ("search", record["search"])]:
        used = part.get("lineage", {})
        shown = ("_sha256", "_run_id", "_from")
        items = [(k, v) for k, v in sorted(used.items()) if k.endswith(shown)]
        items += [(f"index {k}", v) for k, v in sorted(used.get("index", {}).items())]
        items += [(f"threshold {k}", v) for k, v in sorted(part.get("thresholds", {}).items())]
        items.append(
            ("status", part["status"] + (f": {part['reason']}" if "reason" in part else ""))
        )
        rows += [
            {"lineage": name, "version": part["version"], "record": k, "value": v} for k, v in items
        ]
    return rows


@nightly_asset(
    VALIDATION,
    VALIDATION_CODE_VERSION,
    # Each declared lineage's report is added by ops.build_defs (ml_assets/definitions.py).
    deps=["search_quality_report"],
    check="Each production model within its own validation's thresholds, not worse than its "
    "validated report or the last night beyond the declared tolerance.",
)
def nightly_validation(
    context: AssetExecutionContext,
    config: NightlyValidationConfig,
    store: ArtifactStore,
    mlflow: MlflowResource,
    postgres: PostgresResource,
    catalog: ResourceParam[Catalog],
) -> Iterator[Output[ArtifactRef] | AssetCheckResult]:
    """Expectations, export parity and search quality re-run on each production version's
    own lineage records, judged against its validated report and the last night."""
    key, out_dir = context.partition_key, nightly_dir(store, VALIDATION)
    records = DagsterRecords.of(context)
    with timed() as t, recorded_night(context, store), tempfile.TemporaryDirectory() as tmp:
        client = mlflow.client
        bundle = find_bundle(records, store)
        manifest = {} if bundle is None else bundle.manifest
        roles = served_roles(client, context.log, catalog)
        # Declared lineages the bundle does not serve: "not yet served", never a failure (one
        # with a production version is still re-validated, its bundle pin recorded as none).
        waiting = not_yet_served(manifest, catalog) if bundle is not None else {}
        for name, reason in waiting.items():
            context.log.info(f"{name}: not yet served ({reason})")
        context.log.info("gating the production versions on the platform's records")
        gated = gate_production(client, records, Path(tmp), roles, catalog)
        models = {}
        for role, mv, files, decision in gated:
            if role == EMBEDDER:
                continue
            context.log.info(f"re-validating {mv.name}@{mv.version} on its own lineage")
            models[role] = tabular_part(
                subject(catalog, role, mv.name),
                mv,
                files,
                decision,
                store,
                config.latency_rows,
                config.warmup_rows,
            )
        _, mv, files, decision = next(g for g in gated if g[0] == EMBEDDER)
        context.log.info("re-running the labelled search queries against the live index")
        search = search_part(mv, files, decision, records, store, postgres, manifest.get("search"))
        for role, part in [*models.items(), (EMBEDDER, search)]:
            part["bundle"] = _bundled(part, role, manifest)
        record = {
            "schema": nightly.VALIDATION_SCHEMA,
            "partition": key,
            "status": nightly.COMPLETED,
            "bundle": None
            if bundle is None
            else {"sha256": bundle.sha256, "bento_tag": bundle.bento_tag},
            "models": models,
            "not_yet_served": waiting,
            "search": search,
        }
        earlier = nightly.read_records(out_dir, before=key)
        regressions = nightly.validation_regressions(record, earlier)
        regressions += _bundle_regressions(record)
        record["regressions"] = regressions
        atomic_write(out_dir / f"{key}.json", canonical_json(record))
        ref = store.content().put(
            VALIDATION, canonical_json(record), ".json", code_version=VALIDATION_CODE_VERSION
        )
    if regressions:
        alert(context, "ml.nightly.regression", regressions, record=str(out_dir / f"{key}.json"))
    yield hashed_output(
        ref, wall_time_s=t["seconds"], metadata=_metadata(record, [*earlier, record])
    )
    yield no_regression_result(regressions, "every check within its threshold")


def _get(night: dict[str, Any], *path: str) -> Any:
    value: Any = night
    for p in path:
        if not isinstance(value, dict) or p not in value:
            return "-"
        value = value[p]
    return value


def _trend_plots(nights: list[dict[str, Any]], series: dict[str, str]) -> dict[str, Any]:
    """One inline chart per metric, each on its own axis (an AUC and an MAE share none)."""
    out: dict[str, Any] = {}
    for name, path in series.items():
        points = [
            (i, v)
            for i, n in enumerate(nights)
            if isinstance(v := _get(n, *path.split(".")), int | float)
        ]
        if len(points) < 2:
            continue
        xs, ys = zip(*points, strict=True)
        key = "".join(c if c.isalnum() else "_" for c in name.lower()) + "_plot"
        out[key] = MetadataValue.md(inline_plot(name, {name: (xs, ys)}, "night", name))
    return out


def _part_passed(night: dict[str, Any], part: dict[str, Any] | None) -> bool | None:
    """One lineage's (or search's) verdict on one night: no regression names its version."""
    if part is None or night["status"] != nightly.COMPLETED:
        return None
    labels = (part["version"], f"search ({part['version']})")
    return not any(
        r.startswith(f"{label} ") or r.startswith(f"{label}:")
        for r in night.get("regressions", [])
        for label in labels
    )


def verdict_rows(nights: list[dict[str, Any]]) -> dict[str, list[bool | None]]:
    """The nights table as verdicts: `no_regression` per night (a night that failed to run
    counts as failed), and each served lineage's and search's share of it (None: not
    validated that night)."""
    roles = sorted({role for n in nights for role in n.get("models", {})})
    rows: dict[str, list[bool | None]] = {
        "night": [n["status"] == nightly.COMPLETED and not n.get("regressions") for n in nights]
    }
    for role in roles:
        rows[role] = [_part_passed(n, n.get("models", {}).get(role)) for n in nights]
    rows["search"] = [_part_passed(n, n.get("search")) for n in nights]
    return rows


def _metadata(record: dict[str, Any], nights: list[dict[str, Any]]) -> dict[str, Any]:
    series = {
        "search hybrid nDCG@10": "search.tonight.eval_ndcg_at_10.hybrid",
        "search vector nDCG@10": "search.tonight.eval_ndcg_at_10.vector",
    }
    # Each served lineage's primary metric (ONNX) and its largest native-vs-ONNX difference.
    metrics = {
        role: part["primary_metric"]
        for role, part in sorted(record["models"].items())
        if "primary_metric" in part
    }
    for role, metric in metrics.items():
        series[f"{role} ONNX {metric}"] = f"models.{role}.tonight.onnx.{metric}"
    chart = nightly.trend_png(nights, series, "Nightly validation")
    table = [
        {
            "night": n["partition"],
            "status": n["status"],
            **{
                column: value
                for role, metric in metrics.items()
                for column, value in (
                    (f"{role} {metric}", _get(n, "models", role, "tonight", "onnx", metric)),
                    (f"{role} max |Δ|", _get(n, "models", role, "tonight", "max_abs_diff")),
                )
            },
            "hybrid nDCG@10": _get(n, "search", "tonight", "eval_ndcg_at_10", "hybrid"),
            "regressions / reason": len(n["regressions"]) if "regressions" in n else n["reason"],
        }
        for n in nights[-14:]
    ]
    regressions = record.get("regressions", [])
    md: dict[str, Any] = {
        "verdict": MetadataValue.text(
            f"{record['partition']}: "
            + (
                f"{len(regressions)} regression(s): " + "; ".join(regressions)
                if regressions
                else "every served model and search within its thresholds"
            )[:500]
        ),
        "headline": MetadataValue.md(md_table(table[-1:])),
        "nights_plot": MetadataValue.md(
            inline_verdicts(
                "no_regression per night",
                verdict_rows(nights[-14:]),
                nights[-14:][0]["partition"],
                record["partition"],
            )
        ),
        **_trend_plots(nights[-14:], series),
        "trend": MetadataValue.md(md_image(chart, "nightly validation trend")),
        "nights": MetadataValue.md(md_table(table)),
        "lineage_records": MetadataValue.md(md_table(lineage_rows(record))),
        "versions": MetadataValue.json(
            {r: p["version"] for r, p in record["models"].items()}
            | {"search": record["search"]["version"]}
        ),
        "not_yet_served": MetadataValue.json(record.get("not_yet_served", {})),
    }
    for role, part in record["models"].items():
        if part["status"] == nightly.COMPLETED:
            metric = part["primary_metric"]
            md[f"{role}_onnx_{metric}"] = MetadataValue.float(part["tonight"]["onnx"][metric])
            md[f"{role}_max_abs_diff"] = MetadataValue.float(part["tonight"]["max_abs_diff"])
            md[f"{role}_expectations_passed"] = MetadataValue.bool(part["expectations"]["passed"])
    if record["search"]["status"] == nightly.COMPLETED:
        md["hybrid_ndcg_at_10"] = MetadataValue.float(
            record["search"]["tonight"]["eval_ndcg_at_10"]["hybrid"]
        )
    else:
        md["search_failed"] = MetadataValue.text(record["search"]["reason"])
    return md


nightly_validation_job = define_asset_job(
    "nightly_validation_job",
    selection=AssetSelection.assets(nightly_validation),
    description="Re-validate every production model on its own lineage's records.",
)
