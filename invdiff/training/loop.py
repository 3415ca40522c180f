"""The training loop shared by every kind of prior.

Reproducibility: one explicit CPU ``torch.Generator`` (seeded with ``cfg.seed``) draws every
batch, noise sample, timestep and dropped label; model initialisation is seeded once here,
inside ``torch.random.fork_rng`` so the caller's global RNG is left untouched. A checkpoint
holds the model, the EMA, the optimiser and LR schedule, the step, the accumulated wall time and
the generator state; ``resume=True`` continues from it and reproduces the uninterrupted run
exactly (same seed, same device, deterministic kernels). Sample grids use their own generator,
so drawing them never changes the training trajectory.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch
from torch import nn

from invdiff.training.config import TrainConfig
from invdiff.training.data import training_images
from invdiff.training.ema import EMA
from invdiff.training.tasks import TASKS, labelled

CHECKPOINT = "checkpoint.pt"
LOSS_LOG = "loss.csv"
LOG_FIELDS = ["step", "loss", "lr", "grad_norm", "wall_s"]
# fields a resumed run may change; anything else must match the checkpoint's config
RESUMABLE_CHANGES = {
    "steps",
    "out",
    "device",
    "sample_every",
    "checkpoint_every",
    "log_every",
    "command",
    "num_samples",
    "sample_steps",
}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} requested but CUDA is not available; use --device cpu or auto"
        )
    return dev


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def atomic_torch_save(obj: object, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def replace_folder(build, dest: Path) -> None:  # noqa: ANN001 - callable(folder)
    """Write a folder with ``build(tmp)`` and swap it in, so readers never see half of it."""
    tmp = dest.with_name(dest.name + ".tmp")
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


class LossLog:
    """CSV of ``step, loss, lr, grad_norm, wall_s``; ``loss`` is the mean since the previous row.

    On resume, rows after the checkpoint go, and so does a row the earlier run wrote off the
    ``log_every`` grid when it ended (its last step): the resumed run carries the running mean
    on from the checkpoint and writes the on-grid row that covers those steps, as the
    uninterrupted run does.
    """

    def __init__(self, path: Path, keep_until: int, log_every: int = 1):
        self.path = path
        rows = []
        if keep_until > 0 and path.is_file():
            with path.open() as f:
                rows = [
                    r
                    for r in csv.DictReader(f)
                    if int(r["step"]) <= keep_until and int(r["step"]) % log_every == 0
                ]
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)

    def write(self, row: dict) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, LOG_FIELDS).writerow(row)


def _check_resumable(saved: dict, cfg: TrainConfig) -> None:
    now = _normalise(cfg.to_dict())
    diff = sorted(
        k
        for k in saved
        if k not in RESUMABLE_CHANGES and k in now and saved[k] != now[k] and k != "extra"
    )
    if diff:
        details = ", ".join(f"{k}: checkpoint {saved[k]!r} vs now {now[k]!r}" for k in diff[:5])
        raise ValueError(
            f"--resume with a different configuration ({details}); "
            f"only {sorted(RESUMABLE_CHANGES)} may change"
        )


def _normalise(d: dict) -> dict:
    return json.loads(json.dumps(d))


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    time_limit_s: float | None = None,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Path:
    """Run (or resume) a training run; returns the run folder.

    The folder gets ``config.json``, ``loss.csv``, ``samples/step_XXXXXX.png``,
    ``checkpoint.pt`` and the exported EMA model (``prior/`` or, for an autoencoder,
    ``autoencoder/``) with ``training.json`` (step, wall time, device, parameter count).
    ``time_limit_s`` ends the run early (checkpoint, export and grid at the step reached); since
    the learning rate does not depend on ``steps``, that run equals one with ``steps`` = the
    step reached. ``data`` (images in [-1, 1], labels) replaces the registered data set (tests,
    custom data); the run then records ``dataset = "custom"``.
    """
    from tqdm import tqdm

    from invdiff.images import save_image
    from invdiff.training.export import write_card

    cfg.validate()
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists() and not resume:
        raise FileExistsError(
            f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out"
        )
    if resume and not ckpt_path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    device = resolve_device(cfg.device)

    task = TASKS[cfg.kind](cfg, device)
    with torch.random.fork_rng(devices=[]):  # diffusers initialises from the global RNG
        torch.manual_seed(cfg.seed)
        model = task.build_model()
    model.to(device)
    if data is None:
        images, labels, data_info = training_images(cfg)
    else:
        images, labels = data
        data_info = {"dataset": "custom", "train_images": len(images)}
        if tuple(images.shape[-2:]) != (cfg.image_size, cfg.image_size):
            raise ValueError(
                f"data images are {tuple(images.shape[-2:])}, "
                f"the config says image_size={cfg.image_size}"
            )
    task.prepare(images, labels)

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, cfg.warmup_steps)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warmup))
    ema = EMA(model, cfg.ema_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    step, wall = 0, 0.0
    running, count = 0.0, 0
    if resume:
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        _check_resumable(state["config"], cfg)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        lr_sched.load_state_dict(state["lr_schedule"])
        generator.set_state(state["generator"])
        step, wall = int(state["step"]), float(state["wall_s"])
        # the loss accumulated since the last on-grid row of loss.csv (older checkpoints: none)
        running, count = (float(v) for v in state.get("loss_running", (0.0, 0)))
        count = int(count)
    atomic_write_text(out / "config.json", json.dumps(_normalise(cfg.to_dict()), indent=2) + "\n")
    log = LossLog(out / LOSS_LOG, keep_until=step, log_every=cfg.log_every)
    n_params = count_parameters(model)
    export_name = "autoencoder" if cfg.kind == "autoencoder" else "prior"

    def save_checkpoint() -> None:
        atomic_torch_save(
            {
                "config": _normalise(cfg.to_dict()),
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": opt.state_dict(),
                "lr_schedule": lr_sched.state_dict(),
                "generator": generator.get_state(),
                "step": step,
                "wall_s": wall,
                "loss_running": (running, count),
            },
            ckpt_path,
        )

        def build(folder: Path) -> None:
            task.export(ema.shadow, folder)
            info = {
                "kind": cfg.kind,
                "step": step,
                "wall_s": round(wall, 1),
                "device": device.type
                if device.type != "cuda"
                else torch.cuda.get_device_name(device),
                "threads": torch.get_num_threads(),
                "parameters": n_params,
                "seed": cfg.seed,
                "command": cfg.command,
                "torch": torch.__version__,
                "config": _normalise(cfg.to_dict()),
                "data": data_info,
            }
            (folder / "training.json").write_text(json.dumps(info, indent=2) + "\n")
            write_card(folder, str(out / export_name), shipped=False)

        replace_folder(build, out / export_name)

    def save_grid() -> None:
        with torch.no_grad():
            grid = task.grid(ema.shadow, torch.Generator().manual_seed(cfg.seed + 1))
        grid = labelled(grid, f"{task.grid_title()}, step {step}", task.grid_rows)
        save_image(grid, out / "samples" / f"step_{step:06d}.png")
        save_image(grid, out / "samples" / "latest.png")

    bar = tqdm(
        total=cfg.steps,
        initial=step,
        desc=f"train {cfg.kind}",
        disable=not progress,
        dynamic_ncols=True,
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    t_start = time.perf_counter()
    wall0 = wall
    try:
        while step < cfg.steps:
            model.train()
            with autocast:
                loss = task.loss(model, generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            lr_sched.step()
            ema.update(model)
            step += 1
            wall = wall0 + time.perf_counter() - t_start
            running += float(loss.detach())
            count += 1
            bar.update(1)
            out_of_time = time_limit_s is not None and time.perf_counter() - t_start > time_limit_s
            last = step == cfg.steps or out_of_time
            if step % cfg.log_every == 0 or last:
                row = {
                    "step": step,
                    "loss": f"{running / count:.6f}",
                    "lr": f"{lr_sched.get_last_lr()[0]:.3g}",
                    "grad_norm": f"{float(grad_norm):.4f}",
                    "wall_s": f"{wall:.1f}",
                }
                log.write(row)
                bar.set_postfix(loss=row["loss"])
                if step % cfg.log_every == 0:
                    # an off-grid last row keeps the sum, so a resumed run continues it
                    running, count = 0.0, 0
            if step % cfg.checkpoint_every == 0 or last:
                save_checkpoint()
            if step % cfg.sample_every == 0 or last:
                save_grid()
            if out_of_time:
                print(f"\ntime limit reached at step {step}", file=sys.stderr)
                break
    except KeyboardInterrupt:
        # the last periodic checkpoint is consistent; a half-finished step is not saved
        print(f"\ninterrupted at step {step}; --resume continues from {ckpt_path}", file=sys.stderr)
        raise
    finally:
        bar.close()
    return out
