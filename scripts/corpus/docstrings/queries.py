"""The labelled queries, resolved against the corpus and checked for copied or missing labels."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .labels import QUERY_TABLE
from .modules import TENANT_OF_PREFIX
from .passages import Passage


@dataclasses.dataclass(frozen=True)
class Query:
    id: str
    tenant_id: str
    split: str
    query: str
    refs: tuple[str, ...]


def parse_queries() -> list[Query]:
    records: list[list[str]] = []
    for n, line in enumerate(QUERY_TABLE.strip().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        if line[0].isspace():
            if not records:
                raise ValueError(f"QUERY_TABLE line {n}: titles before any query")
            records[-1][4] += ";" + line
            continue
        fields = line.split("|")
        if len(fields) != 4:
            raise ValueError(f"QUERY_TABLE line {n}: expected id|tenant|split|query: {line!r}")
        records.append([*fields, ""])
    out = []
    for qid, prefix, split, query, refs in records:
        titles = tuple(r.strip() for r in refs.split(";") if r.strip())
        out.append(Query(qid.strip(), TENANT_OF_PREFIX[prefix], split, query.strip(), titles))
    return out


def resolve(ref: str, by_qual: dict[str, list[Passage]]) -> Passage:
    """The passage a label names: `qualname` (a one-passage docstring) or `qualname#n`."""
    qual, _, part = ref.partition("#")
    found = by_qual.get(qual)
    if not found:
        raise ValueError(f"label {ref!r}: no docstring {qual!r} in the corpus")
    if not part:
        if len(found) > 1:
            raise ValueError(f"label {ref!r}: {qual} has {len(found)} passages; write {qual}#n")
        return found[0]
    if not part.isdigit() or not 1 <= int(part) <= len(found):
        raise ValueError(f"label {ref!r}: {qual} has passages 1..{len(found)}")
    return found[int(part) - 1]


def build_queries(passages: Sequence[Passage]) -> list[dict[str, object]]:
    by_qual: dict[str, list[Passage]] = {}
    for p in sorted(passages, key=lambda p: (p.qualname, p.part)):
        by_qual.setdefault(p.qualname, []).append(p)
    rows = []
    seen: set[str] = set()
    for q in parse_queries():
        if q.id in seen:
            raise ValueError(f"query id {q.id} used twice")
        seen.add(q.id)
        if q.split not in ("tune", "eval"):
            raise ValueError(f"{q.id}: unknown split {q.split!r}")
        rel = [resolve(r, by_qual) for r in q.refs]
        for p in rel:
            if p.tenant_id != q.tenant_id:
                raise ValueError(f"{q.id}: {p.title} belongs to {p.tenant_id}, not {q.tenant_id}")
            if q.query.lower() in p.text.lower() or q.query.lower() in p.title.lower():
                raise ValueError(f"{q.id}: the query is copied from {p.title}")
        ids = list(dict.fromkeys(p.id for p in rel))
        texts = {p.text for p in rel}
        twins = [p.title for p in passages if p.text in texts and p.id not in ids]
        if any(p.tenant_id == q.tenant_id for p in passages if p.title in twins):
            raise ValueError(f"{q.id}: {', '.join(twins)} repeat a labelled text; label them too")
        if not 1 <= len(ids) <= 4:
            raise ValueError(f"{q.id}: {len(ids)} relevant passages; label 1 to 4")
        rows.append(
            {
                "id": q.id,
                "tenant_id": q.tenant_id,
                "query": q.query,
                "relevant_ids": ids,
                "split": q.split,
            }
        )
    return rows
