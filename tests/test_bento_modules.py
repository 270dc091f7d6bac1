"""The Bento carries every module its service imports: serving/ and ml_assets/core/ modules are
copied one by one (ml_assets/bundle/bento_build.py), so a module the service starts to import without
being listed would only fail when a built Bento starts."""

from __future__ import annotations

import ast

from ml_assets.bundle.bento_build import CORE_MODULES, SERVING_MODULES
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
    """(serving modules, ml_assets.core modules) reachable from serving/service.py."""
    serving, core = {"service"}, set()
    todo = [REPO / "serving" / "service.py"]
    while todo:
        for name in _imports(todo.pop()):
            parts = name.split(".")
            if parts[0] == "serving" and len(parts) == 2:
                if (REPO / "serving" / f"{parts[1]}.py").exists() and parts[1] not in serving:
                    serving.add(parts[1])
                    todo.append(REPO / "serving" / f"{parts[1]}.py")
            elif parts[:2] == ["ml_assets", "core"] and len(parts) == 3:
                if (REPO / "ml_assets" / "core" / f"{parts[2]}.py").exists() and parts[
                    2
                ] not in core:
                    core.add(parts[2])
                    todo.append(REPO / "ml_assets" / "core" / f"{parts[2]}.py")
    return serving, core


def test_every_module_the_service_imports_is_copied_into_the_bento():
    serving, core = _closure()
    assert serving - set(SERVING_MODULES) == set(), "add them to bento_build.SERVING_MODULES"
    assert core - set(CORE_MODULES) == set(), "add them to bento_build.CORE_MODULES"
