"""The decision a lineage's `score_routes` declares: POST /v1/score(/batch) answers a row's
class-1 probability and, under a field the lineage names, whether it reaches the threshold.

The lineage's YAML declares it (ml_assets/components/model_lineage/score_routes.py), the spec
carries it into the registry and the bundle, and the service builds /v1/score's response model
and threshold from it, so no platform module names a domain. Stdlib only: the serving image
reads it.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The other fields of /v1/score's response: a decision field cannot take their names.
RESPONSE_FIELDS = ("probability", "threshold", "model_version")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_KEYS = ("decision_field", "threshold", "threshold_env")


class ScoreRouteError(ValueError):
    """A score route that says nothing servable (its message says what to write instead)."""


def _threshold(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ScoreRouteError(f"{where} must be a number within [0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ScoreRoute:
    """/v1/score's decision: `decision_field` is true when the probability is at least
    `threshold`; the environment variable `threshold_env`, when set and non-empty where the
    service runs, overrides the threshold (None: nothing overrides it)."""

    decision_field: str
    threshold: float
    threshold_env: str | None = None

    def __post_init__(self) -> None:
        name = self.decision_field
        if not isinstance(name, str) or not _IDENTIFIER.match(name) or keyword.iskeyword(name):
            raise ScoreRouteError(
                f"score_routes.decision_field {name!r}: use a Python identifier (letters, "
                "digits and underscores, not starting with a digit)"
            )
        if name in RESPONSE_FIELDS:
            raise ScoreRouteError(
                f"score_routes.decision_field {name!r} clashes with /v1/score's own field; "
                f"the response already has {', '.join(RESPONSE_FIELDS)}"
            )
        object.__setattr__(self, "threshold", _threshold(self.threshold, "score_routes.threshold"))
        env = self.threshold_env
        if env is not None and (not isinstance(env, str) or not _ENV_NAME.match(env)):
            raise ScoreRouteError(
                f"score_routes.threshold_env {env!r}: an upper-case environment variable name "
                "(A-Z, 0-9 and _, starting with a letter)"
            )

    def threshold_from(self, environ: Mapping[str, str]) -> float:
        """The threshold served: `threshold_env`'s value when set and non-empty, else the
        declared one; a value outside [0, 1] or not a number is refused."""
        raw = environ.get(self.threshold_env) if self.threshold_env else None
        if not raw:
            return self.threshold
        try:
            value = float(raw)
        except ValueError:
            raise ScoreRouteError(
                f"{self.threshold_env}={raw!r} is not a number: the decision threshold of "
                "/v1/score is a probability within [0, 1]"
            ) from None
        return _threshold(value, self.threshold_env)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        return {
            "decision_field": self.decision_field,
            "threshold": self.threshold,
            "threshold_env": self.threshold_env,
        }

    @classmethod
    def from_json(cls, data: object) -> ScoreRoute | None:
        """A route as a lineage spec stores it; None when the lineage declares none."""
        if data is None or data is False:
            return None
        if data is True:
            # What specs and bundles held before the route declared its decision: the field
            # name and the variable were the service's, which names no domain any more.
            raise ScoreRouteError(
                "score_routes: true no longer says what /v1/score decides; declare "
                "score_routes: {decision_field: <name>, threshold: <0..1>, threshold_env: "
                "<VARIABLE>} in the lineage's YAML, and rebuild the bundle (serving_job)"
            )
        if not isinstance(data, Mapping):
            raise ScoreRouteError(f"score_routes is a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise ScoreRouteError(f"unknown keys in score_routes: {unknown} (known: {_KEYS})")
        missing = [k for k in ("decision_field", "threshold") if k not in data]
        if missing:
            raise ScoreRouteError(f"score_routes does not say {missing}")
        return cls(data["decision_field"], data["threshold"], data.get("threshold_env"))
