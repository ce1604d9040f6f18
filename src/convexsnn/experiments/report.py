"""Report helpers shared by the experiments: grouped bar plots (matplotlib Agg, atomic PNG) and
accuracy-against-size records gathered from the ``results.json`` files of
:func:`convexsnn.experiments.reproduce`."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .._io import atomic_write_with

__all__ = ["bar_plot", "accuracy_vs_size_records"]

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


def _results_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """``results.json`` files: the files named, and those in the folders named (or one level
    below them)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
        if p.is_dir():
            found = sorted(p.glob("results.json")) + sorted(p.glob("*/results.json"))
            if not found:
                raise FileNotFoundError(
                    f"no results.json in {p} or its sub-folders (run 'convexsnn reproduce' first)"
                )
            files += found
        else:
            files.append(p)
    return files


def accuracy_vs_size_records(
    paths: Sequence[str | os.PathLike], metric: str = "test_accuracy"
) -> list[dict]:
    """Accuracy against training-set size, per method, from ``reproduce`` results.

    Parameters
    ----------
    paths : list of path-like
        ``results.json`` files written by :func:`convexsnn.experiments.reproduce`, or folders
        holding them (directly or one level down).
    metric : str
        The record field to gather (default ``test_accuracy``).

    Returns
    -------
    list of dict
        ``{"method", "n_train", "accuracy", "std"}``: the mean and (population) standard
        deviation over seeds of ``metric`` for every (method, training-set size), in the order
        of first appearance. The size is the record's ``n_train``, else its task's, else the
        cell's parameter.

    Raises
    ------
    FileNotFoundError
        A path does not exist, or a folder holds no ``results.json``.
    ValueError
        A file is not a readable ``reproduce`` results file, or no record has a method, a size
        and ``metric``.
    """
    groups: dict = {}
    for f in _results_files(paths):
        try:
            data = json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{f} is not a readable results file ({exc})") from None
        cells = data.get("cells") if isinstance(data, dict) else None
        if not isinstance(cells, list):
            raise ValueError(f"{f} is not a 'convexsnn reproduce' results.json (no 'cells')")
        for c in cells:
            params = (c.get("cell") or {}).get("params") or {}
            for rec in (c.get("result") or {}).get("records") or []:
                acc = rec.get(metric)
                n = rec.get(
                    "n_train", (rec.get("task_meta") or {}).get("n_train", params.get("n_train"))
                )
                if acc is None or n is None or rec.get("method") is None:
                    continue
                groups.setdefault((rec["method"], int(n)), []).append(float(acc))
    if not groups:
        raise ValueError(
            f"no records with a method, a training-set size and {metric} in "
            f"{', '.join(map(str, paths))}"
        )
    return [
        {"method": m, "n_train": n, "accuracy": float(np.mean(v)), "std": float(np.std(v))}
        for (m, n), v in groups.items()
    ]
