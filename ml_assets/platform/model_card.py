"""A model card: one registered version's declared purpose and its recorded facts, as JSON and
Markdown (stdlib only: the service renders and verifies the card the bundle carries).

The card's JSON is gathered by `ml_assets.bundle.model_cards` from the lineage's YAML (`card:`) and
the
platform's records; nothing on it is typed by hand after the fact. Its sha256 is of
`card_bytes(card)`, and the bundle manifest pins it beside the card.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

CARD_SCHEMA = "ml-assets.model-card.v1"
EMBEDDER_CARD_SCHEMA = "ml-assets.embedder-card.v1"
DECLARED = ("owner", "purpose", "intended_use", "limitations", "license")


class CardIntegrityError(RuntimeError):
    """A card's bytes do not hash to the sha256 the bundle manifest pins for it."""


def card_bytes(card: Mapping[str, Any]) -> bytes:
    """The card's canonical bytes: sorted keys, no whitespace, UTF-8."""
    return json.dumps(card, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def card_sha256(card: Mapping[str, Any]) -> str:
    return hashlib.sha256(card_bytes(card)).hexdigest()


def verified(card: Mapping[str, Any], expected_sha256: str | None, label: str) -> dict[str, Any]:
    """The card, refused unless its canonical bytes hash to `expected_sha256`."""
    actual = card_sha256(card)
    if actual != expected_sha256:
        raise CardIntegrityError(
            f"{label}: the model card hashes to {actual}, the manifest pins {expected_sha256}"
        )
    return dict(card)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "–"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "_(none recorded)_"
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(r.get(h)) for h in headers) + " |" for r in rows]
    return "\n".join(lines)


def _span(values: Mapping[str, Any] | None) -> str:
    """A feature's range `[min, max]` or its categories."""
    values = values or {}
    if "categories" in values:
        return _cell(values["categories"])
    return f"[{_cell(values.get('min'))}, {_cell(values.get('max'))}]"


def _declared(card: Mapping[str, Any]) -> list[str]:
    said = card.get("declared") or {}
    out = [said.get("description") or "_No description declared._", ""]
    for key in DECLARED:
        value = said.get(key)
        label = key.replace("_", " ").capitalize()
        if key == "limitations":
            out.append(f"**{label}:**")
            out += [f"- {v}" for v in value] if value else ["- _none declared_"]
            out.append("")
        else:
            out.append(f"**{label}:** {value or '_not declared_'}  ")
    return out


def _validation(v: Mapping[str, Any]) -> list[str]:
    native, onnx = v.get("native") or {}, v.get("onnx") or {}
    deltas = v.get("relative_delta") or {}
    metrics = [
        {"metric": m, "native": native[m], "ONNX": onnx.get(m), "relative delta": deltas.get(m)}
        for m in native
    ]
    latency = v.get("latency_ms") or {}
    thresholds = v.get("thresholds") or {}
    return [
        f"Export validation report `{v.get('report_sha256')}` (run `{v.get('report_run_id')}`), "
        f"{v.get('test_rows')} test rows.",
        "",
        _table(metrics),
        "",
        f"Max |native - ONNX| output: {_cell(v.get('max_abs_output_diff'))}. Single-row latency "
        f"(ms): " + ", ".join(f"{k} {_cell(x)}" for k, x in sorted(latency.items())) + ".",
        "",
        "Thresholds:",
        "",
        _table([{"threshold": k, "value": x} for k, x in sorted(thresholds.items())]),
        "",
        "Verdicts (each from the platform's own run):",
        "",
        _verdicts(v.get("verdicts") or []),
    ]


def _headline(card: Mapping[str, Any]) -> str:
    """One line: did every check pass, and how good is the served model on its test split."""
    v = card["validation"]
    verdicts = v.get("verdicts") or []
    passed = sum(1 for x in verdicts if x.get("passed"))
    scores = ", ".join(f"{m} {_cell(x)}" for m, x in (v.get("onnx") or {}).items())
    word = "passed" if verdicts and passed == len(verdicts) else "FAILED"
    return f"**Validation {word}** ({passed}/{len(verdicts)} checks); ONNX on test: {scores}."


def _verdicts(verdicts: Sequence[Mapping[str, Any]]) -> str:
    return _table(
        [
            {
                "check": f"{x.get('asset')} / {x.get('check')}",
                "verdict": "passed" if x.get("passed") else "FAILED",
                "run id": x.get("run_id"),
                "evaluation": x.get("evaluation_id"),
            }
            for x in verdicts
        ]
    )


def _history(card: Mapping[str, Any]) -> str:
    return _table(
        [
            {
                "at": e.get("at"),
                "kind": e.get("kind"),
                "from": e.get("from_version"),
                "to": e.get("to_version"),
                "by": e.get("actor"),
                "reason": e.get("reason"),
            }
            for e in card.get("promotion_history") or []
        ]
    )


def _closing(card: Mapping[str, Any]) -> list[str]:
    """Every card's last two sections: its promotion history and its environment."""
    environment = json.dumps(card.get("environment") or {}, indent=2, sort_keys=True)
    return [
        "## Promotion history",
        "",
        _history(card),
        "",
        "## Environment",
        "",
        "```json",
        environment,
        "```",
    ]


SET_COLUMNS = (
    "lexical",
    "vector",
    "hybrid",
    "best_single",
    "passed",
    "cross_tenant_hits",
    "queries",
    "min_hnsw_recall_at_10",
)


def _columns(figures: Mapping[str, Any]) -> list[str]:
    return [c for c in SET_COLUMNS if c in figures] + sorted(set(figures) - set(SET_COLUMNS))


def _search(search: Mapping[str, Any], index: Mapping[str, Any] | None) -> list[str]:
    if not search.get("served"):
        return [f"Search is not served with this version: {search.get('reason')}."]
    verdict = search.get("verdict") or {}
    # Columns in a fixed order: the card is stored as canonical JSON (sorted keys), and the
    # Markdown must not depend on whether it was rendered before or after that round trip.
    rows = [
        {"labelled set": name, **{k: figures[k] for k in _columns(figures)}}
        for name, figures in sorted(search["sets"].items())
    ]
    index = index or {}
    shown = {k: v for k, v in index.items() if k not in ("sha256", "recorded")}
    return [
        f"Search quality report `{search['report_sha256']}` (run `{search['report_run_id']}`): "
        f"{verdict.get('check')} {'passed' if verdict.get('passed') else 'FAILED'} (run "
        f"`{verdict.get('run_id')}`). Eval-split nDCG@10 per mode:",
        "",
        _table(rows),
        "",
        f"Judged on index `{search['index_sha256']}`: "
        + (
            ", ".join(f"{k} {_cell(v)}" for k, v in sorted(shown.items()))
            if index.get("recorded")
            else "its materialization is not in this platform's records"
        )
        + ".",
    ]


def embedder_markdown(card: Mapping[str, Any]) -> str:
    """The embedder's card for people: what it is, its parity checks, the search it was judged
    with, its history and environment."""
    model, what, export = card["model"], card["what"], card["export"]
    verdicts = export.get("verdicts") or []
    passed = sum(1 for x in verdicts if x.get("passed"))
    word = "passed" if verdicts and passed == len(verdicts) else "FAILED"
    parity = export.get("parity") or {}
    lines = [
        f"# Model card: {model['registered_model']} v{model['version']} ({model['variant']})",
        "",
        f"**Export checks {word}** ({passed}/{len(verdicts)}); "
        + ", ".join(f"{k} {_cell(v)}" for k, v in sorted(parity.items()))
        + ".",
        "",
        f"{what['base_model']}: {what['dim']} dimensions, up to {what['max_length']} tokens, "
        f"pooling: {what['pooling']}. ONNX `{model['onnx_sha256']}`, tokenizer "
        f"`{model['tokenizer_sha256']}`; MLflow run `{model.get('mlflow_run_id')}`. Card "
        "sha256 is pinned in the bundle manifest.",
        "",
        "## Export parity and the retrieval guard",
        "",
        f"Export `{export['sha256']}` (run `{export['run_id']}`).",
        "",
        _verdicts(verdicts),
        "",
        "## Search it was judged with",
        "",
        *_search(card["search"], card.get("index")),
        "",
        *_closing(card),
    ]
    return "\n".join(lines) + "\n"


def card_markdown(card: Mapping[str, Any]) -> str:
    """The card for people: what it is for first, then data, training, validation, history."""
    if card.get("schema") == EMBEDDER_CARD_SCHEMA:
        return embedder_markdown(card)
    model, data, training = card["model"], card["data"], card["training"]
    features = [
        {
            "feature": f["name"],
            "type": f["kind"],
            "declared": _span(f.get("declared")),
            "observed": _span(f.get("observed")),
            "description": f.get("description") or "",
        }
        for f in data.get("features", [])
    ]
    dates = data.get("date_range")
    lines = [
        f"# Model card: {model['registered_model']} v{model['version']}",
        "",
        _headline(card),
        "",
        f"Lineage `{model['lineage']}` ({model['task']}, label `{model['label']}`); MLflow run "
        f"`{model.get('mlflow_run_id')}`. Card sha256 is pinned in the bundle manifest.",
        "",
        *_declared(card),
        "",
        "## Data",
        "",
        f"Raw data `{data.get('sha256')}`: {data.get('rows')} rows, label rate "
        f"{_cell(data.get('label_rate'))}, date range "
        f"{'–'.join(dates) if dates else '_no date column_'}.",
        "",
        _table(features),
        "",
        "## Training",
        "",
        f"`{training.get('function')}` at code version `{training.get('code_version')}`, seed "
        f"{training.get('seed')}; model `{training.get('model_sha256')}`.",
        "",
        _table([{"parameter": k, "value": x} for k, x in sorted(training["params"].items())]),
        "",
        "## Validation",
        "",
        *_validation(card["validation"]),
        "",
        *_closing(card),
    ]
    return "\n".join(lines) + "\n"
