r"""Surrogate-gradient (SG) training of a :class:`~convexsnn.network.ParallelSNN` by BPTT.

The network is trained through its ordinary :meth:`~convexsnn.network.ParallelSNN.forward`: with
gradients enabled the spike function is the model's surrogate (exact Heaviside forward, smooth
backward, :mod:`convexsnn.surrogate`), so the spikes seen in training are exactly those of
inference. Evaluation runs under :func:`torch.no_grad` (plain comparison, same spikes).

Objective (one mini-batch :math:`\mathcal B` of rows):

.. math::

    J(\theta) = \frac{1}{|\mathcal B|}\sum_{i \in \mathcal B} \sum_{h} a_{h, y_{ih}}\,
                \ell\big(y_{ih}, z_{i, \mathcal C_h}\big)
                \;+\; \rho\, \mathrm{PN}(\theta)

with :math:`\mathcal C_h` the score columns of head :math:`h`, :math:`a_{h,c}` optional class
weights (1 by default), :math:`\rho` = ``path_norm`` and :math:`\mathrm{PN}` the model's path
norm (:meth:`~convexsnn.network.ParallelSNN.path_norm`); decoupled weight decay (AdamW) acts on
top. A row is a sample (``label_mode="sequence"``) or a (sample, step) pair (``"token"``).

Datafits :math:`\ell(y, z)` for a row with integer label :math:`y` and scores
:math:`z \in \mathbb R^C`: the per-row losses of the convex side (docs/method.md section 5,
:mod:`convexsnn.convex.datafits`), averaged over rows as in the paper's convention (row weights
:math:`a_i = 1/N`):

* ``"softmax"``: cross-entropy :math:`\log\sum_c e^{z_c} - z_y`; with a single column
  (:math:`C = 1`, binary labels) the logistic loss :math:`\log(1 + e^{-\tilde y z})`, i.e.
  softmax over the scores :math:`(0, z)`.
* ``"hinge"``: one-vs-rest hinge :math:`\sum_c \max(0, 1 - \tilde y_c z_c)`,
  :math:`\tilde y_c = +1` for :math:`c = y` and :math:`-1` otherwise; with one column
  :math:`\max(0, 1 - \tilde y z)`, :math:`\tilde y = 2y - 1`.
* ``"squared"``: :math:`\tfrac12 \sum_c (z_c - \tilde y_c)^2` on the same :math:`\pm 1`
  one-vs-rest targets.

Predictions are the argmax of each head's scores, or :math:`\mathbb 1[z > 0]` for a one-column
head (as :meth:`~convexsnn.network.ParallelSNN.predict`).

Label layouts (``label_mode`` x ``heads``):

=============  ==============  =====================================================
label_mode     heads           ``y`` shape; rows of the loss
=============  ==============  =====================================================
``sequence``   None            ``(n,)`` vs the scores at the last step
``sequence``   ``[C1, C2..]``  ``(n, H)``; head ``h`` uses columns ``C1+..+C_{h-1}`` onwards
``token``      None            ``(n, T)`` vs the scores at every step (``output="all"``);
                               rows = samples x steps
``token``      ``[C1, C2..]``  ``(n, T, H)``, e.g. addition: ``heads=[b, 2]`` (digit, carry)
=============  ==============  =====================================================

``heads`` lists the number of score columns of each head; they must add up to the model's
``n_outputs``. Each head has its own datafit (summed over heads); accuracy is *joint*: a row
counts as correct only if every head is right (for addition: joint token accuracy).
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ._checks import check_choice, check_labels, check_positive_float, check_positive_int
from ._io import json_safe
from ._scores import classes_from_scores
from .convex import labels_to_targets
from .network import ParallelSNN

__all__ = [
    "LOSSES",
    "LABEL_MODES",
    "softmax_loss",
    "hinge_loss",
    "squared_loss",
    "datafit",
    "TrainResult",
    "train_surrogate",
    "evaluate",
    "evaluate_accuracy",
    "FinetuneResult",
    "finetune",
]

logger = logging.getLogger("convexsnn")

LABEL_MODES = ("sequence", "token")
_EVAL_BATCH = 1024


# ---------------------------------------------------------------------------------------- losses
def _pm1_targets(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""One-vs-rest :math:`\pm 1` targets of shape ``z.shape`` (one column: :math:`2y - 1`), the
    convex side's :func:`~convexsnn.convex.labels_to_targets`."""
    C = z.shape[-1]
    return labels_to_targets(y, max(C, 2), binary_single_column=C == 1, dtype=z.dtype)


def softmax_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Per-row softmax cross-entropy :math:`\log\sum_c e^{z_c} - z_y`.

    Parameters
    ----------
    z : Tensor ``(N, C)``
        Scores. With ``C = 1`` the binary logistic loss :math:`\log(1 + e^{-(2y-1) z})` is used
        (softmax over the two scores :math:`(0, z)`).
    y : Tensor ``(N,)``
        Integer labels in ``[0, C)`` (``{0, 1}`` for one column).

    Returns
    -------
    Tensor ``(N,)``
    """
    if z.shape[-1] == 1:
        return F.softplus(-(2 * y - 1).to(z.dtype) * z[:, 0])
    return F.cross_entropy(z, y, reduction="none")


def hinge_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Per-row one-vs-rest hinge :math:`\sum_c \max(0, 1 - \tilde y_c z_c)`.

    Targets :math:`\tilde y_c = +1` for the true class, :math:`-1` otherwise. With one column,
    :math:`\max(0, 1 - (2y - 1) z)`. Shapes as in :func:`softmax_loss`.
    """
    return torch.clamp(1 - _pm1_targets(z, y) * z, min=0).sum(-1)


def squared_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Per-row squared loss :math:`\tfrac12\sum_c (z_c - \tilde y_c)^2` on :math:`\pm 1` targets.

    Shapes as in :func:`softmax_loss`.
    """
    return 0.5 * (z - _pm1_targets(z, y)).pow(2).sum(-1)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "softmax": softmax_loss,
    "hinge": hinge_loss,
    "squared": squared_loss,
}


def datafit(
    name: str, z: torch.Tensor, y: torch.Tensor, sample_weight: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Mean datafit :math:`\frac1N \sum_i a_i\, \ell(y_i, z_i)` over the rows of ``z`` ``(N, C)``.

    Parameters
    ----------
    name : {"softmax", "hinge", "squared"}
        The loss :math:`\ell` (see the module docstring).
    z : Tensor ``(N, C)``
    y : Tensor ``(N,)`` of int64 labels.
    sample_weight : Tensor ``(N,)``, optional
        Row weights :math:`a_i` (1 when omitted). The mean divides by :math:`N`, not by
        :math:`\sum a_i`, so weights with mean 1 keep the loss scale.
    """
    check_choice(name, "loss", LOSSES)
    per_row = LOSSES[name](z, y)
    if sample_weight is not None:
        per_row = per_row * sample_weight
    return per_row.mean()


# ------------------------------------------------------------------------------- label layouts
@dataclass(frozen=True)
class _Layout:
    """How score columns and labels line up: ``label_mode`` and the columns of every head."""

    label_mode: str
    heads: tuple[int, ...]
    explicit_heads: bool

    @property
    def n_heads(self) -> int:
        return len(self.heads)

    def n_classes(self, h: int) -> int:
        """Number of classes of head ``h`` (2 for a one-column head)."""
        return max(self.heads[h], 2)

    def slices(self) -> list[slice]:
        out, start = [], 0
        for c in self.heads:
            out.append(slice(start, start + c))
            start += c
        return out


def _make_layout(model: ParallelSNN, label_mode: str, heads: Sequence[int] | None) -> _Layout:
    check_choice(label_mode, "label_mode", LABEL_MODES)
    n_out = model.config["n_outputs"]
    if label_mode == "token" and model.config["output"] != "all":
        raise ValueError(
            "label_mode='token' needs scores at every step: build the model with "
            "output='all' (it has output='last')"
        )
    if heads is None:
        return _Layout(label_mode, (n_out,), False)
    if isinstance(heads, (str, bytes)) or not isinstance(heads, Sequence) or len(heads) == 0:
        raise TypeError(f"heads must be a non-empty list of class counts, got {heads!r}")
    hs = tuple(check_positive_int(c, f"heads[{i}]") for i, c in enumerate(heads))
    if sum(hs) != n_out:
        raise ValueError(
            f"heads={list(hs)} add up to {sum(hs)} score columns, but the model has "
            f"n_outputs={n_out}"
        )
    return _Layout(label_mode, hs, True)


def _check_y(
    y: Any, name: str, n: int, T: int, layout: _Layout, device: torch.device
) -> torch.Tensor:
    """Validate labels; return int64 ``(n, [T,] H)`` (the head axis always present)."""
    lab = check_labels(y, name, device=device)
    expect = (n,) + ((T,) if layout.label_mode == "token" else ())
    if layout.explicit_heads:
        full = expect + (layout.n_heads,)
        if tuple(lab.shape) == expect and layout.n_heads == 1:
            lab = lab.unsqueeze(-1)
        if tuple(lab.shape) != full:
            raise ValueError(
                f"{name} has shape {tuple(lab.shape)}, expected {full} "
                f"(label_mode={layout.label_mode!r}, heads={list(layout.heads)})"
            )
    else:
        if tuple(lab.shape) != expect:
            hint = ""
            if lab.shape[:1] != (n,):
                hint = f": {name} has {lab.shape[0] if lab.ndim else 0} labels for {n} samples"
            raise ValueError(
                f"{name} has shape {tuple(lab.shape)}, expected {expect} "
                f"(label_mode={layout.label_mode!r}){hint}"
            )
        lab = lab.unsqueeze(-1)
    for h in range(layout.n_heads):
        k = layout.n_classes(h)
        hi = int(lab[..., h].max())
        if hi >= k:
            where = f" (head {h})" if layout.explicit_heads else ""
            raise ValueError(
                f"{name}{where} has label {hi} out of range: the model's "
                f"{layout.heads[h]} score column(s) allow labels in [0, {k - 1}]"
            )
    return lab


def _class_weights(
    class_weight: Any, y_rows: torch.Tensor, layout: _Layout, dtype: torch.dtype
) -> list[torch.Tensor] | None:
    """Per-head class-weight vectors from ``None``, ``"balanced"``, a dict or a sequence."""
    if class_weight is None:
        return None
    H = layout.n_heads
    if layout.explicit_heads and H > 1 and not isinstance(class_weight, str):
        if not isinstance(class_weight, Sequence) or len(class_weight) != H:
            raise ValueError(
                f"class_weight must be None, 'balanced' or a list of {H} per-head "
                f"entries (heads={list(layout.heads)}), got {class_weight!r}"
            )
        specs = list(class_weight)
    else:
        specs = [class_weight] * H if isinstance(class_weight, str) else [class_weight]
    out = []
    for h, spec in enumerate(specs):
        k = layout.n_classes(h)
        name = "class_weight" if H == 1 else f"class_weight[{h}]"
        if spec is None:
            w = torch.ones(k, dtype=dtype)
        elif isinstance(spec, str):
            check_choice(spec, name, ("balanced",))
            counts = torch.bincount(y_rows[:, h].cpu(), minlength=k).to(dtype)
            w = y_rows.shape[0] / (k * counts.clamp(min=1))
        elif isinstance(spec, dict):
            w = torch.ones(k, dtype=dtype)
            for c, v in spec.items():
                if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < k:
                    raise ValueError(f"{name} has key {c!r}; expected classes in [0, {k - 1}]")
                w[int(c)] = check_positive_float(v, f"{name}[{c}]", allow_zero=True)
        else:
            arr = np.asarray(spec, dtype=np.float64)
            if arr.shape != (k,):
                raise ValueError(
                    f"{name} must have one weight per class ({k}), got shape {arr.shape}"
                )
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise ValueError(f"{name} must hold finite non-negative weights")
            w = torch.as_tensor(arr, dtype=dtype)
        out.append(w.to(y_rows.device))
    return out


def _rows(z: torch.Tensor, y: torch.Tensor, layout: _Layout) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``(N, C)`` and labels ``(N, H)`` of one batch, one row per labelled output."""
    if layout.label_mode == "sequence":
        if z.ndim == 3:
            z = z[:, -1]
        return z, y
    return z.reshape(-1, z.shape[-1]), y.reshape(-1, y.shape[-1])


def _batch_loss(
    loss: str, z: torch.Tensor, y: torch.Tensor, layout: _Layout, cw: list[torch.Tensor] | None
) -> torch.Tensor:
    """Mean over rows of the summed per-head datafit (``z`` ``(N, C)``, ``y`` ``(N, H)``)."""
    fn = LOSSES[loss]
    total = None
    for h, sl in enumerate(layout.slices()):
        per_row = fn(z[:, sl], y[:, h])
        if cw is not None:
            per_row = per_row * cw[h][y[:, h]]
        total = per_row if total is None else total + per_row
    return total.mean()


def _n_correct(
    z: torch.Tensor, y: torch.Tensor, layout: _Layout, tol: torch.Tensor | float = 0.0
) -> int:
    """Rows whose every head is predicted right (``tol``: per-row tie tolerance, see
    :func:`convexsnn._scores.classes_from_scores`)."""
    ok = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
    for h, sl in enumerate(layout.slices()):
        ok &= classes_from_scores(z[:, sl], tol) == y[:, h]
    return int(ok.sum())


# ---------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def _evaluate(
    model: ParallelSNN,
    X: torch.Tensor,
    y: torch.Tensor,
    layout: _Layout,
    loss: str | None,
    cw: list[torch.Tensor] | None,
    batch_size: int,
) -> tuple[float, float]:
    """(mean loss or nan, joint accuracy) over already-validated ``X``, ``y``."""
    was_training = model.training
    model.eval()
    try:
        total_loss, correct, rows = 0.0, 0, 0
        for start in range(0, X.shape[0], batch_size):
            zb, tol = model.scores_and_tolerance(X[start : start + batch_size])
            z, yb = _rows(zb, y[start : start + batch_size], layout)
            if loss is not None:
                total_loss += float(_batch_loss(loss, z, yb, layout, cw)) * z.shape[0]
            tol = tol[:, -1] if layout.label_mode == "sequence" and tol.ndim == 2 else tol
            correct += _n_correct(z, yb, layout, tol.reshape(-1))
            rows += z.shape[0]
    finally:
        model.train(was_training)
    return (total_loss / rows if loss is not None else math.nan), correct / rows


def evaluate(
    model: ParallelSNN,
    X: Any,
    y: Any,
    *,
    loss: str = "softmax",
    batch_size: int = _EVAL_BATCH,
    label_mode: str = "sequence",
    heads: Sequence[int] | None = None,
    class_weight: Any = None,
) -> dict[str, float]:
    """Mean datafit and joint accuracy of ``model`` on ``(X, y)`` with exact spikes.

    Parameters
    ----------
    model : ParallelSNN
    X : array-like ``(n, T, n_inputs)``
    y : array-like of int labels, layout given by ``label_mode`` and ``heads``
        (see the module docstring).
    loss : {"softmax", "hinge", "squared"}
    batch_size : int
        Samples per forward pass (memory only; results do not depend on it beyond float
        round-off of the matrix products).
    label_mode, heads, class_weight
        As in :func:`train_surrogate`. ``class_weight="balanced"`` is computed from ``y``.

    Returns
    -------
    dict
        ``{"loss": float, "accuracy": float}``.
    """
    check_choice(loss, "loss", LOSSES)
    batch_size = check_positive_int(batch_size, "batch_size")
    layout = _make_layout(model, label_mode, heads)
    Xt = model.check_input(X, "X")
    yt = _check_y(y, "y", Xt.shape[0], Xt.shape[1], layout, Xt.device)
    cw = _class_weights(class_weight, yt.reshape(-1, layout.n_heads), layout, model.dtype)
    lv, acc = _evaluate(model, Xt, yt, layout, loss, cw, batch_size)
    return {"loss": lv, "accuracy": acc}


def evaluate_accuracy(
    model: ParallelSNN,
    X: Any,
    y: Any,
    *,
    batch_size: int = _EVAL_BATCH,
    label_mode: str = "sequence",
    heads: Sequence[int] | None = None,
) -> float:
    """Joint accuracy of ``model`` on ``(X, y)``: the fraction of labelled rows (samples, or
    samples x steps in token mode) on which every head is predicted right. Exact spikes
    (``torch.no_grad``), identical to inference.

    Parameters are as in :func:`evaluate`.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    layout = _make_layout(model, label_mode, heads)
    Xt = model.check_input(X, "X")
    yt = _check_y(y, "y", Xt.shape[0], Xt.shape[1], layout, Xt.device)
    return _evaluate(model, Xt, yt, layout, None, None, batch_size)[1]


# ------------------------------------------------------------------------------------- result
@dataclass
class TrainResult:
    """Outcome of :func:`train_surrogate` (the model itself is trained in place).

    Attributes
    ----------
    history : dict of lists
        One entry per epoch run: ``train_loss`` and ``train_acc`` (running mean over the epoch's
        mini-batches, exact spikes, before each step's update), ``val_loss`` and ``val_acc``
        (after the epoch; ``None`` without validation data), ``lr`` (used in the epoch),
        ``seconds`` (wall time of the epoch including validation).
    best_epoch : int or None
        Index into ``history`` of the best epoch (validation accuracy, then lower validation
        loss); ``None`` without validation data.
    best_val_acc, best_val_loss : float or None
        Validation metrics of that epoch.
    epochs_run : int
    stopped_early : bool
        Training ended before ``epochs`` (early stopping, callback, or a non-finite loss).
    stop_reason : str
        ``"completed"``, ``"early_stopping"``, ``"callback"`` or ``"non_finite_loss"``.
    restored_best : bool
        Whether the best-validation weights were loaded back into the model at the end.
    settings : dict
        The training arguments (JSON-safe), for reports.
    """

    history: dict[str, list]
    best_epoch: int | None
    best_val_acc: float | None
    best_val_loss: float | None
    epochs_run: int
    stopped_early: bool
    stop_reason: str = "completed"
    restored_best: bool = False
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-safe dict (non-finite floats become ``None``)."""
        return {
            "history": json_safe(self.history),
            "best_epoch": self.best_epoch,
            "best_val_acc": json_safe(self.best_val_acc),
            "best_val_loss": json_safe(self.best_val_loss),
            "epochs_run": int(self.epochs_run),
            "stopped_early": bool(self.stopped_early),
            "stop_reason": self.stop_reason,
            "restored_best": bool(self.restored_best),
            "settings": copy.deepcopy(self.settings),
        }


# ----------------------------------------------------------------------------------- training
def _check_unit_interval(value: Any, name: str) -> float:
    v = check_positive_float(value, name)
    if not v < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {v}")
    return v


def _optional_patience(value: Any, name: str) -> int | None:
    return None if value is None else check_positive_int(value, name)


def _deterministic_on(device: torch.device) -> bool:
    """Turn on ``torch.use_deterministic_algorithms(True, warn_only=True)`` for training on a
    non-CPU device (e.g. CUDA scatter / index kernels with atomics); ``True`` if this call turned
    it on (then :func:`_deterministic_restore` turns it off again).

    Not on the CPU: none of the CPU operations of SG training is one that setting changes (same
    weights with and without it, tests/test_sg_reproducibility.py), and it would fill every
    ``torch.empty`` with NaN (``torch.utils.deterministic.fill_uninitialized_memory``) at a cost.
    """
    if device.type == "cpu" or torch.are_deterministic_algorithms_enabled():
        return False
    torch.use_deterministic_algorithms(True, warn_only=True)
    return True


def _deterministic_restore(turned_on: bool) -> None:
    if turned_on:
        torch.use_deterministic_algorithms(False)


def train_surrogate(
    model: ParallelSNN,
    X_train: Any,
    y_train: Any,
    X_val: Any = None,
    y_val: Any = None,
    *,
    loss: str = "softmax",
    epochs: int = 100,
    batch_size: int | None = None,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    path_norm: float = 0.0,
    lr_decay_factor: float = 0.5,
    lr_patience: int | None = 10,
    early_stopping_patience: int | None = None,
    restore_best: bool = True,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
    label_mode: str = "sequence",
    heads: Sequence[int] | None = None,
    class_weight: Any = None,
    callback: Callable[[int, dict, ParallelSNN], Any] | None = None,
    grad_clip: float | None = None,
    eval_batch_size: int = _EVAL_BATCH,
) -> TrainResult:
    r"""Train ``model`` in place with surrogate gradients (BPTT through its LIF layers).

    Optimiser: Adam with decoupled weight decay (``torch.optim.AdamW``); the learning rate is
    multiplied by ``lr_decay_factor`` when the monitored loss (validation loss, or the epoch's
    training loss without validation data) has not improved for ``lr_patience`` epochs
    (``ReduceLROnPlateau``). The objective is given in the module docstring.

    Parameters
    ----------
    model : ParallelSNN
        Trained in place; all its parameters with ``requires_grad`` are optimised (set
        ``requires_grad_(False)`` on a parameter to freeze it).
    X_train : array-like ``(n, T, n_inputs)``
    y_train : array-like of int labels
        Layout given by ``label_mode`` and ``heads`` (module docstring).
    X_val, y_val : optional
        Validation data (same ``T`` as the training data). Needed for ``restore_best`` and for
        early stopping on validation accuracy.
    loss : {"softmax", "hinge", "squared"}
    epochs : int
        Maximum number of passes over the training data.
    batch_size : int, optional
        Mini-batch size; ``None`` trains full batch (deterministic order, ``seed`` unused).
    lr : float
        Initial learning rate. The default ``1e-2`` suits Adam on ParallelSNNs of the sizes used
        in this project (tens to hundreds of neurons per layer, T up to ~30); use ~1e-3 for long
        sequences or very wide layers.
    weight_decay : float
        Decoupled weight decay (AdamW), on every trained parameter.
    path_norm : float
        Coefficient :math:`\rho` of the path-norm regulariser
        :meth:`~convexsnn.network.ParallelSNN.path_norm`.
    lr_decay_factor : float in (0, 1)
    lr_patience : int or None
        Epochs without improvement before the learning rate is reduced; ``None`` keeps it fixed.
    early_stopping_patience : int or None
        Stop after this many epochs without improving the best epoch (validation accuracy, then
        validation loss; training loss without validation data). ``None``: never stop early.
    restore_best : bool
        With validation data, load the weights of the best epoch (highest validation accuracy,
        lower validation loss breaking ties, earliest epoch breaking exact ties) at the end.
    seed : int
        Seed of the mini-batch order (a local ``torch.Generator``; global RNG untouched). It is
        the only randomness of SG training: the initial weights are the model's own. The same
        seed gives bit-identical weights on the same machine, thread count and torch build,
        whatever ran before in the process. Across machines whose CPUs make torch pick other
        vector kernels (``torch.backends.cpu.get_cpu_capability()``: AVX2, AVX512, ...) the
        last bits of the optimiser update differ, and a leaky network (leak > 0) amplifies
        them into other spikes and another trained network (docs/method.md section 8). On a
        non-CPU device training runs under ``torch.use_deterministic_algorithms(True,
        warn_only=True)`` (the previous setting restored afterwards); the CPU path has no
        operation that setting changes.
    progress : bool
        Show a tqdm progress bar over epochs.
    device : str or torch.device, optional
        Move the model (in place) and the data there; default: the model's device.
    label_mode : {"sequence", "token"}
        ``"sequence"``: one label per sample, read at the last step. ``"token"``: a label per
        step (``y`` ``(n, T)`` or ``(n, T, H)``); needs a model with ``output="all"``.
    heads : list of int, optional
        Score columns per head, summing to ``model.n_outputs``, e.g. ``[b, 2]`` for base-``b``
        addition (sum digit, carry). Labels then carry a trailing head axis. Each head gets its
        own datafit (summed); accuracy is joint over heads.
    class_weight : None, "balanced", dict or sequence
        Class weights :math:`a_{h,c}` multiplying each row's loss. ``"balanced"``:
        :math:`a_c = N / (C\, N_c)` from the training labels (rows = labelled outputs). With
        several heads: ``"balanced"`` or a list with one entry per head. The validation loss is
        weighted the same way.
    callback : callable, optional
        ``callback(epoch, record, model)`` after every epoch, with ``record`` the epoch's
        history entries (plus ``"epoch"``); returning ``True`` stops training.
    grad_clip : float, optional
        Clip the global gradient norm to this value (none by default).
    eval_batch_size : int
        Samples per forward pass when evaluating validation data.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError, TypeError
        Bad shapes, NaN inputs, labels out of range for the model's outputs, ``T`` differing
        between training and validation data, unknown ``loss`` / ``label_mode``, ``X``/``y``
        length mismatch, non-positive ``epochs`` and other invalid options; the message names
        the argument.
    """
    if not isinstance(model, ParallelSNN):
        raise TypeError(f"model must be a ParallelSNN, got {type(model).__name__}")
    check_choice(loss, "loss", LOSSES)
    epochs = check_positive_int(epochs, "epochs")
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    lr = check_positive_float(lr, "lr")
    weight_decay = check_positive_float(weight_decay, "weight_decay", allow_zero=True)
    path_norm = check_positive_float(path_norm, "path_norm", allow_zero=True)
    lr_decay_factor = _check_unit_interval(lr_decay_factor, "lr_decay_factor")
    lr_patience = _optional_patience(lr_patience, "lr_patience")
    early_stopping_patience = _optional_patience(early_stopping_patience, "early_stopping_patience")
    seed = check_positive_int(seed, "seed", allow_zero=True)
    eval_batch_size = check_positive_int(eval_batch_size, "eval_batch_size")
    if grad_clip is not None:
        grad_clip = check_positive_float(grad_clip, "grad_clip")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    if (X_val is None) != (y_val is None):
        raise ValueError("X_val and y_val must be given together")

    if device is not None:
        model.to(device)
    layout = _make_layout(model, label_mode, heads)
    X = model.check_input(X_train, "X_train")
    n, T = X.shape[0], X.shape[1]
    y = _check_y(y_train, "y_train", n, T, layout, X.device)
    has_val = X_val is not None
    if has_val:
        Xv = model.check_input(X_val, "X_val")
        if Xv.shape[1] != T:
            raise ValueError(f"X_val has T={Xv.shape[1]} time steps but X_train has T={T}")
        yv = _check_y(y_val, "y_val", Xv.shape[0], T, layout, X.device)
    cw = _class_weights(class_weight, y.reshape(-1, layout.n_heads), layout, model.dtype)

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameters with requires_grad=True to train")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = None
    if lr_patience is not None:
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=lr_decay_factor, patience=lr_patience
        )
    gen = torch.Generator().manual_seed(seed)
    bs = n if batch_size is None else min(batch_size, n)

    settings = {
        "loss": loss,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "path_norm": path_norm,
        "lr_decay_factor": lr_decay_factor,
        "lr_patience": lr_patience,
        "early_stopping_patience": early_stopping_patience,
        "restore_best": bool(restore_best),
        "seed": seed,
        "label_mode": label_mode,
        "heads": list(layout.heads) if layout.explicit_heads else None,
        "class_weight": ([w.tolist() for w in cw] if cw is not None else None),
        "grad_clip": grad_clip,
        "optimizer": "AdamW",
        "n_train": n,
        "n_val": int(Xv.shape[0]) if has_val else 0,
        "T": T,
    }
    history: dict[str, list] = {
        k: [] for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
    }
    best_key: tuple[float, float] | None = None
    best_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = None
    since_best = 0
    stop_reason = "completed"
    logger.info(
        "SG training: %d samples, T=%d, loss=%s, epochs=%d, batch=%s, lr=%g",
        n,
        T,
        loss,
        epochs,
        batch_size,
        lr,
    )

    was_training = model.training
    bar = tqdm(range(epochs), desc="SG training", disable=not progress, leave=False)
    deterministic = _deterministic_on(X.device)
    try:
        for epoch in bar:
            t0 = time.perf_counter()
            model.train()
            lr_now = opt.param_groups[0]["lr"]
            order = (
                torch.randperm(n, generator=gen).to(X.device) if batch_size is not None else None
            )
            sum_loss, correct, rows = 0.0, 0, 0
            finite = True
            for start in range(0, n, bs):
                idx = order[start : start + bs] if order is not None else slice(start, start + bs)
                z, yb = _rows(model(X[idx]), y[idx], layout)
                data_loss = _batch_loss(loss, z, yb, layout, cw)
                obj = data_loss + path_norm * model.path_norm() if path_norm > 0 else data_loss
                if not bool(torch.isfinite(obj)):
                    finite = False
                    break
                opt.zero_grad(set_to_none=True)
                obj.backward()
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, grad_clip)
                opt.step()
                with torch.no_grad():
                    sum_loss += float(data_loss) * z.shape[0]
                    correct += _n_correct(z.detach(), yb, layout)
                rows += z.shape[0]
            if not finite:
                stop_reason = "non_finite_loss"
                warnings.warn(
                    f"train_surrogate: non-finite loss in epoch {epoch}; stopping "
                    "(lower lr or init_scale)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                logger.warning("SG training stopped: non-finite loss in epoch %d", epoch)
                break
            train_loss, train_acc = sum_loss / rows, correct / rows
            if has_val:
                val_loss, val_acc = _evaluate(model, Xv, yv, layout, loss, cw, eval_batch_size)
            else:
                val_loss = val_acc = None
            seconds = time.perf_counter() - t0
            for k, v in (
                ("train_loss", train_loss),
                ("train_acc", train_acc),
                ("val_loss", val_loss),
                ("val_acc", val_acc),
                ("lr", lr_now),
                ("seconds", seconds),
            ):
                history[k].append(v)

            key = (val_acc, -val_loss) if has_val else (-train_loss, 0.0)
            if best_key is None or key > best_key:
                best_key, best_epoch, since_best = key, epoch, 0
                if has_val and restore_best:
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
            if sched is not None:
                sched.step(val_loss if has_val else train_loss)
            postfix = {"loss": f"{train_loss:.4f}", "acc": f"{train_acc:.3f}"}
            if has_val:
                postfix["val_acc"] = f"{val_acc:.3f}"
            bar.set_postfix(postfix, refresh=False)
            logger.debug(
                "epoch %d: train loss %.5f acc %.4f, val loss %s acc %s, lr %g, %.2fs",
                epoch,
                train_loss,
                train_acc,
                val_loss,
                val_acc,
                lr_now,
                seconds,
            )
            if callback is not None:
                record = {"epoch": epoch, **{k: v[-1] for k, v in history.items()}}
                if callback(epoch, record, model) is True:
                    stop_reason = "callback"
                    break
            if early_stopping_patience is not None and since_best >= early_stopping_patience:
                stop_reason = "early_stopping"
                logger.info("early stopping after epoch %d (best epoch %d)", epoch, best_epoch)
                break
    finally:
        _deterministic_restore(deterministic)
        bar.close()
        model.train(was_training)

    restored = False
    if best_state is not None:
        model.load_state_dict(best_state)
        restored = True
    epochs_run = len(history["train_loss"])
    result = TrainResult(
        history=history,
        best_epoch=best_epoch if has_val else None,
        best_val_acc=history["val_acc"][best_epoch] if has_val and best_epoch is not None else None,
        best_val_loss=history["val_loss"][best_epoch]
        if has_val and best_epoch is not None
        else None,
        epochs_run=epochs_run,
        stopped_early=stop_reason != "completed",
        stop_reason=stop_reason,
        restored_best=restored,
        settings=settings,
    )
    logger.info(
        "SG training done: %d epochs (%s), best epoch %s, best val acc %s",
        epochs_run,
        stop_reason,
        result.best_epoch,
        result.best_val_acc,
    )
    return result


# ---------------------------------------------------------------------------------- fine-tuning
@dataclass
class FinetuneResult:
    """Outcome of :func:`finetune`.

    Attributes
    ----------
    model : ParallelSNN
        The kept network: the fine-tuned copy, or the untouched starting network.
    result : TrainResult
        The fine-tuning run.
    val_before, val_after : float
        Joint validation accuracy of the starting and of the fine-tuned network.
    kept_finetuned : bool
        ``val_after >= val_before``.
    """

    model: ParallelSNN
    result: TrainResult
    val_before: float
    val_after: float
    kept_finetuned: bool


def finetune(
    start: ParallelSNN,
    X_train: Any,
    y_train: Any,
    X_val: Any,
    y_val: Any,
    *,
    epochs: int,
    lr: float,
    seed: int = 0,
    label_mode: str = "sequence",
    heads: Sequence[int] | None = None,
    eval_batch_size: int = _EVAL_BATCH,
    **train_options: Any,
) -> FinetuneResult:
    """Fine-tune a copy of ``start`` with surrogate gradients; keep it only if its validation
    accuracy is at least the starting network's (a validation choice between 0 and ``epochs``
    extra epochs).

    Every parameter of the copy is trained (``requires_grad`` is switched on, e.g. for a
    reconstructed network); ``start`` itself is never modified. ``train_options`` go to
    :func:`train_surrogate` (``loss``, ``batch_size``, ``lr_patience``, ...), which restores the
    best validation epoch.
    """

    def val_acc(m: ParallelSNN) -> float:
        return float(
            evaluate_accuracy(
                m, X_val, y_val, batch_size=eval_batch_size, label_mode=label_mode, heads=heads
            )
        )

    before = val_acc(start)
    model = copy.deepcopy(start)
    for p in model.parameters():
        p.requires_grad_(True)
    train_options.setdefault("progress", False)
    res = train_surrogate(
        model,
        X_train,
        y_train,
        X_val,
        y_val,
        epochs=epochs,
        lr=lr,
        seed=seed,
        label_mode=label_mode,
        heads=heads,
        eval_batch_size=eval_batch_size,
        **train_options,
    )
    after = val_acc(model)
    kept = after >= before
    logger.info(
        "fine-tuning: val %.4f -> %.4f (%s)", before, after, "kept" if kept else "discarded"
    )
    return FinetuneResult(
        model=model if kept else start,
        result=res,
        val_before=before,
        val_after=after,
        kept_finetuned=bool(kept),
    )
