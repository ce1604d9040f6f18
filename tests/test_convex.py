"""Tests of the certified convex readout solvers (``convexsnn.convex``)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from convexsnn.convex import (
    Certificate,
    ConvergenceWarning,
    DictionaryOperator,
    labels_to_targets,
    lambda_max,
    predict_from_scores,
    solve_path,
    solve_readout,
)

LOSSES = ("squared", "hinge", "softmax")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: avoid oversubscription

PENALTIES = ("l1", "l21")


# ------------------------------------------------------------------ problem factory / reference


def make_problem(
    loss: str, *, n: int = 120, P: int = 50, C: int = 3, density: float = 0.3, seed: int = 0
):
    """Random binary dictionary, targets for ``loss`` and a lam of ~ lam_max / 8."""
    rng = np.random.default_rng(seed)
    D = (rng.random((n, P)) < density).astype(np.float64)
    labels = rng.integers(0, C, n)
    if loss == "squared":
        y = rng.standard_normal((n, C)) if C > 1 else rng.standard_normal(n)
    else:
        y = labels
    lam = lambda_max(D, y, loss=loss, penalty="l1") / 8.0
    return D, y, lam


def _objective(D, y, loss, penalty, lam, W, a=None):
    """Primal objective in numpy (independent re-implementation)."""
    n = D.shape[0]
    a = np.full(n, 1.0 / n) if a is None else a
    Z = D @ W
    if loss == "squared":
        Y = y.reshape(n, -1)
        fit = 0.5 * np.sum(a[:, None] * (Z - Y) ** 2)
    elif loss == "hinge":
        Y = labels_to_targets(y).numpy()
        fit = np.sum(a[:, None] * np.maximum(0.0, 1.0 - Y * Z))
    else:
        m = Z.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(Z - m).sum(axis=1, keepdims=True)))[:, 0]
        fit = np.sum(a * (lse - Z[np.arange(n), y]))
    pen = np.abs(W).sum() if penalty == "l1" else np.linalg.norm(W, axis=1).sum()
    return fit + lam * pen


def cvxpy_objective(D, y, loss, penalty, lam):
    """Reference optimum from cvxpy + Clarabel (tight tolerances)."""
    cp = pytest.importorskip("cvxpy")
    n, P = D.shape
    a = np.full(n, 1.0 / n)
    if loss == "softmax":
        C = int(y.max()) + 1
        W = cp.Variable((P, C))
        Z = D @ W
        E = np.eye(C)[y]
        fit = cp.sum(cp.multiply(a, cp.log_sum_exp(Z, axis=1))) - cp.sum(
            cp.multiply(a[:, None] * E, Z)
        )
    else:
        Y = y.reshape(n, -1) if loss == "squared" else labels_to_targets(y).numpy()
        W = cp.Variable((P, Y.shape[1]))
        Z = D @ W
        if loss == "squared":
            fit = 0.5 * cp.sum(cp.multiply(a[:, None], cp.square(Z - Y)))
        else:
            fit = cp.sum(cp.multiply(a[:, None], cp.pos(1 - cp.multiply(Y, Z))))
    pen = cp.sum(cp.abs(W)) if penalty == "l1" else cp.sum(cp.norm(W, 2, axis=1))
    prob = cp.Problem(cp.Minimize(fit + lam * pen))
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    return float(prob.value)


# ------------------------------------------------------------------ convergence and references


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("penalty", PENALTIES)
def test_certificate_and_cvxpy_reference(loss, penalty):
    D, y, lam = make_problem(loss, seed=1)
    tol = 1e-9
    sol = solve_readout(D, y, loss=loss, penalty=penalty, lam=lam, tol=tol)
    cert = sol.certificate
    assert cert.converged
    assert cert.gap >= 0.0 and cert.rel_gap <= tol
    assert cert.dual <= cert.primal
    # the certificate's primal is the objective of the returned W
    W = sol.W.numpy()
    assert _objective(D, y, loss, penalty, lam, W) == pytest.approx(cert.primal, rel=1e-10)
    ref = cvxpy_objective(D, y, loss, penalty, lam)
    assert abs(cert.primal - ref) <= 1e-5 * abs(ref)
    # weak duality against the reference: our dual is a lower bound of the optimum
    assert cert.dual <= ref * (1 + 1e-7)


@pytest.mark.parametrize("loss,C", [("squared", 1), ("hinge", 2), ("softmax", 2)])
def test_single_output_and_binary(loss, C):
    D, y, lam = make_problem(loss, n=80, P=30, C=C, seed=2)
    sol = solve_readout(D, y, loss=loss, lam=lam, tol=1e-9)
    expected_cols = 2 if loss == "softmax" else 1
    assert sol.W.shape == (30, expected_cols)
    ref = cvxpy_objective(D, y, loss, "l1", lam)
    assert abs(sol.certificate.primal - ref) <= 1e-5 * abs(ref)


@pytest.mark.parametrize(
    "loss,penalty,solvers",
    [
        ("squared", "l1", ("gram", "cd", "fista")),
        ("squared", "l21", ("gram", "cd", "fista")),
        ("hinge", "l1", ("ipm", "pdhg")),
    ],
)
def test_inner_solvers_agree(loss, penalty, solvers):
    D, y, lam = make_problem(loss, n=100, P=40, C=3, seed=18)
    vals = []
    for solver in solvers:
        sol = solve_readout(D, y, loss=loss, penalty=penalty, lam=lam, tol=1e-8, solver=solver)
        assert sol.certificate.converged, solver
        assert sol.certificate.algorithm.startswith(solver)
        vals.append(sol.certificate.primal)
    assert max(vals) - min(vals) <= 2e-8 * abs(min(vals))
    with pytest.raises(ValueError, match="solver"):
        solve_readout(
            D, y, loss=loss, penalty=penalty, lam=lam, solver="ipm" if loss == "squared" else "gram"
        )


def test_hinge_pdhg_converges():
    D, y, lam = make_problem("hinge", n=100, P=40, C=2, seed=3)
    sol = solve_readout(D, y, loss="hinge", lam=lam, tol=1e-7, solver="pdhg")
    assert sol.certificate.converged and sol.certificate.algorithm.startswith("pdhg")
    ref = solve_readout(D, y, loss="hinge", lam=lam, tol=1e-10, solver="ipm")
    assert sol.certificate.primal == pytest.approx(ref.certificate.primal, rel=1e-6)


def test_matches_sklearn_lasso():
    sk = pytest.importorskip("sklearn.linear_model")
    D, y, lam = make_problem("squared", n=150, P=60, C=1, seed=4)
    sol = solve_readout(D, y, loss="squared", penalty="l1", lam=lam, tol=1e-12)
    # sklearn: 1/(2n) ||y - Xw||^2 + alpha ||w||_1  ==  ours with a_i = 1/n, lam = alpha
    las = sk.Lasso(alpha=lam, fit_intercept=False, tol=1e-14, max_iter=1_000_000)
    las.fit(D, y)
    ours = sol.certificate.primal
    theirs = _objective(D, y, "squared", "l1", lam, las.coef_[:, None])
    assert ours <= theirs * (1 + 1e-9)
    assert abs(ours - theirs) <= 1e-7 * theirs
    np.testing.assert_allclose(sol.W.numpy()[:, 0], las.coef_, atol=1e-5)


# ------------------------------------------------------------------ optimality conditions


@pytest.mark.parametrize("loss", ["squared", "softmax"])
@pytest.mark.parametrize("penalty", PENALTIES)
def test_kkt_conditions(loss, penalty):
    D, y, lam = make_problem(loss, seed=5)
    sol = solve_readout(D, y, loss=loss, penalty=penalty, lam=lam, tol=1e-11)
    assert sol.certificate.converged
    Dt = torch.as_tensor(D)
    Z = Dt @ sol.W
    n = D.shape[0]
    if loss == "squared":
        grad = (Z - torch.as_tensor(y).reshape(n, -1)) / n
    else:
        grad = (
            torch.softmax(Z, dim=1)
            - torch.nn.functional.one_hot(torch.as_tensor(y), Z.shape[1]).double()
        ) / n
    G = Dt.T @ grad
    W = sol.W
    eps = 1e-4
    if penalty == "l1":
        assert float(G.abs().max()) <= lam * (1 + eps)
        on = W != 0
        assert bool(on.any())
        np.testing.assert_allclose(G[on], -lam * torch.sign(W[on]), atol=eps * lam)
    else:
        rn = torch.linalg.vector_norm(G, dim=1)
        assert float(rn.max()) <= lam * (1 + eps)
        on = (W != 0).any(dim=1)
        assert bool(on.any())
        Wn = W[on] / torch.linalg.vector_norm(W[on], dim=1, keepdim=True)
        np.testing.assert_allclose(G[on], -lam * Wn, atol=eps * lam)


# ------------------------------------------------------------------ structure of the problem


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("penalty", PENALTIES)
def test_duplicate_columns_keep_the_optimum(loss, penalty):
    D, y, lam = make_problem(loss, n=90, P=30, seed=6)
    D2 = np.concatenate([D, D[:, :6]], axis=1)
    a = solve_readout(D, y, loss=loss, penalty=penalty, lam=lam, tol=1e-9).certificate
    b = solve_readout(D2, y, loss=loss, penalty=penalty, lam=lam, tol=1e-9).certificate
    assert b.converged
    assert b.primal == pytest.approx(a.primal, rel=2e-8)


@pytest.mark.parametrize("loss", LOSSES)
def test_merged_rows_same_optimum(loss):
    D, y, lam = make_problem(loss, n=40, P=25, seed=7)
    D2 = np.concatenate([D, D[:30]], axis=0)
    y2 = np.concatenate([y, y[:30]], axis=0)
    merged = solve_readout(D2, y2, loss=loss, lam=lam, tol=1e-10)
    plain = solve_readout(D2, y2, loss=loss, lam=lam, tol=1e-10, merge_rows=False)
    assert "merged" in merged.certificate.algorithm
    assert merged.certificate.converged and plain.certificate.converged
    assert merged.certificate.primal == pytest.approx(plain.certificate.primal, rel=1e-8)
    assert merged.dual.shape == (70, merged.W.shape[1])


def test_sample_weight_equals_repeated_rows():
    D, y, lam = make_problem("softmax", n=60, P=20, seed=8)
    reps = np.random.default_rng(0).integers(1, 4, 60)
    Drep, yrep = np.repeat(D, reps, axis=0), np.repeat(y, reps)
    w = reps / reps.sum()
    a = solve_readout(D, y, loss="softmax", lam=lam, sample_weight=w, tol=1e-10).certificate
    b = solve_readout(Drep, yrep, loss="softmax", lam=lam, tol=1e-10, merge_rows=False).certificate
    assert a.primal == pytest.approx(b.primal, rel=1e-8)


def test_working_set_matches_full_solve():
    D, y, lam = make_problem("squared", n=200, P=400, C=2, seed=9)
    ws = solve_readout(D, y, lam=lam, tol=1e-9, working_set=True)
    full = solve_readout(D, y, lam=lam, tol=1e-9, working_set=False)
    assert "ws" in ws.certificate.algorithm
    assert ws.certificate.converged
    assert ws.certificate.primal == pytest.approx(full.certificate.primal, rel=1e-8)
    assert ws.certificate.info["max_working_set"] < 400


def test_lambda_max_and_beta_convention():
    D, y, _ = make_problem("softmax", seed=10)
    lmax = lambda_max(D, y, loss="softmax", penalty="l21")
    above = solve_readout(D, y, loss="softmax", penalty="l21", lam=lmax * 1.001)
    assert bool((above.W == 0).all()) and above.certificate.converged
    below = solve_readout(D, y, loss="softmax", penalty="l21", lam=lmax * 0.9)
    assert bool((below.W != 0).any())
    P = D.shape[1]
    viab = solve_readout(D, y, loss="softmax", reg=lmax * 0.5 * math.sqrt(P))
    assert viab.lam == pytest.approx(lmax * 0.5)
    assert viab.reg == pytest.approx(lmax * 0.5 * math.sqrt(P))


# ------------------------------------------------------------------ path, budget, dtypes


@pytest.mark.slow
def test_path_warm_start():
    """Warm-started paths reach the cold-start optima with fewer iterations in total."""
    warm_total = cold_total = 0
    for loss in ("squared", "softmax"):
        for penalty in PENALTIES:
            D, y, lam = make_problem(loss, n=150, P=60, seed=11)
            P = D.shape[1]
            betas = [x * math.sqrt(P) * lam for x in (4.0, 2.0, 1.0, 0.5, 0.25)]
            path = solve_path(D, y, betas, loss=loss, penalty=penalty, tol=1e-8)
            cold = [solve_readout(D, y, loss=loss, penalty=penalty, reg=b, tol=1e-8) for b in betas]
            for p, c in zip(path, cold):
                assert p.certificate.converged
                assert p.certificate.primal == pytest.approx(c.certificate.primal, rel=2e-8)
            warm_total += sum(p.certificate.iterations for p in path)
            cold_total += sum(c.certificate.iterations for c in cold)
    assert warm_total < cold_total


def test_path_keeps_the_given_order():
    D, y, lam = make_problem("softmax", n=60, P=20, seed=17)
    betas = [lam * x for x in (0.5, 1.0, 2.0)]
    rev = solve_path(D, y, betas, loss="softmax", tol=1e-7)
    assert [r.reg for r in rev] == pytest.approx(betas)
    lams = solve_path(D, y, lams=[lam, 2 * lam], loss="softmax", tol=1e-7)
    assert [r.lam for r in lams] == pytest.approx([lam, 2 * lam]) and lams[0].reg is None


def test_max_iter_warning_returns_best_point():
    D, y, lam = make_problem("softmax", seed=12)
    with pytest.warns(ConvergenceWarning) as rec:
        sol = solve_readout(D, y, loss="softmax", lam=lam / 4, max_iter=3, tol=1e-12)
    w = rec[0].message
    assert isinstance(w.certificate, Certificate)
    assert w.gap == pytest.approx(sol.certificate.gap) and w.gap > 0
    assert not sol.certificate.converged
    # the best point is at least as good as the start W = 0 and its certificate is valid
    f0 = math.log(3.0)
    assert sol.certificate.primal <= f0
    assert sol.certificate.primal == pytest.approx(
        _objective(D, y, "softmax", "l1", lam / 4, sol.W.numpy()), rel=1e-10
    )
    ref = solve_readout(D, y, loss="softmax", lam=lam / 4, tol=1e-10).certificate.primal
    assert sol.certificate.dual <= ref <= sol.certificate.primal


@pytest.mark.parametrize("loss", LOSSES)
def test_float32_and_bool_dictionary(loss):
    D, y, lam = make_problem(loss, n=100, P=40, seed=13)
    Db = torch.as_tensor(D.astype(bool))
    s32 = solve_readout(Db, y, loss=loss, lam=lam, tol=1e-4, dtype=torch.float32)
    s64 = solve_readout(Db, y, loss=loss, lam=lam, tol=1e-10)
    assert s32.W.dtype == torch.float32 and s64.W.dtype == torch.float64
    assert s32.certificate.converged
    assert s32.certificate.primal == pytest.approx(s64.certificate.primal, rel=2e-4)


def test_operator_protocol_object():
    D, y, lam = make_problem("squared", n=80, P=30, seed=14)
    Dt = torch.as_tensor(D)

    class Op:  # only the required part of the protocol: no columns(), no dense()
        shape = tuple(Dt.shape)
        dtype = torch.float64
        device = torch.device("cpu")

        def matmul(self, W):
            return Dt @ W

        def rmatmul(self, R):
            return Dt.T @ R

    a = solve_readout(Op(), y, lam=lam, tol=1e-9)
    b = solve_readout(DictionaryOperator(D), y, lam=lam, tol=1e-9)
    assert a.certificate.primal == pytest.approx(b.certificate.primal, rel=1e-8)
    with pytest.raises(TypeError, match="dtype"):
        solve_readout(Op(), y, lam=lam, dtype=torch.float32)


def test_solution_helpers_and_json():
    D, y, lam = make_problem("hinge", C=3, seed=15)
    sol = solve_readout(D, y, loss="hinge", lam=lam)
    pred = sol.predict(D)
    assert pred.shape == (D.shape[0],)
    # arg-max, except rows whose two best scores tie within rounding (a hinge readout puts
    # scores exactly on the margin): those go to the lower class (convexsnn._scores)
    z = sol.scores(D)
    top2 = z.topk(2, dim=1)
    n_terms = int((sol.W != 0).any(dim=1).sum())
    Dt = torch.as_tensor(np.asarray(D), dtype=z.dtype)
    tol = n_terms * torch.finfo(z.dtype).eps * (Dt.abs() @ sol.W.abs()).amax(dim=1)
    tied = (top2.values[:, 0] - top2.values[:, 1]) <= 2 * tol
    assert torch.equal(pred[~tied], z.argmax(dim=1)[~tied])
    assert torch.equal(pred[tied], top2.indices[tied].amin(dim=1))
    d = sol.certificate.to_dict()
    json.dumps(d)
    assert d["datafit"] == "hinge" and d["n_columns"] == D.shape[1]
    assert torch.equal(
        predict_from_scores(torch.tensor([[0.5], [-0.1], [0.0]])), torch.tensor([1, 0, 0])
    )
    Y = labels_to_targets(np.array([0, 1, 1]))
    assert Y.shape == (3, 1) and Y[:, 0].tolist() == [-1.0, 1.0, 1.0]
    Y3 = labels_to_targets(np.array([0, 2, 1]))
    assert Y3.tolist() == [[1, -1, -1], [-1, -1, 1], [-1, 1, -1]]


# ------------------------------------------------------------------ input validation


def _base():
    rng = np.random.default_rng(0)
    D = (rng.random((20, 8)) < 0.5).astype(float)
    y = rng.integers(0, 3, 20)
    return D, y


BAD = [
    ("D 3-D", lambda D, y: dict(D=D[None], y=y, lam=0.1), ValueError, "2-D"),
    ("D non-binary", lambda D, y: dict(D=D * 2, y=y, lam=0.1), ValueError, "binary"),
    (
        "D NaN",
        lambda D, y: dict(D=np.where(D > 0, np.nan, 0.0), y=y, lam=0.1),
        ValueError,
        "binary",
    ),
    ("D no columns", lambda D, y: dict(D=D[:, :0], y=y, lam=0.1), ValueError, "dropped"),
    ("D wrong type", lambda D, y: dict(D="abc", y=y, lam=0.1), TypeError, "D"),
    (
        "y NaN",
        lambda D, y: dict(D=D, y=np.where(y > 0, np.nan, 1.0), lam=0.1, loss="squared"),
        ValueError,
        "y contains non-finite",
    ),
    ("y rows", lambda D, y: dict(D=D, y=y[:-1], lam=0.1, loss="softmax"), ValueError, "rows"),
    (
        "label range",
        lambda D, y: dict(D=D, y=y, lam=0.1, loss="softmax", n_classes=2),
        ValueError,
        "out of range",
    ),
    (
        "label negative",
        lambda D, y: dict(D=D, y=y - 5, lam=0.1, loss="softmax"),
        ValueError,
        "negative",
    ),
    (
        "label non-integer",
        lambda D, y: dict(D=D, y=y + 0.5, lam=0.1, loss="softmax"),
        ValueError,
        "integer",
    ),
    (
        "weights inf",
        lambda D, y: dict(
            D=D, y=y, lam=0.1, loss="softmax", sample_weight=np.r_[np.inf, np.ones(19)]
        ),
        ValueError,
        "sample_weight",
    ),
    (
        "weights shape",
        lambda D, y: dict(D=D, y=y, lam=0.1, loss="softmax", sample_weight=np.ones(3)),
        ValueError,
        "sample_weight",
    ),
    (
        "weights negative",
        lambda D, y: dict(D=D, y=y, lam=0.1, loss="softmax", sample_weight=-np.ones(20)),
        ValueError,
        "sample_weight",
    ),
    ("lam zero", lambda D, y: dict(D=D, y=y, lam=0.0), ValueError, "lam"),
    ("lam negative", lambda D, y: dict(D=D, y=y, lam=-1.0), ValueError, "lam"),
    ("reg zero", lambda D, y: dict(D=D, y=y, reg=0.0), ValueError, "reg"),
    ("lam and reg", lambda D, y: dict(D=D, y=y, lam=0.1, reg=0.1), ValueError, "exactly one"),
    ("neither", lambda D, y: dict(D=D, y=y), ValueError, "exactly one"),
    ("unknown loss", lambda D, y: dict(D=D, y=y, lam=0.1, loss="logistic"), ValueError, "squared"),
    ("unknown penalty", lambda D, y: dict(D=D, y=y, lam=0.1, penalty="l2"), ValueError, "l21"),
    ("bad dtype", lambda D, y: dict(D=D, y=y, lam=0.1, dtype=torch.float16), TypeError, "dtype"),
    ("bad tol", lambda D, y: dict(D=D, y=y, lam=0.1, tol=0.0), ValueError, "tol"),
    (
        "hinge 2-D not pm1",
        lambda D, y: dict(D=D, y=np.zeros((20, 2)), lam=0.1, loss="hinge"),
        ValueError,
        r"\+-1",
    ),
    ("W0 shape", lambda D, y: dict(D=D, y=y, lam=0.1, W0=np.zeros((3, 3))), ValueError, "W0"),
    ("bad solver", lambda D, y: dict(D=D, y=y, lam=0.1, solver="newton"), ValueError, "solver"),
]


@pytest.mark.parametrize("name,kw,exc,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_input(name, kw, exc, msg):
    D, y = _base()
    args = kw(D, y)
    with pytest.raises(exc, match=msg):
        solve_readout(args.pop("D"), args.pop("y"), **args)


def test_bad_path_input():
    D, y = _base()
    with pytest.raises(ValueError, match="exactly one"):
        solve_path(D, y, regs=[1.0], lams=[1.0])
    with pytest.raises(ValueError, match="reg"):
        solve_path(D, y, [1.0, -1.0], loss="softmax")


def test_no_warning_when_converged():
    D, y, lam = make_problem("squared", seed=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solve_readout(D, y, lam=lam)


def test_certified_label_is_one_rule_for_every_face():
    from convexsnn.convex import Certificate, certified_label

    kw = dict(
        iterations=3,
        seconds=0.1,
        datafit="squared",
        penalty="l1",
        lam=0.1,
        n_rows=4,
        n_columns=2,
        tol=1e-6,
    )
    ok = Certificate.from_values(1.0, 1.0 - 1e-9, converged=True, status="converged", **kw)
    bad = Certificate.from_values(1.0, 0.5, converged=False, status="max_time", **kw)
    assert certified_label(None) == "-" and certified_label([]) == "-"
    assert certified_label(ok) == "certified" and certified_label(ok.to_dict()) == "certified"
    assert certified_label(bad) == "NOT certified (max_time, rel gap 5.0e-01)"
    # several heads: certified only when every head is
    assert certified_label([ok, bad.to_dict()]).startswith("NOT certified")
    assert certified_label([ok, ok]) == "certified"


def test_long_solves_log_their_progress(monkeypatch, caplog):
    # a solve longer than PROGRESS_SECONDS logs INFO lines with its certified gap and budget
    import logging

    import convexsnn.convex.solver as solver_mod
    from convexsnn.convex import solve_readout

    monkeypatch.setattr(solver_mod, "PROGRESS_SECONDS", 0.0)
    g = torch.Generator().manual_seed(0)
    D = (torch.rand(200, 60, generator=g) < 0.3).to(torch.float64)
    y = (torch.rand(200, generator=g) < 0.5).long()
    with caplog.at_level(logging.INFO, logger="convexsnn"):
        solve_readout(D, y, loss="softmax", penalty="l1", reg=0.01, tol=1e-8, max_time=30)
    lines = [r.getMessage() for r in caplog.records if "readout solve: round" in r.getMessage()]
    assert lines and "rel gap" in lines[0] and "s left" in lines[0]


@pytest.mark.parametrize("loss", LOSSES)
def test_merge_groups_are_the_distinct_row_target_pairs(loss):
    """Rows merge exactly when dictionary row *and* target agree (the 1-d hash key is only a
    grouping hint: equal rows with different targets stay apart)."""
    from convexsnn.convex._rows import merge_duplicate_rows
    from convexsnn.convex.solver import prepare_problem

    rng = np.random.default_rng(3)
    base = (rng.random((12, 9)) < 0.4).astype(np.float64)
    D = base[rng.integers(0, 12, 80)]
    y = rng.integers(0, 3, 80)  # the same row often carries different labels
    prep = prepare_problem(D, y, loss=loss, penalty="l1", n_classes=3)
    g = merge_duplicate_rows(prep.op, prep.datafit)
    assert g is not None
    pairs = np.concatenate([D, y[:, None].astype(np.float64)], axis=1)
    assert g.op.shape[0] == len(np.unique(pairs, axis=0))
    inv = g.inverse.numpy()
    reps = g.op.dense().numpy()
    assert np.array_equal(reps[inv], D)
    # every group holds one target (its rows' targets all equal the representative's)
    for k in range(g.op.shape[0]):
        assert len(np.unique(y[inv == k])) == 1
    assert float(g.group_weights.sum()) == pytest.approx(float(prep.datafit.weights.sum()))


def test_entry_scores_match_the_row_score_definition():
    """The l1 shortcut |G| equals the generic per-entry row scores, and the per-column dual
    scaling is min(1, lam / max_j |G_jc|)."""
    from convexsnn.convex.penalties import L1, L21, Penalty, dual_scale

    G = torch.randn(7, 4, dtype=torch.float64)
    for pen in (L1(), L21()):
        generic = Penalty.entry_scores(pen, G)
        assert torch.equal(pen.entry_scores(G), generic)
    lam = 0.8
    s = dual_scale(L1(), lam, G, per_column=True)
    expect = torch.clamp(lam / G.abs().amax(dim=0), max=1.0)
    assert torch.allclose(s, expect, rtol=0, atol=1e-15)
