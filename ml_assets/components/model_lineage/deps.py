"""Edges from every declared lineage's stage into a platform-wide asset (what the UI shows)."""

import dagster as dg

from ml_assets.platform.catalog import Catalog


def after_lineages(asset: dg.AssetsDefinition, stage: str, catalog: Catalog) -> dg.AssetsDefinition:
    """`asset` with a dependency on each of the catalog's lineages' `stage` asset."""
    extra = [dg.AssetDep(dg.AssetKey([s.name, stage])) for s in catalog.lineages]
    return asset.map_asset_specs(lambda spec: spec.replace_attributes(deps=[*spec.deps, *extra]))
