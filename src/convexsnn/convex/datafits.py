r"""Datafits: the data term :math:`f(Z) = \sum_i a_i\, \ell(y_i, z_i)` of the readout problem.

Every datafit is bound to its targets and row weights :math:`a_i \ge 0` and provides, for scores
:math:`Z = DW \in \mathbb{R}^{n \times C}`:

* ``value(Z)``: :math:`f(Z)`;
* ``gradient(Z)``: :math:`U = \nabla f(Z)` (a subgradient for the hinge). This is the natural
  dual candidate: at the optimum :math:`U^\star = \nabla f(DW^\star)`;
* ``dual_value(U, s)``: :math:`-f^*(sU)` for :math:`s \in [0, 1]` and :math:`U` in the form the
  datafit produces (its conjugate domain is preserved by the scaling, see each class).

With the penalty :math:`\lambda R` the Fenchel dual of
:math:`\min_W f(DW) + \lambda R(W)` is

.. math::

    \max_U\; -f^*(U) \quad \text{s.t.} \quad R^\circ(D^\top U) \le \lambda,

with :math:`R^\circ` the dual norm of :math:`R`. A dual-feasible point is obtained from any
candidate :math:`U` by the scaling :math:`s = \min(1, \lambda / R^\circ(D^\top U))`.
All reductions are accumulated in ``float64``.
"""

from __future__ import annotations

import torch

__all__ = ["Datafit", "Squared", "Hinge", "SoftmaxCrossEntropy", "DATAFITS", "make_datafit"]


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.to(torch.float64)


def _scale(s):
    """A dual scaling: a float, or a per-column tensor (converted to float64)."""
    return _f64(s) if isinstance(s, torch.Tensor) else float(s)


class Datafit:
    """Base class. Subclasses set ``name``, ``smooth`` and ``curvature``.

    Capabilities the solvers check (instead of the name) before using a datafit, so that a
    user-defined datafit works wherever its capabilities allow: ``smooth`` with ``gradient`` and
    ``curvature`` (proximal gradient), ``hessian_vec`` (Newton polishing), ``separable`` (per
    output column certificates), ``quadratic`` (the Gram-form solvers), ``box_dual`` (the hinge's
    interior point and PDHG); every datafit provides ``value`` and ``dual_value`` (the conjugate,
    for the certificate).

    Attributes
    ----------
    weights : Tensor (n,)
        Row weights :math:`a_i`.
    n_outputs : int
        Number of score columns :math:`C`.
    curvature : float
        Bound :math:`\\kappa` on the Hessian of one row's loss (``0`` for the non-smooth hinge), so
        that :math:`\\nabla f` is :math:`\\kappa \\lambda_{\\max}(D^\\top A D)`-Lipschitz in
        :math:`W`.
    """

    name = "base"
    smooth = True
    curvature = 1.0
    separable = False  # f(Z) = sum_c f_c(Z[:, c]) (then l1 duals may be scaled per column)
    quadratic = False  # f(Z) = 1/2 sum_i a_i ||z_i - y_i||^2 with targets Y (Gram-form solvers)
    box_dual = False  # U = -a y alpha, alpha in [0, 1] (the hinge's LP form: IPM, PDHG)

    def __init__(self, weights: torch.Tensor, n_outputs: int) -> None:
        self.weights = weights
        self.n_outputs = int(n_outputs)
        self._aw = weights[:, None]

    @property
    def n_rows(self) -> int:
        return int(self.weights.shape[0])

    def value(self, Z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def value_columns(self, Z: torch.Tensor) -> torch.Tensor:
        """Data loss per output column (``(C,)``) when separable, else the total as ``(1,)``."""
        return self.value(Z).reshape(1)

    def dual_value_columns(self, U: torch.Tensor, s) -> torch.Tensor:
        """Dual value per output column when separable, else the total as ``(1,)``."""
        return self.dual_value(U, s).reshape(1)

    def gradient(self, Z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def dual_value(self, U: torch.Tensor, s: float) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def to(self, device: torch.device, dtype: torch.dtype) -> Datafit:  # pragma: no cover
        raise NotImplementedError


class Squared(Datafit):
    r"""Squared loss :math:`f(Z) = \tfrac12 \sum_i a_i \lVert z_i - y_i\rVert_2^2`.

    Gradient :math:`U_i = a_i (z_i - y_i)`. Conjugate
    :math:`f^*(U) = \sum_i \langle U_i, y_i\rangle + \lVert U_i\rVert^2 / (2 a_i)` (rows with
    :math:`a_i = 0` need :math:`U_i = 0`), so the dual objective (the Lasso dual) is

    .. math::

        -f^*(sU) = -\sum_i \Big( s\langle U_i, y_i\rangle
                   + \frac{s^2 \lVert U_i\rVert^2}{2 a_i}\Big).

    Parameters
    ----------
    Y : Tensor (n, C)
        Real targets.
    weights : Tensor (n,)
        Row weights :math:`a_i \ge 0`.
    """

    name = "squared"
    smooth = True
    curvature = 1.0
    separable = True
    quadratic = True

    def __init__(self, Y: torch.Tensor, weights: torch.Tensor) -> None:
        super().__init__(weights, Y.shape[1])
        self.Y = Y
        pos = weights > 0
        self._inv2a = torch.where(
            pos,
            0.5 / torch.where(pos, weights, torch.ones_like(weights)),
            torch.zeros_like(weights),
        )[:, None]

    def value(self, Z: torch.Tensor) -> torch.Tensor:
        R = Z - self.Y
        return 0.5 * (_f64(self._aw) * _f64(R).square()).sum()

    def gradient(self, Z: torch.Tensor) -> torch.Tensor:
        return self._aw * (Z - self.Y)

    def value_columns(self, Z: torch.Tensor) -> torch.Tensor:
        """Per-column data loss (``(C,)``)."""
        return 0.5 * (_f64(self._aw) * _f64(Z - self.Y).square()).sum(dim=0)

    def hessian_vec(self, Z: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        r""":math:`\nabla^2 f(Z)[V] = a \circ V`."""
        return self._aw * V

    def dual_value(self, U: torch.Tensor, s) -> torch.Tensor:
        return self.dual_value_columns(U, s).sum()

    def dual_value_columns(self, U: torch.Tensor, s) -> torch.Tensor:
        """Per-column dual values (``(C,)``); ``s`` a float or a ``(C,)`` tensor."""
        U = _f64(U)
        lin = (U * _f64(self.Y)).sum(dim=0)
        quad = (_f64(self._inv2a) * U.square()).sum(dim=0)
        s = _scale(s)
        return -(s * lin + s * s * quad)

    def to(self, device, dtype) -> Squared:
        return Squared(
            self.Y.to(device=device, dtype=dtype), self.weights.to(device=device, dtype=dtype)
        )


class Hinge(Datafit):
    r"""One-vs-rest hinge :math:`f(Z) = \sum_i a_i \sum_c \max(0, 1 - y_{ic} z_{ic})`,
    :math:`y_{ic} \in \{-1, +1\}`.

    Writing :math:`\max(0, 1-t) = \max_{\alpha \in [0,1]} \alpha (1 - t)`, the subgradients are
    :math:`U_{ic} = -a_i y_{ic} \alpha_{ic}` with :math:`\alpha_{ic} \in [0,1]`
    (:math:`\alpha = 1` when the margin :math:`y z < 1`, :math:`0` when :math:`> 1`). On that set
    :math:`f^*(U) = -\sum_{ic} a_i \alpha_{ic}`; scaling :math:`U` by :math:`s \in [0,1]` keeps
    :math:`s\alpha` in the box, and

    .. math:: -f^*(sU) = s \sum_{ic} a_i \alpha_{ic} = -s \sum_{ic} U_{ic} y_{ic}.

    Parameters
    ----------
    Y : Tensor (n, C)
        Targets in {-1, +1}.
    weights : Tensor (n,)
        Row weights :math:`a_i \ge 0`.
    """

    name = "hinge"
    smooth = False
    curvature = 0.0
    separable = True
    box_dual = True

    def __init__(self, Y: torch.Tensor, weights: torch.Tensor) -> None:
        super().__init__(weights, Y.shape[1])
        self.Y = Y
        self.Ya = self._aw * Y

    def value(self, Z: torch.Tensor) -> torch.Tensor:
        return (_f64(self._aw) * _f64(torch.relu(1.0 - self.Y * Z))).sum()

    def gradient(self, Z: torch.Tensor) -> torch.Tensor:
        return -self.Ya * (self.Y * Z < 1).to(Z.dtype)

    def from_alpha(self, alpha: torch.Tensor) -> torch.Tensor:
        r""":math:`U = -a\, y\, \alpha` for box variables :math:`\alpha \in [0,1]^{n \times C}`."""
        return -self.Ya * alpha

    def dual_value(self, U: torch.Tensor, s) -> torch.Tensor:
        return self.dual_value_columns(U, s).sum()

    def dual_value_columns(self, U: torch.Tensor, s) -> torch.Tensor:
        """Per-column dual values (``(C,)``); ``s`` a float or a ``(C,)`` tensor."""
        return -_scale(s) * (_f64(U) * _f64(self.Y)).sum(dim=0)

    def value_columns(self, Z: torch.Tensor) -> torch.Tensor:
        """Per-column data loss (``(C,)``)."""
        return (_f64(self._aw) * _f64(torch.relu(1.0 - self.Y * Z))).sum(dim=0)

    def to(self, device, dtype) -> Hinge:
        return Hinge(
            self.Y.to(device=device, dtype=dtype), self.weights.to(device=device, dtype=dtype)
        )


class SoftmaxCrossEntropy(Datafit):
    r"""Softmax cross-entropy :math:`f(Z) = \sum_i a_i \big(\log\sum_c e^{z_{ic}} - z_{i y_i}\big)`.

    Gradient :math:`U_i = a_i (p_i - e_{y_i})` with :math:`p_i = \mathrm{softmax}(z_i)`. The
    conjugate of one row's loss is the negative entropy of :math:`q = u + e_{y}` on the simplex;
    for :math:`s \in [0,1]`, :math:`q_i = s p_i + (1-s) e_{y_i}` stays in the simplex and

    .. math:: -f^*(sU) = \sum_i a_i H(q_i) = -\sum_i a_i \sum_c q_{ic} \log q_{ic},
              \qquad q_i = s U_i / a_i + e_{y_i}.

    Parameters
    ----------
    labels : Tensor (n,) int64
        Class labels in ``[0, C)``.
    n_classes : int
        :math:`C \ge 2`.
    weights : Tensor (n,)
        Row weights :math:`a_i \ge 0`.
    """

    name = "softmax"
    smooth = True
    curvature = 0.5  # lambda_max(diag(p) - p p^T) <= 1/2

    def __init__(self, labels: torch.Tensor, n_classes: int, weights: torch.Tensor) -> None:
        super().__init__(weights, n_classes)
        self.labels = labels
        E = torch.zeros(labels.shape[0], n_classes, dtype=weights.dtype, device=weights.device)
        E.scatter_(1, labels[:, None], 1.0)
        self.E = E
        pos = weights > 0
        self._inva = torch.where(
            pos,
            1.0 / torch.where(pos, weights, torch.ones_like(weights)),
            torch.zeros_like(weights),
        )[:, None]

    @property
    def Y(self) -> torch.Tensor:
        """One-hot targets :math:`e_{y_i}` (``(n, C)``)."""
        return self.E

    def value(self, Z: torch.Tensor) -> torch.Tensor:
        Z = _f64(Z)
        lse = torch.logsumexp(Z, dim=1)
        zy = Z.gather(1, self.labels[:, None])[:, 0]
        return (_f64(self.weights) * (lse - zy)).sum()

    def gradient(self, Z: torch.Tensor) -> torch.Tensor:
        return self._aw * (torch.softmax(Z, dim=1) - self.E)

    def hessian_vec(
        self, Z: torch.Tensor, V: torch.Tensor, probs: torch.Tensor | None = None
    ) -> torch.Tensor:
        r""":math:`\nabla^2 f(Z)[V]_i = a_i (p_i \circ v_i - p_i \langle p_i, v_i\rangle)`."""
        p = torch.softmax(Z, dim=1) if probs is None else probs
        pv = p * V
        return self._aw * (pv - p * pv.sum(dim=1, keepdim=True))

    def dual_value(self, U: torch.Tensor, s: float) -> torch.Tensor:
        q = (s * _f64(U) * _f64(self._inva) + _f64(self.E)).clamp_min(0.0)
        ent = -torch.special.xlogy(q, q).sum(dim=1)
        return (_f64(self.weights) * ent).sum()

    def to(self, device, dtype) -> SoftmaxCrossEntropy:
        return SoftmaxCrossEntropy(
            self.labels.to(device), self.n_outputs, self.weights.to(device=device, dtype=dtype)
        )


DATAFITS = ("squared", "hinge", "softmax")


def make_datafit(
    name: str, Y: torch.Tensor, weights: torch.Tensor, n_classes: int | None = None
) -> Datafit:
    """Build the datafit ``name`` (one of :data:`DATAFITS`) on prepared targets.

    ``Y`` is ``(n, C)`` real targets for ``"squared"``, ``(n, C)`` ±1 targets for ``"hinge"`` and
    ``(n,)`` int64 labels for ``"softmax"`` (with ``n_classes``).
    """
    if name == "squared":
        return Squared(Y, weights)
    if name == "hinge":
        return Hinge(Y, weights)
    if name == "softmax":
        if n_classes is None:
            raise ValueError("n_classes is required for the softmax datafit")
        return SoftmaxCrossEntropy(Y, n_classes, weights)
    raise ValueError(f"loss must be one of {list(DATAFITS)}, got {name!r}")
