"""The walls of docs/architecture.md, checked on the source: which package may import
which, and no import cycle between modules (imports inside functions count too; imports
only for type checkers do not)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "core",
    "ingest",
    "broker",
    "db",
    "models",
    "training",
    "lifecycle",
    "stream",
    "api",
    "cli",
)
ALLOWED = {
    "core": set(),
    "broker": {"core"},
    "db": {"core"},
    "models": {"core"},
    "ingest": {"core", "db", "broker"},
    "training": {"core", "models", "ingest.snapshot"},
    "lifecycle": {"core", "db", "broker", "models", "training", "ingest.snapshot"},
    "stream": {"core", "db", "broker", "models"},
    "api": {"core", "db", "models", "stream.model_holder", "stream.pipeline"},
    "cli": set(PACKAGES),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for pkg in PACKAGES for path in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = _imports(ast.parse(path.read_text(), str(path)))
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _allowed(importer: str, imported: str) -> bool:
    package = importer.split(".")[0]
    if imported.split(".")[0] == package:
        return True
    return any(imported == rule or imported.startswith(rule + ".") for rule in ALLOWED[package])


def test_every_package_imports_only_what_its_wall_allows() -> None:
    breaches = sorted(
        f"{importer} -> {imported}"
        for importer, targets in _graph().items()
        for imported in targets
        if not _allowed(importer, imported)
    )
    assert breaches == []


def test_no_import_cycle_between_modules() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_the_checker_sees_a_breach_and_a_cycle(tmp_path: Path) -> None:
    """The two tests above can fail: a wall breach and a cycle are both detected."""
    assert not _allowed("stream.worker", "lifecycle.registry")
    assert not _allowed("training.train", "ingest.service")
    assert _allowed("training.data", "ingest.snapshot")
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from models.classifier import X\n"
        "def f():\n    from db import repository\n"
    )
    assert _imports(tree) == {"db", "db.repository"}
