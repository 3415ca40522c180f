"""An exact Gaussian-mixture prior: the test bed for solver correctness.

For ``p(x0) = sum_k w_k N(mu_k, S_k)`` every quantity a diffusion solver approximates has a
closed form:

* the noisy marginal ``p_sigma = sum_k w_k N(mu_k, S_k + sigma^2 I)``;
* the Tweedie denoiser ``E[x0 | x] = sum_k r_k(x) (mu_k + S_k (S_k + sigma^2 I)^{-1} (x - mu_k))``
  with responsibilities ``r_k`` under ``p_sigma``;
* for a linear measurement ``y = A x0 + n``, ``n ~ N(0, sigma_y^2 I)``, the posterior is again a
  mixture with ``P_k = (S_k^{-1} + A^T A / sigma_y^2)^{-1}``,
  ``m_k = P_k (S_k^{-1} mu_k + A^T y / sigma_y^2)`` and weights
  ``w_k' ∝ w_k N(y; A mu_k, A S_k A^T + sigma_y^2 I)`` (Bishop 2006, Sec. 2.3.3).

Solver samples are compared with exact posterior samples by a sliced-Wasserstein distance.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from invdiff.priors.base import Prior, vp_sigmas
from invdiff.priors.kinds import register


class GaussianMixture:
    """A Gaussian mixture on ``R^d`` (float64): sampling, log-density, linear-Gaussian posterior."""

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor):
        weights = torch.as_tensor(weights, dtype=torch.float64)
        means = torch.as_tensor(means, dtype=torch.float64)
        covs = torch.as_tensor(covs, dtype=torch.float64)
        k, d = means.shape
        if weights.shape != (k,) or covs.shape != (k, d, d):
            raise ValueError(
                f"need weights (K,), means (K, d), covs (K, d, d); got {tuple(weights.shape)}, "
                f"{tuple(means.shape)}, {tuple(covs.shape)}"
            )
        if (weights < 0).any() or not torch.isclose(
            weights.sum(), torch.tensor(1.0, dtype=torch.float64)
        ):
            raise ValueError(f"mixture weights must be >= 0 and sum to 1, got {weights.tolist()}")
        self.weights, self.means, self.covs = weights, means, covs
        self.chol = torch.linalg.cholesky(covs)  # raises if a covariance is not positive definite

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        return self.means[comp] + torch.einsum("nij,nj->ni", self.chol[comp], z)

    def log_prob(self, x: Tensor) -> Tensor:
        x = x.to(torch.float64)
        diff = x[:, None, :] - self.means[None]  # N K d
        sol = torch.linalg.solve_triangular(self.chol[None], diff[..., None], upper=False)[..., 0]
        maha = sol.pow(2).sum(-1)
        logdet = 2 * torch.log(torch.diagonal(self.chol, dim1=-2, dim2=-1)).sum(-1)
        comp = -0.5 * (maha + logdet + self.dim * math.log(2 * math.pi))
        return torch.logsumexp(comp + torch.log(self.weights), dim=1)

    def noisy(self, sigma: float) -> GaussianMixture:
        """The marginal of ``x0 + sigma * eps``."""
        eye = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(self.weights, self.means, self.covs + sigma**2 * eye)

    def posterior(self, A: Tensor, sigma_y: float, y: Tensor) -> GaussianMixture:
        """The exact posterior ``p(x0 | y)`` for ``y = A x0 + N(0, sigma_y^2 I)`` (one ``y``)."""
        if sigma_y <= 0:
            raise ValueError("the closed-form posterior needs sigma_y > 0")
        A = A.to(torch.float64)
        y = y.to(torch.float64).flatten()
        prec = torch.linalg.inv(self.covs) + (A.T @ A / sigma_y**2)[None]
        post_cov = torch.linalg.inv(prec)
        post_cov = (post_cov + post_cov.transpose(-1, -2)) / 2
        rhs = (
            torch.linalg.solve(self.covs, self.means[..., None])[..., 0]
            + (A.T @ y / sigma_y**2)[None]
        )
        post_mean = torch.einsum("kij,kj->ki", post_cov, rhs)
        evid = GaussianMixture(
            torch.ones(len(self.weights), dtype=torch.float64) / len(self.weights),
            self.means @ A.T,
            A[None] @ self.covs @ A.T[None]
            + sigma_y**2 * torch.eye(A.shape[0], dtype=torch.float64),
        )
        diff = y[None] - evid.means
        sol = torch.linalg.solve_triangular(evid.chol, diff[..., None], upper=False)[..., 0]
        logdet = 2 * torch.log(torch.diagonal(evid.chol, dim1=-2, dim2=-1)).sum(-1)
        logw = torch.log(self.weights) - 0.5 * (sol.pow(2).sum(-1) + logdet)
        return GaussianMixture(torch.softmax(logw, 0), post_mean, post_cov)


@register
class GaussianMixturePrior(Prior):
    """The exact prior of a Gaussian mixture on images of shape ``in_shape``.

    ``x0`` is the closed-form posterior mean (module docstring), so a solver run on this prior
    can be compared with the exact posterior. ``sigmas`` defaults to the linear-beta DDPM grid
    so the VP-chain solvers run on it exactly as on a trained model.
    """

    kind = "gaussian_mixture"
    #: a mixture's samples are not confined to [-1, 1], so measurements are not range-checked
    data_range = None

    def __init__(
        self,
        weights: Tensor,
        means: Tensor,
        covs: Tensor,
        in_shape: tuple[int, int, int] | None = None,
        sigmas: Tensor | None = None,
    ):
        super().__init__()
        self.mixture = GaussianMixture(weights, means, covs)
        d = self.mixture.dim
        self.in_shape = tuple(in_shape) if in_shape is not None else (1, 1, d)
        if math.prod(self.in_shape) != d:
            raise ValueError(f"in_shape {self.in_shape} does not hold {d} coordinates")
        self.sigmas = (
            vp_sigmas() if sigmas is None else torch.as_tensor(sigmas, dtype=torch.float32)
        )
        self._eye = torch.eye(d, dtype=torch.float64)
        # the mixture's own per-coordinate standard deviation (total variance / d)
        w, mu = self.mixture.weights, self.mixture.means
        mean = w @ mu
        total = (w * torch.diagonal(self.mixture.covs, dim1=-2, dim2=-1).sum(-1)).sum() + (
            w * (mu - mean).pow(2).sum(-1)
        ).sum()
        self.sigma_data = float((total / d).sqrt())

    @classmethod
    def random(
        cls,
        dim: int = 16,
        components: int = 4,
        in_shape: tuple[int, int, int] | None = None,
        generator: torch.Generator | None = None,
        scale: float = 0.5,
    ) -> GaussianMixturePrior:
        """A random mixture: means in [-0.6, 0.6], anisotropic covariances of scale ``scale``."""
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        weights = torch.rand(components, generator=g, dtype=torch.float64) + 0.5
        weights = weights / weights.sum()
        means = (torch.rand(components, dim, generator=g, dtype=torch.float64) * 2 - 1) * 0.6
        covs = []
        for _ in range(components):
            q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
            ev = (torch.rand(dim, generator=g, dtype=torch.float64) * 0.9 + 0.1) * scale**2 / 4
            covs.append(q @ torch.diag(ev) @ q.T)
        return cls(weights, means, torch.stack(covs), in_shape=in_shape)

    def denoise(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        mix = self.mixture
        n = x.shape[0]
        xf = x.reshape(n, -1).to(torch.float64).cpu()
        s2 = sigma.reshape(n).to(torch.float64).cpu() ** 2
        # per sample and component: C_k = S_k + s^2 I
        cov = mix.covs[None] + s2[:, None, None, None] * self._eye  # N K d d
        chol = torch.linalg.cholesky(cov)
        diff = xf[:, None, :] - mix.means[None]  # N K d
        sol = torch.cholesky_solve(diff[..., None], chol)[..., 0]  # C^{-1}(x - mu)
        maha = (diff * sol).sum(-1)
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        resp = torch.softmax(torch.log(mix.weights)[None] - 0.5 * (maha + logdet), dim=1)  # N K
        comp_mean = mix.means[None] + torch.einsum("kij,nkj->nki", mix.covs, sol)
        out = (resp[..., None] * comp_mean).sum(1)
        return out.to(x.dtype).to(x.device).reshape(x.shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Exact prior samples, shaped ``n x C x H x W`` (float32)."""
        return self.mixture.sample(n, generator).float().reshape(n, *self.in_shape)

    def posterior(self, A: Tensor, sigma_y: float, y: Tensor) -> GaussianMixture:
        """Exact posterior mixture for one measurement ``y`` (see ``GaussianMixture.posterior``)."""
        return self.mixture.posterior(A, sigma_y, y)
