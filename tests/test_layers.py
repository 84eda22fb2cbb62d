"""Dependencies point one way: ``meshing`` <- ``recon`` <- ``service``, with no import cycles.

Every module of the three packages is parsed (``ast``; nothing is imported) and every import in
it counts, wherever it stands: at the top, inside a function (a lazy import is still a
dependency) or under ``TYPE_CHECKING``. ``from pkg import name`` is an edge to ``pkg.name`` when
that is a module, else to ``pkg``. Importing a submodule also runs its package's ``__init__``,
but that implicit edge is not counted: a package may re-export its own modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("meshing", "recon", "service")
FORBIDDEN = {"meshing": ("recon", "service"), "recon": ("service",)}
"""Package -> the first-party packages it must not import."""


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name -> file of every module of the packages (a package is its ``__init__``)."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports."""

    def owner(name: str) -> str | None:  # the module a dotted name lives in
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(filter(None, (owner(a.name) for a in node.names)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                for a in node.names:
                    full = f"{base}.{a.name}"
                    target = full if full in mods else owner(base)
                    if target:
                        edges.add(target)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, targets in sorted(graph.items()):
        banned = FORBIDDEN.get(mod.split(".")[0], ())
        out += [f"{mod} imports {t}" for t in sorted(targets) if t.split(".")[0] in banned]
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(modules())


def test_layers_point_one_way(graph):
    assert not violations(graph)


def test_no_import_cycles(graph):
    assert not cycles(graph)


def test_the_checker_sees_lazy_relative_and_type_checking_imports(tmp_path):
    """On a made-up tree: every kind of import is an edge, so each planted fault is found."""
    files = {
        "meshing/__init__.py": "",
        "meshing/a.py": "def f():\n    from recon import b\n",  # lazy, and against the layers
        "recon/__init__.py": "",
        "recon/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import C\n",
        "recon/c.py": "import recon.b\nC = 1\n",  # b <-> c through a relative TYPE_CHECKING import
        "service/__init__.py": "from service import d\n",  # a package importing its own module
        "service/d.py": "import os\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    g = import_graph(modules(tmp_path))
    assert g["meshing.a"] == {"recon.b"} and g["recon.b"] == {"recon.c"} and g["service"] == {"service.d"}
    assert violations(g) == ["meshing.a imports recon.b"]
    assert cycles(g) == [["recon.b", "recon.c"]]
