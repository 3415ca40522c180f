"""The plan of a benchmark run: what will be solved, built and checked before any solving.

``build(suite)`` loads the operators, the priors' descriptions, the data and the metrics, checks
every (problem, solver) pairing and reports every problem found in one ``SuiteError``; only
then are the weights of the priors that will run loaded. The result is a :class:`Plan`: the
pairs that run, the images cut into fixed batches (``batch_size`` consecutive entries of the
suite's index list) and the :class:`WorkItem` s, one per (batch, pair, seed).

A work item's solver generator is seeded by a hash of (problem, solver label, seed, the
batch's image indices), so an item is computed identically whether it runs first or last, on
rank 0 or rank 3, in a fresh run or a resumed one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from invdiff.bench import rows as rowio
from invdiff.bench.distributed import World
from invdiff.bench.suite import SolverSpec, Suite, SuiteError
from invdiff.images import check_image
from invdiff.metrics.registry import METRICS
from invdiff.priors.base import Prior
from invdiff.priors.sr3 import degradation_mismatch
from invdiff.problems import PRIOR_KINDS, Problem, measurement_seed
from invdiff.registry import SOLVERS
from invdiff.solvers.base import SolverMismatchError


@dataclass
class Pair:
    """One (problem, solver) combination that will run, with the key of its prior."""

    problem: Problem
    solver: SolverSpec
    prior_key: str
    #: the hyperparameters it runs with: tuned values (``invdiff tune``) under the suite's
    #: own; None: the suite's (``SolverSpec.hyper_for``) on the paper defaults
    tuned: dict[str, Any] | None = None
    #: the validation images the tuned values were chosen on (dataset, split, indices)
    tuned_on: dict[str, Any] | None = None

    @property
    def hyper(self) -> dict[str, Any]:
        own = self.solver.hyper_for(self.problem.name)
        return {**self.tuned, **own} if self.tuned is not None else own

    @property
    def hyper_source(self) -> str:
        """What a row says its hyperparameters are: ``tuned``, ``suite`` or ``defaults``."""
        if self.tuned is not None:
            return "tuned"
        return "suite" if self.solver.hyper_for(self.problem.name) else "defaults"


@dataclass(frozen=True)
class WorkItem:
    """One solver call: a batch of images of one pair under one seed."""

    batch: int
    images: list[int]
    pair: Pair
    seed: int

    def keys(self) -> list[rowio.RowKey]:
        return [(i, self.pair.problem.name, self.pair.solver.label, self.seed) for i in self.images]

    def solver_seed(self) -> int:
        return measurement_seed(
            f"{self.pair.problem.name}|{self.pair.solver.label}|" + ",".join(map(str, self.images)),
            0,
            self.seed,
        )


@dataclass
class Plan:
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

    def batch_of(self) -> dict[int, tuple[int, int]]:
        """image -> (its batch, the batch's size): what a stored row must agree with."""
        return {i: (cid, len(chunk)) for cid, chunk in enumerate(self.chunks) for i in chunk}

    def items(self, world: World | None = None) -> Iterator[WorkItem]:
        """This rank's work, batch by batch (the images of a batch load once for all pairs)."""
        rank, size = (world.rank, world.size) if world is not None else (0, 1)
        for cid, chunk in enumerate(self.chunks):
            if cid % size == rank:
                for pair in self.pairs:
                    for seed in self.suite.seeds:
                        yield WorkItem(cid, chunk, pair, seed)


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


@dataclass
class _Draft:
    """What ``build`` has found so far; ``errors`` are reported together at the end."""

    suite: Suite
    device: torch.device
    errors: list[str] = field(default_factory=list)
    operators: dict[str, Any] = field(default_factory=dict)
    infos: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    folders: dict[str, Path] = field(default_factory=dict)
    pairs: list[Pair] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    tuned_table: Any = None


def _build_operators(d: _Draft) -> None:
    for p in d.suite.problems:
        try:
            d.operators[p.name] = p.operator(d.device)
        except Exception as err:  # noqa: BLE001 - reported with the problem's name
            d.errors.append(
                f"problem {p.name!r}: cannot build operator {p.operator_name!r} "
                f"with {p.operator_params}: {err}"
            )


def _describe_prior(d: _Draft, source: str, load_errors: dict[str, str]) -> str | None:
    """The prior's key once its JSON files are read (weights wait), or None if it is broken."""
    from invdiff.priors import describe

    key, folder = _prior_folder(source, d.suite.base_dir)
    if key not in d.infos and key not in load_errors:
        try:
            d.infos[key] = describe(key)
            d.folders[key] = folder
            d.sources[key] = source
        except Exception as err:  # noqa: BLE001 - a missing or broken prior folder
            load_errors[key] = f"cannot load prior {source!r}: {err}"
            d.errors.append(load_errors[key])
    return None if key in load_errors else key


def _pair_up(d: _Draft, kind_of: Callable[[Any], str]) -> None:
    """Every (problem, solver) the suite asks for, checked against its prior and operator."""
    suite = d.suite
    load_errors: dict[str, str] = {}
    for spec in suite.solvers:
        solver = SOLVERS.get(spec.name)
        kind = (
            spec.prior if spec.prior in PRIOR_KINDS else (None if spec.prior else kind_of(solver))
        )
        for p in suite.problems:
            if (spec.problems is not None and p.name not in spec.problems) or (
                p.name not in d.operators
            ):
                continue
            reason = None
            source = _prior_source(suite, spec, p, kind)
            if source is None:
                reason = (
                    f"no {kind} prior: name one in the suite's [priors] {kind} "
                    "or the preset's [priors]"
                )
            else:
                key = _describe_prior(d, source, load_errors)
                if key is None:
                    continue
                reason = _mismatch(solver, d.infos[key], d.operators[p.name], p, source)
                if reason is None and spec.class_guidance is not None:
                    reason = _class_mismatch(d.infos[key], source)
            if reason is None:
                pair = Pair(p, spec, key)
                if spec.tuned:
                    _attach_tuned(d, pair, source)
                d.pairs.append(pair)
            elif suite.skip_incompatible:
                d.skipped.append({"problem": p.name, "solver": spec.label, "reason": reason})
            else:
                d.errors.append(f"solver {spec.label!r} on problem {p.name!r}: {reason}")


def _mismatch(solver: Any, info: Any, operator: Any, problem: Problem, source: str) -> str | None:
    try:
        solver.check(info.prior_type, operator, problem.noise)
    except SolverMismatchError as err:
        return str(err)
    if tuple(info.image_shape) != problem.in_shape:
        return (
            f"prior {source!r} models images of shape {tuple(info.image_shape)}, "
            f"the problem has {problem.in_shape}"
        )
    return degradation_mismatch(info.degradation, operator, repr(source))


def _class_mismatch(info: Any, source: str) -> str | None:
    if info.classes is None:
        return (
            f"class_guidance needs a class-conditional prior, and {source!r} takes no label "
            "(train one with `invdiff train pixel --class-conditional` or `--cross-attention`)"
        )
    return None


def _check_labels(d: _Draft, dataset: Any, indices: list[int]) -> None:
    """Pairs with ``class_guidance`` condition on the data set's labels: they must exist and
    name classes the prior knows."""
    from invdiff.data.base import ImageDataset

    guided = [pair for pair in d.pairs if pair.solver.class_guidance is not None]
    if not guided or not indices:
        return
    labels = dataset.labels if isinstance(dataset, ImageDataset) else None
    if labels is None:
        names = sorted({pair.solver.label for pair in guided})
        d.errors.append(
            f"{names}: class_guidance conditions on each image's label, and data set "
            f"{d.suite.data.get('dataset')!r} has none"
        )
        return
    top = int(labels[indices].max())
    for pair in guided:
        classes = d.infos[pair.prior_key].classes
        if top >= classes:
            d.errors.append(
                f"{pair.solver.label} on {pair.problem.name}: the data set has label {top}, "
                f"its prior knows classes 0..{classes - 1}"
            )


def _load_data(d: _Draft) -> tuple[Any, list[int]]:
    import invdiff.data

    suite = d.suite
    kwargs = {
        k: v for k, v in suite.data.items() if k not in ("dataset", "start", "count", "indices")
    }
    try:
        dataset = invdiff.data.get(suite.data["dataset"], **kwargs)
    except Exception as err:  # noqa: BLE001 - any loader failure is a suite problem
        earlier = "".join(f"\n  {e}" for e in d.errors)
        raise SuiteError(
            f"[data] cannot load data set {suite.data.get('dataset')!r} with {kwargs}: {err}"
            + earlier
        ) from err
    n = len(dataset)
    if "indices" in suite.data:
        indices = list(suite.data["indices"])
        bad = [i for i in indices if i >= n]
        if bad:
            d.errors.append(f"[data] indices {bad[:5]} out of range: the data set has {n} images")
    else:
        start = suite.data.get("start", 0)
        count = suite.data.get("count", "all")
        stop = n if count == "all" else start + count
        if stop > n or start >= n:
            d.errors.append(
                f"[data] start={start}, count={count} out of range: the data set has {n} images"
            )
        indices = list(range(start, min(stop, n)))
    limit = suite.overrides.get("limit")
    return dataset, (indices[:limit] if limit is not None else indices)


def _check_first_image(d: _Draft, first: Tensor, index: int) -> None:
    try:
        check_image(first, f"image {index} of {d.suite.data['dataset']!r}")
    except (TypeError, ValueError) as err:
        d.errors.append(str(err))
    for p in d.suite.problems:
        if tuple(first.shape[1:]) != p.in_shape:
            d.errors.append(
                f"problem {p.name!r} expects images of shape {p.in_shape} but data set "
                f"{d.suite.data['dataset']!r} gives {tuple(first.shape[1:])}"
            )


def _metric_fns(d: _Draft, n_images: int) -> dict[str, Any]:
    """The per-image metric functions of the suite, from the ``METRICS`` registry."""
    import invdiff.metrics

    suite = d.suite
    fns: dict[str, Any] = {}
    for m in suite.metrics:
        entry = METRICS.get(m)
        fns[m] = entry.fn if entry is not None else None
        if fns[m] is None:
            d.errors.append(f"metric {m!r} is not a per-image metric of invdiff.metrics.METRICS")
    if suite.distribution_metrics and n_images >= suite.min_images_distribution:
        try:  # the Inception weights ship in a package installed separately: check them first
            invdiff.metrics.inception_network(d.device)
        except Exception as err:  # noqa: BLE001 - missing weights, a broken install
            d.errors.append(f"distribution_metrics need the Inception network: {err}")
    return fns


def _probe_metrics(d: _Draft, fns: dict[str, Any], first: Tensor) -> None:
    """Each metric tried on a real image: one that cannot score these images (too small, wrong
    channels) fails here, not after the solving."""
    probe = first.to(d.device)
    for m, fn in fns.items():
        try:
            fn(probe, probe)
        except Exception as err:  # noqa: BLE001 - reported with the metric's name
            d.errors.append(
                f"metric {m!r} cannot score images of shape {tuple(probe.shape[1:])}: {err}"
            )


def _attach_tuned(d: _Draft, pair: Pair, source: str) -> None:
    """The tuned values of a ``tuned = true`` pair, from the suite's table."""
    from invdiff.bench.tuning import Budget, TunedTable, TuningError

    spec = pair.solver
    try:
        if d.tuned_table is None:
            d.tuned_table = TunedTable.load(d.suite.tuned_table)
        entry = d.tuned_table.lookup(
            spec.name, pair.problem.name, source, Budget(nfe=spec.nfe, steps=spec.steps)
        )
        SOLVERS.get(spec.name).hyperparameters({**entry.hyper, **spec.hyper_for(pair.problem.name)})
    except (TuningError, FileNotFoundError, ValueError) as err:
        d.errors.append(f"{spec.label} on {pair.problem.name}: {err}")
        return
    pair.tuned, pair.tuned_on = dict(entry.hyper), dict(entry.validation)


def _check_tuned_images(d: _Draft, indices: list[int]) -> None:
    """No test image of the suite may be one the tuned values were chosen on."""
    from invdiff.bench.tuning import official_indices

    data = d.suite.data
    tested = official_indices(data.get("dataset", ""), data.get("split", "test"), indices)
    for pair in d.pairs:
        if pair.tuned_on is None:
            continue
        v = pair.tuned_on
        if v.get("dataset") != data.get("dataset"):
            continue
        shared = tested & official_indices(v["dataset"], v["split"], v.get("indices", []))
        if shared:
            d.errors.append(
                f"{pair.solver.label} on {pair.problem.name}: its tuned values were chosen on "
                f"{len(shared)} of this suite's test images ({v['dataset']} {v['split']}); "
                "tune on the validation split (`invdiff tune --split val`) or test on other "
                "images"
            )


def _load_weights(d: _Draft) -> dict[str, Prior]:
    """The weights of the priors whose pairs run, once everything else holds."""
    from invdiff.priors import load as load_prior

    priors: dict[str, Prior] = {}
    for key in dict.fromkeys(pair.prior_key for pair in d.pairs):
        try:
            priors[key] = load_prior(key, device=d.device)
            priors[key].configure(**dataclasses.asdict(d.suite.network))
        except Exception as err:  # noqa: BLE001 - a broken weights file
            d.errors.append(f"cannot load prior {d.sources[key]!r}: {err}")
    return priors


def build(suite: Suite, kind_of: Callable[[Any], str], world: World | None = None) -> Plan:
    """Load data, operators and priors and check every pairing, before any solving.

    ``kind_of(solver)`` is the prior kind a solver runs on when the suite names none. All
    problems found are reported together in one ``SuiteError``.
    """
    d = _Draft(suite, resolve_device(suite.device, world))
    _build_operators(d)  # pairings need operators and the priors' JSON files only
    _pair_up(d, kind_of)
    before_data = len(d.errors)  # pairing problems, reported along with the data's
    dataset, indices = _load_data(d)
    _check_tuned_images(d, indices)
    _check_labels(d, dataset, indices)
    chunks = [indices[k : k + suite.batch_size] for k in range(0, len(indices), suite.batch_size)]
    first = None
    if indices and len(d.errors) == before_data:
        first = load_images(dataset, indices[:1])
        _check_first_image(d, first, indices[0])
    metric_fns = _metric_fns(d, len(indices))
    if first is not None and len(d.errors) == before_data:
        _probe_metrics(d, metric_fns, first)
    priors = _load_weights(d) if not d.errors else {}
    if not d.pairs and not d.errors:
        d.errors.append("no solver/problem pair can run (all were skipped as incompatible)")
    if d.errors:
        raise SuiteError(
            f"suite {suite.path or suite.name} cannot run ({len(d.errors)} problem(s)):\n  "
            + "\n  ".join(d.errors)
        )
    return Plan(
        suite,
        d.device,
        dataset,
        indices,
        chunks,
        d.operators,
        priors,
        d.folders,
        d.pairs,
        d.skipped,
        metric_fns,
    )


__all__ = ["Pair", "Plan", "WorkItem", "build", "load_images", "resolve_device"]
