"""The Dagster UI of a materialized lineage, in a real browser (Playwright driving the system
Chromium, Debian's `chromium`; scripts/test.sh installs it): the export validation report's
page shows its headline metric above the first sha256, and a plot without a click."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, materialize

from ml_assets.resources.defaults import local_resources
from tests.conftest import TEST_ROWS
from tests.helpers import FRAUD_ASSETS, REPORT, dagster_webserver, run_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def launch(playwright: Any) -> Any:
    """The system Chromium, headless, as a container runs it."""
    assert Path(CHROMIUM).exists(), "install Debian's chromium (scripts/test.sh does)"
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    )


@pytest.fixture(scope="module")
def materialized(tmp_path_factory, mlflow_resource, vector_dsn: str):
    """The fraud lineage materialized once into an instance of this module's own."""
    base = tmp_path_factory.mktemp("asset_page")
    (base / "dagster").mkdir()
    instance = DagsterInstance.local_temp(tempdir=str(base / "dagster"))
    resources = local_resources(base / "artifacts", mlflow_resource, vector_dsn)
    result = materialize(
        FRAUD_ASSETS, resources=resources, instance=instance, run_config=run_config(TEST_ROWS)
    )
    assert result.success
    yield instance
    instance.dispose()


@pytest.fixture(scope="module")
def ui(materialized, tmp_path_factory):
    """dagster-webserver on that instance and the code location."""
    log = tmp_path_factory.mktemp("ui") / "webserver.log"
    with dagster_webserver(materialized.root_directory, log) as url:
        yield url


def test_the_report_page_shows_its_headline_above_the_hashes_and_a_plot_without_a_click(
    ui, tmp_path
):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.goto(f"{ui}/assets/{REPORT}", wait_until="domcontentloaded")
            headline = page.get_by_text("headline", exact=True).first
            headline.wait_for(state="visible", timeout=90_000)
            try:  # the UI's first-visit newsletter box covers the page until skipped
                page.get_by_role("button", name="Skip").click(timeout=10_000)
            except PlaywrightTimeout:
                pass
            page.screenshot(path=str(tmp_path / "report_page.png"))
            hashes = page.get_by_text("sha256", exact=True)
            hashes.first.wait_for(state="visible", timeout=30_000)
            first_hash = min(
                box["y"]
                for i in range(hashes.count())
                if (box := hashes.nth(i).bounding_box()) is not None
            )
            assert headline.bounding_box()["y"] < first_hash
            verdict = page.get_by_text("PASSED: 3/3 blocking checks", exact=False).first
            assert verdict.is_visible() and verdict.bounding_box()["y"] < first_hash
            plots = page.locator("img[src^='data:image/svg+xml'], canvas")
            plots.first.wait_for(state="visible", timeout=30_000)
            drawn = plots.first.evaluate(
                "e => e.tagName === 'CANVAS' ? e.width > 0 : e.complete && e.naturalWidth > 0"
            )
            assert drawn, "the plot is on the page but did not render"
        finally:
            browser.close()
