"""A module's public API and the docstrings it owns, in a fixed order."""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Iterator
from types import ModuleType

# Public aliases of a class documented under its better-known name (socket.socket subclasses
# _socket.socket, which socket exports as SocketType).
SKIP = frozenset({"socket.SocketType"})
# Hooks a running program may replace (pytest swaps threading.excepthook and
# sys.unraisablehook): the module keeps the original as __name__, which is what gets documented.
HOOKS = frozenset({"breakpointhook", "displayhook", "excepthook", "unraisablehook"})


def own_doc(obj: object) -> str:
    """The object's own docstring, cleaned (inspect.getdoc without inheriting a base's)."""
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def with_init(cls: type, doc: str) -> str:
    """A class's docstring followed by its own __init__'s, as help() shows them together."""
    init = vars(cls).get("__init__")
    extra = own_doc(init) if inspect.isfunction(init) else ""
    if not extra or " ".join(extra.split()) in " ".join(doc.split()):
        return doc
    return f"{doc}\n\n{extra}" if doc else extra


def is_routine(obj: object) -> bool:
    return inspect.isroutine(obj) or isinstance(obj, classmethod | staticmethod)


def public_members(module: ModuleType) -> list[tuple[str, object]]:
    """(name, object) for the module's public classes and functions, sorted by name."""
    name = module.__name__
    listed = getattr(module, "__all__", None)
    out = []
    for attr in sorted(listed if listed is not None else vars(module)):
        if attr.startswith("_") or not hasattr(module, attr):
            continue
        obj = getattr(module, attr)
        if attr in HOOKS and is_routine(vars(module).get(f"__{attr}__")):
            obj = vars(module)[f"__{attr}__"]
        if not (inspect.isclass(obj) or is_routine(obj)):
            continue
        alias_of = getattr(obj, "__name__", attr)
        if alias_of != attr and getattr(module, alias_of, None) is obj:
            continue  # array.ArrayType is array.array: document it under its own name
        if listed is None:
            # Without __all__, keep what the module (or its C accelerator) defines itself.
            origin = getattr(obj, "__module__", None) or ""
            short = name.rsplit(".", 1)[-1]
            if origin not in (name, f"_{short}") and not origin.startswith(f"{name}."):
                continue
        out.append((attr, obj))
    # Functions first: random.choice is documented as itself, not as random.Random.choice.
    return sorted(out, key=lambda m: (inspect.isclass(m[1]), m[0]))


def class_members(cls: type) -> list[tuple[str, str, object]]:
    """(name, kind, object) for a class's public methods and properties, sorted by name.

    Members come from the class itself and from private bases it wraps (socket.socket over
    _socket.socket, io classes over _io): those bases are documented nowhere else.
    """
    found: dict[str, tuple[str, object]] = {}
    for klass in cls.__mro__:
        if klass is object or (klass is not cls and not klass.__module__.startswith("_")):
            continue
        for attr, obj in vars(klass).items():
            if attr.startswith("_") or attr in found:
                continue
            if is_routine(obj):
                found[attr] = ("method", obj)
            elif isinstance(obj, property) or inspect.isgetsetdescriptor(obj):
                found[attr] = ("property", obj)
    return [(a, k, o) for a, (k, o) in sorted(found.items())]


def docstrings(module: ModuleType) -> Iterator[tuple[str, str, object]]:
    """(qualified name, kind, object) for the module and its public API, in a fixed order."""
    name = module.__name__ if module.__name__ != "posixpath" else "os.path"
    yield name, "module", module
    for attr, obj in public_members(module):
        qual = f"{name}.{attr}"
        if qual in SKIP:
            continue
        if inspect.isclass(obj):
            yield qual, "class", obj
            for mattr, kind, mobj in class_members(obj):
                yield f"{qual}.{mattr}", kind, mobj
        else:
            yield qual, "function", obj


def import_module(name: str) -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(name)
