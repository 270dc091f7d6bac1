"""What a declared search index is: its corpus, its tenants, its labelled queries, its checks.

A `SearchIndexSpec` comes from a `SearchIndex` component (ml_assets/lineages/text/defs.yaml
ships the platform's own) and travels one way: component -> the asset and sensor factories
(`ml_assets.components.search_index.assets.build_search_corpus`, ...).
`shipped()` reads the shipped YAML for
code that uses the module-level assets without loading the defs folder (tests, notebooks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ml_assets.search.corpus import DATASETS, CorpusError, default_corpus_path, default_queries_path

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SHIPPED_YAML = ("lineages", "text", "defs.yaml")
ATTRIBUTES = {
    "name", "description", "registered_model", "tenants", "corpus", "queries", "labelled_sets",
    "quality_tolerance", "variant", "reindex_sensor", "shards",
    "shard_run_tags",
}  # fmt: skip
# The shard counts a sharded index may declare (`shards:`): powers of two, so each shard owns
# one range of hex prefixes of a document's key hash (ml_assets.search.shards).
SHARD_COUNTS = (2, 4, 8, 16, 32, 64, 128, 256)


class SearchSpecError(ValueError):
    """A search index declaration that cannot be built; the message says what to change."""


@dataclass(frozen=True)
class TenantSpec:
    id: str
    description: str = ""


@dataclass(frozen=True)
class SearchIndexSpec:
    """One search index as declared. Paths are absolute; None means the packaged file."""

    name: str
    tenants: tuple[TenantSpec, ...]
    # The MLflow registered model the text embedder's exports are versions of: the name the
    # gate, the sensors, the bundle and the service know the embedder by (from the YAML only).
    registered_model: str
    corpus_path: Path | None = None
    queries_path: Path | None = None
    labelled_sets: tuple[str, ...] = ("docs",)
    quality_tolerance: float = 0.02
    variant: str = "int8"
    reindex_interval_s: int = 60
    # None: one run embeds the whole corpus (embedding_index). N: embedding_shards, N
    # partitions each run on its own, then embedding_index assembles and switches.
    shards: int | None = None
    # Tags on every shard run (e.g. dagster-k8s/config: resources, a GPU node selector).
    shard_run_tags: dict[str, str] = field(default_factory=dict)
    declared_in: str = "(python)"
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"search index {self.name!r} ({self.declared_in})"
        if not NAME.match(self.name):
            raise SearchSpecError(f"{where}: name: use letters, digits and underscores")
        if not MODEL_NAME.match(self.registered_model or ""):
            raise SearchSpecError(
                f"{where}: registered_model {self.registered_model!r}: the MLflow registered "
                "model of the embedder, e.g. `text-embedder` (letters, digits and ._-)"
            )
        if not self.tenants:
            raise SearchSpecError(f"{where}: tenants: declare at least one tenant")
        ids = [t.id for t in self.tenants]
        for t in ids:
            if not TENANT_ID.match(t):
                raise SearchSpecError(
                    f"{where}: tenant id {t!r}: lower-case letters, digits and ._- "
                    "(at most 63, starting with a letter or digit)"
                )
        dupes = sorted({t for t in ids if ids.count(t) > 1})
        if dupes:
            raise SearchSpecError(f"{where}: tenants declared twice: {dupes}")
        if (self.corpus_path is None) != (self.queries_path is None):
            raise SearchSpecError(
                f"{where}: set `corpus` and `queries` together: the quality report judges the "
                "index on labelled queries of its own corpus (omit both for the shipped pair)"
            )
        unknown = sorted(set(self.labelled_sets) - set(DATASETS))
        if unknown:
            raise SearchSpecError(
                f"{where}: labelled_sets {unknown}: packaged sets are {sorted(DATASETS)}"
            )
        if self.variant not in ("int8", "fp32"):
            raise SearchSpecError(f"{where}: variant must be int8 or fp32, not {self.variant!r}")
        if not 0 <= self.quality_tolerance <= 1:
            raise SearchSpecError(f"{where}: quality_tolerance must be within [0, 1]")
        if self.reindex_interval_s < 30:
            raise SearchSpecError(f"{where}: reindex_sensor.interval_s must be >= 30")
        if self.shards is not None and self.shards not in SHARD_COUNTS:
            raise SearchSpecError(
                f"{where}: shards must be one of {list(SHARD_COUNTS)} (or null: no shards), "
                f"not {self.shards!r}"
            )

    @property
    def tenant_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.tenants)

    def corpus(self) -> Path:
        return self.corpus_path or default_corpus_path()

    def queries(self) -> Path:
        return self.queries_path or default_queries_path()

    def unknown_tenant_hint(self) -> str:
        return f"declare it under `tenants:` in {self.declared_in}"


def _resolve(path: str | None, base: Path | None) -> Path | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    return p.resolve()


def from_attributes(
    attrs: dict[str, Any], *, base: Path | None, declared_in: str
) -> SearchIndexSpec:
    """A spec from a defs.yaml's `attributes` (the SearchIndex component's fields)."""
    unknown = sorted(set(attrs) - ATTRIBUTES)
    if unknown:
        raise SearchSpecError(f"{declared_in}: unknown keys {unknown}; known: {sorted(ATTRIBUTES)}")
    sensor = attrs.get("reindex_sensor") or {}
    return SearchIndexSpec(
        name=attrs.get("name", "text"),
        description=attrs.get("description", ""),
        registered_model=attrs.get("registered_model") or "",
        tenants=tuple(
            TenantSpec(id=t["id"], description=t.get("description", ""))
            for t in attrs.get("tenants", ())
        ),
        corpus_path=_resolve(attrs.get("corpus"), base),
        queries_path=_resolve(attrs.get("queries"), base),
        labelled_sets=tuple(attrs.get("labelled_sets", ("docs",))),
        quality_tolerance=float(attrs.get("quality_tolerance", 0.02)),
        variant=attrs.get("variant", "int8"),
        reindex_interval_s=int(sensor.get("interval_s", 60)),
        shards=None if attrs.get("shards") is None else int(attrs["shards"]),
        shard_run_tags={str(k): str(v) for k, v in (attrs.get("shard_run_tags") or {}).items()},
        declared_in=declared_in,
    )


@cache
def shipped() -> SearchIndexSpec:
    """The platform's own text index, as ml_assets/lineages/text/defs.yaml declares it."""
    path = Path(str(resources.files("ml_assets").joinpath(*SHIPPED_YAML)))
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CorpusError(
            f"cannot read the shipped search index declaration {path}: {exc}"
        ) from exc
    # The SearchIndex component type-checks the same document when the defs folder loads
    # (`dg check defs` in the suite); here the keys are checked and the spec validates itself.
    return from_attributes(
        doc["attributes"], base=path.parent, declared_in="ml_assets/lineages/text/defs.yaml"
    )
