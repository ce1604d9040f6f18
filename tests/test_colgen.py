"""Column generation: pricing against a direct dual computation, determinism, certificates."""

import math

import numpy as np
import pytest
import torch

from convexsnn.colgen import (
    fit_column_generation,
    fit_template_column_generation,
    price_witnesses,
    source_witnesses,
)
from convexsnn.convex import solve_readout
from convexsnn.convex.solver import prepare_problem
from convexsnn.delay import template_sources, threshold_delay_witnesses, threshold_weights
from convexsnn.dictionary import build_dictionary
from convexsnn.reconstruct import check_reconstruction

LIF = {"leak": 0.99, "theta": 1.0, "reset": "subtract"}


def _data(n=80, T=3, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, T, d, generator=g, dtype=torch.float64)
    y = (X[:, 0, 0] + X[:, 2, 1] > 1.0).long() + (X[:, 1, 2] > 0.7).long()
    return X, y


def _weights(d, K, seed, scale=1.0):
    return scale * torch.randn(
        d, K, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def _solve(D, y, lam, **kw):
    return solve_readout(D, y, loss="squared", lam=lam, tol=1e-12, **kw)


@pytest.mark.parametrize("delay", [True, False])
@pytest.mark.parametrize("penalty", ["l1", "l21"])
def test_prices_equal_a_direct_dual_computation(delay, penalty):
    X, y = _data()
    T = X.shape[1]
    base = source_witnesses(_weights(4, 6, 1), n_steps=None, **LIF)
    sol = _solve(build_dictionary(base, X).operator(), y, 2e-3, penalty=penalty)
    U = sol.dual
    cands = _weights(4, 9, 2)
    got = price_witnesses(cands, X, U, sol.lam, penalty=penalty, delay=delay, **LIF)
    # direct: the columns of the candidates' own (delay-line) witness set, no de-duplication
    cw = source_witnesses(cands, n_steps=T if delay else None, **LIF)
    D = build_dictionary(cw, X, dedupe=False).matrix(torch.float64)
    G = D.T @ U.to(torch.float64)
    rho = G.abs().amax(dim=1) if penalty == "l1" else G.norm(dim=1)
    per = rho.reshape(9, T if delay else 1).amax(dim=1) / sol.lam
    torch.testing.assert_close(got, per, rtol=1e-12, atol=1e-14)
    assert got.max() > 1.0 > got.min()  # the draw has violating and feasible candidates


def test_a_violating_candidate_lowers_the_optimum_and_a_feasible_one_does_not():
    X, y = _data(seed=3)
    T = X.shape[1]
    lam = 3e-3
    w0 = _weights(4, 5, 4)
    D0 = build_dictionary(source_witnesses(w0, n_steps=T, **LIF), X, dedupe=False)
    sol = _solve(D0.operator(), y, lam)
    assert sol.certificate.rel_gap < 1e-9
    cands = _weights(4, 40, 5)
    prices = price_witnesses(cands, X, sol.dual, lam, delay=True, **LIF)
    hi, lo = int(prices.argmax()), int(prices.argmin())
    assert prices[hi] > 1.05 and prices[lo] < 0.95
    for j, lowers in ((hi, True), (lo, False)):
        w = torch.cat([w0, cands[:, j : j + 1]], dim=1)
        D = build_dictionary(source_witnesses(w, n_steps=T, **LIF), X, dedupe=False)
        s = _solve(D.operator(), y, lam)
        if lowers:
            assert s.certificate.primal < sol.certificate.dual - 1e-6
        else:  # a feasible column leaves the optimum: the old dual is still a lower bound
            assert s.certificate.primal >= sol.certificate.dual - 1e-12
            assert s.certificate.primal <= sol.certificate.primal + 1e-9


def test_union_certificate_is_a_valid_lower_bound():
    """P(W) - D(U/(1+eps)) bounds the suboptimality over dictionary + candidates."""
    X, y = _data(seed=6)
    T = X.shape[1]
    lam = 2e-3
    w0 = _weights(4, 4, 7)
    D0 = build_dictionary(source_witnesses(w0, n_steps=T, **LIF), X, dedupe=False)
    sol = _solve(D0.operator(), y, lam)
    cands = _weights(4, 12, 8)
    eps = float(price_witnesses(cands, X, sol.dual, lam, delay=True, **LIF).max()) - 1
    assert eps > 0
    df = prepare_problem(torch.zeros(X.shape[0], 1), y, loss="squared").datafit
    lower = float(df.dual_value(sol.dual, 1 / (1 + eps)))
    Du = build_dictionary(source_witnesses(torch.cat([w0, cands], 1), n_steps=T, **LIF), X)
    best = _solve(Du.operator(), y, lam).certificate
    assert best.converged
    assert lower <= best.primal + 1e-12
    # and the unscaled dual is NOT a valid bound over the union here (the scaling matters)
    assert sol.certificate.dual > best.primal


def _run(**kw):
    X, y = _data(n=100, seed=9)
    opts = {
        "loss": "squared",
        "lam": 5e-3,
        "rounds": 2,
        "pool": 30,
        "budget": 90,
        "init_sources": 6,
        "seed": 11,
        "max_iter": 5000,
    }
    opts.update(kw)
    return X, y, fit_column_generation(X, y, **opts)


@pytest.mark.slow
def test_column_generation_is_deterministic_for_a_seed_and_records_rounds():
    X, y, a = _run()
    _, _, b = _run()
    _, _, c = _run(seed=12, rounds=0)
    strip = lambda r: {k: v for k, v in r.to_dict().items() if k != "seconds"}
    assert [strip(r) for r in a.rounds] == [strip(r) for r in b.rounds]
    assert torch.equal(a.solution.W, b.solution.W)
    assert a.witnesses.fingerprint() == b.witnesses.fingerprint() != c.witnesses.fingerprint()
    assert len(a.rounds) >= 2 and a.rounds[0].n_added > 0
    # the stop reason follows the stopping rule, in the last round too
    assert (a.stopped == "pricing") == (a.rounds[-1].n_violating == 0)
    for r in a.rounds:
        assert r.n_candidates == 30 and sum(r.proposals.values()) == 30
        assert r.union_rel_gap >= r.rel_gap - 1e-15
        assert (r.pricing_gap > 1e-3) == (r.n_violating > 0)
    # same lam every round, converged solves, only safe drops: the optimum never goes up
    for r0, r1 in zip(a.rounds, a.rounds[1:]):
        assert r0.converged and r1.converged
        if r0.n_retired == 0:
            assert r1.primal <= r0.primal * (1 + 1e-6)
    assert a.rounds[-1].primal < a.rounds[0].primal
    # the final dual is feasible for every column of the final dictionary (price <= 1)
    w = a.witnesses.weights[0][:, :, 0].T
    p = price_witnesses(w, X, a.solution.dual, a.solution.lam, delay=True, **LIF)
    assert float(p.max()) <= 1 + 1e-9
    # the result is a real network computing the readout
    model = a.reconstruct()
    chk = check_reconstruction(model, a.dictionary, a.solution, X, y)
    assert chk["prediction_agreement"] == 1.0
    assert a.accuracy(X, y) == pytest.approx(a.rounds[-1].train_accuracy)


def test_pricing_stop_when_nothing_violates():
    # a huge lam: W = 0 is optimal and no candidate can violate lam
    _, _, res = _run(lam=10.0, rounds=3)
    assert res.stopped == "pricing" and len(res.rounds) == 1
    assert res.rounds[0].pricing_gap < 0 and res.rounds[0].n_added == 0
    assert math.isclose(res.rounds[0].union_rel_gap, res.rounds[0].rel_gap, abs_tol=1e-15)


def test_bad_input():
    X, y = _data()
    with pytest.raises(ValueError, match="loss"):
        fit_column_generation(X, y, loss="hinge", lam=1e-3)
    with pytest.raises(ValueError, match="one of lam and reg"):
        fit_column_generation(X, y)
    with pytest.raises(ValueError, match="label"):
        fit_column_generation(X, y[:-1], lam=1e-3)
    with pytest.raises(ValueError, match="budget"):
        fit_column_generation(X, y, lam=1e-3, init_sources=50, budget=10)
    with pytest.raises(ValueError, match="proposals"):
        fit_column_generation(X, y, lam=1e-3, proposals=("magic",))
    assert np.isfinite(price_witnesses(_weights(4, 2, 0), X, torch.zeros(80, 3), 1.0)).all()


def test_pipeline_cvx_cg_records_certificate_pricing_gap_and_exact_network():
    from convexsnn.convex import certified_label
    from convexsnn.pipelines import ALL_METHODS, METHODS, run_method
    from convexsnn.tasks import load_task

    assert "CVX-CG" in ALL_METHODS and "CVX-CG" not in METHODS  # not in the paper's tables
    task = load_task("parity_k2", T=5, n_train=150, n_val=100, n_test=100, seed=0)
    cfg = {
        "leak": 1.0,
        "scales": [0.5],
        "regs": [0.3, 0.1],
        "loss": "squared",
        "tol": 1e-6,
        "max_time": None,
        "cg_rounds": 1,
        "cg_pool": 24,
        "cg_budget": 200,
        "cg_init_sources": 8,
    }
    rec, model = run_method("CVX-CG", task, config=cfg, seed=3, return_model=True)
    assert "error" not in rec and model is not None
    assert rec["method"] == "CVX-CG"
    assert rec["certified"] == certified_label(rec["certificate"])
    assert rec["certificate"]["converged"] and rec["certified"] == "certified"
    p = rec["pricing"]
    assert p["rounds"] and p["pricing_gap"] == p["rounds"][-1]["pricing_gap"]
    assert p["stopped"] in ("pricing", "rounds", "budget")
    # the chosen run is the best on validation among the grid (ties: larger beta)
    g = rec["selection_grid"]
    assert len(g) == 2 and rec["chosen"]["reg_beta"] in (0.3, 0.1)
    best = max(x["val_accuracy"] for x in g)
    assert next(x for x in g if x["val_accuracy"] == best)["reg_beta"] == rec["chosen"]["reg_beta"]
    # the network computes the convex readout on every split, OOD included
    assert all(c["prediction_agreement"] == 1.0 for c in rec["reconstruction_check"].values())
    assert rec["val_accuracy"] == pytest.approx(rec["val_accuracy_convex"])
    # token tasks are refused with a clear message (a failed record, no traceback)
    add = load_task("addition", base=2, n_digits=2, n_train=20, n_val=10, n_test=10, seed=0)
    bad = run_method("CVX-CG", add, config=cfg, seed=0)
    assert "sequence-label" in bad["error"]


@pytest.mark.slow
def test_classifier_generate_reports_certificate_and_pricing_gap():
    from sklearn.base import clone

    from convexsnn.convex import certified_label
    from convexsnn.estimators import ConvexSNNClassifier

    X, y = _data(n=100, seed=9)
    labels = np.array(["a", "b", "c"])[y.numpy()]
    opts = {"rounds": 2, "pool": 30, "budget": 90}
    est = ConvexSNNClassifier(
        n_branches=6, loss="squared", reg=5e-3 * math.sqrt(90), tol=1e-6, seed=11, generate=opts
    )
    est.fit(X.numpy(), labels)
    # the same run as the library call (same lam = reg / sqrt(budget), same seed and options)
    ref = fit_column_generation(
        X, y, n_classes=3, loss="squared", lam=5e-3, init_sources=6, seed=11, tol=1e-6, **opts
    )
    assert est.lambda_ == pytest.approx(5e-3, rel=1e-12)
    assert torch.equal(est.solution_.W, ref.solution.W)
    assert est.pricing_gap_ == ref.rounds[-1].pricing_gap
    assert est.union_rel_gap_ == ref.rounds[-1].union_rel_gap
    assert est.stopped_ == ref.stopped and len(est.rounds_) == len(ref.rounds)
    assert est.certified_ == certified_label(est.certificate_) == "certified"
    # predictions are the reconstructed network's and equal the convex readout's
    pred = est.predict(X.numpy())
    assert (pred == np.array(["a", "b", "c"])[ref.predict(X).numpy()]).all()
    assert clone(est).get_params()["generate"] == opts
    plain = ConvexSNNClassifier(n_branches=4, width=4, seed=0).fit(X.numpy(), labels)
    assert plain.certified_ == certified_label(plain.certificate_) and plain.pricing_gap_ is None
    with pytest.raises(ValueError, match="unknown generate options"):
        ConvexSNNClassifier(generate={"roundz": 2}).fit(X.numpy(), labels)
    with pytest.raises(ValueError, match="loss"):
        ConvexSNNClassifier(loss="hinge", generate=True).fit(X.numpy(), labels)


# ---------------------------------------------------------------- template column generation
def _ink_data(n=160, T=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, T, 12, generator=g, dtype=torch.float64)
    X = X * (torch.rand(n, T, 12, generator=g, dtype=torch.float64) < 0.5)
    y = (X[:, 0, :6].sum(1) + X[:, 2, 6:].sum(1) > X[:, 1].sum(1) * 0.5 + 1.0).long()
    y = y + (X[:, 1, 3] > 0.4).long()
    return X, y


def test_prices_with_biases_equal_the_dual_products_of_the_dictionary_columns():
    X, y = _ink_data()
    V, q = template_sources(X, 7, grid=(3, 4), min_size=(1, 1), seed=2)
    W, b = threshold_weights(V, q, scale=0.5)
    wit = threshold_delay_witnesses(V, q, X.shape[1], scale=0.5, leak=0.0)
    dic = build_dictionary(wit, X, dedupe=False)
    D = dic.matrix(torch.float64)
    U = torch.randn(X.shape[0], 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lam = 0.37
    G = (D.T @ U).abs().amax(dim=1).reshape(7, X.shape[1])  # (source, lag)
    expect = G.amax(dim=1) / lam
    got = price_witnesses(W, X, U, lam, leak=0.0, biases=b, block_entries=100)
    assert torch.allclose(got, expect, rtol=1e-12, atol=1e-12)
    # without the biases the sources spike elsewhere: another price
    assert not torch.allclose(price_witnesses(W, X, U, lam, leak=0.0), expect)
    with pytest.raises(ValueError, match="biases"):
        price_witnesses(W, X, U, lam, leak=0.0, biases=b[:-1])


def test_template_column_generation_certifies_each_round_and_reports_the_pricing_gap():
    X, y = _ink_data()
    kw = dict(n_classes=3, grid=(3, 4), min_size=(1, 1), init_sources=6, pool=40, add=4)
    res = fit_template_column_generation(X, y, reg=0.05, budget=100, rounds=2, tol=1e-9, **kw)
    assert [r.round for r in res.rounds] == [0, 1, 2] and res.stopped in ("rounds", "pricing")
    for r in res.rounds:
        assert r.converged and r.rel_gap <= 1e-9
    # no retirement (budget large): dropping zero-weight sources keeps W feasible and adding
    # columns cannot raise the optimum, so the certified primal does not increase
    assert all(r.n_retired == 0 for r in res.rounds)
    P = [r.primal for r in res.rounds]
    assert all(b <= a * (1 + 1e-8) for a, b in zip(P, P[1:]))
    assert res.rounds[0].n_added > 0 and res.rounds[1].n_witnesses > 6 - res.rounds[0].n_dropped
    # the final pricing gap, recomputed: the pool of seed + 1 + rounds against the final dual
    Vc, qc = template_sources(X, 40, grid=(3, 4), min_size=(1, 1), seed=0 + 1 + 2)
    pool = threshold_delay_witnesses(Vc, qc, X.shape[1], leak=0.0)
    Dc = build_dictionary(pool, X, dedupe=False).matrix(torch.float64)
    U = res.solution.dual.to(torch.float64)
    eps = float((Dc.T @ U).abs().max()) / res.lam - 1.0
    assert res.rounds[-1].pricing_gap == pytest.approx(eps, rel=1e-10, abs=1e-12)
    assert math.isfinite(res.rounds[-1].union_rel_gap)
    # the reconstructed network computes the readout
    chk = check_reconstruction(res.reconstruct(), res.dictionary, res.solution, X, y)
    assert chk["prediction_agreement"] == 1.0
    again = fit_template_column_generation(X, y, reg=0.05, budget=100, rounds=2, tol=1e-9, **kw)
    assert torch.equal(again.V, res.V) and torch.equal(again.solution.W, res.solution.W)


def test_template_column_generation_keeps_the_source_budget_and_checks_input():
    X, y = _ink_data()
    kw = dict(n_classes=3, grid=(3, 4), min_size=(1, 1), pool=30, add=5)
    res = fit_template_column_generation(X, y, lam=1e-3, init_sources=6, rounds=2, **kw)
    assert all(r.n_witnesses <= 6 for r in res.rounds) and res.V.shape[0] <= 6
    assert res.dictionary.n_columns <= 6 * X.shape[1]
    added = sum(r.n_added for r in res.rounds)
    assert added == 0 or sum(r.n_retired + r.n_dropped for r in res.rounds) >= added
    with pytest.raises(ValueError, match="exactly one"):
        fit_template_column_generation(X, y, init_sources=6, **kw)
    with pytest.raises(ValueError, match="rows"):
        fit_template_column_generation(X, y[:-1], lam=1e-3, **kw)
