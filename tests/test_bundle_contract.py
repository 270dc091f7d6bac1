"""The bundle entry and the gate record as versioned contracts: the JSON form each is written in
(ml_assets/schemas/ml.bundle.entry.v1.json, ml.gate.record.v1.json), read back exactly, and an
entry that is tampered with or foreign refused by the code and by the schema alike. The bundle
serving_bundle writes (and the Bento and the model store hold) is checked against both."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource

from ml_assets.platform.evidence import Origin
from ml_assets.platform.gate_record import GATE_RECORD_SCHEMA, ContractError, GateRecord
from ml_assets.platform.promotion import Decision, Gate
from ml_assets.platform.serving_bundle import (
    BUNDLE_SCHEMA,
    ENTRY_SCHEMA,
    MODEL_MANIFEST,
    BundleIntegrityError,
    ModelEntry,
    entries_of,
    missing_verdicts,
)
from ml_assets.platform.validation_records import Evidence, Verdict
from tests.conftest import REPO
from tests.test_model_card import bundled, vector_dsn  # noqa: F401  (the bundle serving_bundle wrote)

SCHEMAS = REPO / "ml_assets" / "schemas"
ENTRY = json.loads((SCHEMAS / "ml.bundle.entry.v1.json").read_text())
GATE = json.loads((SCHEMAS / "ml.gate.record.v1.json").read_text())
REGISTRY = Registry().with_resources(
    (doc["$id"], Resource.from_contents(doc)) for doc in (ENTRY, GATE)
)
SHA = "ab" * 32
ORIGIN = Origin(
    run_id="9f2c4e1a-0000-4000-8000-000000000001",
    step="embedding_model_onnx",
    job="__ASSET_JOB",
    status="SUCCESS",
    location="ml_assets",
)


def _errors(schema: dict, doc: object) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema, registry=REGISTRY)
    return [e.message for e in validator.iter_errors(doc)]


def _entry() -> ModelEntry:
    """An embedder entry as the gate writes it: every required check passed in one of our runs."""
    verdicts = [
        Verdict(
            "embedding_model_onnx",
            check,
            SHA,
            True,
            run_id=ORIGIN.run_id,
            evaluation_id=40 + i,
            evaluated_at=1_765_000_000.5,
            target_storage_id=7,
            origin=ORIGIN.to_dict(),
        )
        for i, check in enumerate(("fp32_parity", "int8_parity", "int8_retrieval"))
    ]
    decision = Decision(
        model="text-embedder",
        version="4",
        kind="serving",
        metric="ndcg@10",
        candidate_value=0.61,
        champion_version=None,
        champion_value=None,
        margin=0.01,
        gates=[Gate("registered", True, "status READY")],
        evidence=Evidence(verdicts=verdicts, facts={"export_sha256": SHA}, used=["export"]),
    )
    return ModelEntry(
        role="embedder",
        registered_model="text-embedder",
        version="4",
        files={"model.onnx": SHA, "tokenizer.json": "cd" * 32},
        provenance=[{"asset": "embedding_model_onnx", "sha256": SHA}],
        info={"variant": "int8", "dim": 384},
        gate=decision.record(),
    )


def test_an_entry_is_written_in_its_schema_and_read_back_exactly():
    entry = _entry()
    doc = entry.to_json()
    assert doc["schema"] == ENTRY_SCHEMA and doc["gate"]["schema"] == GATE_RECORD_SCHEMA
    assert _errors(ENTRY, doc) == [] and _errors(GATE, doc["gate"]) == []
    assert ModelEntry.from_json(json.loads(json.dumps(doc))) == entry
    assert missing_verdicts(entry) == []  # the evidence rule counts these verdicts
    verdict = doc["gate"]["verdicts"][0]
    assert verdict["origin"] == ORIGIN.to_dict() and verdict["evaluation_id"] == 40


def _set(path: str, value: object):
    def edit(doc: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            doc = doc[int(key)] if isinstance(doc, list) else doc[key]
        doc[last] = value

    return edit


def _drop(path: str):
    def edit(doc: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            doc = doc[int(key)] if isinstance(doc, list) else doc[key]
        del doc[last]

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("served_by", "someone"), "unknown keys ['served_by']"),
        (_drop("provenance"), "missing keys ['provenance']"),
        (_set("schema", "ml-assets.bundle-entry.v0"), "this code reads"),
        (_set("version", 4), "version must be str"),
        (_set("files", {"model.onnx": 1}), "sha256 strings"),
        (_set("gate.schema", "other.gate.v1"), "gate record schema"),
        (_drop("gate.verdicts.0.origin"), "missing keys ['origin']"),
        (_set("gate.verdicts.0.origin.forged", True), "unknown keys ['forged']"),
        (_set("gate.verdicts.0.evaluation_id", "41"), "evaluation_id must be int"),
        (_set("gate.verdicts.0.passed", "yes"), "verdict.passed must be bool"),
        (_set("gate.approved", 1), "approved must be bool"),
        (_set("gate", {}), "missing keys"),
    ],
)
def test_a_tampered_or_foreign_entry_is_refused_by_the_code_and_the_schema(edit, message):
    doc = copy.deepcopy(_entry().to_json())
    edit(doc)
    with pytest.raises(BundleIntegrityError, match="not a bundle entry this code serves") as exc:
        ModelEntry.from_json(doc)
    assert message in str(exc.value)
    assert isinstance(exc.value.__cause__, ContractError)
    assert _errors(ENTRY, doc), "the schema accepts what the code refuses"


def test_a_never_gated_entry_parses_but_is_not_served():
    doc = {**_entry().to_json(), "gate": None}
    entry = ModelEntry.from_json(doc)
    assert entry.gate is None and _errors(ENTRY, doc) == []
    assert missing_verdicts(entry)[0] == "an approved gate record"


def test_a_bundle_of_another_version_is_refused():
    bundle = {"schema": "ml-assets.serving-bundle.v2", "models": {}}
    with pytest.raises(BundleIntegrityError, match=BUNDLE_SCHEMA):
        entries_of(bundle)


def test_a_gate_record_alone_round_trips():
    record = _entry().gate
    assert isinstance(record, GateRecord)
    assert GateRecord.from_json(record.to_json()) == record
    assert record.margin.relative and record.verdicts[0].origin == ORIGIN


def test_the_bundle_serving_bundle_wrote_is_in_its_schema_everywhere_it_is_kept(bundled):  # noqa: F811
    manifest = bundled["manifest"]
    assert manifest["schema"] == BUNDLE_SCHEMA and "threshold" not in manifest
    bento = next(Path(bundled["home"], "bentos", "ml-assets").glob("*/src/serving/bundle.json"))
    assert json.loads(bento.read_text())["models"] == manifest["models"]
    for role, doc in manifest["models"].items():
        assert _errors(ENTRY, doc) == [], role
        entry = ModelEntry.from_json(doc)
        assert entry.to_json() == doc and missing_verdicts(entry) == []
        stored = Path(bundled["home"], "models", entry.registered_model)
        (manifest_file,) = stored.glob(f"v{entry.version}-*/{MODEL_MANIFEST}")
        assert json.loads(manifest_file.read_text()) == doc
    route = manifest["models"]["fraud"]["info"]["lineage"]["score_routes"]
    assert route == {
        "decision_field": "is_fraud",
        "threshold": 0.5,
        "threshold_env": "ML_FRAUD_THRESHOLD",
    }
