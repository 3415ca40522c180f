"""Exponential moving average of model weights (Polyak averaging; as in Ho et al. 2020, App. B).

After optimiser step ``k`` (counting from 0) every floating-point parameter/buffer ``p`` updates
its shadow ``e <- d_k e + (1 - d_k) p`` with the warm-up decay
``d_k = min(decay, (1 + k) / (10 + k))``, so early shadows are not dominated by the random
initialisation. The shadow copy is what sampling and the exported prior use.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Holds ``shadow``, a frozen copy of ``model`` whose weights are the moving average."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)
        self.updates = 0

    def current_decay(self) -> float:
        k = self.updates
        return min(self.decay, (1 + k) / (10 + k))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        model_state = model.state_dict()
        for name, e in self.shadow.state_dict().items():
            p = model_state[name]
            if e.is_floating_point():
                e.mul_(d).add_(p.detach().to(e.dtype), alpha=1 - d)
            else:
                e.copy_(p)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        self.shadow.load_state_dict(state["shadow"])
