r"""Delay-line witnesses: every step of a witness neuron exposed to the last-step readout.

A feed-forward witness applies the same weights to every step, and its spike at the last step
:math:`s_T` mixes the whole input history; a convex readout of last-step spikes cannot weigh the
steps separately. A *delay line* gives it that freedom inside an ordinary
:class:`~convexsnn.network.ParallelSNN`: each witness neuron (the *source*) feeds a chain of
``T - 1`` *relay* neurons through recurrent weights, relay ``lag`` spiking at step :math:`t`
exactly when the source spiked at step :math:`t - lag`. At the last step the chain holds

.. math::

    r^{(i, lag)}_T = s^{(i)}_{T - lag}, \qquad lag = 0, \dots, T - 1,

so the last-step dictionary (``steps="last"``) has one column per (source, step): the per-step
spikes, bit for bit, and the convex readout learns one weight per step (docs/method.md,
"Delay-line witnesses").

Relay neuron (one LIF definition, :mod:`convexsnn.lif`). Relay :math:`r` has zero feed-forward
weights, zero bias, and one recurrent input, weight exactly :math:`\theta`, from its predecessor
:math:`p` (the source for ``lag = 1``, relay ``lag - 1`` otherwise), so
:math:`I^r_t = \theta s^p_{t-1}` (:math:`s^p_0 = 0`). Claim: for any leak
:math:`\beta \in [0, 1]` and either reset, :math:`m^r_t = 0` and :math:`s^r_t = s^p_{t-1}` for all
:math:`t`. Induction on :math:`t`, with :math:`m^r_0 = 0`: if :math:`m^r_{t-1} = 0` then

.. math::

    u^r_t = \beta \cdot 0 + I^r_t = \theta s^p_{t-1} \in \{0, \theta\}, \qquad
    s^r_t = \mathbb 1[u^r_t \ge \theta] = s^p_{t-1},

    m^r_t = u^r_t - \theta s^r_t = 0 \;\text{(subtract)}, \qquad
    m^r_t = u^r_t (1 - s^r_t) = 0 \;\text{(zero)}.

Every operation is exact in floating point: :math:`\beta \cdot 0 = 0`; the feed-forward current is
a sum of products with exact zero weights (:math:`\pm 0`); the recurrent current has one non-zero
product :math:`\theta \cdot s \in \{0, \theta\}` and adds exact zeros; :math:`\theta - \theta = 0`.
So no residue is ever left on the membrane. The weight must be exactly :math:`\theta` under the
subtract reset: a weight :math:`w > \theta` leaves :math:`m_t = w - \theta > 0` after each spike,
which the leak carries forward and which accumulates over consecutive spikes until the relay fires
without input (with the zero reset any :math:`w \ge \theta` would do; :math:`\theta` is used for
both). Composing the relays, relay ``lag`` spikes at :math:`t` iff the source spiked at
:math:`t - lag` (never for :math:`t \le lag`).

The source neurons keep their own weights exactly: feed-forward weights, bias, and recurrent
weights among the sources of a branch (feed-forward, diagonal or dense recurrent witnesses). No
relay feeds a source, so a source's recurrent current only gains exact zeros and its spikes are
those of the original witness set.

Layout. The last LIF layer of a branch with ``n`` sources becomes ``n * T`` neurons, neuron
``i * T + lag`` being relay ``lag`` of source ``i`` (``lag = 0``: the source itself). Its recurrent
weights are dense ``(K, nT, nT)``; earlier layers are copied (a diagonal recurrence there becomes
the equivalent dense diagonal matrix, since a ``ParallelSNN`` has one recurrent kind). Many
branches of one source each (:func:`gaussian_delay_witnesses`) keep the recurrent matrices
``(K, T, T)`` small; one branch of ``n`` sources would cost ``(nT)^2`` per branch.

Reconstruction (:func:`convexsnn.reconstruct.reconstruct`) keeps, for every neuron with a non-zero
readout weight, the closure of its recurrent inputs (its chain back to the source), so the pruned
network computes the convex scores exactly; NIR export writes the chain as the layer's recurrent
``Linear`` node. With the zero reset the whole network is expressible with plain NIR ``LIF`` nodes.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ._checks import check_positive_int, check_seed, renamed_kwargs
from .witnesses import Witnesses, gaussian_witnesses

__all__ = [
    "delay_line_map",
    "delay_line_witnesses",
    "gaussian_delay_witnesses",
    "gaussian_two_layer_delay_witnesses",
    "is_delay_line",
    "patch_delay_witnesses",
    "relay_layer",
    "relayed_spikes",
    "sparse_windows",
    "template_delay_witnesses",
    "template_sources",
    "threshold_delay_witnesses",
    "threshold_weights",
    "two_layer_delay_witnesses",
    "window_weights",
]

logger = logging.getLogger("convexsnn")


def _as_dense(r: torch.Tensor | None, K: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """A layer's recurrent weights as a dense ``(K, n, n)`` tensor (zeros when absent)."""
    if r is None:
        return torch.zeros(K, n, n, dtype=like.dtype, device=like.device)
    return torch.diag_embed(r) if r.ndim == 2 else r.clone()


def delay_line_witnesses(base: Witnesses, n_steps: int) -> Witnesses:
    r"""``base`` with a chain of ``n_steps - 1`` exact relays behind every last-layer neuron.

    Parameters
    ----------
    base : Witnesses
        Any witness set (Gaussian, reservoir, structured, copied from a network; feed-forward or
        recurrent). Its last-layer neurons become the sources.
    n_steps : int
        ``T``, the number of steps of the sequences the dictionary will be built on. Source
        ``i`` of branch ``k`` gives ``T`` last-layer neurons ``i * T + lag`` whose last-step
        spikes are :math:`s^{(i)}_{T - lag}` (module docstring). On shorter sequences the extra
        relays stay silent (zero columns, dropped by the dictionary).

    Returns
    -------
    Witnesses
        Same earlier layers; last layer ``n * T`` neurons per branch with dense recurrent weights;
        ``description["kind"] == "delay_line"`` with ``n_steps``, ``n_sources`` and the base's
        description.
    """
    if not isinstance(base, Witnesses):
        raise TypeError(f"base must be Witnesses, got {type(base).__name__}")
    T = check_positive_int(n_steps, "n_steps")
    if base.description.get("kind") == "delay_line":
        raise ValueError("base is already a delay-line witness set")
    K, n = base.n_branches, base.n_last
    L = len(base.weights)
    w_last = base.weights[-1]
    n_in = w_last.shape[1]
    src = torch.arange(n, device=base.device) * T  # positions of the sources
    W = torch.zeros(K, n_in, n * T, dtype=base.dtype, device=base.device)
    W[:, :, src] = w_last
    biases = None
    if base.biases is not None:
        biases = [b.clone() if b is not None else None for b in base.biases[:-1]]
        b_last = base.biases[-1]
        if b_last is not None:
            bl = torch.zeros(K, n * T, dtype=base.dtype, device=base.device)
            bl[:, src] = b_last
            biases.append(bl)
        else:
            biases.append(None)
    R = torch.zeros(K, n * T, n * T, dtype=base.dtype, device=base.device)
    r_last = base.recurrent[-1] if base.recurrent is not None else None
    if r_last is not None:
        R[:, src[:, None], src[None, :]] = _as_dense(r_last, K, n, w_last)
    theta = float(base.theta)
    for lag in range(1, T):
        R[:, src + lag - 1, src + lag] = theta  # predecessor -> relay
    recurrent: list[torch.Tensor | None] = []
    for l in range(L - 1):
        r = base.recurrent[l] if base.recurrent is not None else None
        recurrent.append(None if r is None else _as_dense(r, K, base.hidden_widths[l], w_last))
    recurrent.append(R)
    desc = {
        "kind": "delay_line",
        "seed": base.description.get("seed"),
        "n_steps": T,
        "n_sources": n,
        "relay_weight": theta,
        "layout": "last-layer neuron i*T + lag = source i delayed by lag steps",
        "base": base.description,
    }
    out = Witnesses(
        [w.clone() for w in base.weights[:-1]] + [W],
        biases,
        recurrent,
        base.leak,
        base.theta,
        base.reset,
        desc,
    )
    logger.debug("delay_line_witnesses: %d sources x %d steps -> %r", K * n, T, out)
    return out


@renamed_kwargs(beta="leak")
def gaussian_delay_witnesses(
    n_inputs: int,
    n_neurons: int,
    n_steps: int,
    *,
    scale: float = 1.0,
    normalized: bool = False,
    seed: int = 0,
    leak: float = 0.99,
    theta: float = 1.0,
    reset: str = "subtract",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Witnesses:
    r"""``n_neurons`` one-layer Gaussian witnesses, each in its own branch with its delay line.

    The sources are :func:`~convexsnn.witnesses.gaussian_witnesses` with ``n_branches =
    n_neurons`` and one neuron per branch (:math:`W = s\,G`, or unit-norm columns times
    :math:`s` with ``normalized``), then :func:`delay_line_witnesses` adds ``n_steps - 1`` relays:
    ``n_neurons`` branches of ``n_steps`` neurons, ``n_neurons * n_steps`` last-step columns.
    """
    n_neurons = check_positive_int(n_neurons, "n_neurons")
    base = gaussian_witnesses(
        n_inputs,
        n_branches=n_neurons,
        hidden_widths=[1],
        scale=scale,
        normalized=normalized,
        seed=seed,
        leak=leak,
        theta=theta,
        reset=reset,
        dtype=dtype,
        device=device,
    )
    return delay_line_witnesses(base, n_steps)


def _patch_masks(
    gen: torch.Generator, n: int, grid: tuple[int, int], min_size: tuple[int, int]
) -> torch.Tensor:
    """``(n, H, C)`` bool masks of random rectangles (:func:`patch_delay_witnesses`)."""
    H, C = (check_positive_int(g, "grid") for g in grid)
    h0, w0 = (check_positive_int(g, "min_size") for g in min_size)
    lo_h, lo_w = min(h0, H), min(w0, C)
    u = torch.rand(n, 4, generator=gen, dtype=torch.float64)
    h = lo_h + (u[:, 0] * (H - lo_h + 1)).long().clamp(max=H - lo_h)
    w = lo_w + (u[:, 1] * (C - lo_w + 1)).long().clamp(max=C - lo_w)
    r0 = (u[:, 2] * (H - h + 1)).long().clamp(max=H - h)
    c0 = (u[:, 3] * (C - w + 1)).long().clamp(max=C - w)
    rows = torch.arange(H)[None, :]
    cols = torch.arange(C)[None, :]
    return ((rows >= r0[:, None]) & (rows < (r0 + h)[:, None]))[:, :, None] & (
        (cols >= c0[:, None]) & (cols < (c0 + w)[:, None])
    )[:, None, :]


def patch_delay_witnesses(
    grid: tuple[int, int],
    n_neurons: int,
    n_steps: int,
    *,
    min_size: tuple[int, int] = (3, 5),
    scale: float = 1.0,
    seed: int = 0,
    leak: float = 0.99,
    theta: float = 1.0,
    reset: str = "subtract",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Witnesses:
    r"""``n_neurons`` one-layer witnesses with Gaussian weights on random patches, with delay lines.

    The ``n_inputs = H * C`` inputs of a step are read as an ``(H, C)`` grid (``grid``; sequential
    MNIST at ``T`` steps: ``H = 28 / T`` image rows of ``C = 28`` pixels). Source :math:`j` reads
    one random rectangle :math:`R_j` of that grid (height uniform in ``[min(h0, H), H]``, width
    uniform in ``[min(w0, C), C]`` with ``min_size = (h0, w0)``, position uniform among those that
    fit) and is zero elsewhere:

    .. math::

        W_{ij} = s \sqrt{\frac{H C}{|R_j|}}\, G_{ij}\, \mathbb 1[i \in R_j], \qquad
        G_{ij} \sim N(0, 1),

    so every source's weight vector has the expected squared norm :math:`s^2 H C` of a full-field
    Gaussian source (:func:`gaussian_delay_witnesses`). Each source is a branch of its own with
    its delay line (:func:`delay_line_witnesses`): ``n_neurons * n_steps`` last-step columns. The
    same weights read every step, so a source is a local feature slid over the steps, read at
    each step by its own readout weight. No bias; the leak, threshold and reset are those of the
    one LIF definition (with ``leak = 0`` a source's spike at :math:`t` depends on step
    :math:`t`'s inputs only, :math:`s_t = \mathbb 1[W^\top x_t \ge \theta]`).
    """
    n = check_positive_int(n_neurons, "n_neurons")
    gen = torch.Generator().manual_seed(check_seed(seed))
    H, C = (check_positive_int(g, "grid") for g in grid)
    G = torch.randn(n, H, C, generator=gen, dtype=torch.float64)
    mask = _patch_masks(gen, n, (H, C), min_size)
    area = mask.sum((1, 2)).to(torch.float64)
    W = float(scale) * torch.sqrt(H * C / area)[:, None, None] * G * mask
    weights = W.reshape(n, H * C, 1).to(dtype)
    if device is not None:
        weights = weights.to(device)
    desc = {
        "kind": "patch",
        "seed": int(seed),
        "options": {
            "grid": [H, C],
            "n_neurons": n,
            "min_size": [int(v) for v in min_size],
            "scale": float(scale),
            "dtype": str(dtype).replace("torch.", ""),
        },
    }
    base = Witnesses([weights], None, None, leak, theta, reset, desc)
    return delay_line_witnesses(base, n_steps)


def template_sources(
    X: torch.Tensor,
    n_neurons: int,
    *,
    grid: tuple[int, int],
    min_size: tuple[int, int] = (3, 5),
    quantiles: tuple[float, float] = (0.5, 0.95),
    n_sample: int = 2000,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Unit templates ``V`` ``(n_neurons, d)`` and thresholds ``q`` ``(n_neurons,)`` of
    :func:`template_delay_witnesses` (its equations), float64 on the CPU.

    A source with template :math:`v_j` and threshold :math:`q_j` spikes at step :math:`t` (leak 0)
    iff :math:`v_j^\top x_t \ge q_j`; :func:`threshold_delay_witnesses` makes the witnesses.
    Deterministic for a seed and ``X``; different seeds give independent draws (the candidate
    pools of :func:`convexsnn.colgen.fit_template_column_generation`).
    """
    if not isinstance(X, torch.Tensor) or X.ndim != 3:
        raise ValueError("X must be an (n, T, n_inputs) tensor of training sequences")
    n = check_positive_int(n_neurons, "n_neurons")
    H, C = (check_positive_int(g, "grid") for g in grid)
    if X.shape[2] != H * C:
        raise ValueError(f"grid {H} x {C} does not match the {X.shape[2]} inputs of a step")
    qlo, qhi = (float(q) for q in quantiles)
    if not 0.0 <= qlo <= qhi <= 1.0:
        raise ValueError(f"quantiles must satisfy 0 <= lo <= hi <= 1, got {quantiles!r}")
    rows, T, d = X.shape
    gen = torch.Generator().manual_seed(check_seed(seed))
    mask = _patch_masks(gen, n, (H, C), min_size).reshape(n, d).to(torch.float64)
    Xd = X.detach().to("cpu", torch.float64)
    mu = Xd.mean((0, 1))
    a = torch.randint(rows, (n, 100), generator=gen)
    t = torch.randint(T, (n, 100), generator=gen)
    V = torch.empty(n, d, dtype=torch.float64)
    for j in range(n):
        ink = (Xd[a[j], t[j]] * mask[j]).sum(1) > 0  # the draws with input in R_j
        k = int(ink.nonzero()[0]) if bool(ink.any()) else 0
        V[j] = (Xd[a[j, k], t[j, k]] - mu) * mask[j]
    V = V / V.norm(dim=1, keepdim=True).clamp(min=1e-12)
    sample = torch.randperm(rows, generator=gen)[: check_positive_int(n_sample, "n_sample")]
    S = Xd[sample].reshape(-1, d) @ V.T  # projections of the sampled steps, (m, n)
    level = qlo + (qhi - qlo) * torch.rand(n, generator=gen, dtype=torch.float64)
    srt = S.sort(0).values
    idx = (level * (srt.shape[0] - 1)).round().long()
    q = srt.gather(0, idx[None, :])[0]
    return V, q


def threshold_weights(
    V: torch.Tensor, q: torch.Tensor, *, scale: float = 0.5, theta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Input weights ``(d, n)`` and biases ``(n,)`` of threshold sources: :math:`W_j = c\, v_j`,
    :math:`b_j = \theta - c\, q_j`, :math:`c = s \sqrt d` (:func:`template_delay_witnesses`)."""
    V = torch.as_tensor(V, dtype=torch.float64)
    q = torch.as_tensor(q, dtype=torch.float64)
    if V.ndim != 2 or q.shape != (V.shape[0],):
        raise ValueError(f"V must be (n, d) and q (n,), got {tuple(V.shape)} and {tuple(q.shape)}")
    c = float(scale) * V.shape[1] ** 0.5
    return (c * V).T.contiguous(), float(theta) - c * q


def threshold_delay_witnesses(
    V: torch.Tensor,
    q: torch.Tensor,
    n_steps: int,
    *,
    scale: float = 0.5,
    leak: float = 0.0,
    theta: float = 1.0,
    reset: str = "subtract",
    description: dict | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Witnesses:
    r"""One threshold source per branch (weights and bias of :func:`threshold_weights`) with its
    delay line (:func:`delay_line_witnesses`): ``n * n_steps`` last-step columns."""
    W, b = threshold_weights(V, q, scale=scale, theta=theta)
    n = W.shape[1]
    weights = W.T.reshape(n, -1, 1).contiguous().to(dtype)  # (n, d, 1)
    bias = b.reshape(n, 1).to(dtype)
    if device is not None:
        weights, bias = weights.to(device), bias.to(device)
    desc = description or {"kind": "threshold", "seed": None}
    base = Witnesses([weights], [bias], None, leak, theta, reset, desc)
    return delay_line_witnesses(base, n_steps=check_positive_int(n_steps, "n_steps"))


def template_delay_witnesses(
    X: torch.Tensor,
    n_neurons: int,
    *,
    grid: tuple[int, int],
    min_size: tuple[int, int] = (3, 5),
    quantiles: tuple[float, float] = (0.5, 0.95),
    n_sample: int = 2000,
    scale: float = 0.5,
    seed: int = 0,
    leak: float = 0.0,
    theta: float = 1.0,
    reset: str = "subtract",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Witnesses:
    r"""``n_neurons`` one-layer witnesses matching patches of training steps, with delay lines.

    Data-dependent sources (no training: every weight is a copy of input data). ``X`` ``(n, T,
    H C)`` holds the training sequences; :math:`\mu` is its mean step (over rows and steps).
    Source :math:`j` takes a random rectangle :math:`R_j` of the step's ``(H, C)`` grid (as
    :func:`patch_delay_witnesses`) and a step
    :math:`x_{a,t}` of a uniformly drawn training row and step with some input in
    :math:`R_j` (redrawn up to 100 times otherwise), and compares each step with that template:

    .. math::

        v_j = \frac{m_j \odot (x_{a,t} - \mu)}{\lVert m_j \odot (x_{a,t} - \mu) \rVert}, \qquad
        W_j = c\, v_j, \qquad b_j = \theta - c\, q_j, \qquad c = s \sqrt{H C},

    with :math:`m_j` the indicator of :math:`R_j` and :math:`q_j` the empirical quantile, at a
    level drawn uniformly in ``quantiles``, of :math:`v_j^\top x` over the steps of ``n_sample``
    training rows drawn without replacement (all rows when ``n_sample >= n``). With ``leak = 0``
    the source spikes at step :math:`t` iff
    :math:`v_j^\top x_t \ge q_j` (:math:`u_t = W_j^\top x_t + b_j \ge \theta`): a template match
    with a data-set threshold, at a rate near ``1 - level``. Each source is a branch with its
    delay line (:func:`delay_line_witnesses`); the bias sits on the source only. Deterministic for
    a seed and ``X`` (:func:`template_sources` draws ``V`` and ``q``,
    :func:`threshold_delay_witnesses` builds the witnesses).
    """
    V, q = template_sources(
        X,
        n_neurons,
        grid=grid,
        min_size=min_size,
        quantiles=quantiles,
        n_sample=n_sample,
        seed=seed,
    )
    H, C = (int(g) for g in grid)
    desc = {
        "kind": "template",
        "seed": int(seed),
        "options": {
            "grid": [H, C],
            "n_neurons": int(n_neurons),
            "min_size": [int(v) for v in min_size],
            "quantiles": [float(v) for v in quantiles],
            "n_sample": int(n_sample),
            "scale": float(scale),
            "n_rows": int(X.shape[0]),
            "dtype": str(dtype).replace("torch.", ""),
        },
    }
    return threshold_delay_witnesses(
        V,
        q,
        int(X.shape[1]),
        scale=scale,
        leak=leak,
        theta=theta,
        reset=reset,
        description=desc,
        dtype=dtype,
        device=device,
    )


def is_delay_line(witnesses: Witnesses) -> bool:
    """Whether ``witnesses`` was made by :func:`delay_line_witnesses`."""
    return isinstance(witnesses, Witnesses) and witnesses.description.get("kind") == "delay_line"


def delay_line_map(witnesses: Witnesses) -> np.ndarray:
    """``(K * n_last, 3)`` array of (branch, source, lag) for every last-layer neuron.

    Feature ``j = k * n_last + i * T + lag`` reads source ``i`` of branch ``k`` at step
    ``T - lag`` (1-based).
    """
    if not is_delay_line(witnesses):
        raise ValueError("delay_line_map needs a witness set made by delay_line_witnesses")
    T = int(witnesses.description["n_steps"])
    j = np.arange(witnesses.n_witness_neurons)
    k, i = j // witnesses.n_last, j % witnesses.n_last
    return np.stack([k, i // T, i % T], axis=1)


# ------------------------------------------------------------------ two-layer delay witnesses
def relay_layer(
    n_inputs: int,
    n_steps: int,
    *,
    sources: torch.Tensor | None = None,
    input_relays: bool = True,
    leak: float = 0.99,
    theta: float = 1.0,
    reset: str = "subtract",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Witnesses:
    r"""Layer 1 of the two-layer delay witnesses: sources with their delay lines (one branch).

    The sources are ``n_inputs`` *input relays* (neuron ``c`` has weight exactly :math:`\theta`
    on input channel ``c`` and 0 elsewhere, so for binary inputs :math:`I_t = \theta x_{t,c}` and,
    by the relay argument of the module docstring, :math:`s_t = x_{t,c}` bit for bit), then the
    LIF neurons ``sources`` ``(n_inputs, m)`` (any weights: Gaussian, priced). Every source gets
    ``n_steps - 1`` relays (:func:`delay_line_witnesses`): neuron ``i * T + lag`` spikes at step
    :math:`t` iff source ``i`` spiked at :math:`t - lag`.
    """
    d = check_positive_int(n_inputs, "n_inputs")
    cols = []
    if input_relays:
        cols.append(float(theta) * torch.eye(d, dtype=dtype, device=device))
    if sources is not None:
        s = torch.as_tensor(sources, dtype=dtype, device=device)
        if s.ndim != 2 or s.shape[0] != d:
            raise ValueError(f"sources must have shape ({d}, m), got {tuple(s.shape)}")
        cols.append(s)
    if not cols or sum(c.shape[1] for c in cols) == 0:
        raise ValueError("layer 1 needs input relays or at least one source")
    W1 = torch.cat(cols, dim=1)[None]
    base = Witnesses([W1], None, None, leak, theta, reset, {"kind": "relay_layer", "seed": None})
    return delay_line_witnesses(base, n_steps)


def window_weights(C: torch.Tensor, leak: float, n_steps: int) -> torch.Tensor:
    r"""Layer-2 weights ``(n_1, N)`` of window neurons with window weights ``C`` ``(n_1, N)``.

    Rows follow the layer-1 layout ``i * T + lag``. Weight :math:`c_{i,l}` asks for the current
    :math:`\sum_{i,l} c_{i,l} s^{(i)}_{t-l}` at every step; the leak would add the decayed past
    currents to the membrane, so each weight is paired with :math:`-\beta c_{i,l-1}` on the next
    relay of the same source:

    .. math::

        V_{i,0} = c_{i,0}, \qquad V_{i,l} = c_{i,l} - \beta\, c_{i,l-1} \quad (1 \le l < T).

    Then :math:`I_t = w_t - \beta w_{t-1}` with :math:`w_t = \sum_{i,l} c_{i,l} s^{(i)}_{t-l}`
    for :math:`t \le T` (the missing lag ``T`` relay is silent there), and by induction the
    membrane of a neuron that has not spiked before :math:`t` is :math:`u_t = w_t` (up to
    rounding): a window neuron is a threshold unit over the last ``T`` steps of every source,
    :math:`s_T = \mathbb 1[\sum_{i,l} c_{i,l} s^{(i)}_{T-l} \ge \theta]` while it stays silent
    before (docs/method.md, "Two-layer delay witnesses").
    """
    T = check_positive_int(n_steps, "n_steps")
    C = torch.as_tensor(C)
    if C.ndim != 2 or C.shape[0] % T:
        raise ValueError(f"C must have shape (n_sources * {T}, N), got {tuple(C.shape)}")
    V = C.clone()
    if leak != 0.0 and T > 1:
        m = C.shape[0] // T
        c = C.reshape(m, T, -1)
        v = V.reshape(m, T, -1)
        v[:, 1:] = c[:, 1:] - float(leak) * c[:, :-1]
    return V


def two_layer_delay_witnesses(
    C: torch.Tensor,
    layer1: Witnesses,
    *,
    depth: int = 3,
    group: int = 32,
    description: dict | None = None,
) -> Witnesses:
    r"""Window neurons over a relay layer, padded to ``depth`` with exact relays.

    Parameters
    ----------
    C : Tensor ``(n_1, N)``
        Window weights of ``N`` layer-2 neurons over the ``n_1`` relayed layer-1 spikes
        (:func:`window_weights` turns them into synaptic weights).
    layer1 : Witnesses
        One branch made by :func:`relay_layer`; copied into every branch.
    depth : int
        ``L`` counting the output layer (the project's convention): ``L - 1`` LIF layers, layer 1
        the relays, layer 2 the window neurons, layers ``3 .. L - 1`` exact relays (weight
        :math:`\theta` from the neuron of the same index, so :math:`s^{l}_t = s^{l-1}_t`, same
        step, by the relay argument with a feed-forward input). The last-step readout of the last
        layer is the window neurons' spike at step ``T``.
    group : int
        Window neurons per branch; the last branch is padded with silent neurons (``C = 0``,
        all-zero columns the dictionary drops). Window neuron ``j`` is last-layer neuron
        ``j % group`` of branch ``j // group``.

    Returns
    -------
    Witnesses
        ``description["kind"] == "two_layer_delay"`` with ``n_steps``, ``depth``, ``group``,
        ``n_windows``.
    """
    if not is_delay_line(layer1) or layer1.n_branches != 1 or len(layer1.weights) != 1:
        raise ValueError("layer1 must be one branch made by relay_layer")
    L = check_positive_int(depth, "depth")
    if L < 3:
        raise ValueError(f"depth must be >= 3 (relays, window neurons, output), got {L}")
    g = check_positive_int(group, "group")
    T = int(layer1.description["n_steps"])
    n1 = layer1.n_last
    C = torch.as_tensor(C, dtype=layer1.dtype, device=layer1.device)
    if C.ndim != 2 or C.shape[0] != n1:
        raise ValueError(f"C must have shape ({n1}, N), got {tuple(C.shape)}")
    N = C.shape[1]
    if N == 0:
        raise ValueError("C has no window neurons")
    K = -(-N // g)
    V = torch.zeros(n1, K * g, dtype=C.dtype, device=C.device)
    V[:, :N] = window_weights(C, layer1.leak, T)
    W2 = V.reshape(n1, K, g).permute(1, 0, 2).contiguous()
    W1 = layer1.weights[0].expand(K, -1, -1).clone()
    r1 = layer1.recurrent[0] if layer1.recurrent is not None else None
    if r1 is None:
        raise ValueError("layer1 has no relay chains (recurrent weights)")
    R1 = r1.expand(K, -1, -1).clone()
    theta = float(layer1.theta)
    relay = theta * torch.eye(g, dtype=C.dtype, device=C.device).expand(K, g, g).clone()
    weights = [W1, W2] + [relay.clone() for _ in range(L - 3)]
    desc = {
        "kind": "two_layer_delay",
        "seed": None,
        "n_steps": T,
        "depth": L,
        "group": g,
        "n_windows": N,
        "n_sources": int(layer1.description["n_sources"]),
        "layout": "window neuron j = last-layer neuron j % group of branch j // group",
    }
    if description:
        desc.update(description)
    return Witnesses(
        weights,
        None,
        [R1] + [None] * (L - 2),
        layer1.leak,
        layer1.theta,
        layer1.reset,
        desc,
    )


def relayed_spikes(layer1: Witnesses, X) -> torch.Tensor:
    """Spikes ``(n, T, n_1)`` of the relay layer on ``X`` (the inputs of the window neurons)."""
    with torch.no_grad():
        return layer1.simulate(X).spikes[0][:, :, 0]


def sparse_windows(
    n_rows: int,
    count: int,
    *,
    gen: torch.Generator,
    theta: float = 1.0,
    k_max: int = 3,
    p_positive: float = 0.75,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    r"""``(n_rows, count)`` random sparse window weights.

    Each neuron reads :math:`k \sim U\{1..k_{max}\}` distinct relayed spikes, weight
    :math:`\sigma \theta u` with :math:`u \sim U(0.3, 1.3)` and sign :math:`\sigma = +1` with
    probability ``p_positive``: a random threshold unit over a few (source, lag) pairs (single
    spikes, conjunctions, disjunctions and inhibited ones).
    """
    C = torch.zeros(n_rows, count, dtype=dtype)
    if count == 0:
        return C
    k = torch.randint(1, min(k_max, n_rows) + 1, (count,), generator=gen)
    keys = torch.rand(count, n_rows, generator=gen)
    rank = keys.argsort(dim=1).argsort(dim=1)  # a random permutation per neuron
    pick = rank < k[:, None]
    mag = 0.3 + torch.rand(count, n_rows, generator=gen, dtype=dtype)
    sign = torch.where(torch.rand(count, n_rows, generator=gen) < p_positive, 1.0, -1.0)
    vals = float(theta) * mag * sign.to(dtype)
    C.T[pick] = vals[pick]
    return C


def gaussian_two_layer_delay_witnesses(
    n_inputs: int,
    n_windows: int,
    n_steps: int,
    *,
    depth: int = 3,
    n_sources: int = 0,
    scale: float = 1.0,
    input_relays: bool = True,
    k_max: int = 3,
    group: int = 32,
    seed: int = 0,
    leak: float = 0.99,
    theta: float = 1.0,
    reset: str = "subtract",
) -> Witnesses:
    """Random two-layer delay witnesses: input relays and ``n_sources`` Gaussian sources
    (:math:`s\\,G`) in layer 1, ``n_windows`` :func:`sparse_windows` in layer 2."""
    gen = torch.Generator().manual_seed(int(seed))
    src = None
    if n_sources:
        src = scale * torch.randn(n_inputs, n_sources, generator=gen, dtype=torch.float64)
    l1 = relay_layer(
        n_inputs,
        n_steps,
        sources=src,
        input_relays=input_relays,
        leak=leak,
        theta=theta,
        reset=reset,
    )
    C = sparse_windows(l1.n_last, n_windows, gen=gen, theta=theta, k_max=k_max)
    return two_layer_delay_witnesses(
        C, l1, depth=depth, group=group, description={"seed": int(seed)}
    )
