"""Solvers against the exact posterior across mixtures, operators, noise levels and budgets.

The widened test bed of ``solver_testbed``: the anisotropic 24-d / 6-component mixture
``m24`` with random inpainting, a dense compressed-sensing matrix, 2x average pooling and a
3 x 3 Gaussian blur, at ``sigma_y`` 0.01 and 0.1. Bounds are written beside each solver
(``BOUNDS``): the posterior ``ratio`` (SW distance to exact samples over the prior's) that the
solver must stay under, at the larger of its two step counts. The full grid, with both
mixtures and more samples, is ``scripts/solver_posterior_report.py``
(``benchmarks/results/posterior/grid.txt``).
"""

from __future__ import annotations

import functools

import pytest
import torch
from solver_testbed import (
    image_shape,
    make_gmm_prior,
    make_operator,
    make_problem,
    posterior_fit,
    run_solver,
)

import invdiff
from invdiff.noise import Gaussian

N = 96
#: the ends of the range (the historical test bed holds sigma_y = 0.05)
SIGMA_YS = (0.01, 0.1)

#: solver -> (steps, doubled steps, operators it is held to here, ratio bound at N = 96 samples,
#: where the sampling floor alone is 0.1-0.2). The committed grid has every operator and the
#: figures at N = 256. DPS's isotropic likelihood (Chung et al. 2023, Eq. 16: N(A x0_hat, v I))
#: cannot weigh directions of small singular values apart from large ones, so it is held to
#: inpainting here and to beating the prior in the grid (see its docstring).
SOLVERS = {
    "pigdm": (25, 50, ("cs", "blur"), 0.35),
    "ddnm": (25, 50, ("inpainting", "blur"), 0.6),
    "ddrm": (20, 40, ("inpainting", "blur"), 0.5),
    "dps": (50, 100, ("inpainting",), 0.35),
    "diffpir": (25, 50, ("cs", "blur"), 0.6),
    "daps": (25, 50, ("cs", "blur"), 0.6),
}
#: the settings a solver documents as its posterior-faithful ones, where they are not its defaults
POSTERIOR_SETTINGS = {"daps": {"exact_linear": True, "tweedie_r": True, "tau": None}}
CASES = [
    (name, kind, sigma_y)
    for name, (_, _, kinds, _) in SOLVERS.items()
    for kind in kinds
    for sigma_y in SIGMA_YS
]


@functools.cache
def _prior():
    return make_gmm_prior("m24")


@functools.cache
def _fits(name: str, kind: str, sigma_y: float):
    problem = make_problem(kind, sigma_y, prior=_prior(), truth=1)
    steps, doubled, _, _ = SOLVERS[name]
    hyper = POSTERIOR_SETTINGS.get(name, {})
    return (
        posterior_fit(name, problem, n=N, steps=steps, **hyper),
        posterior_fit(name, problem, n=N, steps=doubled, **hyper),
    )


@pytest.mark.parametrize(("name", "kind", "sigma_y"), CASES)
def test_follows_the_posterior(name, kind, sigma_y):
    """Near the exact posterior, and never farther from it than the prior is."""
    _, fit = _fits(name, kind, sigma_y)
    assert fit.ratio < SOLVERS[name][3], fit
    assert fit.ratio < 1.0


@pytest.mark.parametrize(("name", "kind", "sigma_y"), CASES)
def test_more_steps_do_not_move_away(name, kind, sigma_y):
    """Doubling the steps does not move a solver farther from the exact posterior beyond
    sampling noise (the exact-vs-exact floor at this sample size)."""
    fit, fit_doubled = _fits(name, kind, sigma_y)
    assert fit_doubled.ratio < fit.ratio + max(fit.floor, 0.05), (fit.ratio, fit_doubled.ratio)


@pytest.mark.parametrize("kind", ["inpainting", "blur"])
def test_dps_fits_the_noise_level(kind):
    """The noise-aware DPS neither collapses onto y nor ignores it at sigma_y = 0.1."""
    _, fit = _fits("dps", "inpainting", 0.1) if kind == "inpainting" else (None, None)
    if fit is None:
        problem = make_problem(kind, 0.1, prior=_prior(), truth=1)
        fit = posterior_fit("dps", problem, n=N, steps=100)
    assert 0.5 < fit.residual < 2.0, fit
    assert fit.ratio < 1.0


SAMPLERS = ("dps", "ddrm", "ddnm", "pigdm", "daps", "diffpir", "red_diff", "repaint")


@pytest.mark.parametrize("name", SAMPLERS)
def test_sigma_y_changes_the_samples(name):
    """The same y and generator with sigma_y = 0.01 and 0.1: the samples differ, and for
    the samplers the spread on the measured coordinates grows with sigma_y, as the exact
    posterior's does."""
    kind = "inpainting"
    problem = make_problem(kind, 0.05, prior=_prior(), truth=1)
    out = {}
    for sigma_y in (0.01, 0.1):
        problem.noise = Gaussian(sigma_y)
        out[sigma_y] = run_solver(name, problem, 64, 20, seed=0, **POSTERIOR_SETTINGS.get(name, {}))
    assert (out[0.01] - out[0.1]).abs().max() > 1e-3
    if name != "red_diff":  # a point estimate (Mardani et al. 2024): no spread to compare
        mask = problem.operator.mask.bool()[0].expand_as(out[0.01][0])
        spread = {s: float(x[:, mask].std(0).mean()) for s, x in out.items()}
        assert spread[0.1] > spread[0.01]


def test_paper_dps_is_still_selectable():
    """``likelihood="paper"`` is the released zeta / ||r|| step: it ignores sigma_y."""
    problem = make_problem("cs", 0.05, prior=_prior(), truth=1)
    out = []
    for sigma_y in (0.01, 0.1):
        problem.noise = Gaussian(sigma_y)
        out.append(run_solver("dps", problem, 16, 20, seed=0, likelihood="paper"))
    assert torch.equal(out[0], out[1])
    with pytest.raises(ValueError, match="likelihood must be one of"):
        run_solver("dps", problem, 4, 2, likelihood="exact")


def test_tweedie_cap_binds_only_on_a_spurious_jacobian():
    """The capped posterior-mean shift equals s^2 J^T u when its norm is within the bound."""
    from invdiff.solvers.tweedie import posterior_mean_shift

    u = torch.ones(2, 1, 2, 2)
    small = torch.full((2, 1, 2, 2), 1e-3)
    assert torch.allclose(posterior_mean_shift(small, u, 2.0, 0.5), small * 4)
    large = torch.full((2, 1, 2, 2), 10.0)
    shift = posterior_mean_shift(large, u, 2.0, 0.5)
    assert torch.allclose(shift.flatten(1).norm(dim=1), 4 * 0.25 * u.flatten(1).norm(dim=1))


@pytest.mark.parametrize("kind", ["sr2", "cs"])
@pytest.mark.parametrize("sigma_y", SIGMA_YS)
@pytest.mark.parametrize("mixture", ["m16", "m24"])
@pytest.mark.parametrize(("name", "steps"), [("ddrm", 20), ("ddnm", 50)])
def test_svd_samplers_fit_y_on_a_coarse_grid(name, steps, kind, sigma_y, mixture):
    """DDRM's and DDNM's grids jump from a level well above sigma_y / s_i to one below it: the
    observed coordinates must still fit y as the exact posterior's samples do (before
    ``tweedie.exchange_measurement`` they missed it by 2.5-5.2x at sigma_y = 0.01)."""
    problem = make_problem(kind, sigma_y, prior=make_gmm_prior(mixture), truth=1)
    fit = posterior_fit(name, problem, n=N, steps=steps)
    assert 0.7 < fit.residual < 1.4, fit
    assert fit.ratio < 1.0


@pytest.mark.parametrize("kappa", [0.0, 0.5, 1.0])
def test_exchange_measurement_is_the_gaussian_posterior(kappa):
    """For a Gaussian prior and the exact denoiser, ``exchange_measurement`` is E[x0 | x_a,
    ybar] and its spread: checked against the least-squares regression of x0 on (x_a, ybar)."""
    from invdiff.solvers.tweedie import exchange_measurement

    g = torch.Generator().manual_seed(0)
    n, mean0, sd, sa, level = 200_000, 0.2, 0.5, 0.1, 0.03

    def draw(scale: float) -> torch.Tensor:
        return scale * torch.randn(n, generator=g, dtype=torch.float64)

    x0, noise = mean0 + draw(sd), draw(level)
    ybar = x0 + noise
    x_a = x0 + kappa * noise + draw((sa**2 - kappa**2 * level**2) ** 0.5)
    x0_hat = mean0 + sd**2 / (sd**2 + sa**2) * (x_a - mean0)  # the exact denoiser
    got, spread = exchange_measurement(
        x0_hat, x_a, sa, ybar, torch.full_like(x_a, level), sd, kappa
    )
    design = torch.stack([torch.ones_like(x_a), x_a, ybar], 1)
    fitted = design @ torch.linalg.lstsq(design, x0[:, None]).solution[:, 0]
    assert (got - fitted).abs().max() < 1e-3
    assert abs(float(spread[0]) - float((x0 - fitted).std())) < 3e-4


@pytest.mark.parametrize("sigma_y", [0.01, 0.05, 0.1])
def test_ddrm_leaves_coordinates_noisier_than_its_start_unobserved(sigma_y):
    """A coordinate with ``sigma_y / s_i`` above the chain's first level carries less
    information than the chain's own noise. Eq. 8's noisy branch would pull the iterate towards
    its ``ybar_i`` (noise ``sigma_y / s_i``, the same realisation at every step) once per step,
    so DDRM got worse with more steps on deblurring (Fashion-MNIST Gaussian deblur, 16 val
    images: 23.9 / 23.1 / 22.3 dB at 20 / 100 / 200 NFE). Such coordinates are unobserved for
    the whole chain: moving ``y`` along them changes no sample."""
    from invdiff.solvers.common import solver_grid

    prior = make_gmm_prior("m16")
    op = make_operator("blur", image_shape(prior))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, *image_shape(prior), generator=g) * 0.5
    y = op(x) + sigma_y * torch.randn(op(x).shape, generator=g)
    start = solver_grid(prior, 20, invdiff.solvers.get("ddrm").hyperparameters({}))[0]
    s = op.singular_values.reshape(-1)
    noisy = sigma_y / s >= start
    assert noisy.any() and not noisy.all()
    shift = torch.zeros(4, op.num_measurements)
    shift[:, noisy] = 100.0 * sigma_y
    y_moved = y + op.U(shift)

    def run(measurement):
        return invdiff.solve(
            "ddrm",
            prior=prior,
            operator=op,
            y=measurement,
            noise=Gaussian(sigma_y),
            steps=20,
            generator=torch.Generator().manual_seed(1),
        )

    torch.testing.assert_close(run(y_moved), run(y), atol=1e-4, rtol=1e-4)


#: colorization of the colour mixture ``c24`` (3 x 2 x 4 images; ``y`` is the grey image, so
#: two thirds of every pixel comes from the prior): solver -> (steps, bound on the ratio).
#: PiGDM and DPS follow the exact posterior; DDRM, DDNM, DiffPIR and DAPS draw colour, but
#: 30-50 % of their samples fall in mixture components the exact posterior gives under 1 %
#: (the mode weighting of approximate samplers, ``scripts/posterior_modes.py``), whence their
#: looser bounds. The bounds are the measured ratios at N = 96 plus about 0.1.
COLORIZATION = {
    "pigdm": (50, 0.3),
    "dps": (100, 0.4),
    "ddrm": (40, 0.65),
    "ddnm": (50, 0.7),
    "diffpir": (50, 0.6),
    "daps": (50, 0.7),
}


@pytest.mark.parametrize("sigma_y", SIGMA_YS)
@pytest.mark.parametrize("name", sorted(COLORIZATION))
def test_colorization_draws_the_colour_the_posterior_holds(name, sigma_y):
    prior = make_gmm_prior("c24")
    problem = make_problem("colorization", sigma_y, prior=prior, truth=1)
    steps, bound = COLORIZATION[name]
    fit = posterior_fit(name, problem, n=N, steps=steps, **POSTERIOR_SETTINGS.get(name, {}))
    assert fit.ratio < bound, fit
    # the colour is drawn, not left grey: the chroma (x minus its grey part) of the samples
    # spreads like the exact posterior's, while the grey part stays on y
    chroma = fit.samples - fit.samples.mean(dim=1, keepdim=True)
    exact = problem.posterior_samples(N, seed=5)
    exact_chroma = exact - exact.mean(dim=1, keepdim=True)
    spread = float(chroma.flatten(1).std(0).mean() / exact_chroma.flatten(1).std(0).mean())
    assert 0.7 < spread < 1.8, spread
    assert 0.4 < fit.residual < 2.0, fit
