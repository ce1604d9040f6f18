r"""Column generation over the witness space, with a certificate and a pricing gap per round.

The convex readout is posed over a finite dictionary, but the witness space (all input weights a
neuron may have) is infinite. Column generation grows the dictionary where the dual says it
helps. With :math:`\lambda` fixed, every round solves the same problem

.. math::

    \min_W\; f(D_{\mathcal S} W) + \lambda R(W)

restricted to the columns :math:`D_{\mathcal S}` of the current witness set :math:`\mathcal S`, and
gets a feasible dual point :math:`U` (:math:`R^\circ(D_{\mathcal S}^\top U) \le \lambda`) with a
certified gap over :math:`\mathcal S`. A column :math:`d` outside :math:`\mathcal S` can lower the
objective only if it violates the dual constraint: its *price*

.. math::

    \pi(d) = \rho(d^\top U) / \lambda, \qquad
    \rho(g) = \max_c |g_c| \;(\ell_1), \quad \rho(g) = \lVert g\rVert_2 \;(\ell_{2,1}),

exceeds 1. A round: (1) solve on :math:`\mathcal S` to a certificate; (2) *screen*: drop the
witnesses all of whose columns pass the gap-safe test below (their weight is zero at the optimum
over :math:`\mathcal S`); (3) *propose* a pool of candidate witnesses; (4) *price* them on the
training rows; (5) add the most violating ones (price above :math:`1 + \epsilon`) within the
column budget. It stops when no candidate among the pool violates the dual constraint by more than
``pricing_tol``, or after ``rounds`` additions.

Reported per round (:class:`RoundRecord`): the certificate over the current dictionary, and the
**pricing gap** :math:`\max_{d \in \text{examined}} \pi(d) - 1`. When it is
:math:`\epsilon \le 0`, :math:`U` is feasible for the union of the dictionary and every candidate
examined, so the certificate holds over that union too; when :math:`\epsilon > 0`,
:math:`U / (1 + \epsilon)` is feasible for the union and

.. math::

    \text{gap}_{\cup} = P(W) - \mathcal D\big(U / (1 + \epsilon)\big)

bounds the suboptimality of :math:`W` over the union (``union_rel_gap``; recomputed on the
original rows). Neither says anything about witnesses never examined.

Witnesses. Every witness is one LIF neuron reading the input (its own branch; weights
:math:`w \in \mathbb R^d`, no bias), with a delay line (:mod:`convexsnn.delay`) when ``delay``
is set: its ``T`` last-step columns are its spikes at every step, :math:`d_{w,t} =
(s_t(x_i; w))_i`. Pricing simulates the neuron alone; the relay chain reproduces those spikes bit
for bit (:mod:`convexsnn.delay`), and every solve runs on the dictionary built from the delay-line
witness set itself, so certificates and reconstruction are those of the real network.

With ``family="two_layer_delay"`` a witness is one *window neuron* over a fixed relay layer
(:func:`convexsnn.delay.two_layer_delay_witnesses`: input relays and optional Gaussian sources with
delay lines, then window neurons, padded to ``depth`` with exact relays); its parameters are the
window weights :math:`c` over the ``n_1`` relayed layer-1 spikes :math:`\Phi` (computed once),
its one column is its spike at the last step, and pricing simulates it alone on :math:`\Phi`
(with the leak-compensated weights :func:`convexsnn.delay.window_weights`). The proposals below
then read :math:`\Phi` for :math:`X` and :math:`c` for :math:`w`; ``"sparse"``
(:func:`convexsnn.delay.sparse_windows`) draws random windows over a few relayed spikes.

With ``family="recurrent"`` a witness is one neuron of a recurrent cascade
(:mod:`convexsnn.recurrent_witness`): a threshold unit over :math:`x_t`, :math:`x_{t-1}`, the
previous spikes of the kept witnesses and its own, exact on a :math:`2^{-16}` grid; its
parameters are those weights, its one column its spike at :math:`T`, and pricing runs the exact
recursion on the kept witnesses' spikes. ``"fit"`` fits it like a window neuron (then refits the
self weight on its own previous spike), ``"counter"`` proposes modulo-:math:`k` counter modules of
random sparse events (:math:`2k` columns, priced by the best), ``"automaton"`` automaton modules
(any :math:`q`-state transition table on one-hot symbols, :math:`q d` columns) found by hill
climbing over the tables against the dual (:func:`_automaton_search`); a screened witness is
dropped only when no kept witness reads it, and at most 32 witnesses are added a round by
default.

Proposals (all drawn from one seeded generator):

* ``"dual"``: dual-weighted data directions, :math:`w \propto \sigma \sum_t a_t X_t^\top (m \odot
  U_{:,c})` for a random class :math:`c`, sign :math:`\sigma`, step weights
  :math:`a \sim \mathrm{Dirichlet}(1)` and row mask :math:`m` (one of a few random halves of the
  rows, or all rows). :math:`X_t^\top U_{:,c}` is the direction along which the input at step
  :math:`t` correlates with the residual of class :math:`c`, so a neuron whose current follows it
  tends to fire on the rows where :math:`\sigma U_{:,c}` is large, which is what raises
  :math:`|d^\top U_{:,c}|`;
* ``"mutation"``: :math:`w_k + \mu \frac{\lVert w_k\rVert}{\sqrt d} G` for a kept witness
  :math:`k` drawn proportionally to the norm of its readout weights;
* ``"gaussian"``: :math:`s\, G` (as :func:`~convexsnn.witnesses.gaussian_witnesses`).

* ``"fit"`` (``family="two_layer_delay"``): the pricing problem of a window neuron is a weighted
  classification (its spike at :math:`T` is :math:`\mathbb 1[\Phi_T c \ge \theta]` while it
  stayed silent before), so each candidate is a logistic threshold unit fitted to the signs of
  :math:`\sigma U_{:,c}` weighted by :math:`|U_{:,c}|`, on a random row half and a random
  feature subset or band of consecutive lags (:func:`_fit_windows`; the weak learner of
  boosting);
* ``"local"``: hill climbing from the best candidates of the round (:func:`_local_search`):
  one-coordinate changes, rescaling and, for window weights, the whole pattern shifted by one lag.
  Every neighbour examined is priced and counts in the pricing gap.

Dual proposals are rescaled to norm :math:`s \sqrt d\, e^{u}`, :math:`u \sim U(-\ln 2, \ln 2)`
(the norm of a Gaussian witness, within a factor 2).

Ranking (``rule``). Violating candidates are added in order of price (``"price"``) or of the
*steepest edge* (``"steepest"``): :math:`\rho(d^\top U) / (\lambda \lVert d\rVert_a)`,
:math:`\lVert d\rVert_a^2 = \sum_i a_i d_i`, the price per unit of column norm, which prefers a
column firing on rows whose residuals agree in sign over a broad one that fires on many rows of
both signs (the classical pricing rule of the simplex method); local search then climbs that
score. Candidates with the same columns are added once.

Gap-safe screening (squared and softmax losses). The dual objective is 1-strongly concave in the
norm :math:`\lVert V\rVert_{A^{-1}}^2 = \sum_i \lVert V_i\rVert^2 / a_i` (squared: exactly;
softmax: the entropy is 1-strongly concave in :math:`\ell_1`, which dominates :math:`\ell_2`), so
:math:`\lVert U - U^\star\rVert_{A^{-1}} \le \sqrt{2\,\mathrm{gap}}` and, by Cauchy-Schwarz,

.. math::

    \rho(d^\top U) + \sqrt{2\,\mathrm{gap}} \sqrt{\textstyle\sum_i a_i d_i} < \lambda
    \;\Longrightarrow\; W^\star_{d} = 0

for binary :math:`d`. A witness all of whose columns pass is dropped (so is a witness that owns no
column: silent, or a duplicate of columns other witnesses own). When the budget is full and
more candidates violate than fit, witnesses outside the support with the lowest price are also
retired (``n_retired``; not safe, but the next round's certificate is over the new dictionary).

Determinism: for a seed, proposals and dictionaries are bit-identical; the solves are too when
``max_time`` is ``None`` (a wall-clock budget makes the returned point depend on machine speed).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from ._checks import (
    check_choice,
    check_positive_float,
    check_positive_int,
    check_seed,
    check_sequence_input,
    renamed_kwargs,
)
from ._io import json_safe
from .convex import predict_from_scores, solve_readout
from .convex.solver import prepare_problem
from .delay import (
    delay_line_witnesses,
    relay_layer,
    relayed_spikes,
    sparse_windows,
    template_sources,
    threshold_delay_witnesses,
    threshold_weights,
    two_layer_delay_witnesses,
    window_weights,
)
from .dictionary import SpikeDictionary, build_dictionary
from .lif import RESETS, simulate
from .recurrent_witness import (
    automaton_cells,
    automaton_modules,
    candidate_spikes,
    cascade_features,
    cascade_params,
    cascade_spikes,
    check_dyadic_lif,
    counter_modules,
    extend_cascade,
    extend_module,
    module_spikes,
    quantize,
    read_closure,
    recurrent_cascade_witnesses,
    restrict_cascade,
    sparse_cascade_candidates,
)
from .witnesses import Witnesses

__all__ = [
    "FAMILIES",
    "PROPOSALS",
    "ColumnGenerationResult",
    "RoundRecord",
    "fit_column_generation",
    "fit_template_column_generation",
    "price_witnesses",
    "source_witnesses",
]

logger = logging.getLogger("convexsnn")

PROPOSALS = ("dual", "mutation", "gaussian", "sparse", "fit", "local", "counter", "automaton")
#: witness families :func:`fit_column_generation` grows
FAMILIES = ("delay", "two_layer_delay", "recurrent")
_DEFAULT_PROPOSALS = {
    "delay": ("dual", "mutation", "gaussian"),
    "two_layer_delay": ("dual", "mutation", "sparse"),
    "recurrent": ("sparse", "fit", "local"),
}
_LOSSES = ("squared", "softmax")
_PENALTIES = ("l1", "l21")
_BACKENDS = ("local", "ray")
#: how violating candidates are ranked (and local search climbs): price or steepest edge
_RULES = ("price", "steepest")
#: automaton search: neighbours per climber and step, distinct modules offered per round
_AUTOMATON_NEIGHBOURS = 16
_AUTOMATON_OFFER = 4


_R = TypeVar("_R", bound="RoundRecord")


@dataclass
class RoundRecord:
    """One round of :func:`fit_column_generation` (all values JSON-safe via :meth:`to_dict`).

    ``rel_gap`` / ``converged``: certificate of the solve over the current dictionary;
    ``pricing_gap``: :math:`\\max \\pi(d) - 1` over the ``n_candidates`` examined (``nan`` when
    none); ``union_rel_gap``: certified relative gap over the dictionary and those candidates;
    ``n_added`` / ``n_dropped`` (gap-safe screening) / ``n_retired`` (budget): witnesses changed
    after this round's pricing.
    """

    round: int
    n_witnesses: int
    n_columns: int
    primal: float
    dual: float
    rel_gap: float
    converged: bool
    support: int
    train_accuracy: float
    n_candidates: int = 0
    pricing_gap: float = float("nan")
    union_rel_gap: float = float("nan")
    n_violating: int = 0
    n_added: int = 0
    n_dropped: int = 0
    n_retired: int = 0
    proposals: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return json_safe(asdict(self))

    @classmethod
    def from_solve(
        cls: type[_R], r: int, sol: Any, n_witnesses: int, n_columns: int, train_accuracy: float
    ) -> _R:
        """The record of round ``r`` from its readout solve ``sol`` (certificate and support);
        the pricing and screening fields keep their defaults until the round sets them."""
        cert = sol.certificate
        return cls(
            round=r,
            n_witnesses=int(n_witnesses),
            n_columns=int(n_columns),
            primal=cert.primal,
            dual=cert.dual,
            rel_gap=cert.rel_gap,
            converged=bool(cert.converged),
            support=int(sol.support.numel()),
            train_accuracy=train_accuracy,
        )


@dataclass
class ColumnGenerationResult:
    """Result of :func:`fit_column_generation`.

    Attributes
    ----------
    witnesses : Witnesses
        Final witness set (delay-line witnesses when ``delay``).
    dictionary : SpikeDictionary
        Its dictionary on the training inputs.
    solution : ReadoutSolution
        Readout over ``dictionary`` with its certificate (the last round's solve).
    rounds : list of RoundRecord
    stopped : str
        ``"pricing"`` (no candidate violates by more than ``pricing_tol``), ``"rounds"`` or
        ``"budget"`` (nothing could be added).
    settings : dict
    """

    witnesses: Witnesses
    dictionary: SpikeDictionary
    solution: Any
    rounds: list[RoundRecord]
    stopped: str
    settings: dict

    def scores(self, X: Any) -> torch.Tensor:
        """Convex readout scores :math:`D(X) W` on new inputs."""
        D = self.dictionary.transform(X, dtype=torch.float64)
        return D @ self.solution.W.to(torch.float64)

    def predict(self, X: Any) -> torch.Tensor:
        return predict_from_scores(self.scores(X))

    def accuracy(self, X: Any, y: Any) -> float:
        y = torch.as_tensor(y).reshape(-1)
        return float((self.predict(X) == y).to(torch.float64).mean())

    def reconstruct(self, **kwargs: Any):
        """The ``ParallelSNN`` computing the readout (:func:`convexsnn.reconstruct.reconstruct`)."""
        from .reconstruct import reconstruct

        return reconstruct(self.dictionary, self.solution, **kwargs)


# ---------------------------------------------------------------------- witnesses
@renamed_kwargs(beta="leak")
def source_witnesses(
    weights: torch.Tensor,
    *,
    n_steps: int | None,
    leak: float,
    theta: float,
    reset: str,
    description: dict | None = None,
) -> Witnesses:
    """One LIF neuron per branch with input weights ``weights`` ``(d, K)``; with ``n_steps`` its
    delay line (:func:`convexsnn.delay.delay_line_witnesses`)."""
    w = weights.T.contiguous()[:, :, None]
    base = Witnesses(
        [w],
        None,
        None,
        leak,
        theta,
        reset,
        description or {"kind": "column_generation", "seed": None},
    )
    return base if n_steps is None else delay_line_witnesses(base, n_steps)


def _source_spikes(
    weights: torch.Tensor,
    x: torch.Tensor,
    leak: float,
    theta: float,
    reset: str,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Spikes ``(n, T, K)`` of the neurons ``weights`` ``(d, K)`` (biases ``(K,)`` or none)
    alone (no relays)."""
    w = weights.T.contiguous()[:, :, None]
    b = None if bias is None else [bias.to(w.dtype).reshape(-1, 1)]
    with torch.no_grad():
        return simulate(x, [w], biases=b, leak=leak, theta=theta, reset=reset).spikes[0][..., 0]


@renamed_kwargs(beta="leak")
def price_witnesses(
    weights: torch.Tensor,
    X: Any,
    U: torch.Tensor,
    lam: float,
    *,
    penalty: str = "l1",
    delay: bool = True,
    leak: float = 0.99,
    theta: float = 1.0,
    reset: str = "subtract",
    block_entries: int = 1 << 24,
    backend: str = "local",
    n_tasks: int | None = None,
    biases: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Price :math:`\pi(w) = \max_{t} \rho(d_{w,t}^\top U) / \lambda` of candidate witnesses.

    Parameters
    ----------
    weights : Tensor ``(d, K)``
        Input weights of ``K`` one-neuron witnesses.
    X : array ``(n, T, d)``
        Training inputs (rows of ``U``).
    U : Tensor ``(n, C)``
        Dual point.
    lam : float
    penalty : {"l1", "l21"}
        :math:`\rho` = max-abs over classes, or the Euclidean norm.
    delay : bool
        Columns are the spikes at every step (delay line) or the last step only.
    block_entries : int
        Candidates are simulated in blocks of ``block_entries // (n T)``.
    backend : {"local", "ray"}
        ``"ray"``: the blocks are priced by Ray tasks on the running Ray instance (``ray.init``
        first, or pass ``backend="ray"`` to :func:`fit_column_generation`, which starts one);
        the inputs and ``U`` are shared through the object store. Task boundaries fall on block
        boundaries, so the prices are bit-identical to ``"local"``.
    n_tasks : int, optional
        Ray tasks (default: the cluster's CPUs; at most the number of blocks).
    biases : Tensor ``(K,)``, optional
        Biases of the candidates (threshold sources, :func:`convexsnn.delay.threshold_weights`);
        default none.

    Returns
    -------
    Tensor ``(K,)`` of prices (float64); streamed over blocks of candidates.
    """
    check_choice(penalty, "penalty", _PENALTIES)
    check_choice(backend, "backend", _BACKENDS)
    x = check_sequence_input(X, "X", dtype=torch.float64)
    U = torch.as_tensor(U, dtype=torch.float64)
    if U.ndim != 2 or U.shape[0] != x.shape[0]:
        raise ValueError(f"U must have shape ({x.shape[0]}, C), got {tuple(U.shape)}")
    lam = check_positive_float(lam, "lam")
    weights = torch.as_tensor(weights).to(torch.float64)
    if weights.ndim != 2 or weights.shape[0] != x.shape[2]:
        raise ValueError(
            f"weights must have shape ({x.shape[2]}, K) for inputs of {x.shape[2]} features, "
            f"got {tuple(weights.shape)}"
        )
    if n_tasks is not None:
        n_tasks = check_positive_int(n_tasks, "n_tasks")
    K = weights.shape[1]
    if biases is not None:
        biases = torch.as_tensor(biases).to(torch.float64).reshape(-1)
        if biases.shape[0] != K:
            raise ValueError(f"biases must have shape ({K},), got {tuple(biases.shape)}")
    n, T = x.shape[:2]
    blk = max(1, block_entries // max(1, n * T))
    lif = {"leak": leak, "theta": theta, "reset": reset}
    if backend == "local" or K == 0:
        return _price_range(weights, x, U, lam, penalty, delay, lif, blk, biases)
    return _price_ray(weights, x, U, lam, penalty, delay, lif, blk, n_tasks, biases)


def _price_range(
    weights: torch.Tensor,
    x: torch.Tensor,
    U: torch.Tensor,
    lam: float,
    penalty: str,
    delay: bool,
    lif: dict,
    blk: int,
    biases: torch.Tensor | None = None,
) -> torch.Tensor:
    """Prices of the candidates ``weights`` ``(d, K)`` (biases ``(K,)`` or none), simulated in
    blocks of ``blk``."""
    out = []
    for k0 in range(0, weights.shape[1], blk):
        b = None if biases is None else biases[k0 : k0 + blk]
        s = _source_spikes(weights[:, k0 : k0 + blk], x, **lif, bias=b)  # (n, T, k)
        if not delay:
            s = s[:, -1:]
        G = torch.einsum("ntk,nc->tkc", s, U)
        rho = G.abs().amax(dim=2) if penalty == "l1" else G.norm(dim=2)
        out.append(rho.amax(dim=0) / lam)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _price_task(weights, x, U, lam, penalty, delay, lif, blk, biases=None) -> torch.Tensor:
    """Body of one Ray pricing task (one torch thread: the tasks are the parallelism)."""
    torch.set_num_threads(1)
    return _price_range(weights, x, U, lam, penalty, delay, lif, blk, biases)


def _price_ray(weights, x, U, lam, penalty, delay, lif, blk, n_tasks, biases=None) -> torch.Tensor:
    r""":func:`_price_range` split over Ray tasks on the running Ray instance.

    Every task gets a contiguous range of candidates whose boundaries are multiples of ``blk``,
    so it simulates exactly the blocks the local loop would: the prices are bit-identical to
    local pricing whatever the number of tasks. ``x`` and ``U`` go through the object store once.
    """
    ray = _ray()
    K = weights.shape[1]
    n_blocks = -(-K // blk)
    if n_tasks is None:
        n_tasks = max(1, int(ray.available_resources().get("CPU", 1)))
    n_tasks = min(n_tasks, n_blocks)
    per = -(-n_blocks // n_tasks) * blk
    task = ray.remote(num_cpus=1)(_price_task)
    x_ref, U_ref = ray.put(x), ray.put(U)
    refs = [
        task.remote(
            weights[:, k0 : k0 + per].clone(),
            x_ref,
            U_ref,
            lam,
            penalty,
            delay,
            lif,
            blk,
            None if biases is None else biases[k0 : k0 + per].clone(),
        )
        for k0 in range(0, K, per)
    ]
    logger.debug("pricing %d candidates in %d Ray tasks", K, len(refs))
    return torch.cat(ray.get(refs))


class _RaySession:
    """Start Ray (local, or the cluster at ``address``) unless it runs; shut down what it
    started."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.started = False

    def __enter__(self) -> _RaySession:
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            self.started = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            _ray().shutdown()


def _ray():
    """``ray`` (optional dependency), with the one-line error naming the extra."""
    from .distributed.ray_blocks import import_ray

    return import_ray()


# ---------------------------------------------------------------------- proposals
def _dual_directions(
    x: torch.Tensor, U: torch.Tensor, n_masks: int, gen: torch.Generator
) -> torch.Tensor:
    """``(n_masks + 1, T, d, C)``: :math:`X_t^\\top (m \\odot U_{:,c})` for random row halves
    ``m`` and all rows."""
    n = x.shape[0]
    masks = [torch.ones(n, dtype=torch.float64)]
    for _ in range(n_masks):
        masks.append((torch.rand(n, generator=gen, dtype=torch.float64) < 0.5).to(torch.float64))
    return torch.stack([torch.einsum("ntd,nc->tdc", x, U * m[:, None]) for m in masks])


def _propose(
    kind: str,
    count: int,
    *,
    gen: torch.Generator,
    d: int,
    scale: float,
    dirs: torch.Tensor | None,
    kept: torch.Tensor,
    kept_weight: torch.Tensor,
    mutation_scale: float,
    theta: float = 1.0,
) -> torch.Tensor:
    """``(d, count)`` candidate weights of one proposal kind."""
    if count <= 0:
        return torch.zeros(d, 0, dtype=torch.float64)
    if kind == "sparse":
        return sparse_windows(d, count, gen=gen, theta=theta)
    if (
        kind == "gaussian"
        or (kind == "mutation" and kept.shape[1] == 0)
        or (kind == "dual" and dirs is None)
    ):
        return scale * torch.randn(d, count, generator=gen, dtype=torch.float64)
    if kind == "mutation":
        p = kept_weight.clamp_min(0)
        p = p / p.sum() if float(p.sum()) > 0 else torch.full_like(p, 1.0 / p.numel())
        idx = torch.multinomial(p, count, replacement=True, generator=gen)
        base = kept[:, idx]
        noise = torch.randn(d, count, generator=gen, dtype=torch.float64)
        return base + mutation_scale * base.norm(dim=0, keepdim=True) / math.sqrt(d) * noise
    M, T, _, C = dirs.shape
    m = torch.randint(M, (count,), generator=gen)
    c = torch.randint(C, (count,), generator=gen)
    sign = torch.randint(2, (count,), generator=gen).to(torch.float64) * 2 - 1
    a = -torch.log(torch.rand(count, T, generator=gen, dtype=torch.float64).clamp_min(1e-300))
    a = a / a.sum(dim=1, keepdim=True)  # Dirichlet(1) step weights
    sel = dirs[m, :, :, c]  # (count, T, d)
    w = sign[:, None] * torch.einsum("kt,ktd->kd", a, sel)
    u = (torch.rand(count, generator=gen, dtype=torch.float64) * 2 - 1) * math.log(2.0)
    norm = w.norm(dim=1, keepdim=True).clamp_min(1e-300)
    w = w / norm * (scale * math.sqrt(d) * torch.exp(u))[:, None]
    return w.T.contiguous()


def _fit_windows(
    F: torch.Tensor,
    U: torch.Tensor,
    count: int,
    *,
    gen: torch.Generator,
    theta: float,
    n_masks: int,
    n_lags: int | None = None,
    steps: int = 100,
    lr: float = 0.3,
    ridge: float = 1e-4,
    own_steps: tuple[torch.Tensor, int] | None = None,
) -> torch.Tensor:
    r"""``(d, count)`` window weights fitted as weighted threshold units on the dual.

    The spike at :math:`T` of a window neuron that stayed silent before is
    :math:`\mathbb 1[F_i c \ge \theta]` with :math:`F = \Phi_{:, T}` (module docstring), and
    its price is largest when it fires on the rows where :math:`\sigma U_{:,c}` is positive:
    the pricing problem is a weighted classification (the weak learner of boosting). Each
    candidate fits a logistic threshold unit with the neuron's own fixed bias :math:`-\theta`,

    .. math::

        \min_a \sum_i m_i |U_{ic}|\, \log\big(1 + e^{-y_i (F_i a - \theta)}\big)
        + \tfrac{r}{2} \lVert a\rVert^2, \qquad y_i = \operatorname{sign}(\sigma U_{ic}),

    on a random class :math:`c`, sign :math:`\sigma`, row mask :math:`m` (all rows or a random
    half) and feature subset (all; each feature kept with probability 1/2 or 1/4; or, for window
    weights with ``n_lags`` lags per source, every source at a band of :math:`w` consecutive
    lags, :math:`w \sim U\{2 .. T/2\}`: a pattern local in time), by
    ``steps`` Adam steps from :math:`a = 0` (batched over the candidates); :math:`c = a`.

    ``own_steps = (Z, k)`` (recurrent cascade witnesses, ``F = Z_T`` padded with a zero column
    for the self weight): then ``k`` times, the candidates are simulated
    (:func:`~convexsnn.recurrent_witness.candidate_spikes`) and refitted with their own spike at
    :math:`T - 1` as the feature of the self weight (from the previous weights; a set/reset latch
    when the self weight comes out positive).
    """
    n, d = F.shape
    C = U.shape[1]
    c = torch.randint(C, (count,), generator=gen)
    sign = torch.randint(2, (count,), generator=gen).to(torch.float64) * 2 - 1
    target = sign[None, :] * U[:, c]  # (n, K)
    half = torch.rand(n, count, generator=gen, dtype=torch.float64) < 0.5
    use_all = torch.rand(count, generator=gen) < 1.0 / (n_masks + 1)
    rows = torch.where(use_all[None, :], torch.ones_like(half), half).to(torch.float64)
    omega = target.abs() * rows
    omega = omega / omega.sum(dim=0, keepdim=True).clamp_min(1e-300)
    yy = torch.where(target > 0, 1.0, -1.0).to(torch.float64)
    kind = torch.randint(4, (count,), generator=gen)
    keep_p = torch.tensor([1.0, 0.5, 0.25, 1.0], dtype=torch.float64)[kind]
    fmask = (torch.rand(d, count, generator=gen, dtype=torch.float64) < keep_p[None, :]).to(
        torch.float64
    )
    if n_lags is not None and n_lags > 1 and d % n_lags == 0:
        # kind 3: a band of consecutive lags [l0, l0 + w) of every source
        w = torch.randint(2, max(2, n_lags // 2) + 1, (count,), generator=gen)
        l0 = (torch.rand(count, generator=gen) * (n_lags - w + 1)).floor().long()
        lag = torch.arange(d) % n_lags
        band = (lag[:, None] >= l0[None, :]) & (lag[:, None] < (l0 + w)[None, :])
        fmask = torch.where((kind == 3)[None, :], band.to(torch.float64), fmask)
    a = torch.zeros(d, count, dtype=torch.float64)
    a = _fit_adam(F, a, omega, yy, fmask, theta=theta, steps=steps, lr=lr, ridge=ridge)
    if own_steps is None:
        return a.contiguous()
    # recurrent cascade: the last row is the self weight, and the feature it multiplies is the
    # candidate's own spike at T - 1, which moves with the fit: alternate simulate / refit
    Z, n_alt = own_steps
    for _ in range(n_alt):
        s_prev = candidate_spikes(quantize(a), Z, theta)[:, -2] if Z.shape[1] > 1 else None
        if s_prev is None:
            break
        a = _fit_adam(
            F, a, omega, yy, fmask, theta=theta, steps=steps, lr=lr, ridge=ridge, own=s_prev
        )
    return a.contiguous()


def _fit_adam(
    F: torch.Tensor,
    a: torch.Tensor,
    omega: torch.Tensor,
    yy: torch.Tensor,
    fmask: torch.Tensor,
    *,
    theta: float,
    steps: int,
    lr: float,
    ridge: float,
    own: torch.Tensor | None = None,
) -> torch.Tensor:
    """``steps`` Adam steps of the weighted logistic fit of :func:`_fit_windows` from ``a``;
    with ``own`` ``(n, K)`` the last row of ``a`` multiplies that per-candidate feature instead
    of the last column of ``F``."""
    m1, m2 = torch.zeros_like(a), torch.zeros_like(a)
    b1, b2 = 0.9, 0.999
    for i in range(1, steps + 1):  # Adam on the analytic gradient
        z = F @ a - theta
        if own is not None:
            z = z + own * a[-1]
        r = -omega * yy * torch.sigmoid(-yy * z)
        g = F.T @ r
        if own is not None:
            g[-1] = (own * r).sum(dim=0)
        g = g * fmask + ridge * a
        m1.mul_(b1).add_(g, alpha=1 - b1)
        m2.mul_(b2).addcmul_(g, g, value=1 - b2)
        a = a - lr * (m1 / (1 - b1**i)) / ((m2 / (1 - b2**i)).sqrt() + 1e-12)
        a = a * fmask
    return a


def _neighbours(
    seeds: torch.Tensor,
    m: int,
    *,
    gen: torch.Generator,
    theta: float,
    n_lags: int | None,
) -> torch.Tensor:
    r"""``(d, S m)`` random one-move neighbours of the ``S`` seed witnesses ``(d, S)``.

    Moves (equally likely): set one coordinate to :math:`\pm\theta u`,
    :math:`u \sim U(0.3, 1.3)`; zero one non-zero coordinate; scale the whole vector by
    :math:`e^{v}`, :math:`v \sim U(-0.25, 0.25)`; and, for window weights (``n_lags`` = the
    delay-line length, rows ``source * n_lags + lag``), shift every lag by :math:`\pm 1` (the same
    pattern one step earlier or later), else add :math:`0.3 \lVert w\rVert / \sqrt d\, G`.
    """
    d, S = seeds.shape
    K = S * m
    base = seeds.repeat_interleave(m, dim=1).clone()  # (d, K), seed s -> columns s*m ..
    kind = torch.randint(4, (K,), generator=gen)
    j = torch.randint(d, (K,), generator=gen)
    val = theta * (0.3 + torch.rand(K, generator=gen, dtype=torch.float64))
    val = val * (torch.randint(2, (K,), generator=gen).to(torch.float64) * 2 - 1)
    v = (torch.rand(K, generator=gen, dtype=torch.float64) * 2 - 1) * 0.25
    nz_key = torch.rand(d, K, generator=gen, dtype=torch.float64)
    step = torch.randint(2, (K,), generator=gen) * 2 - 1
    noise = torch.randn(d, K, generator=gen, dtype=torch.float64)
    cols = torch.arange(K)
    out = base.clone()
    k0 = kind == 0
    out[j[k0], cols[k0]] = val[k0]
    k1 = kind == 1
    nzk = torch.where(base != 0, nz_key, torch.full_like(nz_key, -1.0))
    jz = nzk.argmax(dim=0)
    has = (base != 0).any(dim=0)
    sel = k1 & has
    out[jz[sel], cols[sel]] = 0.0
    k2 = kind == 2
    out[:, k2] = base[:, k2] * torch.exp(v[k2])[None, :]
    k3 = kind == 3
    if n_lags is not None and n_lags > 1 and d % n_lags == 0:
        b3 = base[:, k3].reshape(d // n_lags, n_lags, -1)
        sh = torch.zeros_like(b3)
        up = step[k3] > 0
        sh[:, 1:, up] = b3[:, :-1, up]  # later lag: the pattern one step earlier
        sh[:, :-1, ~up] = b3[:, 1:, ~up]
        out[:, k3] = sh.reshape(d, -1)
    else:
        nb = base[:, k3]
        out[:, k3] = nb + 0.3 * nb.norm(dim=0, keepdim=True) / math.sqrt(d) * noise[:, k3]
    return out


def _local_search(
    seeds: torch.Tensor,
    seed_scores: torch.Tensor,
    count: int,
    eval_fn: Any,
    *,
    gen: torch.Generator,
    theta: float,
    n_lags: int | None,
    steps: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Hill climbing from ``seeds``: ``steps`` times, every seed draws ``count // (steps S)``
    neighbours (:func:`_neighbours`), all are evaluated (``eval_fn(C) -> (prices, scores)``),
    and a seed moves to its best-scoring neighbour when that one scores higher. Returns every
    neighbour examined with its price and score (``count`` in all, up to rounding)."""
    S = seeds.shape[1]
    if S == 0 or count <= 0:
        z = torch.zeros(0, dtype=torch.float64)
        return torch.zeros(seeds.shape[0], 0, dtype=torch.float64), z, z
    steps = max(1, min(steps, count // S))
    m = max(1, count // (steps * S))
    cur, cur_s = seeds.clone(), seed_scores.clone()
    all_c, all_p, all_s = [], [], []
    for _ in range(steps):
        nb = _neighbours(cur, m, gen=gen, theta=theta, n_lags=n_lags)
        p, sc = eval_fn(nb)
        all_c.append(nb)
        all_p.append(p)
        all_s.append(sc)
        best_s, best_i = sc.reshape(S, m).max(dim=1)
        up = best_s > cur_s
        idx = torch.arange(S) * m + best_i
        cur[:, up] = nb[:, idx[up]]
        cur_s[up] = best_s[up]
    return torch.cat(all_c, dim=1), torch.cat(all_p), torch.cat(all_s)


def _rho_and_edge(
    G: torch.Tensor, norm: torch.Tensor, penalty: str
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The dual violation :math:`\rho` of columns from their products ``G`` ``(..., C)`` with the
    dual ``U`` (max over classes for l1, Euclidean norm for l2,1) and their steepest-edge score
    :math:`\rho / \lVert d\rVert_a` (``norm`` ``(...)``; silent columns score 0)."""
    rho = G.abs().amax(dim=-1) if penalty == "l1" else G.norm(dim=-1)
    sc = torch.where(norm > 0, rho / norm.clamp_min(1e-300), torch.zeros_like(rho))
    return rho, sc


def _edge_scores(
    weights: torch.Tensor,
    x: torch.Tensor,
    U: torch.Tensor,
    a: torch.Tensor,
    lam: float,
    penalty: str,
    last_only: bool,
    lif: dict,
    block_entries: int = 1 << 24,
    biases: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Prices and steepest-edge scores of candidates ``weights`` ``(d, K)``.

    Price :math:`\pi(w) = \max_t \rho(d_{w,t}^\top U)/\lambda` (as :func:`price_witnesses`);
    score :math:`\max_t \rho(d_{w,t}^\top U) / (\lambda \lVert d_{w,t}\rVert_a)` with
    :math:`\lVert d\rVert_a^2 = \sum_i a_i d_i` (binary :math:`d`): the price per unit of
    column norm, the rule that prefers a column whose rows agree in sign of the residual over one
    that fires on many rows of both signs (silent columns score 0).
    """
    n, T = x.shape[:2]
    blk = max(1, block_entries // max(1, n * T))
    out_p, out_s = [], []
    for k0 in range(0, weights.shape[1], blk):
        b = None if biases is None else biases[k0 : k0 + blk]
        s = _source_spikes(weights[:, k0 : k0 + blk], x, **lif, bias=b)  # (n, T, k)
        if last_only:
            s = s[:, -1:]
        G = torch.einsum("ntk,nc->tkc", s, U)
        norm = torch.einsum("ntk,n->tk", s, a).clamp_min(0).sqrt()
        rho, sc = _rho_and_edge(G, norm, penalty)  # (t, k) each
        out_p.append(rho.amax(dim=0) / lam)
        out_s.append(sc.amax(dim=0) / lam)
    if not out_p:
        z = torch.zeros(0, dtype=torch.float64)
        return z, z
    return torch.cat(out_p), torch.cat(out_s)


def _cascade_scores(
    C: torch.Tensor,
    Z: torch.Tensor,
    U: torch.Tensor,
    a: torch.Tensor,
    lam: float,
    penalty: str,
    theta: float,
    block: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Prices and steepest-edge scores (as :func:`_edge_scores`) of recurrent cascade candidates
    ``C`` ``((F + 1), K)`` on the features ``Z`` of the kept witnesses: one column each, the
    spike at the last step (:func:`convexsnn.recurrent_witness.candidate_spikes`)."""
    out_p, out_s = [], []
    for k0 in range(0, C.shape[1], block):
        s = candidate_spikes(C[:, k0 : k0 + block], Z, theta)[:, -1]  # (n, k)
        rho, sc = _rho_and_edge(s.T @ U, (s.T @ a).clamp_min(0).sqrt(), penalty)
        out_p.append(rho / lam)
        out_s.append(sc / lam)
    if not out_p:
        z = torch.zeros(0, dtype=torch.float64)
        return z, z
    return torch.cat(out_p), torch.cat(out_s)


def _module_scores(
    mods: list[tuple[torch.Tensor, torch.Tensor]],
    Z: torch.Tensor,
    U: torch.Tensor,
    a: torch.Tensor,
    lam: float,
    penalty: str,
    theta: float,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Prices and steepest-edge scores of counter modules (the best of their ``2k`` columns,
    each a neuron's spike at the last step), and their last-step spikes ``(n, 2k)``."""
    n = Z.shape[0]
    prices = torch.zeros(len(mods), dtype=torch.float64)
    scores = torch.zeros(len(mods), dtype=torch.float64)
    spikes: list[torch.Tensor] = [torch.zeros(n, 0)] * len(mods)
    for q in sorted({Vm.shape[0] for _, Vm in mods}):
        idx = [g for g, (_, Vm) in enumerate(mods) if Vm.shape[0] == q]
        W = torch.stack([mods[g][0] for g in idx], dim=1)  # (F, G, q)
        Vm = torch.stack([mods[g][1] for g in idx])
        s = module_spikes(W, Vm, Z, theta)[:, -1]  # (n, G, q)
        G = torch.einsum("ngq,nc->gqc", s, U)
        norm = torch.einsum("ngq,n->gq", s, a).clamp_min(0).sqrt()
        rho, sc = _rho_and_edge(G, norm, penalty)
        for j, g in enumerate(idx):
            prices[g] = rho[j].max() / lam
            scores[g] = sc[j].max() / lam
            spikes[g] = s[:, j]
    return prices, scores, spikes


def _automaton_search(
    sym: torch.Tensor,
    U: torch.Tensor,
    a: torch.Tensor,
    lam: float,
    penalty: str,
    count: int,
    *,
    q: int,
    steps: int,
    gen: torch.Generator,
    block_entries: int = 1 << 22,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, int]:
    r"""Hill climbing over :math:`q`-state transition tables (automaton modules,
    :func:`~convexsnn.recurrent_witness.automaton_modules`) against the dual ``U``.

    A module's last-step columns are the indicators of the cells :math:`c_i = s_{T-1} d + a_T`
    (:func:`~convexsnn.recurrent_witness.automaton_cells`), disjoint, so with
    :math:`G_c = \sum_{i \in c} U_i` and :math:`N_c = \sum_{i \in c} a_i` its price is
    :math:`\max_c \rho(G_c) / \lambda` and its *group score*

    .. math::

        S(\delta) = \sum_c \rho(G_c)^2 / N_c

    the squared steepest-edge scores of its columns summed (for the squared loss, the part of
    the residual the module's cells explain: the score of the partition of the rows by the
    automaton's last state). ``count`` climbers start from uniform random tables (start state
    0); ``steps`` times each draws :data:`_AUTOMATON_NEIGHBOURS` neighbours (one entry
    :math:`\delta(s, a)` set to a uniform state), all are priced, and a climber moves to its best
    neighbour when that one scores at least as high (plateau moves allowed). Returns the final
    tables ``(count, q, d)``, their group scores, the table of largest price among every table
    examined ``(q, d)``, that price and the number examined."""
    n, T = sym.shape
    d = int(sym.max()) + 1 if sym.numel() else 1
    Q = q * d
    Cn = U.shape[1]

    def score(tabs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_s, out_p = [], []
        blk = max(1, block_entries // max(1, n * max(Cn, 1)))
        for k0 in range(0, tabs.shape[0], blk):
            tb = tabs[k0 : k0 + blk]
            K = tb.shape[0]
            cells = automaton_cells(tb, sym)  # (K, n)
            idx = (torch.arange(K)[:, None] * Q + cells).reshape(-1)
            G = torch.zeros(K * Q, Cn, dtype=torch.float64).index_add_(0, idx, U.repeat(K, 1))
            N = torch.zeros(K * Q, dtype=torch.float64).index_add_(0, idx, a.repeat(K))
            rho = G.abs().amax(dim=1) if penalty == "l1" else G.norm(dim=1)
            grp = torch.where(N > 0, rho**2 / N.clamp_min(1e-300), torch.zeros_like(rho))
            out_s.append(grp.reshape(K, Q).sum(dim=1))
            out_p.append(rho.reshape(K, Q).amax(dim=1) / lam)
        return torch.cat(out_s), torch.cat(out_p)

    m = _AUTOMATON_NEIGHBOURS
    cur = torch.randint(q, (count, q, d), generator=gen)
    cur_s, p0 = score(cur)
    p_max, n_ex = float(p0.max()), count
    t_max = cur[int(p0.argmax())].clone()
    ar = torch.arange(count * m)
    for _ in range(steps):
        nb = cur.repeat_interleave(m, dim=0)
        s_ = torch.randint(q, (count * m,), generator=gen)
        a_ = torch.randint(d, (count * m,), generator=gen)
        nb[ar, s_, a_] = torch.randint(q, (count * m,), generator=gen)
        sc, pr = score(nb)
        n_ex += count * m
        if float(pr.max()) > p_max:
            p_max, t_max = float(pr.max()), nb[int(pr.argmax())].clone()
        best_s, best_i = sc.reshape(count, m).max(dim=1)
        up = best_s >= cur_s
        pick = nb.reshape(count, m, q, d)[torch.arange(count), best_i]
        cur[up] = pick[up]
        cur_s[up] = best_s[up]
    return cur, cur_s, t_max, p_max, n_ex


def _partition_key(cells: torch.Tensor) -> bytes:
    """A key of the partition of the rows by ``cells`` ``(n,)``, whatever the cells' names."""
    first = torch.full((int(cells.max()) + 1,), cells.numel(), dtype=torch.long)
    first.scatter_reduce_(0, cells, torch.arange(cells.numel()), reduce="amin")
    return first[cells].numpy().tobytes()


def _bit_keys(s: torch.Tensor) -> list[bytes]:
    """Hashable keys of the binary columns ``s`` ``(n, T, K)`` of ``K`` candidates."""
    n, T, K = s.shape
    b = np.packbits(s.permute(2, 0, 1).reshape(K, n * T).numpy() > 0.5, axis=1)
    return [row.tobytes() for row in b]


def _column_keys(cands: torch.Tensor, x: torch.Tensor, lif: dict, last_only: bool) -> list[bytes]:
    """A hashable key of the dictionary columns of every candidate (its spikes at every step,
    or at the last step only), for de-duplicating candidates before they are added."""
    s = _source_spikes(cands, x, **lif)  # (n, T, K)
    return _bit_keys(s[:, -1:] if last_only else s)


# ---------------------------------------------------------------------- the loop
def _witness_owner(dic: SpikeDictionary, group: int | None = None) -> np.ndarray:
    """Witness index of every dictionary column: its branch (one-neuron witnesses), or
    ``branch * group + neuron`` (two-layer delay witnesses, ``group`` window neurons per
    branch)."""
    p = np.asarray(dic.provenance, dtype=np.int64)
    return p[:, 0] if group is None else p[:, 0] * group + p[:, 1]


def _weights_by_witness(
    W: torch.Tensor, ids: Any, owner: np.ndarray, slot: np.ndarray
) -> dict[tuple[int, int], torch.Tensor]:
    """The non-zero readout rows of a round, keyed by (stable witness id, slot within the
    witness), so the next round's dictionary (other columns, other order) can be warm-started
    from them by :func:`_warm_start`."""
    return {
        (int(ids[owner[j]]), int(slot[j])): W[j]
        for j in range(W.shape[0])
        if bool((W[j] != 0).any())
    }


def _warm_start(
    W_prev: dict[tuple[int, int], torch.Tensor], ids: Any, owner: np.ndarray, slot: np.ndarray
) -> torch.Tensor | None:
    """The warm start ``W0`` (float64, one row per column of the new dictionary) from the rows
    kept by :func:`_weights_by_witness`: a column of a witness kept from the last round gets its
    old row, every other column zero. ``None`` in the first round."""
    if not W_prev:
        return None
    C = next(iter(W_prev.values())).shape[0]
    W0 = torch.zeros(len(owner), C, dtype=torch.float64)
    for j in range(len(owner)):
        v = W_prev.get((int(ids[owner[j]]), int(slot[j])))
        if v is not None:
            W0[j] = v
    return W0


@renamed_kwargs(beta="reg", lif_beta="leak")
def fit_column_generation(
    X: Any,
    y: Any,
    *,
    n_classes: int | None = None,
    loss: str = "squared",
    penalty: str = "l1",
    lam: float | None = None,
    reg: float | None = None,
    rounds: int = 5,
    pool: int = 1000,
    budget: int = 4096,
    delay: bool = True,
    n_steps: int | None = None,
    init_sources: int = 256,
    scale: float = 1.0,
    proposals: Sequence[str] | None = None,
    mutation_scale: float = 0.3,
    n_masks: int = 8,
    pricing_tol: float = 1e-3,
    screen: bool = True,
    tol: float = 1e-6,
    max_iter: int | None = None,
    max_time: float | None = None,
    solver: str = "auto",
    polish: bool = True,
    seed: int = 0,
    leak: float = 0.99,
    theta: float = 1.0,
    reset: str = "subtract",
    sample_weight: Any = None,
    backend: str = "local",
    address: str | None = None,
    n_tasks: int | None = None,
    family: str = "delay",
    depth: int = 3,
    group: int = 32,
    layer1_sources: int = 0,
    local_seeds: int = 16,
    local_steps: int = 4,
    max_add: int | None = None,
    rule: str = "price",
    fit_alternations: int = 2,
    automaton_states: int = 8,
    automaton_steps: int = 60,
) -> ColumnGenerationResult:
    r"""Column generation over one-neuron (delay-line) witnesses or two-layer delay witnesses
    (module docstring).

    Parameters
    ----------
    X : array ``(n, T, d)``
        Training inputs; ``y`` : ``(n,)`` integer labels (sequence labels, read at the last step).
    n_classes : int, optional
    loss : {"squared", "softmax"}
        Datafit (the strongly concave duals the screening needs).
    penalty : {"l1", "l21"}
    lam, reg : float
        Exactly one. :math:`\lambda` stays fixed over the rounds (so every round solves the same
        problem on a growing dictionary); ``reg`` (:math:`\beta`) is converted with the paper's
        convention at the budget, :math:`\lambda = \beta / \sqrt{\text{budget}}`.
    rounds : int
        Additions at most (``rounds + 1`` solves).
    pool : int
        Candidate witnesses proposed and priced per round, split evenly over ``proposals``.
    budget : int
        Most dictionary columns (witnesses x columns per witness before de-duplication).
    delay : bool
        Delay-line witnesses (``T`` columns each, :mod:`convexsnn.delay`) or last-step ones.
    n_steps : int, optional
        Delay-line length (default ``T`` of ``X``).
    init_sources : int
        Gaussian witnesses of the first dictionary (:math:`s\,G`, ``s = scale``).
    mutation_scale, n_masks
        Proposal parameters (module docstring).
    pricing_tol : float
        Stop when the pricing gap is at most this.
    screen : bool
        Drop witnesses whose columns pass the gap-safe test.
    tol, max_iter, max_time, solver, polish
        Passed to :func:`convexsnn.convex.solve_readout` (each round warm-started).
    seed : int
        Seed of every random draw.
    leak, theta, reset
        LIF parameters of the witnesses. (``beta`` and ``lif_beta`` are deprecated aliases of
        ``reg`` and ``leak``.)
    sample_weight : array ``(n,)``, optional
        Row weights :math:`a_i` (default :math:`1/n`).
    backend : {"local", "ray"}
        Where candidates are priced. ``"ray"``: as Ray tasks over blocks of candidates
        (:func:`price_witnesses`), on the running Ray instance, or on one started here (local,
        or the cluster at ``address``) and shut down at the end. Prices, and so the whole run,
        are bit-identical to ``"local"``.
    address : str, optional
        Ray cluster address (``"auto"``, ``"ray://host:10001"``) when this call starts Ray.
    n_tasks : int, optional
        Ray pricing tasks per round (default: the cluster's CPUs).
    family : {"delay", "two_layer_delay", "recurrent"}
        ``"delay"``: one-neuron witnesses on the input (``delay`` chooses delay lines or the
        last step). ``"two_layer_delay"``: window neurons over a fixed relay layer
        (:func:`convexsnn.delay.two_layer_delay_witnesses`; ``delay`` is ignored): the priced
        parameters are the window weights :math:`C` over the ``n_1`` relayed layer-1 spikes, one
        column per witness (its spike at the last step). ``"recurrent"``: a recurrent cascade
        (:mod:`convexsnn.recurrent_witness`; binary inputs, subtract reset, dyadic leak such as
        1.0; ``delay``, ``depth`` and ``scale`` of the sparse proposals are ignored): every new
        witness reads :math:`x_t`, :math:`x_{t-1}`, the previous spikes of the kept witnesses
        and its own, one column each (its spike at the last step).
    depth, group, layer1_sources
        ``"two_layer_delay"`` only: depth ``L`` counting the output, window neurons per branch,
        and Gaussian layer-1 sources (:math:`s\,G`, ``s = scale``, drawn first from the seed)
        beside the input relays.
    proposals : sequence of str, optional
        Among ``"dual"``, ``"mutation"``, ``"gaussian"``, ``"sparse"``
        (:func:`convexsnn.delay.sparse_windows`), ``"fit"`` (``"two_layer_delay"`` only) and
        ``"local"`` (module docstring); default ``dual, mutation, gaussian`` (``"delay"``) or
        ``dual, mutation, sparse`` (``"two_layer_delay"``).
    local_seeds, local_steps
        ``"local"``: seeds (the best candidates of the round) and hill-climbing steps; its
        share of ``pool`` is the number of neighbours examined.
    max_add : int, optional
        Most witnesses added per round (default: as many as the budget has room for; 32 with
        ``family="recurrent"``).
    rule : {"price", "steepest"}
        Ranking of the violating candidates (module docstring). ``"steepest"`` prices locally.
    fit_alternations : int
        ``family="recurrent"``, ``"fit"`` proposals: simulate / refit alternations that fit the
        self weight on the candidate's own previous spike.
    automaton_states, automaton_steps
        ``family="recurrent"``, ``"automaton"`` proposals (one-hot inputs): states :math:`q` of
        the automaton modules searched, and hill-climbing steps; the proposal's share of
        ``pool`` is the number of climbers, each examining ``automaton_steps`` x 16 tables
        (all priced, all in the pricing gap); the 4 best distinct ones by group score and the
        one of largest price are offered.

    Returns
    -------
    ColumnGenerationResult
    """
    args = dict(locals())
    t_all = time.perf_counter()
    check_choice(backend, "backend", _BACKENDS)
    if address is not None and backend != "ray":
        raise ValueError("address is a Ray cluster address: pass backend='ray' with it")
    if backend == "ray" and not _ray().is_initialized():
        with _RaySession(address):  # started here, shut down at the end
            return fit_column_generation(**args)
    if n_tasks is not None:
        n_tasks = check_positive_int(n_tasks, "n_tasks")
    check_choice(loss, "loss", _LOSSES)
    check_choice(penalty, "penalty", _PENALTIES)
    check_choice(reset, "reset", RESETS)
    check_choice(family, "family", FAMILIES)
    two = family == "two_layer_delay"
    if proposals is None:
        proposals = _DEFAULT_PROPOSALS[family]
    proposals = tuple(proposals)
    for p in proposals:
        check_choice(p, "proposals", PROPOSALS)
    if not proposals:
        raise ValueError("proposals must name at least one of " + ", ".join(PROPOSALS))
    rcs = family == "recurrent"
    if "fit" in proposals and not (two or rcs):
        raise ValueError(
            "proposals='fit' fits threshold units: it needs family='two_layer_delay' or 'recurrent'"
        )
    if "counter" in proposals and not rcs:
        raise ValueError("proposals='counter' adds counter modules: it needs family='recurrent'")
    if "automaton" in proposals and not rcs:
        raise ValueError(
            "proposals='automaton' adds automaton modules: it needs family='recurrent'"
        )
    automaton_states = check_positive_int(automaton_states, "automaton_states")
    automaton_steps = check_positive_int(automaton_steps, "automaton_steps", allow_zero=True)
    if rcs:
        check_dyadic_lif(leak, theta, reset)
        if backend == "ray":
            raise ValueError("family='recurrent' prices locally: use backend='local' with it")
    if max_add is not None:
        max_add = check_positive_int(max_add, "max_add")
    elif rcs:
        max_add = 32  # a cascade deepens by one level a round: grow it in small steps
    check_choice(rule, "rule", _RULES)
    if rule == "steepest" and backend == "ray":
        raise ValueError("rule='steepest' prices locally: use backend='local' with it")
    local_seeds = check_positive_int(local_seeds, "local_seeds")
    fit_alternations = check_positive_int(fit_alternations, "fit_alternations", allow_zero=True)
    local_steps = check_positive_int(local_steps, "local_steps")
    x = check_sequence_input(X, "X", dtype=torch.float64)
    n, T, d = x.shape
    yt = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if yt.ndim != 1 or yt.shape[0] != n:
        raise ValueError(f"y must hold one label per sequence ({n},), got {tuple(yt.shape)}")
    sym = torch.zeros(0, 0, dtype=torch.long)  # symbols (n, T) of one-hot inputs
    if "automaton" in proposals:
        if not bool(((x == 0) | (x == 1)).all() and (x.sum(dim=2) == 1).all()):
            raise ValueError(
                "proposals='automaton' needs one-hot symbol inputs (every step exactly one "
                "channel equal to 1, the others 0)"
            )
        sym = x.argmax(dim=2)
    rounds = check_positive_int(rounds, "rounds", allow_zero=True)
    pool = check_positive_int(pool, "pool", allow_zero=True)
    budget = check_positive_int(budget, "budget")
    init_sources = check_positive_int(init_sources, "init_sources")
    scale = check_positive_float(scale, "scale")
    check_seed(seed)
    if two:
        delay = True
        depth = check_positive_int(depth, "depth")
        group = check_positive_int(group, "group")
        layer1_sources = check_positive_int(layer1_sources, "layer1_sources", allow_zero=True)
    n_win = check_positive_int(n_steps, "n_steps") if n_steps is not None else T
    L = n_win if delay else None
    per = 1 if two or rcs or L is None else L
    if init_sources * per > budget:
        raise ValueError(f"init_sources={init_sources} x {per} columns exceeds budget={budget}")
    if (lam is None) == (reg is None):
        raise ValueError("give exactly one of lam and reg")
    lam = (
        check_positive_float(lam, "lam")
        if lam is not None
        else check_positive_float(reg, "reg") / math.sqrt(budget)
    )
    gen = torch.Generator().manual_seed(int(seed))
    lif: dict[str, Any] = {"leak": float(leak), "theta": float(theta), "reset": reset}
    settings = json_safe(
        {
            "loss": loss,
            "penalty": penalty,
            "lam": lam,
            "beta": reg,
            "rounds": rounds,
            "pool": pool,
            "budget": budget,
            "delay": delay,
            "n_steps": L,
            "init_sources": init_sources,
            "scale": scale,
            "proposals": list(proposals),
            "mutation_scale": mutation_scale,
            "n_masks": n_masks,
            "local_seeds": local_seeds,
            "local_steps": local_steps,
            "max_add": max_add,
            "rule": rule,
            "pricing_tol": pricing_tol,
            "screen": screen,
            "tol": tol,
            "max_iter": max_iter,
            "max_time": max_time,
            "solver": solver,
            "polish": polish,
            "seed": int(seed),
            "lif": {"beta": lif["leak"], "theta": lif["theta"], "reset": reset},  # record keys
            "backend": backend,
            "family": family,
        }
        | ({"depth": depth, "group": group, "layer1_sources": layer1_sources} if two else {})
        | ({"depth": 3, "fit_alternations": fit_alternations} if rcs else {})
        | (
            {"automaton_states": automaton_states, "automaton_steps": automaton_steps}
            if "automaton" in proposals
            else {}
        )
    )
    prep = prepare_problem(
        torch.zeros(n, 1),
        yt,
        loss=loss,
        penalty=penalty,
        sample_weight=sample_weight,
        n_classes=n_classes,
    )
    df = prep.datafit
    a = df.weights.to(torch.float64)
    desc = {"kind": "column_generation", "seed": int(seed), "options": settings}

    price_x, dim = x, d
    layer1: Witnesses | None = None
    if two:
        src = None
        if layer1_sources:
            src = scale * torch.randn(d, layer1_sources, generator=gen, dtype=torch.float64)
        layer1 = relay_layer(d, n_win, sources=src, **lif)
        price_x = relayed_spikes(layer1, x)  # (n, T, n_1): what the window neurons read
        dim = layer1.n_last
        sources = sparse_windows(dim, init_sources, gen=gen, theta=lif["theta"])
    elif rcs:
        c0 = sparse_cascade_candidates(2 * d, init_sources, gen=gen, theta=lif["theta"])
        cA, cV = c0[: 2 * d], torch.diag(c0[-1])
        sources = cascade_params(cA, cV)
    else:
        sources = scale * torch.randn(d, init_sources, generator=gen, dtype=torch.float64)
    ids = torch.arange(init_sources)  # identity of every witness
    next_id = init_sources
    W_prev: dict[tuple[int, int], torch.Tensor] = {}
    records: list[RoundRecord] = []
    stopped = "rounds"
    wit = dic = sol = None
    # recurrent family: features of the kept witnesses, and those a candidate may read
    Zc = torch.zeros(0, 0, 0, dtype=torch.float64)
    fmask = torch.ones(0, 1, dtype=torch.float64)
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        if layer1 is not None:
            wit = two_layer_delay_witnesses(
                sources,
                layer1,
                depth=depth,
                group=group,
                description={"seed": int(seed), "options": settings, "generated_by": "colgen"},
            )
        elif rcs:
            wit = recurrent_cascade_witnesses(
                cA,
                cV,
                description={"seed": int(seed), "options": settings, "generated_by": "colgen"},
                **lif,
            )
            H = cascade_spikes(cA, cV, x, lif["theta"])  # the kept witnesses' spikes (exact)
            Zc = cascade_features(x, H)
            price_x = torch.cat([Zc, torch.zeros(n, T, 1, dtype=torch.float64)], dim=2)
            dim = price_x.shape[2]
            sources = cascade_params(cA, cV)
        else:
            wit = source_witnesses(sources, n_steps=L, description=desc, **lif)
        dic = build_dictionary(wit, x.to(wit.dtype), steps="last")
        if rcs:  # layer 2 relays witness j as neuron j of the one branch
            owner = np.asarray(dic.provenance, dtype=np.int64)[:, 1]
        else:
            owner = _witness_owner(dic, group if two else None)
        slot = np.zeros(dic.n_columns, np.int64) if two or rcs else dic.provenance[:, 1]
        W0 = _warm_start(W_prev, ids, owner, slot)
        op = dic.operator(torch.float64)
        sol = solve_readout(
            op,
            yt,
            loss=loss,
            penalty=penalty,
            lam=lam,
            n_classes=n_classes,
            sample_weight=sample_weight,
            tol=tol,
            max_iter=max_iter,
            max_time=max_time,
            W0=W0,
            solver=solver,
            polish=polish,
        )
        cert = sol.certificate
        U = sol.dual.to(torch.float64)
        Wt = sol.W.to(torch.float64)
        Z = op.matmul(sol.W)
        acc = float((predict_from_scores(Z).cpu() == yt.reshape(-1)).to(torch.float64).mean())
        rec = RoundRecord.from_solve(r, sol, sources.shape[1], dic.n_columns, acc)
        W_prev = _weights_by_witness(Wt, ids, owner, slot)

        # screening and per-witness statistics on the current dictionary
        G = op.rmatmul(U.to(op.dtype)).to(torch.float64)  # (P, C)
        rho = G.abs().amax(dim=1) if penalty == "l1" else G.norm(dim=1)
        colnorm = torch.sqrt(op.rmatmul(a[:, None].to(op.dtype)).to(torch.float64)[:, 0])
        radius = math.sqrt(2.0 * max(cert.gap, 0.0))
        safe_zero = (rho + radius * colnorm) < lam
        K = sources.shape[1]
        wp, ww = np.zeros(K), np.zeros(K)
        unsafe = np.zeros(K, dtype=bool)
        np.maximum.at(wp, owner, (rho / lam).cpu().numpy())
        np.add.at(ww, owner, Wt.abs().sum(dim=1).cpu().numpy())
        np.logical_or.at(unsafe, owner, ~safe_zero.cpu().numpy())
        wit_price, wit_weight = torch.from_numpy(wp), torch.from_numpy(ww)
        if rcs:  # candidates read the input and the witnesses that stay (not screened out)
            stay = torch.from_numpy(unsafe) if screen else torch.ones(K, dtype=torch.bool)
            fmask = torch.ones(dim, 1, dtype=torch.float64)
            fmask[2 * d : 2 * d + K, 0] = read_closure(cV, stay).to(torch.float64)

        # proposals and pricing
        counts = {
            p: pool // len(proposals) + (1 if i < pool % len(proposals) else 0)
            for i, p in enumerate(proposals)
        }
        dirs = _dual_directions(price_x, U, n_masks, gen) if counts.get("dual", 0) > 0 else None
        parts = [
            sparse_cascade_candidates(dim - 1, counts[p], gen=gen, theta=lif["theta"])
            if rcs and p == "sparse"
            else _propose(
                p,
                counts[p],
                gen=gen,
                d=dim,
                scale=scale,
                dirs=dirs,
                kept=sources,
                kept_weight=wit_weight,
                mutation_scale=mutation_scale,
                theta=lif["theta"],
            )
            for p in proposals
            if p not in ("fit", "local", "counter", "automaton")
        ]
        if counts.get("fit", 0) > 0:
            parts.append(
                _fit_windows(
                    price_x[:, -1],
                    U,
                    counts["fit"],
                    gen=gen,
                    theta=lif["theta"],
                    n_masks=n_masks,
                    n_lags=None if rcs else n_win,
                    own_steps=(Zc, fit_alternations) if rcs else None,
                )
            )
        cands = torch.cat(parts, dim=1) if parts else torch.zeros(dim, 0, dtype=torch.float64)
        if rcs:
            cands = quantize(cands) * fmask

        def eval_fn(
            c: torch.Tensor,
            U: torch.Tensor = U,
            price_x: torch.Tensor = price_x,
            Zc: torch.Tensor = Zc,
            fmask: torch.Tensor = fmask,
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if rcs:
                c = quantize(c) * fmask
                p, sc = _cascade_scores(c, Zc, U, a, lam, penalty, lif["theta"])
                return (p, sc) if rule == "steepest" else (p, p)
            w = window_weights(c, lif["leak"], n_win) if two else c
            if rule == "steepest":
                return _edge_scores(w, price_x, U, a, lam, penalty, two or not delay, lif)
            p = price_witnesses(
                w,
                price_x,
                U,
                lam,
                penalty=penalty,
                delay=delay and not two,
                backend=backend,
                n_tasks=n_tasks,
                **lif,
            )
            return p, p

        prices, scores = eval_fn(cands)
        if counts.get("local", 0) > 0:
            # seeds: the best candidates of this round, else the best kept witnesses
            pool_c, pool_s = (cands, scores) if cands.shape[1] else (sources, wit_price)
            top = torch.argsort(pool_s, descending=True, stable=True)[:local_seeds]
            nb, p_nb, s_nb = _local_search(
                pool_c[:, top],
                pool_s[top].to(torch.float64),
                counts["local"],
                eval_fn,
                gen=gen,
                theta=lif["theta"],
                n_lags=n_win if two else None,
                steps=local_steps,
            )
            counts["local"] = int(nb.shape[1])
            if rcs:
                nb = quantize(nb) * fmask
            cands = torch.cat([cands, nb], dim=1)
            prices = torch.cat([prices, p_nb])
            scores = torch.cat([scores, s_nb])
        n_single = int(cands.shape[1])
        mods: list[tuple[torch.Tensor, torch.Tensor]] = []
        mod_s: list[torch.Tensor] = []
        if counts.get("counter", 0) > 0:  # recurrent: counter modules of sparse events
            ev = sparse_windows(dim - 1, counts["counter"], gen=gen, theta=lif["theta"], k_max=2)
            ks = torch.randint(2, 4, (counts["counter"],), generator=gen)
            mods = counter_modules(ev * fmask[:-1], ks, d=d, theta=lif["theta"])
            p_m, s_m, mod_s = _module_scores(mods, Zc, U, a, lam, penalty, lif["theta"])
            prices = torch.cat([prices, p_m])
            scores = torch.cat([scores, s_m if rule == "steepest" else p_m])
        n_examined = n_single + len(mods)
        p_extra = -math.inf
        if counts.get("automaton", 0) > 0:  # recurrent: automaton modules by hill climbing
            tabs, grp, t_max, p_extra, n_tab = _automaton_search(
                sym,
                U,
                a,
                lam,
                penalty,
                counts["automaton"],
                q=automaton_states,
                steps=automaton_steps,
                gen=gen,
            )
            n_examined += n_tab
            # the best distinct partitions by group score, and the table of largest price
            tabs = torch.cat([t_max[None], tabs])
            grp = torch.cat([torch.full((1,), math.inf, dtype=torch.float64), grp])
            seen_p: set[bytes] = set()
            offer = []
            for i in torch.argsort(grp, descending=True, stable=True).tolist():
                kk = _partition_key(automaton_cells(tabs[i : i + 1], sym)[0])
                if kk not in seen_p:
                    seen_p.add(kk)
                    offer.append(i)
                if len(offer) == _AUTOMATON_OFFER + 1:
                    break
            amods = automaton_modules(tabs[offer], n_features=dim - 1, theta=lif["theta"])
            p_m, s_m, a_s = _module_scores(amods, Zc, U, a, lam, penalty, lif["theta"])
            mods, mod_s = mods + amods, mod_s + a_s
            prices = torch.cat([prices, p_m])
            scores = torch.cat([scores, s_m if rule == "steepest" else p_m])
        rec.n_candidates = n_examined
        rec.proposals = {p: int(c) for p, c in counts.items()}
        if prices.numel():
            eps = max(float(prices.max()), p_extra) - 1.0
            rec.pricing_gap = eps
            s = 1.0 / (1.0 + max(eps, 0.0))
            dual_union = float(df.dual_value(U, s)) if s < 1.0 else cert.dual
            gap_u = max(cert.primal - dual_union, 0.0)
            rec.union_rel_gap = gap_u / max(abs(cert.primal), 1e-300)
        violating = torch.nonzero(prices > 1.0 + pricing_tol, as_tuple=False)[:, 0]
        rec.n_violating = int(violating.numel())
        if violating.numel() == 0:  # the stopping rule holds (also in the last round)
            stopped = "pricing"
            rec.seconds = time.perf_counter() - t0
            records.append(rec)
            break
        if r == rounds:
            rec.seconds = time.perf_counter() - t0
            records.append(rec)
            break
        # drop screened witnesses, retire more if the budget needs it, add the most violating
        keep = torch.from_numpy(unsafe) if screen else torch.ones(K, dtype=torch.bool)
        if rcs:  # a witness read by a kept one stays (its spikes are that one's input)
            keep = read_closure(cV, keep)
        rec.n_dropped = int(K - keep.sum())
        order = violating[torch.argsort(scores[violating], descending=True, stable=True)]
        # one candidate per distinct column set (local search finds the same column many times)
        order = order[: budget // per]
        if rcs:
            o1 = order[order < n_single]
            k1 = iter(_bit_keys(candidate_spikes(cands[:, o1], Zc, lif["theta"])[:, -1:]))
            keys = [
                next(k1) if i < n_single else _bit_keys(mod_s[i - n_single][:, :, None])[0]
                for i in order.tolist()
            ]
        else:
            keys = _column_keys(
                window_weights(cands[:, order], lif["leak"], n_win) if two else cands[:, order],
                price_x,
                lif,
                last_only=two or not delay,
            )
        seen: set[bytes] = set()
        first = []
        for i, kk in enumerate(keys):
            if kk not in seen:
                seen.add(kk)
                first.append(i)
        order = order[torch.as_tensor(first, dtype=torch.long)]
        if max_add is not None:
            order = order[:max_add]
        room = budget // per - int(keep.sum())
        if room < order.numel():
            spare = torch.nonzero(keep & (wit_weight == 0), as_tuple=False)[:, 0]
            spare = spare[torch.argsort(wit_price[spare], stable=True)]
            n_ret = min(int(spare.numel()), int(order.numel()) - max(room, 0))
            n_keep = int(keep.sum())
            keep[spare[:n_ret]] = False
            if rcs:
                keep = read_closure(cV, keep)
            rec.n_retired = n_keep - int(keep.sum())
            room = budget // per - int(keep.sum())
        add = order[: max(room, 0)]
        if rcs and add.numel():
            # columns of each: 1 (a neuron) or 2k (a counter module); the added witnesses read
            # old ones: those stay, within the budget
            m_old = cV.shape[0]
            ncol = torch.tensor(
                [1 if i < n_single else mods[i - n_single][1].shape[0] for i in order.tolist()]
            )
            add = order[: int((torch.cumsum(ncol, 0) <= max(room, 0)).sum())]
            while True:
                reads = torch.zeros(m_old, dtype=torch.bool)
                for i in add.tolist():
                    w_i = cands[:, i : i + 1] if i < n_single else mods[i - n_single][0]
                    reads |= (w_i[2 * d : 2 * d + m_old] != 0).any(dim=1)
                k2 = read_closure(cV, keep | reads)
                n_new = sum(
                    1 if i < n_single else mods[i - n_single][1].shape[0] for i in add.tolist()
                )
                if int(k2.sum()) + n_new <= budget or add.numel() == 0:
                    break
                add = add[:-1]
            keep = k2
        rec.n_added = int(add.numel())
        rec.seconds = time.perf_counter() - t0
        records.append(rec)
        logger.info(
            "colgen round %d: %d columns, rel_gap %.2e, pricing gap %.3g, +%d -%d",
            r,
            dic.n_columns,
            cert.rel_gap,
            rec.pricing_gap,
            rec.n_added,
            rec.n_dropped + rec.n_retired,
        )
        if add.numel() == 0:
            stopped = "budget"
            break
        n_new = int(add.numel())
        if rcs:
            a1 = add[add < n_single]
            m_old = cV.shape[0]
            cA, cV = extend_cascade(cA, cV, cands[:, a1])
            for i in add[add >= n_single].tolist():
                Wm, Vm = mods[i - n_single]
                pad = torch.zeros(cV.shape[0] - m_old, Wm.shape[1], dtype=torch.float64)
                cA, cV = extend_module(cA, cV, torch.cat([Wm[: 2 * d + m_old], pad]), Vm)
            n_new = cV.shape[0] - m_old
            cA, cV = restrict_cascade(
                cA, cV, torch.cat([keep, torch.ones(n_new, dtype=torch.bool)])
            )
        else:
            sources = torch.cat([sources[:, keep], cands[:, add]], dim=1)
        ids = torch.cat([ids[keep], torch.arange(next_id, next_id + n_new)])
        next_id += n_new
    settings["seconds"] = time.perf_counter() - t_all
    return ColumnGenerationResult(
        witnesses=wit,
        dictionary=dic,
        solution=sol,
        rounds=records,
        stopped=stopped,
        settings=settings,
    )


# ---------------------------------------------- template (threshold-source) column generation
@dataclass
class TemplateRoundRecord(RoundRecord):
    """:class:`RoundRecord` with the validation accuracy of the round's readout (``nan`` without
    validation rows)."""

    val_accuracy: float = float("nan")


@dataclass
class TemplateColumnGenerationResult(ColumnGenerationResult):
    """Result of :func:`fit_template_column_generation`: as :class:`ColumnGenerationResult`, with
    the final sources' unit templates ``V`` ``(K, d)``, thresholds ``q`` ``(K,)`` and ``lam``."""

    V: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0))
    q: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    lam: float = float("nan")


def fit_template_column_generation(
    X: Any,
    y: Any,
    *,
    n_classes: int,
    grid: tuple[int, int],
    reg: float | None = None,
    lam: float | None = None,
    init_sources: int = 1024,
    pool: int = 2048,
    add: int = 256,
    budget: int | None = None,
    rounds: int = 1,
    price_final: bool = True,
    rule: str = "steepest",
    min_size: tuple[int, int] = (3, 5),
    quantiles: tuple[float, float] = (0.5, 0.95),
    n_sample: int = 2000,
    scale: float = 0.5,
    leak: float = 0.0,
    theta: float = 1.0,
    reset: str = "subtract",
    seed: int = 0,
    tol: float = 1e-6,
    max_time: float | None = None,
    solver: str = "auto",
    polish: bool = True,
    block_entries: int = 1 << 24,
    validation: tuple[Any, Any] | None = None,
) -> TemplateColumnGenerationResult:
    r"""Column generation over template (threshold) sources with delay lines, squared loss + L1.

    Witnesses are the sources of :func:`convexsnn.delay.template_delay_witnesses`: source
    :math:`j` (unit template :math:`v_j`, threshold :math:`q_j`, weights and bias of
    :func:`convexsnn.delay.threshold_weights`) with its delay line, so its ``T`` columns are its
    spikes at every step. With :math:`\lambda` fixed (``lam``, or ``reg`` :math:`=\beta` with
    :math:`\lambda = \beta/\sqrt{P_0}`, :math:`P_0` the initial dictionary's columns), a round:

    1. solve :math:`\min_W \tfrac12\sum_i a_i\lVert (DW)_i - y_i\rVert^2 + \lambda\lVert W
       \rVert_1` on the current dictionary to a certificate (warm start from the last round);
    2. price a fresh pool of ``pool`` template sources (:func:`convexsnn.delay.template_sources`
       with seed ``seed + 1 + r``): :math:`\pi_j = \max_t \max_c |d_{j,t}^\top U_{:,c}| /
       \lambda` against the solve's dual point :math:`U` (module docstring); the **pricing gap**
       is :math:`\max_j \pi_j - 1` and, when positive, ``union_rel_gap`` the certified relative
       gap of :math:`W` over the dictionary and the pool (:math:`U / (1 + \epsilon)` is feasible
       there);
    3. drop the sources all of whose columns have a zero weight, retire the sources of least
       :math:`\sum |W|` while ``budget`` (sources) would be exceeded, and add the ``add``
       violating candidates (:math:`\pi_j > 1`) of highest score (``rule``: ``"price"``, or
       ``"steepest"``: :math:`\max_t \rho_t / (\lambda \lVert d_{j,t}\rVert_a)`).

    After ``rounds`` additions the last dictionary is solved once more; with ``price_final`` a last
    fresh pool is priced against that solve, so the final round reports the pricing gap of the
    returned readout. Stops early (``stopped == "pricing"``) when no candidate of a pool violates.
    The certificate of the result is that of the final solve over the final dictionary, recomputed
    on the training rows by :func:`~convexsnn.convex.solve_readout`; dropped and retired sources
    are not part of it. ``validation`` ``(X_val, y_val)``: every round records the validation
    accuracy of its readout (never used by the rounds). Deterministic for a seed and ``X``.
    """
    check_choice(rule, "rule", _RULES)
    x = check_sequence_input(X, "X", dtype=torch.float64)
    yt = torch.as_tensor(y).reshape(-1)
    if yt.shape[0] != x.shape[0]:
        raise ValueError(f"y has {yt.shape[0]} rows, X has {x.shape[0]}")
    if (reg is None) == (lam is None):
        raise ValueError("give exactly one of reg (lam = reg / sqrt(P_0)) and lam")
    init_sources = check_positive_int(init_sources, "init_sources")
    pool = check_positive_int(pool, "pool")
    add = check_positive_int(add, "add")
    rounds = check_positive_int(rounds, "rounds", allow_zero=True)
    budget = init_sources if budget is None else check_positive_int(budget, "budget")
    seed = check_seed(seed)
    n, T, d = x.shape
    lif = {"leak": float(leak), "theta": float(theta), "reset": reset}

    def draw(count: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        return template_sources(
            x, count, grid=grid, min_size=min_size, quantiles=quantiles, n_sample=n_sample, seed=s
        )

    settings = {
        "family": "template",
        "init_sources": init_sources,
        "pool": pool,
        "add": add,
        "budget": budget,
        "rounds": rounds,
        "rule": rule,
        "grid": [int(g) for g in grid],
        "min_size": [int(v) for v in min_size],
        "quantiles": [float(v) for v in quantiles],
        "n_sample": int(n_sample),
        "scale": float(scale),
        "lif": lif,
        "seed": seed,
        "tol": tol,
        "max_time": max_time,
        "solver": solver,
        "polish": polish,
    }
    prep = prepare_problem(torch.zeros(n, 1), yt, loss="squared", n_classes=n_classes)
    df = prep.datafit
    a = df.weights.to(torch.float64)
    V, q = draw(init_sources, seed)
    ids = torch.arange(init_sources)
    next_id = init_sources
    W_prev: dict[tuple[int, int], torch.Tensor] = {}
    records: list[RoundRecord] = []
    stopped = "rounds"
    lam_v = float("nan") if lam is None else check_positive_float(lam, "lam")
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        desc = {"kind": "template_colgen", "seed": seed, "options": settings, "round": r}
        wit = threshold_delay_witnesses(
            V, q, T, scale=scale, leak=leak, theta=theta, reset=reset, description=desc
        )
        dic = build_dictionary(wit, x)
        if reg is not None and r == 0:
            lam_v = float(reg) / math.sqrt(dic.n_columns)
            settings["lam"] = lam_v
            settings["reg"] = float(reg)
            settings["P0"] = dic.n_columns
        prov = np.asarray(dic.provenance, dtype=np.int64)
        owner, slot = prov[:, 0], prov[:, 1]
        W0 = _warm_start(W_prev, ids, owner, slot)
        op = dic.operator(torch.float64)
        sol = solve_readout(
            op,
            yt,
            loss="squared",
            penalty="l1",
            lam=lam_v,
            n_classes=n_classes,
            tol=tol,
            max_time=max_time,
            W0=W0,
            solver=solver,
            polish=polish,
        )
        cert = sol.certificate
        if sol.dual is None:
            raise RuntimeError("solve_readout returned no dual point: nothing to price against")
        U = sol.dual.to(torch.float64)
        Wt = sol.W.to(torch.float64)
        acc = float((predict_from_scores(op.matmul(sol.W)).cpu() == yt).to(torch.float64).mean())
        rec = TemplateRoundRecord.from_solve(r, sol, V.shape[0], dic.n_columns, acc)
        if validation is not None:
            Zv = dic.transform(validation[0], dtype=torch.float64) @ Wt
            yv = torch.as_tensor(validation[1]).reshape(-1)
            rec.val_accuracy = float((predict_from_scores(Zv) == yv).to(torch.float64).mean())
        logger.info(
            "template colgen round %d: %d sources, %d columns, rel gap %.2e (%s), support %d, "
            "train %.4f, val %.4f, %.0f s",
            r,
            V.shape[0],
            dic.n_columns,
            cert.rel_gap,
            cert.status,
            rec.support,
            acc,
            rec.val_accuracy,
            time.perf_counter() - t0,
        )
        W_prev = _weights_by_witness(Wt, ids, owner, slot)
        if r == rounds and not price_final:
            rec.seconds = time.perf_counter() - t0
            records.append(rec)
            break
        Vc, qc = draw(pool, seed + 1 + r)
        Wc, bc = threshold_weights(Vc, qc, scale=scale, theta=theta)
        prices, scores = _edge_scores(
            Wc, x, U, a, lam_v, "l1", False, lif, block_entries, biases=bc
        )
        if rule == "price":
            scores = prices
        rec.n_candidates = pool
        rec.proposals = {"template": pool}
        eps = float(prices.max()) - 1.0
        rec.pricing_gap = eps
        sc = 1.0 / (1.0 + max(eps, 0.0))
        dual_union = float(df.dual_value(U, sc)) if sc < 1.0 else cert.dual
        rec.union_rel_gap = max(cert.primal - dual_union, 0.0) / max(abs(cert.primal), 1e-300)
        violating = torch.nonzero(prices > 1.0, as_tuple=False)[:, 0]
        rec.n_violating = int(violating.numel())
        logger.info(
            "template colgen round %d: pricing gap %.3g over %d candidates (%d violate), union "
            "rel gap %.3g",
            r,
            eps,
            pool,
            rec.n_violating,
            rec.union_rel_gap,
        )
        if violating.numel() == 0:
            stopped = "pricing"
            rec.seconds = time.perf_counter() - t0
            records.append(rec)
            break
        if r == rounds:
            rec.seconds = time.perf_counter() - t0
            records.append(rec)
            break
        K = V.shape[0]
        ww = np.zeros(K)
        np.add.at(ww, owner, Wt.abs().sum(dim=1).cpu().numpy())
        keep = ww > 0
        rec.n_dropped = int(K - keep.sum())
        n_new = min(add, int(violating.numel()))
        over = int(keep.sum()) + n_new - budget
        if over > 0:  # retire the kept sources of least weight
            kept = np.nonzero(keep)[0]
            retire = kept[np.argsort(ww[kept], kind="stable")[:over]]
            keep[retire] = False
            rec.n_retired = int(retire.size)
        order = violating[torch.argsort(scores[violating], descending=True, stable=True)][:n_new]
        kt = torch.from_numpy(keep)
        V = torch.cat([V[kt], Vc[order]])
        q = torch.cat([q[kt], qc[order]])
        ids = torch.cat([ids[kt], torch.arange(next_id, next_id + order.numel())])
        next_id += int(order.numel())
        rec.n_added = int(order.numel())
        rec.seconds = time.perf_counter() - t0
        records.append(rec)
        if rec.n_added == 0:
            stopped = "budget"
            break
    return TemplateColumnGenerationResult(
        witnesses=wit,
        dictionary=dic,
        solution=sol,
        rounds=records,
        stopped=stopped,
        settings=settings,
        V=V,
        q=q,
        lam=lam_v,
    )
