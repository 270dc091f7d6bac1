"""Cutting a long docstring into passages of about equal size at paragraph boundaries."""

from __future__ import annotations

import re

from ..common import nwords

MIN_WORDS, MAX_WORDS = 60, 180  # passage size when a docstring is chunked


def pieces(paragraph: str) -> list[str]:
    """Split one over-long paragraph at line (or sentence) ends into pieces of <= MAX_WORDS."""
    lines = paragraph.split("\n")
    if len(lines) == 1:
        lines = re.split(r"(?<=[.;:])\s+", paragraph)
    out: list[str] = []
    cur: list[str] = []
    for line in lines:
        if cur and nwords("\n".join([*cur, line])) > MAX_WORDS:
            out.append("\n".join(cur))
            cur = []
        cur.append(line)
    if cur:
        out.append("\n".join(cur))
    return out


def chunk(doc: str) -> list[str]:
    """Passages of MIN_WORDS..MAX_WORDS words, cut at paragraph boundaries where possible."""
    if nwords(doc) <= MAX_WORDS:
        return [doc]
    paras = []
    for p in re.split(r"\n\s*\n", doc):
        if p.strip():
            paras.extend(pieces(p.strip()) if nwords(p) > MAX_WORDS else [p.strip()])
    total = sum(nwords(p) for p in paras)
    # Aim for equal passages: n of them, each about total / n words.
    n = -(-total // MAX_WORDS)
    target = total / n
    out: list[list[str]] = [[]]
    size = 0
    for p in paras:
        w = nwords(p)
        if out[-1] and (size + w > MAX_WORDS or (size >= target and size >= MIN_WORDS)):
            out.append([])
            size = 0
        out[-1].append(p)
        size += w
    passages = ["\n\n".join(ps) for ps in out]
    # A short tail joins the passage before it when the two still fit loosely together.
    if len(passages) > 1 and nwords(passages[-1]) < MIN_WORDS // 2:
        merged = passages[-2] + "\n\n" + passages[-1]
        if nwords(merged) <= MAX_WORDS + MIN_WORDS // 2:
            passages[-2:] = [merged]
    return passages
