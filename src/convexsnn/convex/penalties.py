r"""Penalties :math:`R(W)` on the readout :math:`W \in \mathbb{R}^{P \times C}`.

Each penalty provides its value, its proximal operator (with a threshold that may differ per row
:math:`j`, for diagonally preconditioned methods), its dual norm :math:`R^\circ` and per-row scores
used by working sets and screening:

===========  ==============================================  =======================================
penalty      :math:`R(W)`                                    dual norm :math:`R^\circ(G)`
===========  ==============================================  =======================================
``l1``       :math:`\sum_{j,c} |W_{jc}|`                      :math:`\max_{j,c} |G_{jc}|`
``l21``      :math:`\sum_j \lVert W_{j,:}\rVert_2`            :math:`\max_j \lVert G_{j,:}\rVert_2`
===========  ==============================================  =======================================

``l21`` zeroes whole rows of :math:`W`, i.e. prunes whole neurons of the reconstructed network.
The row score :math:`\rho_j(G)` (``max_c |G_jc|`` or ``||G_j||_2``) satisfies
:math:`R^\circ(G) = \max_j \rho_j(G)`; a row with :math:`\rho_j(D^\top U^\star) < \lambda` is zero
at every optimum.
"""

from __future__ import annotations

import torch

__all__ = ["Penalty", "L1", "L21", "PENALTIES", "make_penalty", "soft_threshold", "dual_scale"]


def soft_threshold(V: torch.Tensor, thresh) -> torch.Tensor:
    r"""Soft thresholding :math:`\mathrm{sign}(v) \max(|v| - t, 0)`, elementwise (``thresh`` a
    number or a tensor broadcasting against ``V``): the proximal operator of :math:`t|\cdot|`."""
    return torch.sign(V) * torch.clamp_min(V.abs() - thresh, 0.0)


def dual_scale(penalty: Penalty, lam: float, G: torch.Tensor, per_column: bool = False):
    r"""Scaling :math:`s` that brings a dual candidate with :math:`G = D^\top U` into the feasible
    set :math:`\{R^\circ(D^\top U) \le \lambda\}`: :math:`s = \min(1, \lambda / R^\circ(G))`.

    With ``per_column`` (an elementwise penalty and a datafit that separates over output columns)
    the feasible set is a product over the columns and each column is scaled on its own
    (:math:`s_c = \min(1, \lambda / \max_j \rho(G_{jc}))`, a ``(C,)`` tensor, :math:`\rho` the
    penalty's dual norm of one entry: :math:`|G_{jc}|` for l1). This is the one home
    of the dual scaling: every certificate in :mod:`convexsnn.convex` goes through it.
    """
    if per_column and penalty.elementwise:
        # per-entry dual norms (row scores of single entries), maximised per output column
        mx = (
            penalty.entry_scores(G).amax(dim=0)
            if G.numel()
            else torch.zeros(G.shape[1], dtype=G.dtype, device=G.device)
        )
        return torch.where(
            mx > lam, lam / torch.where(mx > 0, mx, torch.ones_like(mx)), torch.ones_like(mx)
        )
    dn = penalty.dual_norm(G)
    return 1.0 if dn <= lam else lam / dn


class Penalty:
    r"""Base class of the penalties (stateless).

    Capabilities a solver may rely on (a user-defined penalty subclasses this and provides them):

    * ``value(W)``, ``prox(V, thresh)`` (``thresh`` a number or a ``(P, 1)`` column of per-row
      thresholds), ``row_scores(G)`` (so that :math:`R^\circ(G) = \max_j \rho_j(G)` and rows with
      :math:`\rho_j(D^\top U^\star) < \lambda` are zero at the optimum);
    * ``row_separable``: ``True`` when :math:`R(W) = \sum_j r(W_{j,:})` (row-wise proximal
      steps: coordinate descent, per-row thresholds);
    * ``elementwise``: ``True`` when :math:`R(W) = \sum_{jc} r(W_{jc})` with the
      :math:`\ell_1` dual ball (then duals scale per output column with a separable datafit,
      and the support-polishing steps for l1 apply).
    """

    name = "base"
    elementwise = False
    row_separable = False  # R(W) = sum_j r(W_j): prox row by row (coordinate descent)

    def value(self, W: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def value_columns(self, W: torch.Tensor) -> torch.Tensor:
        """Penalty per output column when separable (l1), else the total as ``(1,)``."""
        return self.value(W).reshape(1)

    def prox(self, V: torch.Tensor, thresh) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def row_scores(self, G: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def entry_scores(self, G: torch.Tensor) -> torch.Tensor:
        r"""Dual norm :math:`\rho(G_{jc})` of every single entry (shape of ``G``): the row
        scores of one-entry rows (an elementwise penalty may compute it directly)."""
        return self.row_scores(G.reshape(-1, 1)).reshape(G.shape)

    def dual_norm(self, G: torch.Tensor) -> float:
        """:math:`R^\\circ(G) = \\max_j \\rho_j(G)` as a Python float."""
        if G.numel() == 0:
            return 0.0
        return float(self.row_scores(G).max())

    def support_rows(self, W: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the rows :math:`j` with :math:`W_{j,:} \\ne 0`."""
        return (W != 0).any(dim=1)


class L1(Penalty):
    r"""Elementwise :math:`\ell_1`: :math:`R(W) = \sum_{jc} |W_{jc}|`.

    Proximal operator (soft thresholding, threshold :math:`t_j`):
    :math:`\mathrm{prox}(V)_{jc} = \mathrm{sign}(V_{jc}) \max(|V_{jc}| - t_j, 0)`.
    """

    name = "l1"
    elementwise = True
    row_separable = True

    def value(self, W: torch.Tensor) -> torch.Tensor:
        return W.abs().sum(dtype=torch.float64)

    def value_columns(self, W: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_j |W_{jc}|` per output column (``(C,)``)."""
        return W.abs().sum(dim=0, dtype=torch.float64)

    def prox(self, V: torch.Tensor, thresh) -> torch.Tensor:
        return soft_threshold(V, thresh)

    def row_scores(self, G: torch.Tensor) -> torch.Tensor:
        return G.abs().amax(dim=1)

    def entry_scores(self, G: torch.Tensor) -> torch.Tensor:
        return G.abs()


class L21(Penalty):
    r"""Row-wise group norm: :math:`R(W) = \sum_j \lVert W_{j,:}\rVert_2`.

    Proximal operator (group soft thresholding, threshold :math:`t_j`):
    :math:`\mathrm{prox}(V)_{j} = V_j \max(0, 1 - t_j / \lVert V_j\rVert_2)`.
    """

    name = "l21"
    row_separable = True

    def value(self, W: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(W.to(torch.float64), dim=1).sum()

    def prox(self, V: torch.Tensor, thresh) -> torch.Tensor:
        nrm = torch.linalg.vector_norm(V, dim=1, keepdim=True)
        scale = torch.clamp_min(1.0 - thresh / torch.clamp_min(nrm, torch.finfo(V.dtype).tiny), 0.0)
        return V * scale

    def row_scores(self, G: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(G, dim=1)


PENALTIES = ("l1", "l21")


def make_penalty(name: str | Penalty) -> Penalty:
    """Return the penalty ``name`` (one of :data:`PENALTIES`), or ``name`` itself when it is
    already a :class:`Penalty` instance (a user-defined penalty)."""
    if isinstance(name, Penalty):
        for attr in ("value", "prox", "row_scores"):
            if not callable(getattr(name, attr, None)):
                raise TypeError(f"penalty {type(name).__name__} lacks the method {attr}()")
        return name
    if name == "l1":
        return L1()
    if name == "l21":
        return L21()
    raise ValueError(f"penalty must be one of {list(PENALTIES)}, got {name!r}")
