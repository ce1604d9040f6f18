"""A spike dictionary as a linear operator (dense or bit-packed, products by row blocks)."""

from __future__ import annotations

from typing import Any

import torch

from ._bits import _unpack_rows

__all__ = ["SpikeOperator"]

_FLOAT_DTYPES = (torch.float64, torch.float32)


# ---------------------------------------------------------------------- operator view
class SpikeOperator:
    r"""A spike dictionary :math:`D \in \{0,1\}^{n\times P}` as a linear operator.

    Implements the operator protocol of :mod:`convexsnn.convex.linear_operator`:
    ``shape``, ``dtype``, ``device``, ``matmul(W)`` :math:`= DW`, ``rmatmul(R)``
    :math:`= D^\top R`, ``columns(idx)``, ``dense()``; plus ``D @ W`` and ``D.T @ R``.

    With ``packed`` storage only the bits are held (``n P / 8`` bytes) and every product unpacks
    ``chunk_rows`` rows at a time, so no ``(n, P)`` float matrix is ever formed; with dense
    storage the ``(n, P)`` matrix is held in ``dtype``.
    """

    def __init__(
        self,
        *,
        dense: torch.Tensor | None = None,
        packed: torch.Tensor | None = None,
        n_rows: int | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        chunk_rows: int = 8192,
    ):
        if dtype not in _FLOAT_DTYPES:
            raise TypeError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
        if (dense is None) == (packed is None):
            raise ValueError("give exactly one of dense= or packed=")
        self.dtype = dtype
        if dense is not None:
            self.device = torch.device(device) if device is not None else dense.device
            self._dense = dense.to(device=self.device, dtype=dtype).contiguous()
            self._packed = None
            self.shape = (int(dense.shape[0]), int(dense.shape[1]))
        else:
            self.device = torch.device(device) if device is not None else packed.device
            self._packed = packed.to(device=self.device, dtype=torch.uint8).contiguous()
            self._dense = None
            if n_rows is None:
                raise ValueError("n_rows is required with packed=")
            self.shape = (int(n_rows), int(packed.shape[1]))
        self.chunk_rows = max(8, int(chunk_rows) // 8 * 8)
        self.n_products = 0

    def _blocks(self):
        n = self.shape[0]
        step_b = self.chunk_rows // 8
        for b0 in range(0, self._packed.shape[0], step_b):
            r0 = b0 * 8
            r1 = min(n, r0 + self.chunk_rows)
            yield r0, r1, _unpack_rows(self._packed[b0 : b0 + step_b], r1 - r0)

    def _check(self, A: torch.Tensor, rows: int, name: str) -> tuple[torch.Tensor, bool]:
        vec = A.ndim == 1
        if vec:
            A = A[:, None]
        if A.ndim != 2 or A.shape[0] != rows:
            raise ValueError(f"{name} must have {rows} rows, got shape {tuple(A.shape)}")
        return A, vec

    def matmul(self, W: torch.Tensor) -> torch.Tensor:
        """:math:`D W`: ``(P, C)`` (or ``(P,)``) to ``(n, C)`` (or ``(n,)``), in ``W``'s dtype."""
        W, vec = self._check(W, self.shape[1], "W")
        self.n_products += 1
        if self._dense is not None:
            out = self._dense.to(W.dtype) @ W
        else:
            out = torch.empty(self.shape[0], W.shape[1], dtype=W.dtype, device=W.device)
            for r0, r1, blk in self._blocks():
                torch.matmul(blk.to(W.dtype), W, out=out[r0:r1])
        return out[:, 0] if vec else out

    def rmatmul(self, R: torch.Tensor) -> torch.Tensor:
        """:math:`D^\\top R`: ``(n, C)`` (or ``(n,)``) to ``(P, C)`` (or ``(P,)``)."""
        R, vec = self._check(R, self.shape[0], "R")
        self.n_products += 1
        if self._dense is not None:
            out = self._dense.to(R.dtype).T @ R
        else:
            out = torch.zeros(self.shape[1], R.shape[1], dtype=R.dtype, device=R.device)
            for r0, r1, blk in self._blocks():
                out.addmm_(blk.to(R.dtype).T, R[r0:r1])
        return out[:, 0] if vec else out

    def columns(self, idx: Any) -> SpikeOperator:
        """Operator restricted to the columns ``idx`` (a copy, same storage kind)."""
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.device).reshape(-1)
        if self._dense is not None:
            return SpikeOperator(
                dense=self._dense.index_select(1, idx),
                dtype=self.dtype,
                device=self.device,
                chunk_rows=self.chunk_rows,
            )
        return SpikeOperator(
            packed=self._packed.index_select(1, idx),
            n_rows=self.shape[0],
            dtype=self.dtype,
            device=self.device,
            chunk_rows=self.chunk_rows,
        )

    def dense(self) -> torch.Tensor:
        """The ``(n, P)`` 0/1 matrix in :attr:`dtype`."""
        if self._dense is not None:
            return self._dense
        return _unpack_rows(self._packed, self.shape[0]).to(self.dtype)

    def __matmul__(self, W: torch.Tensor) -> torch.Tensor:
        return self.matmul(W)

    @property
    def T(self) -> _TransposedOperator:
        """Transposed view: ``op.T @ R`` is ``op.rmatmul(R)``."""
        return _TransposedOperator(self)

    def __repr__(self) -> str:
        kind = "dense" if self._dense is not None else f"packed, chunk_rows={self.chunk_rows}"
        return (
            f"SpikeOperator(shape={self.shape}, dtype={self.dtype}, device={self.device}, {kind})"
        )


class _TransposedOperator:
    def __init__(self, op: SpikeOperator):
        self._op = op
        self.shape = (op.shape[1], op.shape[0])

    def __matmul__(self, R: torch.Tensor) -> torch.Tensor:
        return self._op.rmatmul(R)

    @property
    def T(self) -> SpikeOperator:
        return self._op
