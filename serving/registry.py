"""The registry behind /reload: the MLflow `production` versions of what a server serves, read
over MLflow's REST API (the serving image carries no MLflow client), each found in the BentoML
model store and cross-checked against the sha256 the registry recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ml_assets.platform.serving_bundle import (
    EMBEDDER,
    MODEL_MANIFEST,
    PRODUCTION_ALIAS,
    BundleIntegrityError,
    ModelEntry,
    bento_tag,
)


class RegistryError(RuntimeError):
    """The registry cannot say (or the store cannot supply) the production versions."""


class NoProductionVersion(RegistryError):
    """The registry holds no `production` version of that name (or refuses the name)."""


class NotBundledError(RegistryError):
    """A production version has not been bundled into the local model store yet."""


def model_entry_from_dir(model_dir: Path) -> ModelEntry:
    """The entry a bundled model's directory holds (its ml_model.json, a bundle entry)."""
    return ModelEntry.from_json(json.loads((Path(model_dir) / MODEL_MANIFEST).read_text()))


def production_versions(
    tracking_uri: str, roles: dict[str, str], timeout_s: float = 5.0
) -> dict[str, dict[str, Any]]:
    """{role: {"version": v, "tags": {...}}} for each served model's `production` alias
    (`roles`: role -> registered model, as the bundle names them)."""
    if not tracking_uri.startswith(("http://", "https://")):
        raise RegistryError(
            f"MLFLOW_TRACKING_URI must be the MLflow server's http(s) address for /reload, "
            f"got {tracking_uri!r}"
        )
    out: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=tracking_uri.rstrip("/"), timeout=timeout_s) as client:
        for role, name in roles.items():
            try:
                resp = client.get(
                    "/api/2.0/mlflow/registered-models/alias",
                    params={"name": name, "alias": PRODUCTION_ALIAS},
                )
            except httpx.HTTPError as exc:
                raise RegistryError(f"MLflow at {tracking_uri} is unreachable: {exc}") from exc
            if 400 <= resp.status_code < 500:  # no such model or alias, or a name it refuses
                raise NoProductionVersion(f"{name} has no {PRODUCTION_ALIAS!r} alias in MLflow")
            if resp.status_code != 200:
                raise RegistryError(f"MLflow answered {resp.status_code}: {resp.text[:200]}")
            mv = resp.json()["model_version"]
            tags = {t["key"]: t["value"] for t in mv.get("tags", [])}
            out[role] = {"version": str(mv["version"]), "tags": tags}
    return out


def expected_files(role: str, name: str, tags: dict[str, str]) -> dict[str, str]:
    """The sha256 the registry recorded for each file of a version (what was validated)."""
    try:
        if role == EMBEDDER:
            return {"model.onnx": tags["sha256"], "tokenizer.json": tags["tokenizer_sha256"]}
        return {"model.onnx": tags["onnx_sha256"]}
    except KeyError as exc:
        raise RegistryError(
            f"{name}: the production version has no {exc.args[0]} tag; "
            "it was not exported by this platform"
        ) from exc


def resolve_production(
    tracking_uri: str,
    find_model_dir: Callable[[str], Path | None],
    roles: dict[str, str],
) -> dict[str, ModelEntry]:
    """The production versions as bundled entries, cross-checked against the registry's hashes
    (`roles`: role -> registered model of what this server serves)."""
    entries: dict[str, ModelEntry] = {}
    for role, prod in production_versions(tracking_uri, roles).items():
        name = roles[role]
        want = expected_files(role, name, prod["tags"])
        tag = bento_tag(name, prod["version"], want["model.onnx"])
        model_dir = find_model_dir(tag)
        if model_dir is None:
            raise NotBundledError(
                f"{name} v{prod['version']} is {PRODUCTION_ALIAS} in MLflow but is not in the "
                f"BentoML model store yet ({tag}); the model_promotion_sensor's run bundles "
                "it — reload again once that run has finished"
            )
        entry = model_entry_from_dir(model_dir)
        if any(entry.files.get(k) != v for k, v in want.items()):
            raise BundleIntegrityError(
                f"{tag}: bundled hashes {entry.files} differ from the registry's {want}"
            )
        entries[role] = entry
    return entries
