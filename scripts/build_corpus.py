"""Build ml_assets/data/search_corpus.jsonl: a seeded energy & commodities trading catalogue."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

# The generator lives in scripts/corpus/; runpy.run_path (the tests) does not put scripts/ on
# the path as `python scripts/build_corpus.py` does.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus.common import write_jsonl
from corpus.trading.build import build_corpus

OUT = Path(__file__).resolve().parents[1] / "ml_assets" / "data" / "search_corpus.jsonl"


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the JSONL corpus")
    args = parser.parse_args(argv)
    docs = build_corpus()
    write_jsonl(args.out, docs)
    print(f"wrote {len(docs)} documents to {args.out}")
    return args.out


if __name__ == "__main__":
    main()
