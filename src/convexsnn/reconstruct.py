r"""Parameter reconstruction: dictionary + convex readout -> an ordinary ``ParallelSNN``.

Column :math:`j` of the spike dictionary is the readout of one witness neuron
:math:`(k_j, i_j)` (branch, last-layer neuron). A readout :math:`W \in \mathbb R^{P \times C}`
gives scores :math:`Z = DW`. The network that computes the same scores is

* hidden weights: the witness branches :math:`k_j` of the columns with a non-zero row
  :math:`W_{j,:}` (with L2,1 whole rows vanish; with L1 a neuron stays while any class weight is
  non-zero);
* output weights: row :math:`W_{j,:}` on the feature of neuron :math:`(k_j, i_j)`. A column stands
  for all neurons with the same pattern (see :class:`~convexsnn.dictionary.SpikeDictionary`); its
  weight goes on the kept (first) one, the duplicates get nothing.

Pruning. A last-layer neuron depends on every neuron of the earlier layers of its branch (dense
feed-forward weights) and, with dense recurrent weights in the last layer, on the last-layer
neurons feeding it (the closure over non-zero recurrent weights is kept). Earlier layers of a
kept branch are therefore copied whole; last-layer neurons that are not needed are dropped, and
branches with no needed neuron are dropped entirely (the main saving). ``ParallelSNN`` needs one
width per layer, so branches keeping fewer last-layer neurons than the widest are **padded** with
inert neurons: zero input weights, zero bias, zero recurrent weights and zero output weights
(they never change a score). With a single LIF layer (no shared earlier layers) and no dense
recurrence, every neuron depends on the input only, so all kept neurons are **regrouped** into one
branch and no padding is needed.

Exactness. The network runs the same :func:`convexsnn.lif.simulate` on exact copies of the kept
weights, so its readouts are those of the dictionary; products may accumulate in a different
order (pruned shapes), which moves scores by float rounding only (~1e-16 relative in float64).
:func:`check_reconstruction` measures this and raises if a prediction changes.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import torch

from ._checks import check_labels, check_positive_float
from ._io import json_safe
from ._scores import classes_from_scores, tolerance_from_abs_sums
from .convex import predict_from_scores
from .convex.penalties import Penalty
from .dictionary import SpikeDictionary, _unique_sequences
from .network import ParallelSNN

__all__ = [
    "reconstruct",
    "check_reconstruction",
    "ReconstructionError",
    "predict_from_scores",
    "readout_weights",
    "kept_neurons",
    "joint_correct",
]

logger = logging.getLogger("convexsnn")


class ReconstructionError(RuntimeError):
    """The reconstructed network's predictions differ from the convex readout's."""


def _certificate_dict(cert: Any) -> dict | None:
    if cert is None:
        return None
    if hasattr(cert, "to_dict"):
        d = cert.to_dict()
    elif dataclasses.is_dataclass(cert):
        d = dataclasses.asdict(cert)
    elif isinstance(cert, dict):
        d = dict(cert)
    else:
        raise TypeError(f"certificate must be a Certificate or dict, got {type(cert).__name__}")
    return json_safe(d)


def readout_weights(W: Any, n_columns: int, *, tol: float = 0.0) -> tuple[torch.Tensor, Any]:
    """``(W_eff, certificate)``: ``W`` as a float64 ``(P, C)`` tensor whose rows with
    :math:`\\max_c |W_{jc}| \\le` ``tol`` are set to zero; ``W`` may be a ``ReadoutSolution``
    (its ``.W`` and ``.certificate`` are used)."""
    cert = None
    if hasattr(W, "W") and not isinstance(W, (torch.Tensor, np.ndarray)):
        cert = getattr(W, "certificate", None)
        W = W.W
    if isinstance(W, np.ndarray):
        W = torch.from_numpy(np.array(W))
    if not isinstance(W, torch.Tensor):
        raise TypeError(
            f"W must be a tensor, an array or a ReadoutSolution, got {type(W).__name__}"
        )
    W = W.detach().to(device="cpu", dtype=torch.float64)
    if W.ndim == 1:
        W = W[:, None]
    if W.ndim != 2 or W.shape[0] != n_columns:
        raise ValueError(
            f"W must have shape ({n_columns}, C) (one row per dictionary column), "
            f"got {tuple(W.shape)}"
        )
    if not bool(torch.isfinite(W).all()):
        raise ValueError("W contains NaN or inf")
    tol = check_positive_float(tol, "tol", allow_zero=True)
    W = W.clone()
    W[W.abs().amax(dim=1) <= tol] = 0.0
    return W, cert


def kept_neurons(W: Any) -> int:
    """Neurons kept by a readout: rows :math:`j` with :math:`W_{j,:} \\ne 0`
    (:meth:`~convexsnn.convex.penalties.Penalty.support_rows`).

    ``W`` is a ``(P, C)`` tensor or array, a ``ReadoutSolution`` (its ``.W``) or a
    :class:`~convexsnn.network.ParallelSNN` (its output weights: the features with a non-zero
    output weight).
    """
    if isinstance(W, ParallelSNN):
        W = W.output_weight
    elif hasattr(W, "W") and not isinstance(W, (torch.Tensor, np.ndarray)):
        W = W.W
    W = torch.as_tensor(W).detach()
    return int(Penalty().support_rows(W.reshape(W.shape[0], -1)).sum())


def joint_correct(Z: torch.Tensor, ys: Any, widths: Any = None) -> torch.Tensor:
    """Rows on which every label head is predicted right.

    ``Z`` ``(rows, sum C_h)`` holds the heads' score columns side by side (``widths``: columns
    per head; ``None``: one head), ``ys`` the row labels of every head (a sequence of ``(rows,)``
    tensors, or one ``(rows,)`` tensor for one head); a head's prediction is
    :func:`~convexsnn.convex.predict_from_scores` of its columns.
    """
    if isinstance(ys, torch.Tensor):
        ys = [ys]
    widths = [Z.shape[1]] if widths is None else list(widths)
    ok = torch.ones(Z.shape[0], dtype=torch.bool)
    c0 = 0
    for y, c in zip(ys, widths):
        ok &= predict_from_scores(Z[:, c0 : c0 + c]).cpu() == y.cpu()
        c0 += c
    return ok


def _recurrent_closure(rec_last: torch.Tensor | None, needed: np.ndarray) -> np.ndarray:
    """Last-layer neurons of one branch needed by ``needed`` (bool ``(n,)``): with dense recurrent
    weights ``R`` (``(n, n)``, ``R[i, j]`` feeds ``j`` from ``i``) add inputs until closed."""
    if rec_last is None or rec_last.ndim != 2 or not needed.any():
        return needed
    adj = (rec_last != 0).cpu().numpy()
    keep = needed.copy()
    while True:
        new = keep | adj[:, keep].any(axis=1)
        if np.array_equal(new, keep):
            return keep
        keep = new


def reconstruct(
    dictionary: SpikeDictionary,
    W: Any,
    *,
    prune: bool = True,
    tol: float = 0.0,
    certificate: Any = None,
    extra: dict | None = None,
    **network_options: Any,
) -> ParallelSNN:
    r"""Build the ``ParallelSNN`` whose forward pass computes :math:`D W` (module docstring).

    Parameters
    ----------
    dictionary : SpikeDictionary
        The dictionary the readout was solved on.
    W : tensor ``(P, C)`` or ``ReadoutSolution``
        Readout weights, one row per dictionary column (``(P,)`` is read as ``C = 1``).
    prune : bool
        Drop unused branches and last-layer neurons (see the module docstring). ``False`` keeps
        the whole witness block (unused neurons get zero output weights).
    tol : float
        Rows with :math:`\max_c |W_{jc}| \le` ``tol`` count as zero (and are zeroed); the model
        then reproduces :math:`D W_{tol}`.
    certificate : Certificate or dict, optional
        Stored in the provenance (taken from ``W`` when it is a ``ReadoutSolution``).
    extra : dict, optional
        More JSON-safe fields for the provenance record.
    **network_options
        Passed to :class:`ParallelSNN` (e.g. ``surrogate`` for later fine-tuning).

    Returns
    -------
    ParallelSNN
        With ``output="last"`` (``steps="last"``) or ``"all"``, the dictionary's readout and
        readout bias, no output bias, and the witnesses' dtype. ``model.saved_extra`` (also
        ``model.reconstruction``) holds the JSON-safe provenance: witness description, dictionary
        summary, kept branches, the (branch, neuron) and dictionary column of every readout
        feature (``-1`` for padding), and the certificate; pass it to
        ``model.save(path, extra=model.saved_extra)``.
    """
    if not isinstance(dictionary, SpikeDictionary):
        raise TypeError(f"dictionary must be a SpikeDictionary, got {type(dictionary).__name__}")
    W_eff, cert_from_w = readout_weights(W, dictionary.n_columns, tol=tol)
    certificate = certificate if certificate is not None else cert_from_w
    wit = dictionary.witnesses
    C = int(W_eff.shape[1])
    n_last = wit.n_last
    dtype = wit.dtype
    active = np.flatnonzero((W_eff.abs().amax(dim=1) > 0).numpy())
    prov = dictionary.provenance
    n_layers = len(wit.weights)
    rec_kind = wit.recurrent_kind
    rec_last = wit.recurrent[-1] if wit.recurrent is not None else None

    # needed last-layer neurons per branch (global branch index -> bool (n_last,))
    needed: dict[int, np.ndarray] = {}
    for j in active:
        k, i = int(prov[j, 0]), int(prov[j, 1])
        needed.setdefault(k, np.zeros(n_last, bool))[i] = True
    for k in list(needed):
        needed[k] = _recurrent_closure(
            rec_last[k] if rec_last is not None and rec_last.ndim == 3 else None, needed[k]
        )

    if not prune:
        branches = [int(b) for b in dictionary.branches]
        groups = [(k, np.arange(n_last)) for k in branches]
        layout = "full"
    elif n_layers == 1 and rec_kind != "dense":
        # every neuron depends on the input only: regroup all kept neurons into one branch
        branches = sorted(needed)
        pairs = [(k, i) for k in branches for i in np.flatnonzero(needed[k])]
        if not pairs:
            pairs = [(int(dictionary.branches[0]), None)]
        groups = None
        layout = "regrouped"
    else:
        branches = sorted(needed) or [int(dictionary.branches[0])]
        groups = [(k, np.flatnonzero(needed.get(k, np.zeros(n_last, bool)))) for k in branches]
        layout = "padded"

    def zeros(*shape):
        return torch.zeros(*shape, dtype=dtype, device=wit.device)

    # feature list: (orig branch, orig neuron) per reconstructed readout feature; None = padding
    if layout == "regrouped":
        width = len(pairs)
        w1 = zeros(1, wit.n_inputs, width)
        b1 = zeros(1, width) if wit.biases is not None else None
        r1 = zeros(1, width) if rec_kind == "diagonal" else None
        feats = []
        for c, (k, i) in enumerate(pairs):
            if i is None:
                feats.append(None)
                continue
            w1[0, :, c] = wit.weights[0][k, :, i]
            if b1 is not None and wit.biases[0] is not None:
                b1[0, c] = wit.biases[0][k, i]
            if r1 is not None and wit.recurrent[0] is not None:
                r1[0, c] = wit.recurrent[0][k, i]
            feats.append((k, int(i)))
        weights = [w1]
        biases = [b1] if b1 is not None else None
        recurrent = [r1] if r1 is not None else None
        K_new, widths = 1, [width]
    else:
        K_new = len(groups)
        width = max(1, max(g.size for _, g in groups))
        widths = wit.hidden_widths[:-1] + [width]
        bidx = torch.as_tensor([k for k, _ in groups], dtype=torch.long, device=wit.device)
        weights = [w.index_select(0, bidx).clone() for w in wit.weights[:-1]]
        wl = zeros(K_new, wit.weights[-1].shape[1], width)
        biases = None
        if wit.biases is not None:
            biases = [
                (
                    b.index_select(0, bidx).clone()
                    if b is not None
                    else zeros(K_new, wit.hidden_widths[l])
                )
                for l, b in enumerate(wit.biases[:-1])
            ] + [zeros(K_new, width)]
        recurrent = None
        if rec_kind is not None:
            recurrent = []
            for l, r in enumerate(wit.recurrent[:-1]):
                n_l = wit.hidden_widths[l]
                shape = (K_new, n_l, n_l) if rec_kind == "dense" else (K_new, n_l)
                recurrent.append(
                    r.index_select(0, bidx).clone() if r is not None else zeros(*shape)
                )
            recurrent.append(
                zeros(K_new, width, width) if rec_kind == "dense" else zeros(K_new, width)
            )
        feats = []
        for kk, (k, g) in enumerate(groups):
            gi = torch.as_tensor(g, dtype=torch.long, device=wit.device)
            m = g.size
            wl[kk, :, :m] = wit.weights[-1][k].index_select(1, gi)
            if biases is not None and wit.biases[-1] is not None:
                biases[-1][kk, :m] = wit.biases[-1][k].index_select(0, gi)
            if recurrent is not None and rec_last is not None:
                if rec_kind == "dense":
                    recurrent[-1][kk, :m, :m] = rec_last[k].index_select(0, gi).index_select(1, gi)
                else:
                    recurrent[-1][kk, :m] = rec_last[k].index_select(0, gi)
            feats.extend((k, int(i)) for i in g)
            feats.extend([None] * (width - m))
        weights.append(wl)

    # output weights: the column's row on its kept neuron
    col_of = {(int(prov[j, 0]), int(prov[j, 1])): int(j) for j in range(prov.shape[0])}
    W_out = torch.zeros(len(feats), C, dtype=torch.float64)
    feat_cols = []
    for f, nk in enumerate(feats):
        j = col_of.get(nk, -1) if nk is not None else -1
        feat_cols.append(j)
        if j >= 0:
            W_out[f] = W_eff[j]
    missing = set(int(j) for j in active) - set(feat_cols)
    if missing:  # cannot happen: every active column's neuron is kept
        raise RuntimeError(f"internal error: columns {sorted(missing)[:5]} lost in reconstruction")

    net = ParallelSNN(
        wit.n_inputs,
        C,
        n_branches=K_new,
        hidden_widths=widths,
        leak=wit.leak,
        theta=wit.theta,
        reset=wit.reset,
        readout=dictionary.readout,
        readout_bias=dictionary.readout_bias,
        output="last" if dictionary.steps == "last" else "all",
        bias=wit.biases is not None,
        output_bias=False,
        recurrent=rec_kind,
        dtype=dtype,
        **network_options,
    )
    net.to(wit.device)
    with torch.no_grad():
        for p, w in zip(net.weights, weights):
            p.copy_(w)
        if biases is not None:
            for p, b in zip(net.biases, biases):
                p.copy_(b)
        if recurrent is not None:
            for p, r in zip(net.recurrent_weights, recurrent):
                p.copy_(r)
        net.output_weight.copy_(W_out.to(net.output_weight))

    kept_branches = sorted({nk[0] for nk in feats if nk is not None})
    record = {
        "kind": "convexsnn.reconstruction",
        "layout": layout,
        "prune": bool(prune),
        "tol": float(tol),
        "n_active_columns": int(active.size),
        "n_columns": dictionary.n_columns,
        "n_outputs": C,
        "branches_kept": kept_branches,
        "n_branches_kept": len(kept_branches),
        "n_branches_witness": wit.n_branches,
        "feature_provenance": [
            [-1, -1] if nk is None else [int(nk[0]), int(nk[1])] for nk in feats
        ],
        "feature_columns": feat_cols,
        "witnesses": wit.description,
        "witness_fingerprint": wit.fingerprint(),
        "lif": wit.lif_params(),
        "dictionary": dictionary.summary(),
        "certificate": _certificate_dict(certificate),
    }
    if extra:
        record["extra"] = extra
    net.saved_extra = record
    net.reconstruction = record
    logger.info(
        "reconstructed ParallelSNN: %d active columns -> %d branches x widths %s (layout %s)",
        active.size,
        K_new,
        widths,
        layout,
    )
    return net


def _top2_margin(z: torch.Tensor) -> torch.Tensor:
    """Gap between the two largest scores of each row (``|z|`` for a single score column)."""
    if z.shape[-1] == 1:
        return z[..., 0].abs()
    top = torch.topk(z, 2, dim=-1).values
    return top[..., 0] - top[..., 1]


def check_reconstruction(
    model: ParallelSNN,
    dictionary: SpikeDictionary,
    W: Any,
    X: Any,
    y: Any = None,
    *,
    tol: float | None = None,
    raise_on_mismatch: bool = True,
    allow_other_T: bool = False,
    unique_inputs: bool = False,
    heads: Any = None,
) -> dict:
    r"""Compare the network's scores on ``X`` with :math:`D_X W` from the dictionary.

    :math:`D_X` = ``dictionary.transform(X)``; scores of the network are flattened to rows as in
    the dictionary (``(n, C)`` or ``(n T, C)``). With ``unique_inputs`` the network is run once
    per distinct sequence of ``X`` and its scores copied to the repeats (faster when sequences
    repeat; the forward pass treats samples independently). With ``heads`` (score columns per
    label head, e.g. ``[base, 2]`` for addition) each head's block of columns is predicted on its
    own, a row agrees when every head agrees, and ``y`` holds one label per head
    (``(..., H)``); accuracies are then joint (every head right).

    Returns
    -------
    dict
        ``max_abs_diff`` (scores), ``max_rel_diff`` (relative to the largest score),
        ``prediction_agreement`` (fraction), ``n_rows``, ``n_mismatch`` and, with ``y``, the
        accuracies ``accuracy_network`` and ``accuracy_dictionary``.

    Raises
    ------
    ReconstructionError
        If a prediction differs (unless ``raise_on_mismatch=False``) at a row that is not a
        rounding tie: rows whose two best dictionary scores are within
        ``64 eps sqrt(P) max(|z|, 1)`` (``eps`` of the network's dtype) may be broken either way
        by the network's own arithmetic; they are counted in ``n_mismatch_at_ties``.
    """
    if tol is None:
        tol = float(getattr(model, "saved_extra", {}).get("tol", 0.0) or 0.0)
    W_eff, _ = readout_weights(W, dictionary.n_columns, tol=tol)
    D = dictionary.transform(X, dtype=torch.float64, allow_other_T=allow_other_T)
    z_dict = D @ W_eff
    x = model.check_input(X)
    inv = None
    if unique_inputs:
        x, inv = _unique_sequences(x)
    with torch.no_grad():
        z_net = model(x).to(device="cpu", dtype=torch.float64)
    if inv is not None:
        z_net = z_net[torch.from_numpy(inv)]
    z_net = z_net.reshape(-1, z_net.shape[-1])
    if z_net.shape != z_dict.shape:
        raise ValueError(
            f"network scores {tuple(z_net.shape)} and dictionary scores "
            f"{tuple(z_dict.shape)} differ in shape; the model does not match the "
            f"dictionary's steps/outputs"
        )
    diff = (z_net - z_dict).abs()
    max_abs = float(diff.max()) if diff.numel() else 0.0
    scale = float(z_dict.abs().max()) if z_dict.numel() else 0.0
    widths = [z_dict.shape[1]] if heads is None else [int(c) for c in heads]
    if sum(widths) != z_dict.shape[1]:
        raise ValueError(
            f"heads {widths} add up to {sum(widths)} score columns, the readout "
            f"has {z_dict.shape[1]}"
        )
    # the same prediction rule on both sides, ties included: the tolerance comes from the
    # dictionary (D holds 0/1 spikes, so |D||W| = D|W|) with the network's precision
    n_terms = int((W_eff != 0).any(dim=1).sum())
    abs_sums = D @ W_eff.abs()
    # A row whose two best dictionary scores are closer than the rounding of the network's own
    # dtype is a tie: the network (a float32 matmul, say) may break it the other way even with
    # identical spikes. Ties are counted, not treated as a broken reconstruction.
    eps = torch.finfo(model.dtype).eps
    tie_tol = 64 * eps * max(scale, 1.0) * max(1, dictionary.n_columns) ** 0.5
    differ = torch.zeros(z_dict.shape[0], dtype=torch.bool)
    beyond_tie = torch.zeros(z_dict.shape[0], dtype=torch.bool)
    p_net, p_dict, c0 = [], [], 0
    for c in widths:
        tie = tolerance_from_abs_sums(abs_sums[:, c0 : c0 + c], n_terms, model.dtype)
        pn = classes_from_scores(z_net[:, c0 : c0 + c], tie)
        pd = classes_from_scores(z_dict[:, c0 : c0 + c], tie)
        d_h = pn != pd
        differ |= d_h
        beyond_tie |= d_h & (_top2_margin(z_dict[:, c0 : c0 + c]) > tie_tol)
        p_net.append(pn)
        p_dict.append(pd)
        c0 += c
    mismatch = int(differ.sum())
    n_ties = int((differ & ~beyond_tie).sum())
    out = {
        "n_rows": int(z_dict.shape[0]),
        "max_abs_diff": max_abs,
        "max_rel_diff": max_abs / scale if scale > 0 else max_abs,
        "prediction_agreement": 1.0 - mismatch / max(1, z_dict.shape[0]),
        "n_mismatch": mismatch,
        "n_mismatch_at_ties": n_ties,
        "tie_tolerance": tie_tol,
    }
    if y is not None:
        yt = check_labels(y, "y").reshape(-1, len(widths))
        if yt.shape[0] != z_dict.shape[0]:
            raise ValueError(
                f"y has {yt.shape[0]} rows of labels, the scores have {z_dict.shape[0]} rows"
            )
        for name, preds in (("accuracy_network", p_net), ("accuracy_dictionary", p_dict)):
            ok = torch.ones(yt.shape[0], dtype=torch.bool)
            for h, p in enumerate(preds):
                ok &= p == yt[:, h]
            out[name] = float(ok.double().mean())
    if mismatch > n_ties and raise_on_mismatch:
        raise ReconstructionError(
            f"reconstructed network disagrees with the convex readout on {mismatch - n_ties} of "
            f"{z_dict.shape[0]} rows beyond rounding ties (max score difference {max_abs:.3g}); "
            f"the spikes of the network and of the dictionary differ"
        )
    logger.debug("check_reconstruction: %s", out)
    return out
