"""Build hook: the wheel carries the project's presets as ``invdiff/_presets/``.

``operators/``, ``problems/`` and ``benchmarks/`` stay at the top of the repository, where
users read and edit them; package data must live inside the package, so ``build_py`` copies
them into the build tree (a copy made at build time, not a second copy kept in git). An
editable install reads the checkout itself (``invdiff.paths``), so nothing is copied then.
Everything else is configured in ``pyproject.toml``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: folder -> the files of it that are presets (benchmarks/results/ stays out of the wheel)
PRESETS = {
    "operators": ("*.npz", "manifest.json", "README.md"),
    "problems": ("*.toml",),
    "benchmarks": ("*.toml", "tuned/*.json"),  # suites and the tuned tables they read
}


def preset_files() -> list[Path]:
    """Every preset file, relative to the repository root."""
    return sorted(
        p.relative_to(ROOT)
        for folder, patterns in PRESETS.items()
        for pattern in patterns
        for p in (ROOT / folder).glob(pattern)
    )


class BuildWithPresets(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        folder = Path(self.build_lib) / "invdiff" / "_presets"
        # a preset deleted from the checkout must not survive in a reused build/ folder
        shutil.rmtree(folder, ignore_errors=True)
        for rel in preset_files():
            target = folder / rel
            self.mkpath(str(target.parent))
            self.copy_file(str(ROOT / rel), str(target))


setup(cmdclass={"build_py": BuildWithPresets})
