r"""End-to-end training pipelines: ``SG``, ``CVX``, ``SG-CVX``, ``R-CVX``, ``CVX->SG``, ``SG->SG``.

Every pipeline takes a :class:`~convexsnn.tasks.TaskData`, a :class:`PipelineConfig` and a seed,
and returns a JSON-safe record (see :func:`run_method`). Every hyper-parameter choice (witness
scale and leak, regularisation :math:`\beta`, training epoch, whether fine-tuning is kept) is made
on the **validation** split only; the test split and the out-of-distribution (OOD) sets are
evaluated once, for the chosen model.

Methods
-------
``SG``
    A :class:`~convexsnn.network.ParallelSNN` (``sg_*`` sizes) trained with surrogate gradients
    (:func:`~convexsnn.train.train_surrogate`, best validation epoch restored).
``CVX``
    Gaussian witnesses (:func:`~convexsnn.witnesses.gaussian_witnesses`) for every
    (leak, scale) of the grid ``leaks x scales`` -> spike dictionary -> certified convex readout
    along a :math:`\beta` path (:func:`~convexsnn.convex.solve_path`, :math:`\lambda =
    \beta/\sqrt P`) -> the (leak, scale, :math:`\beta`) with the best validation accuracy ->
    :func:`~convexsnn.reconstruct.reconstruct` into a pruned network, whose forward pass is checked
    against the convex scores on validation (:func:`~convexsnn.reconstruct.check_reconstruction`;
    a changed prediction raises unless it is a rounding tie). All of it is
    :func:`~convexsnn.selection.fit_convex` (ties in validation accuracy go to the larger
    :math:`\beta`).
``SG-CVX``
    As ``CVX`` with the hidden weights of the ``SG`` network as witnesses.
``R-CVX``
    As ``CVX`` with reservoir witnesses tuned to criticality
    (:func:`~convexsnn.witnesses.reservoir_witnesses`).
``CVX->SG``
    The ``CVX`` network fine-tuned with surrogate gradients for ``ft_epochs`` epochs.
``SG->SG``
    The control of ``CVX->SG``: the ``SG`` network trained again for the same extra budget
    (``ft_epochs``, same learning rate).
``CVX-CG``
    Pure convex with column generation (:func:`~convexsnn.colgen.fit_column_generation`,
    docs/method.md section 9): one-neuron Gaussian witnesses with delay lines grown round by
    round by pricing candidates against the dual constraint, for every (leak, scale,
    :math:`\beta`) of ``leaks x scales x regs`` (:math:`\lambda = \beta /
    \sqrt{\text{cg\_budget}}`, fixed over the rounds); the run of best validation accuracy is
    reconstructed and checked on every split. The record adds ``certified``
    (:func:`~convexsnn.convex.certified_label` of the final dictionary's solve) and ``pricing``
    (pricing gap, certified gap over dictionary + candidates, stop reason, every round).
    Sequence-label tasks only.

For both fine-tuning methods the fine-tuned weights are kept only if their validation accuracy is
at least that of the starting network (a validation choice of "0 or ``ft_epochs`` extra epochs").

Token-label tasks (addition)
----------------------------
Dictionary rows are (sample, step) pairs (``steps="all"``). There are two heads (sum digit:
``base`` classes; carry: 2 classes). With an element-wise :math:`\ell_1` penalty and a datafit
that is a sum over heads, the joint problem over the concatenated classes separates into one
problem per head, so **one convex problem is solved per head** on the same dictionary, each head
with its own :math:`\beta` chosen on its validation accuracy; the readouts are concatenated
(columns ``[digit classes | carry classes]``) and reconstructed as one network with
``output="all"``. Models are evaluated teacher-forced (joint token accuracy on val/test) and
**autoregressively** with :func:`~convexsnn.tasks.addition_rollout` (the predicted carry is fed
back) on the test set and every OOD length, scored by
:func:`~convexsnn.tasks.addition_metrics` (``joint_token_acc``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ._checks import rename_keys, renamed_attribute, renamed_kwargs
from ._io import json_safe as _json_safe
from .convex import ConvergenceWarning
from .delay import delay_line_witnesses
from .network import RECURRENT_KINDS, ParallelSNN
from .reconstruct import check_reconstruction, kept_neurons
from .selection import ConvexFit, fit_convex
from .tasks import TaskData, addition_metrics, addition_operands, addition_rollout
from .train import TrainResult, evaluate_accuracy, finetune, train_surrogate
from .witnesses import Witnesses, gaussian_witnesses, reservoir_witnesses, witnesses_from_network

__all__ = [
    "ALL_METHODS",
    "METHODS",
    "PipelineConfig",
    "run_method",
    "run_methods",
    "evaluate_model",
]

logger = logging.getLogger("convexsnn")

#: the paper's methods (the experiments that run "every method" iterate over these)
METHODS = ("SG", "CVX", "SG-CVX", "R-CVX", "CVX->SG", "SG->SG")
#: every pipeline method: :data:`METHODS` and the pure convex column generation ``CVX-CG``
ALL_METHODS = METHODS + ("CVX-CG",)

#: methods each method needs computed first (shared within :func:`run_methods`)
_DEPENDS = {
    "SG": (),
    "CVX": (),
    "R-CVX": (),
    "SG-CVX": ("SG",),
    "CVX->SG": ("CVX",),
    "SG->SG": ("SG",),
    "CVX-CG": (),
}


@dataclass
class PipelineConfig:
    r"""Options of every pipeline (JSON round trip with :meth:`to_dict` / :meth:`from_dict`).

    Architecture of the witnesses (``CVX``, ``R-CVX``): ``n_branches`` :math:`K`, ``depth``
    :math:`L` (counting the output layer), ``p_rec`` / ``p_last`` (totals over branches), LIF
    ``leak``, ``theta``, ``reset``, ``readout``. ``SG`` networks use the ``sg_*`` sizes
    (``None``: the witness sizes).

    Attributes
    ----------
    scales : tuple of float
        Gaussian witness scales :math:`s` (every layer), a grid chosen on validation.
    leaks : tuple of float or None
        Leak grid for ``CVX`` (chosen on validation); ``None``: only ``leak``.
    normalized : bool
        Unit-norm witness columns before scaling.
    witnesses : {"gaussian", "delay"}
        ``CVX`` witness family: Gaussian, or Gaussian with a delay line behind every last-layer
        neuron (:func:`convexsnn.delay.delay_line_witnesses`, ``T`` columns per neuron: its spikes
        at every step).
    loss, penalty : str
        Convex datafit and penalty.
    regs : tuple of float or None
        :math:`\beta` path (:math:`\lambda = \beta/\sqrt P`); ``None``: ``n_regs`` values from
        :math:`\beta_{max}` down to ``reg_ratio`` :math:`\beta_{max}`.
    tol, max_time : float
        Target relative duality gap and time budget (seconds) of each path solve.
    sg_epochs, sg_lr, sg_batch_size, sg_loss, sg_init_scale
        Surrogate-gradient training.
    sg_bias, sg_recurrent
        Per-neuron biases and recurrent weights (``None``, ``"dense"``, ``"diagonal"``,
        ``"sparse"``) of the SG network's LIF layers; ``SG-CVX`` and ``SG->SG`` keep them.
    ft_epochs, ft_lr
        Extra budget of ``CVX->SG`` and ``SG->SG``.
    res_leaks, res_thresholds, res_input_scales
        Reservoir criticality grid.
    eval_batch_size : int
        Samples per forward pass in evaluation.

    The names before the renaming (``beta`` for ``leak``, ``reg_betas``, ``n_betas``,
    ``beta_ratio`` for ``regs``, ``n_regs``, ``reg_ratio``) are deprecated aliases of the
    constructor and the attributes; :meth:`from_dict` reads them silently (stored configs).
    cg_rounds, cg_pool, cg_budget, cg_init_sources, cg_pricing_tol, cg_delay
        ``CVX-CG``: column-generation rounds, candidates priced per round, column budget,
        initial Gaussian sources, pricing tolerance and delay lines
        (:func:`convexsnn.colgen.fit_column_generation`; :math:`\lambda = \beta /
        \sqrt{\text{budget}}` for every :math:`\beta` of ``regs``, default
        :data:`CG_BETAS`).
    cg_backend, cg_address
        Where ``CVX-CG`` prices candidates: ``"local"`` or ``"ray"`` (Ray tasks; a cluster at
        ``cg_address``, else a local one). Same result either way.
    cg_family, cg_group, cg_layer1_sources
        ``CVX-CG`` witness family: ``"delay"`` (one-neuron delay-line witnesses),
        ``"two_layer_delay"`` (window neurons over input relays and ``cg_layer1_sources``
        Gaussian sources with delay lines, ``cg_group`` per branch, padded to ``depth`` with
        exact relays; :func:`convexsnn.delay.two_layer_delay_witnesses`) or ``"recurrent"``
        (one recurrent LIF layer grown neuron by neuron, each witness reading the previous
        spikes of the earlier ones; :mod:`convexsnn.recurrent_witness`).
    cg_proposals, cg_rule
        ``CVX-CG`` proposal kinds (``None``: the family's default) and the ranking of violating
        candidates (``"price"`` or ``"steepest"``; :func:`convexsnn.colgen.fit_column_generation`).
    """

    n_branches: int = 16
    depth: int = 3
    p_rec: int = 256
    p_last: int = 256
    leak: float = 0.99
    theta: float = 1.0
    reset: str = "subtract"
    readout: str = "spike"
    scales: tuple = (1.0, 2.0)
    leaks: tuple | None = None
    normalized: bool = True
    witnesses: str = "gaussian"
    loss: str = "squared"
    penalty: str = "l1"
    regs: tuple | None = None
    n_regs: int = 4
    reg_ratio: float = 1e-3
    tol: float = 1e-4
    max_time: float | None = 30.0
    sg_n_branches: int | None = 4
    sg_depth: int | None = None
    sg_p_rec: int | None = 64
    sg_p_last: int | None = 64
    sg_epochs: int = 20
    sg_lr: float = 1e-2
    sg_batch_size: int | None = 128
    sg_loss: str = "softmax"
    sg_init_scale: float = 1.0
    sg_bias: bool = False
    sg_recurrent: str | None = None
    ft_epochs: int = 10
    ft_lr: float = 2e-3
    res_leaks: tuple = (0.5, 0.9, 0.99)
    res_thresholds: tuple = (1.0,)
    res_input_scales: tuple = (1.0, 2.0, 4.0)
    eval_batch_size: int = 1024
    cg_rounds: int = 5
    cg_pool: int = 512
    cg_budget: int = 4096
    cg_init_sources: int = 64
    cg_pricing_tol: float = 1e-3
    cg_delay: bool = True
    cg_backend: str = "local"
    cg_address: str | None = None
    cg_family: str = "delay"
    cg_group: int = 32
    cg_layer1_sources: int = 0
    cg_proposals: tuple | None = None
    cg_rule: str = "price"

    beta = renamed_attribute("leak", "beta")
    reg_betas = renamed_attribute("regs", "reg_betas")
    n_betas = renamed_attribute("n_regs", "n_betas")
    beta_ratio = renamed_attribute("reg_ratio", "beta_ratio")

    def to_dict(self) -> dict:
        """JSON-safe dict of every option."""
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    def __post_init__(self) -> None:
        if self.witnesses not in ("gaussian", "delay"):
            raise ValueError(f"witnesses must be 'gaussian' or 'delay', got {self.witnesses!r}")
        if self.sg_recurrent is not None and self.sg_recurrent not in RECURRENT_KINDS:
            raise ValueError(
                f"sg_recurrent must be None or one of {list(RECURRENT_KINDS)}, got "
                f"{self.sg_recurrent!r}"
            )

    @classmethod
    def from_dict(cls, d: dict | None) -> PipelineConfig:
        """Build from a (partial) dict; unknown keys raise ``ValueError``. Keys of configs stored
        before the renaming (``beta``, ``reg_betas``, ...) are read as their new names."""
        d = rename_keys(d or {}, _RENAMED, "PipelineConfig", warn=False)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown pipeline options {unknown}; valid: {sorted(names)}")
        for k, v in list(d.items()):
            if isinstance(v, list):
                d[k] = tuple(v)
        return cls(**d)

    def replace(self, **changes: Any) -> PipelineConfig:
        """A copy with some options changed."""
        return dataclasses.replace(self, **changes)


#: names of :class:`PipelineConfig` fields before the renaming (``old: new``)
_RENAMED = {"beta": "leak", "reg_betas": "regs", "n_betas": "n_regs", "beta_ratio": "reg_ratio"}
PipelineConfig.__init__ = renamed_kwargs(**_RENAMED)(PipelineConfig.__init__)  # type: ignore[method-assign]


# ------------------------------------------------------------------------------ task layout
@dataclass
class _Layout:
    label_mode: str
    heads: list[int] | None  # token tasks with several heads (addition: [base, 2])
    n_outputs: int
    output: str
    steps: str
    base: int | None


def _layout(task: TaskData) -> _Layout:
    nc = task.n_classes
    if task.label_mode == "token":
        heads = [int(c) for c in nc] if isinstance(nc, (list, tuple)) else None
        n_out = sum(heads) if heads else int(nc)
        base = int(task.meta["base"]) if task.name == "addition" else None
        return _Layout("token", heads, n_out, "all", "all", base)
    if isinstance(nc, (list, tuple)):
        raise ValueError("sequence tasks with several heads are not supported by the pipelines")
    return _Layout("sequence", None, int(nc), "last", "last", None)


# ------------------------------------------------------------------------------ evaluation
def _accuracy(
    model: ParallelSNN, X: torch.Tensor, y: torch.Tensor, lay: _Layout, batch: int
) -> float:
    return float(
        evaluate_accuracy(model, X, y, batch_size=batch, label_mode=lay.label_mode, heads=lay.heads)
    )


def _rollout(model: ParallelSNN, split, base: int, batch: int) -> dict:
    """Autoregressive joint token accuracy etc. of ``model`` on an addition split."""
    a, b = addition_operands(split.X, base)
    dt = model.dtype

    def fn(xp: torch.Tensor):
        z = model(xp.to(dt))[:, -1, :]
        return z[:, :base], z[:, base : base + 2]

    pds, pcs = [], []
    for s0 in range(0, a.shape[0], batch):
        pd, pc = addition_rollout(fn, a[s0 : s0 + batch], b[s0 : s0 + batch], base)
        pds.append(pd)
        pcs.append(pc)
    m = addition_metrics(torch.cat(pds), torch.cat(pcs), split.y[..., 0], split.y[..., 1])
    m.pop("first_error_histogram", None)
    return m


def evaluate_model(
    model: ParallelSNN, task: TaskData, *, batch_size: int = 1024, ood: bool = True
) -> dict:
    """Validation, test and OOD metrics of a trained network.

    Returns
    -------
    dict
        ``val_accuracy``, ``test_accuracy`` (joint over heads; teacher-forced token accuracy for
        token tasks), ``ood_accuracy`` (``{key: accuracy}``) and, for addition, ``ar``:
        ``{"ID": metrics, "n_digits=<m>": metrics}`` of the autoregressive rollout
        (:func:`~convexsnn.tasks.addition_metrics` without the histogram).
    """
    lay = _layout(task)
    out: dict = {
        "val_accuracy": _accuracy(model, task.val.X, task.val.y, lay, batch_size),
        "test_accuracy": _accuracy(model, task.test.X, task.test.y, lay, batch_size),
        "ood_accuracy": {},
    }
    if ood:
        for key, split in task.ood.items():
            out["ood_accuracy"][key] = _accuracy(model, split.X, split.y, lay, batch_size)
    if lay.base is not None:
        ar = {"ID": _rollout(model, task.test, lay.base, batch_size)}
        if ood:
            for key, split in task.ood.items():
                ar[key] = _rollout(model, split, lay.base, batch_size)
        out["ar"] = ar
    return out


def _model_info(model: ParallelSNN) -> dict:
    return {
        "n_branches": int(model.n_branches),
        "hidden_widths": list(model.hidden_widths),
        "n_features": int(model.n_features),
        "kept_neurons": kept_neurons(model),
        "beta": float(model.config["leak"]),
        "theta": float(model.config["theta"]),
        "reset": model.config["reset"],
        "readout": model.config["readout"],
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
    }


# ------------------------------------------------------------------------------ convex fit
_DICTIONARY_FIELDS = (
    "n_rows",
    "n_columns",
    "n_witness_neurons",
    "n_unique",
    "n_zero",
    "n_duplicates",
    "density",
)


def _convex_fit(
    witness_grid: list[tuple[dict, Witnesses]], task: TaskData, cfg: PipelineConfig
) -> ConvexFit:
    """:func:`~convexsnn.selection.fit_convex` over the witness grid with the pipeline's options:
    per head the :math:`\beta` of best validation accuracy (ties: the larger, sparser one),
    witness settings by joint validation accuracy, the reconstruction checked on validation."""
    lay = _layout(task)
    with warnings.catch_warnings():  # the certificate's gap is recorded instead
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = fit_convex(
            witness_grid,
            (task.train.X, task.train.y, task.val.X, task.val.y),
            readout=cfg.readout,
            steps=lay.steps,
            n_classes=list(lay.heads) if lay.heads else int(task.n_classes),
            regs=cfg.regs,
            n_regs=cfg.n_regs,
            reg_ratio=cfg.reg_ratio,
            loss=cfg.loss,
            penalty=cfg.penalty,
            criterion="accuracy",
            ties="sparsity",
            tol=cfg.tol,
            max_time=cfg.max_time,
            check=("val",),
        )
    if lay.heads is None:
        # test and OOD rows too: the network must reproduce the convex predictions on every row
        # (ties by the one rule of convexsnn._scores on both sides), or this raises
        splits = {}
        for key, split in [("test", task.test), *((f"ood:{k}", v) for k, v in task.ood.items())]:
            c = check_reconstruction(fit.model, fit.dictionary, fit.W, split.X, allow_other_T=True)
            splits[key] = {
                k: c.get(k) for k in ("prediction_agreement", "n_mismatch", "n_mismatch_at_ties")
            }
        fit.checks["val"]["splits"] = splits
    return fit


def _gaussian_grid(task: TaskData, cfg: PipelineConfig, seed: int) -> list[tuple[dict, Witnesses]]:
    leaks = cfg.leaks if cfg.leaks else (cfg.leak,)
    out = []
    for leak in leaks:
        for scale in cfg.scales:
            w = gaussian_witnesses(
                task.input_size,
                n_branches=cfg.n_branches,
                depth=cfg.depth,
                p_rec=cfg.p_rec,
                p_last=cfg.p_last,
                scale=float(scale),
                normalized=cfg.normalized,
                seed=seed,
                leak=float(leak),
                theta=cfg.theta,
                reset=cfg.reset,
            )
            if cfg.witnesses == "delay":
                w = delay_line_witnesses(w, task.train.T)
            out.append(({"leak": float(leak), "scale": float(scale)}, w))
    return out


#: default :math:`\beta` grid of ``CVX-CG`` (:math:`\lambda = \beta / \sqrt{\text{budget}}`)
CG_BETAS = (1e-1, 1e-2)


def _colgen_fit(task: TaskData, cfg: PipelineConfig, seed: int) -> tuple[ParallelSNN, dict, dict]:
    r"""``CVX-CG``: :func:`~convexsnn.colgen.fit_column_generation` for every (leak, scale,
    :math:`\beta`) of the grid, the run of best validation accuracy (ties: the larger
    :math:`\beta`), reconstructed and checked on every split. Returns ``(model, seconds,
    record fields)``."""
    from .colgen import fit_column_generation
    from .convex import certified_label

    lay = _layout(task)
    if lay.label_mode != "sequence":
        raise ValueError("CVX-CG supports sequence-label tasks only (labels at the last step)")
    t0 = time.perf_counter()
    leaks = cfg.leaks if cfg.leaks else (cfg.leak,)
    betas = sorted(cfg.regs if cfg.regs else CG_BETAS, reverse=True)
    best = None
    grid = []
    for leak in leaks:
        for scale in cfg.scales:
            for reg in betas:
                with warnings.catch_warnings():  # the certificate is recorded instead
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    res = fit_column_generation(
                        task.train.X,
                        task.train.y,
                        n_classes=lay.n_outputs,
                        loss=cfg.loss,
                        penalty=cfg.penalty,
                        reg=float(reg),
                        rounds=cfg.cg_rounds,
                        pool=cfg.cg_pool,
                        budget=cfg.cg_budget,
                        delay=cfg.cg_delay,
                        init_sources=cfg.cg_init_sources,
                        scale=float(scale),
                        pricing_tol=cfg.cg_pricing_tol,
                        tol=cfg.tol,
                        max_time=cfg.max_time,
                        seed=seed,
                        leak=float(leak),
                        theta=cfg.theta,
                        reset=cfg.reset,
                        backend=cfg.cg_backend,
                        address=cfg.cg_address,
                        family=cfg.cg_family,
                        depth=cfg.depth,
                        group=cfg.cg_group,
                        layer1_sources=cfg.cg_layer1_sources,
                        proposals=cfg.cg_proposals,
                        rule=cfg.cg_rule,
                    )
                val = res.accuracy(task.val.X, task.val.y)
                last = res.rounds[-1]
                grid.append(
                    {
                        "leak": float(leak),
                        "scale": float(scale),
                        "reg_beta": float(reg),
                        "val_accuracy": val,
                        "n_columns": res.dictionary.n_columns,
                        "rel_gap": last.rel_gap,
                        "converged": last.converged,
                        "pricing_gap": last.pricing_gap,
                        "union_rel_gap": last.union_rel_gap,
                        "stopped": res.stopped,
                        "rounds": len(res.rounds),
                        "seconds": res.settings["seconds"],
                    }
                )
                if best is None or val > best[0]:
                    best = (val, grid[-1], res)
    if best is None:
        raise ValueError("CVX-CG needs at least one leak, scale and reg_beta")
    _, chosen, res = best
    t_fit = time.perf_counter() - t0
    model = res.reconstruct()
    checks = {}
    splits = [
        ("val", task.val),
        ("test", task.test),
        *((f"ood:{k}", v) for k, v in task.ood.items()),
    ]
    for key, split in splits:
        c = check_reconstruction(model, res.dictionary, res.solution, split.X, allow_other_T=True)
        checks[key] = {
            k: c.get(k) for k in ("prediction_agreement", "n_mismatch", "n_mismatch_at_ties")
        }
    cert = res.solution.certificate.to_dict()
    last = res.rounds[-1]
    summary = res.dictionary.summary()
    extra = {
        "chosen": {k: chosen[k] for k in ("leak", "scale", "reg_beta")}
        | {"lam": float(res.solution.lam)},
        "certificate": cert,
        "certificates": [cert],
        "certified": certified_label(cert),
        "pricing": {
            "pricing_gap": last.pricing_gap,
            "union_rel_gap": last.union_rel_gap,
            "n_candidates": last.n_candidates,
            "n_violating": last.n_violating,
            "stopped": res.stopped,
            "rounds": [r.to_dict() for r in res.rounds],
        },
        "dictionary": {k: summary[k] for k in _DICTIONARY_FIELDS},
        "n_witness_neurons": int(res.witnesses.n_witness_neurons),
        "reconstruction_check": checks,
        "val_accuracy_convex": chosen["val_accuracy"],
        "selection_grid": grid,
    }
    secs = {"colgen": t_fit, "reconstruct": time.perf_counter() - t0 - t_fit}
    return model, secs, extra


# ------------------------------------------------------------------------------ SG helpers
def _sg_model(task: TaskData, cfg: PipelineConfig, seed: int) -> ParallelSNN:
    lay = _layout(task)
    K = cfg.sg_n_branches or cfg.n_branches
    return ParallelSNN(
        task.input_size,
        lay.n_outputs,
        n_branches=K,
        depth=cfg.sg_depth or cfg.depth,
        p_rec=cfg.sg_p_rec or cfg.p_rec,
        p_last=cfg.sg_p_last or cfg.p_last,
        leak=cfg.leak,
        theta=cfg.theta,
        reset=cfg.reset,
        readout=cfg.readout,
        output=lay.output,
        init_scale=cfg.sg_init_scale,
        bias=bool(cfg.sg_bias),
        recurrent=cfg.sg_recurrent,
        seed=seed,
    )


def _train(
    model: ParallelSNN, task: TaskData, cfg: PipelineConfig, *, epochs: int, lr: float, seed: int
) -> dict:
    lay = _layout(task)
    res = train_surrogate(
        model,
        task.train.X,
        task.train.y,
        task.val.X,
        task.val.y,
        loss=cfg.sg_loss,
        epochs=epochs,
        batch_size=cfg.sg_batch_size,
        lr=lr,
        seed=seed,
        progress=False,
        label_mode=lay.label_mode,
        heads=lay.heads,
        restore_best=True,
        eval_batch_size=cfg.eval_batch_size,
    )
    return _train_info(res)


def _train_info(res: TrainResult) -> dict:
    return {
        "epochs_run": res.epochs_run,
        "best_epoch": res.best_epoch,
        "best_val_acc": res.best_val_acc,
        "stop_reason": res.stop_reason,
    }


def _finetune(
    start: ParallelSNN, task: TaskData, cfg: PipelineConfig, seed: int
) -> tuple[ParallelSNN, dict]:
    """:func:`~convexsnn.train.finetune` for ``ft_epochs`` at ``ft_lr`` (seed ``seed + 1``)."""
    lay = _layout(task)
    ft = finetune(
        start,
        task.train.X,
        task.train.y,
        task.val.X,
        task.val.y,
        epochs=cfg.ft_epochs,
        lr=cfg.ft_lr,
        seed=seed + 1,
        label_mode=lay.label_mode,
        heads=lay.heads,
        eval_batch_size=cfg.eval_batch_size,
        loss=cfg.sg_loss,
        batch_size=cfg.sg_batch_size,
        restore_best=True,
    )
    info = _train_info(ft.result)
    info.update(
        {
            "val_before": ft.val_before,
            "val_after": ft.val_after,
            "kept_finetuned": ft.kept_finetuned,
        }
    )
    return ft.model, info


# ------------------------------------------------------------------------------ public API
def _record(
    method: str,
    seed: int,
    task: TaskData,
    model: ParallelSNN,
    cfg: PipelineConfig,
    seconds: dict,
    **extra: Any,
) -> dict:
    t0 = time.perf_counter()
    ev = evaluate_model(model, task, batch_size=cfg.eval_batch_size)
    seconds = {**seconds, "evaluate": time.perf_counter() - t0}
    rec = {
        "method": method,
        "seed": int(seed),
        "task": task.name,
        "task_meta": {k: v for k, v in task.meta.items() if not isinstance(v, (list, dict))},
        **ev,
        "model": _model_info(model),
        "kept_neurons": kept_neurons(model),
        "chosen": {},
        "certificate": None,
        "certificates": None,
        "dictionary": None,
        "n_witness_neurons": None,
        "reconstruction_check": None,
        "training": None,
        "seconds": seconds,
    }
    rec.update(extra)
    rec["seconds"]["total"] = float(sum(v for k, v in rec["seconds"].items() if k != "total"))
    return _json_safe(rec)


def _convex_extra(fit: ConvexFit) -> dict:
    chosen = {**fit.witness_settings, "reg_beta": fit.regs}
    summary = fit.dictionary.summary()
    return {
        "chosen": chosen,
        "certificate": fit.certificates[0],
        "certificates": fit.certificates,
        "dictionary": {k: summary[k] for k in _DICTIONARY_FIELDS},
        "n_witness_neurons": int(fit.witnesses.n_witness_neurons),
        "reconstruction_check": fit.checks["val"],
        "val_accuracy_convex": fit.val_accuracy,
        "selection_grid": fit.grid,
    }


def run_methods(
    methods: Sequence[str],
    task: TaskData,
    *,
    config: PipelineConfig | dict | None = None,
    seed: int = 0,
    return_models: bool = False,
):
    """Run several methods on one task, sharing intermediate models.

    ``SG-CVX`` and ``SG->SG`` reuse the ``SG`` network, ``CVX->SG`` the ``CVX`` network (each is
    trained once even if not asked for itself; only the asked methods are returned). Records come
    back in the order of ``methods``; see :func:`run_method` for their fields. With
    ``return_models`` the result is ``(records, models)``, ``models[i]`` being the final
    :class:`ParallelSNN` of ``methods[i]`` (``None`` where the method failed).
    """
    cfg = config if isinstance(config, PipelineConfig) else PipelineConfig.from_dict(config)
    methods = list(methods)
    for m in methods:
        if m not in ALL_METHODS:
            raise ValueError(f"unknown method {m!r}; valid: {', '.join(ALL_METHODS)}")
    if not isinstance(task, TaskData):
        raise TypeError(f"task must be a TaskData, got {type(task).__name__}")
    needed: list[str] = []

    def need(m: str) -> None:
        for d in _DEPENDS[m]:
            need(d)
        if m not in needed:
            needed.append(m)

    for m in methods:
        need(m)
    models: dict[str, ParallelSNN] = {}
    records: dict[str, dict] = {}
    for m in needed:
        t0 = time.perf_counter()
        logger.info("pipeline %s (seed %d) on %s", m, seed, task.name)
        missing = [d for d in _DEPENDS[m] if d not in models]
        if missing:
            err = f"needs {missing[0]}, which failed"
        else:
            try:
                _run_stage(m, task, cfg, seed, models, records, methods, t0)
                continue
            except (RuntimeError, ValueError) as exc:  # e.g. a silent witness set
                err = f"{type(exc).__name__}: {exc}"
        logger.warning("pipeline %s failed: %s", m, err)
        if m in methods:
            records[m] = _failed_record(m, seed, task, cfg, err, time.perf_counter() - t0)
    out = [records[m] for m in methods]
    if return_models:
        return out, [models.get(m) for m in methods]
    return out


def _failed_record(
    method: str, seed: int, task: TaskData, cfg: PipelineConfig, error: str, seconds: float
) -> dict:
    """Record of a method that could not run (every field present, metrics ``None``)."""
    return _json_safe(
        {
            "method": method,
            "seed": int(seed),
            "task": task.name,
            "error": error,
            "task_meta": {k: v for k, v in task.meta.items() if not isinstance(v, (list, dict))},
            "val_accuracy": None,
            "test_accuracy": None,
            "ood_accuracy": {},
            "model": None,
            "kept_neurons": None,
            "chosen": {},
            "certificate": None,
            "certificates": None,
            "dictionary": None,
            "n_witness_neurons": None,
            "reconstruction_check": None,
            "training": None,
            "config": cfg.to_dict(),
            "seconds": {"total": seconds},
        }
    )


def _run_stage(
    m: str,
    task: TaskData,
    cfg: PipelineConfig,
    seed: int,
    models: dict,
    records: dict,
    methods: list,
    t0: float,
) -> None:
    """Compute method ``m`` (its dependencies are in ``models``) and record it if asked."""
    if m == "SG":
        model = _sg_model(task, cfg, seed)
        info = _train(model, task, cfg, epochs=cfg.sg_epochs, lr=cfg.sg_lr, seed=seed)
        secs = {"train": time.perf_counter() - t0}
        extra = {"training": info, "chosen": {"best_epoch": info["best_epoch"]}}
    elif m in ("CVX", "SG-CVX", "R-CVX"):
        if m == "CVX":
            grid = _gaussian_grid(task, cfg, seed)
        elif m == "SG-CVX":
            w = witnesses_from_network(models["SG"], dtype=torch.float64)
            grid = [({"witnesses": "SG network"}, w)]
        else:
            w = reservoir_witnesses(
                task.train.X,
                n_branches=cfg.n_branches,
                depth=cfg.depth,
                p_rec=cfg.p_rec,
                p_last=cfg.p_last,
                leaks=cfg.res_leaks,
                thresholds=cfg.res_thresholds,
                input_scales=cfg.res_input_scales,
                seed=seed,
                reset=cfg.reset,
            )
            grid = [
                (
                    {
                        "leak": w.leak,
                        "theta": w.theta,
                        "input_scale": w.description["chosen"]["input_scale"],
                        "branching_ratio": w.description["chosen"]["branching_ratio"],
                    },
                    w,
                )
            ]
        t_w = time.perf_counter() - t0
        fit = _convex_fit(grid, task, cfg)
        model = fit.model
        secs = {"witnesses": t_w, **fit.timings}
        extra = _convex_extra(fit)
    elif m == "CVX-CG":
        model, secs, extra = _colgen_fit(task, cfg, seed)
    else:  # fine-tuning methods
        start = models["CVX" if m == "CVX->SG" else "SG"]
        model, info = _finetune(start, task, cfg, seed)
        secs = {"finetune": time.perf_counter() - t0}
        extra = {
            "training": info,
            "chosen": {"kept_finetuned": info["kept_finetuned"], "ft_epochs": cfg.ft_epochs},
        }
    models[m] = model
    if m in methods:
        records[m] = _record(m, seed, task, model, cfg, secs, config=cfg.to_dict(), **extra)
        logger.info(
            "pipeline %s: val=%.4f test=%.4f",
            m,
            records[m]["val_accuracy"],
            records[m]["test_accuracy"],
        )


def run_method(
    method: str,
    task: TaskData,
    *,
    config: PipelineConfig | dict | None = None,
    seed: int = 0,
    return_model: bool = False,
):
    """Run one method end to end and return its JSON-safe record.

    Parameters
    ----------
    method : {"SG", "CVX", "SG-CVX", "R-CVX", "CVX->SG", "SG->SG", "CVX-CG"}
    task : TaskData
    config : PipelineConfig or dict, optional
    seed : int
        Seed of the witnesses, network initialisation and mini-batch order.

    Returns
    -------
    dict
        ``method``, ``seed``, ``task``, ``task_meta``, ``val_accuracy``, ``test_accuracy``,
        ``ood_accuracy`` ({key: acc}), ``ar`` (addition only: autoregressive metrics per length),
        ``chosen`` (hyper-parameters chosen on validation), ``certificate`` /
        ``certificates`` (convex methods: primal, dual, gap per head), ``dictionary`` (rows,
        columns, unique, zero, duplicates, density), ``n_witness_neurons``, ``kept_neurons``
        (neurons with a non-zero output weight), ``model`` (size of the final network),
        ``reconstruction_check``, ``training`` (SG methods), ``selection_grid``, ``config``,
        ``seconds`` (per stage and ``total``). With ``return_model``: ``(record, model)``, the
        final :class:`ParallelSNN` (``None`` if the method failed).
    """
    if return_model:
        records, models = run_methods([method], task, config=config, seed=seed, return_models=True)
        return records[0], models[0]
    return run_methods([method], task, config=config, seed=seed)[0]
