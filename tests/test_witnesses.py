"""Witness generators: seeding, normalisation, network copies, reservoir tuning."""

import json
import math

import numpy as np
import pytest
import torch

from convexsnn.lif import simulate
from convexsnn.network import ParallelSNN
from convexsnn.witnesses import (
    Witnesses,
    branching_ratio,
    concat_witnesses,
    gaussian_witnesses,
    reservoir_witnesses,
    resolve_widths,
    witnesses_from_network,
)


def _arrays_equal(a: Witnesses, b: Witnesses) -> bool:
    sa, sb = a.state_arrays(), b.state_arrays()
    return sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_gaussian_same_seed_bit_identical_and_seeds_differ():
    kw = dict(n_branches=3, hidden_widths=[4, 5, 6], scale=[1.0, 0.5, 2.0])
    a = gaussian_witnesses(3, seed=7, **kw)
    b = gaussian_witnesses(3, seed=7, **kw)
    c = gaussian_witnesses(3, seed=8, **kw)
    assert _arrays_equal(a, b)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert all(not torch.equal(x, y) for x, y in zip(a.weights, c.weights))
    assert a.hidden_widths == [4, 5, 6] and a.n_branches == 3 and a.depth == 4
    assert a.dtype == torch.float64
    # global RNG untouched
    torch.manual_seed(0)
    r0 = torch.rand(3)
    torch.manual_seed(0)
    gaussian_witnesses(3, seed=1, **kw)
    assert torch.equal(torch.rand(3), r0)
    json.dumps(a.description)
    assert a.description["kind"] == "gaussian" and a.description["seed"] == 7


def test_gaussian_scale_and_float32_cast_of_the_same_draw():
    a = gaussian_witnesses(2, n_branches=2, hidden_widths=[3, 4], scale=1.0, seed=0)
    b = gaussian_witnesses(2, n_branches=2, hidden_widths=[3, 4], scale=2.0, seed=0)
    c = gaussian_witnesses(2, n_branches=2, hidden_widths=[3, 4], seed=0, dtype=torch.float32)
    for wa, wb, wc in zip(a.weights, b.weights, c.weights):
        assert torch.equal(wb, 2 * wa)
        assert torch.equal(wc, wa.to(torch.float32))


def test_normalized_columns_have_unit_norm_times_scale():
    w = gaussian_witnesses(
        5, n_branches=2, hidden_widths=[7, 3], scale=[1.0, 3.0], normalized=True, seed=1
    )
    torch.testing.assert_close(
        w.weights[0].norm(dim=1), torch.ones(2, 7, dtype=torch.float64), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        w.weights[1].norm(dim=1), torch.full((2, 3), 3.0, dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_widths_follow_parallel_snn_convention():
    w = gaussian_witnesses(2, n_branches=4, depth=5, p_rec=40, p_last=80, seed=0)
    net = ParallelSNN(2, 2, n_branches=4, depth=5, p_rec=40, p_last=80)
    assert w.hidden_widths == net.hidden_widths == [10, 10, 10, 20]
    assert resolve_widths(n_branches=2, hidden_widths=[3]) == [3]
    with pytest.raises(ValueError, match="divisible"):
        resolve_widths(n_branches=3, depth=3, p_rec=10, p_last=9)
    with pytest.raises(ValueError, match="depth"):
        resolve_widths(n_branches=1, depth=1, p_last=4)


def test_from_network_copies_exactly_and_round_trips():
    net = ParallelSNN(
        3,
        2,
        n_branches=2,
        hidden_widths=[5, 4],
        bias=True,
        recurrent="diagonal",
        readout="membrane",
        readout_bias=0.25,
        leak=0.9,
        theta=0.8,
        reset="zero",
        seed=3,
        dtype=torch.float64,
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in list(net.biases) + list(net.recurrent_weights):
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.3)
    w = witnesses_from_network(net)
    for a, b in zip(w.weights, net.weights):
        assert torch.equal(a, b)
    for a, b in zip(w.biases, net.biases):
        assert torch.equal(a, b)
    for a, b in zip(w.recurrent, net.recurrent_weights):
        assert torch.equal(a, b)
    assert (w.leak, w.theta, w.reset) == (0.9, 0.8, "zero")
    assert w.recurrent_kind == "diagonal"
    # a copy, not a view
    with torch.no_grad():
        net.weights[0].add_(1.0)
    assert not torch.equal(w.weights[0], net.weights[0])
    with torch.no_grad():
        net.weights[0].sub_(1.0)
    # back to a network: identical forward pass
    net2 = w.to_network(net.output_weight, readout="membrane", readout_bias=0.25)
    x = torch.rand(6, 5, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(net(x), net2(x))
    tr_w = w.simulate(x)
    tr_n = net.simulate(x)
    for a, b in zip(tr_w.spikes, tr_n.spikes):
        assert torch.equal(a, b)


def test_witness_simulation_is_lif_simulate_and_recurrent_passes_through():
    g = torch.Generator().manual_seed(1)
    w0 = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    w1 = torch.randn(2, 4, 5, generator=g, dtype=torch.float64)
    rec = torch.randn(2, 5, 5, generator=g, dtype=torch.float64) * 0.5
    w = Witnesses([w0, w1], recurrent=[None, rec], leak=0.8, theta=0.7)
    assert w.recurrent_kind == "dense"
    x = torch.rand(4, 6, 3, generator=g, dtype=torch.float64)
    ref = simulate(x, [w0, w1], recurrent=[None, rec], leak=0.8, theta=0.7)
    got = w.simulate(x)
    assert torch.equal(ref.spikes[-1], got.spikes[-1])
    net = w.to_network(n_outputs=2)
    assert net.config["recurrent"] == "dense"
    assert torch.equal(net.simulate(x).spikes[-1], ref.spikes[-1])


def test_witness_validation():
    w0 = torch.zeros(2, 3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="expects 5 inputs"):
        Witnesses([w0, torch.zeros(2, 5, 2, dtype=torch.float64)])
    with pytest.raises(ValueError, match="branches"):
        Witnesses([w0, torch.zeros(3, 4, 2, dtype=torch.float64)])
    with pytest.raises(ValueError, match="biases"):
        Witnesses([w0], biases=[torch.zeros(2, 5, dtype=torch.float64)])
    with pytest.raises(ValueError, match="leak"):
        Witnesses([w0], leak=1.5)
    with pytest.raises(ValueError, match="reset"):
        Witnesses([w0], reset="hard")
    with pytest.raises(TypeError, match="JSON"):
        Witnesses([w0], description={"f": object()})
    with pytest.raises(ValueError, match="NaN"):
        Witnesses([torch.full((1, 2, 2), float("nan"), dtype=torch.float64)])


def test_select_branches_and_to_device_dtype():
    w = gaussian_witnesses(2, n_branches=4, hidden_widths=[3, 2], seed=0)
    s = w.select_branches([2, 0])
    assert s.n_branches == 2
    assert torch.equal(s.weights[1][0], w.weights[1][2])
    assert torch.equal(s.weights[0][1], w.weights[0][0])
    assert s.description["selected_branches"] == [2, 0]
    with pytest.raises(ValueError):
        w.select_branches([4])
    f = w.to(dtype=torch.float32)
    assert f.dtype == torch.float32 and w.dtype == torch.float64


def test_branching_ratio_hand_computed():
    # A_t = [2, 4, 0, 1]: ratios over steps with A_t > 0: 4/2 and 0/4 -> mean 1.0
    s = torch.zeros(2, 4, 3)
    s[0, 0, :2] = 1
    s[0, 1, :3] = 1
    s[1, 1, 0] = 1
    s[1, 3, 2] = 1
    assert branching_ratio(s) == pytest.approx(1.0)
    # sample weights: sample 1 counted twice -> A = [2, 5, 0, 2]: (5/2 + 0) / 2
    assert branching_ratio(s, torch.tensor([1.0, 2.0])) == pytest.approx(1.25)
    assert math.isnan(branching_ratio(torch.zeros(2, 4, 3)))


def test_reservoir_picks_ratio_closest_to_one():
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(40, 8, 2, generator=g) < 0.5).float()
    grid = dict(leaks=(0.5, 0.95), thresholds=(0.5, 2.0), input_scales=(0.5, 3.0))
    w = reservoir_witnesses(X, n_branches=2, hidden_widths=[10, 8], seed=4, **grid)
    d = w.description
    assert d["kind"] == "reservoir" and len(d["grid"]) == 8
    json.dumps(d)
    dist = [
        abs(r["branching_ratio"] - 1) if r["branching_ratio"] is not None else math.inf
        for r in d["grid"]
    ]
    best = d["grid"][int(np.argmin(dist))]
    assert (w.leak, w.theta) == (best["beta"], best["theta"])
    assert d["chosen"] == {k: best[k] for k in ("beta", "theta", "input_scale", "branching_ratio")}
    # the returned witnesses reproduce the recorded ratio
    assert branching_ratio(w.simulate(X).spikes[-1]) == pytest.approx(best["branching_ratio"])
    # same seed, same result; first layer = input scale x the common draw
    w2 = reservoir_witnesses(X, n_branches=2, hidden_widths=[10, 8], seed=4, **grid)
    assert _arrays_equal(w, w2)
    base = reservoir_witnesses(
        X,
        n_branches=2,
        hidden_widths=[10, 8],
        seed=4,
        leaks=(w.leak,),
        thresholds=(w.theta,),
        input_scales=(1.0,),
    )
    torch.testing.assert_close(
        w.weights[0], base.weights[0] * best["input_scale"], rtol=1e-15, atol=0
    )


def test_concat_witnesses_is_the_branches_side_by_side():
    X = torch.rand(20, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a = gaussian_witnesses(3, n_branches=2, hidden_widths=[4, 3], scale=2.0, seed=0)
    # b: a trained-network copy with biases and dense recurrence (a has neither)
    net = ParallelSNN(
        3,
        2,
        n_branches=1,
        hidden_widths=[4, 3],
        bias=True,
        recurrent="dense",
        init_scale=3.0,
        seed=1,
        dtype=torch.float64,
    )
    g = torch.Generator().manual_seed(0)  # local: independent of other tests' RNG use
    with torch.no_grad():
        for b in net.biases:
            b.copy_(0.3 + 0.4 * torch.rand(b.shape, generator=g, dtype=b.dtype))
        for r in net.recurrent_weights:
            r.copy_(0.5 * torch.randn(r.shape, generator=g, dtype=r.dtype))
    b = witnesses_from_network(net)
    c = concat_witnesses(a, b)
    assert c.n_branches == 3 and c.hidden_widths == [4, 3] and c.recurrent_kind == "dense"
    assert [p["n_branches"] for p in c.description["parts"]] == [2, 1]
    # zero biases / recurrence for a's branches: the same spikes as each set on its own
    ra, rb, rc = a.readout(X), b.readout(X), c.readout(X)
    assert torch.equal(rc, torch.cat([ra, rb], dim=2))
    assert bool(rb.any()) and bool(ra.any())
    assert torch.equal(concat_witnesses([a, b]).readout(X), rc)
    with pytest.raises(ValueError, match="hidden widths"):
        concat_witnesses(a, gaussian_witnesses(3, hidden_widths=[4, 4], seed=0))
    with pytest.raises(ValueError, match="leak"):
        concat_witnesses(a, gaussian_witnesses(3, hidden_widths=[4, 3], leak=0.5, seed=0))
    with pytest.raises(TypeError):
        concat_witnesses(a, net)
    with pytest.raises(ValueError, match="at least one"):
        concat_witnesses()
