"""Plots: PNG files written atomically and readable, bad input refused."""

import os
import sys
from functools import partial

import numpy as np
import pytest
import torch

from conftest import rand_inputs, small_net

pytest.importorskip("matplotlib")

from convexsnn.plots import (  # noqa: E402
    plot_accuracy_vs_size,
    plot_dictionary_stats,
    plot_raster,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert img[..., :3].std() > 0  # not a blank canvas
    assert not [f for f in os.listdir(path.parent) if f.endswith(".tmp")]


def _net(**kw):
    return small_net(3, 2, n_branches=3, hidden_widths=[8, 5], **kw)


_x = partial(rand_inputs, n=4, T=12)


# ---------------------------------------------------------------------------------- raster
@pytest.mark.parametrize("readout", ["spike", "membrane"])
def test_raster_writes_png(tmp_path, readout):
    path = tmp_path / f"raster_{readout}.png"
    out = plot_raster(_net(readout=readout, readout_bias=0.2), _x(), path, sample=2)
    assert out == path
    _assert_png(path)


def test_raster_rejects_bad_input(tmp_path):
    net = _net()
    with pytest.raises(ValueError, match="out of range"):
        plot_raster(net, _x(), tmp_path / "r.png", sample=4)
    with pytest.raises(ValueError, match=".png"):
        plot_raster(net, _x(), tmp_path / "r.pdf")
    with pytest.raises(ValueError, match="features"):
        plot_raster(net, torch.rand(2, 5, 7), tmp_path / "r.png")
    with pytest.raises(TypeError, match="ParallelSNN"):
        plot_raster(torch.nn.Linear(2, 2), _x(), tmp_path / "r.png")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------ dictionary stats
def _stats(seed=0, label=None):
    rng = np.random.default_rng(seed)
    n_w = np.array([16, 64, 256, 1024])
    d = {
        "density": rng.beta(2, 5, size=300),
        "n_witness": n_w,
        "n_unique": np.minimum(n_w, (n_w**0.8).astype(int)),
    }
    if label:
        d["label"] = label
    return d


@pytest.mark.parametrize("form", ["dict", "list", "density_only", "growth_only"])
def test_dictionary_stats_writes_png(tmp_path, form):
    stats = {
        "dict": _stats(),
        "list": [_stats(0, "T=6"), _stats(1, "T=8")],
        "density_only": {"density": [0.1, 0.5, 0.5, 0.9]},
        "growth_only": [{"n_witness": [10, 20, 40], "n_unique": [9, 15, 22]}],
    }[form]
    path = tmp_path / "dict.png"
    assert plot_dictionary_stats(stats, path) == path
    _assert_png(path)


@pytest.mark.parametrize(
    "bad,match",
    [
        ([], "empty"),
        ({"density": [0.5], "colour": "red"}, "unknown keys"),
        ({"label": "x"}, "needs 'density'"),
        ({"n_witness": [1, 2]}, "both"),
        ({"density": [0.5, 1.5]}, r"\[0, 1\]"),
        ({"density": [0.5, np.nan]}, "NaN"),
        ({"density": []}, "non-empty"),
        ({"n_witness": [1, 2, 3], "n_unique": [1, 2]}, "pair up"),
    ],
)
def test_dictionary_stats_rejects_bad_input(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        plot_dictionary_stats(bad, tmp_path / "d.png")
    assert not list(tmp_path.iterdir())


def test_dictionary_stats_rejects_wrong_container(tmp_path):
    with pytest.raises(TypeError):
        plot_dictionary_stats(np.ones(3), tmp_path / "d.png")


# ----------------------------------------------------------------------- accuracy vs size
def _records():
    recs = []
    for method, base in (("SG", 0.80), ("CVX", 0.70), ("SG-CVX", 0.83)):
        for n in (500, 1000, 2000, 6000):
            recs.append(
                {
                    "method": method,
                    "n_train": n,
                    "accuracy": base + 0.02 * np.log2(n / 500),
                    "std": 0.01,
                }
            )
    recs.append({"method": "chance", "n_train": 500, "accuracy": 0.1})  # no std, one point
    return recs


def test_accuracy_vs_size_writes_png(tmp_path):
    path = tmp_path / "acc.png"
    assert plot_accuracy_vs_size(_records(), path, title="sMNIST T=4") == path
    _assert_png(path)
    first = path.read_bytes()
    plot_accuracy_vs_size(_records()[:4], path)  # overwrite in place
    assert path.read_bytes() != first and sorted(os.listdir(tmp_path)) == ["acc.png"]
    _assert_png(path)


@pytest.mark.parametrize(
    "bad,match",
    [
        ([], "empty"),
        ([{"method": "SG", "n_train": 10, "accuracy": 0.5, "seed": 1}], "unknown keys"),
        ([{"method": "SG", "accuracy": 0.5}], "missing"),
        ([{"method": "SG", "n_train": 0, "accuracy": 0.5}], "positive"),
        ([{"method": "SG", "n_train": 10, "accuracy": float("nan")}], "finite"),
        ([{"method": "SG", "n_train": 10, "accuracy": 0.5, "std": -1}], "std"),
        ([{"method": "SG", "n_train": 10, "accuracy": 0.5}] * 2, "two records"),
    ],
)
def test_accuracy_vs_size_rejects_bad_input(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        plot_accuracy_vs_size(bad, tmp_path / "a.png")
    assert not list(tmp_path.iterdir())


def test_accuracy_vs_size_rejects_wrong_container(tmp_path):
    with pytest.raises(TypeError):
        plot_accuracy_vs_size({"method": "SG", "n_train": 10, "accuracy": 0.5}, tmp_path / "a.png")


# ----------------------------------------------------------------------- infrastructure
def test_missing_matplotlib_gives_clear_import_error(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install convexsnn\[plot\]"):
        plot_accuracy_vs_size(_records(), tmp_path / "a.png")
    with pytest.raises(ImportError, match=r"pip install convexsnn\[plot\]"):
        plot_raster(_net(), _x(), tmp_path / "r.png")
    assert not list(tmp_path.iterdir())


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "acc.png"
    plot_accuracy_vs_size(_records(), path)
    old = path.read_bytes()

    def broken(self, f, *a, **k):  # writes part of the temporary file, then fails
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plot_accuracy_vs_size(_records()[:3], path)
    assert path.read_bytes() == old and sorted(os.listdir(tmp_path)) == ["acc.png"]


def test_plotting_leaves_pyplot_state_alone(tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    plot_accuracy_vs_size(_records(), tmp_path / "a.png")
    assert matplotlib.get_backend() == backend
    if "matplotlib.pyplot" in sys.modules:
        assert not sys.modules["matplotlib.pyplot"].get_fignums()
