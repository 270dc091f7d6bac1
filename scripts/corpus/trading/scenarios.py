"""Stress-scenario documents: each template at a few severities and seasons."""

from __future__ import annotations

import random

from .markets import MARKETS
from .templates import SCENARIOS, SEVERITIES, STRESS_WINDOWS
from .tenants import Tenant
from .text import Doc, base_ctx, compose, fmt, pick, stamp, tags_of


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
    body = SCENARIOS["body"][1]
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
