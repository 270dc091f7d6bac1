"""`SearchIndex`: a per-tenant hybrid search index declared in YAML, built into the platform.

    embedding_model_onnx (+ blocking parity/retrieval checks)
    search_corpus (the declared corpus, rows of undeclared tenants refused)
      -> embedding_index (pgvector HNSW + full text, incremental, switched atomically)
      -> search_quality_report (+ blocking `hybrid_not_worse`) ; reindex_job + reindex_sensor
    with `shards: N`: search_corpus -> embedding_shards (N partitions, a run each)
      -> embedding_index (assembled once every shard is done) ; reindex_corpus_job,
         reindex_shards_job, reindex_job + a reindex_sensor that runs them in turn

ml_assets/lineages/text/defs.yaml declares the platform's own index. The index lives in the
vector store's `search` schema, so one code location holds one SearchIndex today: a second one
fails to load (its assets would have the same keys) rather than share the first one's tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import dagster as dg
from pydantic import BaseModel, Field, PrivateAttr

from ml_assets.components.search_index.defs import build_search_defs
from ml_assets.search.spec import SearchIndexSpec, from_attributes


def _about(text: str) -> dg.Resolver:
    return dg.Resolver.default(description=text)


class Tenant(dg.Model, dg.Resolvable):
    """One tenant of the index: its documents are only ever searched by its own queries."""

    id: Annotated[str, _about("The `tenant_id` its corpus rows and /search requests carry.")]
    description: Annotated[str, _about("Who the tenant is, for people.")] = ""


class ReindexSensor(dg.Model, dg.Resolvable):
    """The sensor that reindexes on a corpus change, a new production embedder or a request."""

    interval_s: Annotated[int, _about("Seconds between evaluations (>= 30).")] = 60


class SearchIndex(dg.Component, dg.Model, dg.Resolvable):
    """A per-tenant hybrid (BM25 + vector) search index over a corpus, judged on labelled queries.

    In YAML (`type: ml_assets.components.SearchIndex`), or from Python::

        index = SearchIndex(
            registered_model="acme-embedder",
            tenants=[Tenant(id="acme")],
            corpus="/data/acme.jsonl",
            queries="/data/q.jsonl",
        )
        defs = index.definitions()
    """

    name: Annotated[str, _about("The index's name (shown in the report).")] = "text"
    description: Annotated[str, _about("What the index holds, for people.")] = ""
    registered_model: Annotated[
        str,
        _about(
            "The MLflow registered model the text embedder's ONNX exports are versions of, "
            "e.g. `text-embedder`: what `ml-assets promote` takes and /models lists."
        ),
    ]
    tenants: Annotated[
        list[Tenant],
        _about(
            "Every tenant the index serves. A corpus row of any other tenant is refused "
            "with its line number; add the tenant here to accept it."
        ),
    ]
    corpus: Annotated[
        str | None,
        _about(
            "The corpus: a .jsonl or .parquet file (id, tenant_id, type, title, text, tags, "
            "updated_at; type one of instrument, curve, scenario, backtest, document), "
            "relative to this defs.yaml's folder; null: the shipped corpus."
        ),
    ] = None
    queries: Annotated[
        str | None,
        _about(
            "Labelled queries of that corpus (JSONL: id, tenant_id, query, relevant_ids, "
            "split tune|eval); required with `corpus`; null: the shipped set."
        ),
    ] = None
    labelled_sets: Annotated[
        list[str],
        _about("Packaged labelled sets also judged, in a scratch index (e.g. `docs`)."),
    ] = Field(default_factory=lambda: ["docs"])
    quality_tolerance: Annotated[
        float,
        _about("hybrid_not_worse: hybrid nDCG@10 may trail the better single mode by this."),
    ] = 0.02
    variant: Annotated[
        Literal["int8", "fp32"], _about("Which export of the text embedder builds the index.")
    ] = "int8"
    reindex_sensor: Annotated[ReindexSensor, _about("The reindex sensor's settings.")] = Field(
        default_factory=ReindexSensor
    )
    shards: Annotated[
        int | None,
        _about(
            "Split the embedding into this many runs (2, 4, 8, 16, 32, 64, 128 or 256): "
            "`embedding_shards`, partitioned by a document's key hash, then `embedding_index` "
            "builds and switches once every shard is done. null: one run embeds everything."
        ),
    ] = None
    shard_run_tags: Annotated[
        dict[str, str],
        _about(
            "Tags on every shard run. `dagster-k8s/config` (a JSON string) sets what a shard "
            "run's Kubernetes Job asks for: resources, a node selector for GPU nodes."
        ),
    ] = Field(default_factory=dict)

    # Where the YAML declared this index (its folder resolves relative paths): set by `load`
    # when the defs folder builds the component, None for one built in Python.
    _declared_at: tuple[Path, str] | None = PrivateAttr(default=None)

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> SearchIndex:
        index = super().load(attributes, context)
        yaml = context.path / "defs.yaml" if context.path.is_dir() else context.path
        try:
            declared_in = str(yaml.relative_to(context.project_root))
        except ValueError:
            declared_in = str(yaml)
        base = context.path if context.path.is_dir() else context.path.parent
        index._declared_at = (base, declared_in)
        return index

    def spec(self, *, base: Path | None = None, declared_in: str = "(python)") -> SearchIndexSpec:
        """The declaration, validated, with paths resolved against `base` (the YAML's folder;
        by default the folder it was loaded from)."""
        if base is None and self._declared_at is not None:
            base, declared_in = self._declared_at
        return from_attributes(self.model_dump(), base=base, declared_in=declared_in)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_search_defs(self.spec())

    def definitions(self) -> dg.Definitions:
        """The index's Definitions outside a defs folder (absolute paths, or relative to cwd)."""
        return build_search_defs(self.spec())
