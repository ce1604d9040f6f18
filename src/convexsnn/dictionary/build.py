"""Building a spike dictionary: simulate the witnesses, pack readouts, drop redundant columns."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._checks import check_choice, check_positive_int, check_sequence_input
from ..network import READOUTS
from ..witnesses import Witnesses
from ._bits import _RowPacker, _unique_columns
from .simulate import STEPS, _auto_chunk, _iter_readout_rows
from .storage import STORAGES, SpikeDictionary

__all__ = ["build_dictionary"]

logger = logging.getLogger("convexsnn")


def _x_fingerprint(x: torch.Tensor) -> str:
    a = np.ascontiguousarray(x.detach().cpu().numpy())
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def build_dictionary(
    witnesses: Witnesses,
    X: Any,
    *,
    readout: str = "spike",
    readout_bias: float = 0.0,
    steps: str = "last",
    branches: Sequence[int] | None = None,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    dedupe: bool = True,
    storage: str = "bool",
    allow_empty: bool = False,
    unique_inputs: bool = True,
) -> SpikeDictionary:
    r"""Simulate ``witnesses`` on ``X`` and collect the binary last-layer readouts as columns.

    Parameters
    ----------
    witnesses : Witnesses
        Hidden weights and LIF parameters.
    X : array ``(n, T, n_inputs)``
        Training inputs (cast to the witnesses' dtype).
    readout : {"spike", "membrane"}
        :math:`s_t` or :math:`\mathbb 1[m_t - b \ge 0]` with ``b = readout_bias``.
    steps : {"last", "all"}
        Rows = samples at the last step, or (sample, step) pairs with row index ``i * T + t``.
    branches : sequence of int, optional
        Build on this block of branches only (global indices, sorted); default all. Blocks
        combine with :meth:`SpikeDictionary.concat`.
    chunk_size : int, optional
        Samples simulated at once (memory bound); default from a ~256 MiB budget.
    device : torch device, optional
        Where to simulate (results are gathered on the CPU).
    dedupe : bool
        Drop all-zero and duplicate columns (keeping the first neuron in branch-major order).
    storage : {"bool", "packed"}
        Keep a bool matrix or bits packed along rows.
    allow_empty : bool
        Return a dictionary with no columns instead of raising (useful for blocks).
    unique_inputs : bool
        Simulate every distinct input sequence once and copy its readout to the rows of its
        repeats (e.g. 64 distinct strings among 2000 FIRST-LAST-XOR samples at ``T = 6``). The
        readout of a sequence does not depend on the others, so this only saves time; the
        distinct readouts are kept in memory as ``bool`` (``n_distinct x rows_per_sample x P``).

    Returns
    -------
    SpikeDictionary

    Raises
    ------
    ValueError
        ``X`` of the wrong rank or feature size, NaN/inf in ``X``, or (with ``dedupe``) every
        column all-zero.
    """
    if not isinstance(witnesses, Witnesses):
        raise TypeError(f"witnesses must be a Witnesses, got {type(witnesses).__name__}")
    check_choice(readout, "readout", READOUTS)
    check_choice(steps, "steps", STEPS)
    check_choice(storage, "storage", STORAGES)
    readout_bias = float(readout_bias)
    if not np.isfinite(readout_bias):
        raise ValueError(f"readout_bias must be finite, got {readout_bias}")
    x = check_sequence_input(X, "X", n_features=witnesses.n_inputs, dtype=witnesses.dtype)
    if branches is None:
        br = np.arange(witnesses.n_branches, dtype=np.int64)
        wb = witnesses
    else:
        br = np.unique(np.asarray(branches, dtype=np.int64).reshape(-1))
        if br.size == 0:
            raise ValueError("branches must name at least one branch")
        wb = witnesses.select_branches(br)
    if device is not None:
        wb = wb.to(device)
    n, T = int(x.shape[0]), int(x.shape[1])
    from .._checks import check_dictionary_size  # refuse sizes that cannot fit, before simulating

    check_dictionary_size(
        n * (T if steps == "all" else 1), wb.n_witness_neurons, bits=storage == "packed"
    )
    chunk = (
        check_positive_int(chunk_size, "chunk_size")
        if chunk_size is not None
        else _auto_chunk(wb, T, readout)
    )
    n_last = witnesses.n_last
    P_all = wb.n_witness_neurons
    packer = _RowPacker(P_all)
    for block in _iter_readout_rows(
        wb, x, readout, readout_bias, steps, chunk, device, unique_inputs
    ):
        packer.add(block)
    raw = packer.finish()
    neuron_ids = (br[:, None] * n_last + np.arange(n_last)[None, :]).reshape(-1)
    first, inverse, nonzero = _unique_columns(raw)
    n_unique = int(nonzero.sum())
    if dedupe:
        keep_group = np.flatnonzero(nonzero)
        new_index = -np.ones(first.size, np.int64)
        new_index[keep_group] = np.arange(keep_group.size)
        assignment = new_index[inverse]
        kept = first[keep_group]
        packed = raw[:, kept]
    else:
        assignment = np.arange(P_all, dtype=np.int64)
        kept = np.arange(P_all)
        packed = raw
    if dedupe and kept.size == 0 and not allow_empty:
        raise ValueError(
            f"empty spike dictionary: all {P_all} witness neurons gave all-zero "
            f"{'spike' if readout == 'spike' else 'membrane'} readouts on these {n} inputs "
            f"(steps={steps!r}); the last layer is silent. Use a larger witness scale, a lower "
            f"threshold theta, more or wider branches, or readout='membrane' with a lower "
            f"readout_bias"
        )
    gid = neuron_ids[kept]
    d = SpikeDictionary(
        witnesses=witnesses,
        branches=br,
        readout=readout,
        readout_bias=readout_bias,
        steps=steps,
        n_samples=n,
        n_steps=T,
        n_inputs=int(x.shape[2]),
        packed=packed,
        provenance=np.stack([gid // n_last, gid % n_last], axis=1),
        neuron_ids=neuron_ids,
        assignment=assignment,
        n_unique=n_unique,
        deduplicated=bool(dedupe),
        storage=storage,
        x_fingerprints=[_x_fingerprint(x)],
        chunk_size=chunk_size,
    )
    logger.info(
        "built spike dictionary: %d rows x %d columns from %d witness neurons "
        "(%d zero, %d duplicate), density %.3f",
        d.n_rows,
        d.n_columns,
        P_all,
        d.n_zero,
        d.n_duplicates,
        d.density,
    )
    return d
