"""How a prior evaluates its network: precision, compilation, memory layout and checkpointing.

Solvers and samplers see a prior only through ``prior.x0``, so every choice made here applies to
all of them without a change to their code:

- ``precision="bf16"`` runs the network under ``torch.autocast`` in bfloat16 (CPU and CUDA); the
  output is returned in float32, so the solver's own arithmetic (DDPM posteriors, likelihood
  steps, gradients with respect to ``x``) stays in float32.
- ``compile=True`` evaluates ``torch.compile(network)``. Compilation happens lazily on the first
  call; where the platform cannot compile (no C++ compiler, an unsupported Python), one warning
  line says so and the eager network is used from then on.
- ``channels_last=True`` stores the weights and feeds the input in NHWC order, which the
  convolution kernels of oneDNN (CPU) and cuDNN (tensor cores) prefer.
- ``gradient_checkpointing=True`` keeps only block inputs when autograd records the call (DPS-like
  solvers differentiate ``x0`` with respect to ``x``) and recomputes each block's activations in
  the backward pass, block by block (``torch.utils.checkpoint`` inside the diffusers blocks; one
  checkpoint around the whole call for other networks): the peak memory of a step drops from the
  whole UNet graph towards one block's worth, for about one extra forward evaluation per step.

The defaults (fp32, eager, contiguous, no checkpointing) evaluate exactly the plain network.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch._dynamo.exc import TorchDynamoException

PRECISIONS = ("fp32", "bf16")
_AUTOCAST_DTYPE = {"bf16": torch.bfloat16}


class CompileFallbackWarning(RuntimeWarning):
    """``torch.compile`` could not compile the network on this platform; eager is used."""


@dataclass(frozen=True)
class NetworkOptions:
    """How a prior's network is evaluated (see the module docstring)."""

    precision: str = "fp32"
    compile: bool = False
    channels_last: bool = False
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("compile", "channels_last", "gradient_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def describe(self) -> str:
        """A short label for logs and benchmark rows, e.g. ``bf16+compile``."""
        parts = [self.precision]
        parts += [name for name in ("compile", "channels_last") if getattr(self, name)]
        if self.gradient_checkpointing:
            parts.append("checkpointing")
        return "+".join(parts)


def _compile_failure(err: BaseException) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first}"[:200]


def compile_unavailable_reason() -> str | None:
    """Why ``torch.compile`` cannot run here (None when it can be tried)."""
    import torch._dynamo

    try:
        torch._dynamo.is_dynamo_supported()
    except RuntimeError as err:  # raised with the reason (e.g. an unsupported Python)
        return str(err).strip().splitlines()[0]
    if not torch._dynamo.is_dynamo_supported():
        return f"torch.compile does not support Python {sys.version.split()[0]}"
    return None


class NetworkRunner:
    """Evaluates ``fn(*args, **kwargs)`` (``module`` or one of its methods) under a prior's
    ``NetworkOptions``.

    The first argument is the image-shaped network input; the output is cast back to the
    input's dtype (float32 in the library). One runner per network: it owns the compiled
    module and remembers a compilation failure so that it is reported once.
    """

    def __init__(
        self, module: nn.Module, name: str = "network", fn: Callable[..., Any] | None = None
    ) -> None:
        self.module = module
        #: what is evaluated: the module itself, or one of its methods (a VAE's ``decode``)
        self.fn = fn if fn is not None else module
        self.name = name
        self.options = NetworkOptions()
        self._compiled: Callable[..., Any] | None = None
        self._compile_failed = False

    @property
    def checkpoints_blocks(self) -> bool:
        """Whether the network checkpoints block by block itself (diffusers models do)."""
        from diffusers.models.modeling_utils import ModelMixin

        return isinstance(self.module, ModelMixin) and bool(
            self.module._supports_gradient_checkpointing
        )

    def configure(self, options: NetworkOptions) -> None:
        if options.gradient_checkpointing != self.options.gradient_checkpointing:
            if self.checkpoints_blocks:
                # block by block (each ResNet block is recomputed alone in the backward pass):
                # the peak holds one block's activations. One checkpoint around the whole
                # network would recompute all of them at once and keep the peak where it was.
                if options.gradient_checkpointing:
                    self.module.enable_gradient_checkpointing()
                else:
                    self.module.disable_gradient_checkpointing()
        if options.channels_last != self.options.channels_last:
            fmt = torch.channels_last if options.channels_last else torch.contiguous_format
            self.module.to(memory_format=fmt)
        if options.compile and self._compiled is None and not self._compile_failed:
            reason = compile_unavailable_reason()
            if reason is None:
                self._compiled = torch.compile(self.fn)
            else:
                self._fallback(reason)
        self.options = options

    def _fallback(self, reason: str) -> None:
        self._compile_failed = True
        self._compiled = None
        warnings.warn(
            f"torch.compile of the {self.name} is not available here ({reason}); "
            "running it uncompiled",
            CompileFallbackWarning,
            stacklevel=3,
        )

    def _call(self, inp: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if self.options.compile and self._compiled is not None:
            try:
                return self._compiled(inp, *args, **kwargs)
            except TorchDynamoException as err:  # the compiler failed, not the network
                self._fallback(_compile_failure(err))
        return self.fn(inp, *args, **kwargs)

    def __call__(
        self, inp: Tensor, *args: Any, output: Callable[[Any], Tensor], **kwargs: Any
    ) -> Tensor:
        """``output(module(inp, *args, **kwargs))`` with the configured options.

        ``output`` picks the tensor from the module's return value (diffusers returns a
        dataclass); it runs inside the checkpointed region so that only tensors cross it.
        """
        opts = self.options
        dtype = inp.dtype
        if opts.channels_last and inp.ndim == 4:
            inp = inp.contiguous(memory_format=torch.channels_last)

        def run(inp: Tensor, *args: Any) -> Tensor:
            with torch.autocast(
                inp.device.type,
                dtype=_AUTOCAST_DTYPE.get(opts.precision, torch.bfloat16),
                enabled=opts.precision != "fp32",
            ):
                out = output(self._call(inp, *args, **kwargs))
            return out.to(dtype)

        if (
            opts.gradient_checkpointing
            and not self.checkpoints_blocks
            and torch.is_grad_enabled()
            and inp.requires_grad
        ):
            from torch.utils.checkpoint import checkpoint

            # non-reentrant: gradients reach inputs that need them even when the weights do
            # not, and the RNG state is restored for the recomputation
            return checkpoint(run, inp, *args, use_reentrant=False)
        return run(inp, *args)


def weight_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of a network's weights, read off its first parameter.

    diffusers' ``ModelMixin.dtype`` walks every parameter and module on each access (about a
    millisecond for a small UNet), which the priors would pay once per network call."""
    for p in module.parameters():
        return p.dtype
    return torch.get_default_dtype()


def with_options(current: NetworkOptions, **changes: Any) -> NetworkOptions:
    """``current`` with the given fields replaced (``None`` leaves a field as it is)."""
    return replace(current, **{k: v for k, v in changes.items() if v is not None})


def add_network_arguments(parser: argparse.ArgumentParser, *, checkpointing: bool) -> None:
    """``--precision``, ``--compile`` (and ``--checkpointing``) for commands that run priors.

    The defaults are ``None`` so that a command can tell "not given" from "fp32"/"off" (a
    suite file may set them; the command line overrides it).
    """
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="network precision: fp32 (default) or bf16 autocast, outputs in fp32",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the network (falls back to eager with a warning where it cannot)",
    )
    if checkpointing:
        parser.add_argument(
            "--checkpointing",
            action="store_true",
            default=None,
            help="gradient checkpointing of the network: less memory for DPS-like solvers, "
            "about one more forward pass per step",
        )


def network_options_from_args(args: argparse.Namespace) -> NetworkOptions:
    """The ``NetworkOptions`` selected by ``add_network_arguments`` (unset: the defaults)."""
    return NetworkOptions(
        precision=args.precision or "fp32",
        compile=bool(args.compile),
        gradient_checkpointing=bool(vars(args).get("checkpointing")),
    )
