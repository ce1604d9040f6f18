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

__all__ = ["Penalty", "L1", "L21", "PENALTIES", "make_penalty"]


class Penalty:
    """Base class of the penalties (stateless)."""

    name = "base"

    def value(self, W: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def value_columns(self, W: torch.Tensor) -> torch.Tensor:
        """Penalty per output column when separable (l1), else the total as ``(1,)``."""
        return self.value(W).reshape(1)

    def prox(self, V: torch.Tensor, thresh) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def row_scores(self, G: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

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

    def value(self, W: torch.Tensor) -> torch.Tensor:
        return W.abs().sum(dtype=torch.float64)

    def value_columns(self, W: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_j |W_{jc}|` per output column (``(C,)``)."""
        return W.abs().sum(dim=0, dtype=torch.float64)

    def prox(self, V: torch.Tensor, thresh) -> torch.Tensor:
        return torch.sign(V) * torch.clamp_min(V.abs() - thresh, 0.0)

    def row_scores(self, G: torch.Tensor) -> torch.Tensor:
        return G.abs().amax(dim=1)


class L21(Penalty):
    r"""Row-wise group norm: :math:`R(W) = \sum_j \lVert W_{j,:}\rVert_2`.

    Proximal operator (group soft thresholding, threshold :math:`t_j`):
    :math:`\mathrm{prox}(V)_{j} = V_j \max(0, 1 - t_j / \lVert V_j\rVert_2)`.
    """

    name = "l21"

    def value(self, W: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(W.to(torch.float64), dim=1).sum()

    def prox(self, V: torch.Tensor, thresh) -> torch.Tensor:
        nrm = torch.linalg.vector_norm(V, dim=1, keepdim=True)
        scale = torch.clamp_min(1.0 - thresh / torch.clamp_min(nrm, torch.finfo(V.dtype).tiny), 0.0)
        return V * scale

    def row_scores(self, G: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(G, dim=1)


PENALTIES = ("l1", "l21")


def make_penalty(name: str) -> Penalty:
    """Return the penalty ``name`` (one of :data:`PENALTIES`)."""
    if name == "l1":
        return L1()
    if name == "l21":
        return L21()
    raise ValueError(f"penalty must be one of {list(PENALTIES)}, got {name!r}")
