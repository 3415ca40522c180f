"""How priors evaluate their network: no host sync in a solver step, precision, compilation
fallback, channels_last and gradient checkpointing.

A host sync (``Tensor.item``, ``float(tensor)``, ``Tensor.tolist``, ``bool(tensor)``) inside a
solver step makes a GPU wait for every network call. On the CPU the same calls are counted
through patched methods between two step callbacks, i.e. over whole steps after the set-up; on
a GPU the step runs under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import traceback
import warnings
from collections import Counter

import pytest
import torch
from conftest import tiny_unet
from diffusers import DDPMScheduler

import invdiff
from invdiff.noise import Gaussian
from invdiff.priors.gmm import GaussianMixturePrior
from invdiff.priors.network import CompileFallbackWarning, NetworkOptions
from invdiff.priors.pixel import PixelPrior, timestep_for_sigma
from invdiff.solvers.base import Step

#: every pixel-space diffusion solver, with settings that make a few short steps
PIXEL_SOLVERS = {
    "daps": (3, {"ode_steps": 2, "langevin_steps": 3}),
    "ddnm": (4, {"travel_length": 2, "travel_repeat": 2}),
    "ddrm": (4, {}),
    "diffpir": (4, {}),
    "dps": (4, {}),
    "dps_paper": (4, {"likelihood": "paper"}),
    "pigdm": (4, {}),
    "red_diff": (4, {}),
    "repaint": (4, {"jump_length": 2, "jump_n_sample": 2}),
}
SAMPLERS = ("ddpm", "ddim", "heun", "predictor_corrector", "probability_flow")
SYNC_METHODS = ("item", "tolist", "__float__", "__int__", "__bool__")
#: conversions of tensors that never leave the host, so no device wait on a GPU. DAPS builds
#: the grid of its inner ODE each step with ``karras_sigmas`` (a float64 CPU tensor) and reads
#: it with ``tolist``; the CUDA test below holds it to the same rule on a device.
HOST_ONLY = {"daps": {("tolist", "invdiff/solvers/daps.py")}}


def _prior(**options: object) -> PixelPrior:
    prior = PixelPrior(tiny_unet(), DDPMScheduler(num_train_timesteps=1000))
    return prior.configure(**options) if options else prior


def _operator(solver_name: str, device: torch.device | str = "cpu"):  # noqa: ANN202
    """Super-resolution x2, or random inpainting where the solver needs it (RePaint)."""
    shape = (1, 8, 8)
    if solver_name == "repaint":
        return invdiff.operators.get(
            "inpainting_random", in_shape=shape, generator=torch.Generator().manual_seed(0)
        ).to(device)
    return invdiff.operators.get("super_resolution", in_shape=shape, factor=2).to(device)


class SyncCounter:
    """Counts host-sync calls on tensors while ``active``, with where they came from."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.active = False
        self.calls: Counter[str] = Counter()
        for method in SYNC_METHODS:
            original = getattr(torch.Tensor, method)
            monkeypatch.setattr(torch.Tensor, method, self._wrap(method, original))

    def _wrap(self, method: str, original):  # noqa: ANN001, ANN202
        def wrapped(tensor, *args, **kwargs):  # noqa: ANN001, ANN202
            if self.active:
                frames = [f for f in traceback.extract_stack()[:-1] if "invdiff" in f.filename]
                where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "torch"
                self.calls[f"{method} at {where}"] += 1
            return original(tensor, *args, **kwargs)

        return wrapped

    def callback(self, step: Step) -> None:
        # steps 1.. run between the first callback and the last: no set-up in between
        self.active = True


@pytest.mark.parametrize("label", sorted(PIXEL_SOLVERS))
def test_no_host_sync_in_a_solver_step(label: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "dps" if label.startswith("dps") else label
    steps, hyper = PIXEL_SOLVERS[label]
    prior = _prior()
    op = _operator(name)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = op(x)
    counter = SyncCounter(monkeypatch)
    steps_seen = []

    def callback(step: Step) -> None:
        steps_seen.append(step.index)
        counter.callback(step)

    invdiff.solve(
        name,
        prior=prior,
        operator=op,
        y=y,
        noise=Gaussian(0.05),
        steps=steps,
        generator=torch.Generator().manual_seed(0),
        callback=callback,
        **hyper,
    )
    counter.active = False
    assert len(steps_seen) >= 2, "the solver must report at least two steps"
    allowed = HOST_ONLY.get(label, set())
    calls = {
        where: n
        for where, n in counter.calls.items()
        if not any(where.startswith(f"{m} at ") and f in where for m, f in allowed)
    }
    assert not calls, f"{label}: host syncs in a step: {calls}"


@pytest.mark.parametrize("name", SAMPLERS)
def test_no_host_sync_in_a_sampler_step(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    prior = _prior()
    counter = SyncCounter(monkeypatch)
    invdiff.samplers.get(name)(
        prior, 2, steps=4, generator=torch.Generator().manual_seed(0), callback=counter.callback
    )
    counter.active = False
    assert not counter.calls, f"{name}: host syncs in a step: {dict(counter.calls)}"


def test_the_counter_sees_a_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counting above would catch a conversion made during a step."""
    counter = SyncCounter(monkeypatch)
    counter.active = True
    t = torch.tensor([0.5])
    t.item()
    float(t)
    bool(t > 0)
    assert sum(counter.calls.values()) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("label", sorted(PIXEL_SOLVERS))
def test_no_host_sync_on_cuda(label: str) -> None:
    name = "dps" if label.startswith("dps") else label
    steps, hyper = PIXEL_SOLVERS[label]
    device = torch.device("cuda")
    prior = _prior().to(device)
    op = _operator(name, device)
    x = torch.rand(2, 1, 8, 8, device=device) * 2 - 1
    y = op(x)

    def callback(step: Step) -> None:
        # from the end of the first step on, any synchronising call raises
        torch.cuda.set_sync_debug_mode("error")

    try:
        invdiff.solve(
            name,
            prior=prior,
            operator=op,
            y=y,
            noise=Gaussian(0.05),
            steps=steps,
            generator=torch.Generator(device=device).manual_seed(0),
            callback=callback,
            **hyper,
        )
    finally:
        torch.cuda.set_sync_debug_mode(0)


def _old_timestep_for_sigma(sigma: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """The conversion as it was, with its two host syncs, kept as the reference."""
    log_grid = sigmas.to(sigma.device, torch.float64).log()
    ls = sigma.to(torch.float64).clamp(sigmas[0].item(), sigmas[-1].item()).log()
    idx = torch.searchsorted(log_grid, ls).clamp(1, len(log_grid) - 1)
    lo, hi = log_grid[idx - 1], log_grid[idx]
    return (idx - 1).to(torch.float64) + ((ls - lo) / (hi - lo)).clamp(0, 1)


def test_precomputed_timesteps_equal_the_direct_conversion() -> None:
    prior = _prior()
    g = torch.Generator().manual_seed(0)
    inside = torch.exp(torch.empty(64).uniform_(-5.0, 5.0, generator=g))
    sigma = torch.cat([prior.sigmas, inside, torch.tensor([0.0, -1.0, 1e-9, 1e6])]).float()
    new = timestep_for_sigma(sigma, prior.sigmas, prior.sigmas.double().log())
    assert torch.equal(new, _old_timestep_for_sigma(sigma, prior.sigmas))
    assert torch.equal(new[: len(prior.sigmas)], torch.arange(len(prior.sigmas)).double())


def test_defaults_evaluate_the_plain_network() -> None:
    prior = _prior()
    assert prior.network_options == NetworkOptions()
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    t = timestep_for_sigma(torch.full((3,), 0.7), prior.sigmas).float()
    plain = prior.unet(x / (1 + 0.7**2) ** 0.5, t).sample
    assert torch.equal(prior.x0(x, 0.7), x - 0.7 * plain)


def test_bf16_is_close_to_fp32_and_returns_fp32() -> None:
    fp32, bf16 = _prior(), _prior(precision="bf16")
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    a, b = fp32.x0(x, 0.5), bf16.x0(x, 0.5)
    assert b.dtype == torch.float32
    assert not torch.equal(a, b), "bf16 autocast changed nothing: it did not run"
    # bf16 keeps 8 bits of mantissa: a relative error of a few 1e-3 on the network output
    assert (a - b).abs().max() < 0.05 * a.abs().max()


def test_channels_last_gives_the_same_result() -> None:
    plain, nhwc = _prior(), _prior(channels_last=True)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    conv = next(m for m in nhwc.unet.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(nhwc.x0(x, 0.3), plain.x0(x, 0.3), rtol=1e-5, atol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradient_with_less_saved() -> None:
    plain, ckpt = _prior(), _prior()
    ckpt.gradient_checkpointing = True
    assert ckpt.network_options.gradient_checkpointing
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    grads, saved = [], []
    for prior in (plain, ckpt):
        xi = x.clone().requires_grad_(True)
        count = [0]

        def pack(t: torch.Tensor, count: list[int] = count) -> torch.Tensor:
            count[0] += t.numel()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = prior.x0(xi, 0.4)
        (g,) = torch.autograd.grad(out.square().sum(), xi)
        grads.append(g)
        saved.append(count[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)
    # block by block: the block inputs stay, the activations inside the blocks go (measured
    # 30,668 vs 97,860 elements on this tiny UNet)
    assert saved[1] < saved[0] / 2.5, f"checkpointing saved {saved[1]} vs {saved[0]} elements"
    ckpt.gradient_checkpointing = False
    assert not any(getattr(m, "gradient_checkpointing", False) for m in ckpt.unet.modules()), (
        "switching it off must reach every block"
    )


def test_checkpointing_a_plain_module_wraps_the_whole_call() -> None:
    """A network that does not checkpoint its blocks itself is checkpointed as one piece."""
    from invdiff.priors.network import NetworkRunner

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(16, 1, 3, padding=1)
    )
    runner = NetworkRunner(net, "test net")
    assert not runner.checkpoints_blocks
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    grads, saved = [], []
    for ckpt in (False, True):
        runner.configure(NetworkOptions(gradient_checkpointing=ckpt))
        xi = x.clone().requires_grad_(True)
        count = [0]

        def pack(t: torch.Tensor, count: list[int] = count) -> torch.Tensor:
            count[0] += t.numel()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = runner(xi, output=lambda o: o)
        grads.append(torch.autograd.grad(out.square().sum(), xi)[0])
        saved.append(count[0])
    torch.testing.assert_close(grads[1], grads[0])
    assert saved[1] <= x.numel() < saved[0]  # only the input is kept


def test_compile_failure_falls_back_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch._dynamo.exc import BackendCompilerFailed

    def broken_compile(fn):  # noqa: ANN001, ANN202
        def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise BackendCompilerFailed(lambda: None, RuntimeError("no C++ compiler found"), None)

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    prior, plain = _prior(), _prior()
    prior.configure(compile=True)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = prior.x0(x, 0.5)
        second = prior.x0(x, 0.5)
    messages = [str(w.message) for w in caught if issubclass(w.category, CompileFallbackWarning)]
    assert len(messages) == 1 and "uncompiled" in messages[0] and "\n" not in messages[0]
    assert torch.equal(first, plain.x0(x, 0.5)) and torch.equal(second, first)


def test_bad_options_are_refused() -> None:
    prior = _prior()
    with pytest.raises(ValueError, match="precision must be one of"):
        prior.configure(precision="fp16x")
    with pytest.raises(TypeError, match="compile must be True or False"):
        prior.configure(compile="yes")
    assert prior.network_options == NetworkOptions()


def test_an_analytic_prior_refuses_network_options() -> None:
    gmm = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None])
    with pytest.raises(ValueError, match="evaluates no network"):
        gmm.configure(precision="bf16")
    gmm.configure(gradient_checkpointing=True)  # nothing to checkpoint, nothing to refuse


# ---------------------------------------------------------------- command line and benchmark


def test_solve_cli_passes_the_options_to_the_prior(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from invdiff.cli import solve as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    base = ["--problem", "fmnist-sr4", "--solver", "dps", "--out", "o"]
    args = parser.parse_args([*base, "--precision", "bf16", "--compile", "--checkpointing"])
    from invdiff.priors.network import network_options_from_args

    assert network_options_from_args(args) == NetworkOptions("bf16", True, False, True)
    assert network_options_from_args(parser.parse_args(base)) == NetworkOptions()
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--precision", "fp16"])


def test_train_cli_precision_maps_to_bf16() -> None:
    import argparse

    from invdiff.cli import train as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    cfg = command.config_from_args(parser.parse_args(["pixel", "--precision", "bf16"]))
    assert cfg.bf16 is True
    cfg = command.config_from_args(parser.parse_args(["pixel", "--precision", "fp32"]))
    assert cfg.bf16 is False
    with pytest.raises(SystemExit):  # one way to say it, not two
        parser.parse_args(["pixel", "--precision", "fp32", "--bf16"])


def test_bench_rows_record_peak_memory_and_network(tmp_path) -> None:  # noqa: ANN001
    from test_bench import TINY_SUITE, make_tiny_setup

    from invdiff.bench import rows as rowio
    from invdiff.bench.runner import run
    from invdiff.bench.suite import SuiteError, load

    paths = make_tiny_setup(tmp_path)
    suite_file = tmp_path / "tiny.toml"
    suite_file.write_text(TINY_SUITE.format(**paths).replace("seeds = [0, 1]", "seeds = [0]"))
    suite = load(suite_file, limit=2, precision="bf16", checkpointing=True)
    assert suite.network == NetworkOptions("bf16", gradient_checkpointing=True)
    out = tmp_path / "out"
    run(suite, out, progress=False, figures=False)
    rows = list(rowio.read(out / "rows.jsonl"))
    assert rows and all(r["network"] == "bf16+checkpointing" for r in rows)
    assert all(r["peak_mem_mb"] > 1.0 for r in rows)
    # an fp32 run into the bf16 folder would mix numbers of two precisions: refused
    with pytest.raises(SuiteError, match="another suite or other"):
        run(load(suite_file, limit=2), out, progress=False, figures=False)
    with pytest.raises(SuiteError, match="precision must be one of"):
        load(suite_file, precision="fp8")


def test_suite_files_set_the_options_and_the_command_line_overrides_them(tmp_path) -> None:  # noqa: ANN001
    from test_bench import TINY_SUITE

    from invdiff.bench.suite import SuiteError, load

    text = TINY_SUITE.format(images=tmp_path, prior=tmp_path)
    f = tmp_path / "s.toml"
    f.write_text(
        text.replace('device = "cpu"', 'device = "cpu"\nprecision = "bf16"\ncompile = true')
    )
    assert load(f).network == NetworkOptions("bf16", compile=True)
    assert load(f, precision="fp32", checkpointing=True).network == NetworkOptions(
        "fp32", compile=True, gradient_checkpointing=True
    )
    f.write_text(text.replace('device = "cpu"', 'device = "cpu"\nprecision = 16'))
    with pytest.raises(SuiteError, match="precision must be a string"):
        load(f)
