r"""Gap-safe screening: dictionary columns proven to be zero at every optimum.

For a datafit :math:`f(Z) = \sum_i f_i(z_i)` whose row terms are :math:`\kappa a_i`-smooth
(:math:`\kappa` = ``datafit.curvature``: 1 for the squared loss, 1/2 for the softmax
cross-entropy, whose Hessian :math:`a_i(\mathrm{diag}(p) - pp^\top) \preceq \tfrac{a_i}{2} I`),
every conjugate :math:`f_i^*` is :math:`1/(\kappa a_i)`-strongly convex, so the dual objective
:math:`\mathcal D(U) = -\sum_i f_i^*(U_i)` is :math:`1/\kappa`-strongly concave in the norm
:math:`\lVert U\rVert_{A^{-1}}^2 = \sum_i \lVert U_i\rVert^2 / a_i`. For the dual optimum
:math:`U^\star` and any feasible :math:`U` and primal :math:`W`
(Fercoq, Gramfort & Salmon 2015; Ndiaye, Fercoq, Gramfort & Salmon 2017):

.. math::

    \lVert U - U^\star\rVert_{A^{-1}} \le r = \sqrt{2 \kappa\, (P(W) - \mathcal D(U))},
    \qquad |D_j^\top (U - U^\star)_c| \le \lVert D_j\rVert_A\, r,

with :math:`\lVert D_j\rVert_A = \sqrt{\sum_i a_i D_{ij}^2}`. The optimality conditions
(:math:`\rho_j(D^\top U^\star) < \lambda \Rightarrow W^\star_j = 0`) then give the tests

* l1: :math:`|(D^\top U)_{jc}| + r_c \lVert D_j\rVert_A < \lambda` for every output :math:`c`
  (:math:`r_c` from the gap of output column :math:`c` when the problem separates over the
  columns, else the total :math:`r`);
* l2,1: :math:`\lVert (D^\top U)_{j,:}\rVert_2 + r \lVert D_j\rVert_A < \lambda`;

a column passing its test is zero in *every* optimum and can be discarded for good. The hinge has
a linear conjugate on its box (its dual is not strongly concave): no gap-safe sphere exists for
it, and it is not screened.
"""

from __future__ import annotations

import math

import torch

from .datafits import Datafit
from .penalties import L1, L21, Penalty

__all__ = ["can_screen", "column_norms", "gap_safe_screen"]


def can_screen(datafit: Datafit, penalty: Penalty) -> bool:
    """Whether the gap-safe sphere test applies (a smooth datafit with a curvature bound, and
    the l1 or l2,1 penalty whose row scores are at most the l2 norm of the row)."""
    kappa = float(getattr(datafit, "curvature", 0.0) or 0.0)
    return bool(datafit.smooth) and kappa > 0 and isinstance(penalty, (L1, L21))


def column_norms(op, weights: torch.Tensor) -> torch.Tensor:
    r""":math:`\lVert D_j\rVert_A = \sqrt{\sum_i a_i D_{ij}}` for a binary dictionary (float64,
    ``(P,)``; one product :math:`D^\top a`)."""
    a = weights.reshape(-1, 1).to(op.dtype)
    return op.rmatmul(a)[:, 0].to(torch.float64).clamp_min(0.0).sqrt()


def gap_safe_screen(
    datafit: Datafit,
    penalty: Penalty,
    lam: float,
    G: torch.Tensor,
    primal: torch.Tensor,
    dual: torch.Tensor,
    norms: torch.Tensor,
) -> torch.Tensor:
    r"""Boolean ``(P,)`` mask of the columns whose gap-safe test proves them zero at the optimum.

    Parameters
    ----------
    G : Tensor (P, C)
        :math:`D^\top U` of a *feasible* dual point :math:`U` (scaled into the dual ball).
    primal, dual : Tensor (C,) or (1,)
        Primal values of a point and dual values of :math:`U`, per output column when the
        problem separates over the columns (then ``C`` entries), else totals.
    norms : Tensor (P,)
        :func:`column_norms`.
    """
    kappa = float(datafit.curvature)
    p = primal.to(torch.float64)
    d = dual.to(torch.float64)
    # rounding of the values themselves: never let the radius shrink below it
    gap = (p - d).clamp_min(0.0) + 4 * torch.finfo(torch.float64).eps * (p.abs() + d.abs())
    r = torch.sqrt(2.0 * kappa * gap)
    G64 = G.to(torch.float64)
    # G itself carries the rounding of its dtype: a relative margin
    margin = 1.0 + 1e3 * torch.finfo(G.dtype).eps
    if isinstance(penalty, L1):
        rad = norms[:, None] * (r[None, :] if r.numel() == G.shape[1] else r.sum())
        bound = (G64.abs() + rad) * margin
        return (bound < lam).all(dim=1)
    if isinstance(penalty, L21):
        rad = norms * float(math.sqrt(float((r * r).sum())))
        bound = (torch.linalg.vector_norm(G64, dim=1) + rad) * margin
        return bound < lam
    return torch.zeros(G.shape[0], dtype=torch.bool, device=G.device)
