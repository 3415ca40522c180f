"""Where invdiff finds its versioned resources: operator banks, problem presets, suites, the zoo.

The resources live beside the package in the repository (``operators/``, ``problems/``,
``benchmarks/``) and ``invdiff/zoo/``; ``INVDIFF_HOME`` points elsewhere (a copy of those
folders) for installs that are not a checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def home() -> Path:
    """The folder that holds ``operators/``, ``problems/`` and ``benchmarks/``."""
    env = os.environ.get("INVDIFF_HOME")
    return Path(env).expanduser().resolve() if env else PACKAGE_DIR.parent


def banks_dir() -> Path:
    return home() / "operators"


def problems_dir() -> Path:
    return home() / "problems"


def benchmarks_dir() -> Path:
    return home() / "benchmarks"


def zoo_dir() -> Path:
    return PACKAGE_DIR / "zoo"
