"""The linear-Gaussian solver test bed: a Gaussian-mixture prior whose posterior is exact.

For the 16-dimensional, 4-component mixture of ``tests/conftest.py`` (``gmm_prior``, images
1 x 4 x 4) and a linear operator ``A`` with Gaussian noise ``sigma_y``, the posterior
``p(x | y)`` is again a Gaussian mixture (``GaussianMixturePrior.posterior``). A solver is
checked by drawing ``n`` posterior samples for one ``y`` (``y`` repeated ``n`` times in one
batch) and measuring the sliced-Wasserstein distance to ``n`` exact posterior samples. Two
reference figures put that distance on a scale:

* ``prior_dist``: exact *prior* samples against the exact posterior (what a solver that ignores
  ``y`` would score);
* ``exact_dist``: two independent exact posterior sample sets (the floor set by sampling noise).

Usage from any solver test::

    from solver_testbed import posterior_distance
    d = posterior_distance("dps", "inpainting", n=256, steps=100)
    assert d.solver < 0.3 * d.prior

Operators come from the registry (``inpainting_random``, ``compressed_sensing``) when they are
registered; otherwise the small stand-ins defined here are used (same maths and capabilities).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import invdiff
from invdiff.metrics import sliced_wasserstein
from invdiff.noise import Gaussian
from invdiff.operators.base import LinearOperator, Operator, SVDOperator
from invdiff.priors.base import ConditionalPrior, LatentPrior
from invdiff.priors.gmm import GaussianMixture, GaussianMixturePrior
from invdiff.registry import OPERATORS

IN_SHAPE = (1, 4, 4)
SIGMA_Y = 0.05
#: seeds of the fixed problem (prior, operator, clean image, measurement noise)
PRIOR_SEED, OPERATOR_SEED, PROBLEM_SEED = 0, 1, 2
OPERATOR_KINDS = ("inpainting", "cs", "sr2", "blur")
#: the mixtures of the widened test bed: name -> (dimension, components, in_shape, seed, scale)
MIXTURES: dict[str, tuple[int, int, tuple[int, int, int], int, float]] = {
    "m16": (16, 4, (1, 4, 4), PRIOR_SEED, 0.5),
    "m24": (24, 6, (1, 4, 6), 11, 0.8),
    # colour: 3 x 2 x 4 images, for colorization (the grey measurement leaves 2/3 of it free)
    "c24": (24, 6, (3, 2, 4), 13, 0.8),
}
SIGMA_YS = (0.01, 0.05, 0.1)
#: the latent double: 2 x 2 x 2 latents decoded into 1 x 4 x 4 images
IMAGE_SHAPE, LATENT_SHAPE = (1, 4, 4), (2, 2, 2)


# --------------------------------------------------------------------------------------------
# Stand-in operators (used until/unless the registry provides them) and test helpers
# --------------------------------------------------------------------------------------------


class DenseSVDOperator(SVDOperator):
    """``y = A x`` for a dense ``m x n`` matrix, with its SVD ``A = U diag(s) V^T`` precomputed."""

    def __init__(self, matrix: Tensor, in_shape: tuple[int, int, int]):
        super().__init__(in_shape)
        matrix = torch.as_tensor(matrix, dtype=torch.float64)
        m, n = matrix.shape
        if n != math.prod(self.in_shape) or m > n:
            raise ValueError(
                f"need an m x n matrix with m <= n = {math.prod(self.in_shape)}, got {m} x {n}"
            )
        u, s, vh = torch.linalg.svd(matrix, full_matrices=True)
        self.register_buffer("u", u.float())
        self.register_buffer("vh", vh.float())
        self.register_buffer("singular_values", s.float())

    def U(self, z: Tensor) -> Tensor:
        return z @ self.u.T

    def Ut(self, y: Tensor) -> Tensor:
        return y @ self.u

    def V(self, z: Tensor) -> Tensor:
        return (z @ self.vh).reshape(z.shape[0], *self.in_shape)

    def Vt(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) @ self.vh.T


class MaskOperator(SVDOperator):
    """Inpainting: keep the pixels where ``mask == 1``; ``y`` is the masked image at full size."""

    is_inpainting = True

    def __init__(self, mask: Tensor):
        mask = torch.as_tensor(mask, dtype=torch.float32)
        super().__init__((1, *mask.shape[-2:]))
        self.register_buffer("mask", mask.reshape(1, 1, *mask.shape[-2:]))
        self.register_buffer("singular_values", self.mask.flatten().clone())

    def _full(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.in_shape)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask

    def adjoint(self, y: Tensor) -> Tensor:
        return y * self.mask

    def U(self, z: Tensor) -> Tensor:
        return self._full(z)

    def Ut(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], -1)

    def V(self, z: Tensor) -> Tensor:
        return self._full(z)

    def Vt(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)


class DenseLinearOperator(LinearOperator):
    """A dense matrix as a plain ``LinearOperator`` (no SVD): for solvers that need only A, A^T."""

    def __init__(self, matrix: Tensor, in_shape: tuple[int, int, int]):
        super().__init__(in_shape)
        self.register_buffer("a", torch.as_tensor(matrix, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) @ self.a.T

    def adjoint(self, y: Tensor) -> Tensor:
        return (y @ self.a).reshape(y.shape[0], *self.in_shape)


class SquashOperator(Operator):
    """A nonlinear operator ``tanh(2 x)`` per pixel: for capability-mismatch tests."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(2 * x)


def make_gmm_prior(mixture: str = "m16") -> GaussianMixturePrior:
    """A mixture of ``MIXTURES``; ``"m16"`` is the conftest ``gmm_prior`` (same seed and shape).

    ``"m24"``: 24 dimensions, 6 components, covariances of a larger scale (so the components
    overlap and each is strongly anisotropic: eigenvalues spread over a factor of ten).
    """
    dim, components, in_shape, seed, scale = MIXTURES[mixture]
    return GaussianMixturePrior.random(
        dim,
        components,
        in_shape=in_shape,
        generator=torch.Generator().manual_seed(seed),
        scale=scale,
    )


def make_operator(
    kind: str, in_shape: tuple[int, int, int] = IN_SHAPE, seed: int = OPERATOR_SEED
) -> SVDOperator:
    """``"inpainting"``: half the pixels observed at random; ``"cs"``: a dense Gaussian matrix
    with half as many rows as pixels (10 x 24 for the 24-d mixture, singular values spread);
    ``"sr2"``: 2x average pooling; ``"blur"``: a circular 3 x 3 Gaussian blur (singular values
    down to a few hundredths); ``"colorization"``: the mean of R, G and B (colour mixtures).
    From the registry when it has them."""
    g = torch.Generator().manual_seed(seed)
    n = math.prod(in_shape)
    if kind == "inpainting":
        if "inpainting_random" in OPERATORS:
            return invdiff.operators.get(
                "inpainting_random", in_shape=in_shape, missing=0.5, generator=g
            )
        h, w = in_shape[-2:]
        mask = torch.zeros(h * w)
        mask[torch.randperm(h * w, generator=g)[: h * w // 2]] = 1
        return MaskOperator(mask.reshape(h, w))
    if kind == "cs":
        if "compressed_sensing" in OPERATORS:
            return invdiff.operators.get(
                "compressed_sensing", in_shape=in_shape, measurements=n // 2, generator=g
            )
        a = torch.randn(n // 2, n, generator=g, dtype=torch.float64) / math.sqrt(n // 2)
        return DenseSVDOperator(a, in_shape)
    if kind == "sr2":
        return invdiff.operators.get("super_resolution", in_shape=in_shape, factor=2)
    if kind == "blur":
        return invdiff.operators.get("gaussian_blur", in_shape=in_shape, size=3, sigma=0.8)
    if kind == "colorization":
        return invdiff.operators.get("colorization", in_shape=in_shape)
    raise ValueError(f"operator kind must be one of {OPERATOR_KINDS}, got {kind!r}")


class LinearLatentPrior(LatentPrior):
    """A Gaussian-mixture latent prior with an orthonormal linear decoder (exact test double)."""

    def __init__(
        self, latent: GaussianMixturePrior, decoder: Tensor, image_shape: tuple[int, int, int]
    ):
        super().__init__()
        self.latent = latent
        self.in_shape, self.sigmas = latent.in_shape, latent.sigmas
        self.image_shape = image_shape
        self.q = decoder.float()  # D x d, orthonormal columns
        self.q64 = decoder.double()
        # the mixture's own latent spread (a trained autoencoder's latents are scaled to 1)
        self.sigma_data = latent.sigma_data

    def denoise(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        return self.latent.denoise(x, sigma, cond)

    def decode(self, z: Tensor) -> Tensor:
        return (z.reshape(z.shape[0], -1) @ self.q.T).reshape(z.shape[0], *self.image_shape)

    def encode(self, x: Tensor) -> Tensor:
        return (x.reshape(x.shape[0], -1) @ self.q).reshape(x.shape[0], *self.in_shape)

    # The exact image-space distributions (decoded), as ``GaussianMixturePrior`` offers them,
    # so that ``make_problem`` and ``posterior_fit`` serve the latent double too.

    @property
    def mixture(self) -> DecodedMixture:
        return DecodedMixture(self.latent.mixture, self.q64)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.decode(self.latent.sample(n, generator))

    def posterior(self, A: Tensor, sigma_y: float, y: Tensor) -> DecodedMixture:
        """The exact image posterior for ``y = A x + n``: the latent posterior for ``A Q``."""
        return DecodedMixture(self.latent.posterior(A @ self.q64, sigma_y, y), self.q64)


@dataclass
class DecodedMixture:
    """A latent Gaussian mixture seen through the linear decoder ``Q`` (weights, image means,
    samples; its covariances are singular in image space, so it is not a ``GaussianMixture``)."""

    latent: GaussianMixture
    q: Tensor  # D x d, float64

    @property
    def weights(self) -> Tensor:
        return self.latent.weights

    @property
    def means(self) -> Tensor:
        return self.latent.means @ self.q.T

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.latent.sample(n, generator) @ self.q.T


def image_shape(prior: GaussianMixturePrior | LinearLatentPrior) -> tuple[int, int, int]:
    """The shape of the images a test-bed prior models (the decoder's, for the latent one)."""
    return prior.image_shape if isinstance(prior, LatentPrior) else prior.in_shape


def make_latent_prior() -> LinearLatentPrior:
    g = torch.Generator().manual_seed(4)
    latent = GaussianMixturePrior.random(8, 3, in_shape=LATENT_SHAPE, generator=g, scale=0.7)
    q, _ = torch.linalg.qr(torch.randn(16, 8, generator=g, dtype=torch.float64))
    return LinearLatentPrior(latent, q, IMAGE_SHAPE)


class ExactPosteriorPrior(ConditionalPrior):
    """The exact conditional prior ``p(x | y)`` of the Gaussian-mixture test bed.

    ``condition(y)`` writes the ``m`` measurement values into the first ``m`` pixels of an
    image-sized tensor (SR3's conditioning is image-shaped); ``denoise`` reads them back and
    returns the Tweedie denoiser of the closed-form posterior mixture for that ``y``.
    """

    def __init__(self, prior: GaussianMixturePrior, matrix: Tensor, sigma_y: float):
        super().__init__()
        self.prior, self.matrix, self.sigma_y = prior, matrix, sigma_y
        self.in_shape, self.sigmas = prior.in_shape, prior.sigmas
        self._posteriors: dict[bytes, GaussianMixturePrior] = {}

    def condition(self, y: Tensor) -> Tensor:
        flat = torch.zeros(y.shape[0], math.prod(self.in_shape))
        flat[:, : self.matrix.shape[0]] = y.reshape(y.shape[0], -1)
        return flat.reshape(y.shape[0], *self.in_shape)

    def _posterior(self, y: Tensor) -> GaussianMixturePrior:
        key = y.numpy().tobytes()
        if key not in self._posteriors:
            post = self.prior.posterior(self.matrix, self.sigma_y, y)
            self._posteriors[key] = GaussianMixturePrior(
                post.weights, post.means, post.covs, self.in_shape, self.sigmas
            )
        return self._posteriors[key]

    def denoise(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        ys = cond.reshape(cond.shape[0], -1)[:, : self.matrix.shape[0]]
        unique, inverse = torch.unique(ys, dim=0, return_inverse=True)
        out = torch.empty_like(x)
        for k in range(unique.shape[0]):
            rows = inverse == k
            out[rows] = self._posterior(unique[k]).denoise(x[rows], sigma[rows], None)
        return out


# --------------------------------------------------------------------------------------------
# The problem and the distances
# --------------------------------------------------------------------------------------------


@dataclass
class Problem:
    prior: GaussianMixturePrior | LinearLatentPrior
    operator: SVDOperator
    noise: Gaussian
    x: Tensor  # 1 x C x H x W, the clean image (a prior sample)
    y: Tensor  # 1 x ..., its noisy measurement
    matrix: Tensor  # the operator's dense matrix (float64)

    def posterior_samples(self, n: int, seed: int) -> Tensor:
        post = self.prior.posterior(self.matrix, self.noise.sigma, self.y)
        return (
            post.sample(n, torch.Generator().manual_seed(seed))
            .float()
            .reshape(n, *image_shape(self.prior))
        )


def make_problem(
    kind: str,
    sigma_y: float = SIGMA_Y,
    prior: GaussianMixturePrior | LinearLatentPrior | None = None,
    truth: int = 0,
) -> Problem:
    """The fixed problem: ``y = A x + N(0, sigma_y^2)`` with ``x`` drawn from the prior.

    ``truth`` picks another clean image and noise draw (0 is the historical one).
    """
    prior = prior if prior is not None else make_gmm_prior()
    op = make_operator(kind, image_shape(prior))
    g = torch.Generator().manual_seed(PROBLEM_SEED + 1000 * truth)
    x = prior.sample(1, g)
    noise = Gaussian(sigma_y)
    with torch.no_grad():
        y = noise(op(x), g)
        # Keep only the measured components: an inpainting ``y`` is zero at the missing pixels
        # (the operators' contract), so noise drawn there is removed: y <- U 1[s > 0] U^T y.
        measured = (op.singular_values > 0).to(y.dtype)
        y = op.U(measured * op.Ut(y))
    return Problem(prior, op, noise, x, y, op.matrix())


@dataclass
class PosteriorDistance:
    """Sliced-Wasserstein distances to one set of exact posterior samples."""

    solver: float  # solver samples vs exact posterior
    prior: float  # exact prior samples vs exact posterior
    exact: float  # a second exact posterior set vs the first (the sampling-noise floor)
    samples: Tensor  # the solver's samples (n x C x H x W)

    def __iter__(self):  # unpack as (solver, prior, exact)
        return iter((self.solver, self.prior, self.exact))

    @property
    def ratio(self) -> float:
        return self.solver / self.prior


def run_solver(
    name: str, problem: Problem, n: int, steps: int, seed: int = 0, **hyper: Any
) -> Tensor:
    """``n`` posterior samples for the problem's single ``y`` (repeated ``n`` times, one batch)."""
    y = problem.y.expand(n, *problem.y.shape[1:]).contiguous()
    return invdiff.solve(
        name,
        prior=problem.prior,
        operator=problem.operator,
        y=y,
        noise=problem.noise,
        steps=steps,
        generator=torch.Generator().manual_seed(seed),
        **hyper,
    )


def posterior_distance(
    solver_name: str,
    operator_kind: str = "inpainting",
    n: int = 256,
    steps: int = 100,
    *,
    seed: int = 0,
    sigma_y: float = SIGMA_Y,
    problem: Problem | None = None,
    **hyper: Any,
) -> PosteriorDistance:
    """Run ``solver_name`` on the test bed and return ``(solver, prior, exact)`` SW distances."""
    problem = problem if problem is not None else make_problem(operator_kind, sigma_y)
    exact = problem.posterior_samples(n, seed=1000 + seed)
    exact2 = problem.posterior_samples(n, seed=2000 + seed)
    prior_samples = problem.prior.sample(n, torch.Generator().manual_seed(3000 + seed))
    samples = run_solver(solver_name, problem, n, steps, seed=seed, **hyper)

    def sw(a, b):
        return sliced_wasserstein(a, b, projections=256, generator=torch.Generator().manual_seed(7))

    return PosteriorDistance(
        sw(samples, exact), sw(prior_samples, exact), sw(exact2, exact), samples
    )


@dataclass
class PosteriorFit:
    """How a solver's samples for one ``y`` compare with the exact posterior's.

    ``ratio``: SW distance to the exact samples over the prior's (0 is exact, 1 ignores ``y``);
    ``floor``: the exact-vs-exact SW distance over the prior's (sampling noise);
    ``mean_error``: distance of the sample mean to the exact posterior mean, over the prior
    mean's distance to it; ``spread``: RMS per-coordinate standard deviation over the exact
    one's; ``residual``: RMS ``A x - y`` of the samples over the exact samples' (below 1: the
    samples over-fit the noise in ``y``; above 1: they under-fit it).
    """

    ratio: float
    floor: float
    mean_error: float
    spread: float
    residual: float
    samples: Tensor


def _rms_std(x: Tensor) -> float:
    return float(x.flatten(1).double().var(0).mean().sqrt())


def _rms_residual(problem: Problem, x: Tensor) -> float:
    with torch.no_grad():
        r = problem.operator(x.float()) - problem.y
    return float(r.double().pow(2).mean().sqrt())


def posterior_fit(
    solver_name: str, problem: Problem, n: int = 256, steps: int = 100, seed: int = 0, **hyper
) -> PosteriorFit:
    """Run ``solver_name`` on ``problem`` and compare its ``n`` samples with exact ones."""
    exact = problem.posterior_samples(n, seed=1000 + seed)
    exact2 = problem.posterior_samples(n, seed=2000 + seed)
    prior_samples = problem.prior.sample(n, torch.Generator().manual_seed(3000 + seed))
    samples = run_solver(solver_name, problem, n, steps, seed=seed, **hyper)

    def sw(a: Tensor, b: Tensor) -> float:
        return sliced_wasserstein(a, b, projections=256, generator=torch.Generator().manual_seed(7))

    prior_d = sw(prior_samples, exact)
    post = problem.prior.posterior(problem.matrix, problem.noise.sigma, problem.y)
    exact_mean = (post.weights[:, None] * post.means).sum(0)
    prior_mean = problem.prior.mixture.weights @ problem.prior.mixture.means
    mean_error = float((samples.flatten(1).double().mean(0) - exact_mean).norm()) / float(
        (prior_mean - exact_mean).norm()
    )
    return PosteriorFit(
        ratio=sw(samples, exact) / prior_d,
        floor=sw(exact2, exact) / prior_d,
        mean_error=mean_error,
        spread=_rms_std(samples) / _rms_std(exact),
        residual=_rms_residual(problem, samples) / _rms_residual(problem, exact),
        samples=samples,
    )
