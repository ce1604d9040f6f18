r"""The dictionary as a linear operator.

The convex solvers touch the spike dictionary :math:`D \in \{0,1\}^{n \times P}` only through the
two products

.. math::

    W \mapsto D W \quad (P \times C \to n \times C), \qquad
    R \mapsto D^\top R \quad (n \times C \to P \times C),

so any object implementing the *operator protocol* below can stand in for an in-memory matrix
(a row-sharded dictionary reduced with ``torch.distributed``, a bit-packed one, ...).

Operator protocol
-----------------
Required:

``shape``
    ``(n, P)``: rows (training rows) and columns (dictionary atoms).
``dtype``, ``device``
    torch dtype (``float64`` or ``float32``) and device of the products.
``matmul(W)``
    :math:`D W` for a ``(P, C)`` tensor, returns ``(n, C)``.
``rmatmul(R)``
    :math:`D^\top R` for an ``(n, C)`` tensor, returns ``(P, C)``.

Optional (enable faster paths when present):

``columns(idx)``
    a new operator restricted to the columns ``idx`` (a 1-D int64 tensor). Needed for working
    sets and polishing; without it every product uses the full dictionary.
``dense()``
    the ``(n, P)`` matrix as a tensor of ``dtype``. Used on column blocks (working sets) by the
    Gram-form squared solver, the interior point and polishing, and on the whole matrix (only
    when ``n * P <= 6e7``) to merge duplicate rows. Without it the solvers use products only
    (FISTA, PDHG).

Entries are assumed to be 0/1 (the solvers use :math:`D_{ij}^2 = D_{ij}`, e.g. weighted column
norms are computed as :math:`D^\top a`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["DictionaryOperator", "as_operator", "is_operator"]

_FLOAT_DTYPES = (torch.float64, torch.float32)


def is_operator(obj: Any) -> bool:
    """True when ``obj`` follows the operator protocol (``matmul``, ``rmatmul``, ``shape``)."""
    return (
        not isinstance(obj, (torch.Tensor, np.ndarray))
        and callable(getattr(obj, "matmul", None))
        and callable(getattr(obj, "rmatmul", None))
        and hasattr(obj, "shape")
    )


def _to_tensor(D: Any, name: str) -> torch.Tensor:
    if isinstance(D, torch.Tensor):
        t = D
    elif isinstance(D, np.ndarray):
        if D.dtype == object or not (np.issubdtype(D.dtype, np.number) or D.dtype == bool):
            raise TypeError(f"{name} must be a numeric or boolean array, got dtype {D.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(D))
    else:
        raise TypeError(
            f"{name} must be a torch.Tensor, a numpy array or an operator with matmul/rmatmul/"
            f"shape, got {type(D).__name__}"
        )
    if t.is_complex():
        raise TypeError(f"{name} must be real (0/1 entries), got complex dtype {t.dtype}")
    if t.layout != torch.strided:
        raise TypeError(f"{name} must be a dense tensor, got layout {t.layout}")
    return t


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable`` of ``/proc/meminfo``), or
    ``None`` where it cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_fits(n_bytes: int, what: str) -> None:
    """Raise ``MemoryError`` naming the size when ``n_bytes`` exceeds the available memory (CPU),
    before any work; silent where the available memory is unknown."""
    avail = available_memory()
    if avail is not None and n_bytes > avail:
        raise MemoryError(
            f"{what} needs {n_bytes / 2**30:.2f} GiB but only "
            f"{avail / 2**30:.2f} GiB of memory is available"
        )


def _check_binary(t: torch.Tensor, name: str, block_rows: int = 65536) -> None:
    """Raise ``ValueError`` unless every entry of ``t`` is 0 or 1 (checked in row blocks)."""
    if t.dtype == torch.bool:
        return
    n = t.shape[0]
    for r0 in range(0, n, block_rows):
        blk = t[r0 : r0 + block_rows]
        ok = (blk == 0) | (blk == 1)
        if not bool(ok.all()):
            bad = blk[~ok]
            n_nan = int(torch.isnan(bad).sum()) if bad.is_floating_point() else 0
            example = bad[0].item()
            raise ValueError(
                f"{name} must be a binary dictionary with entries 0/1; found {int((~ok).sum())}+ "
                f"other values (e.g. {example!r}; {n_nan} NaN in the first offending block)"
            )


class DictionaryOperator:
    r"""Dense binary dictionary :math:`D` (``n x P``) wrapped as a linear operator.

    Parameters
    ----------
    D : Tensor or ndarray, shape (n, P)
        Binary dictionary, ``bool`` or numeric with entries in {0, 1}.
    dtype : torch.dtype, default ``torch.float64``
        Dtype of the products (``float64`` for certification, or ``float32``).
    device : torch.device or str, optional
        Device of the products (default: the device of ``D`` for tensors, CPU for arrays).
    check_binary : bool, default True
        Verify that every entry is 0 or 1 (``ValueError`` otherwise).
    chunk_rows : int, optional
        Store ``D`` as ``uint8`` (1 byte per entry instead of 4/8) and convert blocks of
        ``chunk_rows`` rows to ``dtype`` inside each product. Slower per product, for dictionaries
        that do not fit in memory as floats.
    name : str
        Argument name used in error messages.

    Notes
    -----
    Products are plain BLAS ``gemm`` calls on the stored (row-major) matrix: :math:`DW` is
    ``D @ W`` and :math:`D^\top R` is computed as ``(R.T @ D).T``.
    """

    def __init__(
        self,
        D: Any,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        check_binary: bool = True,
        chunk_rows: int | None = None,
        name: str = "D",
    ) -> None:
        if dtype not in _FLOAT_DTYPES:
            raise TypeError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
        t = _to_tensor(D, name)
        if t.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_rows, n_columns), got shape {tuple(t.shape)}")
        n, P = t.shape
        if P == 0:
            raise ValueError(
                f"{name} has no columns (P == 0): all dictionary columns were dropped (all-zero or "
                f"duplicate); nothing to solve"
            )
        if n == 0:
            raise ValueError(f"{name} has no rows (n == 0)")
        if check_binary:
            _check_binary(t, name)
        if device is None:
            device = t.device
        self.device = torch.device(device)
        self.dtype = dtype
        self.shape = (int(n), int(P))
        self.chunk_rows = None if chunk_rows is None else max(1, int(chunk_rows))
        if self.chunk_rows is None:
            if self.device.type == "cpu" and (t.dtype != dtype or t.device != self.device):
                check_fits(
                    n * P * torch.empty(0, dtype=dtype).element_size(),
                    f"the dense {n} x {P} {str(dtype).replace('torch.', '')} copy of {name} "
                    f"(pass chunk_rows=..., float32, or a packed SpikeDictionary)",
                )
            self._D = t.to(device=self.device, dtype=dtype).contiguous()
        else:
            self._D = t.to(device=self.device, dtype=torch.uint8).contiguous()

    # -- protocol ---------------------------------------------------------------------------
    def matmul(self, W: torch.Tensor) -> torch.Tensor:
        """Return :math:`D W` (``(n, C)``) for ``W`` of shape ``(P, C)``."""
        if self.chunk_rows is None:
            return self._D @ W
        out = torch.empty(self.shape[0], W.shape[1], dtype=W.dtype, device=W.device)
        for r0 in range(0, self.shape[0], self.chunk_rows):
            blk = self._D[r0 : r0 + self.chunk_rows].to(W.dtype)
            torch.matmul(blk, W, out=out[r0 : r0 + blk.shape[0]])
        return out

    def rmatmul(self, R: torch.Tensor) -> torch.Tensor:
        """Return :math:`D^\\top R` (``(P, C)``) for ``R`` of shape ``(n, C)``."""
        # (R^T D)^T reads the row-major D in its storage order: about twice as fast as D.T @ R
        if self.chunk_rows is None:
            return (R.T @ self._D).T
        out = torch.zeros(R.shape[1], self.shape[1], dtype=R.dtype, device=R.device)
        for r0 in range(0, self.shape[0], self.chunk_rows):
            blk = self._D[r0 : r0 + self.chunk_rows].to(R.dtype)
            out.addmm_(R[r0 : r0 + blk.shape[0]].T, blk)
        return out.T

    def row_blocks(self, dtype: torch.dtype, chunk_rows: int):
        """Yield ``(r0, r1, block)``: the rows ``r0:r1`` as a dense tensor of ``dtype``,
        ``chunk_rows`` rows at a time."""
        step = max(1, int(chunk_rows))
        for r0 in range(0, self.shape[0], step):
            r1 = min(self.shape[0], r0 + step)
            yield r0, r1, self._D[r0:r1].to(dtype)

    def columns(self, idx: torch.Tensor) -> DictionaryOperator:
        """Operator restricted to the columns ``idx`` (a copy)."""
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.device)
        sub = DictionaryOperator.__new__(DictionaryOperator)
        sub.device, sub.dtype, sub.chunk_rows = self.device, self.dtype, self.chunk_rows
        sub._D = self._D.index_select(1, idx).contiguous()
        sub.shape = (self.shape[0], int(idx.numel()))
        return sub

    def dense(self) -> torch.Tensor:
        """The dictionary as an ``(n, P)`` tensor of :attr:`dtype`."""
        return self._D.to(self.dtype)

    def __repr__(self) -> str:
        store = "dense" if self.chunk_rows is None else f"uint8, chunk_rows={self.chunk_rows}"
        return (
            f"DictionaryOperator(shape={self.shape}, dtype={self.dtype}, device={self.device}, "
            f"{store})"
        )


def as_operator(
    D: Any,
    *,
    dtype: torch.dtype | None = torch.float64,
    device: torch.device | str | None = None,
    name: str = "D",
    check_binary: bool = True,
) -> Any:
    """Wrap ``D`` (tensor, array or operator) as an operator of the requested dtype/device.

    Arrays and tensors become a :class:`DictionaryOperator` (validated: 2-D, 0/1 entries, at least
    one column). A :class:`~convexsnn.dictionary.SpikeDictionary` (any object with an
    ``operator(dtype, device)`` view and ``n_columns``) gives its operator view: on the CPU the
    packed bits with lookup-table products, whatever its storage (no ``(n, P)`` float copy). Objects following the operator protocol are returned unchanged; a ``dtype`` or
    ``device`` that contradicts theirs raises ``TypeError`` / ``ValueError``.
    """
    if not is_operator(D) and callable(getattr(D, "operator", None)) and hasattr(D, "n_columns"):
        # a SpikeDictionary (or any object offering an operator view): use it as it is stored
        D = D.operator(torch.float64 if dtype is None else dtype, device)
    if is_operator(D):
        shape = tuple(D.shape)
        if len(shape) != 2:
            raise ValueError(f"{name} must be 2-D (n_rows, n_columns), got shape {shape}")
        if shape[1] == 0:
            raise ValueError(
                f"{name} has no columns (P == 0): all dictionary columns were dropped (all-zero or "
                f"duplicate); nothing to solve"
            )
        if shape[0] == 0:
            raise ValueError(f"{name} has no rows (n == 0)")
        op_dtype = getattr(D, "dtype", torch.float64)
        if op_dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{name}.dtype must be torch.float64 or torch.float32, got {op_dtype}")
        if dtype is not None and dtype != op_dtype:
            raise TypeError(
                f"dtype={dtype} differs from the operator's dtype {op_dtype}; "
                f"build the operator in the dtype you want or pass dtype={op_dtype}"
            )
        op_dev = torch.device(getattr(D, "device", "cpu"))
        want = None if device is None else torch.device(device)
        if want is not None and (
            want.type != op_dev.type
            or (want.index is not None and op_dev.index is not None and want.index != op_dev.index)
        ):
            raise ValueError(f"device={device} differs from the operator's device {op_dev}")
        return D
    return DictionaryOperator(
        D,
        dtype=torch.float64 if dtype is None else dtype,
        device=device,
        name=name,
        check_binary=check_binary,
    )
