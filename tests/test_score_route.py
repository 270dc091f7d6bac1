"""/v1/score's decision as a lineage declares it (`score_routes:` in its YAML): typed, checked
when the YAML loads, carried by the spec the bundle holds, and turned into the response model
and threshold the service answers with. The fraud lineage keeps the response clients know."""

from __future__ import annotations

import pytest
import yaml
from dagster.components.resolved.errors import ResolutionException
from pydantic import ValidationError

from ml_assets.components import ModelLineage
from ml_assets.platform.lineage_spec import LineageSpec
from ml_assets.platform.score_route import ScoreRoute, ScoreRouteError
from serving.schemas import score_models
from tests.conftest import REPO

FRAUD_YAML = REPO / "ml_assets" / "lineages" / "fraud" / "defs.yaml"
FRAUD_ROUTE = ScoreRoute("is_fraud", 0.5, "ML_FRAUD_THRESHOLD")


def _fraud(**change: object) -> dict:
    return {**yaml.safe_load(FRAUD_YAML.read_text())["attributes"], **change}


def _resolve(attributes: dict) -> ModelLineage:
    return ModelLineage.resolve_from_yaml(yaml.safe_dump(attributes))


def test_the_fraud_lineage_declares_the_response_its_clients_know():
    spec = _resolve(_fraud()).spec()
    assert spec.score_routes == FRAUD_ROUTE
    result, batch = score_models(spec.score_routes)
    assert list(result.model_fields) == ["probability", "is_fraud", "threshold", "model_version"]
    assert result.model_json_schema()["properties"]["is_fraud"]["type"] == "boolean"
    assert list(batch.model_fields) == ["results", "model_version", "count"]
    row = result(probability=0.7, is_fraud=True, threshold=0.5, model_version="fraud-detector@3")
    assert row.model_dump_json() == (
        '{"probability":0.7,"is_fraud":true,"threshold":0.5,"model_version":"fraud-detector@3"}'
    )


def test_another_lineage_names_its_own_decision():
    route = ScoreRoute("will_default", 0.3)
    result, _ = score_models(route)
    assert list(result.model_fields) == [
        "probability",
        "will_default",
        "threshold",
        "model_version",
    ]
    assert "is_fraud" not in result.model_json_schema()["properties"]
    assert route.threshold_from({"ML_FRAUD_THRESHOLD": "0.9"}) == 0.3  # declares no variable


@pytest.mark.parametrize(
    ("route", "match"),
    [
        # The YAML schema wants a mapping (a flag would not say what /v1/score decides).
        (True, "(?s)score_routes.*should be an object"),
        (False, "(?s)score_routes.*should be an object"),
        ({"decision_field": "is_fraud"}, "threshold"),
        ({"threshold": 0.5}, "decision_field"),
        ({"decision_field": "is_fraud", "threshold": 0.5, "cutoff": 0.2}, "cutoff"),
        ({"decision_field": "is_fraud", "threshold": 1.5}, r"within \[0, 1\]"),
        ({"decision_field": "is_fraud", "threshold": -0.1}, r"within \[0, 1\]"),
        ({"decision_field": "is-fraud", "threshold": 0.5}, "identifier"),
        ({"decision_field": "class", "threshold": 0.5}, "identifier"),
        ({"decision_field": "probability", "threshold": 0.5}, "clashes"),
        ({"decision_field": "x", "threshold": 0.5, "threshold_env": "ml_x"}, "upper-case"),
        ({"decision_field": "x", "threshold": 0.5, "threshold_env": "1X"}, "upper-case"),
    ],
)
def test_a_route_that_says_nothing_servable_is_refused_when_the_yaml_loads(route, match):
    with pytest.raises((ValidationError, ResolutionException), match=match):
        _resolve(_fraud(score_routes=route))


@pytest.mark.parametrize(("flag", "match"), [(True, "no longer says"), (False, "omit it")])
def test_a_flag_built_in_python_is_refused_with_what_to_write(flag, match):
    declared = _resolve(_fraud()).model_dump()
    with pytest.raises(ValidationError, match=match):
        ModelLineage(**{**declared, "score_routes": flag})


def test_a_regression_lineage_cannot_declare_a_decision():
    attributes = _fraud(
        task="regression",
        metrics={"primary": "rmse"},
        dataset={**_fraud()["dataset"], "label_rate": None},
    )
    with pytest.raises(ValidationError, match="score_routes is for classification"):
        _resolve(attributes)
    assert _resolve({**attributes, "score_routes": None}).spec().score_routes is None


def test_the_spec_carries_the_route_and_refuses_one_from_before_it_declared_its_decision():
    spec = _resolve(_fraud()).spec()
    stored = spec.to_dict()
    assert stored["score_routes"] == {
        "decision_field": "is_fraud",
        "threshold": 0.5,
        "threshold_env": "ML_FRAUD_THRESHOLD",
    }
    assert LineageSpec.from_dict(stored) == spec
    # A bundle built before: `true` said nothing of the field or variable; rebuild it.
    with pytest.raises(ScoreRouteError, match="rebuild the bundle"):
        LineageSpec.from_dict({**stored, "score_routes": True})
    with pytest.raises(ScoreRouteError, match="unknown keys"):
        LineageSpec.from_dict({**stored, "score_routes": {**stored["score_routes"], "x": 1}})
    plain = LineageSpec.from_dict({**stored, "score_routes": None})
    assert plain.score_routes is None and plain.to_dict()["score_routes"] is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, 0.5),
        ({"ML_FRAUD_THRESHOLD": ""}, 0.5),  # empty: the declared threshold (compose, k8s)
        ({"ML_FRAUD_THRESHOLD": "0.8"}, 0.8),
        ({"ML_FRAUD_THRESHOLD": "1"}, 1.0),
        ({"OTHER": "0.1"}, 0.5),
    ],
)
def test_the_declared_variable_overrides_the_threshold(environ, expected):
    assert FRAUD_ROUTE.threshold_from(environ) == expected


@pytest.mark.parametrize("value", ["high", "1.5", "-0.2", "nan"])
def test_an_override_that_is_not_a_probability_is_refused(value):
    with pytest.raises(ScoreRouteError, match="ML_FRAUD_THRESHOLD"):
        FRAUD_ROUTE.threshold_from({"ML_FRAUD_THRESHOLD": value})
