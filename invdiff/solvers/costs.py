"""What a solver run costs, in network evaluations (NFE), computed without running the network.

``steps`` means different things to different solvers (DDPM steps, RePaint levels with
resampling, DAPS annealing steps with an inner ODE), so the same ``--steps 100`` costs 100
network evaluations for DPS and about 910 for RePaint. ``budget(name, steps, hyper, prior)``
returns the exact count of ``Prior.x0`` calls a run will make (plus, for DAPS, the Langevin
steps, which evaluate the operator but not the network). The formulas live here, in one table,
next to nothing else; ``tests/test_progress.py`` checks each against a counted run, so a solver
that changes its loop without changing its formula fails there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from invdiff.priors.base import Prior

if TYPE_CHECKING:
    from invdiff.solvers.base import Solver


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


def _one_per_step(steps: int, hp: dict[str, Any], prior: Prior | None) -> Budget:
    return Budget(steps)


def _none(steps: int, hp: dict[str, Any], prior: Prior | None) -> Budget:
    return Budget(0)


def _jumps(length_key: str, repeat_key: str) -> Callable[..., Budget]:
    """Solvers walking a RePaint jump schedule: one evaluation per downward step."""

    def count(steps: int, hp: dict[str, Any], prior: Prior | None) -> Budget:
        from invdiff.solvers.repaint import jump_schedule

        schedule = jump_schedule(steps, int(hp[length_key]), int(hp[repeat_key]))
        return Budget(sum(b < a for a, b in zip(schedule[:-1], schedule[1:])))

    return count


def _annealing(steps: int, hp: dict[str, Any], prior: Prior | None) -> Budget:
    """DAPS: per annealing step, an Euler ODE of ``ode_steps`` evaluations (one when the level
    is already at the ODE's floor), then ``langevin_steps`` network-free Langevin steps."""
    ode_steps = int(hp["ode_steps"])
    langevin = steps * int(hp["langevin_steps"])
    if prior is None:
        return Budget(steps * ode_steps, langevin)
    from invdiff.solvers.daps import annealing_sigmas

    sigmas = annealing_sigmas(prior, steps, hp["sigma_max"], hp["sigma_min"], hp["rho"])
    lo = max(float(hp["ode_sigma_min"]), prior.sigma_min)
    nfe = sum(ode_steps if s > lo and ode_steps > 1 else 1 for s in sigmas[:steps])
    return Budget(nfe, langevin)


#: registry name -> budget(steps, hyperparameters with defaults, prior or None)
FORMULAS: dict[str, Callable[[int, dict[str, Any], Prior | None], Budget]] = {
    "dps": _one_per_step,
    "pigdm": _one_per_step,
    "ddrm": _one_per_step,
    "diffpir": _one_per_step,
    "red_diff": _one_per_step,
    "sr3": _one_per_step,
    "latent_dps": _one_per_step,
    "psld": _one_per_step,
    "repaint": _jumps("jump_length", "jump_n_sample"),
    "ddnm": _jumps("travel_length", "travel_repeat"),
    "daps": _annealing,
    "latent_daps": _annealing,
    "pinv": _none,
    "tikhonov": _none,
    "tv": _none,
}


def solver_budget(
    solver: Solver, steps: int, hyper: dict[str, Any] | None = None, prior: Prior | None = None
) -> Budget:
    """The cost of running ``solver`` for ``steps`` steps with ``hyper`` (defaults filled in).
    ``prior`` makes the DAPS count exact (its ODE length depends on the prior's noise range);
    without it the count is the paper's ``steps x ode_steps``. A solver registered outside the
    package, without a formula here, gets ``Budget(None)``."""
    hp = solver.hyperparameters(dict(hyper or {}))
    formula = FORMULAS.get(solver.registry_name)
    return formula(steps, hp, prior) if formula is not None else Budget(None)


def budget(
    name: str, steps: int, hyper: dict[str, Any] | None = None, prior: Prior | None = None
) -> Budget:
    """``solver_budget`` of the solver registered as ``name``."""
    from invdiff.solvers import get

    return solver_budget(get(name), steps, hyper, prior)
