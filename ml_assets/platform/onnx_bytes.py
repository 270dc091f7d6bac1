"""Canonical ONNX bytes: every ONNX file the platform writes goes through `canonical_onnx`.

Exporters leave some lists in set or dict order: skl2onnx builds `opset_import` from a set of
domains, so the order of `ai.onnx.ml` and the default domain follows Python's string-hash
randomisation and two processes write different bytes for the same model. Everything whose
order carries no meaning is sorted here; the node list (a topological order) is left alone.
"""

from __future__ import annotations

from typing import Any


def _sort_repeated(field: Any, key: Any) -> None:
    copies = []
    for item in sorted(field, key=key):
        copy = type(item)()
        copy.CopyFrom(item)
        copies.append(copy)
    del field[:]
    field.extend(copies)


def _canonical_graph(graph: Any) -> None:
    for node in graph.node:
        _sort_repeated(node.attribute, key=lambda a: a.name)
        for attr in node.attribute:
            if attr.HasField("g"):
                _canonical_graph(attr.g)
            for sub in attr.graphs:
                _canonical_graph(sub)
    _sort_repeated(graph.metadata_props, key=lambda p: p.key)


def canonical_onnx(model: Any) -> bytes:
    """`model` (an onnx.ModelProto, changed in place) as deterministic bytes: opset imports by
    domain, metadata by key, node attributes by name, functions by (domain, name)."""
    _sort_repeated(model.opset_import, key=lambda o: o.domain)
    _sort_repeated(model.metadata_props, key=lambda p: p.key)
    _sort_repeated(model.functions, key=lambda f: (f.domain, f.name, f.overload))
    for function in model.functions:
        _sort_repeated(function.opset_import, key=lambda o: o.domain)
        for node in function.node:
            _sort_repeated(node.attribute, key=lambda a: a.name)
    _canonical_graph(model.graph)
    return model.SerializeToString(deterministic=True)


def canonical_onnx_bytes(data: bytes) -> bytes:
    """`canonical_onnx` of serialized ONNX bytes (what a writer that only has bytes calls)."""
    import onnx

    return canonical_onnx(onnx.load_from_string(data))
