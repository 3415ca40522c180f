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
    distribution_metrics = ["fid", "kid"]  # per (problem, solver), over the first seed's images
    min_images_distribution = 100        # FID/KID only with at least this many images
    figure_images = 4                    # images per figure grid (0: no figures)
    skip_incompatible = false            # true: leave out pairs the solver cannot run
    save_samples = true                  # keep reconstructions (uint8) for FID and figures
    problems = ["fmnist-sr4", "fmnist-box"]   # registered presets (invdiff list problems)
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
    steps = 50
    hyper = { zeta = 1.0 }               # the solver's hyperparameters (checked by name)
    problems = ["fmnist-sr4"]            # default: all problems of the suite
    prior = "pixel"                      # a kind (default: from the solver) or a prior
    [solvers.per_problem.fmnist-sr4]     # hyperparameters for one problem
    zeta = 0.5

    [[problem]]                          # an inline problem (the problems/*.toml schema + name)
    name = "tiny-box"
    ...

Parsing here is cheap and checks types and names; ``invdiff.bench.runner.prepare`` then loads
data, priors and operators and checks every solver/operator/prior pairing before any solving.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invdiff.io import check_name
from invdiff.metrics.registry import METRICS
from invdiff.priors.network import NetworkOptions
from invdiff.problems import PRIOR_KINDS, Problem, ProblemFileError
from invdiff.problems import get as get_problem
from invdiff.registry import SOLVERS, UnknownNameError

_TOP = {
    "name": str,
    "description": str,
    "device": str,
    "batch_size": int,
    "seeds": list,
    "metrics": list,
    "distribution_metrics": list,
    "min_images_distribution": int,
    "figure_images": int,
    "skip_incompatible": bool,
    "save_samples": bool,
    "problems": list,
    "data": dict,
    "priors": dict,
    "solvers": list,
    "problem": list,
    "requires": list,
    "precision": str,
    "compile": bool,
    "checkpointing": bool,
}
_SOLVER_KEYS = {"name", "label", "steps", "hyper", "per_problem", "problems", "prior"}


class SuiteError(ValueError):
    """A benchmark suite that cannot run; the message lists every problem found."""


@dataclass
class SolverSpec:
    """One solver entry of a suite."""

    label: str
    name: str
    steps: int
    hyper: dict[str, Any] = field(default_factory=dict)
    per_problem: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] | None = None
    prior: str | None = (
        None  # a kind in PRIOR_KINDS, a prior name/folder, or None (from the solver)
    )

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
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()


def _type_name(t: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        bool: "true/false",
        list: "a list",
        dict: "a table",
    }[t]


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
    """Check a parsed suite table and build a ``Suite``; all problems are reported at once."""
    errors: list[str] = []
    where = str(path) if path else name

    unknown = set(data) - set(_TOP)
    if unknown:
        errors.append(f"unknown key(s) {sorted(unknown)}; valid keys: {sorted(_TOP)}")
    for key, t in _TOP.items():
        if key in data:
            v = data[key]
            ok = isinstance(v, t) and not (t is int and isinstance(v, bool))
            if not ok:
                errors.append(f"{key} must be {_type_name(t)}, got {v!r}")
    if errors:
        raise SuiteError(f"suite {where}:\n  " + "\n  ".join(errors))

    suite = Suite(name=data.get("name", name), path=path, sha256=sha256)
    try:  # the default output folder is runs/bench/<name>
        check_name(suite.name, "suite name")
    except (TypeError, ValueError) as err:
        errors.append(str(err))
    suite.description = data.get("description", "")
    suite.device = device or data.get("device", "auto")
    try:
        suite.network = NetworkOptions(
            precision=precision or data.get("precision", "fp32"),
            compile=bool(compile) or data.get("compile", False),
            gradient_checkpointing=bool(checkpointing) or data.get("checkpointing", False),
        )
    except (TypeError, ValueError) as err:
        errors.append(str(err))
    suite.batch_size = data.get("batch_size", suite.batch_size)
    if suite.batch_size < 1:
        errors.append(f"batch_size must be >= 1, got {suite.batch_size}")
    suite.seeds = list(data.get("seeds", [0]))
    if not suite.seeds or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in suite.seeds
    ):
        errors.append(f"seeds must be a non-empty list of integers >= 0, got {suite.seeds!r}")
    elif len(set(suite.seeds)) != len(suite.seeds):
        errors.append(f"seeds must not repeat, got {suite.seeds!r}")
    suite.metrics = list(data.get("metrics", METRICS.defaults()))
    bad = [m for m in suite.metrics if m not in METRICS.names("image")]
    if bad:
        errors.append(f"metrics {bad} unknown; valid per-image metrics: {METRICS.names('image')}")
    suite.distribution_metrics = list(data.get("distribution_metrics", []))
    bad = [m for m in suite.distribution_metrics if m not in METRICS.names("distribution")]
    if bad:
        errors.append(f"distribution_metrics {bad} unknown; valid: {METRICS.names('distribution')}")
    suite.min_images_distribution = data.get(
        "min_images_distribution", suite.min_images_distribution
    )
    if suite.min_images_distribution < 2:
        errors.append(f"min_images_distribution must be >= 2, got {suite.min_images_distribution}")
    suite.figure_images = data.get("figure_images", suite.figure_images)
    if suite.figure_images < 0:
        errors.append(f"figure_images must be >= 0, got {suite.figure_images}")
    suite.skip_incompatible = data.get("skip_incompatible", False)
    suite.save_samples = data.get("save_samples", True)
    if suite.distribution_metrics and not suite.save_samples:
        errors.append(
            "distribution_metrics need save_samples = true (FID/KID read the saved samples)"
        )

    # problems: registered presets plus inline [[problem]] tables
    problems: list[Problem] = []
    for pname in data.get("problems", []):
        if not isinstance(pname, str):
            errors.append(f"problems must list problem names (strings), got {pname!r}")
            continue
        try:
            problems.append(get_problem(pname))
        except (UnknownNameError, ProblemFileError, FileNotFoundError) as err:
            errors.append(str(err))
    for i, table in enumerate(data.get("problem", [])):
        if not isinstance(table, Mapping) or not isinstance(table.get("name"), str):
            errors.append(f"[[problem]] #{i + 1} must be a table with a name")
            continue
        body = {k: v for k, v in table.items() if k != "name"}
        try:
            problems.append(Problem.from_dict(table["name"], body, source=f"{where} [[problem]]"))
        except ProblemFileError as err:
            errors.append(str(err))
    seen: set[str] = set()
    for p in problems:
        try:  # results and figures are stored under the problem's name
            check_name(p.name, "problem name")
        except (TypeError, ValueError) as err:
            errors.append(str(err))
        if p.name in seen:
            errors.append(f"problem {p.name!r} is listed twice")
        seen.add(p.name)
    if not problems and not errors:
        errors.append("the suite names no problems (problems = [...] or [[problem]] tables)")

    # command-line overrides the suite cannot run without (e.g. a data set that is not shipped)
    needs = data.get("requires", [])
    bad = [r for r in needs if r not in ("data", "prior")]
    if bad:
        errors.append(f"requires {bad} unknown; valid: ['data', 'prior']")
    if "data" in needs and data_dir is None:
        errors.append("this suite needs --data DIR (a folder of images; none ship with invdiff)")
    if "prior" in needs and prior_dir is None:
        errors.append("this suite needs --prior DIR (a diffusers DDPM folder: unet/ + scheduler/)")

    # data
    suite.data = dict(data.get("data", {}))
    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_dir():
            errors.append(f"--data {folder}: not a folder of images")
        suite.data = {k: v for k, v in suite.data.items() if k in ("start", "count", "indices")}
        suite.data.update(dataset="image_folder", root=str(folder))
        sizes, channels = {p.image_size for p in problems}, {p.channels for p in problems}
        if len(sizes) == 1 and len(channels) == 1:
            suite.data.update(size=sizes.pop(), channels=channels.pop())
        else:
            errors.append(
                "--data needs all problems of the suite at one image size and channel count"
            )
        suite.overrides["data"] = str(folder)
    ds = suite.data.get("dataset")
    if ds is None:
        names = {p.dataset for p in problems}
        if len(names) > 1:
            errors.append(
                f"the problems use different data sets {sorted(names)}; name one in [data] dataset"
            )
        elif names:
            suite.data["dataset"] = names.pop()
    elif not isinstance(ds, str):
        errors.append(f"[data] dataset must be a data set name, got {ds!r}")
    if "indices" in suite.data and ("start" in suite.data or "count" in suite.data):
        errors.append("[data] gives either indices = [...] or start/count, not both")
    idx = suite.data.get("indices")
    if idx is not None and (
        not isinstance(idx, list)
        or not idx
        or not all(isinstance(i, int) and i >= 0 for i in idx)
        or len(set(idx)) != len(idx)
    ):
        errors.append(
            f"[data] indices must be a non-empty list of distinct integers >= 0, got {idx!r}"
        )
    count = suite.data.get("count", "all")
    if not (
        count == "all" or (isinstance(count, int) and not isinstance(count, bool) and count >= 1)
    ):
        errors.append(f'[data] count must be a positive integer or "all", got {count!r}')
    start = suite.data.get("start", 0)
    if not isinstance(start, int) or start < 0:
        errors.append(f"[data] start must be an integer >= 0, got {start!r}")
    if limit is not None:
        if limit < 1:
            errors.append(f"--limit must be >= 1, got {limit}")
        suite.overrides["limit"] = limit
    if data_dir is not None:
        problems = [p.with_changes(dataset="image_folder") for p in problems]
    suite.problems = problems

    # priors
    suite.priors = dict(data.get("priors", {}))
    bad = set(suite.priors) - set(PRIOR_KINDS)
    if bad:
        errors.append(f"[priors] unknown kind(s) {sorted(bad)}; valid kinds: {list(PRIOR_KINDS)}")
    for kind, value in suite.priors.items():
        if isinstance(value, Mapping):
            extra = set(value) - {p.name for p in problems}
            if extra:
                errors.append(
                    f"[priors] {kind} names problem(s) {sorted(extra)} that are not in the suite"
                )
            if not all(isinstance(v, str) for v in value.values()):
                errors.append(f"[priors] {kind} must map problem names to prior names/folders")
        elif not isinstance(value, str):
            errors.append(
                f"[priors] {kind} must be a prior name/folder or a table problem -> prior, "
                f"got {value!r}"
            )
    if prior_dir is not None:
        if not Path(prior_dir).exists():
            errors.append(f"--prior {prior_dir}: no such folder")
        suite.priors["pixel"] = str(prior_dir)
        suite.overrides["prior"] = str(prior_dir)

    # solvers
    labels: set[str] = set()
    problem_names = {p.name for p in problems}
    for i, entry in enumerate(data.get("solvers", [])):
        tag = f"[[solvers]] #{i + 1}"
        if not isinstance(entry, Mapping):
            errors.append(f"{tag} must be a table")
            continue
        extra = set(entry) - _SOLVER_KEYS
        if extra:
            errors.append(f"{tag}: unknown key(s) {sorted(extra)}; valid: {sorted(_SOLVER_KEYS)}")
        sname = entry.get("name")
        if not isinstance(sname, str):
            errors.append(f"{tag}: name must be a registered solver name")
            continue
        tag = f"[[solvers]] {entry.get('label', sname)!r}"
        if sname not in SOLVERS:
            errors.append(f"{tag}: unknown solver {sname!r}; valid: {', '.join(SOLVERS.names())}")
            continue
        steps = entry.get("steps")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            errors.append(f"{tag}: steps must be a positive integer, got {steps!r}")
            continue
        label = entry.get("label", sname)
        if not isinstance(label, str) or not label or label in labels:
            errors.append(
                f"{tag}: label {label!r} must be a unique non-empty string "
                "(two entries of one solver need labels)"
            )
            continue
        try:  # samples are stored in a folder named by the label
            check_name(label, f"{tag}: label")
        except ValueError as err:
            errors.append(str(err))
            continue
        labels.add(label)
        hyper = entry.get("hyper", {})
        per_problem = entry.get("per_problem", {})
        if not isinstance(hyper, Mapping) or not isinstance(per_problem, Mapping):
            errors.append(f"{tag}: hyper and per_problem must be tables")
            continue
        extra = set(per_problem) - problem_names
        if extra:
            errors.append(
                f"{tag}: per_problem names problem(s) {sorted(extra)} that are not in the suite"
            )
        solver = SOLVERS.get(sname)
        for hp in [hyper, *per_problem.values()]:
            try:
                solver.hyperparameters(dict(hp))
            except (TypeError, ValueError) as err:
                errors.append(f"{tag}: {err}")
                continue
            for key, value in hp.items():
                default = solver.defaults.get(key)
                number = isinstance(default, int | float) and not isinstance(default, bool)
                if number and (isinstance(value, bool) or not isinstance(value, int | float)):
                    errors.append(
                        f"{tag}: hyperparameter {key} must be a number (default {default!r}), "
                        f"got {value!r}"
                    )
                elif isinstance(default, bool) and not isinstance(value, bool):
                    errors.append(f"{tag}: hyperparameter {key} must be true/false, got {value!r}")
        only = entry.get("problems")
        if only is not None:
            if not isinstance(only, list) or not all(isinstance(p, str) for p in only):
                errors.append(f"{tag}: problems must be a list of problem names")
                only = None
            elif set(only) - problem_names:
                errors.append(
                    f"{tag}: problems {sorted(set(only) - problem_names)} are not in the suite"
                )
        prior = entry.get("prior")
        if prior is not None and (not isinstance(prior, str) or not prior):
            errors.append(f"{tag}: prior must be a kind {list(PRIOR_KINDS)} or a prior name/folder")
        suite.solvers.append(
            SolverSpec(
                label,
                sname,
                steps,
                dict(hyper),
                {k: dict(v) for k, v in per_problem.items()},
                only,
                prior,
            )
        )
    if not data.get("solvers") and not errors:
        errors.append("the suite names no solvers ([[solvers]] tables)")

    if errors:
        raise SuiteError(f"suite {where} has {len(errors)} problem(s):\n  " + "\n  ".join(errors))
    return suite


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
