"""Where invdiff finds its versioned resources: operator banks, problem presets, suites, the zoo.

The project keeps ``operators/``, ``problems/`` and ``benchmarks/`` at the top of the
repository, where users read and edit them; the built wheel carries a copy of them as
``invdiff/_presets/`` (``setup.py`` copies them at build time). They are found, in order:

1. ``INVDIFF_HOME`` (a folder holding ``operators/``, ``problems/``, ``benchmarks/``);
2. the checkout the package runs from (an editable install or ``PYTHONPATH``), so that an edit
   of a preset is seen at once;
3. the copy inside the installed package, through ``importlib.resources``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: the folder of the installed package that holds the presets (absent in a checkout)
PRESETS_PACKAGE = "_presets"
#: the top-level folders that are shipped in the wheel
PRESET_FOLDERS = ("operators", "problems", "benchmarks")


def checkout() -> Path | None:
    """The repository the package runs from, or None for an installed package."""
    root = PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and all((root / f).is_dir() for f in PRESET_FOLDERS):
        return root
    return None


def packaged() -> Path:
    """The presets inside the installed package (a real folder: wheels install as files)."""
    folder = resources.files("invdiff") / PRESETS_PACKAGE
    if not isinstance(folder, Path):  # a zip import: numpy and glob need real files
        raise RuntimeError(
            f"invdiff's presets are inside an archive ({folder}); install invdiff as files "
            "(pip install) or set INVDIFF_HOME to a copy of operators/, problems/, benchmarks/"
        )
    return folder


def home() -> Path:
    """The folder that holds ``operators/``, ``problems/`` and ``benchmarks/``."""
    env = os.environ.get("INVDIFF_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return checkout() or packaged()


def writable_home() -> bool:
    """Whether ``home()`` is the user's (a checkout or ``INVDIFF_HOME``), not the package's copy."""
    return bool(os.environ.get("INVDIFF_HOME")) or checkout() is not None


def banks_dir() -> Path:
    return home() / "operators"


def problems_dir() -> Path:
    return home() / "problems"


def benchmarks_dir() -> Path:
    return home() / "benchmarks"


def zoo_dir() -> Path:
    return PACKAGE_DIR / "zoo"
