"""A BentoML service wired like serving/service.py around its scoring (the edge, the uniform
errors, the request-id middleware, the inference log, our /metrics), without models: served
with `bentoml serve` by tests/test_inference_log_http.py to check the log across BentoML's
worker process, its thread hop for sync APIs and the multiprocess /metrics."""

from __future__ import annotations

from typing import Any

import bentoml

from ml_assets.platform.lineage_spec import LineageSpec
from ml_assets.platform.serving_bundle import ModelEntry
from serving import request_ids
from serving.inference_log import InferenceLog, LogSettings
from serving.metrics import create_metrics
from tests.probe_service import SETTINGS, wire

SPEC = LineageSpec.from_dict(
    {
        "name": "tiny",
        "registered_model": "tiny-model",
        "task": "classification",
        "label": "y",
        "primary_metric": "pr_auc",
        "higher_is_better": True,
        "features": [
            {"name": "amount", "kind": "float", "min": 0.0, "max": 1e6},
            {"name": "merchant", "kind": "category", "categories": ["a", "b"]},
            {"name": "home_km", "kind": "float", "min": 0.0, "max": 2e4, "sensitive": True},
        ],
        "monitoring": {"sample_rate": 1.0, "retention_days": 7},
    }
)
ENTRY = ModelEntry(
    role="tiny", registered_model="tiny-model", version="3", files={"model.onnx": "ab" * 32}
)


@bentoml.service(name="inference-log-probe", **SETTINGS)
class InferenceLogProbe:
    def __init__(self) -> None:
        self.metrics = create_metrics()
        self.inference_log = InferenceLog(LogSettings.from_env())

    def _answer(self, rows: list[dict[str, Any]]) -> dict[str, list[float]]:
        outputs = [r["amount"] / 1e6 for r in rows]  # the model's part is not what is tested
        self.inference_log.record(SPEC, ENTRY, rows, outputs)
        return {"predictions": outputs}

    @bentoml.api(route="/v1/models/tiny/predict")
    async def predict(self, row: dict[str, Any]) -> dict[str, list[float]]:
        return self._answer([row])

    @bentoml.api(route="/v1/models/tiny/predict/batch")
    def predict_batch(self, rows: list[dict[str, Any]]) -> dict[str, list[float]]:
        return self._answer(rows)  # sync: BentoML runs it in its thread pool

    @bentoml.on_shutdown
    def _close(self) -> None:
        self.inference_log.close()


wire(InferenceLogProbe, request_ids.RequestIds)
