"""Composing one document: number formats, template picks, length rules, stamps, contexts."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from ..common import nwords
from .markets import FAMILY_WORDS, Market
from .tenants import DOC_PLACEHOLDERS, Tenant

# Fixed epoch: the corpus must not depend on when it was built.
EPOCH = datetime(2025, 1, 6, 7, 0)
MIN_WORDS, MAX_WORDS = 40, 160
Doc = dict[str, object]


def fmt(x: float) -> str:
    """Round a price-like number the way a desk would quote it."""
    a = abs(x)
    return (
        f"{x:.3f}" if a < 0.1 else f"{x:.2f}" if a < 10 else f"{x:.1f}" if a < 100 else f"{x:.0f}"
    )


def pick(rng: random.Random, slot: Sequence[str], ctx: dict[str, object]) -> str:
    text = " ".join(rng.choice(slot).format_map(ctx).split())
    # An empty placeholder (products have no family word) must not leave "ULSD , covering",
    # and a placeholder ending like the next word must not read "spot spot contract".
    return re.sub(r"\b(\w+) \1\b", r"\1", re.sub(r" ([,.;:)])", r"\1", text))


def compose(
    rng: random.Random, lead: list[str], optional: list[str], shuffle: bool = True, skip: float = 0
) -> str:
    """Lead sentences, then optional ones up to a random target length, never over MAX_WORDS."""
    order = list(range(len(optional)))
    if shuffle:
        rng.shuffle(order)
    skipped = {i for i in order if skip and rng.random() < skip}
    target, n, used = rng.randint(55, 135), sum(nwords(s) for s in lead), []
    for i in order:
        if i not in skipped and n < target and n + nwords(optional[i]) <= MAX_WORDS:
            used.append(i)
            n += nwords(optional[i])
    # Skipped sentences only come back when the text would otherwise be too short.
    for i in order:
        if i in skipped and n < MIN_WORDS + 8 and n + nwords(optional[i]) <= MAX_WORDS:
            used.append(i)
            n += nwords(optional[i])
    if not shuffle:
        used.sort()
    return " ".join(lead + [optional[i] for i in used])


def stamp(rng: random.Random, year: int | None = None) -> str:
    """A fixed pseudo-random timestamp in 2025-04/2026 (or within the given year)."""
    lo, hi = {None: (0, 470), 2025: (0, 340), 2026: (365, 470)}[year]
    t = EPOCH + timedelta(days=rng.randint(lo, hi), minutes=rng.randint(0, 11 * 60))
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def tags_of(*groups: Sequence[str]) -> list[str]:
    seen = list(dict.fromkeys(t.lower() for g in groups for t in g))
    return seen[:6]


def snap_of(m: Market) -> str:
    if m.key in ("JKM", "DUBAI", "NEWC"):
        return "16:30 Singapore"
    if m.key in ("BRENT", "GASOIL") or m.unit.startswith(("GBP", "GBp")):
        return "16:30 London"
    return (
        "14:30 Central"
        if m.unit.startswith("USD") and m.key not in ("NWE", "API2")
        else ("17:30 CET")
    )


def base_ctx(t: Tenant) -> dict[str, object]:
    return {
        "firm": t.firm,
        "city": t.city,
        "etrm": t.etrm,
        "committee": t.committee,
        "ccy": t.ccy,
        **DOC_PLACEHOLDERS[t.prefix],
    }


def market_ctx(rng: random.Random, t: Tenant, m: Market) -> dict[str, object]:
    s1, s2 = rng.sample(m.sources, 2)
    return {
        **base_ctx(t),
        "name": m.name,
        "w": rng.choice(FAMILY_WORDS[m.family]),
        "unit": m.unit,
        "venue": m.venue,
        "settle": m.settle,
        "s1": s1,
        "s2": s2,
        "lot": m.lot,
        "region": m.region,
        "snap": snap_of(m),
        "desk": t.desks[m.family],
        "px": fmt(m.price * rng.uniform(0.92, 1.08)),
    }
