r"""A spike dictionary sharded by columns across the ranks of a ``torch.distributed`` group.

Layout (see ``docs/cluster.md``). Rank :math:`r` of :math:`K` holds the columns
:math:`\mathcal J_r` of :math:`D \in \{0,1\}^{n \times P}` (a witness block, :math:`D_r = D_{:,
\mathcal J_r}`) and every rank holds the same (replicated) copies of everything else: the targets
and row weights (:math:`n` rows), the readout :math:`W` (:math:`P \times C`) and the dual point
:math:`U` (:math:`n \times C`). The two products of the operator protocol are then

.. math::

    DW = \sum_{r=1}^{K} D_r W_{\mathcal J_r} \quad (\texttt{all\_reduce(SUM)}), \qquad
    (D^\top R)_{\mathcal J_r} = D_r^\top R \quad (\texttt{all\_gather}),

so :func:`~convexsnn.convex.solver.solve_readout` runs unchanged on every rank: each rank executes
the same deterministic iteration on the same replicated numbers and only the dictionary (the
:math:`n \times P` part that outgrows a machine) is split. Column sharding is chosen over row
sharding because with rows split every row sum (datafit values, conjugates, norms of residuals,
Lipschitz estimates, the interior point's normal equations) would need a reduction inside the
solvers; with columns split only the two products do.

The pricing primitives work on the shards without gathering :math:`D^\top U`:

.. math::

    R^\circ(D^\top U) = \max_r \max_{j \in \mathcal J_r} \rho_j(D_r^\top U)
    \quad (\texttt{all\_reduce(MAX)}),

and the :math:`k` most violated columns are the top :math:`k` of the ranks' local top :math:`k`
(``all_gather``), see :meth:`ShardedSpikeOperator.dual_norm` and
:meth:`ShardedSpikeOperator.top_columns`.

Every method is a *collective*: all ranks of the group must call it, in the same order, with
the same (replicated) arguments.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from ..convex.linear_operator import as_operator, is_operator

logger = logging.getLogger("convexsnn")

__all__ = ["ShardedSpikeOperator", "column_blocks", "shard_columns"]


def column_blocks(n_columns: int, world_size: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` column blocks, as equal as possible, one per rank."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    base, extra = divmod(int(n_columns), int(world_size))
    out, start = [], 0
    for r in range(world_size):
        stop = start + base + (1 if r < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def _world(group) -> tuple[int, int]:
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "torch.distributed is not initialised: call "
            "torch.distributed.init_process_group (or launch with torchrun) first"
        )
    return dist.get_rank(group), dist.get_world_size(group)


class ShardedSpikeOperator:
    r"""Column-sharded binary dictionary implementing the operator protocol.

    Build it with :meth:`from_local` (each rank passes the columns it built, e.g. the dictionary
    of its witness block) or :func:`shard_columns` (every rank holds the whole matrix and keeps a
    contiguous block). Global column order is rank-major: rank 0's columns first.

    Parameters
    ----------
    local : operator or None
        This rank's columns as an operator (``DictionaryOperator``, ``SpikeOperator`` of packed
        bits, ...); ``None`` when this rank holds no column of this (sub-)operator.
    n_rows : int
        Rows :math:`n` (the same on every rank).
    positions : list of LongTensor
        For every rank, the positions (in this operator's column order) of its local columns.
    dtype, device
        Dtype and device of the products (the local operator's).
    group : ProcessGroup, optional
        The ``torch.distributed`` group (default: the world).

    Notes
    -----
    Costs per product on every rank: :math:`DW` computes the local :math:`n \times C` partial
    product and all-reduces it; :math:`D^\top R` computes the local :math:`|\mathcal J_r| \times C`
    block and all-gathers the blocks (padded to the largest). ``dense()`` gathers the whole
    matrix on every rank; the solvers call it on working-set column blocks (and, for row merging,
    on the whole matrix, which :func:`~convexsnn.distributed.solve.solve_readout_sharded`
    therefore switches off by default).
    """

    def __init__(
        self,
        local: Any,
        *,
        n_rows: int,
        positions: Sequence[torch.Tensor],
        dtype: torch.dtype,
        device: torch.device | str,
        group=None,
    ) -> None:
        self.group = group
        self.rank, self.world_size = _world(group)
        if len(positions) != self.world_size:
            raise ValueError(
                f"positions has {len(positions)} entries for a group of {self.world_size} ranks"
            )
        self.dtype = dtype
        self.device = torch.device(device)
        self._positions = [torch.as_tensor(p, dtype=torch.long).cpu() for p in positions]
        self._counts = [int(p.numel()) for p in self._positions]
        P = sum(self._counts)
        self.shape = (int(n_rows), int(P))
        self._local = local
        if (local is None) != (self._counts[self.rank] == 0):
            raise ValueError(
                "the local operator must be None exactly when this rank holds no column"
            )
        if local is not None and tuple(local.shape) != (self.shape[0], self._counts[self.rank]):
            raise ValueError(
                f"local operator has shape {tuple(local.shape)}, expected "
                f"({self.shape[0]}, {self._counts[self.rank]})"
            )
        # owner rank and position within the owner's block of every column (replicated)
        self._owner = torch.empty(P, dtype=torch.long)
        self._local_pos = torch.empty(P, dtype=torch.long)
        for r, p in enumerate(self._positions):
            self._owner[p] = r
            self._local_pos[p] = torch.arange(p.numel())
        self._pos_dev = self._positions[self.rank].to(self.device)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_local(
        cls,
        D_local: Any,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        group=None,
        check_binary: bool = True,
    ) -> ShardedSpikeOperator:
        """Assemble the sharded operator from each rank's own columns (a collective).

        ``D_local`` is this rank's ``(n, P_r)`` block: a tensor, an array, an operator, or the
        :class:`~convexsnn.dictionary.SpikeDictionary` built on this rank's witness block (its
        :meth:`~convexsnn.dictionary.SpikeDictionary.operator`, packed bits stay packed).
        Every rank must hold the same rows; ``P_r`` may differ between ranks (and be 0).
        """
        rank, world = _world(group)
        shape = tuple(D_local.shape)
        if len(shape) != 2:
            raise ValueError(f"D_local must be 2-D (n_rows, n_columns), got shape {shape}")
        if shape[1] == 0:
            local = None
        elif callable(getattr(D_local, "operator", None)) and not is_operator(D_local):
            local = D_local.operator(dtype=dtype, device=device)  # a SpikeDictionary block
        else:
            local = as_operator(
                D_local,
                dtype=dtype,
                device=device,
                name=f"D (rank {rank})",
                check_binary=check_binary,
            )
        n = int(D_local.shape[0])
        dev = torch.device(
            local.device if local is not None else (device if device is not None else "cpu")
        )
        p_r = 0 if local is None else int(local.shape[1])
        codes = {torch.float64: 0, torch.float32: 1}
        dt = local.dtype if local is not None else dtype
        info = torch.tensor([n, p_r, codes[dt]], dtype=torch.long, device=dev)
        got = [torch.empty_like(info) for _ in range(world)]
        dist.all_gather(got, info, group=group)
        table = torch.stack(got).cpu()
        if bool((table[:, 0] != n).any()):
            raise ValueError(
                f"ranks hold different numbers of rows: {table[:, 0].tolist()}; "
                f"every rank must hold all rows of its column block"
            )
        if bool((table[:, 2] != table[0, 2]).any()):
            raise ValueError("ranks use different dtypes for their column blocks")
        counts = table[:, 1].tolist()
        if sum(counts) == 0:
            raise ValueError("no rank holds a column: the sharded dictionary is empty")
        offsets = [sum(counts[:r]) for r in range(world)]
        positions = [torch.arange(o, o + c) for o, c in zip(offsets, counts)]
        return cls(local, n_rows=n, positions=positions, dtype=dt, device=dev, group=group)

    # -- protocol -------------------------------------------------------------------------
    def matmul(self, W: torch.Tensor) -> torch.Tensor:
        r""":math:`DW = \sum_r D_r W_{\mathcal J_r}` (local product, ``all_reduce(SUM)``)."""
        if W.shape[0] != self.shape[1]:
            raise ValueError(f"W has {W.shape[0]} rows, the operator {self.shape[1]} columns")
        if self._local is None:
            out = torch.zeros(self.shape[0], W.shape[1], dtype=W.dtype, device=W.device)
        else:
            out = self._local.matmul(W.index_select(0, self._pos_dev)).contiguous()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=self.group)
        return out

    def rmatmul(self, R: torch.Tensor) -> torch.Tensor:
        r""":math:`D^\top R`: local blocks :math:`D_r^\top R`, ``all_gather``-ed on every rank."""
        blocks = self._gather_blocks(self._local_rmatmul(R), R.shape[1])
        out = torch.empty(self.shape[1], R.shape[1], dtype=R.dtype, device=R.device)
        for r, blk in enumerate(blocks):
            if self._counts[r]:
                out.index_copy_(0, self._positions[r].to(R.device), blk[: self._counts[r]])
        return out

    def columns(self, idx: Any) -> ShardedSpikeOperator:
        """Sub-operator of the columns ``idx`` (positions in this operator), still sharded.

        Every rank keeps its own columns among ``idx``; nothing is communicated.
        """
        idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1).cpu()
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.shape[1]):
            raise IndexError(f"column index out of range [0, {self.shape[1]})")
        owner = self._owner[idx]
        positions = [
            torch.nonzero(owner == r, as_tuple=False)[:, 0] for r in range(self.world_size)
        ]
        mine = positions[self.rank]
        local = None
        if mine.numel():
            sel = self._local_pos[idx[mine]].to(self._local.device)
            local = self._local.columns(sel)
        return ShardedSpikeOperator(
            local,
            n_rows=self.shape[0],
            positions=positions,
            dtype=self.dtype,
            device=self.device,
            group=self.group,
        )

    def dense(self) -> torch.Tensor:
        """The whole ``(n, P)`` matrix on every rank (``all_gather`` of the column blocks)."""
        n = self.shape[0]
        loc = (
            self._local.dense().to(self.dtype)
            if self._local is not None
            else torch.zeros(n, 0, dtype=self.dtype, device=self.device)
        )
        blocks = self._gather_blocks(loc.T.contiguous(), n)
        out = torch.empty(self.shape[1], n, dtype=self.dtype, device=self.device)
        for r, blk in enumerate(blocks):
            if self._counts[r]:
                out.index_copy_(0, self._positions[r].to(self.device), blk[: self._counts[r]])
        return out.T.contiguous()

    # -- pricing on the shards ------------------------------------------------------------
    def local_scores(self, U: torch.Tensor, penalty: Any) -> torch.Tensor:
        r"""This rank's dual scores :math:`\rho_j(D_r^\top U)` (``penalty.row_scores``)."""
        return penalty.row_scores(self._local_rmatmul(U))

    def dual_norm(self, U: torch.Tensor, penalty: Any) -> float:
        r""":math:`R^\circ(D^\top U) = \max_r \max_{j \in \mathcal J_r} \rho_j` by
        ``all_reduce(MAX)``, without forming :math:`D^\top U` on any rank."""
        s = self.local_scores(U, penalty)
        m = (
            s.max().reshape(1)
            if s.numel()
            else torch.full((1,), -torch.inf, dtype=U.dtype, device=U.device)
        )
        m = m.to(torch.float64)
        dist.all_reduce(m, op=dist.ReduceOp.MAX, group=self.group)
        return float(m)

    def top_columns(
        self, U: torch.Tensor, penalty: Any, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The ``k`` columns with the largest dual scores :math:`\rho_j(D^\top U)`.

        Each rank takes its local top ``k``; the candidates are ``all_gather``-ed and the global
        top ``k`` is taken (ties broken by the smaller column position, so every rank returns the
        same answer). Returns ``(positions, scores)``, both of length ``min(k, P)``, by
        decreasing score.
        """
        k = int(min(max(k, 0), self.shape[1]))
        s = self.local_scores(U, penalty).to(torch.float64)
        kk = min(k, int(s.numel()))
        vals, loc = torch.topk(s, kk) if kk else (s[:0], torch.zeros(0, dtype=torch.long))
        pos = self._positions[self.rank].to(s.device)[loc].to(torch.float64)
        cand = torch.full((k, 2), -torch.inf, dtype=torch.float64, device=s.device)
        cand[:kk, 0], cand[:kk, 1] = vals, pos
        got = [torch.empty_like(cand) for _ in range(self.world_size)]
        dist.all_gather(got, cand, group=self.group)
        allc = torch.cat(got).cpu()
        allc = allc[torch.isfinite(allc[:, 1])]
        order = sorted(range(allc.shape[0]), key=lambda i: (-float(allc[i, 0]), float(allc[i, 1])))[
            :k
        ]
        sel = allc[order]
        return sel[:, 1].to(torch.long), sel[:, 0]

    # -- helpers --------------------------------------------------------------------------
    def _local_rmatmul(self, R: torch.Tensor) -> torch.Tensor:
        if self._local is None:
            return torch.zeros(0, R.shape[1], dtype=R.dtype, device=R.device)
        return self._local.rmatmul(R)

    def _gather_blocks(self, blk: torch.Tensor, width: int) -> list[torch.Tensor]:
        """All-gather per-rank ``(count_r, width)`` blocks (padded to the largest count)."""
        m = max(self._counts)
        pad = torch.zeros(m, width, dtype=blk.dtype, device=blk.device)
        pad[: blk.shape[0]] = blk
        got = [torch.empty_like(pad) for _ in range(self.world_size)]
        dist.all_gather(got, pad, group=self.group)
        return got

    @property
    def local_columns(self) -> torch.Tensor:
        """Positions of this rank's columns in the operator's column order."""
        return self._positions[self.rank].clone()

    @property
    def counts(self) -> list[int]:
        """Number of columns held by every rank."""
        return list(self._counts)

    def __repr__(self) -> str:
        return (
            f"ShardedSpikeOperator(shape={self.shape}, rank={self.rank}/{self.world_size}, "
            f"local_columns={self._counts[self.rank]}, dtype={self.dtype}, "
            f"device={self.device})"
        )


def shard_columns(
    D: Any,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    group=None,
    blocks: Sequence[tuple[int, int]] | None = None,
    check_binary: bool = True,
) -> ShardedSpikeOperator:
    """Keep this rank's contiguous column block of a dictionary every rank holds (a collective).

    ``D`` is the whole ``(n, P)`` dictionary (tensor or array; each rank copies only its block
    to ``dtype``). ``blocks`` (default :func:`column_blocks`) gives each rank's ``[start, stop)``.
    """
    rank, world = _world(group)
    P = int(D.shape[1])
    blocks = column_blocks(P, world) if blocks is None else list(blocks)
    if len(blocks) != world:
        raise ValueError(f"blocks has {len(blocks)} entries for {world} ranks")
    a, b = blocks[rank]
    local = D[:, a:b]
    if not isinstance(local, torch.Tensor):
        import numpy as np

        local = torch.from_numpy(np.ascontiguousarray(local))
    return ShardedSpikeOperator.from_local(
        local, dtype=dtype, device=device, group=group, check_binary=check_binary
    )
