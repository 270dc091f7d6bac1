"""The serving runtime without BentoML: verified model loading (one generation of models, with
/v1/score's decision) and the release file that keeps every worker on the same versions. The
registry lookup behind /reload is serving/registry.py.

Imports onnxruntime, tokenizers and numpy — never torch or scikit-learn.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml_assets.platform.lineage_spec import LineageSpec
from ml_assets.platform.score_route import ScoreRoute
from ml_assets.platform.serving_bundle import (
    EMBEDDER,
    BundleIntegrityError,
    ModelEntry,
    lineage_of_entry,
    require_verdicts,
    score_role,
    score_route,
    served_lineages,
    verify_model_dir,
    write_json_atomic,
)
from ml_assets.search.text_embedder import OnnxTextEmbedder

log = logging.getLogger("bentoml.ml_assets")  # BentoML formats and ships "bentoml.*"

MAX_BATCH = 1_000
MAX_EMBED_TEXTS = 256
MAX_TEXT_CHARS = 20_000


@dataclass
class LoadedModels:
    """One generation of loaded models; requests keep the object they started with."""

    entries: dict[str, ModelEntry]
    embedder: OnnxTextEmbedder
    generation: int
    # The search configuration the quality report judged for this embedder (or why search is
    # not served): it swaps together with the models.
    search: dict[str, Any] = field(default_factory=dict)
    # Each declared lineage's model, by role (the lineage's name).
    tabular: dict[str, Any] = field(default_factory=dict)
    # Every lineage the bundle declared, served or not, by name: {"registered_model", "served",
    # "reason"?}. A route of a declared lineage that is not served answers 503 with the reason;
    # any other unserved name, 404 (serving/lineage_path.py).
    declared: dict[str, dict[str, Any]] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.time)
    # /v1/score's decision, as the scorer's lineage declares it, and the threshold it applies
    # (its variable read once per generation); set by load_models.
    score_route: ScoreRoute | None = None
    threshold: float | None = None
    # The served lineages' specs (each entry's schema), by role.
    specs: dict[str, LineageSpec] = field(init=False)

    def __post_init__(self) -> None:
        self.specs = served_lineages(self.entries)

    def versions(self) -> dict[str, str]:
        return {role: e.label for role, e in self.entries.items()}

    def lineage(self, name: str) -> tuple[str, LineageSpec] | None:
        """(role, spec) of the served lineage whose routes are /v1/models/<name>/..."""
        return next(((r, s) for r, s in self.specs.items() if s.name == name), None)


def declared_of(
    entries: dict[str, ModelEntry], bundle_lineages: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """The declared lineages a bundle lists (`lineages` of bundle.json), else those it serves."""
    if bundle_lineages:
        return {str(k): dict(v) for k, v in bundle_lineages.items()}
    return {
        spec.name: {"registered_model": spec.registered_model, "served": True}
        for spec in served_lineages(entries).values()
    }


def load_models(
    release: Release,
    locate: Callable[[ModelEntry], Path],
    previous: LoadedModels | None = None,
    embed_threads: int = 1,
) -> LoadedModels:
    """The generation `release` names: check each entry carries passed gate verdicts and every
    file its pinned sha256, then build the ONNX Runtime sessions. A model whose entry is
    unchanged from `previous` keeps its session (its bytes were verified when it was loaded),
    so a reload builds only what changed."""
    entries = release.entries
    if EMBEDDER not in entries:
        raise BundleIntegrityError(f"the bundle has no {EMBEDDER} model")
    scoring = score_role(entries)
    lineage = lineage_of_entry(entries[scoring]) or {}
    task = lineage.get("task")
    if task != "classification":
        raise BundleIntegrityError(
            f"{entries[scoring].label} declares score_routes, but /v1/score answers a "
            f"probability and a verdict: its lineage must be a classification one, not {task!r}"
        )
    route = score_route(LineageSpec.from_dict(lineage))
    for entry in entries.values():
        require_verdicts(entry)

    def kept(role: str) -> bool:
        return previous is not None and previous.entries.get(role) == entries[role]

    if kept(EMBEDDER):
        embedder = previous.embedder
    else:
        emb_dir = locate(entries[EMBEDDER])
        emb_files = verify_model_dir(emb_dir, entries[EMBEDDER])
        embedder = OnnxTextEmbedder(
            emb_files["model.onnx"],
            emb_dir / "tokenizer.json",  # verified above; the tokenizer reads it by path
            max_length=int(entries[EMBEDDER].info.get("max_length", 256)),
            intra_op_threads=embed_threads,
        )
    tabular = {
        role: previous.tabular[role]
        if kept(role) and role in previous.tabular
        else tabular_scorer(entry, locate)
        for role, entry in entries.items()
        if role != EMBEDDER
    }
    return LoadedModels(
        dict(entries),
        embedder,
        release.generation,
        search_for(entries[EMBEDDER], release.search),
        tabular,
        declared_of(entries, release.declared),
        score_route=route,
        threshold=route.threshold_from(os.environ),
    )


def tabular_scorer(entry: ModelEntry, locate: Callable[[ModelEntry], Path]) -> Any:
    """A declared lineage's model (its verdicts checked by load_models): bytes checked, its
    feature schema from the lineage the entry carries."""
    from ml_assets.tabular.scorer import OnnxTabularScorer

    lineage = lineage_of_entry(entry)
    if lineage is None:
        raise BundleIntegrityError(f"{entry.label}: the manifest declares no lineage schema")
    spec = LineageSpec.from_dict(lineage)
    files = verify_model_dir(locate(entry), entry)
    return OnnxTabularScorer(files["model.onnx"], spec.features, spec.task)


def search_for(embedder: ModelEntry, search: dict[str, Any] | None) -> dict[str, Any]:
    """The bundle's search configuration if it was judged for exactly this embedder's bytes."""
    if not search:
        return {"enabled": False, "reason": "the bundle carries no search configuration"}
    if search.get("enabled") and search.get("embedder_sha256") != embedder.files["model.onnx"]:
        return {
            "enabled": False,
            "reason": f"the bundled search configuration was judged for embedder "
            f"{str(search.get('embedder_sha256'))[:12]}, not {embedder.label}; rebuild the "
            "bundle (serving_job) after search_quality_report ran with this embedder",
        }
    if search.get("enabled"):
        from ml_assets.search.config import SearchServing

        try:
            SearchServing.from_json(search.get("config"), embedder.files["model.onnx"])
        except ValueError as exc:
            return {
                "enabled": False,
                "reason": f"the bundled search configuration is not one this server can apply "
                f"exactly ({exc}); rebuild the bundle (serving_job) from a passed report",
            }
    return dict(search)


def describe(models: LoadedModels | None) -> dict[str, Any]:
    """What GET /models says about a generation (nothing before one is loaded)."""
    if models is None:
        return {"models": {}, "search": {}, "lineages": {}, "embedder_providers": []}
    return {
        "models": {
            role: {
                "registered_model": e.registered_model,
                "version": e.version,
                "bento_model": e.bento_tag,
                "sha256": e.files,
                "provenance": e.provenance,
                "info": e.info,
                "gate": None if e.gate is None else e.gate.to_json(),
            }
            for role, e in models.entries.items()
        },
        "search": models.search,
        # Every lineage the bundle declared, served or not (and why not).
        "lineages": models.declared,
        # ONNX Runtime's providers of the embedder session (CUDA first when it runs there).
        "embedder_providers": models.embedder.providers,
    }


# ---- the release file: every worker serves the generation it names -------------------------


def release_path() -> Path:
    """Shared by the workers of one server (they share a parent process) unless set by env."""
    if env := os.environ.get("ML_SERVING_RELEASE_FILE"):
        return Path(env)
    return Path(tempfile.gettempdir()) / f"ml-assets-release-{os.getppid()}.json"


def server_identity() -> str:
    """The `bentoml serve` process this worker belongs to: its parent's pid and start time.

    A release is followed only by the workers of the server that wrote it: a restarted server
    starts on its own Bento's bundle, never on what an earlier server was reloaded to (the
    release file's path, and a pid alone, can outlive that server)."""
    ppid = os.getppid()
    try:
        # Field 22 of /proc/<pid>/stat, counted after the parenthesised command name.
        started = Path(f"/proc/{ppid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        started = "unknown"
    return f"{ppid}@{started}"


@dataclass(frozen=True)
class Release:
    generation: int
    entries: dict[str, ModelEntry]
    search: dict[str, Any]
    declared: dict[str, dict[str, Any]] = field(default_factory=dict)


def write_release(path: Path, models: LoadedModels, server: str | None = None) -> None:
    write_json_atomic(
        path,
        {
            "generation": models.generation,
            "server": server or server_identity(),
            "written_at": time.time(),
            "models": {r: e.to_json() for r, e in models.entries.items()},
            "search": models.search,
            "declared": models.declared,
        },
    )


def read_release(path: Path, server: str | None = None) -> Release | None:
    """This server's latest release, or None (none yet, or written by another server)."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if data.get("server") != (server or server_identity()):
        return None
    return Release(
        int(data["generation"]),
        {r: ModelEntry.from_json(d) for r, d in data["models"].items()},
        dict(data.get("search") or {}),
        dict(data.get("declared") or {}),
    )


class ReleaseWatcher(threading.Thread):
    """Polls the release file; when another worker reloaded, this one loads the same models."""

    def __init__(self, path: Path, on_change: Callable[[], None], interval_s: float = 0.2):
        super().__init__(name="ml-assets-release-watcher", daemon=True)
        self.path, self.on_change, self.interval_s = path, on_change, interval_s
        self._stop = threading.Event()
        self._mtime = self._stat()

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def run(self) -> None:
        while not self._stop.wait(self.interval_s):
            mtime = self._stat()
            if mtime != self._mtime:
                self._mtime = mtime
                try:
                    self.on_change()
                except Exception:  # keep serving the current models; the log says why
                    log.exception("could not load the release in %s", self.path)

    def stop(self) -> None:
        self._stop.set()
