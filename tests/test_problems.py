"""Problem presets: every preset builds and measures deterministically; bad files fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import invdiff
import invdiff.paths
from invdiff.noise import Gaussian
from invdiff.operators.base import Operator
from invdiff.problems import Problem, ProblemFileError, load_file, measurement_seed

FMNIST = [
    "fmnist-sr2",
    "fmnist-sr4",
    "fmnist-box",
    "fmnist-random70",
    "fmnist-random92",
    "fmnist-gaussian-deblur",
    "fmnist-motion-deblur",
    "fmnist-cs",
    "fmnist-phase-retrieval",
    "fmnist-nonlinear-blur",
    "fmnist-hdr",
]


def test_all_fashion_mnist_presets_are_registered_with_noiseless_twins():
    names = set(invdiff.problems.names())
    for n in FMNIST:
        assert n in names and f"{n}-noiseless" in names
        noisy, clean = invdiff.problems.get(n), invdiff.problems.get(f"{n}-noiseless")
        assert noisy.noise.sigma == 0.05 and clean.noise.sigma == 0.0
        assert (noisy.dataset, noisy.image_size, noisy.channels) == ("fashion_mnist", 32, 1)
        assert noisy.operator_name == clean.operator_name
        assert noisy.operator_params == clean.operator_params and noisy.bank == clean.bank


EMOJI = [
    "emoji-sr2",
    "emoji-sr4",
    "emoji-sr4-bicubic",
    "emoji-box",
    "emoji-random70",
    "emoji-gaussian-deblur",
    "emoji-motion-deblur",
    "emoji-colorization",
    "emoji-phase-retrieval",
    "emoji-nonlinear-blur",
    "emoji-hdr",
]


def test_colour_presets_are_registered_with_noiseless_twins_on_the_colour_prior():
    names = set(invdiff.problems.names())
    assert {n for n in names if n.startswith("emoji-")} == {
        v for n in EMOJI for v in (n, f"{n}-noiseless")
    }
    for n in EMOJI:
        noisy, clean = invdiff.problems.get(n), invdiff.problems.get(f"{n}-noiseless")
        assert noisy.noise.sigma == 0.05 and clean.noise.sigma == 0.0
        assert (noisy.dataset, noisy.in_shape) == ("emoji", (3, 32, 32))
        assert noisy.prior == clean.prior == "emoji32-pixel"
        assert noisy.operator_params == clean.operator_params and noisy.bank == clean.bank
    # colorization measures one grey channel; every other operator keeps the three
    assert invdiff.problems.get("emoji-colorization").operator().out_shape() == (1, 32, 32)
    assert invdiff.problems.get("emoji-sr4").operator().out_shape() == (3, 8, 8)
    assert invdiff.problems.get("emoji-sr4-bicubic").priors["sr3"] == "emoji32-sr3-x4"


def test_colour_blur_and_masks_act_on_each_channel_alike():
    x = torch.rand((1, 3, 32, 32), generator=torch.Generator().manual_seed(4)) * 2 - 1
    for name in ("emoji-gaussian-deblur", "emoji-random70", "emoji-sr2", "emoji-hdr"):
        op = invdiff.problems.get(name).operator()
        y = op(x)
        for c in range(3):  # the grey operator of the same preset on channel c alone
            grey = invdiff.problems.get(name).with_changes(channels=1).operator()
            assert torch.allclose(y[:, c : c + 1], grey(x[:, c : c + 1]), atol=1e-5), name


@pytest.mark.parametrize(
    "name", [n for n in invdiff.problems.names() if n.startswith(("fmnist-", "emoji-"))]
)
def test_preset_builds_and_measures_deterministically(name):
    prob = invdiff.problems.get(name)
    op = prob.operator()
    assert isinstance(op, Operator) and op.in_shape == prob.in_shape
    assert prob.operator() is op  # built once per device
    x = torch.rand((3, *prob.in_shape), generator=torch.Generator().manual_seed(1)) * 2 - 1
    clean = op(x)
    if not name.endswith("-noiseless"):  # (the twin has the same operator)
        # a second build (another process, another shard) gives the same operator
        assert torch.equal(prob.with_changes().operator()(x), clean)

    y = prob.measure(x, [5, 9, 2])
    assert torch.equal(prob.measure(x, [5, 9, 2]), y)  # the same run twice
    # the measurement of image 9 does not depend on the batch it is in (the noise is
    # identical; A(x) of a dense operator may differ in the last bit between batch sizes)
    close = {"rtol": 1e-5, "atol": 1e-5}
    assert torch.allclose(prob.measure(x[1:2], [9]), y[1:2], **close)
    assert torch.allclose(
        prob.measure(x[1:], 9), torch.cat([y[1:2], prob.measure(x[2:], 10)]), **close
    )
    if prob.noise.sigma == 0:
        assert torch.equal(y, clean)
    else:
        resid = (y - clean).flatten()
        assert abs(resid.std().item() - prob.noise.sigma) < 0.3 * prob.noise.sigma
        assert not torch.allclose(prob.measure(x, [5, 9, 2], seed=1), y)  # another seed
        assert not torch.allclose(y[0] - clean[0], y[1] - clean[1])  # independent per image


def test_ffhq256_presets_build_and_measure():
    names = [n for n in invdiff.problems.names() if n.startswith("ffhq256-")]
    assert len(names) >= 5
    x = torch.rand((1, 3, 256, 256), generator=torch.Generator().manual_seed(2)) * 2 - 1
    for name in names:
        prob = invdiff.problems.get(name)
        assert (prob.dataset, prob.in_shape, prob.noise.sigma) == (
            "image_folder",
            (3, 256, 256),
            0.05,
        )
        y = prob.measure(x, [4])
        assert torch.equal(prob.measure(x, [4]), y) and torch.isfinite(y).all()


def test_measurement_noise_comes_from_problem_image_and_seed():
    assert measurement_seed("a", 3, 0) == measurement_seed("a", 3, 0)
    seeds = {measurement_seed(p, i, s) for p in ("a", "b") for i in (0, 1) for s in (0, 1)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)


def test_problem_api_matches_the_design():
    prob = invdiff.problems.get("fmnist-sr4")
    assert prob.prior == "fmnist32-pixel" and prob.priors["sr3"] == "fmnist32-sr3-x4"
    assert isinstance(prob.noise, Gaussian)
    assert prob.operator().out_shape() == (1, 8, 8)
    with pytest.raises(ValueError, match="one data set index per image"):
        prob.measure(torch.zeros(2, 1, 32, 32), [0])


GOOD = """
dataset = "fashion_mnist"
image_size = 8
[operator]
name = "inpainting_random"
missing = 0.5
seed = 3
[noise]
name = "gaussian"
sigma = 0.1
"""


def test_a_toml_file_loads(tmp_path):
    f = tmp_path / "tiny-random.toml"
    f.write_text(GOOD)
    prob = invdiff.problems.get(f)
    assert prob.name == "tiny-random" and prob.in_shape == (1, 8, 8)
    assert prob.operator().mask.mean().item() == pytest.approx(0.5, abs=0.2)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: 'colour = "red"\n' + s, "unknown key"),
        (lambda s: s.replace("seed = 3", "seed = 3\nblur = 2"), "takes no parameter"),
        (
            lambda s: s.replace('"inpainting_random"', '"inpainting_rnadom"'),
            "not a registered operator",
        ),
        (lambda s: s.replace('"fashion_mnist"', '"mnist-fashion"'), "registered data set"),
        # errors name the key as a dotted path (they used to say "[noise]")
        (
            lambda s: s.replace('name = "gaussian"', 'name = "laplace"'),
            "noise.name: unknown noise model 'laplace'.*valid: gaussian, poisson",
        ),
        (lambda s: s.replace("sigma = 0.1", "sigma = -1.0"), "noise: invalid gaussian"),
        (lambda s: s.replace("sigma = 0.1", "sigma = 0.1\nrate = 3"), "noise: invalid gaussian"),
        (lambda s: s.replace("image_size = 8", "image_size = 0"), "image_size"),
        (lambda s: s.replace("image_size = 8", ""), "missing key"),
        (lambda s: s + '[priors]\nvae = "x"\n', "unknown kind"),
        (lambda s: s.replace("seed = 3", "seed = 3\nin_shape = [1, 8, 8]"), "in_shape"),
        (lambda s: s.replace("seed = 3", "index = 2"), "index given without a bank"),
        (lambda s: s.replace("[operator]", "[operator"), "not valid TOML"),
    ],
)
def test_bad_problem_files_fail_clearly(tmp_path, edit, message):
    f = tmp_path / "bad.toml"
    f.write_text(edit(GOOD))
    with pytest.raises(ProblemFileError, match=message) as info:
        load_file(f)
    assert "bad" in str(info.value)  # the error names the file


def test_unknown_preset_lists_valid_names():
    with pytest.raises(KeyError, match="fmnist-sr4"):
        invdiff.problems.get("fmnist-sr5")


def test_problem_from_dict_validates_priors():
    with pytest.raises(ProblemFileError, match="priors"):
        Problem.from_dict(
            "p",
            {
                "dataset": "fashion_mnist",
                "image_size": 8,
                "operator": {"name": "identity"},
                "noise": {"name": "gaussian", "sigma": 0.0},
                "priors": {"pixel": 3},
            },
        )


# ---------------------------------------------------------------- noise as a parameter

#: y of every preset as it was with one TOML file per name (before the noise variants):
#: sum, |sum| and squared sum of measure(x, [0, 5, 9], seed=1) for a fixed x
MEASUREMENTS = json.loads((Path(__file__).parent / "problem_measurements.json").read_text())


def test_every_old_preset_name_still_resolves():
    assert set(MEASUREMENTS) <= set(invdiff.problems.names())
    assert not list(invdiff.paths.problems_dir().glob("*-noiseless.toml"))  # no twin files


@pytest.mark.parametrize("name", sorted(MEASUREMENTS))
def test_old_preset_names_measure_as_before(name):
    prob = invdiff.problems.get(name)
    x = torch.rand((3, *prob.in_shape), generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = prob.measure(x, [0, 5, 9], seed=1).double()
    ref = MEASUREMENTS[name]
    assert list(y.shape) == ref["shape"]
    got = {"sum": y.sum().item(), "abs": y.abs().sum().item(), "sq": (y**2).sum().item()}
    for key, value in got.items():
        assert value == pytest.approx(ref[key], rel=1e-6, abs=1e-5), (name, key)


def test_a_noise_variant_is_its_base_problem_at_another_level():
    base, variant = invdiff.problems.get("fmnist-sr4"), invdiff.problems.get("fmnist-sr4-noiseless")
    assert variant.name == "fmnist-sr4-noiseless" and variant.noise.sigma == 0.0
    assert base.noise.sigma == 0.05 and base.noise_variants == {"noiseless": {"sigma": 0.0}}
    same = ("operator_name", "operator_params", "dataset", "image_size", "priors", "bank")
    assert all(getattr(base, f) == getattr(variant, f) for f in same)
    assert variant == base.with_noise("fmnist-sr4-noiseless", sigma=0.0)
    # a level that is not declared in a file: same problem, same seeds, another sigma
    louder = base.with_noise(sigma=0.2)
    x = torch.zeros(1, 1, 32, 32)
    n1, n2 = louder.measure(x, 0) - base.operator()(x), base.measure(x, 0) - base.operator()(x)
    assert torch.allclose(n1, 4 * n2, atol=1e-6)


def test_noise_variants_are_checked(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(GOOD + "[noise_variants]\nloud = { sigma = -2.0 }\n")
    with pytest.raises(ProblemFileError, match="noise_variants.loud: invalid gaussian"):
        load_file(f)
    f.write_text(GOOD + "[noise_variants]\nloud = { sgima = 2.0 }\n")
    with pytest.raises(ProblemFileError, match="noise_variants.loud"):
        load_file(f)


def test_problem_errors_name_key_value_and_choices(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(GOOD.replace("image_size = 8", "image_size = 9000").replace("gaussian", "gausian"))
    with pytest.raises(ProblemFileError) as info:
        load_file(f)
    msg = str(info.value)
    assert str(f) in msg and "2 problems" in msg
    assert "image_size must be an integer in [1, 4096], got 9000" in msg
    assert "noise.name: unknown noise model 'gausian'" in msg and "did you mean 'gaussian'" in msg
    f.write_text("colr = 1\n" + GOOD)
    with pytest.raises(ProblemFileError, match="colr: unknown key; valid keys: description"):
        load_file(f)


def test_no_presets_is_an_error(monkeypatch, tmp_path):
    import invdiff.problems as problems

    monkeypatch.setattr(problems, "problems_dir", lambda: tmp_path)
    message = problems._register_presets()
    assert message is not None and "no problem presets" in message and str(tmp_path) in message
    monkeypatch.setattr(problems, "_PRESETS_ERROR", message)
    with pytest.raises(ProblemFileError, match="no problem presets"):
        problems.names()


def test_a_name_declared_twice_is_an_error(monkeypatch, tmp_path):
    import invdiff.problems as problems

    (tmp_path / "tiny.toml").write_text(GOOD + "[noise_variants]\nnoiseless = { sigma = 0.0 }\n")
    (tmp_path / "tiny-noiseless.toml").write_text(GOOD)
    monkeypatch.setattr(problems, "problems_dir", lambda: tmp_path)
    assert "declared twice" in problems._register_presets()
