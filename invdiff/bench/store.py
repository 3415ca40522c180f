"""The run folder of a benchmark: the one owner of its rows, samples, errors and ``run.json``.

Layout of ``--out``::

    run.json                  what the rows depend on (suite hash, --data/--prior, precision)
    suite.toml                a copy of the suite file
    rows.jsonl                one row per (image, problem, solver, seed), merged and sorted
    rows.rank<R>.jsonl        rows appended by rank R while running (merged at the end)
    errors.jsonl              failed batches whose rows are still missing
    samples/<problem>/<solver>/seed<S>/batch<B>.npz
                              ``images`` (uint8, N x H x W x C), ``indices`` (N) and ``y``
                              (the measurement the solver saw, as measured): the report shows
                              reconstructions and measurements from here, never recomputing y

Every write is atomic through :mod:`invdiff.io`, every name from a suite is checked as a name,
and every path is proven to stay under the folder. A resumed run keeps the rows present
(``done``) and refuses a folder whose rows another suite, other overrides or other batches made.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from invdiff import io as safe_io
from invdiff.bench import rows as rowio
from invdiff.bench.suite import Suite, SuiteError
from invdiff.images import from_uint8, to_uint8

ROWS = "rows.jsonl"
RUN_INFO = "run.json"
ERRORS = "errors.jsonl"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclass
class SampleBatch:
    """One stored batch: image indices, reconstructions (N x C x H x W in [-1, 1]) and the
    measurements (``None`` in folders written before y was stored)."""

    indices: list[int]
    images: Tensor
    y: Tensor | None
    #: per-pixel standard deviation of the K posterior samples (None with K = 1)
    std: Tensor | None = None


def _run_info(suite: Suite) -> dict[str, Any]:
    label = suite.network.describe()
    return {
        "suite_sha256": suite.sha256,
        "data": suite.overrides.get("data"),
        "prior": suite.overrides.get("prior"),
        # rows of another precision are other numbers; fp32 folders keep their old record
        "network": None if label == "fp32" else label,
    }


class RunStore:
    """The run folder ``out`` (see the module doc)."""

    def __init__(self, out: str | Path):
        self.out = Path(out).absolute()  # inside() joins a relative path to the folder again

    # ------------------------------------------------------------------ the folder as a whole

    def check(self, suite: Suite, restart: bool) -> None:
        """Refuse a folder that is a file, or holds another suite's results (unless restarting)."""
        out, path = self.out, self.out / RUN_INFO
        if out.exists() and not out.is_dir():
            raise SuiteError(f"--out {out} is a file, not a folder; choose a folder")
        if restart or not (path.exists() or path.is_symlink()):
            return
        try:
            old = json.loads(safe_io.read_bytes(path))
            if not isinstance(old, dict):
                raise ValueError(f"a JSON object expected, got {type(old).__name__}")
        except (ValueError, UnicodeDecodeError) as err:
            raise SuiteError(
                f"{path} is corrupt ({err}); pass --restart to discard the results in {out}, "
                "or another --out"
            ) from None
        info = _run_info(suite)
        old = {k: old.get(k) for k in info}
        if old != info:
            raise SuiteError(
                f"{out} holds results of another suite or other --data/--prior ({old}); "
                "pass another --out, or --restart to discard them"
            )

    def check_batches(self, keys: set[rowio.RowKey], batch_of: dict[int, tuple[int, int]]) -> None:
        """Refuse rows solved in other batches than this run would use (e.g. by a ``--limit``
        run): a row depends on its batch (the solver's generator is seeded by the batch's
        images), so such a folder would mix two different runs."""
        stale = [
            r
            for r in self._read_rows().values()
            if rowio.row_key(r) in keys
            and (r.get("batch"), r.get("batch_size")) != batch_of[int(r["image"])]
        ]
        if stale:
            r = stale[0]
            raise SuiteError(
                f"{self.out} holds {len(stale)} row(s) solved in other batches than this run "
                f"uses (e.g. image {r['image']} of {r['problem']!r} / {r['solver']!r} in a batch "
                f"of {r.get('batch_size')}, here {batch_of[int(r['image'])][1]}): an earlier run "
                "with another --limit or batch_size. Their reconstructions differ from this "
                "run's; pass --restart to discard them, or another --out"
            )

    def start(self, suite: Suite, restart: bool) -> None:
        """Create the folder (emptied of results with ``restart``) and record ``run.json``."""
        out = self.out
        if restart and out.is_dir():
            for name in (ROWS, RUN_INFO, ERRORS):
                (out / name).unlink(missing_ok=True)
            for f in [*out.glob("rows.rank*.jsonl"), *out.glob("errors.rank*.jsonl")]:
                f.unlink()
            if (out / "samples").is_symlink():
                (out / "samples").unlink()
            shutil.rmtree(out / "samples", ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        info = {"suite": str(suite.path) if suite.path else suite.name, **_run_info(suite)}
        if not (out / RUN_INFO).exists():
            self.write_text(RUN_INFO, json.dumps(info, indent=2) + "\n")
        if suite.path is not None:
            self.write_text("suite.toml", suite.path.read_text())

    def write_text(self, name: str, text: str) -> Path:
        """An output file of the run (``name`` relative to the folder), written atomically."""
        return safe_io.write_text(safe_io.inside(self.out, self.out / name, "output file"), text)

    # ------------------------------------------------------------------------------ rows

    def _rank_rows(self) -> list[Path]:
        return sorted(self.out.glob("rows.rank*.jsonl"))

    def _read_rows(self) -> dict[rowio.RowKey, dict[str, Any]]:
        return rowio.read_all([self.out / ROWS, *self._rank_rows()])

    def open_rank(self, rank: int) -> set[rowio.RowKey]:
        """Ready rank ``rank``'s files for appending (a torn last line cut off); the keys done."""
        rowio.repair(self.out / f"rows.rank{rank}.jsonl")
        rowio.repair(self.out / f"errors.rank{rank}.jsonl")
        return set(self._read_rows())

    def append_row(self, rank: int, row: dict[str, Any]) -> None:
        rowio.append(self.out / f"rows.rank{rank}.jsonl", row)

    def append_error(self, rank: int, record: dict[str, Any]) -> None:
        rowio.append(self.out / f"errors.rank{rank}.jsonl", record)

    def merge(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Merge the ranks' rows and errors; (all rows, errors of batches still missing rows).

        An error of an earlier attempt whose rows now exist is history, not a failure.
        """
        out = self.out
        merged = rowio.merge(out / ROWS, self._rank_rows())
        have = {rowio.row_key(r) for r in merged}
        errors = [
            r
            for f in [out / ERRORS, *sorted(out.glob("errors.rank*.jsonl"))]
            for r in _read_errors(f)
            if not all((i, r["problem"], r["solver"], r["seed"]) in have for i in r["images"])
        ]
        self.write_text(ERRORS, "".join(rowio.dumps(r) + "\n" for r in errors))
        for f in out.glob("errors.rank*.jsonl"):
            f.unlink()
        return merged, errors

    # --------------------------------------------------------------------------- samples

    def samples_path(self, problem: str, solver: str, seed: int, batch: int) -> Path:
        """Where a batch's reconstructions go; the names are checked, the path proven inside."""
        path = (
            self.out
            / "samples"
            / safe_io.check_name(problem, "problem name")
            / safe_io.check_name(solver, "solver label")
            / f"seed{int(seed)}"
            / f"batch{int(batch):05d}.npz"
        )
        safe_io.inside(self.out, path, "samples file")
        return path

    def save_samples(
        self,
        problem: str,
        solver: str,
        seed: int,
        batch: int,
        x: Tensor,
        indices: list[int],
        y: Tensor,
        std: Tensor | None = None,
    ) -> None:
        arrays = {
            "images": to_uint8(torch.nan_to_num(x).clamp(-1, 1)),
            "indices": np.asarray(indices),
            # as measured (its own dtype); bfloat16 has no numpy type
            "y": (y.detach().float() if y.dtype == torch.bfloat16 else y.detach()).cpu().numpy(),
        }
        if std is not None:  # half precision: a map to look at, not to compute with
            arrays["std"] = std.detach().float().cpu().numpy().astype(np.float16)
        safe_io.write_with(
            self.samples_path(problem, solver, seed, batch),
            lambda f: np.savez_compressed(f, **arrays),
        )

    def iter_samples(self, problem: str, solver: str, seed: int) -> Iterator[SampleBatch]:
        """The stored batches of one (problem, solver, seed), in batch order."""
        folder = self.samples_path(problem, solver, seed, 0).parent
        for f in sorted(folder.glob("batch*.npz")):
            try:  # never unpickled: object arrays are refused
                with np.load(f, allow_pickle=False) as z:
                    imgs, idx = z["images"], z["indices"]
                    y = z["y"] if "y" in z.files else None
                    std = z["std"] if "std" in z.files else None
            except (OSError, ValueError, KeyError, EOFError) as err:
                raise SuiteError(
                    f"saved samples {f} cannot be read ({err}); delete the file (its batch is "
                    "solved again) or pass --restart"
                ) from None
            yield SampleBatch(
                [int(i) for i in idx.tolist()],
                from_uint8(torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()),
                None if y is None else torch.from_numpy(y),
                None if std is None else torch.from_numpy(std.astype(np.float32)),
            )

    def samples_fingerprint(self, problem: str, solver: str, seed: int) -> str:
        """A digest of the stored batches of one (problem, solver, seed): their names and
        bytes. Equal digests mean equal reconstructions, so what was computed from them (FID,
        KID) can be reused instead of recomputed when a resumed run writes its report again."""
        folder = self.samples_path(problem, solver, seed, 0).parent
        h = hashlib.sha256()
        for f in sorted(folder.glob("batch*.npz")):
            h.update(f.name.encode() + b"\0" + safe_io.file_digest(f).encode() + b"\0")
        return h.hexdigest()

    def load_std(
        self, problem: str, solver: str, seed: int, wanted: set[int] | None = None
    ) -> dict[int, Tensor]:
        """image index -> the standard deviation map of its K samples (``1 x C x H x W``),
        for the runs that drew K >= 2 samples per image."""
        found: dict[int, Tensor] = {}
        for b in self.iter_samples(problem, solver, seed):
            for k, i in enumerate(b.indices):
                if b.std is not None and (wanted is None or i in wanted):
                    found[i] = b.std[k : k + 1]
        return found

    def load_samples(
        self, problem: str, solver: str, seed: int, wanted: set[int] | None = None
    ) -> dict[int, tuple[Tensor, Tensor | None]]:
        """image index -> (its reconstruction, its measurement), ``1 x ...`` each."""
        found: dict[int, tuple[Tensor, Tensor | None]] = {}
        for b in self.iter_samples(problem, solver, seed):
            for k, i in enumerate(b.indices):
                if wanted is None or i in wanted:
                    found[i] = (b.images[k : k + 1], None if b.y is None else b.y[k : k + 1])
        return found


def load_samples(
    out: str | Path, problem: str, solver: str, seed: int, wanted: set[int] | None = None
) -> dict[int, Tensor]:
    """Saved reconstructions (image index -> 1 x C x H x W), all or only the ``wanted`` ones."""
    found = RunStore(out).load_samples(problem, solver, seed, wanted)
    return {i: x for i, (x, _) in found.items()}


def _read_errors(path: Path) -> list[dict[str, Any]]:
    if not path.exists() and not path.is_symlink():
        return []
    out = []
    for line in safe_io.read_bytes(path).decode("utf-8", errors="replace").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict) and {"problem", "solver", "seed", "images"} <= set(r):
            out.append(r)
    return out


__all__ = ["ERRORS", "ROWS", "RUN_INFO", "RunStore", "SampleBatch", "load_samples", "now"]
