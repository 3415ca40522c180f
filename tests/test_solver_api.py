"""``invdiff.solve``: argument validation before any work, seeds, registry behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from solver_testbed import make_gmm_prior, make_operator

import invdiff
from invdiff.noise import Gaussian
from invdiff.registry import UnknownNameError


@pytest.fixture
def setup():
    prior = make_gmm_prior()
    op = make_operator("cs")
    x = prior.sample(2, torch.Generator().manual_seed(0))
    return prior, op, op(x), Gaussian(0.05)


def _solve(setup, name="ddrm", **overrides):
    prior, op, y, noise = setup
    kwargs = dict(prior=prior, operator=op, y=y, noise=noise, steps=3, generator=0)
    kwargs.update(overrides)
    return invdiff.solve(name, **kwargs)


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"y": torch.zeros(2, 9)}, ValueError, "shape"),
        ({"y": torch.zeros(8)}, ValueError, "shape"),
        ({"y": torch.zeros(2, 1, 4, 4)}, ValueError, "N x 8"),
        ({"y": torch.full((2, 8), float("nan"))}, ValueError, "NaN"),
        ({"y": torch.full((2, 8), float("inf"))}, ValueError, "Inf"),
        ({"y": torch.zeros(2, 8, dtype=torch.int64)}, TypeError, "float"),
        ({"y": np.zeros((2, 8), dtype=np.float32)}, TypeError, "torch.Tensor"),
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": -3}, ValueError, "steps"),
        ({"steps": 2.5}, ValueError, "steps"),
        ({"steps": "10"}, ValueError, "steps"),
        # more than the prior's 1000 noise levels on the strided DDPM grid (a continuous grid,
        # DDRM's default linear one, takes any number of steps)
        ({"steps": 1001, "grid": "ddpm"}, ValueError, "steps"),
        ({"generator": None}, TypeError, "generator"),
        ({"generator": "seed"}, TypeError, "generator"),
        ({"generator": np.random.default_rng(0)}, TypeError, "generator"),
        ({"generator": 1.5}, TypeError, "generator"),
        ({"eta": 2.0}, ValueError, "eta"),
        ({"not_a_hyperparameter": 1}, TypeError, "hyperparameter"),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_bad_arguments_fail_before_any_network_evaluation(setup, overrides, error, match):
    prior = setup[0]
    with pytest.raises(error, match=match):
        _solve(setup, **overrides)
    assert prior.nfe == 0


def test_unknown_solver_lists_the_valid_names(setup):
    with pytest.raises(UnknownNameError) as info:
        _solve(setup, name="ddrn")
    assert "ddrm" in str(info.value) and "dps" in str(info.value)


def test_int_seed_equals_generator_with_that_seed(setup):
    a = _solve(setup, generator=7)
    b = _solve(setup, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_no_global_randomness(setup):
    torch.manual_seed(0)
    a = _solve(setup, name="dps", generator=3)
    torch.manual_seed(123)
    b = _solve(setup, name="dps", generator=3)
    assert torch.equal(a, b)


def test_registered_names_and_output_contract(setup):
    names = invdiff.solvers.names()
    for name in ("dps", "repaint", "ddrm", "ddnm", "pigdm", "pinv", "tikhonov", "tv"):
        assert name in names
        assert invdiff.solvers.get(name).registry_name == name
    out = _solve(setup, name="pigdm")
    assert out.shape == (2, 1, 4, 4) and out.dtype == torch.float32
    assert out.device == setup[2].device
