"""Curve documents: forward curves, vol surfaces, shapes, capture prices, heat rates, spreads."""

from __future__ import annotations

import random
import re

from .markets import (
    CAPTURE,
    FAMILY_TAG,
    FAMILY_WORDS,
    HEAT,
    MARKETS,
    SPREAD_TABLE,
    VOL_LEVEL,
    VOL_MARKETS,
    Market,
)
from .phrases import records
from .templates import TPL
from .tenants import Tenant
from .text import Doc, compose, fmt, market_ctx, pick, stamp, tags_of


def curve_title(t: Tenant, code: str, desc: str) -> str:
    """Each tenant's catalogue names curves its own way."""
    return {"nw": f"{code} — {desc}", "ht": f"{desc} ({code})", "bc": desc}[t.prefix]


def build_curves(rng: random.Random, t: Tenant) -> list[Doc]:
    docs: list[Doc] = []

    def add(kind: str, code: str, desc: str, ctx: dict[str, object], tags: list[str]) -> None:
        if kind != "fwd" and rng.random() < t.drop:
            return
        lead = [pick(rng, TPL[f"curve:{kind}:def"][1][0], ctx)]
        body = [pick(rng, s, ctx) for s in TPL[f"curve:{kind}:body"][1]]
        docs.append(
            {
                "type": "curve",
                "title": curve_title(t, code, desc),
                "text": compose(rng, lead, body),
                "tags": tags_of(tags),
                "updated_at": stamp(rng),
            }
        )

    def ctx_for(m: Market) -> dict[str, object]:
        lo, hi = VOL_LEVEL[m.family]
        v1 = rng.randint(lo, hi)
        liquid = rng.choice((18, 24, 36, 48))
        return {
            **market_ctx(rng, t, m),
            "horizon": rng.choice((5, 8, 10, 15)),
            "liquid": liquid,
            "liqy": f"{liquid / 12:g}",
            "yrs": rng.randint(3, 6),
            "infl": rng.choice((2.0, 2.5)),
            "lr": fmt(m.price * rng.uniform(0.8, 1.0)),
            "sig": rng.randint(4, 6),
            "ipvp": rng.randint(1, 3),
            "px2": fmt(m.price * rng.uniform(0.85, 1.1)),
            "vhor": rng.choice((12, 24, 36)),
            "beta": rng.choice((0.5, 1.0)),
            "v1": v1,
            "v2": max(12, v1 - rng.randint(10, 25)),
            "vprem": rng.randint(3, 12),
            "y0": rng.randint(2019, 2021),
            "cal": rng.randint(3, 5),
            "hr": f"{rng.uniform(6.8, 8.6):.1f}",
        }

    for key in t.markets:
        m = MARKETS[key]
        label = {"carbon": "allowance", "basis": "gas index", "products": ""}.get(
            m.family, FAMILY_WORDS[m.family][0]
        )
        c = ctx_for(m)
        add(
            "fwd",
            f"CRV_{m.code}_FWD",
            # "US Gulf Coast LNG" + "LNG" must not read "LNG LNG".
            re.sub(r"\b(\w+) \1\b", r"\1", " ".join(f"{m.name} {label} forward curve".split())),
            c,
            ["forward-curve", FAMILY_TAG[m.family], *m.tags],
        )
        if key in VOL_MARKETS:
            add(
                "vol",
                f"CRV_{m.code}_VOL",
                f"{m.name} implied volatility surface",
                ctx_for(m),
                ["volatility", "options", *m.tags],
            )
        if m.family == "power" and key not in ("DEP", "SE3"):
            add(
                "shape",
                f"CRV_{m.code}_SHAPE",
                f"{m.name} hourly shaping profile",
                ctx_for(m),
                ["shaping", "hourly", *m.tags],
            )
    for key, tech in CAPTURE:
        if key in t.markets:
            m = MARKETS[key]
            c = {
                **ctx_for(m),
                "tech": tech,
                "tech_l": tech.lower(),
                "cap": rng.randint(45, 70) if tech == "Solar" else rng.randint(70, 85),
                "cap2": rng.randint(86, 99),
            }
            add(
                "capture",
                f"CRV_{m.code}_{tech.upper()}_CAPTURE",
                f"{m.name} {tech.lower()} capture-price profile",
                c,
                ["capture-price", tech.lower(), "renewables", *m.tags],
            )
    for pkey, gkey in HEAT:
        if pkey in t.markets and gkey in t.markets:
            m = MARKETS[pkey]
            c = {**ctx_for(m), "gas": MARKETS[gkey].name, "desk": t.desks["power"]}
            add(
                "heat",
                f"CRV_{m.code}_HR",
                f"{m.name} implied heat rate curve",
                c,
                ["heat-rate", "spark-spread", *m.tags],
            )
    for code, title, a, b, kind, needs in records(SPREAD_TABLE):
        if not all(k in t.markets for k in (a, b, *filter(None, [needs]))):
            continue
        ma, mb = MARKETS[a], MARKETS[b]
        if rng.random() < t.drop:
            continue
        c = {**ctx_for(ma), "a": ma.name, "b": mb.name, "desk": t.desks[ma.family]}
        lead = [pick(rng, TPL[f"curve:spread:{kind}"][1][0], c)]
        body = [pick(rng, s, c) for s in TPL["curve:spread:body"][1]]
        docs.append(
            {
                "type": "curve",
                "title": curve_title(t, f"CRV_{code}", title),
                "text": compose(rng, lead, body),
                "tags": tags_of(["spread", kind], ma.tags[:2], mb.tags[:1]),
                "updated_at": stamp(rng),
            }
        )
    return docs
