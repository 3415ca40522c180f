"""The diffusion layer sits below the samplers and the solvers: it imports neither."""

from __future__ import annotations

import ast
from pathlib import Path

import invdiff

ROOT = Path(invdiff.__file__).parent
#: what the layer may import from the package
ALLOWED = ("invdiff.diffusion", "invdiff.priors.base")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_diffusion_layer_imports_nothing_above_it() -> None:
    for path in sorted((ROOT / "diffusion").glob("*.py")):
        upward = {
            n for n in _imports(path) if n.startswith("invdiff") and not n.startswith(ALLOWED)
        }
        assert not upward, f"{path.name} imports {sorted(upward)}"


def test_samplers_do_not_import_solvers() -> None:
    assert not {n for n in _imports(ROOT / "samplers.py") if n.startswith("invdiff.solvers")}
