r"""Certified readout solves on a column-sharded dictionary.

:func:`solve_readout_sharded` runs :func:`~convexsnn.convex.solver.solve_readout` on every rank
with a :class:`~convexsnn.distributed.operator.ShardedSpikeOperator`. Every quantity of the solver
outside the dictionary (targets, weights, :math:`W`, :math:`U`, datafit and penalty values) is
replicated, and the two products return the same numbers on every rank, so every rank takes the
same steps and returns the same :math:`W` and certificate. The certificate is built from the
same sums (:math:`DW`, the datafit values) and maxima (the dual norm) as on one process: it
certifies the returned point on the *whole* dictionary (``docs/method.md``, certificate).

Why the result equals the single-process optimum only up to the certified gap: a product
:math:`DW = \sum_r D_r W_r` adds the same terms in a different order than one ``gemm``, so the
iterates differ from a single-process run in the last bits, and two runs stop at two (different)
points within their gaps. Both primal values lie in :math:`[p^\star, p^\star + \mathrm{gap}]`, so

.. math::

    |P_{\text{sharded}} - P_{\text{single}}| \le \max(\mathrm{gap}_{\text{sharded}},
    \mathrm{gap}_{\text{single}}) \le \mathrm{tol} \cdot \max |P|,

the honest bound; with ``tol = 1e-10`` it is below ``1e-9`` relative.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .._checks import renamed_kwargs
from ..convex.penalties import make_penalty
from ..convex.solver import ReadoutSolution, solve_readout
from .operator import ShardedSpikeOperator

logger = logging.getLogger("convexsnn")

__all__ = ["check_replicated", "solve_readout_sharded"]


def _digest(x: Any) -> int:
    """64-bit digest of an array-like's dtype, shape and bytes (``0`` for ``None``)."""
    if x is None:
        return 0
    if isinstance(x, torch.Tensor):
        a = x.detach().cpu().contiguous().numpy()
    else:
        a = np.ascontiguousarray(np.asarray(x))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return int.from_bytes(h.digest()[:7], "little")  # 56 bits: fits int64


def check_replicated(x: Any, name: str, *, group=None, device: torch.device | str = "cpu") -> None:
    """Raise ``ValueError`` on every rank unless all ranks hold bitwise the same ``x``.

    A collective (one ``all_gather`` of a 64-bit digest).
    """
    world = dist.get_world_size(group)
    t = torch.tensor([_digest(x)], dtype=torch.long, device=device)
    got = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(got, t, group=group)
    vals = [int(g) for g in got]
    if len(set(vals)) != 1:
        bad = [r for r, v in enumerate(vals) if v != vals[0]]
        raise ValueError(
            f"{name} differs between ranks (ranks {bad} differ from rank 0); every "
            f"rank must pass the same {name}"
        )


@renamed_kwargs(beta="reg")
def solve_readout_sharded(
    op: ShardedSpikeOperator,
    y: Any,
    *,
    loss: str = "squared",
    penalty: str = "l1",
    lam: float | None = None,
    reg: float | None = None,
    sample_weight: Any = None,
    n_classes: int | None = None,
    tol: float = 1e-6,
    max_iter: int | None = None,
    W0: Any = None,
    binary_single_column: bool = True,
    working_set: bool | None = None,
    polish: bool = True,
    solver: str = "auto",
    merge_rows: bool = False,
    verify: bool = True,
    verbose: bool = False,
) -> ReadoutSolution:
    r"""Solve :math:`\min_W \sum_i a_i \ell(y_i, (DW)_i) + \lambda R(W)` on a sharded dictionary.

    A collective: call it on every rank of ``op.group`` with the same arguments. Every rank
    returns the same :class:`~convexsnn.convex.solver.ReadoutSolution` (full :math:`W`, dual
    point and certificate).

    Parameters
    ----------
    op : ShardedSpikeOperator
        The column-sharded dictionary (``lam = reg / sqrt(P)`` uses the global ``P``).
    y, loss, penalty, lam, reg, sample_weight, n_classes, tol, max_iter, W0,
    binary_single_column, working_set, polish, solver, verbose
        As in :func:`~convexsnn.convex.solver.solve_readout`; ``y``, ``sample_weight`` and ``W0``
        must be the same on every rank (checked). There is no ``max_time``: a wall-clock budget
        would stop the ranks after different iterations and leave their collectives unmatched;
        bound the work with ``max_iter``.
    merge_rows : bool, default False
        Row merging looks for duplicate rows in the dense matrix, which would gather the whole
        dictionary on every rank (what sharding avoids); off by default. The optimum is the same
        either way.
    verify : bool, default True
        After the solve, check that every rank returns the same :math:`W` and recompute the dual
        norm :math:`R^\circ(D^\top U)` of the certificate's dual point from the shards (local
        :math:`D_r^\top U`, ``all_reduce(MAX)``); stored as ``certificate.info["dual_norm_sharded"]``.

    Returns
    -------
    ReadoutSolution
        ``certificate.info`` gains ``world_size``, ``sharding`` (``"columns"``) and
        ``local_columns`` (columns per rank).

    Raises
    ------
    TypeError
        ``op`` is not a :class:`ShardedSpikeOperator`.
    ValueError
        Inputs that differ between ranks, or any error of ``solve_readout``'s validation.
    RuntimeError
        (with ``verify``) the ranks returned different solutions.
    """
    if not isinstance(op, ShardedSpikeOperator):
        raise TypeError(
            f"op must be a ShardedSpikeOperator, got {type(op).__name__} (use "
            f"solve_readout for an in-memory dictionary)"
        )
    dev = op.device
    for name, val in (("y", y), ("sample_weight", sample_weight), ("W0", W0)):
        check_replicated(val, name, group=op.group, device=dev)
    sol = solve_readout(
        op,
        y,
        loss=loss,
        penalty=penalty,
        lam=lam,
        reg=reg,
        sample_weight=sample_weight,
        n_classes=n_classes,
        tol=tol,
        max_iter=max_iter,
        W0=W0,
        device=dev,
        dtype=op.dtype,
        binary_single_column=binary_single_column,
        working_set=working_set,
        polish=polish,
        solver=solver,
        merge_rows=merge_rows,
        verbose=verbose,
    )
    info = sol.certificate.info
    info.update(world_size=op.world_size, sharding="columns", local_columns=op.counts)
    if verify:
        try:
            check_replicated(sol.W, "the solution W", group=op.group, device=dev)
        except ValueError as exc:
            raise RuntimeError(f"sharded solve diverged between ranks: {exc}") from None
        dn = op.dual_norm(sol.dual, make_penalty(penalty))
        info["dual_norm_sharded"] = dn
        if dn > sol.lam * (1.0 + 1e-9):
            logger.warning(
                "sharded dual check: R°(D^T U) = %.17g exceeds lam = %.17g; the "
                "certificate's dual point is not feasible",
                dn,
                sol.lam,
            )
            sol.certificate.converged = False
    return sol
