"""The bundle follows validation, not only aliases: what model_promotion_sensor reads besides
the registry, and its pure decision for a check that passed after the bundle was built.

Two cases rebuild the bundle (serving_job) by themselves:
- **search**: the bundle serves the production embedder, and a search_quality_report over that
  embedder passed that the bundle does not carry (it has none, or an older one);
- **a production version the bundle lacks**: its alias moved while its validation had not
  passed (the build was refused), and now its checks passed.

Each trigger's run key names the evidence (`search:<report>@<evaluation>`,
`validated:<model>@<version>:<evaluations>`), and the cursor keeps what was requested, so each
passing report or check causes exactly one run. The records are read by sha256 as the gate
reads them; the registry tag that copies a version's sha256 only says which records to look at:
serving_job gates the downloaded bytes again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dagster import RunRequest

from ml_assets.platform.lineage_spec import LineageSpec
from ml_assets.platform.serving_bundle import EMBEDDER
from ml_assets.platform.validation_records import (
    Evidence,
    ValidationRecords,
    chain_of,
    embedder_evidence,
    model_evidence,
    search_evidence,
)
from ml_assets.resources.storage import latest_ref


@dataclass(frozen=True)
class Bundled:
    """What the latest serving bundle holds: {registered model: version}, and the key of the
    search report it serves (None: search off in it)."""

    versions: dict[str, str] = field(default_factory=dict)
    embedder: str | None = None  # the embedder's registered model
    embedder_sha256: str | None = None
    search: str | None = None


def search_key(search: dict[str, Any]) -> str | None:
    """The identity of the passing report a search configuration comes from (None: off)."""
    if not search.get("enabled"):
        return None
    verdict = search.get("verdict") or {}
    return f"{str(search.get('report_sha256'))[:12]}@{verdict.get('evaluation_id')}"


def bundled(base_dir: str) -> Bundled | None:
    """The latest serving_bundle's manifest, read back verified (None: never built)."""
    ref = latest_ref(base_dir, "serving_bundle")
    if ref is None:
        return None
    manifest = json.loads(ref.read_verified())
    models = manifest.get("models", {})
    embedder = models.get(EMBEDDER, {})
    return Bundled(
        versions={m["registered_model"]: str(m["version"]) for m in models.values()},
        embedder=embedder.get("registered_model"),
        embedder_sha256=(embedder.get("files") or {}).get("model.onnx"),
        search=search_key(manifest.get("search") or {}),
    )


def _key(ev: Evidence) -> str | None:
    """The passing evaluations behind an approval (None: a gate is not passed)."""
    if not ev.gates or not all(passed for _, passed, _ in ev.gates):
        return None
    return ",".join(str(v.evaluation_id) for v in ev.verdicts)


def validation_key(
    records: ValidationRecords,
    spec: LineageSpec | None,
    name: str,
    version: str,
    tags: dict[str, str],
) -> str | None:
    """The passing evaluations that validate `name` v`version` (its registry tags say which
    bytes to look the records up by), or None. `spec`: the lineage `name` is the model of;
    None for the embedder."""
    if spec is not None:
        sha = tags.get("onnx_sha256")
        if not sha:
            return None
        return _key(model_evidence(records, chain_of(spec), f"{name}@{version}", sha, None))
    sha = tags.get("sha256")
    if not sha:
        return None
    variant = tags.get("variant") or "int8"
    return _key(embedder_evidence(records, variant, sha, tags.get("tokenizer_sha256", "")))


def current_search(records: ValidationRecords, bundle: Bundled | None) -> str | None:
    """The passing search report for the bundled embedder's bytes (None: none passed)."""
    if bundle is None or bundle.embedder_sha256 is None:
        return None
    return search_key(search_evidence(records, bundle.embedder_sha256))


def remember(
    cursor: str,
    production: dict[str, str | None],
    validated: dict[str, str | None],
    search: str | None,
) -> str:
    """The cursor with the evidence a requested build will see (so it is not requested again)."""
    state = json.loads(cursor)
    seen = dict(state.get("validated", {}))
    seen.update({f"{n}@{production[n]}": k for n, k in validated.items() if production.get(n)})
    state["validated"] = seen
    state["search"] = search
    return json.dumps(state, sort_keys=True)


def follow(
    cursor: str,
    production: dict[str, str | None],
    bundle: Bundled | None,
    validated: dict[str, str | None],
    search: str | None,
) -> tuple[list[RunRequest], str, str | None]:
    """Pure decision, when no alias moved: (serving_job requests, new cursor, skip reason).

    `validated`: {model: key of the passing evidence of its production version, or None} for
    the versions the bundle lacks; `search`: the key of the passing report for the bundled
    embedder, or None."""
    state = json.loads(cursor)
    seen: dict[str, str | None] = state.get("validated", {})
    if bundle is None:
        return [], cursor, "no production alias moved; no bundle built yet"
    requests = []
    for name, version in sorted(production.items()):
        key = validated.get(name)
        label = f"{name}@{version}"
        if version and bundle.versions.get(name) != version and key and seen.get(label) != key:
            requests.append(
                RunRequest(
                    run_key=f"validated:{label}:{key}",
                    tags={"ml-assets/validated": label, "ml-assets/evaluations": key},
                )
            )
    current = bundle.embedder and production.get(bundle.embedder) == bundle.versions.get(
        bundle.embedder
    )
    if current and search and search != bundle.search and search != state.get("search"):
        requests.append(RunRequest(run_key=f"search:{search}", tags={"ml-assets/search": search}))
    if not requests:
        return [], cursor, "no production alias moved; the bundle carries every passed check"
    return requests, remember(cursor, production, validated, search), None
