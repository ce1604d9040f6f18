r"""Certified convex readout over a spike dictionary.

Problem (docs/method.md section 5). Given a binary dictionary :math:`D \in \{0,1\}^{n \times P}`, targets
and row weights :math:`a_i \ge 0`,

.. math::

    \min_{W \in \mathbb{R}^{P \times C}}\; P(W) = \sum_{i=1}^n a_i\, \ell\big(y_i, (DW)_i\big)
    + \lambda R(W),

with :math:`\ell` the squared loss, the one-vs-rest hinge or the softmax cross-entropy, and
:math:`R` the elementwise :math:`\ell_1` norm or the row-wise :math:`\ell_{2,1}` norm. There is no
intercept (the reconstructed network's output layer has no bias).

Conventions
-----------
* Row weights: :math:`a_i = 1/n` by default (the data loss is averaged over rows, as in the
  paper); ``sample_weight`` gives :math:`a_i` *literally* (not renormalised: pass ``w / w.sum()`` to
  keep the averaged scale with weights).
* Regularisation: give ``lam`` (:math:`\lambda`) or ``reg`` (:math:`\beta`) with the paper's
  convention :math:`\lambda = \beta / \sqrt{P}`, :math:`P` = number of dictionary columns.
* Targets ``y``:

  - ``"squared"``: a floating ``(n,)`` or ``(n, C)`` array is used as real targets; an integer (or
    bool) ``(n,)`` array is read as class labels and turned into :math:`\pm 1` one-vs-rest targets
    (see :func:`labels_to_targets`).
  - ``"hinge"``: integer labels ``0..C-1`` (one-vs-rest :math:`\pm1` targets), or explicit
    :math:`\pm 1` targets ``(n,)`` / ``(n, C)``.
  - ``"softmax"``: integer labels ``0..C-1``, :math:`C \ge 2`.

  With labels, ``C`` is ``n_classes`` or ``max(y) + 1``. For squared and hinge, a two-class problem
  uses a *single* output column (:math:`+1` for class 1, :math:`-1` for class 0) unless
  ``binary_single_column=False``; the one-vs-rest pair would be the same problem twice (with
  :math:`W_0 = -W_1`). Predictions: the sign for one column (``score > 0`` is class 1), the arg-max
  over columns otherwise (:func:`predict_from_scores`).

Certificate
-----------
Every solve returns the primal value of the returned point, the value of a feasible dual point
(the datafit's natural dual candidate rescaled into :math:`R^\circ(D^\top U) \le \lambda`) and their
gap, see :class:`~convexsnn.convex.certificate.Certificate`. Every stop decision of the driver is
made on that certificate, recomputed from the current ``W`` on the original rows and columns, in
float64, with the dual point in residual form (:math:`U = \nabla f(DW)`, never a difference of
large Gram-form terms). The solve stops when the relative gap is at most ``tol``
(``status="converged"``), or when the budget ends (``"max_iter"`` / ``"max_time"``) or no progress
is possible (``"stalled"``): then it returns the best point seen with ``converged=False`` and
emits a :class:`~convexsnn.convex.certificate.ConvergenceWarning`.

Algorithms
----------
``solver="auto"`` picks from the capabilities of the datafit and penalty (``quadratic``,
``smooth``, ``box_dual``; ``elementwise``, ``row_separable``, see
:mod:`~convexsnn.convex.datafits` and :mod:`~convexsnn.convex.penalties`), so user-defined ones
work wherever their capabilities allow:

* quadratic (squared loss, ``"gram"``): accelerated proximal gradient in *Gram form*
  (:math:`H = D_S^\top A D_S` of the working set, formed once per working set in
  :math:`O(n s^2)` from column blocks without an ``n x s`` float copy; then an iteration costs
  :math:`O(s^2 C)` whatever the number of rows), with guarded polishing on the support (normal
  equations) for l1; ``"cd"`` runs (block) coordinate descent on the same Gram form, compiled
  (numba) with Anderson acceleration for l1 and l2,1, and is the ``"auto"`` choice for them
  (``"gram"`` for other penalties); for l1 it alternates the sweeps with active-set Newton steps
  on the support (:func:`~convexsnn.convex._polish.newton_support_l1`), which is what converges
  in the near-interpolating regime (small :math:`\lambda`, large rank-deficient supports). Blocks
  of more than :func:`gram_max_columns` columns use FISTA on the operator. (The former rule switched
  to operator FISTA as soon as ``n * min(P, 4096) > 6e7``, i.e. at every ``n >= 15k``, because the
  Gram matrix was formed from a dense copy; the issue measured 83 s for FISTA against 19 s for
  the Gram form on 55k x 4k squared + l1.)
* softmax + l1 (``"newton"``; whole up to :math:`nP \le` ``NEWTON_MAX_ENTRIES``, above it
  through working sets of at least ``NEWTON_WS_MIN`` columns): proximal Newton, the
  quadratic model solved by the compiled coordinate descent, Armijo line search; blocks with
  :math:`sC >` ``NEWTON_FULL_HESSIAN`` use the Hessian-free row-form variant
  (:func:`~convexsnn.convex._softmax_cd.prox_newton_softmax_rows`) with Newton-CG on the
  identified face between its proximal steps (:mod:`~convexsnn.convex._softmax_face`; measured:
  certified the 6000 x 984 MNIST paper dictionary at :math:`\beta = 10^{-1}, 10^{-2}` in 24 s /
  214 s and reached rel gap 2e-6 at :math:`10^{-3}` in 600 s, where FISTA stopped at rel gaps
  0.03 / 0.06 after 60 s, ``benchmarks/bench_softmax_newton.py``; through working sets it
  certified the 55000 x 968 full-rec SG-CVX dictionary at :math:`10^{-3}` in about 200 s where
  FISTA stopped at rel gap 0.094 after 300 s,
  ``benchmarks/results/bench_softmax_55k_sgcvx_run1.json``);
* softmax otherwise (l2,1, or without numba): FISTA with backtracking and adaptive
  restart on the operator, finished by Newton-CG polishing on the support (signs fixed for l1,
  active rows for l2,1);
* hinge + l1 (a linear program): Mehrotra predictor-corrector interior-point method with a
  crossover to the identified basis; hinge + l2,1 (or dictionaries too large to densify):
  restarted, preconditioned PDHG (PDLP-style restarts and primal-weight balancing) with basis
  polishing for l1;
* all of them inside a working-set loop for large :math:`P`: the set keeps the support and adds
  the columns whose dual constraint is violated (most violated first, at most doubling); it never
  shrinks, and the loop stops only on the certificate, i.e. with the KKT conditions holding over
  the whole dictionary; and, when the dictionary can be inspected, on the problem with duplicate
  (row, target) pairs merged (exact, weights add up).

A :class:`~convexsnn.dictionary.SpikeDictionary` is used as it is stored (its operator view,
packed bits included).

The product-only algorithms (FISTA, PDHG) touch the dictionary only through :math:`DW` and
:math:`D^\top R` (:mod:`convexsnn.convex.linear_operator`); the Gram form, the interior point,
polishing, working sets and row merging also use the optional ``columns`` / ``dense`` methods of
the operator (on column blocks, or on the whole matrix for row merging when it is small enough),
and ``"auto"`` falls back to the product-only algorithms when they are missing.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._checks import renamed_attribute, renamed_kwargs
from .._scores import classes_from_scores, tolerance_from_abs_sums
from ._cd_numba import available as numba_available
from ._inner import (
    NEWTON_FULL_HESSIAN,
    Budget,
    Tracker,
    fista,
    ipm_hinge,
    pdhg_hinge,
    prox_newton_softmax,
    squared_gram,
)
from ._polish import can_polish, polish_hinge_l1, polish_newton, polish_squared_l1
from ._rows import RowGroups, merge_duplicate_rows
from ._screening import can_screen, column_norms, gap_safe_screen
from ._softmax_cd import newton_rows_fit, prox_newton_softmax_rows
from .certificate import Certificate, ConvergenceWarning
from .datafits import DATAFITS, Datafit, SoftmaxCrossEntropy, make_datafit
from .linear_operator import as_operator, available_memory
from .penalties import L1, L21, PENALTIES, Penalty, make_penalty

logger = logging.getLogger("convexsnn")

#: seconds between two progress lines of a long readout solve (INFO records)
PROGRESS_SECONDS = 10.0

__all__ = [
    "ReadoutSolution",
    "solve_readout",
    "solve_path",
    "lambda_max",
    "predict_from_scores",
    "labels_to_targets",
    "prepare_problem",
]

DEFAULT_MAX_ITER = {
    "fista": 20_000,
    "pdhg": 200_000,
    "ipm": 2_000,
    "cd": 100_000,
    "gram": 100_000,
    "newton": 20_000,
}
#: largest dictionary (n x P entries) the softmax proximal Newton solver takes whole; larger
#: ones go through working sets (blocks of at least ``NEWTON_WS_MIN`` columns)
NEWTON_MAX_ENTRIES = 16_000_000
#: first (and smallest) working set of the softmax proximal Newton solver, in columns
NEWTON_WS_MIN = 512
#: proximal Newton steps (and face steps per phase) on a working set that misses more than 5%
#: of its size in violators
NEWTON_WS_STEPS = 2
WORKING_SET_MIN_COLUMNS = 256
IPM_MAX_ENTRIES = 60_000_000
#: largest block solved in Gram form (its s x s float64 Gram matrix: 2 GiB at 16384), lowered to
#: what a quarter of the available memory holds (:func:`gram_max_columns`); larger blocks (or
#: whole dictionaries without working sets) use FISTA on the operator
GRAM_MAX_COLUMNS = 16384


def gram_max_columns() -> int:
    """Largest Gram-form block now: :data:`GRAM_MAX_COLUMNS`, or fewer columns when a quarter of
    the available memory cannot hold the ``s x s`` float64 Gram matrix (at least 1024)."""
    avail = available_memory()
    if avail is None:
        return GRAM_MAX_COLUMNS
    return max(1024, min(GRAM_MAX_COLUMNS, int(math.sqrt(0.25 * avail / 8))))


SOLVERS = ("auto", "fista", "gram", "cd", "pdhg", "ipm", "newton")


# --------------------------------------------------------------------------------------------
# helpers on targets and predictions
# --------------------------------------------------------------------------------------------


def predict_from_scores(scores: Any) -> torch.Tensor:
    """Class predictions from readout scores ``(n, C)`` (or ``(n,)``).

    One column: ``1`` where the score is ``> 0``, else ``0`` (the single-column binary encoding).
    Several columns: the arg-max over columns.
    """
    s = scores if isinstance(scores, torch.Tensor) else torch.as_tensor(np.asarray(scores))
    return classes_from_scores(s.reshape(-1, 1) if s.ndim == 1 else s)


def labels_to_targets(
    labels: Any,
    n_classes: int | None = None,
    *,
    binary_single_column: bool = True,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    r"""One-vs-rest :math:`\pm 1` targets from integer labels.

    Returns ``(n, C)`` with :math:`Y_{ic} = +1` if :math:`y_i = c` else :math:`-1`; for two classes
    with ``binary_single_column`` a single column :math:`Y_i = +1` for class 1, :math:`-1` for
    class 0.
    """
    lab = _check_labels(labels, "labels", None, n_classes)
    C = _n_classes(lab, n_classes, "labels")
    return _pm1(lab, C, binary_single_column, dtype)


def _pm1(lab: torch.Tensor, C: int, single: bool, dtype: torch.dtype) -> torch.Tensor:
    if C == 2 and single:
        return (2.0 * (lab == 1).to(dtype) - 1.0).reshape(-1, 1)
    Y = -torch.ones(lab.shape[0], C, dtype=dtype, device=lab.device)
    Y.scatter_(1, lab.reshape(-1, 1), 1.0)
    return Y


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    else:
        arr = np.asarray(x)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise TypeError(f"{name} must be real-valued, got complex dtype {t.dtype}")
    return t


def _check_finite(t: torch.Tensor, name: str) -> None:
    if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(
            f"{name} contains non-finite values ({int(torch.isnan(t).sum())} NaN, "
            f"{int(torch.isinf(t).sum())} inf)"
        )


def _check_labels(y: Any, name: str, n_rows: int | None, n_classes: int | None) -> torch.Tensor:
    t = _as_tensor(y, name)
    _check_finite(t, name)
    if t.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of integer class labels, got shape {tuple(t.shape)}"
        )
    if n_rows is not None and t.shape[0] != n_rows:
        raise ValueError(f"{name} has {t.shape[0]} rows but D has {n_rows} rows")
    if t.dtype == torch.bool:
        t = t.to(torch.int64)
    if t.is_floating_point():
        if not bool((t == t.round()).all()):
            raise ValueError(
                f"{name} must hold integer class labels 0..C-1, got non-integer values"
            )
    t = t.to(torch.int64)
    if t.numel() and int(t.min()) < 0:
        raise ValueError(f"{name} has negative label {int(t.min())}; labels must be in [0, C)")
    if n_classes is not None and t.numel() and int(t.max()) >= n_classes:
        raise ValueError(
            f"{name} has label {int(t.max())} out of range for n_classes={n_classes} "
            f"(labels must be in [0, {n_classes - 1}])"
        )
    return t


def _n_classes(lab: torch.Tensor, n_classes: int | None, name: str) -> int:
    if n_classes is not None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
            raise TypeError(f"n_classes must be an integer, got {type(n_classes).__name__}")
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        return int(n_classes)
    C = int(lab.max()) + 1 if lab.numel() else 0
    if C < 2:
        raise ValueError(f"{name} holds a single class (max label {C - 1}); pass n_classes >= 2")
    return C


# --------------------------------------------------------------------------------------------
# problem preparation (validation)
# --------------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    op: Any
    datafit: Datafit
    penalty: Penalty
    n_classes: int | None
    target_kind: str  # "targets" | "labels" | "pm1"
    merged: RowGroups | None = None
    merge_checked: bool = False

    def working(self, merge_rows: bool):
        """(operator, datafit, groups) to iterate on: the row-merged problem when worthwhile."""
        if merge_rows and not self.merge_checked:
            self.merged = merge_duplicate_rows(self.op, self.datafit)
            self.merge_checked = True
        if merge_rows and self.merged is not None:
            return self.merged.op, self.merged.datafit, self.merged
        return self.op, self.datafit, None


def _prepare_targets(
    y: Any,
    loss: str,
    n: int,
    n_classes: int | None,
    binary_single_column: bool,
    dtype: torch.dtype,
    device: torch.device,
):
    t = _as_tensor(y, "y")
    _check_finite(t, "y")
    if t.ndim == 0 or t.ndim > 2:
        raise ValueError(
            f"y must be 1-D or 2-D with one entry per row of D, got shape {tuple(t.shape)}"
        )
    if t.shape[0] != n:
        raise ValueError(f"y has {t.shape[0]} rows but D has {n} rows (row-count mismatch)")
    if t.ndim == 2 and t.shape[1] == 0:
        raise ValueError("y has zero columns")
    t = t.to(device)
    if loss == "squared":
        if t.is_floating_point():
            if n_classes is not None:
                raise ValueError(
                    "n_classes is only used with integer labels; y is floating (real targets)"
                )
            Y = t.to(dtype)
            return (Y.reshape(-1, 1) if Y.ndim == 1 else Y.contiguous()), None, "targets"
        lab = _check_labels(t, "y", n, n_classes)
        C = _n_classes(lab, n_classes, "y")
        return _pm1(lab, C, binary_single_column, dtype), C, "labels"
    if loss == "hinge":
        if t.ndim == 2:
            vals = t.to(torch.float64)
            if not bool(((vals == 1) | (vals == -1)).all()):
                raise ValueError(
                    "y with 2 dimensions must hold +-1 one-vs-rest targets for the hinge loss"
                )
            return vals.to(dtype).contiguous(), None, "pm1"
        if t.dtype != torch.bool:
            vals = t.to(torch.float64)
            if bool(((vals == 1) | (vals == -1)).all()) and bool((vals == -1).any()):
                if n_classes is not None:
                    raise ValueError("y holds +-1 targets; n_classes applies to labels 0..C-1")
                return vals.to(dtype).reshape(-1, 1), None, "pm1"
        lab = _check_labels(t, "y", n, n_classes)
        C = _n_classes(lab, n_classes, "y")
        return _pm1(lab, C, binary_single_column, dtype), C, "labels"
    # softmax
    lab = _check_labels(t, "y", n, n_classes)
    C = _n_classes(lab, n_classes, "y")
    return lab, C, "labels"


def _prepare_weights(sample_weight: Any, n: int, dtype, device) -> torch.Tensor:
    if sample_weight is None:
        return torch.full((n,), 1.0 / n, dtype=dtype, device=device)
    w = _as_tensor(sample_weight, "sample_weight")
    _check_finite(w, "sample_weight")
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(
            f"sample_weight must have shape ({n},) (one weight per row of D), got {tuple(w.shape)}"
        )
    w = w.to(device=device, dtype=dtype)
    if bool((w < 0).any()):
        raise ValueError("sample_weight must be >= 0")
    if not bool((w > 0).any()):
        raise ValueError("sample_weight must have at least one positive entry")
    return w


def prepare_problem(
    D: Any,
    y: Any,
    *,
    loss: str = "squared",
    penalty: str = "l1",
    sample_weight: Any = None,
    n_classes: int | None = None,
    binary_single_column: bool = True,
    dtype: torch.dtype | None = torch.float64,
    device: torch.device | str | None = None,
) -> _Prepared:
    r"""Validate the inputs and build (operator, datafit, penalty). Raises on bad input.

    ``loss`` is a name of :data:`DATAFITS` or a :class:`Datafit` subclass built as
    ``cls(Y, weights)`` on targets prepared as for the squared loss (real targets, or labels as
    :math:`\pm 1` one-vs-rest columns); ``penalty`` a name of :data:`PENALTIES` or a
    :class:`Penalty` instance. The solvers use them through their declared capabilities.
    """
    custom_df = isinstance(loss, type) and issubclass(loss, Datafit)
    if not custom_df and (not isinstance(loss, str) or loss not in DATAFITS):
        raise ValueError(
            f"loss must be one of {list(DATAFITS)} or a Datafit subclass, got {loss!r}"
        )
    if not isinstance(penalty, Penalty) and (
        not isinstance(penalty, str) or penalty not in PENALTIES
    ):
        raise ValueError(
            f"penalty must be one of {list(PENALTIES)} or a Penalty instance, got {penalty!r}"
        )
    if dtype is not None and dtype not in (torch.float64, torch.float32):
        raise TypeError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
    op = as_operator(D, dtype=dtype, device=device, name="D")
    n, P = op.shape
    dt, dev = op.dtype, torch.device(op.device)
    Y, C, kind = _prepare_targets(
        y, "squared" if custom_df else loss, n, n_classes, binary_single_column, dt, dev
    )
    a = _prepare_weights(sample_weight, n, dt, dev)
    df = loss(Y, a) if custom_df else make_datafit(loss, Y, a, n_classes=C)
    if not (df.smooth or getattr(df, "box_dual", False)):
        raise ValueError(
            f"datafit {loss.__name__} is neither smooth nor box-dual: no solver applies"
        )
    return _Prepared(
        op=op, datafit=df, penalty=make_penalty(penalty), n_classes=C, target_kind=kind
    )


def _resolve_lam(lam: Any, reg: Any, P: int) -> tuple[float, float | None]:
    if (lam is None) == (reg is None):
        raise ValueError(
            "give exactly one of lam and reg (lam = reg / sqrt(P)); got "
            + ("both" if lam is not None else "neither")
        )
    name, v = ("lam", lam) if lam is not None else ("reg", reg)
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {v}")
    if name == "lam":
        return v, None
    return v / math.sqrt(P), v


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


@dataclass
class ReadoutSolution:
    """Solution of a readout problem.

    Attributes
    ----------
    W : Tensor (P, C)
        Readout weights (rows = dictionary columns = neurons).
    certificate : Certificate
        Primal/dual values and gap of ``W``.
    loss, penalty : str
    lam : float
        :math:`\\lambda` used; ``reg`` is set when the solve was specified by ``reg``.
    reg : float or None
        :math:`\\beta` of :math:`\\lambda = \\beta/\\sqrt{P}` (``beta`` is a deprecated alias).
    n_classes : int or None
        Number of classes for label problems (``None`` for real targets / explicit ±1 targets).
    dual : Tensor (n, C) or None
        The feasible dual point :math:`U` of the certificate (:math:`R^\\circ(D^\\top U) \\le
        \\lambda`).
    """

    W: torch.Tensor
    certificate: Certificate
    loss: str = "squared"
    penalty: str = "l1"
    lam: float = float("nan")
    reg: float | None = None
    n_classes: int | None = None
    dual: torch.Tensor | None = field(default=None, repr=False)
    _alpha: torch.Tensor | None = field(default=None, repr=False)

    beta = renamed_attribute("reg", "beta")

    def scores(self, D: Any) -> torch.Tensor:
        """Readout scores :math:`DW` (``(n, C)``) for a dictionary ``D`` on any rows."""
        op = as_operator(D, dtype=self.W.dtype, device=self.W.device, name="D")
        if op.shape[1] != self.W.shape[0]:
            raise ValueError(f"D has {op.shape[1]} columns but W has {self.W.shape[0]} rows")
        return op.matmul(self.W)

    def predict(self, D: Any) -> torch.Tensor:
        """Class predictions (see :func:`predict_from_scores`); scores within rounding of a tie
        are ties, broken as the reconstructed network breaks them
        (:func:`convexsnn._scores.classes_from_scores`)."""
        op = as_operator(D, dtype=self.W.dtype, device=self.W.device, name="D")
        if op.shape[1] != self.W.shape[0]:
            raise ValueError(f"D has {op.shape[1]} columns but W has {self.W.shape[0]} rows")
        # D holds 0/1 spikes, so |D| |W| = D |W|
        n_terms = int((self.W != 0).any(dim=1).sum())
        tol = tolerance_from_abs_sums(op.matmul(self.W.abs()), n_terms, self.W.dtype)
        return classes_from_scores(op.matmul(self.W), tol)

    @property
    def support(self) -> torch.Tensor:
        """Indices of the dictionary columns (neurons) with a non-zero row of ``W``."""
        return torch.nonzero((self.W != 0).any(dim=1), as_tuple=False)[:, 0]


ReadoutSolution.__init__ = renamed_kwargs(beta="reg")(ReadoutSolution.__init__)  # type: ignore[method-assign]

# --------------------------------------------------------------------------------------------
# the working-set driver
# --------------------------------------------------------------------------------------------


def _as_W0(W0: Any, P: int, C: int, dtype, device) -> torch.Tensor:
    if W0 is None:
        return torch.zeros(P, C, dtype=dtype, device=device)
    t = _as_tensor(W0, "W0")
    _check_finite(t, "W0")
    if t.ndim == 1 and C == 1:
        t = t.reshape(-1, 1)
    if tuple(t.shape) != (P, C):
        raise ValueError(f"W0 must have shape ({P}, {C}), got {tuple(t.shape)}")
    return t.to(device=device, dtype=dtype).clone()


def _polish_squared_l1_then_newton(op, df, pen, lam, W):
    """Exact normal-equation polish, then Newton-CG in case a sign changed."""
    cands = polish_squared_l1(op, df, pen, lam, W)
    if cands and torch.equal(torch.sign(cands[0]), torch.sign(W)):
        return cands  # same signs: the normal equations gave the exact optimum on this support
    return cands + polish_newton(
        op, df, pen, lam, cands[0] if cands else W, newton_steps=2, cg_iter=30
    )


def _has(op, *names: str) -> bool:
    return all(callable(getattr(op, nm, None)) for nm in names)


def _choose_solver(solver: str, df: Datafit, pen: Penalty, op) -> str:
    """Pick the inner algorithm from the capabilities of the datafit, penalty and operator.

    Each algorithm needs: ``"gram"`` / ``"cd"`` a quadratic datafit and a row-separable penalty
    (``cd``) or a proximal penalty (``gram``), plus column access on the operator; ``"fista"`` a
    smooth datafit; ``"ipm"`` a box-dual datafit (the hinge), an elementwise penalty and column
    access; ``"pdhg"`` a box-dual datafit. ``"auto"``: see :data:`GRAM_MAX_COLUMNS` and the module
    docstring.
    """
    if not isinstance(solver, str) or solver not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
    n, P = op.shape
    cols_ok = _has(op, "columns")
    quad = bool(getattr(df, "quadratic", False))
    box = bool(getattr(df, "box_dual", False))
    if solver == "auto":
        if quad and cols_ok and (P >= WORKING_SET_MIN_COLUMNS or P <= GRAM_MAX_COLUMNS):
            # compiled coordinate descent where it exists (l1, l2,1): measured 1.3-10x faster
            # than Gram-form FISTA on the benchmark dictionaries (RESULTS.md)
            return "cd" if type(pen) in (L1, L21) and numba_available() else "gram"
        if (
            isinstance(df, SoftmaxCrossEntropy)
            and type(pen) is L1
            and numba_available()
            and _has(op, "columns", "dense")
        ):
            # proximal Newton: with the full Hessian where it is small (sC <= 1024, measured
            # 8-26x faster than FISTA there), else in row form with the face phase
            # (_softmax_cd + _softmax_face), which certified the MNIST paper dictionary
            # (6000 x 984) at beta 1e-1 / 1e-2 in 24 s / 214 s (2e-6 at 1e-3 in 600 s) where
            # FISTA stopped at rel gaps 0.03 / 0.06 after 60 s
            # (benchmarks/results/bench_softmax_newton.json). Above NEWTON_MAX_ENTRIES through
            # working sets: on the full-rec SG-CVX dictionary (55000 x 968, seed 0, float64,
            # one thread, load 4-6) it certified beta 1e-2 / 1e-3 in 105-123 s / 195-223 s
            # where FISTA (the previous choice there) took 327 s / stopped at rel gap 0.094
            # after 300 s (benchmarks/results/bench_softmax_55k_sgcvx_run1.json); on the full
            # CVX dictionary (55000 x 3966, beta 1e-2) the two were at the same rel gap at
            # equal time (bench_softmax_newton_55k.json)
            return "newton"
        if df.smooth:
            return "fista"
        if (
            box
            and isinstance(pen, L1)
            and _has(op, "columns", "dense")
            and n * min(P, 4 * n) <= IPM_MAX_ENTRIES
        ):
            return "ipm"
        if box:
            return "pdhg"
        raise ValueError(
            f"no solver for the datafit {type(df).__name__}: it is neither smooth "
            "(gradient) nor box-dual (hinge form)"
        )
    if solver in ("gram", "cd") and not (quad and cols_ok):
        raise ValueError(
            f"solver={solver!r} needs a quadratic datafit (the squared loss) and an "
            "operator with columns()"
        )
    if solver == "cd" and not pen.row_separable:
        raise ValueError(f"solver='cd' needs a row-separable penalty; {type(pen).__name__} is not")
    if solver == "newton" and not (
        isinstance(df, SoftmaxCrossEntropy) and type(pen) is L1 and _has(op, "columns", "dense")
    ):
        raise ValueError(
            "solver='newton' is for the softmax loss with penalty='l1' on an operator with "
            "dense()/columns()"
        )
    if solver == "fista" and not df.smooth:
        raise ValueError(
            "solver='fista' needs a smooth loss (squared or softmax); use 'pdhg' or "
            "'ipm' for the hinge"
        )
    if solver in ("pdhg", "ipm") and not box:
        raise ValueError(
            f"solver={solver!r} is for the hinge loss; use 'fista' for "
            f"{getattr(df, 'name', type(df).__name__)}"
        )
    if solver == "ipm" and not (isinstance(pen, L1) and _has(op, "columns", "dense")):
        raise ValueError("solver='ipm' needs penalty='l1' and an operator with dense()/columns()")
    return solver


def _ws_min(algo: str) -> dict:
    """Keyword arguments of :func:`_select_working_set` for ``algo``: the softmax Newton solver
    starts from ``NEWTON_WS_MIN`` columns (a block's proximal steps and face phase cost about
    as much on 512 columns as on 32, and every round rebuilds the block)."""
    return {"min_size": NEWTON_WS_MIN} if algo == "newton" else {}


def _select_working_set(
    pen: Penalty,
    lam: float,
    G: torch.Tensor,
    W: torch.Tensor,
    S: torch.Tensor | None,
    min_size: int = 32,
    screened: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    r"""Next working set and the number of KKT violators outside the current one.

    The set never shrinks: it keeps the previous set and the support of ``W`` and adds the
    columns whose dual constraint is violated, :math:`\rho_j(D^\top U) > \lambda` (``G`` =
    :math:`D^\top U` for the natural dual candidate at ``W``), the most violated first, at most
    doubling its size (at least ``min_size`` columns). As it only grows and stops growing only
    when no column outside it violates its constraint, the loop ends with the KKT conditions
    checked over the whole dictionary (the certificate decides the stop). Columns in
    ``screened`` (proven zero at the optimum by the gap-safe test,
    :mod:`~convexsnn.convex._screening`) are left out of it for good.
    """
    P = G.shape[0]
    dev = G.device
    scores = pen.row_scores(G) / lam
    base = pen.support_rows(W).clone()
    if S is not None:
        base[S] = True
    if screened is not None:
        base &= ~screened
        scores = torch.where(screened, torch.full_like(scores, -math.inf), scores)
        P = P - int(screened.sum())
    viol = (scores > 1.0) & ~base
    n_viol = int(viol.sum())
    n_base = int(base.sum())
    if S is not None and n_viol == 0:
        return (S if screened is None else S[~screened[S]]), 0
    n_add = min(n_viol, max(n_base, min_size))
    n_add = max(n_add, min(min_size, P) - n_base)
    n_add = min(n_add, P - n_base)
    if n_add > 0:
        prio = torch.where(base, torch.full_like(scores, -math.inf), scores)
        add = torch.topk(prio, n_add).indices
        base[add] = True
    return torch.nonzero(base, as_tuple=False)[:, 0].to(dev), n_viol


def _solve_prepared(
    prep: _Prepared,
    lam: float,
    *,
    W0: torch.Tensor | None,
    alpha0: torch.Tensor | None,
    tol: float,
    max_iter: int | None,
    max_time: float | None,
    working_set: bool | None,
    polish: bool,
    verbose: bool,
    solver: str = "auto",
    merge_rows: bool = True,
    state: dict | None = None,
) -> tuple[torch.Tensor, Certificate, torch.Tensor, torch.Tensor | None]:
    """The working-set driver: inner solves on column blocks, every stop decided on the
    certificate of the original problem (all rows, all columns)."""
    t0 = time.perf_counter()
    op_full, df_full, pen = prep.op, prep.datafit, prep.penalty
    op, df, groups = prep.working(merge_rows)
    n, P = op_full.shape
    C = df.n_outputs
    dt, dev = op.dtype, torch.device(op.device)
    algo = _choose_solver(solver, df, pen, op)
    budget = Budget(DEFAULT_MAX_ITER[algo] if max_iter is None else max_iter, max_time)
    lvl = logging.INFO if verbose else logging.DEBUG
    has_cols = _has(op, "columns")
    if working_set is None:
        use_ws = has_cols and P >= WORKING_SET_MIN_COLUMNS
        if algo == "newton" and n * P <= NEWTON_MAX_ENTRIES:
            # softmax Newton on the whole dictionary (its face phase needs the coupled columns;
            # measured on the MNIST paper dictionary, benchmarks/bench_softmax_newton.py)
            use_ws = False
        if algo == "ipm" and op.shape[0] <= 512:
            use_ws = False  # few rows: the n x n normal equations are cheap on all columns
    else:
        use_ws = bool(working_set and has_cols)
    if working_set and not has_cols:
        logger.warning("working_set=True ignored: the operator has no columns() method")
    pol = None
    if polish and can_polish(op):
        # the support polishers solve the l1 (or l2,1) optimality conditions themselves
        if getattr(df, "quadratic", False) and isinstance(pen, L1):
            pol = _polish_squared_l1_then_newton
        elif getattr(df, "box_dual", False) and isinstance(pen, L1):
            pol = polish_hinge_l1
        elif df.smooth and isinstance(pen, (L1, L21)):
            pol = polish_newton

    def expand(U: torch.Tensor) -> torch.Tensor:
        return groups.expand_dual(U) if groups is not None else U

    # the certificate of the original problem: every stop is decided on it
    cert = Tracker(df_full, pen, lam)
    matvecs = 0

    def certify(Wx: torch.Tensor, full: list, working: list, DWf=None) -> torch.Tensor:
        """Offer ``Wx`` and dual candidates (``full``: on the original rows; ``working``: on the
        merged rows, expanded here) to the certificate; return :math:`D^\top U` of the first
        candidate (for the working-set scores)."""
        nonlocal matvecs
        if DWf is None:
            DWf = op_full.matmul(Wx)
            matvecs += 1
        cert.offer_primal(Wx, DWf)
        G0 = None
        for Uf in list(full) + [expand(U) for U in working if U is not None]:
            Gc = op_full.rmatmul(Uf)
            cert.offer_dual(Uf, Gc)
            G0 = Gc if G0 is None else G0
        matvecs += len(full) + len(working)
        return G0

    W = torch.zeros(P, C, dtype=dt, device=dev) if W0 is None else W0
    if df.smooth:
        alpha = None
        G = certify(W, [df_full.gradient(op_full.matmul(W))], [])
        matvecs += 1
    else:
        DW = op.matmul(W)
        alpha = alpha0 if alpha0 is not None else (df.Y * DW < 1).to(dt)
        G = certify(W, [], [df.from_alpha(alpha)])
        matvecs += 1
    iterations, outer = 0, 0
    ws_sizes: list[int] = []
    state = {} if state is None else state
    lipschitz, omega = state.get("lipschitz"), state.get("omega")
    supp_hint = None
    S = None
    gram_cache: dict = {}  # Gram matrix of the last working set (reused as the set grows)
    gram_limit = gram_max_columns()
    fell_back = False
    # gap-safe screening (smooth datafits with l1 / l2,1), on the certificate of the original
    # problem: columns proven zero at the optimum leave the working sets for good
    screen = use_ws and can_screen(df_full, pen)
    screened = torch.zeros(P, dtype=torch.bool, device=dev) if screen else None
    col_norms = column_norms(op_full, df_full.weights) if screen else None
    if screen:
        matvecs += 1

    def _screen(tr: Tracker) -> torch.Tensor:
        assert tr.pv is not None and tr.dv is not None and col_norms is not None
        return gap_safe_screen(df_full, pen, lam, tr.G, tr.pv, tr.dv, col_norms)

    stalled = 0
    tol_full = 0.5 * tol
    status = ""
    t_start = t_report = time.perf_counter()
    while True:
        rel = cert.gap / max(abs(cert.primal), 1e-300)
        if rel <= tol:
            status = "converged"
        elif budget.left <= 0:
            status = "max_iter"
        elif budget.out_of_time():
            status = "max_time"
        elif stalled >= 3:
            status = "stalled"
        if status:
            break
        outer += 1
        W = cert.W
        if screened is not None and cert.G is not None:
            screened |= _screen(cert)
        if use_ws:
            Wsel = W if supp_hint is None else W * supp_hint[:, None].to(W.dtype)
            S_new, n_viol = _select_working_set(
                pen, lam, G, Wsel, S, screened=screened, **_ws_min(algo)
            )
            if algo == "ipm" and working_set is None and 2 * int(S_new.numel()) > P:
                # the next set holds most columns and the interior point does not warm-start:
                # solve the whole dictionary now rather than that set first
                use_ws = False
        if use_ws:
            grew = S is None or int(S_new.numel()) > int(S.numel())
            S = S_new
            logger.log(lvl, "working set: %d columns, %d violators outside", int(S.numel()), n_viol)
            if int(S.numel()) == 0:
                # every column screened: W = 0 is optimal, its gradient the optimal dual point
                Wn = torch.zeros(P, C, dtype=dt, device=dev)
                if df.smooth:
                    G = certify(Wn, [df_full.gradient(op_full.matmul(Wn))], [])
                    matvecs += 1
                stalled += 1
                continue
            op_s = op.columns(S)
            W_s = W.index_select(0, S)
            cap = 1e-3 if algo == "ipm" else 0.5
            if n_viol <= 0.05 * int(S.numel()):
                tol_in = 0.5 * tol  # (nearly) complete set: solve it to the final tolerance
                if not grew:
                    tol_in = tol_full  # same set again: solve it more accurately
                    tol_full = max(0.1 * tol_full, 1e-15)
            else:
                tol_in = max(0.5 * tol, min(0.3 * rel, cap))
        else:
            op_s, W_s, tol_in = op, W, tol_full
            tol_full = max(0.1 * tol_full, 1e-15)
            grew = False
        gram_inner = algo in ("gram", "cd") and int(op_s.shape[1]) <= gram_limit
        if algo == "ipm":
            inner = ipm_hinge(op_s, df, pen, lam, W_s, tol=tol_in, budget=budget, log_level=lvl)
            alpha = inner.alpha
        elif gram_inner:
            inner = squared_gram(
                op_s,
                df,
                pen,
                lam,
                W_s,
                tol=tol_in,
                budget=budget,
                polish=polish,
                method="cd" if algo == "cd" else "fista",
                log_level=lvl,
                cols=S if use_ws else None,
                cache=gram_cache,
            )
        elif (
            algo == "newton"
            and int(op_s.shape[1]) * C <= NEWTON_FULL_HESSIAN
            and int(op_s.shape[0]) * int(op_s.shape[1]) <= NEWTON_MAX_ENTRIES
        ):
            inner = prox_newton_softmax(
                op_s, df, pen, lam, W_s, tol=tol_in, budget=budget, log_level=lvl
            )
            if not inner.converged:
                # Newton stalled (it can, on near-singular Hessians): FISTA + Newton-CG polishing
                # from its point for the rest of the solve
                algo, fell_back = "fista", True
                logger.log(lvl, "newton did not converge: switching to fista")
        elif algo == "newton" and newton_rows_fit(int(op_s.shape[0]), int(op_s.shape[1]), C):
            # Hessian-free proximal Newton (row-form coordinate descent on a float32 block)
            # on a working set that still misses many violators, a few steps only: the set
            # grows on the violations outside it, solving it further is wasted
            partial = use_ws and n_viol > 0.05 * int(op_s.shape[1])
            inner = prox_newton_softmax_rows(
                op_s,
                df,
                pen,
                lam,
                W_s,
                tol=tol_in,
                budget=budget,
                log_level=lvl,
                max_steps=NEWTON_WS_STEPS if partial else 500,
                face_max_steps=NEWTON_WS_STEPS if partial else None,
            )
        elif algo in ("fista", "gram", "cd", "newton"):
            if algo == "newton":
                logger.log(lvl, "newton block %s does not fit in memory: fista", op_s.shape)
            inner = fista(
                op_s,
                df,
                pen,
                lam,
                W_s,
                tol=tol_in,
                budget=budget,
                lipschitz=None if use_ws else lipschitz,
                polish=pol,
                log_every=500 if verbose else 0,
                log_level=lvl,
            )
            lipschitz = inner.lipschitz
        else:
            inner = pdhg_hinge(
                op_s,
                df,
                pen,
                lam,
                W_s,
                alpha,
                tol=tol_in,
                budget=budget,
                omega=omega,
                polish=pol,
                log_every=2000 if verbose else 0,
                log_level=lvl,
            )
            omega, alpha = inner.omega, inner.alpha
        iterations += inner.iterations
        matvecs += inner.matvecs
        if use_ws:
            Wn = torch.zeros(P, C, dtype=dt, device=dev)
            Wn[S] = inner.W
            ws_sizes.append(int(S.numel()))
            supp_hint = None
            if inner.support is not None:
                supp_hint = torch.zeros(P, dtype=torch.bool, device=dev)
                supp_hint[S] = inner.support
            del op_s
        else:
            Wn = inner.W
        gap_before = cert.gap
        working = [inner.U_dual] if inner.U_dual is not inner.U else []
        if df.smooth:
            # residual form on the original rows first (its D^T U scores the columns)
            # (inner.U is the gradient at inner.W on the working rows: the same point)
            if gram_inner and groups is None:
                # the inner solve's D_S W_S on the original rows (Wn is zero outside S): the
                # product D Wn itself, not formed twice
                DWn = inner.DW
            else:
                DWn = op_full.matmul(Wn)
                matvecs += 1
            G = certify(Wn, [df_full.gradient(DWn)], working, DWf=DWn)
            if cert.W is not Wn:
                # the certificate kept (part of) an earlier point: score from its own gradient
                # (cert.DW is D cert.W, kept column by column with cert.W)
                G = op_full.rmatmul(df_full.gradient(cert.DW))
                matvecs += 1
        else:
            G = certify(Wn, [], [inner.U] + working)
        logger.log(
            lvl,
            "outer %d: ws=%s primal=%.12g dual=%.12g rel_gap=%.3g iters=%d",
            outer,
            int(S.numel()) if use_ws else None,
            cert.primal,
            cert.dual,
            cert.gap / max(abs(cert.primal), 1e-300),
            iterations,
        )
        now = time.perf_counter()
        if now - t_report >= PROGRESS_SECONDS:
            # a long solve shows its progress (the CLI prints INFO records): the certified gap
            # against its target and the budget used; no ETA (the gap's rate is not predictable)
            t_report = now
            left = "" if budget.deadline is None else f", {budget.deadline - now:.0f} s left"
            logger.info(
                "readout solve: round %d, %d iterations, rel gap %.2e (target %.1e), %.0f s%s",
                outer,
                iterations,
                cert.gap / max(abs(cert.primal), 1e-300),
                tol,
                now - t_start,
                left,
            )
        progress = cert.gap < gap_before * (1.0 - 1e-3)
        stalled = 0 if (progress or grew) else stalled + 1
        if use_ws and (
            int(S.numel()) == P
            or (algo == "ipm" and working_set is None and 2 * int(S.numel()) > P)
        ):
            use_ws = False  # the working set is (close to) the whole dictionary: go full
    state["lipschitz"], state["omega"] = lipschitz, omega
    best_W = cert.W
    n_screened = int(screened.sum()) if screened is not None else 0
    if screened is not None and cert.G is not None:
        # what the final certificate proves zero (reported; the solve is over)
        screened |= _screen(cert)
    seconds = time.perf_counter() - t0
    out = Certificate.from_values(
        cert.primal,
        cert.dual,
        iterations=iterations,
        seconds=seconds,
        converged=status == "converged",
        datafit=getattr(df, "name", type(df).__name__),
        penalty=getattr(pen, "name", type(pen).__name__),
        lam=float(lam),
        n_rows=n,
        n_columns=P,
        n_outputs=C,
        tol=float(tol),
        algorithm=("newton>" if fell_back else "")
        + algo
        + ("+ws" if ws_sizes else "")
        + ("+merged" if groups is not None else ""),
        info={
            "matvecs": int(matvecs),
            "outer_iterations": outer,
            "max_working_set": max(ws_sizes) if ws_sizes else P,
            "support_rows": int(pen.support_rows(best_W).sum()),
            "screened": n_screened,
            "screened_final": int(screened.sum()) if screened is not None else 0,
            "nonzeros": int((best_W != 0).sum()),
            "dtype": str(dt).replace("torch.", ""),
            "device": str(dev),
            "rows_used": int(op.shape[0]),
        },
        status=status,
    )
    logger.log(lvl, "%s", out)
    return best_W, out, cert.U, alpha


def _warn_if_not_converged(cert: Certificate, max_iter: Any) -> None:
    if not cert.converged:
        why = {
            "max_iter": "iteration budget (max_iter) used up",
            "max_time": "time budget (max_time) used up",
            "stalled": "no further progress (rounding)",
        }.get(cert.status, cert.status)
        msg = (
            f"readout solve stopped before reaching tol={cert.tol:g} ({why}): "
            f"rel_gap={cert.rel_gap:.3g} "
            f"(gap={cert.gap:.3g}) after {cert.iterations} iterations, {cert.seconds:.2f}s; "
            f"returning the best point seen (raise max_iter/max_time or loosen tol)"
        )
        logger.warning(msg)
        warnings.warn(ConvergenceWarning(msg, cert), stacklevel=3)


def _check_run_args(tol: Any, max_iter: Any, max_time: Any) -> None:
    if (
        isinstance(tol, bool)
        or not isinstance(tol, (int, float, np.floating, np.integer))
        or not math.isfinite(float(tol))
        or float(tol) <= 0
    ):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    if max_iter is not None and (
        isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 0
    ):
        raise ValueError(f"max_iter must be a non-negative integer or None, got {max_iter!r}")
    if max_time is not None and (not isinstance(max_time, (int, float)) or max_time <= 0):
        raise ValueError(f"max_time must be a number of seconds > 0 or None, got {max_time!r}")


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


@renamed_kwargs(beta="reg")
def solve_readout(
    D: Any,
    y: Any,
    *,
    loss: str = "squared",
    penalty: str = "l1",
    lam: float | None = None,
    reg: float | None = None,
    sample_weight: Any = None,
    n_classes: int | None = None,
    tol: float = 1e-6,
    max_iter: int | None = None,
    max_time: float | None = None,
    W0: Any = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    binary_single_column: bool = True,
    working_set: bool | None = None,
    polish: bool = True,
    solver: str = "auto",
    merge_rows: bool = True,
    verbose: bool = False,
) -> ReadoutSolution:
    r"""Solve :math:`\min_W \sum_i a_i \ell(y_i, (DW)_i) + \lambda R(W)` with a certificate.

    Parameters
    ----------
    D : Tensor, ndarray or operator, shape (n, P)
        Binary dictionary (``bool`` or 0/1 numbers), or any object following the operator protocol
        of :mod:`convexsnn.convex.linear_operator`.
    y : array-like
        Targets, see the module docstring (real targets, integer labels or ±1 targets).
    loss : {"squared", "hinge", "softmax"}
    penalty : {"l1", "l21"}
    lam, reg : float
        Exactly one: :math:`\lambda`, or ``reg`` :math:`= \beta` with
        :math:`\lambda = \beta/\sqrt{P}` (``beta=`` is a deprecated alias of ``reg``).
    sample_weight : array-like (n,), optional
        Row weights :math:`a_i \ge 0` used as given; default :math:`a_i = 1/n`.
    n_classes : int, optional
        Number of classes for label targets (default ``max(y) + 1``).
    tol : float
        Target relative duality gap ``gap / |primal|``.
    max_iter : int, optional
        Iteration budget over all inner solves (default 20 000 for FISTA, 200 000 for PDHG).
    max_time : float, optional
        Wall-clock budget in seconds.
    W0 : array-like (P, C), optional
        Warm start.
    device, dtype
        Where and in which precision to compute (``float64`` default; ``float32`` halves memory
        and time but rarely certifies gaps much below ``1e-5``).
    binary_single_column : bool
        Two-class labels with squared/hinge use one ±1 column (default) rather than two.
    working_set : bool, optional
        Force working sets on/off (default: on when ``P >= 256`` and ``D`` supports columns).
    polish : bool
        Try exact re-solves on the identified support (l1 with squared/hinge).
    solver : {"auto", "gram", "cd", "newton", "fista", "pdhg", "ipm"}
        Inner algorithm (see the module docstring). ``"auto"``: Gram-form proximal gradient for
        the squared loss, proximal Newton for softmax + l1 (through working sets above
        ``NEWTON_MAX_ENTRIES``; FISTA + Newton polishing for other softmax problems), the
        interior-point method for
        hinge + l1, restarted PDHG for hinge + l2,1; the product-only FISTA / PDHG when the
        dictionary cannot be densified (column blocks of at most ~6e7 entries).
    merge_rows : bool
        Merge rows with identical dictionary row and target (exact; weights add up) before
        solving, when the dictionary is small enough to inspect (see
        :func:`~convexsnn.convex._rows.merge_duplicate_rows`). The certificate is always
        computed on the original rows.
    verbose : bool
        Log progress at INFO level on the ``convexsnn`` logger (DEBUG otherwise).

    Returns
    -------
    ReadoutSolution

    Warns
    -----
    ConvergenceWarning
        When the budget ends before ``rel_gap <= tol``; the best point seen is returned.
    """
    _check_run_args(tol, max_iter, max_time)
    prep = prepare_problem(
        D,
        y,
        loss=loss,
        penalty=penalty,
        sample_weight=sample_weight,
        n_classes=n_classes,
        binary_single_column=binary_single_column,
        dtype=dtype,
        device=device,
    )
    P = prep.op.shape[1]
    lam_v, beta_v = _resolve_lam(lam, reg, P)
    C = prep.datafit.n_outputs
    W0t = None if W0 is None else _as_W0(W0, P, C, prep.op.dtype, prep.op.device)
    W, cert, U, alpha = _solve_prepared(
        prep,
        lam_v,
        W0=W0t,
        alpha0=None,
        tol=float(tol),
        max_iter=max_iter,
        max_time=max_time,
        working_set=working_set,
        polish=polish,
        verbose=verbose,
        solver=solver,
        merge_rows=merge_rows,
    )
    _warn_if_not_converged(cert, max_iter)
    return ReadoutSolution(
        W=W,
        certificate=cert,
        loss=prep.datafit.name,
        penalty=prep.penalty.name,
        lam=lam_v,
        reg=beta_v,
        n_classes=prep.n_classes,
        dual=U,
        _alpha=alpha,
    )


@renamed_kwargs(betas="regs")
def solve_path(
    D: Any,
    y: Any,
    regs: Sequence[float] | None = None,
    *,
    lams: Sequence[float] | None = None,
    loss: str = "squared",
    penalty: str = "l1",
    sample_weight: Any = None,
    n_classes: int | None = None,
    tol: float = 1e-6,
    max_iter: int | None = None,
    max_time: float | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    binary_single_column: bool = True,
    working_set: bool | None = None,
    polish: bool = True,
    warm_start: bool = True,
    solver: str = "auto",
    merge_rows: bool = True,
    verbose: bool = False,
) -> list[ReadoutSolution]:
    r"""Solve along a regularisation path with warm starts.

    The values (``regs`` :math:`= \beta` with :math:`\lambda = \beta/\sqrt{P}`, or ``lams``;
    ``betas=`` is a deprecated alias of ``regs``) are solved from the largest to the smallest,
    each solve starting from the previous solution (primal ``W``, which also seeds the working
    set; for PDHG the dual box variables and the primal weight too; the interior-point method
    itself starts cold); the list is returned in the order given.
    Validation and row merging are done once for the whole path. ``max_iter`` and ``max_time``
    apply to each solve. Other parameters as in :func:`solve_readout`.
    """
    _check_run_args(tol, max_iter, max_time)
    if (regs is None) == (lams is None):
        raise ValueError("give exactly one of regs and lams")
    vals = list(regs if regs is not None else lams)
    if not vals:
        raise ValueError("regs/lams must hold at least one value")
    prep = prepare_problem(
        D,
        y,
        loss=loss,
        penalty=penalty,
        sample_weight=sample_weight,
        n_classes=n_classes,
        binary_single_column=binary_single_column,
        dtype=dtype,
        device=device,
    )
    P = prep.op.shape[1]
    resolved = [
        _resolve_lam(None, v, P) if regs is not None else _resolve_lam(v, None, P) for v in vals
    ]
    order = sorted(range(len(vals)), key=lambda k: -resolved[k][0])
    out: list[ReadoutSolution | None] = [None] * len(vals)
    W_prev, a_prev = None, None
    state: dict = {}
    for k in order:
        lam_v, beta_v = resolved[k]
        W, cert, U, alpha = _solve_prepared(
            prep,
            lam_v,
            W0=W_prev.clone() if (warm_start and W_prev is not None) else None,
            alpha0=a_prev if warm_start else None,
            tol=float(tol),
            max_iter=max_iter,
            max_time=max_time,
            working_set=working_set,
            polish=polish,
            verbose=verbose,
            solver=solver,
            merge_rows=merge_rows,
            state=state if warm_start else None,
        )
        _warn_if_not_converged(cert, max_iter)
        out[k] = ReadoutSolution(
            W=W,
            certificate=cert,
            loss=prep.datafit.name,
            penalty=prep.penalty.name,
            lam=lam_v,
            reg=beta_v,
            n_classes=prep.n_classes,
            dual=U,
            _alpha=alpha,
        )
        W_prev, a_prev = W, alpha
    return out  # type: ignore[return-value]


def lambda_max(
    D: Any,
    y: Any,
    loss: str = "squared",
    penalty: str = "l1",
    sample_weight: Any = None,
    *,
    n_classes: int | None = None,
    binary_single_column: bool = True,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> float:
    r"""Smallest :math:`\lambda` for which :math:`W = 0` is optimal.

    :math:`\lambda_{\max} = R^\circ\big(D^\top \nabla f(0)\big)` with
    :math:`\nabla f(0) = -a \circ Y` (squared, hinge: every margin is 0 < 1) or
    :math:`a \circ (1/C - e_y)` (softmax). In the paper's convention the matching
    :math:`\beta_{\max} = \sqrt{P}\, \lambda_{\max}`.
    """
    prep = prepare_problem(
        D,
        y,
        loss=loss,
        penalty=penalty,
        sample_weight=sample_weight,
        n_classes=n_classes,
        binary_single_column=binary_single_column,
        dtype=dtype,
        device=device,
    )
    n, P = prep.op.shape
    Z0 = torch.zeros(n, prep.datafit.n_outputs, dtype=prep.op.dtype, device=prep.op.device)
    G = prep.op.rmatmul(prep.datafit.gradient(Z0))
    return prep.penalty.dual_norm(G)
