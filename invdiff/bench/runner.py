"""Run a benchmark suite: plan, loop, merge, report.

The parts: :mod:`invdiff.bench.plan` (every pairing checked, the work items),
:mod:`invdiff.bench.store` (the run folder: rows, samples with their measurements, errors,
``run.json``, resume checks), :mod:`invdiff.bench.loop` (solve, score, append) and
:mod:`invdiff.bench.report` (tables, figures and the manifest, from the store).

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

import time
from pathlib import Path
from typing import Any

import torch

from invdiff import io as safe_io
from invdiff.bench import plan as planning
from invdiff.bench import report
from invdiff.bench import rows as rowio
from invdiff.bench.distributed import World, setup
from invdiff.bench.loop import run_items
from invdiff.bench.plan import Pair, Plan, load_images, resolve_device
from invdiff.bench.store import ROWS, RUN_INFO, RunStore, load_samples, now
from invdiff.bench.suite import Suite, SuiteError
from invdiff.priors.zoo import kind_of

#: the former name of the plan
Prepared = Plan


def solver_kind(solver: Any) -> str:
    """The prior kind a solver runs on, from its declared requirement (a type, not a name)."""
    return kind_of(solver.requires_prior)


def prepare(suite: Suite, world: World | None = None) -> Plan:
    """The suite's plan: data, operators and priors loaded, every pairing checked (one
    ``SuiteError`` lists every problem found), before any solving."""
    return planning.build(suite, solver_kind, world)


def run(
    suite: Suite,
    out: str | Path,
    *,
    restart: bool = False,
    progress: bool = True,
    figures: bool = True,
) -> dict[str, Any]:
    """Run ``suite`` into ``out``, resuming what is there; the manifest (rank 0) or counts."""
    store = RunStore(out)
    started = now()
    t0, cpu0 = time.perf_counter(), time.process_time()
    world = setup(
        suite.device if suite.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    try:
        error: Exception | None = None
        plan = None
        try:
            if world.is_main:
                safe_io.check_writable(store.out)
            plan = prepare(suite, world)
            store.check(suite, restart)
            if not restart and store.out.is_dir():
                store.check_batches(plan.keys(), plan.batch_of())
        except (ValueError, OSError) as err:  # SuiteError, unsafe or unwritable --out
            error = err
        if not world.all_ok(error is None):
            raise error or SuiteError("another rank rejected the suite (see its error)")
        if world.is_main:
            store.start(suite, restart)
        world.barrier()
        counts = run_items(plan, store, world, progress=progress)
        world.barrier()
        if not world.is_main:
            return {"rank": world.rank, **counts}
        merged, errors = store.merge()
        keys = plan.keys()
        return report.write_all(
            plan,
            store,
            [r for r in merged if rowio.row_key(r) in keys],
            figures=figures,
            world=world,
            started=started,
            wall_s=time.perf_counter() - t0,
            cpu_s=time.process_time() - cpu0,
            counts=counts,
            errors=errors,
            progress=progress,
        )
    finally:
        world.close()


__all__ = [
    "ROWS",
    "RUN_INFO",
    "Pair",
    "Plan",
    "Prepared",
    "load_images",
    "load_samples",
    "prepare",
    "resolve_device",
    "run",
    "solver_kind",
]
