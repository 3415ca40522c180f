"""Tuning a solver's hyperparameters on a validation split, and the table suites read.

A comparison ranks methods only if each runs at its best for the problem, the prior and the
budget; paper defaults are tuned for other data (FFHQ-256, 1000 steps). ``tune`` searches the
hyperparameters a solver declares tunable (``Hyper.search``) by successive halving (Jamieson &
Talwalkar 2016, "Non-stochastic best arm identification and hyperparameter optimization";
Li et al. 2018, Hyperband): ``C`` candidates (the declared defaults first, the others drawn
from the search space by a seeded generator, log-uniform over ranges spanning a factor of 10
or more) are scored on the first images of the validation set; the better half goes on to
twice the images, until one is left or the images run out. The objective is fixed (LPIPS by
default, lower is better; PSNR is reported beside it) and every candidate's scores are kept.

The declared defaults ride along to the last rung whatever their early scores, and the winner
is chosen there on all the validation images: a tuned value replaces a default only when it
scores better on every image the choice is made on, not on the two images of the first rung
(where, on Fashion-MNIST, DDRM's defaults were dropped for values 2 dB worse on 16 images).

The validation images must be images the test tables never use: ``fashion_mnist`` split
``val`` (test indices 9,000-9,999) for the shipped problems. A ``TunedTable`` (JSON, versioned)
holds one entry per (solver, problem, prior, budget) with the chosen values, the search space,
the validation images, the objective and the date; a suite entry with ``tuned = true`` runs
with them, its rows say so (``hyper_source``), and the suite is refused when its test images
overlap the images the values were tuned on.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from invdiff import io as safe_io
from invdiff.metrics import lpips, psnr
from invdiff.problems import Problem
from invdiff.registry import SOLVERS

FORMAT, VERSION = "invdiff-tuned", 1
#: objectives: name -> lower is better
OBJECTIVES = {"lpips": True, "psnr": False}


class TuningError(ValueError):
    """A tuning run or a tuned table that cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Budget:
    """A run's budget: network evaluations (``nfe``) or the solver's own ``steps``."""

    nfe: int | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if (self.nfe is None) == (self.steps is None):
            raise TuningError("a budget is nfe=... or steps=..., exactly one of them")

    def key(self) -> str:
        return f"nfe{self.nfe}" if self.nfe is not None else f"steps{self.steps}"

    def kwargs(self) -> dict[str, int]:
        return {"nfe": self.nfe} if self.nfe is not None else {"steps": self.steps}


@dataclass
class TunedEntry:
    """The tuned values of one (solver, problem, prior, budget) and how they were found."""

    solver: str
    problem: str
    prior: str
    budget: str  # Budget.key(): nfe100 or steps50
    hyper: dict[str, Any]
    objective: str
    score: float  # the objective's mean over the images the winner was scored on
    psnr: float
    lpips: float
    images: int
    validation: dict[str, Any]  # dataset, split, indices
    search: dict[str, list[Any]]
    candidates: list[dict[str, Any]] = field(default_factory=list)
    nfe_spent: int = 0
    date: str = ""

    def key(self) -> tuple[str, str, str, str]:
        return (self.solver, self.problem, self.prior, self.budget)


class TunedTable:
    """Tuned entries, read from and written to one JSON file (atomically)."""

    def __init__(self, entries: Iterable[TunedEntry] = ()) -> None:
        self.entries: dict[tuple[str, str, str, str], TunedEntry] = {e.key(): e for e in entries}

    @classmethod
    def load(cls, path: str | Path) -> TunedTable:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"tuned table {path}: no such file; write one with `invdiff tune ... --table "
                f"{path}`"
            )
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT or data.get("version") != VERSION:
                raise TuningError(
                    f"not an {FORMAT} table of version {VERSION} (format "
                    f"{data.get('format')!r}, version {data.get('version')!r})"
                )
            fields = set(TunedEntry.__dataclass_fields__)
            entries = []
            for e in data["entries"]:
                if not isinstance(e, dict) or set(e) - fields:
                    raise TuningError(f"an entry has unknown fields {sorted(set(e) - fields)}")
                entries.append(TunedEntry(**e))
        except (json.JSONDecodeError, KeyError, TypeError, TuningError) as err:
            raise TuningError(f"tuned table {path} cannot be read: {err}") from None
        return cls(entries)

    def save(self, path: str | Path) -> Path:
        body = {
            "format": FORMAT,
            "version": VERSION,
            "entries": [asdict(e) for e in sorted(self.entries.values(), key=TunedEntry.key)],
        }
        path = Path(path)
        safe_io.write_text(path, json.dumps(body, indent=1) + "\n")
        return path

    def add(self, entry: TunedEntry) -> None:
        self.entries[entry.key()] = entry

    def lookup(self, solver: str, problem: str, prior: str, budget: Budget) -> TunedEntry:
        found = self.entries.get((solver, problem, prior, budget.key()))
        if found is None:
            raise TuningError(
                f"no tuned values for solver {solver!r} on problem {problem!r} with prior "
                f"{prior!r} at {budget.key()}; run `invdiff tune --solver {solver} --problem "
                f"{problem} --prior {prior} --{'nfe' if budget.nfe else 'steps'} "
                f"{budget.nfe or budget.steps} --table FILE`"
            )
        return found


def official_indices(dataset: str, split: str, indices: Iterable[int]) -> set[tuple[str, int]]:
    """The images as (file split, index) pairs, so that two splits over the same files compare
    (``fashion_mnist`` ``val`` is ``test`` 9,000-9,999)."""
    if dataset == "fashion_mnist":
        from invdiff.data.fashion_mnist import SPLITS

        files, part = SPLITS.get(split, (split, slice(None)))
        start = part.start or 0
        return {(files, start + int(i)) for i in indices}
    return {(split, int(i)) for i in indices}


def search_space(solver_name: str, fixed: Iterable[str] = ()) -> dict[str, Any]:
    """The tunable hyperparameters of a solver (name -> its ``Hyper`` with ``search``),
    less the ``fixed`` ones."""
    solver = SOLVERS.get(solver_name)
    held = set(fixed)
    return {k: h for k, h in solver.hypers.items() if h.search is not None and k not in held}


def candidates(
    solver_name: str, count: int, seed: int, fixed: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """The declared defaults of the tunable hyperparameters, then ``count - 1`` draws from
    the search space (``draw_candidates``)."""
    space = search_space(solver_name, fixed)
    if not space:
        raise TuningError(
            f"solver {solver_name!r} declares no tunable hyperparameters (Hyper.search); "
            "there is nothing to tune"
        )
    return draw_candidates(space, count, seed)


def draw_candidates(space: dict[str, Any], count: int, seed: int) -> list[dict[str, Any]]:
    """The defaults of the ``Hyper`` declarations in ``space``, then ``count - 1`` distinct
    draws from their search ranges (a Sobol sequence, scrambled by ``seed``: spread evenly,
    reproducible)."""
    out = [{k: h.default for k, h in space.items()}]
    engine = torch.quasirandom.SobolEngine(len(space), scramble=True, seed=seed)
    seen = {json.dumps(out[0], sort_keys=True)}
    for u in engine.draw(max(4 * count, 16)).tolist():
        cand = {k: h.draw(v) for (k, h), v in zip(space.items(), u)}
        text = json.dumps(cand, sort_keys=True)
        if text not in seen:
            seen.add(text)
            out.append(cand)
        if len(out) == count:
            break
    return out


def _rungs(n_candidates: int, n_images: int) -> list[tuple[int, int]]:
    """(candidates kept, images scored) per rung of successive halving, the images doubling
    up to ``n_images`` while the candidates halve down to one."""
    rounds = max(1, math.ceil(math.log2(max(n_candidates, 1))) + 1)
    out = []
    for r in range(rounds):
        keep = max(1, math.ceil(n_candidates / 2**r))
        images = max(1, min(n_images, math.ceil(n_images / 2 ** (rounds - 1 - r))))
        out.append((keep, images))
    return out


def successive_halving(
    n_candidates: int,
    n_images: int,
    evaluate: Callable[[int, list[int]], tuple[list[float], list[float]]],
    *,
    objective: str = "lpips",
    batch_size: int = 8,
    progress: Callable[[int, str], None] | None = None,
) -> tuple[int, list[dict[int, tuple[float, float]]]]:
    """Successive halving (module docstring) over candidates ``0 .. n_candidates - 1``, where
    ``evaluate(c, images)`` runs candidate ``c`` on a list of validation image positions and
    returns their (PSNR, LPIPS) lists. Candidate 0 (the declared defaults) goes on to the last
    rung whatever its early scores. Any method can be tuned with it (a peer library's solver
    included, ``scripts/bench_peers.py``). Returns the winner and every candidate's scores
    (image position -> (PSNR, LPIPS))."""
    if objective not in OBJECTIVES:
        raise TuningError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")
    lower = OBJECTIVES[objective]
    scores: list[dict[int, tuple[float, float]]] = [{} for _ in range(n_candidates)]

    def score(c: int, upto: int) -> None:
        todo = [i for i in range(upto) if i not in scores[c]]
        for start in range(0, len(todo), batch_size):
            part = todo[start : start + batch_size]
            for i, p, q in zip(part, *evaluate(c, part)):
                scores[c][i] = (float(p), float(q))

    def mean(c: int, upto: int) -> float:
        vals = [scores[c][i][1 if objective == "lpips" else 0] for i in range(upto)]
        return sum(vals) / len(vals)

    alive = list(range(n_candidates))
    rungs = _rungs(n_candidates, n_images)
    for r, (_, upto) in enumerate(rungs):
        for c in alive:
            score(c, upto)
        alive.sort(key=lambda c: mean(c, upto) * (1 if lower else -1))
        # the better part goes on to the next rung's images (one winner after the last); the
        # defaults (candidate 0) go on in any case, so the last rung weighs them on all images
        last = r + 1 == len(rungs)
        kept = alive[: 1 if last else rungs[r + 1][0]]
        if not last and 0 in alive and 0 not in kept:
            kept.append(0)
        alive = kept
        if progress is not None:
            progress(
                alive[0],
                f"{upto} image(s): {len(alive)} candidate(s) kept; "
                f"{objective} {mean(alive[0], upto):.4g}",
            )
    return alive[0], scores


def tune(
    solver_name: str,
    problem: Problem,
    prior: Any,
    prior_name: str,
    budget: Budget,
    images: Tensor,
    indices: list[int],
    *,
    validation: dict[str, Any],
    count: int = 8,
    objective: str = "lpips",
    seed: int = 0,
    batch_size: int = 8,
    fixed: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> TunedEntry:
    """Successive halving over ``count`` candidates on the validation ``images`` (their data set
    ``indices`` seed the measurement noise as in the benchmark). ``fixed`` hyperparameters are
    held at the given values. Returns the winner's entry (module docstring)."""
    from invdiff.solvers import get, solve

    if objective not in OBJECTIVES:
        raise TuningError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")
    solver = get(solver_name)
    fixed = dict(fixed or {})
    pool = [{**c, **fixed} for c in candidates(solver_name, count, seed, fixed)]
    for cand in pool:
        solver.hyperparameters(cand)
    op = problem.operator(images.device)
    solver.check(prior, op, problem.noise)
    if budget.nfe is not None:
        solver.steps_for_nfe(budget.nfe, prior=prior, **pool[0])
    small = None if min(images.shape[-2:]) >= 31 else tuple(images.shape[-2:])
    if small is not None and objective == "lpips":
        raise TuningError(f"LPIPS needs images of 31 x 31 pixels or more, got {small}")
    spent = 0

    def evaluate(c: int, part: list[int]) -> tuple[list[float], list[float]]:
        nonlocal spent
        x = images[part]
        y = problem.measure(x, [indices[i] for i in part], 0, operator=op)
        prior.nfe = 0
        xhat = solve(
            solver_name,
            prior=prior,
            operator=op,
            y=y,
            noise=problem.noise,
            generator=torch.Generator(device=x.device).manual_seed(seed),
            **budget.kwargs(),
            **pool[c],
        ).detach()
        spent += int(prior.nfe)
        xhat = torch.nan_to_num(xhat.float(), nan=0.0).clamp(-1, 1)
        # LPIPS needs 31 x 31 pixels or more: reported as NaN below that (and then it cannot
        # be the objective, refused above)
        perceptual = lpips(xhat, x).tolist() if small is None else [math.nan] * len(part)
        return psnr(xhat, x).tolist(), perceptual

    best, scores = successive_halving(
        len(pool),
        images.shape[0],
        evaluate,
        objective=objective,
        batch_size=batch_size,
        progress=None if progress is None else lambda c, text: progress(f"{text}; best {pool[c]}"),
    )
    seen = sorted(scores[best])
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return TunedEntry(
        solver=solver_name,
        problem=problem.name,
        prior=prior_name,
        budget=budget.key(),
        hyper=pool[best],
        objective=objective,
        score=sum(scores[best][i][1 if objective == "lpips" else 0] for i in seen) / len(seen),
        psnr=sum(scores[best][i][0] for i in seen) / len(seen),
        lpips=sum(scores[best][i][1] for i in seen) / len(seen),
        images=len(seen),
        validation=validation,
        search={k: list(h.search) for k, h in search_space(solver_name, fixed).items()},
        candidates=[
            {
                "hyper": pool[c],
                "images": len(scores[c]),
                "psnr": sum(p for p, _ in scores[c].values()) / max(len(scores[c]), 1),
                "lpips": sum(q for _, q in scores[c].values()) / max(len(scores[c]), 1),
            }
            for c in range(len(pool))
        ],
        nfe_spent=spent,
        date=date,
    )


__all__ = [
    "draw_candidates",
    "successive_halving",
    "Budget",
    "TunedEntry",
    "TunedTable",
    "TuningError",
    "candidates",
    "official_indices",
    "search_space",
    "tune",
]
