"""The solvers' noise grid: ``invdiff.diffusion.grid_sigmas`` and the ``grid`` / ``sigma_max``
hyperparameters every pixel diffusion solver that walks a grid declares (``GRID_HYPERS``).

Parametrised over the registry: a solver that declares the grid hyperparameters is run with
each grid on its contract setting, and its declared cost is checked against the count.
"""

from __future__ import annotations

import pytest
import torch
from solver_testbed import make_gmm_prior
from test_solver_contract import Setup

import invdiff
from invdiff.diffusion import GRIDS, LINEAR_SIGMA_MAX, grid_sigmas, vp_sigmas_for_steps
from invdiff.solvers import HyperparameterError
from invdiff.solvers.common import GRID_HYPERS


@pytest.fixture(scope="module")
def prior() -> invdiff.priors.Prior:
    return make_gmm_prior()


@pytest.mark.parametrize("steps", [1, 2, 5, 20, 100, 1000])
def test_ddpm_grid_is_the_strided_prior_grid_bit_for_bit(prior, steps: int) -> None:
    got = grid_sigmas(prior, steps, "ddpm")
    want = vp_sigmas_for_steps(prior, steps)
    assert got.dtype == want.dtype == torch.float64
    assert torch.equal(got, want)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("steps", [2, 7, 50])
def test_grids_descend_within_the_prior_range(prior, grid: str, steps: int) -> None:
    sigmas = grid_sigmas(prior, steps, grid)
    assert sigmas.shape == (steps,) and sigmas.dtype == torch.float64
    assert bool((sigmas[1:] < sigmas[:-1]).all()), "strictly descending"
    assert float(sigmas[-1]) >= prior.sigma_min * (1 - 1e-9)
    assert float(sigmas[0]) <= prior.sigma_max * (1 + 1e-6)


def test_grid_endpoints(prior) -> None:
    lo, top = prior.sigma_min, prior.sigma_max
    ddpm = grid_sigmas(prior, 10, "ddpm")
    assert float(ddpm[0]) == pytest.approx(top) and float(ddpm[-1]) == pytest.approx(lo)
    karras = grid_sigmas(prior, 10, "karras")
    assert float(karras[0]) == pytest.approx(top) and float(karras[-1]) == pytest.approx(lo)
    # linear: equal steps from the start level down to s_min (deepinv's DDRM grid)
    linear = grid_sigmas(prior, 10, "linear")
    assert float(linear[0]) == pytest.approx(LINEAR_SIGMA_MAX)
    assert float(linear[-1]) == pytest.approx(lo)
    gaps = (linear[:-1] - linear[1:]).tolist()
    assert gaps == pytest.approx([(LINEAR_SIGMA_MAX - lo) / 9] * 9)
    assert grid_sigmas(prior, 1, "linear").tolist() == pytest.approx([LINEAR_SIGMA_MAX])
    # a given start level, clipped to the trained range
    assert float(grid_sigmas(prior, 4, "linear", 5.0)[0]) == pytest.approx(5.0)
    assert float(grid_sigmas(prior, 4, "karras", 1e6)[0]) == pytest.approx(top)
    assert float(grid_sigmas(prior, 4, "karras", 3.0)[0]) == pytest.approx(3.0)


def test_ddpm_grid_below_a_start_level(prior) -> None:
    """``sigma_max`` on the ddpm grid strides only the prior's levels at or below it."""
    levels = prior.sigmas.double()
    sigmas = grid_sigmas(prior, 6, "ddpm", 2.0)
    assert float(sigmas[0]) <= 2.0 and float(sigmas[-1]) == pytest.approx(prior.sigma_min)
    assert all(bool((levels == s).any()) for s in sigmas), "levels of the prior's own grid"
    below = int((levels <= 2.0).sum())
    with pytest.raises(ValueError, match="steps"):
        grid_sigmas(prior, below + 1, "ddpm", 2.0)


def test_bad_grid_arguments_are_refused(prior) -> None:
    with pytest.raises(ValueError, match="grid must be one of"):
        grid_sigmas(prior, 10, "cosine")
    with pytest.raises(ValueError, match="steps"):
        grid_sigmas(prior, 0, "linear")
    with pytest.raises(ValueError, match="sigma_max"):
        grid_sigmas(prior, 10, "linear", 0.0)


GRID_SOLVERS = [
    name
    for name in invdiff.solvers.names()
    if set(GRID_HYPERS) <= set(invdiff.solvers.get(name).hypers)
]


def test_the_pixel_diffusion_solvers_declare_the_grid() -> None:
    """One declaration, merged into each solver's ``hypers`` (only the default grid varies)."""
    want = {"ddrm", "ddnm", "pigdm", "diffpir", "dps", "repaint", "red_diff"}
    assert want <= set(GRID_SOLVERS)
    for name in GRID_SOLVERS:
        hypers = invdiff.solvers.get(name).hypers
        assert hypers["sigma_max"] is GRID_HYPERS["sigma_max"]
        assert hypers["grid"].choices == GRIDS and hypers["grid"].default in GRIDS


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("name", GRID_SOLVERS)
def test_every_grid_solver_runs_on_every_grid(name: str, grid: str) -> None:
    """Finite images of the right shape, and the declared cost is the counted one."""
    setup = Setup(name)
    budget = invdiff.solvers.budget(
        name, setup.setting.steps, prior=setup.prior, **{**setup.setting.hyper, "grid": grid}
    )
    setup.prior.nfe = 0
    out = setup.solve(grid=grid)
    assert out.shape == (setup.y.shape[0], *setup.image_shape)
    assert torch.isfinite(out).all()
    assert budget.nfe is None or budget.nfe == setup.prior.nfe


@pytest.mark.parametrize("name", GRID_SOLVERS)
def test_an_unknown_grid_is_refused_before_any_network_evaluation(name: str) -> None:
    setup = Setup(name)
    setup.prior.nfe = 0
    with pytest.raises(HyperparameterError, match=r"grid.*one of 'ddpm', 'linear', 'karras'"):
        setup.solve(grid="cosine")
    with pytest.raises(HyperparameterError, match="sigma_max"):
        setup.solve(sigma_max=-1.0)
    assert setup.prior.nfe == 0


@pytest.mark.parametrize("name", ["ddrm", "diffpir", "dps"])
@pytest.mark.parametrize("grid", GRIDS)
def test_the_solver_evaluates_the_prior_on_its_grid(name: str, grid: str) -> None:
    """The levels the network sees are ``grid_sigmas``'s, in order (no hidden second grid)."""
    setup = Setup(name)
    seen: list[float] = []
    x0 = setup.prior.x0

    def record(x, sigma, *args, **kwargs):  # noqa: ANN001, ANN202
        seen.append(float(torch.as_tensor(sigma).flatten()[0]))
        return x0(x, sigma, *args, **kwargs)

    setup.prior.x0 = record  # type: ignore[method-assign]
    setup.solve(grid=grid, sigma_max=3.0)
    want = grid_sigmas(setup.prior, setup.setting.steps, grid, 3.0).tolist()
    assert seen == pytest.approx(want, rel=1e-6)
