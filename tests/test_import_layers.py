"""The packages import one way: no circle among cvd's packages (data, geo, export, models,
baselines, engine, ...).

shared/DESIGN.md draws the data flow one way; a package that imports another which imports it
back (even late, inside a function) makes both impossible to read, test or replace alone. This
walks every import statement of src/cvd, at any depth, and fails on a circle.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "cvd"
LAYERED = ("data", "geo", "export", "models", "baselines")  # named by issue 14; all are checked


def all_packages() -> tuple[str, ...]:
    return tuple(sorted(p.name for p in SOURCE.iterdir() if (p / "__init__.py").is_file()))


def package_of(module: str) -> str | None:
    """`cvd.geo.gallery_index` -> `geo`; None for modules outside cvd."""
    parts = module.split(".")
    return parts[1] if parts[0] == "cvd" and len(parts) > 1 else None


def package_imports() -> dict[str, dict[str, set[str]]]:
    """package -> imported package -> the files that import it (every import, also late ones)."""
    edges: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in SOURCE.rglob("*.py"):
        relative = path.relative_to(SOURCE)
        if len(relative.parts) == 1:
            continue  # top-level modules (cli, config, factory, earth, ...) are not packages
        source = relative.parts[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                if node.module == "cvd":
                    modules = [f"cvd.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                target = package_of(module)
                if target and target != source and (SOURCE / target).is_dir():
                    edges[source][target].add(str(relative))
    return edges


def find_cycle(edges: dict[str, dict[str, set[str]]], nodes: tuple[str, ...]) -> list[str] | None:
    """A circle through the given packages (as a path that returns to its start), or None."""
    graph = {node: [t for t in edges.get(node, {}) if t in nodes] for node in nodes}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in graph[node]:
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in nodes:
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_on_hand_made_graphs():
    two_way = {"a": {"b": {"a/x.py"}}, "b": {"a": {"b/y.py"}}}
    assert find_cycle(two_way, ("a", "b")) == ["a", "b", "a"]
    chain = {"a": {"b": {"f"}}, "b": {"c": {"f"}}, "c": {"a": {"f"}}}
    assert find_cycle(chain, ("a", "b", "c")) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": {"f"}}, "b": {"c": {"f"}}}, ("a", "b", "c")) is None


def test_the_walk_sees_late_imports(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.py").write_text("def f():\n    from cvd.b.y import g\n")
    (tmp_path / "b" / "y.py").write_text("from cvd.a import x\n")
    monkeypatch.setattr(sys.modules[__name__], "SOURCE", tmp_path)
    edges = package_imports()
    assert find_cycle(edges, ("a", "b")) == ["a", "b", "a"]


@pytest.mark.parametrize("packages", [LAYERED, "all"])
def test_layered_packages_import_one_way(packages):
    packages = all_packages() if packages == "all" else packages
    assert set(LAYERED) <= set(all_packages())
    edges = package_imports()
    cycle = find_cycle(edges, packages)
    if cycle:
        steps = [f"{a} -> {b} ({', '.join(sorted(edges[a][b]))})" for a, b in pairwise(cycle)]
        pytest.fail("import circle: " + "; ".join(steps))


def test_no_two_modules_share_a_file_name():
    """A name should say what a file is: two `report.py` (or `index.py`) in different packages
    mean one of them is named after its package's habit, not its job (issue 14)."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in SOURCE.rglob("*.py"):
        if path.name != "__init__.py":
            by_name[path.name].append(str(path.relative_to(SOURCE)))
    shared = {name: sorted(paths) for name, paths in by_name.items() if len(paths) > 1}
    assert not shared, f"modules that share a file name: {shared}"
