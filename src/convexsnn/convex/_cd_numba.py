r"""Compiled (numba) coordinate-descent sweeps on the Gram form of the squared loss.

With :math:`H = D^\top A D`, :math:`B = D^\top A Y` and :math:`y_2 = \sum_i a_i y_i^2` (per output
column), the squared datafit is :math:`f(W) = \tfrac12 \mathrm{tr}(W^\top H W) -
\mathrm{tr}(B^\top W) + \tfrac12 \sum_c y_{2,c}`. One coordinate step on row :math:`j` (all
outputs at once; the matrix :math:`HW` is kept up to date) is

.. math::

    W_j \leftarrow \mathrm{prox}_{\lambda r / H_{jj}}\big(W_j - (H_j W - B_j) / H_{jj}\big),

soft thresholding for the elementwise :math:`\ell_1` (each output column on its own) and group
soft thresholding :math:`v \max(0, 1 - t/\lVert v\rVert_2)` for the row-wise :math:`\ell_{2,1}`
(block coordinate descent). A call runs sweeps (all rows, then only the rows in the support,
alternately) until the *Gram-form* relative gap falls below ``gram_tol`` or ``max_sweeps`` ran.
The Gram-form gap only tells the caller when to check: every stop of the solver is decided on the
certificate recomputed in float64 residual form (:func:`~convexsnn.convex._inner.squared_gram`).

The kernels are compiled on first use (``cache=True``: the machine code is cached next to this
file, so later processes load it in well under a second).
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np

from .._jit import load_numba

#: numba is a core dependency (imported on first use: ~1 s); the pure-Python sweeps remain for
#: environments without it
HAVE_NUMBA = importlib.util.find_spec("numba") is not None

__all__ = ["HAVE_NUMBA", "cd_gram_sweeps", "fill_grown_inverse", "gram_gap", "popcount_gram"]


def _gram_gap_py(H, B, W, HW, y2, lam, group, per_col):
    """Primal and dual values (totals) of ``W`` from the Gram form; see :func:`gram_gap`."""
    s, C = W.shape
    fit = np.zeros(C)
    wb = np.zeros(C)
    pen = np.zeros(C)
    mx = np.zeros(C)
    mxg = 0.0
    for j in range(s):
        rn = 0.0
        wn = 0.0
        for c in range(C):
            w = W[j, c]
            g = HW[j, c] - B[j, c]
            fit[c] += 0.5 * w * HW[j, c]
            wb[c] += w * B[j, c]
            if group:
                rn += g * g
                wn += w * w
            else:
                pen[c] += abs(w)
                if abs(g) > mx[c]:
                    mx[c] = abs(g)
        if group:
            if rn > mxg:
                mxg = rn
            pen[0] += math.sqrt(wn)
    primal = 0.0
    dual = 0.0
    gmax = 0.0
    if group:
        gmax = math.sqrt(mxg)
    elif not per_col:
        for c in range(C):
            if mx[c] > gmax:
                gmax = mx[c]
    for c in range(C):
        fc = fit[c] - wb[c] + 0.5 * y2[c]
        if group or not per_col:
            sc = 1.0 if gmax <= lam else lam / gmax
        else:
            sc = 1.0 if mx[c] <= lam else lam / mx[c]
        primal += fc + lam * pen[c]
        dual += -(sc * (wb[c] - y2[c]) + sc * sc * fc)
    return primal, dual


_gram_gap = _gram_gap_py  # replaced by the compiled kernel in _compile()


def _spd_solve_py(M, rhs):
    """``M^{-1} rhs`` for a small symmetric positive definite ``M`` by Cholesky, in plain loops;
    ``ok`` is False when a pivot is not positive. Written out rather than ``np.linalg.solve`` so
    that the compiled kernels never call LAPACK: numba binds it lazily, and a process that cannot
    load it (seen under a per-process address-space cap) is aborted, not given an exception."""
    K = M.shape[0]
    L = np.zeros((K, K))
    z = np.zeros(K)
    for i in range(K):
        for j in range(i + 1):
            acc = M[i, j]
            for k in range(j):
                acc -= L[i, k] * L[j, k]
            if i == j:
                if not acc > 0.0:
                    return z, False
                L[i, i] = math.sqrt(acc)
            else:
                L[i, j] = acc / L[j, j]
    t = np.zeros(K)
    for i in range(K):
        acc = rhs[i]
        for k in range(i):
            acc -= L[i, k] * t[k]
        t[i] = acc / L[i, i]
    for i in range(K - 1, -1, -1):
        acc = t[i]
        for k in range(i + 1, K):
            acc -= L[k, i] * z[k]
        z[i] = acc / L[i, i]
    return z, True


_spd_solve = _spd_solve_py  # replaced by the compiled kernel in _compile()


def _anderson_py(H, B, W, HW, y2, lam, group, per_col, hist, K):
    """Anderson extrapolation from the ``K + 1`` iterates in ``hist``; kept when it lowers the
    Gram-form primal value (then ``W`` and ``HW`` are overwritten)."""
    s, C = W.shape
    M = np.zeros((K, K))
    for a in range(K):
        for b in range(a, K):
            acc = 0.0
            for j in range(s):
                for c in range(C):
                    acc += (hist[a + 1, j, c] - hist[a, j, c]) * (hist[b + 1, j, c] - hist[b, j, c])
            M[a, b] = acc
            M[b, a] = acc
    tr = 0.0
    for a in range(K):
        tr += M[a, a]
    if not tr > 0.0:
        return False
    for a in range(K):
        M[a, a] += 1e-10 * tr
    z, ok = _spd_solve(M, np.ones(K))
    if not ok:
        return False
    sz = z.sum()
    if not (sz != 0.0 and math.isfinite(sz)):
        return False
    Wa = np.zeros((s, C))
    for a in range(K):
        ca = z[a] / sz
        for j in range(s):
            for c in range(C):
                Wa[j, c] += ca * hist[a + 1, j, c]
    HWa = np.zeros((s, C))
    for j in range(s):
        nz = False
        for c in range(C):
            if Wa[j, c] != 0.0:
                nz = True
        if nz:
            for i in range(s):
                h = H[j, i]
                for c in range(C):
                    HWa[i, c] += h * Wa[j, c]
    pa, _ = _gram_gap(H, B, Wa, HWa, y2, lam, group, per_col)
    p0, _ = _gram_gap(H, B, W, HW, y2, lam, group, per_col)
    if pa < p0:
        W[:, :] = Wa
        HW[:, :] = HWa
        return True
    return False


_anderson = _anderson_py  # replaced by the compiled kernel in _compile()


def _cd_sweeps_py(H, B, W, HW, y2, lam, group, per_col, rows, gram_tol, max_sweeps, check_every, K):
    """``max_sweeps`` sweeps at most; returns the number run. See :func:`cd_gram_sweeps`."""
    s, C = W.shape
    nw = np.empty(C)
    d = np.empty(C)
    sweeps = 0
    hist = np.empty((max(K, 1) + 1, s, C))
    nrec = 0
    for sweep in range(max_sweeps):
        full = sweep % 2 == 0
        for jj in range(rows.shape[0]):
            j = rows[jj]
            hjj = H[j, j]
            if hjj <= 0.0:
                continue
            nz = False
            for c in range(C):
                if W[j, c] != 0.0:
                    nz = True
                    break
            if not full and not nz:
                continue
            inv = 1.0 / hjj
            t = lam * inv
            changed = False
            if group:
                nv = 0.0
                for c in range(C):
                    v = W[j, c] - (HW[j, c] - B[j, c]) * inv
                    nw[c] = v
                    nv += v * v
                nv = math.sqrt(nv)
                scale = 0.0 if nv <= t else 1.0 - t / nv
                for c in range(C):
                    x = nw[c] * scale
                    d[c] = x - W[j, c]
                    if d[c] != 0.0:
                        changed = True
                    W[j, c] = x
            else:
                for c in range(C):
                    v = W[j, c] - (HW[j, c] - B[j, c]) * inv
                    if v > t:
                        x = v - t
                    elif v < -t:
                        x = v + t
                    else:
                        x = 0.0
                    d[c] = x - W[j, c]
                    if d[c] != 0.0:
                        changed = True
                    W[j, c] = x
            if changed:
                # H is symmetric: row j is column j, read contiguously
                if C == 1:
                    d0 = d[0]
                    for i in range(s):
                        HW[i, 0] += H[j, i] * d0
                else:
                    for i in range(s):
                        h = H[j, i]
                        for c in range(C):
                            HW[i, c] += h * d[c]
        sweeps += 1
        if K > 0 and not full:
            # Anderson acceleration on the iterates after each (full, active) pair of sweeps
            hist[nrec] = W
            nrec += 1
            if nrec == K + 1:
                _anderson(H, B, W, HW, y2, lam, group, per_col, hist, K)
                nrec = 0
        if full and (sweeps % check_every == 1 or check_every == 1):
            p, dv = _gram_gap(H, B, W, HW, y2, lam, group, per_col)
            if p - dv <= gram_tol * abs(p):
                break
    return sweeps


_cd_sweeps = _cd_sweeps_py
_popcount_gram = None  # compiled in _compile() (no pure-Python version: callers fall back)
_popcount_gram_sym = None
_fill_grown = None
_COMPILED = False
_FAILED = False


def available() -> bool:
    """Whether the compiled kernels can be used here (compiles them on first call)."""
    _compile()
    return _COMPILED


def _compile() -> None:
    """Compile the kernels on first use (numba's on-disk cache makes later processes fast)."""
    global _gram_gap, _spd_solve, _anderson, _cd_sweeps, _popcount_gram, _popcount_gram_sym
    global _COMPILED, _FAILED, _fill_grown
    if _COMPILED or _FAILED or not HAVE_NUMBA:
        return
    numba = load_numba("coordinate descent runs in pure Python (slow)")
    if numba is None:
        _FAILED = True
        return

    _gram_gap = numba.njit(cache=True, nogil=True)(_gram_gap_py)
    _spd_solve = numba.njit(cache=True, nogil=True)(_spd_solve_py)
    _anderson = numba.njit(cache=True, nogil=True)(_anderson_py)
    _cd_sweeps = numba.njit(cache=True, nogil=True)(_cd_sweeps_py)
    _popcount_gram, _popcount_gram_sym, _fill_grown = _make_popcount_gram(numba)
    _COMPILED = True


def _make_popcount_gram(numba):
    """The compiled AND + popcount kernel (LLVM's ``ctpop`` on 64-bit words)."""
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def ctpop(typingctx, x):
        sig = types.uint64(types.uint64)

        def codegen(context, builder, signature, args):
            return builder.ctpop(args[0])

        return sig, codegen

    @numba.njit(cache=True, nogil=True)
    def kernel(A, Bw, out, scale):
        s, nw = A.shape
        k = Bw.shape[0]
        for j0 in range(0, k, 16):
            j1 = min(k, j0 + 16)
            for i in range(s):
                for j in range(j0, j1):
                    acc = np.uint64(0)
                    for w in range(nw):
                        acc += ctpop(A[i, w] & Bw[j, w])
                    out[i, j] = acc * scale

    @numba.njit(cache=True, nogil=True)
    def kernel_sym(A, out, scale):
        s, nw = A.shape
        for j0 in range(0, s, 16):
            j1 = min(s, j0 + 16)
            for i in range(j0, s):
                for j in range(j0, min(j1, i + 1)):
                    acc = np.uint64(0)
                    for w in range(nw):
                        acc += ctpop(A[i, w] & A[j, w])
                    v = acc * scale
                    out[i, j] = v
                    out[j, i] = v

    @numba.njit(cache=True, nogil=True)
    def fill_grown(inv, A, TS, Sinv, pos, fresh):
        # inv[pos, pos] = A, inv[pos, fresh] = -TS, inv[fresh, pos] = -TS^T,
        # inv[fresh, fresh] = Sinv, row by row (the transposed block in 64 x 64 tiles)
        m, k = pos.shape[0], fresh.shape[0]
        for a in range(m):
            i = pos[a]
            for b in range(m):
                inv[i, pos[b]] = A[a, b]
            for b in range(k):
                inv[i, fresh[b]] = -TS[a, b]
        for a in range(k):
            i = fresh[a]
            for b in range(k):
                inv[i, fresh[b]] = Sinv[a, b]
        for b0 in range(0, m, 64):
            b1 = min(m, b0 + 64)
            for a0 in range(0, k, 64):
                a1 = min(k, a0 + 64)
                for b in range(b0, b1):
                    jb = pos[b]
                    for a in range(a0, a1):
                        inv[fresh[a], jb] = -TS[b, a]

    return kernel, kernel_sym, fill_grown


def gram_gap(H, B, W, HW, y2, lam: float, group: bool, per_col: bool) -> tuple[float, float]:
    r"""Gram-form primal and dual values (totals over outputs) of ``W``.

    Primal :math:`\sum_c \big(\tfrac12 w_c^\top (HW)_c - b_c^\top w_c + \tfrac12 y_{2,c}\big)
    + \lambda R(W)`; dual of the residual candidate :math:`U = A(DW - Y)` scaled into the feasible
    set, :math:`-(s \langle U, Y\rangle + s^2 \lVert U\rVert^2_{A^{-1}}/2)` with
    :math:`\langle U, Y\rangle = \langle W, B\rangle - y_2`,
    :math:`s = \min(1, \lambda / R^\circ(HW - B))` (per output column for l1 with ``per_col``).
    """
    _compile()
    return _gram_gap(H, B, W, HW, y2, float(lam), bool(group), bool(per_col))


def cd_gram_sweeps(
    H: np.ndarray,
    B: np.ndarray,
    W: np.ndarray,
    HW: np.ndarray,
    y2: np.ndarray,
    lam: float,
    *,
    group: bool,
    per_col: bool,
    rows: np.ndarray,
    gram_tol: float,
    max_sweeps: int,
    check_every: int = 4,
    anderson: int = 5,
) -> int:
    r"""Run coordinate-descent sweeps in place on ``W`` and ``HW`` (float64, C-contiguous).

    ``rows``: int64 indices of the rows to update (rows outside stay as they are); ``group``:
    l2,1 (block steps) instead of l1; ``per_col``: l1 duals scaled per output column. Stops after
    a full sweep whose Gram-form relative gap (:func:`gram_gap`, checked every ``check_every``
    sweeps) is at most ``gram_tol``, or after ``max_sweeps``. Returns the number of sweeps run.

    With ``anderson = K > 0``, every ``K`` pairs of sweeps the last ``K + 1`` iterates are
    extrapolated (Anderson acceleration, as in celer / skglm:
    :math:`W \leftarrow \sum_k c_k W_k` with :math:`c = z / \mathbf 1^\top z`,
    :math:`(R^\top R + \epsilon I) z = \mathbf 1`, :math:`R` the successive differences), and the
    extrapolated point is kept only when its Gram-form primal value is lower.
    """
    _compile()
    return int(
        _cd_sweeps(
            H,
            B,
            W,
            HW,
            y2,
            float(lam),
            bool(group),
            bool(per_col),
            rows,
            float(gram_tol),
            int(max_sweeps),
            int(max(1, check_every)),
            int(max(0, anderson)),
        )
    )


def popcount_gram(
    A: np.ndarray, Bw: np.ndarray | None = None, scale: float = 1.0
) -> np.ndarray | None:
    r"""``out[i, j]`` = ``scale`` times the number of common set bits of the rows ``A[i]`` and
    ``Bw[j]`` (``uint64`` words, bit-packed 0/1 columns), float64: :math:`a_0 D_i^\top D_j` of a
    binary dictionary, the count exact and rounded once by the scaling, in :math:`O(s k n / 64)`
    word operations instead of :math:`O(s k n)` multiply-adds (written straight into the float64
    result: no integer copy). With ``Bw=None`` the symmetric :math:`D^\top D` of ``A`` itself:
    only the entries :math:`j \le i` are counted and mirrored (half the word operations).
    ``None`` when the compiled kernel is not available (callers use the float products)."""
    _compile()
    if _popcount_gram is None or _popcount_gram_sym is None:
        return None
    if Bw is None:
        out = np.empty((A.shape[0], A.shape[0]), dtype=np.float64)
        _popcount_gram_sym(np.ascontiguousarray(A), out, float(scale))
        return out
    out = np.empty((A.shape[0], Bw.shape[0]), dtype=np.float64)
    _popcount_gram(np.ascontiguousarray(A), np.ascontiguousarray(Bw), out, float(scale))
    return out


def fill_grown_inverse(
    inv: np.ndarray,
    A: np.ndarray,
    TS: np.ndarray,
    Sinv: np.ndarray,
    pos: np.ndarray,
    fresh: np.ndarray,
) -> bool:
    """Write the blocks of a grown symmetric inverse into ``inv`` (``(s, s)``, C order):
    ``inv[pos, pos] = A``, ``inv[pos, fresh] = -TS``, ``inv[fresh, pos] = -TS.T``,
    ``inv[fresh, fresh] = Sinv``, in one compiled pass (no fancy-index temporaries). ``False``
    when the kernel is unavailable (nothing written)."""
    _compile()
    if _fill_grown is None:
        return False
    _fill_grown(
        inv,
        np.ascontiguousarray(A),
        np.ascontiguousarray(TS),
        np.ascontiguousarray(Sinv),
        np.ascontiguousarray(pos, dtype=np.int64),
        np.ascontiguousarray(fresh, dtype=np.int64),
    )
    return True
