r"""Export a :class:`~convexsnn.network.ParallelSNN` to NIR, and read it back.

NIR (the Neuromorphic Intermediate Representation, https://neuroir.org) describes a network as a
graph of continuous-time nodes joined by identity edges; a node with several incoming edges
receives their **sum**, and a cycle of edges is a recurrent connection. This module writes such a
graph with :func:`to_nir` / :func:`export_nir` and reads one back with :func:`from_nir_graph` /
:func:`import_nir`, which rebuild a ``ParallelSNN`` and run it with convexsnn's own LIF
(:mod:`convexsnn.lif`); :func:`simulate_nir` does both in one call.

Graph layout
------------
For branch ``k`` and LIF layer ``l`` (node names use underscores so that backends that turn them
into ``torch`` module names accept them)::

    input -> b{k}_l0_w -> b{k}_l0_neuron -> b{k}_l1_w -> ... -> b{k}_readout -> output
                             |      ^
                             v      |
                           b{k}_l0_rec        (recurrent networks only: a cycle)

* ``b{k}_l{l}_w``: ``Linear`` with weight ``W_l[k].T`` (NIR stores ``(out, in)``; convexsnn stores
  ``(in, out)``), or ``Affine`` with the layer bias when the network has biases.
* ``b{k}_l{l}_neuron``: ``LIF`` (``IF`` when :math:`\beta = 1`), one entry per neuron.
* ``b{k}_l{l}_rec``: ``Linear`` with weight ``W_rec[k].T`` (dense recurrence) or ``Scale`` with
  the self-weights (diagonal recurrence), from the layer's spikes back into its own neurons. The
  cycle is the recurrence; a backend evaluates it with a one-step delay, which is convexsnn's
  :math:`s_{t-1} W^{rec}`.
* ``b{k}_readout``: ``Linear`` with weight ``W_out[k n : (k+1) n].T``, shape ``(C, n_last)``. All
  branches' readouts feed the single ``output`` node, which sums them: :math:`z_t = \sum_k r^k_t
  W_{out,k}`. With an output bias, branch 0's readout is an ``Affine`` carrying it (added once).

Neuron mapping (forward Euler with step ``dt``)
-----------------------------------------------
NIR's LIF is :math:`\tau \dot v = (v_{leak} - v) + R I`. One forward-Euler step of length
:math:`\Delta t` gives :math:`v_{t} = v_{t-1} + \frac{\Delta t}{\tau}(v_{leak} - v_{t-1} + R I_t)`,
which equals convexsnn's :math:`u_t = \beta m_{t-1} + I_t` when

.. math::

    v_{leak} = 0, \qquad \tau = \frac{\Delta t}{1 - \beta}, \qquad
    R = \frac{\tau}{\Delta t} = \frac{1}{1 - \beta}
    \quad(\text{so } \beta = 1 - \Delta t/\tau \text{ and the input gain } R\Delta t/\tau = 1).

For :math:`\beta = 1` (no leak) :math:`\tau` would be infinite, so the neuron is written as NIR's
``IF`` (:math:`\dot v = R I`) with :math:`R = 1/\Delta t` instead: exact, nothing approximated.
For :math:`\beta = 0`, :math:`\tau = \Delta t` and :math:`R = 1`. ``dt`` only sets the time unit
a backend should step with; any ``dt`` describes the same discrete network.

Threshold: convexsnn spikes when :math:`u_t \ge \theta`; NIR's LIF/IF/Threshold fire when
:math:`v > v_{thr}` (strict). The node stores :math:`v_{thr} = \mathrm{nextafter}(\theta,
-\infty)` in the network's float dtype, the largest float below :math:`\theta`, so that on that
float grid :math:`v > v_{thr} \iff v \ge \theta` exactly. :func:`nir_neuron_parameters` returns
all these values.

What NIR cannot express, and what happens
------------------------------------------
* **Subtract reset** (convexsnn's default, :math:`m_t = u_t - \theta s_t`): NIR's LIF resets to
  ``v_reset`` (``0`` here), which is the zero reset :math:`m_t = u_t(1 - s_t)`. Exporting a
  subtract-reset network as LIF nodes raises a :class:`NIRExportWarning`, and the graph's metadata
  records ``reset="subtract"`` so :func:`simulate_nir` reproduces the network exactly. With
  ``exact_reset=True`` the neuron is instead written as an exact NIR composite: a leaky integrator
  ``LI`` (``I`` when :math:`\beta = 1`) holding the pre-reset membrane :math:`u_t`, a
  ``Threshold`` node emitting the spikes, and a ``Scale`` node of :math:`-\beta\theta` from the
  spikes back into the integrator (metadata ``role="reset"``): indeed
  :math:`u_t = \beta u_{t-1} - \beta\theta s_{t-1} + I_t`. Any NIR backend then computes the
  subtract reset without help, at the price of a graph that hardware mapping LIF nodes to neuron
  cores may not accept. No warning in that case.
* **Membrane readout** :math:`r_t = \mathbb{1}[m_t \ge b]` (``readout="membrane"``): no NIR node
  outputs it. The graph reads out the last layer's spikes, a :class:`NIRExportWarning` is raised,
  and the metadata records ``readout="membrane"`` and ``readout_bias`` so :func:`simulate_nir`
  reproduces the network exactly.
* ``strict=True`` turns both warnings into a :class:`NIRExportError` (a ``ValueError``).
* ``output="last"`` (scores read at the last step) is a read-out convention, not a computation: the
  graph streams scores at every step and the metadata records ``output``.

Metadata
--------
``graph.metadata`` holds ``format="convexsnn.ParallelSNN"``, ``format_version``, ``dt``, ``beta``
(the leak: the metadata key keeps this name, so graphs exported earlier read alike), ``theta``,
``reset``, ``readout``, ``readout_bias``, ``output``, ``graph_reset`` (the reset the nodes
themselves express), ``neuron_nodes``, ``inexpressible`` (the warnings, or ``"none"``) and
``config`` (the network's full config as JSON). Every node carries ``branch``, ``layer`` and
``role``; neuron nodes also ``beta``, ``theta``, ``reset`` and ``dt``. The importer rebuilds the
exact network from this metadata and the node weights, after checking that the node values still
agree with the metadata (an edited graph is refused rather than silently misread). A graph without
convexsnn metadata (written by another tool) is read from its nodes alone, given ``dt``: zero reset
for LIF/IF nodes, :math:`\beta = 1 - \Delta t/\tau`, :math:`\theta = \mathrm{nextafter}(v_{thr},
+\infty)`, spike readout, scores at every step; such values are recovered up to rounding.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._checks import check_positive_float, rename_keys, renamed_kwargs
from .._io import atomic_write_with
from ..lif import Trace, check_leak
from ..network import ParallelSNN

__all__ = [
    "NIR_METADATA_FORMAT",
    "NIRExportError",
    "NIRExportWarning",
    "export_nir",
    "from_nir_graph",
    "import_nir",
    "nir_neuron_parameters",
    "simulate_nir",
    "to_nir",
]

logger = logging.getLogger("convexsnn")

NIR_METADATA_FORMAT = "convexsnn.ParallelSNN"
_METADATA_VERSION = 1
# relative tolerance when checking node values against the metadata / the unit input gain
_RTOL = 1e-5


class NIRExportWarning(UserWarning):
    """A feature of the network has no NIR node; it is kept in the graph's metadata only."""


class NIRExportError(ValueError):
    """Raised by ``strict=True`` exports for a feature that NIR cannot express."""


def _import_nir():
    try:
        import nir
    except ImportError as exc:
        raise ImportError(
            "NIR export needs the optional dependency 'nir', which is not installed; install it "
            "with `pip install convexsnn[nir]`"
        ) from exc
    return nir


@renamed_kwargs(beta="leak")
def nir_neuron_parameters(
    leak: float, theta: float, dt: float, dtype: Any = np.float64
) -> dict[str, float]:
    r"""NIR node values of one convexsnn LIF neuron (see the module docstring).

    Parameters
    ----------
    leak, theta : float
        Leak :math:`\beta` and threshold of the convexsnn neuron.
    dt : float
        Forward-Euler step a NIR backend should use.
    dtype : numpy dtype
        Float dtype of the network; the threshold is the float just below ``theta`` in it.

    Returns
    -------
    dict
        ``tau`` :math:`= \Delta t/(1-\beta)` (``inf`` for :math:`\beta = 1`, exported as ``IF``),
        ``r`` :math:`= 1/(1-\beta)` (:math:`1/\Delta t` for :math:`\beta = 1`), ``v_leak = 0``,
        ``v_reset = 0``, ``v_threshold`` :math:`= \mathrm{nextafter}(\theta, -\infty)` and
        ``reset_scale`` :math:`= -\beta\theta` (the feedback weight of ``exact_reset`` graphs),
        each rounded to ``dtype``.
    """
    leak = check_leak(leak)
    theta = check_positive_float(theta, "theta")
    dt = check_positive_float(dt, "dt")
    typ = np.dtype(dtype).type
    if leak == 1.0:
        tau, r = np.inf, 1.0 / dt
    else:
        tau, r = dt / (1.0 - leak), 1.0 / (1.0 - leak)
    v_thr = np.nextafter(typ(theta), typ(-np.inf))
    return {
        "tau": float(typ(tau)),
        "r": float(typ(r)),
        "v_leak": 0.0,
        "v_reset": 0.0,
        "v_threshold": float(v_thr),
        "reset_scale": float(typ(-leak * theta)),
    }


# ---------------------------------------------------------------------------------------- export
def _inexpressible(cfg: dict, exact_reset: bool) -> list[str]:
    problems = []
    if cfg["reset"] == "subtract" and not exact_reset:
        problems.append(
            "the network uses a subtract reset (m = u - theta*s), but NIR's LIF resets to v_reset "
            "(a zero reset); the LIF nodes therefore express a zero reset and the true reset is "
            "kept in the graph metadata only (convexsnn.export.simulate_nir honours it; pass "
            "exact_reset=True for an exact LI + Threshold + reset-feedback graph)"
        )
    if cfg["readout"] == "membrane":
        problems.append(
            f"the network reads out the membrane indicator 1[m >= {cfg['readout_bias']}], which "
            "no NIR node outputs; the graph reads out the last layer's spikes and the membrane "
            "readout is kept in the graph metadata only (convexsnn.export.simulate_nir honours it)"
        )
    return problems


def _build_graph(model: ParallelSNN, dt: float, exact_reset: bool, strict: bool, stacklevel: int):
    nir = _import_nir()
    from .. import __version__

    if not isinstance(model, ParallelSNN):
        raise TypeError(f"model must be a ParallelSNN, got {type(model).__name__}")
    dt = check_positive_float(dt, "dt")
    cfg = model.config
    leak, theta, reset = float(cfg["leak"]), float(cfg["theta"]), cfg["reset"]
    problems = _inexpressible(cfg, exact_reset)
    if problems and strict:
        raise NIRExportError(
            "NIR cannot express this network (strict=True): " + "; ".join(problems)
        )
    for msg in problems:
        warnings.warn(msg, NIRExportWarning, stacklevel=stacklevel)

    npdt = np.float64 if model.dtype == torch.float64 else np.float32
    p = nir_neuron_parameters(leak, theta, dt, npdt)
    integrate = leak == 1.0
    composite = bool(exact_reset) and reset == "subtract"
    if composite:
        neuron_nodes = "I+Threshold" if integrate else "LI+Threshold"
    else:
        neuron_nodes = "IF" if integrate else "LIF"

    def arr(t: torch.Tensor) -> np.ndarray:
        return np.array(t.detach().cpu().numpy(), dtype=npdt, copy=True)

    def full(n: int, value: float) -> np.ndarray:
        return np.full(n, value, dtype=npdt)

    neuron_meta = {"beta": leak, "theta": theta, "reset": reset, "dt": dt}
    K, widths = model.n_branches, model.hidden_widths
    n_last, n_out = widths[-1], cfg["n_outputs"]
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array([cfg["n_inputs"]]))}
    edges: list[tuple[str, str]] = []
    with torch.no_grad():
        for k in range(K):
            src = "input"
            for l, n in enumerate(widths):
                tag = f"b{k}_l{l}"
                meta = {"branch": k, "layer": l}
                w = arr(model.weights[l][k]).T.copy()  # NIR layout (out, in)
                if model.biases is not None:
                    nodes[f"{tag}_w"] = nir.Affine(
                        weight=w, bias=arr(model.biases[l][k]), metadata={**meta, "role": "weight"}
                    )
                else:
                    nodes[f"{tag}_w"] = nir.Linear(weight=w, metadata={**meta, "role": "weight"})
                edges.append((src, f"{tag}_w"))
                if composite:
                    mem, spk = f"{tag}_membrane", f"{tag}_spike"
                    mmeta = {**meta, **neuron_meta, "role": "membrane"}
                    if integrate:
                        nodes[mem] = nir.I(r=full(n, p["r"]), metadata=mmeta)
                    else:
                        nodes[mem] = nir.LI(
                            tau=full(n, p["tau"]),
                            r=full(n, p["r"]),
                            v_leak=full(n, 0.0),
                            metadata=mmeta,
                        )
                    nodes[spk] = nir.Threshold(
                        threshold=full(n, p["v_threshold"]),
                        metadata={**meta, **neuron_meta, "role": "spike"},
                    )
                    nodes[f"{tag}_reset"] = nir.Scale(
                        scale=full(n, p["reset_scale"]), metadata={**meta, "role": "reset"}
                    )
                    edges += [
                        (f"{tag}_w", mem),
                        (mem, spk),
                        (spk, f"{tag}_reset"),
                        (f"{tag}_reset", mem),
                    ]
                else:
                    mem = spk = f"{tag}_neuron"
                    nmeta = {**meta, **neuron_meta, "role": "neuron"}
                    if integrate:
                        nodes[mem] = nir.IF(
                            r=full(n, p["r"]),
                            v_threshold=full(n, p["v_threshold"]),
                            v_reset=full(n, 0.0),
                            metadata=nmeta,
                        )
                    else:
                        nodes[mem] = nir.LIF(
                            tau=full(n, p["tau"]),
                            r=full(n, p["r"]),
                            v_leak=full(n, 0.0),
                            v_threshold=full(n, p["v_threshold"]),
                            v_reset=full(n, 0.0),
                            metadata=nmeta,
                        )
                    edges.append((f"{tag}_w", mem))
                if model.recurrent_weights is not None:
                    wr = arr(model.recurrent_weights[l][k])
                    rmeta = {**meta, "role": "recurrent"}
                    rec = (
                        nir.Linear(weight=wr.T.copy(), metadata=rmeta)
                        if wr.ndim == 2
                        else nir.Scale(scale=wr, metadata=rmeta)
                    )
                    nodes[f"{tag}_rec"] = rec
                    edges += [(spk, f"{tag}_rec"), (f"{tag}_rec", mem)]
                src = spk
            wo = arr(model.output_weight[k * n_last : (k + 1) * n_last]).T.copy()  # (C, n_last)
            rmeta = {"branch": k, "role": "readout"}
            if model.output_bias is not None and k == 0:
                nodes[f"b{k}_readout"] = nir.Affine(
                    weight=wo, bias=arr(model.output_bias), metadata=rmeta
                )
            else:
                nodes[f"b{k}_readout"] = nir.Linear(weight=wo, metadata=rmeta)
            edges += [(src, f"b{k}_readout"), (f"b{k}_readout", "output")]
    nodes["output"] = nir.Output(output_type=np.array([n_out]))

    metadata = {
        "format": NIR_METADATA_FORMAT,
        "format_version": _METADATA_VERSION,
        "convexsnn_version": __version__,
        "dt": dt,
        "beta": leak,
        "theta": theta,
        "reset": reset,
        "readout": cfg["readout"],
        "readout_bias": float(cfg["readout_bias"]),
        "output": cfg["output"],
        "graph_reset": "subtract" if composite else "zero",
        "neuron_nodes": neuron_nodes,
        "spike_rule": "s = 1[u >= theta]; stored thresholds are nextafter(theta, -inf) so that "
        "NIR's strict v > v_threshold agrees on the network's float grid",
        "inexpressible": "; ".join(problems) if problems else "none",
        "config": json.dumps(cfg, sort_keys=True),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)
    logger.info(
        "built NIR graph: %d nodes, %d edges (K=%d, widths=%s, %s neurons)",
        len(nodes),
        len(edges),
        K,
        widths,
        neuron_nodes,
    )
    return graph


def to_nir(
    model: ParallelSNN, *, dt: float = 1e-3, exact_reset: bool = False, strict: bool = False
):
    r"""Build the NIR graph of a network (see the module docstring for the mapping).

    Parameters
    ----------
    model : ParallelSNN
        The network (any device, float32 or float64; node arrays keep its dtype).
    dt : float
        Forward-Euler step: :math:`\tau = \Delta t/(1-\beta)`, :math:`R = 1/(1-\beta)`.
    exact_reset : bool
        For a subtract-reset network, write each neuron as ``LI`` + ``Threshold`` + a reset
        feedback ``Scale`` (exact in NIR) instead of a ``LIF`` node (zero reset in NIR, warned).
    strict : bool
        Raise :class:`NIRExportError` instead of warning when a feature cannot be expressed.

    Returns
    -------
    nir.NIRGraph

    Warns
    -----
    NIRExportWarning
        Subtract reset exported as LIF nodes; membrane readout. Both are kept in the metadata.

    Raises
    ------
    ImportError
        ``nir`` is not installed (``pip install convexsnn[nir]``).
    """
    return _build_graph(model, dt, exact_reset, strict, stacklevel=3)


def export_nir(
    model: ParallelSNN,
    path: str | os.PathLike,
    dt: float = 1e-3,
    *,
    exact_reset: bool = False,
    strict: bool = False,
) -> Path:
    """Write the NIR graph of ``model`` to ``path`` (HDF5, ``nir.write``), atomically.

    The graph is written to a temporary file in the destination directory, synced, then moved
    over ``path`` with :func:`os.replace`, so a reader never sees a half-written file. Arguments
    as in :func:`to_nir`. Returns the path written.
    """
    nir = _import_nir()
    graph = _build_graph(model, dt, exact_reset, strict, stacklevel=3)
    path = atomic_write_with(path, lambda tmp: nir.write(tmp, graph))
    logger.info("wrote NIR graph to %s", path)
    return path


# ---------------------------------------------------------------------------------------- import
@dataclass
class _Layer:
    name: str
    weight: np.ndarray  # NIR layout (n_out, n_in)
    bias: np.ndarray | None
    neuron: Any  # LIF / IF / LI / I node
    threshold: np.ndarray  # v_threshold of LIF/IF, or the Threshold node's threshold
    rec: np.ndarray | None  # (n, n) NIR layout, or (n,) self-weights
    reset_scale: np.ndarray | None


@dataclass
class _Branch:
    layers: list[_Layer]
    readout_weight: np.ndarray  # (C, n_last)
    readout_bias: np.ndarray | None
    index: int | None


def _role(node: Any) -> str:
    meta = getattr(node, "metadata", None) or {}
    role = meta.get("role", "")
    return role.decode() if isinstance(role, bytes) else str(role)


def _parse_graph(nir, graph) -> tuple[int, int, list[_Branch]]:
    """Walk input -> (weight -> neuron)* -> readout -> output for every branch."""
    nodes = graph.nodes
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    outputs = [k for k, v in nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"expected one Input and one Output node, found inputs {inputs} and outputs {outputs}"
        )
    inp, out = inputs[0], outputs[0]
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in graph.edges:
        if a not in nodes or b not in nodes:
            raise ValueError(f"edge ({a!r}, {b!r}) names a node that is not in the graph")
        succ[a].append(b)
        pred[b].append(a)
    n_inputs = int(np.prod(nodes[inp].output_type["output"]))
    n_outputs = int(np.prod(nodes[out].input_type["input"]))
    if not succ[inp]:
        raise ValueError("the Input node has no outgoing edge")
    weight_types = (nir.Linear, nir.Affine)

    def walk(head: str) -> _Branch:
        layers: list[_Layer] = []
        name, prev = head, inp
        for _ in range(len(nodes)):
            wnode = nodes[name]
            if not isinstance(wnode, weight_types):
                raise ValueError(
                    f"node {name!r} ({type(wnode).__name__}) after {prev!r}: expected "
                    "a Linear or Affine weight node"
                )
            if pred[name] != [prev]:
                raise ValueError(
                    f"weight node {name!r} must have exactly one input ({prev!r}), has {pred[name]}"
                )
            weight = np.asarray(wnode.weight)
            if weight.ndim != 2:
                raise ValueError(f"weight node {name!r} has a {weight.ndim}-D weight; expected 2-D")
            bias = np.asarray(wnode.bias) if isinstance(wnode, nir.Affine) else None
            if len(succ[name]) != 1:
                raise ValueError(
                    f"weight node {name!r} must feed exactly one neuron node, feeds {succ[name]}"
                )
            mem = succ[name][0]
            neuron = nodes[mem]
            if isinstance(neuron, (nir.LIF, nir.IF)):
                spk, thr = mem, np.asarray(neuron.v_threshold)
            elif isinstance(neuron, (nir.LI, nir.I)):
                s = succ[mem]
                if len(s) != 1 or not isinstance(nodes[s[0]], nir.Threshold):
                    raise ValueError(
                        f"{type(neuron).__name__} node {mem!r} must feed exactly one "
                        "Threshold node (the spikes)"
                    )
                spk, thr = s[0], np.asarray(nodes[s[0]].threshold)
            else:
                raise ValueError(
                    f"node {mem!r} is a {type(neuron).__name__}; convexsnn reads LIF, "
                    "IF, or LI/I + Threshold neurons"
                )
            loops, forward, readouts = [], [], []
            for x in succ[spk]:
                xs = succ[x]
                if xs == [mem]:
                    loops.append(x)
                elif any(isinstance(nodes[y], nir.Output) for y in xs):
                    if xs != [out]:
                        raise ValueError(f"readout node {x!r} must feed only the Output node")
                    readouts.append(x)
                else:
                    forward.append(x)
            if sorted(pred[mem]) != sorted([name] + loops):
                raise ValueError(f"neuron node {mem!r} has unexpected inputs {pred[mem]}")
            rec = reset_scale = None
            for x in loops:
                node = nodes[x]
                if _role(node) == "reset":
                    if not isinstance(node, nir.Scale) or reset_scale is not None:
                        raise ValueError(
                            f"reset feedback {x!r} must be the single Scale node "
                            f"with role 'reset' of {mem!r}"
                        )
                    reset_scale = np.asarray(node.scale)
                elif rec is not None:
                    raise ValueError(f"neuron node {mem!r} has more than one recurrent node")
                elif isinstance(node, nir.Linear):
                    rec = np.asarray(node.weight)
                elif isinstance(node, nir.Scale):
                    rec = np.asarray(node.scale)
                else:
                    raise ValueError(
                        f"recurrent node {x!r} is a {type(node).__name__}; expected "
                        "Linear (dense) or Scale (diagonal)"
                    )
            if isinstance(neuron, (nir.LI, nir.I)) and reset_scale is None:
                raise ValueError(
                    f"{type(neuron).__name__} node {mem!r} has no reset feedback "
                    "(a Scale node with metadata role 'reset' from its spikes)"
                )
            if isinstance(neuron, (nir.LIF, nir.IF)) and reset_scale is not None:
                raise ValueError(
                    f"{type(neuron).__name__} node {mem!r} has a reset feedback node; "
                    "only LI/I + Threshold neurons take one"
                )
            n = weight.shape[0]
            shapes_ok = thr.shape == (n,) and (rec is None or rec.shape in ((n,), (n, n)))
            if not shapes_ok:
                raise ValueError(
                    f"layer at {mem!r}: neuron/recurrent parameters do not match the "
                    f"{n} outputs of {name!r}"
                )
            layers.append(_Layer(name, weight, bias, neuron, thr, rec, reset_scale))
            if readouts:
                if forward or len(readouts) != 1:
                    raise ValueError(
                        f"spikes of {spk!r} must feed either one readout node or one "
                        f"next layer, feed {succ[spk]}"
                    )
                ro = nodes[readouts[0]]
                if not isinstance(ro, weight_types) or pred[readouts[0]] != [spk]:
                    raise ValueError(
                        f"readout node {readouts[0]!r} must be a Linear/Affine node "
                        f"fed only by {spk!r}"
                    )
                meta = getattr(nodes[head], "metadata", None) or {}
                idx = meta.get("branch")
                return _Branch(
                    layers,
                    np.asarray(ro.weight),
                    np.asarray(ro.bias) if isinstance(ro, nir.Affine) else None,
                    int(idx) if idx is not None else None,
                )
            if len(forward) != 1:
                raise ValueError(
                    f"spikes of {spk!r} must feed one next-layer weight node, feed {succ[spk]}"
                )
            prev, name = spk, forward[0]
        raise ValueError(f"branch starting at {head!r} does not reach the Output node")

    branches = [walk(h) for h in succ[inp]]
    idx = [b.index for b in branches]
    if all(i is not None for i in idx) and sorted(idx) == list(range(len(branches))):
        branches.sort(key=lambda b: b.index)
    return n_inputs, n_outputs, branches


def _neuron_values(nir, layer: _Layer, dt: float) -> dict[str, np.ndarray | str]:
    """leak, input gain, theta and expressed reset of one layer, from its node values."""
    node = layer.neuron
    v = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    if isinstance(node, (nir.LIF, nir.LI)):
        tau, r = v(node.tau), v(node.r)
        leak, gain, v_leak = 1.0 - dt / tau, r * dt / tau, v(node.v_leak)
    else:  # IF / I: dv/dt = R I
        leak, gain, v_leak = np.ones_like(v(node.r)), v(node.r) * dt, np.zeros_like(v(node.r))
    v_reset = v(
        getattr(node, "v_reset", None)
        if getattr(node, "v_reset", None) is not None
        else np.zeros_like(v_leak)
    )
    if np.any(v_leak != 0) or np.any(v_reset != 0):
        raise ValueError(f"layer {layer.name!r}: v_leak and v_reset must be 0 for a convexsnn LIF")
    thr = np.asarray(layer.threshold)
    if not np.issubdtype(thr.dtype, np.floating):
        thr = thr.astype(np.float64)
    theta = np.nextafter(thr, np.array(np.inf, dtype=thr.dtype)).astype(np.float64)
    reset = "subtract" if layer.reset_scale is not None else "zero"
    return {"leak": leak, "gain": gain, "theta": theta, "reset": reset}


def _uniform(values: list[np.ndarray], what: str) -> float:
    allv = np.concatenate([np.ravel(x) for x in values])
    if not np.all(np.isfinite(allv)):
        raise ValueError(f"{what} is not finite in every neuron")
    if not np.allclose(allv, allv[0], rtol=_RTOL, atol=1e-9):
        raise ValueError(
            f"{what} differs between neurons ({allv.min()} .. {allv.max()}); a "
            "ParallelSNN has one value for all neurons"
        )
    return float(allv[0])


def _meta_get(meta: dict, key: str) -> Any:
    val = meta[key]
    if isinstance(val, bytes):
        return val.decode()
    if isinstance(val, np.generic):
        return val.item()
    return val


def from_nir_graph(graph, *, dt: float | None = None) -> ParallelSNN:
    r"""Rebuild a :class:`ParallelSNN` from a NIR graph (e.g. one read back with ``nir.read``).

    The graph must have the layout written by :func:`to_nir`: one ``Input``, per branch a chain
    of (``Linear``/``Affine`` -> ``LIF``/``IF`` or ``LI``/``I`` + ``Threshold``) layers with
    optional recurrent cycles, a ``Linear``/``Affine`` readout per branch, one ``Output``.

    With convexsnn metadata the network is rebuilt exactly (config from the metadata, weights from
    the nodes), after checking that the nodes still agree with the metadata. Without it, ``dt``
    must be given and the neuron constants are derived from the nodes (module docstring).

    Parameters
    ----------
    graph : nir.NIRGraph
    dt : float, optional
        Forward-Euler step. Read from the metadata when present (a different ``dt`` is an error).

    Returns
    -------
    ParallelSNN
        On the CPU, in the dtype of the exported network (float64 for foreign float64 weights,
        float32 otherwise).

    Raises
    ------
    ValueError
        The graph is not a parallel LIF network convexsnn can read, or disagrees with its metadata.
    """
    nir = _import_nir()
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph must be a nir.NIRGraph, got {type(graph).__name__}")
    meta = dict(graph.metadata or {})
    ours = meta.get("format") in (NIR_METADATA_FORMAT, NIR_METADATA_FORMAT.encode())
    if ours:
        version = int(_meta_get(meta, "format_version"))
        if version != _METADATA_VERSION:
            raise ValueError(
                f"convexsnn NIR metadata version {version} is not supported (this "
                f"convexsnn reads version {_METADATA_VERSION})"
            )
        meta_dt = float(_meta_get(meta, "dt"))
        if dt is not None and not np.isclose(float(dt), meta_dt, rtol=1e-12, atol=0):
            raise ValueError(f"dt={dt} differs from the dt={meta_dt} the graph was exported with")
        dt = meta_dt
    elif dt is None:
        raise ValueError(
            "the graph has no convexsnn metadata; pass dt= (the forward-Euler step "
            "its time constants refer to)"
        )
    dt = check_positive_float(dt, "dt")

    n_inputs, n_outputs, branches = _parse_graph(nir, graph)
    K = len(branches)
    widths = [layer.weight.shape[0] for layer in branches[0].layers]
    for k, br in enumerate(branches):
        w_k = [layer.weight.shape[0] for layer in br.layers]
        if w_k != widths:
            raise ValueError(
                f"branch {k} has widths {w_k}, branch 0 has {widths}; a ParallelSNN "
                "needs equal branches"
            )
        sizes = [n_inputs] + widths
        for l, layer in enumerate(br.layers):
            if layer.weight.shape[1] != sizes[l]:
                raise ValueError(
                    f"{layer.name!r} takes {layer.weight.shape[1]} inputs, expected {sizes[l]}"
                )
        if br.readout_weight.shape != (n_outputs, widths[-1]):
            raise ValueError(
                f"readout of branch {k} has shape {br.readout_weight.shape}, "
                f"expected {(n_outputs, widths[-1])}"
            )

    layers = [layer for br in branches for layer in br.layers]
    vals = [_neuron_values(nir, layer, dt) for layer in layers]
    gain = _uniform([v["gain"] for v in vals], "input gain R*dt/tau")
    if not np.isclose(gain, 1.0, rtol=_RTOL, atol=0):
        raise ValueError(f"input gain R*dt/tau = {gain}; convexsnn neurons need 1 (R = tau/dt)")
    leak = _uniform([v["leak"] for v in vals], "leak beta = 1 - dt/tau")
    theta = _uniform([v["theta"] for v in vals], "threshold")
    resets = {v["reset"] for v in vals}
    if len(resets) != 1:
        raise ValueError("layers mix LIF/IF neurons with LI/I + Threshold neurons")
    graph_reset = resets.pop()
    if graph_reset == "subtract":
        scales = [layer.reset_scale for layer in layers]
        fb = _uniform(scales, "reset feedback")
        if not np.isclose(fb, -leak * theta, rtol=_RTOL, atol=1e-9):
            raise ValueError(f"reset feedback {fb} is not -beta*theta = {-leak * theta}")
    rec_kinds = {
        ("dense" if layer.rec.ndim == 2 else "diagonal")
        for layer in layers
        if layer.rec is not None
    }
    structure = {
        "n_inputs": n_inputs,
        "n_outputs": n_outputs,
        "n_branches": K,
        "hidden_widths": widths,
        "bias": any(layer.bias is not None for layer in layers),
        "output_bias": any(br.readout_bias is not None for br in branches),
        "recurrent": ("dense" if "dense" in rec_kinds else "diagonal" if rec_kinds else None),
    }

    if ours:
        try:
            config = json.loads(_meta_get(meta, "config"))
            # graphs exported before the leak was renamed say "beta": they import unchanged
            config = rename_keys(config, {"beta": "leak"}, "NIR metadata config", warn=False)
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"the graph's convexsnn metadata has no valid config ({exc})"
            ) from None
        _check_against_metadata(
            config, structure, leak, theta, graph_reset, str(_meta_get(meta, "graph_reset"))
        )
        model = ParallelSNN.from_config(config)
    else:
        f64 = any(np.asarray(layer.weight).dtype == np.float64 for layer in layers)
        model = ParallelSNN(
            n_inputs,
            n_outputs,
            n_branches=K,
            hidden_widths=widths,
            leak=min(max(leak, 0.0), 1.0),
            theta=theta,
            reset=graph_reset,
            readout="spike",
            output="all",
            bias=structure["bias"],
            output_bias=structure["output_bias"],
            recurrent=structure["recurrent"],
            dtype=torch.float64 if f64 else torch.float32,
        )
    _load_parameters(model, branches)
    logger.info(
        "rebuilt ParallelSNN from NIR graph (K=%d, widths=%s, %s metadata)",
        K,
        widths,
        "convexsnn" if ours else "no",
    )
    return model


def _check_against_metadata(
    config: dict,
    structure: dict,
    leak: float,
    theta: float,
    graph_reset: str,
    meta_graph_reset: str,
) -> None:
    def fail(what: str) -> None:
        raise ValueError(
            f"the NIR graph does not match its convexsnn metadata: {what} (was the "
            "graph edited after export?)"
        )

    for key in ("n_inputs", "n_outputs", "n_branches", "hidden_widths"):
        if list(np.atleast_1d(config[key])) != list(np.atleast_1d(structure[key])):
            fail(f"{key} is {structure[key]} in the nodes, {config[key]} in the metadata")
    for key in ("bias", "output_bias"):
        if structure[key] and not config[key]:
            fail(f"the nodes carry {key.replace('_', ' ')}es the config has not")
    if structure["recurrent"] is not None and structure["recurrent"] != config["recurrent"]:
        fail(f"recurrent nodes are {structure['recurrent']}, the config says {config['recurrent']}")
    if not np.isclose(leak, config["leak"], rtol=0, atol=1e-6):
        fail(f"tau gives beta = {leak}, the metadata says {config['leak']}")
    if not np.isclose(theta, config["theta"], rtol=_RTOL, atol=0):
        fail(f"v_threshold gives theta = {theta}, the metadata says {config['theta']}")
    if graph_reset != meta_graph_reset:
        fail(
            f"the neuron nodes express a {graph_reset} reset, the metadata says {meta_graph_reset}"
        )
    if graph_reset == "subtract" and config["reset"] != "subtract":
        fail("LI + Threshold + reset feedback nodes on a zero-reset network")


def _load_parameters(model: ParallelSNN, branches: list[_Branch]) -> None:
    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(model.dtype)

    n_last = model.hidden_widths[-1]
    out_bias = None
    with torch.no_grad():
        for k, br in enumerate(branches):
            for l, layer in enumerate(br.layers):
                model.weights[l][k].copy_(t(layer.weight.T))
                if model.biases is not None:
                    if layer.bias is None:
                        model.biases[l][k].zero_()
                    else:
                        model.biases[l][k].copy_(t(layer.bias))
                if model.recurrent_weights is not None:
                    target = model.recurrent_weights[l][k]
                    if layer.rec is None:
                        target.zero_()
                    elif target.ndim == 2:  # dense (n, n)
                        rec = layer.rec.T if layer.rec.ndim == 2 else np.diag(layer.rec)
                        target.copy_(t(rec))
                    elif layer.rec.ndim == 1:
                        target.copy_(t(layer.rec))
                    else:
                        raise ValueError(
                            f"dense recurrent weights at layer {l} of branch {k}, "
                            "but the network's recurrence is diagonal"
                        )
            model.output_weight[k * n_last : (k + 1) * n_last].copy_(t(br.readout_weight.T))
            if br.readout_bias is not None:
                out_bias = br.readout_bias if out_bias is None else out_bias + br.readout_bias
        if model.output_bias is not None:
            if out_bias is None:
                model.output_bias.zero_()
            else:
                model.output_bias.copy_(t(out_bias))


def import_nir(graph_or_path: Any, *, dt: float | None = None) -> ParallelSNN:
    """Read a NIR file with ``nir.read`` (or take a graph) and rebuild the network.

    See :func:`from_nir_graph`.
    """
    nir = _import_nir()
    if isinstance(graph_or_path, (str, os.PathLike)):
        path = Path(graph_or_path)
        if not path.exists():
            raise FileNotFoundError(f"no NIR file at {path}")
        graph = nir.read(path)
    else:
        graph = graph_or_path
    return from_nir_graph(graph, dt=dt)


def simulate_nir(
    graph_or_path: Any, x: Any, *, dt: float | None = None, return_trace: bool = False
) -> torch.Tensor | tuple[torch.Tensor, Trace]:
    """Run a NIR graph (or file) on inputs ``x`` with convexsnn's own LIF.

    Parameters
    ----------
    graph_or_path : nir.NIRGraph or path
        A graph, or a file written by :func:`export_nir` / ``nir.write``.
    x : array-like ``(batch, T, n_inputs)``
    dt : float, optional
        Needed only for graphs without convexsnn metadata.
    return_trace : bool
        Also return the spikes (and post-reset membranes) of every layer.

    Returns
    -------
    scores : Tensor
        ``(batch, C)`` or ``(batch, T, C)`` as the exported network's ``output`` (every step for
        graphs without metadata).
    trace : Trace
        Only with ``return_trace``.
    """
    model = import_nir(graph_or_path, dt=dt)
    with torch.no_grad():
        x = model.check_input(x)
        scores = model(x)
        if return_trace:
            return scores, model.simulate(x, return_membrane=True)
    return scores
