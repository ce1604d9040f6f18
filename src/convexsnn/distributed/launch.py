"""Starting process groups: under ``torchrun``, from Ray, or spawned on this machine.

Command line (one process per rank, started by ``torchrun``)::

    torchrun --nproc-per-node 2 -m convexsnn.distributed.launch \\
        --dictionary D.npy --targets y.npy --loss softmax --penalty l1 --beta 1.0 --out run/

``D.npy`` is the ``(n, P)`` 0/1 dictionary (``bool`` or ``uint8``, memory-mapped: each rank
copies only its column block), ``y.npy`` the targets. Rank 0 writes ``run/solution.npz`` (``W``,
``dual``) and ``run/certificate.json``; existing files are not overwritten without ``--force``.
On several machines use ``torchrun --nnodes N --node-rank i --rdzv-endpoint HOST:PORT ...``
(see ``docs/cluster.md``).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger("convexsnn")

__all__ = ["init_from_env", "free_port", "run_local", "main"]


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
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
               if k not in os.environ]
    if missing:
        raise RuntimeError(f"environment variables {missing} are not set: start this with "
                           f"torchrun (or set them as for torch.distributed's env:// method)")
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


def _worker(rank: int, fn: Callable, world: int, port: int, backend: str, queue: Any,
            args: tuple, threads: int | None) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    if threads is not None:
        torch.set_num_threads(threads)
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    try:
        out = fn(rank, world, *args)
        queue.put((rank, out))
    finally:
        dist.destroy_process_group()


def run_local(fn: Callable, nprocs: int, *args: Any, backend: str = "gloo",
              threads: int | None = 1) -> list:
    """Run ``fn(rank, world_size, *args)`` in ``nprocs`` spawned processes joined in a group.

    The group rendezvous on ``127.0.0.1`` at a free port (loopback only). ``fn`` must be
    importable (module level) and return something picklable; the list of the ranks' return
    values is returned (index = rank). A rank that raises makes this raise.
    """
    import torch.multiprocessing as mp

    if nprocs < 1:
        raise ValueError(f"nprocs must be >= 1, got {nprocs}")
    queue = mp.get_context("spawn").SimpleQueue()
    procs = mp.start_processes(_worker, nprocs=nprocs, join=False, start_method="spawn",
                               args=(fn, nprocs, free_port(), backend, queue, args, threads))
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


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convexsnn.distributed.launch",
        description="Certified readout solve on a column-sharded dictionary (run under torchrun).")
    p.add_argument("--dictionary", required=True, help="(n, P) 0/1 matrix as .npy (mmap)")
    p.add_argument("--targets", required=True, help="targets / labels as .npy (n,) or (n, C)")
    p.add_argument("--loss", default="squared", choices=("squared", "hinge", "softmax"))
    p.add_argument("--penalty", default="l1", choices=("l1", "l21"))
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--lam", type=float)
    g.add_argument("--beta", type=float, help="lam = beta / sqrt(P)")
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--max-iter", type=int, default=None)
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--backend", default=None, choices=("gloo", "nccl"))
    p.add_argument("--threads", type=int, default=None, help="torch threads per rank")
    p.add_argument("--out", required=True, help="output folder (rank 0 writes)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m convexsnn.distributed.launch`` (one call per rank)."""
    from .._io import atomic_write_json, atomic_write_with, json_safe
    from .operator import column_blocks, ShardedSpikeOperator
    from .solve import solve_readout_sharded

    a = _parser().parse_args(argv)
    out = Path(a.out)
    targets = [out / "solution.npz", out / "certificate.json"]
    if not a.force and any(t.exists() for t in targets):
        raise SystemExit(f"error: {out} already holds a solution; pass --force to overwrite it")
    for path in (a.dictionary, a.targets):
        if not Path(path).is_file():
            raise SystemExit(f"error: {path} does not exist")
    D = np.load(a.dictionary, mmap_mode="r")
    if D.ndim != 2:
        raise SystemExit(f"error: the dictionary must be 2-D, got shape {D.shape}")
    y = np.load(a.targets)
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    rank, world, dev = init_from_env(a.backend, a.device)
    try:
        lo, hi = column_blocks(D.shape[1], world)[rank]
        local = torch.from_numpy(np.ascontiguousarray(D[:, lo:hi]))
        op = ShardedSpikeOperator.from_local(local, dtype=getattr(torch, a.dtype), device=dev)
        del local
        sol = solve_readout_sharded(op, y, loss=a.loss, penalty=a.penalty, lam=a.lam,
                                    beta=a.beta, tol=a.tol, max_iter=a.max_iter)
        if rank == 0:
            W = sol.W.cpu().numpy()
            U = sol.dual.cpu().numpy() if sol.dual is not None else np.zeros(0)

            def write(tmp: str) -> None:
                with open(tmp, "wb") as f:
                    np.savez(f, W=W, dual=U)

            atomic_write_with(targets[0], write)
            atomic_write_json(targets[1], json_safe(sol.certificate.to_dict()))
            logger.info("rank 0 wrote %s", out)
    finally:
        dist.destroy_process_group()
    return 0 if sol.certificate.converged else 1


if __name__ == "__main__":  # pragma: no cover - exercised through torchrun
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sys.exit(main())
