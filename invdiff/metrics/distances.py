"""Distances between two sets of feature vectors: Frechet (FID) and kernel MMD (KID).

These are the statistics behind FID and KID, separated from the network that makes the
features, so they can be tested on any features. Everything is computed in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor


def trace_sqrt_product(cov1: Tensor, cov2: Tensor) -> Tensor:
    """``tr((C1 C2)^{1/2})`` for symmetric positive semi-definite ``C1``, ``C2`` (float64).

    ``C1 C2`` is similar to the symmetric PSD ``L^T C2 L`` where ``C1 = L L^T``, so the trace is
    the sum of the square roots of that matrix's (real, clamped at 0) eigenvalues: no complex
    round-off and no ``eps * I`` fix. ``L`` is the Cholesky factor, or ``C1^{1/2}`` from an
    eigendecomposition when ``C1`` is singular (fewer samples than dimensions).
    """
    chol, info = torch.linalg.cholesky_ex(cov1)
    if int(info) == 0:
        inner = chol.T @ cov2 @ chol
    else:
        w, v = torch.linalg.eigh((cov1 + cov1.T) / 2)
        sqrt1 = (v * w.clamp(min=0).sqrt()) @ v.T
        inner = sqrt1 @ cov2 @ sqrt1
    return torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """Squared Frechet (2-Wasserstein) distance between ``N(mu1, cov1)`` and ``N(mu2, cov2)``.

    ``d^2 = ||mu1 - mu2||^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^{1/2})`` (Dowson & Landau 1982;
    Heusel et al. 2017, the FID), in float64 (see :func:`trace_sqrt_product`). Equal to
    pytorch-fid's ``scipy.linalg.sqrtm`` formula where that one is well conditioned.
    """
    mu1, mu2, cov1, cov2 = (t.to(torch.float64) for t in (mu1, mu2, cov1, cov2))
    d = mu1.shape[-1]
    if mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(
            f"means must be d and covariances d x d, got {tuple(mu1.shape)}, {tuple(cov1.shape)}, "
            f"{tuple(mu2.shape)}, {tuple(cov2.shape)}"
        )
    diff = mu1 - mu2
    return float(diff @ diff + cov1.trace() + cov2.trace() - 2 * trace_sqrt_product(cov1, cov2))


def frechet_distance_of_features(real: Tensor, fake: Tensor) -> float:
    """:func:`frechet_distance` of the Gaussians fitted to ``N1 x d`` and ``N2 x d`` features
    (sample means, covariances with divisor N - 1), computed without d x d matrices.

    With the centred features ``A`` and ``B``, ``C1 = A^T A / (N1 - 1)`` and
    ``C2 = B^T B / (N2 - 1)``; the non-zero eigenvalues of ``C1 C2`` are the squared singular
    values of ``A B^T / sqrt((N1 - 1)(N2 - 1))``, so ``tr((C1 C2)^{1/2})`` is the nuclear norm of
    that ``N1 x N2`` matrix. Exact, and far cheaper than the d x d route when N < d.
    """
    a = real.to(torch.float64)
    b = fake.to(torch.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(
            "need at least 2 feature vectors N x d on each side, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    mu1, mu2 = a.mean(dim=0), b.mean(dim=0)
    a, b = a - mu1, b - mu2
    n1, n2 = len(a) - 1, len(b) - 1
    nuclear = torch.linalg.svdvals(a @ b.T).sum() / (n1 * n2) ** 0.5
    diff = mu1 - mu2
    return float(diff @ diff + a.pow(2).sum() / n1 + b.pow(2).sum() / n2 - 2 * nuclear)


def mean_and_covariance(features: Tensor) -> tuple[Tensor, Tensor]:
    """Sample mean and unbiased covariance (divisor N - 1) of ``N x d`` features, float64."""
    f = features.to(torch.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors N x d, got shape {tuple(f.shape)}")
    mu = f.mean(dim=0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def polynomial_mmd2(
    x: Tensor, y: Tensor, degree: int = 3, gamma: float | None = None, coef: float = 1.0
) -> Tensor:
    """Unbiased estimate of ``MMD^2`` between equal-size samples ``x``, ``y`` (``m x d``).

    Kernel ``k(a, b) = (gamma a.b + coef)^degree`` with ``gamma = 1/d`` by default (Binkowski
    et al. 2018, "Demystifying MMD GANs", the KID):
    ``MMD^2 = [sum_{i!=j} k(x_i,x_j) + k(y_i,y_j)] / (m(m-1)) - 2 sum_{i,j} k(x_i,y_j) / m^2``.
    """
    m, d = x.shape
    gamma = 1.0 / d if gamma is None else gamma
    k_xx = (x @ x.T * gamma + coef) ** degree
    k_yy = (y @ y.T * gamma + coef) ** degree
    k_xy = (x @ y.T * gamma + coef) ** degree
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (
        m * (m - 1)
    )
    return within - 2 * k_xy.sum() / m**2


def kernel_distance(
    real: Tensor,
    fake: Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | int | None = None,
    degree: int = 3,
) -> tuple[float, float, int]:
    """KID: mean and standard deviation of ``polynomial_mmd2`` over random subsets.

    ``subsets`` pairs of subsets of ``min(subset_size, N_real, N_fake)`` features are drawn
    without replacement (Binkowski et al. 2018; the clean-fid / torchmetrics protocol, std with
    divisor ``subsets``). ``generator`` (or an int seed; default seed 0) draws the subsets.
    Returns ``(mean, std, subset size used)``.
    """
    real, fake = real.to(torch.float64), fake.to(torch.float64)
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        raise ValueError(
            f"KID needs at least 2 real and 2 fake samples, got {real.shape[0]} and {fake.shape[0]}"
        )
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    if not isinstance(generator, torch.Generator):
        generator = torch.Generator().manual_seed(0 if generator is None else int(generator))
    values = []
    for _ in range(subsets):
        i = torch.randperm(real.shape[0], generator=generator)[:size].to(real.device)
        j = torch.randperm(fake.shape[0], generator=generator)[:size].to(fake.device)
        values.append(polynomial_mmd2(real[i], fake[j], degree=degree))
    v = torch.stack(values)
    return float(v.mean()), float(v.std(unbiased=False)), size
