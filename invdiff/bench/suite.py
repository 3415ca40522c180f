"""Benchmark suites: a TOML file naming data, problems, solvers, priors, metrics and seeds.

::

    name = "quick"                       # default: the file stem
    description = "..."
    device = "auto"                      # auto (cuda when available), cpu, cuda, cuda:1
    precision = "fp32"                   # fp32 or bf16 (autocast around the prior's network)
    compile = false                      # torch.compile the prior's network
    checkpointing = false                # gradient checkpointing of the prior's network
    batch_size = 4                       # images solved together
    seeds = [0]                          # one row per (image, problem, solver, seed)
    metrics = ["psnr", "ssim", "lpips"]  # per image
    posterior_samples = 1                # K draws per image (>= 2: posterior metrics, std maps)
    posterior_metrics = ["psnr_mean", "coverage90"]  # default with K >= 2: all of them
    distribution_metrics = ["fid", "kid"]  # per (problem, solver), over the first seed's images
    min_images_distribution = 100        # FID/KID only with at least this many images
    figure_images = 4                    # images per figure grid (0: no figures)
    skip_incompatible = false            # true: leave out pairs the solver cannot run
    save_samples = true                  # keep reconstructions (uint8) for FID and figures
    problems = ["fmnist-sr4", "fmnist-box-noiseless"]   # presets and their noise variants
    requires = ["data", "prior"]         # command-line options this suite cannot run without

    [data]                               # the images; other keys go to invdiff.data.get
    dataset = "fashion_mnist"            # default: the problems' data set
    split = "test"
    start = 0                            # indices start, start+1, ... (count = "all" for all)
    count = 8                            # or: indices = [0, 5, 9]

    [priors]                             # per solver kind: one prior, or a table problem -> prior
    pixel = "fmnist32-pixel"
    sr3 = { fmnist-sr4 = "fmnist32-sr3-x4" }

    [[solvers]]
    name = "dps"                         # a registered solver
    label = "dps-50"                     # default: the name; rows are keyed by the label
    steps = 50                           # the solver's own steps, or:
    # nfe = [20, 100]                    # network evaluations (each solver converts them to
                                         # its steps); a list sweeps: labels dps-nfe20, ...
    hyper = { zeta = 1.0 }               # the solver's hyperparameters (checked by the solver)
    problems = ["fmnist-sr4"]            # default: all problems of the suite
    prior = "pixel"                      # a kind (default: from the solver) or a prior
    class_guidance = 3.0                 # a class-conditional prior given each image's label
                                         # (the data set's), guided with this weight
    [solvers.per_problem.fmnist-sr4]     # hyperparameters for one problem
    zeta = 0.5

    [[problem]]                          # an inline problem (the problems/*.toml schema + name)
    name = "tiny-box"
    ...

The layout is ``SUITE_SCHEMA`` (``invdiff.schema``, shared with the problem files): an error
names the file, the key as a dotted path (``solvers[2].hyper``), the value and what is valid,
and every error found is reported at once. Parsing loads no data and no prior: it checks the
layout, the names, each solver's hyperparameters (``Solver.hyperparameters``, with the
per-problem ones merged in) and, unless ``skip_incompatible``, each (solver, problem) pair
against the operator and the noise (``Solver.check``). ``invdiff.bench.runner.prepare`` then
loads data, priors and operators and checks the pairs again with the priors' classes and
shapes before any solving.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invdiff import schema
from invdiff.io import check_name
from invdiff.metrics.registry import METRICS
from invdiff.priors.network import NetworkOptions
from invdiff.problems import PRIOR_KINDS, Problem, ProblemFileError
from invdiff.problems import get as get_problem
from invdiff.registry import SOLVERS, UnknownNameError
from invdiff.schema import Key, Table
from invdiff.solvers.hyper import HyperparameterError


class SuiteError(schema.FileError):
    """A benchmark suite that cannot run; the message lists every problem found."""


#: one ``[[solvers]]`` entry
SOLVER_SCHEMA = Table(
    {
        "name": Key(str, required=True, choices=SOLVERS.names, noun="solver"),
        "label": Key(str, nonempty=True),
        "steps": Key(int, low=1, desc="a positive integer"),
        # a budget in network evaluations, or a list of them (a sweep: one entry per budget)
        "nfe": Key((int, list), desc="a positive integer or a list of them"),
        "hyper": Key(dict, default=dict),
        "per_problem": Key(dict, default=dict, values=Key(dict)),
        "problems": Key(list, item=Key(str)),
        "prior": Key(str, nonempty=True, desc="a kind (pixel, sr3, latent) or a prior name"),
        # run with the values `invdiff tune` chose (the suite's tuned_table) under hyper's
        "tuned": Key(bool, default=False),
        # a class-conditional prior given each image's class (the data set's labels), with
        # classifier-free guidance of this weight
        "class_guidance": Key(float, low=0.0, desc="a guidance weight >= 0"),
    }
)
#: ``[data]``: other keys go to ``invdiff.data.get``
DATA_SCHEMA = Table(
    {
        "dataset": Key(str, nonempty=True),
        "start": Key(int, low=0),
        "count": Key((int, str), desc='a positive integer or "all"'),
        "indices": Key(list, item=Key(int, low=0), unique=True, nonempty=True),
    },
    extra=True,
)
#: a suite file (see the module docstring)
SUITE_SCHEMA = Table(
    {
        "name": Key(str),
        "description": Key(str, default=""),
        "device": Key(str, default="auto"),
        "precision": Key(str),
        "compile": Key(bool),
        "checkpointing": Key(bool),
        "batch_size": Key(int, default=8, low=1),
        "seeds": Key(list, default=lambda: [0], item=Key(int, low=0), unique=True, nonempty=True),
        "metrics": Key(
            list,
            default=METRICS.defaults,
            item=Key(str, choices=lambda: METRICS.names("image"), noun="per-image metric"),
        ),
        "distribution_metrics": Key(
            list,
            default=list,
            item=Key(
                str, choices=lambda: METRICS.names("distribution"), noun="distribution metric"
            ),
        ),
        "min_images_distribution": Key(int, default=100, low=2),
        "posterior_samples": Key(int, default=1, low=1),
        "tuned_table": Key(str, nonempty=True),
        "posterior_metrics": Key(
            list,
            item=Key(str, choices=lambda: METRICS.names("posterior"), noun="posterior metric"),
        ),
        "figure_images": Key(int, default=4, low=0),
        "skip_incompatible": Key(bool, default=False),
        "save_samples": Key(bool, default=True),
        "problems": Key(list, default=list, item=Key(str)),
        "problem": Key(list, default=list, item=Key(dict)),  # problems/*.toml tables + name
        "requires": Key(list, default=list, item=Key(str, choices=("data", "prior"))),
        "data": Key(dict, default=dict, table=DATA_SCHEMA),
        "priors": Key(
            dict,
            default=dict,
            table=Table(
                {k: Key((str, dict), values=Key(str, nonempty=True)) for k in PRIOR_KINDS},
                noun="kind",
            ),
        ),
        "solvers": Key(list, default=list, item=Key(dict, table=SOLVER_SCHEMA)),
    }
)


@dataclass
class SolverSpec:
    """One solver entry of a suite."""

    label: str
    name: str
    #: the solver's own steps; None when the budget is ``nfe``
    steps: int | None
    hyper: dict[str, Any] = field(default_factory=dict)
    per_problem: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] | None = None
    prior: str | None = (
        None  # a kind in PRIOR_KINDS, a prior name/folder, or None (from the solver)
    )
    #: the budget in network evaluations (``Solver.steps_for_nfe`` gives the steps)
    nfe: int | None = None
    #: run with the suite's tuned values (``invdiff.bench.tuning``), ``hyper`` on top
    tuned: bool = False
    #: condition a class-conditional prior on each image's label (the data set's), with
    #: classifier-free guidance ``w = class_guidance``; None: the prior as it is
    class_guidance: float | None = None

    def hyper_for(self, problem: str) -> dict[str, Any]:
        return {**self.hyper, **self.per_problem.get(problem, {})}


@dataclass
class Suite:
    """A parsed benchmark suite (see the module docstring for the file format)."""

    name: str
    path: Path | None
    sha256: str
    description: str = ""
    device: str = "auto"
    batch_size: int = 8
    seeds: list[int] = field(default_factory=lambda: [0])
    metrics: list[str] = field(default_factory=METRICS.defaults)
    distribution_metrics: list[str] = field(default_factory=list)
    min_images_distribution: int = 100
    #: K posterior samples per image; the per-image metrics score the first
    posterior_samples: int = 1
    #: scored on the K samples of each image (``invdiff.metrics.posterior``)
    posterior_metrics: list[str] = field(default_factory=list)
    #: the table of tuned values the ``tuned = true`` entries read (``invdiff tune``)
    tuned_table: Path | None = None
    figure_images: int = 4
    skip_incompatible: bool = False
    save_samples: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    priors: dict[str, Any] = field(default_factory=dict)
    solvers: list[SolverSpec] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    #: how the priors' networks are evaluated (``invdiff.priors.network.NetworkOptions``)
    network: NetworkOptions = field(default_factory=NetworkOptions)

    @property
    def scored(self) -> list[str]:
        """Every metric a row carries: the per-image ones, then the posterior ones."""
        return [*self.metrics, *self.posterior_metrics]

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()


def parse(
    data: Mapping[str, Any],
    *,
    name: str = "suite",
    path: Path | None = None,
    sha256: str = "",
    data_dir: str | Path | None = None,
    prior_dir: str | Path | None = None,
    limit: int | None = None,
    device: str | None = None,
    precision: str | None = None,
    compile: bool | None = None,  # noqa: A002 - the torch name users know
    checkpointing: bool | None = None,
) -> Suite:
    """Check a parsed suite table and build a ``Suite``; all problems are reported at once.

    Everything that needs no data and no prior weights is checked here: the layout
    (``SUITE_SCHEMA``), the names, every solver's hyperparameters (``Solver.hyperparameters``)
    and, unless ``skip_incompatible``, every (solver, problem) pairing against the operator and
    the noise (``Solver.check``).
    """
    where = f"suite {path or name}"
    errors: list[str] = []
    v = schema.check(data, SUITE_SCHEMA, errors)
    if errors:  # the checks below rely on the types
        raise schema.fail(SuiteError, where, errors)

    suite = Suite(
        name=v.get("name", name),
        path=path,
        sha256=sha256,
        description=v["description"],
        device=device or v["device"],
        batch_size=v["batch_size"],
        seeds=list(v["seeds"]),
        metrics=list(v["metrics"]),
        distribution_metrics=list(v["distribution_metrics"]),
        min_images_distribution=v["min_images_distribution"],
        posterior_samples=v["posterior_samples"],
        posterior_metrics=list(
            v.get(
                "posterior_metrics",
                METRICS.names("posterior") if v["posterior_samples"] > 1 else [],
            )
        ),
        figure_images=v["figure_images"],
        skip_incompatible=v["skip_incompatible"],
        save_samples=v["save_samples"],
    )
    _try(errors, check_name, suite.name, "suite name")  # runs/bench/<name> by default
    try:
        suite.network = NetworkOptions(
            precision=precision or v.get("precision", "fp32"),
            compile=bool(compile) or v.get("compile", False),
            gradient_checkpointing=bool(checkpointing) or v.get("checkpointing", False),
        )
    except (TypeError, ValueError) as err:
        errors.append(str(err))
    if "tuned_table" in v:
        table = Path(v["tuned_table"]).expanduser()
        suite.tuned_table = table if table.is_absolute() else suite.base_dir / table
    if suite.posterior_metrics and suite.posterior_samples < 2:
        errors.append(
            f"posterior_metrics {suite.posterior_metrics} need posterior_samples >= 2 (K draws "
            f"per image), got {suite.posterior_samples}"
        )
    if suite.distribution_metrics and not suite.save_samples:
        errors.append(
            "distribution_metrics need save_samples = true (FID/KID read the saved samples)"
        )
    problems = _problems(v, where, errors)
    if "data" in v["requires"] and data_dir is None:
        errors.append("this suite needs --data DIR (a folder of images; none ship with invdiff)")
    if "prior" in v["requires"] and prior_dir is None:
        errors.append("this suite needs --prior DIR (a diffusers DDPM folder: unet/ + scheduler/)")
    if limit is not None:
        if limit < 1:
            errors.append(f"--limit must be >= 1, got {limit}")
        suite.overrides["limit"] = limit
    suite.data = _data(v["data"], problems, data_dir, suite.overrides, errors)
    if data_dir is not None:
        problems = [p.with_changes(dataset="image_folder") for p in problems]
    suite.problems = problems
    suite.priors = _priors(v["priors"], {p.name for p in problems}, errors)
    if prior_dir is not None:  # --prior DIR replaces the pixel prior
        if not Path(prior_dir).exists():
            errors.append(f"--prior {prior_dir}: no such folder")
        suite.priors["pixel"] = suite.overrides["prior"] = str(prior_dir)
    suite.solvers = _solvers(v["solvers"], problems, errors)
    tuned = [s.label for s in suite.solvers if s.tuned]
    if tuned and suite.tuned_table is None:
        errors.append(
            f"solvers {tuned} ask for tuned values (tuned = true): name the table in "
            "tuned_table = FILE (written by `invdiff tune`)"
        )
    if not v["solvers"] and not errors:
        errors.append("the suite names no solvers ([[solvers]] tables)")
    if not suite.skip_incompatible and not errors:
        _check_pairs(suite, errors)
    if errors:
        raise schema.fail(SuiteError, where, errors)
    return suite


def _try(errors: list[str], check: Any, *args: Any) -> bool:
    try:
        check(*args)
    except (TypeError, ValueError) as err:
        errors.append(str(err))
        return False
    return True


def _problems(v: Mapping[str, Any], where: str, errors: list[str]) -> list[Problem]:
    """The registered presets named in ``problems`` plus the inline ``[[problem]]`` tables."""
    problems: list[Problem] = []
    for i, pname in enumerate(v["problems"]):
        try:
            problems.append(get_problem(pname))
        except (UnknownNameError, ProblemFileError, FileNotFoundError) as err:
            errors.append(f"problems[{i}]: {err}")
    for i, table in enumerate(v["problem"]):
        if not isinstance(table.get("name"), str):
            errors.append(f"problem[{i}].name: missing key (an inline problem needs a name)")
            continue
        body = {k: val for k, val in table.items() if k != "name"}
        try:
            problems.append(Problem.from_dict(table["name"], body, source=f"{where} problem[{i}]"))
        except ProblemFileError as err:
            errors.append(str(err))
    seen: set[str] = set()
    for p in problems:
        _try(errors, check_name, p.name, "problem name")  # results are stored under it
        if p.name in seen:
            errors.append(f"problem {p.name!r} is listed twice")
        seen.add(p.name)
    if not problems and not errors:
        errors.append("the suite names no problems (problems = [...] or [[problem]] tables)")
    return problems


def _data(
    table: Mapping[str, Any],
    problems: list[Problem],
    data_dir: str | Path | None,
    overrides: dict[str, Any],
    errors: list[str],
) -> dict[str, Any]:
    """``[data]``, with ``--data DIR`` replacing the data set by a folder of images."""
    data = dict(table)
    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_dir():
            errors.append(f"--data {folder}: not a folder of images")
        data = {k: val for k, val in data.items() if k in ("start", "count", "indices")}
        data.update(dataset="image_folder", root=str(folder))
        sizes, channels = {p.image_size for p in problems}, {p.channels for p in problems}
        if len(sizes) == 1 and len(channels) == 1:
            data.update(size=sizes.pop(), channels=channels.pop())
        else:
            errors.append(
                "--data needs all problems of the suite at one image size and channel count"
            )
        overrides["data"] = str(folder)
    if "dataset" not in data:
        names = {p.dataset for p in problems}
        if len(names) > 1:
            errors.append(
                f"the problems use different data sets {sorted(names)}; name one in [data] dataset"
            )
        elif names:
            data["dataset"] = names.pop()
    if "indices" in data and ("start" in data or "count" in data):
        errors.append("data: give either indices = [...] or start/count, not both")
    count = data.get("count", "all")
    if count != "all" and not (isinstance(count, int) and count >= 1):
        errors.append(f'data.count must be a positive integer or "all", got {count!r}')
    return data


def _priors(table: Mapping[str, Any], names: set[str], errors: list[str]) -> dict[str, Any]:
    """``[priors]``: per kind one prior, or a table problem -> prior."""
    priors = {k: (dict(val) if isinstance(val, Mapping) else val) for k, val in table.items()}
    for kind, value in priors.items():
        extra = set(value) - names if isinstance(value, dict) else set()
        if extra:
            errors.append(f"priors.{kind} names problem(s) {sorted(extra)} not in the suite")
    return priors


def _solvers(
    entries: list[Mapping[str, Any]], problems: list[Problem], errors: list[str]
) -> list[SolverSpec]:
    """The ``[[solvers]]`` entries, their hyperparameters checked by the solvers themselves."""
    specs: list[SolverSpec] = []
    labels: set[str] = set()
    names = {p.name for p in problems}
    for i, entry in enumerate(entries):
        tag = f"solvers[{i}]"
        label = entry.get("label", entry["name"])
        if label in labels:
            errors.append(
                f"{tag}.label = {label!r} must be unique (two entries of one solver need labels)"
            )
            continue
        if not _try(errors, check_name, label, f"{tag}.label"):  # samples/<label>/
            continue
        labels.add(label)
        for key in ("per_problem", "problems"):
            extra = set(entry.get(key) or ()) - names
            if extra:
                errors.append(f"{tag}.{key}: problem(s) {sorted(extra)} are not in the suite")
        solver = SOLVERS.get(entry["name"])
        # the hyperparameters each problem runs with, named as the file writes them
        checks = [(f"{tag}.hyper", entry["hyper"])] + [
            (f"{tag}.per_problem.{p}", {**entry["hyper"], **hp})
            for p, hp in entry["per_problem"].items()
        ]
        valid = []  # the settings whose hyperparameters hold: their budgets are checked next
        for key, hyper in checks:
            try:
                solver.hyperparameters(dict(hyper))
            except HyperparameterError as err:
                where, value = (f"{key}.{err.key}", hyper[err.key]) if err.key else (key, hyper)
                errors.append(f"{where} = {value!r} ({label}): {err}")
            else:
                valid.append((key, hyper))
        for budget_label, steps, nfe in _budgets(entry, tag, label, valid, solver, errors):
            specs.append(
                SolverSpec(
                    budget_label,
                    entry["name"],
                    steps,
                    dict(entry["hyper"]),
                    {k: dict(hp) for k, hp in entry["per_problem"].items()},
                    entry.get("problems"),
                    entry.get("prior"),
                    nfe,
                    entry["tuned"],
                    entry.get("class_guidance"),
                )
            )
    return specs


def _budgets(
    entry: Mapping[str, Any],
    tag: str,
    label: str,
    checks: list[tuple[str, dict[str, Any]]],
    solver: Any,
    errors: list[str],
) -> list[tuple[str, int | None, int | None]]:
    """``(label, steps, nfe)`` per budget of one entry: its ``steps``, or each of its ``nfe``
    (a list sweeps, labelled ``LABEL-nfeN``). Each budget must buy at least one step of the
    solver with every problem's valid hyperparameters (checked here, before anything loads)."""
    if ("steps" in entry) == ("nfe" in entry):
        errors.append(
            f"{tag} ({label}): give steps (the solver's own unit) or nfe (network "
            "evaluations), exactly one of them"
        )
        return []
    if "steps" in entry:
        return [(label, entry["steps"], None)]
    sweep = isinstance(entry["nfe"], list)
    values = entry["nfe"] if sweep else [entry["nfe"]]
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad or not values or len(set(values)) != len(values):
        errors.append(
            f"{tag}.nfe = {entry['nfe']!r} ({label}): a positive integer or a list of "
            "distinct positive integers"
        )
        return []
    for nfe in values:
        for key, hyper in checks:
            try:
                solver.steps_for_nfe(nfe, **hyper)
            except ValueError as err:
                errors.append(f"{tag}.nfe = {nfe} ({label}, {key}): {err}")
                break
    return [(f"{label}-nfe{n}" if sweep else label, None, n) for n in values]


def _check_pairs(suite: Suite, errors: list[str]) -> None:
    """Every (solver, problem) pair against the solver's declared operator and noise needs,
    on the operators alone (no data, no prior weights); ``prepare`` repeats it with the
    priors' actual classes and shapes."""
    from invdiff.solvers.base import SolverMismatchError

    for i, spec in enumerate(suite.solvers):
        solver = SOLVERS.get(spec.name)
        for p in suite.problems:
            if spec.problems is not None and p.name not in spec.problems:
                continue
            try:
                operator = p.operator()
            except Exception as err:  # noqa: BLE001 - reported with the problem's name
                errors.append(
                    f"problem {p.name!r}: cannot build operator {p.operator_name!r}: {err}"
                )
                return
            try:
                solver.check(solver.requires_prior, operator, p.noise)
            except SolverMismatchError as err:
                errors.append(
                    f"solvers[{i}] ({spec.label}) on problem {p.name!r} ({p.noise!r}): {err}; "
                    "leave the pair out (problems = [...]) or set skip_incompatible = true"
                )


def load(path: str | Path, **overrides: Any) -> Suite:
    """Read and check a suite file (overrides: data_dir, prior_dir, limit, device, precision,
    compile, checkpointing)."""
    path = Path(path)
    if not path.is_file():
        from invdiff.paths import benchmarks_dir

        for c in (benchmarks_dir() / path.name, benchmarks_dir() / f"{path.name}.toml"):
            if c.is_file():
                path = c
                break
        else:
            raise FileNotFoundError(f"suite file not found: {path} (nor in {benchmarks_dir()})")
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise SuiteError(f"suite {path} is not valid TOML: {err}") from None
    return parse(
        data,
        name=path.stem,
        path=path.resolve(),
        sha256=hashlib.sha256(raw).hexdigest(),
        **overrides,
    )
