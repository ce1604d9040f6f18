r"""Sharded certified readout solves on ``torch.distributed`` (gloo on CPU, nccl on GPU).

The dictionary :math:`D` is split by columns (witness blocks) across the ranks of a process
group; everything else is replicated, so :func:`~convexsnn.convex.solver.solve_readout` runs
unchanged on every rank with :math:`DW` a sum of local products (``all_reduce``) and
:math:`D^\top R` the gathered local blocks. See :mod:`convexsnn.distributed.operator` for the
layout and ``docs/cluster.md`` for the ``torchrun`` and Ray recipes.
"""

from ._group import free_port, init_from_env, run_local
from .operator import ShardedSpikeOperator, column_blocks, shard_columns
from .solve import check_replicated, solve_readout_sharded

__all__ = [
    "ShardedSpikeOperator",
    "check_replicated",
    "column_blocks",
    "free_port",
    "init_from_env",
    "run_local",
    "shard_columns",
    "solve_readout_sharded",
]
