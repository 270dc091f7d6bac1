"""The whole catalogue: every builder for every tenant, each on its own seeded stream."""

from __future__ import annotations

import random
from collections.abc import Callable

from ..common import nwords
from .backtests import build_backtests
from .curves import build_curves
from .documents import build_documents
from .instruments import build_instruments
from .scenarios import build_scenarios
from .tenants import TENANTS, Tenant
from .text import MAX_WORDS, MIN_WORDS, Doc

SEED = 20250611

BUILDERS: tuple[tuple[str, str, Callable[[random.Random, Tenant], list[Doc]]], ...] = (
    ("instrument", "inst", build_instruments),
    ("curve", "curve", build_curves),
    ("scenario", "scen", build_scenarios),
    ("backtest", "bt", build_backtests),
    ("document", "doc", build_documents),
)


def build_corpus() -> list[dict[str, object]]:
    """Every document of every tenant, sorted by id; raises if a text breaks the length rules."""
    out = []
    for t in TENANTS:
        for kind, abbr, builder in BUILDERS:
            # One stream per tenant and type: editing one builder leaves the others' output alone.
            rng = random.Random(f"{SEED}:{t.id}:{kind}")
            for i, d in enumerate(builder(rng, t), start=1):
                n = nwords(str(d["text"]))
                if not MIN_WORDS <= n <= MAX_WORDS:
                    raise ValueError(f"{t.prefix} {kind} {d['title']!r}: {n} words")
                out.append(
                    {
                        "id": f"{t.prefix}-{abbr}-{i:04d}",
                        "tenant_id": t.id,
                        "type": kind,
                        "title": d["title"],
                        "text": d["text"],
                        "tags": d["tags"],
                        "updated_at": d["updated_at"],
                    }
                )
    return sorted(out, key=lambda d: str(d["id"]))
