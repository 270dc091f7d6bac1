"""What the promotion gate knows about each registered model, and nothing else does.

A `Subject` says where a model's served files are in its MLflow run, how its evidence is read
from the platform's records, which metric compares it with the champion, and which registry tag
copies its served file's sha256. There are two kinds:

- a **tabular model**: a declared lineage (its `LineageSpec` in the `Catalog`),
  judged by `model_evidence` over its `Chain`;
- the **text embedder**: judged by `embedder_evidence` over its export's checks.

`subject(catalog, name)` is the only place a registered name turns into gate behaviour; the
gate itself (ml_assets/platform/promotion.py) never names a model. Every registered name comes
from a YAML: the embedder's from the SearchIndex's `registered_model`, a lineage's from its
own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from ml_assets.platform.catalog import Catalog
from ml_assets.platform.hashing import sha256_bytes
from ml_assets.platform.lineage_spec import LineageSpec
from ml_assets.platform.validation_records import (
    Chain,
    Evidence,
    ValidationRecords,
    chain_of,
    embedder_evidence,
    model_evidence,
)

# Where each kind's served files live in its MLflow run (what the bundle downloads).
LINEAGE_FILES = {"model.onnx": "onnx/model.onnx", "provenance.json": "provenance.json"}
TOKENIZER_FILE = "tokenizer/tokenizer.json"
DEFAULT_VARIANT = "int8"
DEFAULT_MARGIN = 0.01

Tags = dict[str, str]


@dataclass(frozen=True)
class Subject:
    """One registered model as the gate sees it."""

    name: str
    metric: str  # the decision's metric (e.g. "test_pr_auc", "mae", "ndcg@10")
    higher_is_better: bool
    files: Callable[[Tags], dict[str, str]]  # tags -> {served file: its path in the run}
    evidence: Callable[[ValidationRecords, str, dict[str, bytes], Tags], Evidence]
    champion_metric: Callable[[ValidationRecords, str, Tags], float | None]
    hash_tag: str  # the registry tag that copies the served model.onnx's sha256 (for people)
    # Whether a version may be a fresh platform's first production version (`bootstrap`).
    first_candidate: Callable[[Tags, str], bool] = lambda tags, variant: True
    # How much worse than the champion (relative) a candidate may be, and where that is set.
    margin: float = DEFAULT_MARGIN
    margin_source: str = "the platform default"


def _provenance(files: dict[str, bytes]) -> dict | None:
    try:
        return json.loads(files["provenance.json"])
    except (KeyError, ValueError):
        return {}


def tabular(
    name: str,
    chain: Chain,
    metric: str,
    higher_is_better: bool,
    files: dict[str, str],
    margin: float = DEFAULT_MARGIN,
    margin_source: str = "the platform default",
) -> Subject:
    """A tabular model judged over `chain` (its export, report and raw data's checks)."""

    def evidence(records, label, served, tags) -> Evidence:
        onnx_sha = sha256_bytes(served["model.onnx"])
        return model_evidence(records, chain, label, onnx_sha, _provenance(served))

    def champion_metric(records, label, tags) -> float | None:
        sha = tags.get("onnx_sha256")
        return model_evidence(records, chain, label, sha, None).metric if sha else None

    return Subject(
        name=name,
        metric=metric,
        higher_is_better=higher_is_better,
        files=lambda tags: dict(files),
        evidence=evidence,
        champion_metric=champion_metric,
        hash_tag="onnx_sha256",
        margin=margin,
        margin_source=margin_source,
    )


def _embedder(name: str) -> Subject:
    def variant(tags: Tags) -> str:
        return tags.get("variant") or DEFAULT_VARIANT

    def evidence(records, label, served, tags) -> Evidence:
        onnx_sha = sha256_bytes(served["model.onnx"])
        tok_sha = sha256_bytes(served["tokenizer.json"])
        return embedder_evidence(records, variant(tags), onnx_sha, tok_sha)

    def champion_metric(records, label, tags) -> float | None:
        return embedder_evidence(
            records, variant(tags), tags.get("sha256"), tags.get("tokenizer_sha256", "")
        ).metric

    return Subject(
        name=name,
        metric="ndcg@10",
        higher_is_better=True,
        files=lambda tags: {
            "model.onnx": f"{variant(tags)}/model.onnx",
            "tokenizer.json": TOKENIZER_FILE,
        },
        evidence=evidence,
        champion_metric=champion_metric,
        hash_tag="sha256",
        # The index is built with one variant: only that variant's versions start serving.
        first_candidate=lambda tags, wanted: tags.get("variant") == wanted,
    )


def _declared(spec: LineageSpec) -> Subject:
    return tabular(
        spec.registered_model,
        chain_of(spec),
        spec.primary_metric,
        spec.higher_is_better,
        LINEAGE_FILES,
        margin=spec.promotion_margin,
        margin_source=f"promotion_margin of lineage {spec.name!r}",
    )


def names(catalog: Catalog) -> list[str]:
    """Every registered model the gate knows: the embedder and each declared lineage's."""
    return catalog.registered_models()


def subject(catalog: Catalog, name: str) -> Subject:
    """The gate's view of `name`; ValueError (listing the known ones) for any other name."""
    spec = catalog.by_model(name)
    if spec is not None:
        return _declared(spec)
    if name == catalog.embedder_model():
        return _embedder(name)
    raise ValueError(f"unknown model {name!r}; promotable models: {names(catalog)}")
