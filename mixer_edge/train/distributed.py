"""Data-parallel training on PyTorch's own engine: torchrun + DistributedDataParallel.

Each process takes an equal slice of every global batch and DDP averages the gradients, so a
2-process run computes the same mean-loss gradient as one process on the whole batch (up to
floating-point summation order). gloo on CPU, NCCL on GPU.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_world(device: torch.device) -> World:
    """Join the torchrun group when launched by torchrun (WORLD_SIZE > 1), else a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    # Share the cores instead of oversubscribing them: each process gets its part.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // size))
    if dist.get_rank() != 0:   # one set of progress bars, the first process's
        os.environ["MIXER_EDGE_PROGRESS"] = "0"
    return World(rank=dist.get_rank(), size=dist.get_world_size())


def share_keys(data, world: World) -> None:
    """Under torchrun each process hashes every world.size-th image, from its rank, and the content
    keys are gathered (data.keys set): the processes decode each file once between them instead of
    once each. gloo only (CPU objects); under NCCL each process still hashes every image."""
    if world.size == 1 or "keys" in data.__dict__ or dist.get_backend() != "gloo":
        return
    import numpy as np

    parts: list = [None] * world.size
    dist.all_gather_object(parts, data.subset(np.arange(world.rank, len(data), world.size)).keys)
    keys = np.empty(len(data), np.uint64)
    for rank, part in enumerate(parts):
        keys[rank::world.size] = part
    data.__dict__["keys"] = keys   # ImageSet.keys is a cached_property: this is its cache


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def shutdown(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def launch_command(nproc: int, train_args: list[str]) -> list[str]:
    """The torchrun command that runs `python -m mixer_edge.train ARGS` on nproc processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "mixer_edge.train", *train_args]
