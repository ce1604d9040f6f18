r"""Dictionary building as Ray tasks over blocks of witness branches.

Building is a pure function of (witness block, inputs) (``docs/method.md``, spike dictionary):
each task simulates one block of branches with
:func:`~convexsnn.dictionary.build_dictionary` (``branches=block``), the inputs and witnesses are
shared through Ray's object store (put once, read by every task), and the blocks are combined by
:meth:`~convexsnn.dictionary.SpikeDictionary.concat`, which drops zero and duplicate columns across
blocks: the result equals the dictionary built at once.

Ray is an optional dependency (``pip install convexsnn[ray]``).
"""

from __future__ import annotations

import logging
from typing import Any

from ..dictionary import SpikeDictionary, build_dictionary
from .operator import column_blocks

logger = logging.getLogger("convexsnn")

__all__ = ["build_dictionary_ray", "import_ray"]


def import_ray():
    """Import ``ray`` or raise ``ImportError`` naming the extra to install."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "this needs the optional dependency ray: pip install 'convexsnn[ray]'"
        ) from exc
    return ray


def _build_block(witnesses, X, branches: list[int], kwargs: dict) -> SpikeDictionary:
    import torch

    torch.set_num_threads(1)
    return build_dictionary(witnesses, X, branches=branches, allow_empty=True, **kwargs)


def build_dictionary_ray(
    witnesses: Any, X: Any, *, n_blocks: int, **kwargs: Any
) -> SpikeDictionary:
    """:func:`~convexsnn.dictionary.build_dictionary` with one Ray task per block of branches.

    Parameters
    ----------
    witnesses : Witnesses
    X : array ``(n, T, n_inputs)``
    n_blocks : int
        Number of tasks (contiguous, near-equal blocks of branches; at most the branch count).
    **kwargs
        Passed to ``build_dictionary`` (``readout``, ``steps``, ``storage``, ...; not
        ``branches``, ``allow_empty`` or ``dedupe``, which the blocks fix).

    Uses the running Ray instance (``ray.init`` first; a local one is started by ``ray`` when
    none is running). Returns the same dictionary as ``build_dictionary(witnesses, X, **kwargs)``.
    """
    ray = import_ray()
    for k in ("branches", "allow_empty", "dedupe"):
        if k in kwargs:
            raise TypeError(f"build_dictionary_ray fixes {k!r}; do not pass it")
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 1:
        raise ValueError(f"n_blocks must be a positive integer, got {n_blocks!r}")
    K = int(witnesses.n_branches)
    blocks = [list(range(a, b)) for a, b in column_blocks(K, min(n_blocks, K))]
    task = ray.remote(num_cpus=1)(_build_block)
    w_ref, x_ref = ray.put(witnesses), ray.put(X)
    parts = ray.get([task.remote(w_ref, x_ref, b, kwargs) for b in blocks])
    logger.debug("built %d witness blocks on Ray", len(parts))
    return SpikeDictionary.concat(parts, axis="columns")
