"""The baseline the serving benchmark compares against: a minimal FastAPI + ONNX Runtime app
doing the same single-transaction scoring (what the platform we replace ran).

    ML_BASELINE_ONNX=/path/model.onnx uvicorn benchmarks.fastapi_baseline:app --workers 2
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel


class Transaction(BaseModel):
    merchant_category: str
    amount: float
    hour: int
    card_present: int
    device_mismatch: int
    country_mismatch: int
    txn_count_1h: int
    txn_count_24h: int
    account_age_days: int
    distance_from_home_km: float


class ScoreRequest(BaseModel):
    transaction: Transaction


opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
session = ort.InferenceSession(
    os.environ["ML_BASELINE_ONNX"], sess_options=opts, providers=["CPUExecutionProvider"]
)
app = FastAPI()


@app.post("/v1/score")
def score(req: ScoreRequest) -> dict:
    t = req.transaction.model_dump()
    feeds = {
        k: (np.array([[v]], dtype=object) if isinstance(v, str) else np.array([[v]], np.float32))
        for k, v in t.items()
    }
    proba = session.run(["probabilities"], feeds)[0]
    p = float(np.asarray(proba)[0, 1])
    return {"probability": p, "is_fraud": p >= 0.5, "model_version": "baseline"}
