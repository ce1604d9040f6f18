"""Report helpers shared by the experiments: grouped bar plots (matplotlib Agg, atomic PNG)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .._io import atomic_write_with

__all__ = ["bar_plot"]

logger = logging.getLogger("convexsnn")


def bar_plot(
    groups: Sequence[str],
    series: Mapping[str, Sequence[tuple[float, float]]],
    path: str | os.PathLike,
    *,
    title: str = "",
    ylabel: str = "accuracy (%)",
    published: Sequence[float | None] | None = None,
) -> Path:
    """Grouped bars (mean ± std per series and group), optional published markers.

    Parameters
    ----------
    groups : list of str
        X-axis groups (e.g. ``"T=6 L=5"``).
    series : dict of str to list of (mean, std)
        One entry per group for every series (percent; ``nan`` for missing).
    path : path ending in ``.png``
    published : list of float or None, optional
        Published number per group (percent), drawn as a black marker.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(max(6.0, 0.9 * len(groups) * max(1, len(series)) / 2.5), 4.2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    n = max(1, len(series))
    width = 0.8 / n
    x = np.arange(len(groups))
    for i, (name, vals) in enumerate(series.items()):
        m = np.array([v[0] for v in vals], float)
        s = np.array([v[1] for v in vals], float)
        ax.bar(
            x - 0.4 + width * (i + 0.5),
            np.nan_to_num(m),
            width,
            yerr=np.nan_to_num(s),
            capsize=2,
            label=name,
        )
    if published is not None:
        px = [xi for xi, p in zip(x, published) if p is not None]
        py = [p for p in published if p is not None]
        if px:
            ax.plot(px, py, "k_", ms=18, mew=2.5, label="published")
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return path
