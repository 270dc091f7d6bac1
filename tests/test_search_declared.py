"""A declared index (the SearchIndex component) on a user's own corpus and tenants: indexed, judged
and searched per tenant with no platform change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from dagster import materialize

from ml_assets.bundle import promotion_sensor as promotion_sensor
from ml_assets.components.defs_folder import catalog_of
from ml_assets.components.search_index.embedder_assets import embedding_model_onnx
from ml_assets.platform import gate_subjects
from ml_assets.platform.artifacts import ArtifactRef
from ml_assets.resources.defaults import local_resources
from ml_assets.resources.storage import ref_path
from ml_assets.search.query import (
    UnknownTenantError,
    search,
)
from tests.conftest import fresh_vector_database
from tests.helpers import CATALOG, EMBEDDER_MODEL, failure_text
from tests.search_env import env_embedder as _embedder
from tests.search_env import (  # the fixtures `env`, `vector_dsn`, `dagster_instance`
    search_env,  # noqa: F401
    search_state_dsn,  # noqa: F401
    search_state_instance,  # noqa: F401
)

USER_TOPICS = {
    "acme-grid": [
        (
            "transformer",
            "substation transformer overheating",
            "oil temperature alarm, cooling fans",
        ),
        ("breaker", "circuit breaker trip on feeder", "relay settings, fault current, reclose"),
        ("outage", "planned outage of the north line", "maintenance window, switching order"),
        ("meter", "smart meter firmware rollout", "meter fleet upgrade, over-the-air update"),
        ("vegetation", "vegetation clearance along lines", "tree trimming schedule, wildfire risk"),
    ],
    "globex-labs": [
        ("assay", "enzyme assay calibration", "plate reader, standard curve, absorbance"),
        ("freezer", "minus eighty freezer failure", "sample rescue, temperature log, backup unit"),
        ("pipette", "pipette calibration schedule", "volume accuracy, gravimetric check"),
        ("sequencer", "sequencer run quality", "read depth, base quality score, flow cell"),
        ("biosafety", "biosafety cabinet certification", "airflow test, HEPA filter, annual"),
    ],
}


def _user_corpus(folder: Path, extra_tenant: str | None = None) -> None:
    docs, queries = [], []
    for tenant, topics in USER_TOPICS.items():
        for t, (key, title, words) in enumerate(topics):
            ids = [f"{tenant}-{key}-{i}" for i in range(4)]
            for i, doc_id in enumerate(ids):
                docs.append(
                    {
                        "id": doc_id,
                        "tenant_id": tenant,
                        "type": "document",
                        "title": f"{title} ({i + 1} of 4)",
                        "text": f"Field note {i + 1} on {title}: {words}. Logged by the team, "
                        f"with follow-up actions and owners for {key} work.",
                        "tags": [key],
                        "updated_at": "2026-11-01T00:00:00Z",
                    }
                )
            queries.append(
                {
                    "id": f"{tenant}-q{t}",
                    "tenant_id": tenant,
                    "query": f"notes about {title}",
                    "relevant_ids": ids,
                    "split": "tune" if t % 2 == 0 else "eval",
                }
            )
    if extra_tenant:
        docs.append({**docs[0], "id": "stray-1", "tenant_id": extra_tenant})
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")


USER_INDEX_YAML = """
type: ml_assets.components.SearchIndex
attributes:
  name: lab_and_grid
  registered_model: lab-embedder
  tenants:
    - {id: acme-grid, description: a utility's field notes}
    - {id: globex-labs, description: a lab's bench notes}
  corpus: corpus.jsonl
  queries: queries.jsonl
  labelled_sets: []
  quality_tolerance: 0.05
"""


def test_a_declared_index_takes_its_own_corpus_and_tenants(
    env, dagster_instance, tmp_path, pg_dsn, mlflow_resource
):
    """A user's SearchIndex YAML (own corpus, tenants, queries): indexed, judged and searched
    per tenant with no platform change; a row of an undeclared tenant names where to add it."""
    from dagster import build_sensor_context
    from dagster.components.testing import create_defs_folder_sandbox

    _user_corpus(tmp_path)
    dsn = fresh_vector_database(pg_dsn, "vec_declared_index")
    # This module's artifacts (the embedder export) copied, so its own refs stay as they are.
    root = tmp_path / "artifacts"
    shutil.copytree(env["root"], root)
    resources = local_resources(root, mlflow_resource, dsn)

    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "lab_and_grid"
        folder.mkdir()
        (folder / "defs.yaml").write_text(USER_INDEX_YAML)
        for file in ("corpus.jsonl", "queries.jsonl"):
            shutil.copy(tmp_path / file, folder / file)
        with sandbox.build_component_tree() as tree:
            # The sandbox's own catalog: the loader's, over the sandbox's defs folder.
            catalog, defs = catalog_of(tree), tree.build_defs()
            assets = {a.key.to_user_string(): a for a in defs.assets or [] if hasattr(a, "key")}
            (sensor,) = [s for s in defs.sensors or [] if s.name == "reindex_sensor"]
            # The embedder's registered name is the YAML's: the gate and the promotion sensor
            # know it by that name, and by no other.
            names = gate_subjects.names(catalog)
            assert "lab-embedder" in names and EMBEDDER_MODEL not in names
            assert "lab-embedder" in promotion_sensor.production_aliases(
                resources["mlflow"], catalog
            )
            result = materialize(
                [
                    embedding_model_onnx.to_source_asset(),
                    assets["search_corpus"],
                    assets["embedding_index"],
                    assets["search_quality_report"],
                ],
                resources=resources,
                instance=dagster_instance,
            )
            assert result.success, failure_text(result)
            # The declared sensor watches the declared corpus and reindexes exactly that file.
            context = build_sensor_context(
                resources={k: resources[k] for k in ("mlflow", "postgres", "store")},
                instance=dagster_instance,
            )
            tick = sensor(context)
            (request,) = tick.run_requests
            source = request.run_config["ops"]["search_corpus"]["config"]["source_path"]
            assert Path(source) == (folder / "corpus.jsonl").resolve()
            # A row of a tenant the YAML does not declare: refused, with where to declare it.
            _user_corpus(tmp_path, extra_tenant="initech")
            stray = materialize(
                [assets["search_corpus"]],
                resources=resources,
                instance=dagster_instance,
                run_config={
                    "ops": {
                        "search_corpus": {"config": {"source_path": str(tmp_path / "corpus.jsonl")}}
                    }
                },
                raise_on_error=False,
            )
    assert EMBEDDER_MODEL in gate_subjects.names(CATALOG)  # the shipped catalog is its own
    corpus_md = {
        k: v.value
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key.to_user_string() == "search_corpus"
        for k, v in e.materialization.metadata.items()
    }
    assert corpus_md["dagster/row_count"] == 40
    assert corpus_md["declared_in"].endswith("lab_and_grid/defs.yaml")
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    check = checks["hybrid_not_worse"]
    assert check.passed and check.metadata["tolerance"].value == 0.05
    report = ArtifactRef.from_json(
        ref_path(root, "search_quality_report").read_text()
    ).read_verified()
    verdicts = json.loads(report)["verdicts"]
    assert set(verdicts) == {"search"} and verdicts["search"]["cross_tenant_hits"] == 0
    embedder = _embedder(env)
    hits = search(dsn, embedder, "freezer failure", "globex-labs", limit=5)
    assert hits and {h.tenant_id for h in hits} == {"globex-labs"}
    assert hits[0].doc_id.startswith("globex-labs-freezer")
    with pytest.raises(UnknownTenantError):
        search(dsn, embedder, "freezer failure", "boreal-commodities")
    assert not stray.success
    text = failure_text(stray)
    assert "unknown tenant 'initech'" in text and "lab_and_grid/defs.yaml" in text
    assert "declare it under `tenants:`" in text
