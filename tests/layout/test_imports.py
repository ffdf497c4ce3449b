"""The layering, read from the modules' own imports: config <- storage <- ingest <- streams <- sharpeyes.

A module imports only from its own layer or layers to its left, and no two modules import each
other, directly or through others (a cycle). Imports under ``if TYPE_CHECKING:`` are for
annotations only and are not followed. The graph is built with ``ast`` from the source files,
so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["config", "storage", "ingest", "streams", "sharpeyes"]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(source: str, this: str, is_package: bool) -> set[str]:
    """Project modules ``source`` imports at run time (module level or in functions)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = this.split(".") if is_package else this.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                found.add(mod)
                found.update(f"{mod}.{alias.name}" for alias in child.names)  # "from pkg import module"
            visit(child)

    visit(ast.parse(source))
    return found


def project_graph(root: Path = ROOT, layers: list[str] = LAYERS) -> dict[str, set[str]]:
    """Module -> the project modules it imports (resolved to modules that exist)."""
    files = {module_name(p, root): p for layer in layers for p in (root / layer).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        raw = imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
        graph[name] = {m for m in raw if m in files and m != name}
    return graph


def upward_imports(graph: dict[str, set[str]], layers: list[str] = LAYERS) -> list[str]:
    rank = {layer: i for i, layer in enumerate(layers)}
    return sorted(f"{a} imports {b}" for a, deps in graph.items() for b in deps
                  if rank[b.split(".")[0]] > rank[a.split(".")[0]])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def _without_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # A package's __init__ re-exporting its modules is not a cycle with them.
    return {a: {b for b in deps if not a.startswith(b + ".")} for a, deps in graph.items()}


def test_no_upward_import() -> None:
    assert upward_imports(project_graph()) == []


def test_no_import_cycle() -> None:
    assert cycles(_without_packages(project_graph())) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


@pytest.mark.parametrize("files, upward, cyclic", [
    ({"config/a.py": "", "storage/b.py": "from config.a import x\n"}, [], []),
    ({"config/a.py": "from storage.b import y\n", "storage/b.py": ""}, ["config.a imports storage.b"], []),
    ({"storage/a.py": "import storage.b\n", "storage/b.py": "def f():\n    from storage import a\n"},
     [], [["storage.a", "storage.b"]]),
    ({"storage/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from streams.c import z\n",
      "streams/c.py": "from storage.a import q\n"}, [], []),
])
def test_the_checks_catch_what_they_should(tmp_path: Path, files: dict[str, str], upward: list[str],
                                           cyclic: list[list[str]]) -> None:
    root = _tree(tmp_path, files)
    graph = project_graph(root, ["config", "storage", "streams"])
    assert upward_imports(graph, ["config", "storage", "streams"]) == upward
    assert cycles(_without_packages(graph)) == cyclic
