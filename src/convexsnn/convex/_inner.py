r"""Inner algorithms on one (possibly column-restricted) dictionary operator.

* :func:`fista`: accelerated proximal gradient for the smooth datafits (squared, softmax), with
  backtracking on the Lipschitz constant (which may also shrink), gradient-based adaptive restart
  and optional *polishing* (exact re-solve on the identified support, squared + l1).
* :func:`pdhg_hinge`: restarted, diagonally preconditioned primal-dual hybrid gradient
  (Chambolle-Pock) on the saddle-point form of the hinge problem, with adaptive restarts and
  primal-weight balancing in the style of PDLP, plus polishing of both the primal and the dual on
  the identified basis (hinge + l1).

Both track the best primal point and the best dual value seen, so that the gap they report is
always ``best primal - best dual`` for valid (primal, dual-feasible) pairs.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._cd_numba import HAVE_NUMBA, cd_gram_sweeps, popcount_gram
from ._cd_numba import available as numba_available
from ._polish import guarded_spd_solve, newton_support_l1, pdas_l1
from .datafits import Datafit, Hinge
from .linear_operator import check_fits
from .penalties import L1, L21, Penalty
from .penalties import dual_scale as _dual_scale

logger = logging.getLogger("convexsnn")

__all__ = [
    "InnerResult",
    "fista",
    "pdhg_hinge",
    "ipm_hinge",
    "squared_gram",
    "gram_matrices",
    "power_iteration",
    "feasible_dual",
    "dual_scale",
]


@dataclass
class InnerResult:
    """What an inner solve hands back to the working-set loop."""

    W: torch.Tensor  # best primal point (s, C)
    DW: torch.Tensor  # D @ W (n, C)
    primal: float  # P(W)
    U: torch.Tensor  # dual candidate (unscaled) for the global check
    dual: float  # best dual value on this operator
    iterations: int
    matvecs: int
    converged: bool
    U_dual: torch.Tensor | None = None  # best dual candidate (unscaled), if different from U
    alpha: torch.Tensor | None = None  # hinge box variables (for warm starts)
    support: torch.Tensor | None = None  # (s,) rows in use, a hint for working sets
    lipschitz: float | None = None
    omega: float | None = None


class Budget:
    """Iteration / wall-clock budget shared by all inner solves of one problem."""

    def __init__(self, max_iter: int, max_time: float | None) -> None:
        self.max_iter = int(max_iter)
        self.used = 0
        self.deadline = None if max_time is None else time.perf_counter() + float(max_time)

    @property
    def left(self) -> int:
        return max(self.max_iter - self.used, 0)

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline


def dual_scale(datafit: Datafit, penalty: Penalty, lam: float, G: torch.Tensor):
    r"""Scaling of a dual candidate with :math:`G = D^\top U` into the feasible set
    (:func:`~convexsnn.convex.penalties.dual_scale`, per output column when the datafit separates
    over columns and the penalty is elementwise)."""
    return _dual_scale(penalty, lam, G, per_column=datafit.separable)


def feasible_dual(
    datafit: Datafit, penalty: Penalty, lam: float, U: torch.Tensor, G: torch.Tensor
) -> tuple[float, Any]:
    """``(dual value, s)`` of the candidate :math:`U` scaled into the feasible set."""
    s = dual_scale(datafit, penalty, lam, G)
    return float(datafit.dual_value(U, s)), s


class Tracker:
    r"""Best primal point and best feasible dual point seen.

    When the problem separates over output columns (l1 with squared or hinge), both the primal
    :math:`P(W) = \sum_c P_c(W_{:,c})` and the dual (with column-wise scaling) are sums of
    per-column terms, and the best point is kept *per column*: the combination of the best columns
    is a valid primal point (resp. a feasible dual point) whose value is the sum of the best
    per-column values.
    """

    def __init__(self, datafit: Datafit, penalty: Penalty, lam: float) -> None:
        self.datafit, self.penalty, self.lam = datafit, penalty, float(lam)
        self.sep = penalty.elementwise and datafit.separable and datafit.n_outputs > 1
        self.pv: torch.Tensor | None = None
        self.dv: torch.Tensor | None = None
        self.W: Any = None
        self.DW: Any = None
        self.U: Any = None
        self.G: Any = None  # D^T U of the best (scaled) dual point

    def primal_values(self, W: torch.Tensor, DW: torch.Tensor) -> torch.Tensor:
        if self.sep:
            return self.datafit.value_columns(DW) + self.lam * self.penalty.value_columns(W)
        return (self.datafit.value(DW) + self.lam * self.penalty.value(W)).reshape(1)

    def offer_primal(
        self, W: torch.Tensor, DW: torch.Tensor, values: torch.Tensor | None = None
    ) -> bool:
        """Offer a primal point; return True if any part of the best point changed."""
        v = self.primal_values(W, DW) if values is None else values
        if self.pv is None:
            self.pv, self.W, self.DW = v, W, DW
            return True
        better = v < self.pv
        if not bool(better.any()):
            return False
        if not self.sep or bool(better.all()):
            self.pv = torch.where(better, v, self.pv) if self.sep else v
            self.W, self.DW = W, DW
            return True
        self.pv = torch.where(better, v, self.pv)
        self.W = torch.where(better[None, :], W, self.W)
        self.DW = torch.where(better[None, :], DW, self.DW)
        return True

    def offer_dual(self, U: torch.Tensor, G: torch.Tensor) -> bool:
        r"""Offer a dual candidate :math:`U` with :math:`G = D^\top U` (scaled here)."""
        s = dual_scale(self.datafit, self.penalty, self.lam, G)
        if self.sep:
            v = self.datafit.dual_value_columns(U, s)
        else:
            v = self.datafit.dual_value(U, s).reshape(1)
        sU = s.to(U.dtype) if isinstance(s, torch.Tensor) else s
        Us = U * sU
        Gs = G * (s.to(G.dtype) if isinstance(s, torch.Tensor) else s)
        if self.dv is None:
            self.dv, self.U, self.G = v, Us, Gs
            return True
        better = v > self.dv
        if not bool(better.any()):
            return False
        if not self.sep or bool(better.all()):
            self.dv = torch.where(better, v, self.dv) if self.sep else v
            self.U, self.G = Us, Gs
            return True
        self.dv = torch.where(better, v, self.dv)
        self.U = torch.where(better[None, :], Us, self.U)
        self.G = torch.where(better[None, :], Gs, self.G)
        return True

    def gaps(self) -> torch.Tensor:
        """Per-output-column gaps when the problem separates over columns, else ``(1,)``."""
        assert self.pv is not None and self.dv is not None
        return (self.pv - self.dv).clamp_min(0.0)

    @property
    def primal(self) -> float:
        return float(self.pv.sum())

    @property
    def dual(self) -> float:
        return -math.inf if self.dv is None else float(self.dv.sum())

    @property
    def gap(self) -> float:
        return self.primal - self.dual

    def converged(self, tol: float) -> bool:
        p = self.primal
        return p - self.dual <= tol * abs(p)

    def result(self, tol: float, iterations: int, matvecs: int, **extra: Any) -> InnerResult:
        """The :class:`InnerResult` of the best points seen: the datafit's gradient at the best
        primal point as the dual candidate ``U``, the best scaled dual point as ``U_dual``."""
        return InnerResult(
            W=self.W,
            DW=self.DW,
            primal=self.primal,
            U=self.datafit.gradient(self.DW),
            dual=self.dual,
            iterations=iterations,
            matvecs=matvecs,
            converged=self.converged(tol),
            U_dual=self.U,
            **extra,
        )


def power_iteration(
    op,
    weights: torch.Tensor,
    col_scale: torch.Tensor | None = None,
    max_iter: int = 100,
    rtol: float = 1e-4,
) -> tuple[float, int]:
    r"""Largest eigenvalue of :math:`S D^\top A D S` (:math:`A = \mathrm{diag}(a)`,
    :math:`S = \mathrm{diag}(\sqrt{d})` from ``col_scale`` = :math:`d`, or identity).

    The matrix is entrywise non-negative (binary :math:`D`, :math:`a \ge 0`), so its Perron
    vector is non-negative and the all-ones start converges quickly. Returns ``(lambda, matvecs)``
    with ``lambda`` slightly inflated (by ``1 + 10 rtol``) to cover the power method's
    underestimate; callers keep a backtracking safeguard anyway.
    """
    P = op.shape[1]
    v = torch.ones(P, 1, dtype=op.dtype, device=op.device) / math.sqrt(P)
    sq = None if col_scale is None else col_scale.sqrt().reshape(P, 1)
    aw = weights.reshape(-1, 1)
    lam_old, lam_new, k = 0.0, 0.0, 0
    for k in range(1, max_iter + 1):
        x = v if sq is None else v * sq
        w = op.rmatmul(aw * op.matmul(x))
        if sq is not None:
            w = w * sq
        lam_new = float(torch.linalg.vector_norm(w))
        if lam_new == 0.0:
            return 0.0, 2 * k
        v = w / lam_new
        if abs(lam_new - lam_old) <= rtol * lam_new:
            break
        lam_old = lam_new
    return lam_new * (1.0 + 10 * rtol), 2 * k


# --------------------------------------------------------------------------------------------
# FISTA
# --------------------------------------------------------------------------------------------


def fista(
    op,
    datafit: Datafit,
    penalty: Penalty,
    lam: float,
    W: torch.Tensor,
    *,
    tol: float,
    budget: Budget,
    lipschitz: float | None = None,
    polish=None,
    log_every: int = 0,
    log_level: int = logging.DEBUG,
) -> InnerResult:
    r"""Accelerated proximal gradient on :math:`\min_W f(DW) + \lambda R(W)`.

    Iteration (FISTA with backtracking and adaptive restart):

    .. math::

        V_k &= W_k + \tfrac{t_{k-1} - 1}{t_k} (W_k - W_{k-1}) \\
        W_{k+1} &= \mathrm{prox}_{\lambda R / L_k}\big(V_k - D^\top \nabla f(D V_k) / L_k\big)

    where :math:`L_k` is accepted when
    :math:`f(DW_{k+1}) \le f(DV_k) + \langle \nabla, W_{k+1} - V_k\rangle + \tfrac{L_k}{2}
    \lVert W_{k+1} - V_k\rVert^2` (else doubled) and shrunk by 0.9 for the next step
    (:math:`t_{k+1} = (1 + \sqrt{1 + 4 t_k^2}) / 2`). Momentum restarts (:math:`t = 1`) when
    :math:`\langle V_k - W_{k+1}, W_{k+1} - W_k\rangle > 0` or the objective increased. Products
    with :math:`D` are one :math:`DW` and one :math:`D^\top U` per iteration (:math:`DV` is formed
    by linearity). The dual candidate :math:`U = \nabla f(DV_k)` is scaled into the feasible set
    every iteration, giving a gap at no extra product.
    """
    matvecs = 0
    if lipschitz is None:
        lmax, mv = power_iteration(op, datafit.weights)
        matvecs += mv
        lipschitz = max(datafit.curvature * lmax, 1e-12)
    L = float(lipschitz)
    eps = torch.finfo(op.dtype).eps
    tr = Tracker(datafit, penalty, lam)
    DW = op.matmul(W)
    matvecs += 1
    pv = tr.primal_values(W, DW)
    F = float(pv.sum())
    tr.offer_primal(W, DW, pv)
    W_prev, DW_prev = W, DW
    t, momentum = 1.0, False
    it = 0
    supp_prev = (W != 0) if polish is not None else None
    stable, polish_wait = 0, 10
    while True:
        if tr.dv is not None and tr.converged(tol):
            break
        if budget.left <= 0 or budget.out_of_time():
            break
        if momentum:
            t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            beta = (t - 1.0) / t_new
            V = W + beta * (W - W_prev)
            DV = DW + beta * (DW - DW_prev)
            t = t_new
        else:
            V, DV, t = W, DW, 1.0
        U = datafit.gradient(DV)
        G = op.rmatmul(U)
        matvecs += 1
        tr.offer_dual(U, G)
        fV = float(datafit.value(DV))
        while True:
            Wn = penalty.prox(V - G / L, lam / L)
            DWn = op.matmul(Wn)
            matvecs += 1
            fcols = datafit.value_columns(DWn)
            fn = float(fcols.sum())
            diff = Wn - V
            quad = fV + float((G * diff).sum()) + 0.5 * L * float(diff.square().sum())
            if fn <= quad + 8 * eps * (abs(fV) + abs(fn)) or not math.isfinite(L):
                break
            L *= 2.0
        pv = (
            (fcols + lam * penalty.value_columns(Wn))
            if tr.sep
            else torch.tensor(
                [fn + lam * float(penalty.value(Wn))], dtype=torch.float64, device=Wn.device
            )
        )
        Fn = float(pv.sum())
        it += 1
        budget.used += 1
        tr.offer_primal(Wn, DWn, pv)
        restart = float(((V - Wn) * (Wn - W)).sum()) > 0.0 or Fn > F + 8 * eps * abs(F)
        W_prev, DW_prev, W, DW, F = W, DW, Wn, DWn, Fn
        momentum = not restart
        L *= 0.9
        if log_every and it % log_every == 0:
            logger.log(
                log_level,
                "fista it=%d F=%.12g dual=%.12g rel_gap=%.3g L=%.3g",
                it,
                tr.primal,
                tr.dual,
                tr.gap / max(abs(tr.primal), 1e-300),
                L,
            )
        if polish is not None:
            supp = W != 0
            stable = stable + 1 if torch.equal(supp, supp_prev) else 0
            supp_prev = supp
            if stable >= polish_wait:
                stable = 0
                gap0 = tr.gap
                for cand in polish(op, datafit, penalty, lam, tr.W):
                    DWc = op.matmul(cand)
                    Uc = datafit.gradient(DWc)
                    Gc = op.rmatmul(Uc)
                    matvecs += 2
                    tr.offer_dual(Uc, Gc)
                    if tr.offer_primal(cand, DWc):
                        W_prev = W = tr.W
                        DW_prev = DW = tr.DW
                        F, momentum = tr.primal, False
                polish_wait = 10 if tr.gap < 0.5 * gap0 else min(2 * polish_wait, 160)
    return tr.result(tol, it, matvecs, lipschitz=L)


# --------------------------------------------------------------------------------------------
# PDHG for the hinge
# --------------------------------------------------------------------------------------------


def pdhg_hinge(
    op,
    datafit: Hinge,
    penalty: Penalty,
    lam: float,
    W: torch.Tensor,
    alpha: torch.Tensor | None,
    *,
    tol: float,
    budget: Budget,
    omega: float | None = None,
    polish=None,
    polish_every: int = 64,
    check_every: int = 16,
    log_every: int = 0,
    log_level: int = logging.DEBUG,
) -> InnerResult:
    r"""Restarted PDHG on the saddle form of the hinge problem.

    With :math:`\max(0, 1 - t) = \max_{\alpha \in [0,1]} \alpha (1 - t)`:

    .. math::

        \min_W \max_{\alpha \in [0,1]^{n \times C}}\;
        \lambda R(W) + \sum_{ic} a_i \alpha_{ic} \big(1 - y_{ic} (DW)_{ic}\big).

    Steps (diagonal preconditioning :math:`\tau_j = \tau d_j`, :math:`d_j = 1/\sum_i a_i D_{ij}`,
    :math:`\sigma_i = \sigma / a_i`):

    .. math::

        W^{+} &= \mathrm{prox}_{\tau_j \lambda R}\big(W + \tau_j D^\top
                 (a \circ y \circ \alpha)\big)\\
        \alpha^{+} &= \Pi_{[0,1]}\big(\alpha + \sigma (1 - y \circ D(2W^{+} - W))\big)

    with :math:`\tau = \eta/\omega`, :math:`\sigma = \eta\omega`,
    :math:`\eta = 0.99 / \lVert A^{1/2} D\, \mathrm{diag}(d)^{1/2}\rVert`, so that
    :math:`\lVert \Sigma^{1/2} M T^{1/2}\rVert < 1`. Every ``check_every`` iterations the
    duality gaps of the current iterate and of the running average are compared; the better one
    becomes the restart point when its gap fell below 0.2 x (or 0.8 x and stopped improving) the
    gap at the last restart, or after 36 % of the iterations so far (PDLP's rules), and the primal
    weight is rebalanced, :math:`\omega \leftarrow \sqrt{\omega\, \Delta\alpha / \Delta W}`.
    Every ``polish_every`` iterations (backing off while it does not help) the basis is polished
    (:func:`~convexsnn.convex._polish.polish_hinge_l1`).
    """
    n, P = op.shape
    C = datafit.n_outputs
    dt = op.dtype
    a = datafit.weights
    Y, Ya = datafit.Y, datafit.Ya
    matvecs = 0
    colw = op.rmatmul(a.reshape(-1, 1))[:, 0]
    matvecs += 1
    d = torch.where(
        colw > 0, 1.0 / torch.where(colw > 0, colw, torch.ones_like(colw)), torch.ones_like(colw)
    )
    k2, mv = power_iteration(op, a, d)
    matvecs += mv
    eta = 0.99 / math.sqrt(max(k2, 1e-300))
    if omega is None:
        omega = 1.0
    dcol = d.reshape(-1, 1)
    if alpha is None:
        alpha = torch.ones(n, C, dtype=dt, device=op.device)

    def steps(om):
        return eta / om * dcol, eta * om

    tau, sigma = steps(omega)
    DW = op.matmul(W)
    GT = op.rmatmul(Ya * alpha)
    matvecs += 2
    aw = a.reshape(-1, 1)
    tr = Tracker(datafit, penalty, lam)

    def evaluate(Wx, DWx, ax, GTx):
        """Offer (W, alpha) to the tracker; return their own gap (for the restart rules)."""
        pv = tr.primal_values(Wx, DWx)
        tr.offer_primal(Wx, DWx, pv)
        U = -Ya * ax
        s = dual_scale(datafit, penalty, lam, -GTx)
        dv = datafit.dual_value(U, s)
        tr.offer_dual(U, -GTx)
        return float(pv.sum()) - float(dv)

    r_W, r_alpha = W, alpha
    r_gap = evaluate(W, DW, alpha, GT)
    prev_cand_gap = r_gap
    W_avg, a_avg, DW_avg, GT_avg = W.clone(), alpha.clone(), DW.clone(), GT.clone()
    k_since = 0
    it = 0
    polish_wait = polish_every
    next_polish = polish_every
    while True:
        if tr.converged(tol):
            break
        if budget.left <= 0 or budget.out_of_time():
            break
        Wn = penalty.prox(W + tau * GT, tau * lam)
        DWn = op.matmul(Wn)
        alpha_n = torch.clamp(alpha + sigma * (1.0 - Y * (2.0 * DWn - DW)), 0.0, 1.0)
        GTn = op.rmatmul(Ya * alpha_n)
        matvecs += 2
        W, DW, alpha, GT = Wn, DWn, alpha_n, GTn
        it += 1
        budget.used += 1
        k_since += 1
        w = 1.0 / k_since
        W_avg.lerp_(W, w)
        a_avg.lerp_(alpha, w)
        DW_avg.lerp_(DW, w)
        GT_avg.lerp_(GT, w)
        if it % check_every != 0:
            continue
        g_cur = evaluate(W, DW, alpha, GT)
        g_avg = evaluate(W_avg, DW_avg, a_avg, GT_avg)
        use_avg = g_avg < g_cur
        cand_gap = min(g_cur, g_avg)
        do_restart = (
            cand_gap <= 0.2 * r_gap
            or (cand_gap <= 0.8 * r_gap and cand_gap > prev_cand_gap)
            or k_since >= 0.36 * it
        )
        prev_cand_gap = cand_gap
        if log_every and it % log_every < check_every:
            logger.log(
                log_level,
                "pdhg it=%d primal=%.12g dual=%.12g rel_gap=%.3g omega=%.3g",
                it,
                tr.primal,
                tr.dual,
                tr.gap / max(abs(tr.primal), 1e-300),
                omega,
            )
        if do_restart:
            if use_avg:
                W, alpha, DW, GT = W_avg.clone(), a_avg.clone(), DW_avg.clone(), GT_avg.clone()
            # primal weight update from the distance moved since the last restart
            dx = float(torch.sqrt(((W - r_W).square() / dcol).sum()))
            dy = float(torch.sqrt((aw * (alpha - r_alpha).square()).sum()))
            if dx > 1e-10 and dy > 1e-10:
                omega = math.exp(0.5 * math.log(dy / dx) + 0.5 * math.log(omega))
                tau, sigma = steps(omega)
            r_W, r_alpha, r_gap = W, alpha, cand_gap
            prev_cand_gap = cand_gap
            W_avg, a_avg, DW_avg, GT_avg = W.clone(), alpha.clone(), DW.clone(), GT.clone()
            k_since = 0
        # polishing on the identified basis (feeds the tracker only)
        if polish is not None and it >= next_polish and not tr.converged(tol):
            gap0 = tr.gap
            if use_avg:
                W_c, a_c = polish(op, datafit, penalty, lam, W_avg, DW_avg, a_avg, GT_avg)
            else:
                W_c, a_c = polish(op, datafit, penalty, lam, W, DW, alpha, GT)
            for Wp in W_c:
                DWp = op.matmul(Wp)
                matvecs += 1
                tr.offer_primal(Wp, DWp)
            for ap in a_c:
                Up = -Ya * ap
                Gp = op.rmatmul(Up)
                matvecs += 1
                tr.offer_dual(Up, Gp)
            polish_wait = (
                polish_every if tr.gap < 0.5 * gap0 else min(2 * polish_wait, 16 * polish_every)
            )
            next_polish = it + polish_wait
    evaluate(W, DW, alpha, GT)
    alpha_best = (tr.U / (-Ya)).nan_to_num(0.0).clamp(0.0, 1.0) if tr.U is not None else alpha
    return InnerResult(
        W=tr.W,
        DW=tr.DW,
        primal=tr.primal,
        U=tr.U,
        dual=tr.dual,
        iterations=it,
        matvecs=matvecs,
        converged=tr.converged(tol),
        U_dual=None,
        alpha=alpha_best,
        omega=omega,
    )


# --------------------------------------------------------------------------------------------
# interior point for hinge + l1
# --------------------------------------------------------------------------------------------


def ipm_hinge(
    op,
    datafit: Hinge,
    penalty: Penalty,
    lam: float,
    W: torch.Tensor,
    *,
    tol: float,
    budget: Budget,
    log_level: int = logging.DEBUG,
) -> InnerResult:
    """Hinge + l1 by the interior-point method, one LP per output column.

    Needs the dense block of the operator (``op.dense()``); the per-column LPs are solved by
    :func:`~convexsnn.convex._ipm.ipm_hinge_l1` with the relative tolerance ``tol / 2``.
    """
    from ._ipm import ipm_hinge_l1

    n, P = op.shape
    C = datafit.n_outputs
    X = op.dense().to(torch.float64)  # the interior point always works in float64
    a = datafit.weights.to(torch.float64)
    rows = a > 0
    all_rows = bool(rows.all())
    Xr = X if all_rows else X[rows]
    ar = a if all_rows else a[rows]
    Wn = torch.zeros(P, C, dtype=op.dtype, device=op.device)
    alpha = torch.zeros(n, C, dtype=op.dtype, device=op.device)
    rows = rows.to(op.device)
    iters, conv = 0, True
    deadline = budget.out_of_time
    for c in range(C):
        Yd = datafit.Y.to(torch.float64)
        yc = Yd[:, c] if all_rows else Yd[rows, c]
        w, al, it, ok, sup = ipm_hinge_l1(
            Xr,
            yc,
            ar,
            lam,
            tol=0.5 * tol,
            max_iter=max(1, min(200, budget.left)),
            deadline=deadline,
        )
        support = sup if c == 0 else support | sup
        Wn[:, c] = w.to(Wn.dtype)
        if all_rows:
            alpha[:, c] = al.to(alpha.dtype)
        else:
            alpha[rows, c] = al.to(alpha.dtype)
        iters += it
        conv = conv and ok
        budget.used += it
    tr = Tracker(datafit, penalty, lam)
    DW = op.matmul(Wn)
    U = datafit.from_alpha(alpha)
    G = op.rmatmul(U)
    tr.offer_primal(Wn, DW)
    tr.offer_dual(U, G)
    logger.log(log_level, "ipm: %d iterations, primal=%.12g dual=%.12g", iters, tr.primal, tr.dual)
    return InnerResult(
        W=tr.W,
        DW=tr.DW,
        primal=tr.primal,
        U=tr.U,
        dual=tr.dual,
        iterations=iters,
        matvecs=2 * iters + 2,
        converged=tr.converged(tol),
        alpha=alpha,
        support=support,
    )


# --------------------------------------------------------------------------------------------
# the squared loss in Gram form: coordinate descent or accelerated proximal gradient
# --------------------------------------------------------------------------------------------

GRAM_DENSE_ENTRIES = 1 << 24  # densify at most this many entries at once to form the Gram matrix
#: multiply-adds in one chunk of compiled sweeps at most (about 10 s on one core)
CHUNK_WORK = 2e10


def _integer_weights(weights: torch.Tensor) -> tuple[torch.Tensor, float] | None:
    r"""``(m, a_0)`` with :math:`a = a_0 m`, :math:`m` non-negative integers of sum below
    :math:`2^{24}` (uniform weights, or merged duplicate rows), else ``None``."""
    a = weights.reshape(-1).to(torch.float64)
    pos = a[a > 0]
    if pos.numel() == 0 or bool((a < 0).any()):
        return None
    a0 = float(pos.min())
    m = a / a0
    mr = torch.round(m)
    if float((m - mr).abs().max()) > 1e-9 or float(mr.sum()) >= 2.0**24:
        return None
    return mr, a0


def _packed_words(op) -> np.ndarray | None:
    """The columns of a bit-packed CPU operator as rows of ``uint64`` words (``(s, words)``,
    padding bits zero), or ``None`` when ``op`` holds no packed bits."""
    packed = getattr(op, "_packed", None)
    if not isinstance(packed, torch.Tensor) or packed.device.type != "cpu":
        return None
    n = op.shape[0]
    cols = np.ascontiguousarray(packed.numpy().T)  # (s, ceil(n / 8)) bytes
    if n % 8:
        cols[:, -1] &= np.uint8((0xFF << (8 - n % 8)) & 0xFF)  # rows past n (packbits order)
    pad = (-cols.shape[1]) % 8
    if pad:
        cols = np.pad(cols, ((0, 0), (0, pad)))
    return np.ascontiguousarray(cols).view(np.uint64)


def gram_columns(
    op, weights: torch.Tensor, Y: torch.Tensor, fresh: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`H_{:,k} = D^\top A D_k` (``(s, k)``) and :math:`B_k = D_k^\top A Y` (``(k, C)``)
    in float64 for the columns ``fresh`` (all when ``None``), from dense row blocks of ``op``
    (``op.row_blocks``: no ``(n, s)`` copy), one matrix product per block.

    For a 0/1 dictionary with weights :math:`a = a_0 m`, :math:`m` integers (uniform weights, or
    the multiplicities of merged rows) of sum :math:`< 2^{24}`, every partial sum of
    :math:`D^\top M D_k` is an integer below :math:`2^{24}`: the products run in float32 and are
    *exact* (half the time and memory of float64), then scaled by :math:`a_0` in float64.
    """
    f64 = torch.float64
    n, s = op.shape
    dev = weights.device
    idx = torch.arange(s, device=dev) if fresh is None else fresh.to(dev)
    k = int(idx.numel())
    iw = _integer_weights(weights) if dev.type == "cpu" else None
    if iw is not None and bool((iw[0] == 1).all()):
        words = _packed_words(op)
        if words is not None:
            # (the whole block: the symmetric kernel counts each pair once)
            Hp = popcount_gram(
                words, None if fresh is None else words[idx.cpu().numpy()], scale=float(iw[1])
            )
            if Hp is not None:
                Hk = torch.from_numpy(Hp)  # counts times a_0, float64, no integer copy
                Bk = op.rmatmul((weights.reshape(-1, 1) * Y).to(op.dtype)).to(f64)
                return Hk, Bk[idx]
    dt = torch.float32 if iw is not None else f64
    a = weights.reshape(-1, 1).to(f64)
    mult = iw[0].reshape(-1, 1).to(dt) if iw is not None else a
    rows = max(64, GRAM_DENSE_ENTRIES // max(s, 1))
    check_fits(
        (4 if iw is not None else 8) * s * k + 8 * s * k + 12 * rows * s,
        f"the {s} x {k} block of the Gram matrix of the working set",
    )
    Hk = torch.zeros(s, k, dtype=dt, device=dev)
    Bk = torch.zeros(k, Y.shape[1], dtype=f64, device=dev)
    Y64 = Y.to(f64)
    for r0, r1, X in op.row_blocks(dt, rows):
        Xk = X if fresh is None else X.index_select(1, idx)
        Bk.addmm_((a[r0:r1] * Xk.to(f64)).T, Y64[r0:r1])
        Hk.addmm_(X.T, Xk * mult[r0:r1])
    Hk = Hk.to(f64)
    if iw is not None:
        Hk *= iw[1]
    return Hk, Bk


def gram_matrices(
    op, weights: torch.Tensor, Y: torch.Tensor, block_entries: int = GRAM_DENSE_ENTRIES
) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`H = D^\top A D` (``(s, s)``) and :math:`B = D^\top A Y` (``(s, C)``) in float64.

    Small operators are densified once (``op.dense()``); larger ones are read a block
    :math:`D_k` of columns at a time (``op.columns(k).dense()``, or :math:`D E_k` for identity
    columns :math:`E_k` when the operator has products only), with
    :math:`H_{:,k} = D^\top (a \circ D_k)`: :math:`O(n s^2)` work and no ``(n, s)`` float copy.
    """
    f64 = torch.float64
    n, s = op.shape
    if weights.device.type == "cpu":
        check_fits(
            8 * s * s + 8 * n * min(s, max(1, block_entries // max(n, 1))),
            f"the {s} x {s} float64 Gram matrix of the working set",
        )
    a = weights.reshape(-1, 1).to(f64)
    if callable(getattr(op, "row_blocks", None)):
        H, B = gram_columns(op, weights, Y)
        return 0.5 * (H + H.T), B
    if n * s <= block_entries and callable(getattr(op, "dense", None)):
        X = op.dense().to(f64)
        Xa = X * a
        return Xa.T @ X, Xa.T @ Y.to(f64)
    H = torch.empty(s, s, dtype=f64, device=a.device)
    k = max(1, block_entries // max(n, 1))
    dt = op.dtype
    by_columns = callable(getattr(op, "columns", None)) and callable(getattr(op, "dense", None))
    for c0 in range(0, s, k):
        c1 = min(s, c0 + k)
        if by_columns:
            Xk = op.columns(torch.arange(c0, c1, device=a.device)).dense().to(f64)
        else:
            E = torch.zeros(s, c1 - c0, dtype=dt, device=a.device)
            E[torch.arange(c0, c1), torch.arange(c1 - c0)] = 1.0
            Xk = op.matmul(E).to(f64)
        H[:, c0:c1] = op.rmatmul((a * Xk).to(dt)).to(f64)
    B = op.rmatmul((a * Y.to(f64)).to(dt)).to(f64)
    return 0.5 * (H + H.T), B


def _cached_gram(op, datafit, cols, cache):
    r""":func:`gram_matrices` of ``op`` (the columns ``cols`` of one dictionary), reusing the
    entries of the previous working set kept in ``cache``: only the new columns' blocks
    :math:`H_{:,\mathrm{new}} = D_S^\top A D_{\mathrm{new}}` are formed (:math:`O(n s k)` for
    :math:`k` new columns instead of :math:`O(n s^2)`)."""
    f64 = torch.float64
    n, s = op.shape
    old = None if cache is None or cols is None else cache.get("cols")
    H = Bm = None
    if old is not None and callable(getattr(op, "columns", None)):
        cols_c = cols.to(old.device)
        pos_old_in_new = torch.searchsorted(cols_c, old).clamp_max(s - 1)
        keep = cols_c[pos_old_in_new] == old  # old columns still in the set
        p_new_common = pos_old_in_new[keep]
        p_old_common = torch.nonzero(keep, as_tuple=False)[:, 0]
        fresh = torch.ones(s, dtype=torch.bool)
        fresh[p_new_common.cpu()] = False
        p_fresh = torch.nonzero(fresh, as_tuple=False)[:, 0].to(cols_c.device)
        k = int(p_fresh.numel())
        blocks = callable(getattr(op, "row_blocks", None))
        if p_new_common.numel() and (blocks or n * k <= GRAM_DENSE_ENTRIES) and k < s:
            Hold, Bold = cache["H"], cache["B"]
            H = torch.empty(s, s, dtype=f64, device=Hold.device)
            Bm = torch.empty(s, Bold.shape[1], dtype=f64, device=Hold.device)
            # (in row chunks: the gathered block of Hold would be a second (m, m) copy; at
            # 16k columns that temporary was the 55k solve's peak of memory)
            step = max(1, GRAM_DENSE_ENTRIES // max(s, 1))
            for r0 in range(0, int(p_old_common.numel()), step):
                rn, ro = p_new_common[r0 : r0 + step], p_old_common[r0 : r0 + step]
                H[rn[:, None], p_new_common[None, :]] = Hold[ro[:, None], p_old_common[None, :]]
            Bm[p_new_common] = Bold[p_old_common]
            if k and blocks:
                Hk, Bk = gram_columns(op, datafit.weights, datafit.Y, p_fresh)
                H[:, p_fresh] = Hk
                H[p_fresh, :] = Hk.T
                Bm[p_fresh] = Bk
            elif k:
                a = datafit.weights.reshape(-1, 1).to(f64)
                Xk = op.columns(p_fresh).dense().to(f64)
                Hk = op.rmatmul((a * Xk).to(op.dtype)).to(f64)  # (s, k)
                H[:, p_fresh] = Hk
                H[p_fresh, :] = Hk.T
                Bm[p_fresh] = (a * Xk).T @ datafit.Y.to(f64)
    if H is None:
        H, Bm = gram_matrices(op, datafit.weights, datafit.Y)
    if cache is not None and cols is not None:
        cache.update(cols=cols.clone(), H=H, B=Bm)
    return H, Bm


_FLOP_RATE: list[float] = []


def _flop_rate() -> float:
    """Float64 matrix-product rate of this process (flop/s; the best of three 768 x 768
    products, measured once per process: the share of a loaded machine included)."""
    if not _FLOP_RATE:
        a = torch.ones(768, 768, dtype=torch.float64)
        best = math.inf
        for _ in range(3):
            t = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - t)
        _FLOP_RATE.append(2 * 768**3 / max(best, 1e-9))
    return _FLOP_RATE[0]


def _inverse_flops(shared: dict, s: int) -> float:
    r"""Flops to form the shared inverse of an ``s``-column block: :math:`s^3` fresh (Cholesky
    factor and inverse), or, grown from an ``m``-column one by ``k = s - m`` columns
    (:func:`~convexsnn.convex._polish._grown_inverse`), :math:`2m^2k + 2mk^2 + k^3`."""
    prev = shared.get("previous")
    if prev is None:
        return float(s) ** 3
    m = float(len(prev[2]))
    k = float(s) - m
    return 2 * m * m * k + 2 * m * k * k + k**3


def _inverse_fits_budget(shared: dict, s: int, budget: Budget) -> bool:
    r"""Whether the shared inverse of an ``s``-column block that the active-set steps need
    (:func:`~convexsnn.convex._polish.pdas_l1`) can be formed before ``budget``'s deadline: always
    when it exists already (or was refused for memory) or there is no deadline; else when the
    estimated time, :func:`_inverse_flops` at :func:`_flop_rate`, fits in the time left."""
    if "inverse" in shared or budget.deadline is None:
        return True
    left = budget.deadline - time.perf_counter()
    return _inverse_flops(shared, s) / _flop_rate() <= left


def _shared_from_cache(cache: dict | None, cols: torch.Tensor | None) -> dict:
    """The state of :func:`~convexsnn.convex._polish.pdas_l1` for the working set ``cols``: the
    inverse kept in ``cache`` when it was formed on the same columns, or on a subset of them
    (then grown by the new columns when first needed), else empty."""
    if cache is None or cols is None or cache.get("inverse") is None:
        return {}
    old = cache["inverse_cols"]
    if old.numel() == cols.numel() and torch.equal(old, cols):
        return {"inverse": cache["inverse"], "ridge": cache["ridge"]}
    pos = torch.searchsorted(cols, old).clamp_max(cols.numel() - 1)
    if not bool((cols[pos] == old).all()):
        return {}  # some columns left the set
    return {"previous": (cache["inverse"], cache["ridge"], pos.cpu().numpy())}


def _cd_sweep(H, B, W, HW, rows, inv, thr, kind: str, penalty: Penalty) -> None:
    """One coordinate-descent sweep over ``rows`` on numpy arrays (in place on ``W``, ``HW``)."""
    for j in rows:
        wj = W[j]
        v = wj - (HW[j] - B[j]) * inv[j]
        if kind == "l1":
            nw = np.sign(v) * np.maximum(np.abs(v) - thr[j], 0.0)
        elif kind == "l21":
            nv = math.sqrt(float(v @ v))
            nw = v * max(0.0, 1.0 - thr[j] / nv) if nv > 0 else v * 0.0
        else:
            nw = penalty.prox(torch.from_numpy(v[None, :]), thr[j])[0].numpy()
        dlt = nw - wj
        if dlt.any():
            HW += np.outer(H[:, j], dlt)
            W[j] = nw


def squared_gram(
    op,
    datafit,
    penalty: Penalty,
    lam: float,
    W: torch.Tensor,
    *,
    tol: float,
    budget: Budget,
    polish: bool = True,
    method: str = "cd",
    log_level: int = logging.DEBUG,
    cols: torch.Tensor | None = None,
    cache: dict | None = None,
) -> InnerResult:
    r"""Squared loss on the Gram matrix of the columns: coordinate descent (``method="cd"``) or
    accelerated proximal gradient (``method="fista"``).

    With :math:`H = D^\top A D`, :math:`B = D^\top A Y` and :math:`y_2 = \sum_i a_i y_i^2`
    (per output), :math:`f = \tfrac12 \mathrm{tr}(W^\top H W) - \mathrm{tr}(B^\top W) + \tfrac12
    y_2`. A coordinate-descent sweep updates every row :math:`j` of :math:`W` (all outputs at once,
    :math:`O(sC)` per row with :math:`HW` kept up to date):

    .. math::

        W_j \leftarrow \mathrm{prox}_{\lambda R / H_{jj}}\big(W_j - (H_j W - B_j) / H_{jj}\big);

    a proximal-gradient step is :math:`W \leftarrow \mathrm{prox}_{\lambda R/L}(V - (HV - B)/L)`
    with :math:`L = \lambda_{\max}(H)` and gradient restarts, :math:`O(s^2 C)` whatever the number
    of rows. Progress is tracked with the Gram-form values (primal and the residual dual point
    :math:`U = A(DW - Y)`, scaled by :func:`~convexsnn.convex.penalties.dual_scale`), which are
    accurate for the bounded iterates of these methods. Two safeguards keep them honest:

    * for the l1 penalty the support is polished by the normal equations
      :math:`H_{SS} w = B_S - \lambda\,\mathrm{sign}` (conditioning guarded by
      :func:`~convexsnn.convex._polish.guarded_spd_solve`); a polished point is evaluated in
      *residual form* (:math:`DW` formed, never a difference of large Gram terms) and kept only
      when it lowers the objective;
    * the stop is decided in residual form: when the Gram-form gap reaches ``tol``, the primal
      value of the best point and the dual value of :math:`U = A(DW - Y)` (checked against every
      column of ``op``) are recomputed from :math:`DW`; if they disagree the Gram-form threshold is
      tightened and the iterations go on.

    (A near-singular polish once returned weights of :math:`10^{13}` whose Gram-form dual value
    cancelled catastrophically and stopped the solve at a relative gap of 0.26.)
    """
    if method not in ("cd", "fista"):
        raise ValueError(f"method must be 'cd' or 'fista', got {method!r}")
    f64 = torch.float64  # the Gram form is small: always work in float64
    H, Bm = _cached_gram(op, datafit, cols, cache)
    Y = datafit.Y.to(f64)
    a = datafit.weights.reshape(-1, 1).to(f64)
    y2 = (a * Y.square()).sum(dim=0)
    s, C = W.shape
    W = W.to(f64).clone()
    HW = H @ W
    diag = H.diagonal().clone()
    live = diag > 0
    per_col = penalty.elementwise and datafit.separable
    matvecs = 0

    def gram_values(Wx, HWx):
        """Per-output (or total) primal and dual values from the Gram form."""
        wHw = (Wx * HWx).sum(dim=0)
        wb = (Wx * Bm).sum(dim=0)
        fit = 0.5 * wHw - wb + 0.5 * y2
        sc = dual_scale(datafit, penalty, lam, HWx - Bm)  # G = D^T U
        sc = sc.to(f64) if isinstance(sc, torch.Tensor) else sc
        dual = -(sc * (wb - y2) + sc * sc * fit)  # <U,Y> = wb - y2, |U|^2/2a = fit
        if per_col:
            return fit + lam * penalty.value_columns(Wx).to(f64), dual
        return (fit.sum() + lam * penalty.value(Wx).to(f64)).reshape(1), dual.sum().reshape(1)

    last_DW: list = []  # (W, D W) of the last residual-form evaluation (reused at the end)

    def residual_values(Wx):
        """Primal and dual values recomputed from :math:`DW` (residual form, float64)."""
        nonlocal matvecs
        DWo = op.matmul(Wx.to(op.dtype))
        last_DW[:] = [Wx.clone(), DWo]
        DW = DWo.to(f64)
        U = a * (DW - Y)
        G = op.rmatmul(U.to(op.dtype)).to(f64)
        matvecs += 2
        sc = dual_scale(datafit, penalty, lam, G)
        fitc = 0.5 * (a * (DW - Y).square()).sum(dim=0)
        lin = (U * Y).sum(dim=0)
        sc = sc.to(f64) if isinstance(sc, torch.Tensor) else sc
        dual = -(sc * lin + sc * sc * fitc)
        if per_col:
            return fitc + lam * penalty.value_columns(Wx).to(f64), dual
        return (fitc.sum() + lam * penalty.value(Wx).to(f64)).reshape(1), dual.sum().reshape(1)

    best_p, best_d = gram_values(W, HW)
    best_W = W.clone()
    best_dW = W.clone()

    def take(Wx, pv, dv):
        nonlocal best_p, best_d
        better = pv < best_p
        if bool(better.any()):
            if per_col:
                best_W[:, better] = Wx[:, better]
            else:
                best_W.copy_(Wx)
            best_p = torch.where(better, pv, best_p)
        better = dv > best_d
        if bool(better.any()):
            if per_col:
                best_dW[:, better] = Wx[:, better]
            else:
                best_dW.copy_(Wx)
            best_d = torch.where(better, dv, best_d)

    def residual_dual_pair():
        """Residual-form primal of ``best_W`` and the better residual-form dual of ``best_W``
        and ``best_dW`` (``best_dW`` then holds the point of that dual)."""
        pv, dv1 = residual_values(best_W)
        if torch.equal(best_W, best_dW):
            return pv, dv1  # one point (the usual case for coordinate descent)
        _, dv2 = residual_values(best_dW)
        use1 = dv1 >= dv2
        if per_col:
            best_dW[:, use1] = best_W[:, use1]
        elif bool(use1.all()):
            best_dW.copy_(best_W)
        return pv, torch.maximum(dv1, dv2)

    gram_tol = tol  # Gram-form gap that triggers a residual-form check
    verified = False
    checks = 0

    def done() -> bool:
        nonlocal gram_tol, verified, checks, best_p, best_d
        p_tot, d_tot = float(best_p.sum()), float(best_d.sum())
        if p_tot - d_tot > gram_tol * abs(p_tot):
            return False
        # residual-form check of the best primal point and of both dual candidates
        checks += 1
        pv, dv = residual_dual_pair()
        p_r, d_r = float(pv.sum()), float(dv.sum())
        if p_r - d_r <= tol * abs(p_r):
            best_p, best_d = pv, dv
            verified = True
            return True
        logger.log(
            log_level,
            "gram: Gram-form gap %.3g but residual-form gap %.3g; tightening",
            (p_tot - d_tot) / max(abs(p_tot), 1e-300),
            (p_r - d_r) / max(abs(p_r), 1e-300),
        )
        best_p, best_d = pv, dv  # trust the residual form from here on
        gram_tol *= 0.01
        return checks >= 4 and gram_tol < 1e-15

    def polish_support():
        """Normal equations on the support (and on its tight part); residual-form acceptance."""
        Gc = HW - Bm
        supp = W != 0
        tight = supp & (Gc.abs() >= (1 - 1e-3) * lam)
        for sup in (supp, tight) if not torch.equal(tight, supp) else (supp,):
            Wp = torch.zeros_like(W)
            ok = True
            for c in range(C):
                S = torch.nonzero(sup[:, c], as_tuple=False)[:, 0]
                if S.numel():
                    x = guarded_spd_solve(H[S][:, S], Bm[S, c] - lam * torch.sign(W[S, c]))
                    if x is None:
                        ok = False
                        break
                    Wp[S, c] = x
            if not ok:
                continue
            pg, _ = gram_values(Wp, H @ Wp)
            if not bool((pg < best_p).any()):
                continue  # no improvement even by the (cheap) Gram form
            pr, dr = residual_values(Wp)
            # keep only an improvement whose Gram-form value agrees with the residual form
            agree = (pg - pr).abs() <= 1e-9 * (pr.abs() + 1.0)
            better = (pr < best_p) & agree
            # the primal value where it is an agreed improvement; the residual dual as it is
            take(Wp, torch.where(better, pr, torch.full_like(pr, math.inf)), dr)

    it = 0
    supp_prev = None
    stable = 0
    wait0 = 3 if method == "cd" else 10
    next_polish = wait0
    compiled = False
    if method == "cd":
        # the sweeps run on numpy views (per-row overhead ~1 us, against ~10 us for torch ops);
        # l1 and l2,1 run compiled (numba) sweeps, several per call
        idx = torch.nonzero(live, as_tuple=False)[:, 0].tolist()
        Hn, Bn = H.numpy() if H.device.type == "cpu" else H.cpu().numpy(), Bm.cpu().numpy()
        kind = "l1" if type(penalty) is L1 else "l21" if type(penalty) is L21 else "generic"
        compiled = HAVE_NUMBA and kind != "generic" and numba_available()
        if not compiled:
            thr = [lam / float(diag[j]) if diag[j] > 0 else 0.0 for j in range(s)]
            inv = [1.0 / float(diag[j]) if diag[j] > 0 else 0.0 for j in range(s)]
        if compiled:
            Hn = np.ascontiguousarray(Hn)
            Bn = np.ascontiguousarray(Bn)
            y2n = y2.cpu().numpy().astype(np.float64)
            rows_nb = np.asarray(idx, dtype=np.int64)
            Wn_ = np.ascontiguousarray(W.cpu().numpy()).copy()
            HWn_ = np.ascontiguousarray(HW.cpu().numpy()).copy()
            chunk = 4
            # active-set Newton steps between chunks of sweeps (l1; see newton_support_l1)
            newton = kind == "l1" and polish
            # the shared inverse of the block for the active-set steps: kept with the Gram
            # matrix for the next working set (reused as it is, or grown by its new columns)
            shared = _shared_from_cache(cache, cols)
            w_cd, w_newton, newton_steps = 0.0, 1.0, 0
    else:
        Lh = float(torch.linalg.eigvalsh(H).max()) * (1 + 1e-10) + 1e-300
        W_prev, HW_prev, t = W, HW, 1.0
    while True:
        if done() or budget.left <= 0 or budget.out_of_time():
            break
        if compiled:
            # a chunk of compiled sweeps, ended early once the Gram-form gap reaches gram_tol
            # (a hint only: done() decides on the residual form)
            ran = cd_gram_sweeps(
                Hn,
                Bn,
                Wn_,
                HWn_,
                y2n,
                lam,
                group=kind == "l21",
                per_col=per_col,
                rows=rows_nb,
                gram_tol=gram_tol,
                # (a chunk is at most CHUNK_WORK multiply-adds: the budget is checked between
                # chunks, so this bounds the overrun of max_time on large blocks)
                max_sweeps=max(1, min(chunk, budget.left, int(CHUNK_WORK // (s * s * C + 1)))),
            )
            chunk = min(2 * chunk, 256)
            it += ran - 1
            budget.used += ran - 1
            if it % 10 == 9 or ran >= 8:
                HWn_[...] = Hn @ Wn_  # refresh against drift
            # work counted in multiply-adds (deterministic, unlike wall time): a sweep updates
            # HW (s x C) for each of its rows
            w_cd += float(ran) * rows_nb.size * s * C
            if newton and w_cd >= w_newton and not _inverse_fits_budget(shared, s, budget):
                # forming (or growing) the shared inverse is O(s^3) and cannot be interrupted:
                # not started when it would overrun max_time (the 55k x 16k solve once ran
                # 197 s past a 600 s cap inside it); the sweeps go on to the deadline
                logger.log(
                    log_level,
                    "gram-cd: active-set steps skipped: the shared inverse of %d columns would "
                    "not finish within max_time",
                    s,
                )
                newton = False
            if newton and w_cd >= w_newton:
                # active-set Newton on the support, balanced against the sweeps: it runs once
                # the sweeps since the last one did at least as much work as it did; only the
                # outputs whose own (Gram-form) gap is not yet small
                pv, dv = gram_values(torch.from_numpy(Wn_), torch.from_numpy(HWn_))
                gaps = (pv - dv).numpy()
                share = 0.1 * gram_tol * abs(float(pv.sum())) / max(gaps.size, 1)
                t_now = time.perf_counter()
                outs = [int(c) for c in np.flatnonzero(gaps > share)]
                # primal-dual active-set steps (all outputs share one inverse of the block)
                points: dict = {}
                dec, work, stuck = pdas_l1(
                    Hn, Bn, Wn_, HWn_, lam, outputs=outs, state=shared, points=points
                )
                if points:
                    # the Newton points as candidates (their own, exact-on-the-face residuals
                    # are dual candidates even where the damped step did not reach them)
                    Wp_ = Wn_.copy()
                    for c_, x_ in points.items():
                        Wp_[:, c_] = x_
                    Wpt = torch.from_numpy(Wp_)
                    take(Wpt, *gram_values(Wpt, torch.from_numpy(Hn @ Wp_)))
                if stuck or not dec > 0.0:
                    # singular faces (or no progress): the support Newton's homotopy steps
                    dec2, work2 = newton_support_l1(
                        Hn, Bn, Wn_, HWn_, lam, outputs=stuck if dec > 0.0 else outs
                    )
                    dec, work = dec + dec2, work + work2
                newton_steps += 1
                logger.log(
                    log_level,
                    "gram-cd: newton %d after %d sweeps: decrease %.3g in %.3f s (support %d, "
                    "Gram-form gap before %.3g)",
                    newton_steps,
                    it,
                    dec,
                    time.perf_counter() - t_now,
                    int(np.count_nonzero(Wn_)),
                    float((pv - dv).sum()),
                )
                w_newton, w_cd = max(work, 1.0), 0.0
                if dec > 0:
                    chunk = 4
            W = torch.from_numpy(Wn_.copy()).to(W.device)
            HW = torch.from_numpy(HWn_.copy()).to(W.device)
        elif method == "cd":
            # one sweep (only the active rows every other sweep once a support exists)
            rows_now = (
                idx
                if (it % 2 == 0 or supp_prev is None)
                else [j for j in idx if bool((W[j] != 0).any())]
            )
            Wn_, HWn_ = W.cpu().numpy().copy(), HW.cpu().numpy().copy()
            _cd_sweep(Hn, Bn, Wn_, HWn_, rows_now, inv, thr, kind, penalty)
            W = torch.from_numpy(Wn_).to(W.device)
            HW = torch.from_numpy(HWn_).to(W.device)
            if it % 10 == 9:
                HW = H @ W  # refresh against drift
        else:
            t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            beta = (t - 1.0) / t_new
            V = W + beta * (W - W_prev)
            HV = HW + beta * (HW - HW_prev)
            Wn = penalty.prox(V - (HV - Bm) / Lh, lam / Lh)
            HWn = H @ Wn
            if float(((V - Wn) * (Wn - W)).sum()) > 0:
                t_new = 1.0
            W_prev, HW_prev, W, HW, t = W, HW, Wn, HWn, t_new
        it += 1
        budget.used += 1
        if method == "cd" or it % 5 == 0:
            take(W, *gram_values(W, HW))
        supp = W != 0
        if supp_prev is not None and torch.equal(supp, supp_prev):
            stable += 1
        else:
            stable, next_polish = 0, wait0
        supp_prev = supp
        if polish and isinstance(penalty, L1) and stable >= next_polish:
            next_polish *= 3
            polish_support()
            if method == "cd":
                W = best_W.clone()
                HW = H @ W
                if compiled:
                    Wn_ = np.ascontiguousarray(W.cpu().numpy()).copy()
                    HWn_ = np.ascontiguousarray(HW.cpu().numpy()).copy()
                    chunk = 4
    if compiled and newton and cache is not None and cols is not None:
        if shared.get("inverse") is not None:
            cache.update(
                inverse=shared["inverse"], ridge=shared["ridge"], inverse_cols=cols.clone()
            )
        elif "inverse" in cache and "previous" not in shared:
            del cache["inverse"]  # not valid for this working set
    if not verified:
        # the returned values are always residual-form ones
        best_p, best_d = residual_dual_pair()
    if last_DW and torch.equal(last_DW[0], best_W):
        DW = last_DW[1]  # D best_W was formed by the last residual-form check
    else:
        DW = op.matmul(best_W.to(op.dtype))
        matvecs += 1
    best_W = best_W.to(op.dtype)
    U_p = datafit.gradient(DW)
    if torch.equal(best_W, best_dW.to(op.dtype)):
        U_d = U_p
    else:
        U_d = datafit.gradient(op.matmul(best_dW.to(op.dtype)))
        matvecs += 1
    p_tot, d_tot = float(best_p.sum()), float(best_d.sum())
    logger.log(
        log_level, "gram-%s: %d iterations, primal=%.12g dual=%.12g", method, it, p_tot, d_tot
    )
    return InnerResult(
        W=best_W,
        DW=DW,
        primal=p_tot,
        U=U_p,
        dual=d_tot,
        iterations=it,
        matvecs=matvecs,
        converged=p_tot - d_tot <= tol * abs(p_tot),
        U_dual=U_d,
    )


# --------------------------------------------------------------------------------------------
# softmax + l1: proximal Newton with compiled coordinate descent on the quadratic model
# --------------------------------------------------------------------------------------------

_EPS64 = float(np.finfo(np.float64).eps)
#: largest s * C for which the full (s C) x (s C) Hessian is formed (else per-class blocks)
NEWTON_FULL_HESSIAN = 1024


def prox_newton_softmax(
    op,
    datafit,
    penalty: Penalty,
    lam: float,
    W: torch.Tensor,
    *,
    tol: float,
    budget: Budget,
    log_level: int = logging.DEBUG,
    max_steps: int = 400,
) -> InnerResult:
    r"""Proximal Newton for the softmax cross-entropy with the l1 penalty.

    At :math:`W` with probabilities :math:`p_i = \mathrm{softmax}((DW)_i)` and gradient
    :math:`g = D^\top A (p - E)`, the quadratic model of the loss uses the Hessian
    :math:`\mathcal H_{(jc),(kd)} = \sum_i a_i D_{ij} D_{ik} (p_{ic}\delta_{cd} - p_{ic} p_{id})`
    (all classes together when :math:`sC \le` :data:`NEWTON_FULL_HESSIAN`, else its
    per-class diagonal blocks). The model problem

    .. math:: \min_X \tfrac12 \mathrm{vec}(X - W)^\top \mathcal H\, \mathrm{vec}(X - W)
              + \langle g, X - W\rangle + \lambda \lVert X\rVert_1

    is solved approximately by the compiled coordinate descent
    (:func:`~convexsnn.convex._cd_numba.cd_gram_sweeps` with :math:`B = \mathcal H W - g`), then
    :math:`W \leftarrow W + t (X - W)` with a backtracking (Armijo) line search on the true
    objective, :math:`P(W + t\Delta) \le P(W) + 10^{-4} t\, \delta`,
    :math:`\delta = \langle g, \Delta\rangle + \lambda(\lVert X\rVert_1 - \lVert W\rVert_1) < 0`.
    Every iterate's gradient is a dual candidate (scaled into the dual ball), so the gap is known
    at every step; the caller's certificate (residual form, original problem) decides the stop.
    At most ``max_steps`` Newton steps per call (the driver falls back to FISTA with Newton-CG
    polishing when a call ends unconverged).
    """
    f64 = torch.float64
    n, s = op.shape
    C = datafit.n_outputs
    X = op.dense().to(f64)
    a = datafit.weights.to(f64).reshape(-1, 1)
    E = datafit.E.to(f64)
    full = s * C <= NEWTON_FULL_HESSIAN
    tr = Tracker(datafit, penalty, lam)
    W = W.to(f64).clone()
    Z = X @ W
    matvecs, it, sweeps = 1, 0, 8
    rows_all = np.arange(s * C if full else s, dtype=np.int64)
    zero = np.zeros(1)

    def F(Wx, Zx) -> float:
        return float(datafit.value(Zx)) + lam * float(Wx.abs().sum())

    def model_step(Hn: np.ndarray, w: torch.Tensor, g_w: torch.Tensor) -> np.ndarray:
        r"""Minimiser (``sweeps`` compiled CD sweeps from ``w``) of the quadratic model
        :math:`\tfrac12 (x - w)^\top H (x - w) + g^\top (x - w) + \lambda \lVert x\rVert_1`,
        in the Gram form of :func:`cd_gram_sweeps` (:math:`B = H w - g`); a column ``(m, 1)``."""
        w_np = w.numpy().copy()
        Bn = (Hn @ w_np - g_w.numpy()).reshape(-1, 1)
        x = w_np.reshape(-1, 1).copy()
        Hx = Hn @ x
        cd_gram_sweeps(
            Hn,
            Bn,
            x,
            Hx,
            zero,
            lam,
            group=False,
            per_col=False,
            rows=rows_all,
            gram_tol=-math.inf,
            max_sweeps=sweeps,
            anderson=5,
        )
        return x

    Fw = F(W, Z)
    tr.offer_primal(W.to(op.dtype), Z.to(op.dtype))
    while True:
        P_ = torch.softmax(Z, dim=1)
        U = a * (P_ - E)
        g = X.T @ U
        matvecs += 1
        tr.offer_dual(U.to(op.dtype), g.to(op.dtype))
        if tr.converged(tol) or budget.left <= 0 or budget.out_of_time() or it >= max_steps:
            break
        Xn = W.clone()
        if full:
            Hm = torch.empty(s, C, s, C, dtype=f64)
            for c in range(C):
                for d in range(c, C):
                    w_cd = a[:, 0] * (P_[:, c] * ((1.0 if c == d else 0.0) - P_[:, d]))
                    blk = (X * w_cd[:, None]).T @ X
                    Hm[:, c, :, d] = blk
                    Hm[:, d, :, c] = blk.T
            x = model_step(Hm.reshape(s * C, s * C).numpy(), W.reshape(-1), g.reshape(-1))
            Xn = torch.from_numpy(x.reshape(s, C).copy())
        else:
            for c in range(C):
                w_c = a[:, 0] * P_[:, c] * (1.0 - P_[:, c])
                x = model_step(((X * w_c[:, None]).T @ X).numpy(), W[:, c], g[:, c])
                Xn[:, c] = torch.from_numpy(x[:, 0].copy())
        it += 1
        budget.used += 1
        sweeps = min(2 * sweeps, 256)
        Dl = Xn - W
        delta = float((g * Dl).sum()) + lam * (float(Xn.abs().sum()) - float(W.abs().sum()))
        if not delta < 0.0:
            # no descent direction left at this accuracy: refine the model solve or stop
            if sweeps >= 256:
                break
            continue
        DZ = X @ Dl
        matvecs += 1
        t = 1.0
        accepted = False
        for _ in range(30):
            Wt = W + t * Dl
            Zt = Z + t * DZ
            Ft = F(Wt, Zt)
            # (slack for the rounding of F itself near the optimum)
            if Ft <= Fw + 1e-4 * t * delta + 4 * _EPS64 * abs(Fw):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        W, Z, Fw = Wt, Zt, Ft
        tr.offer_primal(W.to(op.dtype), Z.to(op.dtype))
    logger.log(log_level, "newton: %d steps, primal=%.12g dual=%.12g", it, tr.primal, tr.dual)
    return tr.result(tol, it, matvecs)
