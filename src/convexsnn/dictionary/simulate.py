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
    trace = w.simulate(x, return_membrane=membrane)
    if membrane:
        assert trace.membranes is not None
        last = heaviside(trace.membranes[-1][:, -1] - float(readout_bias))
    else:
        last = trace.spikes[-1][:, -1]
    return (last != 0).reshape(last.shape[0], -1)
