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

from ._checks import check_positive_int, renamed_kwargs
from .witnesses import Witnesses, gaussian_witnesses

__all__ = [
    "delay_line_map",
    "delay_line_witnesses",
    "gaussian_delay_witnesses",
    "is_delay_line",
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
