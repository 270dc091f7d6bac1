"""The machine and the model's arithmetic for benchmarks/embedding_throughput.py: CPU model and
flags, an fp32 peak estimated from them, FLOPs per text of MiniLM-L6, ORT's per-operator
profile, and the int8 quantisation variants tried against the shipped one."""

from __future__ import annotations

import collections
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

LAYERS, HIDDEN, FFN = 6, 384, 1536
FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def cpu() -> dict[str, Any]:
    """lscpu-style model name, the SIMD flags that matter here, MHz, cores (Linux /proc)."""
    info: dict[str, Any] = {"model": "unknown", "flags": [], "mhz": None}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and info["model"] == "unknown":
            info["model"] = value
        elif key == "flags" and not info["flags"]:
            info["flags"] = [f for f in FLAGS_OF_INTEREST if f in value.split()]
        elif key == "cpu MHz" and info["mhz"] is None:
            info["mhz"] = float(value)
    return info


def fp32_peak_gflops(flags: Sequence[str], mhz: float | None, cores: int) -> tuple[float, str]:
    """Peak fp32 FLOP/s from the widest FMA the flags offer, assuming two FMA pipes a core."""
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags and "fma" in flags else 4
    per_cycle = lanes * 2 * 2  # lanes x (mul + add) x 2 FMA pipes
    ghz = (mhz or 2000.0) / 1000
    how = f"{lanes} fp32 lanes x 2 FMA pipes x 2 = {per_cycle} FLOP/cycle/core x {ghz:.2f} GHz"
    return per_cycle * ghz * cores, f"{how} x {cores} cores"


def flops(lengths: Sequence[int]) -> float:
    """Forward FLOPs of MiniLM-L6 over texts of these token lengths (no padding): projections
    and FFN (2 x (4 H^2 + 2 H F) per token per layer) plus attention (2 x 2 L H per token)."""
    lengths = np.asarray(lengths, dtype=np.float64)
    dense = 2 * (4 * HIDDEN**2 + 2 * HIDDEN * FFN) * lengths.sum()
    attention = 2 * 2 * HIDDEN * (lengths**2).sum()
    return float(LAYERS * (dense + attention))


def op_profile(onnx_bytes: bytes, run: Callable[[Any], None], threads: int) -> list[tuple]:
    """(op type, ms, share) of one `run(session)` under ORT's profiler, most expensive first."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "profile")
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(
            onnx_bytes,
            sess_options=opts,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=["SkipLayerNormFusion"],
        )
        run(session)
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
    total = sum(by_op.values()) or 1
    return [(op, us / 1000, us / total) for op, us in by_op.most_common()]


def quantize_variant(fp32: bytes, **options: Any) -> bytes:
    """quantize_dynamic with the shipped settings (quantize_int8) changed by `options`:
    per_channel, nodes_to_exclude (a callable: graph -> node names), extra_options."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ml_assets.search.embedder_export import quantized_bytes

    exclude = options.pop("nodes_to_exclude", None)
    extra = {
        "MatMulConstBOnly": True,
        "DefaultTensorType": onnx.TensorProto.FLOAT,
        **options.pop("extra_options", {}),
    }
    per_channel = options.pop("per_channel", True)

    def dynamic(src: Path, dst: Path) -> None:
        quantize_dynamic(
            src,
            dst,
            weight_type=QuantType.QInt8,
            reduce_range=False,
            per_channel=per_channel,
            nodes_to_exclude=exclude(onnx.load(src).graph) if exclude else None,
            extra_options=extra,
            **options,
        )

    return quantized_bytes(fp32, dynamic)


def _attention(graph: Any) -> list[str]:
    return [n.name for n in graph.node if n.op_type == "Attention"]


def _last_layer(graph: Any) -> list[str]:
    """The MatMuls and Attention of the last encoder layer (the exporter names them by layer)."""
    last = (f"/layer.{LAYERS - 1}/", f"Attention_{LAYERS - 1}")
    names = [n.name for n in graph.node if n.op_type in ("MatMul", "Attention")]
    return [n for n in names if any(k in n or n == k for k in last)]


def _ffn_down(graph: Any) -> list[str]:
    """The FFN output projections (1536 -> 384): their inputs follow GELU, long-tailed."""
    return [
        n.name
        for n in graph.node
        if n.op_type == "MatMul"
        and n.name.endswith("/output/dense/MatMul")
        and "/attention/" not in n.name
    ]


def quantize_static_qdq(fp32: bytes, calibration: Sequence[dict[str, np.ndarray]]) -> bytes:
    """Static QDQ int8 of the MatMuls (per-channel s8 weights, u8 activations with min-max
    scales from `calibration` feeds): fixed activation scales, so a row's vector no longer
    depends on the other rows of its batch. The fused Attention ops stay fp32."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from ml_assets.search.embedder_export import quantized_bytes

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    def static_qdq(src: Path, dst: Path) -> None:
        quantize_static(
            src,
            dst,
            Feeds(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )

    return quantized_bytes(fp32, static_qdq)


def calibration_feeds(tokenizer: Any, texts: Sequence[str], batch: int = 8) -> list[dict]:
    """Model inputs for `texts`, `batch` at a time, padded to each batch's longest."""
    encodings = tokenizer.encode_batch(list(texts))
    feeds = []
    for i in range(0, len(encodings), batch):
        chunk = encodings[i : i + batch]
        ids = np.zeros((len(chunk), max(len(e.ids) for e in chunk)), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, e in enumerate(chunk):
            ids[row, : len(e.ids)], mask[row, : len(e.ids)] = e.ids, 1
        feeds.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * ids})
    return feeds


def batch_invariance(embedder: Any, texts: Sequence[str]) -> float:
    """Lowest cosine between a text embedded alone and within the batch of all `texts`."""
    alone = np.stack([embedder.embed([t])[0] for t in texts])
    return float(np.sum(alone * embedder.embed(list(texts)), axis=1).min())


VARIANTS: dict[str, dict[str, Any]] = {
    "per-tensor weights": {"per_channel": False},
    "attention fp32 (QKV not quantised)": {"nodes_to_exclude": _attention},
    "last layer fp32": {"nodes_to_exclude": _last_layer},
    "FFN down-projections fp32": {"nodes_to_exclude": _ffn_down},
}
