"""The one rule for what counts as evidence (Dagster-free, so the service applies it too).

A materialization or check evaluation counts only if a run of this code location wrote it:
a non-empty run id; the run exists in the instance and succeeded; the run came from this code
location (the daemon's and the UI's runs name it; `dagster job execute -m` names its module; an
in-process `materialize` names none); its job is an asset job or a declared job that runs that
asset or check; and the step that wrote it is that asset's (or check's) step. Nothing else
counts, neither for a version nor against it: runless events (the UI's "report
materialization", the webserver's REST API, `DagsterInstance.report_runless_asset_event`) carry
no run, and records of other code locations or other jobs are ignored.

`judge` is that rule. The record store
(ml_assets/platform/dagster_records.py) asks it about every record
it reads, the gate reports what it ignored and why, and the service asks it again about the
origins a bundle's verdicts carry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

# Dagster's implicit asset jobs: what the UI's Materialize button, `dagster asset materialize`
# and an in-process `materialize([...])` run. They run this code location's own asset steps.
ASSET_JOB = re.compile(r"^(__ASSET_JOB(_\d+)?|__ephemeral_asset_job__)$")
SUCCESS = "SUCCESS"
CODE_LOCATION = "ml_assets"
DEFINITIONS_MODULE = "ml_assets.definitions"
# In-process runs (`materialize`, `execute_job` in a Python session) name no code location.
IN_PROCESS = ""


def step_of(asset: str) -> str:
    """The step key Dagster gives the op of asset `asset` ("credit/onnx" -> "credit__onnx")."""
    return "__".join(asset.split("/")).replace("-", "_").replace(".", "_")


def check_steps(asset: str, check: str) -> tuple[str, ...]:
    """The steps that may evaluate `check` on `asset`: the asset's own (a check_spec) or the
    check's op (`@asset_check`, named `<asset step>_<check>`)."""
    return (step_of(asset), f"{step_of(asset)}_{check}")


@dataclass(frozen=True)
class Origin:
    """Who wrote one record: its run, as the instance knows it, and the step."""

    run_id: str
    step: str | None = None
    job: str | None = None
    status: str | None = None  # the run's status; None when the instance has no such run
    location: str | None = None  # code location or module the run came from; "" in-process

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvidenceRule:
    """This code location's identity: its name, its definitions module, its declared jobs."""

    location: str = CODE_LOCATION
    modules: tuple[str, ...] = (DEFINITIONS_MODULE,)
    # Each declared job's assets and checks ("credit/onnx", "credit/onnx:check"); None when the
    # caller has no definitions at hand (the service): then only asset jobs' records count and
    # any declared job's, as the gate already judged it.
    jobs: Mapping[str, frozenset[str]] | None = None

    def judge(self, subject: str, steps: tuple[str, ...], origin: Origin) -> str | None:
        """None when the record counts; otherwise why it is ignored (one short phrase)."""
        if not origin.run_id:
            return "runless (written through the UI, the REST API or the instance API)"
        if origin.status is None:
            return f"its run {origin.run_id[:8]} is not in the instance"
        if origin.status != SUCCESS:
            return f"its run {origin.run_id[:8]} did not succeed ({origin.status})"
        if origin.location not in (IN_PROCESS, self.location, *self.modules):
            return f"its run {origin.run_id[:8]} came from code location {origin.location!r}"
        job = origin.job or ""
        if not ASSET_JOB.match(job):
            if self.jobs is not None and subject not in self.jobs.get(job, frozenset()):
                return f"its run {origin.run_id[:8]} is of job {job!r}, which does not run it"
        if origin.step not in steps:
            return f"step {origin.step!r} of run {origin.run_id[:8]} is not {subject}'s"
        return None


@dataclass
class Ignored:
    """Records the rule ignored, counted by kind and reason (what the gate table shows)."""

    records: dict[tuple[str, str], set[int]] = field(default_factory=dict)

    def add(self, subject: str, reason: str, record_id: int) -> None:
        self.records.setdefault((subject, reason), set()).add(record_id)

    def lines(self, assets: Iterable[str] | None = None) -> list[str]:
        """One line per (record kind, reason); only these assets' (and their checks') if given."""
        wanted = None if assets is None else set(assets)
        return [
            f"ignored {len(ids)} record{'s' if len(ids) > 1 else ''} of {subject}: {reason}"
            for (subject, reason), ids in sorted(self.records.items())
            if wanted is None or subject.split(":", 1)[0] in wanted
        ]

    def __bool__(self) -> bool:
        return bool(self.records)


def verdict_problem(verdict: Mapping[str, Any], rule: EvidenceRule | None = None) -> str | None:
    """Why a verdict a bundle carries does not count (None: it does): the same rule, applied
    to the origin the gate recorded beside the verdict."""
    rule = rule or EvidenceRule()
    if verdict.get("passed") is not True:
        return "not passed"
    if verdict.get("evaluation_id") is None:
        return "no check evaluation id"
    origin = verdict.get("origin")
    if not isinstance(origin, Mapping):
        return "no recorded origin (run, job, step)"
    asset, check = str(verdict.get("asset")), str(verdict.get("check"))
    return rule.judge(
        f"{asset}:{check}",
        check_steps(asset, check),
        Origin(
            run_id=str(origin.get("run_id") or ""),
            step=origin.get("step"),
            job=origin.get("job"),
            status=origin.get("status"),
            location=origin.get("location"),
        ),
    )
