"""Search stage: the corpus, the pgvector index, and (in validation) its quality report."""

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from ml_assets.platform.artifacts import ArtifactRef, lineage_of
from ml_assets.platform.hashing import canonical_json
from ml_assets.platform.provenance import hashed_output, md_table, timed
from ml_assets.resources.postgres import PostgresResource
from ml_assets.resources.storage import ArtifactStore
from ml_assets.search.corpus import Document, content_hash, load_corpus
from ml_assets.search.index import reindex
from ml_assets.search.spec import SearchIndexSpec, shipped
from ml_assets.search.text_embedder import OnnxTextEmbedder

GROUP = "search"
CORPUS_CODE_VERSION = "search_corpus@1"
INDEX_CODE_VERSION = "embedding_index@2"


class SearchCorpusConfig(dg.Config):
    source_path: str | None = Field(
        default=None,
        description="A JSONL or Parquet corpus to load instead of the one shipped in the repo.",
    )


def corpus_bytes(docs: tuple[Document, ...]) -> bytes:
    """Canonical JSONL: one sorted-key line per document, sorted by id, with its content hash."""
    lines = [canonical_json({**asdict(d), "content_hash": content_hash(d)}) for d in docs]
    return b"\n".join(lines) + b"\n"


def documents_from_bytes(data: bytes) -> list[Document]:
    docs = []
    for line in data.splitlines():
        row = json.loads(line)
        row.pop("content_hash")
        row["tags"] = tuple(row["tags"])
        docs.append(Document(**row))
    return docs


def build_search_corpus(spec: SearchIndexSpec) -> dg.AssetsDefinition:
    """The `search_corpus` asset of a declared index: its corpus, only its declared tenants."""
    tenants = spec.tenant_ids

    @dg.asset(name="search_corpus", group_name=GROUP, code_version=CORPUS_CODE_VERSION)
    def search_corpus(
        context: dg.AssetExecutionContext, config: SearchCorpusConfig, store: ArtifactStore
    ) -> dg.Output[ArtifactRef]:
        """Documents per tenant, each with a content hash; rows of undeclared tenants refused."""
        with timed() as t:
            path = Path(config.source_path).expanduser() if config.source_path else spec.corpus()
            load = load_corpus(path, tenants, tenant_hint=spec.unknown_tenant_hint())
            ref = store.content().put(
                "search_corpus",
                corpus_bytes(load.documents),
                ".jsonl",
                code_version=CORPUS_CODE_VERSION,
                extra={
                    "corpus_sha256": load.corpus_sha256,
                    "source": str(path.resolve()),
                    "skipped": dict(load.skipped),
                    "tenants": list(tenants),
                },
            )
        counts = Counter((d.tenant_id, d.type) for d in load.documents)
        rows = [
            {"tenant": tenant, "type": kind, "documents": n}
            for (tenant, kind), n in sorted(counts.items())
        ]
        context.log.info(
            f"loaded {len(load.documents)} documents from {path}; skipped {load.skipped}"
        )
        return hashed_output(
            ref,
            wall_time_s=t["seconds"],
            metadata={
                "source": dg.MetadataValue.path(str(path.resolve())),
                "source_sha256": dg.MetadataValue.text(load.source_sha256),
                "declared_in": dg.MetadataValue.text(spec.declared_in),
                "dagster/row_count": dg.MetadataValue.int(len(load.documents)),
                "skipped": dg.MetadataValue.json(dict(load.skipped)),
                "documents": dg.MetadataValue.md(md_table(rows)),
            },
        )

    return search_corpus


class EmbeddingIndexConfig(dg.Config):
    variant: str | None = Field(
        default=None,
        description="Which export of the embedder: int8 or fp32 (default: the declared one).",
    )
    model_sha256: str | None = Field(
        default=None,
        description="Index with this exact model file (e.g. the production embedder) "
        "instead of the upstream export's variant.",
    )


def model_sha_of(model_ref: ArtifactRef, variant: str, model_sha256: str | None) -> str:
    """The embedder file an index is built with: `model_sha256`, or the manifest's variant."""
    if model_sha256 is not None:
        return model_sha256
    manifest = json.loads(model_ref.read_verified())
    if variant not in manifest["variants"]:
        raise ValueError(f"variant must be one of {sorted(manifest['variants'])}")
    return manifest["variants"][variant]["sha256"]


def load_embedder(
    store: ArtifactStore,
    model_ref: ArtifactRef,
    variant: str,
    model_sha256: str | None,
    *,
    intra_op_threads: int = 2,
) -> tuple[OnnxTextEmbedder, str]:
    """The embedder named by the manifest (or by sha256), verified before it is loaded."""
    manifest = json.loads(model_ref.read_verified())
    model_sha256 = model_sha_of(model_ref, variant, model_sha256)
    onnx_ref = store.content().ref_for("embedding_model_onnx", model_sha256, ".onnx")
    tok_ref = store.content().ref_for(
        "embedding_model_onnx", manifest["tokenizer"]["sha256"], ".json"
    )
    tok_ref.read_verified()
    embedder = OnnxTextEmbedder(
        onnx_ref.read_verified(),
        tok_ref.path,
        max_length=manifest["max_length"],
        intra_op_threads=intra_op_threads,
        spin_wait=False,  # batch work on cores it shares
    )
    return embedder, model_sha256


def build_embedding_index(spec: SearchIndexSpec) -> dg.AssetsDefinition:
    """The `embedding_index` asset of a declared index (its embedder variant by default)."""

    @dg.asset(
        name="embedding_index", group_name=GROUP, code_version=INDEX_CODE_VERSION, pool="reindex"
    )
    def embedding_index(
        context: dg.AssetExecutionContext,
        config: EmbeddingIndexConfig,
        store: ArtifactStore,
        postgres: PostgresResource,
        search_corpus: ArtifactRef,
        embedding_model_onnx: ArtifactRef,
    ) -> dg.Output[ArtifactRef]:
        """pgvector table per model version (HNSW + full-text), incremental, switched atomically."""
        with timed() as t:
            docs = documents_from_bytes(search_corpus.read_verified())
            embedder, model_sha = load_embedder(
                store, embedding_model_onnx, config.variant or spec.variant, config.model_sha256
            )
            stats = reindex(
                postgres.dsn,
                docs,
                embedder,
                model_sha,
                search_corpus.extra["corpus_sha256"],
                log=context.log.info,
            )
        return index_output(
            store,
            stats,
            docs,
            model_sha,
            INDEX_CODE_VERSION,
            search_corpus,
            embedding_model_onnx,
            t,
            log=context.log.info,
            summary=f"embedded {stats.embedded}",
            metadata={
                "embedded": dg.MetadataValue.int(stats.embedded),
                "truncated_texts": dg.MetadataValue.int(stats.truncated),
            },
        )

    return embedding_index


def index_output(
    store: ArtifactStore,
    stats: Any,
    docs: list[Document],
    model_sha: str,
    code_version: str,
    search_corpus: ArtifactRef,
    embedding_model_onnx: ArtifactRef,
    timer: dict,
    *,
    log: Any,
    summary: str,
    metadata: dict[str, Any],
) -> dg.Output[ArtifactRef]:
    """embedding_index's output, monolithic or assembled from shards: the stored state and its
    metadata. `timer`: the `timed()` dict the index was built in (its wall time is read here).

    Hashed content: what the index holds (model + every document's content hash), not how long
    it took; the same corpus and model give the same data version."""
    log(
        f"{stats.mode}: {summary}, deleted {stats.deleted}, unchanged {stats.unchanged} in "
        f"{stats.seconds:.1f} s; live table search.{stats.table}"
    )
    return embedded_output(
        store,
        "embedding_index",
        code_version,
        {"model_sha256": model_sha, "table": stats.table},
        docs,
        search_corpus,
        embedding_model_onnx,
        timer,
        extra={"table": stats.table, "model_sha256": model_sha},
        metadata={
            "table": dg.MetadataValue.text(f"search.{stats.table}"),
            "model_sha256": dg.MetadataValue.text(model_sha),
            "mode": dg.MetadataValue.text(stats.mode),
            **metadata,
            "deleted": dg.MetadataValue.int(stats.deleted),
            "unchanged": dg.MetadataValue.int(stats.unchanged),
            "dagster/row_count": dg.MetadataValue.int(stats.total),
            "switched_live_index": dg.MetadataValue.bool(stats.switched),
        },
    )


def embedded_output(
    store: ArtifactStore,
    asset_name: str,
    code_version: str,
    state: dict[str, Any],
    docs: list[Document],
    search_corpus: ArtifactRef,
    embedding_model_onnx: ArtifactRef,
    timer: dict,
    *,
    extra: dict[str, Any],
    metadata: dict[str, Any],
) -> dg.Output[ArtifactRef]:
    """The output of an asset that embeds `docs`: `state` and every document's content hash,
    stored as its content, with the corpus and the embedder as upstreams."""
    content = {**state, "documents": sorted([d.tenant_id, d.id, content_hash(d)] for d in docs)}
    ref = store.content().put(
        asset_name,
        canonical_json(content),
        ".json",
        code_version=code_version,
        lineage=lineage_of(search_corpus, embedding_model_onnx),
        extra=extra,
    )
    return hashed_output(
        ref,
        upstream={"search_corpus": search_corpus, "embedding_model_onnx": embedding_model_onnx},
        wall_time_s=timer["seconds"],
        metadata=metadata,
    )


# The shipped index's corpus asset, for code that uses the assets without the defs folder
# (ml_assets/lineages/text/defs.yaml builds its own through the SearchIndex component).
search_corpus = build_search_corpus(shipped())
embedding_index = build_embedding_index(shipped())
