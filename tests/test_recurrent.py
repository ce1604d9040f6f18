"""Recurrent LIF layers and structured witnesses (issue 6: long-memory tasks).

* recurrence with all-zero weights is bit-identical to the feed-forward path;
* a self-exciting neuron latches a bit for 50 steps;
* BPTT through the recurrence matches finite differences (smooth proxy, float64);
* the in-place no-grad scan equals the autograd scan with recurrence;
* the ``"sparse"`` recurrent kind of ``ParallelSNN`` (mask buffer, masked gradient, save/load);
* structured witnesses: seeded bit-reproducibility and the exactness of every motif;
* end to end: CVX with structured witnesses solves FIRST-LAST-XOR at T = 14 (and 2T, 5T), and
  the reconstructed recurrent network reproduces the convex predictions exactly.
"""

import numpy as np
import pytest
import torch

from convexsnn.lif import lif_scan, simulate
from convexsnn.network import ParallelSNN
from convexsnn.structured import (
    MOTIFS,
    gaussian_recurrent_witnesses,
    mix_witnesses,
    neuron_roles,
    recurrent_masks,
    structured_witnesses,
)
from convexsnn.surrogate import get_surrogate
from convexsnn.tasks import load_task
from convexsnn.witnesses import gaussian_witnesses

F64 = torch.float64


def _stack(seed, K=2, d=3, widths=(5, 4), B=3, T=12, scale=1.5, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    sizes = (d,) + tuple(widths)
    ws = [
        (torch.randn(K, sizes[i], sizes[i + 1], generator=g, dtype=F64) * scale).to(dtype)
        for i in range(len(widths))
    ]
    x = (torch.rand(B, T, d, generator=g, dtype=F64) * 2).to(dtype)
    return x, ws, g


def _rec(kind, g, K, widths, scale=0.7, dtype=F64):
    if kind == "dense":
        return [(torch.randn(K, n, n, generator=g, dtype=F64) * scale).to(dtype) for n in widths]
    return [(torch.randn(K, n, generator=g, dtype=F64) * scale).to(dtype) for n in widths]


def _xor_strings(T, n, seed):
    """Random one-hot binary strings ``(n, T, 2)`` and their first / last symbols."""
    g = torch.Generator().manual_seed(seed)
    sym = torch.randint(0, 2, (n, T), generator=g)
    x = torch.nn.functional.one_hot(sym, 2).to(F64)
    return x, sym[:, 0], sym[:, -1]


# ---------------------------------------------------------------------- zero recurrence == FF
@pytest.mark.parametrize("kind", ["dense", "diagonal"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("grad", [False, True])
def test_zero_recurrence_equals_feed_forward(kind, reset, grad):
    x, ws, _ = _stack(0)
    widths = [w.shape[2] for w in ws]
    zeros = (
        [torch.zeros(2, n, n, dtype=F64) for n in widths]
        if kind == "dense"
        else [torch.zeros(2, n, dtype=F64) for n in widths]
    )
    sf = get_surrogate("atan")
    if grad:
        ws = [w.clone().requires_grad_(True) for w in ws]
        zeros = [z.requires_grad_(True) for z in zeros]
    ff = simulate(x, ws, leak=0.9, theta=1.0, reset=reset, spike_fn=sf, return_membrane=True)
    rc = simulate(
        x, ws, recurrent=zeros, leak=0.9, theta=1.0, reset=reset, spike_fn=sf, return_membrane=True
    )
    for a, b in zip(ff.spikes + ff.membranes, rc.spikes + rc.membranes):
        assert torch.equal(a, b)
    assert any(bool(s.any()) for s in ff.spikes)  # not a vacuous comparison


@pytest.mark.parametrize("kind", ["dense", "sparse", "diagonal"])
def test_network_zero_recurrence_equals_feed_forward(kind):
    x, _, _ = _stack(1, d=3)
    common = dict(n_branches=2, hidden_widths=[5, 4], seed=3, dtype=F64, leak=0.9, init_scale=3.0)
    ff = ParallelSNN(3, 2, **common)
    rc = ParallelSNN(3, 2, recurrent=kind, recurrent_density=0.5, **common)
    for p, q in zip(ff.weights, rc.weights):  # same seed, recurrence drawn separately
        assert torch.equal(p, q)
    with torch.no_grad():
        rc.output_weight.copy_(ff.output_weight)
        a, b = ff.simulate(x, return_membrane=True), rc.simulate(x, return_membrane=True)
        for s, t in zip(a.spikes + a.membranes, b.spikes + b.membranes):
            assert torch.equal(s, t)
        assert torch.equal(ff(x), rc(x))


# ---------------------------------------------------------------------- latch
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("leak", [0.0, 0.5, 0.99, 1.0])
def test_latch_holds_a_bit_for_50_steps(reset, leak):
    theta = 1.0
    T = 51
    pulse = torch.zeros(2, T, 1, 1, dtype=F64)
    pulse[0, 0] = theta  # sample 0: one pulse at step 1; sample 1: no input at all
    self_exc = torch.full((1, 1), theta, dtype=F64)  # diagonal recurrent weight = theta
    s, m = lif_scan(
        pulse, leak=leak, theta=theta, reset=reset, recurrent=self_exc, return_membrane=True
    )
    assert bool(s[0].all())  # spikes at every one of the 51 steps
    assert not bool(s[1].any())  # never without the pulse
    assert bool((m[0] >= 0).all())
    # without recurrence the same pulse gives a single spike
    s_ff, _ = lif_scan(pulse, leak=leak, theta=theta, reset=reset)
    assert s_ff[0].sum() == 1

    # the same latch as a ParallelSNN with diagonal recurrence, and with dense recurrence
    for kind in ("diagonal", "dense"):
        net = ParallelSNN(
            1, 1, hidden_widths=[1], recurrent=kind, leak=leak, reset=reset, dtype=F64, seed=0
        )
        with torch.no_grad():
            net.weights[0].fill_(theta)
            net.recurrent_weights[0].fill_(theta)
        x = pulse[:, :, 0]
        spikes = net.simulate(x).spikes[0][..., 0, 0]
        assert spikes[0].tolist() == [1.0] * T and spikes[1].tolist() == [0.0] * T


# ---------------------------------------------------------------------- gradients
@pytest.mark.parametrize("kind", ["dense", "diagonal"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_bptt_through_recurrence_matches_finite_differences(kind, reset):
    """gradcheck of the whole two-layer recurrent scan w.r.t. input, input and recurrent weights.

    The forward pass of a surrogate is a Heaviside, so the finite differences use the surrogate's
    smooth proxy (forward: its primitive, backward: the hand-written derivative) as the spike
    function; this checks BPTT through the recurrent term, the leak and the reset.
    """
    g = torch.Generator().manual_seed(7)
    K, d, widths, T = 2, 2, (3, 2), 6
    x = torch.rand(2, T, d, generator=g, dtype=F64) * 2
    w1 = torch.randn(K, d, widths[0], generator=g, dtype=F64)
    w2 = torch.randn(K, widths[0], widths[1], generator=g, dtype=F64)
    r1, r2 = _rec(kind, g, K, widths, scale=0.8)
    sur = get_surrogate("atan", alpha=1.0)

    def run(x, w1, r1, w2, r2):
        tr = simulate(
            x,
            [w1, w2],
            recurrent=[r1, r2],
            leak=0.8,
            theta=1.0,
            reset=reset,
            spike_fn=sur.smooth_proxy,
            return_membrane=True,
        )
        return tr.spikes[-1], tr.membranes[-1], tr.membranes[0]

    args = tuple(t.clone().requires_grad_(True) for t in (x, w1, r1, w2, r2))
    assert torch.autograd.gradcheck(run, args, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_surrogate_gradient_reaches_recurrent_weights():
    x, ws, g = _stack(2)
    rec = [r.requires_grad_(True) for r in _rec("dense", g, 2, [5, 4], scale=0.5)]
    ws = [w.requires_grad_(True) for w in ws]
    tr = simulate(x, ws, recurrent=rec, leak=0.9, spike_fn=get_surrogate("atan"))
    tr.spikes[-1].sum().backward()
    for t in ws + rec:
        assert t.grad is not None and bool(torch.isfinite(t.grad).all())
    assert float(rec[0].grad.abs().sum()) > 0


# ---------------------------------------------------------------------- in-place == autograd
@pytest.mark.parametrize("kind", ["dense", "diagonal"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_inplace_path_equals_autograd_path_with_recurrence(kind, reset, dtype):
    x, ws, g = _stack(3, T=20, dtype=dtype)
    rec = _rec(kind, g, 2, [5, 4], scale=0.9, dtype=dtype)
    with torch.no_grad():
        a = simulate(x, ws, recurrent=rec, leak=0.95, reset=reset, return_membrane=True)
    wg = [w.clone().requires_grad_(True) for w in ws]
    rg = [r.clone().requires_grad_(True) for r in rec]
    b = simulate(
        x,
        wg,
        recurrent=rg,
        leak=0.95,
        reset=reset,
        spike_fn=get_surrogate("atan"),
        return_membrane=True,
    )
    assert b.spikes[-1].requires_grad
    for s, t in zip(a.spikes + a.membranes, b.spikes + b.membranes):
        assert torch.equal(s, t.detach())
    assert 0 < float(a.spikes[-1].mean()) < 1


# ---------------------------------------------------------------------- sparse recurrent kind
def test_sparse_network_masks_gradients_and_round_trips(tmp_path):
    net = ParallelSNN(
        3,
        2,
        n_branches=2,
        hidden_widths=[6, 5],
        recurrent="sparse",
        recurrent_density=0.3,
        seed=4,
        dtype=F64,
        init_scale=2.0,
    )
    assert net.config["recurrent_density"] == 0.3
    masks = net.recurrent_masks
    assert [tuple(m.shape) for m in masks] == [(2, 6, 6), (2, 5, 5)]
    assert all(bool(((m == 0) | (m == 1)).all()) for m in masks)
    assert 0 < float(sum(m.sum() for m in masks)) < sum(m.numel() for m in masks)
    # the same seed gives the same masks
    again = ParallelSNN(
        3,
        2,
        n_branches=2,
        hidden_widths=[6, 5],
        recurrent="sparse",
        recurrent_density=0.3,
        seed=4,
        dtype=F64,
        init_scale=2.0,
    )
    assert all(torch.equal(a, b) for a, b in zip(masks, again.recurrent_masks))
    with torch.no_grad():
        for r in net.recurrent_weights:
            r.copy_(torch.randn(r.shape, generator=torch.Generator().manual_seed(1), dtype=F64))
    x = _stack(5, d=3)[0]
    # the layers see W * M: equal to a dense network holding the masked weights
    dense = ParallelSNN(
        3,
        2,
        n_branches=2,
        hidden_widths=[6, 5],
        recurrent="dense",
        seed=4,
        dtype=F64,
        init_scale=2.0,
    )
    with torch.no_grad():
        dense.output_weight.copy_(net.output_weight)
        for p, q in zip(dense.recurrent_weights, net.effective_recurrent_weights()):
            p.copy_(q)
        assert torch.equal(dense(x), net(x))
    # gradient is zero off the mask
    net.zero_grad()
    net(x).sum().backward()
    for r, m in zip(net.recurrent_weights, masks):
        assert r.grad is not None
        assert float((r.grad * (1 - m)).abs().sum()) == 0.0
    # save / load keeps the masks (buffers)
    path = net.save(tmp_path / "sparse.npz")
    loaded = ParallelSNN.load(path)
    assert loaded.config == net.config
    assert all(torch.equal(a, b) for a, b in zip(loaded.recurrent_masks, masks))
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    # replacing the masks zeroes the weights off the new mask
    new = [torch.eye(6, dtype=F64).expand(2, 6, 6), torch.zeros(2, 5, 5)]
    net.set_recurrent_masks(new)
    assert float(net.recurrent_weights[1].detach().abs().sum()) == 0.0
    assert torch.equal(net.recurrent_weights[0], net.recurrent_weights[0] * new[0])
    with pytest.raises(ValueError, match="shape"):
        net.set_recurrent_masks([torch.ones(2, 6, 6), torch.ones(2, 4, 4)])
    with pytest.raises(ValueError, match="0 and 1"):
        net.set_recurrent_masks([torch.full((2, 6, 6), 0.5), torch.ones(2, 5, 5)])
    with pytest.raises(ValueError, match="sparse"):
        dense.set_recurrent_masks(new)
    with pytest.raises(ValueError, match="recurrent_density"):
        ParallelSNN(3, 2, recurrent="sparse", recurrent_density=1.5)


def test_sg_training_of_sparse_network_keeps_the_mask():
    train = pytest.importorskip("convexsnn.train")
    task = load_task("xor", T=6, n_train=200, n_val=100, n_test=100, seed=0)
    net = ParallelSNN(
        2,
        2,
        n_branches=2,
        hidden_widths=[8, 8],
        recurrent="sparse",
        recurrent_density=0.3,
        seed=0,
        init_scale=3.0,
    )
    masks = [m.clone() for m in net.recurrent_masks]
    with torch.no_grad():
        for r, m in zip(net.recurrent_weights, masks):
            r.copy_(0.3 * m)
    train.train_surrogate(
        net,
        task.train.X,
        task.train.y,
        task.val.X,
        task.val.y,
        epochs=3,
        lr=1e-2,
        weight_decay=1e-3,
        progress=False,
    )
    for r, m, m0 in zip(net.recurrent_weights, net.recurrent_masks, masks):
        assert torch.equal(m, m0)  # masks are buffers, not trained
        assert float((r.detach() * (1 - m)).abs().sum()) == 0.0  # off-mask stays zero
    assert any(
        float((r.detach() - 0.3 * m).abs().sum()) > 0  # on-mask weights trained
        for r, m in zip(net.recurrent_weights, masks)
    )


# ---------------------------------------------------------------------- structured witnesses
def _bank_and_gates(w, X):
    tr = w.simulate(X)
    roles = neuron_roles(w)
    return tr, roles


@pytest.mark.parametrize(
    "recurrent,widths", [("dense", [12, 16]), ("dense", [9, 10, 9, 16]), ("diagonal", [8, 9, 16])]
)
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("leak", [0.5, 0.99, 1.0])
def test_structured_motifs_are_exact_at_any_length(recurrent, widths, reset, leak):
    w = structured_witnesses(
        2, n_branches=6, hidden_widths=widths, recurrent=recurrent, seed=2, leak=leak, reset=reset
    )
    roles = neuron_roles(w)
    for T in (14, 70):
        X, first, last = _xor_strings(T, 64, seed=T)
        tr = w.simulate(X)
        bank = tr.spikes[-2][:, :, 0]
        names = roles[-2][0]
        col = {n: bank[:, :, names.index(n)] for n in names if n != "gaussian"}
        t_idx = torch.arange(T)
        for c in range(2):
            assert torch.equal(col[f"relay[{c}]"], X[:, :, c])
            assert torch.equal(col[f"first[{c}]"], (first == c).to(F64)[:, None].expand(-1, T))
            seen = (torch.cumsum(X[:, :, c], 1) > 0).to(F64)
            assert torch.equal(col[f"ever[{c}]"], seen)
        assert bool(col["on"].all())
        assert torch.equal(col["after_first"], (t_idx >= 1).to(F64).expand(64, T))
        assert torch.equal(col["oneshot"], (t_idx == 0).to(F64).expand(64, T))
        # the four XOR gates: relay[b] & !first[1-a] fires at T iff first = a and last = b
        out = tr.spikes[-1][:, -1]
        for a in range(2):
            for b in range(2):
                name = f"relay[{b}] & !first[{1 - a}]"
                where = [
                    (k, j)
                    for k in range(w.n_branches)
                    for j in range(widths[-1])
                    if roles[-1][k][j] == name
                ]
                assert where, name
                for k, j in where:
                    assert torch.equal(out[:, k, j], ((first == a) & (last == b)).to(F64))


def test_structured_witnesses_bit_identical_for_same_seed():
    kw = dict(n_branches=4, hidden_widths=[12, 12, 20], fill_recurrent_scale=0.5, seed=11)
    a, b = structured_witnesses(2, **kw), structured_witnesses(2, **kw)
    c = structured_witnesses(2, **{**kw, "seed": 12})
    assert a.fingerprint() == b.fingerprint()
    assert a.description == b.description
    for x, y in zip(a.state_arrays().items(), b.state_arrays().items()):
        assert x[0] == y[0] and np.array_equal(x[1], y[1])
    assert a.fingerprint() != c.fingerprint()
    d = a.description
    assert d["kind"] == "structured" and d["seed"] == 11
    assert d["options"]["motifs"] == list(MOTIFS)
    assert d["n_enumerated_gates"] == 9 + 9 * 8
    assert d["counts"]["gates"] == 80 and len(d["gates"]) == 80  # capped at K * n_last
    # the Gaussian fill is random and seeded; the bank is not
    g1 = gaussian_recurrent_witnesses(
        2, n_branches=3, hidden_widths=[6, 5], recurrent="sparse", seed=3
    )
    g2 = gaussian_recurrent_witnesses(
        2, n_branches=3, hidden_widths=[6, 5], recurrent="sparse", seed=3
    )
    assert g1.fingerprint() == g2.fingerprint()
    assert g1.description["counts"]["recurrent_connections"][0] < 3 * 36


def test_structured_options_and_errors():
    w = structured_witnesses(
        2,
        n_branches=2,
        hidden_widths=[9, 8],
        constant="inputs",
        motifs=("first", "relay"),
        max_vetoes=0,
        seed=0,
    )
    assert w.biases is None  # constant currents from the one-hot inputs
    assert w.description["banks"][0] == ["relay[0]", "relay[1]", "first[0]", "first[1]"]
    assert w.description["n_enumerated_gates"] == 4
    X, first, _ = _xor_strings(9, 16, 0)
    s = w.simulate(X).spikes[0][:, :, 0]
    assert torch.equal(s[:, :, 2], (first == 0).to(F64)[:, None].expand(-1, 9))
    # oneshot pulls in its helper "on"
    w2 = structured_witnesses(2, hidden_widths=[4, 3], motifs=("oneshot",))
    assert w2.description["banks"][0] == ["on", "oneshot"]
    with pytest.raises(ValueError, match="needs at least"):
        structured_witnesses(2, hidden_widths=[5, 4])
    with pytest.raises(ValueError, match="leak"):
        structured_witnesses(2, hidden_widths=[8, 9, 4], recurrent="diagonal", leak=0.0)
    with pytest.raises(ValueError, match="inhibition"):
        structured_witnesses(2, hidden_widths=[9, 4], inhibition=0.5)
    with pytest.raises(ValueError, match="motifs"):
        structured_witnesses(2, hidden_widths=[9, 4], motifs=("latch",))
    with pytest.raises(TypeError, match="seed"):
        structured_witnesses(2, hidden_widths=[9, 4], seed=1.5)


def test_mixture_branches_simulate_as_alone():
    s = structured_witnesses(2, n_branches=2, hidden_widths=[10, 6], seed=0)
    gr = gaussian_recurrent_witnesses(
        2, n_branches=2, hidden_widths=[10, 6], recurrent="diagonal", seed=1
    )
    ga = gaussian_witnesses(2, n_branches=3, hidden_widths=[10, 6], seed=2)
    m = mix_witnesses([s, gr, ga])
    assert m.n_branches == 7 and m.recurrent_kind == "dense"
    assert [p["branches"] for p in m.description["parts"]] == [[0, 2], [2, 4], [4, 7]]
    X, _, _ = _xor_strings(15, 20, 1)
    full = m.simulate(X, return_membrane=True)
    k0 = 0
    for part in (s, gr, ga):
        alone = part.simulate(X, return_membrane=True)
        k1 = k0 + part.n_branches
        for l in range(2):
            assert torch.equal(full.spikes[l][:, :, k0:k1], alone.spikes[l])
            assert torch.equal(full.membranes[l][:, :, k0:k1], alone.membranes[l])
        k0 = k1
    roles = neuron_roles(m)
    assert roles[0][0][0] == "relay[0]" and roles[0][5][0] == "gaussian"
    masks = recurrent_masks(m)
    assert masks[0].shape == (7, 10, 10)
    with pytest.raises(ValueError, match="hidden_widths"):
        mix_witnesses([s, gaussian_witnesses(2, hidden_widths=[10, 5])])


def test_structured_witnesses_to_sparse_network_is_exact():
    w = structured_witnesses(
        2, n_branches=3, hidden_widths=[11, 9], fill_recurrent_scale=0.4, seed=5
    )
    X, _, _ = _xor_strings(25, 30, 2)
    net = w.to_network(n_outputs=2)
    with torch.no_grad():
        assert torch.equal(net.simulate(X).spikes[-1], w.simulate(X).spikes[-1])
    # the same connections as a sparse network (mask = non-zero pattern)
    sp = ParallelSNN(
        2, 2, n_branches=3, hidden_widths=[11, 9], recurrent="sparse", bias=True, dtype=F64
    )
    sp.set_recurrent_masks(recurrent_masks(w))
    with torch.no_grad():
        for p, q in zip(sp.weights, net.weights):
            p.copy_(q)
        for p, q in zip(sp.biases, net.biases):
            p.copy_(q)
        for p, q in zip(sp.recurrent_weights, net.recurrent_weights):
            p.copy_(q)
        assert torch.equal(sp.simulate(X).spikes[-1], net.simulate(X).spikes[-1])


# ---------------------------------------------------------------------- end to end (CVX)
def test_cvx_with_structured_witnesses_solves_first_last_xor_T14():
    selection = pytest.importorskip("convexsnn.selection")
    reconstruct = pytest.importorskip("convexsnn.reconstruct")
    task = load_task("xor", T=14, n_train=400, n_val=400, n_test=1000, n_ood=500, seed=0)
    w = structured_witnesses(2, n_branches=6, hidden_widths=[12, 16], seed=0)
    fit = selection.fit_convex(w, task, regs=[1e-2, 1e-3], loss="squared")
    assert fit.test_accuracy >= 0.99
    # fit_convex checked the reconstruction on train and test (raises on any changed prediction)
    assert fit.checks["test"]["prediction_agreement"] == 1.0
    model = fit.model
    assert model.config["recurrent"] == "dense"
    # the reconstructed recurrent network reproduces the convex predictions at 2T and 5T too
    for key in ("T=28", "T=70"):
        split = task.ood[key]
        rep = reconstruct.check_reconstruction(
            model, fit.dictionary, fit.solution, split.X, split.y, allow_other_T=True
        )
        assert rep["n_mismatch"] == 0
        assert rep["accuracy_network"] >= 0.99


def test_reconstruct_keeps_recurrent_closure_in_last_layer():
    """Last-layer neurons fed by other last-layer neurons through recurrence stay exact."""
    selection = pytest.importorskip("convexsnn.selection")
    task = load_task("xor", T=11, n_train=300, n_val=300, n_test=300, seed=1)
    # a single LIF layer with dense Gaussian recurrence: every neuron depends on others
    w = gaussian_recurrent_witnesses(
        2,
        n_branches=4,
        hidden_widths=[24],
        recurrent="dense",
        recurrent_scale=1.5,
        scale=2.0,
        seed=0,
    )
    fit = selection.fit_convex(w, task, regs=[1e-3], loss="squared")
    assert fit.checks["train"]["n_mismatch"] == 0 and fit.checks["test"]["n_mismatch"] == 0
