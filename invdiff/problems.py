"""Named problem presets: operator + parameters + noise + data set + size (``problems/*.toml``).

A problem is everything about an inverse problem except the solver and the prior weights::

    prob = invdiff.problems.get("fmnist-sr4")
    op = prob.operator()                      # the registered operator, built for prob's image size
    y = prob.measure(x, index=[0, 1, 2])      # A(x) + noise, reproducible per image index

Presets are TOML files in ``problems/`` (one problem per file, the file stem is its name;
``invdiff.paths.problems_dir``: the checkout's folder, or the copy inside an installed wheel)
and refer to registry names only (operators, data sets, zoo priors). The layout is
``PROBLEM_SCHEMA`` (``invdiff.schema``)::

    description = "4x super-resolution (average pooling)"
    dataset = "fashion_mnist"
    image_size = 32
    channels = 1

    [operator]                # a registered operator and its factory's keyword arguments
    name = "super_resolution"
    factor = 4
    # bank = "..."; index = 0 # a fixed entry of a versioned operator bank (masks, kernels)

    [noise]
    name = "gaussian"         # gaussian (sigma, in the [-1, 1] range) or poisson (rate)
    sigma = 0.05

    [noise_variants]          # derived presets <name>-<variant> at other noise levels
    noiseless = { sigma = 0.0 }   # fmnist-sr4-noiseless: same operator, data, priors

    [priors]                  # default prior per solver kind: pixel, sr3, latent
    pixel = "fmnist32-pixel"

The noise level is a parameter: ``prob.with_noise(sigma=0.1)`` is the same problem at another
level, and a variant keeps its own name (hence its own measurement seeds).

Reproducible measurements: the noise of image ``i`` is drawn on the CPU from a generator
seeded by a hash of ``(problem name, i, seed)``, so image ``i`` gets the same ``y`` in every
run, every batch composition, every shard of a distributed run and on every device.
"""

from __future__ import annotations

import hashlib
import inspect
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from invdiff import schema
from invdiff.noise import Gaussian, Noise, Poisson
from invdiff.operators.base import Operator
from invdiff.paths import problems_dir
from invdiff.priors.kinds import folder_kinds
from invdiff.registry import DATASETS, OPERATORS, PROBLEMS, UnknownNameError

#: noise model names usable in a preset's ``[noise]`` table
NOISE_MODELS: dict[str, type[Noise]] = {"gaussian": Gaussian, "poisson": Poisson}
#: solver kinds that a preset can name a default prior for
PRIOR_KINDS: tuple[str, ...] = folder_kinds()

#: the layout of a problem file (``invdiff.schema``); operator and noise parameters are
#: checked against the factory's signature and the noise model afterwards
PROBLEM_SCHEMA = schema.Table(
    {
        "description": schema.Key(str, default=""),
        "dataset": schema.Key(str, required=True, choices=DATASETS.names, noun="data set"),
        "image_size": schema.Key(int, required=True, low=1, high=4096),
        "channels": schema.Key(int, default=1, choices=(1, 3)),
        "operator": schema.Key(
            dict,
            required=True,
            table=schema.Table(
                {
                    "name": schema.Key(
                        str, required=True, choices=OPERATORS.names, noun="operator"
                    ),
                    "bank": schema.Key(str, nonempty=True),
                    "index": schema.Key(int, low=0),
                },
                extra=True,
            ),
        ),
        "noise": schema.Key(
            dict,
            required=True,
            table=schema.Table(
                {
                    "name": schema.Key(
                        str, required=True, choices=lambda: list(NOISE_MODELS), noun="noise model"
                    )
                },
                extra=True,
            ),
        ),
        # derived presets <name>-<variant>: the same problem at another noise level
        "noise_variants": schema.Key(dict, values=schema.Key(dict)),
        "priors": schema.Key(
            dict,
            table=schema.Table(
                {kind: schema.Key(str, nonempty=True) for kind in PRIOR_KINDS}, noun="kind"
            ),
        ),
    }
)


class ProblemFileError(schema.FileError):
    """A problem preset (TOML file or table) with a missing, unknown or invalid entry."""


def measurement_seed(problem: str, index: int, seed: int = 0) -> int:
    """A 63-bit seed from ``(problem, image index, seed)`` by SHA-256 (stable across runs)."""
    digest = hashlib.sha256(f"{problem}\x00{int(index)}\x00{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass
class Problem:
    """An inverse problem preset: a registered operator with parameters, a noise model, a data set.

    ``operator_params`` are the operator factory's keyword arguments (besides ``in_shape``,
    which comes from ``channels`` and ``image_size``); ``bank``/``bank_index`` name a fixed
    entry of an operator bank (passed to the factory as ``bank=``, ``index=``). ``priors``
    maps a solver kind (``pixel``, ``sr3``, ``latent``) to a zoo prior name or folder.
    """

    name: str
    operator_name: str
    operator_params: dict[str, Any] = field(default_factory=dict)
    noise_name: str = "gaussian"
    noise_params: dict[str, Any] = field(default_factory=dict)
    dataset: str = "fashion_mnist"
    image_size: int = 32
    channels: int = 1
    priors: dict[str, str] = field(default_factory=dict)
    bank: str | None = None
    bank_index: int | None = None
    description: str = ""
    source: str = ""
    #: derived presets ``<name>-<suffix>``: noise parameters overriding ``noise_params``
    noise_variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    _operators: dict[str, Operator] = field(default_factory=dict, repr=False, compare=False)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def prior(self) -> str | None:
        """The default (pixel-space) prior of this problem."""
        return self.priors.get("pixel")

    @property
    def noise(self) -> Noise:
        """The measurement noise model (``sigma`` in the [-1, 1] image range)."""
        return NOISE_MODELS[self.noise_name](**self.noise_params)

    def operator_kwargs(self) -> dict[str, Any]:
        """The keyword arguments the operator factory is called with."""
        kwargs = dict(self.operator_params)
        if self.bank is not None:
            kwargs["bank"] = self.bank
            kwargs["index"] = self.bank_index if self.bank_index is not None else 0
        factory = OPERATORS.entry(self.operator_name)
        params = _parameters(factory)
        if (
            "seed" in kwargs
            and params is not None
            and "seed" not in params
            and "generator" in params
        ):
            # presets store a plain seed; a factory that takes only a generator gets one
            kwargs["generator"] = torch.Generator().manual_seed(int(kwargs.pop("seed")))
        kwargs["in_shape"] = self.in_shape
        return kwargs

    def operator(self, device: str | torch.device | None = None) -> Operator:
        """The forward operator built for this problem's image shape (cached per device)."""
        key = str(torch.device(device)) if device is not None else "cpu"
        if key not in self._operators:
            op = OPERATORS.get(self.operator_name, **self.operator_kwargs())
            if not isinstance(op, Operator):
                raise TypeError(
                    f"problem {self.name!r}: operator factory {self.operator_name!r} returned "
                    f"{type(op).__name__}, not an invdiff Operator"
                )
            self._operators[key] = op.to(key) if device is not None else op
        return self._operators[key]

    def measure(
        self,
        x: Tensor,
        index: int | Sequence[int],
        seed: int = 0,
        *,
        operator: Operator | None = None,
    ) -> Tensor:
        """``y = A(x) + n`` with the noise of image ``index[i]`` drawn from its own generator.

        ``index`` gives the data set index of every image in the batch (an int ``i`` means
        ``i, i+1, ..., i+N-1``). The noise is drawn on the CPU from a generator seeded by
        ``measurement_seed(name, index, seed)`` and moved to ``x``'s device, so the
        measurement of an image never depends on the batch, the shard or the device.
        """
        from invdiff.images import check_image

        check_image(x, "x", channels=self.channels, size=(self.image_size, self.image_size))
        n = x.shape[0]
        if isinstance(index, bool) or (
            not isinstance(index, int)
            and (
                isinstance(index, str | bytes)
                or not all(hasattr(i, "__index__") and not isinstance(i, bool) for i in index)
            )
        ):
            raise TypeError(
                f"index must be an int or one int per image (data set indices), got {index!r}"
            )
        indices = (
            list(range(int(index), int(index) + n))
            if isinstance(index, int)
            else [int(i) for i in index]
        )
        if len(indices) != n:
            raise ValueError(
                f"index must give one data set index per image ({n}), got {len(indices)}"
            )
        if any(i < 0 for i in indices):
            raise ValueError(f"index must hold data set indices >= 0, got {indices[:8]}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        op = operator if operator is not None else self.operator(x.device)
        noise = self.noise
        with torch.no_grad():
            clean = op(x)
        out = []
        for i, idx in enumerate(indices):
            gen = torch.Generator().manual_seed(measurement_seed(self.name, idx, seed))
            out.append(
                noise.sample(clean[i : i + 1].detach().cpu(), generator=gen).to(clean.device)
            )
        return torch.cat(out)

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any], *, source: str = "") -> Problem:
        """Build and validate a problem from a parsed TOML table (``PROBLEM_SCHEMA``); every
        problem found is reported at once, naming the file, the key, the value and what is
        valid."""
        where = f"problem {name!r}" + (f" ({source})" if source else "")
        errors: list[str] = []
        values = schema.check(data, PROBLEM_SCHEMA, errors)
        if not errors:
            _check_operator(values["operator"], errors)
            _check_noise(values["noise"], values.get("noise_variants", {}), errors)
        if errors:
            raise schema.fail(ProblemFileError, where, errors)
        op_table, noise_table = values["operator"], values["noise"]
        return cls(
            name=name,
            operator_name=op_table["name"],
            operator_params={
                k: v for k, v in op_table.items() if k not in ("name", "bank", "index")
            },
            noise_name=noise_table["name"],
            noise_params={k: v for k, v in noise_table.items() if k != "name"},
            dataset=values["dataset"],
            image_size=values["image_size"],
            channels=values["channels"],
            priors=dict(values.get("priors", {})),
            bank=op_table.get("bank"),
            bank_index=op_table.get("index"),
            description=values["description"],
            source=source,
            noise_variants={k: dict(v) for k, v in values.get("noise_variants", {}).items()},
        )

    def with_noise(self, name: str | None = None, **params: Any) -> Problem:
        """This problem at another noise level (``sigma=0.0``, ``rate=...``), under ``name``.

        The measurement seeds hash the name, so a variant under a new name draws its own
        noise and one under this name reuses this problem's draws at the new level.
        """
        noise_params = {**self.noise_params, **params}
        NOISE_MODELS[self.noise_name](**noise_params)  # a clear error for bad parameters
        return self.with_changes(
            name=name or self.name, noise_params=noise_params, noise_variants={}
        )

    def variant(self, suffix: str) -> Problem:
        """The derived problem ``<name>-<suffix>`` declared in ``[noise_variants]``."""
        if suffix not in self.noise_variants:
            raise UnknownNameError(
                f"problem {self.name!r} declares no noise variant {suffix!r}; "
                f"valid: {', '.join(self.noise_variants) or 'none'}"
            )
        return self.with_noise(f"{self.name}-{suffix}", **self.noise_variants[suffix])

    def with_changes(self, **changes: Any) -> Problem:
        """A copy with some fields replaced; the operator cache is not shared."""
        fields = {k: v for k, v in self.__dict__.items() if k != "_operators"}
        fields.update(changes)
        return Problem(**fields)


def _parameters(factory: Any) -> list[str] | None:
    """Keyword parameters a factory accepts, or None when it takes ``**kwargs``."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return [
        p.name for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_POSITIONAL
    ]


def _check_operator(table: Mapping[str, Any], errors: list[str]) -> None:
    """The ``[operator]`` parameters against its factory's signature."""
    op_name = table["name"]
    params = {k: v for k, v in table.items() if k not in ("name", "bank", "index")}
    if "in_shape" in params:
        errors.append("operator.in_shape must not be set; it comes from channels and image_size")
    accepted = _parameters(OPERATORS.entry(op_name))
    if accepted is not None:
        extra = set(params) - set(accepted) - ({"seed"} if "generator" in accepted else set())
        extra.discard("in_shape")
        if ("bank" in table or "index" in table) and "bank" not in accepted:
            extra.add("bank")
        if extra:
            valid = sorted(p for p in accepted if p != "in_shape")
            errors.append(
                f"operator: {op_name!r} takes no parameter(s) {sorted(extra)} "
                f"({did_you_mean_all(extra, valid)}valid: {valid})"
            )
    if "index" in table and "bank" not in table:
        errors.append(f"operator.index = {table['index']!r}: index given without a bank")


def did_you_mean_all(names: set[str], valid: list[str]) -> str:
    return "".join(schema.did_you_mean(n, valid) for n in sorted(names))


def _check_noise(
    table: Mapping[str, Any], variants: Mapping[str, Mapping[str, Any]], errors: list[str]
) -> None:
    """The ``[noise]`` parameters and each variant's by building the noise model."""
    model = NOISE_MODELS[table["name"]]
    params = {k: v for k, v in table.items() if k != "name"}
    valid = list(inspect.signature(model).parameters)
    for path, extra in [("noise", {}), *((f"noise_variants.{k}", v) for k, v in variants.items())]:
        try:
            model(**{**params, **extra})
        except (TypeError, ValueError) as err:
            errors.append(
                f"{path}: invalid {table['name']} parameters { ({**params, **extra}) } "
                f"(valid: {valid}): {err}"
            )
    for suffix in variants:
        if not suffix.replace("-", "").isalnum():
            errors.append(f"noise_variants.{suffix}: a variant name is letters, digits and '-'")


def load_file(path: str | Path, name: str | None = None) -> Problem:
    """Read one problem preset from a TOML file (its name is the file stem unless given)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"problem file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ProblemFileError(f"problem file {path} is not valid TOML: {err}") from None
    return Problem.from_dict(name or path.stem, data, source=str(path))


def _variant_names(path: Path) -> list[str]:
    """The ``[noise_variants]`` a preset declares (read without validating the rest, so a
    broken file fails when it is used, with the full message)."""
    try:
        variants = tomllib.loads(path.read_text()).get("noise_variants", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
        return []
    return list(variants) if isinstance(variants, Mapping) else []


def _register_presets() -> str | None:
    """Register every ``problems/*.toml`` preset and its noise variants (each file is read
    when its problem is used). Returns what is wrong with the preset folder, if anything: it
    is raised by ``names()`` and ``get()``, not at import, so that commands that need no
    problem still run."""
    folder = problems_dir()
    paths = sorted(folder.glob("*.toml")) if folder.is_dir() else []
    if not paths:
        return (
            f"no problem presets (*.toml) in {folder}: the installed package lacks its presets "
            "or INVDIFF_HOME names a folder without problems/; reinstall invdiff or fix "
            "INVDIFF_HOME"
        )
    declared: dict[str, tuple[Path, str | None]] = {}
    for path in paths:
        for name, suffix in [(path.stem, None)] + [
            (f"{path.stem}-{v}", v) for v in _variant_names(path)
        ]:
            if name in declared:
                return f"problem {name!r} is declared twice: by {declared[name][0]} and by {path}"
            declared[name] = (path, suffix)
    for name, (path, suffix) in declared.items():
        if name in PROBLEMS:
            continue

        def loader(path: Path = path, suffix: str | None = suffix) -> Problem:
            problem = load_file(path)
            return problem if suffix is None else problem.variant(suffix)

        PROBLEMS.register(name)(loader)
    return None


_PRESETS_ERROR = _register_presets()


def _check_presets() -> None:
    if _PRESETS_ERROR is not None:
        raise ProblemFileError(_PRESETS_ERROR)


def names() -> list[str]:
    """The names of the registered problem presets."""
    _check_presets()
    return PROBLEMS.names()


def get(name: str | Path) -> Problem:
    """The problem preset ``name`` (a registered name, or the path of a TOML file)."""
    if isinstance(name, Path) or (str(name).endswith(".toml") and Path(name).is_file()):
        return load_file(name)
    if str(name) not in PROBLEMS:
        _check_presets()
    return PROBLEMS.get(str(name))


__all__ = [
    "NOISE_MODELS",
    "PRIOR_KINDS",
    "Problem",
    "ProblemFileError",
    "get",
    "load_file",
    "measurement_seed",
    "names",
]
