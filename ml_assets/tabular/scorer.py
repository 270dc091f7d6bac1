"""Score a declared lineage's exported ONNX model; shared by validation and serving (no pandas).

The graph has one named input per feature (category: string, numeric: float32), as
`ml_assets.tabular.model.to_onnx_bytes` exports it; the output is the probability of
class 1 (classification) or the predicted value (regression).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from ml_assets.platform.lineage_spec import FeatureSpec, Task


class OnnxTabularScorer:
    """An ONNX Runtime session over a lineage's ONNX bytes (verify their sha256 before this)."""

    def __init__(
        self,
        onnx_bytes: bytes,
        features: Sequence[FeatureSpec],
        task: Task,
        intra_op_threads: int = 1,
    ) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.features = tuple(features)
        self.task = task
        inputs = {i.name for i in self._session.get_inputs()}
        missing = [f.name for f in self.features if f.name not in inputs]
        if missing:
            raise ValueError(f"the ONNX graph has no input for feature(s) {missing}")
        outputs = [o.name for o in self._session.get_outputs()]
        if task == "classification":
            self._output = "probabilities" if "probabilities" in outputs else outputs[-1]
        else:
            self._output = "variable" if "variable" in outputs else outputs[0]

    def feeds_from_columns(self, columns: Mapping[str, Sequence[object]]) -> dict[str, np.ndarray]:
        """Feeds from one sequence (or array) of values per feature name."""
        feeds: dict[str, np.ndarray] = {}
        for f in self.features:
            values = columns[f.name]
            if f.kind == "category":
                feeds[f.name] = np.array([str(v) for v in values], dtype=object).reshape(-1, 1)
            else:
                feeds[f.name] = np.asarray(values, dtype=np.float32).reshape(-1, 1)
        return feeds

    def feeds_from_records(self, records: Sequence[Mapping[str, object]]) -> dict[str, np.ndarray]:
        """Feeds built straight from dicts (the serving path: no pandas per request)."""
        feeds: dict[str, np.ndarray] = {}
        for f in self.features:
            if f.kind == "category":
                feeds[f.name] = np.array([[str(r[f.name])] for r in records], dtype=object)
            else:
                feeds[f.name] = np.array([[r[f.name]] for r in records], dtype=np.float32)
        return feeds

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        (out,) = self._session.run([self._output], feeds)
        out = np.asarray(out)
        if self.task == "classification":
            return out[:, 1]
        return out.reshape(-1)

    def predict_columns(self, columns: Mapping[str, Sequence[object]]) -> np.ndarray:
        """One prediction per row of `columns` (feature name -> values)."""
        return self._run(self.feeds_from_columns(columns))

    def predict_records(self, records: Sequence[Mapping[str, object]]) -> np.ndarray:
        """One prediction per record: P(class 1) for classification, the value for regression."""
        return self._run(self.feeds_from_records(records))
