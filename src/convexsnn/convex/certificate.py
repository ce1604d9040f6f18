r"""Optimality certificates of the convex readout.

For the problem :math:`\min_W P(W) = f(DW) + \lambda R(W)` every solve returns the primal value
:math:`P(W)` of the returned point and the value :math:`\mathcal{D}(U)` of a *feasible* dual point
(:math:`R^\circ(D^\top U) \le \lambda`). Weak duality gives
:math:`\mathcal{D}(U) \le P^\star \le P(W)`, so the gap :math:`P(W) - \mathcal{D}(U) \ge 0`
bounds the suboptimality of :math:`W` over the whole dictionary: the certificate of global
optimality.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Certificate", "ConvergenceWarning", "TINY", "STATUSES"]

TINY = 1e-300

#: why a solve stopped (``Certificate.status``)
STATUSES = ("converged", "max_iter", "max_time", "stalled")


def _json_float(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return x


@dataclass
class Certificate:
    r"""Primal value, feasible dual value and duality gap of a readout solve.

    Attributes
    ----------
    primal : float
        :math:`P(W) = \sum_i a_i \ell(y_i, (DW)_i) + \lambda R(W)` at the returned ``W``.
    dual : float
        Dual objective at a dual-feasible point (a lower bound on the optimum).
    gap : float
        ``primal - dual`` (>= 0; a negative value from rounding is reported as 0).
    rel_gap : float
        ``gap / max(|primal|, tiny)``.
    iterations : int
        Total iterations of the inner algorithm(s), all working sets together.
    seconds : float
        Wall-clock time of the solve.
    converged : bool
        ``rel_gap <= tol`` (``status == "converged"``).
    datafit, penalty : str
        Names of the loss and of the penalty.
    lam : float
        Regularisation weight :math:`\lambda` actually used.
    n_rows, n_columns : int
        Shape of the dictionary.
    n_outputs : int
        Number of output columns :math:`C` of ``W``.
    tol : float
        Requested relative gap.
    algorithm : str
        Inner algorithm (``"fista"`` or ``"pdhg"``), with ``"+ws"`` when working sets were used.
    info : dict
        Extra diagnostics (matrix products, working-set sizes, support size, ...).
    status : str
        Why the solve stopped: ``"converged"`` (``rel_gap <= tol``), ``"max_iter"`` or
        ``"max_time"`` (the budget ended first), ``"stalled"`` (no further progress: rounding
        limits the reachable gap above ``tol``); ``""`` for certificates built by hand.
    """

    primal: float
    dual: float
    gap: float
    rel_gap: float
    iterations: int
    seconds: float
    converged: bool
    datafit: str
    penalty: str
    lam: float
    n_rows: int
    n_columns: int
    n_outputs: int = 1
    tol: float = float("nan")
    algorithm: str = ""
    info: dict = field(default_factory=dict)
    status: str = ""

    @classmethod
    def from_values(cls, primal: float, dual: float, **kw: Any) -> Certificate:
        """Build from primal and dual values, computing ``gap`` and ``rel_gap``."""
        gap = max(float(primal) - float(dual), 0.0)
        rel = gap / max(abs(float(primal)), TINY)
        return cls(primal=float(primal), dual=float(dual), gap=gap, rel_gap=rel, **kw)

    def to_dict(self) -> dict:
        """JSON-safe dictionary (non-finite floats become ``None``)."""
        d = asdict(self)
        d["info"] = {k: _json_float(v) for k, v in self.info.items()}
        return {k: _json_float(v) for k, v in d.items()}

    def __str__(self) -> str:
        return (
            f"{self.datafit}+{self.penalty}: primal={self.primal:.10g} dual={self.dual:.10g} "
            f"gap={self.gap:.3g} rel_gap={self.rel_gap:.3g} iters={self.iterations} "
            f"{self.seconds:.3f}s "
            + (
                "converged"
                if self.converged
                else f"NOT converged ({self.status})"
                if self.status
                else "NOT converged"
            )
        )


def certified_label(certs: Any) -> str:
    """How every face (tables, CLI, demo, estimators) states a certificate: one rule.

    ``certs`` is a :class:`Certificate`, its ``to_dict()``, a list of them (several label heads:
    certified only when every one is), or ``None``. Returns ``"-"`` (no convex solve),
    ``"certified"`` (every solve reached its requested gap) or ``"NOT certified (<status>, rel gap
    <largest>)"``.
    """
    if certs is None:
        return "-"
    items = list(certs) if isinstance(certs, (list, tuple)) else [certs]
    items = [c.to_dict() if isinstance(c, Certificate) else c for c in items if c is not None]
    if not items:
        return "-"
    bad = [c for c in items if not c.get("converged")]
    if not bad:
        return "certified"
    gaps = [c.get("rel_gap") for c in bad]
    gaps = [float(g) for g in gaps if g is not None and math.isfinite(float(g))]
    statuses = sorted({str(c.get("status") or "not converged") for c in bad})
    gap = f", rel gap {max(gaps):.1e}" if gaps else ""
    return f"NOT certified ({'/'.join(statuses)}{gap})"


class ConvergenceWarning(UserWarning):
    """Raised (as a warning) when a solve stops before reaching the requested gap.

    Attributes
    ----------
    gap : float
        Duality gap reached (``certificate.gap``).
    rel_gap : float
        Relative duality gap reached (``certificate.rel_gap``).
    certificate : Certificate
        Full certificate of the returned (best) point.
    """

    def __init__(self, message: str, certificate: Certificate | None = None) -> None:
        super().__init__(message)
        self.certificate = certificate
        self.gap = certificate.gap if certificate is not None else float("nan")
        self.rel_gap = certificate.rel_gap if certificate is not None else float("nan")
