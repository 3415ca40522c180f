"""The data-fit primitives on the operator: ``prox_l2``, ``spectral_measurement``, the one
batched CG and the singular-value cut-off; the blur family's ``blur(kernel, boundary)``."""

from __future__ import annotations

import pytest
import torch

import invdiff
from invdiff.noise import SIGMA_FLOOR, Gaussian, Poisson, noise_variance
from invdiff.operators import blur as blur_family
from invdiff.operators.base import RCOND, LinearOperator, SVDOperator, significant
from invdiff.operators.cg import batch_dot, conjugate_gradient
from invdiff.registry import OPERATORS

NAMES = invdiff.operators.names()
LINEAR = [n for n in NAMES if issubclass(OPERATORS.entry(n), LinearOperator)]
SVD = [n for n in NAMES if issubclass(OPERATORS.entry(n), SVDOperator)]


def _problem(name: str, batch: int = 3) -> tuple[LinearOperator, torch.Tensor, torch.Tensor]:
    op = OPERATORS.entry(name).example().to(torch.float64)
    g = torch.Generator().manual_seed(7)
    z = torch.rand(batch, *op.in_shape, generator=g, dtype=torch.float64) * 2 - 1
    x = torch.rand(batch, *op.in_shape, generator=g, dtype=torch.float64) * 2 - 1
    return op, z, op(x)


def _dense_prox(op: LinearOperator, z: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    a = op.matrix()
    lhs = a.T @ a + rho * torch.eye(a.shape[1], dtype=a.dtype)
    rhs = y.flatten(1) @ a + rho * z.flatten(1)
    return torch.linalg.solve(lhs, rhs.T).T.reshape(z.shape)


@pytest.mark.parametrize("name", LINEAR)
def test_prox_l2_is_the_regularised_least_squares_solution(name):
    op, z, y = _problem(name)
    rho = 0.3
    expected = _dense_prox(op, z, y, rho)
    got = op.prox_l2(z, y, rho, iterations=400)
    torch.testing.assert_close(got, expected, atol=1e-8, rtol=0)


@pytest.mark.parametrize("name", SVD)
def test_svd_prox_l2_agrees_with_the_generic_cg(name):
    op, z, y = _problem(name)
    closed = op.prox_l2(z, y, 0.3)
    by_cg = LinearOperator.prox_l2(op, z, y, 0.3, iterations=400)
    torch.testing.assert_close(closed, by_cg, atol=1e-8, rtol=0)


@pytest.mark.parametrize("name", SVD)
def test_svd_prox_l2_without_regularisation_projects_onto_the_measurement(name):
    op, z, y = _problem(name)
    x = op.prox_l2(z, y, 0.0)
    torch.testing.assert_close(op(x), y, atol=1e-8, rtol=0)
    # the unobserved spectral coordinates keep z
    observed = significant(op.pad_spectral(op.singular_values[None])[0])
    torch.testing.assert_close(op.Vt(x)[:, ~observed], op.Vt(z)[:, ~observed], atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", SVD)
def test_spectral_measurement(name):
    op, _, y = _problem(name)
    ybar, s, observed = op.spectral_measurement(y)
    n = op.Vt(torch.zeros(1, *op.in_shape, dtype=y.dtype)).shape[1]
    assert ybar.shape == (y.shape[0], n) and s.shape == (n,) and observed.shape == (n,)
    assert torch.equal(observed, significant(s))
    torch.testing.assert_close(ybar * s, op.pad_spectral(op.Ut(y)) * observed, atol=1e-12, rtol=0)
    assert torch.equal(ybar[:, ~observed], torch.zeros_like(ybar[:, ~observed]))
    # the pseudo-inverse is V ybar
    torch.testing.assert_close(op.V(ybar), op.pinv(y), atol=1e-12, rtol=0)


def test_one_cut_off_for_tiny_singular_values():
    s = torch.tensor([2.0, 1.0, 2e-6, 2.1e-6, 0.0])
    assert significant(s).tolist() == [True, True, False, True, False]
    assert significant(s, rcond=0.6).tolist() == [True, False, False, False, False]
    assert not significant(torch.zeros(3)).any()
    assert RCOND == 1e-6


def _spd_batch(n: int = 3, dim: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    m = torch.randn(n, dim, dim, generator=g, dtype=torch.float64)
    a = m @ m.transpose(1, 2) + 0.1 * torch.eye(dim, dtype=torch.float64)
    a[1] *= 1e3  # samples at very different scales: each needs its own step sizes
    return a, torch.randn(n, dim, generator=g, dtype=torch.float64)


def test_conjugate_gradient_solves_each_sample_on_its_own():
    a, b = _spd_batch()

    def apply(v: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nij,nj->ni", a, v)

    x = conjugate_gradient(apply, b, iterations=100, tol=1e-12)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), atol=1e-8, rtol=1e-8)
    for i in range(len(b)):
        alone = conjugate_gradient(
            lambda v, i=i: v @ a[i].T, b[i : i + 1], iterations=100, tol=1e-12
        )
        torch.testing.assert_close(alone, x[i : i + 1], atol=1e-10, rtol=1e-10)
    # leaving once every sample has converged changes the time, not the result
    early = conjugate_gradient(apply, b, iterations=100, tol=1e-12, early_exit=True)
    assert torch.equal(early, x)


def test_conjugate_gradient_start_callback_and_frozen_samples():
    a, b = _spd_batch()

    def apply(v: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nij,nj->ni", a, v)

    exact = torch.linalg.solve(a, b)
    seen: list[int] = []
    x = conjugate_gradient(
        apply, b, exact, iterations=5, on_iteration=lambda i, _: seen.append(i), tol=1e-9
    )
    assert seen == [0, 1, 2, 3, 4]
    torch.testing.assert_close(x, exact, atol=1e-9, rtol=0)  # started at the solution: stays
    zero = conjugate_gradient(apply, torch.zeros_like(b), iterations=3)
    assert torch.equal(zero, torch.zeros_like(b))
    assert batch_dot(b, b).shape == (3, 1)


@pytest.mark.parametrize("boundary", blur_family.BOUNDARIES)
def test_blur_family(boundary):
    kernel = blur_family.blur_kernel("gaussian", size=5, sigma=1.0)
    op = blur_family.blur(kernel, (1, 8, 8), boundary)
    assert isinstance(op, blur_family.Blur) and op.boundary == boundary
    assert isinstance(op, SVDOperator) == (boundary == "periodic")
    preset = invdiff.operators.get(
        "gaussian_blur" if boundary == "periodic" else "gaussian_blur_padded",
        in_shape=(1, 8, 8),
        size=5,
        sigma=1.0,
        **({} if boundary == "periodic" else {"padding": boundary}),
    )
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert torch.equal(op(x), preset(x))
    with pytest.raises(ValueError, match="boundary"):
        blur_family.blur(kernel, (1, 8, 8), "mirror")
    with pytest.raises(ValueError, match="kernel"):
        blur_family.blur_kernel("airy")


def test_blur_presets_keep_their_positional_parameters():
    a = invdiff.operators.get("gaussian_blur_padded", in_shape=(1, 8, 8), size=3, sigma=0.5)
    b = OPERATORS.entry("gaussian_blur_padded")((1, 8, 8), 3, 0.5, "reflect")
    assert torch.equal(a.kernel, b.kernel) and a.padding == b.padding == "reflect"
    with pytest.raises(TypeError):
        OPERATORS.entry("uniform_blur")(in_shape=(1, 8, 8), sigma=1.0)


def test_noise_variance():
    assert noise_variance(Gaussian(0.1)) == pytest.approx(0.01)
    assert noise_variance(Gaussian(0.0)) == SIGMA_FLOOR**2
    assert noise_variance(Poisson(100.0)) == pytest.approx(0.02)
