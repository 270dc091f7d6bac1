"""What is declared, promoted, bundled and served, and where they differ (`ml-assets status`,
and the summary `ml-assets up` ends with).

- declared: the lineages of the defs folder (ml_assets/lineages) and the SearchIndex's embedder;
- promoted: each registered model's MLflow `production` alias;
- bundled: what the newest serving bundle pins (and, for a declared lineage it does not serve,
  why not);
- served: what the endpoint answers on GET /models (nothing when it does not run).

A lineage removed from the defs folder is still listed while a bundle or the endpoint has it:
the next bundle drops it, and its MLflow versions and Dagster history stay.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from ml_assets.platform.catalog import Catalog
from ml_assets.platform.serving_bundle import EMBEDDER, PRODUCTION_ALIAS

NOT_RUNNING = "not running"


@dataclass(frozen=True)
class ModelStatus:
    name: str  # the lineage (or "embedder"): the role in a bundle, the route's name
    registered_model: str
    declared: bool
    promoted: str | None  # the production version
    bundled: str | None  # the version the newest bundle pins
    served: str | None  # the version the endpoint serves
    note: str  # where the four differ, and what to do; "" when they agree

    def row(self) -> dict[str, str]:
        return {
            "model": self.name,
            "registered model": self.registered_model,
            "declared": "yes" if self.declared else "no",
            "promoted": _v(self.promoted),
            "bundled": _v(self.bundled),
            "served": _v(self.served),
            "differs": self.note,
        }


def _v(version: str | None) -> str:
    return f"v{version}" if version else "-"


def served_models(url: str, timeout_s: float = 5.0) -> dict[str, Any] | None:
    """The endpoint's GET /models, or None when nothing answers there."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/models", timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None


def _note(s: dict[str, Any], bundle_reason: str | None, endpoint_up: bool) -> str:
    name, promoted, bundled, served = s["name"], s["promoted"], s["bundled"], s["served"]
    if not s["declared"]:
        if bundled or served:
            return "no longer declared: the next serving bundle drops it (its MLflow versions stay)"
        return ""
    if promoted is None:
        return bundle_reason or (
            f"not promoted: no '{PRODUCTION_ALIAS}' version (materialize {name}_lineage_job, "
            f"then `ml-assets promote {s['registered_model']} <version> --reason ...`)"
        )
    if bundled != promoted:
        return (
            f"promoted v{promoted}, the newest bundle pins {_v(bundled)}: the promotion "
            "sensor's serving_job builds the next bundle (or `ml-assets up` does)"
        )
    if not endpoint_up:
        return f"the endpoint is {NOT_RUNNING}"
    if served != bundled:
        return (
            f"the endpoint serves {_v(served)}: the serving run's reload switches it (or restart "
            "the endpoint on the newest Bento)"
        )
    return ""


def compare(
    declared: dict[str, str],
    promoted: dict[str, str | None],
    bundle: dict[str, Any] | None,
    served: dict[str, Any] | None,
) -> list[ModelStatus]:
    """One row per model any of the four knows (`declared`: name -> registered model;
    `promoted`: registered model -> production version; `bundle`: the newest bundle's
    manifest; `served`: the endpoint's GET /models)."""
    pinned = (bundle or {}).get("models", {})
    waiting = (bundle or {}).get("lineages", {})
    answering = (served or {}).get("models", {})
    names = {**declared}
    for source in (pinned, answering):
        for role, m in source.items():
            names.setdefault(role, m["registered_model"])
    out = []
    for name, model in sorted(names.items(), key=lambda kv: (kv[0] == EMBEDDER, kv[0])):
        row = {
            "name": name,
            "registered_model": model,
            "declared": name in declared,
            "promoted": promoted.get(model),
            "bundled": str(pinned[name]["version"]) if name in pinned else None,
            "served": str(answering[name]["version"]) if name in answering else None,
        }
        reason = waiting.get(name, {}).get("reason")
        out.append(ModelStatus(**row, note=_note(row, reason, served is not None)))
    return out


def production_versions(client: Any, models: list[str]) -> dict[str, str | None]:
    from mlflow.exceptions import MlflowException

    out: dict[str, str | None] = {}
    for name in models:
        try:
            out[name] = str(client.get_model_version_by_alias(name, PRODUCTION_ALIAS).version)
        except MlflowException:
            out[name] = None
    return out


def collect(
    client: Any, artifact_root: str, serving_url: str | None, catalog: Catalog
) -> list[ModelStatus]:
    """The platform's models, from its declarations (`catalog`), the registry (`client`), the
    newest bundle under `artifact_root` and the endpoint (None: not asked)."""
    from ml_assets.resources.storage import latest_ref  # Dagster: loaded when asked, not for --help

    declared = {s.name: s.registered_model for s in catalog.lineages}
    embedder = catalog.embedder_model()
    if embedder is not None:
        declared[EMBEDDER] = embedder
    ref = latest_ref(artifact_root, "serving_bundle")
    bundle = json.loads(ref.read_verified()) if ref else None
    served = served_models(serving_url) if serving_url else None
    known = {*declared.values()}
    for source in ((bundle or {}).get("models", {}), (served or {}).get("models", {})):
        known |= {m["registered_model"] for m in source.values()}
    return compare(declared, production_versions(client, sorted(known)), bundle, served)


def bundle_lags(statuses: list[ModelStatus]) -> list[str]:
    """Why the newest bundle is not what the declarations and the registry say (empty: it is)."""
    return [
        f"{s.name}: {s.note}"
        for s in statuses
        if (s.declared and s.promoted and s.bundled != s.promoted) or (not s.declared and s.bundled)
    ]


def summary(statuses: list[ModelStatus]) -> list[str]:
    """What `up` says at the end: which models are served, which are not, and why not."""
    served = [f"{s.name} ({s.registered_model} v{s.served})" for s in statuses if s.served]
    lines = ["serving: " + (", ".join(served) or "nothing")]
    lines += [
        f"not served: {s.name} ({s.registered_model}): {s.note}"
        for s in statuses
        if s.declared and not s.served
    ]
    lines += [f"{s.name}: {s.note}" for s in statuses if s.served and s.note]
    return lines
