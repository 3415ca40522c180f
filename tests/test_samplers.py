"""Unconditional samplers against the exact Gaussian-mixture prior.

Distribution test: ``N = 1024`` samples of each sampler are compared with ``N`` exact samples
by the sliced-Wasserstein distance. The bound is ``2 x`` the distance between independent exact
sample sets of the same size (the estimator's own floor, measured here, about 0.02): a perfect
sampler sits at the floor, and a moment-matched Gaussian (which ignores the mixture structure)
already sits at about 3 x the floor, so the bound has power; ``test_broken_sampler_fails`` shows
deliberately wrong DDPM updates exceed it. Measured distances: ``python3 scripts/sampler_report.py``
(or ``pytest -s`` here).
"""

from __future__ import annotations

import math

import pytest
import torch

from invdiff import samplers
from invdiff.diffusion.schedules import vp_sigmas_for_steps
from invdiff.metrics import sliced_wasserstein
from invdiff.priors.base import Prior
from invdiff.priors.gmm import GaussianMixturePrior
from invdiff.solvers.base import Step

N = 1024
# steps at which each sampler's discretisation error is below the bound (see module docstring)
STEPS = {"ddpm": 100, "ddim": 50, "heun": 24, "predictor_corrector": 50, "probability_flow": 8}


class EigenMixturePrior(GaussianMixturePrior):
    """``gmm_prior`` with its closed-form denoiser evaluated through ``S_k = Q_k diag(l_k) Q_k^T``.

    ``(S_k + s^2 I)^{-1} = Q_k diag(1 / (l_k + s^2)) Q_k^T`` needs no per-sample Cholesky, which
    makes the 1024-sample runs about 8 x faster; ``test_eigen_prior_is_gmm_prior`` checks it is
    the same function.
    """

    def __init__(self, base: GaussianMixturePrior):
        m = base.mixture
        super().__init__(m.weights, m.means, m.covs, in_shape=base.in_shape, sigmas=base.sigmas)
        self.lam, self.q = torch.linalg.eigh(m.covs)

    def denoise(self, x, sigma, cond):
        m, n = self.mixture, x.shape[0]
        diff = x.reshape(n, -1).double()[:, None, :] - m.means[None]  # N K d
        proj = torch.einsum("kji,nkj->nki", self.q, diff)  # Q_k^T (x - mu_k)
        var = self.lam[None] + sigma.reshape(n).double()[:, None, None] ** 2
        log_lik = -0.5 * ((proj**2 / var).sum(-1) + var.log().sum(-1))
        resp = torch.softmax(m.weights.log()[None] + log_lik, dim=1)
        comp = m.means[None] + torch.einsum("kij,nkj->nki", self.q, proj * self.lam[None] / var)
        return (resp[..., None] * comp).sum(1).to(x.dtype).reshape(x.shape)


@pytest.fixture(scope="module")
def exact_prior(gmm_prior) -> EigenMixturePrior:
    return EigenMixturePrior(gmm_prior)


def test_eigen_prior_is_gmm_prior(gmm_prior, exact_prior):
    x = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2
    sigma = torch.logspace(-2, 2, 64)
    torch.testing.assert_close(
        exact_prior.x0(x, sigma), gmm_prior.x0(x, sigma), atol=1e-6, rtol=1e-5
    )


def sw(a: torch.Tensor, b: torch.Tensor) -> float:
    return sliced_wasserstein(a, b, projections=256, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def target(gmm_prior):
    return gmm_prior.sample(N, torch.Generator().manual_seed(100))


@pytest.fixture(scope="module")
def bound(gmm_prior, target) -> float:
    floors = [
        sw(gmm_prior.sample(N, torch.Generator().manual_seed(200 + k)), target) for k in range(3)
    ]
    floor = sum(floors) / len(floors)
    print(
        f"\nexact-vs-exact SW floor at N={N}: {[round(f, 4) for f in floors]}, "
        f"bound = {2 * floor:.4f}"
    )
    return 2 * floor


def test_samplers_registered():
    assert samplers.names() == sorted(STEPS)
    with pytest.raises(KeyError, match="Valid names"):
        samplers.get("dpm_solver")


def test_bound_has_power(gmm_prior, target, bound):
    """A moment-matched Gaussian (right mean and covariance, no mixture) must exceed the bound."""
    ref = gmm_prior.sample(N, torch.Generator().manual_seed(300)).flatten(1).double()
    chol = torch.linalg.cholesky(torch.cov(ref.T))
    z = torch.randn(
        N, ref.shape[1], generator=torch.Generator().manual_seed(301), dtype=torch.float64
    )
    gauss = (ref.mean(0) + z @ chol.T).float()
    d = sw(gauss, target)
    print(f"moment-matched Gaussian: SW = {d:.4f} (bound {bound:.4f})")
    assert d > bound


@pytest.mark.parametrize("name", sorted(STEPS))
def test_sampler_matches_marginal(name, exact_prior, target, bound):
    x = samplers.get(name)(
        exact_prior, N, steps=STEPS[name], generator=torch.Generator().manual_seed(0)
    )
    assert x.shape == (N, *exact_prior.in_shape) and x.dtype == torch.float32
    d = sw(x, target)
    print(f"{name} steps={STEPS[name]}: SW = {d:.4f} (bound {bound:.4f})")
    assert d < bound


def _ddpm_loop(
    prior: Prior, n: int, steps: int, generator: torch.Generator, bug: str
) -> torch.Tensor:
    """The DDPM loop of ``samplers.ddpm`` with one deliberate bug."""
    sig = vp_sigmas_for_steps(prior, steps).tolist() + [0.0]
    x = torch.randn(n, *prior.in_shape, generator=generator) * math.sqrt(1 + sig[0] ** 2)
    for s, s_next in zip(sig[:-1], sig[1:]):
        x0 = prior.x0(x, s)
        if s_next == 0:
            return x0
        ratio = (s_next / s) ** 2
        z = torch.randn(x.shape, generator=generator)
        if bug == "renoise_from_x0":  # forgets the posterior mean: x_s ~ N(x0_hat, sigma_s^2)
            x = x0 + s_next * z
        elif bug == "double_noise":  # wrong posterior standard deviation
            x = x0 + ratio * (x - x0) + 2 * s_next * math.sqrt(1 - ratio) * z
        else:
            raise ValueError(bug)
    return x


@pytest.mark.parametrize("bug", ["renoise_from_x0", "double_noise"])
def test_broken_sampler_fails(bug, exact_prior, target, bound):
    x = _ddpm_loop(exact_prior, N, 50, torch.Generator().manual_seed(0), bug)
    d = sw(x, target)
    print(f"broken ddpm ({bug}): SW = {d:.4f} (bound {bound:.4f})")
    assert d > bound


def test_ddpm_equals_ddim_eta_one(gmm_prior):
    a = samplers.ddpm(gmm_prior, 8, steps=10, generator=torch.Generator().manual_seed(3))
    b = samplers.ddim(gmm_prior, 8, steps=10, generator=torch.Generator().manual_seed(3), eta=1.0)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(STEPS))
def test_deterministic_under_fixed_generator(name, gmm_prior):
    kw = {"steps": 4}
    a = samplers.get(name)(gmm_prior, 6, generator=torch.Generator().manual_seed(7), **kw)
    b = samplers.get(name)(gmm_prior, 6, generator=torch.Generator().manual_seed(7), **kw)
    c = samplers.get(name)(gmm_prior, 6, generator=torch.Generator().manual_seed(8), **kw)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # an int seed is a generator like any other
    d = samplers.get(name)(gmm_prior, 6, generator=7, **kw)
    assert torch.equal(a, d)


class PoisonedPrior(Prior):
    """The wrapped prior, with sample 0's denoiser output pushed far away."""

    def __init__(self, inner: Prior):
        super().__init__()
        self.inner, self.in_shape, self.sigmas = inner, inner.in_shape, inner.sigmas

    def denoise(self, x, sigma, cond):
        out = self.inner.denoise(x, sigma, cond).clone()
        out[0] = out[0] * 50 + 20
        return out


@pytest.mark.parametrize("name", sorted(STEPS))
def test_batch_independence(name, gmm_prior):
    """A wild sample 0 must not change the others (no batch-wide norms or step sizes)."""
    kw = {"steps": 5}
    if name == "predictor_corrector":
        kw["corrector_steps"] = 2
    clean = samplers.get(name)(gmm_prior, 4, generator=torch.Generator().manual_seed(1), **kw)
    poisoned = samplers.get(name)(
        PoisonedPrior(gmm_prior), 4, generator=torch.Generator().manual_seed(1), **kw
    )
    assert not torch.allclose(clean[0], poisoned[0])
    torch.testing.assert_close(clean[1:], poisoned[1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "steps", "nfe"),
    [
        ("ddpm", 7, 7),
        ("ddim", 7, 7),
        ("heun", 7, 13),
        ("predictor_corrector", 7, 15),
        ("probability_flow", 7, 25),
    ],
)
def test_callback_and_nfe(name, steps, nfe, gmm_prior):
    seen: list[Step] = []
    gmm_prior.nfe = 0
    samplers.get(name)(
        gmm_prior, 3, steps=steps, generator=torch.Generator().manual_seed(0), callback=seen.append
    )
    assert gmm_prior.nfe == nfe
    assert [s.index for s in seen] == list(range(steps))
    assert all(isinstance(s, Step) and s.total == steps and s.x.shape == (3, 1, 4, 4) for s in seen)
    levels = [s.sigma for s in seen]
    assert levels == sorted(levels, reverse=True) and levels[-1] >= 0


def test_probability_flow_euler_converges_to_rk4(exact_prior):
    """The PF-ODE maps each start point to one sample: Euler approaches RK4's map as steps grow."""

    def run(method: str, steps: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)  # the same start points for every run
        return samplers.probability_flow(exact_prior, 64, steps=steps, method=method, generator=g)

    reference = run("rk4", 16)
    errors = [(run("euler", s) - reference).abs().mean().item() for s in (8, 32)]
    assert errors[1] < errors[0] / 2.5  # first order: 4 x the steps, about 4 x smaller error
    assert errors[1] < 0.05


def test_heun_churn_runs_and_differs(gmm_prior):
    kw = {"steps": 6, "generator": 0}
    plain = samplers.heun(gmm_prior, 4, **kw)
    churned = samplers.heun(gmm_prior, 4, s_churn=10.0, **kw)
    assert torch.isfinite(churned).all() and not torch.allclose(plain, churned)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 0}, ValueError, "n \\(number of samples\\)"),
        ({"n": 2.5}, ValueError, "n \\(number of samples\\)"),
        ({"steps": 0}, ValueError, "steps must be"),
        ({"steps": 1001}, ValueError, "steps must be between"),
        ({"generator": None}, TypeError, "generator must be"),
        ({"cond": torch.zeros(3, 1, 4, 4)}, ValueError, "cond must be"),
    ],
)
def test_bad_input(kwargs, error, match, gmm_prior):
    args = {"n": 2, "steps": 3, "generator": torch.Generator().manual_seed(0), **kwargs}
    n = args.pop("n")
    with pytest.raises(error, match=match):
        samplers.ddpm(gmm_prior, n, **args)


def test_bad_hyperparameters(gmm_prior):
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="eta"):
        samplers.ddim(gmm_prior, 2, steps=3, generator=g, eta=2.0)
    with pytest.raises(ValueError, match="method"):
        samplers.probability_flow(gmm_prior, 2, steps=3, generator=g, method="rk45")
    with pytest.raises(ValueError, match="snr"):
        samplers.predictor_corrector(gmm_prior, 2, steps=3, generator=g, snr=0)
    with pytest.raises(TypeError, match="Prior"):
        samplers.heun(object(), 2, steps=3, generator=g)


@pytest.mark.parametrize("name", sorted(STEPS))
def test_pixel_prior_plumbing(name, tiny_pixel_prior):
    x = samplers.get(name)(tiny_pixel_prior, 1, steps=2, generator=torch.Generator().manual_seed(0))
    assert x.shape == (1, 1, 8, 8) and torch.isfinite(x).all()
