"""The drift statistics (ml_assets/monitoring/drift.py) on the fraud lineage's own generator and
schema: an undrifted day passes, an amount shifted by 3 sigma fails naming that feature, an
unseen category is counted, a thin day is "not enough traffic" and a sensitive one is skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from ml_assets.components.model_lineage.component import Feature
from ml_assets.lineages.fraud.generator import generate_transactions
from ml_assets.monitoring.drift import NOT_ENOUGH_TRAFFIC, UNSEEN, drift_report, psi
from ml_assets.platform.lineage_spec import MonitoringSpec

DEFS = Path(__file__).resolve().parents[1] / "ml_assets" / "lineages" / "fraud" / "defs.yaml"
ATTRS = yaml.safe_load(DEFS.read_text())["attributes"]
FEATURES = tuple(Feature(**f).spec() for f in ATTRS["features"])
LIMITS = MonitoringSpec(**ATTRS["monitoring"])
NAMES = [f.name for f in FEATURES]


@pytest.fixture(scope="module")
def training():
    return generate_transactions(20_000, seed=7)


@pytest.fixture(scope="module")
def day():
    return generate_transactions(2_000, seed=8)


def _outputs(frame) -> np.ndarray:
    return np.clip(frame["amount"].to_numpy() / 5_000, 0, 1)  # any output distribution will do


def test_an_undrifted_day_passes(training, day):
    report = drift_report(FEATURES, training, day[NAMES], _outputs(day), LIMITS, _outputs(training))
    assert report["status"] in ("ok", "warn") and report["failed"] == [], report["failed"]
    assert report["features"]["amount"]["psi"] < LIMITS.psi_warn
    assert report["predictions"]["psi"] < LIMITS.psi_warn
    assert report["thresholds"] == {"psi_warn": 0.1, "psi_fail": 0.25, "min_rows": 200}


def test_amount_shifted_by_three_sigma_fails_naming_that_feature(training, day):
    drifted = day[NAMES].copy()
    drifted["amount"] = drifted["amount"] + 3 * training["amount"].std()
    report = drift_report(FEATURES, training, drifted, _outputs(drifted), LIMITS)
    assert report["status"] == "fail" and report["failed"] == ["amount"]
    amount = report["features"]["amount"]
    assert amount["psi"] > LIMITS.psi_fail and amount["level"] == "fail"
    assert amount["ks_statistic"] > 0.5 and amount["ks_pvalue"] < 1e-6
    assert amount["live_mean"] > amount["training_mean"]


def test_unseen_categories_are_their_own_bin(training, day):
    live = day[NAMES].copy()
    live.loc[live.index[:400], "merchant_category"] = "crypto_exchange"  # 20% never trained on
    report = drift_report(FEATURES, training, live, _outputs(live), LIMITS)
    merchant = report["features"]["merchant_category"]
    assert merchant["unseen_share"] == pytest.approx(0.2)
    assert merchant["shares"][UNSEEN]["training"] == 0.0
    assert "merchant_category" in report["failed"] + report["warned"]


def test_a_thin_day_is_not_enough_traffic_and_sensitive_features_are_not_compared(training, day):
    thin = day[NAMES].head(LIMITS.min_rows - 1)
    report = drift_report(FEATURES, training, thin, _outputs(thin), LIMITS)
    assert report["status"] == NOT_ENOUGH_TRAFFIC and report["features"] == {}
    full = drift_report(FEATURES, training, day[NAMES], _outputs(day), LIMITS)
    assert full["features"]["distance_from_home_km"]["level"] == "not compared"


def test_psi_is_zero_for_equal_histograms_and_grows_with_the_shift():
    base = np.array([10.0, 20.0, 30.0, 40.0])
    assert psi(base, base * 3) == pytest.approx(0.0)
    assert 0 < psi(base, base[::-1] + 1) < psi(base, np.array([97.0, 1.0, 1.0, 1.0]))
