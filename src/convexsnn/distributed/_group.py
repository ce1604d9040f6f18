"""Process groups: join the one ``torchrun`` describes, or spawn one on this machine."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["free_port", "init_from_env", "run_local"]


def free_port() -> int:
    """A TCP port that is free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_from_env(backend: str | None = None, device: str = "cpu") -> tuple[int, int, str]:
    """Join the process group described by the environment (``torchrun``: ``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``).

    ``backend`` defaults to ``nccl`` for ``device="cuda"`` and ``gloo`` otherwise. Returns
    ``(rank, world_size, device)`` with the device of this rank (``cuda:LOCAL_RANK`` on GPUs).
    """
    missing = [
        k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
    ]
    if missing:
        raise RuntimeError(
            f"environment variables {missing} are not set: start this with "
            f"torchrun (or set them as for torch.distributed's env:// method)"
        )
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' but CUDA is not available on this machine")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = f"cuda:{local}"
    else:
        dev = "cpu"
    backend = backend or ("nccl" if device == "cuda" else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), dev


def _worker(
    rank: int,
    fn: Callable,
    world: int,
    port: int,
    backend: str,
    queue: Any,
    args: tuple,
    threads: int | None,
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    if threads is not None:
        torch.set_num_threads(threads)
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    try:
        out = fn(rank, world, *args)
        queue.put((rank, out))
    finally:
        if dist.is_initialized():  # fn may have closed the group itself
            dist.destroy_process_group()


def run_local(
    fn: Callable, nprocs: int, *args: Any, backend: str = "gloo", threads: int | None = 1
) -> list:
    """Run ``fn(rank, world_size, *args)`` in ``nprocs`` spawned processes joined in a group.

    The group rendezvous on ``127.0.0.1`` at a free port (loopback only). ``fn`` must be
    importable (module level) and return something picklable; the list of the ranks' return
    values is returned (index = rank). A rank that raises makes this raise.
    """
    import torch.multiprocessing as mp

    if nprocs < 1:
        raise ValueError(f"nprocs must be >= 1, got {nprocs}")
    queue = mp.get_context("spawn").SimpleQueue()
    procs = mp.start_processes(
        _worker,
        nprocs=nprocs,
        join=False,
        start_method="spawn",
        args=(fn, nprocs, free_port(), backend, queue, args, threads),
    )
    out: list = [None] * nprocs
    done = False
    while not done:
        # read results while the ranks run: a rank blocks on a full pipe until they are read
        while not queue.empty():
            r, v = queue.get()
            out[r] = v
        done = procs.join(timeout=0.05)  # raises when a rank failed
    while not queue.empty():
        r, v = queue.get()
        out[r] = v
    return out
