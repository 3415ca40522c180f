"""Suite files: one schema, errors that name the file, the key, the value and what is valid,
and every check that needs no data and no prior weights done when the file is parsed."""

from __future__ import annotations

from pathlib import Path

import pytest

import invdiff
import invdiff.data
import invdiff.paths
import invdiff.priors
from invdiff import schema
from invdiff.bench.suite import SuiteError, load

SUITE = """
name = "tiny"
device = "cpu"
batch_size = 2
seeds = [0]
metrics = ["psnr", "ssim"]
problems = ["fmnist-sr4", "fmnist-box-noiseless"]

[data]
dataset = "fashion_mnist"
count = 2

[priors]
pixel = "/nowhere/prior"

[[problem]]
name = "tiny-hdr"
dataset = "fashion_mnist"
image_size = 32
[problem.operator]
name = "hdr"
scale = 2.0
[problem.noise]
name = "gaussian"
sigma = 0.05

[[solvers]]
name = "pinv"
steps = 1
problems = ["fmnist-sr4"]

[[solvers]]
name = "ddrm"
steps = 2
hyper = { eta = 0.5 }
problems = ["fmnist-sr4", "fmnist-box-noiseless"]
"""


@pytest.fixture
def no_loading(monkeypatch):
    """Parsing must not touch data or priors: any load fails the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a suite file loaded data or a prior while being parsed")

    for module, name in [
        (invdiff.data, "get"),
        (invdiff.priors, "load"),
        (invdiff.priors, "describe"),
    ]:
        monkeypatch.setattr(module, name, forbidden)


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "suite.toml"
    f.write_text(text)
    return f


def test_a_good_suite_parses_without_loading_anything(tmp_path, no_loading):
    suite = load(write(tmp_path, SUITE))
    assert [p.name for p in suite.problems] == ["fmnist-sr4", "fmnist-box-noiseless", "tiny-hdr"]
    assert suite.problems[1].noise.sigma == 0.0 and suite.solvers[1].hyper == {"eta": 0.5}


@pytest.mark.parametrize(
    "edit, key, value, valid",
    [
        # an unknown key, with a did-you-mean and the valid keys
        (("batch_size = 2", "bacth_size = 2"), "bacth_size", "unknown key", "batch_size"),
        (("count = 2", "count = 2\nstrat = 1"), None, None, None),  # [data] passes to the loader
        (("steps = 1", "steps = 1\nhyperr = {}"), "solvers[0].hyperr", "unknown key", "hyper"),
        (('pixel = "', 'pxiel = "'), "priors.pxiel", "unknown kind", "pixel"),
        # a wrong type or range
        (("batch_size = 2", "batch_size = 0"), "batch_size", "got 0", ">= 1"),
        (("seeds = [0]", "seeds = [0, -1]"), "seeds[1]", "got -1", ">= 0"),
        (("steps = 2", "steps = 2.5"), "solvers[1].steps", "got 2.5", "a positive integer"),
        (('"ssim"]', '"sism"]'), "metrics[1]", "'sism'", "did you mean 'ssim'"),
        (('name = "ddrm"', 'name = "drdm"'), "solvers[1].name", "'drdm'", "did you mean 'ddrm'"),
        # a name the solver does not know
        (("eta = 0.5", "etta = 0.5"), "solvers[1].hyper", "'etta'", "eta"),
        # a value of the wrong type for the solver's default
        (("eta = 0.5", 'eta = "high"'), "solvers[1].hyper.eta", "'high'", "number"),
    ],
)
def test_errors_name_file_key_value_and_valid_choices(
    tmp_path, no_loading, edit, key, value, valid
):
    f = write(tmp_path, SUITE.replace(*edit, 1))
    if key is None:
        load(f)
        return
    with pytest.raises(SuiteError) as info:
        load(f)
    msg = str(info.value)
    assert str(f) in msg and key in msg and value in msg and valid in msg, msg


def test_an_out_of_range_hyperparameter_fails_at_parse_time(tmp_path, no_loading):
    f = write(tmp_path, SUITE.replace("eta = 0.5", "eta = 2.0"))
    with pytest.raises(SuiteError) as info:
        load(f)
    msg = str(info.value)
    assert str(f) in msg and "solvers[1].hyper" in msg and "eta" in msg and "2.0" in msg


def test_per_problem_hyperparameters_are_checked_with_the_shared_ones(tmp_path, no_loading):
    text = SUITE + "[solvers.per_problem.fmnist-sr4]\netta = 1.0\n"
    with pytest.raises(SuiteError, match=r"solvers\[1\]\.per_problem\.fmnist-sr4.*etta"):
        load(write(tmp_path, text))


def test_an_incompatible_pair_fails_at_parse_time(tmp_path, no_loading):
    # ddrm needs an SVD operator; the inline tiny-hdr problem is nonlinear
    text = SUITE.replace(
        'hyper = { eta = 0.5 }\nproblems = ["fmnist-sr4", "fmnist-box-noiseless"]', ""
    )
    f = write(tmp_path, text)
    with pytest.raises(SuiteError) as info:
        load(f)
    msg = str(info.value)
    assert str(f) in msg and "solvers[1] (ddrm) on problem 'tiny-hdr'" in msg
    assert "SVDOperator" in msg and "skip_incompatible" in msg
    # with skip_incompatible the pair is left out later, as before
    f.write_text(text.replace("seeds = [0]", "seeds = [0]\nskip_incompatible = true"))
    assert load(f).skip_incompatible


def test_everything_found_is_reported_at_once(tmp_path, no_loading):
    text = SUITE.replace("batch_size = 2", "batch_size = -1").replace("seeds = [0]", "seeds = 0")
    with pytest.raises(SuiteError, match="has 2 problems") as info:
        load(write(tmp_path, text))
    assert info.value.issues[0].startswith("batch_size") and info.value.issues[1].startswith(
        "seeds"
    )


def test_shipped_suites_parse():
    shipped = sorted(p.stem for p in invdiff.paths.benchmarks_dir().glob("*.toml"))
    assert {"quick", "standard", "peers", "quick-colour", "standard-colour"} <= set(shipped)
    for name in shipped:
        suite = load(name, data_dir=".", prior_dir=".") if name == "ffhq256" else load(name)
        assert suite.problems and suite.solvers, name
    # the standard benchmark covers every shipped problem: the grey half and the colour half
    covered = {p.name for name in ("standard", "standard-colour") for p in load(name).problems}
    shipped_problems = {n for n in invdiff.problems.names() if n.startswith(("fmnist-", "emoji-"))}
    assert covered == shipped_problems


def test_the_schema_checks_nested_tables():
    errors: list[str] = []
    table = schema.Table(
        {"a": schema.Key(int, low=0, high=3), "t": schema.Key(dict, table=schema.Table({}))}
    )
    out = schema.check({"a": 5, "t": {"x": True}, "b": 1}, table, errors)
    assert out["a"] == 5
    assert errors == [
        "b: unknown key; valid keys: a, t",
        "a must be an integer in [0, 3], got 5",
        "t.x: unknown key; valid keys: none",
    ]
