"""What every solver shares: the call signature, capability checks and the step callback.

A solver is a registered class with one ``__call__``::

    @SOLVERS.register("dps")
    class DPS(Solver):
        requires_operator = Operator          # any differentiable forward model
        requires_noise = (Gaussian, Poisson)
        def __call__(
            self, prior, operator, y, noise, *, steps, generator, callback=None, **hyper
        ): ...

``Solver.check`` compares the declared needs with what it was given (``isinstance``, never
``hasattr``) and raises a ``SolverMismatchError`` naming both before any work is done.
``Solver.budget`` says what a run costs in network evaluations (``invdiff.solvers.costs``), and
``Progress`` shows a run's network evaluations and noise level on stderr for every solver.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TextIO

import torch
from torch import Tensor

from invdiff.diffusion.steps import Callback, Step
from invdiff.noise import Gaussian, Noise, Poisson
from invdiff.operators.base import Operator
from invdiff.priors.base import ConditionalPrior, LatentPrior, Prior
from invdiff.solvers.costs import Budget
from invdiff.solvers.hyper import Hyper
from invdiff.solvers.hyper import check as check_hypers
from invdiff.solvers.hyper import describe as describe_hypers


class SolverMismatchError(TypeError):
    """A solver was paired with an operator, prior or noise model it cannot use."""


class NoiseLevelMismatchError(SolverMismatchError, ValueError):
    """The solver cannot use this noise level with this operator (e.g. DiffPIR's gradient
    data step for a nonlinear operator divides by sigma_y^2, so it needs sigma_y > 0)."""


class ShapeMismatchError(SolverMismatchError, ValueError):
    """The prior models images of another shape than the operator takes (a value mismatch as
    much as a pairing one, hence both base classes)."""


@dataclass(frozen=True)
class PosteriorBound:
    """An exact-posterior test case: on the test bed's ``operator`` kind (``"inpainting"``,
    ``"cs"``; the prior is the setting's), ``steps`` steps with ``hyper`` must give samples
    whose sliced-Wasserstein distance to the exact posterior is below ``bound`` times the
    prior's (0: exact, 1: ignores ``y``)."""

    operator: str
    steps: int
    bound: float
    hyper: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ContractSetting:
    """A solver's cheap setting for the registry-wide contract tests, as operators give
    ``example()``: the tests run every registered solver on it without a list to edit.

    ``prior`` names the kind of test prior (``"pixel"``, ``"latent"`` or ``"conditional"``,
    the test doubles with an exact posterior), ``operator`` a registered operator built for
    the prior's images with ``operator_args``; ``steps`` and ``hyper`` keep the run cheap
    (not good). ``stochastic`` says whether two seeds give different samples; ``posterior``
    lists the exact-posterior bounds the solver is held to (measured ratios beside them).
    """

    prior: str = "pixel"
    operator: str = "inpainting_random"
    operator_args: dict[str, Any] = field(default_factory=lambda: {"missing": 0.5, "seed": 1})
    steps: int = 5
    hyper: dict[str, Any] = field(default_factory=dict)
    stochastic: bool = True
    posterior: tuple[PosteriorBound, ...] = ()


class Solver:
    """Base class of the registered solvers (see the module docstring)."""

    registry_name: ClassVar[str] = ""
    #: the operator capability this solver needs
    requires_operator: ClassVar[type[Operator]] = Operator
    #: the prior capability this solver needs
    requires_prior: ClassVar[type[Prior]] = Prior
    #: the noise models it handles
    requires_noise: ClassVar[tuple[type[Noise], ...]] = (Gaussian, Poisson)
    #: an inpainting operator (``is_inpainting``) is needed, as RePaint's known half is a mask
    requires_inpainting: ClassVar[bool] = False
    #: operators outside this type need Gaussian noise with ``sigma_y > 0`` (None: any works)
    noiseless_needs_operator: ClassVar[type[Operator] | None] = None
    #: the declared hyperparameters (``invdiff.solvers.hyper``): default, type, range, doc
    hypers: ClassVar[dict[str, Hyper]] = {}
    #: the paper's default hyperparameters, derived from ``hypers`` (presets may override them)
    defaults: ClassVar[dict[str, Any]] = {}
    #: True when the solver differentiates through the prior network (DPS-like)
    differentiates_prior: ClassVar[bool] = False
    #: network evaluations per step (None: not declared; ``cost`` says it otherwise)
    nfe_per_step: ClassVar[int | None] = None
    #: the cheap setting the contract tests run it on (tests/test_solver_contract.py)
    contract: ClassVar[ContractSetting] = ContractSetting()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "hypers" in cls.__dict__:
            cls.defaults = {k: h.default for k, h in cls.hypers.items()}
        elif "defaults" in cls.__dict__:
            # a solver declared with plain defaults (e.g. outside the package): names only
            cls.hypers = {k: Hyper(v, "", kind=object) for k, v in cls.defaults.items()}

    def check(self, prior: Prior | type[Prior], operator: Operator, noise: Noise) -> None:
        """Raise a ``SolverMismatchError`` if this solver cannot use ``prior``, ``operator`` or
        ``noise``. ``prior`` may be a class, so that the command line checks a pairing before
        it loads any weights (``invdiff.priors.describe`` gives the class of a folder).

        Every capability is declared on the class (``requires_*``,
        ``noiseless_needs_operator``); ``invdiff.solve`` is the only caller before a run."""
        name = self.registry_name or type(self).__name__
        prior_type = prior if isinstance(prior, type) else type(prior)
        if not issubclass(prior_type, self.requires_prior):
            raise SolverMismatchError(
                f"solver {name!r} needs a {self.requires_prior.__name__}, got {prior_type.__name__}"
            )
        if not isinstance(operator, self.requires_operator):
            raise SolverMismatchError(
                f"solver {name!r} needs a {self.requires_operator.__name__} operator, but "
                f"{type(operator).__name__} ({operator.registry_name or 'unregistered'}) is "
                f"{'linear' if _is_linear(operator) else 'nonlinear'} without that capability; "
                f"pick another solver (invdiff.solvers.names()) or operator"
            )
        if not isinstance(noise, self.requires_noise):
            want = " or ".join(t.__name__ for t in self.requires_noise)
            raise SolverMismatchError(f"solver {name!r} handles {want} noise, got {noise!r}")
        if self.requires_inpainting and not type(operator).is_inpainting:
            raise SolverMismatchError(
                f"solver {name!r} needs an inpainting operator (an SVDOperator with "
                f"is_inpainting = True), got {type(operator).__name__} "
                f"({operator.registry_name or 'unregistered'}); use ddrm, ddnm, pigdm or dps "
                "for other operators"
            )
        needs = self.noiseless_needs_operator
        if (
            needs is not None
            and not isinstance(operator, needs)
            and isinstance(noise, Gaussian)
            and float(noise.sigma) == 0
        ):
            raise NoiseLevelMismatchError(
                f"solver {name!r} needs Gaussian noise with sigma_y > 0 for an operator that "
                f"is not a {needs.__name__} ({type(operator).__name__}, "
                f"{operator.registry_name or 'unregistered'}): its data step for such an "
                "operator divides by sigma_y^2; measure with noise or pick another solver"
            )
        _check_prior_fits(name, self.requires_prior, prior, operator)
        if isinstance(prior, ConditionalPrior) and (why := prior.mismatch(operator)) is not None:
            raise SolverMismatchError(f"solver {name!r}: {why}")

    def hyperparameters(self, hyper: dict[str, Any]) -> dict[str, Any]:
        """The paper defaults overridden by ``hyper``, each value checked against its declared
        type and range; a ``HyperparameterError`` names the solver, key, value and range."""
        return check_hypers(self.registry_name or type(self).__name__, self.hypers, hyper)

    @classmethod
    def describe(cls) -> list[tuple[str, Any, str, str]]:
        """``(name, default, valid values, doc)`` for each declared hyperparameter."""
        return describe_hypers(cls.hypers)

    def budget(self, steps: int, *, prior: Prior | None = None, **hyper: Any) -> Budget:
        """What ``steps`` steps cost in network evaluations, without running the network
        (``hyper`` checked and completed with the defaults first)."""
        return self._priced(steps, self.hyperparameters(hyper), prior)

    def _priced(self, steps: int, hp: dict[str, Any], prior: Prior | None) -> Budget:
        """``cost`` in evaluations per image: a guided prior evaluates its network twice per
        call (``Prior.evaluations_per_call``)."""
        budget = self.cost(steps, hp, prior)
        per_call = prior.evaluations_per_call if prior is not None else 1
        if budget.nfe is None or per_call == 1:
            return budget
        return replace(budget, nfe=budget.nfe * per_call)

    def cost(self, steps: int, hp: dict[str, Any], prior: Prior | None) -> Budget:
        """The cost of ``steps`` steps with the complete hyperparameters ``hp``:
        ``nfe_per_step`` evaluations a step (unknown when a solver does not declare it).
        ``prior`` makes a schedule-dependent count exact (DAPS)."""
        if self.nfe_per_step is None:
            return Budget(None)
        return Budget(steps * self.nfe_per_step)

    def steps_for_nfe(self, nfe: int, *, prior: Prior | None = None, **hyper: Any) -> int:
        """The most steps whose run costs at most ``nfe`` network evaluations.

        ``steps`` is each solver's own unit (DDPM steps, RePaint levels with resampling, DAPS
        annealing steps with an inner ODE); a budget in network evaluations is the unit that
        compares solvers, so suites and the command line can give ``nfe`` and each solver
        turns it into its steps here, through its declared ``cost``. ``prior`` makes a
        schedule-dependent count exact (DAPS). Raises a ``ValueError`` for a solver that makes
        no network evaluations (its steps are iterations: give ``steps``) or a budget below
        the cost of one step."""
        name = self.registry_name or type(self).__name__
        if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
            raise ValueError(f"nfe must be a positive integer, got {nfe!r}")
        hp = self.hyperparameters(hyper)

        def cost(steps: int) -> int | None:
            return self._priced(steps, hp, prior).nfe

        one = cost(1)
        if one is None or one == 0:
            why = "declares no cost" if one is None else "makes no network evaluations"
            raise ValueError(
                f"solver {name!r} {why}, so a budget in network evaluations does not set its "
                "steps: give steps (its iterations) instead of nfe"
            )
        if one > nfe:
            raise ValueError(
                f"solver {name!r} needs {one} network evaluations for one step with these "
                f"settings, more than the budget nfe = {nfe}; raise nfe"
            )
        # the cost grows with the steps: bisect for the last count that fits
        low, high = 1, 2
        while (c := cost(high)) is not None and c <= nfe:
            low, high = high, high * 2
        while high - low > 1:
            mid = (low + high) // 2
            c = cost(mid)
            low, high = (mid, high) if c is not None and c <= nfe else (low, mid)
        return low

    def nfe(self, steps: int, *, prior: Prior | None = None, **hyper: Any) -> int | None:
        """Network evaluations of a run of ``steps`` steps (``budget(...).nfe``; None when
        the solver has no formula in ``invdiff.solvers.costs``)."""
        return self.budget(steps, prior=prior, **hyper).nfe

    def __call__(
        self,
        prior: Prior,
        operator: Operator,
        y: Tensor,
        noise: Noise,
        *,
        steps: int,
        generator: torch.Generator,
        callback: Callback | None = None,
        **hyper: Any,
    ) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Progress:
    """A tqdm bar on ``stream`` (stderr) for one solver run: network evaluations done / budget,
    the solver's step and its current noise level.

    Solvers without a network (pinv, tikhonov, tv) count their steps instead. It is fed by two
    hooks that every solver goes through: ``Prior.observe`` (each network evaluation) and the
    step callback (step index and sigma), so no solver needs code of its own for it.
    """

    def __init__(
        self,
        name: str,
        budget: Budget,
        steps: int,
        *,
        stream: TextIO | None = None,
        per_call: int = 1,
    ) -> None:
        from tqdm import tqdm

        # a solver without a formula (nfe None) still counts its evaluations, without a total
        self.counts_network = budget.nfe != 0
        self.bar = tqdm(
            total=budget.nfe if self.counts_network else steps,
            desc=name,
            unit="NFE" if self.counts_network else "step",
            file=stream if stream is not None else sys.stderr,
            dynamic_ncols=True,
            mininterval=0.5,
        )
        self.step = ""
        self.per_call = per_call  # evaluations per image of one x0 call (guidance: 2)

    def network(self, sigma: float | Tensor) -> None:
        if self.counts_network:
            self.bar.update(self.per_call)

    def callback(self, step: Step) -> None:
        if not self.counts_network:
            # an exact pseudo-inverse takes one step whatever ``steps`` says
            self.bar.total = step.total
            self.bar.update(1)
        postfix = {"step": f"{step.index + 1}/{step.total}"}
        if step.sigma is not None:
            postfix["sigma"] = f"{step.sigma:.3g}"
        self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        self.bar.close()


def _check_prior_fits(
    name: str, requires: type[Prior], prior: Prior | type[Prior], operator: Operator
) -> None:
    """The prior's kind and image shape against the solver and the operator, before any work.

    A solver written for pixel priors cannot use a latent prior (its ``x0`` lives in latent
    space) or a conditional one (it passes no condition); the images the prior models must
    have the shape the operator takes. For a prior class (no weights loaded yet) only the kind
    is compared; the command line compares the shape from the prior's JSON files
    (``invdiff.priors.describe``).
    """

    prior_type = prior if isinstance(prior, type) else type(prior)
    for special in (LatentPrior, ConditionalPrior):
        if issubclass(prior_type, special) and not issubclass(requires, special):
            raise SolverMismatchError(
                f"solver {name!r} works on pixel-space priors; {prior_type.__name__} is a "
                f"{special.__name__}: use a solver made for it ("
                + ("latent_dps, psld, latent_daps" if special is LatentPrior else "sr3")
                + ") or a pixel prior"
            )
    if isinstance(prior, type):
        return
    shape = getattr(prior, "image_shape", None) if isinstance(prior, LatentPrior) else None
    shape = shape or getattr(prior, "in_shape", None)
    if shape is not None and tuple(shape) != tuple(operator.in_shape):
        op_name = operator.registry_name or type(operator).__name__
        raise ShapeMismatchError(
            f"the prior models images of shape {tuple(shape)} (C, H, W) but the operator "
            f"{op_name!r} takes {tuple(operator.in_shape)}: use a prior trained on images of "
            f"the operator's shape, or an operator (problem) for images of shape {tuple(shape)}"
        )


def _is_linear(operator: Operator) -> bool:
    from invdiff.operators.base import LinearOperator

    return isinstance(operator, LinearOperator)
