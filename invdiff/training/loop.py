"""The training loop shared by every kind of prior.

Reproducibility: one explicit CPU ``torch.Generator`` (seeded with ``cfg.seed``) draws every
batch, noise sample, timestep and dropped label; model initialisation is seeded once here,
inside ``torch.random.fork_rng`` so the caller's global RNG is left untouched. A checkpoint
holds the model, the EMA, the optimiser and LR schedule, the step, the accumulated wall time,
the generator state and the loss summed since the last on-grid ``loss.csv`` row (so the rows of
a resumed run equal those of an uninterrupted one); ``resume=True`` continues from it and
reproduces the uninterrupted run exactly (same seed, same device, deterministic kernels).
Sample grids use their own generator, so drawing them never changes the training trajectory.

Faults: the checkpoint is one safetensors file (tensors, plus the rest as JSON metadata), so
loading it runs no code. It is replaced atomically before the exported model is swapped in;
a run killed between the two (or during the swap) leaves the export behind the checkpoint, and
``resume=True`` first exports again from the checkpoint, so the exported weights always end
equal to those of an uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from torch import nn

from invdiff import io as safe_io
from invdiff.training.config import TrainConfig
from invdiff.training.data import training_images
from invdiff.training.ema import EMA
from invdiff.training.tasks import TASKS, DiffusionTask, labelled

CHECKPOINT = "checkpoint.safetensors"
#: the pickle-based checkpoint of older runs (read with ``weights_only=True``)
LEGACY_CHECKPOINT = "checkpoint.pt"
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
    from invdiff.device import resolve_device as resolve

    return resolve(device)


def count_parameters(model: nn.Module) -> int:
    """The trainable parameters (a ControlNet's frozen prior is not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _split_state(value: object, prefix: str, tensors: dict[str, torch.Tensor]) -> object:
    """``value`` with every tensor moved into ``tensors`` (under its path) and replaced by a
    reference, so the rest is plain JSON."""
    if isinstance(value, torch.Tensor):
        tensors[prefix] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(value, dict):
        if not all(isinstance(k, str | int) for k in value):
            raise TypeError(f"checkpoint state {prefix!r} has keys JSON cannot hold")
        return {
            "__dict__": [[k, _split_state(v, f"{prefix}/{k}", tensors)] for k, v in value.items()]
        }
    if isinstance(value, list | tuple):
        items = [_split_state(v, f"{prefix}/{i}", tensors) for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"checkpoint state {prefix!r} holds a {type(value).__name__}")


def _join_state(value: object, tensors: dict[str, torch.Tensor]) -> object:
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__tuple__" in value:
            return tuple(_join_state(v, tensors) for v in value["__tuple__"])
        return {k: _join_state(v, tensors) for k, v in value["__dict__"]}
    if isinstance(value, list):
        return [_join_state(v, tensors) for v in value]
    return value


def save_checkpoint_file(state: dict, path: Path) -> None:
    """Write a training state as one safetensors file: the tensors (weights, EMA, optimiser
    moments, generator state) as tensors, everything else as JSON in its metadata. Loading it
    can execute nothing, unlike a pickle."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    layout = _split_state(state, "state", tensors)
    meta = {"format": "pt", "invdiff_checkpoint": json.dumps(layout, allow_nan=True)}
    safe_io.write_bytes(path, save(tensors, metadata=meta))


def load_checkpoint_file(path: Path, device: torch.device | str = "cpu") -> dict:
    """Read a training state written by ``save_checkpoint_file`` (or, from older runs, a
    ``checkpoint.pt`` read with ``weights_only=True``: tensors and plain data only, no code)."""
    path = Path(path)
    if path.suffix == ".pt":
        try:
            return torch.load(path, map_location=device, weights_only=True)
        except Exception as err:  # noqa: BLE001 - pickle, zip and torch errors alike
            raise CheckpointError(
                f"{path} is not a checkpoint invdiff can read safely ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); start a new run with "
                "another --out, or without --resume"
            ) from None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        layout = json.loads(meta["invdiff_checkpoint"])
        state = _join_state(layout, tensors)
    except Exception as err:  # noqa: BLE001 - a damaged or foreign file
        raise CheckpointError(
            f"{path} is not a readable invdiff checkpoint ({type(err).__name__}: {err}); "
            "start a new run with another --out, or without --resume"
        ) from None
    if not isinstance(state, dict) or not {"config", "model", "ema", "step"} <= set(state):
        raise CheckpointError(f"{path} lacks the parts of a training checkpoint")
    return state


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (damaged, foreign, or unsafe to load)."""


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
        if keep_until > 0 and (path.exists() or path.is_symlink()):
            text = safe_io.read_bytes(path).decode("utf-8", errors="replace")
            for r in csv.DictReader(io.StringIO(text)):
                try:
                    step = int(r["step"])
                    if step <= keep_until and step % log_every == 0:
                        rows.append(r)
                except (KeyError, TypeError, ValueError):
                    continue  # a torn or foreign line: the checkpoint decides what was done
        buf = io.StringIO()
        w = csv.DictWriter(buf, LOG_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        safe_io.write_text(path, buf.getvalue())

    def write(self, row: dict) -> None:
        buf = io.StringIO()
        csv.DictWriter(buf, LOG_FIELDS).writerow(row)
        safe_io.append_bytes(path=self.path, data=buf.getvalue().encode(), sync=False)


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


def _compiled_for_training(model: nn.Module) -> nn.Module:
    """``model`` behind ``torch.compile``; the eager model (and one warning) where that fails."""
    import warnings

    from torch._dynamo.exc import TorchDynamoException

    from invdiff.priors.network import CompileFallbackWarning, compile_unavailable_reason

    reason = compile_unavailable_reason()
    if reason is None:
        compiled = torch.compile(model)

        class _Guarded(nn.Module):
            # the first call compiles: a compiler failure there falls back to eager for good
            def __init__(self) -> None:
                super().__init__()
                self.eager = model
                self.failed = False

            def forward(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                if not self.failed:
                    try:
                        return compiled(*args, **kwargs)
                    except TorchDynamoException as err:
                        self.failed = True
                        first = (str(err).strip().splitlines() or [""])[0]
                        warnings.warn(
                            f"torch.compile of the model is not available here "
                            f"({type(err).__name__}: {first[:160]}); training uncompiled",
                            CompileFallbackWarning,
                            stacklevel=2,
                        )
                return self.eager(*args, **kwargs)

        return _Guarded()
    warnings.warn(
        f"torch.compile of the model is not available here ({reason}); training uncompiled",
        CompileFallbackWarning,
        stacklevel=2,
    )
    return model


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    time_limit_s: float | None = None,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    compile: bool = False,  # noqa: A002 - the torch name users know
) -> Path:
    """Run (or resume) a training run; returns the run folder.

    The folder gets ``config.json``, ``loss.csv``, ``samples/step_XXXXXX.png``,
    ``checkpoint.safetensors`` and the exported EMA model (``prior/`` or, for an autoencoder,
    ``autoencoder/``) with ``training.json`` (step, wall time, device, parameter count).
    ``time_limit_s`` ends the run early (checkpoint, export and grid at the step reached); since
    the learning rate does not depend on ``steps``, that run equals one with ``steps`` = the
    step reached. ``data`` (images in [-1, 1], labels) replaces the registered data set (tests,
    custom data); the run then records ``dataset = "custom"``. ``compile`` evaluates the
    training loss through ``torch.compile(model)`` (same parameters, so checkpoints, the EMA and
    the exported model are unchanged); where it cannot compile, one warning and eager steps.
    """
    from tqdm import tqdm

    from invdiff.images import save_image
    from invdiff.training.export import write_card

    cfg.validate()
    if time_limit_s is not None and (
        isinstance(time_limit_s, bool)
        or not isinstance(time_limit_s, int | float)
        or not time_limit_s > 0
    ):
        raise ValueError(f"time_limit_s must be a positive number of seconds, got {time_limit_s!r}")
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    legacy = out / LEGACY_CHECKPOINT
    found = next((p for p in (ckpt_path, legacy) if p.exists() or p.is_symlink()), None)
    if found is not None and not resume:
        raise FileExistsError(
            f"{found} exists: pass --resume to continue that run, or choose another --out"
        )
    if resume and found is None:
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
    device = resolve_device(cfg.device)
    safe_io.check_writable(out)
    state = load_checkpoint_file(found, device="cpu") if resume else None
    if state is not None:
        _check_resumable(state["config"], cfg)
    out.mkdir(parents=True, exist_ok=True)
    safe_io.make_dirs(out, "samples")

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

    # a ControlNet's frozen prior has no trainable weights: the optimiser sees the adapter
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, cfg.warmup_steps)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warmup))
    ema = EMA(model, cfg.ema_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    step, wall = 0, 0.0
    running, count = 0.0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        lr_sched.load_state_dict(state["lr_schedule"])
        generator.set_state(state["generator"])
        step, wall = int(state["step"]), float(state["wall_s"])
        # the loss accumulated since the last on-grid row of loss.csv (older checkpoints: none)
        running, count = (float(v) for v in state.get("loss_running", (0.0, 0)))
        count = int(count)
    safe_io.write_text(out / "config.json", json.dumps(_normalise(cfg.to_dict()), indent=2) + "\n")
    # a finished run resumed without more steps writes no row: its last (off-grid) one stays
    log = LossLog(
        out / LOSS_LOG, keep_until=step, log_every=cfg.log_every if step < cfg.steps else 1
    )
    n_params = count_parameters(model)
    export_name = "autoencoder" if cfg.kind == "autoencoder" else "prior"

    def save_checkpoint() -> None:
        save_checkpoint_file(
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
        legacy.unlink(missing_ok=True)  # the new checkpoint supersedes one of an older format
        export()

    def export() -> None:
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

        safe_io.replace_folder(build, out / export_name)

    def exported_step() -> int | None:
        try:
            info = json.loads(safe_io.read_bytes(out / export_name / "training.json"))
            return int(info["step"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save_grid() -> None:
        with torch.no_grad():
            grid = task.grid(ema.shadow, torch.Generator().manual_seed(cfg.seed + 1))
        grid = labelled(grid, f"{task.grid_title()}, step {step}", task.grid_rows)
        save_image(grid, out / "samples" / f"step_{step:06d}.png")
        save_image(grid, out / "samples" / "latest.png")

    for leftover in [*safe_io.leftovers(out, export_name), *safe_io.leftovers(out, CHECKPOINT)]:
        # a temporary file or folder of a writer that was killed: never part of the run
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    if state is not None:
        # a kill between the checkpoint and the export (or during the export) leaves the
        # exported model behind the checkpoint: bring it level before going on
        if exported_step() != step:
            export()
        if step >= cfg.steps and not (out / "samples" / f"step_{step:06d}.png").is_file():
            save_grid()
        state = None

    bar = tqdm(
        total=cfg.steps,
        initial=step,
        desc=f"train {cfg.kind}",
        disable=not progress,
        dynamic_ncols=True,
    )
    step_model = model
    if compile and isinstance(task, DiffusionTask):
        step_model = _compiled_for_training(model)
    elif compile:
        import warnings

        from invdiff.priors.network import CompileFallbackWarning

        # its loss calls encode/decode, not the module: nothing one compiled call would cover
        warnings.warn(
            "--compile applies to the diffusion UNets (pixel, sr3, latent); "
            "the autoencoder trains uncompiled",
            CompileFallbackWarning,
            stacklevel=2,
        )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    t_start = time.perf_counter()
    wall0 = wall
    try:
        while step < cfg.steps:
            model.train()
            with autocast:
                task.step = step
                loss = task.loss(step_model, generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
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
