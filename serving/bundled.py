"""What this Bento serves: bundle.json (written by the serving_bundle asset), its model
entries, the role behind /v1/score and its declared decision, the declared lineages' schemas,
and where each model's files are (the Bento's own model store, then the local BentoML store)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import bentoml

from ml_assets.platform.serving_bundle import (
    BUNDLE_MANIFEST,
    BundleIntegrityError,
    ModelEntry,
    entries_of,
    score_role,
    score_route,
    served_lineages,
)


def _load_bundle() -> dict[str, Any]:
    """bundle.json: ML_SERVING_BUNDLE, else the Bento's copy (cwd is the Bento's src when
    served), else next to this file."""
    candidates = [
        Path.cwd() / "serving" / BUNDLE_MANIFEST,
        Path(__file__).with_name(BUNDLE_MANIFEST),
    ]
    if env := os.environ.get("ML_SERVING_BUNDLE"):
        candidates = [Path(env)]
    for path in candidates:
        if path.exists():
            return json.loads(path.read_text())
    raise RuntimeError(
        f"no {BUNDLE_MANIFEST} at {', '.join(map(str, candidates))}: the service serves a "
        "bundle built by the serving_bundle asset (materialize it in Dagster, then "
        "`bentoml serve ml-assets:<tag>`)"
    )


BUNDLE = _load_bundle()
ENTRIES = entries_of(BUNDLE)
# The role whose model answers /v1/score(/batch): the lineage that declares `score_routes`.
SCORER = score_role(ENTRIES)
# What search_quality_report judged for the bundled embedder (fusion weights and parameters),
# or why search is not served: the service searches with exactly this.
BUNDLE_SEARCH: dict[str, Any] = dict(BUNDLE.get("search") or {})
# Every lineage declared when the bundle was built, served or not (and why not).
BUNDLE_DECLARED: dict[str, Any] = dict(BUNDLE.get("lineages") or {})


def find_model_dir(tag: str) -> Path | None:
    """A model's directory: the Bento's own store first, then the local BentoML store."""
    try:
        return Path(bentoml.models.get(tag).path)
    except (bentoml.exceptions.NotFound, ValueError):
        pass
    name, version = tag.split(":", 1)
    home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    candidate = home / "models" / name / version
    return candidate if candidate.is_dir() else None


def locate(entry: ModelEntry) -> Path:
    path = find_model_dir(entry.bento_tag)
    if path is None:
        raise BundleIntegrityError(f"{entry.bento_tag} is not in this Bento or the model store")
    return path


# Every declared lineage's model the bundle serves, by role (the lineage's name).
LINEAGES = served_lineages(ENTRIES)
# What /v1/score decides (its response's field, threshold and the variable overriding it).
SCORE_ROUTE = score_route(LINEAGES[SCORER])
