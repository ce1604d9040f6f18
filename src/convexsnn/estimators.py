r"""scikit-learn estimators: parallel spiking networks as ordinary classifiers.

* :class:`ConvexSNNClassifier` -- parameter reconstruction (``CVX``): Gaussian witnesses, spike
  dictionary, certified convex readout, reconstructed :class:`~convexsnn.network.ParallelSNN`.
* :class:`SurrogateSNNClassifier` -- a :class:`~convexsnn.network.ParallelSNN` trained with
  surrogate gradients (``SG``, :func:`~convexsnn.train.train_surrogate`).

Input. ``X`` has shape ``(n_samples, T, n_features)`` (a sequence of ``T`` steps per sample, the
label read at the last step), or the usual ``(n_samples, n_features)``, which is read as ``T = 1``
(a single step: the network is then a static binary-threshold feature map plus a linear readout,
and the leak plays no role). ``n_features_in_`` is the number of features *per step*;
``n_steps_in_`` the ``T`` seen in ``fit``. Prediction accepts any ``T`` (the readout is taken at the
last step), but the number of features per step must match.

Labels may be any values (strings, integers, ...); they are mapped to ``0..C-1`` in the order of
``classes_`` (sorted, as :func:`numpy.unique` gives them).

Both estimators follow the scikit-learn contract: hyper-parameters are stored unchanged by
``__init__`` and validated in ``fit``; ``fit`` returns ``self``; learned attributes end with ``_``;
they clone, pickle, and work in :class:`~sklearn.pipeline.Pipeline` and
:class:`~sklearn.model_selection.GridSearchCV`. A readout solve that stops before its requested
duality gap emits :class:`SNNConvergenceWarning`, which is both a
:class:`convexsnn.convex.ConvergenceWarning` and a :class:`sklearn.exceptions.ConvergenceWarning`
(so ``warnings.filterwarnings`` on either category catches it).

This module imports scikit-learn; ``import convexsnn`` does not import it.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning as _SkConvergenceWarning
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from ._checks import renamed_attribute, renamed_kwargs
from ._scores import classes_from_scores
from .convex import ConvergenceWarning as _CvxConvergenceWarning
from .convex import certified_label, solve_readout
from .dictionary import build_dictionary
from .network import ParallelSNN
from .reconstruct import kept_neurons, reconstruct
from .train import train_surrogate
from .witnesses import gaussian_witnesses, resolve_widths

__all__ = [
    "ConvexSNNClassifier",
    "SurrogateSNNClassifier",
    "SNNConvergenceWarning",
    "expected_failed_checks",
]

logger = logging.getLogger("convexsnn")


class SNNConvergenceWarning(_CvxConvergenceWarning, _SkConvergenceWarning):
    """The convex readout stopped before reaching the requested relative duality gap.

    Subclass of both :class:`convexsnn.convex.ConvergenceWarning` and
    :class:`sklearn.exceptions.ConvergenceWarning`; ``certificate`` holds the
    :class:`~convexsnn.convex.Certificate` of the returned (best) point.
    """


# ------------------------------------------------------------------------------------ helpers
def _widths(width: Any, depth: Any) -> list[int]:
    """Per-branch widths of the ``depth - 1`` LIF layers from ``width`` (int or sequence), by
    :func:`~convexsnn.witnesses.resolve_widths`."""
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral):
        raise TypeError(f"depth must be an integer, got {depth!r}")
    ws = list(width) if isinstance(width, (list, tuple, np.ndarray)) else [width]
    if any(isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1 for w in ws):
        raise ValueError(f"width must be a positive integer or a list of them, got {width!r}")
    if isinstance(width, (list, tuple, np.ndarray)):
        return resolve_widths(n_branches=1, hidden_widths=[int(w) for w in ws], depth=int(depth))
    return resolve_widths(n_branches=1, depth=int(depth), p_rec=int(width), p_last=int(width))


def _softmax_loss(est: Any) -> bool:
    """``predict_proba`` is defined for the softmax loss only."""
    return getattr(est, "loss", None) == "softmax"


#: options of :func:`convexsnn.colgen.fit_column_generation` that ``generate=`` may set
_GENERATE_OPTIONS = (
    "rounds",
    "pool",
    "budget",
    "delay",
    "n_steps",
    "pricing_tol",
    "proposals",
    "mutation_scale",
    "n_masks",
    "screen",
    "solver",
    "polish",
    "max_time",
    "backend",
    "address",
    "n_tasks",
    "family",
    "depth",
    "group",
    "layer1_sources",
)


def _generate_options(generate: Any) -> dict | None:
    """``None`` (no column generation) or the options dict of ``generate``."""
    if generate is False or generate is None:
        return None
    if generate is True:
        return {}
    if not isinstance(generate, dict):
        raise ValueError(f"generate must be a bool or a dict of options, got {generate!r}")
    bad = sorted(set(generate) - set(_GENERATE_OPTIONS))
    if bad:
        raise ValueError(f"unknown generate options {bad}; valid: {list(_GENERATE_OPTIONS)}")
    return dict(generate)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


class _SNNClassifierBase(ClassifierMixin, BaseEstimator):
    """Input handling, label encoding and prediction shared by the two classifiers."""

    # ------------------------------------------------------------------ input validation
    def _validate_X(self, X: Any, *, reset: bool) -> np.ndarray:
        """Return ``X`` as a float ``(n, T, d)`` array (2-D input read as ``T = 1``)."""
        ndim = getattr(X, "ndim", None)
        if ndim is None and not sp.issparse(X):
            try:
                ndim = np.asarray(X).ndim
            except (ValueError, TypeError):  # ragged nested lists: let check_array complain
                ndim = None
        if ndim == 3:
            X = check_array(
                X,
                allow_nd=True,
                dtype=[np.float64, np.float32],
                ensure_min_samples=1,
                input_name="X",
            )
            n, T, d = X.shape
            if reset:
                self.n_features_in_ = d
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
            elif d != self.n_features_in_:
                raise ValueError(
                    f"X has {d} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input (per step)"
                )
            if T == 0 or d == 0:
                raise ValueError(f"X of shape {X.shape} has no time steps or no features")
        else:
            X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
            X = X[:, None, :]
        if reset:
            self.n_steps_in_ = int(X.shape[1])
        # torch cannot wrap read-only buffers (e.g. memory maps): copy those
        return np.require(X, requirements=["C_CONTIGUOUS", "WRITEABLE"])

    def _validate_fit(self, X: Any, y: Any, sample_weight: Any):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        X = self._validate_X(X, reset=True)
        y = column_or_1d(y, warn=True)
        if y.shape[0] != X.shape[0]:
            raise ValueError(
                f"Found input variables with inconsistent numbers of samples: "
                f"[{X.shape[0]}, {y.shape[0]}]"
            )
        check_classification_targets(y)
        classes, y_enc = np.unique(y, return_inverse=True)
        if classes.shape[0] < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the "
                f"data, but the data contains only one class: {classes[0]!r}"
            )
        sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, X[:, 0, :], dtype=np.float64)
            if np.any(sw < 0):
                raise ValueError("sample_weight must be non-negative")
            if not np.any(sw > 0):
                raise ValueError("sample_weight must have at least one positive entry")
        self.classes_ = classes
        return X, y_enc.astype(np.int64), sw

    # ------------------------------------------------------------------ prediction
    def _scores(self, X: Any) -> np.ndarray:
        """Network scores at the last step, ``(n, n_outputs)`` float64."""
        check_is_fitted(self, "network_")
        X = self._validate_X(X, reset=False)
        net = self.network_
        x = torch.from_numpy(X).to(dtype=net.dtype, device=net.device)
        with torch.no_grad():
            z = net(x)
        if z.ndim == 3:
            z = z[:, -1]
        return z.detach().to("cpu", torch.float64).numpy()

    def decision_function(self, X: Any) -> np.ndarray:
        """Scores of the reconstructed / trained network at the last step.

        Parameters
        ----------
        X : array-like ``(n_samples, T, n_features)`` or ``(n_samples, n_features)``

        Returns
        -------
        ndarray
            ``(n_samples,)`` for two classes (positive means ``classes_[1]``), otherwise
            ``(n_samples, n_classes)``.
        """
        z = self._scores(X)
        if z.shape[1] == 1:
            return z[:, 0]
        if len(self.classes_) == 2:
            return z[:, 1] - z[:, 0]
        return z

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (values of ``classes_``).

        Parameters
        ----------
        X : array-like ``(n_samples, T, n_features)`` or ``(n_samples, n_features)``

        Returns
        -------
        ndarray ``(n_samples,)``
        """
        check_is_fitted(self, "network_")
        X = self._validate_X(X, reset=False)
        net = self.network_
        with torch.no_grad():
            z, tol = net.scores_and_tolerance(
                torch.from_numpy(X).to(dtype=net.dtype, device=net.device)
            )
        if z.ndim == 3:
            z, tol = z[:, -1], tol[:, -1]
        # the package's one prediction rule, ties included (convexsnn._scores)
        idx = classes_from_scores(z, tol).cpu().numpy()
        return self.classes_[idx]

    def _predict_proba(self, X: Any) -> np.ndarray:
        z = self._scores(X)
        if z.shape[1] == 1:
            p1 = 1.0 / (1.0 + np.exp(-np.clip(z[:, 0], -700, 700)))
            return np.stack([1.0 - p1, p1], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def _more_tags(self):  # scikit-learn < 1.6
        return {"requires_y": True, "allow_nan": False}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = False
        return tags


# ---------------------------------------------------------------------------- convex classifier
class ConvexSNNClassifier(_SNNClassifierBase):
    r"""Parallel SNN trained by certified convex parameter reconstruction (``CVX``).

    ``fit`` draws Gaussian witnesses (``n_branches`` branches of ``depth - 1`` LIF layers),
    simulates them on ``X``, keeps the distinct non-zero last-step readouts of the last layer as
    the spike dictionary :math:`D`, solves

    .. math:: \min_W \sum_i a_i\, \ell(y_i, (DW)_i) + \lambda R(W),
              \qquad \lambda = \mathrm{reg} / \sqrt{P},

    (:math:`a_i = 1/n`, or the normalised ``sample_weight``; :math:`P` = dictionary columns) to a
    relative duality gap ``tol``, and reconstructs the pruned network whose forward pass computes
    :math:`DW` (``network_``). Predictions run that network.

    Parameters
    ----------
    n_branches : int
        Number of parallel branches ``K``.
    width : int or list of int
        Neurons per branch in each LIF layer (a list gives one width per layer).
    depth : int
        ``L`` >= 2, counting the output layer (``L - 1`` LIF layers).
    scale : float or list of float
        Standard deviation of the Gaussian witness weights (per layer with a list).
    normalized : bool
        Unit-norm witness columns before scaling.
    leak : float
        Leak :math:`\beta \in [0, 1]` of the LIF neurons (irrelevant for ``T = 1``; ``beta`` is
        a deprecated alias).
    theta : float
        Threshold :math:`\theta > 0`.
    reset : {"subtract", "zero"}
        Reset rule.
    readout : {"spike", "membrane"}
        Last-layer readout: spikes, or the membrane indicator :math:`\mathbb 1[m_t \ge b]`.
    readout_bias : float
        ``b`` of the membrane readout.
    loss : {"squared", "hinge", "softmax"}
        Datafit :math:`\ell` (one-vs-rest :math:`\pm 1` targets for squared and hinge; a single
        column for two classes). ``predict_proba`` exists only for ``"softmax"``.
    penalty : {"l1", "l21"}
        :math:`R`: elementwise L1 (paper) or row-wise L2,1 (prunes whole neurons).
    reg : float
        :math:`\beta_{reg}` of the paper's convention :math:`\lambda = \beta_{reg}/\sqrt{P}`.
    tol : float
        Requested relative duality gap of the readout solve.
    max_iter : int or None
        Iteration budget of the solve (``None``: the solver's default).
    seed : int
        Seed of the witnesses; the same seed gives the same model.
    device : str or None
        Torch device for simulation and solve (default CPU).
    generate : bool or dict
        Column generation (``CVX-CG``, :func:`convexsnn.colgen.fit_column_generation`,
        docs/method.md section 9). ``False`` (default): one draw of Gaussian witnesses. ``True``
        or a dict of options (``rounds``, ``pool``, ``budget``, ``delay``, ``n_steps``,
        ``pricing_tol``, ``proposals``, ``mutation_scale``, ``n_masks``, ``screen``,
        ``solver``, ``polish``, ``max_time``, ``backend``, ``address``, ``n_tasks``, ``family``,
        ``depth``, ``group``, ``layer1_sources``; ``family="two_layer_delay"`` grows window
        neurons over relayed layer-1 spikes instead, :mod:`convexsnn.delay`;
        ``family="recurrent"`` a recurrent LIF layer, :mod:`convexsnn.recurrent_witness`): start from
        ``n_branches`` one-neuron Gaussian witnesses (``scale``; with delay lines by default)
        and grow them round by round with the candidates that violate the dual constraint
        most, :math:`\lambda = \mathrm{reg}/\sqrt{\text{budget}}` fixed over the rounds.
        ``width`` and ``depth`` are then not used; ``loss`` must be ``"squared"`` or
        ``"softmax"`` and ``readout`` ``"spike"``.

    Attributes
    ----------
    classes_ : ndarray ``(n_classes,)``
        Class labels; label ``classes_[c]`` is class index ``c``.
    n_features_in_ : int
        Features per step seen in ``fit``.
    n_steps_in_ : int
        ``T`` seen in ``fit`` (1 for 2-D input).
    witnesses_ : Witnesses
        The Gaussian hidden weights (with ``generate``: the final witness set).
    dictionary_ : SpikeDictionary
        The spike dictionary (rows = training samples with positive weight).
    solution_ : ReadoutSolution
        Readout weights ``W`` ``(P, C)`` and certificate.
    certificate_ : Certificate
        Primal, dual, gap, relative gap, iterations, seconds and ``status`` of the solve.
    converged_ : bool
        Whether the solve reached ``tol`` (``False``: :class:`SNNConvergenceWarning` was emitted
        and ``certificate_.status`` says why: ``"max_iter"``, ``"max_time"`` or ``"stalled"``).
    dual_gap_ : float
        Duality gap of the returned readout (``certificate_.gap``), as scikit-learn's Lasso.
    lambda_ : float
        :math:`\lambda` used.
    network_ : ParallelSNN
        The reconstructed (pruned) network used for prediction.
    n_iter_ : int
        Iterations of the solve.
    certified_ : str
        :func:`convexsnn.convex.certified_label` of the final solve: ``"certified"`` or
        ``"NOT certified (<status>, rel gap <gap>)"``, over the final dictionary.
    pricing_gap_ : float or None
        With ``generate``: :math:`\max_d \pi(d) - 1` over the candidates priced in the last
        round (:math:`\le` ``pricing_tol``: no candidate examined violates the dual
        constraint by more); ``None`` without.
    union_rel_gap_ : float or None
        With ``generate``: certified relative gap over the final dictionary plus the last
        round's candidates; ``None`` without.
    rounds_ : list of dict or None
        With ``generate``: every round's record (:class:`convexsnn.colgen.RoundRecord`).
    stopped_ : str or None
        With ``generate``: ``"pricing"``, ``"rounds"`` or ``"budget"``.
    """

    beta = renamed_attribute("leak", "beta")

    @renamed_kwargs(beta="leak")
    def __init__(
        self,
        n_branches: int = 16,
        width: Any = 16,
        depth: int = 2,
        *,
        scale: Any = 1.0,
        normalized: bool = False,
        leak: float = 0.99,
        theta: float = 1.0,
        reset: str = "subtract",
        readout: str = "spike",
        readout_bias: float = 0.0,
        loss: str = "squared",
        penalty: str = "l1",
        reg: float = 1e-2,
        tol: float = 1e-4,
        max_iter: int | None = None,
        seed: int = 0,
        device: str | None = None,
        generate: Any = False,
    ):
        self.n_branches = n_branches
        self.width = width
        self.depth = depth
        self.scale = scale
        self.normalized = normalized
        self.leak = leak
        self.theta = theta
        self.reset = reset
        self.readout = readout
        self.readout_bias = readout_bias
        self.loss = loss
        self.penalty = penalty
        self.reg = reg
        self.tol = tol
        self.max_iter = max_iter
        self.seed = seed
        self.device = device
        self.generate = generate

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> ConvexSNNClassifier:
        """Build the spike dictionary on ``X``, solve the readout, reconstruct the network.

        Parameters
        ----------
        X : array-like ``(n_samples, T, n_features)`` or ``(n_samples, n_features)``
        y : array-like ``(n_samples,)``
            Class labels (any values).
        sample_weight : array-like ``(n_samples,)``, optional
            Non-negative row weights, normalised to sum to one (so integer weights are
            equivalent to repeated samples). Rows of weight zero are left out of the dictionary.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Bad shapes, NaN or inf, a single class, invalid hyper-parameters, or an empty spike
            dictionary (every witness neuron silent on ``X``: raise ``scale`` or lower ``theta``).
        """
        X, y, sw = self._validate_fit(X, y, sample_weight)
        cg_options = _generate_options(self.generate)
        widths = _widths(self.width, self.depth) if cg_options is None else None
        seed = _check_seed(self.seed)
        if sw is not None:
            keep = sw > 0
            X, y, sw = X[keep], y[keep], sw[keep]
            sw = sw / sw.sum()
        C = len(self.classes_)
        if cg_options is not None:
            return self._fit_generate(X, y, sw, C, seed, cg_options)
        wit = gaussian_witnesses(
            X.shape[2],
            n_branches=self.n_branches,
            hidden_widths=widths,
            scale=self.scale,
            normalized=self.normalized,
            seed=seed,
            leak=self.leak,
            theta=self.theta,
            reset=self.reset,
            dtype=torch.float64,
            device=self.device,
        )
        D = build_dictionary(
            wit,
            X,
            readout=self.readout,
            readout_bias=self.readout_bias,
            steps="last",
            device=self.device,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", _CvxConvergenceWarning)
            sol = solve_readout(
                D.operator(torch.float64, self.device),
                y,
                loss=self.loss,
                penalty=self.penalty,
                reg=self.reg,
                sample_weight=sw,
                n_classes=C,
                tol=self.tol,
                max_iter=self.max_iter,
                device=self.device,
            )
        for w in caught:
            if issubclass(w.category, _CvxConvergenceWarning):
                warnings.warn(
                    SNNConvergenceWarning(
                        f"{type(self).__name__}: {w.message} (raise max_iter or tol)",
                        getattr(w.message, "certificate", None),
                    ),
                    stacklevel=2,
                )
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        net = reconstruct(D, sol)
        self.witnesses_ = wit
        self.dictionary_ = D
        self.solution_ = sol
        self.certificate_ = sol.certificate
        self.converged_ = bool(sol.certificate.converged)
        self.dual_gap_ = float(sol.certificate.gap)
        self.lambda_ = float(sol.lam)
        self.network_ = net
        self.n_iter_ = max(1, int(sol.certificate.iterations))
        self.certified_ = certified_label(sol.certificate)
        self.pricing_gap_: float | None = None  # column generation only (generate=)
        self.union_rel_gap_: float | None = None
        self.rounds_: list[dict] | None = None
        self.stopped_: str | None = None
        logger.info(
            "%s fitted: %d x %d dictionary, %s",
            type(self).__name__,
            D.n_rows,
            D.n_columns,
            sol.certificate,
        )
        return self

    def _fit_generate(
        self, X: np.ndarray, y: np.ndarray, sw: Any, C: int, seed: int, options: dict
    ) -> ConvexSNNClassifier:
        """``fit`` with column generation (``generate``)."""
        from .colgen import fit_column_generation

        if self.readout != "spike":
            raise ValueError(f"generate needs readout='spike', got readout={self.readout!r}")
        if self.loss not in ("squared", "softmax"):
            raise ValueError(f"generate needs loss 'squared' or 'softmax', got {self.loss!r}")
        if isinstance(self.scale, (list, tuple, np.ndarray)):
            raise ValueError("generate needs one witness scale (a float), got a list")
        if self.device not in (None, "cpu"):
            raise ValueError(f"generate runs on the CPU, got device={self.device!r}")
        opts = {"max_time": None, **options}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", _CvxConvergenceWarning)
            res = fit_column_generation(
                X,
                y,
                n_classes=C,
                loss=self.loss,
                penalty=self.penalty,
                reg=self.reg,
                init_sources=self.n_branches,
                scale=float(self.scale),
                tol=self.tol,
                max_iter=self.max_iter,
                seed=seed,
                leak=self.leak,
                theta=self.theta,
                reset=self.reset,
                sample_weight=sw,
                **opts,
            )
        sol = res.solution
        if not sol.certificate.converged:  # the final solve is what the model is
            warnings.warn(
                SNNConvergenceWarning(
                    f"{type(self).__name__}: the final column-generation solve stopped at "
                    f"relative gap {sol.certificate.rel_gap:.2e} (raise max_iter or tol)",
                    sol.certificate,
                ),
                stacklevel=3,
            )
        for w in caught:
            if not issubclass(w.category, _CvxConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        last = res.rounds[-1]
        self.witnesses_ = res.witnesses
        self.dictionary_ = res.dictionary
        self.solution_ = sol
        self.certificate_ = sol.certificate
        self.converged_ = bool(sol.certificate.converged)
        self.dual_gap_ = float(sol.certificate.gap)
        self.lambda_ = float(sol.lam)
        self.network_ = reconstruct(res.dictionary, sol)
        self.n_iter_ = max(1, int(sol.certificate.iterations))
        self.certified_ = certified_label(sol.certificate)
        self.pricing_gap_ = float(last.pricing_gap)
        self.union_rel_gap_ = float(last.union_rel_gap)
        self.rounds_ = [r.to_dict() for r in res.rounds]
        self.stopped_ = res.stopped
        logger.info(
            "%s fitted by column generation: %d rounds (%s), %d columns, pricing gap %.3g, %s",
            type(self).__name__,
            len(res.rounds),
            res.stopped,
            res.dictionary.n_columns,
            last.pricing_gap,
            self.certified_,
        )
        return self

    @available_if(_softmax_loss)
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities :math:`\\mathrm{softmax}(z)` (``loss="softmax"`` only).

        Parameters
        ----------
        X : array-like ``(n_samples, T, n_features)`` or ``(n_samples, n_features)``

        Returns
        -------
        ndarray ``(n_samples, n_classes)``
        """
        return self._predict_proba(X)

    @property
    def n_neurons_(self) -> int:
        """Last-layer neurons with a non-zero output weight in the reconstructed network."""
        check_is_fitted(self, "network_")
        return kept_neurons(self.network_)


# ------------------------------------------------------------------------- surrogate classifier
class SurrogateSNNClassifier(_SNNClassifierBase):
    r"""Parallel SNN trained with surrogate gradients (``SG``, BPTT).

    The network is a :class:`~convexsnn.network.ParallelSNN` (``n_branches`` branches of
    ``depth - 1`` LIF layers of ``width`` neurons) with one score column for two classes and one
    per class otherwise; it is trained by :func:`~convexsnn.train.train_surrogate` (AdamW,
    optional learning-rate decay on plateaus, the exact spikes in the forward pass).

    Parameters
    ----------
    n_branches : int
        Number of parallel branches ``K``.
    width : int or list of int
        Neurons per branch in each LIF layer.
    depth : int
        ``L`` >= 2, counting the output layer.
    leak, theta, reset, readout, readout_bias
        LIF and readout options, as in :class:`ConvexSNNClassifier` (``beta``: deprecated alias
        of ``leak``).
    recurrent : {None, "dense", "diagonal"}
        Recurrent weights in every LIF layer.
    bias : bool
        Per-neuron bias in the LIF layers.
    output_bias : bool
        Bias of the output layer.
    surrogate : str
        Surrogate spike derivative (``"atan"``, ``"fast_sigmoid"``, ...).
    init_scale : float
        Initial hidden weights :math:`U(-s/\sqrt{n_{in}}, s/\sqrt{n_{in}})`.
    loss : {"softmax", "hinge", "squared"}
        Training loss; ``predict_proba`` exists only for ``"softmax"``.
    epochs : int
        Training epochs.
    batch_size : int or None
        Mini-batch size (``None``: full batch).
    lr, weight_decay, path_norm
        Learning rate, decoupled weight decay, path-norm coefficient.
    lr_patience : int or None
        Epochs without improvement before the learning rate is halved (``None``: fixed).
    validation_fraction : float or None
        Hold out this fraction of the training data (stratified) to keep the best epoch's weights
        and for early stopping. ``None``: train on everything, keep the last weights.
    early_stopping_patience : int or None
        Stop after this many epochs without improvement.
    seed : int
        Seed of the initial weights, the mini-batch order and the validation split.
    device : str or None
        Torch device.
    progress : bool
        Show a progress bar.

    Attributes
    ----------
    classes_, n_features_in_, n_steps_in_
        As in :class:`ConvexSNNClassifier`.
    network_ : ParallelSNN
        The trained network.
    history_ : dict
        Per-epoch training record (:meth:`convexsnn.train.TrainResult.to_dict`).
    n_iter_ : int
        Epochs run.
    """

    beta = renamed_attribute("leak", "beta")

    @renamed_kwargs(beta="leak")
    def __init__(
        self,
        n_branches: int = 1,
        width: Any = 64,
        depth: int = 2,
        *,
        leak: float = 0.99,
        theta: float = 1.0,
        reset: str = "subtract",
        readout: str = "spike",
        readout_bias: float = 0.0,
        recurrent: str | None = None,
        bias: bool = False,
        output_bias: bool = True,
        surrogate: str = "atan",
        init_scale: float = 1.0,
        loss: str = "softmax",
        epochs: int = 100,
        batch_size: int | None = 64,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        path_norm: float = 0.0,
        lr_patience: int | None = 10,
        validation_fraction: float | None = None,
        early_stopping_patience: int | None = None,
        seed: int = 0,
        device: str | None = None,
        progress: bool = False,
    ):
        self.n_branches = n_branches
        self.width = width
        self.depth = depth
        self.leak = leak
        self.theta = theta
        self.reset = reset
        self.readout = readout
        self.readout_bias = readout_bias
        self.recurrent = recurrent
        self.bias = bias
        self.output_bias = output_bias
        self.surrogate = surrogate
        self.init_scale = init_scale
        self.loss = loss
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.path_norm = path_norm
        self.lr_patience = lr_patience
        self.validation_fraction = validation_fraction
        self.early_stopping_patience = early_stopping_patience
        self.seed = seed
        self.device = device
        self.progress = progress

    def fit(self, X: Any, y: Any) -> SurrogateSNNClassifier:
        """Train the network on ``(X, y)`` with surrogate gradients.

        Parameters
        ----------
        X : array-like ``(n_samples, T, n_features)`` or ``(n_samples, n_features)``
        y : array-like ``(n_samples,)``
            Class labels (any values).

        Returns
        -------
        self
        """
        X, y, _ = self._validate_fit(X, y, None)
        widths = _widths(self.width, self.depth)
        seed = _check_seed(self.seed)
        C = len(self.classes_)
        n_out = 1 if C == 2 else C
        Xv = yv = None
        if self.validation_fraction is not None:
            vf = float(self.validation_fraction)
            if not 0.0 < vf < 1.0:
                raise ValueError(
                    f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}"
                )
            from sklearn.model_selection import train_test_split

            n_val = max(C, int(round(vf * X.shape[0])))
            if X.shape[0] - n_val < C:
                raise ValueError(
                    f"too few samples for validation_fraction={self.validation_fraction}"
                )
            counts = np.bincount(y, minlength=C)
            strat = y if counts.min() >= 2 else None
            X, Xv, y, yv = train_test_split(
                X, y, test_size=n_val, random_state=seed, stratify=strat
            )
        net = ParallelSNN(
            X.shape[2],
            n_out,
            n_branches=self.n_branches,
            hidden_widths=widths,
            leak=self.leak,
            theta=self.theta,
            reset=self.reset,
            readout=self.readout,
            readout_bias=self.readout_bias,
            output="last",
            bias=self.bias,
            output_bias=self.output_bias,
            recurrent=self.recurrent,
            surrogate=self.surrogate,
            init_scale=self.init_scale,
            seed=seed,
        )
        if self.device is not None:
            net.to(self.device)
        res = train_surrogate(
            net,
            X.astype(np.float32),
            y,
            Xv if Xv is None else Xv.astype(np.float32),
            yv,
            loss=self.loss,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            path_norm=self.path_norm,
            lr_patience=self.lr_patience,
            early_stopping_patience=self.early_stopping_patience,
            restore_best=Xv is not None,
            seed=seed,
            progress=bool(self.progress),
        )
        self.network_ = net.eval()
        self.history_ = res.to_dict()
        self.n_iter_ = max(1, int(res.epochs_run))
        return self

    @available_if(_softmax_loss)
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (``loss="softmax"`` only): logistic of the score for two classes,
        softmax of the scores otherwise.

        Parameters
        ----------
        X : array-like ``(n_samples, T, n_features)`` or ``(n_samples, n_features)``

        Returns
        -------
        ndarray ``(n_samples, n_classes)``
        """
        return self._predict_proba(X)


# ----------------------------------------------------------------- scikit-learn common checks
_COMMON_XFAIL = {
    "check_sample_weight_equivalence_on_dense_data": "weights are only approximately equivalent to repeats: the readout is solved to a "
    "relative duality gap (tol), not to machine precision",
}

_SG_XFAIL: dict[str, str] = {}


def expected_failed_checks(estimator: BaseEstimator) -> dict[str, str]:
    """scikit-learn common checks that do not apply to ``estimator``, with the reason.

    For :func:`sklearn.utils.estimator_checks.parametrize_with_checks` (its
    ``expected_failed_checks`` argument) and :func:`~sklearn.utils.estimator_checks.check_estimator`.
    """
    if isinstance(estimator, SurrogateSNNClassifier):
        return dict(_SG_XFAIL)
    if isinstance(estimator, ConvexSNNClassifier):
        return dict(_COMMON_XFAIL)
    return {}
