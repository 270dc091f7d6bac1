"""A declared search index's Definitions: the embedder export, corpus, index, report, sensor."""

from dagster import Definitions

from ml_assets.assets.export import build_embedding_model_onnx
from ml_assets.assets.search import build_embedding_index, build_search_corpus
from ml_assets.assets.search_shards import build_embedding_shards, build_sharded_index
from ml_assets.assets.search_validation import build_search_quality_report
from ml_assets.core.search_spec import SearchIndexSpec
from ml_assets.sensors.reindex import build_reindex_sensor, reindex_job
from ml_assets.sensors.reindex_shards import build_sharded_reindex_sensor, sharded_jobs


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
