"""Forward operators, one file per family, all registered by name.

    invdiff.operators.get("gaussian_blur", size=61, sigma=3.0)
    invdiff.operators.names()

The catalog of every operator with its maths and capabilities is ``operators/README.md`` at the
repository root.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from invdiff.operators.base import LinearOperator, Operator, SVDOperator
from invdiff.registry import OPERATORS

# Each family registers itself on import. Listed here, not discovered, so that the set of
# operators is explicit and a broken module fails loudly.
# One file per family; each registers its operators on import. Every module of this package
# is imported, so a new operator family is one new file here and nothing else.
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"invdiff.operators.{_module}")


def get(name: str, **kwargs: Any) -> Operator:
    """Build the operator registered as ``name`` with keyword arguments."""
    return OPERATORS.get(name, **kwargs)


def names() -> list[str]:
    """The registered operator names."""
    return OPERATORS.names()


__all__ = ["LinearOperator", "Operator", "SVDOperator", "get", "names"]
