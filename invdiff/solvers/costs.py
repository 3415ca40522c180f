"""What a solver run costs, in network evaluations (NFE), computed without running the network.

``steps`` means different things to different solvers (DDPM steps, RePaint levels with
resampling, DAPS annealing steps with an inner ODE), so the same ``--steps 100`` costs 100
network evaluations for DPS and about 910 for RePaint. ``budget(name, steps, hyper, prior)``
returns the exact count of ``Prior.x0`` calls a run will make (plus, for DAPS, the Langevin
steps, which evaluate the operator but not the network). Each solver states its own count,
beside its loop: ``Solver.nfe_per_step`` (one network evaluation per step for most, none for
the prior-free baselines), or a ``Solver.cost`` of its own where the count depends on a
schedule (RePaint's and DDNM's jumps, DAPS's ODE). ``tests/test_progress.py`` checks each
against a counted run, so a solver that changes its loop without its count fails there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """The cost of one solver run."""

    nfe: int | None  # network evaluations (Prior.x0 / eps / score calls); None: no formula
    langevin_steps: int = 0  # inner Langevin steps (operator gradients, no network)

    def describe(self) -> str:
        if self.nfe is None:
            return "an unknown number of network evaluations (no formula for this solver)"
        text = f"{self.nfe:,} network evaluation{'s' if self.nfe != 1 else ''}"
        if self.langevin_steps:
            text += f" + {self.langevin_steps:,} Langevin steps (operator only, no network)"
        return text
