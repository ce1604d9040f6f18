r"""Products with a bit-packed binary matrix, by byte lookup tables (numba, CPU).

The matrix :math:`D \in \{0,1\}^{n\times P}` is stored packed along rows: byte ``r`` of column
``j`` holds rows ``8r .. 8r+7``, most significant bit first (``np.packbits(D, axis=0)``). Write
:math:`b_{rj}` for that byte and :math:`\mathrm{bit}_k(b)` for its bit of row ``8r + k``.

:math:`D^\top R` (``(P, C)``): for every byte row ``r`` a table of the 256 partial sums

.. math::

    L_r[b] = \sum_{k=0}^{7} \mathrm{bit}_k(b)\, R_{8r+k,:}

(built with one addition per entry, :math:`L_r[b] = L_r[b \wedge (b-1)] + R_{\text{lowest set
bit of } b}`), then :math:`(D^\top R)_{j,:} = \sum_r L_r[b_{rj}]`: one ``C``-vector addition per
byte instead of eight multiply-adds.

:math:`D W` (``(n, C)``): for every byte row ``r``, the columns are first summed by byte value,
:math:`T_r[b] = \sum_{j : b_{rj} = b} W_{j,:}` (one addition per byte), and then
:math:`(DW)_{8r+k,:} = \sum_{b : \mathrm{bit}_k(b) = 1} T_r[b]` (:math:`8 \cdot 128` additions
per byte row, independent of ``P``). Zero rows of ``W`` are skipped; with few non-zero rows the
set bits are added directly.

Both kernels work on blocks of ``_RB`` byte rows so that the tables stay in cache, accumulate in
the dtype of ``W`` / ``R`` (float64 for certificates), and give the dense products up to the
order of the floating-point additions.
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_blocked, log_fallback

try:  # pragma: no branch
    import numba

    HAVE_NUMBA = True
except (ImportError, OSError):  # pragma: no cover - numba is a core dependency; OSError: its
    # LLVM library could not be mapped (an address-space limit)
    numba = None  # type: ignore[assignment]
    HAVE_NUMBA = False

__all__ = ["HAVE_NUMBA", "last_spikes", "pack_rows", "packed_matmul", "packed_rmatmul", "usable"]

_USABLE: bool | None = None


def usable() -> bool:
    """Whether the compiled products may run in this process (decided once, on first use: numba
    installed and enough address space for its compiler, :func:`convexsnn._jit.jit_blocked`)."""
    global _USABLE
    if _USABLE is None:
        reason = None if HAVE_NUMBA else "numba is not installed"
        reason = reason or jit_blocked()
        if reason is not None:
            log_fallback("packed products unpack rows and multiply", reason)
        _USABLE = reason is None
    return _USABLE


_RB = 16  # byte rows per block (tables: _RB x 256 x C values)
_LUT_MIN_COLS = 256  # below this many (non-zero) columns, add the set bits directly


def _jit(f):
    if numba is None:  # pragma: no cover
        return f
    return numba.njit(cache=True, nogil=True, boundscheck=False)(f)


@_jit
def _rmatmul_lut(packed, R, out):  # pragma: no cover - compiled
    nb, P = packed.shape
    n, C = R.shape
    lut = np.zeros((_RB, 256, C), R.dtype)
    for rb0 in range(0, nb, _RB):
        m = min(_RB, nb - rb0)
        for r in range(m):
            for c in range(C):
                lut[r, 0, c] = 0.0
            for b in range(1, 256):
                low = b & (-b)
                prev = b ^ low
                k = 0
                while (128 >> k) != low:
                    k += 1
                row = 8 * (rb0 + r) + k
                if row < n:
                    for c in range(C):
                        lut[r, b, c] = lut[r, prev, c] + R[row, c]
                else:
                    for c in range(C):
                        lut[r, b, c] = lut[r, prev, c]
        for j in range(P):
            for r in range(m):
                b = np.int64(packed[rb0 + r, j])
                if b != 0:
                    for c in range(C):
                        out[j, c] += lut[r, b, c]


@_jit
def _rmatmul_bits(packed, R, out):  # pragma: no cover - compiled
    nb, P = packed.shape
    n, C = R.shape
    for j in range(P):
        for rb in range(nb):
            b = np.int64(packed[rb, j])
            k = 0
            while b != 0:
                if b & 128:
                    row = 8 * rb + k
                    if row < n:
                        for c in range(C):
                            out[j, c] += R[row, c]
                b = (b << 1) & 255
                k += 1


@_jit
def _matmul_lut(packed, W, cols, out):  # pragma: no cover - compiled
    nb, P = packed.shape
    n, C = out.shape
    T = np.zeros((_RB, 256, C), W.dtype)
    for rb0 in range(0, nb, _RB):
        m = min(_RB, nb - rb0)
        T[:m] = 0.0
        for jj in range(cols.shape[0]):
            j = cols[jj]
            for r in range(m):
                b = np.int64(packed[rb0 + r, j])
                if b != 0:
                    for c in range(C):
                        T[r, b, c] += W[j, c]
        for r in range(m):
            for k in range(8):
                row = 8 * (rb0 + r) + k
                if row >= n:
                    break
                mask = 128 >> k
                for c in range(C):
                    out[row, c] = 0.0
                for b in range(1, 256):
                    if b & mask:
                        for c in range(C):
                            out[row, c] += T[r, b, c]


@_jit
def _matmul_bits(packed, W, cols, out):  # pragma: no cover - compiled
    nb, P = packed.shape
    n, C = out.shape
    out[:] = 0.0
    for rb in range(nb):
        for jj in range(cols.shape[0]):
            j = cols[jj]
            b = np.int64(packed[rb, j])
            k = 0
            while b != 0:
                if b & 128:
                    row = 8 * rb + k
                    if row < n:
                        for c in range(C):
                            out[row, c] += W[j, c]
                b = (b << 1) & 255
                k += 1


def packed_rmatmul(packed: np.ndarray, R: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    r""":math:`D^\top R` for row-packed ``packed`` ``(nb, P)`` and ``R`` ``(n, C)``, ``n <= 8 nb``;
    accumulated into ``out`` ``(P, C)`` when given (``out += D^T R``)."""
    P = packed.shape[1]
    R = np.ascontiguousarray(R)
    if out is None:
        out = np.zeros((P, R.shape[1]), R.dtype)
    if P >= _LUT_MIN_COLS:
        _rmatmul_lut(packed, R, out)
    else:
        _rmatmul_bits(packed, R, out)
    return out


def packed_matmul(
    packed: np.ndarray, W: np.ndarray, n: int, out: np.ndarray | None = None
) -> np.ndarray:
    r""":math:`D W` ``(n, C)`` for row-packed ``packed`` ``(nb, P)`` and ``W`` ``(P, C)`` (zero rows
    of ``W`` skipped); written into ``out`` when given."""
    W = np.ascontiguousarray(W)
    if out is None:
        out = np.empty((n, W.shape[1]), W.dtype)
    cols = np.flatnonzero(np.any(W != 0, axis=1)).astype(np.int64)
    if cols.size >= _LUT_MIN_COLS:
        _matmul_lut(packed, W, cols, out)
    else:
        _matmul_bits(packed, W, cols, out)
    return out


@_jit
def _scan_last(cur, leak, theta, subtract, out):  # pragma: no cover - compiled
    T, B, P = cur.shape
    m = np.zeros(P, cur.dtype)
    for i in range(B):
        m[:] = 0.0
        for t in range(T - 1):
            for j in range(P):
                p = leak * m[j]
                u = p + cur[t, i, j]
                if u >= theta:
                    m[j] = u - theta if subtract else u * 0.0
                else:
                    m[j] = u
        for j in range(P):
            p = leak * m[j]
            out[i, j] = (p + cur[T - 1, i, j]) >= theta


def last_spikes(cur: np.ndarray, leak: float, theta: float, subtract: bool) -> np.ndarray:
    r"""Spikes at the last step of a LIF scan over a time-major current ``cur`` ``(T, B, P)``,
    as ``(B, P)`` bool, without keeping the spikes (or membranes) of the other steps.

    The arithmetic of :func:`convexsnn.lif.lif_scan` in the dtype of ``cur``, in the same order
    (:math:`u_t = \mathrm{fl}(\mathrm{fl}(\text{leak}\, m_{t-1}) + I_t)`,
    :math:`s_t = [u_t \ge \theta]`, :math:`m_t = u_t - \theta s_t` or :math:`u_t (1 - s_t)`,
    :math:`m_0 = 0`): the spikes are bit-identical to the scan's.
    """
    cur = np.ascontiguousarray(cur)
    out = np.empty(cur.shape[1:], dtype=np.bool_)
    dt = cur.dtype.type
    _scan_last(cur, dt(leak), dt(theta), bool(subtract), out)
    return out


@_jit
def _pack_rows(bits, out):  # pragma: no cover - compiled
    r, P = bits.shape
    for rb in range(r // 8):
        for j in range(P):
            out[rb, j] = 0
        for k in range(8):
            sh = 7 - k
            for j in range(P):
                out[rb, j] |= np.uint8(bits[8 * rb + k, j]) << sh


def pack_rows(bits: np.ndarray) -> np.ndarray:
    """``np.packbits(bits, axis=0)`` for a bool ``(r, P)`` block with ``r`` a multiple of 8
    (byte ``b`` of column ``j`` holds rows ``8b .. 8b+7``, most significant bit first), by a
    compiled loop over whole rows (``np.packbits`` along axis 0 was 7% of a 5.5k x 16k build)."""
    if bits.shape[0] % 8 or bits.dtype != np.bool_:
        raise ValueError("pack_rows needs a bool block whose row count is a multiple of 8")
    out = np.empty((bits.shape[0] // 8, bits.shape[1]), np.uint8)
    _pack_rows(np.ascontiguousarray(bits), out)
    return out
