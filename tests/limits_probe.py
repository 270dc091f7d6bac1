"""A BentoML service wired like serving/service.py at its edge (serving/edge.py outermost, the
uniform errors, our /metrics), with one slow route: tests/test_serving_limits.py serves it with
`bentoml serve` to check the concurrency cap and the client key over HTTP, without models."""

from __future__ import annotations

import asyncio
from typing import Annotated

import bentoml
from pydantic import Field

from serving.metrics import create_metrics
from tests.probe_service import SETTINGS, wire


@bentoml.service(name="limits-probe", **SETTINGS)
class LimitsProbe:
    def __init__(self) -> None:
        self.metrics = create_metrics()

    @bentoml.api(route="/hold")
    async def hold(self, seconds: Annotated[float, Field(ge=0, le=10)]) -> dict[str, float]:
        """Answers after `seconds`: concurrent calls hold the worker's slots."""
        await asyncio.sleep(seconds)
        return {"held": seconds}


wire(LimitsProbe)
