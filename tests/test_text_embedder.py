"""The ONNX text embedder against the PyTorch reference, on the real packaged MiniLM (no mocks)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ml_assets.search.embedder_export import (  # noqa: E402
    export_fp32,
    quantize_int8,
    torch_embed,
)
from ml_assets.search.text_embedder import OnnxTextEmbedder, tokenizer_path  # noqa: E402

DIM = 384
MAX_LENGTH = 256

_LONG = " ".join(
    f"Clause {i}: the seller shall deliver {i * 10} MWh of baseload power at the hub."
    for i in range(60)
)  # ~900 tokens: well past MAX_LENGTH

VARIED_TEXTS = [
    "",
    "gas",
    "Brent",
    "OK",
    "?!",
    "12345",
    "Henry Hub settles at $3.42/MMBtu.",
    "TTF front-month gas jumped 8% after a Norwegian outage.",
    "EU carbon allowances (EUAs) slipped below EUR 60/t for the first time since 2022.",
    "WTI-Brent spread narrowed to -$3.10 as Cushing stocks fell.",
    "power prices went NEGATIVE in Germany on Sunday afternoon — solar glut!",
    "Le prix de l'électricité en France a bondi de 12 % cette semaine.",
    "Der Strompreis für das erste Quartal stieg um 5 Euro je Megawattstunde.",
    "天然气价格上涨",
    "LNG 🚢 cargo diverted from Asia to Europe 📈",
    "https://example.com/reports/oil?week=12&region=EU",
    "a b c d e f g h i j k l m n o p",
    "The the the the the the the the",
    "Hedging basis risk between NBP and TTF requires a spread position in both hubs.",
    "The refinery restart was delayed, tightening the diesel crack into the winter.",
    "Nordic hydro reservoirs sit 15 percentage points below the seasonal norm.",
    "A cold snap is forecast for northwest Europe from Tuesday, lifting heating demand.",
    "Coal-to-gas switching accelerates when the clean spark spread exceeds the dark spread.",
    "The desk rolled its December Brent longs into February at a two-dollar contango.",
    _LONG,
    "Margin calls on the exchange forced several utilities to draw on credit lines. " * 4,
    "Short.",
    "Storage injections: 98 Bcf vs 85 Bcf expected; prices fell 4%.",
]
# Fill to ~64 with seeded sentences of very different lengths (1 to 120 words).
_WORDS = (
    "crude gas power coal carbon spread hedge curve contango backwardation storage demand "
    "supply outage refinery pipeline cargo tanker auction balancing forward spot swap option "
    "volatility margin basis settlement delivery capacity wind solar hydro nuclear"
).split()
_rng = np.random.default_rng(11)
VARIED_TEXTS += [
    " ".join(_rng.choice(_WORDS, size=int(n)))
    for n in _rng.choice([1, 3, 8, 15, 30, 60, 120], size=64 - len(VARIED_TEXTS))
]


@pytest.fixture(scope="module")
def exports() -> tuple[bytes, bytes]:
    """fp32 and int8 ONNX bytes, exported once for the module (~8 s)."""
    fp32 = export_fp32()
    return fp32, quantize_int8(fp32)


@pytest.fixture(scope="module")
def fp32_embedder(exports: tuple[bytes, bytes]) -> OnnxTextEmbedder:
    return OnnxTextEmbedder(exports[0], tokenizer_path(), max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def int8_embedder(exports: tuple[bytes, bytes]) -> OnnxTextEmbedder:
    return OnnxTextEmbedder(exports[1], tokenizer_path(), max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """PyTorch embeddings of VARIED_TEXTS (batches of 16 so several batches are exercised)."""
    return torch_embed(VARIED_TEXTS, batch_size=16, max_length=MAX_LENGTH)


def test_fp32_matches_torch_on_every_text(
    fp32_embedder: OnnxTextEmbedder, reference: np.ndarray
) -> None:
    out = fp32_embedder.embed(VARIED_TEXTS)
    assert out.shape == (len(VARIED_TEXTS), DIM) and out.dtype == np.float32
    cos = np.sum(out * reference, axis=1)
    worst = int(np.argmin(cos))
    assert cos.min() >= 0.9999, f"cos {cos.min():.6f} for {VARIED_TEXTS[worst][:60]!r}"


def test_int8_close_to_fp32(
    fp32_embedder: OnnxTextEmbedder, int8_embedder: OnnxTextEmbedder
) -> None:
    cos = np.sum(int8_embedder.embed(VARIED_TEXTS) * fp32_embedder.embed(VARIED_TEXTS), axis=1)
    print(f"int8 vs fp32 cosine: mean {cos.mean():.5f}, min {cos.min():.5f}")
    assert cos.mean() >= 0.98, f"mean {cos.mean():.5f} (min {cos.min():.5f})"
    # Reported, loosely bounded: the worst rows are 1-3 token texts ("?!" ~0.955 here), where
    # quantisation noise is averaged over no context.
    assert cos.min() >= 0.9, f"min {cos.min():.5f} for {VARIED_TEXTS[int(np.argmin(cos))]!r}"


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_outputs_are_unit_norm(which: str, request: pytest.FixtureRequest) -> None:
    embedder: OnnxTextEmbedder = request.getfixturevalue(f"{which}_embedder")
    norms = np.linalg.norm(embedder.embed(VARIED_TEXTS), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_order_preserved_across_very_different_lengths(
    exports: tuple[bytes, bytes], fp32_embedder: OnnxTextEmbedder
) -> None:
    texts = ["gas", _LONG, "Brent rallied.", "x " * 200, "", "power " * 40, "coal"]
    # Batches of 2 over texts of 1 to 256 tokens: sorting and batching shuffle them a lot.
    batched = OnnxTextEmbedder(exports[0], tokenizer_path(), batch_size=2).embed(texts)
    one_by_one = np.stack([fp32_embedder.embed([t])[0] for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    reversed_rows = fp32_embedder.embed(texts[::-1])[::-1]
    np.testing.assert_allclose(reversed_rows, one_by_one, atol=1e-5)


def test_truncation_is_counted(exports: tuple[bytes, bytes]) -> None:
    embedder = OnnxTextEmbedder(exports[0], tokenizer_path(), max_length=32)
    long_a = "Brent crude futures rallied on supply fears " * 10
    long_b = long_a + " and then slumped on weaker Asian demand"
    out = embedder.embed([long_a, "short text", long_b])
    assert embedder.last_truncated == 2
    # Both keep only their first 32 tokens, which are the same.
    np.testing.assert_allclose(out[0], out[2], atol=1e-6)
    embedder.embed(["short text"])
    assert embedder.last_truncated == 0


def test_empty_input(fp32_embedder: OnnxTextEmbedder) -> None:
    out = fp32_embedder.embed([])
    assert out.shape == (0, DIM) and out.dtype == np.float32
    assert fp32_embedder.last_truncated == 0
    assert fp32_embedder.dim == DIM


_EXPORT_DIGESTS = """
import hashlib
from ml_assets.search.embedder_export import export_fp32, quantize_int8
fp32 = export_fp32()
print(hashlib.sha256(fp32).hexdigest(), hashlib.sha256(quantize_int8(fp32)).hexdigest())
"""


def test_exports_are_byte_identical_across_processes(exports: tuple[bytes, bytes]) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _EXPORT_DIGESTS],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    other = result.stdout.split()[-2:]
    assert other == [hashlib.sha256(b).hexdigest() for b in exports]


def test_serving_module_does_not_import_torch() -> None:
    code = (
        "import sys; import ml_assets.search.text_embedder; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'transformers' not in sys.modules, 'transformers imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---- the /embed batcher (serving/batcher.py) over these real embedders -----------------------


def _batch_texts(i: int, n: int = 8) -> list[str]:
    return [
        f"request {i} text {j}: {' '.join(_WORDS[(i + j) % 30 : (i + j) % 30 + 6])}"
        for j in range(n)
    ]


def test_batcher_runs_concurrent_requests_together_each_on_its_own_embedder(
    fp32_embedder: OnnxTextEmbedder, int8_embedder: OnnxTextEmbedder
) -> None:
    from serving.batcher import BatchConfig, EmbedBatcher

    runs: list[tuple[int, int]] = []
    batcher = EmbedBatcher(
        BatchConfig(max_batch_texts=64, max_wait_ms=100),
        on_batch=lambda texts, requests, _s: runs.append((texts, requests)),
    )
    # Two embedder versions queued at once, as during a reload: a batch never mixes them.
    versions = {"fp32": fp32_embedder, "int8": int8_embedder}
    jobs = [("fp32" if i % 2 else "int8", _batch_texts(i)) for i in range(12)]
    try:
        futures = [batcher.submit(versions[v], v, texts) for v, texts in jobs]
        results = [f.result(timeout=60) for f in futures]
    finally:
        batcher.close()
    assert any(requests > 1 for _, requests in runs), runs
    assert sum(requests for _, requests in runs) == len(jobs) and max(t for t, _ in runs) <= 64
    for (version, texts), (vectors, truncated) in zip(jobs, results, strict=True):
        alone = versions[version].embed(texts)
        assert vectors.shape == (8, DIM) and truncated == [False] * 8
        if version == "fp32":  # exact: fp32 does not depend on what else is in the batch
            np.testing.assert_allclose(vectors, alone, atol=1e-5)
        else:
            # int8 quantises activations with one scale per batch tensor: its rows move a little
            # with the batch's other texts (as they do within one request), never far.
            assert np.sum(vectors * alone, axis=1).min() >= 0.98
            assert np.abs(vectors - fp32_embedder.embed(texts)).max() > 1e-3  # not fp32's


def test_batcher_delivers_an_error_to_the_request_that_caused_it(
    fp32_embedder: OnnxTextEmbedder,
) -> None:
    from serving.batcher import BatchConfig, EmbedBatcher

    runs: list[int] = []
    batcher = EmbedBatcher(
        BatchConfig(max_wait_ms=200), on_batch=lambda _t, requests, _s: runs.append(requests)
    )
    try:
        good = [batcher.submit(fp32_embedder, "a", _batch_texts(i, 4)) for i in range(3)]
        bad = batcher.submit(fp32_embedder, "a", ["fine", 123])  # the tokenizer refuses an int
        more = batcher.submit(fp32_embedder, "a", _batch_texts(9, 4))
        with pytest.raises(TypeError):
            bad.result(timeout=60)
        for i, f in zip([0, 1, 2, 9], [*good, more], strict=True):
            np.testing.assert_allclose(
                f.result(timeout=60)[0], fp32_embedder.embed(_batch_texts(i, 4)), atol=1e-5
            )
    finally:
        batcher.close()
    assert runs == [5], runs  # one batch of all five, then each job alone


def test_batcher_refuses_at_once_past_its_queue_and_latency_caps(
    int8_embedder: OnnxTextEmbedder,
) -> None:
    import time

    from serving.batcher import BatchConfig, EmbedBatcher, Overloaded

    full = EmbedBatcher(BatchConfig(max_batch_texts=64, max_wait_ms=2_000, max_queue_texts=16))
    try:
        first = full.submit(int8_embedder, "a", _batch_texts(0))
        second = full.submit(int8_embedder, "a", _batch_texts(1))
        t0 = time.monotonic()
        with pytest.raises(Overloaded, match="ML_SERVING_EMBED_QUEUE_TEXTS"):
            full.submit(int8_embedder, "a", _batch_texts(2))
        assert time.monotonic() - t0 < 0.1
        assert first.result(timeout=60)[0].shape == second.result(timeout=60)[0].shape == (8, DIM)
    finally:
        full.close()
    late = EmbedBatcher(BatchConfig(max_wait_ms=0, max_latency_ms=50))
    try:
        # A larger request than max_batch_texts runs alone, whole; the one behind it waits past
        # the latency cap and is refused rather than run late.
        slow = late.submit(int8_embedder, "a", [_LONG] * 24)
        time.sleep(0.01)
        behind = late.submit(int8_embedder, "a", ["behind the long one"])
        with pytest.raises(Overloaded, match="ML_SERVING_EMBED_MAX_LATENCY_MS"):
            behind.result(timeout=60)
        assert slow.result(timeout=120)[0].shape == (24, DIM)
    finally:
        late.close()


def test_execution_providers_prefer_cuda_only_where_it_exists(
    int8_embedder: OnnxTextEmbedder,
) -> None:
    import onnxruntime as ort

    from ml_assets.search.text_embedder import CPU, CUDA, execution_providers

    has_cuda = CUDA in ort.get_available_providers()
    assert execution_providers("auto") == ([CUDA, CPU] if has_cuda else [CPU])
    assert execution_providers("cpu") == [CPU]
    if has_cuda:
        assert execution_providers("cuda") == [CUDA, CPU]
    else:  # asked for by name, its absence is an error that says what to install
        with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
            execution_providers("cuda")
    with pytest.raises(ValueError, match="ML_EMBEDDER_PROVIDER"):
        execution_providers("tpu")
    # What the session really runs on (reported on GET /models): CUDA may fail to load and
    # ORT then runs on the CPU alone.
    assert int8_embedder.providers[-1] == CPU
    assert set(int8_embedder.providers) <= set(execution_providers("auto"))
