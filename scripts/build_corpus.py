"""Build ml_assets/data/search_corpus.jsonl: a seeded energy & commodities trading catalogue."""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

SEED = 20250611
OUT = Path(__file__).resolve().parents[1] / "ml_assets" / "data" / "search_corpus.jsonl"
# Fixed epoch: the corpus must not depend on when it was built.
EPOCH = datetime(2025, 1, 6, 7, 0)
PHRASES = Path(__file__).resolve().parent / "corpus_phrases"


def _phrases(name: str) -> str:
    """A phrase table or template file (scripts/corpus_phrases/): data, not code."""
    return (PHRASES / name).read_text(encoding="utf-8")


MIN_WORDS, MAX_WORDS = 40, 160


@dataclass(frozen=True)
class Market:
    key: str
    code: str
    family: str
    name: str
    long: str
    region: str
    unit: str
    venue: str
    settle: str
    sources: tuple[str, ...]
    price: float
    lot: str
    tags: tuple[str, ...]


# key|code|family|name|long|region|unit|venue|settle|sources|price|lot|tags, wrapped onto
# indented continuation lines: a text table keeps 36 markets readable at 100 columns.
MARKET_TABLE = _phrases("market_table.txt")


@dataclass(frozen=True)
class Tenant:
    id: str
    prefix: str
    firm: str
    city: str
    etrm: str
    committee: str
    ccy: str
    markets: tuple[str, ...]
    desks: dict[str, str]
    drop: float  # share of catalogue entries a tenant does not have: catalogues differ
    scen_variants: int
    bt_variants: int
    versions: int


TENANTS = (
    Tenant(
        "northwind-energy",
        "nw",
        "Northwind",
        "Houston",
        "Endur",
        "Northwind Risk Committee",
        "USD",
        (
            "HH",
            "WAHA",
            "SOCAL",
            "ALGQ",
            "TZ6",
            "CHI",
            "TTF",
            "JKM",
            "USGC",
            "PJMW",
            "ERCN",
            "ERCH",
            "SP15",
            "NP15",
            "MISOIN",
            "WTI",
            "BRENT",
            "ULSD",
            "RBOB",
            "CCA",
            "RGGI",
        ),
        {
            "gas": "US gas desk",
            "basis": "gas basis desk",
            "lng": "LNG origination team",
            "power": "power desk",
            "crude": "crude and products desk",
            "products": "crude and products desk",
            "carbon": "environmental products desk",
            "coal": "power desk",
        },
        0.05,
        5,
        5,
        2,
    ),
    Tenant(
        "helios-trading",
        "ht",
        "Helios",
        "Geneva",
        "Allegro",
        "Helios Risk Council",
        "EUR",
        (
            "TTF",
            "NBP",
            "THE",
            "JKM",
            "NWE",
            "HH",
            "DEB",
            "DEP",
            "FRB",
            "UKB",
            "NORD",
            "BRENT",
            "WTI",
            "DUBAI",
            "GASOIL",
            "EUA",
            "UKA",
            "API2",
            "NEWC",
        ),
        {
            "gas": "European gas desk",
            "basis": "European gas desk",
            "lng": "LNG portfolio desk",
            "power": "continental power desk",
            "crude": "global oil desk",
            "products": "global oil desk",
            "carbon": "carbon desk",
            "coal": "coal and freight desk",
        },
        0.06,
        5,
        4,
        2,
    ),
    Tenant(
        "boreal-commodities",
        "bc",
        "Boreal",
        "Oslo",
        "Brady",
        "Boreal management committee",
        "EUR",
        ("NORD", "SE3", "DEB", "TTF", "EUA", "BRENT", "API2"),
        {
            "gas": "cross-commodity book",
            "power": "Nordic power desk",
            "crude": "cross-commodity book",
            "carbon": "carbon desk",
            "coal": "cross-commodity book",
            "basis": "cross-commodity book",
            "lng": "cross-commodity book",
            "products": "cross-commodity book",
        },
        0.45,
        1,
        1,
        1,
    ),
)

FAMILY_WORDS = {
    "gas": ("natural gas", "nat gas", "gas", "NG"),
    "basis": ("gas basis", "nat gas basis", "basis"),
    "lng": ("LNG", "liquefied natural gas"),
    "power": ("power", "electricity", "power"),
    "crude": ("crude", "crude oil", "oil"),
    "products": ("",),
    "carbon": ("carbon allowances", "emission allowances", "carbon"),
    "coal": ("coal", "thermal coal", "steam coal"),
}
DELTA_UNIT = {
    "gas": "MMBtu/day equivalents",
    "basis": "MMBtu/day",
    "lng": "TBtu",
    "power": "MW",
    "crude": "barrels",
    "products": "barrels",
    "carbon": "tonnes",
    "coal": "tonnes",
}
TENOR_SETS = {
    "gas_us": "BALMO DA MA PEN LD1 Q SEAS CAL OPT APO",
    "gas_eu": "WD DA WKND BALMO MA Q SEAS CAL OPT",
    "basis": "DA BALMO MA SEAS CAL",
    "power_us": "DA RT BALMO PK_MA OP_MA PK_Q PK_CAL OPT",
    "power_eu": "DA WKND WEEK MA Q CAL OPT",
    "crude": "M1 BALMO CMA Q CAL OPT",
    "products": "M1 CMA Q CRACK",
    "carbon": "SPOT DEC1 DEC2 DEC3 OPT",
    "coal": "MA Q CAL",
    "lng": "MA SEAS CARGO",
    "DEP": "MA Q CAL",
    "SE3": "MA Q CAL",
    "RGGI": "SPOT DEC1 DEC2 DEC3",
    "DUBAI": "BALMO CMA Q CAL",
}
# key|title phrase|risk bucket|tag|prose variants (;-separated)
TENOR_TABLE = _phrases("tenor_table.txt")


def _records(table: str) -> list[list[str]]:
    """Split a pipe table into records; indented lines continue the previous record."""
    records: list[str] = []
    for line in table.strip("\n").splitlines():
        if line.startswith(" "):
            records[-1] += "|" + line.strip()
        else:
            records.append(line)
    return [r.split("|") for r in records]


MARKETS = {
    f[0]: Market(*f[:9], tuple(f[9].split(",")), float(f[10]), f[11], tuple(f[12].split(",")))
    for f in _records(MARKET_TABLE)
}
TENORS = {f[0]: (f[1], f[2], f[3], f[4].split(";")) for f in _records(TENOR_TABLE)}


def _blocks(text: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Parse the template DSL: '@ name | fields', '- '/'~ ' new slot, '| ' variant, indent wraps."""
    out: dict[str, tuple[list[str], list[list[str]]]] = {}
    head, slots = "", []
    for raw in text.strip("\n").splitlines():
        line = raw.rstrip()
        if line.startswith("@ "):
            head, slots = line[2:], []
        elif line.startswith("  ") and not slots:
            head += " " + line.strip()
        elif line.startswith(("- ", "~ ")):
            slots.append([line[2:]] if line[0] == "-" else [line])
        elif line.startswith("| "):
            slots[-1].append(line[2:])
        elif line.startswith("  "):
            slots[-1][-1] += " " + line.strip()
        elif line:
            raise ValueError(f"bad template line: {raw!r}")
        fields = [f.strip() for f in head.split("|")]
        out[fields[0]] = (fields[1:], slots)
    return out


INSTRUMENT_TEMPLATES = _phrases("instrument_templates.txt")

PPA_TABLE = _phrases("ppa_table.txt")

PPA_TEMPLATES = _phrases("ppa_templates.txt")

CURVE_TEMPLATES = _phrases("curve_templates.txt")

# code|title|a|b|kind|markets needed beyond a and b
SPREAD_TABLE = _phrases("spread_table.txt")
VOL_MARKETS = ("HH", "TTF", "NBP", "PJMW", "ERCN", "DEB", "NORD", "BRENT", "WTI", "EUA", "JKM")
CAPTURE = (
    ("SP15", "Solar"),
    ("ERCN", "Wind"),
    ("DEB", "Solar"),
    ("DEB", "Wind"),
    ("UKB", "Wind"),
    ("SE3", "Wind"),
    ("FRB", "Solar"),
)
HEAT = (
    ("PJMW", "HH"),
    ("ERCN", "HH"),
    ("ERCH", "HH"),
    ("SP15", "SOCAL"),
    ("NP15", "SOCAL"),
    ("MISOIN", "CHI"),
)

# @ key | title | tenants | shocks (% at severity 1) | params name=base:slope | when | tags
SCENARIO_TEMPLATES = _phrases("scenario_templates.txt")

# @ key | strategy label | legs (;-separated, + joins markets) | params | param label | Sharpe
#   | tags. Rule slots may use {a}, {b}, {c} (leg market names) and the params.
BACKTEST_TEMPLATES = _phrases("backtest_templates.txt")
BACKTEST_STATUS = (
    "approved for paper trading",
    "rejected, the edge disappears after costs",
    "promoted to production with a reduced risk allocation",
    "parked pending better data",
    "under review by quant research",
    "approved as a hedge overlay only",
)

# @ kind:key | title | tenants | tags. Slots keep their order; the first is always used.
DOC_TEMPLATES = _phrases("doc_templates.txt")
DOC_PLACEHOLDERS = {
    "nw": {
        "ccps": "CME Clearing and ICE Clear US",
        "master": "ISDA and NAESB",
        "regs": "CFTC and FERC rules",
        "brokers": "ICAP, BGC, Amerex and Tradition",
    },
    "ht": {
        "ccps": "ICE Clear Europe and ECC",
        "master": "ISDA and EFET",
        "regs": "REMIT and MAR",
        "brokers": "Marex, TFS, ICAP and Tullett Prebon",
    },
    "bc": {
        "ccps": "Nasdaq Clearing and ECC",
        "master": "EFET",
        "regs": "REMIT and MAR",
        "brokers": "ICAP, Tradition and Marex",
    },
}
LIMIT_DESKS = {
    "nw": (
        "US gas desk",
        "power desk",
        "gas basis desk",
        "crude and products desk",
        "environmental products desk",
        "LNG origination team",
    ),
    "ht": (
        "European gas desk",
        "continental power desk",
        "global oil desk",
        "carbon desk",
        "coal and freight desk",
        "LNG portfolio desk",
    ),
    "bc": ("Nordic power desk",),
}
DOC_TAILS = _phrases("doc_tails.txt")

TPL = {
    **{f"inst:{k}": v for k, v in _blocks(INSTRUMENT_TEMPLATES).items()},
    **{f"ppa:{k}": v for k, v in _blocks(PPA_TEMPLATES).items()},
    **{f"curve:{k}": v for k, v in _blocks(CURVE_TEMPLATES).items()},
    **_blocks(DOC_TEMPLATES),
    **_blocks(DOC_TAILS),
}
SCENARIOS = _blocks(SCENARIO_TEMPLATES)
BACKTESTS = _blocks(BACKTEST_TEMPLATES)
FAMILY_TAG = {
    "gas": "natural-gas",
    "basis": "natural-gas",
    "lng": "lng",
    "power": "power",
    "crude": "crude-oil",
    "products": "refined-products",
    "carbon": "emissions",
    "coal": "coal",
}
VOL_LEVEL = {
    "gas": (45, 70),
    "basis": (50, 80),
    "lng": (40, 60),
    "power": (35, 80),
    "crude": (25, 40),
    "products": (25, 40),
    "carbon": (35, 50),
    "coal": (30, 45),
}
SEVERITIES = (("moderate", 0.6, "1-in-5"), ("severe", 1.0, "1-in-20"), ("extreme", 1.5, "1-in-50"))
STRESS_WINDOWS = ("2021-2022 energy crisis", "2008-2009", "2020 Covid", "winter 2022-23")


def fmt(x: float) -> str:
    """Round a price-like number the way a desk would quote it."""
    a = abs(x)
    return (
        f"{x:.3f}" if a < 0.1 else f"{x:.2f}" if a < 10 else f"{x:.1f}" if a < 100 else f"{x:.0f}"
    )


def nwords(text: str) -> int:
    return len(text.split())


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


Doc = dict[str, object]


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
    for row in _records(PPA_TABLE):
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
    for code, title, a, b, kind, needs in _records(SPREAD_TABLE):
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


def _params(spec: str, f: float) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in spec.split():
        name, rule = item.split("=")
        base, slope = (float(x) for x in rule.split(":"))
        v = base + slope * f
        out[name] = int(round(v)) if abs(v) >= 10 or v == int(v) else round(v, 1)
    return out


def build_scenarios(rng: random.Random, t: Tenant) -> list[Doc]:
    docs: list[Doc] = []
    body = TPL_SCEN_BODY
    for key, (head, slots) in SCENARIOS.items():
        if key == "body" or t.prefix not in head[1].split():
            continue
        title, _, shock_spec, param_spec, whens, tags = head
        combos = [(s, w) for s in SEVERITIES for w in whens.split(";")]
        chosen = (
            [(SEVERITIES[1], whens.split(";")[0])]
            if t.scen_variants == 1
            else rng.sample(combos, min(t.scen_variants, len(combos)))
        )
        stories = [s for s in slots if not s[0].startswith("~ ")]
        analogs = [s[0][2:] for s in slots if s[0].startswith("~ ")]
        for (sev, f, rp), when in chosen:
            shocks = [
                (k, int(round(float(p) * f)))
                for k, p in (x.split(":") for x in shock_spec.split())
                if k in t.markets
            ]
            ctx = {
                **base_ctx(t),
                **_params(param_spec, f),
                "shocks": ", ".join(f"{MARKETS[k].name} {p:+d}%" for k, p in shocks[:6]),
                "decay": rng.choice((30, 40, 50, 60)),
                "front": rng.randint(1, 3),
                "fade": rng.choice((12, 18, 24)),
                "volx": rng.choice((1.2, 1.5, 1.8, 2.0)),
                "window": rng.choice(STRESS_WINDOWS),
                "analog": rng.choice(analogs),
                "pnl": f"{rng.uniform(-60, 25):.1f}",
                "committee": t.committee,
            }
            ctx.update({f"{k}_lvl": fmt(MARKETS[k].price * (1 + p / 100)) for k, p in shocks})
            ctx["front_txt"] = "month" if ctx["front"] == 1 else f"{ctx['front']} months"
            lead = [pick(rng, stories[0], ctx), pick(rng, body[0], ctx)]
            rest = [pick(rng, s, ctx) for s in stories[1:]] + [pick(rng, s, ctx) for s in body[1:]]
            suffix = f"{sev} ({rp})" + ("" if when == "any quarter" else f", {when}")
            docs.append(
                {
                    "type": "scenario",
                    "title": f"{title} — {suffix}"
                    if t.prefix != "ht"
                    else f"Stress: {title}, {suffix}",
                    "text": compose(rng, lead, rest, shuffle=False, skip=0.25),
                    "tags": tags_of(tags.split(","), ["stress-test"]),
                    "updated_at": stamp(rng),
                }
            )
    return docs


TPL_SCEN_BODY = SCENARIOS["body"][1]


def leg_names(keys: Sequence[str]) -> str:
    names = [MARKETS[k].name for k in keys]
    return (
        names[0]
        if len(names) == 1
        else " vs ".join(names[:2]) + (f" (with {names[2]})" if len(names) > 2 else "")
    )


def build_backtests(rng: random.Random, t: Tenant) -> list[Doc]:
    docs: list[Doc] = []
    body = BACKTESTS["body"][1]
    periods = ((2015, 2025), (2018, 2025), (2012, 2024), (2020, 2025))
    for key, (head, slots) in BACKTESTS.items():
        if key == "body":
            continue
        label, legs, params, plabel_t, sharpe0, tags = head
        for leg in legs.split(";"):
            keys = leg.split("+")
            if not all(k in t.markets for k in keys):
                continue
            combos = [(p, per) for p in params.split(";") for per in periods]
            for pspec, (y0, y1) in rng.sample(combos, t.bt_variants):
                if rng.random() < t.drop:
                    continue
                pv = dict(x.split("=") for x in pspec.split(","))
                sharpe = round(max(-0.4, rng.gauss(float(sharpe0), 0.35)), 2)
                ctx: dict[str, object] = {
                    **base_ctx(t),
                    **pv,
                    "label": label,
                    "label_cap": label[0].upper() + label[1:],
                    "mkt": leg_names(keys),
                    "a": MARKETS[keys[0]].name,
                    "b": MARKETS[keys[1]].name if len(keys) > 1 else "",
                    "y0": y0,
                    "y1": y1,
                    "sharpe": f"{sharpe:.2f}",
                    "dd": f"{max(3.0, rng.gauss(24 - 9 * sharpe, 4)):.1f}",
                    "hit": f"{50 + 4 * sharpe + rng.gauss(0, 2):.1f}",
                    "ret": f"{sharpe * rng.uniform(6, 12):.1f}",
                    "trades": rng.randint(40, 2400),
                    "tc": rng.choice((0.5, 1.5, 2)),
                    "sharpe_ex": f"{sharpe * rng.uniform(0.3, 0.8):.2f}",
                    "sharpe_oos": f"{sharpe * rng.uniform(0.7, 1.1):.2f}",
                    "oos": rng.randint(y0 + 2, y1 - 1),
                    "f0": max(y0, 2016) if y0 <= 2018 else 2023,
                    "f1": 2019 if y0 <= 2018 else 2024,
                    "status": rng.choice(
                        BACKTEST_STATUS[1:2] + BACKTEST_STATUS[3:5]
                        if sharpe < 0.35
                        else BACKTEST_STATUS
                    ),
                }
                ctx["plabel"] = plabel_t.format_map(ctx)
                lead = [pick(rng, body[0], ctx), pick(rng, slots[0], ctx), pick(rng, body[1], ctx)]
                rest = [pick(rng, s, ctx) for s in slots[1:] + body[2:]]
                mkt_tags = [tg for k in keys for tg in MARKETS[k].tags[:1]]
                title = (
                    f"Backtest: {ctx['mkt']} {label} ({ctx['plabel']}), {y0}-{y1}"
                    if t.prefix != "ht"
                    else f"{ctx['label_cap']} on {ctx['mkt']}: backtest {y0}-{y1}, {ctx['plabel']}"
                )
                docs.append(
                    {
                        "type": "backtest",
                        "title": title,
                        "text": compose(rng, lead, rest, shuffle=False, skip=0.2),
                        "tags": tags_of(["backtest"], tags.split(","), mkt_tags),
                        "updated_at": stamp(rng),
                    }
                )
    return docs


MEMO_OUTCOMES = {
    "low": ("approved", "approved with conditions"),
    "medium": ("approved with conditions", "approved for limited use pending remediation"),
    "high": (
        "approved for limited use pending remediation",
        "not approved, the model will be redeveloped",
    ),
}
KIND_TAG = {
    "method": "methodology",
    "settle": "settlement",
    "proc": "procedure",
    "note": "research-note",
    "memo": "validation-memo",
}


def doc_title(t: Tenant, kind: str, title: str, year: int, n: int) -> str:
    if kind == "note":
        return {
            "nw": f"Desk note: {title}",
            "ht": f"{title} (research note)",
            "bc": f"Note: {title}",
        }[t.prefix]
    if kind == "memo":
        return f"Model validation memo: {title} ({year})"
    return {
        "nw": f"{title} ({year} edition)",
        "ht": f"{title}, v{n + 2} {year}",
        "bc": f"{title} ({year})",
    }[t.prefix]


def effective(rng: random.Random, year: int, n: int) -> str:
    """The edition sentence: it keeps two editions of one document from sharing a text."""
    month = rng.choice(
        ("January", "February", "March", "April")
        if year == 2026
        else ("March", "May", "June", "September", "October")
    )
    tail = f", replacing the {year - 1} edition" if n or year == 2025 else ""
    return f"Effective from 1 {month} {year}{tail}."


def build_documents(rng: random.Random, t: Tenant) -> list[Doc]:
    docs: list[Doc] = []
    years = (2025, 2026)[-t.versions :]
    owners = {
        "method": ("market risk", "the quant team", "risk methodology"),
        "settle": ("operations", "back office", "middle office"),
        "proc": ("middle office", "compliance", "the COO office"),
        "note": ("the desk",),
        "memo": ("the desk quant team", "the risk analytics team"),
    }
    for name, (head, slots) in TPL.items():
        kind = name.split(":")[0]
        if kind not in owners or len(head) < 3 or t.prefix not in head[1].split():
            continue
        if rng.random() < t.drop:
            continue
        title, _, tags = head[:3]
        for n, year in enumerate(years if kind != "note" else years[-1:]):
            sev = rng.choice(("low", "medium", "high"))
            ctx = {
                **base_ctx(t),
                "owner": rng.choice(owners[kind]),
                "var_days": rng.choice((250, 500)),
                "exc": 4,
                "window": rng.choice(STRESS_WINDOWS),
                "stress_lim": rng.choice((25, 40, 60)),
                "rev": rng.choice((10, 20)),
                "resid": rng.choice((5, 10)),
                "snap": {"nw": "14:30 Central"}.get(t.prefix, "17:30 CET"),
                "desk": t.desks[head[3]] if len(head) > 3 else rng.choice(list(t.desks.values())),
                "change": rng.choice(
                    (
                        "updated the data window",
                        "added new products",
                        "clarified escalation steps",
                        f"aligned with the new {t.etrm} release",
                    )
                ),
                "next_month": rng.choice(("June", "September", "December")),
                "next_year": year + 1,
                "vendor": rng.choice(("Platts", "Argus", "Kpler")),
                "exc_green": rng.randint(1, 4),
                "exc_amber": rng.randint(5, 9),
                "sev": sev,
                "months": rng.choice((3, 6, 9)),
                "outcome": rng.choice(MEMO_OUTCOMES[sev]),
            }
            lead = [pick(rng, slots[0], ctx)]
            if kind in ("method", "settle", "proc"):
                lead.append(effective(rng, year, n))
            rest = [pick(rng, s, ctx) for s in slots[1:]]
            if kind == "memo":
                rest += [pick(rng, s, ctx) for s in TPL["memo:body"][1]]
            tail = TPL[f"tail:{'method' if kind == 'proc' else kind}"][1]
            rest += [pick(rng, s, ctx) for s in tail]
            docs.append(
                {
                    "type": "document",
                    "title": doc_title(t, kind, title, year, n),
                    "text": compose(rng, lead, rest, shuffle=False, skip=0.15),
                    "tags": tags_of(tags.split(","), [KIND_TAG[kind]]),
                    "updated_at": stamp(rng, year),
                }
            )
    unit_lim = {
        "gas": "MMBtu/day",
        "power": "MW",
        "oil": "barrels",
        "carbon": "tonnes",
        "coal": "tonnes",
        "lng": "TBtu",
        "basis": "MMBtu/day",
    }
    for desk in LIMIT_DESKS[t.prefix]:
        for n, year in enumerate(years):
            ulim = next((u for k, u in unit_lim.items() if k in desk.lower()), "MWh")
            ctx = {
                **base_ctx(t),
                "desk": desk,
                "var_lim": rng.choice((2, 3, 5, 8, 12)),
                "stop": rng.choice((4, 6, 10, 15)),
                "tenor_lim": rng.choice((3, 5, 10)),
                "unit_lim": ulim,
            }
            slots = TPL["limits:body"][1]
            docs.append(
                {
                    "type": "document",
                    "title": doc_title(t, "limits", f"Risk limits policy: {desk}", year, n),
                    "text": compose(
                        rng,
                        [pick(rng, slots[0], ctx), effective(rng, year, n)],
                        [pick(rng, s, ctx) for s in slots[1:]],
                        shuffle=False,
                    ),
                    "tags": tags_of(["risk-limits", "policy", "governance"]),
                    "updated_at": stamp(rng, year),
                }
            )
    return docs


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


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the JSONL corpus")
    args = parser.parse_args(argv)
    docs = build_corpus()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(d, ensure_ascii=False) for d in docs]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(docs)} documents to {args.out}")
    return args.out


if __name__ == "__main__":
    main()
