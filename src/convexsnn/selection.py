r"""Validation-based selection of the convex readout: witnesses -> dictionary -> path -> network.

:func:`fit_convex` is the one ``CVX`` pipeline of the library (the pipelines, the experiments and
the benchmarks all call it):

1. for every witness set of the grid and every readout bias :math:`b` of the grid (membrane
   readout; the spike readout has none), build the spike dictionary :math:`D_b` on the training
   inputs (:func:`~convexsnn.dictionary.build_dictionary`) and its rows on the validation inputs;
2. for every label head :math:`h` (one, or e.g. addition's sum digit and carry), solve the readout
   along the regularisation path, largest :math:`\beta` first, each solve warm-started from the
   previous one (:func:`convexsnn.convex.solve_path`), with the paper's
   :math:`\lambda = \beta / \sqrt{P}`. Duplicate (row, label) pairs are merged inside the solver
   (:func:`convexsnn.convex._rows.merge_duplicate_rows`, the certificate is recomputed on the
   original rows). With an element-wise :math:`\ell_1` penalty and a datafit that is a sum over
   heads the joint problem separates into one problem per head, so each head is solved and
   chosen on its own and the readouts are concatenated (columns ``[head 0 | head 1 | ...]``);
3. score every point on the validation rows only and choose by ``criterion`` and ``ties``:

   * ``"accuracy"``: highest validation accuracy; ties go to the lower validation loss, then to
     the larger :math:`\beta` (``ties="val_loss"``), or directly to the larger :math:`\beta`, the
     sparser readout (``ties="sparsity"``);
   * ``"objective"``: lowest validation loss :math:`\frac1{n_{val}}\sum_i \ell(y_i, z_i)` (the
     training datafit evaluated on validation rows); ties go to the larger :math:`\beta`.

   :math:`\beta` is chosen per head; the readout bias by the same key on the joint metrics
   (accuracy: every head right; loss: summed over heads); witness sets are compared on the
   primary metric alone (joint validation accuracy, or validation loss), ties going to the earlier
   set of the grid (the grid's order is the preference order);
4. reconstruct the chosen readout into a pruned :class:`~convexsnn.network.ParallelSNN`
   (:func:`~convexsnn.reconstruct.reconstruct`) and check it against :math:`D W` on the splits of
   ``check`` (:func:`~convexsnn.reconstruct.check_reconstruction`). The rule is that of
   ``check_reconstruction``: a changed prediction raises
   :class:`~convexsnn.reconstruct.ReconstructionError` unless the two best dictionary scores of
   that row are within rounding of the network's dtype (a tie a float32 network may break the
   other way with identical spikes). The test set is used for the chosen point only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ._checks import (
    check_choice,
    check_labels,
    renamed_attribute,
    renamed_function,
    renamed_kwargs,
)
from ._io import json_safe as _json_safe
from .convex import ReadoutSolution, labels_to_targets, lambda_max, make_datafit, solve_path
from .dictionary import STORAGES, SpikeDictionary, build_dictionary
from .network import READOUTS, ParallelSNN
from .reconstruct import check_reconstruction, joint_correct, kept_neurons, reconstruct
from .witnesses import Witnesses

__all__ = [
    "ConvexFit",
    "HeadFit",
    "NoDictionaryError",
    "fit_convex",
    "CRITERIA",
    "TIES",
    "default_regs",
    "default_betas",
]

logger = logging.getLogger("convexsnn")

CRITERIA = ("accuracy", "objective")
#: tie rules of the ``"accuracy"`` criterion
TIES = ("val_loss", "sparsity")
_SPLITS = ("train", "val", "test")


class NoDictionaryError(RuntimeError):
    """No witness set of the grid gave a dictionary (every neuron silent); ``witness_grid`` holds
    the error of every set."""

    def __init__(self, message: str, witness_grid: list[dict]):
        super().__init__(message)
        self.witness_grid = witness_grid


@dataclass
class HeadFit:
    """Chosen point of one label head.

    Attributes
    ----------
    reg, lam : float
        Chosen regularisation (:math:`\\lambda = \\beta/\\sqrt P`, ``reg`` :math:`= \\beta`;
        ``beta`` is a deprecated alias of ``reg``).
    solution : ReadoutSolution
        Readout ``W`` ``(P, C_h)`` and certificate of that solve.
    n_classes : int
        Classes of the head.
    train_accuracy, val_accuracy, val_loss : float
        Metrics of the head's rows at the chosen point.
    """

    reg: float
    lam: float
    solution: ReadoutSolution
    n_classes: int
    train_accuracy: float
    val_accuracy: float
    val_loss: float

    beta = renamed_attribute("reg", "beta")


@dataclass
class ConvexFit:
    """Result of :func:`fit_convex`.

    Attributes
    ----------
    dictionary : SpikeDictionary
        Training dictionary of the chosen witness set and readout bias.
    reg, lam : float
        Chosen regularisation of the first (or only) head; ``heads`` has every head's
        (``beta`` is a deprecated alias of ``reg``, ``betas`` of :attr:`regs`). The JSON
        records (``grid``, :meth:`summary`) keep their keys ``"beta"`` / ``"betas"``.
    readout_bias : float
        Chosen readout bias.
    solution : ReadoutSolution
        Readout weights and certificate of the first (or only) head.
    model : ParallelSNN or None
        The reconstructed (pruned) network.
    train_accuracy, val_accuracy, test_accuracy : float
        Joint accuracies (every head right) of the chosen point (test: ``nan`` when no test data
        was given).
    grid : list of dict
        One JSON-safe record per (witness set, readout bias, head, reg): witness settings,
        accuracies, validation loss, support size, certificate; a witness set that gave no
        dictionary has one record with its ``error``.
    checks : dict
        :func:`~convexsnn.reconstruct.check_reconstruction` results per checked split.
    settings : dict
        The options of the fit (JSON-safe).
    seconds : float
        Wall-clock time of the whole fit.
    heads : list of HeadFit
        The chosen point of every label head.
    witnesses : Witnesses or None
        The chosen witness set.
    witness_settings : dict
        Its settings (the grid entry's dict; ``{}`` for a single witness set).
    witness_grid : list of dict
        One record per witness set: its settings and joint ``val_accuracy``, or its ``error``.
    timings : dict
        Seconds per stage: ``dictionary``, ``solve``, ``select``, ``reconstruct``.
    """

    dictionary: SpikeDictionary
    reg: float
    lam: float
    readout_bias: float
    solution: Any
    model: ParallelSNN | None
    train_accuracy: float
    val_accuracy: float
    test_accuracy: float
    grid: list[dict] = field(default_factory=list)
    checks: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    seconds: float = float("nan")
    heads: list[HeadFit] = field(default_factory=list)
    witnesses: Witnesses | None = None
    witness_settings: dict = field(default_factory=dict)
    witness_grid: list[dict] = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def certificate(self):
        """Certificate of the chosen solve (first head)."""
        return self.solution.certificate

    @property
    def certificates(self) -> list[dict]:
        """JSON-safe certificate of every head's chosen solve."""
        return [h.solution.certificate.to_dict() for h in self.heads]

    beta = renamed_attribute("reg", "beta")
    betas = renamed_attribute("regs", "betas")

    @property
    def regs(self) -> list[float]:
        """Chosen :math:`\\beta` (``reg``) of every head."""
        return [float(h.reg) for h in self.heads]

    @property
    def W(self) -> torch.Tensor:
        """Readout of all heads, ``(P, sum C_h)`` float64 (columns ``[head 0 | head 1 | ...]``)."""
        return _concat_W([h.solution for h in self.heads])

    def summary(self) -> dict:
        """JSON-safe summary of the chosen point (without the grid)."""
        return _json_safe(
            {
                "beta": self.reg,
                "lam": self.lam,
                "readout_bias": self.readout_bias,
                "betas": self.regs,
                "witness_settings": self.witness_settings,
                "train_accuracy": self.train_accuracy,
                "val_accuracy": self.val_accuracy,
                "test_accuracy": self.test_accuracy,
                "support": kept_neurons(self.W),
                "certificate": self.solution.certificate.to_dict(),
                "certificates": self.certificates,
                "dictionary": self.dictionary.summary(),
                "model": None
                if self.model is None
                else {
                    "n_branches": self.model.n_branches,
                    "hidden_widths": self.model.hidden_widths,
                },
                "checks": self.checks,
                "settings": self.settings,
                "seconds": self.seconds,
            }
        )


def default_regs(reg_max: float, n: int = 8, ratio: float = 1e-4) -> list[float]:
    r"""Geometric grid :math:`\beta_{max} \cdot r^{k/n}`, ``k = 1..n`` (from just below
    :math:`\beta_{max}` = ``reg_max``, where :math:`W = 0`, down to ``ratio``
    :math:`\beta_{max}`)."""
    return [float(reg_max * ratio ** (k / n)) for k in range(1, n + 1)]


default_betas = renamed_function(default_regs, "default_betas", beta_max="reg_max")


# ------------------------------------------------------------------------------ inputs
def _unpack_data(data: Any) -> tuple[list, Any, str | None]:
    """(splits [(X, y) train, val, test-or-None], n_classes, label_mode)."""
    if hasattr(data, "train") and hasattr(data, "val"):
        test = getattr(data, "test", None)
        splits = [
            (data.train.X, data.train.y),
            (data.val.X, data.val.y),
            None if test is None else (test.X, test.y),
        ]
        return splits, getattr(data, "n_classes", None), getattr(data, "label_mode", None)
    if isinstance(data, (tuple, list)) and len(data) in (4, 6):
        d = list(data)
        splits = [(d[0], d[1]), (d[2], d[3]), (d[4], d[5]) if len(d) == 6 else None]
        return splits, None, None
    raise TypeError(
        "data must be a TaskData (train/val/test splits) or a tuple "
        "(X_train, y_train, X_val, y_val[, X_test, y_test])"
    )


def _witness_grid(witnesses: Any) -> tuple[list[tuple[dict, Witnesses]], bool]:
    """``([(settings, Witnesses), ...], is_grid)`` from one witness set or a grid of them."""
    if isinstance(witnesses, Witnesses):
        return [({}, witnesses)], False
    if isinstance(witnesses, (list, tuple)) and witnesses:
        grid = []
        for i, item in enumerate(witnesses):
            if isinstance(item, Witnesses):
                item = ({}, item)
            if (
                not isinstance(item, (list, tuple))
                or len(item) != 2
                or not isinstance(item[0], dict)
                or not isinstance(item[1], Witnesses)
            ):
                raise TypeError(
                    f"witnesses[{i}] must be a Witnesses or a (settings dict, "
                    f"Witnesses) pair, got {type(item).__name__}"
                )
            grid.append((dict(item[0]), item[1]))
        return grid, True
    raise TypeError(
        "witnesses must be a Witnesses or a non-empty list of (settings dict, "
        f"Witnesses) pairs, got {type(witnesses).__name__}"
    )


def _rows_labels(
    y: Any, n: int, steps: str, T: int, name: str, n_heads: int | None
) -> list[torch.Tensor]:
    """Row labels of every head (rows: samples, or samples x steps for ``steps="all"``)."""
    t = check_labels(y, name)
    lead = (n,) if steps == "last" else (n, T)
    what = "one label per sequence" if steps == "last" else "one label per step"
    if n_heads is None:
        if steps == "all" and t.ndim == len(lead) + 1:
            raise ValueError(
                f"{name} has {t.shape[-1]} label heads: pass n_classes as a list "
                "(one entry per head)"
            )
        if tuple(t.shape) != lead:
            raise ValueError(
                f"{name} must have shape {lead} for steps={steps!r} ({what}), got {tuple(t.shape)}"
            )
        return [t.reshape(-1)]
    want = lead + (n_heads,)
    if tuple(t.shape) != want:
        raise ValueError(
            f"{name} must have shape {want} for steps={steps!r} ({what}, "
            f"{n_heads} heads), got {tuple(t.shape)}"
        )
    return [t[..., h].reshape(-1) for h in range(n_heads)]


def _val_loss(loss: str, Z: torch.Tensor, y: torch.Tensor, n_classes: int) -> float:
    """Mean datafit of the solver's loss on rows with scores ``Z`` and labels ``y``."""
    n = y.shape[0]
    a = torch.full((n,), 1.0 / n, dtype=torch.float64)
    if loss == "softmax":
        df = make_datafit("softmax", y, a, n_classes=n_classes)
    else:
        Y = labels_to_targets(y, n_classes, binary_single_column=Z.shape[1] == 1 and n_classes == 2)
        df = make_datafit(loss, Y, a)
    return float(df.value(Z.to(torch.float64)))


def _accuracy(
    Z: torch.Tensor, ys: Sequence[torch.Tensor], widths: Sequence[int] | None = None
) -> float:
    return float(joint_correct(Z, ys, widths).to(torch.float64).mean())


def _concat_W(solutions: Sequence[ReadoutSolution]) -> torch.Tensor:
    return torch.cat([s.W.to(device="cpu", dtype=torch.float64) for s in solutions], dim=1)


def _key(criterion: str, ties: str, acc: float, loss: float, reg: float) -> tuple:
    """Sort key of a point (smaller is better); see the module docstring."""
    if criterion == "objective":
        return (loss, -reg)
    if ties == "sparsity":
        return (-acc, -reg)
    return (-acc, loss, -reg)


@dataclass
class _Candidate:
    """One (witness set, readout bias) with the chosen point of every head."""

    key: tuple
    settings: dict
    witnesses: Witnesses
    dictionary: SpikeDictionary
    readout_bias: float
    heads: list[HeadFit]
    train_accuracy: float
    val_accuracy: float


# ------------------------------------------------------------------------------ the pipeline
@renamed_kwargs(betas="regs", n_betas="n_regs", beta_ratio="reg_ratio")
def fit_convex(
    witnesses: Any,
    data: Any,
    *,
    readout: str = "spike",
    readout_biases: Sequence[float] | None = None,
    steps: str | None = None,
    regs: Sequence[float] | None = None,
    n_regs: int = 8,
    reg_ratio: float = 1e-4,
    loss: str = "softmax",
    penalty: str = "l1",
    criterion: str = "accuracy",
    ties: str = "val_loss",
    n_classes: int | Sequence[int] | None = None,
    sample_weight: Any = None,
    tol: float = 1e-6,
    max_iter: int | None = None,
    max_time: float | None = None,
    storage: str = "bool",
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    prune: bool = True,
    check: bool | Sequence[str] = True,
    collapse_rows: bool = True,
    solver_options: dict | None = None,
) -> ConvexFit:
    r"""Fit the certified convex readout with validation-based selection (module docstring).

    Parameters
    ----------
    witnesses : Witnesses or list of (dict, Witnesses)
        One witness set (:mod:`convexsnn.witnesses`) or a grid of them, each with a dict of its
        settings (e.g. ``{"scale": 2.0}``) that goes into the records. In a grid, a set whose
        dictionary cannot be built (every neuron silent) is recorded with its error and skipped;
        :class:`NoDictionaryError` (a ``RuntimeError``) if no set is left. A single set raises
        that ``ValueError`` itself.
    data : TaskData or tuple
        A task (``.train``, ``.val``, ``.test`` splits) or
        ``(X_train, y_train, X_val, y_val[, X_test, y_test])``.
    readout : {"spike", "membrane"}
        Dictionary readout.
    readout_biases : sequence of float, optional
        Grid of membrane readout biases :math:`b` (default ``(0.0,)``); ignored (``0``) for the
        spike readout.
    steps : {"last", "all"}, optional
        Rows of the dictionary; default from the task's ``label_mode`` (``"sequence"`` ->
        ``"last"``, ``"token"`` -> ``"all"``), else ``"last"``.
    regs : sequence of float, optional
        :math:`\beta` grid in the paper's convention :math:`\lambda = \beta/\sqrt P`. Default:
        :func:`default_regs` (``n_regs`` values down to ``reg_ratio`` :math:`\beta_{max}`),
        computed per dictionary and head from :math:`\beta_{max} = \sqrt P \lambda_{max}`.
        (``betas``, ``n_betas`` and ``beta_ratio`` are deprecated aliases.)
    loss, penalty
        Datafit (``"squared"``, ``"hinge"``, ``"softmax"``) and penalty (``"l1"``, ``"l21"``).
    criterion : {"accuracy", "objective"}
        Selection rule on the validation rows (module docstring).
    ties : {"val_loss", "sparsity"}
        Tie rule of the ``"accuracy"`` criterion (module docstring).
    n_classes : int or list of int, optional
        Number of classes (default: the task's, else ``max(y) + 1``). A list (one entry per
        label head; the task's ``n_classes`` when it is a list) means several heads: labels then
        carry a last axis of heads (``(n, H)`` or ``(n, T, H)``) and a two-class head keeps two
        score columns.
    sample_weight, tol, max_iter, max_time
        Passed to :func:`convexsnn.convex.solve_path`.
    storage, chunk_size, device
        Dictionary options (:func:`~convexsnn.dictionary.build_dictionary`).
    dtype : torch.dtype
        Precision of the dictionary operator, the solves (and their certificates) and the
        validation scores.
    prune : bool
        Prune the reconstructed network.
    check : bool or sequence of {"train", "val", "test"}
        Splits on which the reconstruction is verified (``True``: train and test; ``False``:
        none); see the module docstring for the rule.
    collapse_rows : bool
        Let the solver merge duplicate (dictionary row, label) pairs into one weighted row
        (``merge_rows`` of :func:`~convexsnn.convex.solve_path`): the same objective, solution
        and certificate, on fewer rows when inputs repeat.
    solver_options : dict, optional
        Further keyword arguments of ``solve_path`` (``working_set``, ``polish``, ...).

    Returns
    -------
    ConvexFit
    """
    t_start = time.perf_counter()
    grid_in, is_grid = _witness_grid(witnesses)
    check_choice(readout, "readout", READOUTS)
    check_choice(criterion, "criterion", CRITERIA)
    check_choice(ties, "ties", TIES)
    check_choice(storage, "storage", STORAGES)
    if isinstance(check, bool):
        check_splits = ["train", "test"] if check else []
    else:
        check_splits = [check_choice(s, "check", _SPLITS) for s in check]
    splits, task_nc, label_mode = _unpack_data(data)
    if steps is None:
        steps = "all" if label_mode == "token" else "last"
    check_choice(steps, "steps", ("last", "all"))
    if n_classes is None:
        n_classes = task_nc
    multi = isinstance(n_classes, (list, tuple))
    n_heads = len(n_classes) if multi else None
    wit0 = grid_in[0][1]
    X = [
        None if s is None else wit0.check_input(s[0], f"X_{name}")
        for s, name in zip(splits, _SPLITS)
    ]
    Y = [
        None
        if s is None
        else _rows_labels(s[1], X[i].shape[0], steps, X[i].shape[1], f"y_{_SPLITS[i]}", n_heads)
        for i, s in enumerate(splits)
    ]
    if "test" in check_splits and X[2] is None:
        check_splits.remove("test")
    if multi:
        classes = [max(int(c), 2) for c in n_classes]
    else:
        classes = [
            max(
                int(n_classes)
                if isinstance(n_classes, int)
                else int(max(int(Y[0][0].max()), int(Y[1][0].max())) + 1),
                2,
            )
        ]
    if readout == "spike":
        biases = [0.0]
    else:
        biases = [float(b) for b in (readout_biases if readout_biases is not None else (0.0,))]
        if not biases:
            raise ValueError("readout_biases must hold at least one value")
    if regs is not None:
        regs = [float(b) for b in regs]
        if not regs or any(not (b > 0 and math.isfinite(b)) for b in regs):
            raise ValueError(f"regs must be finite and > 0, got {regs}")
    opts = dict(solver_options or {})
    solve_opts = dict(
        loss=loss,
        penalty=penalty,
        sample_weight=sample_weight,
        tol=tol,
        max_iter=max_iter,
        max_time=max_time,
        device=device,
        dtype=dtype,
        binary_single_column=not multi,
        merge_rows=collapse_rows,
        **opts,
    )
    timings = {"dictionary": 0.0, "solve": 0.0, "select": 0.0}
    grid: list[dict] = []
    witness_grid: list[dict] = []
    best: _Candidate | None = None
    for settings, wit in grid_in:
        wbest: _Candidate | None = None
        for b in biases:
            t0 = time.perf_counter()
            try:
                d = build_dictionary(
                    wit,
                    X[0],
                    readout=readout,
                    readout_bias=b,
                    steps=steps,
                    chunk_size=chunk_size,
                    device=device,
                    storage=storage,
                )
            except ValueError as exc:  # e.g. every column all-zero: a silent witness set
                if not is_grid:
                    raise
                err = f"{type(exc).__name__}: {exc}"
                logger.info(
                    "fit_convex: witness setting %s gives no dictionary (%s)", settings, err
                )
                grid.append(_json_safe({**settings, "readout_bias": b, "error": err}))
                continue
            op = d.operator(dtype, device)
            Dva = d.transform(X[1], dtype=dtype)
            timings["dictionary"] += time.perf_counter() - t0
            heads = [
                _fit_head(
                    h,
                    C,
                    d,
                    op,
                    Dva,
                    Y[0][h],
                    Y[1][h],
                    settings,
                    b,
                    regs,
                    n_regs,
                    reg_ratio,
                    criterion,
                    ties,
                    solve_opts,
                    grid,
                    timings,
                    multi,
                )
                for h, C in enumerate(classes)
            ]
            t2 = time.perf_counter()
            if multi:  # joint metrics: a row counts when every head is right
                sols = [hf.solution for hf in heads]
                widths = [s.W.shape[1] for s in sols]
                W_cat = _concat_W(sols)
                val_acc = _accuracy(Dva @ W_cat.to(Dva.dtype), Y[1], widths)
                train_acc = _accuracy(op.matmul(W_cat.to(op.dtype)).cpu(), Y[0], widths)
            else:
                val_acc, train_acc = heads[0].val_accuracy, heads[0].train_accuracy
            del Dva
            key = _key(
                criterion,
                ties,
                val_acc,
                sum(hf.val_loss for hf in heads),
                sum(hf.reg for hf in heads),
            )
            cand = _Candidate(key, settings, wit, d, b, heads, train_acc, val_acc)
            if wbest is None or key < wbest.key:
                wbest = cand
            timings["select"] += time.perf_counter() - t2
            logger.info("fit_convex %s b=%g: val=%.4f (P=%d)", settings, b, val_acc, d.n_columns)
        if wbest is None:
            witness_grid.append(_json_safe({**settings, "error": grid[-1]["error"]}))
            continue
        witness_grid.append(_json_safe({**settings, "val_accuracy": wbest.val_accuracy}))
        if best is None or wbest.key[0] < best.key[0]:
            best = wbest
    if best is None:
        raise NoDictionaryError(
            f"no witness setting produced a dictionary (all neurons silent): {witness_grid}",
            witness_grid,
        )
    return _finish(
        best,
        X,
        Y,
        classes,
        multi,
        check_splits,
        prune,
        timings,
        grid,
        witness_grid,
        t_start,
        _json_safe(
            {
                "readout": readout,
                "readout_biases": biases,
                "steps": steps,
                "betas": regs,
                "n_betas": n_regs,
                "beta_ratio": reg_ratio,
                "loss": loss,
                "penalty": penalty,
                "criterion": criterion,
                "ties": ties,
                "n_classes": classes if multi else classes[0],
                "tol": tol,
                "max_iter": max_iter,
                "max_time": max_time,
                "storage": storage,
                "dtype": dtype,
                "prune": prune,
                "collapse_rows": collapse_rows,
                "check": check_splits,
                "witnesses": best.witnesses.description,
                "witness_settings": best.settings,
                "solver_options": {k: repr(v) for k, v in opts.items()},
            }
        ),
    )


def _fit_head(
    h: int,
    C: int,
    d: SpikeDictionary,
    op: Any,
    Dva: torch.Tensor,
    ytr: torch.Tensor,
    yva: torch.Tensor,
    settings: dict,
    b: float,
    regs: list[float] | None,
    n_regs: int,
    reg_ratio: float,
    criterion: str,
    ties: str,
    solve_opts: dict,
    grid: list,
    timings: dict,
    multi: bool,
) -> HeadFit:
    """Solve head ``h`` along its reg path on dictionary ``d``; return its chosen point."""
    t1 = time.perf_counter()
    if regs is None:
        lmax = lambda_max(
            op,
            ytr,
            loss=solve_opts["loss"],
            penalty=solve_opts["penalty"],
            sample_weight=solve_opts["sample_weight"],
            n_classes=C,
            binary_single_column=solve_opts["binary_single_column"],
            dtype=solve_opts["dtype"],
            device=solve_opts["device"],
        )
        bgrid = default_regs(math.sqrt(d.n_columns) * float(lmax), n_regs, reg_ratio)
    else:
        bgrid = regs
    sols = solve_path(op, ytr, bgrid, n_classes=C, **solve_opts)
    timings["solve"] += time.perf_counter() - t1
    t2 = time.perf_counter()
    best: tuple | None = None
    loss = solve_opts["loss"]
    for reg, sol in zip(bgrid, sols):
        Ztr = op.matmul(sol.W.to(op.dtype)).cpu()
        Zva = Dva @ sol.W.to(device="cpu", dtype=Dva.dtype)
        hf = HeadFit(
            reg=float(reg),
            lam=float(sol.lam),
            solution=sol,
            n_classes=C,
            train_accuracy=_accuracy(Ztr, [ytr]),
            val_accuracy=_accuracy(Zva, [yva]),
            val_loss=_val_loss(loss, Zva, yva, C),
        )
        rec = {
            **settings,
            "readout_bias": b,
            **({"head": h} if multi else {}),
            "beta": hf.reg,
            "lam": hf.lam,
            "n_columns": d.n_columns,
            "support": kept_neurons(sol),
            "train_accuracy": hf.train_accuracy,
            "val_accuracy": hf.val_accuracy,
            "val_loss": hf.val_loss,
            "certificate": sol.certificate.to_dict(),
        }
        grid.append(_json_safe(rec))
        key = _key(criterion, ties, hf.val_accuracy, hf.val_loss, hf.reg)
        if best is None or key < best[0]:
            best = (key, hf)
        logger.info(
            "fit_convex: %s b=%g head %d reg=%.4g support=%d train=%.4f val=%.4f gap=%.2e",
            settings,
            b,
            h,
            reg,
            rec["support"],
            hf.train_accuracy,
            hf.val_accuracy,
            sol.certificate.rel_gap,
        )
    timings["select"] += time.perf_counter() - t2
    return best[1]


def _finish(
    best: _Candidate,
    X: list,
    Y: list,
    classes: list[int],
    multi: bool,
    check_splits: list[str],
    prune: bool,
    timings: dict,
    grid: list,
    witness_grid: list,
    t_start: float,
    settings: dict,
) -> ConvexFit:
    """Reconstruct the chosen candidate, check it, evaluate it on test."""
    t3 = time.perf_counter()
    d, heads = best.dictionary, best.heads
    sols = [hf.solution for hf in heads]
    W_cat = _concat_W(sols)
    certs = [s.certificate.to_dict() for s in sols]
    chosen = {
        **best.settings,
        "readout_bias": best.readout_bias,
        "beta": heads[0].reg if not multi else [hf.reg for hf in heads],
        "lam": heads[0].lam if not multi else [hf.lam for hf in heads],
        "n_columns": d.n_columns,
        "support": kept_neurons(W_cat),
        "train_accuracy": best.train_accuracy,
        "val_accuracy": best.val_accuracy,
    }
    model = reconstruct(
        d,
        W_cat,
        prune=prune,
        certificate=None if multi else certs[0],
        extra={"selection": _json_safe(chosen), "settings": settings, "certificates": certs},
    )
    head_widths = [s.W.shape[1] for s in sols] if multi else None
    checks: dict = {}
    test_acc = float("nan")
    for i, split in enumerate(_SPLITS):
        if split not in check_splits or X[i] is None:
            continue
        y = torch.stack(Y[i], dim=1) if multi else Y[i][0]
        checks[split] = check_reconstruction(
            model, d, W_cat, X[i], y, unique_inputs=True, heads=head_widths
        )
    if "test" in checks:
        test_acc = checks["test"]["accuracy_network"]
    elif X[2] is not None:
        with torch.no_grad():
            z = model(X[2].to(model.dtype))
        test_acc = _accuracy(z.reshape(-1, z.shape[-1]).cpu(), Y[2], head_widths)
    timings["reconstruct"] = time.perf_counter() - t3
    fit = ConvexFit(
        dictionary=d,
        reg=heads[0].reg,
        lam=heads[0].lam,
        readout_bias=best.readout_bias,
        solution=sols[0],
        model=model,
        train_accuracy=best.train_accuracy,
        val_accuracy=best.val_accuracy,
        test_accuracy=test_acc,
        grid=grid,
        checks=_json_safe(checks),
        settings=settings,
        seconds=time.perf_counter() - t_start,
        heads=heads,
        witnesses=best.witnesses,
        witness_settings=dict(best.settings),
        witness_grid=witness_grid,
        timings=timings,
    )
    model.saved_extra["selection"] = {
        "val_accuracy": fit.val_accuracy,
        "test_accuracy": _json_safe(test_acc),
        "train_accuracy": fit.train_accuracy,
    }
    logger.info(
        "fit_convex: chose %s b=%g reg=%s: val %.4f test %.4f (%.1fs)",
        fit.witness_settings,
        fit.readout_bias,
        fit.regs,
        fit.val_accuracy,
        test_acc,
        fit.seconds,
    )
    return fit
