"""The defs folder's Definitions (ml_assets/lineages), from a checkout or an installed wheel."""

from __future__ import annotations

import importlib
from pathlib import Path

import dagster as dg
from dagster_shared.utils.config import discover_config_file

from ml_assets.core import lineage_spec

PACKAGE_DIR = Path(__file__).resolve().parents[1]
DEFS_MODULE = "ml_assets.lineages"


def after_lineages(asset: dg.AssetsDefinition, stage: str) -> dg.AssetsDefinition:
    """`asset` with a dependency on each declared lineage's `stage` asset (call it after
    `lineage_defs()`, which registers the lineages)."""
    extra = [dg.AssetDep(dg.AssetKey([s.name, stage])) for s in lineage_spec.declared()]
    return asset.map_asset_specs(lambda spec: spec.replace_attributes(deps=[*spec.deps, *extra]))


def lineage_defs() -> dg.Definitions:
    """Every component declared under ml_assets/lineages, built.

    In a checkout, pyproject.toml's [tool.dg] names the defs folder and `load_from_defs_folder`
    reads it. An installed wheel (the code-location image) has no pyproject.toml beside the
    package, so the same folder is loaded as a module.
    """
    if discover_config_file(PACKAGE_DIR) is not None:
        return dg.load_from_defs_folder(path_within_project=PACKAGE_DIR)
    tree = dg.ComponentTree.from_module(
        defs_module=importlib.import_module(DEFS_MODULE), project_root=PACKAGE_DIR.parent
    )
    return tree.build_defs()
