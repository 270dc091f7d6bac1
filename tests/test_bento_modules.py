"""The Bento carries every module its service imports: serving/ and the ml_assets modules it
reaches are copied one by one (ml_assets/bundle/bento_build.py), so a module the service starts to
import without being listed would only fail when a built Bento starts."""

from __future__ import annotations

import ast

from ml_assets.bundle.bento_build import PLATFORM_MODULES, SERVING_MODULES
from tests.conftest import REPO


def _imports(path) -> set[str]:
    """Every module name `path` imports, at any depth (function-level imports too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def _closure() -> tuple[set[str], set[str]]:
    """(serving modules, ml_assets modules as paths below ml_assets/) reachable from the service."""
    serving, platform = {"service"}, set()
    todo = [REPO / "serving" / "service.py"]
    while todo:
        for name in _imports(todo.pop()):
            parts = name.split(".")
            if parts[0] == "serving" and len(parts) == 2:
                if (REPO / "serving" / f"{parts[1]}.py").exists() and parts[1] not in serving:
                    serving.add(parts[1])
                    todo.append(REPO / "serving" / f"{parts[1]}.py")
            elif parts[0] == "ml_assets":
                rel = "/".join(parts[1:])
                path = REPO / "ml_assets" / f"{rel}.py"
                if rel and path.exists() and rel not in platform:
                    platform.add(rel)
                    todo.append(path)
                    # importing a.b runs every package __init__ on the way
                    for depth in range(1, len(parts) - 1):
                        platform.add("/".join([*parts[1 : depth + 1], "__init__"]))
    return serving, platform


def test_every_module_the_service_imports_is_copied_into_the_bento():
    serving, platform = _closure()
    assert serving - set(SERVING_MODULES) == set(), "add them to bento_build.SERVING_MODULES"
    assert platform - set(PLATFORM_MODULES) == set(), "add them to bento_build.PLATFORM_MODULES"
    assert "platform/serving_bundle" in platform  # the walk reaches the platform at all


def test_the_packages_the_bento_carries_import_nothing():
    """A package __init__ copied into the Bento must not pull in what the Bento does not carry."""
    for rel in PLATFORM_MODULES:
        if rel.endswith("__init__"):
            tree = ast.parse((REPO / "ml_assets" / f"{rel}.py").read_text(encoding="utf-8"))
            assert not [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)], rel
