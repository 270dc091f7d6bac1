"""Score transactions with the exported ONNX model; shared by validation and serving (no pandas)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from ml_assets.core.fraud_schema import CATEGORICAL, NUMERIC

if TYPE_CHECKING:  # the serving image has no pandas; only the validation path passes frames
    import pandas as pd


class OnnxFraudScorer:
    """An ONNX Runtime session over the fraud model's bytes (verify their sha256 before this)."""

    def __init__(self, onnx_bytes: bytes, intra_op_threads: int = 1) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        outputs = [o.name for o in self._session.get_outputs()]
        self._proba_output = "probabilities" if "probabilities" in outputs else outputs[-1]

    @staticmethod
    def feeds(frame: pd.DataFrame) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        for col in CATEGORICAL:
            feeds[col] = frame[col].astype(str).to_numpy(dtype=object).reshape(-1, 1)
        for col in NUMERIC:
            feeds[col] = frame[col].to_numpy(dtype=np.float32).reshape(-1, 1)
        return feeds

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Fraud probability for each row of `frame`."""
        (proba,) = self._session.run([self._proba_output], self.feeds(frame))
        return np.asarray(proba)[:, 1]

    @staticmethod
    def feeds_from_records(records: Sequence[Mapping[str, object]]) -> dict[str, np.ndarray]:
        """Feeds built straight from dicts (the serving path: no pandas per request)."""
        feeds: dict[str, np.ndarray] = {}
        for col in CATEGORICAL:
            feeds[col] = np.array([[str(r[col])] for r in records], dtype=object)
        for col in NUMERIC:
            feeds[col] = np.array([[r[col]] for r in records], dtype=np.float32)
        return feeds

    def predict_records(self, records: Sequence[Mapping[str, object]]) -> np.ndarray:
        """Fraud probability for each record (a mapping of feature name to value)."""
        (proba,) = self._session.run([self._proba_output], self.feeds_from_records(records))
        return np.asarray(proba)[:, 1]
