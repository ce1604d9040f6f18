r"""A spike dictionary as a linear operator: bit-packed (lookup-table products) or dense.

With packed bits on the CPU the products use the byte lookup tables of
:mod:`convexsnn.dictionary._kernels` (no float copy of the dictionary, ``O(C)`` work per stored
byte instead of ``8 C`` multiply-adds); on an accelerator the bits are unpacked a block of
``chunk_rows`` rows at a time and multiplied there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._checks import check_memory, format_bytes
from ._bits import _unpack_rows
from ._kernels import packed_matmul, packed_rmatmul, usable

__all__ = ["SpikeOperator"]

_FLOAT_DTYPES = (torch.float64, torch.float32)


# ---------------------------------------------------------------------- operator view
class SpikeOperator:
    r"""A spike dictionary :math:`D \in \{0,1\}^{n\times P}` as a linear operator.

    Implements the operator protocol of :mod:`convexsnn.convex.linear_operator`:
    ``shape``, ``dtype``, ``device``, ``matmul(W)`` :math:`= DW`, ``rmatmul(R)``
    :math:`= D^\top R`, ``columns(idx)``, ``dense()``; plus ``D @ W`` and ``D.T @ R``.

    With ``packed`` storage only the bits are held (``n P / 8`` bytes) and no ``(n, P)`` float
    matrix is ever formed by a product: on the CPU the products run on the bytes through
    256-entry lookup tables (:mod:`convexsnn.dictionary._kernels`, accumulation in the dtype of
    the argument, float64 for certificates); on an accelerator ``chunk_rows`` rows are unpacked
    at a time. :meth:`dense` materialises the matrix (used by the solvers on working-set blocks
    only) after checking that it fits. With dense storage the ``(n, P)`` matrix is held in
    ``dtype``.
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
        self.dtype = dtype
        self._dense: torch.Tensor | None = None
        self._packed: torch.Tensor | None = None
        if dense is not None and packed is None:
            self.device = torch.device(device) if device is not None else dense.device
            self._dense = dense.to(device=self.device, dtype=dtype).contiguous()
            self.shape = (int(dense.shape[0]), int(dense.shape[1]))
        elif packed is not None and dense is None:
            if n_rows is None:
                raise ValueError("n_rows is required with packed=")
            self.device = torch.device(device) if device is not None else packed.device
            self._packed = packed.to(device=self.device, dtype=torch.uint8).contiguous()
            self.shape = (int(n_rows), int(packed.shape[1]))
        else:
            raise ValueError("give exactly one of dense= or packed=")
        self.chunk_rows = max(8, int(chunk_rows) // 8 * 8)
        self.n_products = 0

    @property
    def packed(self) -> bool:
        """Whether the operator holds packed bits (else a dense float matrix)."""
        return self._packed is not None

    @property
    def nbytes(self) -> int:
        """Bytes held by the operator."""
        t = self._packed if self._packed is not None else self._dense
        assert t is not None
        return int(t.numel() * t.element_size())

    def _lut(self) -> np.ndarray | None:
        """The packed bits as a numpy array when the lookup-table kernels apply (CPU)."""
        if self._packed is None or self.device.type != "cpu" or not usable():
            return None
        return self._packed.numpy()

    def _blocks(self):
        assert self._packed is not None
        n = self.shape[0]
        step_b = self.chunk_rows // 8
        for b0 in range(0, self._packed.shape[0], step_b):
            r0 = b0 * 8
            r1 = min(n, r0 + self.chunk_rows)
            yield r0, r1, _unpack_rows(self._packed[b0 : b0 + step_b], r1 - r0)

    def row_blocks(self, dtype: torch.dtype, chunk_rows: int):
        """Yield ``(r0, r1, block)``: the rows ``r0:r1`` as a dense ``(r1 - r0, P)`` 0/1 tensor of
        ``dtype``, ``chunk_rows`` rows at a time (a multiple of 8; no ``(n, P)`` copy)."""
        n = self.shape[0]
        step = max(8, int(chunk_rows) // 8 * 8)
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            if self._dense is not None:
                yield r0, r1, self._dense[r0:r1].to(dtype)
            elif self.device.type == "cpu":
                assert self._packed is not None
                bits = np.unpackbits(self._packed[r0 // 8 : (r1 + 7) // 8].numpy(), axis=0)
                yield r0, r1, torch.from_numpy(bits[: r1 - r0]).to(dtype)
            else:
                assert self._packed is not None
                yield r0, r1, _unpack_rows(self._packed[r0 // 8 : (r1 + 7) // 8], r1 - r0).to(dtype)

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
        bits = self._lut()
        if self._dense is not None:
            out = self._dense.to(W.dtype) @ W
        elif bits is not None and W.device.type == "cpu" and W.dtype in _FLOAT_DTYPES:
            out = torch.from_numpy(packed_matmul(bits, W.detach().numpy(), self.shape[0]))
        else:
            out = torch.empty(self.shape[0], W.shape[1], dtype=W.dtype, device=W.device)
            for r0, r1, blk in self._blocks():
                torch.matmul(blk.to(W.dtype), W, out=out[r0:r1])
        return out[:, 0] if vec else out

    def rmatmul(self, R: torch.Tensor) -> torch.Tensor:
        """:math:`D^\\top R`: ``(n, C)`` (or ``(n,)``) to ``(P, C)`` (or ``(P,)``)."""
        R, vec = self._check(R, self.shape[0], "R")
        self.n_products += 1
        bits = self._lut()
        if self._dense is not None:
            out = self._dense.to(R.dtype).T @ R
        elif bits is not None and R.device.type == "cpu" and R.dtype in _FLOAT_DTYPES:
            out = torch.from_numpy(packed_rmatmul(bits, R.detach().numpy()))
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
        assert self._packed is not None
        return SpikeOperator(
            packed=self._packed.index_select(1, idx),
            n_rows=self.shape[0],
            dtype=self.dtype,
            device=self.device,
            chunk_rows=self.chunk_rows,
        )

    def dense(self) -> torch.Tensor:
        """The ``(n, P)`` 0/1 matrix in :attr:`dtype`.

        For packed bits this materialises ``n P`` floats: the solvers call it on working-set
        blocks (``columns(S).dense()``); a block that cannot fit in memory is refused up front
        with its size (``ValueError``).
        """
        if self._dense is not None:
            return self._dense
        assert self._packed is not None
        n, P = self.shape
        size = n * P * torch.empty(0, dtype=self.dtype).element_size()
        check_memory(
            size,
            f"the dense {n} x {P} {str(self.dtype).replace('torch.', '')} block of the packed "
            f"dictionary ({format_bytes(size)}; restrict it to fewer columns)",
        )
        if self.device.type == "cpu":
            bits = np.unpackbits(self._packed.numpy(), axis=0, count=n)
            return torch.from_numpy(bits).to(self.dtype)
        return _unpack_rows(self._packed, n).to(self.dtype)

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
