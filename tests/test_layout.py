"""The import picture of docs/DESIGN.md, checked: data flows common -> nets -> export -> (file) ->
verify -> pipeline, and no package imports a later one or itself in a cycle."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "nets", "export", "verify", "props", "pipeline")

# package -> the packages of ours it may import (lazily or not)
ALLOWED = {
    "common": set(),
    "nets": {"common"},
    "export": {"common", "nets"},
    "verify": {"common"},
    "props": {"common", "nets", "export", "verify"},
    "pipeline": {"common", "nets", "export", "verify"},
}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = p
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports anywhere in its body (module level or lazily)."""
    mods = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("pkg", PACKAGES)
def test_packages_import_only_earlier_layers(pkg):
    bad = sorted(f"{m} -> {t}" for m, ts in import_graph().items() if m.split(".")[0] == pkg
                 for t in ts if t.split(".")[0] not in ALLOWED[pkg] | {pkg})
    assert bad == []


def test_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_benchmarks_do_not_import_the_tests():
    """Benchmarks stand on the packages alone: no test module, no tests/ folder on sys.path."""
    test_modules = {p.stem for p in (ROOT / "tests").glob("*.py")}
    bad = []
    for path in (ROOT / "benchmarks").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        if re.search(r"sys\.path\.(insert|append)\([^\n]*tests", text):
            bad.append(f"{path.name}: puts tests/ on the path")
        for node in ast.walk(ast.parse(text)):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            bad += [f"{path.name}: imports {n}" for n in names if n.split(".")[0] in test_modules | {"tests"}]
    assert bad == []
