"""Scale-out with ``torchrun``: one process per rank, images sharded by rank.

``torchrun --nproc_per_node=N -m invdiff bench SUITE`` sets ``WORLD_SIZE``/``RANK``/
``LOCAL_RANK``; the harness then joins a process group (gloo on CPU, nccl on CUDA), each rank
runs its share of the image batches and appends to its own rows file, and rank 0 merges after a
barrier. Without ``WORLD_SIZE > 1`` nothing is initialised and the run is a plain process.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1 and dist.is_available() and dist.is_initialized():
            dist.barrier()

    def all_ok(self, ok: bool) -> bool:
        """True when every rank reports ``ok`` (used to stop all ranks on a validation error)."""
        if self.size == 1 or not dist.is_initialized():
            return ok
        flag = torch.tensor([1 if ok else 0], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            flag = flag.cuda(torch.cuda.current_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def close(self) -> None:
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def setup(device: str) -> World:
    """Join the process group when launched by ``torchrun`` with more than one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if size <= 1:
        return World(0, 1, 0, False)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), local_rank, False)
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    # ranks finish their shards at different times; the merge barrier must outwait the slowest
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=48))
    return World(dist.get_rank(), dist.get_world_size(), local_rank, True)


def shard(items: list, world: World) -> list:
    """This rank's items: every ``size``-th one from ``rank`` (balanced, deterministic)."""
    return items[world.rank :: world.size]
