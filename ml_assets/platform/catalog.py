"""The declared platform, frozen: every lineage and the search index, as the defs folder says.

`ml_assets.components.defs_folder.load_catalog` builds it once from the YAML (inside the code
location's Definitions, the CLI and `up` alike) and it travels as an argument to whatever
needs the whole declaration: the gate, the sensors, the bundle, the nightly, the status. The
cross-checks between declarations (two lineages on one registered model, the embedder's name
taken by a lineage, two lineages on /v1/score) run when one is built, so a catalog that exists
is consistent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ml_assets.platform.lineage_spec import LineageSpec


class CatalogError(ValueError):
    """Two declarations that cannot both hold; the message names both."""


class DeclaredIndex(Protocol):
    """What the catalog reads of a declared search index (`search.spec.SearchIndexSpec` is one):
    the platform below search knows an index only by these."""

    @property
    def name(self) -> str: ...

    @property
    def declared_in(self) -> str: ...

    @property
    def registered_model(self) -> str: ...


@dataclass(frozen=True)
class Catalog:
    """The declared lineages (ordered by name) and the declared search index, if any."""

    lineages: tuple[LineageSpec, ...] = ()
    index: DeclaredIndex | None = None
    _by_model: dict[str, LineageSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.lineages, key=lambda s: s.name))
        object.__setattr__(self, "lineages", ordered)
        by_model: dict[str, LineageSpec] = {}
        names: dict[str, LineageSpec] = {}
        for spec in ordered:
            known = by_model.get(spec.registered_model)
            if known is not None:
                raise CatalogError(
                    f"registered model {spec.registered_model!r} is declared by two lineages: "
                    f"{known.name!r} and {spec.name!r}"
                )
            if spec.name in names:
                raise CatalogError(f"lineage {spec.name!r} is declared twice")
            by_model[spec.registered_model] = names[spec.name] = spec
        routed = [s.name for s in ordered if s.score_routes]
        if len(routed) > 1:
            raise CatalogError(
                f"lineages {routed[0]!r} and {routed[1]!r} both set score_routes: only one model "
                "can answer /v1/score"
            )
        owner = by_model.get(self.index.registered_model) if self.index else None
        if self.index is not None and owner is not None:
            # Reported as the index's mistake: the embedder is the one to rename.
            raise CatalogError(
                f"search index {self.index.name!r} ({self.index.declared_in}): registered_model "
                f"{self.index.registered_model!r} is lineage {owner.name!r}'s model; give the "
                "embedder its own name"
            )
        object.__setattr__(self, "_by_model", by_model)

    @classmethod
    def of(cls, lineages: Iterable[LineageSpec], index: DeclaredIndex | None) -> Catalog:
        return cls(lineages=tuple(lineages), index=index)

    def by_model(self, registered_model: str) -> LineageSpec | None:
        """The lineage whose registered model is `registered_model`, if any."""
        return self._by_model.get(registered_model)

    def by_name(self, name: str) -> LineageSpec | None:
        """The declared lineage called `name` (its asset key prefix), if any."""
        return next((s for s in self.lineages if s.name == name), None)

    def lineage(self, name: str) -> LineageSpec:
        """The declared lineage called `name`; KeyError listing the declared ones otherwise."""
        spec = self.by_name(name)
        if spec is None:
            raise KeyError(f"no lineage {name!r}; declared: {[s.name for s in self.lineages]}")
        return spec

    def score_lineage(self) -> LineageSpec | None:
        """The lineage served at /v1/score, if one declares `score_routes`."""
        return next((s for s in self.lineages if s.score_routes), None)

    def embedder_model(self) -> str | None:
        """The search index's embedder's registered model, or None without an index."""
        return self.index.registered_model if self.index else None

    def registered_models(self) -> list[str]:
        """Every registered model the gate and the promotion sensor watch: the embedder's and
        each lineage's, sorted."""
        embedder = [self.index.registered_model] if self.index else []
        return sorted({*embedder, *(s.registered_model for s in self.lineages)})

    def bundle_needs(self) -> frozenset[str]:
        """The models a bundle cannot be built without: the embedder and the /v1/score one."""
        scorer = self.score_lineage()
        embedder = [self.index.registered_model] if self.index else []
        return frozenset({*embedder, *([scorer.registered_model] if scorer else [])})
