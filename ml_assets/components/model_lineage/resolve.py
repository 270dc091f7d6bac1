"""From a lineage's declaration (a `ModelLineage`'s fields, `DeclaredLineage`) to what its assets
run: imported functions and code versions."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from ml_assets.components.model_lineage.fields import DeclaredLineage
from ml_assets.platform.hashing import canonical_json, sha256_bytes, sha256_file
from ml_assets.platform.lineage_spec import LineageSpec
from ml_assets.tabular.model import ONNX_TARGET_OPSET, check_estimator, select_features

# The platform's own version of each stage's code; bump one when its asset function changes.
STAGE_CODE = {
    "raw_data": 1,
    "splits": 1,
    "model": 1,
    "onnx": 1,
    "export_validation_report": 1,
}


@dataclass(frozen=True)
class LineagePlan:
    """A lineage ready to build: its fields, its spec, its functions and its code versions."""

    lineage: DeclaredLineage
    spec: LineageSpec
    generator: Callable[[int, int], Any] | None
    generator_ref: str | None
    trainer_ref: str
    trainer_fn: Callable[..., Any]
    code_versions: Mapping[str, str]

    def key(self, stage: str) -> dg.AssetKey:
        """`[name, stage]`: every asset of a lineage is keyed by its name, then its stage."""
        return dg.AssetKey([self.lineage.name, stage])

    def ins(self, *stages: str) -> dict[str, dg.AssetIn]:
        """The inputs of an asset that reads these stages of its own lineage."""
        return {s: dg.AssetIn(self.key(s)) for s in stages}

    def trainer_args(
        self, seed: int | None = None, params: Mapping[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """(seed, params) of one training: the YAML's, with a run's overrides on top."""
        merged = {**self.lineage.trainer.params, **(params or {})}
        return (self.lineage.trainer.seed if seed is None else seed), merged

    def build_estimator(
        self, seed: int | None = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        """Call the train function with the arguments it asks for and check what it returns."""
        feats = self.spec.features
        seed, merged = self.trainer_args(seed, params)
        available: dict[str, Any] = {
            "categorical": [f.name for f in feats if f.kind == "category"],
            "numeric": [f.name for f in feats if f.kind != "category"],
            "features": list(feats),
            "seed": seed,
            "task": self.spec.task,
        }
        accepted = inspect.signature(self.trainer_fn).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
        unknown = sorted(k for k in merged if k not in accepted and k not in available)
        if unknown and not takes_any:
            raise TypeError(
                f"{self.trainer_ref} takes no parameter {unknown}; its parameters: "
                f"{sorted(k for k in accepted if k not in available)}"
            )
        kwargs = {k: v for k, v in available.items() if takes_any or k in accepted}
        estimator = self.trainer_fn(**kwargs, **merged)
        checked = check_estimator(estimator, self.spec.task, self.trainer_ref)
        return select_features(checked, self.spec.features)


def absolute_module(module: str, context: dg.ComponentLoadContext | None, field: str) -> str:
    """`.train` -> `<defs module of this component's folder>.train`; absolute names unchanged."""
    if not module.startswith("."):
        return module
    try:
        base = context.defs_relative_module_name(context.path) if context else None
    except Exception:  # a context with no component path: built outside a defs folder
        base = None
    if base is None:
        raise ValueError(
            f"{field}: {module!r} is relative to a defs folder, but this ModelLineage was not "
            "loaded from one; use an absolute `package.module:function` path"
        )
    depth = len(module) - len(module.lstrip("."))
    parts = base.split(".")
    if depth > 1:
        parts = parts[: -(depth - 1)]
    return ".".join([*parts, module.lstrip(".")])


def resolve_function(
    ref: str, context: dg.ComponentLoadContext | None, field: str
) -> tuple[str, Callable[..., Any]]:
    """Import `module:function`; returns the absolute reference and the callable."""
    module_name, _, attr = ref.partition(":")
    absolute = absolute_module(module_name, context, field)
    try:
        module = importlib.import_module(absolute)
    except ImportError as exc:
        hint = (
            f" ({module_name!r} is relative to this component's defs folder; outside a defs "
            "folder use an absolute `package.module:function` path)"
            if module_name.startswith(".")
            else ""
        )
        raise ValueError(f"{field}: cannot import {absolute!r}: {exc}{hint}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"{field}: {absolute!r} has no function {attr!r}")
    return f"{absolute}:{attr}", fn


def _source_sha(fn: Callable[..., Any]) -> str:
    """The sha256 of the file that defines `fn`: editing it makes its stage stale."""
    path = inspect.getsourcefile(fn)
    return sha256_file(path) if path else ""


def code_versions(lineage: DeclaredLineage, sources: Mapping[str, str]) -> dict[str, str]:
    """Each stage's code version: the platform's stage code plus what the YAML says about it."""
    common = {
        "task": lineage.task,
        "label": lineage.label,
        # Sensitivity governs the inference log only: marking a feature trains nothing anew.
        "features": [f.model_dump(exclude={"sensitive"}) for f in lineage.features],
    }
    inputs: dict[str, Any] = {
        "raw_data": {
            **common,
            "dataset": lineage.dataset.model_dump(),
            "source": sources.get("generator"),
        },
        "splits": {**common, "split": lineage.split.model_dump(), "id": lineage.dataset.id_column},
        "model": {**common, "trainer": lineage.trainer.model_dump(), "source": sources["trainer"]},
        "onnx": {**common, "opset": ONNX_TARGET_OPSET},
        "export_validation_report": {
            **common,
            "metrics": lineage.metrics.model_dump(),
            "export_validation": lineage.export_validation.model_dump(),
        },
    }
    out = {}
    for stage, value in inputs.items():
        digest = sha256_bytes(canonical_json(value))[:10]
        out[stage] = f"{lineage.name}/{stage}@{STAGE_CODE[stage]}+{digest}"
    return out


def resolve_plan(lineage: DeclaredLineage, context: dg.ComponentLoadContext | None) -> LineagePlan:
    """Import the lineage's functions (failing at load time, not at run time) and version it."""
    generator = generator_ref = None
    sources: dict[str, str] = {}
    if lineage.dataset.generator:
        generator_ref, generator = resolve_function(
            lineage.dataset.generator, context, "dataset.generator"
        )
        sources["generator"] = _source_sha(generator)
    trainer_ref, trainer_fn = resolve_function(
        lineage.trainer.function, context, "trainer.function"
    )
    sources["trainer"] = _source_sha(trainer_fn)
    plan = LineagePlan(
        lineage=lineage,
        spec=lineage.spec(),
        generator=generator,
        generator_ref=generator_ref,
        trainer_ref=trainer_ref,
        trainer_fn=trainer_fn,
        code_versions=code_versions(lineage, sources),
    )
    plan.build_estimator()  # a bad train function fails `dg check defs`, not the run
    return plan
