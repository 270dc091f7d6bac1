"""`POST /reload` behind the API: the admin key; which models it serves (the set the bundle
pins, so a bundle may add, drop or change lineages); which search configuration goes with the
production versions (the bundle's judged one, or the current one while the embedder is the
same; otherwise search is switched off with the reason); and the declared lineages."""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException, InvalidArgument, ServiceUnavailable

from ml_assets.platform.serving_bundle import (
    EMBEDDER,
    BundleIntegrityError,
    ModelEntry,
    entries_of,
)
from serving import registry, runtime
from serving.bundled import find_model_dir


def production_set(
    current: runtime.LoadedModels | None,
    bundled: dict[str, ModelEntry],
    bundle: dict[str, Any] | None,
    on_error: Callable[[str, str, Exception], None],
) -> tuple[dict[str, ModelEntry], dict[str, Any], dict[str, dict[str, Any]]]:
    """What a reload serves: the production versions of the models `bundle` pins (else of the
    models served now), their search configuration and the declared lineages; 409 when a
    version is not in the model store yet, 503 when the registry cannot say."""
    pins = pinned(bundle)
    try:
        entries = registry.resolve_production(
            os.environ.get("MLFLOW_TRACKING_URI", ""),
            find_model_dir,
            reload_roles(current, bundled, pins),
        )
    except registry.NotBundledError as exc:
        on_error("not_bundled", "reload", exc)
        raise BentoMLException(str(exc), error_code=HTTPStatus.CONFLICT) from exc
    except registry.NoProductionVersion as exc:
        on_error("not_in_production", "reload", exc)
        if pins is None:  # a model served now lost its alias: the registry cannot say
            raise ServiceUnavailable(str(exc)) from exc
        raise BentoMLException(
            f"{exc}: the bundle pins a model that is not in production",
            error_code=HTTPStatus.CONFLICT,
        ) from exc
    except (registry.RegistryError, BundleIntegrityError) as exc:
        on_error("registry", "reload", exc)
        raise ServiceUnavailable(str(exc)) from exc
    search = search_for_reload(current, entries, bundle, pins)
    if pins is not None:
        # Same versions and files as the store's (search_for_reload refuses others), but the
        # bundle's own entries: the store keeps the ml_model.json of a version's first bundle,
        # and its card (and gate record) must be the ones this bundle pins.
        entries = {role: pins[role] for role in entries}
    return entries, search, declared_for_reload(current, entries, bundle)


def require_admin_key(ctx: bentoml.Context) -> None:
    """401 without a key, 403 with a wrong one (or when reload is disabled: no key is set)."""
    expected = os.environ.get("ML_SERVING_API_KEY")
    given = ctx.request.headers.get("x-api-key") or ctx.request.headers.get(
        "authorization", ""
    ).removeprefix("Bearer ")
    if not expected:
        raise BentoMLException(
            "reload is disabled: start the server with ML_SERVING_API_KEY set",
            error_code=HTTPStatus.FORBIDDEN,
        )
    if not given:
        raise BentoMLException(
            "reload needs the API key in the X-API-Key header",
            error_code=HTTPStatus.UNAUTHORIZED,
        )
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise BentoMLException("wrong API key", error_code=HTTPStatus.FORBIDDEN)


def pinned(bundle: dict[str, Any] | None) -> dict[str, ModelEntry] | None:
    """The models a reload's `bundle` pins, by role (400 if it is not a bundle manifest)."""
    if bundle is None:
        return None
    try:
        pins = entries_of(bundle)
        if not pins:
            raise ValueError("it pins no models")
        if not isinstance(bundle.get("search") or {}, dict):
            raise ValueError("`search` must be an object")
        for name, status in (bundle.get("lineages") or {}).items():
            if not isinstance(status, dict) or not isinstance(status.get("served"), bool):
                raise ValueError(f"lineages.{name} must be an object with a boolean `served`")
    except (AttributeError, BundleIntegrityError, KeyError, TypeError, ValueError) as exc:
        raise InvalidArgument(f"bundle: not a serving bundle manifest ({exc})") from exc
    return pins


def reload_roles(
    current: runtime.LoadedModels | None,
    bundled: dict[str, ModelEntry],
    pins: dict[str, ModelEntry] | None,
) -> dict[str, str]:
    """role -> registered model of what the reload serves: the set the bundle pins (lineages
    may come and go with it), else the set served now, else this Bento's own."""
    source = pins if pins is not None else current.entries if current is not None else bundled
    return {r: e.registered_model for r, e in source.items()}


def search_for_reload(
    current: runtime.LoadedModels | None,
    entries: dict[str, ModelEntry],
    bundle: dict[str, Any] | None,
    pins: dict[str, ModelEntry] | None,
) -> dict[str, Any]:
    """The search configuration to serve with `entries` (409 if `bundle` pins other versions)."""
    if bundle is not None and pins is not None:
        if {r: (e.label, e.files) for r, e in pins.items()} != {
            r: (e.label, e.files) for r, e in entries.items()
        }:
            raise BentoMLException(
                f"the bundle pins {sorted(e.label for e in pins.values())}, production "
                f"is {sorted(e.label for e in entries.values())}; a newer promotion is in "
                "flight (its serving run reloads with its own bundle)",
                error_code=HTTPStatus.CONFLICT,
            )
        return dict(bundle.get("search") or {})
    if current is not None and current.entries.get(EMBEDDER) == entries[EMBEDDER]:
        return current.search
    return {
        "enabled": False,
        "reason": "reloaded to a new embedder without its bundle: the search configuration "
        "validated for it is unknown here (POST /reload with the serving_bundle manifest)",
    }


def declared_for_reload(
    current: runtime.LoadedModels | None,
    entries: dict[str, ModelEntry],
    bundle: dict[str, Any] | None,
) -> dict[str, dict[str, Any]]:
    """The declared lineages served with `entries`: the bundle's list, else the current one."""
    if bundle is not None:
        return runtime.declared_of(entries, bundle.get("lineages"))
    if current is not None:
        return current.declared
    return runtime.declared_of(entries, None)
