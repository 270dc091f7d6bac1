"""Governance documents: methodologies, settlement rules, procedures, notes, memos, limits."""

from __future__ import annotations

import random

from .templates import STRESS_WINDOWS, TPL
from .tenants import LIMIT_DESKS, Tenant
from .text import Doc, base_ctx, compose, pick, stamp, tags_of

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
