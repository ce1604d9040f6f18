r"""Primal-dual interior-point method for the hinge + l1 readout (a linear program).

For one output column (the one-vs-rest hinge with l1 separates over columns), rows with
:math:`a_i > 0`, labels :math:`y \in \{\pm 1\}^n` and the dense dictionary block
:math:`X \in \{0,1\}^{n \times s}`, write :math:`w = u - v` and :math:`B = \mathrm{diag}(y) X`:

.. math::

    \min\; a^\top \xi + \lambda 1^\top (u + v) \quad \text{s.t.} \quad
    \xi + B u - B v - z = 1, \qquad \xi, u, v, z \ge 0,

a standard-form LP :math:`\min c^\top x,\ Ax = b,\ x \ge 0` whose dual is
:math:`\max 1^\top \alpha` s.t. :math:`0 \le \alpha \le a`, :math:`|B^\top \alpha| \le \lambda`
(the hinge dual with :math:`\alpha_i = a_i \tilde\alpha_i`).

Mehrotra's predictor-corrector method (Wright, *Primal-Dual Interior-Point Methods*, 1997,
ch. 10) with the normal equations

.. math::

    A \Theta A^\top = \Delta + B\, \mathrm{diag}(e)\, B^\top, \qquad
    \Delta = \theta_\xi + \theta_z, \quad e = \theta_u + \theta_v, \quad \theta = x / s,

solved either directly (:math:`n \times n` Cholesky when :math:`n \le s`) or by the
Sherman-Morrison-Woodbury identity through the :math:`s \times s` matrix
:math:`\mathrm{diag}(1/e) + X^\top \Delta^{-1} X` (note :math:`B^\top \Delta^{-1} B =
X^\top \Delta^{-1} X`), with one step of iterative refinement. Rows whose weight
:math:`1/\Delta_i` has become negligible (:math:`< 10^{-14}` of the largest; far from the margin)
are left out of that matrix.

Every iteration the primal point :math:`w = u - v` and the box variables
:math:`\tilde\alpha = \Pi_{[0,1]}(\alpha / a)` give a certificate (primal value and rescaled dual
value); the method stops as soon as its relative gap reaches the tolerance.
"""

from __future__ import annotations

import logging
import math

import torch

from ._polish import basis_solve

__all__ = ["ipm_hinge_l1"]

logger = logging.getLogger("convexsnn")


def _dual_crossover(X, y, a, lam, best_p, best_w, best_d, best_a, tol):
    """Basis candidates identified from the dual point ``best_a`` (see :func:`ipm_hinge_l1`);
    returns the best primal and dual values and points, the given ones included."""
    g = X.T @ (a * y * best_a)
    alpha = best_a
    seen = set()
    for rho in (1e-8, 1e-6, 1e-4):
        S = torch.nonzero(g.abs() >= lam * (1.0 - rho), as_tuple=False)[:, 0]
        for eps in (1e-8, 1e-6, 1e-4):
            E = (alpha > eps) & (alpha < 1.0 - eps)
            V = alpha >= 1.0 - eps
            key = (int(S.numel()), int(E.sum()), int(V.sum()))
            if key in seen:
                continue
            seen.add(key)
            wp, ap_ = basis_solve(X, y, a, lam, best_w, alpha, S, torch.sign(g[S]), E, V)
            if not (bool(torch.isfinite(wp).all()) and bool(torch.isfinite(ap_).all())):
                continue
            p2, d2 = _certificate(X, y, a, lam, wp, ap_)
            if p2 < best_p:
                best_p, best_w = p2, wp
            if d2 > best_d:
                best_d, best_a = d2, ap_
            if best_p - best_d <= tol * abs(best_p):
                return best_p, best_w, best_d, best_a
    return best_p, best_w, best_d, best_a


def _max_step(x: torch.Tensor, dx: torch.Tensor) -> float:
    """Largest step in (0, 1] keeping ``x + step * dx >= 0`` (``x > 0``)."""
    if x.numel() == 0:
        return 1.0
    # -x / dx where dx < 0; elsewhere 1 (no bound below 1)
    r = torch.where(dx < 0, -x / dx.clamp(max=-1e-300), 1.0)
    return min(1.0, float(r.min()))


def _certificate(X, y, a, lam, w, alpha_t):
    """Primal value, dual value (rescaled), margins of ``w`` and box variables ``alpha_t``."""
    z = X @ w
    primal = float((a * torch.relu(1.0 - y * z)).sum(dtype=torch.float64)) + lam * float(
        w.abs().sum(dtype=torch.float64)
    )
    g = X.T @ (a * y * alpha_t)
    mx = float(g.abs().max()) if g.numel() else 0.0
    sc = 1.0 if mx <= lam else lam / mx
    dual = sc * float((a * alpha_t).sum(dtype=torch.float64))
    return primal, dual


class _Newton:
    r"""Newton directions of the LP from one factorisation.

    With :math:`\theta = x/s`, :math:`g = r_d - r_c / x` per block, :math:`\Delta = \theta_\xi +
    \theta_z`, :math:`e = \theta_u + \theta_v`, :math:`\rho = r_p + \theta_\xi g_\xi -
    \theta_z g_z` and :math:`\kappa = \theta_u g_u - \theta_v g_v`, eliminating
    :math:`\Delta\xi, \Delta z` and :math:`\Delta u, \Delta v` leaves either

    * (``s <= n``) :math:`(\mathrm{diag}(1/e) + X^\top \Delta^{-1} X)\, \Delta w =
      B^\top \Delta^{-1} \rho - \kappa / e`, then :math:`\Delta\alpha = \Delta^{-1}(\rho -
      B \Delta w)`; or
    * (``n < s``) :math:`(\mathrm{diag}(\Delta) + B\,\mathrm{diag}(e) B^\top)\, \Delta\alpha =
      \rho + B\kappa`, then :math:`\Delta w = e \circ B^\top \Delta\alpha - \kappa`.
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, th: list[torch.Tensor]):
        self.X, self.y, self.th = X, y, th
        n, s = X.shape
        self.Delta = th[0] + th[3]
        self.e = th[1] + th[2]
        self.primal = s <= n
        if self.primal:
            self.dinv = 1.0 / self.Delta
            # rows far from the margin (weight below 1e-14 of the largest) change K by less
            # than its rounding error: leave them out of the product
            keep = self.dinv > 1e-14 * float(self.dinv.max())
            if bool(keep.all()):
                K = _gram(X, self.dinv.sqrt())
            else:
                K = _gram(X[keep], self.dinv[keep].sqrt())
            K.diagonal().add_(1.0 / self.e)
            self.L = _chol(K)
        else:
            # B diag(e) B^T = diag(y) (X diag(e) X^T) diag(y); columns whose weight e_j is
            # below 1e-14 of the largest (at zero, away from their bound) are left out
            keep = self.e > 1e-14 * float(self.e.max())
            if bool(keep.all()):
                M = _gram(X.T, self.e.sqrt())
            else:
                M = _gram(X[:, keep].T, self.e[keep].sqrt())
            M = (y[:, None] * M) * y[None, :]
            M.diagonal().add_(self.Delta)
            self.L = _chol(M)

    def direction(self, rp, rd, rc, x_l):
        X, y, th = self.X, self.y, self.th
        g = [r_d - r_c / x_ for r_d, r_c, x_ in zip(rd, rc, x_l)]
        rho = rp + th[0] * g[0] - th[3] * g[3]
        kappa = th[1] * g[1] - th[2] * g[2]
        if self.primal:
            rhs = X.T @ (y * (self.dinv * rho)) - kappa / self.e
            dw = self._solve(rhs, lambda v: v / self.e + X.T @ (self.dinv * (X @ v)))
            dal = self.dinv * (rho - y * (X @ dw))
            btd = X.T @ (y * dal)
        else:
            dal = self._solve(
                rho + y * (X @ kappa),
                lambda v: self.Delta * v + y * (X @ (self.e * (X.T @ (y * v)))),
            )
            btd = X.T @ (y * dal)
        du = th[1] * (btd - g[1])
        dv = th[2] * (-btd - g[2])
        dxi = th[0] * (dal - g[0])
        dz = th[3] * (-dal - g[3])
        ds = [rd[0] - dal, rd[1] - btd, rd[2] + btd, rd[3] + dal]
        return [dxi, du, dv, dz], dal, ds

    def _solve(self, rhs: torch.Tensor, mul) -> torch.Tensor:
        """Solve with the factor and one step of iterative refinement against the exact
        operator ``mul`` (all rows and columns, unrounded products)."""
        x = torch.cholesky_solve(rhs[:, None], self.L)[:, 0]
        r = rhs - mul(x)
        return x + torch.cholesky_solve(r[:, None], self.L)[:, 0]


def _gram(X: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    r""":math:`X^\top \mathrm{diag}(r^2) X` as :math:`A^\top A` with :math:`A = \mathrm{diag}(r) X`.

    On the CPU through numpy, whose ``A.T @ A`` is a symmetric rank-k update (BLAS ``syrk``:
    half the multiply-adds of a general product, and an exactly symmetric result)."""
    A = X * r[:, None]
    if A.device.type == "cpu":
        An = A.numpy()
        return torch.from_numpy(An.T @ An)
    return A.T @ A


def _chol(M: torch.Tensor) -> torch.Tensor:
    jitter = 0.0
    scale = float(M.diagonal().abs().max())
    for _ in range(8):
        L, info = torch.linalg.cholesky_ex(M)
        if int(info) == 0 and bool(torch.isfinite(L).all()):
            return L
        jitter = max(jitter * 100, 1e-14 * scale)
        M = M.clone()
        M.diagonal().add_(jitter)
    raise RuntimeError("normal equations are not positive definite")


def ipm_hinge_l1(
    X: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    lam: float,
    *,
    tol: float = 1e-9,
    max_iter: int = 100,
    deadline=None,
) -> tuple[torch.Tensor, torch.Tensor, int, bool, torch.Tensor]:
    """Solve one hinge + l1 column on the dense block ``X`` (``n x s``).

    Parameters
    ----------
    X : Tensor (n, s)
        Dictionary columns (0/1), rows with positive weight only.
    y : Tensor (n,)
        Targets in {-1, +1}.
    a : Tensor (n,)
        Positive row weights.
    lam : float
        :math:`\\lambda`.
    tol : float
        Relative gap of the certificate at which to stop.

    Returns
    -------
    w : Tensor (s,)
        Best primal point.
    alpha : Tensor (n,)
        Best box variables :math:`\\tilde\\alpha \\in [0,1]^n` (dual point
        :math:`U = -a y \\tilde\\alpha`).
    iterations : int
    converged : bool
    support : Tensor (s,) bool
        Columns in use (exact non-zeros once converged; otherwise read from the complementarity
        pairs :math:`u_j > s_{u,j}` or :math:`v_j > s_{v,j}`), a hint for working sets.
    """
    n, s = X.shape
    dt = X.dtype
    # scale the objective so that the weights are O(1): the LP solution is unchanged
    amax = float(a.max())
    an = a / amax
    lamn = lam / amax
    B_T = lambda r: X.T @ (y * r)  # noqa: E731  (B^T r)
    B_ = lambda v: y * (X @ v)  # noqa: E731  (B v)

    def A_mul(xi, u, v, z):
        return xi + B_(u - v) - z

    def At_mul(al):
        g = B_T(al)
        return al, g, -g, -al

    ones_n = torch.ones(n, dtype=dt, device=X.device)
    # Mehrotra's starting point: least-norm x and least-squares dual (A A^T = 2 I + 2 B B^T),
    # shifted inside the positive orthant
    two = [
        torch.ones(n, dtype=dt, device=X.device),
        torch.ones(s, dtype=dt, device=X.device),
        torch.ones(s, dtype=dt, device=X.device),
        torch.ones(n, dtype=dt, device=X.device),
    ]
    nw = _Newton(X, y, two)
    zero_n, zero_s = (
        torch.zeros(n, dtype=dt, device=X.device),
        torch.zeros(s, dtype=dt, device=X.device),
    )
    # least-norm x: x = A^T q with (A A^T) q = b  <=>  Newton step from x = 0 with rd = 0, rc = 0
    dxv, q, _ = nw.direction(
        ones_n, [zero_n, zero_s, zero_s, zero_n], [zero_n, zero_s, zero_s, zero_n], two
    )
    xi, u, v, z = At_mul(q)
    # least-squares dual: (A A^T) al = A c
    _, al0, _ = nw.direction(
        A_mul(an, lamn * two[1], lamn * two[2], zero_n),
        [zero_n, zero_s, zero_s, zero_n],
        [zero_n, zero_s, zero_s, zero_n],
        two,
    )
    g0 = B_T(al0)
    s_xi, s_u, s_v, s_z = an - al0, lamn - g0, lamn + g0, al0.clone()
    xs = [xi, u, v, z]
    ss = [s_xi, s_u, s_v, s_z]
    dx = max(-1.5 * min(float(t.min()) for t in xs), 0.0)
    ds = max(-1.5 * min(float(t.min()) for t in ss), 0.0)
    xs = [t + dx for t in xs]
    ss = [t + ds for t in ss]
    xts = sum(float((p * r).sum()) for p, r in zip(xs, ss))
    sx = sum(float(t.sum()) for t in xs)
    sum_s = sum(float(t.sum()) for t in ss)
    dx2 = 0.5 * xts / max(sum_s, 1e-300)
    ds2 = 0.5 * xts / max(sx, 1e-300)
    xi, u, v, z = [t + dx2 + 1e-12 for t in xs]
    s_xi, s_u, s_v, s_z = [t + ds2 + 1e-12 for t in ss]
    al = al0
    N = 2 * n + 2 * s
    best_p, best_w = math.inf, torch.zeros(s, dtype=dt, device=X.device)
    best_d, best_a = -math.inf, torch.zeros(n, dtype=dt, device=X.device)
    it = 0
    converged = False
    best_res = math.inf
    last_key, cross_rel = None, math.inf
    bnorm = math.sqrt(n)
    cnorm = float(torch.sqrt((an * an).sum() + 2 * s * lamn * lamn))
    for it in range(1, max_iter + 1):
        # certificate of the current iterate (in the original scaling)
        w = u - v
        alpha_t = (al / an).clamp(0.0, 1.0)
        p, d = _certificate(X, y, a, lam, w, alpha_t)
        if p < best_p:
            best_p, best_w = p, w.clone()
        if d > best_d:
            best_d, best_a = d, alpha_t.clone()
        if best_p - best_d <= tol * abs(best_p):
            converged = True
            break
        rel = (best_p - best_d) / max(abs(best_p), 1e-300)
        cross = it > 1 and rel <= 1e-3
        if cross:
            # crossover: identify the optimal face from the complementarity pairs
            S = torch.nonzero((u > s_u) | (v > s_v), as_tuple=False)[:, 0]
            E = (xi < s_xi) & (z < s_z)
            V = (xi >= s_xi) & ~E
            nE = int(E.sum())
            # a square guess (|E| = |S|, a non-degenerate basis) is tried whenever it is new; a
            # non-square one has no exact solution unless the optimal face is degenerate, and its
            # least-squares solve costs several Newton steps: tried again only once the gap has
            # fallen 100-fold since the last such try
            key = (nE, int(S.numel()), int(S.sum()), int(E.nonzero()[:, 0].sum()) if nE else 0)
            square = nE == int(S.numel())
            cross = key != last_key and (square or rel <= 1e-2 * cross_rel)
        if cross:
            last_key = key
            if not square:
                cross_rel = rel
            wp, ap_ = basis_solve(X, y, a, lam, w, alpha_t, S, torch.sign(w[S]), E, V)
            if bool(torch.isfinite(wp).all()) and bool(torch.isfinite(ap_).all()):
                p2, d2 = _certificate(X, y, a, lam, wp, ap_)
                if p2 < best_p:
                    best_p, best_w = p2, wp
                if d2 > best_d:
                    best_d, best_a = d2, ap_
                if best_p - best_d <= tol * abs(best_p):
                    converged = True
                    break
        if deadline is not None and deadline():
            break
        # residuals
        rp = ones_n - A_mul(xi, u, v, z)
        at = At_mul(al)
        cvec = (an, lamn, lamn, 0.0)
        rd = [c - t - sv for c, t, sv in zip(cvec, at, (s_xi, s_u, s_v, s_z))]
        x_l = [xi, u, v, z]
        s_l = [s_xi, s_u, s_v, s_z]
        mu = sum(float((p_ * q_).sum()) for p_, q_ in zip(x_l, s_l)) / N
        logger.debug("ipm it=%d primal=%.12g dual=%.12g mu=%.3g", it, best_p, best_d, mu)
        if mu < 1e-18 and max(
            float(rp.abs().max()), max(float(r.abs().max()) for r in rd)
        ) < 1e-13 * (1 + bnorm + cnorm):
            break
        res = max(
            float(rp.abs().max()) / (1 + bnorm), max(float(r.abs().max()) for r in rd) / (1 + cnorm)
        )
        if res > 1e6 * max(best_res, 1e-14) and res > 1e-6 and it > 5:
            logger.debug("ipm: residual blow-up (%.3g), keeping the best point", res)
            break  # numerical breakdown of the normal equations: keep the best point
        best_res = min(best_res, res)
        th = [p_ / q_ for p_, q_ in zip(x_l, s_l)]
        try:
            nw = _Newton(X, y, th)
        except RuntimeError:
            logger.debug("ipm: normal equations not positive definite at it=%d", it)
            break
        # predictor
        rc_aff = [-(p_ * q_) for p_, q_ in zip(x_l, s_l)]
        dx_a, dal_a, ds_a = nw.direction(rp, rd, rc_aff, x_l)
        ap = min(_max_step(p_, d_) for p_, d_ in zip(x_l, dx_a))
        ad = min(_max_step(q_, d_) for q_, d_ in zip(s_l, ds_a))
        mu_aff = (
            sum(
                float(((p_ + ap * dp) * (q_ + ad * dq)).sum())
                for p_, dp, q_, dq in zip(x_l, dx_a, s_l, ds_a)
            )
            / N
        )
        sigma = min(1.0, (mu_aff / mu) ** 3)
        # corrector
        rc = [-(p_ * q_) - dp * dq + sigma * mu for p_, q_, dp, dq in zip(x_l, s_l, dx_a, ds_a)]
        dxv, dal, dsv = nw.direction(rp, rd, rc, x_l)
        ap = min(_max_step(p_, d_) for p_, d_ in zip(x_l, dxv))
        ad = min(_max_step(q_, d_) for q_, d_ in zip(s_l, dsv))
        eta = max(0.9, 1.0 - 10 * mu)
        eta = min(eta, 0.999)
        ap, ad = eta * ap, eta * ad
        xi, u, v, z = [p_ + ap * d_ for p_, d_ in zip(x_l, dxv)]
        s_xi, s_u, s_v, s_z = [q_ + ad * d_ for q_, d_ in zip(s_l, dsv)]
        al = al + ad * dal
    if not best_p - best_d <= tol * abs(best_p) and best_p - best_d <= 1e-3 * abs(best_p):
        # the primal iterates lag (inaccurate directions near the end) while the dual point is
        # close: read the optimal face from the dual, the columns whose constraint
        # |B^T alpha| <= lam is (nearly) tight and the rows with alpha strictly inside (0, 1)
        best_p, best_w, best_d, best_a = _dual_crossover(
            X, y, a, lam, best_p, best_w, best_d, best_a, tol
        )
    # prefer exact zeros: drop the interior point's negligible entries if the certificate allows
    if best_w.numel():
        big = best_w.abs() > 1e-7 * float(best_w.abs().max())
        if not bool(big.all()):
            wt = best_w * big
            pt, _ = _certificate(X, y, a, lam, wt, best_a)
            slack = max(tol * abs(pt) - (pt - best_d), 0.0)
            if pt <= best_p + 0.5 * slack or pt <= best_p:
                best_w, best_p = wt, pt
    converged = best_p - best_d <= tol * abs(best_p)
    if converged or it == 0:
        support = best_w != 0
    else:  # interior point: the complementarity pairs tell which columns are in use
        support = (u > s_u) | (v > s_v) | (best_w.abs() > 1e-3 * float(best_w.abs().max()))
    return best_w, best_a, it, converged, support
