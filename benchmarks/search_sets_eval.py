"""Both labelled sets through the real search code: scratch indexes, tuning, eval nDCG@10.

What `search_quality_report` does, without Dagster: each packaged labelled set ("search": the
shipped corpus, "docs": Python docstrings) indexed by `search_eval.labelled_set_index` on an
embedded Postgres with the packaged int8 embedder, candidates fetched and the fusion tuned on
the tune splits only (`search_tuning.tune`), then every mode judged by the real SQL
(`search_eval.judge_set`) with the tuned configuration. Prints nDCG@10 per mode and split, and
the fusion families. Document vectors are cached in --cache (keyed on the exact batch of texts)
so that a rerun against another index layout embeds nothing.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/search_sets_eval.py [--pgdata DIR]
        [--cache FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ml_assets.search.corpus import load_queries  # noqa: E402
from ml_assets.search.evaluation import (  # noqa: E402
    embed_queries,
    judge_set,
    labelled_set_index,
    served_config,
)
from ml_assets.search.index import connect  # noqa: E402
from ml_assets.search.tuning import family_rows, fetch_candidates, tune  # noqa: E402

SETS = ("search", "docs")


class CachedEmbedder:
    """An embedder whose results are kept per exact input batch (the int8 model's output
    depends on the batch), in a pickle file."""

    def __init__(self, inner, path: Path) -> None:
        self.inner, self.path = inner, path
        self.cache: dict[str, np.ndarray] = {}
        if path.exists():
            self.cache = pickle.loads(path.read_bytes())
        self.last_truncated = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
        if key not in self.cache:
            self.cache[key] = self.inner.embed(texts)
            self.path.write_bytes(pickle.dumps(self.cache))
        return self.cache[key]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pgdata", help="embedded Postgres data dir (default: a fresh temp dir)")
    parser.add_argument("--cache", default="/tmp/ml_assets_search_sets_vectors.pkl")
    args = parser.parse_args(argv)

    from ml_assets.local.stack import start_embedded_postgres
    from ml_assets.search.embedder_export import export_fp32, quantize_int8, tokenizer_path
    from ml_assets.search.text_embedder import OnnxTextEmbedder

    t0 = time.perf_counter()
    int8 = quantize_int8(export_fp32())
    sha = hashlib.sha256(int8).hexdigest()
    emb = CachedEmbedder(OnnxTextEmbedder(int8, tokenizer_path(), max_length=256), Path(args.cache))
    pgdata = Path(args.pgdata or tempfile.mkdtemp(prefix="search-sets-eval-")) / "pg"
    dsn = start_embedded_postgres(pgdata, stop_on_exit=True)
    print(f"embedder {sha[:12]} and Postgres ready in {time.perf_counter() - t0:.1f} s")

    conns, queries, vectors = {}, {}, {}
    with ExitStack() as stack:
        for name in SETS:
            t = time.perf_counter()
            eval_dsn, stats = stack.enter_context(
                labelled_set_index(dsn, f"eval_{name}", name, emb, sha)
            )
            conns[name] = stack.enter_context(connect(eval_dsn))
            queries[name] = load_queries(dataset=name)
            vectors[name] = embed_queries(emb, queries[name])
            print(
                f"{name}: {stats.total} documents in {stats.table} ({stats.mode}, "
                f"{time.perf_counter() - t:.1f} s)"
            )
        cands = {n: fetch_candidates(conns[n], queries[n], vectors[n]) for n in SETS}
        tuning = tune(cands)
        fusion = tuning.fusion
        print(f"tuned on the tune splits: {asdict(fusion)}")
        others = {m: f for m, f in tuning.method_best().items() if f != fusion}
        serving = served_config(fusion, sha)
        judged = {n: judge_set(conns[n], queries[n], vectors[n], serving, others) for n in SETS}

    print("\nnDCG@10 by the real SQL (tuned configuration):")
    labels = list(judged[SETS[0]].rankings)
    print(f"  {'mode':<22}" + "".join(f"{n + ':' + s:>14}" for n in SETS for s in ("tune", "eval")))
    for label in labels:
        cells = []
        for n in SETS:
            for s in ("tune", "eval"):
                v = next(x.ndcg_at_10 for x in judged[n].scores if x.mode == label and x.split == s)
                cells.append(f"{v:>14.3f}")
        print(f"  {label:<22}" + "".join(cells))
    for n in SETS:
        score = {x.mode: x.ndcg_at_10 for x in judged[n].scores if x.split == "eval"}
        print(
            f"  {n}: hybrid - vector {score['hybrid'] - score['vector']:+.3f}, "
            f"bm25 - ts_rank_cd {score['lexical'] - score['lexical:ts_rank_cd']:+.3f}, "
            f"cross-tenant hits {judged[n].cross_tenant_hits}"
        )
    print("\nfusion families (tuning re-ranker):")
    for row in family_rows(tuning, cands):
        cells = " ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float))
        print(f"  {'*' if row['chosen'] else ' '} {row['family']:<20} {cells}  ({row['settings']})")


if __name__ == "__main__":
    main()
