"""The Catalog: the declared lineages and search index, built once from the defs folder and
checked across declarations when it is built."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace

import pytest
from dagster.components.testing import create_defs_folder_sandbox

from ml_assets.components.defs_folder import catalog_of, load_catalog
from ml_assets.platform import gate_subjects
from ml_assets.platform.catalog import Catalog, CatalogError
from ml_assets.search.spec import shipped

SHIPPED = load_catalog()
FRAUD, CURVES = SHIPPED.lineage("fraud"), SHIPPED.lineage("curves")


def test_the_loader_reads_the_shipped_defs_folder():
    assert [s.name for s in SHIPPED.lineages] == ["curves", "fraud"]
    assert SHIPPED.index == shipped()
    assert SHIPPED.embedder_model() == shipped().registered_model
    assert SHIPPED.score_lineage() == FRAUD
    assert SHIPPED.registered_models() == sorted(
        {FRAUD.registered_model, CURVES.registered_model, shipped().registered_model}
    )
    assert SHIPPED.bundle_needs() == {FRAUD.registered_model, shipped().registered_model}


def test_queries_by_name_and_by_registered_model():
    catalog = Catalog(lineages=(FRAUD, CURVES), index=shipped())
    assert catalog.lineages == (CURVES, FRAUD)  # ordered by name, whatever the input order
    assert catalog.by_model(CURVES.registered_model) == catalog.by_name("curves") == CURVES
    assert catalog.by_model(shipped().registered_model) is None  # the embedder is no lineage
    assert catalog.by_name("nope") is None
    with pytest.raises(KeyError, match="declared: \\['curves', 'fraud'\\]"):
        catalog.lineage("nope")
    with pytest.raises(FrozenInstanceError):
        catalog.index = None  # type: ignore[misc]


def test_a_catalog_without_an_index_serves_no_embedder():
    catalog = Catalog(lineages=(CURVES,))
    assert catalog.embedder_model() is None and catalog.score_lineage() is None
    assert catalog.registered_models() == [CURVES.registered_model]
    assert catalog.bundle_needs() == frozenset()
    assert gate_subjects.names(catalog) == [CURVES.registered_model]
    with pytest.raises(ValueError, match="unknown model 'text-embedder'"):
        gate_subjects.subject(catalog, "text-embedder")


def test_declarations_that_clash_are_refused_naming_both():
    twin = replace(CURVES, name="curves_copy")
    with pytest.raises(CatalogError, match="declared by two lineages: 'curves' and 'curves_copy'"):
        Catalog(lineages=(CURVES, twin))
    with pytest.raises(CatalogError, match="lineage 'curves' is declared twice"):
        Catalog(lineages=(CURVES, replace(CURVES, registered_model="other")))
    routed = replace(CURVES, name="other", registered_model="o", score_routes=FRAUD.score_routes)
    with pytest.raises(CatalogError, match="'fraud' and 'other' both set score_routes"):
        Catalog(lineages=(FRAUD, routed))
    # The embedder's name taken by a lineage, whichever was declared first.
    clash = replace(shipped(), registered_model=FRAUD.registered_model)
    with pytest.raises(CatalogError, match="is lineage 'fraud''s model"):
        Catalog(lineages=(FRAUD,), index=clash)
    embedder_named = replace(CURVES, registered_model=shipped().registered_model)
    with pytest.raises(CatalogError, match="is lineage 'curves''s model"):
        Catalog(lineages=(embedder_named,), index=shipped())


def test_a_changed_declaration_is_a_new_catalog():
    """What a test (or a reload) does instead of patching state: a catalog of its own."""
    strict = replace(FRAUD, promotion_margin=0.0)
    changed = replace(SHIPPED, lineages=(CURVES, strict))
    assert changed.by_model(FRAUD.registered_model).promotion_margin == 0.0
    assert SHIPPED.by_model(FRAUD.registered_model).promotion_margin == FRAUD.promotion_margin
    margin = gate_subjects.subject(changed, FRAUD.registered_model).margin
    assert margin == 0.0


INDEX_YAML = """
type: ml_assets.components.SearchIndex
attributes:
  registered_model: {model}
  tenants: [{{id: acme}}]
"""


def test_a_defs_folder_with_two_search_indexes_is_refused():
    with create_defs_folder_sandbox() as sandbox:
        for name in ("one", "two"):
            folder = sandbox.defs_folder_path / name
            folder.mkdir()
            (folder / "defs.yaml").write_text(INDEX_YAML.format(model=f"{name}-embedder"))
        with sandbox.build_component_tree() as tree:
            with pytest.raises(CatalogError, match="one code location holds one SearchIndex"):
                catalog_of(tree)
