"""`score_routes:` of a ModelLineage's YAML: also serve the model at POST /v1/score(/batch),
with the decision it answers (its field's name, the threshold, the variable overriding it)."""

from __future__ import annotations

from typing import Annotated, Any

import dagster as dg
from pydantic import model_validator

from ml_assets.platform.score_route import ScoreRoute


def _about(text: str) -> dg.Resolver:
    return dg.Resolver.default(description=text)


class ScoreRoutes(dg.Model, dg.Resolvable):
    """/v1/score's decision: `<decision_field>` is true when the probability reaches the
    threshold. The response is {probability, <decision_field>, threshold, model_version}."""

    decision_field: Annotated[
        str,
        _about(
            "The response's boolean field (a Python identifier, not probability, threshold "
            "or model_version), e.g. will_default."
        ),
    ]
    threshold: Annotated[
        float, _about("The probability from which the decision is true, within [0, 1].")
    ]
    threshold_env: Annotated[
        str | None,
        _about(
            "An upper-case environment variable that, set and non-empty where the service "
            "runs, overrides the threshold; omitted: nothing overrides it."
        ),
    ] = None

    @model_validator(mode="before")
    @classmethod
    def _not_a_flag(cls, data: Any) -> Any:
        if data is True:
            ScoreRoute.from_json(data)  # refused, with what to write instead
        if data is False:
            raise ValueError("score_routes: omit it for a lineage without /v1/score")
        return data

    @model_validator(mode="after")
    def _servable(self) -> ScoreRoutes:
        self.spec()  # the same rules the bundle and the service apply
        return self

    def spec(self) -> ScoreRoute:
        return ScoreRoute(self.decision_field, self.threshold, self.threshold_env)
