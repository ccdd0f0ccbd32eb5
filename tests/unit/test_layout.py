"""The installed product holds only what a deployment runs: it never imports the development tools (devtools/), the
benchmarks or the tests, the wheel does not package them, and the product's modules import each other without
cycles, counting the imports inside functions too (they hide a cycle from the interpreter, not from a reader)."""

from __future__ import annotations

import ast
import fnmatch
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("cem", "streams", "schemas", "sinks")
TOOLING = ("devtools", "bench", "tests")


def modules(packages: tuple[str, ...]) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(path: Path) -> Iterator[tuple[str, int]]:
    """Every absolute import of a module, wherever it stands (top level, function, class), with its line: the
    module and, for `from m import n`, also `m.n` (n may be a submodule)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            yield from ((f"{node.module}.{alias.name}", node.lineno) for alias in node.names)


def import_graph(found: dict[str, Path]) -> dict[str, set[str]]:
    return {name: {target for target, _ in imported(path) if target in found and target != name}
            for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a cycle or several."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_product_never_imports_the_tooling() -> None:
    offending = [f"{path.relative_to(ROOT)}:{line} imports {target}"
                 for path in modules(PRODUCT).values() for target, line in imported(path)
                 if target.split(".")[0] in TOOLING]
    assert offending == []


def test_the_product_has_no_import_cycle() -> None:
    assert cycles(import_graph(modules(PRODUCT))) == []


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
])
def test_cycles_are_found(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_imports_inside_functions_count(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from cem.cli import main\n    import devtools.demo\n")
    assert sorted(imported(source)) == [("cem.cli", 4), ("cem.cli.main", 4), ("devtools.demo", 5), ("os", 1)]


def test_the_wheel_packages_the_product_only() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    top_level = [p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()]
    packaged = sorted(name for name in top_level if any(fnmatch.fnmatch(name, pattern) for pattern in include))
    assert packaged == sorted(PRODUCT)
    assert set(TOOLING) <= set(top_level)  # the tooling is there, importable from a checkout, and left out
