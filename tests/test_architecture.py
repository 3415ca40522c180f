"""The package's import structure: layers that import only downwards, and no import cycle.

Every ``import`` in ``invdiff/`` is read with ``ast`` (module-level and inside functions, which
is where cycles usually hide; imports under ``if TYPE_CHECKING:`` are annotations, not
dependencies). A module may import only modules of its own layer or of a lower one; within a
layer the module graph has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "invdiff"

#: lowest first; a top-level module or subpackage of invdiff -> its layer
LAYERS: list[set[str]] = [
    {"registry", "io", "paths", "argtypes", "device", "schema"},  # plumbing
    {"images"},  # the one range conversion
    {"noise", "operators", "data", "metrics", "display"},  # forward models, data, scores
    {"priors"},
    {"diffusion"},  # schedules and steps, below samplers and solvers
    {"samplers"},
    {"solvers"},
    {"problems", "training"},
    {"bench"},
    {"cli", "__main__", ""},  # commands, and the package front door itself
]
LAYER_OF = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The invdiff modules ``path`` imports (resolved to the longest existing module name)."""
    tree = ast.parse(path.read_text())
    annotations_only = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for node in ast.walk(branch)
    }
    names: list[str] = []
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; invdiff imports absolutely"
            module = node.module or ""
            names += [
                f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module
                for a in node.names
            ]
    resolved = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name.startswith("invdiff"):
            resolved.add(name)
    return resolved


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_every_module_has_a_layer(graph):
    missing = sorted({_area(m) for m in graph} - set(LAYER_OF))
    assert not missing, f"add these to LAYERS in {__file__}: {missing}"


def test_no_module_imports_upwards(graph):
    upward = [
        f"{a} (layer {LAYER_OF[_area(a)]}) imports {b} (layer {LAYER_OF[_area(b)]})"
        for a, targets in graph.items()
        for b in targets
        if LAYER_OF[_area(b)] > LAYER_OF[_area(a)]
    ]
    assert not upward, "\n".join(sorted(upward))


def test_no_import_cycle(graph):
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checks_catch_what_they_look_for():
    """The two checks fail on a planted cycle and a planted upward import."""
    planted = {"invdiff.solvers.a": {"invdiff.solvers.b"}, "invdiff.solvers.b": set()}
    planted["invdiff.solvers.b"].add("invdiff.solvers.a")
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycle(planted)
    with pytest.raises(AssertionError, match="imports invdiff.bench"):
        test_no_module_imports_upwards({"invdiff.priors.x": {"invdiff.bench.runner"}})
