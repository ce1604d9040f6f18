"""Squared + l1 at small lambda (the near-interpolating regime) on real spike dictionaries.

Fixtures (``tests/data``, see ``tests/test_solver_pdas.py``): ``xor_T11_wide_sub.npz`` (1000 x
393, rank 389) and ``tomita3_T12_gaussian.npz`` (2000 x 127, rank 126). References: the face
equations themselves, cvxpy + Clarabel, and cold against warm (continuation) starts.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import gram_fixture, load_packed_fixture
from convexsnn.convex import lambda_max, solve_path, solve_readout
from convexsnn.convex._cd_numba import cd_gram_sweeps, gram_gap
from convexsnn.convex._polish import pdas_l1
from convexsnn.dictionary.operator import SpikeOperator

pytestmark = pytest.mark.usefixtures("one_thread")


def _five_sweeps(H, B, Y, lam):
    """``(W, H W)`` after five Gram-form coordinate-descent sweeps from zero: a point with the
    support roughly found, where the active-set steps start."""
    y2 = (Y * Y).sum(0) / Y.shape[0]
    W = np.zeros_like(B)
    HW = H @ W
    rows = np.arange(H.shape[0])
    cd_gram_sweeps(
        H, B, W, HW, y2, lam, group=False, per_col=True, rows=rows, gram_tol=-1.0, max_sweeps=5
    )  # fmt: skip
    return W, HW


def _packed(D):
    n = D.shape[0]
    return SpikeOperator(packed=torch.from_numpy(np.packbits(D.astype(np.uint8), axis=0)), n_rows=n)


@pytest.mark.parametrize(
    "name, ratio",
    [
        ("tomita3_T12_gaussian.npz", 3e-2),  # faces solved through the shared inverse
        ("tomita3_T12_gaussian.npz", 1e-1),  # faces solved by Cholesky
        ("xor_T11_wide_sub.npz", 3e-1),
    ],
)
def test_pdas_newton_points_solve_their_face_equations(name, ratio):
    # the Newton points handed back by pdas_l1 (dual candidates of the solver) solve
    # (H_AA + rho I) x_A = b_A - lam sigma_A on the active set A = {|w - g/H_jj| > lam/H_jj},
    # sigma = sign(w - g/H_jj), and are zero off A: the undamped points, not the steps taken
    # (at smaller lam these faces are singular: no point comes back, the caller falls back to
    # the support Newton's homotopy steps)
    D, y, H, B, Y = gram_fixture(name)
    lam = ratio * float(np.abs(B).max())
    W, HW = _five_sweeps(H, B, Y, lam)
    diag = np.diag(H)
    v = W - (HW - B) / diag[:, None]
    state: dict = {}
    points: dict = {}
    W0 = W.copy()
    pdas_l1(H, B, W, HW, lam, state=state, points=points)
    assert points, "no Newton point came back"
    rho = state.get("ridge", 0.0)
    moved_less = False
    for c, x in points.items():
        act = np.abs(v[:, c]) > lam / diag
        sig = np.sign(v[act, c])
        assert np.all(x[~act] == 0.0)
        Ha = H[np.ix_(act, act)]
        res = (Ha + rho * np.eye(int(act.sum()))) @ x[act] - (B[act, c] - lam * sig)
        scale = np.abs(Ha).max() * np.abs(x).max() + np.abs(B[:, c]).max()
        # (the face is solved by the ridge-guarded Cholesky or the shared inverse with one step
        # of iterative refinement; rank-deficient faces give ~1e-10 relative residuals)
        assert np.abs(res).max() <= 1e-8 * scale, np.abs(res).max() / scale
        moved_less |= not np.allclose(W[:, c], x)
    assert moved_less or not np.allclose(W, W0)


@pytest.mark.slow
@pytest.mark.parametrize("ratio", [1e-3, 1e-4])
def test_near_interpolating_solve_matches_clarabel_and_continuation(ratio):
    # the full solver (packed operator, working sets, CD + active-set steps) at a small lambda
    # on the rank-deficient XOR dictionary: certified to tol, the objective within 1e-6 of
    # cvxpy + Clarabel, and the continuation (warm start along a decreasing lam path) reaches
    # the same optimum as the cold start
    cp = pytest.importorskip("cvxpy")
    D, y, _ = load_packed_fixture("xor_T11_wide_sub.npz")
    n = D.shape[0]
    op = _packed(D)
    lam = ratio * float(lambda_max(D, y))
    sol = solve_readout(op, y, loss="squared", penalty="l1", lam=lam, tol=1e-8, max_time=60.0)
    cert = sol.certificate
    assert cert.status == "converged" and cert.converged and cert.rel_gap <= 1e-8
    Y = np.where(y == 1, 1.0, -1.0)
    w = cp.Variable(D.shape[1])
    prob = cp.Problem(cp.Minimize(0.5 / n * cp.sum_squares(D @ w - Y) + lam * cp.norm1(w)))
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    Wn = sol.W.numpy()[:, 0]
    ours = 0.5 / n * float(((D @ Wn - Y) ** 2).sum()) + lam * float(np.abs(Wn).sum())
    assert abs(ours - cert.primal) <= 1e-10 * abs(ours)
    assert abs(ours - prob.value) <= 1e-6 * abs(prob.value)
    path = solve_path(op, y, lams=[100 * lam, 10 * lam, lam], tol=1e-8, max_time=60.0)
    last = path[-1].certificate
    assert last.status == "converged" and last.rel_gap <= 1e-8
    assert abs(last.primal - cert.primal) <= 1e-7 * abs(cert.primal)


def test_a_capped_small_lam_solve_says_it_did_not_converge():
    # an iteration cap far too small for the near-interpolating regime: the status says so and
    # the reported gap is the one recomputed on the original problem (not below tol)
    D, y, _ = load_packed_fixture("tomita3_T12_gaussian.npz")
    lam = 1e-4 * float(lambda_max(D, y))
    with pytest.warns(Warning):
        sol = solve_readout(_packed(D), y, lam=lam, tol=1e-10, max_iter=3)
    cert = sol.certificate
    assert not cert.converged and cert.status == "max_iter"
    assert cert.rel_gap > 1e-10
    Wn = sol.W.numpy()[:, 0]
    n = D.shape[0]
    Yv = np.where(y == 1, 1.0, -1.0)
    primal = 0.5 / n * float(((D @ Wn - Yv) ** 2).sum()) + lam * float(np.abs(Wn).sum())
    assert abs(primal - cert.primal) <= 1e-9 * abs(primal)


def test_gram_gap_of_the_newton_points_is_a_valid_bound():
    # any W gives a primal value >= the optimum and a dual value <= it: the Newton points' Gram
    # values bracket the certified optimum of the solver
    D, y, H, B, Y = gram_fixture("tomita3_T12_gaussian.npz")
    lam = 3e-2 * float(np.abs(B).max())
    W, HW = _five_sweeps(H, B, Y, lam)
    points: dict = {}
    pdas_l1(H, B, W, HW, lam, state={}, points=points)
    assert points
    sol = solve_readout(_packed(D), y, lam=lam, tol=1e-10)
    opt = sol.certificate.primal
    y2 = (Y * Y).sum(0) / Y.shape[0]
    for c, x in points.items():
        X = W.copy()
        X[:, c] = x
        p, d = gram_gap(H, B, X, H @ X, y2, lam, False, True)
        assert d <= opt * (1 + 1e-9) and p >= opt * (1 - 1e-9)
