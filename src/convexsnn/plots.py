r"""Figures: spike rasters, spike-dictionary statistics, accuracy against training-set size.

matplotlib is an optional dependency (``pip install convexsnn[plot]``), imported inside the
functions. Figures are drawn on matplotlib's Agg canvas directly (a ``matplotlib.figure.Figure``
with a ``FigureCanvasAgg``), never through ``pyplot``: no window is opened, no global figure
state is touched, and the plotting backend a user selected is left alone. Every function writes a
PNG atomically (to a temporary file in the destination directory, then :func:`os.replace`) and
returns its path; the path must end in ``.png``.

Input forms
-----------
* :func:`plot_raster`: a :class:`~convexsnn.network.ParallelSNN` and inputs ``(batch, T, d)``.
* :func:`plot_dictionary_stats`: one dict, or a list of dicts (one curve/histogram each), with keys

  - ``"density"``: per-column pattern densities, the fraction of rows in which a dictionary
    column is 1, each in :math:`[0, 1]`;
  - ``"n_witness"`` and ``"n_unique"`` (together): numbers of witness neurons simulated and of
    unique non-zero patterns (dictionary columns) they produced, same length;
  - ``"label"`` (optional): legend entry.

  At least ``"density"`` or the pair must be present; any other key is an error.
* :func:`plot_accuracy_vs_size`: a list of dicts ``{"method", "n_train", "accuracy"}`` with an
  optional ``"std"`` (error band), one per (method, training-set size).

Bad input (empty, unknown or missing keys, non-finite values, wrong shapes) raises ``ValueError``;
a wrong container type raises ``TypeError``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._io import atomic_write_with
from .network import ParallelSNN

__all__ = ["plot_raster", "plot_dictionary_stats", "plot_accuracy_vs_size"]

logger = logging.getLogger("convexsnn")

_STATS_KEYS = ("density", "n_witness", "n_unique", "label")
_RECORD_REQUIRED = ("method", "n_train", "accuracy")
_RECORD_KEYS = _RECORD_REQUIRED + ("std",)


def _figure_class():
    """``(Figure, FigureCanvasAgg)``, or a clear ImportError naming the extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "plotting needs the optional dependency 'matplotlib', which is not installed; "
            "install it with `pip install convexsnn[plot]`"
        ) from exc
    return Figure, FigureCanvasAgg


def _png_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plots are written as PNG; the path must end in .png, got {path}")
    return path


def _new_figure(width: float, height: float):
    Figure, FigureCanvasAgg = _figure_class()
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, path: Path, dpi: int) -> Path:
    """Write ``fig`` as PNG to a temporary file next to ``path``, then move it into place."""
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    logger.info("wrote figure %s", path)
    return path


def _finite_1d(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D array of numbers") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _plain_log_ticks(ax, values: np.ndarray) -> None:
    """On a log x axis, label the data's own x values (up to 10) as plain numbers."""
    from matplotlib.ticker import FixedLocator, NullFormatter

    ticks = np.unique(values)
    if ticks.size <= 10:
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.set_xticklabels([f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())


# ---------------------------------------------------------------------------------- raster
def plot_raster(
    model: ParallelSNN,
    x: Any,
    path: str | os.PathLike,
    sample: int = 0,
    *,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    r"""Spike raster of every LIF layer of ``model`` on one input sequence.

    One panel per layer (plus the input as a heat map on top, and the membrane readout
    :math:`1[m_t \ge b]` at the bottom for ``readout="membrane"`` networks): time step on the x
    axis, neuron on the y axis, numbered branch-major (neuron ``i`` of branch ``k`` is
    ``k * n + i``) with dashed lines between branches.

    Parameters
    ----------
    model : ParallelSNN
    x : array-like ``(batch, T, n_inputs)``
    path : path ending in ``.png``
    sample : int
        Which sequence of the batch to draw.
    title : str, optional
    dpi : int

    Returns
    -------
    Path
        ``path``, written atomically.
    """
    if not isinstance(model, ParallelSNN):
        raise TypeError(f"model must be a ParallelSNN, got {type(model).__name__}")
    path = _png_path(path)
    x = model.check_input(x)
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)):
        raise TypeError(f"sample must be an integer, got {type(sample).__name__}")
    if not 0 <= int(sample) < x.shape[0]:
        raise ValueError(f"sample={sample} is out of range for a batch of {x.shape[0]}")
    sample = int(sample)
    membrane = model.config["readout"] == "membrane"
    with torch.no_grad():
        xs = x[sample : sample + 1]
        trace = model.simulate(xs)
        readout = model.features(xs)[0].cpu().numpy() if membrane else None
    inp = xs[0].cpu().numpy()  # (T, d)
    T = inp.shape[0]
    K, widths = model.n_branches, model.hidden_widths
    panels = [("input", inp)]
    panels += [
        (f"layer {l + 1}", s[0].reshape(T, -1).cpu().numpy()) for l, s in enumerate(trace.spikes)
    ]
    if membrane:
        panels.append(("readout", readout))
    heights = [float(np.clip(a.shape[1] / 16.0, 1.0, 3.0)) for _, a in panels]
    fig = _new_figure(8.0, 0.6 + 1.1 * sum(heights))
    axes = fig.subplots(
        len(panels), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": heights}
    )[:, 0]
    ax = axes[0]
    im = ax.imshow(
        inp.T,
        aspect="auto",
        origin="lower",
        interpolation="nearest",
        cmap="viridis",
        extent=(0.5, T + 0.5, -0.5, inp.shape[1] - 0.5),
    )
    fig.colorbar(im, cax=ax.inset_axes([1.005, 0.0, 0.012, 1.0]))  # keeps the x axes aligned
    ax.set_ylabel("input\nfeature")
    for ax, (name, a) in zip(axes[1:], panels[1:]):
        n_rows = a.shape[1]
        t_idx, n_idx = np.nonzero(a)
        ax.scatter(
            t_idx + 1,
            n_idx,
            marker="|",
            s=max(4.0, 400.0 / max(n_rows, 1)),
            color="black",
            linewidths=1.0,
        )
        n_per_branch = n_rows // K
        if 1 < K <= 64:
            for k in range(1, K):
                ax.axhline(k * n_per_branch - 0.5, color="0.7", lw=0.6, ls="--")
        ax.set_ylim(-0.5, n_rows - 0.5)
        what = (
            f"membrane readout 1[m >= {model.config['readout_bias']:g}]"
            if name == "readout"
            else name
        )
        ax.set_ylabel(f"{name}\nneuron")
        ax.set_title(
            f"{what}: {K} x {n_per_branch} neurons, rate {float(a.mean()):.3f}",
            fontsize=8,
            loc="left",
        )
        if t_idx.size == 0:
            ax.text(
                0.5, 0.5, "no spikes", transform=ax.transAxes, ha="center", va="center", color="0.5"
            )
    axes[-1].set_xlim(0.5, T + 0.5)
    axes[-1].set_xlabel("time step")
    fig.suptitle(title or f"spike raster, sample {sample} (widths {widths}, K={K})", fontsize=10)
    fig.tight_layout()
    return _save_png(fig, path, dpi)


# ------------------------------------------------------------------------- dictionary stats
def _check_stats(stats: Any) -> list[dict]:
    if isinstance(stats, Mapping):
        entries = [stats]
    elif isinstance(stats, Sequence) and not isinstance(stats, (str, bytes)):
        entries = list(stats)
    else:
        raise TypeError(f"stats must be a dict or a list of dicts, got {type(stats).__name__}")
    if not entries:
        raise ValueError("stats is empty: give at least one dict of dictionary statistics")
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, Mapping):
            raise TypeError(f"stats[{i}] must be a dict, got {type(e).__name__}")
        unknown = sorted(set(e) - set(_STATS_KEYS))
        if unknown:
            raise ValueError(f"stats[{i}] has unknown keys {unknown}; allowed: {list(_STATS_KEYS)}")
        has_curve = ("n_witness" in e) or ("n_unique" in e)
        if has_curve and not ("n_witness" in e and "n_unique" in e):
            raise ValueError(f"stats[{i}] needs both 'n_witness' and 'n_unique' (got only one)")
        if "density" not in e and not has_curve:
            raise ValueError(f"stats[{i}] needs 'density' or 'n_witness' + 'n_unique'")
        entry = {"label": str(e["label"]) if "label" in e else None}
        if "density" in e:
            d = _finite_1d(e["density"], f"stats[{i}]['density']")
            if d.min() < 0 or d.max() > 1:
                raise ValueError(
                    f"stats[{i}]['density'] must lie in [0, 1], got values in "
                    f"[{d.min()}, {d.max()}]"
                )
            entry["density"] = d
        if has_curve:
            nw = _finite_1d(e["n_witness"], f"stats[{i}]['n_witness']")
            nu = _finite_1d(e["n_unique"], f"stats[{i}]['n_unique']")
            if nw.shape != nu.shape:
                raise ValueError(
                    f"stats[{i}]: n_witness has {nw.size} values, n_unique "
                    f"{nu.size}; they must pair up"
                )
            if nw.min() <= 0 or nu.min() < 0:
                raise ValueError(f"stats[{i}]: n_witness must be > 0 and n_unique >= 0")
            order = np.argsort(nw, kind="stable")
            entry["n_witness"], entry["n_unique"] = nw[order], nu[order]
        out.append(entry)
    return out


def plot_dictionary_stats(
    stats: Mapping | Sequence[Mapping],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Spike-dictionary statistics: pattern-density histogram and dictionary growth.

    Left panel (entries with ``"density"``): histogram of per-column densities (fraction of
    training rows in which a column is 1). Right panel (entries with ``"n_witness"`` and
    ``"n_unique"``): unique patterns against witness neurons, with the line ``unique = witnesses``
    (every witness new) for reference. See the module docstring for the dict form.

    Returns
    -------
    Path
        ``path``, written atomically.
    """
    path = _png_path(path)
    entries = _check_stats(stats)
    with_density = [e for e in entries if "density" in e]
    with_curve = [e for e in entries if "n_witness" in e]
    n_panels = int(bool(with_density)) + int(bool(with_curve))
    fig = _new_figure(5.0 * n_panels + 0.5, 4.0)
    axes = list(fig.subplots(1, n_panels, squeeze=False)[0])
    multi = len(entries) > 1

    def label(e: dict, i: int) -> str | None:
        return e["label"] if e["label"] is not None else (f"run {i}" if multi else None)

    if with_density:
        ax = axes.pop(0)
        bins = np.linspace(0.0, 1.0, 41)
        for i, e in enumerate(entries):
            if "density" in e:
                ax.hist(
                    e["density"],
                    bins=bins,
                    histtype="step" if multi else "stepfilled",
                    alpha=1.0 if multi else 0.7,
                    label=label(e, i),
                    lw=1.5,
                )
        ax.set_xlim(0, 1)
        ax.set_xlabel("pattern density (fraction of rows with a spike)")
        ax.set_ylabel("dictionary columns")
        ax.set_title("pattern density", fontsize=10)
        if any(label(e, i) for i, e in enumerate(entries) if "density" in e):
            ax.legend(fontsize=8)
    if with_curve:
        ax = axes.pop(0)
        lo = min(float(e["n_witness"].min()) for e in with_curve)
        hi = max(float(e["n_witness"].max()) for e in with_curve)
        for i, e in enumerate(entries):
            if "n_witness" in e:
                ax.plot(e["n_witness"], e["n_unique"], marker="o", ms=4, label=label(e, i))
        ref = np.array([lo, hi])
        ax.plot(ref, ref, color="0.6", ls="--", lw=1, label="unique = witnesses")
        if hi / lo >= 10:
            ax.set_xscale("log")
            if all(e["n_unique"].min() > 0 for e in with_curve):
                ax.set_yscale("log")
            else:
                ax.set_yscale("symlog", linthresh=1.0)
                ax.set_ylim(bottom=0)
            _plain_log_ticks(ax, np.concatenate([e["n_witness"] for e in with_curve]))
        ax.set_xlabel("witness neurons")
        ax.set_ylabel("unique non-zero patterns")
        ax.set_title("dictionary growth", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save_png(fig, path, dpi)


# ----------------------------------------------------------------------- accuracy vs size
def _check_records(records: Any) -> dict[str, list[tuple[float, float, float]]]:
    if (
        isinstance(records, Mapping)
        or not isinstance(records, Sequence)
        or isinstance(records, (str, bytes))
    ):
        raise TypeError(f"records must be a list of dicts, got {type(records).__name__}")
    if len(records) == 0:
        raise ValueError("records is empty: give at least one {method, n_train, accuracy} dict")
    by_method: dict[str, list[tuple[float, float, float]]] = {}
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise TypeError(f"records[{i}] must be a dict, got {type(r).__name__}")
        unknown = sorted(set(r) - set(_RECORD_KEYS))
        if unknown:
            raise ValueError(
                f"records[{i}] has unknown keys {unknown}; allowed: {list(_RECORD_KEYS)}"
            )
        missing = [k for k in _RECORD_REQUIRED if k not in r]
        if missing:
            raise ValueError(f"records[{i}] is missing {missing}")
        method = str(r["method"])
        try:
            n = float(r["n_train"])
            acc = float(r["accuracy"])
            std = float(r.get("std", 0.0) if r.get("std") is not None else 0.0)
        except (TypeError, ValueError):
            raise ValueError(f"records[{i}]: n_train, accuracy and std must be numbers") from None
        if not (np.isfinite(n) and n > 0):
            raise ValueError(f"records[{i}]: n_train must be a positive number, got {r['n_train']}")
        if not np.isfinite(acc):
            raise ValueError(f"records[{i}]: accuracy must be finite, got {r['accuracy']}")
        if not (np.isfinite(std) and std >= 0):
            raise ValueError(f"records[{i}]: std must be finite and >= 0, got {r.get('std')}")
        pts = by_method.setdefault(method, [])
        if any(p[0] == n for p in pts):
            raise ValueError(f"records: method {method!r} has two records for n_train={n:g}")
        pts.append((n, acc, std))
    return {m: sorted(p) for m, p in by_method.items()}


def plot_accuracy_vs_size(
    records: Sequence[Mapping],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    ylabel: str = "accuracy",
    dpi: int = 120,
) -> Path:
    """Accuracy against training-set size, one curve per method, with a +-std band.

    Parameters
    ----------
    records : list of dict
        ``{"method": str, "n_train": int, "accuracy": float, "std": float (optional)}``; one per
        (method, size). Methods keep the order of their first record.
    path : path ending in ``.png``
    title, ylabel : str, optional
    dpi : int

    Returns
    -------
    Path
        ``path``, written atomically. The x axis is logarithmic when sizes span 10x or more.
    """
    path = _png_path(path)
    by_method = _check_records(records)
    fig = _new_figure(6.5, 4.2)
    ax = fig.subplots()
    for method, pts in by_method.items():
        n, acc, std = (np.array(v) for v in zip(*pts))
        line = ax.errorbar(
            n, acc, yerr=std if std.any() else None, marker="o", ms=4, capsize=3, label=method
        )
        if std.any() and n.size > 1:
            ax.fill_between(n, acc - std, acc + std, alpha=0.15, color=line[0].get_color(), lw=0)
    all_n = np.concatenate([np.array([p[0] for p in pts]) for pts in by_method.values()])
    if all_n.max() / all_n.min() >= 10:
        ax.set_xscale("log")
        _plain_log_ticks(ax, all_n)
    ax.set_xlabel("training-set size")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"{ylabel} vs training-set size", fontsize=10)
    fig.tight_layout()
    return _save_png(fig, path, dpi)
