"""What both generators share: the word count their length rules use, and the JSONL writer."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path


def nwords(text: str) -> int:
    return len(text.split())


def write_jsonl(path: Path, rows: Sequence[Mapping[str, object]]) -> None:
    """One compact JSON object a line, UTF-8, newline-terminated: the shipped files' bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
