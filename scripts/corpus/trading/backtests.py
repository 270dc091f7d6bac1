"""Backtest documents: each strategy on each leg the tenant trades, a few variants each."""

from __future__ import annotations

import random
from collections.abc import Sequence

from .markets import MARKETS
from .templates import BACKTESTS
from .tenants import Tenant
from .text import Doc, base_ctx, compose, pick, stamp, tags_of

BACKTEST_STATUS = (
    "approved for paper trading",
    "rejected, the edge disappears after costs",
    "promoted to production with a reduced risk allocation",
    "parked pending better data",
    "under review by quant research",
    "approved as a hedge overlay only",
)


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
