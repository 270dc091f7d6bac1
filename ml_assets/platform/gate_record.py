"""The gate record: what the promotion gate found for one version, as a bundle entry carries it.

Every gate's verdict, and for each blocking check the evaluation it counted: its asset, check,
data version, evaluation id and the origin (run id, job, step, run status, code location) that
the service judges again by the evidence rule (ml_assets/platform/evidence.py). The JSON form is
versioned (schema ml_assets/schemas/ml.gate.record.v1.json); `from_json` refuses unknown and
missing keys, so a bundle cannot carry a record the gate did not write. Stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ml_assets.platform.evidence import Origin

GATE_RECORD_SCHEMA = "ml-assets.gate-record.v1"


class ContractError(ValueError):
    """A JSON document that is not the versioned contract it claims to be."""


def exact_keys(data: object, keys: tuple[str, ...], where: str) -> Mapping[str, Any]:
    """`data` as a mapping holding exactly `keys` (else a ContractError naming the difference)."""
    if not isinstance(data, Mapping):
        raise ContractError(f"{where} is a JSON object, got {type(data).__name__}")
    unknown, missing = sorted(set(data) - set(keys)), [k for k in keys if k not in data]
    if unknown or missing:
        raise ContractError(f"{where}: unknown keys {unknown}, missing keys {missing}")
    return data


def typed(value: Any, kinds: tuple[type, ...], where: str) -> Any:
    """`value` if it is one of `kinds` (a bool is not taken for a number)."""
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = "/".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise ContractError(f"{where} must be {names}, got {value!r}")
    return value


_TEXT, _MAYBE_TEXT = (str,), (str, type(None))
_NUMBER = (int, float)


@dataclass(frozen=True)
class Gate:
    """One gate's verdict: its name, whether it passed and why."""

    name: str
    passed: bool
    detail: str

    @classmethod
    def from_json(cls, data: object) -> Gate:
        d = exact_keys(data, ("name", "passed", "detail"), "a gate")
        return cls(
            typed(d["name"], _TEXT, "gate.name"),
            typed(d["passed"], (bool,), "gate.passed"),
            typed(d["detail"], _TEXT, "gate.detail"),
        )


_ORIGIN_KEYS = ("run_id", "step", "job", "status", "location")


def origin_from_json(data: object) -> Origin | None:
    if data is None:
        return None
    d = exact_keys(data, _ORIGIN_KEYS, "a verdict's origin")
    return Origin(
        run_id=typed(d["run_id"], _TEXT, "origin.run_id"),
        **{k: typed(d[k], _MAYBE_TEXT, f"origin.{k}") for k in _ORIGIN_KEYS[1:]},
    )


@dataclass(frozen=True)
class RecordedVerdict:
    """One blocking check's evaluation the gate counted, and the run that wrote it."""

    asset: str
    check: str
    data_version: str | None
    passed: bool | None
    run_id: str | None
    evaluation_id: int | None
    evaluated_at: float | None
    target_storage_id: int | None
    origin: Origin | None  # None: never evaluated, so no run wrote it

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "origin": None if self.origin is None else self.origin.to_dict()}

    @classmethod
    def of(cls, verdict: Any) -> RecordedVerdict:
        """The record of a gate's Verdict (ml_assets/platform/validation_records.py)."""
        return cls.from_json({**verdict.to_dict(), "origin": verdict.origin or None})

    @classmethod
    def from_json(cls, data: object) -> RecordedVerdict:
        d = exact_keys(data, tuple(cls.__dataclass_fields__), "a verdict")
        whole = (int, type(None))
        return cls(
            asset=typed(d["asset"], _TEXT, "verdict.asset"),
            check=typed(d["check"], _TEXT, "verdict.check"),
            data_version=typed(d["data_version"], _MAYBE_TEXT, "verdict.data_version"),
            passed=typed(d["passed"], (bool, type(None)), "verdict.passed"),
            run_id=typed(d["run_id"], _MAYBE_TEXT, "verdict.run_id"),
            evaluation_id=typed(d["evaluation_id"], whole, "verdict.evaluation_id"),
            evaluated_at=typed(d["evaluated_at"], (*_NUMBER, type(None)), "verdict.evaluated_at"),
            target_storage_id=typed(d["target_storage_id"], whole, "verdict.target_storage_id"),
            origin=origin_from_json(d["origin"]),
        )


@dataclass(frozen=True)
class Margin:
    """How much worse than the champion a candidate may be, and who said so."""

    value: float
    relative: bool
    source: str


_RECORD_KEYS = (
    "schema",
    "approved",
    "evaluated_at",
    "gates",
    "verdicts",
    "evidence",
    "records_used",
    "records_ignored",
    "margin",
    "source",
)


@dataclass(frozen=True)
class GateRecord:
    """The gate's decision on one version, as the bundle carries it and the service reads it.

    `evidence`: the facts the gate found (sha256s of the export, report and raw data, run ids,
    the report's thresholds), which differ by kind of model."""

    approved: bool
    evaluated_at: str
    gates: tuple[Gate, ...]
    verdicts: tuple[RecordedVerdict, ...]
    evidence: dict[str, Any] = field(default_factory=dict)
    records_used: tuple[str, ...] = ()
    records_ignored: tuple[str, ...] = ()
    margin: Margin = Margin(0.0, True, "")
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": GATE_RECORD_SCHEMA,
            "approved": self.approved,
            "evaluated_at": self.evaluated_at,
            "gates": [asdict(g) for g in self.gates],
            "verdicts": [v.to_json() for v in self.verdicts],
            "evidence": dict(self.evidence),
            "records_used": list(self.records_used),
            "records_ignored": list(self.records_ignored),
            "margin": asdict(self.margin),
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: object) -> GateRecord:
        d = exact_keys(data, _RECORD_KEYS, "the gate record")
        if d["schema"] != GATE_RECORD_SCHEMA:
            raise ContractError(
                f"gate record schema {d['schema']!r}, this code reads {GATE_RECORD_SCHEMA!r}"
            )
        margin = exact_keys(d["margin"], ("value", "relative", "source"), "the gate's margin")

        def texts(key: str) -> tuple[str, ...]:
            return tuple(typed(x, _TEXT, key) for x in typed(d[key], (list,), key))

        return cls(
            approved=typed(d["approved"], (bool,), "approved"),
            evaluated_at=typed(d["evaluated_at"], _TEXT, "evaluated_at"),
            gates=tuple(Gate.from_json(g) for g in typed(d["gates"], (list,), "gates")),
            verdicts=tuple(
                RecordedVerdict.from_json(v) for v in typed(d["verdicts"], (list,), "verdicts")
            ),
            evidence=dict(typed(d["evidence"], (dict,), "evidence")),
            records_used=texts("records_used"),
            records_ignored=texts("records_ignored"),
            margin=Margin(
                typed(margin["value"], _NUMBER, "margin.value"),
                typed(margin["relative"], (bool,), "margin.relative"),
                typed(margin["source"], _TEXT, "margin.source"),
            ),
            source=typed(d["source"], _TEXT, "source"),
        )
