"""Registry-wide operator tests: every registered operator, on its small ``example()``."""

from __future__ import annotations

import inspect

import pytest
import torch

import invdiff
from invdiff.operators import checks
from invdiff.operators.base import LinearOperator, Operator, SVDOperator
from invdiff.registry import OPERATORS

NAMES = invdiff.operators.names()
EXPECTED = {
    "identity": SVDOperator,
    "inpainting_box": SVDOperator,
    "inpainting_random": SVDOperator,
    "inpainting_freeform": SVDOperator,
    "inpainting_half": SVDOperator,
    "inpainting_lines": SVDOperator,
    "gaussian_blur": SVDOperator,
    "uniform_blur": SVDOperator,
    "motion_blur": SVDOperator,
    "gaussian_blur_padded": LinearOperator,
    "uniform_blur_padded": LinearOperator,
    "motion_blur_padded": LinearOperator,
    "super_resolution": SVDOperator,
    "bicubic_downsampling": LinearOperator,
    "colorization": SVDOperator,
    "compressed_sensing": SVDOperator,
    "phase_retrieval": Operator,
    "hdr": Operator,
    "nonlinear_blur": Operator,
}
LINEAR = [n for n in NAMES if issubclass(OPERATORS.entry(n), LinearOperator)]
SVD = [n for n in NAMES if issubclass(OPERATORS.entry(n), SVDOperator)]
RANDOM = [n for n in NAMES if "seed" in inspect.signature(OPERATORS.entry(n)).parameters]

# name -> float64 dot-test error, filled by test_adjointness and quoted by the report test
ADJOINTNESS: dict[str, float] = {}


def _example(name: str, dtype: torch.dtype = torch.float64) -> Operator:
    return OPERATORS.entry(name).example().to(dtype)


def _x(op: Operator, n: int = 3, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *op.in_shape, generator=g, dtype=dtype) * 2 - 1


def test_every_shared_name_is_registered_with_its_capability():
    assert set(EXPECTED) <= set(NAMES)
    for name, cls in EXPECTED.items():
        entry = OPERATORS.entry(name)
        assert issubclass(entry, cls), name
        # the capability is exactly the stated one (a nonlinear operator is not linear, ...)
        assert issubclass(entry, LinearOperator) == issubclass(cls, LinearOperator), name
        assert issubclass(entry, SVDOperator) == (cls is SVDOperator), name
    assert {n for n in NAMES if OPERATORS.entry(n).is_inpainting} == {
        n for n in NAMES if n.startswith("inpainting")
    }


@pytest.mark.parametrize("name", NAMES)
def test_example_and_default_shapes(name):
    op = OPERATORS.entry(name).example()
    assert isinstance(op, Operator) and op.registry_name == name
    y = op(_x(op, dtype=torch.float32))
    assert y.dtype == torch.float32 and tuple(y.shape[1:]) == tuple(op.out_shape())
    default = invdiff.operators.get(name)
    assert default.in_shape == ((3, 32, 32) if name == "colorization" else (1, 32, 32))
    if op.is_inpainting:
        assert default.mask.shape == (1, 1, 32, 32) and default.out_shape() == default.in_shape


@pytest.mark.parametrize("name", LINEAR)
def test_adjointness(name):
    err = checks.adjointness_error(_example(name), torch.Generator().manual_seed(1))
    ADJOINTNESS[name] = err
    assert err < 1e-12, f"{name}: <Ax, y> != <x, A^T y>, relative error {err:.2e}"


def test_adjointness_report(capsys):
    """The lead quotes this line: the largest adjointness error over all linear operators."""
    for name in LINEAR:
        if name not in ADJOINTNESS:  # when run alone
            ADJOINTNESS[name] = checks.adjointness_error(
                _example(name), torch.Generator().manual_seed(1)
            )
    worst = max(ADJOINTNESS, key=ADJOINTNESS.get)
    with capsys.disabled():
        print(
            f"\nlargest adjointness error over all {len(ADJOINTNESS)} linear operators (float64): "
            f"{ADJOINTNESS[worst]:.2e} ({worst})"
        )
    assert ADJOINTNESS[worst] < 1e-12


@pytest.mark.parametrize("name", SVD)
def test_svd(name):
    op = _example(name)
    errors = checks.svd_errors(op)
    assert max(errors.values()) < 1e-10, errors
    s = op.singular_values
    assert s.ndim == 1 and bool((s >= 0).all()) and bool((s[:-1] >= s[1:]).all()), (
        "singular values: >= 0, descending"
    )
    x = _x(op)
    m = op.num_measurements
    torch.testing.assert_close(op.Ut(op(x)), s * op.Vt(x)[:, :m], atol=1e-12, rtol=0)
    torch.testing.assert_close(op.V(op.Vt(x)), x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", LINEAR)
def test_pinv_is_a_right_inverse_on_the_range(name):
    op = _example(name)
    y = op(_x(op))
    kw = {} if name in SVD else {"iterations": 300, "tol": 1e-12}
    xp = op.pinv(y, **kw)
    assert xp.shape == (3, *op.in_shape)
    err = float((op(xp) - y).norm() / y.norm())
    assert err < (1e-10 if name in SVD else 1e-6), err
    # minimum norm: the pseudo-inverse of a measurement has no component in the null space
    torch.testing.assert_close(op.pinv(op(xp), **kw), xp, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_vjp_matches_finite_differences(name):
    err = checks.vjp_error(_example(name), torch.Generator().manual_seed(2))
    assert err < 1e-6, err


@pytest.mark.parametrize("name", NAMES)
def test_batch_independence(name):
    op = _example(name)
    x = _x(op, n=3)
    y = op(x)
    for i in range(3):
        torch.testing.assert_close(op(x[i : i + 1]), y[i : i + 1], atol=1e-12, rtol=0)
    x2 = x.clone()
    x2[1:] = -x2[1:]
    torch.testing.assert_close(op(x2)[0], y[0], atol=1e-12, rtol=0)
    if isinstance(op, LinearOperator):
        yy = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(3))
        adj, pinv = op.adjoint(yy), op.pinv(yy)
        for i in range(3):
            torch.testing.assert_close(
                op.adjoint(yy[i : i + 1]), adj[i : i + 1], atol=1e-12, rtol=0
            )
            torch.testing.assert_close(
                op.pinv(yy[i : i + 1]), pinv[i : i + 1], atol=1e-8, rtol=1e-8
            )


@pytest.mark.parametrize("name", NAMES)
def test_float32_agrees_with_float64(name):
    op32, op64 = _example(name, torch.float32), _example(name, torch.float64)
    x = _x(op64)
    y32, y64 = op32(x.float()), op64(x)
    assert y32.dtype == torch.float32 and y64.dtype == torch.float64
    assert float((y32.double() - y64).abs().max()) < 1e-5 * max(1.0, float(y64.abs().max()))
    # an operator follows its input: a float32 operator applied to float64 data gives float64
    assert op32(x).dtype == torch.float64
    if isinstance(op32, LinearOperator):
        a32, a64 = op32.adjoint(y64.float()), op64.adjoint(y64)
        assert float((a32.double() - a64).abs().max()) < 1e-5 * max(1.0, float(a64.abs().max()))


@pytest.mark.parametrize("name", RANDOM)
def test_generator_determinism(name):
    entry = OPERATORS.entry(name)
    shape = (1, 8, 8)
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a = entry(in_shape=shape, seed=11)(x)
    torch.testing.assert_close(entry(in_shape=shape, seed=11)(x), a, atol=0, rtol=0)
    torch.testing.assert_close(
        entry(in_shape=shape, generator=torch.Generator().manual_seed(11))(x), a, atol=0, rtol=0
    )
    others = [entry(in_shape=shape, seed=s)(x) for s in (12, 13, 14)]
    assert any(not torch.equal(o, a) for o in others), (
        "different seeds must give different operators"
    )
    with pytest.raises(ValueError, match="seed"):
        entry(in_shape=shape, seed=-1)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_are_clear_errors(name):
    op = OPERATORS.entry(name).example()
    x = _x(op, dtype=torch.float32)
    with pytest.raises(ValueError, match="x of shape"):
        op(torch.zeros(2, op.in_shape[0], op.in_shape[1] + 1, op.in_shape[2]))
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        op(x[0])
    with pytest.raises(TypeError, match="float"):
        op(torch.zeros(1, *op.in_shape, dtype=torch.int64))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        op(bad)
    if isinstance(op, LinearOperator):
        y = op(x)
        with pytest.raises(ValueError, match="y of shape"):
            op.adjoint(y[..., :-1])
        with pytest.raises(ValueError, match="y of shape"):
            op.pinv(y[..., :-1])
    with pytest.raises((ValueError, TypeError), match="in_shape"):
        OPERATORS.get(name, in_shape=(1, 0, 8))


@pytest.mark.parametrize("name", NAMES)
def test_matrix_does_not_change_the_operator(name):
    op = OPERATORS.entry(name).example()
    if isinstance(op, LinearOperator):
        a = op.matrix()
        assert (
            a.dtype == torch.float64
            and a.shape[1] == op.in_shape[0] * op.in_shape[1] * op.in_shape[2]
        )
    assert all(b.dtype != torch.float64 for b in op.buffers()), "operators are float32 until moved"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(name):
    op = OPERATORS.entry(name).example()
    x = _x(op, dtype=torch.float32)
    y = op(x)
    op_cuda = OPERATORS.entry(name).example().cuda()
    y_cuda = op_cuda(x.cuda())
    assert y_cuda.device.type == "cuda"
    torch.testing.assert_close(y_cuda.cpu(), y, atol=1e-5, rtol=1e-5)
    if isinstance(op, LinearOperator):
        assert op_cuda.adjoint(y_cuda).device.type == "cuda"
        assert op_cuda.pinv(y_cuda).device.type == "cuda"
