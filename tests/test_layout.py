"""The package layout holds: imports between ml_assets' packages run one way (no package imports
one that imports it back), the library packages never reach up into Dagster's, and the service
imports only what its Bento carries."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.conftest import REPO

# Below everything that orchestrates: these never import a component, the bundle, the nightly or
# the local stack.
LIBRARY = {"platform", "tabular", "search"}
ORCHESTRATION = {"components", "bundle", "nightly", "local", "definitions"}
SERVING_MAY_IMPORT = {"platform", "tabular", "search", "monitoring.inference_tables"}


def _package(module: str) -> str | None:
    """`ml_assets.search.sql` -> `search`; `serving.runtime` -> `serving`."""
    parts = module.split(".")
    if parts[0] == "serving":
        return "serving"
    if parts[0] != "ml_assets" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> set[str]:
    """Every ml_assets/serving module `path` imports, at any depth; TYPE_CHECKING imports too."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = {f"{node.module}.{a.name}" for a in node.names}
            modules = {m for m in modules if _is_module(m)}
            out.update(modules or {node.module})
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if _package(m)}


def _is_module(name: str) -> bool:
    base = REPO / name.replace(".", "/")
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _graph() -> dict[str, dict[str, set[str]]]:
    """package -> imported package -> the files (and modules) that make the arrow."""
    edges: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for top in ("ml_assets", "serving"):
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO)
            source = _package(".".join(rel.with_suffix("").parts))
            for module in _imports(path):
                target = _package(module)
                if source and target and target != source:
                    edges[source][target].add(f"{rel} -> {module}")
    return edges


def test_no_two_packages_import_each_other():
    edges = _graph()
    loops = [
        sorted(edges[a][b]) + sorted(edges[b][a])
        for a in edges
        for b in edges[a]
        if a < b and a in edges.get(b, {})
    ]
    assert loops == [], "packages that import each other (move the shared code down)"


def test_the_package_graph_has_no_cycle():
    edges = _graph()
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        for nxt in edges.get(node, {}):
            visit(nxt, (*path, node))
        done.add(node)

    for node in list(edges):
        visit(node, ())


def test_the_library_packages_never_import_what_orchestrates_them():
    edges = _graph()
    wrong = {
        arrow for lib in LIBRARY for up in ORCHESTRATION for arrow in edges.get(lib, {}).get(up, ())
    }
    assert wrong == set()


def test_the_service_imports_only_what_its_bento_carries():
    edges = _graph()
    allowed = {m.split(".")[0] for m in SERVING_MAY_IMPORT}
    assert set(edges["serving"]) <= allowed, sorted(set(edges["serving"]) - allowed)
    monitoring = {a.rsplit(" -> ", 1)[1] for a in edges["serving"].get("monitoring", ())}
    assert monitoring <= {"ml_assets.monitoring.inference_tables"}, monitoring


def test_one_component_never_imports_another():
    components = REPO / "ml_assets" / "components"
    packages = {p.name for p in components.iterdir() if (p / "__init__.py").exists()}
    wrong = sorted(
        f"{path.relative_to(REPO)} -> {module}"
        for name in packages
        for path in sorted((components / name).rglob("*.py"))
        for module in _imports(path)
        if module.startswith("ml_assets.components.") and module.split(".")[2] in packages - {name}
    )
    assert wrong == [], "shared code belongs in platform/, not in another component"
