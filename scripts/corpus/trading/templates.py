"""The parsed templates: instrument, PPA, curve, document, scenario and backtest blocks."""

from __future__ import annotations

from .phrases import blocks, phrases

INSTRUMENT_TEMPLATES = phrases("instrument_templates.txt")
PPA_TEMPLATES = phrases("ppa_templates.txt")
CURVE_TEMPLATES = phrases("curve_templates.txt")
# @ key | title | tenants | shocks (% at severity 1) | params name=base:slope | when | tags
SCENARIO_TEMPLATES = phrases("scenario_templates.txt")
# @ key | strategy label | legs (;-separated, + joins markets) | params | param label | Sharpe
#   | tags. Rule slots may use {a}, {b}, {c} (leg market names) and the params.
BACKTEST_TEMPLATES = phrases("backtest_templates.txt")
# @ kind:key | title | tenants | tags. Slots keep their order; the first is always used.
DOC_TEMPLATES = phrases("doc_templates.txt")
DOC_TAILS = phrases("doc_tails.txt")

TPL = {
    **{f"inst:{k}": v for k, v in blocks(INSTRUMENT_TEMPLATES).items()},
    **{f"ppa:{k}": v for k, v in blocks(PPA_TEMPLATES).items()},
    **{f"curve:{k}": v for k, v in blocks(CURVE_TEMPLATES).items()},
    **blocks(DOC_TEMPLATES),
    **blocks(DOC_TAILS),
}
SCENARIOS = blocks(SCENARIO_TEMPLATES)
BACKTESTS = blocks(BACKTEST_TEMPLATES)
SEVERITIES = (("moderate", 0.6, "1-in-5"), ("severe", 1.0, "1-in-20"), ("extreme", 1.5, "1-in-50"))
STRESS_WINDOWS = ("2021-2022 energy crisis", "2008-2009", "2020 Covid", "winter 2022-23")
