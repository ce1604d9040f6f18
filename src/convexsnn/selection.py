r"""Validation-based selection of the convex readout: dictionary -> path of solves -> network.

:func:`fit_convex` runs the whole ``CVX`` pipeline for one witness set:

1. for every readout bias :math:`b` of the grid (membrane readout; the spike readout has none),
   build the spike dictionary :math:`D_b` on the training inputs
   (:func:`~convexsnn.dictionary.build_dictionary`) and its rows on the validation inputs;
2. solve the readout along the regularisation path, largest :math:`\beta` first, each solve
   warm-started from the previous one (:func:`convexsnn.convex.solve_path`), with the paper's
   :math:`\lambda = \beta / \sqrt{P}`;
3. score every (b, :math:`\beta`) on the validation rows only and pick the best by
   ``criterion``:

   * ``"accuracy"``: highest validation accuracy; ties go to the lower validation loss, then to
     the larger :math:`\beta` (the sparser readout);
   * ``"objective"``: lowest validation loss :math:`\frac1{n_{val}}\sum_i \ell(y_i, z_i)` (the
     training datafit evaluated on validation rows); ties go to the larger :math:`\beta`;

4. reconstruct the chosen readout into a pruned :class:`~convexsnn.network.ParallelSNN`
   (:func:`~convexsnn.reconstruct.reconstruct`), check it against :math:`D W` on the training and
   test inputs, and report its test accuracy (the test set is used for the chosen point only).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ._io import json_safe as _json_safe
from ._checks import check_choice, check_labels
from .convex import labels_to_targets, lambda_max, make_datafit, solve_path
from .dictionary import STORAGES, SpikeDictionary, build_dictionary
from .network import ParallelSNN, READOUTS
from .reconstruct import check_reconstruction, predict_from_scores, reconstruct
from .witnesses import Witnesses

__all__ = ["ConvexFit", "fit_convex", "CRITERIA", "default_betas"]

logger = logging.getLogger("convexsnn")

CRITERIA = ("accuracy", "objective")


@dataclass
class ConvexFit:
    """Result of :func:`fit_convex`.

    Attributes
    ----------
    dictionary : SpikeDictionary
        Training dictionary of the chosen readout bias.
    beta, lam, readout_bias : float
        Chosen regularisation (:math:`\\lambda = \\beta/\\sqrt P`) and readout bias.
    solution : ReadoutSolution
        Readout weights ``W`` (P, C) and certificate of the chosen point.
    model : ParallelSNN or None
        The reconstructed (pruned) network.
    train_accuracy, val_accuracy, test_accuracy : float
        Accuracies of the chosen point (test: ``nan`` when no test data was given).
    grid : list of dict
        One JSON-safe record per (readout bias, beta): accuracies, validation loss, support size,
        certificate.
    checks : dict
        :func:`~convexsnn.reconstruct.check_reconstruction` results on train and test.
    settings : dict
        The options of the fit (JSON-safe).
    seconds : float
        Wall-clock time of the whole fit.
    """

    dictionary: SpikeDictionary
    beta: float
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

    @property
    def certificate(self):
        """Certificate of the chosen solve."""
        return self.solution.certificate

    def summary(self) -> dict:
        """JSON-safe summary of the chosen point (without the grid)."""
        return _json_safe({
            "beta": self.beta, "lam": self.lam, "readout_bias": self.readout_bias,
            "train_accuracy": self.train_accuracy, "val_accuracy": self.val_accuracy,
            "test_accuracy": self.test_accuracy,
            "support": int((self.solution.W != 0).any(dim=1).sum()),
            "certificate": self.solution.certificate.to_dict(),
            "dictionary": self.dictionary.summary(),
            "model": None if self.model is None else {
                "n_branches": self.model.n_branches, "hidden_widths": self.model.hidden_widths},
            "checks": self.checks, "settings": self.settings, "seconds": self.seconds})


def default_betas(beta_max: float, n: int = 8, ratio: float = 1e-4) -> list[float]:
    r"""Geometric grid :math:`\beta_{max} \cdot r^{k/n}`, ``k = 1..n`` (from just below
    :math:`\beta_{max}`, where :math:`W = 0`, down to ``ratio`` :math:`\beta_{max}`)."""
    return [float(beta_max * ratio ** (k / n)) for k in range(1, n + 1)]


def _unpack_data(data: Any) -> tuple[list, int | None, str | None]:
    """(splits [(X, y) train, val, test-or-None], n_classes, label_mode)."""
    if hasattr(data, "train") and hasattr(data, "val"):
        test = getattr(data, "test", None)
        splits = [(data.train.X, data.train.y), (data.val.X, data.val.y),
                  None if test is None else (test.X, test.y)]
        nc = getattr(data, "n_classes", None)
        if isinstance(nc, (list, tuple)):
            raise NotImplementedError("fit_convex handles one label head; this task has "
                                      f"{len(nc)} heads (n_classes={nc}): fit each head "
                                      "separately")
        return splits, nc, getattr(data, "label_mode", None)
    if isinstance(data, (tuple, list)) and len(data) in (4, 6):
        d = list(data)
        splits = [(d[0], d[1]), (d[2], d[3]), (d[4], d[5]) if len(d) == 6 else None]
        return splits, None, None
    raise TypeError("data must be a TaskData (train/val/test splits) or a tuple "
                    "(X_train, y_train, X_val, y_val[, X_test, y_test])")


def _rows_labels(y: Any, n: int, steps: str, T: int, name: str) -> torch.Tensor:
    t = check_labels(y, name)
    if steps == "last":
        if t.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},) for steps='last' (one label per "
                             f"sequence), got {tuple(t.shape)}")
        return t
    if t.ndim == 3:
        raise NotImplementedError(f"{name} has {t.shape[2]} label heads; fit each head "
                                  "separately")
    if t.shape != (n, T):
        raise ValueError(f"{name} must have shape ({n}, {T}) for steps='all' (one label per "
                         f"step), got {tuple(t.shape)}")
    return t.reshape(-1)


def _val_loss(loss: str, Z: torch.Tensor, y: torch.Tensor, n_classes: int) -> float:
    """Mean datafit of the solver's loss on rows with scores ``Z`` and labels ``y``."""
    n = y.shape[0]
    a = torch.full((n,), 1.0 / n, dtype=torch.float64)
    if loss == "softmax":
        df = make_datafit("softmax", y, a, n_classes=n_classes)
    else:
        Y = labels_to_targets(y, n_classes, binary_single_column=Z.shape[1] == 1 and
                              n_classes == 2)
        df = make_datafit(loss, Y, a)
    return float(df.value(Z.to(torch.float64)))


def _accuracy(Z: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict_from_scores(Z) == y).to(torch.float64).mean())


def fit_convex(witnesses: Witnesses, data: Any, *, readout: str = "spike",
               readout_biases: Sequence[float] | None = None, steps: str | None = None,
               betas: Sequence[float] | None = None, n_betas: int = 8,
               beta_ratio: float = 1e-4, loss: str = "softmax", penalty: str = "l1",
               criterion: str = "accuracy", n_classes: int | None = None,
               sample_weight: Any = None, tol: float = 1e-6, max_iter: int | None = None,
               max_time: float | None = None, storage: str = "bool",
               chunk_size: int | None = None, device: torch.device | str | None = None,
               prune: bool = True, check: bool = True, collapse_rows: bool = True,
               solver_options: dict | None = None) -> ConvexFit:
    r"""Fit the certified convex readout of ``witnesses`` with validation-based selection.

    Parameters
    ----------
    witnesses : Witnesses
        Hidden weights (:mod:`convexsnn.witnesses`).
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
    betas : sequence of float, optional
        :math:`\beta` grid in the paper's convention :math:`\lambda = \beta/\sqrt P`. Default:
        :func:`default_betas` (``n_betas`` values down to ``beta_ratio`` :math:`\beta_{max}`),
        computed per dictionary from :math:`\beta_{max} = \sqrt P \lambda_{max}`.
    loss, penalty
        Datafit (``"squared"``, ``"hinge"``, ``"softmax"``) and penalty (``"l1"``, ``"l21"``).
    criterion : {"accuracy", "objective"}
        Selection rule on the validation rows (module docstring).
    n_classes : int, optional
        Number of classes (default: the task's, else ``max(y_train) + 1``).
    sample_weight, tol, max_iter, max_time
        Passed to :func:`convexsnn.convex.solve_path`.
    storage, chunk_size, device
        Dictionary options (:func:`~convexsnn.dictionary.build_dictionary`).
    prune : bool
        Prune the reconstructed network.
    check : bool
        Verify the reconstruction on train and test inputs (raises
        :class:`~convexsnn.reconstruct.ReconstructionError` on any changed prediction).
    collapse_rows : bool
        Solve on the distinct (dictionary row, label) pairs weighted by their total row weight
        (:meth:`SpikeDictionary.unique_rows`): the same objective, solution and certificate, on
        fewer rows when inputs repeat (64 distinct strings among 2000 XOR samples at T = 6).
    solver_options : dict, optional
        Further keyword arguments of ``solve_path`` (``working_set``, ``polish``, ...).

    Returns
    -------
    ConvexFit
    """
    t_start = time.perf_counter()
    if not isinstance(witnesses, Witnesses):
        raise TypeError(f"witnesses must be a Witnesses, got {type(witnesses).__name__}")
    check_choice(readout, "readout", READOUTS)
    check_choice(criterion, "criterion", CRITERIA)
    check_choice(storage, "storage", STORAGES)
    splits, task_nc, label_mode = _unpack_data(data)
    if steps is None:
        steps = "all" if label_mode == "token" else "last"
    check_choice(steps, "steps", ("last", "all"))
    (Xtr, ytr), (Xva, yva) = splits[0], splits[1]
    test = splits[2]
    Xtr = witnesses.check_input(Xtr, "X_train")
    Xva = witnesses.check_input(Xva, "X_val")
    ytr_rows = _rows_labels(ytr, Xtr.shape[0], steps, Xtr.shape[1], "y_train")
    yva_rows = _rows_labels(yva, Xva.shape[0], steps, Xva.shape[1], "y_val")
    if n_classes is None:
        n_classes = task_nc if isinstance(task_nc, int) else int(
            max(int(ytr_rows.max()), int(yva_rows.max())) + 1)
    n_classes = max(int(n_classes), 2)
    if readout == "spike":
        biases = [0.0]
    else:
        biases = [float(b) for b in (readout_biases if readout_biases is not None else (0.0,))]
        if not biases:
            raise ValueError("readout_biases must hold at least one value")
    if betas is not None:
        betas = [float(b) for b in betas]
        if not betas or any(not (b > 0 and math.isfinite(b)) for b in betas):
            raise ValueError(f"betas must be finite and > 0, got {betas}")
    opts = dict(solver_options or {})
    grid: list[dict] = []
    best = None       # (key, record, dictionary, solution)
    for b in biases:
        d = build_dictionary(witnesses, Xtr, readout=readout, readout_bias=b, steps=steps,
                             chunk_size=chunk_size, device=device, storage=storage)
        op = d.operator(torch.float64, device)
        op_s, y_s, w_s = op, ytr_rows, sample_weight
        if collapse_rows:
            first, inv, _ = d.unique_rows(ytr_rows)
            if first.size < d.n_rows:
                a = (np.full(d.n_rows, 1.0 / d.n_rows) if sample_weight is None else
                     np.asarray(torch.as_tensor(sample_weight).cpu(), dtype=np.float64)
                     .reshape(-1))
                if a.shape[0] != d.n_rows:
                    raise ValueError(f"sample_weight must have {d.n_rows} entries (one per "
                                     f"dictionary row), got {a.shape[0]}")
                w_s = torch.from_numpy(np.bincount(inv, weights=a, minlength=first.size))
                op_s = d.operator(torch.float64, device, rows=first)
                y_s = ytr_rows[torch.from_numpy(first)]
                logger.info("fit_convex: %d distinct (row, label) pairs among %d rows",
                            first.size, d.n_rows)
        if betas is None:
            lmax = lambda_max(op_s, y_s, loss=loss, penalty=penalty, sample_weight=w_s,
                              n_classes=n_classes)
            bgrid = default_betas(math.sqrt(d.n_columns) * lmax, n_betas, beta_ratio)
        else:
            bgrid = betas
        sols = solve_path(op_s, y_s, bgrid, loss=loss, penalty=penalty, sample_weight=w_s,
                          n_classes=n_classes, tol=tol, max_iter=max_iter, max_time=max_time,
                          device=device, **opts)
        Dva = d.transform(Xva, dtype=torch.float64)
        for beta, sol in zip(bgrid, sols):
            W = sol.W.to(device="cpu", dtype=torch.float64)
            Ztr = op.matmul(sol.W.to(op.dtype)).cpu().to(torch.float64)
            Zva = Dva @ W
            rec = {"readout_bias": b, "beta": float(beta), "lam": float(sol.lam),
                   "n_columns": d.n_columns,
                   "support": int((W != 0).any(dim=1).sum()),
                   "train_accuracy": _accuracy(Ztr, ytr_rows),
                   "val_accuracy": _accuracy(Zva, yva_rows),
                   "val_loss": _val_loss(loss, Zva, yva_rows, n_classes),
                   "certificate": sol.certificate.to_dict()}
            grid.append(_json_safe(rec))
            if criterion == "accuracy":
                key = (-rec["val_accuracy"], rec["val_loss"], -rec["beta"])
            else:
                key = (rec["val_loss"], -rec["beta"])
            if best is None or key < best[0]:
                best = (key, rec, d, sol)
            logger.info("fit_convex: b=%g beta=%.4g support=%d train=%.4f val=%.4f gap=%.2e",
                        b, beta, rec["support"], rec["train_accuracy"], rec["val_accuracy"],
                        sol.certificate.rel_gap)
        del Dva
    _, rec, d, sol = best
    settings = _json_safe({
        "readout": readout, "readout_biases": biases, "steps": steps,
        "betas": betas, "n_betas": n_betas, "beta_ratio": beta_ratio, "loss": loss,
        "penalty": penalty, "criterion": criterion, "n_classes": n_classes, "tol": tol,
        "max_iter": max_iter, "max_time": max_time, "storage": storage, "prune": prune,
        "collapse_rows": collapse_rows,
        "witnesses": witnesses.description, "solver_options": {k: repr(v) for k, v in
                                                                opts.items()}})
    model = reconstruct(d, sol, prune=prune,
                        extra={"selection": {k: v for k, v in rec.items() if k != "certificate"},
                               "settings": settings})
    checks: dict = {}
    test_acc = float("nan")
    if check:
        checks["train"] = check_reconstruction(model, d, sol, Xtr, ytr_rows, unique_inputs=True)
    if test is not None:
        Xte = witnesses.check_input(test[0], "X_test")
        yte_rows = _rows_labels(test[1], Xte.shape[0], steps, Xte.shape[1], "y_test")
        if check:
            checks["test"] = check_reconstruction(model, d, sol, Xte, yte_rows,
                                                  unique_inputs=True)
            test_acc = checks["test"]["accuracy_network"]
        else:
            with torch.no_grad():
                z = model(Xte.to(model.dtype))
            test_acc = _accuracy(z.reshape(-1, z.shape[-1]).cpu(), yte_rows)
    fit = ConvexFit(dictionary=d, beta=rec["beta"], lam=rec["lam"],
                    readout_bias=rec["readout_bias"],
                    solution=sol, model=model, train_accuracy=rec["train_accuracy"],
                    val_accuracy=rec["val_accuracy"], test_accuracy=test_acc, grid=grid,
                    checks=_json_safe(checks), settings=settings,
                    seconds=time.perf_counter() - t_start)
    model.saved_extra["selection"] = {"val_accuracy": fit.val_accuracy,
                                      "test_accuracy": _json_safe(test_acc),
                                      "train_accuracy": fit.train_accuracy}
    logger.info("fit_convex: chose b=%g beta=%.4g: val %.4f test %.4f (%.1fs)", fit.readout_bias,
                fit.beta, fit.val_accuracy, test_acc, fit.seconds)
    return fit
