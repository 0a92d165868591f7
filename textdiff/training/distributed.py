"""This process's place in a (DeepSpeed / torch.distributed) job: set-up, barriers, seeds, reductions."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    on_gpu: bool
    standalone: bool = False  # no launcher: this process made its one-process group (and its environment)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


STANDALONE_ENVIRONMENT = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def setup_distributed(threads: int | None = None) -> DistInfo:
    """Join (or, with no launcher, create) the process group: gloo on CPU, NCCL on GPUs.

    Without a launcher the environment of a one-process job is filled in, so the same script runs on a laptop.
    Each CPU process gets cores / local processes threads unless `threads` says otherwise. Rank 0 logs at INFO,
    the others only warnings.
    """
    standalone = "RANK" not in os.environ
    if standalone:
        values = ("127.0.0.1", str(free_port()), "0", "1", "0", "1")
        os.environ.update(zip(STANDALONE_ENVIRONMENT, values))
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    on_gpu = accelerator.device_name() != "cpu"
    if on_gpu:
        accelerator.set_device(local_rank)
    else:
        prepare_cpu_communication(int(os.environ.get("WORLD_SIZE", "1")))
    deepspeed.init_distributed()
    world_size = torch.distributed.get_world_size()
    if not on_gpu:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // local_world))
    rank = torch.distributed.get_rank()
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format="%(message)s")
    return DistInfo(rank, world_size, local_rank, on_gpu, standalone)


SHM_OP = "deepspeed_shm_comm"  # DeepSpeed's CPU all-reduce op, JIT-compiled by torch on first use
STALE_BUILD_SECONDS = 600  # no build of it takes this long (≈ 2 min on a slow 2-core machine)


def prepare_cpu_communication(world_size: int) -> None:
    """DeepSpeed's CPU all-reduce op without its two ways to stall a run.

    One process never all-reduces, so it does not build the op at all (a fresh machine saves its ~2-minute
    compile, and a build interrupted earlier cannot wedge it). Several processes need it; a build killed by
    SIGTERM leaves torch's lock file behind and every later run would wait on it forever, silently: a lock older
    than STALE_BUILD_SECONDS (TEXTDIFF_STALE_BUILD_SECONDS) is taken as such a leftover and removed, with a
    message; a younger one is a build in progress, which torch waits for.
    """
    import deepspeed.ops

    if world_size == 1:
        deepspeed.ops.__compatible_ops__[SHM_OP] = False
        return
    from torch.utils.cpp_extension import _get_build_directory

    lock = Path(_get_build_directory(SHM_OP, verbose=False)) / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age > float(os.environ.get("TEXTDIFF_STALE_BUILD_SECONDS", STALE_BUILD_SECONDS)):
        logging.getLogger("textdiff.train").warning(
            "Removing %s: a build of DeepSpeed's %s op left it %.0f s ago and never finished (an interrupted "
            "first run); the op is built again now.",
            lock,
            SHM_OP,
            age,
        )
        lock.unlink(missing_ok=True)


def cleanup_distributed(dist: DistInfo) -> None:
    """Wait for every rank, then remove this rank's DeepSpeed shared-memory all-reduce buffer from /dev/shm
    (DeepSpeed's CPU communication leaves one ~66 MB file per process behind). A standalone process (no
    launcher) takes back the environment it set, so that a child process starts its own group instead of
    joining this one's port (the group itself stays: DeepSpeed cannot make a new one in the same process, and a
    later job in this process reuses it)."""
    barrier(dist)
    address, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    for buffer in Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{address}_{port}_{dist.rank}"):
        buffer.unlink(missing_ok=True)
    if dist.standalone:
        for key in STANDALONE_ENVIRONMENT:
            os.environ.pop(key, None)


def barrier(dist: DistInfo) -> None:
    if dist.world_size > 1:
        torch.distributed.barrier()


@contextlib.contextmanager
def rank_zero_first(dist: DistInfo) -> Iterator[None]:
    """Run the block on rank 0 first (it fills caches and writes files), then on the other ranks."""
    if dist.rank != 0:
        barrier(dist)
    yield
    if dist.rank == 0:
        barrier(dist)


def step_seed(seed: int, step: int, shard: int) -> int:
    """A seed that is a pure function of the position in training, so a resumed run draws the same noise.

    `shard` = rank × gradient_accumulation_steps + micro-batch index: the position of the micro batch within the
    global batch, so 1 process accumulating 2 micro batches and 2 processes with 1 each draw the same noise for
    the same examples.
    """
    return ((seed * 1_000_003 + step) * 1_009 + shard) % (2**63)


def global_mean(values: dict[str, float], dist: DistInfo, device: torch.device) -> dict[str, float]:
    """The mean over ranks of per-rank scalars (what the logs report for the whole global batch)."""
    if dist.world_size == 1:
        return values
    tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return {name: value / dist.world_size for name, value in zip(values, tensor.tolist())}
