"""A declared search index's Definitions: the embedder export, corpus, index, report, sensor."""

from dagster import Definitions

from ml_assets.assets.export import embedding_model_onnx
from ml_assets.assets.search import build_embedding_index, build_search_corpus
from ml_assets.assets.search_validation import build_search_quality_report
from ml_assets.core.search_spec import SearchIndexSpec
from ml_assets.sensors.reindex import build_reindex_sensor, reindex_job


def build_search_defs(spec: SearchIndexSpec) -> Definitions:
    """Everything a SearchIndex declares, built from its spec (no module-level state)."""
    return Definitions(
        assets=[
            embedding_model_onnx,
            build_search_corpus(spec),
            build_embedding_index(spec),
            build_search_quality_report(spec),
        ],
        jobs=[reindex_job],
        sensors=[build_reindex_sensor(spec)],
    )
