"""The defs folder (ml_assets/lineages), read once: its components' Definitions and the Catalog.

The code location (ml_assets/definitions.py), the CLI and `up` all read the declarations here,
from a checkout or an installed wheel; nothing registers itself anywhere while it loads.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster_shared.utils.config import discover_config_file

from ml_assets.components.model_lineage.component import ModelLineage
from ml_assets.components.search_index.component import SearchIndex
from ml_assets.platform.catalog import Catalog, CatalogError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
DEFS_MODULE = "ml_assets.lineages"


@dataclass(frozen=True)
class DefsFolder:
    """What the defs folder declares: its components' Definitions, and their specs."""

    defs: dg.Definitions
    catalog: Catalog


def component_tree(project: Path = PACKAGE_DIR) -> dg.ComponentTree:
    """The defs folder's components, not yet loaded.

    In a checkout, pyproject.toml's [tool.dg] names the defs folder. An installed wheel (the
    code-location image) has no pyproject.toml beside the package, so the same folder is loaded
    as a module.
    """
    if discover_config_file(project) is not None:
        return dg.ComponentTree.for_project(project)
    return dg.ComponentTree.from_module(
        defs_module=importlib.import_module(DEFS_MODULE), project_root=project.parent
    )


def catalog_of(tree: dg.ComponentTree) -> Catalog:
    """The Catalog of a tree's ModelLineage and SearchIndex components (loaded, not built)."""
    indexes = tree.get_all_components(of_type=SearchIndex)
    if len(indexes) > 1:
        # Their tables would be the same `search` schema and their assets the same keys.
        declared = ", ".join(i.spec().declared_in for i in indexes)
        raise CatalogError(f"one code location holds one SearchIndex; declared: {declared}")
    lineages = [c.spec() for c in tree.get_all_components(of_type=ModelLineage)]
    return Catalog.of(lineages, indexes[0].spec() if indexes else None)


def load_defs_folder(project: Path = PACKAGE_DIR) -> DefsFolder:
    """Every component under the defs folder, built, and the Catalog of their declarations."""
    tree = component_tree(project)
    # The catalog first: a cross-declaration mistake is reported as such, before any build.
    catalog = catalog_of(tree)
    return DefsFolder(defs=tree.build_defs(), catalog=catalog)


def load_catalog(project: Path = PACKAGE_DIR) -> Catalog:
    """The declarations alone (the CLI, `up`): the components are loaded, not built."""
    return catalog_of(component_tree(project))
