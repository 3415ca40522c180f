"""ControlNet: a frozen pixel prior steered by an image condition (Zhang, Rao & Agrawala 2023,
"Adding Conditional Control to Text-to-Image Diffusion Models", Sec. 3.1-3.3).

The prior's UNet ``F(x; Theta)`` stays frozen. A trainable copy ``Theta_c`` of its encoder (the
input convolution, the time embedding, the down blocks and the middle block) reads the noisy
input plus an embedding of the condition image ``c``, and every feature the copy passes on goes
through a 1 x 1 convolution ``Z`` whose weights and bias start at zero (Eq. 2):

    y_c = F(x; Theta) + Z(F(x + Z(c; Theta_z1); Theta_c); Theta_z2),

where the sum is taken on the skip connections and the middle block's output of the frozen UNet
(the residuals ``UNet2DConditionModel`` takes as ``down_block_additional_residuals`` /
``mid_block_additional_residual``). With the zero convolutions at zero the adapted model *is* the
prior, exactly, at step 0 of training; gradients still reach the zero convolutions (the
derivative of ``W x`` in ``W`` is ``x``), so training moves away from the prior smoothly.

The condition here is the measurement mapped to image space, ``c = A^+ y`` (the pseudo-inverse of
the operator it was trained on): a ControlNet prior is a supervised, per-operator alternative to
the zero-shot solvers, and refuses a problem measured with another operator
(``mismatch``), as an SR3 prior does. ``invdiff train controlnet --prior NAME --problem PRESET``
trains one; ``invdiff solve --solver sr3`` (ancestral sampling of a conditional prior) or the
``controlnet`` solver samples it.

diffusers' ``ControlNetModel`` copies a ``UNet2DConditionModel`` only; the pixel priors are
``UNet2DModel``s, so the copy and the residual injection (``controlled_unet``, the forward of
``UNet2DModel`` with the residuals added) are written here.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from invdiff.operators.base import Operator
from invdiff.priors.base import ConditionalPrior
from invdiff.priors.kinds import register
from invdiff.priors.pixel import PixelPrior, x0_from_output
from invdiff.priors.sr3 import degradation_mismatch
from invdiff.registry import OPERATORS

ADAPTER_DIR = "controlnet"


def _zero_conv(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, kernel_size=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def check_controllable(unet: nn.Module) -> None:
    """Refuse a UNet whose forward ``controlled_unet`` does not reproduce."""
    from diffusers import UNet2DModel

    cfg = unet.config
    problems = []
    if not isinstance(unet, UNet2DModel):
        problems.append(f"a {type(unet).__name__} (needs a UNet2DModel)")
    elif cfg.center_input_sample or cfg.time_embedding_type != "positional":
        problems.append("center_input_sample or a non-positional time embedding")
    elif any(hasattr(b, "skip_conv") for b in [*unet.down_blocks, *unet.up_blocks]):
        problems.append("skip-connection (Skip*) blocks")
    if problems:
        raise ValueError(f"ControlNet: unsupported UNet: {problems[0]}")


class ControlNetAdapter(nn.Module):
    """The trainable copy of a ``UNet2DModel``'s encoder with its condition embedding and zero
    convolutions; ``forward`` gives the residuals for the frozen UNet's skip connections and
    middle block."""

    def __init__(self, unet: nn.Module, cond_channels: int, embed_channels: int = 16) -> None:
        super().__init__()
        check_controllable(unet)
        self.time_proj = copy.deepcopy(unet.time_proj)
        self.time_embedding = copy.deepcopy(unet.time_embedding)
        self.class_embedding = copy.deepcopy(unet.class_embedding)
        self.conv_in = copy.deepcopy(unet.conv_in)
        self.down_blocks = copy.deepcopy(unet.down_blocks)
        self.mid_block = copy.deepcopy(unet.mid_block)
        width = unet.conv_in.out_channels
        # Z(c; Theta_z1): a small convolutional embedding of the condition, its last layer zero
        self.cond_embedding = nn.Sequential(
            nn.Conv2d(cond_channels, embed_channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(embed_channels, embed_channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(embed_channels, width, 3, padding=1),
        )
        nn.init.zeros_(self.cond_embedding[-1].weight)
        nn.init.zeros_(self.cond_embedding[-1].bias)
        channels = [width]
        for block in unet.down_blocks:
            channels += [r.out_channels for r in block.resnets]
            if block.downsamplers is not None:
                channels.append(block.downsamplers[0].out_channels)
        self.zero_convs = nn.ModuleList(_zero_conv(c) for c in channels)
        mid = unet.mid_block.resnets[-1].out_channels if unet.mid_block is not None else width
        self.mid_zero_conv = _zero_conv(mid)
        self.cond_channels = int(cond_channels)
        self.embed_channels = int(embed_channels)
        # the copies come from a frozen prior; the copy is what trains (Eq. 2's Theta_c)
        self.requires_grad_(True)

    def forward(
        self, sample: Tensor, timestep: Tensor, cond: Tensor, class_labels: Tensor | None = None
    ) -> tuple[tuple[Tensor, ...], Tensor]:
        emb = _time_embedding(self, sample, timestep, class_labels)
        h = self.conv_in(sample) + self.cond_embedding(cond.to(sample.dtype))
        features = [h]
        for block in self.down_blocks:
            h, res = block(hidden_states=h, temb=emb)
            features += list(res)
        if self.mid_block is not None:
            h = self.mid_block(h, emb)
        down = tuple(z(f) for z, f in zip(self.zero_convs, features, strict=True))
        return down, self.mid_zero_conv(h)


def _time_embedding(
    module: nn.Module, sample: Tensor, timestep: Tensor, class_labels: Tensor | None
) -> Tensor:
    """``UNet2DModel``'s time (and class) embedding, from ``module``'s own layers."""
    t = timestep if torch.is_tensor(timestep) else torch.tensor([timestep], device=sample.device)
    t = t.reshape(-1).to(sample.device)
    t = t * torch.ones(sample.shape[0], dtype=t.dtype, device=t.device)
    dtype = module.time_embedding.linear_1.weight.dtype
    emb = module.time_embedding(module.time_proj(t).to(dtype))
    if module.class_embedding is not None:
        if class_labels is None:
            raise ValueError("class_labels should be provided when doing class conditioning")
        emb = emb + module.class_embedding(class_labels).to(dtype)
    return emb


def controlled_unet(
    unet: nn.Module,
    sample: Tensor,
    timestep: Tensor,
    down_residuals: tuple[Tensor, ...] | None = None,
    mid_residual: Tensor | None = None,
    class_labels: Tensor | None = None,
) -> Tensor:
    """``UNet2DModel.forward`` (diffusers) with ControlNet's residuals added to its skip
    connections and to its middle block's output (module docstring); without residuals it is
    the UNet's own output."""
    emb = _time_embedding(unet, sample, timestep, class_labels)
    h = unet.conv_in(sample)
    skips: tuple[Tensor, ...] = (h,)
    for block in unet.down_blocks:
        h, res = block(hidden_states=h, temb=emb)
        skips += res
    if down_residuals is not None:
        if len(down_residuals) != len(skips):
            raise ValueError(f"{len(down_residuals)} residuals for {len(skips)} skip connections")
        skips = tuple(s + r for s, r in zip(skips, down_residuals))
    if unet.mid_block is not None:
        h = unet.mid_block(h, emb)
    if mid_residual is not None:
        h = h + mid_residual
    for block in unet.up_blocks:
        res, skips = skips[-len(block.resnets) :], skips[: -len(block.resnets)]
        h = block(h, res, emb)
    return unet.conv_out(unet.conv_act(unet.conv_norm_out(h)))


class ControlledUNet(nn.Module):
    """What ``invdiff train controlnet`` optimises (only the adapter has trainable weights):
    the frozen UNet and the adapter, called as ``model(x_t, t, cond=c)``."""

    def __init__(self, unet: nn.Module, adapter: ControlNetAdapter) -> None:
        super().__init__()
        self.unet = unet.requires_grad_(False)
        self.adapter = adapter

    def forward(self, sample: Tensor, timestep: Tensor, cond: Tensor, class_labels=None):  # noqa: ANN001, ANN201
        down, mid = self.adapter(sample, timestep, cond, class_labels)
        out = controlled_unet(self.unet, sample, timestep, down, mid, class_labels)
        return _Output(out)


class _Output:
    """``.sample``, as diffusers' UNet outputs carry it."""

    def __init__(self, sample: Tensor) -> None:
        self.sample = sample


@register
class ControlNetPrior(PixelPrior, ConditionalPrior):
    """A frozen ``PixelPrior`` UNet with a ControlNet adapter (module docstring); the condition
    is ``A^+ y`` of the operator it was trained on (``degradation_spec``)."""

    kind = "controlnet"

    def __init__(
        self,
        unet,  # noqa: ANN001 - the frozen diffusers UNet2DModel of the base prior
        scheduler,  # noqa: ANN001 - its DDPM scheduler
        adapter: ControlNetAdapter,
        *,
        degradation: Mapping[str, Any],
        noise_sigma: float,
        name: str = "",
        base: str = "",
    ) -> None:
        super().__init__(unet, scheduler, name=name)
        spec = dict(degradation)
        if not isinstance(spec.get("name"), str):
            raise ValueError(f"degradation must name a registered operator, got {spec!r}")
        OPERATORS.entry(spec["name"])  # an unknown name lists the registered ones
        self.degradation_spec = spec
        self.noise_sigma = float(noise_sigma)
        self.base = base
        self.adapter = adapter.to(self.device).eval().requires_grad_(False)
        if adapter.cond_channels != self.in_shape[0]:
            raise ValueError(
                f"the adapter takes {adapter.cond_channels}-channel conditions, the prior "
                f"models {self.in_shape[0]}-channel images"
            )

    @property
    def degradation(self) -> Operator:
        """The operator of the training measurements, on this prior's images."""
        op = self.__dict__.get("_degradation")  # kept out of the module tree (no weights)
        if op is None:
            args = {k: v for k, v in self.degradation_spec.items() if k != "name"}
            op = OPERATORS.get(self.degradation_spec["name"], in_shape=self.in_shape, **args)
            self.__dict__["_degradation"] = op.to(self.device)
        return op

    def mismatch(self, operator: Operator) -> str | None:
        return degradation_mismatch(
            self.degradation_spec, operator, self.name or "controlnet", self.in_shape
        )

    def condition(self, y: Tensor) -> Tensor:
        """``A^+ y`` with the training operator, clamped to [-1, 1]: the condition image."""
        op = self.degradation
        expected = tuple(op(torch.zeros(1, *self.in_shape, device=self.device)).shape[1:])
        if y.ndim != 4 or tuple(y.shape[1:]) != expected:
            raise ValueError(
                f"y must have shape N x {' x '.join(map(str, expected))} (the measurements of "
                f"{self.degradation_spec['name']} this prior was trained on), got "
                f"{tuple(y.shape)}"
            )
        with torch.no_grad():
            return op.pinv(y.to(self.device)).clamp(-1, 1)

    def denoise(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        if cond is None:
            raise ValueError("ControlNetPrior needs cond= (prior.condition(y), i.e. A^+ y)")
        if cond.shape[0] == 1 and x.shape[0] != 1:
            cond = cond.expand(x.shape[0], *cond.shape[1:])
        if tuple(cond.shape) != tuple(x.shape):
            raise ValueError(
                f"cond must have the shape of x {tuple(x.shape)}, got {tuple(cond.shape)}"
            )
        t = self.timestep_for_sigma(sigma).to(torch.float32).expand(x.shape[0])
        inp = self.network_input(x, sigma, None)
        labels = None
        if self.null_label is not None:
            labels = torch.full((x.shape[0],), self.null_label, device=x.device)

        def run(inp: Tensor, t: Tensor) -> Tensor:
            down, mid = self.adapter(inp, t, cond, labels)
            return controlled_unet(self.unet, inp, t, down, mid, labels)

        out = run(inp.to(self.unet.dtype), t).to(x.dtype)
        return x0_from_output(self.prediction_type, x, sigma, out)

    def metadata(self) -> dict:
        return {
            **super().metadata(),
            "degradation": self.degradation_spec,
            "noise_sigma": self.noise_sigma,
            "base_prior": self.base,
            "adapter": {
                "cond_channels": self.adapter.cond_channels,
                "embed_channels": self.adapter.embed_channels,
            },
        }

    def save(self, folder: str | Path, *, dtype: torch.dtype | None = None) -> Path:
        """The base prior's folder layout plus ``controlnet/adapter.safetensors``."""
        from safetensors.torch import save

        from invdiff.io import write_bytes

        folder = super().save(folder, dtype=dtype)
        state = {
            k: v.detach().to("cpu", dtype or v.dtype).contiguous()
            for k, v in self.adapter.state_dict().items()
        }
        write_bytes(folder / ADAPTER_DIR / "adapter.safetensors", save(state))
        return folder

    @classmethod
    def from_folder(
        cls, folder: str | Path, *, device: str | torch.device = "cpu", name: str = ""
    ) -> ControlNetPrior:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from invdiff.priors.checks import load_unet_and_scheduler, read_prior_json

        folder = Path(folder)
        meta = read_prior_json(folder, required=("degradation", "noise_sigma", "adapter"))
        unet, scheduler = load_unet_and_scheduler(folder, device=device)
        check_controllable(unet)
        try:
            adapter = ControlNetAdapter(
                unet,
                int(meta["adapter"]["cond_channels"]),
                int(meta["adapter"]["embed_channels"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{folder / 'prior.json'}: bad 'adapter' entry ({err})") from err
        path = folder / ADAPTER_DIR / "adapter.safetensors"
        if path.is_symlink() or not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing (or a link): a ControlNet prior needs its adapter weights"
            )
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{path}: not a safetensors file ({err})") from err
        own = adapter.state_dict()
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            raise ValueError(f"{path}: the weights do not fit the adapter prior.json describes")
        adapter.load_state_dict({k: v.float() for k, v in state.items()})
        return cls(
            unet,
            scheduler,
            adapter,
            degradation=meta["degradation"],
            noise_sigma=float(meta["noise_sigma"]),
            name=name or folder.name,
            base=str(meta.get("base_prior", "")),
        )
