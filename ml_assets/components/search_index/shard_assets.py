"""The sharded search index (`shards:` in the SearchIndex YAML): `embedding_shards`, one
partition per shard of the corpus, each a run of its own, then `embedding_index`, which
builds HNSW + GIN from the shards and switches the live view once all of them are done."""

import dagster as dg
from psycopg import sql
from pydantic import Field

from ml_assets.components.search_index.assets import (
    GROUP,
    EmbeddingIndexConfig,
    documents_from_bytes,
    embedded_output,
    index_output,
    load_embedder,
    model_sha_of,
)
from ml_assets.platform.artifacts import ArtifactRef
from ml_assets.platform.provenance import timed
from ml_assets.resources.postgres import PostgresResource
from ml_assets.resources.storage import ArtifactStore
from ml_assets.search.assemble import assemble
from ml_assets.search.shards import (
    DEFAULT_LOCK_WAIT_S,
    SHARD_STATE,
    ShardBusyError,
    ShardsIncomplete,
    embed_shard,
    shard_keys,
    shard_of,
    staging_table,
)
from ml_assets.search.spec import SearchIndexSpec
from ml_assets.search.tables import SCHEMA, connect

SHARDS_CODE_VERSION = "embedding_shards@1"
SHARDED_INDEX_CODE_VERSION = "embedding_index@2+shards@1"


class EmbeddingShardConfig(dg.Config):
    variant: str | None = Field(
        default=None, description="int8 or fp32 (default: the declared one)."
    )
    model_sha256: str | None = Field(
        default=None,
        description="Embed with this exact model file (the reindex sensor passes the "
        "production embedder's); every shard of one index must use the same.",
    )
    onnx_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="ONNX Runtime intra-op threads of this run: the cores one shard run gets "
        "(runs at once x threads should not exceed the machine's cores).",
    )
    lock_wait_s: float = Field(
        default=DEFAULT_LOCK_WAIT_S,
        gt=0,
        description="How long to wait for another run of the same shard before failing.",
    )


def shards_partitions(spec: SearchIndexSpec) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(shard_keys(spec.shards or 0))


def build_embedding_shards(spec: SearchIndexSpec) -> dg.AssetsDefinition:
    """`embedding_shards`: one partition per shard; each embeds only its new or changed docs."""

    @dg.asset(
        name="embedding_shards",
        group_name=GROUP,
        code_version=SHARDS_CODE_VERSION,
        partitions_def=shards_partitions(spec),
        pool="embedder",
    )
    def embedding_shards(
        context: dg.AssetExecutionContext,
        config: EmbeddingShardConfig,
        store: ArtifactStore,
        postgres: PostgresResource,
        search_corpus: ArtifactRef,
        embedding_model_onnx: ArtifactRef,
    ) -> dg.Output[ArtifactRef]:
        """One shard's embeddings (documents by key-hash prefix) in the model's staging table."""
        n, shard = int(spec.shards or 0), context.partition_key
        with timed() as t:
            docs = documents_from_bytes(search_corpus.read_verified())
            embedder, model_sha = load_embedder(
                store,
                embedding_model_onnx,
                config.variant or spec.variant,
                config.model_sha256,
                intra_op_threads=config.onnx_threads,
            )
            try:
                stats = embed_shard(
                    postgres.dsn,
                    docs,
                    n,
                    shard,
                    embedder,
                    model_sha,
                    run_id=context.run_id,
                    lock_wait_s=config.lock_wait_s,
                    log=context.log.info,
                )
            except ShardBusyError as exc:
                raise dg.Failure(str(exc)) from exc
        docs_per_s = stats.embedded / stats.seconds if stats.seconds > 0 else 0.0
        return embedded_output(
            store,
            "embedding_shards",
            SHARDS_CODE_VERSION,
            {
                "model_sha256": model_sha,
                "shards": n,
                "shard": shard,
                "staging_table": stats.staging_table,
            },
            [d for d in docs if shard_of(d, n) == shard],
            search_corpus,
            embedding_model_onnx,
            t,
            extra={"model_sha256": model_sha, "shard": shard, "digest": stats.digest},
            metadata={
                "staging_table": dg.MetadataValue.text(f"{SCHEMA}.{stats.staging_table}"),
                "model_sha256": dg.MetadataValue.text(model_sha),
                "shard": dg.MetadataValue.text(f"{shard} of {n}"),
                "digest": dg.MetadataValue.text(stats.digest),
                "embedded": dg.MetadataValue.int(stats.embedded),
                "copied_from_index": dg.MetadataValue.int(stats.copied),
                "deleted": dg.MetadataValue.int(stats.deleted),
                "truncated_texts": dg.MetadataValue.int(stats.truncated),
                "dagster/row_count": dg.MetadataValue.int(stats.documents),
                "documents_per_s": dg.MetadataValue.float(round(docs_per_s, 1)),
                "onnx_threads": dg.MetadataValue.int(config.onnx_threads),
            },
        )

    return embedding_shards


def build_sharded_index(spec: SearchIndexSpec) -> dg.AssetsDefinition:
    """`embedding_index` of a sharded index: HNSW + GIN from complete shards, then the switch."""

    @dg.asset(
        name="embedding_index",
        group_name=GROUP,
        code_version=SHARDED_INDEX_CODE_VERSION,
        pool="reindex",
        deps=[dg.AssetKey("embedding_shards")],
    )
    def embedding_index(
        context: dg.AssetExecutionContext,
        config: EmbeddingIndexConfig,
        store: ArtifactStore,
        postgres: PostgresResource,
        search_corpus: ArtifactRef,
        embedding_model_onnx: ArtifactRef,
    ) -> dg.Output[ArtifactRef]:
        """pgvector table per model version, assembled from every shard, switched atomically."""
        n = int(spec.shards or 0)
        with timed() as t:
            docs = documents_from_bytes(search_corpus.read_verified())
            model_sha = model_sha_of(
                embedding_model_onnx, config.variant or spec.variant, config.model_sha256
            )
            try:
                stats = assemble(
                    postgres.dsn,
                    docs,
                    n,
                    model_sha,
                    search_corpus.extra["corpus_sha256"],
                    log=context.log.info,
                )
            except ShardsIncomplete as exc:
                raise dg.Failure(str(exc)) from exc
            with connect(postgres.dsn) as conn:
                digests = dict(
                    conn.execute(
                        sql.SQL(
                            "SELECT shard, digest FROM {}.{} WHERE staging_table = %s"
                            " ORDER BY shard"
                        ).format(sql.Identifier(SCHEMA), sql.Identifier(SHARD_STATE)),
                        (staging_table(model_sha, n),),
                    ).fetchall()
                )
        return index_output(
            store,
            stats,
            docs,
            model_sha,
            SHARDED_INDEX_CODE_VERSION,
            search_corpus,
            embedding_model_onnx,
            t,
            log=context.log.info,
            summary=f"from {n} shards",
            metadata={
                "shards": dg.MetadataValue.json(digests),
                "added": dg.MetadataValue.int(stats.added),
                "updated": dg.MetadataValue.int(stats.updated),
            },
        )

    return embedding_index
