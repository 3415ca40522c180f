"""Result rows: one JSON object per line, appended atomically, keyed for resuming.

A row is one ``(image, problem, solver, seed)``. Every process appends to its own file with a
single ``write`` on a descriptor opened with ``O_APPEND`` followed by ``fsync``, so a killed run
loses at most the line being written; a torn last line is cut off before the next append
(``repair``) and ignored when reading. Merging rewrites the merged file through a temporary
file and ``os.replace``, so readers never see half a file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from invdiff import io as safe_io

#: the fields that identify a row; a resumed run never repeats or drops a key
KEY_FIELDS: tuple[str, ...] = ("image", "problem", "solver", "seed")

RowKey = tuple[int, str, str, int]


def row_key(row: dict[str, Any]) -> RowKey:
    return (int(row["image"]), str(row["problem"]), str(row["solver"]), int(row["seed"]))


def _clean(value: Any) -> Any:
    """JSON has no NaN/Inf: non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def dumps(row: dict[str, Any]) -> str:
    return json.dumps(_clean(row), sort_keys=False, allow_nan=False)


def repair(path: str | Path) -> int:
    """Cut a torn last line (a write interrupted by a kill); returns the bytes removed."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return 0
    data = safe_io.read_bytes(path)
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    safe_io.truncate(path, keep)
    return len(data) - keep


def append(path: str | Path, row: dict[str, Any]) -> None:
    """Append one row as one line: a single ``write`` with ``O_APPEND``, then ``fsync`` (a link
    planted under the file's name is refused)."""
    safe_io.append_bytes(path, (dumps(row) + "\n").encode())


def read(path: str | Path) -> Iterator[dict[str, Any]]:
    """The complete rows of a file (a torn or corrupt line is skipped)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    lines = safe_io.read_bytes(path).split(b"\n")
    for line in lines[:-1]:  # the part after the last newline is a torn line, not a row yet
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(row, dict) and all(k in row for k in KEY_FIELDS):
            yield row


def read_all(paths: Iterable[str | Path]) -> dict[RowKey, dict[str, Any]]:
    """Rows of several files, one per key (the first occurrence wins)."""
    out: dict[RowKey, dict[str, Any]] = {}
    for p in paths:
        for row in read(p):
            out.setdefault(row_key(row), row)
    return out


def write_atomic(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Rewrite ``path`` with ``rows`` through a temporary file and ``os.replace``."""
    text = "".join(dumps(row) + "\n" for row in rows)
    safe_io.write_text(path, text)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file through a temporary file and ``os.replace``."""
    return safe_io.write_text(path, text)


def sort_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        rows, key=lambda r: (str(r["problem"]), str(r["solver"]), int(r["seed"]), int(r["image"]))
    )


def merge(out: str | Path, parts: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Merge ``out`` and the per-process files ``parts`` into ``out`` (deduplicated, sorted).

    The part files are removed only after the merged file has been replaced, so a crash in
    between leaves duplicates that the next merge drops, never a lost row.
    """
    out = Path(out)
    parts = [Path(p) for p in parts]
    rows = sort_rows(read_all([out, *parts]).values())
    write_atomic(out, rows)
    for p in parts:
        if p.resolve() != out.resolve():
            p.unlink(missing_ok=True)
    return rows
