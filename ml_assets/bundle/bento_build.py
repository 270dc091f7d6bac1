"""Import verified model directories into the BentoML model store and build the Bento.

Runs as `python -m ml_assets.bundle.bento_build SPEC.json` in a child process, so BENTOML_HOME is
read fresh (BentoML fixes its store paths at import) and the service module imported by the build
never loads into the Dagster process. Prints one JSON line: the Bento's tag, path and size.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from ml_assets.platform.artifacts import atomic_write
from ml_assets.platform.child_json import child_main
from ml_assets.platform.model_card import card_markdown
from ml_assets.platform.serving_bundle import MODEL_MANIFEST, ModelEntry, verify_model_dir

BENTO_NAME = "ml-assets"
# What the service imports from ml_assets (paths below it, without .py): no Dagster, no torch,
# no scikit-learn. Each package's __init__ is docstring-only, so the Bento can carry it.
PLATFORM_MODULES = (
    "__init__",
    "platform/__init__",
    "search/__init__",
    "tabular/__init__",
    "monitoring/__init__",
    "search/text_embedder",
    "search/query",
    "search/config",
    "search/sql",
    "search/index",
    "search/writer",
    "search/tables",
    "search/switch",
    "search/corpus",
    "platform/serving_bundle",
    "platform/evidence",  # serving_bundle.missing_verdicts applies the one evidence rule
    "platform/gate_record",  # each bundle entry's gate record
    "platform/score_route",  # /v1/score's declared decision
    # search/index appends search.index.updated.v1 (imported, not called, in serving)
    "platform/events",
    "platform/lineage_spec",
    "tabular/scorer",
    "platform/model_card",  # serving/card_routes.py renders and verifies the bundled cards
    # serving/inference_log.py and feedback_routes.py name their tables
    "monitoring/inference_tables",
)
SERVING_MODULES = (
    "__init__",
    "service",
    "runtime",
    "lifecycle",
    "registry",
    "metrics",
    "errors",
    "openapi",
    "openapi_parts",
    "tabular",
    "edge",
    "fastpath",
    "cache",
    "batcher",
    "embed_path",
    "bundled",
    "schemas",
    "search_path",
    "reload_path",
    "lineage_path",
    "card_routes",
    "request_ids",
    "inference_log",
    "feedback_routes",
)
# The serving environment, pinned to what this platform validated with.
SERVING_PACKAGES = (
    "bentoml",
    "onnxruntime",
    "tokenizers",
    "numpy",
    "psycopg",
    "psycopg-binary",
    "pgvector",
    "httpx",
    "pydantic",
    "prometheus-client",
    # uvicorn (BentoML's server) picks these up when installed; BentoML does not depend on
    # them, and without them a request costs 55-75% more (shared/STACK.md).
    "uvloop",
    "httptools",
    "jsonschema",  # imported by ml_assets/platform/events.py
)


def pinned_packages() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in SERVING_PACKAGES:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out


def _sources() -> list[tuple[str, Path]]:
    # Where the two packages live, looked up only when a Bento is built.
    import ml_assets
    import serving

    pkg = Path(ml_assets.__file__).parent
    srv = Path(serving.__file__).parent
    return [(f"ml_assets/{n}.py", pkg / f"{n}.py") for n in PLATFORM_MODULES] + [
        (f"serving/{n}.py", srv / f"{n}.py") for n in SERVING_MODULES
    ]


def bento_version(bundle_sha256: str) -> str:
    """Same models + same service code = the same Bento version (and the build is skipped)."""
    digest = hashlib.sha256(bundle_sha256.encode())
    for rel, path in _sources():
        digest.update(rel.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def stage_source(ctx: Path, bundle: dict[str, Any]) -> None:
    """The build context: the service, the platform modules it imports, and bundle.json."""
    (ctx / "serving").mkdir(parents=True)
    for rel, path in _sources():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, ctx / rel)
    (ctx / "serving" / "bundle.json").write_text(json.dumps(bundle, indent=2, sort_keys=True))
    # Each card for people beside the manifest that pins it (the service answers the pinned one).
    (ctx / "serving" / "cards").mkdir()
    for role, entry in bundle["models"].items():
        if card := entry.get("info", {}).get("card"):
            (ctx / "serving" / "cards" / f"{role}.md").write_text(card_markdown(card))


def import_model(entry: ModelEntry, model_dir: Path) -> str:
    """Put one verified model directory into the store under its pinned tag (idempotent)."""
    import bentoml

    verify_model_dir(model_dir, entry)
    tag = entry.bento_tag
    try:
        existing = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        existing = None
    if existing is not None:
        verify_model_dir(Path(existing.path), entry)  # same tag must mean the same bytes
        # Same files, but this bundle's entry (its card, gate record): a /reload without a
        # bundle reads the entry from here, and must find the newest bundle's, not the first's.
        stored = Path(existing.path) / MODEL_MANIFEST
        if stored.read_bytes() != (model_dir / MODEL_MANIFEST).read_bytes():
            atomic_write(stored, (model_dir / MODEL_MANIFEST).read_bytes())
        return str(existing.tag)
    labels = {
        "registered_model": entry.registered_model,
        "mlflow_version": entry.version,
        "sha256": entry.files["model.onnx"],
        "role": entry.role,
    }
    with bentoml.models.create(tag, labels=labels, metadata={"files": entry.files}) as model:
        for name in [*entry.files, MODEL_MANIFEST]:
            shutil.copy2(model_dir / name, Path(model.path) / name)
    return tag


def build(spec: dict[str, Any]) -> dict[str, Any]:
    import bentoml

    entries = [ModelEntry.from_json(m["entry"]) for m in spec["models"]]
    tags = [import_model(e, Path(m["dir"])) for e, m in zip(entries, spec["models"], strict=True)]
    version = bento_version(spec["bundle_sha256"])
    try:
        bento = bentoml.bentos.get(f"{BENTO_NAME}:{version}")
        reused = True
    except bentoml.exceptions.NotFound:
        ctx = Path(spec["staging"]) / "ctx"
        stage_source(ctx, spec["bundle"])
        # The build imports the service to read its APIs: point it at this bundle's manifest
        # (an editable install of the repo may shadow the staged copy of the module).
        os.environ["ML_SERVING_BUNDLE"] = str(ctx / "serving" / "bundle.json")
        bento = bentoml.bentos.build(
            "serving.service:MLService",
            name=BENTO_NAME,
            version=version,
            build_ctx=str(ctx),
            include=[
                "serving/*.py",
                "serving/bundle.json",
                "serving/cards/*.md",
                "ml_assets/**/*.py",
            ],
            labels={"bundle_sha256": spec["bundle_sha256"][:63]},
            description="ml-assets serving: every promoted model, embeddings and search",
            python={"packages": pinned_packages(), "lock_packages": False},
            docker={"python_version": "3.11"},
            models=tags,
        )
        reused = False
    path = Path(bento.path)
    # The local store references the models; `bentoml export`/containerize copies them in.
    dirs = [path, *(Path(bentoml.models.get(t).path) for t in tags)]
    size = sum(f.stat().st_size for d in dirs for f in d.rglob("*") if f.is_file())
    dockerfiles = sorted(str(p) for p in path.rglob("Dockerfile*"))
    return {
        "tag": str(bento.tag),
        "path": str(path),
        "size_bytes": size,
        "dockerfile": dockerfiles[0] if dockerfiles else None,
        "model_tags": tags,
        "reused": reused,
    }


if __name__ == "__main__":
    sys.exit(child_main(build, sys.argv))
