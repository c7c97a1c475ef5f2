"""Distributed data parallel set-up for ``torchrun --nproc_per_node=N -m rectifiers train``.

torchrun exports ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
when they are present we join the process group (nccl on CUDA, gloo on CPU) and wrap the model in
``DistributedDataParallel``. Multi-node runs work the same way (torchrun ``--nnodes``).

Global-batch semantics: ``TrainConfig.batch_size`` is the global batch. Each rank takes
``batch_size // world_size`` samples; the data loader shards a shared permutation as
``perm[rank::world_size]``, so the union of the ranks' batches at step t is exactly the batch a
single process would use at step t, and DDP's gradient averaging makes the update identical (up
to float summation order). Only rank 0 writes files and prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False  # we created the process group, so we destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device_type: str) -> DistInfo:
    """Join the process group torchrun describes (no-op for a single process)."""
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if dist.is_initialized():  # the caller set it up (e.g. a notebook or a test harness)
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, False)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local_rank, True)


def teardown(info: DistInfo, finished: bool) -> None:
    """Leave the process group we joined.

    ``finished``: every rank got to the end normally. Then all ranks meet at a barrier first:
    gloo's worker threads free a finished collective (and the Python tensors it holds) shortly
    after the caller has seen it complete, and a rank whose last collective is its last act
    (rank 1, while rank 0 writes the files) could reach interpreter shutdown before that free,
    which then aborts the process ("terminate called without an active exception", exit -6).
    The barrier waits for every earlier collective, so their frees happen while Python is still
    alive. After an error there is no barrier (the other ranks may never come; torchrun stops
    them)."""
    if not (info.initialized_here and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device, info: DistInfo) -> list[float]:
    """Sum a few Python numbers over ranks (float64 so that counts stay exact)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_reduce_mean_(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """In-place mean over ranks of a tensor (e.g. the step's loss, for logging and the guard)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(info.world_size)
    return t


def gather_rank_states(rank_state: dict[str, Any], info: DistInfo) -> list[dict[str, Any]]:
    """Every rank's small state dict (RNG, loader position), in rank order, on every rank."""
    if not info.enabled:
        return [rank_state]
    # In-memory exchange between our own processes (nothing is written with pickle).
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, rank_state)
    return gathered


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's small JSON-like value on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
