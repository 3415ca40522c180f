"""Turning a ``--device`` / ``device=`` text into a torch device, with one message for all."""

from __future__ import annotations

import torch


def resolve_device(spec: str | torch.device, option: str = "--device") -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1`` ... as a ``torch.device``.

    A name torch does not know, or CUDA asked for on a machine without it, is a ``ValueError``
    that says what to pass instead (before any model or data is loaded).
    """
    if isinstance(spec, torch.device):
        device = spec
    else:
        if not isinstance(spec, str):
            raise TypeError(f"{option} must be a device name like 'cpu' or 'cuda', got {spec!r}")
        if spec == "auto":
            spec = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(spec)
        except RuntimeError:
            raise ValueError(
                f"{option} {spec!r} is not a torch device; use auto, cpu, cuda or cuda:1"
            ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{option} {str(spec)!r} requested but CUDA is not available here; use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"{option} {str(spec)!r}: this machine has {torch.cuda.device_count()} CUDA "
                "device(s); use cuda:0 or another existing index"
            )
    elif device.type not in ("cpu", "mps"):
        raise ValueError(f"{option} {str(spec)!r} is not supported; use cpu or cuda")
    return device
