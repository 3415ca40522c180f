"""The exact Gaussian-mixture prior: Tweedie, posterior and sampling are checked in closed form."""

from __future__ import annotations

import torch

from invdiff.metrics import sliced_wasserstein
from invdiff.priors.gmm import GaussianMixture, GaussianMixturePrior


def test_score_is_gradient_of_noisy_log_density(gmm_prior: GaussianMixturePrior, generator):
    x = gmm_prior.sample(8, generator)
    for sigma in (0.05, 0.3, 2.0):
        xs = x + sigma * torch.randn(x.shape, generator=generator)
        xd = xs.reshape(8, -1).double().requires_grad_(True)
        (grad,) = torch.autograd.grad(gmm_prior.mixture.noisy(sigma).log_prob(xd).sum(), xd)
        torch.testing.assert_close(
            gmm_prior.score(xs, sigma), grad.reshape(xs.shape).float(), atol=2e-4, rtol=1e-3
        )


def test_per_sample_sigma_matches_scalar_sigma(gmm_prior, generator):
    x = torch.randn(3, 1, 4, 4, generator=generator)
    sig = torch.tensor([0.1, 0.5, 2.0])
    batched = gmm_prior.x0(x, sig)
    for i in range(3):
        torch.testing.assert_close(batched[i : i + 1], gmm_prior.x0(x[i : i + 1], float(sig[i])))


def test_posterior_of_single_gaussian_matches_kalman_update():
    d = 3
    g = torch.Generator().manual_seed(1)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = a @ a.T + torch.eye(d, dtype=torch.float64)
    mean = torch.randn(d, generator=g, dtype=torch.float64)
    mix = GaussianMixture(torch.ones(1, dtype=torch.float64), mean[None], cov[None])
    A = torch.randn(2, d, generator=g, dtype=torch.float64)
    y = torch.randn(2, generator=g, dtype=torch.float64)
    s = 0.3
    post = mix.posterior(A, s, y)
    gain = cov @ A.T @ torch.linalg.inv(A @ cov @ A.T + s**2 * torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(post.means[0], mean + gain @ (y - A @ mean))
    torch.testing.assert_close(post.covs[0], cov - gain @ A @ cov)


def test_posterior_weights_follow_evidence():
    """Two far-apart components, y observes the coordinate that separates them."""
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    covs = torch.eye(2, dtype=torch.float64)[None].repeat(2, 1, 1) * 0.01
    mix = GaussianMixture(torch.tensor([0.5, 0.5], dtype=torch.float64), means, covs)
    post = mix.posterior(torch.tensor([[1.0, 0.0]], dtype=torch.float64), 0.05, torch.tensor([0.9]))
    assert post.weights[1] > 0.999


def test_sample_sets_distance_separates_distributions(gmm_prior, generator):
    a, b = gmm_prior.sample(512, generator), gmm_prior.sample(512, generator)
    shifted = b + 0.3
    assert sliced_wasserstein(a, b) < 0.5 * sliced_wasserstein(a, shifted)
