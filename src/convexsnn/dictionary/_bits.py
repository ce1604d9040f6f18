"""Bit packing of binary dictionaries along rows, and grouping of equal columns.

Bits are packed along rows (``np.packbits(axis=0)``): byte ``r`` of column ``j`` holds rows
``8r .. 8r+7``, most significant bit first.
"""

from __future__ import annotations

import numpy as np
import torch


# ---------------------------------------------------------------------- bit helpers
def _unpack_rows(packed: torch.Tensor, n_rows: int | None = None) -> torch.Tensor:
    """Unpack ``(nb, P)`` uint8 (packed along rows, MSB first) to ``(8 nb, P)`` uint8 0/1."""
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=packed.device)
    bits = (packed[:, None, :] >> shifts[None, :, None]) & 1
    bits = bits.reshape(-1, packed.shape[1])
    return bits if n_rows is None else bits[:n_rows]


def _unique_columns(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group equal columns of a row-packed matrix.

    Returns ``first`` (first column index of each distinct pattern, ascending), ``inverse``
    (group of every column, indexing ``first``) and ``nonzero`` (bool per group).
    """
    nb, P = packed.shape
    if P == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)
    if nb == 0:
        cols = np.zeros((P, 1), np.uint8)
    else:
        cols = np.ascontiguousarray(packed.T)
    v = cols.view(np.dtype((np.void, cols.shape[1]))).ravel()
    _, first, inverse = np.unique(v, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(first, kind="stable")  # groups by first occurrence
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    first = first[order].astype(np.int64)
    inverse = rank[inverse].astype(np.int64)
    nonzero = np.asarray(cols[first].any(axis=1), dtype=bool)
    return first, inverse, nonzero


def _pack(rows: np.ndarray) -> np.ndarray:
    """``np.packbits(rows, axis=0)`` (rows a multiple of 8), compiled where numba is usable."""
    from . import _kernels

    if rows.dtype == np.bool_ and _kernels.usable():
        return _kernels.pack_rows(rows)
    return np.packbits(rows, axis=0)


class _RowPacker:
    """Accumulate boolean row blocks and pack them along rows, 8 rows per byte."""

    def __init__(self, n_cols: int):
        self.n_cols = n_cols
        self.parts: list[np.ndarray] = []
        self.carry = np.zeros((0, n_cols), bool)
        self.n_rows = 0

    def add(self, rows: np.ndarray) -> None:
        self.n_rows += rows.shape[0]
        if self.carry.shape[0]:
            rows = np.concatenate([self.carry, rows], axis=0)
        full = rows.shape[0] // 8 * 8
        if full:
            self.parts.append(_pack(rows[:full]))
        self.carry = rows[full:]

    def finish(self) -> np.ndarray:
        if self.carry.shape[0]:
            self.parts.append(np.packbits(self.carry, axis=0))
            self.carry = np.zeros((0, self.n_cols), bool)
        if not self.parts:
            return np.zeros((0, self.n_cols), np.uint8)
        return np.concatenate(self.parts, axis=0)
