"""Run a benchmark suite: prepare (check everything), solve image batches, write rows, summarise.

Reproducibility: the images are cut into fixed batches (``batch_size`` consecutive entries of
the suite's index list). The measurement of image ``i`` comes from ``Problem.measure`` (its own
generator), and the solver's generator for a batch is seeded by a hash of (problem, solver
label, seed, the batch's image indices). A batch is therefore computed identically whether it
runs first or last, on rank 0 or rank 3, in a fresh run or a resumed one; the rows of a run
split over processes equal those of one process.

Resuming: rows already present in the output folder (keyed by image, problem, solver, seed)
are not recomputed; a batch with some rows missing is recomputed and only the missing rows
are appended.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from invdiff import io as safe_io
from invdiff.bench import memory
from invdiff.bench import rows as rowio
from invdiff.bench.distributed import World, setup
from invdiff.bench.suite import SolverSpec, Suite, SuiteError
from invdiff.images import check_image, from_uint8, to_uint8
from invdiff.priors.base import Prior
from invdiff.priors.kinds import kind_of
from invdiff.problems import PRIOR_KINDS, Problem, measurement_seed
from invdiff.registry import SOLVERS
from invdiff.solvers.base import SolverMismatchError

ROWS = "rows.jsonl"
RUN_INFO = "run.json"


def solver_kind(solver: Any) -> str:
    """The prior kind a solver runs on, from its declared requirement (a type, not a name)."""
    return kind_of(solver.requires_prior)


@dataclass
class Pair:
    """One (problem, solver) combination that will run, with the key of its prior."""

    problem: Problem
    solver: SolverSpec
    prior_key: str


@dataclass
class Prepared:
    """A suite with its data, priors and operators loaded and every pairing checked."""

    suite: Suite
    device: torch.device
    dataset: Any
    indices: list[int]
    chunks: list[list[int]]
    operators: dict[str, Any]
    priors: dict[str, Prior]
    prior_folders: dict[str, Path]
    pairs: list[Pair]
    skipped: list[dict[str, str]] = field(default_factory=list)
    metric_fns: dict[str, Any] = field(default_factory=dict)

    def keys(self) -> set[rowio.RowKey]:
        return {
            (i, p.problem.name, p.solver.label, s)
            for p in self.pairs
            for s in self.suite.seeds
            for i in self.indices
        }


def resolve_device(spec: str, world: World | None = None) -> torch.device:
    from invdiff.device import resolve_device as resolve

    try:
        device = resolve(spec, "device")
    except (TypeError, ValueError) as err:
        raise SuiteError(str(err)) from None
    if device.type == "cuda" and world is not None and world.size > 1 and device.index is None:
        device = torch.device("cuda", world.local_rank)
    return device


def load_images(dataset: Any, indices: list[int]) -> Tensor:
    """The images ``indices`` of a data set as ``N x C x H x W`` (any map-style data set works:
    items that are image tensors or tuples whose first item is one)."""
    from invdiff.data.base import ImageDataset

    if isinstance(dataset, ImageDataset):
        return dataset.images(indices).float()
    if isinstance(dataset, Tensor):
        return dataset[indices].float()
    items = []
    for i in indices:
        item = dataset[i]
        if isinstance(item, tuple | list):
            item = item[0]
        t = torch.as_tensor(item)
        items.append(t[0] if t.ndim == 4 else t)
    return torch.stack(items).float()


def _prior_source(suite: Suite, spec: SolverSpec, problem: Problem, kind: str | None) -> str | None:
    if kind is None:
        return spec.prior  # an explicit prior name or folder
    value = suite.priors.get(kind)
    if isinstance(value, Mapping):
        value = value.get(problem.name)
    return value if value is not None else problem.priors.get(kind)


def _prior_folder(source: str, base: Path) -> tuple[str, Path]:
    """(what to pass to invdiff.priors.load, the folder that holds its files)."""
    from invdiff.priors import zoo

    if source in zoo.names():
        return source, zoo.ZOO_DIR / source
    p = Path(source).expanduser()
    if not p.is_absolute() and not p.exists() and (base / p).exists():
        p = base / p
    return str(p), p.resolve()


def prepare(suite: Suite, world: World | None = None) -> Prepared:
    """Load data, operators and priors and check every pairing, before any solving.

    All problems found are reported together in one ``SuiteError``.
    """
    import invdiff.data
    import invdiff.metrics
    from invdiff.priors import describe
    from invdiff.priors import load as load_prior

    errors: list[str] = []
    device = resolve_device(suite.device, world)

    # every pairing is checked first: it needs operators and the priors' JSON files only
    # operators
    operators: dict[str, Any] = {}
    for p in suite.problems:
        try:
            operators[p.name] = p.operator(device)
        except Exception as err:  # noqa: BLE001 - reported with the problem's name
            errors.append(
                f"problem {p.name!r}: cannot build operator {p.operator_name!r} "
                f"with {p.operator_params}: {err}"
            )

    # priors and pairings
    priors: dict[str, Prior] = {}
    infos: dict[str, Any] = {}
    sources: dict[str, str] = {}
    folders: dict[str, Path] = {}
    load_errors: dict[str, str] = {}
    pairs: list[Pair] = []
    skipped: list[dict[str, str]] = []
    for spec in suite.solvers:
        solver = SOLVERS.get(spec.name)
        kind = (
            spec.prior
            if spec.prior in PRIOR_KINDS
            else (None if spec.prior else solver_kind(solver))
        )
        for p in suite.problems:
            if spec.problems is not None and p.name not in spec.problems:
                continue
            if p.name not in operators:
                continue

            def reject(reason: str, p: Problem = p, spec: SolverSpec = spec) -> None:
                if suite.skip_incompatible:
                    skipped.append({"problem": p.name, "solver": spec.label, "reason": reason})
                else:
                    errors.append(f"solver {spec.label!r} on problem {p.name!r}: {reason}")

            source = _prior_source(suite, spec, p, kind)
            if source is None:
                reject(
                    f"no {kind} prior: name one in the suite's [priors] {kind} "
                    "or the preset's [priors]"
                )
                continue
            key, folder = _prior_folder(source, suite.base_dir)
            if key not in infos and key not in load_errors:
                try:  # the prior's JSON files only: weights load once the pairings hold
                    infos[key] = describe(key)
                    folders[key] = folder
                    sources[key] = source
                except Exception as err:  # noqa: BLE001 - a missing or broken prior folder
                    load_errors[key] = f"cannot load prior {source!r}: {err}"
                    errors.append(load_errors[key])
            if key in load_errors:
                continue
            info = infos[key]
            try:
                solver.check(info.prior_type, operators[p.name], p.noise)
            except SolverMismatchError as err:
                reject(str(err))
                continue
            shape = info.image_shape
            if tuple(shape) != p.in_shape:
                reject(
                    f"prior {source!r} models images of shape {tuple(shape)}, "
                    f"the problem has {p.in_shape}"
                )
                continue
            pairs.append(Pair(p, spec, key))
    # data
    kwargs = {
        k: v for k, v in suite.data.items() if k not in ("dataset", "start", "count", "indices")
    }
    try:
        dataset = invdiff.data.get(suite.data["dataset"], **kwargs)
    except Exception as err:  # noqa: BLE001 - any loader failure is a suite problem
        earlier = "".join(f"\n  {e}" for e in errors)
        raise SuiteError(
            f"[data] cannot load data set {suite.data.get('dataset')!r} with {kwargs}: {err}"
            + earlier
        ) from err
    n = len(dataset)
    before_data = len(errors)  # pairing problems, reported along with the data's
    if "indices" in suite.data:
        indices = list(suite.data["indices"])
        bad = [i for i in indices if i >= n]
        if bad:
            errors.append(f"[data] indices {bad[:5]} out of range: the data set has {n} images")
    else:
        start = suite.data.get("start", 0)
        count = suite.data.get("count", "all")
        stop = n if count == "all" else start + count
        if stop > n or start >= n:
            errors.append(
                f"[data] start={start}, count={count} out of range: the data set has {n} images"
            )
        indices = list(range(start, min(stop, n)))
    limit = suite.overrides.get("limit")
    if limit is not None:
        indices = indices[:limit]
    chunks = [indices[k : k + suite.batch_size] for k in range(0, len(indices), suite.batch_size)]
    if indices and len(errors) == before_data:
        first = load_images(dataset, indices[:1])
        try:
            check_image(first, f"image {indices[0]} of {suite.data['dataset']!r}")
        except (TypeError, ValueError) as err:
            errors.append(str(err))
        for p in suite.problems:
            if tuple(first.shape[1:]) != p.in_shape:
                errors.append(
                    f"problem {p.name!r} expects images of shape {p.in_shape} but data set "
                    f"{suite.data['dataset']!r} gives {tuple(first.shape[1:])}"
                )

    # metrics
    metric_fns = {}
    for m in [*suite.metrics, *suite.distribution_metrics]:
        fn = getattr(invdiff.metrics, m, None)
        if fn is None:
            errors.append(f"metric {m!r} is not available in invdiff.metrics in this install")
        metric_fns[m] = fn
    if suite.distribution_metrics and len(indices) >= suite.min_images_distribution:
        try:  # the Inception weights ship in a package installed separately: check them first
            invdiff.metrics.inception_network(device)
        except Exception as err:  # noqa: BLE001 - missing weights, a broken install
            errors.append(f"distribution_metrics need the Inception network: {err}")
    if indices and len(errors) == before_data:
        # a metric that cannot score these images (too small, wrong channels) fails here, not
        # after the solving
        probe = first.to(device)
        for m in suite.metrics:
            try:
                metric_fns[m](probe, probe)
            except Exception as err:  # noqa: BLE001 - reported with the metric's name
                errors.append(
                    f"metric {m!r} cannot score images of shape {tuple(probe.shape[1:])}: {err}"
                )

    # weights, only for the priors of pairs that can run
    if not errors:
        for key in dict.fromkeys(pair.prior_key for pair in pairs):
            try:
                priors[key] = load_prior(key, device=device)
                priors[key].configure(**dataclasses.asdict(suite.network))
            except Exception as err:  # noqa: BLE001 - a broken weights file
                errors.append(f"cannot load prior {sources[key]!r}: {err}")
    if not pairs and not errors:
        errors.append("no solver/problem pair can run (all were skipped as incompatible)")
    if errors:
        where = suite.path or suite.name
        raise SuiteError(
            f"suite {where} cannot run ({len(errors)} problem(s)):\n  " + "\n  ".join(errors)
        )
    return Prepared(
        suite,
        device,
        dataset,
        indices,
        chunks,
        operators,
        priors,
        folders,
        pairs,
        skipped,
        metric_fns,
    )


def _solver_seed(problem: str, solver: str, seed: int, chunk: list[int]) -> int:
    return measurement_seed(f"{problem}|{solver}|" + ",".join(map(str, chunk)), 0, seed)


def samples_path(out: Path, problem: str, solver: str, seed: int, chunk_id: int) -> Path:
    """Where a batch's reconstructions go; the names are checked, the path proven under ``out``."""
    path = (
        out
        / "samples"
        / safe_io.check_name(problem, "problem name")
        / safe_io.check_name(solver, "solver label")
        / f"seed{int(seed)}"
        / f"batch{int(chunk_id):05d}.npz"
    )
    safe_io.inside(out, path, "samples file")
    return path


def _save_samples(path: Path, x: Tensor, indices: list[int]) -> None:
    images = to_uint8(torch.nan_to_num(x).clamp(-1, 1))
    safe_io.write_with(
        path, lambda f: np.savez_compressed(f, images=images, indices=np.asarray(indices))
    )


def iter_samples(
    out: Path, problem: str, solver: str, seed: int
) -> Iterator[tuple[list[int], Tensor]]:
    """The saved reconstructions of one (problem, solver, seed), batch by batch."""
    folder = samples_path(out, problem, solver, seed, 0).parent
    for f in sorted(folder.glob("batch*.npz")):
        try:
            with np.load(f, allow_pickle=False) as z:
                imgs, idx = z["images"], z["indices"]
        except (OSError, ValueError, KeyError, EOFError) as err:
            raise SuiteError(
                f"saved samples {f} cannot be read ({err}); delete the file (its batch is "
                "solved again) or pass --restart"
            ) from None
        yield (
            [int(i) for i in idx.tolist()],
            from_uint8(torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()),
        )


def load_samples(
    out: Path, problem: str, solver: str, seed: int, wanted: set[int] | None = None
) -> dict[int, Tensor]:
    """Saved reconstructions (image index -> 1 x C x H x W), all or only the ``wanted`` ones."""
    found: dict[int, Tensor] = {}
    for idx, images in iter_samples(out, problem, solver, seed):
        for k, i in enumerate(idx):
            if wanted is None or i in wanted:
                found[i] = images[k : k + 1]
    return found


def _network_label(suite: Suite) -> str | None:
    label = suite.network.describe()
    return None if label == "fp32" else label


def _check_run_folder(out: Path, suite: Suite, restart: bool) -> None:
    info = {
        "suite_sha256": suite.sha256,
        "data": suite.overrides.get("data"),
        "prior": suite.overrides.get("prior"),
        # rows of another precision are other numbers; fp32 folders keep their old record
        "network": _network_label(suite),
    }
    path = out / RUN_INFO
    if out.exists() and not out.is_dir():
        raise SuiteError(f"--out {out} is a file, not a folder; choose a folder")
    if (path.exists() or path.is_symlink()) and not restart:
        try:
            old = json.loads(safe_io.read_bytes(path))
            if not isinstance(old, dict):
                raise ValueError(f"a JSON object expected, got {type(old).__name__}")
        except (ValueError, UnicodeDecodeError) as err:
            raise SuiteError(
                f"{path} is corrupt ({err}); pass --restart to discard the results in {out}, "
                "or another --out"
            ) from None
        old = {k: old.get(k) for k in info}
        if old != info:
            raise SuiteError(
                f"{out} holds results of another suite or other --data/--prior ({old}); "
                "pass another --out, or --restart to discard them"
            )


def _check_batches(out: Path, prep: Prepared) -> None:
    """Refuse rows solved in other batches than this run would use (e.g. by a ``--limit`` run).

    A row depends on its batch (the solver's generator is seeded by the batch's images), so a
    folder whose rows came from batches of another composition would mix two different runs.
    """
    plan = {i: (cid, len(chunk)) for cid, chunk in enumerate(prep.chunks) for i in chunk}
    keys = prep.keys()
    stale = [
        r
        for r in rowio.read_all([out / ROWS, *sorted(out.glob("rows.rank*.jsonl"))]).values()
        if rowio.row_key(r) in keys
        and (r.get("batch"), r.get("batch_size")) != plan[int(r["image"])]
    ]
    if stale:
        r = stale[0]
        raise SuiteError(
            f"{out} holds {len(stale)} row(s) solved in other batches than this run uses "
            f"(e.g. image {r['image']} of {r['problem']!r} / {r['solver']!r} in a batch of "
            f"{r.get('batch_size')}, here {plan[int(r['image'])][1]}): an earlier run with "
            "another --limit or batch_size. Their reconstructions differ from this run's; pass "
            "--restart to discard them, or another --out"
        )


def _start_run_folder(out: Path, suite: Suite, restart: bool) -> None:
    if restart and out.is_dir():
        for name in (ROWS, RUN_INFO, "errors.jsonl"):
            (out / name).unlink(missing_ok=True)
        for f in out.glob("rows.rank*.jsonl"):
            f.unlink()
        for f in out.glob("errors.rank*.jsonl"):
            f.unlink()
        if (out / "samples").is_symlink():
            (out / "samples").unlink()
        shutil.rmtree(out / "samples", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "suite": str(suite.path) if suite.path else suite.name,
        "suite_sha256": suite.sha256,
        "data": suite.overrides.get("data"),
        "prior": suite.overrides.get("prior"),
        # rows of another precision are other numbers; fp32 folders keep their old record
        "network": _network_label(suite),
    }
    if not (out / RUN_INFO).exists():
        rowio.write_text_atomic(out / RUN_INFO, json.dumps(info, indent=2) + "\n")
    if suite.path is not None:
        rowio.write_text_atomic(out / "suite.toml", suite.path.read_text())


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def solve_chunks(
    prep: Prepared, out: Path, world: World, *, progress: bool = True
) -> dict[str, int]:
    """Run this rank's batches, one row per (image, problem, solver, seed); returns counts."""
    import invdiff

    suite = prep.suite
    my_file = out / f"rows.rank{world.rank}.jsonl"
    err_file = out / f"errors.rank{world.rank}.jsonl"
    rowio.repair(my_file)
    rowio.repair(err_file)
    done = set(rowio.read_all([out / ROWS, *sorted(out.glob("rows.rank*.jsonl"))]))
    mine = [(cid, chunk) for cid, chunk in enumerate(prep.chunks) if cid % world.size == world.rank]
    per_chunk = len(prep.pairs) * len(suite.seeds)
    total = sum(len(c) for _, c in mine) * per_chunk
    already = sum(
        1
        for _, chunk in mine
        for pair in prep.pairs
        for s in suite.seeds
        for i in chunk
        if (i, pair.problem.name, pair.solver.label, s) in done
    )
    counts = {"rows": 0, "errors": 0, "resumed": already}
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total,
        initial=already,
        desc=f"bench {suite.name}"
        + (f" [rank {world.rank}/{world.size}]" if world.size > 1 else ""),
        unit="row",
        disable=not progress,
        position=world.rank,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    for cid, chunk in mine:
        x = None
        for pair in prep.pairs:
            problem, spec = pair.problem, pair.solver
            for seed in suite.seeds:
                keys = [(i, problem.name, spec.label, seed) for i in chunk]
                if all(k in done for k in keys):
                    continue
                if x is None:
                    x = load_images(prep.dataset, chunk).to(prep.device)
                op = prep.operators[problem.name]
                prior = prep.priors[pair.prior_key]
                bar.set_postfix_str(f"{problem.name} / {spec.label}", refresh=False)
                try:
                    y = problem.measure(x, chunk, seed, operator=op)
                    gen = torch.Generator(device=prep.device).manual_seed(
                        _solver_seed(problem.name, spec.label, seed, chunk)
                    )
                    prior.nfe = 0
                    memory.reset_peak(prep.device)
                    _sync(prep.device)
                    t0 = time.perf_counter()
                    xhat = invdiff.solve(
                        spec.name,
                        prior=prior,
                        operator=op,
                        y=y,
                        noise=problem.noise,
                        steps=spec.steps,
                        generator=gen,
                        **spec.hyper_for(problem.name),
                    )
                    _sync(prep.device)
                    wall = time.perf_counter() - t0
                    peak_mb = memory.peak_mb(prep.device)
                    nfe = int(prior.nfe)
                    xhat = xhat.detach()
                    finite = torch.isfinite(xhat.flatten(1)).all(1)
                    values: dict[str, list[float]] = {}
                    with torch.no_grad():
                        for m in suite.metrics:
                            v = prep.metric_fns[m](xhat.float().clamp(-1, 1), x)
                            values[m] = [float(a) for a in torch.as_tensor(v).flatten().tolist()]
                except Exception as err:  # noqa: BLE001 - one failing solver must not stop a benchmark
                    counts["errors"] += 1
                    rowio.append(
                        err_file,
                        {
                            "problem": problem.name,
                            "solver": spec.label,
                            "seed": seed,
                            "images": chunk,
                            "error": f"{type(err).__name__}: {err}",
                            "time": _now(),
                        },
                    )
                    bar.write(
                        f"error: {spec.label} on {problem.name} (images {chunk[0]}..{chunk[-1]}): "
                        f"{type(err).__name__}: {err}"
                    )
                    bar.update(sum(1 for k in keys if k not in done))
                    continue
                if suite.save_samples:
                    _save_samples(
                        samples_path(out, problem.name, spec.label, seed, cid), xhat, chunk
                    )
                for k, i in enumerate(chunk):
                    if keys[k] in done:
                        continue
                    row = {
                        "image": i,
                        "problem": problem.name,
                        "solver": spec.label,
                        "seed": seed,
                        "solver_name": spec.name,
                        "steps": spec.steps,
                        **{m: values[m][k] for m in suite.metrics},
                        "finite": bool(finite[k]),
                        "wall_s": wall / len(chunk),
                        "nfe": nfe,
                        # of the whole batch: device memory on a GPU, resident set on the CPU
                        "peak_mem_mb": round(peak_mb, 1),
                        "network": suite.network.describe(),
                        "batch": cid,
                        "batch_size": len(chunk),
                        "device": str(prep.device),
                        "rank": world.rank,
                        "time": _now(),
                    }
                    rowio.append(my_file, row)
                    done.add(keys[k])
                    counts["rows"] += 1
                    bar.update(1)
    bar.close()
    return counts


def run(
    suite: Suite,
    out: str | Path,
    *,
    restart: bool = False,
    progress: bool = True,
    figures: bool = True,
) -> dict[str, Any]:
    """Run ``suite`` into ``out``, resuming what is there; the manifest (rank 0) or counts."""
    from invdiff.bench import report

    out = Path(out)
    started = _now()
    t0, cpu0 = time.perf_counter(), time.process_time()
    world = setup(
        suite.device if suite.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    try:
        error: Exception | None = None
        prep = None
        try:
            if world.is_main:
                safe_io.check_writable(out)
            prep = prepare(suite, world)
            _check_run_folder(out, suite, restart)
            if not restart and out.is_dir():
                _check_batches(out, prep)
        except (ValueError, OSError) as err:  # SuiteError, unsafe or unwritable --out
            error = err
        if not world.all_ok(error is None):
            raise error or SuiteError("another rank rejected the suite (see its error)")
        if world.is_main:
            _start_run_folder(out, suite, restart)
        world.barrier()
        counts = solve_chunks(prep, out, world, progress=progress)
        world.barrier()
        if not world.is_main:
            return {"rank": world.rank, **counts}
        merged = rowio.merge(out / ROWS, sorted(out.glob("rows.rank*.jsonl")))
        have = {rowio.row_key(r) for r in merged}
        err_rows = []
        for f in [out / "errors.jsonl", *sorted(out.glob("errors.rank*.jsonl"))]:
            for r in _read_errors(f):
                # an error of an earlier attempt whose rows now exist is history, not a failure
                if not all((i, r["problem"], r["solver"], r["seed"]) in have for i in r["images"]):
                    err_rows.append(r)
        rowio.write_text_atomic(
            out / "errors.jsonl", "".join(rowio.dumps(r) + "\n" for r in err_rows)
        )
        for f in out.glob("errors.rank*.jsonl"):
            f.unlink()
        keys = prep.keys()
        rows = [r for r in merged if rowio.row_key(r) in keys]
        manifest = report.write_all(
            prep,
            rows,
            out,
            figures=figures,
            world=world,
            started=started,
            wall_s=time.perf_counter() - t0,
            cpu_s=time.process_time() - cpu0,
            counts=counts,
            errors=err_rows,
            progress=progress,
        )
        return manifest
    finally:
        world.close()


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


__all__ = ["Pair", "Prepared", "load_samples", "prepare", "run", "solver_kind"]
