"""The ``long_memory`` experiment: quick cells, record fields, structured CVX at T = 14."""

import json

import pytest

from convexsnn.experiments import EXPERIMENTS
from convexsnn.experiments.base import Cell
from convexsnn.experiments.runner import load_experiment

FIELDS = (
    "method",
    "seed",
    "task",
    "T",
    "val_accuracy",
    "test_accuracy",
    "ood_accuracy",
    "ood_2T",
    "ood_5T",
    "dictionary_columns",
    "witness_neurons",
    "kept_neurons",
    "rel_gap",
    "chosen",
    "seconds",
)


@pytest.fixture(scope="module")
def mod():
    return load_experiment("long_memory")


@pytest.fixture(scope="module")
def quick_cells(mod):
    out = []
    for c in mod.cells(True, (0,)):
        res = mod.run_cell(c)
        out.append({"cell": c.to_dict(), "result": json.loads(json.dumps(res)), "seconds": 0.0})
    return out


def test_registered():
    assert EXPERIMENTS["long_memory"] == "convexsnn.experiments.long_memory"


def test_quick_cells_records(mod, quick_cells):
    assert 1 <= len(quick_cells) <= 4
    methods = set()
    for c in quick_cells:
        recs = c["result"]["records"]
        assert recs
        for r in recs:
            for f in FIELDS:
                assert f in r, (r["method"], f)
            assert r.get("error") is None, r.get("error")
            assert 0.0 <= r["test_accuracy"] <= 1.0
            assert r["ood_2T"] is not None and r["ood_5T"] is not None
            methods.add(r["method"])
            if r["method"].endswith("CVX"):
                assert r["dictionary_columns"] >= 1 and r["rel_gap"] is not None
    assert {"CVX", "SG", "SG-CVX"} <= methods
    md = mod.table(quick_cells)
    assert "published" in md and "CVX structured" in md


def test_full_grid_shape(mod):
    cells = mod.cells(False, (0, 1))
    ids = [c.id for c in cells]
    assert len(ids) == len(set(ids))
    xor = {
        (c.params["T"], c.params["L"], c.params["witnesses"])
        for c in cells
        if c.params["task"] == "xor"
    }
    assert {
        (T, L, k)
        for T in (11, 14, 20, 50)
        for L in (3, 5)
        for k in ("gaussian", "gaussian-rec", "structured")
    } == xor
    assert {"parity_k3", "tomita1", "tomita3_paper", "tomita7"} <= {c.params["task"] for c in cells}


def test_structured_cvx_solves_xor_T14(mod):
    params = {
        "task": "xor",
        "T": 14,
        "L": 3,
        "witnesses": "structured",
        "sg": False,
        "config": {**mod.QUICK_CONFIG, "n_branches": 2, "width": 16, "last": 16},
        "sizes": [300, 300, 500, 200],
        "quick": True,
    }
    res = mod.run_cell(Cell("long_memory", "t14-structured", params, 0))
    (rec,) = res["records"]
    assert rec["method"] == "CVX"
    assert rec["test_accuracy"] >= 0.99
    assert rec["exact_train_test"] is not False
