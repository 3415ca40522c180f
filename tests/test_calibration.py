"""Posterior scores: K samples per measurement, coverage of credible intervals, calibration.

The coverage is checked where the answer is known: exact posterior samples of the
Gaussian-mixture test bed cover the truth at the nominal rate (within 2 %), and a sampler that
is too narrow or too wide misses it in the direction it should.
"""

from __future__ import annotations

import pytest
import torch
from solver_testbed import make_gmm_prior, make_operator

import invdiff
from invdiff.metrics.posterior import (
    LEVELS,
    best_of_k_psnr,
    calibration_curve,
    coverage,
    measurement_consistency,
    pit,
    posterior_mean_psnr,
    posterior_mean_std,
)
from invdiff.noise import Gaussian


def exact_draws(mixture: str, kind: str, sigma_y: float, truths: int, k: int, seed: int = 0):
    """``truths`` clean images from the prior, their measurements and K exact posterior draws
    each: ``(samples N x K x C x H x W, truth, y, operator)``."""
    prior = make_gmm_prior(mixture)
    op = make_operator(kind, prior.in_shape)
    g = torch.Generator().manual_seed(seed)
    x = prior.sample(truths, g)
    y = Gaussian(sigma_y)(op(x), g)
    matrix = op.matrix()
    draws = [
        prior.posterior(matrix, sigma_y, y[i : i + 1]).sample(k, g).float().view(k, *x.shape[1:])
        for i in range(truths)
    ]
    return torch.stack(draws), x, y, op


@pytest.mark.parametrize("mixture, kind, sigma_y", [("m16", "cs", 0.05), ("m24", "blur", 0.1)])
def test_exact_posterior_samples_cover_the_truth_at_the_nominal_rate(mixture, kind, sigma_y):
    samples, x, _, _ = exact_draws(mixture, kind, sigma_y, truths=300, k=40)
    cover = coverage(samples, x).mean(0)
    for level, c in zip(LEVELS, cover.tolist()):
        assert abs(c - level) <= 0.02, (level, c)
    levels, curve = calibration_curve(samples, x)
    assert max(abs(a - b) for a, b in zip(levels, curve)) <= 0.025


def test_too_narrow_or_too_wide_samplers_are_caught():
    samples, x, _, _ = exact_draws("m16", "cs", 0.05, truths=200, k=40)
    mean = samples.mean(1, keepdim=True)
    narrow = coverage(mean + 0.5 * (samples - mean), x).mean(0)
    wide = coverage(mean + 2.0 * (samples - mean), x).mean(0)
    for level, lo, hi in zip(LEVELS, narrow.tolist(), wide.tolist()):
        assert lo < level - 0.1 and hi > min(level + 0.04, 0.995)


def test_pit_and_coverage_against_a_direct_count():
    g = torch.Generator().manual_seed(3)
    samples = torch.randn(2, 9, 1, 3, 3, generator=g).round(decimals=1)  # ties happen
    truth = torch.randn(2, 1, 3, 3, generator=g).round(decimals=1)
    low, high = pit(samples, truth)
    cov = coverage(samples, truth, [0.5])
    assert cov.shape == (2, 1)
    for i in range(2):
        fractions = []
        for j in range(9):
            s, t = samples[i, :, 0].flatten(1)[:, j], truth[i, 0].flatten()[j]
            r, ties = int((s < t).sum()), int((s == t).sum())
            assert low[i, 0].flatten()[j].item() == pytest.approx(r / 10)
            assert high[i, 0].flatten()[j].item() == pytest.approx((r + ties + 1) / 10)
            # the randomised PIT, by a fine grid over its cell
            grid = torch.linspace(r / 10, (r + ties + 1) / 10, 100_001, dtype=torch.float64)
            fractions.append(((grid - 0.5).abs() <= 0.25).double().mean().item())
        assert cov[i, 0].item() == pytest.approx(sum(fractions) / 9, abs=1e-4)
    with pytest.raises(ValueError, match="levels"):
        coverage(samples, truth, [1.0])
    with pytest.raises(ValueError, match="K >= 2"):
        coverage(samples[:, :1], truth)
    with pytest.raises(ValueError, match="N x K x C x H x W"):
        coverage(samples[0], truth)


def test_mean_and_best_of_k_beat_a_single_sample_on_exact_draws():
    samples, x, y, op = exact_draws("m16", "inpainting", 0.05, truths=64, k=16)
    x = x.clamp(-1, 1)  # PSNR needs a reference in [-1, 1]; a few mixture draws leave it
    single = invdiff.metrics.psnr(samples[:, 0].clamp(-1, 1), x)
    assert posterior_mean_psnr(samples, x).mean() > single.mean() + 1.0
    assert (best_of_k_psnr(samples, x) >= single - 1e-5).all()
    mean, std = posterior_mean_std(samples)
    assert mean.shape == std.shape == x.shape and (std >= 0).all()
    # the exact posterior's samples leave the measured pixels about sigma_y away from y
    ratio = measurement_consistency(samples, y, op, 0.05)
    assert ratio.shape == (64, 16) and 0.5 < ratio.mean().item() < 1.2


def test_solve_draws_k_samples_per_measurement_in_one_batch():
    prior = make_gmm_prior("m16")
    op = make_operator("inpainting", prior.in_shape)
    x = prior.sample(2, torch.Generator().manual_seed(0))
    y = Gaussian(0.05)(op(x), torch.Generator().manual_seed(1))
    kw = dict(prior=prior, operator=op, noise=Gaussian(0.05), steps=5)
    draws = invdiff.solve("ddrm", y=y, samples=3, generator=torch.Generator().manual_seed(4), **kw)
    assert draws.shape == (2, 3, *prior.in_shape)
    assert not torch.equal(draws[0, 0], draws[0, 1])  # independent draws
    flat = invdiff.solve(
        "ddrm",
        y=y.repeat_interleave(3, 0),
        generator=torch.Generator().manual_seed(4),
        **kw,
    )
    assert torch.equal(draws.flatten(0, 1), flat)
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        invdiff.solve("ddrm", y=y, samples=0, generator=0, **kw)


def test_a_suite_with_posterior_samples_scores_them_and_shows_their_spread(tmp_path):
    """``posterior_samples = K``: each row carries the posterior metrics of its image's K draws,
    the tables show them, the figure gains a std column per solver."""
    import json

    from test_bench import TINY_SUITE, make_tiny_setup

    from invdiff.bench.runner import run
    from invdiff.bench.suite import SuiteError, load

    paths = make_tiny_setup(tmp_path)
    head = TINY_SUITE[: TINY_SUITE.index("[[solvers]]")].replace("seeds = [0, 1]", "seeds = [0]")
    head = head.replace('metrics = ["psnr", "ssim"]', 'metrics = ["psnr"]\nposterior_samples = 3')
    suite_file = tmp_path / "k.toml"
    suite_file.write_text(head.format(**paths) + '[[solvers]]\nname = "ddrm"\nsteps = 2\n')
    suite = load(suite_file, limit=2)
    assert suite.posterior_metrics == invdiff.metrics.METRICS.names("posterior")
    out = tmp_path / "out"
    run(suite, out, progress=False)
    rows = [json.loads(x) for p in out.glob("rows*.jsonl") for x in p.read_text().splitlines()]
    assert rows and all(r["posterior_samples"] == 3 for r in rows)
    for r in rows:
        assert 0 <= r["coverage90"] <= 1 and r["psnr_best"] >= r["psnr"] - 1e-4
        noiseless = r["problem"] == "tiny-blur"
        assert (r["consistency"] is None) == noiseless  # undefined without sigma_y
    assert "coverage of the 90% credible interval" in (out / "summary.md").read_text()
    assert (out / "figures" / "tiny-box.png").is_file()
    stds = invdiff.bench.store.RunStore(out).load_std("tiny-box", "ddrm", 0)
    assert len(stds) == 2 and all((s >= 0).all() and s.abs().sum() > 0 for s in stds.values())
    bad = tmp_path / "bad.toml"
    bad.write_text(
        suite_file.read_text().replace(
            "posterior_samples = 3", 'posterior_metrics = ["coverage90"]'
        )
    )
    with pytest.raises(SuiteError, match="posterior_samples >= 2"):
        load(bad)
