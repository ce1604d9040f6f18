"""Two-layer delay witnesses: relay layer and window neurons from their equations, pricing equal to
the dictionary, exact reconstruction, NIR round trip, and FIRST-LAST-XOR solved certified."""

import itertools
import math

import numpy as np
import pytest
import torch

from convexsnn.colgen import fit_column_generation, price_witnesses
from convexsnn.convex import certified_label, solve_readout
from convexsnn.delay import (
    gaussian_two_layer_delay_witnesses,
    relay_layer,
    relayed_spikes,
    sparse_windows,
    two_layer_delay_witnesses,
    window_weights,
)
from convexsnn.dictionary import build_dictionary
from convexsnn.reconstruct import check_reconstruction, reconstruct


def _binary(n=60, T=6, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, T, d, generator=g) < 0.5).to(torch.float64)


def _all_strings(T):
    """Every binary string of length T, one-hot in 2 channels: ``(2^T, T, 2)``."""
    bits = torch.tensor(list(itertools.product([0, 1], repeat=T)), dtype=torch.float64)
    return torch.stack([1 - bits, bits], dim=2), bits


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("leak,theta", [(0.99, 1.0), (1.0, 0.7), (0.5, 2.0)])
def test_relay_layer_copies_binary_inputs_and_delays_sources(reset, leak, theta):
    X = _binary(T=6, d=3)
    T = X.shape[1]
    src = 2.0 * torch.randn(3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    l1 = relay_layer(3, T, sources=src, leak=leak, theta=theta, reset=reset)
    phi = relayed_spikes(l1, X)
    assert phi.shape == (X.shape[0], T, 5 * T)
    alone = l1.simulate(X).spikes[0][:, :, 0, ::T]  # the sources at lag 0
    # input relay c is the input channel itself, the Gaussian sources are themselves
    assert torch.equal(alone[..., :3], X)
    from convexsnn.lif import simulate

    s_src = simulate(X, [src[None]], leak=leak, theta=theta, reset=reset).spikes[0][:, :, 0]
    assert torch.equal(alone[..., 3:], s_src)
    ref = torch.cat([X, s_src], dim=2)  # (n, T, 5)
    for i in range(5):
        for lag in range(T):
            got = phi[:, :, i * T + lag]
            assert torch.equal(got[:, lag:], ref[:, : T - lag, i]), (i, lag)
            assert not got[:, :lag].any()


@pytest.mark.parametrize("leak", [0.99, 1.0, 0.5, 0.0])
def test_window_neuron_is_a_threshold_unit_over_the_window(leak):
    """With the leak compensation V_l = c_l - leak c_{l-1}, a window neuron that has not spiked
    before is 1[sum c phi >= theta] at every step; the relays after it copy it at the same step."""
    T = 6
    X, bits = _all_strings(T)
    l1 = relay_layer(2, T, leak=leak)
    n1 = l1.n_last
    # window weights on "1" at lag T-1 (the first symbol, at step T) and lag 0 (the current one)
    one = lambda lag: T + lag  # noqa: E731  (input relay 1 = channel "1", rows T .. 2T-1)
    C = torch.zeros(n1, 3, dtype=torch.float64)
    C[one(T - 1), 0], C[one(0), 0] = 0.6, 0.6  # AND(first, current)
    C[one(T - 1), 1] = 1.0  # the first symbol alone
    C[one(T - 1), 2], C[one(0), 2] = 1.0, -0.5  # first AND NOT current
    w = two_layer_delay_witnesses(C, l1, depth=5, group=2)
    tr = w.simulate(X)
    s2, last = tr.spikes[1], tr.spikes[-1]
    for l in range(2, len(tr.spikes)):  # exact relays: same step, bit for bit
        assert torch.equal(tr.spikes[l], s2)
    first, cur = bits[:, 0], bits[:, -1]
    flat = last[:, -1].reshape(X.shape[0], -1)[:, :3]
    assert torch.equal(flat[:, 0], first * cur)
    assert torch.equal(flat[:, 1], first)
    assert torch.equal(flat[:, 2], first * (1 - cur))
    # none fires before step T (the AND unit's membrane is 0.6 x_t there)
    assert not s2[:, :-1].any()
    # the dictionary reads the last layer at step T: those three features
    d = build_dictionary(w, X, steps="last", dedupe=False)
    D = d.matrix(torch.float64)
    assert torch.equal(D[:, :3], flat)
    # without compensation (leak > 0) the AND unit accumulates and fires early for some string
    if leak > 0:
        raw = C.clone()
        V = window_weights(raw, leak, T)
        assert not torch.equal(V, raw)
        plain = simulate_one(relayed_spikes(l1, X), raw[:, :1], leak)
        assert plain[:, :-1].any()


def simulate_one(phi, V, leak):
    from convexsnn.lif import simulate

    return simulate(phi, [V.T.contiguous()[:, :, None]], leak=leak).spikes[0][..., 0]


def test_prices_equal_the_dictionary_columns():
    """Pricing simulates the window neurons alone on the relayed spikes; the witness set built
    from the same window weights gives the same columns."""
    T = 7
    X = _binary(n=80, T=T, d=2, seed=3)
    g = torch.Generator().manual_seed(4)
    src = torch.randn(2, 3, generator=g, dtype=torch.float64)
    l1 = relay_layer(2, T, sources=src)
    C = sparse_windows(l1.n_last, 50, gen=g)
    w = two_layer_delay_witnesses(C, l1, depth=4, group=8)
    D = build_dictionary(w, X, steps="last", dedupe=False).matrix(torch.float64)
    phi = relayed_spikes(l1, X)
    s = simulate_one(phi, window_weights(C, 0.99, T), 0.99)[:, -1]  # (n, 50)
    assert s.any() and not s.all()
    assert torch.equal(D[:, :50], s)
    assert not D[:, 50:].any()  # padding neurons are silent
    U = torch.randn(80, 2, generator=g, dtype=torch.float64)
    p = price_witnesses(window_weights(C, 0.99, T), phi, U, 0.1, delay=False)
    np.testing.assert_allclose(p.numpy(), (s.T @ U).abs().amax(1).numpy() / 0.1, rtol=1e-12)


def test_reconstruction_exact_and_nir_round_trip(tmp_path):
    pytest.importorskip("nir")
    from convexsnn.export.nir_export import export_nir, import_nir, simulate_nir

    T = 5
    X, bits = _all_strings(T)
    y = (bits[:, 0] != bits[:, -1]).long()
    w = gaussian_two_layer_delay_witnesses(2, 32, T, depth=4, group=8, n_sources=2, seed=0)
    d = build_dictionary(w, X, steps="last")
    sol = solve_readout(d.operator(), y, loss="squared", lam=1e-3, tol=1e-9)
    model = reconstruct(d, sol)
    chk = check_reconstruction(model, d, sol, X, y)
    assert chk["prediction_agreement"] == 1.0 and chk["max_abs_diff"] < 1e-9
    path = export_nir(model, tmp_path / "two_layer.nir", dt=1e-3, exact_reset=True)
    back = import_nir(path)
    with torch.no_grad():
        z = model(X)
        np.testing.assert_array_equal(back(X.to(back.dtype)).numpy(), z.numpy())
        np.testing.assert_array_equal(simulate_nir(path, X).numpy(), z.numpy())


def test_column_generation_solves_first_last_xor_certified():
    """FIRST-LAST-XOR at T = 6 (all 64 strings): no one-layer readout can form the product of
    the first and last symbols; window neurons found by pricing do, certified, 100%."""
    T = 6
    X, bits = _all_strings(T)
    y = (bits[:, 0] != bits[:, -1]).long()
    res = fit_column_generation(
        X, y, lam=1e-3, rounds=4, pool=96, budget=256, init_sources=16,
        family="two_layer_delay", depth=5, tol=1e-8, seed=0,
    )  # fmt: skip
    cert = res.solution.certificate
    assert certified_label(cert.to_dict()) == "certified" and cert.rel_gap <= 1e-6
    assert res.accuracy(X, y) == 1.0
    assert res.witnesses.description["kind"] == "two_layer_delay"
    assert res.settings["family"] == "two_layer_delay"
    assert all(math.isfinite(r.pricing_gap) for r in res.rounds)
    model = res.reconstruct()
    chk = check_reconstruction(model, res.dictionary, res.solution, X, y)
    assert chk["prediction_agreement"] == 1.0
    assert model.hidden_widths[0] == 2 * T and len(model.hidden_widths) == 4
    # deterministic for a seed
    again = fit_column_generation(
        X, y, lam=1e-3, rounds=4, pool=96, budget=256, init_sources=16,
        family="two_layer_delay", depth=5, tol=1e-8, seed=0,
    )  # fmt: skip
    assert torch.equal(again.solution.W, res.solution.W)


def test_bad_input():
    l1 = relay_layer(2, 4)
    with pytest.raises(ValueError, match="C must have shape"):
        two_layer_delay_witnesses(torch.zeros(3, 2), l1)
    with pytest.raises(ValueError, match="depth"):
        two_layer_delay_witnesses(torch.zeros(8, 2), l1, depth=2)
    with pytest.raises(ValueError, match="relay_layer"):
        two_layer_delay_witnesses(torch.zeros(8, 2), gaussian_two_layer_delay_witnesses(2, 4, 4))
    with pytest.raises(ValueError, match="sources"):
        relay_layer(2, 4, sources=torch.zeros(3, 1))
    with pytest.raises(ValueError, match="input relays"):
        relay_layer(2, 4, input_relays=False)
    with pytest.raises(ValueError, match="family"):
        fit_column_generation(_binary(T=3, d=2), torch.zeros(60).long(), lam=1.0, family="x")


@pytest.mark.slow
def test_classifier_generate_two_layer_delay_is_the_library_run():
    from convexsnn.estimators import ConvexSNNClassifier

    T = 5
    X, bits = _all_strings(T)
    y = (bits[:, 0] != bits[:, -1]).long()
    opts = {"family": "two_layer_delay", "depth": 4, "rounds": 2, "pool": 48, "budget": 96}
    est = ConvexSNNClassifier(
        n_branches=12, loss="squared", reg=0.01, tol=1e-8, seed=2, generate=opts
    )
    est.fit(X.numpy(), y.numpy())
    ref = fit_column_generation(
        X, y, n_classes=2, loss="squared", reg=0.01, init_sources=12, tol=1e-8, seed=2, **opts
    )
    assert torch.equal(est.solution_.W, ref.solution.W)
    assert est.pricing_gap_ == ref.rounds[-1].pricing_gap
    assert (est.predict(X.numpy()) == ref.predict(X).numpy()).all()


def test_fitted_windows_recover_a_planted_threshold_unit():
    """The 'fit' proposal solves the pricing problem of a window neuron as weighted
    classification: with U = the centred spikes of a planted threshold unit over binary
    features, the best fitted candidate reaches >= 90% of the planted unit's |s^T U| (the
    logistic surrogate, not the 0-1 objective, is fitted), where random sparse windows stay
    below 80%."""
    from convexsnn.colgen import _fit_windows

    g = torch.Generator().manual_seed(0)
    F = (torch.rand(400, 16, generator=g) < 0.5).to(torch.float64)
    c_star = torch.zeros(16, dtype=torch.float64)
    c_star[[2, 5, 11]] = torch.tensor([0.6, 0.6, -0.8], dtype=torch.float64)
    s_star = (F @ c_star >= 1.0).to(torch.float64)
    U = (s_star - s_star.mean())[:, None]
    best = float((s_star @ U).abs().max())

    def value(C):
        s = (F @ C >= 1.0).to(torch.float64)
        return (s.T @ U).abs()[:, 0]

    fitted = _fit_windows(F, U, 16, gen=torch.Generator().manual_seed(1), theta=1.0, n_masks=2)
    assert fitted.shape == (16, 16)
    assert float(value(fitted).max()) >= 0.9 * best
    rand = sparse_windows(16, 16, gen=torch.Generator().manual_seed(1))
    assert float(value(rand).max()) < 0.8 * best


def test_local_search_climbs_and_returns_the_prices_it_examined():
    from convexsnn.colgen import _local_search, _neighbours

    gen = torch.Generator().manual_seed(0)
    seeds = torch.zeros(12, 3, dtype=torch.float64)
    seeds[0, :] = 1.0
    nb = _neighbours(seeds, 50, gen=gen, theta=1.0, n_lags=4)
    assert nb.shape == (12, 150)
    # one move: at most one coordinate changed, a scaled copy, or the lags shifted by one
    for k in range(150):
        s, v = seeds[:, k // 50], nb[:, k]
        changed = int((s != v).sum())
        shifted = torch.equal(v.reshape(3, 4)[:, 1:], s.reshape(3, 4)[:, :-1]) or torch.equal(
            v.reshape(3, 4)[:, :-1], s.reshape(3, 4)[:, 1:]
        )
        scaled = bool(torch.allclose(v[0] * s, s * v[0] / max(float(v[0]), 1e-300) * v[0]))
        assert changed <= 1 or shifted or scaled
    target = torch.zeros(12, dtype=torch.float64)
    target[[5, 6]] = torch.tensor([0.8, -0.5], dtype=torch.float64)

    def evaluate(C):
        return C[0], -(C - target[:, None]).norm(dim=0)  # (a "price", the score climbed)

    s0 = evaluate(seeds)[1]
    cand, p, sc = _local_search(seeds, s0, 600, evaluate, gen=gen, theta=1.0, n_lags=4, steps=6)
    torch.testing.assert_close(sc, evaluate(cand)[1], rtol=0, atol=0)
    torch.testing.assert_close(p, cand[0], rtol=0, atol=0)
    assert cand.shape[1] == p.numel() >= 500
    assert float(sc.max()) > float(s0.max()) + 0.3  # it climbed


def test_steepest_edge_scores_equal_a_direct_computation():
    from convexsnn.colgen import _edge_scores

    X = _binary(n=70, T=5, d=2, seed=3)
    l1 = relay_layer(2, 5)
    phi = relayed_spikes(l1, X)
    C = sparse_windows(l1.n_last, 12, gen=torch.Generator().manual_seed(0))
    V = window_weights(C, l1.leak, 5)
    U = torch.randn(70, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a = torch.full((70,), 1 / 70, dtype=torch.float64)
    lif = {"leak": l1.leak, "theta": l1.theta, "reset": l1.reset}
    p, sc = _edge_scores(V, phi, U, a, 0.05, "l1", True, lif)
    torch.testing.assert_close(p, price_witnesses(V, phi, U, 0.05, delay=False, **lif))
    D = build_dictionary(two_layer_delay_witnesses(C, l1, group=4), X, dedupe=False)
    Dm = D.matrix(torch.float64)  # one column per window neuron, in order
    g = (Dm.T @ U).abs().amax(dim=1)
    norm = (Dm.T @ a).sqrt()
    want = torch.where(norm > 0, g / norm.clamp_min(1e-300), torch.zeros_like(g)) / 0.05
    torch.testing.assert_close(sc, want, rtol=1e-12, atol=1e-12)


def test_fit_and_local_proposals_find_the_tomita3_detectors():
    """tomita3_paper at T = 8 (no '101' anywhere), every string: the language is an OR of
    local-pattern detectors, which window neurons can be; with 'fit' and 'local' proposals
    and the steepest-edge rule, column generation reaches 100% training accuracy, certified,
    without duplicate columns (candidates are de-duplicated before they are added)."""
    T = 8
    X, bits = _all_strings(T)
    s = bits.long().tolist()
    y = torch.tensor([0 if "101" in "".join(map(str, r)) else 1 for r in s])
    kw = dict(
        lam=3e-3, rounds=4, pool=256, budget=256, init_sources=16, family="two_layer_delay",
        depth=3, group=64, tol=1e-8, seed=0,
    )  # fmt: skip
    res = fit_column_generation(
        X, y, proposals=("dual", "sparse", "fit", "local"), rule="steepest", **kw
    )
    cert = res.solution.certificate
    assert cert.rel_gap <= 1e-6 and certified_label(cert.to_dict()) == "certified"
    assert res.accuracy(X, y) == 1.0
    assert res.dictionary.summary()["n_duplicates"] == 0
    assert res.rounds[-1].proposals["local"] > 0
    assert res.settings["rule"] == "steepest"
    # the union certificate: U / (1 + eps) is dual feasible for dictionary + candidates
    last = res.rounds[-1]
    assert last.union_rel_gap >= last.rel_gap - 1e-12
    with pytest.raises(ValueError, match="two_layer_delay"):
        fit_column_generation(X, y, lam=1.0, proposals=("fit",))
