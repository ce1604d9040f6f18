"""Starting process groups: under ``torchrun``, from Ray, or spawned on this machine.

Command line (one process per rank, started by ``torchrun``)::

    torchrun --nproc-per-node 2 -m convexsnn.distributed.launch \\
        --dictionary D.npy --targets y.npy --loss softmax --penalty l1 --reg 1.0 --out run/

``D.npy`` is the ``(n, P)`` 0/1 dictionary (``bool`` or ``uint8``, memory-mapped: each rank
copies only its column block), ``y.npy`` the targets. Rank 0 writes ``run/solution.npz`` (``W``,
``dual``) and ``run/certificate.json``; existing files are not overwritten without ``--force``.
On several machines use ``torchrun --nnodes N --node-rank i --rdzv-endpoint HOST:PORT ...``
(see ``docs/cluster.md``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger("convexsnn")

__all__ = ["main"]


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convexsnn.distributed.launch",
        description="Certified readout solve on a column-sharded dictionary (run under torchrun).",
    )
    p.add_argument("--dictionary", required=True, help="(n, P) 0/1 matrix as .npy (mmap)")
    p.add_argument("--targets", required=True, help="targets / labels as .npy (n,) or (n, C)")
    p.add_argument("--loss", default="squared", choices=("squared", "hinge", "softmax"))
    p.add_argument("--penalty", default="l1", choices=("l1", "l21"))
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--lam", type=float)
    g.add_argument("--reg", type=float, help="lam = reg / sqrt(P)")
    g.add_argument("--beta", type=float, help=argparse.SUPPRESS)  # deprecated alias of --reg
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
    from ._group import init_from_env
    from .operator import ShardedSpikeOperator, column_blocks
    from .solve import solve_readout_sharded

    a = _parser().parse_args(argv)
    if a.beta is not None:
        from .._checks import warn_renamed

        warn_renamed("--beta", "--reg", "convexsnn.distributed.launch", stacklevel=1)
        a.reg = a.beta
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
        sol = solve_readout_sharded(
            op,
            y,
            loss=a.loss,
            penalty=a.penalty,
            lam=a.lam,
            reg=a.reg,
            tol=a.tol,
            max_iter=a.max_iter,
        )
        if rank == 0:
            W = sol.W.cpu().numpy()
            U = sol.dual.cpu().numpy() if sol.dual is not None else np.zeros(0)

            def write(tmp: str) -> None:
                with open(tmp, "wb") as f:
                    np.savez(f, W=W, dual=U)

            atomic_write_with(targets[0], write)
            atomic_write_json(targets[1], json_safe(sol.certificate.to_dict()))
            logger.info("rank 0 wrote %s", out)
        dist.barrier()  # every rank returns once the solution is on disk
    finally:
        dist.destroy_process_group()
    return 0 if sol.certificate.converged else 1


if __name__ == "__main__":  # pragma: no cover - exercised through torchrun
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sys.exit(main())
