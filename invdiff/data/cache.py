"""The user cache folder where data sets keep what they derive from installed files.

A cache entry is always rebuildable from the installed source (a font, a package's files): its
name carries a version and a checksum of that source, so a stale entry is never read, and it is
written atomically through ``invdiff.io`` so a reader never sees half a file.
"""

from __future__ import annotations

import os
from pathlib import Path

#: set to a folder to keep invdiff's caches there (tests point it at a temporary folder)
ENV_VAR = "INVDIFF_CACHE"


def cache_dir(*parts: str) -> Path:
    """``$INVDIFF_CACHE``, else ``$XDG_CACHE_HOME/invdiff``, else ``~/.cache/invdiff``; then
    ``parts`` below it (not created here: the atomic writer makes the folders it needs)."""
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "invdiff"
    return root.joinpath(*parts)
