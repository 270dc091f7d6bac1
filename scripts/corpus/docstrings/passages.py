"""The docs corpus: one passage per docstring chunk, with the invariants the shipped set keeps."""

from __future__ import annotations

import dataclasses
import re
import sys

from ..common import nwords
from .chunking import chunk
from .introspect import docstrings, import_module, own_doc, with_init
from .modules import TENANTS, listed_modules

# The interpreter whose docstrings the shipped files hold (the project venv).
PYTHON_VERSION = "3.11.7"
# Fixed stamp (the 3.11.7 release day): the corpus must not depend on when it was built.
UPDATED_AT = "2023-12-04T00:00:00Z"
# The loader knows five types; a docstring passage is a "document", its kind goes in the tags.
DOC_TYPE = "document"
MIN_DOC_WORDS = 6  # shorter docstrings ("Return self.") carry nothing to search for
FORBIDDEN = "pydoc_data"


@dataclasses.dataclass(frozen=True)
class Passage:
    id: str
    tenant_id: str
    title: str
    text: str
    tags: tuple[str, ...]
    qualname: str
    part: int
    parts: int


def build_corpus() -> list[Passage]:
    """Every passage of every listed module, sorted by id; raises on a broken invariant."""
    seen_objects: dict[int, object] = {}
    seen_docs: set[str] = set()
    passages: list[Passage] = []
    forbidden_before = FORBIDDEN in sys.modules
    modules = [(import_module(name), tenant, topic) for name, tenant, topic in listed_modules()]
    if FORBIDDEN in sys.modules and not forbidden_before:
        raise RuntimeError(f"importing the listed modules imported {FORBIDDEN}; drop the culprit")
    for module, tenant, topic in modules:
        top = module.__name__.split(".")[0] if module.__name__ != "posixpath" else "os"
        for qual, kind, obj in docstrings(module):
            target = getattr(obj, "__func__", obj)  # bound, class and static methods
            if id(target) in seen_objects:
                continue
            seen_objects[id(target)] = target  # held, so that no id is reused
            doc = own_doc(obj)
            if kind == "class":
                doc = with_init(obj, doc)
            norm = " ".join(doc.split())
            if nwords(doc) < MIN_DOC_WORDS or norm in seen_docs:
                continue
            if kind == "class" and dataclasses.is_dataclass(obj) and "\n" not in doc:
                if re.fullmatch(rf"{re.escape(obj.__name__)}\(.*\)", doc):
                    continue  # a dataclass's generated "Name(field: type, ...)" says nothing
            seen_docs.add(norm)
            parts = chunk(doc)
            prefix = TENANTS[tenant]
            tags = tuple(dict.fromkeys([top.lower(), kind, topic]))
            for i, text in enumerate(parts, start=1):
                suffix = f" ({i}/{len(parts)})" if len(parts) > 1 else ""
                passages.append(
                    Passage(
                        id=f"{prefix}-{qual}-{i}",
                        tenant_id=tenant,
                        title=f"{qual}{suffix}",
                        text=text,
                        tags=tags,
                        qualname=qual,
                        part=i,
                        parts=len(parts),
                    )
                )
    passages.sort(key=lambda p: p.id)
    ids = [p.id for p in passages]
    if len(set(ids)) != len(ids):
        raise ValueError("two passages share an id")
    for p in passages:
        if FORBIDDEN in p.text or FORBIDDEN in p.title:
            raise ValueError(f"{p.title} mentions {FORBIDDEN}")
    return passages


def row(p: Passage) -> dict[str, object]:
    return {
        "id": p.id,
        "tenant_id": p.tenant_id,
        "type": DOC_TYPE,
        "title": p.title,
        "text": p.text,
        "tags": list(p.tags),
        "updated_at": UPDATED_AT,
    }
