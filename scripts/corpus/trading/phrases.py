"""The phrase tables and the template DSL in scripts/corpus_phrases/: data, not code."""

from __future__ import annotations

from pathlib import Path

PHRASES = Path(__file__).resolve().parents[2] / "corpus_phrases"


def phrases(name: str) -> str:
    """A phrase table or template file (scripts/corpus_phrases/)."""
    return (PHRASES / name).read_text(encoding="utf-8")


def records(table: str) -> list[list[str]]:
    """Split a pipe table into records; indented lines continue the previous record."""
    rows: list[str] = []
    for line in table.strip("\n").splitlines():
        if line.startswith(" "):
            rows[-1] += "|" + line.strip()
        else:
            rows.append(line)
    return [r.split("|") for r in rows]


def blocks(text: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Parse the template DSL: '@ name | fields', '- '/'~ ' new slot, '| ' variant, indent wraps."""
    out: dict[str, tuple[list[str], list[list[str]]]] = {}
    head, slots = "", []
    for raw in text.strip("\n").splitlines():
        line = raw.rstrip()
        if line.startswith("@ "):
            head, slots = line[2:], []
        elif line.startswith("  ") and not slots:
            head += " " + line.strip()
        elif line.startswith(("- ", "~ ")):
            slots.append([line[2:]] if line[0] == "-" else [line])
        elif line.startswith("| "):
            slots[-1].append(line[2:])
        elif line.startswith("  "):
            slots[-1][-1] += " " + line.strip()
        elif line:
            raise ValueError(f"bad template line: {raw!r}")
        fields = [f.strip() for f in head.split("|")]
        out[fields[0]] = (fields[1:], slots)
    return out
