"""The contract every registered solver keeps, run on each one's declared cheap setting.

Parametrised over ``invdiff.solvers.names()``: a solver added as one new file (registered,
with its ``contract`` setting, as operators give ``example()``) is run here without editing
any list. Each contract check is a function of the solver's registry name, so that
``test_a_toy_solver_is_run_by_the_contract`` registers a solver inside a test and calls the
same checks on it. The setting's ``prior`` names one of the exact test doubles of
``tests/solver_testbed.py``: the Gaussian mixture (pixel), the linear-decoder latent mixture
(latent) or the exact conditional posterior (conditional).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from solver_testbed import SIGMA_Y, ExactPosteriorPrior, make_gmm_prior, make_latent_prior
from torch import Tensor

import invdiff
from invdiff.noise import Gaussian, Noise
from invdiff.operators.base import LinearOperator, Operator
from invdiff.priors.base import Prior
from invdiff.registry import SOLVERS
from invdiff.solvers import ContractSetting, HyperparameterError, Solver, Step
from invdiff.solvers.hyper import Hyper


class Setup:
    """A solver's contract setting made concrete: prior, operator, noise and a batch of y."""

    def __init__(self, name: str, n: int = 3) -> None:
        self.name = name
        self.solver = invdiff.solvers.get(name)
        setting: ContractSetting = self.solver.contract
        self.setting = setting
        image_shape = (1, 4, 4)
        self.operator = invdiff.operators.get(
            setting.operator, in_shape=image_shape, **setting.operator_args
        )
        self.noise = Gaussian(SIGMA_Y)
        g = torch.Generator().manual_seed(2)
        if setting.prior == "latent":
            self.prior: Prior = make_latent_prior()
            x = self.prior.decode(self.prior.latent.sample(n, g))
        else:
            pixel = make_gmm_prior()
            x = pixel.sample(n, g)
            self.prior = pixel
            if setting.prior == "conditional":
                self.prior = ExactPosteriorPrior(pixel, self.operator.matrix(), SIGMA_Y)
        with torch.no_grad():
            self.y = self.noise(self.operator(x), g)
        self.image_shape = image_shape

    def solve(self, y: Tensor | None = None, seed: int = 0, **extra: Any) -> Tensor:
        return invdiff.solve(
            self.name,
            prior=self.prior,
            operator=self.operator,
            y=self.y if y is None else y,
            noise=self.noise,
            steps=self.setting.steps,
            generator=torch.Generator().manual_seed(seed),
            **{**self.setting.hyper, **extra},
        )


# ------------------------------------------------------------------ the checks, one per rule


def check_runs(name: str) -> None:
    """Images of the operator's input shape, finite, one per measurement."""
    setup = Setup(name)
    out = setup.solve()
    assert out.shape == (setup.y.shape[0], *setup.image_shape)
    assert torch.isfinite(out).all()


def check_deterministic(name: str) -> None:
    """The same generator gives the same samples; another seed another (when stochastic)."""
    setup = Setup(name)
    first = setup.solve()
    assert torch.equal(first, setup.solve())
    if setup.setting.stochastic:
        assert not torch.allclose(first, setup.solve(seed=1))


def check_batch_independent(name: str) -> None:
    """Sample 0 does not depend on its batch mates' measurements."""
    setup = Setup(name)
    y_b = torch.cat([setup.y[:1], 3 * setup.y[1:]])
    a, b = setup.solve(), setup.solve(y=y_b)
    torch.testing.assert_close(a[0], b[0], atol=2e-5, rtol=1e-4)


def check_callback(name: str) -> None:
    """The callback sees every step in order, with the run's total."""
    setup = Setup(name)
    seen: list[Step] = []
    setup.solve(callback=seen.append)
    assert seen, "callback never called"
    assert [s.index for s in seen] == list(range(len(seen)))
    assert all(s.total == len(seen) for s in seen)


def check_hyperparameters_declared(name: str) -> None:
    """Defaults pass their own declared ranges; unknown and out-of-range values fail in
    ``solve()`` before any network evaluation, naming the solver, the key and the value."""
    setup = Setup(name)
    solver = setup.solver
    assert solver.hyperparameters({}) == solver.defaults
    assert all(spec.doc for spec in solver.hypers.values()), "every hyperparameter has a doc"
    bad: list[tuple[str, Any]] = [("not_a_hyperparameter", 1)]
    for key, spec in solver.hypers.items():
        if spec.ge is not None:
            bad.append((key, spec.ge - 1))
        if spec.gt is not None:
            bad.append((key, spec.gt))
        if spec.le is not None:
            bad.append((key, spec.le + 1))
        if spec.lt is not None:
            bad.append((key, spec.lt))
        if spec.choices is not None:
            bad.append((key, "no such choice"))
    for key, value in bad:
        with pytest.raises(HyperparameterError, match=key) as err:
            setup.solve(**{key: value})
        assert name in str(err.value)
        assert setup.prior.nfe == 0


def check_cost_counts_the_run(name: str) -> None:
    """The declared cost (``invdiff.solvers.budget``) is the number of network evaluations a
    run makes (a solver that declares none is reported as unknown, not wrong)."""
    setup = Setup(name)
    budget = invdiff.solvers.budget(
        name, setup.setting.steps, prior=setup.prior, **setup.setting.hyper
    )
    setup.prior.nfe = 0
    setup.solve()
    assert budget.nfe is None or budget.nfe == setup.prior.nfe


CHECKS = (
    check_runs,
    check_cost_counts_the_run,
    check_deterministic,
    check_batch_independent,
    check_callback,
    check_hyperparameters_declared,
)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", invdiff.solvers.names())
def test_contract(name: str, check) -> None:
    check(name)


# ------------------------------------------------------------------ a solver added in one file


class ToyProjection(Solver):
    """A toy: x = A^+ y blended with the prior's denoised noise, ``weight`` of the latter."""

    requires_operator: ClassVar[type[Operator]] = LinearOperator
    requires_noise: ClassVar[tuple[type[Noise], ...]] = (Gaussian,)
    contract = ContractSetting(steps=3)
    nfe_per_step = 1
    hypers: ClassVar[dict[str, Hyper]] = {
        "weight": Hyper(0.1, "share of the prior's sample in the result", ge=0, le=1),
    }

    def __call__(self, prior, operator, y, noise, *, steps, generator, callback=None, **hyper):
        weight = self.hyperparameters(hyper)["weight"]
        data = operator.pinv(y)
        z = torch.randn(data.shape, generator=generator)
        x = prior.sigma_max * z
        for i in range(steps):
            sigma = prior.sigma_max * (1 - (i + 1) / (steps + 1))
            with torch.no_grad():
                x0 = prior.x0(x, max(sigma, prior.sigma_min))
            x = x0 + sigma * torch.randn(data.shape, generator=generator)
            if callback is not None:
                callback(Step(i, steps, x, x0, sigma))
        return (1 - weight) * data + weight * x0


def test_a_toy_solver_is_run_by_the_contract() -> None:
    """A solver registered in one place is picked up by the contract checks (no list edited),
    and the registration does not outlive the test."""
    with SOLVERS.registered("toy_projection", ToyProjection):
        assert "toy_projection" in invdiff.solvers.names()
        for check in CHECKS:
            check("toy_projection")
    assert "toy_projection" not in invdiff.solvers.names()


def test_hyperparameter_errors_name_file_key_value_and_range() -> None:
    with pytest.raises(HyperparameterError, match=r"'ddrm'.*eta = 2\.0.*\[0, 1\]"):
        invdiff.solvers.get("ddrm").hyperparameters({"eta": 2.0})
    with pytest.raises(HyperparameterError, match=r"likelihood.*one of 'gaussian', 'paper'"):
        invdiff.solvers.get("dps").hyperparameters({"likelihood": "exact"})
    with pytest.raises(HyperparameterError, match="integer"):
        invdiff.solvers.get("daps").hyperparameters({"ode_steps": 2.5})
    with pytest.raises(HyperparameterError, match="true or false"):
        invdiff.solvers.get("repaint").hyperparameters({"clip_x0": 1})
    assert invdiff.solvers.get("tikhonov").hyperparameters({"lam": None}) == {"lam": None}
    with pytest.raises(ValueError):  # still a ValueError (and a TypeError) for old callers
        invdiff.solvers.budget("ddrm", 10, eta=-1.0)


def test_declared_capabilities_are_checked_before_loading() -> None:
    """DiffPIR's nonlinear data step needs sigma_y > 0; RePaint needs an inpainting operator:
    both are refused by ``check`` with a prior class, as the bench does before loading."""
    from invdiff.priors.pixel import PixelPrior
    from invdiff.solvers.base import NoiseLevelMismatchError, SolverMismatchError

    nonlinear = invdiff.operators.get("phase_retrieval", in_shape=(1, 4, 4))
    diffpir = invdiff.solvers.get("diffpir")
    with pytest.raises(NoiseLevelMismatchError, match="sigma_y > 0"):
        diffpir.check(PixelPrior, nonlinear, Gaussian(0.0))
    diffpir.check(PixelPrior, nonlinear, Gaussian(0.05))
    blur = invdiff.operators.get("gaussian_blur", in_shape=(1, 4, 4), size=3, sigma=1.0)
    diffpir.check(PixelPrior, blur, Gaussian(0.0))  # linear: the proximal step needs no noise
    with pytest.raises(SolverMismatchError, match="inpainting"):
        invdiff.solvers.get("repaint").check(PixelPrior, blur, Gaussian(0.05))


def test_a_suite_with_an_out_of_range_hyperparameter_fails_at_parse_time(tmp_path) -> None:
    """The suite parser goes through the same declared ranges: the message names the file,
    the solver, the key, the value and the valid range, before any data or prior loads."""
    from pathlib import Path

    from invdiff.bench.suite import SuiteError, load

    quick = Path(__file__).parents[1] / "benchmarks" / "quick.toml"
    bad = tmp_path / "bad.toml"
    bad.write_text(
        quick.read_text().replace('name = "ddrm"\n', 'name = "ddrm"\nhyper = { eta = 2.0 }\n', 1)
    )
    with pytest.raises(SuiteError, match=r"bad\.toml(.|\n)*'ddrm'.*eta = 2\.0.*\[0, 1\]"):
        load(bad)
