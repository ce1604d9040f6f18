r"""Newton-CG on the identified face of softmax + l1 (the support-polish phase of the row-form
proximal Newton solver, :mod:`~convexsnn.convex._softmax_cd`).

On a block :math:`D_S` (``n x s``) the objective is
:math:`F(W) = f(D_S W) + \lambda \lVert W\rVert_1`, :math:`f(Z) = \sum_i a_i(\log\sum_c
e^{z_{ic}} - z_{iy_i})`, with gradient :math:`G = D_S^\top A(P - E)`. Once the proximal Newton
steps have found the support :math:`\mathcal F = \{W_{jc} \ne 0\}` and its signs
:math:`\xi = \mathrm{sign}(W)`, the l1 term is the linear :math:`\lambda\langle \xi, W\rangle` on
the orthant and the problem restricted to the face is smooth. Its gradient is
:math:`\tilde g = (G + \lambda\xi)_{\mathcal F}` and its Hessian acts on a direction :math:`v`
(zero off the face) as

.. math::

    H v = D_S^\top \big[a_i(\mathrm{diag}(p_i) - p_i p_i^\top)(D_S v)_i\big]_i,

two products with the block per application, :math:`O(n s C)`, the ``(sC)^2`` Hessian never
formed. The truncated Newton direction solves :math:`(H_{\mathcal F\mathcal F} + \mu I)\,d =
-\tilde g` by conjugate gradients preconditioned with the Hessian's diagonal :math:`M`, stopped
at the boundary of a trust region :math:`\lVert d\rVert_M \le \Delta` (Steihaug-Toint;
:math:`\Delta` grows after steps whose decrease matches the model's and shrinks after poor ones;
:math:`\mu`, tiny, only keeps the directions the loss does not see, such as a constant added to
every class of one neuron, from being unbounded). The step :math:`W_t = \pi_\xi(W + t d)`
(coordinates that would change sign stop at zero, as OWL-QN projects; Andrew & Gao 2007) is
accepted by
backtracking when the *true* objective decreases by the Armijo rule
:math:`F(W_t) \le F(W) + \sigma\langle\tilde g, W_t - W\rangle`, so no step ever raises
:math:`F`. A coordinate that reaches zero leaves the face for the rest of the phase (the next
proximal Newton step decides whether it comes back). A phase ends after ``max_steps`` steps, when
the face gradient has fallen by ``FACE_RTOL``, or when it is below ``FACE_BALANCE`` times the
violation of the dual constraints off the face, :math:`\lVert(|G_{jc}| - \lambda)_+
\rVert` over :math:`W_{jc} = 0` (the support is still wrong: solving the face further is wasted).
Where the face is small (:data:`EXPLICIT`: at most :data:`EXPLICIT_MAX_FREE` free coordinates
and :data:`EXPLICIT_MAX_WORK` multiply-adds) the Hessian is instead formed once per step in
float64 from the block's rows (:func:`face_hessian`, about :math:`n F^2/2` multiply-adds for
``F`` free coordinates) and the same preconditioned Steihaug-Toint conjugate gradients run on it:
each of their products then costs :math:`F^2` instead of the :math:`4 n s C` of two products with
the block (late face steps took 90-130 of them on the 55000-row SG-CVX dictionary of sequential
MNIST, ``F`` about 570).
Conjugate gradients converge in about :math:`\sqrt{\kappa}` products where coordinate descent
on the same ill-conditioned model (probabilities near 0 or 1 at small :math:`\lambda`) needs
about :math:`\kappa` sweeps: this is the softmax counterpart of the squared-loss support solve in
``_polish``. The gradient of every point is a dual candidate; the caller's certificate (residual
form, float64, original problem) decides the stop. See ``docs/method.md`` (softmax readout).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

logger = logging.getLogger("convexsnn")

__all__ = ["FaceResult", "face_hessian", "face_newton_cg"]

_EPS64 = float(np.finfo(np.float64).eps)
#: Armijo sufficient-decrease constant
ARMIJO = 1e-4
#: conjugate-gradient iterations at most per Newton step
MAX_CG = 300
#: first Levenberg-Marquardt damping (relative to the mean diagonal of the face Hessian)
MU0 = 1e-4
#: rows whose largest p_ic (1 - p_ic) is at most this are left out of the Hessian products
ROW_CURV = 1e-7
#: a phase ends when the face gradient is below this times the violation off the face
FACE_BALANCE = 0.1
#: a phase ends when the face gradient has fallen by this factor
FACE_RTOL = 1e-6
#: damping floor, times min(1, |face gradient|)
MU_MIN = 1e-8
#: precondition conjugate gradients with the Hessian's ``C x C`` block of each column (its
#: classes coupled) instead of its diagonal. Off: on the MNIST paper dictionary's face at
#: beta 1e-2 the blocks cut preconditioned CG on the exact float64 Hessian from 1044 to 398
#: iterations (random right-hand side, residual 1e-4), but inside the solver (float32 products)
#: the solve took 83-96 s against 90 s with the diagonal at beta 1e-2 (load 6), and at 1e-3 it
#: was at rel gap 1.8e-2 after 312 s (the diagonal: 2e-6 after 600 s in last round's benchmark)
CLASS_BLOCKS = False
#: form the face Hessian explicitly (float64, :func:`face_hessian`) where that is cheap
#: (:data:`EXPLICIT_MAX_FREE`, :data:`EXPLICIT_MAX_WORK`) and run conjugate gradients on it
#: instead of on Hessian-vector products with the block
EXPLICIT = True
#: most free coordinates of a face whose Hessian is formed (``8 F^2`` bytes: 50 MB at 2500)
EXPLICIT_MAX_FREE = 2500
#: most multiply-adds (rows with curvature x free coordinates squared) of one formation (about
#: 10 s of one core in float64; a Hessian-vector product costs about ``4 n s C`` of them and the
#: late face steps took 90-130 of them on the 55k SG-CVX dictionary)
EXPLICIT_MAX_WORK = 2e11
#: rows per chunk of the explicit formation
EXPLICIT_CHUNK = 4096
#: floor of the class blocks' damping, relative to their mean diagonal (measured on the MNIST
#: paper dictionary's face at beta 1e-2: 1e-6 keeps 95% of the exact blocks' gain in
#: conjugate-gradient iterations, 1e-4 half of it)
BLOCK_FLOOR = 1e-6


def _class_blocks(X: np.ndarray, Pa: np.ndarray, P32: np.ndarray) -> np.ndarray:
    r"""The ``C x C`` diagonal blocks of the Hessian, one per column of the block:
    :math:`B_j = \sum_i a_i d_{ij}^2 (\mathrm{diag}(p_i) - p_i p_i^\top)` (``X`` holds
    :math:`d_{ij}^2`, ``Pa`` :math:`a_i p_i`), float64 ``(s, C, C)``.

    The off-diagonal entries :math:`-\sum_i a_i d_{ij}^2 p_{ic} p_{ic'}` come from one product
    ``X.T @ Q`` over the class pairs; the diagonal is assembled from them,
    :math:`B_{j,cc} = \sum_{c' \ne c} \sum_i a_i d_{ij}^2 p_{ic} p_{ic'}` (as
    :math:`1 - p_{ic} = \sum_{c' \ne c} p_{ic'}`), so every block is a weighted graph
    Laplacian with nonnegative weights: positive semidefinite whatever the rounding of the
    float32 product, with :math:`B_j \mathbf 1 = 0` (the direction the loss does not see)."""
    C = P32.shape[1]
    iu, ju = np.triu_indices(C, k=1)
    Q = Pa[:, iu] * P32[:, ju]  # (rows, C (C - 1) / 2), nonnegative
    off = np.maximum((X.T @ Q).astype(np.float64), 0.0)  # (s, pairs)
    B = np.zeros((X.shape[1], C, C))
    B[:, iu, ju] = -off
    B[:, ju, iu] = -off
    B[:, np.arange(C), np.arange(C)] = -B.sum(axis=2)
    return B


def _block_inverse(B: np.ndarray, fr: np.ndarray, mu: float) -> tuple[np.ndarray, np.ndarray]:
    r"""The preconditioner :math:`M_j = (B_j)_{F_j F_j} + \mu_j I` on the free classes
    :math:`F_j` of each column (zero rows and columns off them) and its inverse, ``(s, C, C)``
    each; :math:`\mu_j = \mu +` :data:`BLOCK_FLOOR` times the mean of the block's diagonal
    (the float32 Hessian products cannot resolve the curvature along :math:`\mathbf 1` below
    that: a preconditioner exact there would amplify their rounding). A block the Cholesky
    factorisation refuses (it cannot happen in exact arithmetic:
    :math:`B_j` is positive semidefinite and :math:`\mu > 0`) falls back to its diagonal."""
    C = B.shape[1]
    mask = fr[:, :, None] & fr[:, None, :]
    eye = np.eye(C)[None]
    dg = np.where(fr, np.diagonal(B, axis1=1, axis2=2), 0.0)
    mu_j = mu + BLOCK_FLOOR * dg.sum(axis=1) / np.maximum(fr.sum(axis=1), 1)
    Mb = np.where(mask, B, 0.0) + mu_j[:, None, None] * eye * fr[:, :, None]
    # along 1 on a column whose classes are all free (where B_j is zero) the scale of the
    # diagonal, as the diagonal preconditioner has it: the loss has no curvature there and
    # the step should not take its size from the damping alone
    full = fr.all(axis=1)
    Mb[full] += (dg[full].sum(axis=1) / C**2)[:, None, None]
    A = Mb + eye * (~fr)[:, :, None]  # identity on the classes off the face
    try:
        L = np.linalg.cholesky(A)
        Li = np.linalg.inv(L)
        inv = np.einsum("jdc,jde->jce", Li, Li)
        ok = np.isfinite(inv).all(axis=(1, 2))
    except np.linalg.LinAlgError:
        ok = np.zeros(B.shape[0], dtype=bool)
        inv = np.zeros_like(B)
        for j in range(B.shape[0]):
            try:
                Lj = np.linalg.cholesky(A[j])
                Lij = np.linalg.inv(Lj)
                inv[j] = Lij.T @ Lij
                ok[j] = bool(np.isfinite(inv[j]).all())
            except np.linalg.LinAlgError:
                pass
    if not ok.all():
        dg = np.diagonal(Mb, axis1=1, axis2=2)
        bad = ~ok
        Mb[bad] = dg[bad][:, :, None] * eye
        inv[bad] = np.where(fr[bad], 1.0 / np.where(fr[bad], dg[bad], 1.0), 0.0)[:, :, None] * eye
    inv *= mask
    return inv, Mb


def _preconditioner(X, Pa, P32, fr, gnorm):
    r"""The damping :math:`\mu` and the preconditioner of conjugate gradients on the face:
    ``(mu, M^{-1} x, M x)``, :math:`M` the class blocks (:func:`_block_inverse`) or, with
    :data:`CLASS_BLOCKS` off, the diagonal of the Hessian plus :math:`\mu`."""
    if CLASS_BLOCKS:
        Bk = _class_blocks(X, Pa, P32)
        hdiag = np.diagonal(Bk, axis1=1, axis2=2)
    else:
        hdiag = (X.T @ (Pa * (1.0 - P32))).astype(np.float64)
    hbar = max(float(hdiag[fr].mean()), 1e-300)
    mu = hbar * max(MU_MIN * min(1.0, gnorm), 1e-12)
    if CLASS_BLOCKS:
        Binv, Mb = _block_inverse(Bk, fr, mu)
        return (
            mu,
            lambda x: np.einsum("jcd,jd->jc", Binv, x),
            lambda x: np.einsum("jcd,jd->jc", Mb, x),
        )
    Md = np.where(fr, hdiag + mu, 0.0)
    Minv = np.where(fr, 1.0 / np.where(fr, Md, 1.0), 0.0)
    return mu, (lambda x: Minv * x), (lambda x: Md * x)


def face_hessian(
    Db: np.ndarray, a: np.ndarray, Pm: np.ndarray, fr: np.ndarray, chunk: int | None = None
) -> np.ndarray:
    r"""The Hessian of the softmax loss on the free coordinates of a face, formed explicitly.

    For the free coordinates :math:`f = (j, c)` (``fr[j, c]`` True, in row-major order of
    ``fr``)

    .. math::

        H_{(j,c),(k,c')} = \sum_i d_{ij} d_{ik}\, a_i\big(p_{ic}[c = c'] - p_{ic}p_{ic'}\big),

    accumulated in float64 over row chunks as one product per pair of classes: weights
    :math:`a_i p_{ic}(1 - p_{ic})` on the diagonal class blocks and :math:`-a_i p_{ic} p_{ic'}`
    off them, each nonnegative, so no difference of nearly equal terms is formed (at
    :math:`p_{ic}` near 1, :math:`p_{ic} - p_{ic}^2` would lose its digits). Cost about
    :math:`n F^2 / 2` multiply-adds for ``F`` free coordinates, ``8 F^2`` bytes.

    Parameters
    ----------
    Db : ndarray (n, s)
        The block's columns (any float dtype; binary for spike dictionaries).
    a : ndarray (n,)
        Row weights.
    Pm : ndarray (n, C)
        Probabilities at the current point.
    fr : ndarray (s, C) bool
        Free coordinates.
    chunk : int, optional
        Rows per chunk; default :data:`EXPLICIT_CHUNK`.

    Returns
    -------
    ndarray (F, F) float64
    """
    chunk = EXPLICIT_CHUNK if chunk is None else int(chunk)
    n = Db.shape[0]
    C = fr.shape[1]
    flat = np.flatnonzero(fr.reshape(-1))
    js, cs = flat // C, flat % C
    order = np.argsort(cs, kind="stable")  # class-sorted position -> face position
    bounds = np.searchsorted(cs[order], np.arange(C + 1))
    cls = [c for c in range(C) if bounds[c + 1] > bounds[c]]
    jcols = {c: js[order[bounds[c] : bounds[c + 1]]] for c in cls}
    F = flat.size
    Hs = np.zeros((F, F))
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        Dc = np.asarray(Db[r0:r1], dtype=np.float64)
        Pc = np.asarray(Pm[r0:r1], dtype=np.float64)
        ac = a[r0:r1]
        X = {c: Dc[:, jcols[c]] for c in cls}
        for ic, c in enumerate(cls):
            sc = slice(bounds[c], bounds[c + 1])
            w = ac * Pc[:, c] * (1.0 - Pc[:, c])
            Hs[sc, sc] += (X[c] * w[:, None]).T @ X[c]
            Y = X[c] * (ac * Pc[:, c])[:, None]
            for c2 in cls[ic + 1 :]:
                s2 = slice(bounds[c2], bounds[c2 + 1])
                B = (Y * Pc[:, c2 : c2 + 1]).T @ X[c2]
                Hs[sc, s2] -= B
                Hs[s2, sc] -= B.T
    H = np.empty_like(Hs)
    H[np.ix_(order, order)] = Hs
    return H


class FaceResult:
    """What one face phase hands back: the new point, its product and the step counts."""

    def __init__(self, W, Zt, F, steps, cg, radius, left_face, explicit=0):
        self.W, self.Zt, self.F = W, Zt, F
        self.explicit = explicit
        self.steps, self.cg, self.radius, self.left_face = steps, cg, radius, left_face


def _hvp(Db, Pa, P32, fmask, free, mu, V, full=None):
    r""":math:`(H_{\mathcal F\mathcal F} + \mu I) V` (float32 products with the block).

    On a column whose classes are all free, :math:`H` is zero along :math:`\mathbf 1` (the
    loss does not see a constant added to every class): that component of ``V`` (rows
    ``full``) is removed before the float32 products, so their rounding does not show along
    it where the class-block preconditioner looks closest."""
    if full is not None and full.any():
        V0 = V - full[:, None] * V.mean(axis=1, keepdims=True)
    else:
        V0 = V
    Zv = Db @ (V0.astype(np.float32) * fmask)
    pz = Pa * Zv
    R = pz - P32 * pz.sum(axis=1, keepdims=True)
    return (Db.T @ R).astype(np.float64) * free + mu * V


def face_newton_cg(
    Db: np.ndarray,
    product: Callable[[np.ndarray], np.ndarray],
    gradient: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
    objective: Callable[[np.ndarray, np.ndarray], float],
    W: np.ndarray,
    Zt: np.ndarray,
    Fw: float,
    lam: float,
    a: np.ndarray,
    *,
    max_steps: int,
    radius: float | None = None,
    binary: bool = False,
    on_point: Callable[[np.ndarray, np.ndarray], None] | None = None,
    stop: Callable[[], bool] | None = None,
    log_level: int = logging.DEBUG,
) -> FaceResult:
    r"""Newton-CG steps on the face of ``W`` (see the module docstring).

    Parameters
    ----------
    Db : ndarray (n, s) float32
        The block :math:`D_S` for the Hessian-vector products (the direction need not be exact).
    product : callable
        ``product(W) -> Zt``: :math:`(D_S W)^\top` in float64 (``C x n``).
    gradient : callable
        ``gradient(Zt) -> (P, G, _)``: probabilities ``(n, C)`` and :math:`G = D_S^\top A(P-E)`
        (``s x C``); it also offers the dual candidate to the caller's certificate.
    objective : callable
        ``objective(W, Zt) -> F`` (float64, the true objective).
    W, Zt, Fw
        Starting point, its product and its objective value.
    lam : float
    a : ndarray (n,)
        Row weights.
    max_steps : int
    radius : float, optional
        Starting trust-region radius (in the norm of the preconditioner), carried from phase to
        phase by the caller; default ten diagonal Newton steps.
    binary : bool
        ``Db`` holds only 0 and 1 (its square is itself).
    on_point : callable, optional
        Called with every accepted ``(W, Zt)``.
    stop : callable, optional
        Returns True when the caller's certificate or budget says stop.
    """
    sgn = np.sign(W)
    free = sgn != 0.0
    if not free.any():
        return FaceResult(W, Zt, Fw, 0, 0, radius, False)
    a32 = a.astype(np.float32)[:, None]
    steps = cg_total = explicit = 0
    left = False
    g0 = None
    for _ in range(max_steps):
        Pm, G, _ = gradient(Zt)
        if stop is not None and stop():
            break
        pg = np.where(free, G + lam * sgn, 0.0)
        gnorm = float(np.sqrt((pg * pg).sum()))
        if gnorm == 0.0:
            break
        if g0 is None:
            g0 = gnorm
        elif gnorm <= FACE_RTOL * g0:
            break
        # the face is solved well enough when the constraints off it are violated more: then
        # the support is wrong and the proximal step has more to gain
        viol = np.where(free, 0.0, np.maximum(np.abs(G) - lam, 0.0))
        if steps and gnorm <= FACE_BALANCE * float(np.sqrt((viol * viol).sum())):
            break
        # the Hessian on the face's columns and on the rows that still have curvature (a row
        # with max_c p_ic (1 - p_ic) <= ROW_CURV adds next to nothing; the direction need not be
        # exact, the line search is on the true objective)
        cols = np.flatnonzero(free.any(axis=1))
        rws = np.flatnonzero((Pm * (1.0 - Pm)).max(axis=1) > ROW_CURV)
        Dh = Db[np.ix_(rws, cols)]
        Pa = a32[rws] * Pm[rws].astype(np.float32)
        P32 = Pm[rws].astype(np.float32)
        fr = free[cols]
        fm = fr.astype(np.float32)
        full = fr.all(axis=1) if CLASS_BLOCKS else None
        mu, Minv_apply, M_apply = _preconditioner(Dh if binary else Dh * Dh, Pa, P32, fr, gnorm)

        # Steihaug-Toint conjugate gradients in the norm of the preconditioner M = diag(H) + mu
        d = np.zeros((cols.size, W.shape[1]))
        r = -pg[cols]
        zz = Minv_apply(r)
        p = zz.copy()
        rz = float((r * zz).sum())
        if radius is None:
            radius = 10.0 * math.sqrt(rz)  # ten diagonal Newton steps
        rz0 = rz
        target = min(0.1, math.sqrt(gnorm)) * math.sqrt(rz)
        dMd, dMp, pMp = 0.0, 0.0, rz
        boundary = False
        k = 0
        nf = int(fr.sum())
        use_h = EXPLICIT and nf <= EXPLICIT_MAX_FREE and rws.size * nf * nf <= EXPLICIT_MAX_WORK
        if use_h:
            # the face Hessian formed once (float64): each conjugate-gradient product is then
            # an F x F matrix-vector product instead of two products with the block
            H = face_hessian(Dh, a[rws], Pm[rws], fr)
            explicit += 1
        while k < MAX_CG:
            k += 1
            if use_h:
                Hp = mu * p
                Hp[fr] += H @ p[fr]
            else:
                Hp = _hvp(Dh, Pa, P32, fm, fr, mu, p, full)
            pHp = float((p * Hp).sum())
            alpha = rz / pHp if pHp > 0.0 else math.inf
            if pHp <= 0.0 or dMd + 2 * alpha * dMp + alpha * alpha * pMp >= radius * radius:
                # to the trust-region boundary (also along a direction of no curvature)
                disc = dMp * dMp + pMp * (radius * radius - dMd)
                tau = (-dMp + math.sqrt(max(disc, 0.0))) / pMp
                d += tau * p
                boundary = True
                break
            d += alpha * p
            r -= alpha * Hp
            dMd += 2 * alpha * dMp + alpha * alpha * pMp
            zz = Minv_apply(r)
            rz_new = float((r * zz).sum())
            if math.sqrt(max(rz_new, 0.0)) <= target:
                break
            beta = rz_new / rz
            dMp = beta * (dMp + alpha * pMp)
            pMp = rz_new + beta * beta * pMp
            p = zz + beta * p
            rz = rz_new
        cg_total += k
        d_full = np.zeros_like(W)
        d_full[cols] = d
        d = d_full
        dzt = product(d)
        # the model's predicted decrease, from D d (no further product with D^T)
        pdz = (Pm.T * dzt).sum(axis=0)
        dHd = float((a * ((Pm.T * dzt * dzt).sum(axis=0) - pdz * pdz)).sum())
        pred = -(float((pg * d).sum()) + 0.5 * (dHd + mu * float((d * d).sum())))
        t, accepted, hit = 1.0, False, False
        for _ in range(30):
            Wr = W + t * d
            cross = free & (Wr * sgn <= 0.0)
            Wt = np.where(cross, 0.0, Wr)
            Ztt = product(Wt) if cross.any() else Zt + t * dzt
            Ft = objective(Wt, Ztt)
            if Ft <= Fw + ARMIJO * float((pg * (Wt - W)).sum()) + 4 * _EPS64 * abs(Fw):
                accepted, hit = True, bool(cross.any())
                break
            t *= 0.5
        steps += 1
        rho = (Fw - Ft) / pred if accepted and pred > 0.0 else -1.0
        logger.log(
            log_level,
            "face step %d: F=%.15g face=%d cg=%s res=%.2g t=%.3g radius=%.3g rho=%.3g |g|=%.3g",
            steps,
            Fw,
            int(free.sum()),
            f"{k}H" if use_h else k,
            math.sqrt(max(rz, 0.0) / max(rz0, 1e-300)),
            t,
            radius,
            rho,
            gnorm,
        )
        dc = d[cols]
        step_norm = t * math.sqrt(max(float((dc * M_apply(dc)).sum()), 0.0))
        if t < 1.0 or rho < 0.25:
            radius = max(0.25 * step_norm, 1e-300)
        elif rho > 0.75 and boundary:
            radius *= 2.0
        if not accepted:
            if radius <= 1e-300:
                break
            continue
        if not hit:
            Ztt = product(Wt)  # recomputed from W (no drift of the running product)
            Ft = objective(Wt, Ztt)
        W, Zt, Fw = Wt, Ztt, Ft
        if on_point is not None:
            on_point(W, Zt)
        if hit:
            # coordinates that reached zero leave the face (the proximal step decides whether
            # they come back)
            left = True
            free = free & (W != 0.0)
            sgn = np.sign(W)
            if not free.any():
                break
    return FaceResult(W, Zt, Fw, steps, cg_total, radius, left, explicit)
