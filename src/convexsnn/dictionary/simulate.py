"""Simulation driver: readout rows of a witness set on inputs, a chunk of samples at a time."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..surrogate import heaviside
from ..witnesses import Witnesses

logger = logging.getLogger("convexsnn")

STEPS = ("last", "all")
_DEFAULT_CHUNK_BYTES = 1 << 28  # ~256 MiB of simulation state per chunk of samples
#: largest single buffer (one layer's currents or spikes for a chunk) that the C allocator
#: recycles between chunks: glibc serves blocks under its mmap threshold (at most 32 MiB) from
#: the heap, while a larger block is a fresh mapping whose every first write page-faults (a
#: spike buffer of 89 MiB made the comparison u >= theta 5x slower per sample than 16 MiB ones)
_MAX_BUFFER_BYTES = 1 << 24


def _auto_chunk(
    w: Witnesses,
    T: int,
    readout: str,
    budget: int = _DEFAULT_CHUNK_BYTES,
    max_buffer: int = _MAX_BUFFER_BYTES,
) -> int:
    """Samples per chunk so that one chunk's simulation state stays within ``budget`` bytes
    (currents, spikes and, for membrane readout, membranes of every layer) and no single
    layer buffer exceeds ``max_buffer`` bytes; a multiple of 8 (whole bytes of packed rows)."""
    el = w.weights[0].element_size()
    per_sample = T * w.n_branches * sum(w.hidden_widths) * el
    per_sample *= 4 if readout == "membrane" else 3
    per_layer = T * w.n_branches * max(w.hidden_widths) * el
    chunk = min(budget // max(per_sample, 1), max_buffer // max(per_layer, 1))
    return max(8, int(chunk) // 8 * 8)


def _iter_readout_rows(
    w: Witnesses,
    x: torch.Tensor,
    readout: str,
    readout_bias: float,
    steps: str,
    chunk: int,
    device,
    unique_inputs: bool,
):
    """Yield the bool readout rows (numpy) of ``x`` in order, ``chunk`` samples at a time."""
    n, T = int(x.shape[0]), int(x.shape[1])
    if unique_inputs:
        xs, inv = _unique_sequences(x)
        if xs.shape[0] == n:
            unique_inputs = False
        else:
            logger.debug("simulating %d distinct input sequences among %d", xs.shape[0], n)
    if not unique_inputs:
        for s0 in range(0, n, chunk):
            yield (
                _readout_rows(w, x[s0 : s0 + chunk], readout, readout_bias, steps, device)
                .cpu()
                .numpy()
            )
        return
    P = w.n_witness_neurons
    uniq = np.concatenate(
        [
            _readout_rows(w, xs[s0 : s0 + chunk], readout, readout_bias, steps, device)
            .cpu()
            .numpy()
            for s0 in range(0, xs.shape[0], chunk)
        ],
        0,
    )
    uniq = uniq.reshape(xs.shape[0], 1 if steps == "last" else T, P)
    for s0 in range(0, n, chunk):
        yield uniq[inv[s0 : s0 + chunk]].reshape(-1, P)


def _unique_sequences(x: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """Distinct sequences of ``x`` (in order of first appearance) and the index of each row."""
    a = np.ascontiguousarray(x.detach().cpu().numpy().reshape(x.shape[0], -1))
    v = a.view(np.dtype((np.void, a.shape[1] * a.itemsize))).ravel()
    _, first, inv = np.unique(v, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return x[torch.from_numpy(np.sort(first))], rank[inv.reshape(-1)]


def _readout_rows(
    w: Witnesses, x: torch.Tensor, readout: str, readout_bias: float, steps: str, device
) -> torch.Tensor:
    """Bool readout rows of one chunk: ``(c, P)`` (last step) or ``(c * T, P)`` (all steps).

    With ``steps="last"`` the readout rule of :meth:`Witnesses.readout` (:math:`s_T`, or
    :math:`\\mathbb 1[m_T - b \\ge 0]`) is applied to the last step only.
    """
    if device is not None:
        x = x.to(device)
    if steps == "all":
        r = w.readout(x, readout=readout, readout_bias=readout_bias)  # (c, T, P) bool
        return r.reshape(-1, r.shape[2])
    membrane = readout == "membrane"
    if not membrane and _fused_ok(w, x):
        return _last_spikes_fused(w, x)
    trace = w.simulate(x, return_membrane=membrane)
    if membrane:
        assert trace.membranes is not None
        last = heaviside(trace.membranes[-1][:, -1] - float(readout_bias))
    else:
        last = trace.spikes[-1][:, -1]
    return (last != 0).reshape(last.shape[0], -1)


def _fused_ok(w: Witnesses, x: torch.Tensor) -> bool:
    """Whether the last layer's spikes at the last step can come from the compiled scan
    (:func:`~convexsnn.dictionary._kernels.last_spikes`): CPU tensors, a float32 / float64
    current, no recurrent weights in the last layer, numba usable."""
    from . import _kernels

    rec = w.recurrent[-1] if w.recurrent is not None else None
    return (
        x.device.type == "cpu"
        and w.weights[-1].device.type == "cpu"
        and w.weights[-1].dtype in (torch.float32, torch.float64)
        and rec is None
        and x.shape[1] > 0
        and _kernels.usable()
    )


def _last_spikes_fused(w: Witnesses, x: torch.Tensor) -> torch.Tensor:
    """``(c, P)`` bool spikes of the last layer at the last step: the layers before it simulated
    as :meth:`Witnesses.simulate` does, the last one's current formed at once and scanned by the
    compiled kernel, which keeps no per-step spike or membrane buffers (profile of a 5.5k x 16k
    build: the scan and its buffers were 14% of the time, the matrix product 71%)."""
    from ..lif import layer_current, lif_scan
    from ._kernels import last_spikes

    x = w.check_input(x)
    n_layers = len(w.weights)
    biases = list(w.biases) if w.biases is not None else [None] * n_layers
    recurrent = list(w.recurrent) if w.recurrent is not None else [None] * n_layers
    with torch.no_grad():
        h = x.transpose(0, 1)  # time-major (T, c, d), as lif.simulate
        for wl, bl, rl in zip(w.weights[:-1], biases[:-1], recurrent[:-1]):
            s, _ = lif_scan(
                layer_current(h, wl, bl),
                leak=w.leak,
                theta=w.theta,
                reset=w.reset,
                recurrent=rl,
                time_major=True,
            )
            h = s
        cur = layer_current(h, w.weights[-1], biases[-1])  # (T, c, K, n)
    T, c = int(cur.shape[0]), int(cur.shape[1])
    out = last_spikes(
        cur.reshape(T, c, -1).numpy(), w.leak, w.theta, subtract=w.reset == "subtract"
    )
    return torch.from_numpy(out)
