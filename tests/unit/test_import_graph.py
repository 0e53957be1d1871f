"""The project's modules import each other as a DAG, and each half keeps to its side.

The graph is read from the source with `ast`, so it sees every import: those at the top,
those inside functions (made when the function first runs) and those under
`if TYPE_CHECKING:` (a circle there is still one for the reader, and becomes a real one
the day the name is needed at run time). `maildrill/` is neutral and imports neither half;
`sinks/` (the servers under test) never imports `loadtest/`; nothing imports the
`maildrill` command line, which is the top of the graph.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO

ROOT = REPO
PACKAGES = ("maildrill", "sinks", "loadtest")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the project's packages."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported_names(module: str, path: Path) -> Iterator[str]:
    """Every dotted name an import statement of the module names, anywhere in it."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, one level up per extra dot
                base = package[: len(package) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            yield source
            # `from package import module` imports the module; a name in it resolves up.
            yield from (f"{source}.{alias.name}" for alias in node.names)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's names resolve to its module)."""
    modules = project_modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {resolve(name) for name in _imported_names(module, path)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected part of the graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    parts: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graph is a few hundred nodes
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.add(member)
                if member == node:
                    break
            if len(part) > 1:
                parts.append(part)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, part) for part in parts]


def _cycle_in(graph: dict[str, set[str]], part: set[str]) -> list[str]:
    """The shortest way from the part's first module back to itself, within the part."""
    start = min(part)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & part):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError(f"no cycle through {start} in {sorted(part)}")  # cannot happen


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_project_modules_import_each_other_without_a_circle():
    graph = import_graph()
    assert len(graph) > 50, "the project's modules were not found"
    cycles = find_cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize(
    ("importer", "imported"),
    [("sinks", "loadtest"), ("maildrill", "loadtest"), ("maildrill", "sinks")],
)
def test_each_half_keeps_to_its_side(importer: str, imported: str):
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if _in(module, importer)
        for target in targets
        if _in(target, imported)
    )
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_command_line():
    """The prober and the rest take shared arguments from loadtest.cli_args, not the CLI."""
    importers = sorted(m for m, targets in import_graph().items() if "loadtest.cli" in targets)
    assert not importers


# -- the checker itself, on small made-up trees ---------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name in PACKAGES:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_a_circle_through_type_checking_and_function_imports_is_found(tmp_path: Path):
    root = _tree(
        tmp_path,
        {
            "sinks/a.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from sinks.b import B\n",
            "sinks/b.py": "def f():\n    from . import c\n",
            "sinks/c.py": "import sinks.a\n",
            "sinks/d.py": "from sinks import a, b\n",  # imports into the circle, not part of it
        },
    )
    assert find_cycles(import_graph(root)) == [["sinks.a", "sinks.b", "sinks.c", "sinks.a"]]


def test_relative_and_package_imports_resolve_to_modules(tmp_path: Path):
    root = _tree(
        tmp_path,
        {
            "loadtest/x.py": "from ..maildrill import y\nfrom .z import thing\n",
            "loadtest/z.py": "from maildrill.y import name\n",
            "maildrill/y.py": "import json\n",
        },
    )
    graph = import_graph(root)
    # `from ..maildrill import y` runs the package's __init__ too: an edge to it as well.
    assert graph["loadtest.x"] == {"maildrill", "maildrill.y", "loadtest.z"}
    assert graph["loadtest.z"] == {"maildrill.y"}
    assert graph["maildrill.y"] == set()
    assert find_cycles(graph) == []
