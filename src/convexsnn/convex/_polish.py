r"""Polishing: exact re-solves on an identified support / basis (elementwise l1 only).

Near the optimum first-order methods identify the support :math:`S` of :math:`W` (and, for the
hinge, which margins are active) long before they reach a tight gap. On that face the optimality
conditions are *linear* and are solved directly; the candidates are then evaluated honestly (primal
value, and dual value after rescaling into the feasible set), so a wrong guess costs time but never
correctness. All solves use the pseudo-inverse (minimum-norm least squares), which also handles
duplicate columns.

Squared + l1, per output :math:`c` with support :math:`S` and signs :math:`\sigma`:

.. math:: (D_S^\top A D_S)\, w_S = D_S^\top A y_c - \lambda \sigma.

Hinge + l1, per output :math:`c`, margins :math:`m = y_c \circ (DW)_c`, active rows
:math:`E = \{|m_i - 1| \le \delta\}`, violated :math:`V = \{m_i < 1 - \delta\}`, slack
:math:`N = \{m_i > 1 + \delta\}`:

* primal: the minimum-norm correction of :math:`W_S` with :math:`y_E \circ (D_{E,S} W_S) = 1`;
* dual: :math:`\alpha_V = 1`, :math:`\alpha_N = 0` and :math:`\alpha_E` the minimum-norm
  correction with :math:`D_{E,S}^\top (a_E y_E \alpha_E) = \lambda \sigma - D_{V,S}^\top (a_V y_V)`
  (stationarity on the support), clipped to :math:`[0, 1]`.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from ._cd_numba import fill_grown_inverse
from .datafits import SoftmaxCrossEntropy
from .penalties import L1, dual_scale

__all__ = [
    "polish_squared_l1",
    "polish_hinge_l1",
    "polish_newton",
    "can_polish",
    "guarded_spd_solve",
]

logger = logging.getLogger("convexsnn")

HINGE_DELTAS = (1e-8, 1e-6, 1e-4, 1e-2)


def can_polish(op) -> bool:
    """Polishing needs column access: the operator must provide ``columns`` and ``dense``."""
    return callable(getattr(op, "columns", None)) and callable(getattr(op, "dense", None))


def _cols(op, idx: torch.Tensor) -> torch.Tensor:
    return op.columns(idx).dense()


def guarded_spd_solve(
    Gm: torch.Tensor, rhs: torch.Tensor, rcond: float = 1e-10, eig_max_size: int = 1024
) -> torch.Tensor | None:
    r"""Solve :math:`G x = b` for a symmetric positive semi-definite :math:`G`, guarding against
    near-singular systems.

    A Cholesky factorisation is used only when it is well conditioned: its smallest pivot and an
    inverse-iteration estimate of :math:`\lambda_{\min}(G)` (a few solves with the factor, which
    converge to it from above) are both at least ``rcond`` times :math:`\lambda_{\max}` (bounded by
    the largest row sum). Otherwise (rank-deficient or nearly so, e.g. duplicate or nearly
    collinear columns on the support) the minimum-norm least-squares solution is formed from the
    eigendecomposition with eigenvalues below ``rcond`` :math:`\lambda_{\max}` dropped (up to
    ``eig_max_size`` unknowns), or from the Tikhonov-regularised system
    :math:`(G + \rho\,\lambda_{\max} I) x = b`, :math:`\rho` = ``rcond`` (larger systems).
    Cholesky alone accepted a system with :math:`\lambda_{\min} \approx 10^{-17}` and returned
    weights of :math:`\sim 10^{13}`. Returns ``None`` when no finite solution comes out; callers
    still evaluate the candidate and keep it only if it lowers the objective.
    """
    k = Gm.shape[0]
    if k == 0:
        return torch.zeros(0, dtype=rhs.dtype, device=rhs.device)
    b = rhs.reshape(-1, 1)
    lmax = float(Gm.abs().sum(dim=1).max())
    if not math.isfinite(lmax) or lmax <= 0.0:
        return None
    floor = rcond * lmax
    Lc, info = torch.linalg.cholesky_ex(Gm)
    if int(info) == 0 and float(Lc.diagonal().min()) ** 2 >= floor:
        v = torch.linspace(1.0, 2.0, k, dtype=Gm.dtype, device=Gm.device).reshape(-1, 1)
        v = v * torch.where(torch.arange(k, device=Gm.device) % 2 == 0, 1.0, -1.0).to(
            Gm.dtype
        ).reshape(-1, 1)
        est = math.inf
        for _ in range(4):
            v = v / torch.linalg.vector_norm(v)
            z = torch.cholesky_solve(v, Lc)
            nz = float(torch.linalg.vector_norm(z))
            if not math.isfinite(nz) or nz == 0.0:
                est = 0.0
                break
            est = 1.0 / nz
            v = z
        if est >= floor:
            x = torch.cholesky_solve(b, Lc)[:, 0]
            if bool(torch.isfinite(x).all()):
                return x
    if k <= eig_max_size:
        evals, evecs = torch.linalg.eigh(Gm)
        keep = evals > floor
        inv = torch.where(
            keep, 1.0 / torch.where(keep, evals, torch.ones_like(evals)), torch.zeros_like(evals)
        )
        x = evecs @ (inv[:, None] * (evecs.T @ b))
    else:
        Gr = Gm.clone()
        Gr.diagonal().add_(floor)
        Lc, info = torch.linalg.cholesky_ex(Gr)
        if int(info) != 0:
            return None
        x = torch.cholesky_solve(b, Lc)
    x = x[:, 0]
    return x if bool(torch.isfinite(x).all()) else None


def minnorm_solve(A: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Minimum-norm least-squares solution of :math:`A x = r` (Cholesky on the smaller Gram
    matrix, falling back to the pseudo-inverse when it is singular)."""
    m, k = A.shape
    if m == 0 or k == 0:
        return torch.zeros(k, dtype=A.dtype, device=A.device)
    G = A.T @ A if m >= k else A @ A.T
    G.diagonal().add_(1e-13 * float(G.diagonal().abs().max()))
    L, info = torch.linalg.cholesky_ex(G)
    if int(info) == 0:
        if m >= k:
            x = torch.cholesky_solve((A.T @ r)[:, None], L)[:, 0]
        else:
            x = A.T @ torch.cholesky_solve(r[:, None], L)[:, 0]
        if bool(torch.isfinite(x).all()) and float(torch.linalg.vector_norm(A @ x - r)) <= 1e-6 * (
            1 + float(r.abs().max())
        ):
            return x
    return torch.linalg.pinv(A) @ r


def basis_solve(
    X: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    lam: float,
    w: torch.Tensor,
    alpha: torch.Tensor,
    S: torch.Tensor,
    sign: torch.Tensor,
    E: torch.Tensor,
    V: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Exact hinge + l1 solution on a guessed basis, for one output column.

    ``X`` is the dictionary restricted to the candidate columns (``n x k``), ``S`` indexes the
    guessed support inside them with signs ``sign``, ``E`` / ``V`` are boolean masks of the active
    (margin 1) and violated rows (the others are slack). Returns the primal candidate (``w``
    corrected by the minimum-norm change with :math:`y_E \circ (X_{E,S} w_S) = 1`, zero off ``S``)
    and the dual candidate (:math:`\tilde\alpha_V = 1`, slack rows 0, :math:`\tilde\alpha_E` the
    minimum-norm correction of ``alpha`` solving :math:`X_{E,S}^\top (a y \tilde\alpha)_E =
    \lambda\,\mathrm{sign} - X_{V,S}^\top (a y)_V`, clipped to [0, 1]).
    """
    wn = torch.zeros_like(w)
    an = torch.zeros_like(alpha)
    an[V] = 1.0
    if S.numel() == 0 or not bool(E.any()):
        an[E] = alpha[E]
        return wn, an
    XS = X[:, S]
    XE = XS[E]
    yE = y[E]
    A = yE[:, None] * XE
    w0 = w[S]
    wn[S] = w0 + minnorm_solve(A, 1.0 - A @ w0)
    ya = a * y
    B = (XE * ya[E, None]).T
    t = lam * sign - XS[V].T @ ya[V]
    aE = alpha[E]
    aE = aE + minnorm_solve(B, t - B @ aE)
    an[E] = aE.clamp(0.0, 1.0)
    return wn, an


def _active_sets(
    m: torch.Tensor, k: int, deltas, alpha: torch.Tensor | None = None
) -> list[torch.Tensor]:
    r"""Guesses of the active rows :math:`E` (margins at 1): fixed tolerances ``deltas``, the
    ``k`` = support-size rows closest to 1 (a non-degenerate basis has :math:`|E| = |S|`), the
    split at the largest jump of :math:`\log |m_i - 1|` among the closest rows, and (with the box
    variables ``alpha``) the rows whose :math:`\alpha_i` is strictly inside (0, 1), alone and
    intersected with the previous guesses (complementary slackness: :math:`0 < \alpha_i < 1`
    forces :math:`m_i = 1`)."""
    d = (m - 1.0).abs()
    out = [d <= delta for delta in deltas]
    n = d.numel()
    sd, order = torch.sort(d)
    if 0 < k < n:
        E = torch.zeros_like(d, dtype=torch.bool)
        E[order[:k]] = True
        out.append(E)
    top = min(n, 4 * k + 16)
    if top >= 2:
        ld = torch.log(sd[:top] + 1e-300)
        jumps = ld[1:] - ld[:-1]
        i = int(torch.argmax(jumps))
        out.append(d <= sd[i])
    if alpha is not None:
        inner = (alpha > 0) & (alpha < 1)
        out.append(inner)
        out.append(inner & (d <= sd[i]) if top >= 2 else inner)
        for delta in deltas[-2:]:
            out.append(inner & (d <= delta))
    uniq: list[torch.Tensor] = []
    for E in out:
        if not any(torch.equal(E, F) for F in uniq):
            uniq.append(E)
    return uniq


def polish_squared_l1(op, datafit, penalty, lam: float, W: torch.Tensor) -> list[torch.Tensor]:
    r"""Candidate readout from the normal equations on the support of ``W`` (squared + l1).

    Two supports per output column: the non-zeros of ``W``, and those without the entries whose
    dual constraint is clearly slack (:math:`|D_j^\top \nabla f| < (1 - 10^{-3})\lambda`; such
    entries are zero at the optimum). Each column keeps the best of (current, polished, pruned and
    polished) by its part of the (column-separable) objective.
    """
    if not can_polish(op) or not isinstance(penalty, L1):
        return []
    Wc = W.clone()
    a = datafit.weights.reshape(-1, 1)
    a64 = a.to(torch.float64)
    Y = datafit.Y
    rows = (W != 0).any(dim=1)
    if not bool(rows.any()):
        return []
    R = torch.nonzero(rows, as_tuple=False)[:, 0]
    XR = _cols(op, R)
    G = XR.T @ datafit.gradient(op.matmul(W))
    changed = False
    for c in range(W.shape[1]):
        nzc = W[R, c] != 0
        if not bool(nzc.any()):
            continue
        supports = [nzc]
        tight = nzc & (G[:, c].abs() >= (1 - 1e-3) * lam)
        if not torch.equal(tight, nzc) and bool(tight.any()):
            supports.append(tight)
        cands = [W[R, c]]
        for sup in supports:
            X = XR[:, sup]
            Xa = X * a
            Gm = X.T @ Xa
            rhs = Xa.T @ Y[:, c] - lam * torch.sign(W[R[sup], c])
            w = guarded_spd_solve(Gm, rhs)
            if w is not None:
                full = torch.zeros_like(W[R, c])
                full[sup] = w
                cands.append(full)
        if len(cands) == 1:
            continue
        Wk = torch.stack(cands, dim=1)
        Z = XR @ Wk
        vals = 0.5 * (a64 * (Z - Y[:, c : c + 1]).to(torch.float64).square()).sum(
            0
        ) + lam * Wk.abs().sum(0, dtype=torch.float64)
        k = int(torch.argmin(vals))
        if k > 0:
            Wc[R, c] = cands[k]
            changed = True
    return [Wc] if changed else []


def polish_hinge_l1(
    op,
    datafit,
    penalty,
    lam: float,
    W: torch.Tensor,
    DW: torch.Tensor,
    alpha: torch.Tensor,
    GT: torch.Tensor | None = None,
    deltas=HINGE_DELTAS,
    dual_tight=(1e-6, 1e-4, 1e-2),
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    r"""Primal and dual candidates on the identified basis (hinge + l1).

    Support guesses: the support of ``W`` (signs of ``W``) and, when ``GT`` =
    :math:`D^\top(a \circ y \circ \alpha)` is given, the columns whose dual constraint is
    nearly tight, :math:`|G_{jc}| \ge \lambda (1 - \rho)` (signs of :math:`G`). Active-row
    guesses: see :func:`_active_sets`. Every (support, active rows) pair gives a primal and a dual
    candidate per output column; the column-separable primal value and the column-wise scaled dual
    value pick the best per column (the current point included), and the columns are recombined.
    """
    if not can_polish(op) or not isinstance(penalty, L1):
        return [], []
    Y, a = datafit.Y, datafit.weights
    a64 = a.to(torch.float64)
    M = Y * DW
    P, C = W.shape
    Wc, ac = W.clone(), alpha.clone()
    w_changed = a_changed = False
    for c in range(C):
        m = M[:, c]
        y = Y[:, c]
        ya = a * y
        supports = []
        Sw = torch.nonzero(W[:, c], as_tuple=False)[:, 0]
        supports.append((Sw, torch.sign(W[Sw, c])))
        if GT is not None:
            g = GT[:, c]
            for rho in dual_tight:
                Sg = torch.nonzero(g.abs() >= lam * (1.0 - rho), as_tuple=False)[:, 0]
                if not any(torch.equal(Sg, T) for T, _ in supports):
                    supports.append((Sg, torch.sign(g[Sg])))
        union = torch.unique(torch.cat([S for S, _ in supports]))
        XU = _cols(op, union) if union.numel() else None
        pos = torch.full((P,), -1, dtype=torch.long, device=W.device)
        if union.numel():
            pos[union] = torch.arange(union.numel(), device=W.device)
        w_list = [W[:, c]]
        a_list = [alpha[:, c]]
        for S, sg in supports:
            X = XU[:, pos[S]] if S.numel() else None
            for E in _active_sets(m, int(S.numel()), deltas, alpha[:, c]):
                V = (m < 1.0) & ~E
                N = (m > 1.0) & ~E
                al = alpha[:, c].clone()
                al[V] = 1.0
                al[N] = 0.0
                if X is not None and bool(E.any()):
                    XE = X[E]
                    A = y[E, None] * XE
                    w0 = W[S, c]
                    w = w0 + minnorm_solve(A, 1.0 - A @ w0)
                    if bool(torch.isfinite(w).all()):
                        wf = torch.zeros_like(W[:, c])
                        wf[S] = w
                        w_list.append(wf)
                    B = (XE * ya[E, None]).T
                    t = lam * sg - X[V].T @ ya[V]
                    aE = al[E]
                    aE = aE + minnorm_solve(B, t - B @ aE)
                    al[E] = aE.clamp(0.0, 1.0)
                if bool(torch.isfinite(al).all()):
                    a_list.append(al)
        if len(w_list) > 1:
            Wk = torch.stack(w_list, dim=1)
            Z = op.matmul(Wk)
            vals = (a64[:, None] * torch.relu(1.0 - y[:, None] * Z).to(torch.float64)).sum(
                0
            ) + lam * Wk.abs().sum(0, dtype=torch.float64)
            k = int(torch.argmin(vals))
            if k > 0:
                Wc[:, c] = w_list[k]
                w_changed = True
        if len(a_list) > 1:
            Al = torch.stack(a_list, dim=1)
            Gk = op.rmatmul(ya[:, None] * Al)
            sc = dual_scale(penalty, lam, Gk, per_column=True).to(torch.float64)
            dv = sc * (a64[:, None] * Al.to(torch.float64)).sum(0)
            k = int(torch.argmax(dv))
            if k > 0:
                ac[:, c] = a_list[k]
                a_changed = True
    return ([Wc] if w_changed else []), ([ac] if a_changed else [])


def polish_newton(
    op,
    datafit,
    penalty,
    lam: float,
    W: torch.Tensor,
    *,
    newton_steps: int = 6,
    cg_iter: int = 100,
    prune: bool = True,
) -> list[torch.Tensor]:
    r"""Newton-CG on the support of ``W`` for the smooth datafits (squared, softmax).

        On the support (the non-zero entries for l1, with their signs fixed; the non-zero rows for
        l2,1) the objective is smooth:

        .. math::

            \phi(W_S) = f(D_S W_S) + \lambda \sum_{(j,c) \in S} \sigma_{jc} W_{jc}
            \quad\text{or}\quad f(D_S W_S) + \lambda \sum_{j \in S} \lVert W_j
    Vert_2 .

        Each Newton direction solves :math:`
    abla^2 \phi\, d = -
    abla \phi` by conjugate gradients
        with Hessian-vector products (two products with :math:`D_S` each); the step is
        backtracked on the true objective. With ``prune`` a second candidate first drops the entries
        (rows for l2,1) whose dual constraint is clearly slack, :math:`\rho(D^\top \nabla f) <
        (1 - 10^{-3}) \lambda`: they are zero at the optimum, and keeping them (tiny but non-zero) makes
        the smooth model ill-conditioned. Returns the improved points (empty list if no progress).
    """
    if not callable(getattr(op, "columns", None)) or not hasattr(datafit, "hessian_vec"):
        return []
    if prune:
        rows = (W != 0).any(dim=1)
        if bool(rows.any()):
            R = torch.nonzero(rows, as_tuple=False)[:, 0]
            sub = op.columns(R)
            G = sub.rmatmul(datafit.gradient(op.matmul(W)))
            if penalty.elementwise:
                slack = (G.abs() < (1 - 1e-3) * lam) & (W[R] != 0)
            else:
                slack = (torch.linalg.vector_norm(G, dim=1) < (1 - 1e-3) * lam)[:, None] & (
                    W[R] != 0
                )
            if bool(slack.any()):
                Wp = W.clone()
                Wp[R] = torch.where(slack, torch.zeros_like(W[R]), W[R])
                return _newton_on_support(
                    op, datafit, penalty, lam, Wp, newton_steps, cg_iter, always=True
                )
    return _newton_on_support(op, datafit, penalty, lam, W, newton_steps, cg_iter)


def _newton_on_support(op, datafit, penalty, lam, W, newton_steps, cg_iter, always=False):
    rows = (W != 0).any(dim=1)
    if not bool(rows.any()):
        return []
    R = torch.nonzero(rows, as_tuple=False)[:, 0]
    sub = op.columns(R)
    Ws = W[R].clone()
    l1 = penalty.elementwise
    mask = (Ws != 0).to(Ws.dtype) if l1 else torch.ones_like(Ws)
    sign = torch.sign(Ws)

    def objective(Wx, Zx):
        return float(datafit.value(Zx)) + lam * float(penalty.value(Wx))

    Z = sub.matmul(Ws)
    F = objective(Ws, Z)
    F0 = F
    improved_any = False
    g_first = None
    tiny = torch.finfo(Ws.dtype).tiny
    for _ in range(newton_steps):
        probs = torch.softmax(Z, dim=1) if isinstance(datafit, SoftmaxCrossEntropy) else None
        g = sub.rmatmul(datafit.gradient(Z))
        if l1:
            g = (g + lam * sign) * mask
            nrm = None
        else:
            nrm = torch.linalg.vector_norm(Ws, dim=1, keepdim=True).clamp_min(tiny)
            g = g + lam * Ws / nrm

        def hv(V):
            HV = (
                datafit.hessian_vec(Z, sub.matmul(V), probs)
                if probs is not None
                else datafit.hessian_vec(Z, sub.matmul(V))
            )
            out = sub.rmatmul(HV)
            if l1:
                return out * mask
            u = Ws / nrm
            return out + lam * (V - u * (u * V).sum(dim=1, keepdim=True)) / nrm

        # Jacobi-preconditioned conjugate gradients on H d = -g
        if probs is not None:
            curv = datafit.weights[:, None] * probs * (1.0 - probs)
        else:
            curv = datafit.weights[:, None].expand(-1, Ws.shape[1])
        hdiag = sub.rmatmul(curv)  # D_j^T diag(a p (1 - p)) D_j (binary D: D^2 = D)
        if not l1:
            hdiag = hdiag + lam / nrm
        minv = 1.0 / hdiag.clamp_min(1e-12 * float(hdiag.max()) + 1e-300)
        d = torch.zeros_like(Ws)
        r = -g
        rr0 = float((r * r).sum())
        if rr0 == 0.0 or math.sqrt(rr0) <= 1e-12 * lam * math.sqrt(float(mask.sum())):
            break  # stationary to rounding accuracy
        if g_first is None:
            g_first = math.sqrt(rr0)
        # inexact Newton: relative CG accuracy shrinking with the gradient (superlinear steps)
        forcing = min(1e-2, max(1e-12, math.sqrt(rr0) / g_first))
        zv = minv * r
        p = zv.clone()
        rz = float((r * zv).sum())
        for _k in range(cg_iter):
            Hp = hv(p)
            pHp = float((p * Hp).sum())
            if pHp <= 0:
                break
            alpha = rz / pHp
            d = d + alpha * p
            r = r - alpha * Hp
            rr_new = float((r * r).sum())
            if rr_new <= forcing * forcing * rr0:
                break
            zv = minv * r
            rz_new = float((r * zv).sum())
            p = zv + (rz_new / rz) * p
            rz = rz_new
        if not bool(torch.isfinite(d).all()) or float(d.abs().max()) == 0.0:
            break
        pred = -float((g * d).sum())  # predicted decrease x 2 of the quadratic model
        t, accepted = 1.0, False
        if 0.0 <= pred <= 1e-11 * abs(F):
            # below the resolution of F: judge the full step by the gradient norm instead
            Wt = Ws + d
            Zt = sub.matmul(Wt)
            gt = sub.rmatmul(datafit.gradient(Zt))
            if l1:
                gt = (gt + lam * sign) * mask
            else:
                gt = gt + lam * Wt / torch.linalg.vector_norm(Wt, dim=1, keepdim=True).clamp_min(
                    tiny
                )
            if float((gt * gt).sum()) < rr0:
                Ft = objective(Wt, Zt)
                accepted = Ft <= F + 1e-14 * abs(F)
        else:
            for _ls in range(20):
                Wt = Ws + t * d
                Zt = sub.matmul(Wt)
                Ft = objective(Wt, Zt)
                if Ft < F:
                    accepted = True
                    break
                t *= 0.5
        if not accepted:
            break
        dec = F - Ft
        Ws, Z, F = Wt, Zt, Ft
        if l1:  # entries pushed through zero leave the support
            mask = mask * (torch.sign(Ws) == sign).to(Ws.dtype)
            Ws = Ws * mask
            Z = sub.matmul(Ws)
            F = objective(Ws, Z)
        if dec <= 1e-15 * abs(F) and pred > 1e-11 * abs(F):
            break
        improved_any = True
    if not (F < F0 or improved_any) and not always:
        return []
    out = W.clone()
    out[R] = Ws
    return [out]


def _ridge_cholesky(Hss: torch.Tensor) -> torch.Tensor | None:
    r"""Cholesky factor of :math:`H_{SS} + \rho I` with the smallest :math:`\rho \in \{10^{-12},
    10^{-9}, 10^{-6}, 10^{-3}\} \cdot \max_j H_{jj}` that factorises (``None`` if none does)."""
    top = float(Hss.diagonal().max()) if Hss.shape[0] else 0.0
    if not math.isfinite(top) or top <= 0.0:
        return None
    for rho in (1e-12, 1e-9, 1e-6, 1e-3):
        M = Hss.clone()
        M.diagonal().add_(rho * top)
        Lc, info = torch.linalg.cholesky_ex(M)
        if int(info) == 0 and bool(torch.isfinite(Lc.diagonal()).all()):
            return Lc
    return None


def newton_support_l1(
    H, B, W, HW, lam: float, max_steps: int = 3, outputs=None
) -> tuple[float, float]:
    r"""Active-set Newton steps for squared + l1 in Gram form, in place on ``W`` and ``HW``.

    Per output column :math:`c` with support :math:`S` and signs :math:`\sigma` of :math:`w = W_c`,
    the objective restricted to the orthant of :math:`\sigma` is the quadratic
    :math:`q(w) = \tfrac12 w^\top H w - (b - \lambda\sigma)^\top w` (plus a constant). With the
    residual :math:`r = b_S - \lambda\sigma_S - (Hw)_S` (the negative gradient of :math:`q` on
    :math:`S`), the direction solves :math:`(H_{SS} + \rho I) d = r` (Cholesky; the ridge
    :math:`\rho` is as small as the factorisation allows: on a rank-deficient support it turns the
    direction into one along which :math:`q` decreases without bound, so the step ends at a sign
    change and drops a column, as in the homotopy method). Steps tried, on the true objective
    :math:`F(w) = \tfrac12 w^\top Hw - b^\top w + \lambda\lVert w\rVert_1` (Gram form, exact change
    :math:`\Delta F = (Hw - b)^\top\delta + \tfrac12\delta^\top H\delta + \lambda(\lVert
    w+\delta\rVert_1 - \lVert w\rVert_1)`):

    * :math:`t_\sigma`, the first sign change along :math:`d` (that entry set to zero), where
      :math:`F = q` decreases (:math:`r^\top d > 0`): a guaranteed descent;
    * the exact minimiser :math:`t_q = r^\top d / d^\top H d` and :math:`t_q/2^k` with the entries
      that changed sign set to zero (projected steps, which drop several columns at once).

    The best of them is taken when it lowers :math:`F`; a column whose step stopped at a sign
    change is stepped again (at most ``max_steps`` factorisations per column). Entries outside
    :math:`S` stay zero (coordinate descent adds them). ``outputs``: the output columns to step
    (default all). Returns the total decrease of :math:`F` and the work done, in the units of a
    coordinate-descent update (one multiply-add of a sweep): :math:`k^3/12` per factorisation (a
    quarter of its :math:`k^3/3` multiply-adds: blocked factorisations run faster per operation
    than the sweeps' vector updates; the weight was set on the XOR T=11 ``CVX-wide`` proxy) plus
    the :math:`O(k^2)` solves and trial steps.
    ``H`` (``(s, s)``), ``B``, ``W``, ``HW`` (``(s, C)``) are float64 numpy arrays.
    """
    Ht = torch.from_numpy(H)
    total = 0.0
    work = 0.0
    for c in range(W.shape[1]) if outputs is None else outputs:
        for _ in range(max_steps):
            w_all = W[:, c]
            S_np = np.flatnonzero(w_all)
            k = S_np.size
            if k == 0:
                break
            S = torch.from_numpy(S_np)
            w = torch.from_numpy(w_all[S_np].copy())
            sg = torch.sign(w)
            g = torch.from_numpy(HW[S_np, c] - B[S_np, c])  # gradient of the smooth part on S
            r = -(g + lam * sg)
            if float(r.abs().max()) <= 1e-15 * (float(torch.from_numpy(B[:, c]).abs().max()) + lam):
                break
            Hss = Ht.index_select(0, S).index_select(1, S)
            work += k**3 / 12.0 + 12.0 * k * k + H.shape[0] * k
            Lc = _ridge_cholesky(Hss)
            if Lc is None:
                break
            d = torch.cholesky_solve(r[:, None], Lc)[:, 0]
            if not bool(torch.isfinite(d).all()):
                break
            Hd = Hss @ d
            slope, curv = float(r @ d), float(d @ Hd)
            if not slope > 0.0:
                break
            neg = (w * d) < 0
            t_sig = math.inf
            j_sig = -1
            if bool(neg.any()):
                ratios = torch.where(neg, -w / torch.where(neg, d, torch.ones_like(d)), math.inf)
                j_sig = int(torch.argmin(ratios))
                t_sig = float(ratios[j_sig])
            t_q = slope / curv if curv > 0.0 else math.inf

            def change(delta: torch.Tensor) -> float:
                Hdel = Hss @ delta
                return float(
                    g @ delta
                    + 0.5 * (delta @ Hdel)
                    + lam * ((w + delta).abs().sum() - w.abs().sum())
                )

            cands: list[tuple[float, torch.Tensor, bool]] = []
            if math.isfinite(t_sig) and t_sig <= t_q:
                delta = t_sig * d
                delta[j_sig] = -w[j_sig]  # exactly zero
                cands.append((change(delta), delta, True))
            if math.isfinite(t_q):
                t = t_q
                for _k in range(6 if math.isfinite(t_sig) and t_sig < t_q else 1):
                    if t <= t_sig:
                        break
                    wn = w + t * d
                    wn = torch.where(wn * sg > 0, wn, torch.zeros_like(wn))
                    delta = wn - w
                    cands.append((change(delta), delta, False))
                    t *= 0.5
                if t_q <= t_sig:
                    delta = t_q * d
                    cands.append((change(delta), delta, False))
            if not cands:
                break
            dF, delta, at_sign = min(cands, key=lambda x: x[0])
            if not dF < 0.0:
                break
            total -= dF
            dn = delta.numpy()
            W[S_np, c] += dn
            if at_sign:
                W[S_np[j_sig], c] = 0.0
            HW[:, c] += H[S_np].T @ dn  # (H symmetric: rows are read contiguously)
            if not at_sign:
                break
    return total, work


#: relative ridge of the shared inverse :math:`(H + \rho I)^{-1}` (times :math:`\max_j H_{jj}`)
SHARED_RIDGE = 1e-10
#: a Newton point larger than this times the problem's scale is treated as unbounded
BLOWUP = 1e3


def _shared_inverse(H: np.ndarray, state: dict) -> np.ndarray | None:
    r""":math:`(H + \rho I)^{-1}` (``rho`` = :data:`SHARED_RIDGE` :math:`\max_j H_{jj}`), formed
    once and kept in ``state["inverse"]``; ``None`` when it does not fit in memory or the factor
    fails."""
    if "inverse" in state:
        return state["inverse"]
    from .linear_operator import available_memory

    s = H.shape[0]
    avail = available_memory()
    if avail is not None and 3 * 8 * s * s > 0.5 * avail:
        logger.info(
            "active-set steps: the shared inverse of %d columns needs %.2f GiB (3 float64 "
            "blocks), more than half of the %.2f GiB available; faces solved one by one",
            s,
            3 * 8 * s * s / 2**30,
            avail / 2**30,
        )
        state["inverse"] = None
        return None
    top = float(np.max(np.diag(H))) if s else 0.0
    prev = state.pop("previous", None)
    if prev is not None:
        inv = _grown_inverse(H, *prev)
        if inv is not None:
            state["inverse"], state["ridge"] = inv, prev[1]
            return inv
    M = torch.from_numpy(H).clone()
    M.diagonal().add_(SHARED_RIDGE * top)
    Lc, info = torch.linalg.cholesky_ex(M)
    del M
    if int(info) != 0 or not bool(torch.isfinite(Lc.diagonal()).all()):
        state["inverse"] = None
        return None
    inv = torch.cholesky_inverse(Lc).numpy()
    del Lc
    state["inverse"] = inv
    state["ridge"] = SHARED_RIDGE * top
    return inv


def _grown_inverse(
    H: np.ndarray, inv_old: np.ndarray, ridge: float, pos: np.ndarray
) -> np.ndarray | None:
    r""":math:`(H + \rho I)^{-1}` from the inverse of its principal block on the positions
    ``pos`` (the previous working set, in the same order), by the block inverse with the Schur
    complement :math:`S = C - B^\top A^{-1} B` of the new columns:
    :math:`O(m^2 k + k^3)` for :math:`m` old and :math:`k` new columns instead of
    :math:`O((m + k)^3)`. Less accurate than a fresh inverse (errors grow like
    :math:`\kappa^{3/2}\epsilon` against :math:`\kappa\epsilon`): the solves refine against
    :math:`H` and every step is judged on the true objective. ``None`` when :math:`S` does not
    factorise (the caller recomputes). ``inv_old`` is overwritten (it is replaced by the result,
    or, on failure, recomputed by the caller)."""
    s = H.shape[0]
    fresh = np.setdiff1d(np.arange(s), pos)
    if fresh.size == 0:
        return inv_old[np.ix_(np.argsort(pos), np.argsort(pos))] if pos.size == s else None
    # (products in place through torch's addmm_ and the blocks written by one compiled pass:
    # no fancy-index temporaries; this saves memory, not time: the growth is flop-bound,
    # benchmarks/bench_dictionary.py gram)
    Bm = H[np.ix_(pos, fresh)]
    T = inv_old @ Bm  # A^-1 B (m, k)
    Sch = H[np.ix_(fresh, fresh)]
    torch.from_numpy(Sch).addmm_(torch.from_numpy(Bm).T, torch.from_numpy(T), alpha=-1.0)
    del Bm
    Sch = 0.5 * (Sch + Sch.T)
    Sch[np.diag_indices_from(Sch)] += ridge
    Ls, info = torch.linalg.cholesky_ex(torch.from_numpy(Sch))
    del Sch
    if int(info) != 0 or not bool(torch.isfinite(Ls.diagonal()).all()):
        return None
    Sinv = torch.cholesky_inverse(Ls).numpy()
    del Ls
    TS = T @ Sinv  # (m, k)
    A = inv_old  # overwritten in place (the caller drops the old inverse)
    torch.from_numpy(A).addmm_(torch.from_numpy(TS), torch.from_numpy(T).T)  # A^-1 + TS T^T
    del T
    inv = np.empty((s, s))
    if not fill_grown_inverse(inv, A, TS, Sinv, pos, fresh):
        inv[np.ix_(pos, pos)] = A
        inv[np.ix_(pos, fresh)] = -TS
        inv[np.ix_(fresh, pos)] = -TS.T
        inv[np.ix_(fresh, fresh)] = Sinv
    del A, TS, Sinv
    return inv if bool(torch.isfinite(torch.from_numpy(inv)).all()) else None


def _sym_matvec(H: np.ndarray, d: np.ndarray, nz: np.ndarray) -> np.ndarray:
    """:math:`H d` for a symmetric ``H`` and ``d`` zero off ``nz`` (rows of ``H`` gathered, which
    is contiguous, when ``nz`` is small; the whole product otherwise)."""
    if 8 * nz.size < H.shape[0]:
        return H[nz].T @ d[nz]
    return H @ d


def active_face_solves(
    H: np.ndarray, acts: dict, rhs: dict, state: dict | None
) -> tuple[dict[int, np.ndarray], float]:
    r"""Solutions :math:`x_A` of :math:`(H_{AA} + \rho I) x_A = r` for the active sets ``acts``
    (boolean masks per output column) and right-hand sides ``rhs``, with the work done (see
    :func:`pdas_l1`): through the shared inverse kept in ``state`` for the output columns whose
    active set fills more than half the block (when that beats factorising them one by one),
    else by a ridge-guarded Cholesky factorisation of :math:`H_{AA}`."""
    s = H.shape[0]
    work = 0.0
    sizes = {c: int(a.sum()) for c, a in acts.items()}
    big = [c for c in acts if state is not None and 2 * sizes[c] > s]
    inv = None
    if big and sum(sizes[c] ** 3 for c in big) > 0.5 * s**3:
        inv = _shared_inverse(H, state)  # type: ignore[arg-type]
    X: dict[int, np.ndarray] = {}
    if inv is not None and state is not None:
        ridge = float(state["ridge"])
        Rb = np.zeros((s, len(big)))
        for k, c in enumerate(big):
            Rb[acts[c], k] = rhs[c]
        Yb = inv @ Rb
        for k, c in enumerate(big):
            Z = np.flatnonzero(~acts[c])
            x = Yb[:, k].copy()
            if Z.size:
                Mz = inv[Z]  # rows Z of the symmetric inverse (contiguous), = [M^-1]_{:Z}^T
                Lz, info = torch.linalg.cholesky_ex(torch.from_numpy(Mz[:, Z]))
                if int(info) != 0:
                    continue

                def correct(y, Lz=Lz, Mz=Mz, Z=Z):
                    """y - [M^-1]_{:Z} ([M^-1]_{ZZ})^-1 y_Z (the Schur-complement step)."""
                    t = torch.cholesky_solve(torch.from_numpy(y[Z])[:, None], Lz)[:, 0]
                    return y - Mz.T @ t.numpy()

                def solve(r_full, correct=correct):
                    return correct(inv @ r_full)

                x = correct(x)
                # one step of iterative refinement against H_AA + rho I
                xa = np.where(acts[c], x, 0.0)
                res = np.zeros(s)
                res[acts[c]] = rhs[c] - (H @ xa)[acts[c]] - ridge * x[acts[c]]
                x = x + solve(res)
                work += Z.size**3 / 12.0 + 3.0 * s * s + s * Z.size
            else:
                work += s * s
            X[c] = x[acts[c]]
    for c in acts:
        if c in X:
            continue
        A = np.flatnonzero(acts[c])
        Hss = torch.from_numpy(H[np.ix_(A, A)])
        work += A.size**3 / 12.0 + 12.0 * A.size**2
        Lc = _ridge_cholesky(Hss)
        if Lc is None:
            continue
        X[c] = torch.cholesky_solve(torch.from_numpy(rhs[c])[:, None], Lc)[:, 0].numpy()
    return X, work


def pdas_l1(
    H: np.ndarray,
    B: np.ndarray,
    W: np.ndarray,
    HW: np.ndarray,
    lam: float,
    outputs=None,
    state: dict | None = None,
    points: dict | None = None,
) -> tuple[float, float, list[int]]:
    r"""One primal-dual active-set (semismooth Newton) step per output column for squared + l1 in
    Gram form, in place on ``W`` and ``HW``; the solves of all output columns share one inverse.

    Per output column :math:`c` (:math:`w = W_c`, gradient :math:`g = Hw - b`), the active set is
    the set of coordinates that a coordinate-descent step would make non-zero,
    :math:`A = \{j : |w_j - g_j / H_{jj}| > \lambda / H_{jj}\}`, with the signs
    :math:`\sigma = \mathrm{sign}(w_j - g_j/H_{jj})`; the Newton point solves the optimality
    conditions on that face, :math:`(H_{AA} + \rho I) x_A = b_A - \lambda \sigma_A`,
    :math:`x = 0` off :math:`A` (the generalised Newton step of the prox fixed-point equation;
    it adds and drops many coordinates at once, unlike the support Newton of
    :func:`newton_support_l1`). The step :math:`w + t(x - w)` is taken with the largest
    :math:`t \in \{1, 2^{-1}, \dots, 2^{-8}\}` (or the first sign change along the direction)
    that lowers the objective :math:`F(w) = \tfrac12 w^\top Hw - b^\top w + \lambda\lVert
    w\rVert_1`, evaluated exactly (Gram form); otherwise :math:`w` is kept. A Newton point of
    more than :data:`BLOWUP` times the problem's scale (:math:`\max(\lVert w\rVert_\infty,
    \max_j |b_j| / H_{jj})`) comes from a (nearly) singular face: only the first sign change is
    tried then (huge weights would also make the Gram-form values inaccurate).

    All output columns share one matrix: with :math:`M^{-1} = (H + \rho I)^{-1}` of the whole
    block (:func:`_shared_inverse`, formed once per Gram matrix and kept in ``state``), the solve
    on the principal block :math:`A` uses the complement :math:`Z` (the Schur complement of the
    inverse):

    .. math:: (M_{AA})^{-1} r = \big[M^{-1} \bar r\big]_A - [M^{-1}]_{AZ}
              \big([M^{-1}]_{ZZ}\big)^{-1} \big[M^{-1} \bar r\big]_Z,

    :math:`\bar r` = :math:`r` padded with zeros; one product with :math:`M^{-1}` for all output
    columns together, then a Cholesky factorisation of the :math:`|Z| \times |Z|` block per
    column (small when the supports fill the block: the near-interpolating regime), and one step
    of iterative refinement against :math:`H`. Output columns whose active set is at most half
    the block use a ridge-guarded Cholesky of :math:`H_{AA}` instead (cheaper there), and
    without ``state`` every column does. Returns the total decrease of :math:`F`, the work in
    the units of :func:`newton_support_l1` (the shared inverse, formed once, is not counted) and
    the output columns whose face was singular (no solve, or an unbounded Newton point): the
    caller gives those to :func:`newton_support_l1`, whose homotopy steps drop the dependent
    columns.

    With a dict ``points``, the (bounded, finite) Newton point :math:`x` of each output column
    is stored there (``points[c]``, length ``s``), whether or not the step to it was taken: it
    solves the stationarity conditions on its face exactly, :math:`(Hx - b)_A = -\lambda
    \sigma_A`, so its residual is a dual candidate that is feasible on :math:`A` even when
    :math:`x` has entries of the wrong sign (the caller evaluates it; near the optimum it
    certifies what the damped primal steps alone do not).
    """
    s, C = W.shape
    cols = list(range(C)) if outputs is None else list(outputs)
    if not cols or s == 0:
        return 0.0, 0.0, []
    diag = np.diag(H).copy()
    live = diag > 0
    safe = np.where(live, diag, 1.0)
    acts, sigs, rhs = {}, {}, {}
    for c in cols:
        v = W[:, c] - (HW[:, c] - B[:, c]) / safe
        act = live & (np.abs(v) > lam / safe)
        if not act.any():
            continue
        acts[c], sigs[c] = act, np.sign(v[act])
        rhs[c] = B[act, c] - lam * sigs[c]
    if not acts:
        return 0.0, 0.0, []
    X, work = active_face_solves(H, acts, rhs, state)
    stuck = [c for c in acts if c not in X]
    total = 0.0
    for c, xa in X.items():
        if not np.all(np.isfinite(xa)):
            continue
        w = W[:, c]
        g = HW[:, c] - B[:, c]
        xfull = np.zeros(s)
        xfull[acts[c]] = xa
        d = xfull - w
        nz = np.flatnonzero(d)
        if nz.size == 0:
            continue
        Hd = _sym_matvec(H, d, nz)
        work += s * nz.size
        gd, dHd = float(g @ d), float(d @ Hd)
        l1w = float(np.abs(w).sum())
        # a Newton point far outside the scale of the problem comes from a (nearly) singular
        # face along which q decreases without bound: only the step to the first sign change
        # (a guaranteed descent that drops a column, as in the homotopy method) is tried
        scale = max(float(np.abs(w).max()), float(np.max(np.abs(B[:, c]) / safe)))
        bounded = bool(np.abs(xa).max() <= BLOWUP * scale)
        if not bounded:
            stuck.append(c)
        elif points is not None:
            points[c] = xfull
        ts = [2.0**-k for k in range(9)] if bounded else []
        neg = (w * d) < 0
        if neg.any():
            t_sig = float(np.min(-w[neg] / d[neg]))
            if 0.0 < t_sig < 1.0:
                ts.append(t_sig)
        if not ts:
            continue
        best_t, best_dF = 0.0, 0.0
        for t in sorted(set(ts), reverse=True):
            dF = t * gd + 0.5 * t * t * dHd + lam * (float(np.abs(w + t * d).sum()) - l1w)
            if dF < best_dF:
                best_t, best_dF = t, dF
                if t >= 0.5:
                    break
        if best_t == 0.0:
            continue
        wn = w + best_t * d
        if best_t < 1.0:
            # entries within rounding of zero at the first sign change are exactly zero
            wn[np.abs(wn) <= 1e-14 * (np.abs(w) + np.abs(d))] = 0.0
        delta = wn - w
        W[:, c] = wn
        HW[:, c] += _sym_matvec(H, delta, nz)
        total -= best_dF
    return total, work, stuck
