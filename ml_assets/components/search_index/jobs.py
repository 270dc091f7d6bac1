"""Jobs over the asset graph (each declared lineage brings its own `<name>_lineage_job`)."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job

search_lineage_job = define_asset_job(
    "search_lineage_job",
    selection=AssetSelection.assets(
        "search_corpus", "embedding_model_onnx", "embedding_index", "search_quality_report"
    ),
    description="corpus + embedder export → pgvector index → search quality report.",
)

defs = Definitions(jobs=[search_lineage_job])
