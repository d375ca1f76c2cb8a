"""Data-parallel training on PyTorch's own engine: torchrun + DistributedDataParallel.

Each process takes an equal slice of every global batch and DDP averages the gradients, so a
2-process run computes the same mean-loss gradient as one process on the whole batch (up to
floating-point summation order). gloo on CPU, NCCL on GPU. The processes come from torchrun, or
from `mixer-edge train --nproc N` (launch: the same env:// rendezvous, one error line instead of
the torchrun agent's traceback).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..runtime.system import usable_cpus


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
    # Share the cores instead of oversubscribing them: each process gets its part of the CPUs it may
    # use (affinity, quota), not of the host's.
    torch.set_num_threads(max(1, usable_cpus() // size))
    if dist.get_rank() != 0:   # one set of progress bars, the first process's
        os.environ["MIXER_EDGE_PROGRESS"] = "0"
    return World(rank=dist.get_rank(), size=dist.get_world_size())


def share_keys(data, world: World) -> None:
    """Under torchrun each process hashes every world.size-th image, from its rank, and the content
    keys are gathered (data.keys set): the processes decode each file once between them instead of
    once each. Every process joins the gather, a bad file in one share included (then every process
    raises it, none is left waiting). gloo only (CPU objects); under NCCL each hashes every image."""
    if world.size == 1 or dist.get_backend() != "gloo":
        return
    import numpy as np

    from ..errors import BadInput, MixerEdgeError

    try:
        mine = data.subset(np.arange(world.rank, len(data), world.size)).keys
    except MixerEdgeError as e:   # a file this process could not read: say so to every process
        mine = str(e)
    parts: list = [None] * world.size
    dist.all_gather_object(parts, mine)
    failed = [part for part in parts if isinstance(part, str)]
    if failed:
        raise BadInput(failed[0])
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


def launch(nproc: int, train_args: list[str], grace_s: float = 10.0) -> int:
    """Run `python -m mixer_edge.train ARGS` in nproc processes on this machine, joined by env://
    rendezvous (the variables `torchrun --standalone` sets, without its agent's tracebacks). The
    first process's output shows as it comes; another's only when it fails and the first did not,
    so an error every process meets is said once. When one fails, the others get grace_s to finish
    saying so, then are stopped (one left waiting in a collective would wait for gloo's timeout).
    Returns the first failure's exit code, or 0."""
    import subprocess
    import tempfile
    import time

    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc)}
    logs = [None] + [tempfile.TemporaryFile() for _ in range(1, nproc)]
    procs = [subprocess.Popen([sys.executable, "-m", "mixer_edge.train", *train_args], stderr=logs[rank],
                              env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}) for rank in range(nproc)]
    try:
        failed_at = None
        while any(p.poll() is None for p in procs):
            if failed_at is None and any(p.poll() not in (None, 0) for p in procs):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > grace_s:
                break
            time.sleep(0.1)
    finally:
        for p in procs:   # Ctrl-C, or a process left waiting for one that failed
            if p.poll() is None:
                p.kill()
                p.wait()
    codes = [p.returncode for p in procs]
    failures = [rank for rank, code in enumerate(codes) if code != 0]
    if failures and codes[0] == 0:
        logs[failures[0]].seek(0)
        sys.stderr.write(logs[failures[0]].read().decode(errors="replace"))
    return codes[failures[0]] if failures else 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
