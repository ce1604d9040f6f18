r"""Recurrent cascade witnesses: a recurrent LIF layer grown one neuron at a time.

Window neurons over delay lines (:mod:`convexsnn.delay`) see a bounded past; a language whose
label depends on a state carried over the whole string (a random DFA) needs neurons that feed
their spikes back. A *recurrent cascade* is one recurrent LIF layer whose neurons
:math:`h_1, \dots, h_m` (the witnesses, in the order they were added) each read, at step
:math:`t`, the features

.. math::

    z^{(j)}_t = \big(x_t,\; x_{t-1},\; s^{h_1}_{t-1}, \dots, s^{h_{j-1}}_{t-1},\;
    s^{h_j}_{t-1}\big)

(the input now and one step back, the previous spikes of the earlier witnesses, and its own
previous spike), with weights :math:`c_j = (a_j, r_j, v_{1j}, \dots, v_{j-1,j}, v_{jj})`, and
fire exactly when

.. math::

    s^{h_j}_t = \mathbb 1\big[\, c_j \cdot z^{(j)}_t \ge \theta \,\big]
    \qquad (t = 1..T,\; s_0 = 0,\; x_0 = 0).

A witness never reads a later one, so adding a neuron leaves the spikes (the dictionary columns)
of the kept ones unchanged, which is what column generation needs; the layer is recurrent
through the self weights and the reads of earlier neurons (a cascade of automata in the sense of
Krohn and Rhodes). Inputs are binary (one-hot symbols).

The real network (one LIF definition, :mod:`convexsnn.lif`, subtract reset). Layer 1 holds
``d`` input relays :math:`\rho^0` (feed-forward weight :math:`\theta` on their channel, so
:math:`s^{\rho^0}_t = x_t`), ``d`` relays :math:`\rho^1` of those (:math:`s^{\rho^1}_t =
x_{t-1}`), and for every witness :math:`h_j` the neuron itself and one relay :math:`h'_j`
(:math:`s^{h'_j}_t = s^{h_j}_{t-1}`); relays are exact (the argument of :mod:`convexsnn.delay`).
With :math:`\alpha_t = c_j \cdot z^{(j)}_t` the wanted membrane, the witness gets the
*leak-compensated* current

.. math::

    I_t = \alpha_t - \beta\, \alpha_{t-1} + \beta\,\theta\, s^{h_j}_{t-1},

realised by the weights :math:`a` (feed-forward), :math:`r - \beta a` from :math:`\rho^0`,
:math:`-\beta r` from :math:`\rho^1`, :math:`v_{ij}` from :math:`h_i` and :math:`-\beta v_{ij}`
from :math:`h'_i`, :math:`v_{jj} + \beta\theta` from itself and :math:`-\beta v_{jj}` from
:math:`h'_j`. Then :math:`u_t = \beta m_{t-1} + I_t = \alpha_t` for every :math:`t` by induction
(:math:`m_{t-1} = \alpha_{t-1} - \theta s_{t-1}` under the subtract reset), whatever the leak:
each witness is a threshold unit of its features at every step. Layer 2 relays the witnesses
(feed-forward weight :math:`\theta` from :math:`h_j`, same step), so the last-step readout is
:math:`s^{h_j}_T`, one column per witness; depth 3 counting the output.

Exactness. Weights are kept on the grid :math:`2^{-16}` (:func:`quantize`), and the leak and
threshold must be dyadic (:math:`256\beta` and :math:`2^{16}\theta` integers, e.g. leak 1.0 or
0.9921875): then every current, membrane and product above is an exact float64 number, so
:math:`u_t = \alpha_t` holds *in floating point*, independent of the order in which the network
sums its inputs, and the spikes computed by :func:`cascade_spikes` (the pricing) equal those of
the simulated network bit for bit (docs/method.md, "Recurrent cascade witnesses").

A threshold unit cannot compute the XOR of its own previous spike and its input, so a cascade of
single units has no toggle (no group component). *Counter modules* (:func:`counter_modules`) add
them: :math:`2k` neurons appended together that read each other (the only entries of ``V`` below
the diagonal) and count threshold events modulo :math:`k`; the same compensation and grid make
them exact.

*Automaton modules* (:func:`automaton_modules`) generalise them to any transition table: a
:math:`q`-state automaton :math:`\delta: \{0..q-1\} \times \{0..d-1\} \to \{0..q-1\}` on the
one-hot symbols is :math:`q d` neurons in state-by-symbol code, exact at any length; column
generation searches the tables (:func:`automaton_cells` prices one without simulating neurons).
"""

from __future__ import annotations

import logging
import math

import torch

from .witnesses import Witnesses

__all__ = [
    "GRID",
    "automaton_cells",
    "automaton_modules",
    "cascade_features",
    "cascade_params",
    "cascade_spikes",
    "candidate_spikes",
    "check_dyadic_lif",
    "counter_modules",
    "extend_module",
    "module_spikes",
    "extend_cascade",
    "quantize",
    "read_closure",
    "recurrent_cascade_witnesses",
    "restrict_cascade",
    "sparse_cascade_candidates",
]

logger = logging.getLogger("convexsnn")

#: weights are multiples of GRID (exact sums of binary-weighted terms in float64)
GRID = 2.0**-16
_MAX_WEIGHT = 2.0**10


def check_dyadic_lif(leak: float, theta: float, reset: str) -> None:
    """A one-line ``ValueError`` unless the leak is k/256, the threshold a multiple of
    :data:`GRID` and the reset ``"subtract"`` (the conditions of exact cascade spikes)."""
    if reset != "subtract":
        raise ValueError(
            "recurrent cascade witnesses need reset='subtract' (the leak compensation is exact "
            f"only then), got {reset!r}"
        )
    if float(leak) * 256 != round(float(leak) * 256):
        raise ValueError(
            f"recurrent cascade witnesses need a dyadic leak k/256 (e.g. 1.0 or 0.9921875) so "
            f"their spikes are exact in float64, got {leak}"
        )
    if float(theta) / GRID != round(float(theta) / GRID) or not 0 < theta <= _MAX_WEIGHT:
        raise ValueError(f"recurrent cascade witnesses need theta a multiple of 2^-16, got {theta}")


def quantize(C: torch.Tensor) -> torch.Tensor:
    """``C`` rounded to the grid :data:`GRID` and clipped to :math:`\\pm 2^{10}` (float64)."""
    C = torch.as_tensor(C, dtype=torch.float64)
    return (torch.round(C / GRID) * GRID).clamp(-_MAX_WEIGHT, _MAX_WEIGHT)


def _check_AV(A: torch.Tensor, V: torch.Tensor) -> tuple[int, int]:
    if A.ndim != 2 or A.shape[0] % 2:
        raise ValueError(f"A must have shape (2 d, m), got {tuple(A.shape)}")
    m = A.shape[1]
    if tuple(V.shape) != (m, m):
        raise ValueError(f"V must have shape ({m}, {m}), got {tuple(V.shape)}")
    if not bool((quantize(A) == A).all() and (quantize(V) == V).all()):
        raise ValueError("A and V must lie on the grid 2^-16 within +-2^10 (use quantize)")
    return A.shape[0] // 2, m


def recurrent_cascade_witnesses(
    A: torch.Tensor,
    V: torch.Tensor,
    *,
    leak: float = 1.0,
    theta: float = 1.0,
    reset: str = "subtract",
    description: dict | None = None,
) -> Witnesses:
    r"""The two-layer network of a recurrent cascade (module docstring).

    Parameters
    ----------
    A : Tensor ``(2 d, m)``
        Rows ``0..d-1``: weights :math:`a` on :math:`x_t`; rows ``d..2d-1``: :math:`r` on
        :math:`x_{t-1}`.
    V : Tensor ``(m, m)``
        ``V[i, j]`` is the weight of :math:`s^{h_i}_{t-1}` in witness ``j``, ``V[j, j]`` its own
        previous spike. Column generation keeps it upper triangular except inside a counter
        module (:func:`counter_modules`), whose neurons read each other.

    Returns
    -------
    Witnesses
        One branch; layer 1 has ``2 d + 2 m`` neurons (``rho0``, ``rho1``, then ``h_j, h'_j``
        at ``2 d + 2 j``, ``2 d + 2 j + 1``) with dense recurrent weights; layer 2 relays the
        ``m`` witnesses. ``description["kind"] == "recurrent_cascade"``.
    """
    check_dyadic_lif(leak, theta, reset)
    A = torch.as_tensor(A, dtype=torch.float64)
    V = torch.as_tensor(V, dtype=torch.float64)
    d, m = _check_AV(A, V)
    if m == 0:
        raise ValueError("a recurrent cascade needs at least one witness")
    b, th = float(leak), float(theta)
    N = 2 * d + 2 * m
    h = 2 * d + 2 * torch.arange(m)
    W1 = torch.zeros(d, N, dtype=torch.float64)
    W1[torch.arange(d), torch.arange(d)] = th  # rho0: x_t
    W1[:, h] = A[:d]
    R = torch.zeros(N, N, dtype=torch.float64)
    R[torch.arange(d), d + torch.arange(d)] = th  # rho1: x_{t-1}
    R[:d, h] = A[d:] - b * A[:d]
    R[d : 2 * d, h] = -b * A[d:]
    R[h[:, None], h[None, :]] = V + torch.diag(torch.full((m,), b * th, dtype=torch.float64))
    R[(h + 1)[:, None], h[None, :]] = -b * V
    R[h, h + 1] = th  # h'_j: h_j one step back
    W2 = torch.zeros(N, m, dtype=torch.float64)
    W2[h, torch.arange(m)] = th
    desc = {
        "kind": "recurrent_cascade",
        "seed": None,
        "n_witnesses": m,
        "n_inputs": d,
        "layout": "layer 1: rho0 (d), rho1 (d), then h_j, h'_j at 2d + 2j, 2d + 2j + 1; "
        "layer 2: h_j relayed",
    }
    if description:
        desc.update(description)
    return Witnesses([W1[None], W2[None]], None, [R[None], None], b, th, reset, desc)


def cascade_features(X: torch.Tensor, H: torch.Tensor | None) -> torch.Tensor:
    r"""``(n, T, 2 d + m)`` features :math:`(x_t, x_{t-1}, s^{h}_{t-1})` read by a new witness
    (``H`` ``(n, T, m)``: the kept witnesses' spikes)."""
    X = torch.as_tensor(X, dtype=torch.float64)
    prev = torch.zeros_like(X)
    prev[:, 1:] = X[:, :-1]
    parts = [X, prev]
    if H is not None and H.shape[2]:
        hp = torch.zeros_like(H)
        hp[:, 1:] = H[:, :-1]
        parts.append(hp)
    return torch.cat(parts, dim=2)


def candidate_spikes(C: torch.Tensor, Z: torch.Tensor, theta: float) -> torch.Tensor:
    r"""Spikes ``(n, T, K)`` of ``K`` new witnesses ``C`` ``((F + 1), K)`` on features ``Z``
    ``(n, T, F)``: :math:`s_t = \mathbb 1[Z_t C_{:F} + C_F s_{t-1} \ge \theta]` (the last row
    is the self weight). Exact for binary ``Z`` and ``C`` on the grid (module docstring)."""
    F = Z.shape[2]
    if C.ndim != 2 or C.shape[0] != F + 1:
        raise ValueError(f"C must have shape ({F + 1}, K), got {tuple(C.shape)}")
    n, T = Z.shape[:2]
    alpha = (Z.reshape(n * T, F) @ C[:F]).reshape(n, T, -1)
    own = C[F]
    s = torch.zeros(n, T, C.shape[1], dtype=torch.float64)
    prev = torch.zeros(n, C.shape[1], dtype=torch.float64)
    for t in range(T):
        prev = (alpha[:, t] + own * prev >= theta).to(torch.float64)
        s[:, t] = prev
    return s


def cascade_spikes(A: torch.Tensor, V: torch.Tensor, X: torch.Tensor, theta: float) -> torch.Tensor:
    r"""Spikes ``(n, T, m)`` of the witnesses of a cascade on binary inputs ``X``:
    :math:`s_t = \mathbb 1[x_t a + x_{t-1} r + s_{t-1} V \ge \theta]` (module docstring)."""
    X = torch.as_tensor(X, dtype=torch.float64)
    d = X.shape[2]
    n, T = X.shape[:2]
    m = A.shape[1]
    base = cascade_features(X, None).reshape(n * T, 2 * d) @ A
    base = base.reshape(n, T, m)
    s = torch.zeros(n, T, m, dtype=torch.float64)
    prev = torch.zeros(n, m, dtype=torch.float64)
    for t in range(T):
        prev = (base[:, t] + prev @ V >= theta).to(torch.float64)
        s[:, t] = prev
    return s


def cascade_params(A: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """``(2 d + m + 1, m)``: the kept witnesses in the coordinates of a new candidate (reads of
    earlier witnesses, zero for later ones, self weight last), e.g. to mutate them."""
    d2, m = A.shape
    P = torch.zeros(d2 + m + 1, m, dtype=torch.float64)
    P[:d2] = A
    P[d2 : d2 + m] = torch.triu(V, 1)
    P[-1] = torch.diagonal(V)
    return P


def extend_cascade(
    A: torch.Tensor, V: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cascade with new witnesses ``C`` ``((2 d + m + 1), k)`` appended (each reads the
    ``m`` kept ones and itself; the new ones do not read each other)."""
    d2, m = A.shape
    k = C.shape[1]
    C = quantize(C)
    A2 = torch.cat([A, C[:d2]], dim=1)
    V2 = torch.zeros(m + k, m + k, dtype=torch.float64)
    V2[:m, :m] = V
    V2[:m, m:] = C[d2 : d2 + m]
    V2[torch.arange(m, m + k), torch.arange(m, m + k)] = C[-1]
    return A2, V2


def read_closure(V: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``keep`` (bool ``(m,)``) plus every neuron read, directly or not, by a kept one."""
    keep = keep.clone()
    R = (V != 0).to(torch.float64)
    R.fill_diagonal_(0.0)
    while True:
        new = keep | ((R @ keep.to(torch.float64)) > 0)
        if bool((new == keep).all()):
            return keep
        keep = new


def restrict_cascade(
    A: torch.Tensor, V: torch.Tensor, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cascade of the witnesses ``keep`` (must be closed under reads, :func:`read_closure`)."""
    if not bool((read_closure(V, keep) == keep).all()):
        raise ValueError("keep drops a witness that a kept witness reads")
    idx = torch.nonzero(keep, as_tuple=False)[:, 0]
    return A[:, idx], V[idx][:, idx]


def sparse_cascade_candidates(
    F: int, count: int, *, gen: torch.Generator, theta: float, k_max: int = 3
) -> torch.Tensor:
    r"""``(F + 1, count)`` random sparse candidates: :math:`k \sim U\{1..k_{max}\}` features
    with weights :math:`\pm\theta u`, :math:`u \sim U(0.3, 1.3)` (3/4 positive), and with
    probability 1/2 a self weight :math:`\pm\theta u` (a latch or a toggle-like unit)."""
    from .delay import sparse_windows

    C = torch.zeros(F + 1, count, dtype=torch.float64)
    if count == 0:
        return C
    C[:F] = sparse_windows(F, count, gen=gen, theta=theta, k_max=k_max)
    own = torch.rand(count, generator=gen) < 0.5
    mag = float(theta) * (0.3 + torch.rand(count, generator=gen, dtype=torch.float64))
    sign = torch.where(torch.rand(count, generator=gen) < 0.75, 1.0, -1.0).to(torch.float64)
    C[F] = torch.where(own, mag * sign, torch.zeros_like(mag))
    return quantize(C)


def counter_modules(
    C: torch.Tensor, ks: torch.Tensor, *, d: int, theta: float
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    r"""Modulo-:math:`k` counter modules of events :math:`e_t = \mathbb 1[C_{:,g} \cdot z_t \ge
    \theta]` (features :math:`z_t` of :func:`cascade_features`, one-hot inputs).

    Module ``g`` holds :math:`2k` neurons :math:`N_{i,e}` (index ``2 i + e``) that read each
    other: :math:`N_{i,e}` fires at :math:`t` iff the number of events before :math:`t` is
    :math:`\equiv i \pmod k` and :math:`e_t = e`, so exactly one fires per step and the
    readout of :math:`N_{i,0} + N_{(i-1) \bmod k, 1}` is "count :math:`\equiv i`" at any length
    (a group component :math:`\mathbb Z_k`, which a cascade of single threshold units cannot
    form). With :math:`b_{i,t} = \sum_{j + e \equiv i} s^{N_{j,e}}_{t-1} + [i = 0]\,
    \mathrm{start}_t` (:math:`\mathrm{start}_t = \sum_a x_{t,a} - \sum_a x_{t-1,a}`, 1 at
    :math:`t = 1` only for one-hot inputs), :math:`\alpha_t = C_{:,g} \cdot z_t` and
    :math:`M` a power of two above :math:`\sum |C_{:,g}| + 2\theta`, the potentials are

    .. math::

        N_{i,1}: M b_{i,t} + \alpha_t - M, \qquad
        N_{i,0}: M b_{i,t} - \alpha_t - M + 2\theta - 2^{-16}

    (the constants through :math:`\sum_a x_{t,a} = 1`), so :math:`N_{i,1}` fires iff
    :math:`b = 1` and :math:`\alpha_t \ge \theta`, :math:`N_{i,0}` iff :math:`b = 1` and
    :math:`\alpha_t < \theta` (weights on the grid). Returns, per module, the feature weights
    ``(F, 2k)`` and the module's own recurrent block ``(2k, 2k)``.
    """
    C = quantize(C)
    F = C.shape[0]
    out = []
    for g in range(C.shape[1]):
        k = int(ks[g])
        c = C[:, g]
        M = 2.0 ** math.ceil(math.log2(float(c.abs().sum()) + 2 * theta + 1))
        W = torch.zeros(F, 2 * k, dtype=torch.float64)
        Vm = torch.zeros(2 * k, 2 * k, dtype=torch.float64)
        for i in range(k):
            for e in (0, 1):
                q = 2 * i + e
                W[:, q] = c if e else -c
                W[:d, q] += -M if e else -(M - 2 * theta + GRID)
                if i == 0:  # start_t: x_t - x_{t-1} summed over the channels
                    W[:d, q] += M
                    W[d : 2 * d, q] -= M
                for j in range(k):
                    for e2 in (0, 1):
                        if (j + e2) % k == i:
                            Vm[2 * j + e2, q] = M
        out.append((quantize(W), Vm))
    return out


def module_spikes(W: torch.Tensor, Vm: torch.Tensor, Z: torch.Tensor, theta: float) -> torch.Tensor:
    """Spikes ``(n, T, G, q)`` of ``G`` modules of ``q`` neurons that read the features ``Z``
    ``(n, T, F)`` through ``W`` ``(F, G, q)`` and each other through ``Vm`` ``(G, q, q)``."""
    n, T, F = Z.shape
    G, q = W.shape[1], W.shape[2]
    alpha = (Z.reshape(n * T, F) @ W.reshape(F, G * q)).reshape(n, T, G, q)
    s = torch.zeros(n, T, G, q, dtype=torch.float64)
    prev = torch.zeros(n, G, q, dtype=torch.float64)
    for t in range(T):
        prev = (alpha[:, t] + torch.einsum("ngi,gij->ngj", prev, Vm) >= theta).to(torch.float64)
        s[:, t] = prev
    return s


def extend_module(
    A: torch.Tensor, V: torch.Tensor, W: torch.Tensor, Vm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cascade with one module appended (feature weights ``W`` ``(2 d + m, q)``, own block
    ``Vm`` ``(q, q)``); it reads the ``m`` kept witnesses, none of them reads it."""
    d2, m = A.shape
    q = W.shape[1]
    A2 = torch.cat([A, W[:d2]], dim=1)
    V2 = torch.zeros(m + q, m + q, dtype=torch.float64)
    V2[:m, :m] = V
    V2[:m, m:] = W[d2 : d2 + m]
    V2[m:, m:] = Vm
    return A2, V2


def automaton_modules(
    tables: torch.Tensor, *, n_features: int, theta: float, start: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    r"""Automaton modules: any :math:`q`-state automaton on one-hot symbols as :math:`q d`
    threshold neurons of the cascade (an exact group-and-reset component of any kind).

    ``tables`` ``(G, q, d)`` integers in ``[0, q)``: :math:`\delta_g(s, a)`, the state after
    reading symbol :math:`a` in state :math:`s`, start state ``start``. Module ``g`` holds the
    neurons :math:`N_{s,a}` (index :math:`s d + a`); :math:`N_{s,a}` fires at :math:`t` iff the
    state before step :math:`t` is :math:`s` and :math:`x_t = e_a`, so exactly one fires per step
    and the last-step readout of the :math:`q d` columns is any function of the state after
    :math:`T`, at any length. With

    .. math::

        b_{s',t} = \sum_{(s, a):\, \delta(s, a) = s'} s^{N_{s,a}}_{t-1}
        + [s' = \mathrm{start}]\, \mathrm{start}_t, \qquad
        \mathrm{start}_t = \sum_a x_{t,a} - \sum_a x_{t-1,a}

    (:math:`b_{s',t} = 1` iff the state before :math:`t` is :math:`s'`; :math:`\mathrm{start}_t`
    is 1 at :math:`t = 1` only, for one-hot inputs), the potential of :math:`N_{s',a'}` is

    .. math::

        \alpha_t = \theta\,\big(b_{s',t} + x_{t,a'} - \textstyle\sum_a x_{t,a}\big),

    which reaches :math:`\theta` iff :math:`b_{s',t} = 1` and :math:`x_{t,a'} = 1` (the constant
    through :math:`\sum_a x_{t,a} = 1`). All weights are :math:`0, \pm\theta`, on the grid, so
    the leak-compensated network is exact (module docstring). A counter module of a symbol is
    the cyclic table; the readout over one module represents every language of at most
    :math:`q` states.

    Parameters
    ----------
    tables : Tensor ``(G, q, d)`` or ``(q, d)``
    n_features : int
        Rows of the feature weights (:math:`2 d + m`: the module reads no kept witness).
    theta : float
    start : int

    Returns
    -------
    list of (Tensor ``(n_features, q d)``, Tensor ``(q d, q d)``)
        Per module, the feature weights and its own recurrent block, as
        :func:`counter_modules` (append with :func:`extend_module`).
    """
    tab = torch.as_tensor(tables)
    if tab.ndim == 2:
        tab = tab[None]
    if tab.ndim != 3 or tab.dtype.is_floating_point:
        raise ValueError(f"tables must be integer (G, q, d), got {tuple(tab.shape)} {tab.dtype}")
    G, q, d = tab.shape
    if q < 1 or d < 1 or bool((tab < 0).any() or (tab >= q).any()):
        raise ValueError(f"tables must hold states in [0, {q}), got values outside")
    if not 0 <= int(start) < q:
        raise ValueError(f"start must be a state in [0, {q}), got {start}")
    if n_features < 2 * d:
        raise ValueError(f"n_features must be at least 2 d = {2 * d}, got {n_features}")
    th = float(theta)
    out = []
    idx = torch.arange(q * d)
    for g in range(G):
        W = torch.zeros(n_features, q * d, dtype=torch.float64)
        W[:d] = -th
        W[idx % d, idx] += th  # + theta x_{t,a'}
        st = idx // d == int(start)  # start_t for the start state's neurons
        W[:d, st] += th
        W[d : 2 * d, st] -= th
        nxt = tab[g].reshape(-1)  # neuron s d + a moves to state delta(s, a)
        Vm = th * (nxt[:, None] == (idx // d)[None, :]).to(torch.float64)
        out.append((W, Vm))
    return out


def automaton_cells(tables: torch.Tensor, symbols: torch.Tensor, *, start: int = 0) -> torch.Tensor:
    r"""``(G, n)``: the neuron of each automaton module (:func:`automaton_modules`) that fires at
    the last step, :math:`s_{T-1} d + a_T` (:math:`s_{T-1}` the state before step :math:`T`),
    from the transition tables ``(G, q, d)`` and symbols ``(n, T)``, by table look-up: the
    module's last-step columns are the indicators of these cells (tested against the neurons)."""
    tab = torch.as_tensor(tables).long()
    G, q, d = tab.shape
    sym = torch.as_tensor(symbols).long()
    n, T = sym.shape
    flat = tab.reshape(G, q * d)
    st = torch.full((G, n), int(start), dtype=torch.long)
    for t in range(T - 1):
        st = torch.gather(flat, 1, (st * d + sym[None, :, t]).expand(G, n))
    return st * d + sym[None, :, T - 1]
