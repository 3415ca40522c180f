"""A pixel-space diffusion prior: a diffusers ``UNet2DModel`` trained with a ``DDPMScheduler``.

The discrete VP chain ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (Ho et al. 2020) is the
sigma-space chain ``x_sigma = x_t / sqrt(abar_t)`` with ``sigma_t = sqrt((1 - abar_t) / abar_t)``
(Karras et al. 2022, Eq. 6 / App. C.1). For any ``sigma`` the network sees
``x_sigma / sqrt(1 + sigma^2)`` at the timestep interpolated linearly in ``log sigma`` between
the two neighbouring grid points; on the grid itself this is exact.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from invdiff.priors.base import Prior
from invdiff.priors.kinds import register
from invdiff.priors.network import NetworkOptions, NetworkRunner, weight_dtype
from invdiff.priors.tokens import ClassTokens, check_tokens

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


# The conversions between a DDPM network's output and the clean image, for training (the target
# the network learns) and for inference (x0 from its output): written here once, in the VP chain
# ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps`` (Ho et al. 2020) and, at inference, in sigma-space
# ``x_sigma = x_t / sqrt(abar) = x0 + sigma eps`` with ``abar = 1 / (1 + sigma^2)``.


def vp_noisy(x0: Tensor, noise: Tensor, abar: Tensor) -> Tensor:
    """The training input ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps`` (``add_noise``)."""
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def training_target(prediction_type: str, x0: Tensor, noise: Tensor, abar: Tensor) -> Tensor:
    """What the network learns to output: ``eps``, ``v = sqrt(abar) eps - sqrt(1 - abar) x0``
    (Salimans & Ho 2022, Sec. 4; diffusers' ``get_velocity``) or ``x0`` itself."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0
    if prediction_type == "sample":
        return x0
    raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")


def x0_from_output(prediction_type: str, x: Tensor, sigma: Tensor, out: Tensor) -> Tensor:
    """``E[x0 | x_sigma = x]`` from the network output at ``x_t = x / sqrt(1 + sigma^2)``:
    ``x - sigma eps`` (epsilon), ``sqrt(abar) x_t - sqrt(1 - abar) v`` (v) or ``out`` (sample)."""
    if prediction_type == "epsilon":
        return x - sigma * out
    if prediction_type == "v_prediction":
        root = (1 + sigma**2).sqrt()
        return x / (1 + sigma**2) - sigma / root * out
    return out


def sigmas_from_scheduler(scheduler) -> Tensor:  # noqa: ANN001 - a diffusers scheduler
    abar = scheduler.alphas_cumprod.double()
    return ((1 - abar) / abar).sqrt().float()


def timestep_for_sigma(sigma: Tensor, sigmas: Tensor, log_grid: Tensor | None = None) -> Tensor:
    """Continuous timestep ``t`` with ``sigma_t = sigma``, linear in ``log sigma`` (clamped).

    ``log_grid`` is ``sigmas.double().log()`` on ``sigma``'s device, precomputed by the prior;
    with it the conversion is a handful of tensor operations and never waits on the device.
    """
    # the log in float64 on both sides, so that a grid sigma maps to its integer timestep exactly
    if log_grid is None:
        log_grid = sigmas.to(sigma.device, torch.float64).log()
    # clamping in log space equals clamping sigma to [sigmas[0], sigmas[-1]] (log is monotone);
    # the floor keeps a zero or negative sigma at the bottom of the grid, as that clamp did
    floor = torch.finfo(torch.float64).tiny
    ls = torch.clamp(sigma.to(torch.float64).clamp_min(floor).log(), log_grid[0], log_grid[-1])
    idx = torch.searchsorted(log_grid, ls).clamp(1, len(log_grid) - 1)
    lo, hi = log_grid[idx - 1], log_grid[idx]
    frac = ((ls - lo) / (hi - lo)).clamp(0, 1)
    return (idx - 1).to(torch.float64) + frac


def _sample(out) -> Tensor:  # noqa: ANN001 - a diffusers UNet2DOutput
    return out.sample


@register
class PixelPrior(Prior):
    """Sigma-space view of a diffusers UNet trained on the discrete DDPM chain.

    ``prediction_type`` follows the scheduler: ``epsilon`` (``x0 = x - sigma * eps``),
    ``v_prediction`` (Salimans & Ho 2022: ``x0 = sqrt(abar) x_t - sqrt(1 - abar) v``) or
    ``sample``. ``class_labels`` (optional) select a class for a class-conditional UNet.

    Classifier-free guidance (Ho & Salimans 2022, Eq. 6): a class-conditional UNet trained with
    label dropout (``invdiff train pixel --class-conditional``; the dropped label is the last,
    "null" class) gives the unconditional model from the same network, and with ``guidance = w``

        eps_guided = (1 + w) eps(x, c) - w eps(x, null)

    (diffusers' ``guidance_scale`` is ``1 + w``). ``w = 0`` is the conditional model, ``w = -1``
    the unconditional one. Every prediction type's ``x0`` is affine in the output with the same
    coefficients, so the combination is taken on ``x0``. Both branches run as one network call
    on a doubled batch: a guided evaluation costs about twice an unguided one.
    ``prior.conditioned(labels, guidance=w)`` returns the guided view that samplers and solvers
    use like any prior (posterior sampling given a class).

    The UNet is a ``UNet2DModel`` or a ``UNet2DConditionModel`` (cross-attention conditioning,
    ``invdiff.priors.tokens``). The latter always takes ``encoder_hidden_states``
    (``N x L x cross_attention_dim``): unconditioned, it gets the null sequence, which is the
    null class's tokens of a prior trained with ``invdiff train pixel --cross-attention``
    (``class_tokens``), else ``encoder_hidden_states`` given here or, by default, one token of
    zeros (the null condition of a model trained with its conditioning dropped to zeros; pass
    the embedding of an empty prompt for a model trained otherwise).
    ``prior.conditioned(label, guidance=w)`` turns a label into its class tokens;
    ``prior.conditioned(tokens=T, guidance=w)`` takes any ``(N, L, D)`` sequence (a text
    encoder's output, say), guided against the null sequence.
    """

    kind = "pixel"
    loads_from_folder = True

    def __init__(
        self,
        unet,  # noqa: ANN001 - a diffusers UNet2DModel or UNet2DConditionModel
        scheduler,  # noqa: ANN001 - a diffusers DDPM-family scheduler
        *,
        name: str = "",
        class_labels: Tensor | None = None,
        encoder_hidden_states: Tensor | None = None,
        guidance: float = 0.0,
        class_tokens: ClassTokens | None = None,
    ):
        from diffusers import UNet2DConditionModel

        super().__init__()
        self.unet = unet.eval()
        self.scheduler = scheduler
        self.prediction_type = scheduler.config.prediction_type
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"unsupported prediction_type {self.prediction_type!r}; "
                f"expected one of {PREDICTION_TYPES}"
            )
        cfg = unet.config
        size = cfg.sample_size
        h, w = (size, size) if isinstance(size, int) else size
        self.in_shape = (int(cfg.out_channels), int(h), int(w))
        self.encoder_hidden_states = None
        self.class_tokens = None
        self.tokens: Tensor | None = None  # a token condition (conditioned(tokens=...))
        if isinstance(unet, UNet2DConditionModel):
            dim = cfg.cross_attention_dim
            self.token_dim = int(dim if isinstance(dim, int) else dim[0])
            if class_tokens is not None:
                if class_tokens.dim != self.token_dim:
                    raise ValueError(
                        f"class tokens of width {class_tokens.dim} for a UNet whose "
                        f"cross_attention_dim is {self.token_dim}"
                    )
                self.class_tokens = class_tokens.eval().requires_grad_(False)
                with torch.no_grad():
                    null = torch.tensor([class_tokens.null_label], device=unet.device)
                    encoder_hidden_states = class_tokens.to(unet.device)(null)
            self.encoder_hidden_states = (
                check_tokens(encoder_hidden_states, self.token_dim)
                if encoder_hidden_states is not None
                else torch.zeros(1, 1, self.token_dim, device=unet.device)
            )
        elif class_tokens is not None:
            raise ValueError("class tokens need a UNet2DConditionModel (cross-attention)")
        self.sigmas = sigmas_from_scheduler(scheduler).to(unet.device)
        self.name = name
        self.class_labels = None
        self.guidance = 0.0
        if class_labels is not None or guidance != 0.0:
            self._check_condition(class_labels, guidance)
            self.class_labels, self.guidance = class_labels, float(guidance)
        for p in self.unet.parameters():
            p.requires_grad_(False)
        self._unet_runner = NetworkRunner(self.unet, "UNet")

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def network_input(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        """What the UNet sees: the VP-scaled noisy image, with ``cond`` concatenated if given."""
        inp = x / (1 + sigma**2).sqrt()
        if cond is not None:
            inp = torch.cat([inp, cond.to(inp.dtype)], dim=1)
        return inp

    def timestep_for_sigma(self, sigma: Tensor) -> Tensor:
        """The UNet's continuous timestep for each ``sigma`` (float64, on ``sigma``'s device),
        from the cached log grid: tensor operations only, no host sync, no log of the grid."""
        log_grid = self.log_sigmas
        if log_grid.device != sigma.device:  # x on another device than the prior: follow it
            log_grid = log_grid.to(sigma.device)
        return timestep_for_sigma(sigma.flatten(), self.sigmas, log_grid)

    @property
    def null_label(self) -> int | None:
        """The "no label" class of a class-conditional UNet (class embedding or class tokens)
        trained with label dropout (its last class), None for a prior without labels."""
        if self.class_tokens is not None:
            return self.class_tokens.null_label
        classes = self.unet.config.num_class_embeds
        return int(classes) - 1 if classes else None

    @property
    def evaluations_per_call(self) -> int:
        guided = (self.class_labels is not None or self.tokens is not None) and self.guidance != 0
        return 2 if guided else 1

    def _check_condition(self, class_labels: Tensor | None, guidance: float) -> None:
        if self.null_label is None:
            raise ValueError(
                "this prior's UNet takes no class label (neither num_class_embeds nor class "
                "tokens): class labels and guidance need a prior trained with `invdiff train "
                "pixel --class-conditional` or `--cross-attention` (a cross-attention UNet "
                "takes tokens=...)"
            )
        if class_labels is None:
            raise ValueError("guidance needs class_labels: the class to guide towards")
        if not isinstance(class_labels, Tensor) or class_labels.dtype not in (
            torch.int64,
            torch.int32,
        ):
            raise TypeError(
                f"class_labels must be an integer tensor, got {type(class_labels).__name__}"
            )
        if (
            class_labels.ndim > 1
            or (class_labels < 0).any()
            or (class_labels > self.null_label).any()
        ):
            raise ValueError(
                f"class_labels must be a scalar or one label per image in 0..{self.null_label - 1} "
                f"({self.null_label} is the null class), got {class_labels.tolist()}"
            )
        if not math.isfinite(guidance) or guidance < -1:
            raise ValueError(f"guidance must be a finite number >= -1, got {guidance}")

    def conditioned(
        self,
        class_labels: Tensor | int | None = None,
        guidance: float = 0.0,
        *,
        tokens: Tensor | None = None,
    ) -> PixelPrior:
        """This prior given a class (one label, or one per image) or, for a cross-attention
        UNet, a token sequence ``(N or 1, L, D)``, with classifier-free guidance
        ``w = guidance`` against the null class / null sequence (class docstring); the
        network and its weights are shared."""
        import copy

        if (class_labels is None) == (tokens is None):
            raise ValueError("give either class_labels or tokens (exactly one)")
        view = copy.copy(self)  # shares the UNet, its runner and the scheduler
        view.nfe = 0
        if tokens is not None:
            if self.encoder_hidden_states is None:
                raise ValueError(
                    "tokens need a cross-attention UNet (UNet2DConditionModel); this prior's "
                    f"UNet is a {type(self.unet).__name__}"
                )
            if not math.isfinite(guidance) or guidance < -1:
                raise ValueError(f"guidance must be a finite number >= -1, got {guidance}")
            view.tokens = check_tokens(tokens, self.token_dim).to(self.device)
            view.class_labels, view.guidance = None, float(guidance)
            return view
        if isinstance(class_labels, bool) or not isinstance(class_labels, Tensor | int):
            raise TypeError(
                f"class_labels must be an int or an integer tensor, got {class_labels!r}"
            )
        labels = class_labels if isinstance(class_labels, Tensor) else torch.tensor(class_labels)
        self._check_condition(labels, float(guidance))
        view.class_labels, view.guidance, view.tokens = labels, float(guidance), None
        return view

    def _null_kwargs(self, n: int, device: torch.device, dtype: torch.dtype) -> dict:
        """The UNet's keyword arguments of the unconditional model for a batch of ``n``."""
        kwargs: dict = {}
        if self.unet.config.num_class_embeds and self.class_tokens is None:
            # a class-conditional UNet trained with label dropout, no class: the null class
            kwargs["class_labels"] = torch.full((n,), self.null_label, device=device)
        if self.encoder_hidden_states is not None:
            hidden = self.encoder_hidden_states.to(device, dtype)
            kwargs["encoder_hidden_states"] = hidden.expand(n, *hidden.shape[1:])
        return kwargs

    def _cond_kwargs(self, n: int, device: torch.device, dtype: torch.dtype) -> dict | None:
        """The UNet's keyword arguments given the condition (None: no condition)."""
        if self.class_labels is None and self.tokens is None:
            return None
        kwargs = self._null_kwargs(n, device, dtype)
        if self.tokens is not None:
            hidden = self.tokens.to(device, dtype)
            kwargs["encoder_hidden_states"] = hidden.expand(n, *hidden.shape[1:])
            return kwargs
        labels = self.class_labels.to(device).expand(n)
        if self.class_tokens is not None:
            kwargs["encoder_hidden_states"] = self.class_tokens.to(device)(labels).to(dtype)
        else:
            kwargs["class_labels"] = labels
        return kwargs

    def denoise(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        t = self.timestep_for_sigma(sigma).to(torch.float32)
        inp = self.network_input(x, sigma, cond).to(weight_dtype(self.unet))
        n, dtype = x.shape[0], inp.dtype
        given = self._cond_kwargs(n, x.device, dtype)
        if given is None or self.guidance == 0.0:
            kwargs = given if given is not None else self._null_kwargs(n, x.device, dtype)
            out = self._unet_runner(inp, t, output=_sample, **kwargs).to(x.dtype)
            return x0_from_output(self.prediction_type, x, sigma, out)
        null = self._null_kwargs(n, x.device, dtype)
        tt = t.expand(n)
        if all(given[k].shape[1:] == null[k].shape[1:] for k in given):
            # both branches in one call on a doubled batch: the condition, then the null one
            both = {k: torch.cat([given[k], null[k]]) for k in given}
            out = self._unet_runner(
                torch.cat([inp, inp]), torch.cat([tt, tt]), output=_sample, **both
            ).to(x.dtype)
            out_c, out_u = out[:n], out[n:]
        else:  # token sequences of different lengths: two calls
            out_c = self._unet_runner(inp, tt, output=_sample, **given).to(x.dtype)
            out_u = self._unet_runner(inp, tt, output=_sample, **null).to(x.dtype)
        w = self.guidance
        return (1 + w) * x0_from_output(self.prediction_type, x, sigma, out_c) - w * (
            x0_from_output(self.prediction_type, x, sigma, out_u)
        )

    def _apply_network_options(self, options: NetworkOptions) -> None:
        self._unet_runner.configure(options)

    def metadata(self) -> dict:
        """What ``prior.json`` records: the kind (for ``invdiff.priors.load``) and the shapes."""
        return {
            "kind": self.kind,
            "in_shape": list(self.in_shape),
            "image_size": self.in_shape[-1],
            "prediction_type": self.prediction_type,
            "num_class_embeds": self.unet.config.num_class_embeds,
            **(
                {"class_tokens": self.class_tokens.metadata()}
                if self.class_tokens is not None
                else {}
            ),
        }

    def save(self, folder: str | Path, *, dtype: torch.dtype | None = None) -> Path:
        """Write a diffusers-style folder (``unet/``, ``scheduler/``, ``model_index.json``,
        ``prior.json``); ``dtype=torch.float16`` stores half-precision weights (loaded as fp32)."""
        import copy
        import json

        from invdiff.io import write_text

        folder = Path(folder)
        unet = copy.deepcopy(self.unet).to("cpu", dtype) if dtype is not None else self.unet
        unet.save_pretrained(folder / "unet")
        if self.class_tokens is not None:
            self.class_tokens.save(folder)
        write_text(folder / "prior.json", json.dumps(self.metadata(), indent=2) + "\n")
        self.scheduler.save_pretrained(folder / "scheduler")
        index = {
            "_class_name": "DDPMPipeline",
            "unet": ["diffusers", type(self.unet).__name__],
            "scheduler": ["diffusers", "DDPMScheduler"],
        }
        write_text(folder / "model_index.json", json.dumps(index) + "\n")
        return folder

    @classmethod
    def from_folder(
        cls, folder: str | Path, *, device: str | torch.device = "cpu", name: str = ""
    ) -> PixelPrior:
        """Load a diffusers checkpoint from disk, no hub access: the pipeline layout (``unet/`` +
        ``scheduler/``) or a single model (config and weights at the top, ``scheduler_config.json``
        beside them); see ``invdiff.priors.checks.find_layout``."""
        from invdiff.priors.checks import load_unet_and_scheduler, read_json

        folder = Path(folder)
        unet, scheduler = load_unet_and_scheduler(folder, device=device)
        tokens = None
        meta_path = folder / "prior.json"
        if meta_path.is_file() and not meta_path.is_symlink():
            meta = read_json(meta_path).get("class_tokens")
            if meta is not None:
                tokens = ClassTokens.load(folder, meta, device=device)
        return cls(unet, scheduler, name=name or folder.name, class_tokens=tokens)
