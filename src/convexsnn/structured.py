r"""Structured and recurrent witnesses for long-memory tasks.

Random Gaussian witnesses cannot hold a symbol over many steps: with leak :math:`\beta = 0.99` a
neuron's membrane at step :math:`T` mixes the whole input history, so on FIRST-LAST-XOR at
:math:`T \ge 11` the spike dictionary stops containing the columns a linear readout needs (measured
51-69% test accuracy). The generators here produce witnesses whose neurons are *exact* temporal
primitives of the one LIF definition (:mod:`convexsnn.lif`),

.. math::

    I_t = s^{l-1}_t W_l + b_l + s^{l}_{t-1} W^{rec}_l, \qquad
    u_t = \beta m_{t-1} + I_t, \qquad s_t = \mathbb 1[u_t \ge \theta], \qquad
    m_t = u_t - \theta s_t \;\text{(or } u_t (1 - s_t)\text{)},

plus random "gate" neurons that combine them, so that the convex readout
(:mod:`convexsnn.convex`) can pick a certified optimal combination.

Every construction below is argued with three facts, valid for any leak :math:`\beta \in [0, 1]`
and either reset, for binary (0/1) inputs or spikes:

(a) *clean relay*: if :math:`m_{t-1} = 0` and :math:`I_t \in \{0, \theta\}`, then
    :math:`s_t = \mathbb 1[I_t = \theta]` and :math:`m_t = 0`; a neuron whose current only takes
    these two values is a memoryless copy of its input, at every length;
(b) *latch*: if :math:`I_t \ge 0` at every step then :math:`m_t \ge 0` (subtract reset:
    :math:`m_t = u_t - \theta \ge 0` after a spike; zero reset: :math:`m_t \in \{0, u_t\}`), so a
    neuron whose current is :math:`\ge \theta` whenever it fired at :math:`t-1` keeps firing:
    :math:`u_t = \beta m_{t-1} + I_t \ge \theta`;
(c) *veto*: if :math:`I_t \le 0` at every step from some :math:`t_0` on and
    :math:`m_{t_0 - 1} \le 0`, then :math:`m_t \le 0` and :math:`s_t = 0` for all
    :math:`t \ge t_0`: a vetoed neuron never fires again.

Weights are given in units of :math:`\theta` (``h = inhibition * theta`` is the veto strength,
default :math:`2\theta`; any :math:`h \ge \theta` works).

Motifs (the *bank*; ``c`` runs over the input channels, inputs assumed 0/1, one-hot for
``first``):

``relay[c]``
    :math:`I_t = \theta x_t[c]`. By (a) it spikes exactly when :math:`x_t[c] = 1`.
``ever[c]`` (latch)
    :math:`I_t = \theta x_t[c] + \theta s_{t-1}`. Silent (:math:`I = 0`) until channel ``c``
    first occurs, then :math:`u_t = \beta m_{t-1} + \theta (1 + x_t[c]) \ge \theta` because
    :math:`m \ge 0` (b): it spikes at every later step. Self-excitation
    :math:`\ge \theta` is what makes a latch.
``on``
    Constant current :math:`\theta` (a bias, or :math:`\theta` on every channel of a one-hot
    input): spikes at every step.
``after_first`` (spikes at every :math:`t \ge 2`)
    *dense recurrence*: :math:`I_t = \theta\,\mathrm{on}_{t-1}`.
    *diagonal recurrence* (needs :math:`\beta > 0`, a membrane that carries over): constant
    current :math:`c = \theta (2+\beta) / (2 (1+\beta))` and self-excitation :math:`\theta`;
    :math:`u_1 = c < \theta`, :math:`u_2 = (1+\beta) c = \theta (1 + \beta/2) \ge \theta`,
    then the self-excitation latches.
``first[c]`` (latch of the first symbol)
    *dense*: a winner-take-all latch pair, :math:`I_t = \theta x_t[c] + \theta s^{c}_{t-1} -
    h \sum_{c' \ne c} s^{c'}_{t-1}`. At :math:`t = 1` exactly the neuron of the first symbol fires;
    from then on it latches (as ``ever``) and vetoes the others, whose currents are
    :math:`\le \theta - h \le 0` with :math:`m_1 = 0`, so by (c) they never fire. Only the FIRST
    symbol is captured, for any length.
    *diagonal* (one layer later, since a neuron cannot see another neuron of its own layer):
    :math:`I_t = \theta\,\mathrm{relay}[c]_t - h\,\mathrm{after\_first}_t + (h + \theta) s_{t-1}`.
    At :math:`t = 1` the veto is off; later a latched neuron gets
    :math:`\theta(1 + \mathrm{relay}) \ge \theta` (self-excitation cancels the veto) and an
    unlatched one gets :math:`\le \theta - h \le 0` (never fires, by (c)).
``oneshot`` (spikes at :math:`t = 1` only)
    *dense*: constant :math:`\theta` and :math:`-h` from ``on`` (:math:`I_t = \theta - h \le 0` for
    :math:`t \ge 2`). *diagonal*: one layer later, :math:`\theta\,\mathrm{on}_t -
    h\,\mathrm{after\_first}_t`. Self-inhibition alone is **not** a one-shot neuron: after its
    spike, :math:`m` recovers towards :math:`I/(1-\beta)` and fires again after
    :math:`k \approx \log\frac{I/(1-\beta) - \theta}{I/(1-\beta) + h - I} / \log \beta` steps
    (:math:`k = 1` without leak), so the bank inhibits it from ``on`` instead, which holds for
    every length.

Gates (the last layer): a gate :math:`e \wedge \neg v_1 \wedge \dots` has weight :math:`\theta`
from one excitatory bank signal :math:`e` and :math:`-h` from its vetoes :math:`v_i`. When the
vetoes are constant over :math:`t \ge 1` (latches, ``on``) the gate is exact: vetoed, it never
fires (c); not vetoed, it is a clean relay of :math:`e` (a). For FIRST-LAST-XOR (one-hot, two
channels) the gate ``relay[b] & !first[1-a]`` spikes at step :math:`T` iff the first symbol is
``a`` and the last is ``b``, for every length; the label is the sum of the gates for
:math:`(a, b) = (0, 1)` and :math:`(1, 0)`, linear in the dictionary.
Gates with time-varying vetoes are not exact (a veto leaves a negative membrane that the leak
carries forward); they are simply other dictionary columns.

All gates over the bank (each bank signal alone, and with every set of up to ``max_vetoes``
others) are enumerated, shuffled with the seed and dealt to the last-layer neurons of all branches
(branch-major), so with ``K * n_last`` at least the number of gates every gate is present. Extra
neurons in any layer are Gaussian (the mixture): weights
:math:`\theta\,s\,G / \sqrt{n_{in}}` over all neurons of the previous layer, optionally with
Gaussian recurrence among themselves; they never feed the bank, which stays exact.

Generators: :func:`structured_witnesses` (bank + gates + Gaussian fill),
:func:`gaussian_recurrent_witnesses` (scaled Gaussian feed-forward and recurrent weights: dense,
diagonal or sparse) and :func:`mix_witnesses` (branches of several witness sets side by side).
All are seeded with a local :class:`torch.Generator`; the same seed gives bit-identical weights.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._checks import (
    check_choice,
    check_positive_float,
    check_positive_int,
    check_seed,
    dtype_name,
    renamed_kwargs,
)
from .lif import RESETS, check_leak
from .witnesses import Witnesses, resolve_widths

__all__ = [
    "MOTIFS",
    "structured_witnesses",
    "gaussian_recurrent_witnesses",
    "mix_witnesses",
    "recurrent_masks",
    "neuron_roles",
    "bank_names",
]

logger = logging.getLogger("convexsnn")

#: the motifs of the bank, in the order their neurons appear in a layer
MOTIFS = ("relay", "ever", "first", "on", "after_first", "oneshot")
_STRUCTURED_RECURRENT = ("dense", "diagonal")
_GAUSSIAN_RECURRENT = ("dense", "diagonal", "sparse")


# ---------------------------------------------------------------------- small helpers
def _check_dtype(dtype: torch.dtype) -> str:
    return dtype_name(dtype)


def _check_leak(leak: Any) -> float:
    if isinstance(leak, bool) or not isinstance(leak, (int, float, np.integer, np.floating)):
        raise TypeError(f"leak must be a real number, got {leak!r}")
    return check_leak(leak)


def _per_layer(value: float | Sequence[float], n: int, name: str, allow_zero: bool) -> list[float]:
    if isinstance(value, (list, tuple, np.ndarray)):
        vals = list(value)
        if len(vals) != n:
            raise ValueError(
                f"{name} must be a number or one value per LIF layer ({n}), got {len(vals)} values"
            )
    else:
        vals = [value] * n
    return [check_positive_float(v, name, allow_zero=allow_zero) for v in vals]


def _resolve_motifs(motifs: Sequence[str], recurrent: str) -> list[str]:
    """The requested motifs plus the helpers they depend on, in :data:`MOTIFS` order."""
    if isinstance(motifs, str):
        motifs = [motifs]
    wanted = set()
    for m in motifs:
        check_choice(m, "motifs", MOTIFS)
        wanted.add(m)
    if not wanted:
        raise ValueError("motifs must name at least one of " + ", ".join(MOTIFS))
    if "oneshot" in wanted:
        wanted.add("on")
        if recurrent == "diagonal":
            wanted.add("after_first")
    if "after_first" in wanted and recurrent == "dense":
        wanted.add("on")
    if "first" in wanted and recurrent == "diagonal":
        wanted |= {"relay", "after_first"}
    return [m for m in MOTIFS if m in wanted]


def bank_names(n_inputs: int, motifs: Sequence[str] = MOTIFS) -> list[str]:
    """Names of the bank signals available to the gates, e.g. ``relay[0]``, ``first[1]``, ``on``."""
    out = []
    for m in MOTIFS:
        if m not in motifs:
            continue
        if m in ("relay", "ever", "first"):
            out += [f"{m}[{c}]" for c in range(n_inputs)]
        else:
            out.append(m)
    return out


class _Layer:
    """Per-branch specification of one LIF layer's bank neurons (identical in every branch).

    ``ff[j]`` maps a source index of the previous layer (or input channel) to a weight,
    ``rec[j]`` a neuron index of this layer to a recurrent weight (``j`` itself for a self
    connection), ``bias[j]`` a constant current.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self.ff: list[dict[int, float]] = []
        self.rec: list[dict[int, float]] = []
        self.bias: list[float] = []

    def add(
        self,
        name: str,
        ff: dict[int, float] | None = None,
        bias: float = 0.0,
        rec: dict[int, float] | None = None,
    ) -> int:
        self.names.append(name)
        self.ff.append(dict(ff or {}))
        self.rec.append(dict(rec or {}))
        self.bias.append(float(bias))
        return len(self.names) - 1

    def index(self, name: str) -> int:
        return self.names.index(name)


def _constant(value: float, n_inputs: int, constant: str) -> tuple[dict, float]:
    """A constant current ``value``: as a bias, or as ``value`` on every input channel."""
    if constant == "bias":
        return {}, value
    return {c: value for c in range(n_inputs)}, 0.0


def _first_bank_layer(
    d: int, motifs: list[str], recurrent: str, theta: float, h: float, leak: float, constant: str
) -> _Layer:
    """Layer 1: motifs that read the input directly (all of them with dense recurrence)."""
    L = _Layer()
    if "relay" in motifs:
        for c in range(d):
            L.add(f"relay[{c}]", ff={c: theta})
    if "ever" in motifs:
        for c in range(d):
            j = len(L.names)
            L.add(f"ever[{c}]", ff={c: theta}, rec={j: theta})
    if recurrent == "dense" and "first" in motifs:
        first = [len(L.names) + c for c in range(d)]
        for c in range(d):
            rec = {first[c]: theta}
            rec.update({first[o]: -h for o in range(d) if o != c})
            L.add(f"first[{c}]", ff={c: theta}, rec=rec)
    if "on" in motifs:
        ff, b = _constant(theta, d, constant)
        L.add("on", ff=ff, bias=b)
    if "after_first" in motifs:
        j = len(L.names)
        if recurrent == "dense":
            L.add("after_first", rec={L.index("on"): theta})
        else:
            c_val = theta * (2.0 + leak) / (2.0 * (1.0 + leak))
            ff, b = _constant(c_val, d, constant)
            L.add("after_first", ff=ff, bias=b, rec={j: theta})
    if recurrent == "dense" and "oneshot" in motifs:
        ff, b = _constant(theta, d, constant)
        L.add("oneshot", ff=ff, bias=b, rec={L.index("on"): -h})
    return L


def _next_bank_layer(
    prev: _Layer,
    d: int,
    motifs: list[str],
    recurrent: str,
    theta: float,
    h: float,
    build_late: bool,
) -> _Layer:
    """A later layer: exact copies (weight ``theta``) of the previous bank, plus, with diagonal
    recurrence and ``build_late``, the ``first`` latches and ``oneshot`` built from layer 1."""
    L = _Layer()
    copies = {name: i for i, name in enumerate(prev.names)}
    late = build_late and recurrent == "diagonal"
    for name in bank_names(d, motifs):
        if name in copies:
            L.add(name, ff={copies[name]: theta})
        elif late and name.startswith("first["):
            c = int(name[6:-1])
            j = len(L.names)
            L.add(
                name,
                ff={copies[f"relay[{c}]"]: theta, copies["after_first"]: -h},
                rec={j: h + theta},
            )
        elif late and name == "oneshot":
            L.add(name, ff={copies["on"]: theta, copies["after_first"]: -h})
    return L


def _enumerate_gates(n_bank: int, max_vetoes: int) -> list[tuple[int, tuple[int, ...]]]:
    """All (excitatory signal, vetoes) pairs with up to ``max_vetoes`` vetoes, in a fixed order."""
    gates = []
    for k in range(max_vetoes + 1):
        for e in range(n_bank):
            others = [v for v in range(n_bank) if v != e]
            for vetoes in itertools.combinations(others, k):
                gates.append((e, vetoes))
    return gates


def _gate_name(names: list[str], e: int, vetoes: Sequence[int]) -> str:
    return " & ".join([names[e]] + [f"!{names[v]}" for v in vetoes])


# ---------------------------------------------------------------------- structured witnesses
@renamed_kwargs(beta="leak")
def structured_witnesses(
    n_inputs: int,
    *,
    n_branches: int = 1,
    hidden_widths: Sequence[int] | None = None,
    depth: int | None = None,
    p_rec: int | None = None,
    p_last: int | None = None,
    recurrent: str = "dense",
    motifs: Sequence[str] = MOTIFS,
    inhibition: float = 2.0,
    max_vetoes: int = 1,
    n_gates: int | None = None,
    constant: str = "bias",
    fill_scale: float | Sequence[float] = 1.0,
    fill_recurrent_scale: float = 0.0,
    seed: int = 0,
    leak: float = 0.99,
    theta: float = 1.0,
    reset: str = "subtract",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Witnesses:
    r"""Witnesses built from exact temporal motifs, gates over them, and Gaussian fill neurons.

    Every branch holds the same *bank* of motif neurons (see the module docstring for the LIF
    reasoning): layer 1 reads the input; every later layer but the last copies the bank exactly
    (weight :math:`\theta` from the same signal); with ``recurrent="diagonal"`` the ``first``
    latches and ``oneshot`` appear in layer 2, built from layer-1 signals. The last LIF layer holds
    *gates* :math:`e \wedge \neg v_1 \wedge \dots` over the bank of the layer below (weight
    :math:`\theta` from :math:`e`, :math:`-h` from each veto, :math:`h` = ``inhibition`` times
    :math:`\theta`), enumerated, shuffled with ``seed`` and dealt to the ``K * n_last`` last-layer
    neurons branch by branch. Neurons beyond the bank (inner layers) or beyond ``n_gates`` (last
    layer) are Gaussian fill neurons: :math:`W = \theta\, s_l\, G / \sqrt{n_{l-1}}` over the whole
    previous layer, :math:`G \sim N(0, 1)`, plus, with ``fill_recurrent_scale`` :math:`\rho > 0`,
    recurrent weights :math:`\theta \rho G' / \sqrt{n_{fill}}` among the fill neurons of a layer
    (dense) or :math:`\theta \rho g` on their diagonal (diagonal). Fill neurons never feed bank
    neurons.

    Parameters
    ----------
    n_inputs : int
        Input channels ``d`` (binary inputs; one-hot for the ``first`` latches).
    n_branches, hidden_widths, depth, p_rec, p_last
        Shape, as for :func:`convexsnn.witnesses.gaussian_witnesses`. Every inner layer must hold
        the bank (``3 d + 3`` neurons with all motifs); the last layer may have any width.
    recurrent : {"dense", "diagonal"}
        ``"dense"`` (cross-neuron recurrence, sparse in practice: the bank uses a handful of
        connections; see :func:`recurrent_masks`) works for any leak and puts the whole bank in
        layer 1, so ``depth = 3`` suffices. ``"diagonal"`` (self-connections only) needs
        :math:`\beta \ge 0.01` (the ``after_first`` detector integrates a constant current) and
        ``depth >= 4`` to have the ``first`` latches below the gates.
    motifs : sequence of str
        Subset of :data:`MOTIFS`; helpers a motif needs are added.
    inhibition : float
        Veto strength :math:`h / \theta` (>= 1).
    max_vetoes : int
        Gates have up to this many vetoes (0: gates are plain copies of bank signals).
    n_gates : int, optional
        How many last-layer neurons (over all branches) are gates; default all enumerated gates,
        capped at ``K * n_last``. The remaining last-layer neurons are Gaussian fill.
    constant : {"bias", "inputs"}
        How a constant current is made: a bias, or the same weight on every input channel (valid
        when each step's input sums to 1, e.g. one-hot; then the witnesses have no biases).
    fill_scale : float or list of float
        :math:`s_l` of the Gaussian fill neurons, in units of :math:`\theta`.
    fill_recurrent_scale : float
        :math:`\rho` of the fill neurons' recurrent weights (0: none).
    seed : int
        Seed of the local generator (gate order, fill weights).
    leak, theta, reset
        LIF parameters.
    dtype, device
        Of the returned tensors (``float64`` by default, like the Gaussian witnesses).

    Returns
    -------
    Witnesses
        ``description`` holds ``kind="structured"``, the seed, all options, the bank of every
        layer, the number of fill neurons, the gate count and each gate's name with its (branch,
        neuron) position; :func:`neuron_roles` expands it into one name per neuron.
    """
    d = check_positive_int(n_inputs, "n_inputs")
    K = check_positive_int(n_branches, "n_branches")
    widths = resolve_widths(
        n_branches=K, hidden_widths=hidden_widths, depth=depth, p_rec=p_rec, p_last=p_last
    )
    check_choice(recurrent, "recurrent", _STRUCTURED_RECURRENT)
    check_choice(reset, "reset", RESETS)
    check_choice(constant, "constant", ("bias", "inputs"))
    leak = _check_leak(leak)
    theta = check_positive_float(theta, "theta")
    inhibition = check_positive_float(inhibition, "inhibition")
    if inhibition < 1.0:
        raise ValueError(f"inhibition must be >= 1 (a veto of at least theta), got {inhibition}")
    max_vetoes = check_positive_int(max_vetoes, "max_vetoes", allow_zero=True)
    seed = check_seed(seed)
    dtype_name = _check_dtype(dtype)
    fill_scales = _per_layer(fill_scale, len(widths), "fill_scale", allow_zero=True)
    rho = check_positive_float(fill_recurrent_scale, "fill_recurrent_scale", allow_zero=True)
    motifs = _resolve_motifs(motifs, recurrent)
    if recurrent == "diagonal" and leak < 0.01:
        raise ValueError(
            "recurrent='diagonal' builds its t >= 2 detector from the leak and needs "
            f"leak >= 0.01 (got {leak}); use recurrent='dense'"
        )
    h = inhibition * theta
    n_lif = len(widths)
    if recurrent == "diagonal" and n_lif < 3 and ("first" in motifs or "oneshot" in motifs):
        logger.warning(
            "structured_witnesses: with diagonal recurrence the first-symbol latches "
            "and one-shot neurons live in layer 2, so only %d LIF layer(s) leave them "
            "out of the gates; use depth >= 4 or recurrent='dense'",
            n_lif,
        )

    # ---- banks (identical in every branch); the last layer holds gates instead
    banks: list[_Layer] = []
    if n_lif >= 2:
        banks.append(_first_bank_layer(d, motifs, recurrent, theta, h, leak, constant))
        for l in range(1, n_lif - 1):
            banks.append(
                _next_bank_layer(banks[-1], d, motifs, recurrent, theta, h, build_late=(l == 1))
            )
        for l, bank in enumerate(banks):
            if len(bank.names) > widths[l]:
                raise ValueError(
                    f"layer {l} needs at least {len(bank.names)} neurons per branch for the bank "
                    f"{bank.names}, but hidden_widths[{l}] = {widths[l]}"
                )
        src_names = banks[-1].names
    else:
        # a single LIF layer: gates over the input channels themselves
        src_names = [f"x[{c}]" for c in range(d)]

    gen = torch.Generator().manual_seed(seed)
    sizes = [d] + widths
    W = [np.zeros((K, sizes[l], sizes[l + 1])) for l in range(n_lif)]
    B = [np.zeros((K, widths[l])) for l in range(n_lif)]
    diag = recurrent == "diagonal"
    R = [
        np.zeros((K, widths[l])) if diag else np.zeros((K, widths[l], widths[l]))
        for l in range(n_lif)
    ]
    uses_rec = [False] * n_lif

    # bank weights
    for l, bank in enumerate(banks):
        for j in range(len(bank.names)):
            for i, w in bank.ff[j].items():
                W[l][:, i, j] = w
            B[l][:, j] = bank.bias[j]
            for i, w in bank.rec[j].items():
                uses_rec[l] = True
                if diag:
                    if i != j:
                        raise AssertionError("diagonal bank with a cross-neuron connection")
                    R[l][:, j] = w
                else:
                    R[l][:, i, j] = w

    # gates of the last layer: enumerate, shuffle, deal branch-major
    n_last = widths[-1]
    all_gates = _enumerate_gates(len(src_names), max_vetoes)
    perm = torch.randperm(len(all_gates), generator=gen).tolist()
    total = K * n_last
    if n_gates is None:
        n_gates = min(total, len(all_gates))
    else:
        n_gates = check_positive_int(n_gates, "n_gates", allow_zero=True)
        if n_gates > total:
            raise ValueError(f"n_gates={n_gates} exceeds the {total} last-layer neurons")
    gate_list = []
    for g in range(n_gates):
        e, vetoes = all_gates[perm[g % len(all_gates)]]
        k, j = divmod(g, n_last)
        W[-1][k, e, j] = theta
        for v in vetoes:
            W[-1][k, v, j] = -h
        gate_list.append([k, j, _gate_name(src_names, e, vetoes)])
    if n_gates < len(all_gates):
        logger.info(
            "structured_witnesses: %d of %d enumerated gates fit in %d last-layer neurons",
            n_gates,
            len(all_gates),
            total,
        )

    # Gaussian fill: inner layers beyond the bank, last layer beyond the gates (per branch a
    # prefix of gate neurons, the rest fill). Drawn layer by layer in a fixed order.
    n_fill = []
    last_fill_mask = np.ones((K, n_last), dtype=bool)
    for g in range(n_gates):
        k, j = divmod(g, n_last)
        last_fill_mask[k, j] = False
    for l in range(n_lif):
        n_in = sizes[l]
        if l < n_lif - 1:
            start = len(banks[l].names)
            fill_mask = np.zeros((K, widths[l]), dtype=bool)
            fill_mask[:, start:] = True
        else:
            fill_mask = last_fill_mask
        n_fill.append(int(fill_mask.sum()))
        if not fill_mask.any():
            continue
        g_ff = torch.randn(K, n_in, widths[l], generator=gen, dtype=torch.float64).numpy()
        g_ff = g_ff * (theta * fill_scales[l] / math.sqrt(n_in))
        mask3 = np.broadcast_to(fill_mask[:, None, :], W[l].shape)
        W[l] = np.where(mask3, g_ff, W[l])
        if rho > 0:
            uses_rec[l] = True
            if diag:
                g_r = torch.randn(K, widths[l], generator=gen, dtype=torch.float64).numpy()
                R[l] = np.where(fill_mask, theta * rho * g_r, R[l])
            else:
                g_r = torch.randn(
                    K, widths[l], widths[l], generator=gen, dtype=torch.float64
                ).numpy()
                per_branch = np.maximum(fill_mask.sum(1), 1)[:, None, None]
                both = fill_mask[:, :, None] & fill_mask[:, None, :]
                R[l] = np.where(both, theta * rho * g_r / np.sqrt(per_branch), R[l])

    def to_t(a):
        t = torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
        return t if device is None else t.to(device)

    weights = [to_t(w) for w in W]
    biases = [to_t(b) if np.any(b != 0) else None for b in B]
    rec = [to_t(r) if uses_rec[l] else None for l, r in enumerate(R)]
    desc = {
        "kind": "structured",
        "seed": seed,
        "options": {
            "n_inputs": d,
            "n_branches": K,
            "hidden_widths": widths,
            "recurrent": recurrent,
            "motifs": motifs,
            "inhibition": inhibition,
            "max_vetoes": max_vetoes,
            "n_gates": n_gates,
            "constant": constant,
            "fill_scale": fill_scales,
            "fill_recurrent_scale": rho,
            "dtype": dtype_name,
        },
        "banks": [b.names for b in banks],
        "gate_sources": src_names,
        "n_enumerated_gates": len(all_gates),
        "n_fill": n_fill,
        "gates": gate_list,
        "counts": {
            "bank_per_branch": [len(b.names) for b in banks],
            "gates": n_gates,
            "fill": int(sum(n_fill)),
            "last_layer_neurons": total,
        },
    }
    w = Witnesses(
        weights,
        biases if any(b is not None for b in biases) else None,
        rec if any(r is not None for r in rec) else None,
        leak,
        theta,
        reset,
        desc,
    )
    logger.debug("structured_witnesses: %r, %d gates, %d fill neurons", w, n_gates, sum(n_fill))
    return w


def neuron_roles(witnesses: Witnesses) -> list[list[list[str]]]:
    """Role names ``roles[l][k][j]`` of every neuron of a :func:`structured_witnesses` set.

    Bank neurons carry their motif name (``first[0]``, ...), gates their formula
    (``relay[1] & !first[0]``), the rest ``"gaussian"``. Also works for a :func:`mix_witnesses`
    set (parts that are not structured give ``"<kind>"`` names).
    """
    desc = witnesses.description
    widths = witnesses.hidden_widths
    K = witnesses.n_branches
    if desc.get("kind") == "mixture":
        out = [[[] for _ in range(K)] for _ in widths]
        for part in desc["parts"]:
            k0, k1 = part["branches"]
            sub = part["description"]
            if sub.get("kind") == "structured":
                fake = _RoleView(sub, widths, k1 - k0)
                roles = neuron_roles(fake)  # type: ignore[arg-type]
            else:
                roles = [[[str(sub.get("kind"))] * w for _ in range(k1 - k0)] for w in widths]
            for l in range(len(widths)):
                for k in range(k0, k1):
                    out[l][k] = roles[l][k - k0]
        return out
    if desc.get("kind") != "structured":
        raise ValueError(f"neuron_roles needs structured witnesses, got kind {desc.get('kind')!r}")
    out = []
    for l, w in enumerate(widths):
        if l < len(widths) - 1:
            bank = desc["banks"][l]
            out.append([list(bank) + ["gaussian"] * (w - len(bank)) for _ in range(K)])
        else:
            last = [["gaussian"] * w for _ in range(K)]
            for k, j, name in desc["gates"]:
                last[k][j] = name
            out.append(last)
    return out


class _RoleView:
    """Minimal stand-in with the attributes :func:`neuron_roles` reads."""

    def __init__(self, description: dict, widths: list[int], K: int):
        self.description = description
        self.hidden_widths = widths
        self.n_branches = K


# ---------------------------------------------------------------------- Gaussian recurrent
@renamed_kwargs(beta="leak")
def gaussian_recurrent_witnesses(
    n_inputs: int,
    *,
    n_branches: int = 1,
    hidden_widths: Sequence[int] | None = None,
    depth: int | None = None,
    p_rec: int | None = None,
    p_last: int | None = None,
    scale: float | Sequence[float] = 1.0,
    recurrent: str = "dense",
    recurrent_scale: float | Sequence[float] = 0.5,
    density: float = 0.1,
    self_excitation: float = 0.0,
    seed: int = 0,
    leak: float = 0.99,
    theta: float = 1.0,
    reset: str = "subtract",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Witnesses:
    r"""Gaussian witnesses with Gaussian recurrent weights, scaled relative to :math:`\theta`.

    .. math::

        W_l = \theta\, s_l\, G_l / \sqrt{n_{l-1}}, \qquad
        W^{rec}_l = \theta \rho_l \begin{cases}
            G'_l / \sqrt{n_l} & \text{dense} \\
            (G'_l \odot M_l) / \sqrt{p\, n_l} & \text{sparse}, \; M_l \sim \mathrm{Bernoulli}(p) \\
            g_l & \text{diagonal}
        \end{cases} \; + \; \theta a\, I

    with standard normal :math:`G, G', g`, so a dense/sparse recurrent matrix has spectral radius
    about :math:`\theta\rho` (circular law) and ``self_excitation`` :math:`a` adds :math:`\theta a`
    on the diagonal (:math:`a \ge 1` turns every neuron into a latch once it fires).
    A sparse set is stored as dense ``(K, n, n)`` tensors with zeros off the mask (what
    :func:`convexsnn.lif.simulate` runs); :func:`recurrent_masks` recovers the masks for a
    ``ParallelSNN(recurrent="sparse")``.

    Draw order (fixed, for bit-reproducibility): per layer :math:`G_l`, then :math:`G'_l` (or
    :math:`g_l`), then :math:`M_l`.
    """
    d = check_positive_int(n_inputs, "n_inputs")
    K = check_positive_int(n_branches, "n_branches")
    widths = resolve_widths(
        n_branches=K, hidden_widths=hidden_widths, depth=depth, p_rec=p_rec, p_last=p_last
    )
    check_choice(recurrent, "recurrent", _GAUSSIAN_RECURRENT)
    check_choice(reset, "reset", RESETS)
    leak = _check_leak(leak)
    theta = check_positive_float(theta, "theta")
    scales = _per_layer(scale, len(widths), "scale", allow_zero=False)
    rhos = _per_layer(recurrent_scale, len(widths), "recurrent_scale", allow_zero=True)
    density = check_positive_float(density, "density")
    if density > 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    a = check_positive_float(self_excitation, "self_excitation", allow_zero=True)
    seed = check_seed(seed)
    dtype_name = _check_dtype(dtype)
    gen = torch.Generator().manual_seed(seed)
    sizes = [d] + widths
    weights, rec, n_conn = [], [], []
    for l, n in enumerate(widths):
        w = torch.randn(K, sizes[l], n, generator=gen, dtype=torch.float64)
        weights.append(w * (theta * scales[l] / math.sqrt(sizes[l])))
        if recurrent == "diagonal":
            r = torch.randn(K, n, generator=gen, dtype=torch.float64) * (theta * rhos[l])
            r = r + theta * a
            n_conn.append(K * n)
        else:
            g = torch.randn(K, n, n, generator=gen, dtype=torch.float64)
            if recurrent == "sparse":
                m = torch.rand(K, n, n, generator=gen, dtype=torch.float64) < density
                r = g * m * (theta * rhos[l] / math.sqrt(density * n))
                n_conn.append(int(m.sum()))
            else:
                r = g * (theta * rhos[l] / math.sqrt(n))
                n_conn.append(K * n * n)
            if a:
                r = r + theta * a * torch.eye(n, dtype=torch.float64)
        rec.append(r)
    cast = lambda t: t.to(dtype) if device is None else t.to(dtype).to(device)
    desc = {
        "kind": "gaussian_recurrent",
        "seed": seed,
        "options": {
            "n_inputs": d,
            "n_branches": K,
            "hidden_widths": widths,
            "scale": scales,
            "recurrent": recurrent,
            "recurrent_scale": rhos,
            "density": density if recurrent == "sparse" else None,
            "self_excitation": a,
            "dtype": dtype_name,
        },
        "counts": {"recurrent_connections": n_conn, "last_layer_neurons": K * widths[-1]},
    }
    return Witnesses(
        [cast(w) for w in weights], None, [cast(r) for r in rec], leak, theta, reset, desc
    )


# ---------------------------------------------------------------------- mixtures
def mix_witnesses(parts: Sequence[Witnesses]) -> Witnesses:
    r"""Branches of several witness sets side by side (one set with :math:`\sum K_i` branches).

    All parts need the same input size, widths, :math:`\beta`, :math:`\theta`, reset, dtype and
    device. Missing biases become zeros; recurrence is diagonal if every part with recurrence is
    diagonal, else dense (a diagonal part is embedded as a diagonal matrix, and a part without
    recurrence gets zeros). Adding exact zeros changes no spike, so every branch simulates exactly
    as it did in its own set. Branches ``description["parts"][i]["branches"]`` = ``[start, stop)``
    come from part ``i``, whose description is kept.
    """
    parts = list(parts)
    if not parts or not all(isinstance(p, Witnesses) for p in parts):
        raise TypeError("mix_witnesses needs a non-empty sequence of Witnesses")
    p0 = parts[0]
    for i, p in enumerate(parts[1:], 1):
        for attr in ("n_inputs", "hidden_widths", "leak", "theta", "reset", "dtype", "device"):
            if getattr(p, attr) != getattr(p0, attr):
                raise ValueError(
                    f"parts[{i}].{attr} = {getattr(p, attr)} differs from "
                    f"parts[0].{attr} = {getattr(p0, attr)}"
                )
    widths = p0.hidden_widths
    n_layers = len(widths)
    kinds = {p.recurrent_kind for p in parts} - {None}
    rec_kind = None if not kinds else ("diagonal" if kinds == {"diagonal"} else "dense")

    def layer_bias(p, l):
        if p.biases is not None and p.biases[l] is not None:
            return p.biases[l]
        return torch.zeros(p.n_branches, widths[l], dtype=p.dtype, device=p.device)

    def layer_rec(p, l):
        r = None if p.recurrent is None else p.recurrent[l]
        n = widths[l]
        if r is None:
            shape = (p.n_branches, n) if rec_kind == "diagonal" else (p.n_branches, n, n)
            return torch.zeros(shape, dtype=p.dtype, device=p.device)
        if rec_kind == "dense" and r.ndim == 2:
            return torch.diag_embed(r)
        return r

    weights = [torch.cat([p.weights[l] for p in parts], 0) for l in range(n_layers)]
    any_bias = any(p.biases is not None for p in parts)
    biases = (
        [torch.cat([layer_bias(p, l) for p in parts], 0) for l in range(n_layers)]
        if any_bias
        else None
    )
    if biases is not None:
        biases = [b if bool((b != 0).any()) else None for b in biases]
    recs = None
    if rec_kind is not None:
        recs = []
        for l in range(n_layers):
            if all(p.recurrent is None or p.recurrent[l] is None for p in parts):
                recs.append(None)
            else:
                recs.append(torch.cat([layer_rec(p, l) for p in parts], 0))
    info, k0 = [], 0
    for p in parts:
        info.append(
            {
                "branches": [k0, k0 + p.n_branches],
                "kind": p.description.get("kind"),
                "seed": p.description.get("seed"),
                "description": p.description,
            }
        )
        k0 += p.n_branches
    desc = {
        "kind": "mixture",
        "seed": None,
        "parts": info,
        "counts": {"branches": k0, "last_layer_neurons": k0 * widths[-1]},
    }
    return Witnesses(weights, biases, recs, p0.leak, p0.theta, p0.reset, desc)


def recurrent_masks(witnesses: Witnesses) -> list[torch.Tensor] | None:
    """0/1 masks ``(K, n_l, n_l)`` of the non-zero recurrent weights (dense recurrence only).

    Use them with ``ParallelSNN(recurrent="sparse")`` and
    :meth:`~convexsnn.network.ParallelSNN.set_recurrent_masks` to keep SG fine-tuning on the
    witnesses' connections. Layers without recurrence get all-zero masks.
    """
    if witnesses.recurrent is None:
        return None
    if witnesses.recurrent_kind != "dense":
        raise ValueError("recurrent_masks needs dense (K, n, n) recurrent weights")
    out = []
    for l, n in enumerate(witnesses.hidden_widths):
        r = witnesses.recurrent[l]
        if r is None:
            out.append(torch.zeros(witnesses.n_branches, n, n, dtype=witnesses.dtype))
        else:
            out.append((r != 0).to(witnesses.dtype))
    return out
