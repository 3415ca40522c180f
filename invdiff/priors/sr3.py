"""SR3: a conditional diffusion prior for super-resolution (Saharia et al. 2021, "Image
Super-Resolution via Iterative Refinement", Sec. 2.1-2.3).

The UNet denoises ``x_t`` with the bicubic-upsampled low-resolution image concatenated as extra
input channels: ``eps_theta(concat(x_t, up(y)), t)``. In sigma-space (``x_sigma = x0 + sigma eps``,
``x_t = x_sigma / sqrt(1 + sigma^2)``) this is a ``PixelPrior`` whose network input carries
``cond = condition(y)``; the same bicubic degradation (``downsample``) and upsampling
(``upsample``) are used in training and at inference, so the conditioning matches.

The degradation is also an ``Operator``: ``SR3Prior.degradation`` is the registered operator the
low-resolution training inputs were made with (``bicubic_resize`` at the prior's factor unless
``prior.json`` names another under ``degradation``), and ``SR3Prior.accepts(operator)`` tells
whether a problem measures with it. A problem measured otherwise (average pooling, say) gives the
network a conditioning image it never saw in training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from invdiff.operators.base import Operator
from invdiff.operators.resize import bicubic_resize
from invdiff.priors.base import ConditionalPrior
from invdiff.priors.kinds import register
from invdiff.priors.pixel import PixelPrior
from invdiff.registry import OPERATORS

SR3_FACTORS = (2, 4, 8)
#: the registered operator ``downsample`` computes (the default SR3 training degradation)
DEGRADATION = "bicubic_resize"


def downsample(x: Tensor, factor: int) -> Tensor:
    """Bicubic, antialiased downsampling by ``factor`` (the low-resolution training inputs)."""
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"image size {(h, w)} is not divisible by the factor {factor}")
    # the formula of the ``bicubic_resize`` operator, so the prior's degradation is that operator
    return bicubic_resize(x, (h // factor, w // factor))


def upsample(y: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic upsampling to ``size`` (H, W), clamped to [-1, 1]: the SR3 conditioning image."""
    return F.interpolate(y, size=tuple(size), mode="bicubic", align_corners=False).clamp(-1, 1)


def sr3_condition(x: Tensor, factor: int) -> Tensor:
    """The conditioning image SR3 is trained with: ``upsample(downsample(x))`` at x's size."""
    return upsample(downsample(x, factor), tuple(x.shape[-2:]))


def is_degradation(
    spec: Mapping[str, Any], operator: Operator, in_shape: Sequence[int] | None = None
) -> bool:
    """Whether ``operator`` is the training degradation ``spec`` (a registry name and its
    arguments, as ``prior.json`` stores it): the same registered operator with the same shapes
    and settings (as its ``repr`` states them). Needs no weights, so the bench and the command
    line can refuse a mismatched problem before loading the prior."""
    args = {k: v for k, v in spec.items() if k != "name"}
    shape = operator.in_shape if in_shape is None else tuple(in_shape)
    expected = OPERATORS.get(spec["name"], in_shape=shape, **args)
    return type(operator) is type(expected) and operator.extra_repr() == expected.extra_repr()


def degradation_mismatch(
    spec: Mapping[str, Any] | None,
    operator: Operator,
    prior: str,
    in_shape: Sequence[int] | None = None,
) -> str | None:
    """Why a prior trained on ``spec`` (for images of ``in_shape``; default the operator's)
    cannot serve a problem measured with ``operator`` (None when it can, or when the prior
    names no degradation)."""
    if spec is None or is_degradation(spec, operator, in_shape):
        return None
    args = ", ".join(f"{k}={v!r}" for k, v in spec.items() if k != "name")
    example = " (e.g. fmnist-sr4-bicubic)" if spec["name"] == DEGRADATION else ""
    return (
        f"prior {prior} was trained on measurements of {spec['name']}({args}), but the problem "
        f"measures with {operator.registry_name or type(operator).__name__}"
        f"({operator.extra_repr()}): its conditioning would not match; use a problem measured "
        f"with {spec['name']}{example} or a zero-shot solver"
    )


@register
class SR3Prior(PixelPrior, ConditionalPrior):
    """A ``PixelPrior`` whose UNet takes ``concat(x_t, cond)``; ``cond = condition(y)``.

    ``factor`` is the super-resolution factor it was trained for (2: 16 -> 32 px, 4: 8 -> 32 px).
    ``in_shape`` is the image (C, H, W); the UNet has ``2 C`` input channels.
    """

    kind = "sr3"

    def __init__(
        self,
        unet,  # noqa: ANN001 - a diffusers UNet2DModel
        scheduler,  # noqa: ANN001 - a diffusers DDPM-family scheduler
        *,
        factor: int,
        name: str = "",
        degradation: Mapping[str, Any] | None = None,
    ):
        super().__init__(unet, scheduler, name=name)
        if factor not in SR3_FACTORS:
            raise ValueError(f"factor must be one of {SR3_FACTORS}, got {factor!r}")
        spec = {"name": DEGRADATION, "factor": int(factor)}
        if degradation is not None:
            spec = dict(degradation)
            if not isinstance(spec.get("name"), str) or spec.get("factor", factor) != factor:
                raise ValueError(
                    "degradation must name a registered operator (and, if it gives one, the "
                    f"prior's factor {factor}), got {dict(degradation)!r}"
                )
            OPERATORS.entry(spec["name"])  # an unknown name lists the registered ones
        #: the training degradation by registry name and arguments (``prior.json``)
        self.degradation_spec = spec
        cfg = unet.config
        if int(cfg.in_channels) != 2 * int(cfg.out_channels):
            raise ValueError(
                "an SR3 UNet needs in_channels = 2 x out_channels (noisy image + condition), got "
                f"in_channels={cfg.in_channels}, out_channels={cfg.out_channels}"
            )
        self.factor = int(factor)

    @property
    def degradation(self) -> Operator:
        """The operator that made the low-resolution training inputs, on this prior's images."""
        # kept out of the module tree: an operator's buffers are not the prior's weights
        op = self.__dict__.get("_degradation")
        if op is None:
            args = {k: v for k, v in self.degradation_spec.items() if k != "name"}
            op = OPERATORS.get(self.degradation_spec["name"], in_shape=self.in_shape, **args)
            self.__dict__["_degradation"] = op
        return op

    def mismatch(self, operator: Operator) -> str | None:
        """Why ``operator`` is not the degradation the prior was trained on (None when it is)."""
        name = self.name or "sr3"
        return degradation_mismatch(self.degradation_spec, operator, name, self.in_shape)

    @property
    def low_res_shape(self) -> tuple[int, int, int]:
        c, h, w = self.in_shape
        return (c, h // self.factor, w // self.factor)

    def condition(self, y: Tensor) -> Tensor:
        """Bicubic upsampling of the low-resolution measurement ``y`` to the image size."""
        c, h, w = self.in_shape
        if y.ndim != 4 or y.shape[1] != c:
            raise ValueError(f"y must be N x {c} x h x w, got shape {tuple(y.shape)}")
        if tuple(y.shape[-2:]) == (h, w):
            raise ValueError(
                f"y is already {h}x{w}; condition() expects the low-resolution image "
                f"({h // self.factor}x{w // self.factor} for factor {self.factor})"
            )
        return upsample(y, (h, w))

    def denoise(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        if cond is None:
            raise ValueError(
                "SR3Prior needs cond= (prior.condition(y), the upsampled low-res image)"
            )
        if cond.shape[0] != x.shape[0] and cond.shape[0] == 1:
            cond = cond.expand(x.shape[0], *cond.shape[1:])
        if tuple(cond.shape) != tuple(x.shape):
            raise ValueError(
                f"cond must have the shape of x {tuple(x.shape)}, got {tuple(cond.shape)}"
            )
        return super().denoise(x, sigma, cond)

    def metadata(self) -> dict:
        return {**super().metadata(), "factor": self.factor, "degradation": self.degradation_spec}

    @classmethod
    def from_folder(
        cls, folder: str | Path, *, device: str | torch.device = "cpu", name: str = ""
    ) -> SR3Prior:
        """Load an SR3 folder (``prior.json`` with ``factor``, ``unet/``, ``scheduler/``)."""
        from invdiff.priors.checks import load_unet_and_scheduler, read_prior_json

        folder = Path(folder)
        meta = read_prior_json(folder, required=("factor",))
        unet, scheduler = load_unet_and_scheduler(folder, device=device)
        return cls(
            unet,
            scheduler,
            factor=int(meta["factor"]),
            name=name or folder.name,
            degradation=meta.get("degradation"),
        )
