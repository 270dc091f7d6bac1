"""The platform's child processes (`python -m MODULE SPEC.json`) speak JSON: the parent writes the
spec file, the child prints its answer as the last line of its stdout."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def child_main(work: Callable[[dict[str, Any]], dict[str, Any]], argv: Sequence[str]) -> int:
    """The child's side: `work` on the spec in the file `argv[1]`, its answer printed as JSON."""
    spec = json.loads(Path(argv[1]).read_text())
    print(json.dumps(work(spec)))
    return 0


def child_answer(stdout: str) -> dict[str, Any]:
    """The parent's side: the answer in a child's stdout (its last line)."""
    return json.loads(stdout.strip().splitlines()[-1])
