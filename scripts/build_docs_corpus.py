"""Build ml_assets/data/docs_corpus.jsonl and docs_queries.jsonl from Python's own docstrings.

A second labelled search set on real text that nobody in this project wrote: the docstrings of
a fixed list of standard-library modules, their public classes, functions and methods, chunked
into passages. Each module belongs to one of three tenants by topic area. The labelled queries
live in QUERY_TABLE (scripts/corpus/docstrings/labels.py), written in a user's words, and name
their relevant passages by title (qualified name, plus `#n` for the n-th passage of a long
docstring); the build resolves them to doc ids and fails loudly when a title is missing, so the
labels survive a rebuild. The generator is the package scripts/corpus/docstrings/.

The text depends on the interpreter: the shipped files come from CPython PYTHON_VERSION (the
project venv); another version writes only elsewhere, and only with --force. `pydoc_data` (the
reference manual's topics) is never imported: that text is reserved for an independent check.

    .venv/bin/python scripts/build_docs_corpus.py     # ~0.5 s; prints the counts per tenant
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

# The generator lives in scripts/corpus/; runpy.run_path (the tests) does not put scripts/ on
# the path as `python scripts/build_docs_corpus.py` does.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus.common import write_jsonl
from corpus.docstrings.modules import TENANTS
from corpus.docstrings.passages import PYTHON_VERSION, build_corpus, row
from corpus.docstrings.queries import build_queries

DATA = Path(__file__).resolve().parents[1] / "ml_assets" / "data"
OUT = DATA / "docs_corpus.jsonl"
QUERIES_OUT = DATA / "docs_queries.jsonl"
TENANTS_OUT = DATA / "docs_tenants.json"


def main(argv: Sequence[str] | None = None) -> tuple[Path, Path, Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the corpus JSONL")
    parser.add_argument(
        "--queries-out", type=Path, default=QUERIES_OUT, help="where to write the queries JSONL"
    )
    parser.add_argument(
        "--tenants-out", type=Path, default=TENANTS_OUT, help="where to write the tenant list"
    )
    parser.add_argument(
        "--force", action="store_true", help=f"build on a Python other than {PYTHON_VERSION}"
    )
    args = parser.parse_args(argv)
    running = ".".join(map(str, sys.version_info[:3]))
    shipped = {OUT, QUERIES_OUT, TENANTS_OUT} & {args.out, args.queries_out, args.tenants_out}
    if running != PYTHON_VERSION and (shipped or not args.force):
        raise SystemExit(
            f"the shipped docs corpus comes from Python {PYTHON_VERSION}'s docstrings and this is "
            f"{running}: run it with the project venv, or pass --force and other output paths "
            "(to move the shipped set to another Python, change PYTHON_VERSION)"
        )
    passages = build_corpus()
    queries = build_queries(passages)
    write_jsonl(args.out, [row(p) for p in passages])
    write_jsonl(args.queries_out, queries)
    args.tenants_out.write_text(json.dumps(sorted(TENANTS), indent=2) + "\n", encoding="utf-8")
    docs = Counter(p.tenant_id for p in passages)
    for tenant in TENANTS:
        splits = Counter(q["split"] for q in queries if q["tenant_id"] == tenant)
        print(
            f"{tenant}: {docs[tenant]} passages, {splits['tune']} tune + {splits['eval']} eval "
            "queries"
        )
    print(
        f"wrote {len(passages)} passages to {args.out}, {len(queries)} queries to "
        f"{args.queries_out} and {len(TENANTS)} tenants to {args.tenants_out} (Python {running})"
    )
    return args.out, args.queries_out, args.tenants_out


if __name__ == "__main__":
    main()
