"""The ``Prior`` protocol: a denoiser in sigma-space on [-1, 1] images.

Solvers see a prior only through this interface (Karras et al. 2022, "EDM", Sec. 2):
``x_sigma = x0 + sigma * eps``; ``x0(x, sigma)`` is the Tweedie denoiser ``E[x0 | x_sigma]``;
``eps = (x - x0) / sigma``; ``score = grad log p_sigma(x) = (x0 - x) / sigma^2``.
``sigmas`` is the model's own noise grid (ascending; for a discrete VP model
``sigmas[t] = sqrt((1 - abar_t) / abar_t)``), on which the VP-chain solvers (DDPM, RePaint,
DDRM, DDNM) run so that nothing is interpolated.

Capabilities are types: ``LatentPrior`` adds ``encode``/``decode``, ``ConditionalPrior`` takes
``cond``. A solver that needs one checks ``isinstance`` before doing any work.

A prior is a ``torch.nn.Module``: its networks are submodules (``state_dict``, ``.to(device)``,
``.eval()`` work as for any module) and its noise grid ``sigmas`` is a non-persistent buffer, so
it follows ``.to`` without entering the state dict. ``prior(x, sigma, cond)`` is ``x0``.
Each class declares its ``kind`` once (``invdiff.priors.kinds``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from invdiff.priors.network import NetworkOptions, with_options


def sigma_column(sigma: float | Tensor, x: Tensor) -> Tensor:
    """``sigma`` (a float, a 0-d tensor or one value per sample) as an ``N x 1 x 1 x 1`` tensor."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(
            f"sigma must be a scalar or have one value per sample ({x.shape[0]}), "
            f"got shape {tuple(s.shape)}"
        )
    return s.view(-1, *([1] * (x.ndim - 1)))


class Prior(nn.Module, ABC):
    """A diffusion prior in sigma-space. Subclasses implement ``denoise``."""

    #: the kind of prior this type stands for (``invdiff.priors.kinds``): a concrete class
    #: registers under it, and a solver requiring this type loads a prior of this kind
    kind: ClassVar[str] = "pixel"
    #: whether the class loads from a prior folder (``from_folder``): its kind is one a preset,
    #: a suite or ``prior.json`` can name
    loads_from_folder: ClassVar[bool] = False

    #: (C, H, W) of the samples this prior models (the latent shape for a latent prior).
    in_shape: tuple[int, int, int]
    #: the model's own noise levels, ascending; ``sigmas[0]`` is the smallest.
    sigmas: Tensor
    #: the standard deviation of the data per coordinate: 0.5 for images in [-1, 1] (Karras
    #: et al. 2022, Sec. 5). Solvers that approximate ``Cov(x0 | x_sigma)`` by the Gaussian
    #: value ``sigma^2 sigma_data^2 / (sigma^2 + sigma_data^2) I`` read it.
    sigma_data: float = 0.5
    #: the range of the images it models (None: not images, e.g. an analytic test prior),
    #: which ``invdiff.solve`` uses to refuse measurements no such image can give
    data_range: tuple[float, float] | None = (-1.0, 1.0)
    #: how the network is evaluated (precision, compilation, checkpointing); see ``configure``
    network_options: NetworkOptions = NetworkOptions()

    #: called with the noise level after every network evaluation (see ``observe``)
    _observers: tuple[Callable[[float | Tensor], None], ...] = ()

    def __init__(self) -> None:
        super().__init__()
        # a prior is evaluated, never trained: dropout and the like stay off
        self.train(False)
        #: number of network evaluations so far (benchmarks read and reset it).
        self.nfe = 0

    def __setattr__(self, name: str, value: Any) -> None:
        # the noise grid moves with ``.to(device)`` whichever subclass (or test double) sets it,
        # and stays out of the state dict, which holds the networks' weights only
        if name == "sigmas" and isinstance(value, Tensor) and "_buffers" in self.__dict__:
            if name not in self._buffers and not hasattr(type(self), name):
                self.register_buffer(name, value, persistent=False)
                return
        super().__setattr__(name, value)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, in_shape={getattr(self, 'in_shape', None)}"

    def forward(self, x: Tensor, sigma: float | Tensor, cond: Tensor | None = None) -> Tensor:
        """``prior(x, sigma, cond)`` is ``prior.x0(x, sigma, cond)``."""
        return self.x0(x, sigma, cond)

    def configure(
        self,
        *,
        precision: str | None = None,
        compile: bool | None = None,  # noqa: A002 - the torch name users know
        channels_last: bool | None = None,
        gradient_checkpointing: bool | None = None,
    ) -> Prior:
        """Set how the prior's network is evaluated (``invdiff.priors.network``); ``None``
        keeps a setting. Every solver and sampler honours it, since they only call ``x0``.
        Returns the prior, so ``load(...).configure(precision="bf16")`` reads naturally."""
        options = with_options(
            self.network_options,
            precision=precision,
            compile=compile,
            channels_last=channels_last,
            gradient_checkpointing=gradient_checkpointing,
        )
        self._apply_network_options(options)
        self.network_options = options
        return self

    def _apply_network_options(self, options: NetworkOptions) -> None:
        """Hand the options to the prior's networks; a prior without one accepts the defaults
        only (an analytic prior has nothing to run in bf16 or to compile)."""
        if options.precision != "fp32" or options.compile or options.channels_last:
            raise ValueError(
                f"{type(self).__name__} evaluates no network: precision, compile and "
                "channels_last do not apply to it"
            )

    @property
    def gradient_checkpointing(self) -> bool:
        """Recompute the network's activations in the backward pass instead of keeping them
        (``torch.utils.checkpoint``): less memory for solvers that differentiate ``x0``."""
        return self.network_options.gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, value: bool) -> None:
        self.configure(gradient_checkpointing=value)

    @abstractmethod
    def denoise(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        """``E[x0 | x_sigma = x]`` with ``sigma`` already shaped ``N x 1 x 1 x 1``."""

    @property
    def evaluations_per_call(self) -> int:
        """Network evaluations per image that one ``x0`` call costs: 1, or 2 for a prior under
        classifier-free guidance (its conditional and unconditional branches). ``nfe`` counts
        these, so budgets compare a guided solver with an unguided one at equal compute."""
        return 1

    def x0(self, x: Tensor, sigma: float | Tensor, cond: Tensor | None = None) -> Tensor:
        """Tweedie denoiser ``E[x0 | x_sigma = x]``."""
        self.nfe += self.evaluations_per_call
        out = self.denoise(x, sigma_column(sigma, x), cond)
        for observer in self._observers:
            observer(sigma)
        return out

    @contextmanager
    def observe(self, observer: Callable[[float | Tensor], None]) -> Iterator[None]:
        """Call ``observer(sigma)`` after every network evaluation inside the ``with`` block.

        Every evaluation passes through ``x0`` (``eps`` and ``score`` call it), so an observer
        sees all of them whatever the solver; ``invdiff.solve(progress=True)`` counts with it.
        """
        self._observers = (*self._observers, observer)
        try:
            yield
        finally:
            self._observers = tuple(o for o in self._observers if o is not observer)

    def eps(self, x: Tensor, sigma: float | Tensor, cond: Tensor | None = None) -> Tensor:
        """Predicted noise ``(x - x0) / sigma``."""
        s = sigma_column(sigma, x)
        return (x - self.x0(x, s.flatten(), cond)) / s

    def score(self, x: Tensor, sigma: float | Tensor, cond: Tensor | None = None) -> Tensor:
        """``grad_x log p_sigma(x) = (x0 - x) / sigma^2``."""
        s = sigma_column(sigma, x)
        return (self.x0(x, s.flatten(), cond) - x) / s**2

    @property
    def sigma_min(self) -> float:
        return self._sigma_bounds()[0]

    @property
    def sigma_max(self) -> float:
        return self._sigma_bounds()[1]

    @property
    def log_sigmas(self) -> Tensor:
        """``log sigmas`` in float64 on the grid's device, computed once per grid tensor (a
        network call converts sigma to a timestep with it; recomputing it per call would cost a
        kernel launch and, read on the host, a device sync)."""
        cached = self.__dict__.get("_log_cache")
        if cached is None or cached[0] is not self.sigmas:
            cached = (self.sigmas, self.sigmas.double().log())
            self.__dict__["_log_cache"] = cached
        return cached[1]

    def _sigma_bounds(self) -> tuple[float, float]:
        # read from the grid once per grid tensor: solvers ask for these inside their loops, and
        # reading a device tensor on the host waits for the device
        cached = self.__dict__.get("_bounds_cache")
        if cached is None or cached[0] is not self.sigmas:
            cached = (self.sigmas, float(self.sigmas[0]), float(self.sigmas[-1]))
            self.__dict__["_bounds_cache"] = cached
        return cached[1], cached[2]

    @property
    def device(self) -> torch.device:
        return self.sigmas.device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def alphas_cumprod(self) -> Tensor:
        """``abar_t = 1 / (1 + sigma_t^2)`` on the model's grid (the VP view of ``sigmas``)."""
        return 1 / (1 + self.sigmas.double() ** 2)


class LatentPrior(Prior):
    """A prior on the latents ``z`` of an autoencoder; images are ``decode(z)``."""

    kind: ClassVar[str] = "latent"

    #: (C, H, W) of the decoded images.
    image_shape: tuple[int, int, int]
    #: latents are scaled to unit standard deviation (Rombach et al. 2022, Sec. 4.3.2)
    sigma_data: float = 1.0

    @abstractmethod
    def encode(self, x: Tensor) -> Tensor:
        """Image in [-1, 1] -> latent (the mean of the encoder's posterior, scaled)."""

    @abstractmethod
    def decode(self, z: Tensor) -> Tensor:
        """Latent -> image in [-1, 1]."""


class ConditionalPrior(Prior):
    """A prior conditioned on an image ``cond`` concatenated to the network input (SR3)."""

    kind: ClassVar[str] = "sr3"

    @abstractmethod
    def condition(self, y: Tensor) -> Tensor:
        """Build the conditioning image from a measurement (e.g. bicubic upsampling)."""

    def mismatch(self, operator: Any) -> str | None:
        """Why the prior's conditioning cannot serve measurements of ``operator`` (None when it
        can); a prior that does not name its training degradation accepts any (``SR3Prior``
        names it). Every solver's ``check`` asks, before any work."""
        return None

    def accepts(self, operator: Any) -> bool:
        """Whether the prior was trained on measurements of ``operator``."""
        return self.mismatch(operator) is None


def posterior_variance(sigma: float, sigma_data: float) -> float:
    """``Var(x0 | x_sigma)`` per coordinate for Gaussian data of std ``sigma_data``:
    ``sigma^2 sigma_data^2 / (sigma^2 + sigma_data^2)`` (PiGDM's ``r_t^2``, Song et al. 2023,
    Sec. 3.1, which takes ``sigma_data = 1``)."""
    return sigma**2 * sigma_data**2 / (sigma**2 + sigma_data**2)


def vp_sigmas(
    num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """The sigma grid of a linear-beta DDPM schedule (Ho et al. 2020): ``sqrt((1-abar)/abar)``."""
    betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    return ((1 - abar) / abar).sqrt().float()
