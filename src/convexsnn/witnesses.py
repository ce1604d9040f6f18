r"""Witnesses: the hidden weights whose last-layer spikes make the spike dictionary.

A *witness set* is the hidden part of a :class:`~convexsnn.network.ParallelSNN` (its ``K``
branches of LIF layers, no output layer) together with the LIF parameters
(:math:`\beta`, :math:`\theta`, reset) and a JSON-safe description of how it was made. Simulating
it on the training inputs (:mod:`convexsnn.dictionary`) gives one binary column per last-layer
neuron; the convex readout then picks columns, and :mod:`convexsnn.reconstruct` turns the picked
neurons back into a network.

Weights are stored exactly as the network stores them: layer :math:`l` is a tensor
``(K, n_{l-1}, n_l)`` (``n_0`` = input features, shared by all branches), optional biases
``(K, n_l)`` and optional recurrent weights ``(K, n_l, n_l)`` (dense) or ``(K, n_l)`` (diagonal),
all passed through unchanged to :func:`convexsnn.lif.simulate`.

Generators (all seeded with a local :class:`torch.Generator`; the same seed gives bit-identical
weights, the global RNG state is never touched):

* :func:`gaussian_witnesses` -- ``CVX``: :math:`W_l = s_l G_l`, :math:`G_l` standard normal
  (optionally with unit-norm columns);
* :func:`witnesses_from_network` -- ``SG-CVX``: the hidden layers of a (trained) network;
* :func:`concat_witnesses` -- the branches of several sets side by side (e.g. the hidden layers
  of several independently trained SG networks as the ``K`` branches of one parallel network);
* :func:`reservoir_witnesses` -- ``R-CVX``: Gaussian weights whose leak, threshold and input scale
  are tuned on a data sample so that the last layer's activity has branching ratio closest to 1.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._checks import (
    check_choice,
    check_positive_float,
    check_positive_int,
    check_seed,
    check_sequence_input,
    dtype_from_name,
    dtype_name,
    rename_keys,
    renamed_attribute,
    renamed_kwargs,
)
from ._io import json_safe
from .lif import RESETS, Trace, check_leak, simulate
from .network import OUTPUTS, READOUTS, ParallelSNN
from .surrogate import heaviside

__all__ = [
    "Witnesses",
    "gaussian_witnesses",
    "witnesses_from_network",
    "concat_witnesses",
    "reservoir_witnesses",
    "branching_ratio",
    "resolve_widths",
]

logger = logging.getLogger("convexsnn")


def _json_safe(obj: Any, name: str = "description") -> Any:
    """``obj`` in plain JSON types; ``TypeError`` if that is impossible."""
    return json_safe(obj, strict=True, name=name)


def resolve_widths(
    *,
    n_branches: int,
    hidden_widths: Sequence[int] | None = None,
    depth: int | None = None,
    p_rec: int | None = None,
    p_last: int | None = None,
) -> list[int]:
    """Per-branch LIF layer widths, following :class:`~convexsnn.network.ParallelSNN`.

    Either ``hidden_widths`` (per-branch widths of the LIF layers) or ``depth`` ``L`` (counting the
    output layer: ``L - 1`` LIF layers, ``L - 2`` of width ``p_rec / K`` then one of
    ``p_last / K``).
    """
    K = check_positive_int(n_branches, "n_branches")
    if hidden_widths is not None:
        if depth is not None and depth != len(hidden_widths) + 1:
            raise ValueError(
                f"depth={depth} contradicts hidden_widths={list(hidden_widths)} "
                f"(depth counts the output layer: len(hidden_widths) + 1)"
            )
        if len(hidden_widths) == 0:
            raise ValueError("hidden_widths must name at least one LIF layer")
        return [check_positive_int(w, f"hidden_widths[{i}]") for i, w in enumerate(hidden_widths)]
    if depth is None:
        raise ValueError("give hidden_widths (per-branch widths) or depth with p_rec/p_last")
    depth = check_positive_int(depth, "depth")
    if depth < 2:
        raise ValueError(f"depth must be >= 2 (it counts the output layer), got {depth}")
    p_last = check_positive_int(p_last if p_last is not None else 128, "p_last")
    p_rec = check_positive_int(p_rec if p_rec is not None else p_last, "p_rec")
    for name, p in (("p_rec", p_rec), ("p_last", p_last)):
        if p % K:
            raise ValueError(f"{name}={p} is not divisible by n_branches={K}")
    return [p_rec // K] * (depth - 2) + [p_last // K]


@dataclass(eq=False)
class Witnesses:
    r"""Hidden weights of ``K`` parallel LIF branches plus their LIF parameters.

    Parameters
    ----------
    weights : list of Tensor
        ``weights[l]`` of shape ``(K, n_{l-1}, n_l)``: layer :math:`l`'s current is
        :math:`I_t = s^{l-1}_t W_l`.
    biases : list of (Tensor or None), optional
        Per-layer biases ``(K, n_l)`` added to the current.
    recurrent : list of (Tensor or None), optional
        Per-layer recurrent weights ``(K, n_l, n_l)`` or ``(K, n_l)`` (diagonal), giving the extra
        current :math:`s^l_{t-1} W^{rec}_l`. Passed through to :func:`convexsnn.lif.simulate`.
    leak, theta : float
        Leak :math:`\beta \in [0, 1]` and threshold :math:`\theta > 0`.
    reset : {"subtract", "zero"}
        Reset rule (docs/method.md section 1).
    description : dict
        JSON-safe record of how the weights were made: ``kind``, ``seed``, ``options`` and any
        generator-specific fields.
    """

    weights: list[torch.Tensor]
    biases: list[torch.Tensor | None] | None = None
    recurrent: list[torch.Tensor | None] | None = None
    leak: float = 0.99
    theta: float = 1.0
    reset: str = "subtract"
    description: dict = field(default_factory=dict)

    beta = renamed_attribute("leak", "beta")

    def __post_init__(self) -> None:
        if isinstance(self.weights, torch.Tensor) or not isinstance(self.weights, (list, tuple)):
            raise TypeError("weights must be a list of (K, n_in, n_out) tensors")
        if len(self.weights) == 0:
            raise ValueError("weights must hold at least one layer")
        self.weights = [w.detach() if isinstance(w, torch.Tensor) else w for w in self.weights]
        for l, w in enumerate(self.weights):
            if not isinstance(w, torch.Tensor) or w.ndim != 3:
                raise ValueError(
                    f"weights[{l}] must be a (K, n_in, n_out) tensor, got "
                    f"{getattr(w, 'shape', type(w).__name__)}"
                )
        w0 = self.weights[0]
        if w0.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"weights must be float32 or float64, got {w0.dtype}")
        K = w0.shape[0]
        for l, w in enumerate(self.weights):
            if w.dtype != w0.dtype or w.device != w0.device:
                raise ValueError(
                    f"weights[{l}] has dtype/device {w.dtype}/{w.device}, "
                    f"weights[0] has {w0.dtype}/{w0.device}"
                )
            if w.shape[0] != K:
                raise ValueError(f"weights[{l}] has {w.shape[0]} branches, weights[0] has {K}")
            if l and w.shape[1] != self.weights[l - 1].shape[2]:
                raise ValueError(
                    f"weights[{l}] expects {w.shape[1]} inputs but layer {l - 1} has "
                    f"{self.weights[l - 1].shape[2]} neurons"
                )
            if not bool(torch.isfinite(w).all()):
                raise ValueError(f"weights[{l}] contains NaN or inf")
        n = len(self.weights)
        for name in ("biases", "recurrent"):
            lst = getattr(self, name)
            if lst is None:
                continue
            lst = [t.detach() if isinstance(t, torch.Tensor) else t for t in lst]
            if len(lst) != n:
                raise ValueError(f"{name} must have one entry (tensor or None) per layer ({n})")
            for l, t in enumerate(lst):
                if t is None:
                    continue
                width = self.weights[l].shape[2]
                ok = {"biases": [(K, width)], "recurrent": [(K, width, width), (K, width)]}[name]
                if not isinstance(t, torch.Tensor) or tuple(t.shape) not in ok:
                    raise ValueError(
                        f"{name}[{l}] must have shape {' or '.join(map(str, ok))}, "
                        f"got {getattr(t, 'shape', type(t).__name__)}"
                    )
                if t.dtype != w0.dtype or t.device != w0.device:
                    raise ValueError(f"{name}[{l}] must match the weights' dtype/device")
            if all(t is None for t in lst):
                lst = None
            setattr(self, name, lst)
        if self.recurrent is not None:
            kinds = {t.ndim for t in self.recurrent if t is not None}
            if len(kinds) > 1:
                raise ValueError(
                    "recurrent weights must be all dense (K, n, n) or all diagonal "
                    "(K, n) (a ParallelSNN has one recurrent kind)"
                )
        self.leak = check_leak(self.leak)
        self.theta = check_positive_float(self.theta, "theta")
        check_choice(self.reset, "reset", RESETS)
        self.description = _json_safe(dict(self.description or {}))

    # ------------------------------------------------------------------ properties
    @property
    def n_branches(self) -> int:
        """``K``."""
        return int(self.weights[0].shape[0])

    @property
    def n_inputs(self) -> int:
        """Input features per step."""
        return int(self.weights[0].shape[1])

    @property
    def hidden_widths(self) -> list[int]:
        """Per-branch widths of the LIF layers."""
        return [int(w.shape[2]) for w in self.weights]

    @property
    def depth(self) -> int:
        """``L``, counting the (absent) output layer, as in :class:`ParallelSNN`."""
        return len(self.weights) + 1

    @property
    def n_last(self) -> int:
        """Width of the last LIF layer per branch."""
        return self.hidden_widths[-1]

    @property
    def n_witness_neurons(self) -> int:
        """``K * n_last``: one candidate dictionary column per last-layer neuron."""
        return self.n_branches * self.n_last

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    @property
    def recurrent_kind(self) -> str | None:
        """``None``, ``"dense"`` or ``"diagonal"``."""
        if self.recurrent is None:
            return None
        t = next(t for t in self.recurrent if t is not None)
        return "dense" if t.ndim == 3 else "diagonal"

    def provenance(self) -> np.ndarray:
        """``(K * n_last, 2)`` array of (branch, neuron); row ``j = k * n_last + i``."""
        j = np.arange(self.n_witness_neurons)
        return np.stack([j // self.n_last, j % self.n_last], axis=1)

    def lif_params(self) -> dict:
        """``{"leak", "theta", "reset"}`` of the branches' neurons."""
        return {"leak": self.leak, "theta": self.theta, "reset": self.reset}

    def fingerprint(self) -> str:
        """sha256 of all weights and LIF parameters (identifies a witness set)."""
        h = hashlib.sha256()
        h.update(
            json.dumps(
                # keyed "beta" as before the leak was renamed: recorded fingerprints stay valid
                {
                    "beta": self.leak,
                    "theta": self.theta,
                    "reset": self.reset,
                    "dtype": dtype_name(self.dtype),
                },
                sort_keys=True,
            ).encode()
        )
        for name, arr in sorted(self.state_arrays().items()):
            h.update(name.encode())
            h.update(str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ derived sets
    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Witnesses:
        """A copy on another device and/or dtype."""

        def mv(t):
            return None if t is None else t.to(device=device, dtype=dtype)

        return Witnesses(
            [mv(w) for w in self.weights],
            None if self.biases is None else [mv(b) for b in self.biases],
            None if self.recurrent is None else [mv(r) for r in self.recurrent],
            self.leak,
            self.theta,
            self.reset,
            dict(self.description),
        )

    def select_branches(self, branches: Sequence[int] | np.ndarray | torch.Tensor) -> Witnesses:
        """The witness set restricted to ``branches`` (in the given order)."""
        idx = torch.as_tensor(np.asarray(branches, dtype=np.int64).reshape(-1), device=self.device)
        if idx.numel() == 0:
            raise ValueError("select_branches needs at least one branch")
        if int(idx.min()) < 0 or int(idx.max()) >= self.n_branches:
            raise ValueError(
                f"branch indices must be in [0, {self.n_branches}), got {idx.tolist()[:10]}"
            )

        def sel(t):
            return None if t is None else t.index_select(0, idx).contiguous()

        desc = dict(self.description)
        desc["selected_branches"] = idx.tolist()
        return Witnesses(
            [sel(w) for w in self.weights],
            None if self.biases is None else [sel(b) for b in self.biases],
            None if self.recurrent is None else [sel(r) for r in self.recurrent],
            self.leak,
            self.theta,
            self.reset,
            desc,
        )

    # ------------------------------------------------------------------ simulation
    def check_input(self, X: Any, name: str = "X") -> torch.Tensor:
        """Validate ``X`` ``(n, T, n_inputs)`` and cast it to the witnesses' dtype/device."""
        return check_sequence_input(
            X, name, n_features=self.n_inputs, dtype=self.dtype, device=self.device
        )

    def simulate(self, X: Any, *, return_membrane: bool = False) -> Trace:
        """All layers' spikes (and membranes), via :func:`convexsnn.lif.simulate`, no gradient."""
        x = self.check_input(X)
        with torch.no_grad():
            return simulate(
                x,
                self.weights,
                biases=self.biases,
                recurrent=self.recurrent,
                leak=self.leak,
                theta=self.theta,
                reset=self.reset,
                return_membrane=return_membrane,
            )

    def readout(self, X: Any, *, readout: str = "spike", readout_bias: float = 0.0) -> torch.Tensor:
        r"""Binary last-layer readout ``(n, T, K * n_last)`` (bool).

        ``"spike"``: :math:`r_t = s_t`; ``"membrane"``: :math:`r_t = \mathbb 1[m_t - b \ge 0]` of
        the post-reset membrane, computed exactly as :meth:`ParallelSNN.features` does.
        Feature ``j = k * n_last + i`` is neuron ``i`` of branch ``k``.
        """
        check_choice(readout, "readout", READOUTS)
        membrane = readout == "membrane"
        trace = self.simulate(X, return_membrane=membrane)
        r = heaviside(trace.membranes[-1] - float(readout_bias)) if membrane else trace.spikes[-1]
        n, T = r.shape[:2]
        return (r != 0).reshape(n, T, -1)

    # ------------------------------------------------------------------ conversion
    def to_network(
        self,
        output_weight: torch.Tensor | np.ndarray | None = None,
        *,
        n_outputs: int | None = None,
        readout: str = "spike",
        readout_bias: float = 0.0,
        output: str = "last",
        **kwargs: Any,
    ) -> ParallelSNN:
        """A :class:`ParallelSNN` with these hidden weights (exact copies).

        Parameters
        ----------
        output_weight : array ``(K * n_last, C)``, optional
            Output weights; zeros when omitted (then ``n_outputs`` gives ``C``).
        n_outputs : int, optional
            Number of score columns when ``output_weight`` is omitted (default 1).
        readout, readout_bias, output
            Readout of the network (see :class:`ParallelSNN`).
        **kwargs
            Other :class:`ParallelSNN` options (``surrogate``, ...). Hidden-layer structure, LIF
            parameters and dtype come from the witnesses.
        """
        check_choice(readout, "readout", READOUTS)
        check_choice(output, "output", OUTPUTS)
        for k in (
            "hidden_widths",
            "leak",
            "beta",
            "theta",
            "reset",
            "bias",
            "recurrent",
            "dtype",
            "n_branches",
            "n_inputs",
            "n_outputs",
            "depth",
            "p_rec",
            "p_last",
        ):
            if k in kwargs:
                raise TypeError(f"to_network() got {k!r}: it is fixed by the witnesses")
        if output_weight is not None:
            ow = torch.as_tensor(
                np.asarray(output_weight)
                if not isinstance(output_weight, torch.Tensor)
                else output_weight
            )
            if ow.ndim == 1:
                ow = ow[:, None]
            if ow.ndim != 2 or ow.shape[0] != self.n_witness_neurons:
                raise ValueError(
                    f"output_weight must have shape ({self.n_witness_neurons}, C), "
                    f"got {tuple(ow.shape)}"
                )
            if n_outputs is not None and n_outputs != ow.shape[1]:
                raise ValueError(
                    f"n_outputs={n_outputs} contradicts output_weight with {ow.shape[1]} columns"
                )
            n_outputs = int(ow.shape[1])
        n_outputs = check_positive_int(1 if n_outputs is None else n_outputs, "n_outputs")
        net = ParallelSNN(
            self.n_inputs,
            n_outputs,
            n_branches=self.n_branches,
            hidden_widths=self.hidden_widths,
            leak=self.leak,
            theta=self.theta,
            reset=self.reset,
            readout=readout,
            readout_bias=float(readout_bias),
            output=output,
            bias=self.biases is not None,
            recurrent=self.recurrent_kind,
            dtype=self.dtype,
            **kwargs,
        )
        net.to(self.device)
        with torch.no_grad():
            for p, w in zip(net.weights, self.weights):
                p.copy_(w)
            if self.biases is not None:
                for p, b in zip(net.biases, self.biases):
                    p.copy_(b) if b is not None else p.zero_()
            if self.recurrent is not None:
                for p, r in zip(net.recurrent_weights, self.recurrent):
                    p.copy_(r) if r is not None else p.zero_()
            if output_weight is not None:
                net.output_weight.copy_(ow.to(net.output_weight))
            else:
                net.output_weight.zero_()
        return net

    # ------------------------------------------------------------------ persistence helpers
    def state_arrays(self) -> dict[str, np.ndarray]:
        """All tensors as numpy arrays: ``weights.l``, ``biases.l``, ``recurrent.l``."""
        out = {f"weights.{l}": w.detach().cpu().numpy() for l, w in enumerate(self.weights)}
        for name in ("biases", "recurrent"):
            lst = getattr(self, name)
            if lst is not None:
                for l, t in enumerate(lst):
                    if t is not None:
                        out[f"{name}.{l}"] = t.detach().cpu().numpy()
        return out

    def meta(self) -> dict:
        """JSON-safe non-array part (LIF parameters, layer count, dtype, description)."""
        return {
            "n_layers": len(self.weights),
            "dtype": dtype_name(self.dtype),
            **self.lif_params(),
            "description": self.description,
        }

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict[str, np.ndarray]) -> Witnesses:
        """Inverse of :meth:`meta` + :meth:`state_arrays`."""
        n = int(meta["n_layers"])
        dtype = dtype_from_name(meta.get("dtype"), "witness dtype")
        # witness files saved before the leak was renamed say "beta": they load unchanged
        meta = rename_keys(meta, {"beta": "leak"}, "witness meta", warn=False)

        def get(name, l):
            a = arrays.get(f"{name}.{l}")
            return None if a is None else torch.from_numpy(np.array(a)).to(dtype)

        weights = [get("weights", l) for l in range(n)]
        if any(w is None for w in weights):
            raise ValueError("witness arrays are missing a weight layer")
        biases = [get("biases", l) for l in range(n)]
        recurrent = [get("recurrent", l) for l in range(n)]
        return cls(
            weights,
            biases if any(b is not None for b in biases) else None,
            recurrent if any(r is not None for r in recurrent) else None,
            meta["leak"],
            meta["theta"],
            meta["reset"],
            meta.get("description", {}),
        )

    def __repr__(self) -> str:
        return (
            f"Witnesses(K={self.n_branches}, n_inputs={self.n_inputs}, "
            f"widths={self.hidden_widths}, leak={self.leak}, theta={self.theta}, "
            f"reset={self.reset!r}, recurrent={self.recurrent_kind}, "
            f"dtype={dtype_name(self.dtype)}, kind={self.description.get('kind')!r})"
        )


# ---------------------------------------------------------------------- generators
def _per_layer(value: float | Sequence[float], n_layers: int, name: str) -> list[float]:
    if isinstance(value, (list, tuple, np.ndarray)):
        vals = list(value)
        if len(vals) != n_layers:
            raise ValueError(
                f"{name} must be a number or one value per LIF layer ({n_layers}), "
                f"got {len(vals)} values"
            )
    else:
        vals = [value] * n_layers
    return [check_positive_float(v, f"{name}") for v in vals]


Witnesses.__init__ = renamed_kwargs(beta="leak")(Witnesses.__init__)  # type: ignore[method-assign]


def _draw_gaussian(
    gen: torch.Generator,
    n_branches: int,
    sizes: list[int],
    scales: list[float],
    normalized: bool,
    dtype: torch.dtype,
) -> list[torch.Tensor]:
    """Standard normal layers (drawn in float64 in a fixed order), column-normalised if asked,
    times the per-layer scale, then cast to ``dtype``."""
    out = []
    for l in range(len(sizes) - 1):
        g = torch.randn(n_branches, sizes[l], sizes[l + 1], generator=gen, dtype=torch.float64)
        if normalized:
            g = g / g.norm(dim=1, keepdim=True)
        out.append((g * scales[l]).to(dtype))
    return out


@renamed_kwargs(beta="leak")
def gaussian_witnesses(
    n_inputs: int,
    *,
    n_branches: int = 1,
    hidden_widths: Sequence[int] | None = None,
    depth: int | None = None,
    p_rec: int | None = None,
    p_last: int | None = None,
    scale: float | Sequence[float] = 1.0,
    normalized: bool = False,
    seed: int = 0,
    leak: float = 0.99,
    theta: float = 1.0,
    reset: str = "subtract",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Witnesses:
    r"""Gaussian witnesses (``CVX``): :math:`W_l = s_l\, G_l`, :math:`(G_l)_{kij} \sim N(0, 1)`.

    With ``normalized=True`` every column is rescaled to unit norm before scaling,
    :math:`\|W_l[k, :, j]\|_2 = s_l`: each neuron's input weight vector has norm :math:`s_l`.

    Parameters
    ----------
    n_inputs : int
        Input features per step.
    n_branches : int
        ``K``.
    hidden_widths : list of int, optional
        Per-branch widths of the LIF layers; or give ``depth`` (counting the output layer) with
        ``p_rec`` / ``p_last`` (totals over branches), as for :class:`ParallelSNN`.
    scale : float or list of float
        :math:`s_l`, one value or one per LIF layer.
    normalized : bool
        Unit-norm columns before scaling.
    seed : int
        Seed of a local generator; the same seed gives bit-identical weights.
    leak, theta, reset
        LIF parameters.
    dtype : torch.dtype
        ``float64`` by default: dictionary and reconstructed network then agree to ~1e-16, which
        makes a rounding-induced spike flip between them practically impossible.
    """
    n_inputs = check_positive_int(n_inputs, "n_inputs")
    widths = resolve_widths(
        n_branches=n_branches, hidden_widths=hidden_widths, depth=depth, p_rec=p_rec, p_last=p_last
    )
    scales = _per_layer(scale, len(widths), "scale")
    check_seed(seed)
    dtype_name(dtype)
    from ._checks import check_layer_weights  # refuse sizes that cannot fit, before drawing

    check_layer_weights(n_branches, [n_inputs] + widths, "Gaussian witness weights", copies=2)
    gen = torch.Generator().manual_seed(int(seed))
    weights = _draw_gaussian(gen, n_branches, [n_inputs] + widths, scales, bool(normalized), dtype)
    if device is not None:
        weights = [w.to(device) for w in weights]
    desc = {
        "kind": "gaussian",
        "seed": int(seed),
        "options": {
            "n_inputs": n_inputs,
            "n_branches": n_branches,
            "hidden_widths": widths,
            "scale": scales,
            "normalized": bool(normalized),
            "dtype": dtype_name(dtype),
        },
    }
    w = Witnesses(weights, None, None, leak, theta, reset, desc)
    logger.debug("drew %r", w)
    return w


def witnesses_from_network(model: ParallelSNN, *, dtype: torch.dtype | None = None) -> Witnesses:
    """Witnesses copied from the hidden layers of ``model`` (``SG-CVX``); the head is discarded.

    The copies are detached clones (exact values; cast only if ``dtype`` is given). Biases and
    recurrent weights are carried over when the network has them.
    """
    if not isinstance(model, ParallelSNN):
        raise TypeError(f"model must be a ParallelSNN, got {type(model).__name__}")

    def cp(t):
        t = t.detach().clone()
        return t if dtype is None else t.to(dtype)

    cfg = model.config
    weights = [cp(w) for w in model.weights]
    biases = [cp(b) for b in model.biases] if model.biases is not None else None
    eff = model.effective_recurrent_weights()  # W_rec * mask for a sparse network
    rec = [cp(r) for r in eff] if eff is not None else None
    desc = {"kind": "network", "seed": None, "options": {"config": {k: v for k, v in cfg.items()}}}
    return Witnesses(weights, biases, rec, cfg["leak"], cfg["theta"], cfg["reset"], desc)


def concat_witnesses(*sets: Witnesses) -> Witnesses:
    """One witness set whose branches are those of ``sets``, in order (branch ``k`` of the
    result is branch ``k - K_0 - ... - K_{i-1}`` of ``sets[i]``).

    The sets must agree on everything a :class:`~convexsnn.network.ParallelSNN` shares across
    its branches: input size, layer widths, leak, threshold, reset, dtype/device and the kind of
    recurrence. A set without biases (or recurrent weights) where another has them contributes
    zeros, which is the same dynamics.
    """
    if len(sets) == 1 and isinstance(sets[0], (list, tuple)):
        sets = tuple(sets[0])
    if not sets:
        raise ValueError("concat_witnesses needs at least one witness set")
    for i, w in enumerate(sets):
        if not isinstance(w, Witnesses):
            raise TypeError(f"sets[{i}] must be Witnesses, got {type(w).__name__}")
    first = sets[0]
    for i, w in enumerate(sets[1:], 1):
        for what, a, b in (
            ("input size", w.n_inputs, first.n_inputs),
            ("hidden widths", w.hidden_widths, first.hidden_widths),
            ("leak", w.leak, first.leak),
            ("threshold", w.theta, first.theta),
            ("reset", w.reset, first.reset),
            ("dtype", w.dtype, first.dtype),
            ("device", w.device, first.device),
        ):
            if a != b:
                raise ValueError(
                    f"cannot concatenate witness sets: sets[{i}] has {what} {a}, sets[0] has {b}"
                )
    kinds = {w.recurrent_kind for w in sets} - {None}
    if len(kinds) > 1:
        raise ValueError(f"cannot concatenate witness sets with different recurrence {kinds}")
    n_layers = len(first.weights)

    def stack(name: str, l: int, shape_of) -> torch.Tensor | None:
        parts = [getattr(w, name) for w in sets]
        if all(p is None or p[l] is None for p in parts):
            return None
        return torch.cat(
            [
                p[l]
                if (p is not None and p[l] is not None)
                else torch.zeros(shape_of(w, l), dtype=first.dtype, device=first.device)
                for p, w in zip(parts, sets)
            ],
            dim=0,
        )

    weights = [torch.cat([w.weights[l] for w in sets], dim=0) for l in range(n_layers)]
    biases = [
        stack("biases", l, lambda w, l: (w.n_branches, w.hidden_widths[l])) for l in range(n_layers)
    ]
    kind = next(iter(kinds), None)
    recurrent = [
        stack(
            "recurrent",
            l,
            lambda w, l: (w.n_branches,) + ((w.hidden_widths[l],) * (2 if kind == "dense" else 1)),
        )
        for l in range(n_layers)
    ]
    desc = {
        "kind": "concat",
        "seed": None,
        "parts": [{"n_branches": w.n_branches, **w.description} for w in sets],
    }
    return Witnesses(weights, biases, recurrent, first.leak, first.theta, first.reset, desc)


def branching_ratio(spikes: torch.Tensor, sample_weight: torch.Tensor | None = None) -> float:
    r"""Branching ratio of the activity ``spikes`` ``(n, T, ...)``.

    With :math:`A_t` the total number of spikes at step :math:`t` (summed over samples, branches
    and neurons; each sample counted ``sample_weight[i]`` times when given),

    .. math:: \hat\sigma = \frac{1}{|\mathcal T|} \sum_{t \in \mathcal T} \frac{A_{t+1}}{A_t},
              \qquad \mathcal T = \{t < T : A_t > 0\}.

    :math:`\hat\sigma < 1`: activity dies out, :math:`> 1`: it grows, :math:`\approx 1`: critical.
    Returns ``nan`` when no step qualifies (no spikes, or ``T = 1``).
    """
    per = spikes.reshape(spikes.shape[0], spikes.shape[1], -1).to(torch.float64).sum(dim=2)
    if sample_weight is not None:
        per = per * torch.as_tensor(sample_weight, dtype=torch.float64, device=per.device).reshape(
            -1, 1
        )
    A = per.sum(dim=0).cpu().numpy()
    valid = A[:-1] > 0
    if not valid.any():
        return float("nan")
    return float(np.mean(A[1:][valid] / A[:-1][valid]))


def reservoir_witnesses(
    X: Any,
    *,
    n_branches: int = 1,
    hidden_widths: Sequence[int] | None = None,
    depth: int | None = None,
    p_rec: int | None = None,
    p_last: int | None = None,
    leaks: Sequence[float] = (0.5, 0.8, 0.9, 0.99),
    thresholds: Sequence[float] = (0.5, 1.0, 2.0),
    input_scales: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    scale: float | Sequence[float] = 1.0,
    normalized: bool = True,
    seed: int = 0,
    reset: str = "subtract",
    max_samples: int | None = 256,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Witnesses:
    r"""Reservoir witnesses (``R-CVX``) tuned to criticality on a data sample.

    One Gaussian draw :math:`G_l` (same seed for every grid point, so the grid compares settings
    on common random weights) gives :math:`W_1 = a\, s_1 G_1` (``a`` = input scale) and
    :math:`W_l = s_l G_l` for :math:`l \ge 2` (``s_l`` = ``scale``). For every combination of
    leak :math:`\beta`, threshold :math:`\theta` and input scale :math:`a` in the grid (in the
    order leak, threshold, input scale), the witnesses are simulated on the first ``max_samples``
    rows of ``X`` and the branching ratio :math:`\hat\sigma` of the last layer's spikes is
    estimated with :func:`branching_ratio`. The combination minimising :math:`|\hat\sigma - 1|` is
    returned (ties: the first in grid order; undefined ratios rank last).

    Each distinct sequence of the sample is simulated once and counted with its multiplicity
    (same :math:`A_t` as simulating every row). ``normalized`` defaults to ``True`` here (unit-norm
    columns, so the scales set the typical current), unlike :func:`gaussian_witnesses`.

    The description records the chosen values (``chosen``) and every grid point with its ratio
    and mean firing rate (``grid``).
    """
    n_branches = check_positive_int(n_branches, "n_branches")
    widths = resolve_widths(
        n_branches=n_branches, hidden_widths=hidden_widths, depth=depth, p_rec=p_rec, p_last=p_last
    )
    scales = _per_layer(scale, len(widths), "scale")
    x = check_sequence_input(X, "X", dtype=dtype, device=device)
    if max_samples is not None:
        x = x[: check_positive_int(max_samples, "max_samples")]
    n_used = int(x.shape[0])
    # every distinct sequence is simulated once and counted with its multiplicity
    flat = np.ascontiguousarray(x.cpu().numpy().reshape(n_used, -1))
    _, first, inv = np.unique(
        flat.view(np.dtype((np.void, flat.shape[1] * flat.itemsize))).ravel(),
        return_index=True,
        return_inverse=True,
    )
    counts = torch.from_numpy(np.bincount(inv.reshape(-1)).astype(np.float64))
    x = x[torch.from_numpy(first).to(x.device)]
    leaks = [check_leak(b, "leaks") for b in leaks]
    thresholds = [check_positive_float(t, "thresholds") for t in thresholds]
    input_scales = [check_positive_float(a, "input_scales") for a in input_scales]
    if not (leaks and thresholds and input_scales):
        raise ValueError("leaks, thresholds and input_scales must each hold at least one value")
    gen = torch.Generator().manual_seed(int(seed))
    base = _draw_gaussian(
        gen, n_branches, [x.shape[2]] + widths, scales, bool(normalized), torch.float64
    )
    grid = []
    best, best_dist = None, math.inf
    for b, th, a in itertools.product(leaks, thresholds, input_scales):
        weights = [(base[0] * a).to(dtype)] + [w.to(dtype) for w in base[1:]]
        if device is not None:
            weights = [w.to(device) for w in weights]
        with torch.no_grad():
            tr = simulate(x, weights, leak=b, theta=th, reset=reset)
        s = tr.spikes[-1]
        sigma = branching_ratio(s, counts)
        per_sample = s.reshape(s.shape[0], -1).to(torch.float64).mean(dim=1).cpu()
        rate = float((per_sample * counts).sum() / counts.sum())
        grid.append(
            {
                "beta": b,
                "theta": th,
                "input_scale": a,
                "branching_ratio": sigma if math.isfinite(sigma) else None,
                "rate": rate,
            }
        )
        dist = abs(sigma - 1.0) if math.isfinite(sigma) else math.inf
        if best is None or dist < best_dist:
            best, best_dist = (b, th, a, weights), dist
    b, th, a, weights = best
    chosen = {
        "beta": b,
        "theta": th,
        "input_scale": a,
        "branching_ratio": None
        if best_dist == math.inf
        else next(
            g["branching_ratio"]
            for g in grid
            if (g["beta"], g["theta"], g["input_scale"]) == (b, th, a)
        ),
    }
    if best_dist == math.inf:
        logger.warning(
            "reservoir_witnesses: no grid point produced last-layer activity; "
            "returning the first grid point"
        )
    desc = {
        "kind": "reservoir",
        "seed": int(seed),
        "options": {
            "n_inputs": int(x.shape[2]),
            "n_branches": n_branches,
            "hidden_widths": widths,
            "scale": scales,
            "normalized": bool(normalized),
            "leaks": leaks,
            "thresholds": thresholds,
            "input_scales": input_scales,
            "max_samples": max_samples,
            "n_samples_used": n_used,
            "dtype": dtype_name(dtype),
        },
        "branching_ratio_estimator": "mean over t with A_t > 0 of A_{t+1} / A_t, A_t = total "
        "last-layer spikes at step t over the sample",
        "chosen": chosen,
        "grid": grid,
    }
    logger.info(
        "reservoir_witnesses: chose leak=%g theta=%g input_scale=%g (ratio %s)",
        b,
        th,
        a,
        chosen["branching_ratio"],
    )
    return Witnesses(weights, None, None, b, th, reset, desc)
