"""Reconstruction exactness, pruning, persistence, and the end-to-end CVX pipeline."""

import json
from functools import partial

import numpy as np
import pytest
import torch

from conftest import rand_inputs
from convexsnn.dictionary import build_dictionary
from convexsnn.network import ParallelSNN
from convexsnn.reconstruct import ReconstructionError, check_reconstruction, reconstruct
from convexsnn.selection import fit_convex
from convexsnn.witnesses import Witnesses, gaussian_witnesses

_data = partial(rand_inputs, T=5, dtype=torch.float64, scale=2.0, shift=-0.4)


def _sparse_W(P, C, kind, seed):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(P, C, generator=g, dtype=torch.float64)
    if kind == "l1":  # elementwise sparsity: a neuron stays while any entry is non-zero
        W[torch.rand(P, C, generator=g) < 0.75] = 0
    else:  # l21: whole rows vanish
        W[torch.rand(P, generator=g) < 0.8] = 0
    W[P // 2, 0] = 1.5  # at least one active neuron
    return W


def _assert_exact(model, d, W, X):
    rep = check_reconstruction(model, d, W, X)
    assert rep["n_mismatch"] == 0 and rep["prediction_agreement"] == 1.0
    assert rep["max_abs_diff"] <= 1e-9
    Z = d.transform(X) @ W
    with torch.no_grad():
        z = model(X)
    torch.testing.assert_close(z.reshape(-1, W.shape[1]), Z, rtol=0, atol=1e-9)
    return rep


@pytest.mark.parametrize("widths,K", [([12], 3), ([8, 10], 3), ([6, 8, 10], 4)])
@pytest.mark.parametrize("readout", ["spike", "membrane"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_reconstruction_reproduces_scores(widths, K, readout, reset):
    w = gaussian_witnesses(
        3, n_branches=K, hidden_widths=widths, scale=1.5, seed=len(widths), leak=0.85, reset=reset
    )
    Xtr, Xte = _data(0, 60), _data(1, 40)
    for steps in ("last", "all"):
        d = build_dictionary(w, Xtr, readout=readout, readout_bias=0.2, steps=steps)
        for kind in ("l1", "l21"):
            W = _sparse_W(d.n_columns, 3, kind, seed=K)
            model = reconstruct(d, W)
            assert model.config["output"] == steps
            assert model.config["readout"] == readout and model.config["reset"] == reset
            assert model.config["readout_bias"] == 0.2
            _assert_exact(model, d, W, Xtr)
            _assert_exact(model, d, W, Xte)
            rec = model.saved_extra
            n_active = int((W != 0).any(dim=1).sum())
            assert rec["n_active_columns"] == n_active
            assert (
                sorted(c for c in rec["feature_columns"] if c >= 0)
                == torch.nonzero((W != 0).any(dim=1))[:, 0].tolist()
            )
            if len(widths) == 1:
                assert rec["layout"] == "regrouped" and model.n_branches == 1
                assert model.hidden_widths == [n_active]
            else:
                assert rec["layout"] == "padded"
                assert model.hidden_widths[:-1] == widths[:-1]
                assert model.hidden_widths[-1] <= widths[-1]


def test_unused_branches_dropped_and_duplicates_get_no_weight():
    w = gaussian_witnesses(3, n_branches=5, hidden_widths=[6, 8], scale=1.5, seed=3)
    X = _data(2, 50)
    d = build_dictionary(w, X)
    W = torch.zeros(d.n_columns, 2, dtype=torch.float64)
    cols = np.flatnonzero(d.provenance[:, 0] == 2)[:3]
    W[cols, 0] = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)[: len(cols)]
    W[cols, 1] = 0.25
    model = reconstruct(d, W)
    assert model.n_branches == 1 and model.saved_extra["branches_kept"] == [2]
    assert model.hidden_widths == [6, len(cols)]
    assert torch.equal(model.weights[0][0], w.weights[0][2])
    _assert_exact(model, d, W, X)
    # nothing active: a minimal inert network scoring zero
    z = reconstruct(d, torch.zeros(d.n_columns, 2, dtype=torch.float64))
    assert z.n_branches == 1 and z.hidden_widths[-1] == 1
    with torch.no_grad():
        assert torch.equal(z(X), torch.zeros(50, 2, dtype=torch.float64))
    # prune=False keeps the whole witness set
    full = reconstruct(d, W, prune=False)
    assert full.n_branches == 5 and full.hidden_widths == [6, 8]
    _assert_exact(full, d, W, X)
    # duplicates: the column's weight sits on its kept (first) neuron only
    Wd = torch.ones(d.n_columns, 2, dtype=torch.float64)
    fd = reconstruct(d, Wd, prune=False)
    j = int(np.argmax(d.duplicate_counts()))
    assert d.duplicate_counts()[j] >= 1
    kept, *dups = [int(k) * 8 + int(i) for k, i in d.duplicates(j)]
    assert torch.equal(fd.output_weight[kept], Wd[j])
    for f in dups:
        assert not fd.output_weight[f].any()
    _assert_exact(fd, d, Wd, X)
    # tol: rows below it are dropped and the model reproduces D W_tol
    W2 = W.clone()
    W2[cols[0]] = 1e-12
    m2 = reconstruct(d, W2, tol=1e-9)
    assert m2.saved_extra["n_active_columns"] == len(cols) - 1
    check_reconstruction(m2, d, W2, X)


def test_recurrent_and_bias_witnesses():
    g = torch.Generator().manual_seed(5)
    K = 3
    w0 = torch.randn(K, 3, 7, generator=g, dtype=torch.float64) * 1.5
    w1 = torch.randn(K, 7, 6, generator=g, dtype=torch.float64)
    b = [
        torch.randn(K, 7, generator=g, dtype=torch.float64) * 0.2,
        torch.randn(K, 6, generator=g, dtype=torch.float64) * 0.2,
    ]
    rec = torch.randn(K, 6, 6, generator=g, dtype=torch.float64) * 0.6
    rec[rec.abs() < 0.5] = 0  # sparse: the closure keeps only the needed feeders
    X, Xte = _data(3, 50), _data(4, 30)
    for recurrent in (
        [None, rec],
        [
            torch.randn(K, 7, generator=g, dtype=torch.float64) * 0.3,
            torch.randn(K, 6, generator=g, dtype=torch.float64) * 0.3,
        ],
    ):
        w = Witnesses([w0, w1], biases=b, recurrent=recurrent, leak=0.9)
        d = build_dictionary(w, X, steps="all")
        W = _sparse_W(d.n_columns, 2, "l21", seed=1)
        model = reconstruct(d, W)
        assert model.config["recurrent"] == w.recurrent_kind and model.config["bias"]
        _assert_exact(model, d, W, X)
        _assert_exact(model, d, W, Xte)
    # dense recurrence: a kept neuron's recurrent feeders are kept too (closure), or the
    # network's spikes would differ from the dictionary's
    w = Witnesses([w0, w1], recurrent=[None, rec], leak=0.9)
    d = build_dictionary(w, X, steps="all")
    W = torch.zeros(d.n_columns, 2, dtype=torch.float64)
    W[0, 0], W[1, 1] = 1.0, -1.0
    model = reconstruct(d, W)
    assert model.hidden_widths[-1] > 2
    _assert_exact(model, d, W, X)


def test_single_layer_diagonal_recurrence_regrouped():
    g = torch.Generator().manual_seed(6)
    w = Witnesses(
        [torch.randn(4, 3, 5, generator=g, dtype=torch.float64) * 1.5],
        recurrent=[torch.randn(4, 5, generator=g, dtype=torch.float64) * 0.5],
    )
    X = _data(5, 40)
    d = build_dictionary(w, X, steps="all", readout="membrane", readout_bias=0.1)
    W = _sparse_W(d.n_columns, 2, "l1", seed=2)
    model = reconstruct(d, W)
    assert model.saved_extra["layout"] == "regrouped"
    _assert_exact(model, d, W, X)


def test_save_load_keeps_exactness_and_provenance(tmp_path):
    w = gaussian_witnesses(
        3, n_branches=4, hidden_widths=[7, 9, 8], scale=1.5, seed=9, reset="zero"
    )
    X, Xte = _data(6, 50), _data(7, 30)
    d = build_dictionary(w, X, readout="membrane", readout_bias=0.1)
    W = _sparse_W(d.n_columns, 3, "l1", seed=3)
    cert = {"primal": 1.0, "dual": 0.5, "gap": 0.5, "converged": False}
    model = reconstruct(d, W, certificate=cert)
    for path in (tmp_path / "m", tmp_path / "m.npz"):
        model.save(path, extra=model.saved_extra)
        back = ParallelSNN.load(path)
        assert back.saved_extra["certificate"] == cert
        assert back.saved_extra["feature_provenance"] == model.saved_extra["feature_provenance"]
        assert back.saved_extra["witnesses"] == w.description
        for Xs in (X, Xte):
            _assert_exact(back, d, W, Xs)
            with torch.no_grad():
                assert torch.equal(back(Xs), model(Xs))


def test_check_reconstruction_raises_on_mismatch():
    w = gaussian_witnesses(3, n_branches=2, hidden_widths=[6, 6], scale=1.5, seed=1)
    X = _data(8, 40)
    d = build_dictionary(w, X)
    W = _sparse_W(d.n_columns, 2, "l21", seed=4)
    model = reconstruct(d, W)
    with torch.no_grad():
        model.output_weight.neg_()
    with pytest.raises(ReconstructionError, match="disagrees"):
        check_reconstruction(model, d, W, X)
    rep = check_reconstruction(model, d, W, X, raise_on_mismatch=False)
    assert rep["n_mismatch"] > 0
    with pytest.raises(ValueError, match="shape"):
        reconstruct(d, W[:-1])
    with pytest.raises(ValueError, match="NaN"):
        reconstruct(d, torch.full_like(W, float("nan")))


def test_fit_convex_selection_on_validation_and_records():
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(300, 4, 2, generator=g) < 0.5).double()
    y = ((X[:, 0, 0] + X[:, -1, 0]) == 1).long()
    w = gaussian_witnesses(2, n_branches=4, hidden_widths=[8, 16], seed=0)
    fit = fit_convex(
        w,
        (X[:150], y[:150], X[150:225], y[150:225], X[225:], y[225:]),
        readout="membrane",
        readout_biases=[0.0, 0.5],
        loss="squared",
        regs=[0.3, 0.03],
        criterion="objective",
    )
    assert len(fit.grid) == 4
    json.dumps(fit.grid)
    json.dumps(fit.summary())
    best = min(fit.grid, key=lambda r: (r["val_loss"], -r["beta"]))
    assert (fit.readout_bias, fit.reg) == (best["readout_bias"], best["beta"])
    assert fit.val_accuracy == best["val_accuracy"]
    assert fit.checks["test"]["n_mismatch"] == 0 and fit.checks["train"]["n_mismatch"] == 0
    assert fit.test_accuracy == fit.checks["test"]["accuracy_dictionary"]
    assert fit.model.saved_extra["certificate"]["primal"] == fit.certificate.primal
    # collapsing repeated (row, label) pairs does not change the solution
    fit2 = fit_convex(
        w,
        (X[:150], y[:150], X[150:225], y[150:225]),
        loss="squared",
        regs=[0.03],
        collapse_rows=False,
        tol=1e-10,
    )
    fit3 = fit_convex(
        w,
        (X[:150], y[:150], X[150:225], y[150:225]),
        loss="squared",
        regs=[0.03],
        collapse_rows=True,
        tol=1e-10,
    )
    torch.testing.assert_close(fit2.solution.W, fit3.solution.W, rtol=1e-5, atol=1e-6)
    assert fit2.certificate.primal == pytest.approx(fit3.certificate.primal, rel=1e-8)
    assert np.isnan(fit3.test_accuracy)


@pytest.mark.slow
def test_end_to_end_first_last_xor_T6_L5():
    """CVX on FIRST-LAST-XOR, T = 6, depth L = 5 (4 LIF layers), paper sizes 2000/2000/4000.

    Settings (robust over witness seeds 0-7 x data seeds 0-1 in development: 100% test each):
    K = 8 Gaussian branches, per-branch widths 25/25/25/50 (400 witness neurons, ~185
    dictionary columns), scale 1, leak 0.99, threshold 1, subtract reset, float64, spike
    readout at the last step, squared loss + L1, beta in {0.1, 0.03} chosen on validation.
    """
    from convexsnn.tasks import load_task

    data = load_task("xor", T=6, seed=0)
    w = gaussian_witnesses(2, n_branches=8, depth=5, p_rec=200, p_last=400, seed=0)
    assert w.hidden_widths == [25, 25, 25, 50]
    fit = fit_convex(w, data, readout="spike", loss="squared", penalty="l1", regs=[0.1, 0.03])
    assert fit.train_accuracy == 1.0 and fit.val_accuracy == 1.0
    assert fit.test_accuracy == 1.0
    assert fit.certificate.converged
    assert fit.checks["test"]["n_mismatch"] == 0
    model = fit.model
    assert model.hidden_widths[-1] < 50 and model.n_features < w.n_witness_neurons
    with torch.no_grad():
        assert torch.equal(model.predict(data.test.X.double()), data.test.y)


def test_check_reconstruction_tolerates_rounding_ties_only():
    """A float32 network may break an exact score tie differently from the float64 readout;
    that is counted as a tie, while a real disagreement still raises."""
    import torch as _t

    from convexsnn.dictionary import build_dictionary
    from convexsnn.reconstruct import ReconstructionError, check_reconstruction, reconstruct
    from convexsnn.witnesses import gaussian_witnesses

    g = _t.Generator().manual_seed(0)
    X = _t.rand(40, 3, 2, generator=g) * 2
    wit = gaussian_witnesses(2, n_branches=1, hidden_widths=[8], scale=2.0, seed=1)
    d = build_dictionary(wit, X)
    W = _t.zeros(d.n_columns, 2, dtype=_t.float64)
    W[:, 0] = 1.0
    W[:, 1] = 1.0 + 1e-12  # class 1 wins by far less than float32 rounding where D has ones
    model = reconstruct(d, W).to(_t.float32)
    rep = check_reconstruction(model, d, W, X)  # must not raise: ties only
    assert rep["n_mismatch"] == rep["n_mismatch_at_ties"]
    W_bad = W.clone()
    W_bad[:, 1] = 2.0
    with pytest.raises(ReconstructionError):
        check_reconstruction(model, d, W_bad, X)


# ---------------------------------------------------------------------- fit_convex: grid, heads
def _xor_split(n, T=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = (torch.rand(n, T, 2, generator=g) < 0.5).double()
    y = ((X[:, 0, 0] + X[:, -1, 0]) == 1).long()
    return X, y


def test_fit_convex_witness_grid_skips_silent_sets_and_prefers_earlier_on_ties():
    """A witness grid: a silent set is recorded with its error; sets are compared on validation
    accuracy alone, the earlier one winning a tie; within a set, ties="sparsity" takes the
    largest beta among the best validation accuracies."""
    from convexsnn.selection import NoDictionaryError

    X, y = _xor_split(300, T=2)  # T = 2: every witness set and beta reaches 100% validation
    data = (X[:150], y[:150], X[150:225], y[150:225], X[225:], y[225:])
    silent = gaussian_witnesses(2, n_branches=2, hidden_widths=[4], scale=1e-9, seed=0)
    a = gaussian_witnesses(2, n_branches=4, hidden_widths=[8, 16], seed=0)
    b = gaussian_witnesses(2, n_branches=4, hidden_widths=[8, 16], seed=1)
    grid = [({"name": "silent"}, silent), ({"name": "a"}, a), ({"name": "b"}, b)]
    betas = [0.3, 0.1, 0.03, 0.01]
    fit = fit_convex(grid, data, loss="squared", regs=betas, ties="sparsity")
    assert "error" in fit.witness_grid[0] and fit.witness_grid[0]["name"] == "silent"
    assert [r["val_accuracy"] for r in fit.witness_grid[1:]] == [1.0, 1.0]
    assert fit.witness_settings == {"name": "a"} and fit.witnesses is a  # tie: the earlier set
    rows = [r for r in fit.grid if r.get("name") == "a"]
    assert [r["val_accuracy"] for r in rows] == [1.0] * 4
    assert fit.reg == 0.3 and fit.val_accuracy == 1.0  # tie: the largest beta
    assert fit.checks["train"]["n_mismatch"] == 0 and fit.checks["test"]["n_mismatch"] == 0
    json.dumps(fit.summary())
    # the default rule breaks the same tie by the lower validation loss
    fit2 = fit_convex(grid[1:2], data, loss="squared", regs=betas)
    best = min(fit2.grid, key=lambda r: (-r["val_accuracy"], r["val_loss"], -r["beta"]))
    assert fit2.reg == best["beta"] != 0.3
    assert fit2.witness_settings == {"name": "a"}
    with pytest.raises(NoDictionaryError, match="silent") as err:
        fit_convex([({"name": "silent"}, silent)], data, loss="squared", regs=[0.1])
    assert "error" in err.value.witness_grid[0]
    with pytest.raises(ValueError):  # a single witness set raises the dictionary's error
        fit_convex(silent, data, loss="squared", regs=[0.1])
    with pytest.raises(TypeError, match="witnesses"):
        fit_convex([("a", a)], data)


def test_fit_convex_two_label_heads_are_solved_per_head_and_scored_jointly():
    """Token labels with two heads (a 3-class head and a 2-class head kept at two columns):
    one path per head on the same dictionary, beta chosen per head, the joint accuracy is the
    fraction of rows with both heads right, and the reconstructed network reproduces both."""
    from convexsnn.reconstruct import joint_correct

    g = torch.Generator().manual_seed(3)
    X = (torch.rand(240, 5, 2, generator=g) < 0.5).double()
    h0 = (X[..., 0] + X[..., 1]).long()  # 0, 1, 2: count of active inputs
    h1 = (torch.cumsum(X[..., 0], dim=1) > 1).long()  # memory of the first input
    y = torch.stack([h0, h1], dim=-1)  # (n, T, 2)
    w = gaussian_witnesses(2, n_branches=4, hidden_widths=[16], scale=2.0, seed=0)
    data = (X[:120], y[:120], X[120:180], y[120:180], X[180:], y[180:])
    fit = fit_convex(
        w,
        data,
        steps="all",
        n_classes=[3, 2],
        loss="squared",
        regs=[0.1, 0.01],
        check=("train", "val", "test"),
    )
    assert fit.W.shape == (fit.dictionary.n_columns, 5) and len(fit.heads) == 2
    assert fit.heads[1].solution.W.shape[1] == 2  # binary head keeps two columns
    for h, hf in enumerate(fit.heads):
        rows = [r for r in fit.grid if r["head"] == h]
        assert len(rows) == 2
        assert hf.val_accuracy == max(r["val_accuracy"] for r in rows)
    Dva = fit.dictionary.transform(X[120:180])
    yva = [y[120:180, :, h].reshape(-1) for h in range(2)]
    joint = joint_correct(Dva @ fit.W, yva, [3, 2]).double().mean().item()
    assert fit.val_accuracy == pytest.approx(joint)
    assert joint <= min(hf.val_accuracy for hf in fit.heads)
    for split in ("train", "val", "test"):
        assert fit.checks[split]["prediction_agreement"] == 1.0
    assert fit.test_accuracy == fit.checks["test"]["accuracy_network"]
    assert fit.model.config["output"] == "all" and fit.model.output_weight.shape[1] == 5
    assert len(fit.model.saved_extra["extra"]["certificates"]) == 2
    with pytest.raises(ValueError, match=r"\(120, 5, 2\)"):
        fit_convex(
            w,
            (X[:120], y[:120, :, :1], X[120:180], y[120:180]),
            steps="all",
            n_classes=[3, 2],
            regs=[0.1],
        )


def test_check_reconstruction_per_head_and_kept_neurons():
    from convexsnn.convex import solve_readout
    from convexsnn.reconstruct import kept_neurons

    X = _data(0, 60)
    w = gaussian_witnesses(3, n_branches=2, hidden_widths=[12], scale=2.0, seed=0)
    d = build_dictionary(w, X)
    W = _sparse_W(d.n_columns, 5, "l1", 0)
    model = reconstruct(d, W)
    y = torch.stack([torch.randint(0, 3, (60,)), torch.randint(0, 2, (60,))], dim=1)
    rep = check_reconstruction(model, d, W, X, y, heads=[3, 2])
    z = d.transform(X) @ W
    p0, p1 = z[:, :3].argmax(1), z[:, 3:].argmax(1)
    assert rep["prediction_agreement"] == 1.0
    assert rep["accuracy_dictionary"] == pytest.approx(
        ((p0 == y[:, 0]) & (p1 == y[:, 1])).double().mean().item()
    )
    with pytest.raises(ValueError, match="heads"):
        check_reconstruction(model, d, W, X, heads=[3, 3])
    n_rows = int((W != 0).any(dim=1).sum())
    sol = solve_readout(d.operator(), torch.randint(0, 2, (60,)), reg=0.01)
    assert kept_neurons(W) == n_rows == kept_neurons(model)
    assert kept_neurons(sol) == int(sol.support.numel())
