"""The sequential-MNIST experiment in quick mode, end to end on the real IDX files (< 60 s)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from convexsnn.experiments import mnist
from convexsnn.experiments.base import Cell

DATA = Path(mnist.DEFAULT_DATA_DIR)
needs_data = pytest.mark.skipif(
    not (DATA / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"MNIST IDX files not found in {DATA} (set CONVEXSNN_MNIST_DIR)",
)

RECORD_FIELDS = (
    "method",
    "config",
    "quick",
    "seed",
    "T",
    "depth",
    "n_branches",
    "hidden_widths",
    "leak",
    "theta",
    "reset",
    "readout",
    "n_train",
    "n_val",
    "n_test",
    "val_accuracy",
    "test_accuracy",
    "certificate",
    "rel_gap",
    "chosen",
    "dictionary",
    "reconstruction_check",
    "training",
    "anchor",
    "anchor_what",
    "seconds",
)


def test_interface_and_cells():
    for attr in ("NAME", "DESCRIPTION", "ANCHORS", "cells", "run_cell", "table"):
        assert hasattr(mnist, attr)
    assert mnist.NAME == "mnist"
    assert mnist.ANCHORS["paper/SG"]["value"] == 85.2
    assert mnist.ANCHORS["paper/CVX"]["value"] == 70.0
    assert mnist.ANCHORS["paper/SG-CVX"]["value"] == 83.9
    assert mnist.ANCHORS["best"]["value"] == 92.5
    cs = mnist.cells(quick=True, seeds=(0, 1))
    assert [c.id for c in cs] == [
        "paper-seed0",
        "paper-seed1",
        "full-seed0",
        "full-seed1",
        "full-rec-seed0",
        "full-rec-seed1",
    ]
    assert all(isinstance(c, Cell) and c.experiment == "mnist" for c in cs)
    # the paper row is like for like: T=4, L=3, 6k, leak 0.99, threshold 1
    p = mnist.config_for("paper")
    assert (p["T"], p["n_train"], p["leak"], p["theta"]) == (4, 6000, 0.99, 1.0)
    assert len(p["sg"]["widths"]) == 2 and len(p["cvx"]["widths"]) == 2
    with pytest.raises(ValueError):
        mnist.config_for("nope")
    with pytest.raises(ValueError):
        mnist.run_config("paper", quick=True, methods=["XYZ"], data_dir=str(DATA))


@needs_data
def test_quick_full_config_end_to_end(tmp_path):
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    cell = Cell(
        experiment="mnist",
        id="full-seed0",
        params={
            "config": "full",
            "quick": True,
            "methods": ["SG", "CVX", "SG-CVX"],
            "data_dir": str(DATA),
            "cache_dir": str(tmp_path / "models"),
        },
        seed=0,
    )
    out = mnist.run_cell(cell)
    recs = {r["method"]: r for r in out["records"]}
    assert set(recs) == {"SG", "CVX", "SG-CVX"}
    for r in recs.values():
        for f in RECORD_FIELDS:
            assert f in r, f"record of {r['method']} lacks {f}"
        assert (r["n_train"], r["n_val"], r["n_test"]) == (1000, 500, 1000)
        assert r["T"] == 4 and r["quick"] is True
        assert 0.0 <= r["val_accuracy"] <= 1.0 and 0.0 <= r["test_accuracy"] <= 1.0
        assert r["seconds"]["total"] > 0
        assert r["anchor"] == 92.5
    # well above chance (10%)
    assert recs["CVX"]["test_accuracy"] > 0.55  # measured 61.5% (seed 0)
    assert recs["SG"]["test_accuracy"] > 0.3
    assert recs["SG-CVX"]["test_accuracy"] > 0.3
    for m in ("CVX", "SG-CVX"):
        c = recs[m]["certificate"]
        assert c is not None and math.isfinite(c["rel_gap"]) and c["rel_gap"] >= -1e-6
        assert c["primal"] >= c["dual"] - 1e-6 * abs(c["primal"])
        chk = recs[m]["reconstruction_check"]
        assert chk["prediction_agreement"] == 1.0
        assert recs[m]["dictionary"]["n_columns"] > 0
    # the SG network was cached and is reused
    assert (tmp_path / "models" / "full-seed0-SG" / "config.json").is_file()
    again = mnist.run_config(
        "full", quick=True, methods=["SG"], data_dir=str(DATA), cache_dir=tmp_path / "models"
    )
    assert again[0]["training"]["loaded_from"].endswith("full-seed0-SG")
    assert again[0]["test_accuracy"] == recs["SG"]["test_accuracy"]
    # JSON round trip and the table
    json.dumps(out)
    md = mnist.table([{"cell": cell.to_dict(), "result": out}])
    assert len(md.splitlines()) == 2 + 3  # header, rule, one row per method
    assert "92.5" in md and "CVX" in md


@needs_data
def test_quick_reservoir_finetune_and_recurrent_methods():
    """R-CVX and SG->SG at the paper configuration; SG / SG-CVX with recurrent hidden layers."""
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    recs = {
        r["method"]: r
        for r in mnist.run_config(
            "paper", quick=True, methods=["SG", "R-CVX", "SG->SG"], data_dir=str(DATA)
        )
    }
    r = recs["R-CVX"]
    assert r["chosen"]["witnesses"] == "reservoir"
    assert r["chosen"]["leak"] in (0.9, 0.99) and r["chosen"]["input_scale"] in (1.0, 2.0, 4.0)
    assert (
        r["leak"] == r["chosen"]["leak"]
        and r["reconstruction_check"]["prediction_agreement"] == 1.0
    )
    assert math.isfinite(r["rel_gap"]) and r["test_accuracy"] > 0.2  # chance is 0.1
    ft = recs["SG->SG"]
    # kept only when validation does not drop
    assert ft["val_accuracy"] >= recs["SG"]["val_accuracy"]
    assert ft["training"]["kept_finetuned"] == (
        ft["training"]["val_after"] >= ft["training"]["val_before"]
    )
    rec = {
        r["method"]: r
        for r in mnist.run_config(
            "full-rec", quick=True, methods=["SG", "SG-CVX", "SG-CVX-ens"], data_dir=str(DATA)
        )
    }
    ens = rec["SG-CVX-ens"]
    assert ens["n_branches"] == 2 and ens["chosen"]["witnesses"] == "2 SG networks"
    assert ens["reconstruction_check"]["prediction_agreement"] == 1.0
    assert ens["dictionary"]["n_columns"] > rec["SG-CVX"]["dictionary"]["n_columns"]
    assert rec["SG"]["test_accuracy"] > 0.3
    assert rec["SG-CVX"]["reconstruction_check"]["prediction_agreement"] == 1.0
    assert mnist.config_for("full-rec")["sg"]["recurrent"] == "dense"
    assert mnist.config_for("t28")["T"] == 28
