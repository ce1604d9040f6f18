"""The library calls behind the command line (``tasks.load_npz_task``, ``ParallelSNN.summary``,
``experiments.report.accuracy_vs_size_records``) and the layout of the ``convexsnn.cli``
package (one module per command, ``python -m convexsnn``)."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import convexsnn
import convexsnn.cli
from conftest import small_net
from convexsnn.experiments.report import accuracy_vs_size_records
from convexsnn.pipelines import ALL_METHODS
from convexsnn.tasks import load_npz_task, read_npz

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------- tasks.load_npz_task
def _xy(n, T=3, d=2, labels=(0, 1), seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, T, d)).astype(np.float32)
    y = np.asarray([labels[i % len(labels)] for i in range(n)])
    return X, y


def test_npz_task_holds_out_a_fifth_of_the_rows_as_validation(tmp_path):
    X, y = _xy(23)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    task = load_npz_task(tmp_path / "d.npz", seed=4)
    n_val = round(0.2 * 23)  # 5
    assert (task.train.n, task.val.n, task.test.n) == (23 - n_val, n_val, n_val)
    assert task.test is task.val  # no test data: the validation split is reported as test
    # the rows are a permutation drawn from SeedSequence([seed, 1]): same seed, same split
    perm = np.random.default_rng(np.random.SeedSequence([4, 1])).permutation(23)
    np.testing.assert_array_equal(task.val.X.numpy(), X[perm[:n_val]])
    np.testing.assert_array_equal(task.train.y.numpy(), y[perm[n_val:]])
    assert task.name == "data:d" and task.label_mode == "sequence" and task.n_classes == 2
    assert task.meta["source"] == {
        "kind": "data",
        "train": str(tmp_path / "d.npz"),
        "val": None,
        "test": None,
        "seed": 4,
    }
    assert len(task.meta["notes"]) == 2 and task.meta["label_values"] is None


def test_npz_task_maps_labels_to_classes_in_increasing_order(tmp_path):
    X, y = _xy(12, labels=(7, 3, 9))
    Xv, yv = _xy(6, labels=(9, 3), seed=1)
    np.savez(tmp_path / "d.npz", X=X, y=y, X_val=Xv, y_val=yv)
    task = load_npz_task(tmp_path / "d.npz")
    assert task.meta["label_values"] == [3, 7, 9]
    assert task.n_classes == 3
    lookup = {3: 0, 7: 1, 9: 2}
    assert task.train.y.tolist() == [lookup[v] for v in y]
    assert task.val.y.tolist() == [lookup[v] for v in yv]
    # a model's recorded mapping is used as is, and a label outside it is refused
    again = load_npz_task(tmp_path / "d.npz", label_values=[3, 7, 9], for_model=True)
    assert again.train.y.tolist() == task.train.y.tolist()
    with pytest.raises(ValueError, match=r"labels \[9\] do not occur"):
        load_npz_task(tmp_path / "d.npz", label_values=[3, 7], for_model=True)


def test_npz_task_reads_2d_inputs_as_one_step_and_token_labels(tmp_path):
    X = np.arange(20, dtype=np.float64).reshape(10, 2)
    np.savez(tmp_path / "flat.npz", X=X, y=np.arange(10) % 2)
    task = load_npz_task(tmp_path / "flat.npz")
    assert task.train.X.shape[1:] == (1, 2) and task.train.X.dtype == torch.float32
    X3, _ = _xy(10, T=4)
    np.savez(tmp_path / "tok.npz", X=X3, y=np.arange(40).reshape(10, 4) % 2)
    assert load_npz_task(tmp_path / "tok.npz").label_mode == "token"


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"X": np.zeros((6, 2, 2)), "y": np.zeros(6, dtype=int)}, "only one class"),
        ({"X": np.full((6, 2, 2), np.nan), "y": np.arange(6) % 2}, "contains NaN or inf"),
        ({"X": np.zeros((6, 2, 2)), "y": np.arange(5) % 2}, "has 6 rows but y has 5"),
        ({"X": np.zeros((6, 2, 2)), "y": -(np.arange(6) % 2)}, "negative labels"),
        ({"X": np.zeros((6, 2, 2)), "y": np.full(6, 0.5)}, "integer class labels"),
        ({"X": np.zeros((4, 2, 2)), "y": np.arange(4) % 2}, "too few rows"),
        ({"X": np.zeros((6, 2, 2, 1)), "y": np.arange(6) % 2}, r"shape \(n, T, d\)"),
        ({"inputs": np.zeros((6, 2))}, "must hold arrays 'X' and 'y'"),
        (
            {"X": np.zeros((6, 2, 2)), "y": np.arange(6) % 2, "X_val": np.zeros((3, 2, 5))},
            "must hold arrays 'X_val' and 'y_val'",
        ),
        (
            {
                "X": np.zeros((6, 2, 2)),
                "y": np.arange(6) % 2,
                "X_val": np.zeros((3, 2, 5)),
                "y_val": np.arange(3) % 2,
            },
            "validation data has 5 features per step",
        ),
    ],
)
def test_npz_task_refuses_bad_arrays_in_one_line(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message) as info:
        load_npz_task(tmp_path / "bad.npz")
    assert "\n" not in str(info.value)


def test_read_npz_refuses_what_is_not_a_plain_archive(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_npz(tmp_path / "none.npz", "training data")
    with pytest.raises(ValueError, match="is a folder"):
        read_npz(tmp_path, "training data")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single .npy array"):
        read_npz(tmp_path / "one.npy")
    np.savez(tmp_path / "obj.npz", X=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"not a zip \(.npz\) archive of plain arrays"):
        read_npz(tmp_path / "obj.npz")  # never unpickled
    (tmp_path / "junk.npz").write_bytes(b"not a zip" * 20)
    with pytest.raises(ValueError, match="could not be read as .npz"):
        read_npz(tmp_path / "junk.npz")


# ------------------------------------------------------------------------ ParallelSNN.summary
def test_summary_counts_kept_neurons_from_the_output_rows():
    net = small_net(3, 2, n_branches=3, depth=3, p_rec=6, p_last=12)  # 4 last neurons / branch
    with torch.no_grad():
        net.output_weight.zero_()
        net.output_weight[0, 0] = 1.0  # branch 0, neuron 0
        net.output_weight[1, :] = -2.0  # branch 0, neuron 1
        net.output_weight[9, 1] = 0.5  # branch 2, neuron 1
    s = net.summary()
    assert s["kept_neurons"] == 3
    assert s["kept_neurons_per_branch"] == [2, 0, 1]
    assert s["branches_with_kept_neurons"] == 2
    assert s["output_weights"] == {"shape": [12, 2], "nonzero": 4, "sparsity": 20 / 24}
    assert s["depth"] == 3 and s["hidden_widths"] == [2, 4] and s["n_features"] == 12
    assert s["n_parameters"] == sum(p.numel() for p in net.parameters())
    assert s["path_norm"] == pytest.approx(float(net.path_norm().detach()))
    assert s["method"] is None and s["certificate"] is None
    json.dumps(s, allow_nan=False)  # JSON-safe as it is


def test_summary_reads_the_training_record():
    net = small_net(3, 2, n_branches=2, p_last=4)
    cert = {"primal": 1.0, "dual": 0.99, "rel_gap": 0.01}
    net.saved_extra = {
        "method": "CVX",
        "report": {"task": "xor", "val_accuracy": 0.9, "certificates": [cert]},
    }
    s = net.summary()
    assert (s["method"], s["task"], s["val_accuracy"], s["test_accuracy"]) == (
        "CVX",
        "xor",
        0.9,
        None,
    )
    assert s["certificate"] == cert
    net.saved_extra["certificate"] = {"primal": 2.0}
    net.saved_extra["task_spec"] = {"name": "parity_k3"}
    assert net.summary()["certificate"] == {"primal": 2.0}
    assert net.summary()["task"] == "parity_k3"
    assert convexsnn.cli.model_info(net) == net.summary()


# ------------------------------------------------------------ experiments.report aggregation
def test_accuracy_vs_size_records_average_over_seeds(tmp_path):
    cells = [
        {"cell": {"params": {"n_train": 100}}, "result": {"records": recs}}
        for recs in (
            [{"method": "CVX", "test_accuracy": 0.8}, {"method": "SG", "test_accuracy": 0.6}],
            [{"method": "CVX", "test_accuracy": 0.9}, {"method": "SG", "test_accuracy": None}],
            [{"method": "CVX", "test_accuracy": 0.5, "n_train": 400}],
        )
    ]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps({"cells": cells}))
    records = accuracy_vs_size_records([tmp_path])  # a folder: found one level down
    assert records == [
        {
            "method": "CVX",
            "n_train": 100,
            "accuracy": pytest.approx(0.85),
            "std": pytest.approx(0.05),
        },
        {"method": "SG", "n_train": 100, "accuracy": 0.6, "std": 0.0},
        {"method": "CVX", "n_train": 400, "accuracy": 0.5, "std": 0.0},
    ]
    assert records[0]["std"] == pytest.approx(np.std([0.8, 0.9]))
    with pytest.raises(ValueError, match="no records with a method"):
        accuracy_vs_size_records([tmp_path / "a" / "results.json"], metric="val_accuracy")
    (tmp_path / "b.json").write_text("[]")
    with pytest.raises(ValueError, match="no 'cells'"):
        accuracy_vs_size_records([tmp_path / "b.json"])
    (tmp_path / "c").mkdir()
    with pytest.raises(FileNotFoundError, match="no results.json"):
        accuracy_vs_size_records([tmp_path / "c"])


# ------------------------------------------------------------------------------ package layout
def test_every_pipeline_method_is_a_train_choice():
    names = convexsnn.cli.METHOD_NAMES
    assert sorted(names.values()) == sorted(ALL_METHODS)
    assert next(iter(names)) == "cvx"  # the default comes first in the help
    assert names["cvx-sg"] == "CVX->SG" and names["sg-sg"] == "SG->SG"
    parser = convexsnn.cli.build_parser()
    for name in names:
        assert parser.parse_args(["train", "--method", name]).method == name


def test_cli_modules_are_small_and_cite_no_missing_file():
    names = [m.name for m in pkgutil.iter_modules(convexsnn.cli.__path__)]
    assert {"train", "reproduce", "export", "info", "plot", "demo"} <= set(names)
    for name in ["__init__"] + [n for n in names if n != "__main__"]:
        path = os.path.join(convexsnn.cli.__path__[0], f"{name}.py")
        with open(path, encoding="utf-8") as f:
            source = f.read()
        assert "DESIGN.md" not in source, name
        assert source.count("\n") < 500, f"convexsnn.cli.{name} grew past 500 lines"


@pytest.mark.slow
def test_python_dash_m_convexsnn_runs_the_command_line():
    """``python -m convexsnn`` is ``convexsnn`` (``python -m convexsnn.cli``: test_cli.py)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    src = os.path.dirname(os.path.dirname(convexsnn.__file__))
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    bad = subprocess.run(
        [sys.executable, "-m", "convexsnn", "info", "no-such-model"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip() == "convexsnn: error: no saved model at no-such-model"
