"""invdiff and deepinv 0.5.0, each at its best: the peer's hyperparameters tuned on the
validation split by the protocol that chose invdiff's (``invdiff tune``), then both run on the
same test images, the same ``y`` and the same network.

invdiff's solvers run at the values of the tuned table (``benchmarks/tuned/fmnist32.json``,
chosen by ``invdiff tune --suite paper``) for the problem and the NFE budget. deepinv's DPS,
DDRM and DiffPIR are tuned here, with ``invdiff.bench.tuning.successive_halving`` and
``draw_candidates``: the peer's own defaults first, then Sobol draws from the search space
below, scored by LPIPS on the first ``--val-images`` images of the ``val`` split (Fashion-MNIST
test images 9,000-9,999, which no table reports on), the defaults carried to the last rung.
The search spaces (declared as invdiff declares its own; the peer's defaults in brackets):

- DPS: ``weight`` in [0.3, 1000], log-uniform [1]. deepinv's DPS scales the normalised
  likelihood gradient by ``weight``; its default is 1 and its noise grid is fixed.
- DDRM: ``eta`` in [0, 1] [0.85], ``etab`` in [0, 1] [1]; the grid is deepinv's example grid,
  sigma linear from 1 to 0 on [0, 1] images.
- DiffPIR: ``lambda_`` in [0.5, 100], log-uniform [7], ``zeta`` in [0, 1] [0.1].

``--long-nfe`` (default 1000) adds deepinv's DPS at that many NFE, tuned the same way on
``--long-val-images`` images over ``--long-candidates`` candidates (it costs ten times the
100-NFE run). deepinv works on [0, 1] images; for a linear ``A`` the measurement maps exactly,
``y01 = (y + A(1)) / 2`` with noise std ``sigma / 2`` (``scripts/bench_peers.py``).

The test images are the first ``--images`` Fashion-MNIST test images with the benchmark's
``y`` (``Problem.measure`` with the data set index: the rows of the paper suite for these
images see the same ``y``). Every result is kept in ``--cache`` (JSON lines, written as it
goes), so an interrupted run resumes; the report gives per method PSNR and LPIPS with 95 %
intervals, and per problem the best invdiff method at <= 100 NFE against the best deepinv
method at any NFE, as a paired LPIPS difference with its interval.

    python scripts/peers_tuned.py --images 32 --nfe 20 100 \\
        --problem fmnist-random70 fmnist-sr4 fmnist-gaussian-deblur
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from bench_peers import NFECounter, deepinv_denoiser, svd_physics

import invdiff
from invdiff.bench.stats import mean_ci
from invdiff.bench.tuning import Budget, TunedTable, draw_candidates, successive_halving
from invdiff.images import from_unit
from invdiff.solvers.hyper import Hyper

#: deepinv's tunable hyperparameters, declared as invdiff declares its own (defaults: deepinv's)
PEER_SPACES: dict[str, dict[str, Hyper]] = {
    "dps": {"weight": Hyper(1.0, "DPS guidance weight", gt=0, search=(0.3, 1000.0))},
    "ddrm": {
        "eta": Hyper(0.85, "DDRM eta", ge=0, le=1, search=(0.0, 1.0)),
        "etab": Hyper(1.0, "DDRM eta_b", ge=0, le=1, search=(0.0, 1.0)),
    },
    "diffpir": {
        "lambda_": Hyper(7.0, "DiffPIR lambda", gt=0, search=(0.5, 100.0)),
        "zeta": Hyper(0.1, "DiffPIR zeta", ge=0, le=1, search=(0.0, 1.0)),
    },
}
PIXEL_PRIOR = "fmnist32-pixel"


class Setting:
    """One problem: its operator, deepinv's physics, and measurements by data set index."""

    def __init__(self, name: str, device: torch.device) -> None:
        import deepinv as dinv

        self.problem = invdiff.problems.get(name)
        self.op = self.problem.operator(device)
        sigma01 = float(self.problem.noise.sigma) / 2
        if type(self.op).is_inpainting:
            self.physics = dinv.physics.Inpainting(
                img_size=tuple(self.op.in_shape),
                mask=self.op.mask.to(device).expand(1, *self.op.in_shape)[0],
                noise_model=dinv.physics.GaussianNoise(sigma=sigma01),
                device=device,
            )
        elif isinstance(self.op, invdiff.operators.SVDOperator):
            self.physics = svd_physics(self.op, sigma01, device)
        else:
            raise SystemExit(f"{name}: deepinv's DDRM and DiffPIR need an SVD operator")
        self.sigma01 = sigma01
        self.device = device

    def measure(self, x: torch.Tensor, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.problem.measure(x, indices, 0, operator=self.op)
        with torch.no_grad():
            y01 = (y + self.op(torch.ones_like(x[:1]))) / 2
        return y, y01


def run_deepinv(name: str, hyper: dict, nfe: int, setting: Setting, y01, den, seed: int):  # noqa: ANN001, ANN201, PLR0913
    import deepinv as dinv
    import numpy as np

    torch.manual_seed(seed)  # deepinv's DDRM and DiffPIR draw from the global generator
    if name == "dps":
        model = dinv.sampling.DPS(
            den, num_steps=nfe, weight=hyper["weight"], device=setting.device, dtype=torch.float32
        )
        with torch.enable_grad():
            out = model(y01, setting.physics, seed=seed, denoise_output=False)
    elif name == "ddrm":
        model = dinv.sampling.DDRM(
            den, sigmas=np.linspace(1, 0, nfe), eta=hyper["eta"], etab=hyper["etab"]
        )
        with torch.no_grad():
            out = model(y01, setting.physics, seed=seed)
    else:
        model = dinv.sampling.DiffPIR(
            den,
            dinv.optim.data_fidelity.L2(),
            sigma=setting.sigma01,
            max_iter=nfe,
            zeta=hyper["zeta"],
            lambda_=hyper["lambda_"],
            device=setting.device,
        )
        with torch.no_grad():
            out = model(y01, setting.physics, seed=seed)
    return from_unit(out.detach())


def run_invdiff(name: str, hyper: dict, nfe: int, setting: Setting, y, prior, seed: int):  # noqa: ANN001, ANN201, PLR0913
    return invdiff.solve(
        name,
        prior=prior,
        operator=setting.op,
        y=y,
        noise=setting.problem.noise,
        nfe=nfe,
        generator=torch.Generator(device=y.device).manual_seed(seed),
        **hyper,
    ).detach()


def scores(xhat: torch.Tensor, x: torch.Tensor) -> tuple[list[float], list[float]]:
    xhat = torch.nan_to_num(xhat.float(), nan=0.0).clamp(-1, 1)
    return invdiff.metrics.psnr(xhat, x).tolist(), invdiff.metrics.lpips(xhat, x).tolist()


class Cache:
    """Results by key, kept in a JSON-lines file (appended as they come: a run resumes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    item = json.loads(line)
                    self.items[item["key"]] = item

    def get(self, key: str) -> dict | None:
        return self.items.get(key)

    def put(self, item: dict) -> None:
        self.items[item["key"]] = item
        with self.path.open("a") as f:
            f.write(json.dumps(item) + "\n")
            f.flush()


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--problem",
        nargs="+",
        default=["fmnist-random70", "fmnist-sr4", "fmnist-gaussian-deblur"],
    )
    parser.add_argument("--nfe", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--images", type=int, default=32, help="test images (0 .. N-1)")
    parser.add_argument("--val-images", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--long-nfe", type=int, default=1000, help="deepinv DPS; 0: skip")
    parser.add_argument("--long-val-images", type=int, default=4)
    parser.add_argument("--long-candidates", type=int, default=4)
    parser.add_argument("--table", default="benchmarks/tuned/fmnist32.json")
    parser.add_argument(
        "--ours",
        nargs="+",
        default=["dps", "ddrm", "ddnm", "pigdm", "diffpir", "daps", "red_diff"],
        help="invdiff's solvers (at their tuned values)",
    )
    parser.add_argument("--theirs", nargs="+", default=["dps", "ddrm", "diffpir"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache", default="runs/peers-tuned.jsonl")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.theirs) - set(PEER_SPACES))
    if unknown:
        parser.error(f"--theirs: no search space for {unknown}; known: {sorted(PEER_SPACES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    table = TunedTable.load(args.table)
    cache_path = Path(args.cache)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache = Cache(cache_path)

    from invdiff.priors.zoo import ZOO_DIR

    prior = invdiff.priors.load(PIXEL_PRIOR, device=device)
    den, unet, how = deepinv_denoiser(ZOO_DIR / PIXEL_PRIOR, prior, device)
    theirs_nfe = NFECounter(unet)
    test_idx = list(range(args.images))
    val_idx = list(range(args.val_images))
    x_test = invdiff.data.get("fashion_mnist", split="test").images(test_idx).to(device)
    x_val = invdiff.data.get("fashion_mnist", split="val").images(val_idx).to(device)
    print(
        f"# prior {PIXEL_PRIOR}; deepinv via {how}; test images 0..{args.images - 1}; deepinv "
        f"tuned on val 0..{args.val_images - 1} ({args.candidates} candidates, LPIPS); invdiff "
        f"at {args.table}; threads {torch.get_num_threads()}",
        flush=True,
    )

    def batched(fn, x: torch.Tensor, idx: list[int]) -> tuple[list[float], list[float]]:  # noqa: ANN001
        ps: list[float] = []
        ls: list[float] = []
        for s in range(0, len(idx), args.batch_size):
            p, q = fn(x[s : s + args.batch_size], idx[s : s + args.batch_size])
            ps += p
            ls += q
        return ps, ls

    results = []  # (problem, side, solver, nfe, hyper, psnr list, lpips list, wall, counted nfe)
    for problem_name in args.problem:
        setting = Setting(problem_name, device)
        jobs = [("deepinv", name, n) for name in args.theirs for n in args.nfe]
        if args.long_nfe and "dps" in args.theirs:
            jobs.append(("deepinv", "dps", args.long_nfe))
        jobs += [("invdiff", name, n) for name in args.ours for n in args.nfe]
        for side, name, nfe in jobs:
            key = f"{problem_name}|{side}|{name}|{nfe}|{args.images}"
            item = cache.get(key)
            if item is None:
                if side == "deepinv":
                    long = nfe == args.long_nfe and nfe not in args.nfe
                    n_val = args.long_val_images if long else args.val_images
                    count = args.long_candidates if long else args.candidates
                    pool = draw_candidates(PEER_SPACES[name], count, args.seed)

                    def evaluate(c: int, part: list[int], name=name, nfe=nfe, pool=pool, s=setting):  # noqa: ANN001, ANN202
                        x = x_val[part]
                        _, y01 = s.measure(x, part)  # the y invdiff tune saw
                        out = run_deepinv(name, pool[c], nfe, s, y01, den, args.seed)
                        return scores(out, x)

                    start = time.perf_counter()
                    best, sc = successive_halving(
                        len(pool), n_val, evaluate, batch_size=args.batch_size
                    )
                    hyper = pool[best]
                    tuned = {
                        "val_lpips": sum(v[1] for v in sc[best].values()) / len(sc[best]),
                        "default_val_lpips": sum(v[1] for v in sc[0].values()) / len(sc[0]),
                        "tuning_s": time.perf_counter() - start,
                    }

                    def test(x, idx, name=name, nfe=nfe, hyper=hyper, s=setting):  # noqa: ANN001, ANN202
                        _, y01 = s.measure(x, idx)
                        return scores(run_deepinv(name, hyper, nfe, s, y01, den, args.seed), x)

                    theirs_nfe.count = 0
                else:
                    entry = table.lookup(name, problem_name, PIXEL_PRIOR, Budget(nfe=nfe))
                    hyper = entry.hyper
                    tuned = {"val_lpips": entry.lpips, "source": args.table}

                    def test(x, idx, name=name, nfe=nfe, hyper=hyper, s=setting):  # noqa: ANN001, ANN202
                        y, _ = s.measure(x, idx)
                        return scores(run_invdiff(name, hyper, nfe, s, y, prior, args.seed), x)

                    prior.nfe = 0
                start = time.perf_counter()
                ps, ls = batched(test, x_test, test_idx)
                wall = time.perf_counter() - start
                counted = theirs_nfe.count if side == "deepinv" else prior.nfe
                batches = math.ceil(args.images / args.batch_size)
                item = {
                    "key": key,
                    "problem": problem_name,
                    "side": side,
                    "solver": name,
                    "nfe": nfe,
                    "nfe_counted": counted / batches,
                    "hyper": hyper,
                    "tuning": tuned,
                    "psnr": ps,
                    "lpips": ls,
                    "wall_s": wall,
                }
                cache.put(item)
            p, q = mean_ci(item["psnr"]), mean_ci(item["lpips"])
            print(
                f"{problem_name:<23} {side:<8} {name:<8} {nfe:>5} {item['nfe_counted']:>7.0f} "
                f"{p.mean:6.2f}+-{p.half_width:4.2f} {q.mean:.4f}+-{q.half_width:.4f} "
                f"{item['wall_s']:8.1f}s  {item['hyper']}",
                flush=True,
            )
            results.append(item)

    print("\n# best invdiff at <= 100 NFE vs best deepinv at any NFE (by mean LPIPS, same images)")
    for problem_name in args.problem:
        rows = [r for r in results if r["problem"] == problem_name]
        ours = [r for r in rows if r["side"] == "invdiff" and r["nfe"] <= 100]
        theirs = [r for r in rows if r["side"] == "deepinv"]
        if not ours or not theirs:
            continue
        a = min(ours, key=lambda r: mean_ci(r["lpips"]).mean)
        b = min(theirs, key=lambda r: mean_ci(r["lpips"]).mean)
        d = mean_ci([u - v for u, v in zip(a["lpips"], b["lpips"])])
        dp = mean_ci([u - v for u, v in zip(a["psnr"], b["psnr"])])
        verdict = (
            "invdiff better"
            if d.high < 0
            else "deepinv better"
            if d.low > 0
            else "no significant difference"
        )
        print(
            f"{problem_name:<23} invdiff {a['solver']}@{a['nfe']} LPIPS "
            f"{mean_ci(a['lpips']).mean:.4f} vs deepinv {b['solver']}@{b['nfe']} "
            f"{mean_ci(b['lpips']).mean:.4f}: dLPIPS {d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}], "
            f"dPSNR {dp.mean:+.2f} dB [{dp.low:+.2f}, {dp.high:+.2f}] -> {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
