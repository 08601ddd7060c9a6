"""The package's shape: the pipeline's import graph has no cycle, and only `_napari/` touches napari or Qt."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import napari_lesionseg

PACKAGE = Path(napari_lesionseg.__file__).parent
GUI_PACKAGES = {"napari", "qtpy", "magicgui", "superqt", "psygnal", "vispy", "PyQt5", "PyQt6", "PySide2", "PySide6"}
MAX_LINES = 400
#: Modules still over the bound, each with the ceiling it may not grow past (split them, then drop them here).
OVER_THE_BOUND: dict[str, int] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at module level or inside functions (lazy imports count too)."""
    name = _module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = name.split(".")[: -node.level + (1 if path.name == "__init__.py" else 0) or None]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _internal_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        targets = {m for m in _imports(path) if m in MODULES and m != name}
        graph[name] = {t for t in targets if not name.startswith(t + ".")}  # a module's own package is not a cycle
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    graph = {n: {t for t in targets if not t.endswith("__init__")} for n, targets in _internal_graph().items()}
    # A package's __init__ re-exporting its modules is not a cycle through them.
    for name in list(graph):
        if MODULES[name].name == "__init__.py":
            graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    assert _find_cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.startswith("napari_lesionseg._napari")))
def test_only_the_napari_folder_imports_napari_or_qt(name):
    gui = sorted(m for m in _imports(MODULES[name]) if m.split(".")[0] in GUI_PACKAGES)
    assert gui == [], f"{name} imports {gui}: napari and Qt belong in napari_lesionseg/_napari/"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_short(name):
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    limit = OVER_THE_BOUND.get(name, MAX_LINES)
    assert lines <= limit, f"{name} has {lines} lines; split it by concept (about {MAX_LINES} at most)"
