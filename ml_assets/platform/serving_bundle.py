"""What a serving bundle holds and how its files are verified: shared by the bundle asset and
the BentoML service (stdlib only, so the serving image needs nothing more to check a file).

A bundle pins one version of each registered model. Each model directory (a BentoML model)
holds the files and `ml_model.json`: registered name, version, every file's sha256 and the
provenance chain back to the raw data. The bundle manifest repeats those hashes; the service
loads a file only after its bytes hashed to the manifest's value.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml_assets.platform.evidence import verdict_problem
from ml_assets.platform.gate_record import ContractError, GateRecord, exact_keys, typed
from ml_assets.platform.lineage_spec import LineageSpec
from ml_assets.platform.score_route import ScoreRoute

# v3: each model entry is a versioned contract (ENTRY_SCHEMA) and /v1/score's decision is the
# one its lineage's `score_routes` declares (no bundle-wide threshold).
BUNDLE_SCHEMA = "ml-assets.serving-bundle.v3"
ENTRY_SCHEMA = "ml-assets.bundle-entry.v1"
MODEL_MANIFEST = "ml_model.json"
BUNDLE_MANIFEST = "bundle.json"
# A bundle's models by role: the text embedder's, and each declared lineage's under its name.
# Each entry carries its registered model name, as the YAML that declared it gives it.
EMBEDDER = "embedder"
PRODUCTION_ALIAS = "production"
# The files each role needs, in the model directory (a declared lineage's model: its ONNX).
ROLE_FILES = {EMBEDDER: ("model.onnx", "tokenizer.json")}
TABULAR_FILES = ("model.onnx",)


class BundleIntegrityError(RuntimeError):
    """A bundled file is missing or its bytes differ from the sha256 the manifest pins."""


_ENTRY_KEYS = ("schema", "role", "registered_model", "version", "files", "provenance", "info")


@dataclass(frozen=True)
class ModelEntry:
    """One served model: which registry version it is and what its files hash to.

    Its JSON form (`to_json`; schema ml_assets/schemas/ml.bundle.entry.v1.json) is a bundle's
    `models.<role>`, the model directory's ml_model.json and the release file's; `from_json`
    refuses unknown and missing keys."""

    role: str
    registered_model: str
    version: str
    files: dict[str, str]  # file name -> sha256
    provenance: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # variant, metrics, mlflow run id, ...
    # The promotion gate's record for this version, from the platform's records (Dagster check
    # evaluations by data version), each verdict with the run and evaluation it came from;
    # None: never gated (the service refuses to serve it).
    gate: GateRecord | None = None

    @property
    def bento_tag(self) -> str:
        return bento_tag(self.registered_model, self.version, self.files["model.onnx"])

    @property
    def label(self) -> str:
        return f"{self.registered_model}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": ENTRY_SCHEMA,
            "role": self.role,
            "registered_model": self.registered_model,
            "version": self.version,
            "files": dict(self.files),
            "provenance": list(self.provenance),
            "info": dict(self.info),
            "gate": None if self.gate is None else self.gate.to_json(),
        }

    @classmethod
    def from_json(cls, data: object) -> ModelEntry:
        """Parse a bundle entry; a BundleIntegrityError names what is unknown or missing."""
        try:
            d = exact_keys(data, (*_ENTRY_KEYS, "gate"), "a bundle entry")
            if d["schema"] != ENTRY_SCHEMA:
                raise ContractError(f"schema {d['schema']!r}, this code reads {ENTRY_SCHEMA!r}")
            files = typed(d["files"], (dict,), "files")
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
                raise ContractError("files maps file names to sha256 strings")
            provenance = typed(d["provenance"], (list,), "provenance")
            return cls(
                role=typed(d["role"], (str,), "role"),
                registered_model=typed(d["registered_model"], (str,), "registered_model"),
                version=typed(d["version"], (str,), "version"),
                files=dict(files),
                provenance=[typed(link, (dict,), "a provenance link") for link in provenance],
                info=dict(typed(d["info"], (dict,), "info")),
                gate=None if d["gate"] is None else GateRecord.from_json(d["gate"]),
            )
        except ContractError as exc:
            role = data.get("role") if isinstance(data, dict) else None
            raise BundleIntegrityError(
                f"{role or 'a model'}: not a bundle entry this code serves ({exc}); rebuild the "
                "bundle with the serving_job"
            ) from exc


def bento_tag(registered_model: str, version: str | int, model_sha256: str) -> str:
    """The BentoML model tag of a registry version: pinned by version and hash, never `latest`
    (two registries can both have a version 3; their files cannot share a hash)."""
    return f"{registered_model}:v{version}-{model_sha256[:12]}"


def sha256_path(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_verified(model_dir: Path, name: str, expected_sha256: str, label: str) -> bytes:
    """A bundled file's bytes, refused unless they hash to `expected_sha256`."""
    path = Path(model_dir) / name
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise BundleIntegrityError(f"{label}: {path} is missing from the bundle") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise BundleIntegrityError(
            f"{label}: {path} has sha256 {actual}, the manifest pins {expected_sha256}; "
            "the file was modified after the bundle was built. Rebuild serving_bundle."
        )
    return data


def verify_model_dir(model_dir: Path, entry: ModelEntry) -> dict[str, bytes]:
    """Every file `entry` needs, read from `model_dir` and checked against its pinned sha256."""
    missing = [n for n in ROLE_FILES.get(entry.role, TABULAR_FILES) if n not in entry.files]
    if missing:
        raise BundleIntegrityError(f"{entry.label}: the manifest lists no {missing}")
    return {
        name: read_verified(model_dir, name, sha, entry.label) for name, sha in entry.files.items()
    }


def write_json_atomic(path: Path, obj: Any) -> None:
    """Readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)


def bundle_manifest(entries: list[ModelEntry], search: dict[str, Any]) -> dict[str, Any]:
    """`search`: the configuration the search quality report judged for the bundled embedder
    ({"enabled": True, "config": ...}) or why search is not served ({"enabled": False, ...})."""
    return {
        "schema": BUNDLE_SCHEMA,
        "models": {e.role: e.to_json() for e in entries},
        "search": search,
    }


def entries_of(manifest: dict[str, Any]) -> dict[str, ModelEntry]:
    if manifest.get("schema") != BUNDLE_SCHEMA:
        raise BundleIntegrityError(
            f"not a serving bundle manifest (schema {manifest.get('schema')!r}, "
            f"expected {BUNDLE_SCHEMA!r})"
        )
    return {role: ModelEntry.from_json(d) for role, d in manifest["models"].items()}


# The blocking checks whose passed evaluations a served model's manifest must carry (the gate
# wrote them from the platform's records; the service refuses an entry without them).
REQUIRED_VERDICTS = {EMBEDDER: ("fp32_parity", "int8_parity", "int8_retrieval")}


def lineage_of_entry(entry: ModelEntry) -> dict[str, Any] | None:
    """The declared lineage (LineageSpec as a dict) a tabular model's entry carries, if any."""
    lineage = entry.info.get("lineage")
    return lineage if isinstance(lineage, dict) else None


def served_lineages(entries: dict[str, ModelEntry]) -> dict[str, LineageSpec]:
    """Every declared lineage's spec the bundle's entries carry, by role (the lineage's name)."""
    return {
        role: LineageSpec.from_dict(lineage)
        for role, entry in entries.items()
        if (lineage := lineage_of_entry(entry)) is not None
    }


def score_role(entries: dict[str, ModelEntry]) -> str:
    """The role whose model answers /v1/score: the lineage that declares `score_routes`."""
    roles = [r for r, e in entries.items() if (lineage_of_entry(e) or {}).get("score_routes")]
    if len(roles) != 1:
        raise BundleIntegrityError(
            f"the bundle has {len(roles)} models declaring score_routes ({roles}); /v1/score "
            "needs exactly one: declare `score_routes: {decision_field: ..., threshold: ...}` in "
            "one lineage's YAML and promote it"
        )
    return roles[0]


def score_route(spec: LineageSpec) -> ScoreRoute:
    """The decision /v1/score answers with `spec`'s model: what its `score_routes` declares."""
    if spec.score_routes is None:
        raise BundleIntegrityError(f"lineage {spec.name!r} declares no score_routes")
    return spec.score_routes


def required_verdicts(entry: ModelEntry) -> tuple[str, ...]:
    if entry.role in REQUIRED_VERDICTS:
        return REQUIRED_VERDICTS[entry.role]
    lineage = lineage_of_entry(entry)
    if lineage is None:
        return ("a declared lineage",)
    return (lineage.get("expectations_check", "expectations"), *lineage.get("report_checks", ()))


def missing_verdicts(entry: ModelEntry) -> list[str]:
    """The required checks `entry`'s gate record lacks a counting passed verdict for.

    A verdict counts by the platform's one evidence rule (ml_assets/platform/evidence.py), applied
    to the run, job, step and status the gate recorded beside it: the gate and the service
    answer the question the same way."""
    required = required_verdicts(entry)
    gate = entry.gate
    if gate is None or not gate.approved:
        return ["an approved gate record", *required]
    passed = {v.check for v in gate.verdicts if verdict_problem(v.to_json()) is None}
    return [c for c in required if c not in passed]


def require_verdicts(entry: ModelEntry) -> None:
    """Refuse to serve a model whose manifest does not show every blocking check passed."""
    missing = missing_verdicts(entry)
    if missing:
        raise BundleIntegrityError(
            f"{entry.label}: the manifest carries no passed verdict for {', '.join(missing)}; "
            "only a bundle built by serving_bundle (which runs the promotion gate on the "
            "platform's records) is served. Rebuild it with the serving_job."
        )
