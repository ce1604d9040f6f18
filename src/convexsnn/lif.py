r"""The one LIF definition of convexsnn: pure functions over tensors.

For one layer (all branches at once), step :math:`t = 1..T`, state :math:`m_0 = 0`:

.. math::

    I_t &= s^{l-1}_t W_l \;(+\, b_l) \;(+\, s^{l}_{t-1} W^{rec}_l) \\
    u_t &= \beta\, m_{t-1} + I_t \\
    s_t &= \mathbb{1}[u_t \ge \theta] \\
    m_t &= u_t - \theta s_t \quad\text{(subtract reset)}\qquad
    m_t = u_t (1 - s_t) \quad\text{(zero reset)}

with :math:`s^0_t = x_t` (real-valued input). Dictionary building, surrogate-gradient training, the
reconstructed network and every export run this code, so their spikes agree exactly.

Shapes: a layer holds ``K`` independent branches of ``n`` neurons each. Inputs are
``(batch, T, features)``; currents, spikes and membranes are ``(batch, T, K, n)``. Weights are
``(K, n_in, n_out)`` (the first layer's input is shared by all branches), biases ``(K, n_out)``,
recurrent weights ``(K, n, n)`` (dense) or ``(K, n)`` (diagonal: self-connections only).

Without gradients (``torch.no_grad()`` or inputs/weights that do not require grad) the spike is
the plain comparison; with gradients it is ``spike_fn(u - theta)``, whose forward pass is the same
comparison (see :mod:`convexsnn.surrogate`). The two give identical spikes: for IEEE floats with
gradual underflow, ``fl(u - theta) >= 0`` if and only if ``u >= theta``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ._checks import check_choice, renamed_kwargs

__all__ = [
    "RESETS",
    "check_leak",
    "LIFParams",
    "LIFState",
    "lif_step",
    "lif_scan",
    "layer_current",
    "simulate",
    "Trace",
]

RESETS = ("subtract", "zero")

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


def check_leak(leak: object, name: str = "leak") -> float:
    r"""The leak :math:`\beta` as a float in :math:`[0, 1]`, or a ``ValueError`` naming it: the
    one home of this rule (networks, witnesses, structured circuits, NIR export, :class:`LIFParams`).
    """
    label = name if name == "leak" else f"{name} (leak)"
    if isinstance(leak, bool):
        raise ValueError(f"{label} must be a number in [0, 1], got {leak!r}")
    try:
        value = float(leak)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be a number in [0, 1], got {leak!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"{label} must be in [0, 1], got {leak}")
    return value


@dataclass(frozen=True)
class LIFParams:
    r"""Parameters of a LIF neuron, validated once: the one home of the rules they obey.

    Parameters
    ----------
    leak : float
        :math:`\beta \in [0, 1]` in :math:`u_t = \beta m_{t-1} + I_t` (1: no leak, 0: no memory).
    threshold : float
        :math:`\theta > 0` in :math:`s_t = 1[u_t \ge \theta]`.
    reset : {"subtract", "zero"}
        :math:`m_t = u_t - \theta s_t` or :math:`m_t = u_t (1 - s_t)`.
    """

    leak: float = 0.99
    threshold: float = 1.0
    reset: str = "subtract"

    def __post_init__(self) -> None:
        object.__setattr__(self, "leak", check_leak(self.leak, "leak"))
        v = self.threshold
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"threshold must be a finite number, got {v!r}")
        object.__setattr__(self, "threshold", float(v))
        if self.threshold <= 0.0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")
        check_choice(self.reset, "reset", RESETS)


class LIFState(NamedTuple):
    r"""State carried between calls of :func:`lif_scan`: the post-reset membrane
    :math:`m_{t}` and the spikes :math:`s_{t}` of the last step, each ``(B, K, n)``.

    Passing the state returned by one call into the next makes two scans over consecutive pieces
    of a sequence bit-identical to one scan over the whole (streaming); detaching it
    (:meth:`detach`) between pieces gives truncated back-propagation through time.
    """

    membrane: torch.Tensor
    spikes: torch.Tensor

    def detach(self) -> LIFState:
        """The same state cut from the autograd graph (truncated BPTT)."""
        return LIFState(self.membrane.detach(), self.spikes.detach())


@renamed_kwargs(beta="leak")
def lif_step(
    m_prev: torch.Tensor,
    current: torch.Tensor,
    *,
    leak: float = 0.99,
    theta: float = 1.0,
    reset: str = "subtract",
    spike_fn: SpikeFn | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One LIF step: :math:`u = \beta m_{t-1} + I_t`, :math:`s = 1[u \ge \theta]`, reset.

    Parameters
    ----------
    m_prev : Tensor
        Post-reset membrane :math:`m_{t-1}` (zeros at the first step).
    current : Tensor
        Input current :math:`I_t`, same shape as ``m_prev``.
    leak, theta : float
        Leak and threshold.
    reset : {"subtract", "zero"}
        :math:`m_t = u_t - \theta s_t` or :math:`m_t = u_t (1 - s_t)`.
    spike_fn : callable, optional
        Spike function applied to :math:`u_t - \theta` (a surrogate for training). ``None`` uses
        the exact comparison without gradient.

    Returns
    -------
    s, m : Tensor
        Spikes :math:`s_t` (0/1 in the dtype of ``current``) and post-reset membrane :math:`m_t`.
    """
    u = leak * m_prev + current
    if spike_fn is None:
        s = (u >= theta).to(u.dtype)
    else:
        s = spike_fn(u - theta)
    if reset == "subtract":
        m = u - theta * s
    else:
        m = u * (1 - s)
    return s, m


def _recurrent_input(s_prev: torch.Tensor, w_rec: torch.Tensor) -> torch.Tensor:
    """:math:`s_{t-1} W^{rec}` for spikes ``(B, K, n)``: dense ``(K, n, n)`` or diagonal ``(K, n)``."""
    if w_rec.ndim == 2:
        return s_prev * w_rec
    return torch.einsum("bki,kij->bkj", s_prev, w_rec)


@renamed_kwargs(beta="leak")
def lif_scan(
    current: torch.Tensor,
    *,
    leak: float = 0.99,
    theta: float = 1.0,
    reset: str = "subtract",
    spike_fn: SpikeFn | None = None,
    recurrent: torch.Tensor | None = None,
    return_membrane: bool = False,
    time_major: bool = False,
    state: LIFState | None = None,
    return_state: bool = False,
    params: LIFParams | None = None,
):
    r"""Run one LIF layer over all steps of a precomputed current ``(B, T, K, n)``.

    With ``recurrent`` weights the current at step :math:`t` also receives
    :math:`s_{t-1} W^{rec}` (zero at the first step). Without them the recurrent term is absent
    and the arithmetic is exactly that of the feed-forward layer.

    ``time_major=True`` takes and returns ``(T, B, K, n)`` tensors (the internal layout of
    :func:`simulate`, which keeps every per-step slice contiguous).

    ``state`` (a :class:`LIFState`, default: :math:`m_0 = 0` and no previous spikes) starts the
    scan where an earlier one stopped; ``return_state=True`` also returns the state after the
    last step, so a long sequence can be fed in pieces (streaming) with spikes bit-identical to
    one scan, or with the state detached in between (truncated BPTT). ``params`` (a
    :class:`LIFParams`) replaces ``leak``, ``theta`` and ``reset`` when given.

    Returns
    -------
    spikes : Tensor ``(B, T, K, n)``
    membranes : Tensor ``(B, T, K, n)`` of post-reset :math:`m_t`, or ``None``.
    state : LIFState
        Only with ``return_state=True``.
    """
    if params is not None:
        leak, theta, reset = params.leak, params.threshold, params.reset
    check_choice(reset, "reset", RESETS)
    cur = current if time_major else current.transpose(0, 1)
    if state is not None:
        _check_state(state, cur.shape[1:])
    needs_grad = torch.is_grad_enabled() and (
        cur.requires_grad
        or (recurrent is not None and recurrent.requires_grad)
        or (state is not None and state.membrane.requires_grad)
    )
    if needs_grad:
        out_s, out_m, m_last = _scan_autograd(
            cur, leak, theta, reset, spike_fn, recurrent, return_membrane, state
        )
    else:
        with torch.no_grad():
            out_s, out_m, m_last = _scan_inplace(
                cur, leak, theta, reset, recurrent, return_membrane, state
            )
    if return_state:
        last_s = (
            out_s[-1]
            if out_s.shape[0]
            else (state.spikes if state is not None else torch.zeros_like(m_last))
        )
        new_state = LIFState(m_last, last_s)
    if not time_major:
        out_s = out_s.transpose(0, 1)
        out_m = out_m.transpose(0, 1) if out_m is not None else None
    if return_state:
        return out_s, out_m, new_state
    return out_s, out_m


def _check_state(state: LIFState, shape: torch.Size) -> None:
    """A state must match the per-step shape ``(B, K, n)`` of the current it continues."""
    if not isinstance(state, LIFState):
        raise TypeError(f"state must be a LIFState, got {type(state).__name__}")
    for name, t in zip(("membrane", "spikes"), state):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(shape):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(
                f"state.{name} must have the per-step shape {tuple(shape)} "
                f"(batch, branches, neurons) of the current, got {got}"
            )


def _scan_autograd(cur, leak, theta, reset, spike_fn, recurrent, return_membrane, state=None):
    """Differentiable scan over a time-major current, one :func:`lif_step` per step."""
    if state is None:
        m = torch.zeros_like(cur[0])
        s = None
    else:
        m = state.membrane.to(cur.dtype)
        s = state.spikes.to(cur.dtype)
    spikes, membranes = [], []
    # unbind (not cur[t]): indexing would make every step's backward build and sum a zero-filled
    # gradient of the whole (T, ...) current, which costs O(T^2)
    for i_t in cur.unbind(0):
        if recurrent is not None and s is not None:
            i_t = i_t + _recurrent_input(s, recurrent)
        s, m = lif_step(m, i_t, leak=leak, theta=theta, reset=reset, spike_fn=spike_fn)
        spikes.append(s)
        if return_membrane:
            membranes.append(m)
    out_m = torch.stack(membranes, 0) if return_membrane else None
    out_s = torch.stack(spikes, 0) if spikes else torch.empty_like(cur)
    return out_s, out_m, m


def _scan_inplace(cur, leak, theta, reset, recurrent, return_membrane, state=None):
    """Gradient-free scan writing into preallocated buffers.

    Performs exactly the floating-point operations of :func:`lif_step` in the same order
    (``u = fl(fl(leak * m) + I)``, ``m = fl(u - fl(theta * s))`` or ``u * (1 - s)``), so its spikes and
    membranes are bit-identical to the differentiable path; only allocations are saved.
    """
    T = cur.shape[0]
    out_s = torch.empty_like(cur)
    out_m = torch.empty_like(cur) if return_membrane else None
    if state is None:
        m = torch.zeros(cur.shape[1:], dtype=cur.dtype, device=cur.device)
        s_prev = None
    else:
        m = state.membrane.to(dtype=cur.dtype, copy=True)
        s_prev = state.spikes.to(cur.dtype)
    u = torch.empty_like(m)
    for t in range(T):
        torch.mul(m, leak, out=u)
        prev = out_s[t - 1] if t > 0 else s_prev
        if recurrent is not None and prev is not None:
            u.add_(cur[t] + _recurrent_input(prev, recurrent))
        else:
            u.add_(cur[t])
        s = out_s[t]
        torch.ge(u, theta, out=s)  # 0/1 written straight into the float spike buffer
        if reset == "subtract":
            # s is 0 or 1, so theta * s is exact and the fused alpha form rounds like u - theta*s
            torch.sub(u, s, alpha=theta, out=m)
        else:
            torch.mul(u, 1 - s, out=m)
        if out_m is not None:
            out_m[t].copy_(m)
    return out_s, out_m, m


def layer_current(
    inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Feed-forward current :math:`I = s^{l-1} W_l (+ b_l)` for all steps at once.

    ``inputs`` is ``(B, T, d)`` (the network input, shared by all branches) or ``(B, T, K, n_in)``
    (the previous layer's spikes); ``weight`` is ``(K, n_in, n_out)``. Returns ``(B, T, K, n_out)``.
    """
    K, n_in, n_out = weight.shape
    if inputs.ndim == 3:
        B, T, _ = inputs.shape
        w = weight.permute(1, 0, 2).reshape(n_in, K * n_out)
        cur = (inputs.reshape(B * T, n_in) @ w).reshape(B, T, K, n_out)
    else:
        B, T = inputs.shape[:2]
        if K == 1:
            cur = (inputs.reshape(B * T, n_in) @ weight[0]).reshape(B, T, 1, n_out)
        else:
            x = inputs.reshape(B * T, K, n_in).transpose(0, 1)  # (K, BT, n_in)
            cur = torch.bmm(x, weight).transpose(0, 1).reshape(B, T, K, n_out)
    if bias is not None:
        cur = cur + bias
    return cur


@dataclass
class Trace:
    """Spikes (and optionally post-reset membranes) of every layer, each ``(B, T, K, n_l)``."""

    spikes: list[torch.Tensor]
    membranes: list[torch.Tensor] | None = None


@renamed_kwargs(beta="leak")
def simulate(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    *,
    biases: Sequence[torch.Tensor | None] | None = None,
    recurrent: Sequence[torch.Tensor | None] | None = None,
    leak: float = 0.99,
    theta: float = 1.0,
    reset: str = "subtract",
    spike_fn: SpikeFn | None = None,
    return_membrane: bool = False,
) -> Trace:
    r"""Simulate a stack of parallel LIF layers on inputs ``x`` of shape ``(B, T, d)``.

    Layer :math:`l` receives the spikes of layer :math:`l-1` (the real-valued input for
    :math:`l = 1`) through ``weights[l]`` of shape ``(K, n_{l-1}, n_l)``; ``biases[l]`` (``(K, n_l)``)
    and ``recurrent[l]`` (``(K, n_l, n_l)`` or ``(K, n_l)``) are optional per layer.

    Returns
    -------
    Trace
        ``spikes[l]`` and, with ``return_membrane``, ``membranes[l]``, each ``(B, T, K, n_l)``.
    """
    check_choice(reset, "reset", RESETS)
    n_layers = len(weights)
    biases = list(biases) if biases is not None else [None] * n_layers
    recurrent = list(recurrent) if recurrent is not None else [None] * n_layers
    if len(biases) != n_layers or len(recurrent) != n_layers:
        raise ValueError(f"biases and recurrent must have one entry per layer ({n_layers})")
    spikes, membranes = [], []
    h = x.transpose(0, 1)  # time-major (T, B, d): every per-step slice is contiguous
    for w, b, r in zip(weights, biases, recurrent):
        cur = layer_current(h, w, b)
        s, m = lif_scan(
            cur,
            leak=leak,
            theta=theta,
            reset=reset,
            spike_fn=spike_fn,
            recurrent=r,
            return_membrane=return_membrane,
            time_major=True,
        )
        spikes.append(s.transpose(0, 1))
        if return_membrane:
            membranes.append(m.transpose(0, 1))
        h = s
    return Trace(spikes, membranes if return_membrane else None)
