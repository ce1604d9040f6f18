"""``experiments/exp_pure_convex.py delay`` end to end on a small slice of the real MNIST files.

The records must say honestly whether each solve is certified: ``certified`` is true only for a
solve that converged to the target relative gap without hitting its wall-clock cap, and the
recorded test accuracy is the reconstructed network's (agreement with the convex readout 1.0).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CONVEXSNN_MNIST_DIR", ROOT.parent.parent / "shared" / "data" / "mnist"))
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(
        not (DATA / "train-images-idx3-ubyte.gz").is_file(),
        reason=f"MNIST IDX files not found in {DATA} (set CONVEXSNN_MNIST_DIR)",
    ),
]


@pytest.fixture(scope="module")
def exp():
    spec = importlib.util.spec_from_file_location(
        "exp_pure_convex", ROOT / "experiments" / "exp_pure_convex.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.DATA = str(DATA)
    return mod


SMALL = ["--n-train", "300", "--n-val", "200", "--n-test", "300", "--neurons", "24"]


@pytest.mark.slow
def test_squared_delay_and_control_records_are_certified(exp, tmp_path):
    out = tmp_path / "pure.json"
    argv = ["delay", *SMALL, "--loss", "squared", "--betas", "3.0", "1.0", "--control"]
    assert exp.main([*argv, "--max-time", "120", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["experiment"] == "pure_convex" and len(d["runs"]) == 1
    delay, last = d["records"]
    assert delay["method"] == "CVX-delay" and last["method"].startswith("CVX-last-step")
    # T = 4 delay lines expose every step of each source: up to 4 columns a source, while the
    # last-step control has at most one (silent or duplicate columns are dropped)
    assert last["n_columns"] <= 24 < delay["n_columns"] <= 4 * 24
    for r in (delay, last):
        assert r["status"] == "converged" and r["rel_gap"] <= 1e-6
        assert r["certified"] and r["grid_certified"]
        assert [g["beta"] for g in r["grid"]] == [3.0, 1.0]
        assert r["beta"] in (3.0, 1.0)
        assert r["prediction_agreement_test"] == 1.0
        assert r["checked_splits"] == ["test"]  # the default: test rows only
        assert 0.1 < r["test_accuracy"] <= 1.0
        assert r["tol"] == 1e-6 and r["threads"] == 1 and len(r["load_start"]) == 3


@pytest.mark.slow
def test_capped_solve_is_recorded_as_not_certified(exp, tmp_path):
    out = tmp_path / "pure.json"
    argv = ["delay", *SMALL, "--loss", "softmax", "--betas", "1e-3", "--max-time", "1e-3"]
    argv.append("--check-train")
    assert exp.main([*argv, "--json", str(out)]) == 0
    (r,) = json.loads(out.read_text())["records"]
    assert r["status"] == "max_time" and not r["converged"]
    assert not r["certified"] and not r["grid_certified"]
    # the network is still reconstructed from the returned point and checked against it, here
    # on the training rows too (--check-train)
    assert r["prediction_agreement_test"] == 1.0
    assert r["checked_splits"] == ["test", "train"]


def test_certified_rule(exp):
    ok = {"rel_gap": 5e-7, "converged": True, "status": "converged"}
    assert exp._certified(ok, 1e-6)
    assert not exp._certified(ok | {"rel_gap": 2e-6}, 1e-6)
    assert not exp._certified(ok | {"status": "max_time"}, 1e-6)
    assert not exp._certified(ok | {"converged": False}, 1e-6)
    assert not exp._certified(ok | {"rel_gap": float("nan")}, 1e-6)
    assert not exp._certified(ok | {"rel_gap": None}, 1e-6)


def test_memory_estimate_counts_each_part(exp):
    # P = 4096 columns, 55000 / 5000 / 10000 rows, T = 4: images (float64 and a per-step copy),
    # bool + packed training bits, float64 validation rows, then the larger of the solve (Gram,
    # face inverse, float32 block: 20 P^2; dense float64 support columns: 8 n P) and the check
    P, n, nv, nt, T = 4096, 55000, 5000, 10000, 4
    est = exp.memory_estimate(n, nv, nt, P, T=T, check_mem_gb=1.0)
    assert est["inputs"] == 16 * 784 * (n + nv + nt)
    assert est["train_dictionary"] == int(n * P * 9 / 8)
    assert est["val_dictionary"] == 8 * nv * P
    assert est["solver"] == 20 * P * P + 8 * n * P
    assert est["check"] == 2**30 + (9 + 32 * T) * 8 * P  # one block of test rows
    held = est["inputs"] + est["train_dictionary"] + est["val_dictionary"]
    assert est["total"] == held + max(est["solver"], est["check"])
    # the peak measured before the test check ran in blocks (5.4 GiB, in the check of all 10k
    # test rows at once) is below the estimate of that configuration
    at_once = exp.memory_estimate(n, nv, nt, 4095, T=T, check_mem_gb=100.0)
    assert at_once["check"] == (9 + 32 * T) * nt * 4095
    assert at_once["total"] > 5.4 * 2**30
    # checking the training rows too adds their whole dictionary and forward pass
    with_train = exp.memory_estimate(n, nv, nt, P, check_train=True, T=T, check_mem_gb=1.0)
    assert with_train["check"] - est["check"] == (9 + 32 * T) * n * P


def test_check_blocks_fit_the_budget(exp):
    # (9 + 32 T) P bytes a row: T = 28, P = 7168 -> 152 rows in 1 GiB; never fewer than 8
    assert exp.check_chunk_rows(7168, 28, 1.0) == 2**30 // ((9 + 32 * 28) * 7168)
    assert exp.check_chunk_rows(10**9, 28, 1.0) == 8


def test_chunked_check_equals_one_check():
    # blocks of 7 rows give the counts and accuracies of one check over all 40 rows
    spec = importlib.util.spec_from_file_location(
        "exp_pure_convex_chunk", ROOT / "experiments" / "exp_pure_convex.py"
    )
    exp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exp)
    import torch

    from convexsnn.delay import gaussian_delay_witnesses
    from convexsnn.dictionary import build_dictionary
    from convexsnn.reconstruct import check_reconstruction, reconstruct

    g = torch.Generator().manual_seed(0)
    X = torch.rand(40, 3, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    w = gaussian_delay_witnesses(6, 12, 3, scale=2.0, seed=0)
    d = build_dictionary(w, X)
    W = torch.randn(d.n_columns, 3, generator=g, dtype=torch.float64)
    model = reconstruct(d, W)
    one = check_reconstruction(model, d, W, X, y, unique_inputs=True)
    blocks = exp.chunked_check(model, d, W, X, y, 7)
    assert blocks["n_rows"] == 40 and blocks["chunk_rows"] == 7
    for k in ("n_mismatch", "prediction_agreement", "accuracy_network", "accuracy_dictionary"):
        assert blocks[k] == pytest.approx(one[k], abs=1e-12)
    # the scores themselves agree to rounding (a block's matrix product may round differently)
    assert blocks["max_abs_diff"] <= 1e-12 and one["max_abs_diff"] <= 1e-12
    assert blocks["prediction_agreement"] == 1.0


def test_too_large_dictionary_is_refused_before_loading_data(exp, monkeypatch, capsys):
    # 1024 sources x T = 28 = 28672 columns: the solver's Gram matrix, face inverse and float32
    # block alone are 20 * 28672^2 bytes = 15.3 GiB, over the default 8 GiB budget; the refusal
    # comes before any data is read (a loader that fails proves it is never called)
    def no_load(*a, **k):
        raise AssertionError("data loaded before the memory check")

    monkeypatch.setattr(exp, "sequential_mnist", no_load)
    argv = ["delay", "--n-train", "55000", "--neurons", "1024", "--T", "28", "--loss", "squared"]
    with pytest.raises(SystemExit, match="refusing to start.*28672 columns.*--mem-budget-gb 8"):
        exp.main(argv)
    # a budget large enough lets it through to the (here failing) loader
    with pytest.raises(AssertionError, match="data loaded"):
        exp.main([*argv, "--mem-budget-gb", "64"])


def test_delay_sources_families(exp):
    import argparse

    import torch

    g = torch.Generator().manual_seed(1)
    X = torch.rand(30, 4, 56, generator=g, dtype=torch.float64)  # 2 image rows a step
    base = {"neurons": 5, "T": 4, "scale": 0.5, "seed": 2, "leak": 0.0, "min_patch": [1, 3]}
    kinds = {}
    for fam in ("gaussian", "patch", "template"):
        args = argparse.Namespace(family=fam, quantiles=[0.5, 0.95], **base)
        w = exp.delay_sources(args, X)
        assert w.n_branches == 5 and w.hidden_widths == [4] and w.leak == 0.0
        kinds[fam] = w.description["base"]["kind"]
        if fam != "gaussian":
            assert w.description["base"]["options"]["grid"] == [2, 28]
    assert kinds == {"gaussian": "gaussian", "patch": "patch", "template": "template"}
    with pytest.raises(SystemExit):
        exp.main(["delay", *SMALL, "--family", "patch", "--control"])


@pytest.mark.slow
def test_template_family_record_is_certified(exp, tmp_path):
    out = tmp_path / "pure.json"
    argv = ["delay", *SMALL, "--loss", "squared", "--betas", "1.0", "--family", "template"]
    assert exp.main([*argv, "--leak", "0", "--scale", "0.5", "--json", str(out)]) == 0
    (r,) = json.loads(out.read_text())["records"]
    assert r["family"] == "template" and r["leak"] == 0.0 and r["quantiles"] == [0.5, 0.95]
    assert r["min_patch"] == [3, 5] and r["certified"]
    assert r["prediction_agreement_test"] == 1.0 and 0.1 < r["test_accuracy"] <= 1.0


def test_ridge_screen_reads_informative_columns_only(exp):
    import torch

    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 10, (600,), generator=g)
    noise = (torch.rand(600, 40, generator=g) < 0.5).to(torch.float64)
    # columns that are the one-hot label: perfect on rows not seen in training
    D = torch.cat([torch.nn.functional.one_hot(y, 10).to(torch.float64), noise], 1)
    res = exp.ridge_screen(D[:400], y[:400], D[400:], y[400:])
    assert res["val_accuracy"] == 1.0 and set(res["val_by_lam"]) == {3.0, 10.0, 30.0}
    # noise columns alone carry nothing about the labels of new rows: near chance
    res = exp.ridge_screen(noise[:400], y[:400], noise[400:], y[400:])
    assert res["val_accuracy"] < 0.25


@pytest.mark.slow
def test_cg_record_is_certified_with_pricing_gap_and_exact_network(exp, tmp_path):
    out = tmp_path / "cg.json"
    argv = ["cg", *SMALL, "--loss", "squared", "--betas", "1.0", "--family", "template"]
    argv += ["--leak", "0", "--scale", "0.5", "--rounds", "1", "--pool", "64", "--add", "8"]
    assert exp.main([*argv, "--json", str(out)]) == 0
    (r,) = json.loads(out.read_text())["records"]
    assert r["method"] == "CVX-CG (template delay)" and r["n_sources"] <= 24
    assert r["certified"] and r["rounds_certified"] and r["rel_gap"] <= 1e-6
    assert [x["round"] for x in r["rounds"]] == [0, 1] or r["stopped"] == "pricing"
    assert r["pricing_candidates"] == 64 and r["pricing_gap"] == r["rounds"][-1]["pricing_gap"]
    assert r["lam"] == pytest.approx(1.0 / r["P0"] ** 0.5)
    assert r["prediction_agreement_test"] == 1.0 and 0.1 < r["test_accuracy"] <= 1.0
    assert 0.0 <= r["rounds"][-1]["val_accuracy"] <= 1.0
    assert r["val_accuracy"] == r["rounds"][-1]["val_accuracy"]


def test_cg_needs_template_sources_and_the_squared_loss(exp):
    with pytest.raises(SystemExit):
        exp.main(["cg", *SMALL, "--loss", "squared", "--family", "patch"])
    with pytest.raises(SystemExit):
        exp.main(["cg", *SMALL, "--loss", "softmax", "--family", "template"])
