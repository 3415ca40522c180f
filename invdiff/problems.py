"""Named problem presets: operator + parameters + noise + data set + size (``problems/*.toml``).

A problem is everything about an inverse problem except the solver and the prior weights::

    prob = invdiff.problems.get("fmnist-sr4")
    op = prob.operator()                      # the registered operator, built for prob's image size
    y = prob.measure(x, index=[0, 1, 2])      # A(x) + noise, reproducible per image index

Presets are TOML files in ``problems/`` (one problem per file, the file stem is its name) and
refer to registry names only (operators, data sets, zoo priors)::

    description = "4x super-resolution (average pooling), sigma_y = 0.05"
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

    [priors]                  # default prior per solver kind: pixel, sr3, latent
    pixel = "fmnist32-pixel"

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

from invdiff.noise import Gaussian, Noise, Poisson
from invdiff.operators.base import Operator
from invdiff.paths import problems_dir
from invdiff.priors.kinds import folder_kinds
from invdiff.registry import DATASETS, OPERATORS, PROBLEMS

#: noise model names usable in a preset's ``[noise]`` table
NOISE_MODELS: dict[str, type[Noise]] = {"gaussian": Gaussian, "poisson": Poisson}
#: solver kinds that a preset can name a default prior for
PRIOR_KINDS: tuple[str, ...] = folder_kinds()

_TOP_KEYS = {"description", "dataset", "image_size", "channels", "operator", "noise", "priors"}
_REQUIRED_KEYS = ("dataset", "image_size", "operator", "noise")


class ProblemFileError(ValueError):
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
        """Build and validate a problem from a parsed TOML table (clear errors for bad entries)."""
        where = f"problem {name!r}" + (f" ({source})" if source else "")

        def fail(msg: str) -> ProblemFileError:
            return ProblemFileError(f"{where}: {msg}")

        if not isinstance(data, Mapping):
            raise fail(f"expected a table, got {type(data).__name__}")
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise fail(f"unknown key(s) {sorted(unknown)}; valid keys: {sorted(_TOP_KEYS)}")
        missing = [k for k in _REQUIRED_KEYS if k not in data]
        if missing:
            raise fail(f"missing key(s) {missing}")

        dataset = data["dataset"]
        if not isinstance(dataset, str) or dataset not in DATASETS:
            raise fail(
                f"dataset must be a registered data set name ({', '.join(DATASETS.names())}), "
                f"got {dataset!r}"
            )
        size, channels = data["image_size"], data.get("channels", 1)
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 4096:
            raise fail(f"image_size must be an integer in [1, 4096], got {size!r}")
        if channels not in (1, 3) or isinstance(channels, bool):
            raise fail(f"channels must be 1 or 3, got {channels!r}")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise fail(f"description must be a string, got {description!r}")

        op_table = data["operator"]
        if not isinstance(op_table, Mapping) or "name" not in op_table:
            raise fail("[operator] must be a table with a 'name' (a registered operator)")
        op_name = op_table["name"]
        if op_name not in OPERATORS:
            raise fail(
                f"[operator] name {op_name!r} is not a registered operator; "
                f"valid: {', '.join(OPERATORS.names())}"
            )
        op_params = {k: v for k, v in op_table.items() if k not in ("name", "bank", "index")}
        if "in_shape" in op_params:
            raise fail("[operator] must not set in_shape; it comes from channels and image_size")
        accepted = _parameters(OPERATORS.entry(op_name))
        if accepted is not None:
            extra = (
                set(op_params) - set(accepted) - ({"seed"} if "generator" in accepted else set())
            )
            if ("bank" in op_table or "index" in op_table) and "bank" not in accepted:
                extra.add("bank")
            if extra:
                raise fail(
                    f"[operator] {op_name!r} takes no parameter(s) {sorted(extra)}; "
                    f"valid: {sorted(p for p in accepted if p != 'in_shape')}"
                )
        bank = op_table.get("bank")
        bank_index = op_table.get("index")
        if bank is not None and not isinstance(bank, str):
            raise fail(f"[operator] bank must be a bank name (string), got {bank!r}")
        if bank_index is not None and (not isinstance(bank_index, int) or bank_index < 0):
            raise fail(f"[operator] index must be a non-negative integer, got {bank_index!r}")
        if bank_index is not None and bank is None:
            raise fail("[operator] index given without a bank")

        noise_table = data["noise"]
        if not isinstance(noise_table, Mapping) or noise_table.get("name") not in NOISE_MODELS:
            raise fail(
                f"[noise] must be a table with name one of {sorted(NOISE_MODELS)}, "
                f"got {noise_table!r}"
            )
        noise_name = noise_table["name"]
        noise_params = {k: v for k, v in noise_table.items() if k != "name"}
        try:
            NOISE_MODELS[noise_name](**noise_params)
        except (TypeError, ValueError) as err:
            valid = [p for p in inspect.signature(NOISE_MODELS[noise_name]).parameters]
            raise fail(
                f"[noise] invalid {noise_name} parameters {noise_params} (valid: {valid}): {err}"
            ) from None

        priors = data.get("priors", {})
        if not isinstance(priors, Mapping):
            raise fail(f"[priors] must be a table kind -> prior name, got {priors!r}")
        bad = set(priors) - set(PRIOR_KINDS)
        if bad:
            raise fail(f"[priors] unknown kind(s) {sorted(bad)}; valid kinds: {list(PRIOR_KINDS)}")
        for kind, value in priors.items():
            if not isinstance(value, str) or not value:
                raise fail(f"[priors] {kind} must be a prior name or folder, got {value!r}")

        return cls(
            name=name,
            operator_name=op_name,
            operator_params=op_params,
            noise_name=noise_name,
            noise_params=noise_params,
            dataset=dataset,
            image_size=size,
            channels=channels,
            priors=dict(priors),
            bank=bank,
            bank_index=bank_index,
            description=description,
            source=source,
        )

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


def _register_presets() -> None:
    folder = problems_dir()
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.toml")):
        if path.stem in PROBLEMS:
            continue

        def loader(path: Path = path) -> Problem:
            return load_file(path)

        PROBLEMS.register(path.stem)(loader)


_register_presets()


def names() -> list[str]:
    """The names of the registered problem presets."""
    return PROBLEMS.names()


def get(name: str | Path) -> Problem:
    """The problem preset ``name`` (a registered name, or the path of a TOML file)."""
    if isinstance(name, Path) or (str(name).endswith(".toml") and Path(name).is_file()):
        return load_file(name)
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
