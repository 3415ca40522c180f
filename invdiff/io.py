"""The one way invdiff writes files: atomically, without following symbolic links, inside --out.

An output folder is a place other people (or other programs) may also write to, so nothing a
writer does there may be redirected by what it finds:

- a file is written to a fresh temporary file created exclusively (``O_EXCL``, a unique name in
  the target folder, so a planted ``name.tmp`` link is never opened), flushed, synced and moved
  over the target with ``os.replace`` (which replaces a link at the target instead of writing
  through it), so readers never see half a file;
- appends (result rows, loss logs) open with ``O_NOFOLLOW``: a link planted under that name is
  an error, not a way to append to another file;
- names that come from suite files or the command line become path components only after
  ``check_name`` (no separators, no ``..``, no hidden names), and ``inside`` proves that a
  resolved path stays under the output folder;
- ``check_writable`` finds a read-only or misnamed output folder before any work is done.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class UnsafePathError(ValueError):
    """A name or path that would write outside the output folder or through a link."""


def check_name(value: object, what: str) -> str:
    """``value`` as a name that is safe as one path component, or an ``UnsafePathError``.

    ``what`` names the argument in the message (e.g. ``"solver label"``).
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {value!r}")
    bad = None
    if not value:
        bad = "is empty"
    elif "/" in value or "\\" in value:
        bad = "contains a path separator"
    elif "\x00" in value:
        bad = "contains a NUL character"
    elif value.startswith("."):
        bad = "starts with '.' (a hidden name)"
    elif len(value.encode()) > 200:
        bad = "is longer than 200 bytes"
    if bad:
        raise UnsafePathError(
            f"{what} {value!r} {bad}; it becomes a file or folder name, so use letters, digits, "
            "'-', '_' and '.' only"
        )
    return value


def inside(root: str | Path, path: str | Path, what: str = "output path") -> Path:
    """``path`` (absolute, resolved) after proving it lies under ``root``; else an error."""
    base = Path(root).resolve()
    target = Path(path)
    if not target.is_absolute():
        target = base / target
    resolved = target.resolve()
    if resolved != base and base not in resolved.parents:
        raise UnsafePathError(
            f"{what} {path} resolves to {resolved}, outside the output folder {base}; "
            "remove the link or choose another name"
        )
    return resolved


def check_writable(folder: str | Path, what: str = "--out") -> Path:
    """Prove, before any work, that ``folder`` is (or can be created as) a writable folder.

    Nothing is created: a missing folder is judged by its nearest existing parent.
    """
    folder = Path(folder)
    probe_dir = folder
    while not probe_dir.exists() and not probe_dir.is_symlink():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        where = "" if probe_dir == folder else f" (its parent {probe_dir} is a file)"
        raise NotADirectoryError(
            f"{what} {folder} is not a folder{where}; choose a folder (it is created if missing)"
        )
    try:
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".invdiff-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise PermissionError(
            f"{what} {folder} is not writable ({err.strerror or err} in {probe_dir}); "
            "choose a folder you can write to"
        ) from None
    return folder


def _refuse_link(path: Path, what: str) -> None:
    if path.is_symlink():
        raise UnsafePathError(
            f"{what} {path} is a symbolic link; invdiff does not write through links. "
            "Remove it, or choose another output folder"
        )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_parent(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)


def write_with(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a fresh temporary file in the same folder,
    which then replaces ``path``. A link at ``path`` is replaced, never written through."""
    path = Path(path)
    _make_parent(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600; results are ordinary files that others may read
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see ``write_with``)."""
    return write_with(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see ``write_with``)."""
    return write_bytes(path, text.encode("utf-8"))


def _open_nofollow(path: Path, flags: int, what: str) -> int:
    try:
        return os.open(path, flags | _NOFOLLOW, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnsafePathError(
                f"{what} {path} is a symbolic link; invdiff does not write through links. "
                "Remove it, or choose another output folder"
            ) from None
        raise


def append_bytes(path: str | Path, data: bytes, *, sync: bool = True) -> None:
    """Append ``data`` with one ``O_APPEND`` write (then ``fsync``); a link at ``path`` is an
    error. A short write continues where it stopped."""
    path = Path(path)
    fd = _open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "file")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePathError(f"{path} is not a regular file; remove it")
        written = os.write(fd, data)
        while written < len(data):
            written += os.write(fd, data[written:])
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_bytes(path: str | Path) -> bytes:
    """The bytes of a regular file, refusing a link planted under that name."""
    path = Path(path)
    fd = _open_nofollow(path, os.O_RDONLY, "file")
    with os.fdopen(fd, "rb") as f:
        return f.read()


def file_digest(path: str | Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """The hex digest of a file's bytes with a ``hashlib`` algorithm, read in ``chunk``-byte
    blocks (the one file hash of invdiff: weights, banks, results)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    """The SHA-256 hex digest of a file (what manifests record)."""
    return file_digest(path, "sha256")


def truncate(path: str | Path, size: int) -> None:
    """Cut a regular file to ``size`` bytes (not through a link) and sync it."""
    path = Path(path)
    fd = _open_nofollow(path, os.O_RDWR, "file")
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(root: str | Path, *parts: str) -> Path:
    """``root/part/part/...`` created as real folders under ``root`` (parts are checked names)."""
    folder = Path(root)
    for part in parts:
        folder = folder / part
        _refuse_link(folder, "folder")
        folder.mkdir(exist_ok=True)
    inside(root, folder)
    return folder


def replace_folder(build: Callable[[Path], None], dest: str | Path) -> Path:
    """Write a folder with ``build(tmp)`` into a fresh temporary folder beside ``dest`` and swap
    it in, so readers see the old folder or the new one, never half of one."""
    dest = Path(dest)
    _refuse_link(dest, "folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        build(tmp)
        if dest.exists():
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".old"))
            os.replace(dest, old)  # onto the empty folder just made: atomic on POSIX
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def leftovers(folder: str | Path, name: str) -> Iterator[Path]:
    """Temporary files or folders an interrupted writer of ``name`` left in ``folder``."""
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(f".{name}.*"):
            if p.name.endswith((".tmp", ".old")):
                yield p


__all__ = [
    "UnsafePathError",
    "append_bytes",
    "check_name",
    "check_writable",
    "file_digest",
    "inside",
    "leftovers",
    "make_dirs",
    "read_bytes",
    "replace_folder",
    "sha256_file",
    "truncate",
    "write_bytes",
    "write_text",
    "write_with",
]
