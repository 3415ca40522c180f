"""Budgets in network evaluations: ``nfe=`` in ``invdiff.solve``, ``nfe`` in suites (a sweep)."""

from __future__ import annotations

import json

import pytest
import torch
from test_bench import TINY_SUITE, make_tiny_setup

import invdiff
from invdiff.bench.runner import run
from invdiff.bench.suite import SuiteError, load
from invdiff.solvers import budget, steps_for_nfe

NETWORK_SOLVERS = [n for n in invdiff.solvers.names() if budget(n, 1).nfe]


@pytest.mark.parametrize("name", NETWORK_SOLVERS)
@pytest.mark.parametrize("nfe", [7, 20, 100, 333])
def test_steps_for_nfe_is_the_most_steps_that_fit(name, nfe):
    """The steps it gives cost at most ``nfe``, and one step more would exceed it."""
    hyper = {"jump_length": 2, "jump_n_sample": 2} if name == "repaint" else {}
    if budget(name, 1, **hyper).nfe > nfe:
        with pytest.raises(ValueError, match="raise nfe"):
            steps_for_nfe(name, nfe, **hyper)
        return
    steps = steps_for_nfe(name, nfe, **hyper)
    assert budget(name, steps, **hyper).nfe <= nfe < budget(name, steps + 1, **hyper).nfe


def test_steps_for_nfe_refuses_what_it_cannot_convert():
    with pytest.raises(ValueError, match="give steps"):
        steps_for_nfe("tv", 100)
    with pytest.raises(ValueError, match="positive integer"):
        steps_for_nfe("dps", 0)
    with pytest.raises(ValueError, match="positive integer"):
        steps_for_nfe("dps", True)  # type: ignore[arg-type]


def test_solve_with_nfe_counts_that_many_evaluations(gmm_problem):
    prior, op, y, noise = gmm_problem
    for name, nfe in (("ddrm", 12), ("daps", 12), ("repaint", 12)):
        prior.nfe = 0
        hyper = {"jump_length": 2, "jump_n_sample": 2} if name == "repaint" else {}
        out = invdiff.solve(
            name, prior=prior, operator=op, y=y, noise=noise, nfe=nfe, generator=0, **hyper
        )
        assert out.shape[0] == y.shape[0]
        steps = steps_for_nfe(name, nfe, prior=prior, **hyper)
        assert prior.nfe == budget(name, steps, prior=prior, **hyper).nfe <= nfe


def test_solve_takes_steps_or_nfe_not_both(gmm_problem):
    prior, op, y, noise = gmm_problem
    for kw in ({}, {"steps": 5, "nfe": 5}):
        with pytest.raises(ValueError, match="exactly one"):
            invdiff.solve("ddrm", prior=prior, operator=op, y=y, noise=noise, generator=0, **kw)


@pytest.fixture(scope="module")
def gmm_problem():
    from solver_testbed import make_gmm_prior

    prior = make_gmm_prior()
    op = invdiff.operators.get(
        "inpainting_random", in_shape=prior.in_shape, generator=torch.Generator().manual_seed(0)
    )
    noise = invdiff.noise.Gaussian(0.05)
    x = prior.sample(3, torch.Generator().manual_seed(1))
    y = noise(op(x), torch.Generator().manual_seed(2))
    return prior, op, y, noise


def _suite(root, solvers: str):
    paths = make_tiny_setup(root)
    head = TINY_SUITE[: TINY_SUITE.index("[[solvers]]")].replace("seeds = [0, 1]", "seeds = [0]")
    path = root / "suite.toml"
    path.write_text(head.format(**paths) + solvers)
    return path


def test_a_suite_sweeps_nfe_and_its_rows_record_the_budget(tmp_path):
    f = _suite(
        tmp_path,
        '[[solvers]]\nname = "ddrm"\nnfe = [2, 3]\n\n[[solvers]]\nname = "pinv"\nsteps = 1\n',
    )
    suite = load(f, limit=2)
    assert [(s.label, s.steps, s.nfe) for s in suite.solvers] == [
        ("ddrm-nfe2", None, 2),
        ("ddrm-nfe3", None, 3),
        ("pinv", 1, None),
    ]
    out = tmp_path / "out"
    run(suite, out, progress=False, figures=False)
    rows = [
        json.loads(line) for p in out.glob("rows*.jsonl") for line in p.read_text().splitlines()
    ]
    ddrm = [r for r in rows if r["solver_name"] == "ddrm"]
    assert ddrm and all(r["nfe"] == r["nfe_budget"] == r["steps"] for r in ddrm)
    assert {r["nfe_budget"] for r in ddrm} == {2, 3}


@pytest.mark.parametrize(
    "entry, message",
    [
        ('name = "ddrm"\n', "exactly one"),
        ('name = "ddrm"\nsteps = 2\nnfe = 2\n', "exactly one"),
        ('name = "tv"\nnfe = 10\n', "give steps"),
        ('name = "ddrm"\nnfe = [2, 2]\n', "distinct"),
        ('name = "ddrm"\nnfe = 0\n', "positive"),
        ('name = "daps"\nnfe = 4\n', "raise nfe"),
        ('name = "daps"\nnfe = 4\nhyper = { ode_steps = 1 }\n', None),
    ],
)
def test_a_bad_budget_is_refused_at_parse_time(tmp_path, entry, message):
    f = _suite(tmp_path, "[[solvers]]\n" + entry)
    if message is None:
        load(f)  # one DAPS step with a one-step ODE costs 2: 4 fits
        return
    with pytest.raises(SuiteError, match=message):
        load(f)
