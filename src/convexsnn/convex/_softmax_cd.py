r"""Proximal Newton for the softmax cross-entropy with the l1 penalty, Hessian-free.

The loss :math:`f(Z) = \sum_i a_i \big(\log\sum_c e^{z_{ic}} - z_{i y_i}\big)`, :math:`Z = DW`,
has at :math:`W` the probabilities :math:`p_i = \mathrm{softmax}(z_i)`, the gradient
:math:`g = D^\top A (P - E)` and, per row, the Hessian block
:math:`H_i = a_i(\mathrm{diag}(p_i) - p_i p_i^\top)` (``C x C``). One outer step minimises the
quadratic model

.. math::

    q(\Delta) = \langle g, \Delta\rangle + \tfrac12 \sum_i \delta z_i^\top H_i\, \delta z_i
    + \lambda \lVert W + \Delta\rVert_1, \qquad \delta z_i = (D\Delta)_i,

by coordinate descent in *row form* (newGLMNET, Yuan, Ho & Lin 2012; the multinomial form of
Friedman, Hastie & Tibshirani's glmnet): the model's change :math:`\delta z_i` (``C`` values per
row) and :math:`\rho_i = p_i^\top \delta z_i` are kept up to date, so the derivative of the model
in the coordinate :math:`(j, c)` is

.. math::

    \partial_{jc} q = \sum_i d_{ij}\big(a_i(p_{ic} - e_{ic}) + a_i p_{ic}(\delta z_{ic} - \rho_i)
    \big),

its curvature :math:`h_{jc} = \sum_i a_i d_{ij}^2 p_{ic}(1 - p_{ic})`, and the step is the soft
threshold :math:`u \leftarrow S_{\lambda/h_{jc}}(u - \partial_{jc} q / h_{jc})` of
:math:`u = W_{jc} + \Delta_{jc}`, after which column ``j``'s nonzero rows update
:math:`\delta z_{\cdot c}` and :math:`\rho`. The Hessian (``PC x PC``) is never formed: a sweep
costs :math:`O(\mathrm{nnz}(D_S)\, C)` on the working-set block in compressed-column form
(int32 row indices and float32 values, 8 bytes per nonzero).
The sweeps run over the coordinates that are nonzero or nearly violate their
dual constraint (:math:`|g_{jc}| > \lambda - M`, :math:`M` the largest violation of the previous
step: the shrinking rule of newGLMNET), until a sweep changes the model by less than a fraction of
the first sweep (that fraction tightens as the steps become full Newton steps). Then
:math:`W \leftarrow W + t\Delta` with the Armijo rule on the true objective,
:math:`F(W + t\Delta) \le F(W) + \sigma t \delta`, :math:`\delta = \langle g, \Delta\rangle +
\lambda(\lVert W + \Delta\rVert_1 - \lVert W\rVert_1)`, where :math:`D(W + t\Delta) = Z + t\,\delta
z` costs no product. After every accepted step a *face phase* (:data:`FACE_PHASE`,
:func:`~convexsnn.convex._softmax_face.face_newton_cg`) runs Newton-CG on the support and signs
of the new point: at small :math:`\lambda` the model is ill-conditioned and the sweeps crawl, while
conjugate gradients on the face converge in about the square root of the iterations; the
proximal steps are then limited to :data:`FACE_SWEEPS` sweeps (they only have to find the
support). Every step's gradient is a dual candidate; the caller's certificate
(residual form, float64, original problem) decides the stop. Everything is deterministic (fixed
coordinate order, no time-dependent choices). See ``docs/method.md`` (softmax readout).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from .._jit import load_numba, log_fallback
from ._cd_numba import HAVE_NUMBA
from ._softmax_face import face_newton_cg

logger = logging.getLogger("convexsnn")

__all__ = ["block_bytes", "newton_rows_fit", "prox_newton_softmax_rows"]

_EPS64 = float(np.finfo(np.float64).eps)
#: Armijo sufficient-decrease constant
ARMIJO = 1e-4
#: most coordinate-descent sweeps on one quadratic model
MAX_SWEEPS = 200
#: run the face phase (Newton-CG on the settled support) between proximal Newton steps
FACE_PHASE = True
#: coordinate-descent sweeps at most on one model when the face phase runs (the proximal steps
#: then only have to find the support)
FACE_SWEEPS = 40
#: Newton-CG steps at most per face phase
FACE_STEPS = 20


def block_bytes(n: int, s: int, C: int) -> int:
    """Bytes held by one inner solve on an ``n x s`` block with ``C`` classes (the block
    as compressed columns, at most 8 bytes per entry, plus about eight float64 ``C x n`` work
    arrays)."""
    return 8 * n * s + 8 * 8 * n * C + 8 * 6 * s * C


def newton_rows_fit(n: int, s: int, C: int) -> bool:
    """Whether :func:`block_bytes` fits in the available memory (True where it is unknown)."""
    from .linear_operator import available_memory

    avail = available_memory()
    return avail is None or block_bytes(n, s, C) <= avail


def face_fits(n: int, s: int) -> bool:
    """Whether the face phase's float32 copy of the ``n x s`` block (and its square) fits."""
    from .linear_operator import available_memory

    avail = available_memory()
    return avail is None or 8 * n * s <= avail


# -- kernels (pure Python; compiled by numba on first use) ----------------------------------


def _grad_curv_py(ptr, idx, val, Ut, Ht, g, h):
    """``g[j, c] = sum_i d_ij Ut[c, i]``, ``h[j, c] = sum_i d_ij^2 Ht[c, i]`` (``D_S`` in
    compressed-column form ``ptr, idx, val``)."""
    s = ptr.shape[0] - 1
    C = Ut.shape[0]
    for j in range(s):
        for c in range(C):
            u = Ut[c]
            hh = Ht[c]
            acc = 0.0
            acc2 = 0.0
            for k in range(ptr[j], ptr[j + 1]):
                i = idx[k]
                x = val[k]
                acc += x * u[i]
                acc2 += x * x * hh[i]
            g[j, c] = acc
            h[j, c] = acc2


def _product_py(ptr, idx, val, W, Zt):
    """``Zt[c, i] = sum_j d_ij W[j, c]`` (the block product, transposed)."""
    s = ptr.shape[0] - 1
    C = W.shape[1]
    Zt[:, :] = 0.0
    for j in range(s):
        for c in range(C):
            w = W[j, c]
            if w != 0.0:
                z = Zt[c]
                for k in range(ptr[j], ptr[j + 1]):
                    z[idx[k]] += val[k] * w


def _model_sweeps_py(ptr, idx, val, Rt, PAt, Pt, W, dW, dzt, rho, h, act, lam, max_sweeps, tol_rel):
    """Coordinate descent on the quadratic model over the coordinates ``act`` (``j * C + c``),
    in place on ``dW``, ``dzt`` and ``rho``. Returns the number of sweeps run."""
    C = W.shape[1]
    first = -1.0
    sweeps = 0
    for _ in range(max_sweeps):
        sweeps += 1
        change = 0.0
        for a in range(act.shape[0]):
            j = act[a] // C
            c = act[a] - j * C
            hjc = h[j, c]
            if hjc <= 0.0:
                continue
            r = Rt[c]
            pa = PAt[c]
            dz = dzt[c]
            der = 0.0
            for k in range(ptr[j], ptr[j + 1]):
                i = idx[k]
                der += val[k] * (r[i] + pa[i] * (dz[i] - rho[i]))
            u = W[j, c] + dW[j, c]
            v = u - der / hjc
            t = lam / hjc
            if v > t:
                new = v - t
            elif v < -t:
                new = v + t
            else:
                new = 0.0
            d = new - u
            if d != 0.0:
                dW[j, c] += d
                p = Pt[c]
                for k in range(ptr[j], ptr[j + 1]):
                    i = idx[k]
                    xd = val[k] * d
                    dz[i] += xd
                    rho[i] += p[i] * xd
                change += hjc * d * d
        if first < 0.0:
            first = change
        if change <= tol_rel * first or change == 0.0:
            break
    return sweeps


def _csc_counts_py(Dt, cnt):
    """``cnt[j]`` = the nonzeros of row ``j`` of ``Dt`` (a block's columns as rows)."""
    k, n = Dt.shape
    for j in range(k):
        c = 0
        for i in range(n):
            if Dt[j, i] != 0.0:
                c += 1
        cnt[j] = c


def _csc_fill_py(Dt, start, idx, val):
    """Row indices and values of the nonzeros of each row ``j`` of ``Dt`` from ``start[j]``."""
    k, n = Dt.shape
    for j in range(k):
        p = start[j]
        for i in range(n):
            x = Dt[j, i]
            if x != 0.0:
                idx[p] = i
                val[p] = x
                p += 1


_grad_curv = _grad_curv_py
_product = _product_py
_model_sweeps = _model_sweeps_py
_csc_counts = _csc_counts_py
_csc_fill = _csc_fill_py
_COMPILED = False
_FAILED = False


def _compile() -> None:
    """Compile the kernels on first use (numba's on-disk cache makes later processes fast)."""
    global _grad_curv, _product, _model_sweeps, _csc_counts, _csc_fill, _COMPILED, _FAILED
    if _COMPILED or _FAILED:
        return
    if not HAVE_NUMBA:
        _FAILED = True
        log_fallback("softmax coordinate descent runs in pure Python (slow)", "not installed")
        return
    numba = load_numba("softmax coordinate descent runs in pure Python (slow)")
    if numba is None:
        _FAILED = True
        return
    _grad_curv = numba.njit(cache=True, nogil=True)(_grad_curv_py)
    _product = numba.njit(cache=True, nogil=True)(_product_py)
    _model_sweeps = numba.njit(cache=True, nogil=True)(_model_sweeps_py)
    _csc_counts = numba.njit(cache=True, nogil=True)(_csc_counts_py)
    _csc_fill = numba.njit(cache=True, nogil=True)(_csc_fill_py)
    _COMPILED = True


def _model_value(g, W, dW, dzt, rho, Pt, an, lam) -> float:
    r"""The model :math:`\langle g, \Delta\rangle + \tfrac12\sum_i a_i(\sum_c p_{ic}\delta z_{ic}^2
    - \rho_i^2) + \lambda\lVert W + \Delta\rVert_1` (up to the constant
    :math:`-\lambda\lVert W\rVert_1`)."""
    quad = float((an * ((Pt * dzt * dzt).sum(axis=0) - rho * rho)).sum())
    return float((g * dW).sum()) + 0.5 * quad + lam * float(np.abs(W + dW).sum())


def _anderson_sweeps(X, Rt, PAt, Pt, W, dW, dzt, rho, h, act, g, an, lam, tol_abs, max_sweeps, K=5):
    r"""Coordinate-descent sweeps over ``act`` on the quadratic model (in place on ``dW``,
    ``dzt``, ``rho``) with Anderson acceleration: every ``K`` sweeps the last ``K + 1`` iterates of
    :math:`(\Delta, \delta z, \rho)` (all linear in :math:`\Delta`) are extrapolated, kept only
    when the model value is lower. Stops after a sweep whose change
    :math:`\sum h_{jc} d_{jc}^2` is at most ``tol_abs``, or after ``max_sweeps``. Returns the
    number of sweeps and the change of the first one."""
    shapes = (dW.shape, dzt.shape, rho.shape)
    sizes = (dW.size, dzt.size, rho.size)

    def pack() -> np.ndarray:
        return np.concatenate([dW.ravel(), dzt.ravel(), rho])

    hist = [pack()]
    first = -1.0
    sweeps = 0
    hflat = h.ravel()
    while sweeps < max_sweeps:
        before = dW.ravel()[act].copy()
        _model_sweeps(*X, Rt, PAt, Pt, W, dW, dzt, rho, h, act, float(lam), 1, 0.0)
        sweeps += 1
        dd = dW.ravel()[act] - before
        change = float((hflat[act] * dd * dd).sum())
        if first < 0.0:
            first = change
        if change <= tol_abs or change == 0.0:
            break
        hist.append(pack())
        if len(hist) == K + 1:
            Hm = np.stack(hist)  # (K + 1, m)
            R = np.diff(Hm, axis=0)  # (K, m)
            RR = R @ R.T
            try:
                z = np.linalg.solve(RR + 1e-12 * np.trace(RR) * np.eye(K), np.ones(K))
                c = z / z.sum()
                ok = bool(np.all(np.isfinite(c)))
            except np.linalg.LinAlgError:
                ok = False
            if ok:
                ext = c @ Hm[1:]
                e0, e1 = sizes[0], sizes[0] + sizes[1]
                dW_e = ext[:e0].reshape(shapes[0])
                dz_e = ext[e0:e1].reshape(shapes[1])
                rho_e = ext[e1:]
                f_cur = _model_value(g, W, dW, dzt, rho, Pt, an, lam)
                if _model_value(g, W, dW_e, dz_e, rho_e, Pt, an, lam) < f_cur:
                    dW[...] = dW_e
                    dzt[...] = dz_e
                    rho[...] = rho_e
            hist = [pack()]
    return sweeps, first


def _solve_model(X, Rt, PAt, Pt, W, dW, dzt, rho, h, act, g, an, lam, tol_rel, max_sweeps=None):
    r"""Approximate minimiser of the quadratic model (in place on ``dW``, ``dzt``, ``rho``), the
    glmnet way: a sweep over all the candidate coordinates ``act``, then Anderson-accelerated
    sweeps over those that are nonzero (:math:`W + \Delta \ne 0`) until they settle, repeated
    until a full sweep changes the model by at most ``tol_rel`` times the first full sweep
    (:math:`\sum h_{jc} d_{jc}^2`), or :data:`MAX_SWEEPS` sweeps in all. Returns the number of
    sweeps."""
    max_sweeps = MAX_SWEEPS if max_sweeps is None else max_sweeps
    sweeps = 0
    first = -1.0
    while sweeps < max_sweeps:
        _, change = _anderson_sweeps(
            X, Rt, PAt, Pt, W, dW, dzt, rho, h, act, g, an, lam, math.inf, 1
        )
        sweeps += 1
        if first < 0.0:
            first = change
        if change <= tol_rel * first or change == 0.0:
            break
        nz = act[(W + dW).ravel()[act] != 0.0]
        if nz.size:
            k, _ = _anderson_sweeps(
                X,
                Rt,
                PAt,
                Pt,
                W,
                dW,
                dzt,
                rho,
                h,
                nz,
                g,
                an,
                lam,
                0.1 * tol_rel * first,
                max_sweeps - sweeps,
            )
            sweeps += k
    return sweeps


def _block_dense32(op, chunk: int = 256) -> np.ndarray:
    """The block :math:`D_S` as a C-contiguous float32 ``n x s`` array, ``chunk`` columns at a
    time (no ``n x s`` float64 copy of the block)."""
    n, s = op.shape
    Db = np.empty((n, s), dtype=np.float32)
    for k0 in range(0, s, chunk):
        k1 = min(s, k0 + chunk)
        cols = torch.arange(k0, k1, dtype=torch.long)
        blk = op.columns(cols).dense() if (k0 > 0 or k1 < s) else op.dense()
        Db[:, k0:k1] = blk.to(torch.float32).cpu().numpy()
    return Db


def _block_csc(op, chunk: int = 256, dense: np.ndarray | None = None):
    """The block :math:`D_S` in compressed-column form (``ptr`` int64, row indices int32, values
    float32), ``chunk`` columns at a time, from ``dense`` (the block as float32, when the caller
    holds it) or from the operator (never an ``n x s`` float64 copy of the block)."""
    n, s = op.shape
    ptr = np.zeros(s + 1, dtype=np.int64)
    idx_parts, val_parts = [], []
    for k0 in range(0, s, chunk):
        k1 = min(s, k0 + chunk)
        if dense is not None:
            bt = np.ascontiguousarray(dense[:, k0:k1].T)
        else:
            cols = torch.arange(k0, k1, dtype=torch.long)
            blk = op.columns(cols).dense() if (k0 > 0 or k1 < s) else op.dense()
            bt = np.ascontiguousarray(blk.T.to(torch.float32).cpu().numpy())  # (k1 - k0, n)
        cnt = np.zeros(k1 - k0, dtype=np.int64)
        _csc_counts(bt, cnt)
        start = np.zeros(k1 - k0, dtype=np.int64)
        np.cumsum(cnt[:-1], out=start[1:])
        ii = np.empty(int(cnt.sum()), dtype=np.int32)
        vv = np.empty(ii.size, dtype=np.float32)
        _csc_fill(bt, start, ii, vv)
        ptr[k0 + 1 : k1 + 1] = cnt
        idx_parts.append(ii)
        val_parts.append(vv)
    np.cumsum(ptr, out=ptr)
    idx = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int32)
    val = np.concatenate(val_parts) if val_parts else np.zeros(0, np.float32)
    return ptr, idx, val


def prox_newton_softmax_rows(
    op,
    datafit,
    penalty,
    lam: float,
    W: torch.Tensor,
    *,
    tol: float,
    budget,
    log_level: int = logging.DEBUG,
    max_steps: int = 500,
    face: bool | None = None,
    face_max_steps: int | None = None,
):
    r"""Hessian-free proximal Newton for softmax + l1 on the block ``op`` (``n x s``); see the
    module docstring for the model, its coordinate descent and the line search.

    Parameters
    ----------
    op : operator with ``shape``, ``dense()`` and ``columns()``
        The working-set block :math:`D_S` (densified once, as float32, in column chunks).
    datafit : SoftmaxCrossEntropy
        Labels, classes and row weights :math:`a_i` (of the rows of ``op``).
    penalty : L1
    lam : float
    W : Tensor (s, C)
        Starting point.
    tol : float
        Relative gap (of this block's problem) at which to stop.
    budget : Budget
        Shared iteration / time budget (one unit per Newton step).
    max_steps : int
        Newton steps at most in this call.
    face : bool, optional
        Run the face phase (Newton-CG on the support once it has settled,
        :func:`~convexsnn.convex._softmax_face.face_newton_cg`); default :data:`FACE_PHASE`.
        Off, or when the float32 copy of the block does not fit, the solver is the plain
        proximal Newton of earlier releases.
    face_max_steps : int, optional
        Newton-CG steps at most per face phase; default :data:`FACE_STEPS`.

    Returns
    -------
    InnerResult
        Best point, its product :math:`D_S W`, the dual candidates and ``converged``.

    Raises
    ------
    MemoryError
        Before any work, when the compressed block and its work arrays do not fit
        (:func:`block_bytes`).
    """
    from ._inner import Tracker
    from .linear_operator import check_fits

    n, s = op.shape
    C = datafit.n_outputs
    face = FACE_PHASE if face is None else bool(face)
    check_fits(
        block_bytes(n, s, C),
        f"the softmax Newton block ({n} rows x {s} working-set columns, float32)",
    )
    _compile()
    f64 = torch.float64
    # the face phase (Newton-CG on the support, _softmax_face) on a dense float32 copy of the
    # block, from which the compressed columns are also read
    Db = _block_dense32(op) if face and face_fits(n, s) else None
    ptr, idx, val = _block_csc(op, dense=Db)
    X = (ptr, idx, val)
    a = datafit.weights.to(f64).cpu().reshape(-1, 1)
    E = datafit.E.to(f64).cpu()
    tr = Tracker(datafit, penalty, lam)
    Wn = np.ascontiguousarray(W.detach().to(f64).cpu().numpy()).copy()
    Zt = np.zeros((C, n))
    _product(*X, Wn, Zt)
    g = np.zeros((s, C))
    h = np.zeros((s, C))
    dW = np.zeros((s, C))
    dzt = np.zeros((C, n))
    rho = np.zeros(n)
    an = a.numpy()[:, 0]

    def F(Wx: np.ndarray, Ztx: np.ndarray) -> float:
        return float(datafit.value(torch.from_numpy(Ztx).T)) + lam * float(np.abs(Wx).sum())

    def offer(Wx: np.ndarray, Ztx: np.ndarray) -> None:
        tr.offer_primal(
            torch.from_numpy(Wx.copy()).to(op.dtype),
            torch.from_numpy(np.ascontiguousarray(Ztx.T)).to(op.dtype),
        )

    Fw = F(Wn, Zt)
    offer(Wn, Zt)
    it, matvecs, sweeps_total = 0, 1, 0
    tol_rel, m_prev = 0.1, math.inf
    binary = Db is not None and bool(np.all(val == 1.0))
    radius = None
    face_steps = cg_total = 0

    def face_gradient(Ztx: np.ndarray):
        nonlocal matvecs
        Px = torch.softmax(torch.from_numpy(Ztx).T, dim=1)
        Ux = a * (Px - E)
        Uxt = np.ascontiguousarray(Ux.T.numpy())
        Pxt = np.ascontiguousarray(Px.T.numpy())
        gx = np.zeros((s, C))
        hx = np.zeros((s, C))
        _grad_curv(*X, Uxt, Pxt * an[None, :] * (1.0 - Pxt), gx, hx)
        matvecs += 1
        tr.offer_dual(Ux.to(op.dtype), torch.from_numpy(gx.copy()).to(op.dtype))
        return Px.numpy(), gx, hx

    def face_product(Wx: np.ndarray) -> np.ndarray:
        nonlocal matvecs
        Zx = np.zeros((C, n))
        _product(*X, np.ascontiguousarray(Wx), Zx)
        matvecs += 1
        return Zx

    def face_stop() -> bool:
        return tr.converged(tol) or budget.left <= 0 or budget.out_of_time()

    while True:
        Pm = torch.softmax(torch.from_numpy(Zt).T, dim=1)  # (n, C)
        U = a * (Pm - E)
        Pt = np.ascontiguousarray(Pm.T.numpy())
        Ut = np.ascontiguousarray(U.T.numpy())
        PAt = Pt * an[None, :]
        _grad_curv(*X, Ut, PAt * (1.0 - Pt), g, h)
        matvecs += 1
        tr.offer_dual(U.to(op.dtype), torch.from_numpy(g.copy()).to(op.dtype))
        if tr.converged(tol) or budget.left <= 0 or budget.out_of_time() or it >= max_steps:
            break
        # minimum-norm subgradient violation; shrinking: coordinates at zero well inside their
        # dual constraint are left out of this model (Yuan, Ho & Lin 2012)
        ag = np.abs(g)
        nz = Wn != 0.0
        viol = np.where(nz, np.abs(g + lam * np.sign(Wn)), np.maximum(ag - lam, 0.0))
        m_now = float(viol.max())
        act = np.flatnonzero((nz | (ag > lam - m_prev)).reshape(-1)).astype(np.int64)
        m_prev = m_now
        dW.fill(0.0)
        dzt.fill(0.0)
        rho.fill(0.0)
        sw = _solve_model(
            X,
            Ut,
            PAt,
            Pt,
            Wn,
            dW,
            dzt,
            rho,
            h,
            act,
            g,
            an,
            lam,
            tol_rel,
            FACE_SWEEPS if Db is not None else MAX_SWEEPS,
        )
        sweeps_total += int(sw)
        logger.log(
            log_level,
            "step %d: F=%.15g act=%d sweeps=%d tol_rel=%.1e gap=%.3g",
            it,
            Fw,
            act.size,
            sw,
            tol_rel,
            tr.gap / max(abs(tr.primal), 1e-300),
        )
        it += 1
        budget.used += 1
        Wt_full = Wn + dW
        delta = float((g * dW).sum()) + lam * (
            float(np.abs(Wt_full).sum()) - float(np.abs(Wn).sum())
        )
        if not delta < 0.0:
            # no descent direction at this model accuracy: solve the model more accurately
            if tol_rel <= 1e-12 or act.size == 0:
                break
            tol_rel *= 1e-3
            continue
        t = 1.0
        accepted = False
        for _ in range(40):
            Wt = Wn + t * dW
            Ztt = Zt + t * dzt
            Ft = F(Wt, Ztt)
            # (slack for the rounding of F itself near the optimum)
            if Ft <= Fw + ARMIJO * t * delta + 4 * _EPS64 * abs(Fw):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            if tol_rel <= 1e-12:
                break
            tol_rel *= 1e-3
            continue
        if t == 1.0:
            tol_rel = max(tol_rel * 0.1, 1e-10)  # full steps: Newton's fast phase, solve finer
        # D W recomputed from W (the updates of dz, Anderson's extrapolations included, round)
        Wn = Wt
        _product(*X, Wn, Zt)
        matvecs += 1
        Fw = F(Wn, Zt)
        offer(Wn, Zt)
        if Db is not None:
            # Newton-CG on the face of the new point (its support and signs)
            fr = face_newton_cg(
                Db,
                face_product,
                face_gradient,
                F,
                Wn,
                Zt,
                Fw,
                lam,
                an,
                max_steps=FACE_STEPS if face_max_steps is None else int(face_max_steps),
                radius=radius,
                binary=binary,
                on_point=offer,
                stop=face_stop,
                log_level=log_level,
            )
            radius = fr.radius
            face_steps += fr.steps
            cg_total += fr.cg
            matvecs += 2 * fr.cg
            budget.used += fr.steps
            Wn, Zt, Fw = fr.W, fr.Zt, fr.F
    logger.log(
        log_level,
        "newton-rows: %d steps, %d sweeps, %d face steps (%d cg), primal=%.12g dual=%.12g",
        it,
        sweeps_total,
        face_steps,
        cg_total,
        tr.primal,
        tr.dual,
    )
    return tr.result(tol, it, matvecs)
