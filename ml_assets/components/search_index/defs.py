"""A declared search index's Definitions: the embedder export, corpus, index, report, sensor."""

from dagster import Definitions

from ml_assets.components.search_index.assets import build_embedding_index, build_search_corpus
from ml_assets.components.search_index.embedder_assets import build_embedding_model_onnx
from ml_assets.components.search_index.reindex_sensor import build_reindex_sensor, reindex_job
from ml_assets.components.search_index.reindex_shards_sensor import (
    build_sharded_reindex_sensor,
    sharded_jobs,
)
from ml_assets.components.search_index.shard_assets import (
    build_embedding_shards,
    build_sharded_index,
)
from ml_assets.components.search_index.validation import build_search_quality_report
from ml_assets.search.spec import SearchIndexSpec


def build_search_defs(spec: SearchIndexSpec) -> Definitions:
    """Everything a SearchIndex declares, built from its spec (no module-level state).

    Without `shards`, one `embedding_index` run embeds and indexes (the default: a small
    corpus pays no per-run overhead). With `shards: N`, `embedding_shards` (N partitions, one
    run each) embeds and `embedding_index` assembles, indexes and switches.
    """
    if spec.shards:
        index = [build_embedding_shards(spec), build_sharded_index(spec)]
        staged = sharded_jobs(spec)
        jobs, sensor = list(staged), build_sharded_reindex_sensor(spec, staged)
    else:
        index = [build_embedding_index(spec)]
        jobs, sensor = [reindex_job], build_reindex_sensor(spec)
    return Definitions(
        assets=[
            build_embedding_model_onnx(spec),
            build_search_corpus(spec),
            *index,
            build_search_quality_report(spec),
        ],
        jobs=jobs,
        sensors=[sensor],
    )
