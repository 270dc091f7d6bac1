"""Sentence-embedding throughput: PyTorch reference vs the ONNX fp32 and int8 exports, one process.

512 short energy/commodity-trading sentences (8-20 words, seeded), batches of at most 64 texts,
2 threads for every path. PyTorch runs the very batches the ONNX embedder runs (length-sorted,
padded to each batch's longest: `plan_batches`) and the same mean pooling, so the ratios measure
the runtime and the model format, not the batching. Timings on a shared VM drift by 10-20%: the
script reports how much CPU other processes took while it timed.

Then the shipped corpus (its documents as the index embeds them) through fp32 and int8:
documents/s, tokens/s and achieved GFLOP/s against an fp32 peak estimated from the CPU's flags;
`--profile` adds ORT's per-operator profile of int8, `--variants` the int8 quantisation
variants of benchmarks/embedding_variants.py (speed, nDCG@10 on the labelled queries against
fp32, how much a text's vector moves with its batch); on a machine whose onnxruntime has the
CUDA provider, 512 corpus documents on the GPU.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/embedding_throughput.py [--rounds 3] [--reps 5] \
        [--profile] [--variants]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import embedding_variants as ev  # noqa: E402
from embedding_corpus import corpus_section  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CPU = "CPUExecutionProvider"

N_TEXTS = 512
BATCH = 64
THREADS = 2
TARGET_INT8_SPEEDUP = 2.5
TARGET_INT8_DOCS_PER_S = 90.0
MAX_NDCG_DROP = 0.01

_SUBJECTS = [
    "Brent crude",
    "WTI futures",
    "Henry Hub gas",
    "TTF gas",
    "German baseload power",
    "API2 coal",
    "EU carbon allowances",
    "spot LNG cargoes",
    "the front-month spread",
    "diesel cracks",
    "Nordic hydro reservoirs",
    "the power desk",
    "our gas trader",
    "OPEC+ supply",
    "French peak power",
    "the summer-winter spread",
]
_VERBS = [
    "rallied",
    "slumped",
    "traded flat",
    "spiked",
    "eased",
    "rebounded",
    "was hedged",
    "rolled forward",
    "widened",
    "narrowed",
    "repriced",
    "cleared higher",
]
_ADVERBS = ["sharply", "again", "overnight", "quietly", "modestly", "abruptly"]
_TAILS = [
    "after a cold snap in northwest Europe",
    "on weaker demand from Asian buyers",
    "as storage injections beat expectations",
    "ahead of the weekly inventory report",
    "following an unplanned refinery outage",
    "while wind output stayed below forecast",
    "into the quarterly expiry",
    "with margin calls squeezing liquidity",
    "as the curve flipped into backwardation",
    "in the day-ahead auction",
    "before the balancing market closed",
    "amid sanctions on seaborne crude",
    "when the interconnector tripped",
    "on a bullish weather model run",
]
_EXTRAS = [
    "in thin volume",
    "by two dollars",
    "for March delivery",
    "at the close",
    "against the hedge book",
    "despite heavy selling",
    "per megawatt hour",
    "versus last week",
]


def make_texts(n: int = N_TEXTS, seed: int = 20240607) -> list[str]:
    """`n` trading sentences of 8-20 words, the same for a given seed."""
    rng = random.Random(seed)
    texts: list[str] = []
    while len(texts) < n:
        words = [
            *rng.choice(_SUBJECTS).split(),
            *rng.choice(_VERBS).split(),
            *([rng.choice(_ADVERBS)] if rng.random() < 0.5 else []),
            *rng.choice(_TAILS).split(),
        ]
        while rng.random() < 0.45:
            words += rng.choice(_EXTRAS).split()
        if 8 <= len(words) <= 20:
            texts.append(" ".join(words))
    return texts


def time_runs(fn: Callable[[], np.ndarray], reps: int) -> list[float]:
    """Wall seconds of `reps` calls of `fn` (after the caller's warm-up)."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two row-aligned embedding matrices."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def _busy_cpu_seconds() -> float | None:
    """Non-idle CPU seconds of the whole machine so far (Linux /proc/stat), else None."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _other_processes_cpu_seconds(busy_start: float | None, own_start: float) -> float | None:
    """CPU seconds other processes took since the start marks (how contended the timings were)."""
    busy = _busy_cpu_seconds()
    if busy is None or busy_start is None:
        return None
    return max(0.0, (busy - busy_start) - (_own_cpu_seconds() - own_start))


def verdict(ok: bool) -> str:
    """MET or MISSED."""
    return "MET" if ok else "MISSED"


def main(argv: Sequence[str] | None = None) -> None:
    """Build both exports, time the three paths, print the tables and the target verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed runs per path per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the three paths")
    parser.add_argument("--profile", action="store_true", help="ORT's per-operator profile")
    parser.add_argument("--variants", action="store_true", help="int8 quantisation variants")
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars would interleave with the table

    from ml_assets.search.embedder_export import export_fp32, quantize_int8, torch_embed
    from ml_assets.search.text_embedder import OnnxTextEmbedder, tokenizer_path

    torch.set_num_threads(THREADS)
    texts = make_texts()
    words = [len(t.split()) for t in texts]
    machine = ev.cpu()
    peak, peak_how = ev.fp32_peak_gflops(machine["flags"], machine["mhz"], THREADS)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"CPU: {machine['model']}, {os.cpu_count()} CPUs, flags: {' '.join(machine['flags'])}")
    print(f"fp32 peak estimate for {THREADS} threads: {peak:.0f} GFLOP/s ({peak_how})")

    t0 = time.perf_counter()
    fp32_bytes = export_fp32()
    t1 = time.perf_counter()
    int8_bytes = quantize_int8(fp32_bytes)
    t2 = time.perf_counter()

    def embedder(data: bytes, providers: Sequence[str] = (CPU,)) -> OnnxTextEmbedder:
        return OnnxTextEmbedder(
            data,
            tokenizer_path(),
            batch_size=BATCH,
            intra_op_threads=THREADS,
            providers=list(providers),
        )

    fp32, int8 = embedder(fp32_bytes), embedder(int8_bytes)

    paths: dict[str, Callable[[], np.ndarray]] = {
        "pytorch": lambda: torch_embed(texts, batch_size=BATCH),
        "onnx fp32": lambda: fp32.embed(texts),
        "onnx int8": lambda: int8.embed(texts),
    }
    outputs = {name: fn() for name, fn in paths.items()}  # warm-up (and the parity outputs)
    for fn in paths.values():
        fn()
    # Rounds of consecutive runs per path: a burst of host noise then hits every path rather
    # than one, and no path runs while another's thread pool is still spinning down.
    times: dict[str, list[float]] = {name: [] for name in paths}
    busy_start, own_start, wall_start = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
    for _ in range(args.rounds):
        for name, fn in paths.items():
            times[name] += time_runs(fn, args.reps)

    others_cpu = _other_processes_cpu_seconds(busy_start, own_start)
    wall = time.perf_counter() - wall_start
    lengths = [len(e.ids) for e in fp32._tokenizer.encode_batch(texts)]
    tokens, work = sum(lengths), ev.flops(lengths)
    print(
        f"embedding throughput: {N_TEXTS} texts ({min(words)}-{max(words)} words, "
        f"{tokens / N_TEXTS:.1f} tokens avg, {work / N_TEXTS / 1e6:.0f} MFLOP each), batch "
        f"{BATCH}, {THREADS} threads, {args.rounds}x{args.reps} timed runs per path after warm-up"
    )
    print(
        f"torch {torch.__version__}, onnxruntime {ort.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    if others_cpu is not None:
        print(
            f"other processes used {others_cpu:.1f} CPU-s of the {wall * (os.cpu_count() or 1):.0f}"
            f" available during the timed runs ({wall:.0f} s wall): "
            + (
                "quiet machine"
                if others_cpu < 0.05 * wall
                else "CONTENDED, timings are pessimistic"
            )
        )
    print(
        f"export fp32 {t1 - t0:.1f} s ({len(fp32_bytes) / 1e6:.1f} MB, "
        f"sha256 {hashlib.sha256(fp32_bytes).hexdigest()[:16]}), "
        f"int8 {t2 - t1:.1f} s ({len(int8_bytes) / 1e6:.1f} MB, "
        f"sha256 {hashlib.sha256(int8_bytes).hexdigest()[:16]})"
    )
    print()
    base_med = statistics.median(times["pytorch"])
    base_best = min(times["pytorch"])
    header = (
        f"{'path':<10} {'median s':>9} {'best s':>8} {'texts/s':>8} {'tokens/s':>9} "
        f"{'GFLOP/s':>8} {'% peak':>7} {'x torch (med)':>13} {'x torch (best)':>14} "
        f"{'cos mean':>9} {'cos min':>9}"
    )
    print(header)
    print("-" * len(header))
    stats: dict[str, float] = {}
    for name in paths:
        med, best = statistics.median(times[name]), min(times[name])
        cos = cosines(outputs[name], outputs["pytorch"])
        stats[name] = med
        print(
            f"{name:<10} {med:>9.3f} {best:>8.3f} {N_TEXTS / med:>8.0f} {tokens / med:>9.0f} "
            f"{work / med / 1e9:>8.1f} {100 * work / med / 1e9 / peak:>6.0f}% "
            f"{base_med / med:>12.2f}x {base_best / best:>13.2f}x "
            f"{cos.mean():>9.6f} {cos.min():>9.6f}"
        )
    print()
    corpus = corpus_section(fp32, int8, peak, args, embedder, (fp32_bytes, int8_bytes), texts[:32])
    int8_ratio = base_med / stats["onnx int8"]
    print("targets (on medians):")
    print(
        f"  int8 >= {TARGET_INT8_SPEEDUP}x pytorch on {N_TEXTS} short texts: {int8_ratio:.2f}x "
        f"-> {verdict(int8_ratio >= TARGET_INT8_SPEEDUP)}"
    )
    print(
        f"  int8 >= {TARGET_INT8_DOCS_PER_S:.0f} documents/s on the shipped corpus: "
        f"{corpus['int8 docs/s']:.1f} -> {verdict(corpus['int8 docs/s'] >= TARGET_INT8_DOCS_PER_S)}"
    )
    drop = corpus["ndcg fp32"] - corpus["ndcg int8"]
    print(
        f"  int8 nDCG@10 within {MAX_NDCG_DROP} of fp32: {corpus['ndcg int8']:.4f} vs "
        f"{corpus['ndcg fp32']:.4f} -> {verdict(drop <= MAX_NDCG_DROP)}"
    )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
