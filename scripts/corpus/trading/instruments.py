"""Instrument documents: one per market and tenor, plus each tenant's PPAs."""

from __future__ import annotations

import random
import re

from .markets import DELTA_UNIT, FAMILY_TAG, MARKETS, TENOR_SETS, TENORS, Market
from .phrases import phrases, records
from .templates import TPL
from .tenants import Tenant
from .text import Doc, compose, fmt, market_ctx, pick, stamp, tags_of

# prefix|code|market|tech|structure|years|MW|price|site: each tenant's power purchase agreements.
PPA_TABLE = phrases("ppa_table.txt")


def tenor_set(m: Market) -> list[str]:
    if m.key in TENOR_SETS:
        return TENOR_SETS[m.key].split()
    fam = m.family
    if fam in ("gas", "power"):
        fam += "_us" if m.unit.startswith("USD") else "_eu"
    return TENOR_SETS[fam].split()


def noun(m: Market, t: str) -> str:
    f, us = m.family, m.unit.startswith("USD")
    special = {"OPT": "option", "APO": "average price option"}
    if t in special:
        return special[t]
    if f == "gas":
        return (
            "financial swap"
            if t in ("PEN", "LD1")
            else "futures"
            if t in ("MA", "Q", "SEAS", "CAL")
            else "physical forward"
        )
    if f == "basis":
        return "index swap" if t == "DA" else "basis swap"
    if f == "power":
        return "index swap" if t in ("DA", "RT") else "financial forward" if us else "futures"
    if f in ("crude", "products"):
        return "futures" if t == "M1" else "swap"
    if f == "carbon":
        return "spot contract" if t == "SPOT" else "futures"
    if f == "lng" and t == "CARGO":
        return "FOB cargo" if m.key == "USGC" else "DES cargo"
    return "futures" if f == "coal" else "swap"


def nice_step(x: float) -> str:
    steps = (0.01, 0.05, 0.1, 0.5, 1, 5, 10)
    return fmt(min(steps, key=lambda s: abs(s - x)))


def build_instruments(rng: random.Random, t: Tenant) -> list[Doc]:
    docs: list[Doc] = []
    us_peak = (
        "On-peak means 5x16: hours ending 07:00 to 22:00, Monday to Friday, excluding NERC "
        "holidays."
    )
    for key in t.markets:
        m = MARKETS[key]
        tenors = tenor_set(m)
        keep = [x for x in tenors if rng.random() >= t.drop] or [tenors[0]]
        for tenor in keep:
            title_phrase, bucket, ttag, prose = TENORS[tenor]
            code = f"{m.code}_{tenor}"
            nn = noun(m, tenor).replace("futures", "futures contract")
            ctx = {
                **market_ctx(rng, t, m),
                "code": code,
                "noun": nn,
                "a_noun": ("an " if nn[0] in "aeiou" else "a ") + nn,
                "A_noun": ("An " if nn[0] in "aeiou" else "A ") + nn,
                "tenor_title": title_phrase,
                "tenor": rng.choice(prose),
                "bucket": bucket,
                "delta_unit": DELTA_UNIT[m.family],
                "bo": fmt(m.price * rng.uniform(0.002, 0.01)),
                "ipv": fmt(m.price * 0.01),
                "since": rng.randint(2014, 2024),
                "strike": nice_step(m.price * 0.015),
                "peak_def": us_peak,
                "roll": rng.choice((2, 3, 5)),
            }
            lead = [pick(rng, TPL["inst:def"][1][0], ctx)]
            body = [pick(rng, s, ctx) for s in TPL["inst:body"][1]]
            extra = [pick(rng, s, ctx) for s in TPL[f"inst:use:{m.family}"][1]]
            extra += [pick(rng, s, ctx) for s in TPL[f"inst:tenor:{tenor}"][1]]
            docs.append(
                {
                    "type": "instrument",
                    # Cargo and spot-allowance tenors would otherwise read "spot DES", "spot spot".
                    "title": re.sub(
                        r"( spot)+ (spot|DES|FOB)( FOB)?",
                        r" \2",
                        f"{code} — {m.long} {title_phrase} {noun(m, tenor)}",
                    ).replace("FOB FOB", "FOB"),
                    "text": compose(rng, lead, extra[:1] + body + extra[1:]),
                    "tags": tags_of([FAMILY_TAG[m.family]], m.tags, [ttag]),
                    "updated_at": stamp(rng),
                }
            )
    certs = {
        "USD": "Bundled RECs transfer to {firm} monthly.",
        "EUR": "Guarantees of origin are transferred with the energy each month.",
        "GBP": "REGOs are transferred with the power each month.",
    }
    for row in records(PPA_TABLE):
        prefix, code, key, tech, structure, years, mw, price, site = row
        if prefix != t.prefix:
            continue
        m = MARKETS[key]
        ctx = {
            **market_ctx(rng, t, m),
            "code": code,
            "tech": tech,
            "structure": structure,
            "years": years,
            "mw": mw,
            "price": price,
            "site": site,
            "index": rng.choice(
                ("flat for the whole term", "escalating 2% a year", "indexed to CPI with a 3% cap")
            ),
            "capture": rng.randint(55, 78) if "solar" in tech else rng.randint(78, 92),
            "certs": certs[m.unit[:3]].format(firm=t.firm),
            "desk": t.desks["power"],
        }
        lead = [pick(rng, TPL["ppa:def"][1][0], ctx)]
        body = [pick(rng, s, ctx) for s in TPL["ppa:body"][1]]
        if tech == "hydro":
            # Capture-price cannibalisation is a wind and solar story; hydro risk is water.
            body[1] = "Main risk is hydrological: a dry year cuts output when prices are highest."
        docs.append(
            {
                "type": "instrument",
                "title": f"{code} — {m.name} {tech} PPA, {structure}, {years}-year",
                "text": compose(rng, lead, body),
                "tags": tags_of(["ppa", "power", tech.replace(" ", "-")], m.tags),
                "updated_at": stamp(rng),
            }
        )
    return docs
