"""Active-set Newton steps and exact float32 Gram blocks of the squared-loss Gram solver.

``tests/data/xor_T11_wide_sub.npz`` is the ``CVX-wide`` Gaussian-witness spike dictionary of the
XOR T=11, L=5 cell (seed 0; 64 branches, 2048 last-layer neurons, scale 2, leak 0.99), rows and
columns subsampled (1000 x 393, rank 389, 794 distinct rows): the near-interpolating, rank
deficient regime where coordinate descent alone crawls. At ``lam = 1e-4 lam_max`` the solver of
main aa1597a stopped on its iteration budget at a relative gap of 6e-2 (20 s).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import load_packed_fixture
from convexsnn.convex import lambda_max, solve_readout
from convexsnn.convex._inner import gram_columns, gram_matrices
from convexsnn.convex._polish import newton_support_l1
from convexsnn.convex.linear_operator import DictionaryOperator
from convexsnn.dictionary.operator import SpikeOperator

pytestmark = pytest.mark.usefixtures("one_thread")


def _fixture():
    return load_packed_fixture("xor_T11_wide_sub.npz")


def _objective(D, Y, w, lam):
    n = D.shape[0]
    return 0.5 / n * float(((D @ w - Y) ** 2).sum()) + lam * float(np.abs(w).sum())


def test_fixture_is_rank_deficient():
    D, y, meta = _fixture()
    assert D.shape == (meta["rows"], meta["columns"])
    assert np.linalg.matrix_rank(D) < D.shape[1]


@pytest.mark.slow
def test_near_interpolating_xor_certifies_the_clarabel_optimum():
    cp = pytest.importorskip("cvxpy")
    D, y, _ = _fixture()
    lam = 1e-4 * float(lambda_max(D, y))
    sol = solve_readout(D, y, loss="squared", penalty="l1", lam=lam, tol=1e-8, max_time=60.0)
    cert = sol.certificate
    assert cert.converged and cert.status == "converged"
    assert cert.rel_gap <= 1e-8
    Y = np.where(y == 1, 1.0, -1.0)
    w = cp.Variable(D.shape[1])
    prob = cp.Problem(cp.Minimize(0.5 / D.shape[0] * cp.sum_squares(D @ w - Y) + lam * cp.norm1(w)))
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    ours = _objective(D, Y, sol.W.numpy()[:, 0], lam)
    assert abs(ours - cert.primal) <= 1e-12 * abs(ours)  # the reported primal is W's value
    # never below the optimum beyond Clarabel's own accuracy, and within 1e-6 of it
    assert ours <= prob.value * (1 + 1e-6)
    assert ours >= prob.value * (1 - 1e-8)


def _lasso_kkt(H, B, W, lam):
    """Largest violation of the l1 optimality conditions of the Gram-form problem."""
    G = H @ W - B
    on = W != 0
    v_on = np.abs(G + lam * np.sign(W))[on].max(initial=0.0)
    v_off = np.maximum(np.abs(G) - lam, 0.0)[~on].max(initial=0.0)
    return max(v_on, v_off)


def test_newton_step_solves_the_support_equations():
    # H_SS w_S = b_S - lam sign(w_S) on a well-conditioned support: one step reaches it
    rng = np.random.default_rng(0)
    X = (rng.random((400, 30)) < 0.4).astype(np.float64)
    Y = rng.standard_normal((400, 2))
    H, B = X.T @ X / 400, X.T @ Y / 400
    lam = 0.02
    # the optimum by many coordinate-descent sweeps (reference, independent of the Newton step)
    W = np.zeros((30, 2))
    for sweep in range(20000):
        for j in range(30):
            v = W[j] - (H[j] @ W - B[j]) / H[j, j]
            W[j] = np.sign(v) * np.maximum(np.abs(v) - lam / H[j, j], 0.0)
        if sweep % 50 == 49 and _lasso_kkt(H, B, W, lam) < 1e-14:
            break
    assert _lasso_kkt(H, B, W, lam) < 1e-12
    # a point with the optimal signs, perturbed on the support
    W0 = W + 0.01 * rng.standard_normal(W.shape) * (W != 0)
    W0 = np.where(np.sign(W0) == np.sign(W), W0, W)
    HW0 = H @ W0
    F = lambda Wx: sum(  # noqa: E731
        0.5 * Wx[:, c] @ H @ Wx[:, c] - B[:, c] @ Wx[:, c] + lam * np.abs(Wx[:, c]).sum()
        for c in range(2)
    )
    f0 = F(W0)
    dec, work = newton_support_l1(H, B, W0, HW0, lam)
    assert work > 0
    assert dec > 0 and F(W0) == pytest.approx(f0 - dec, rel=1e-10, abs=1e-14)
    np.testing.assert_allclose(HW0, H @ W0, atol=1e-12)
    np.testing.assert_allclose(W0, W, atol=1e-9)


def test_newton_step_never_increases_the_objective_on_rank_deficient_supports():
    # duplicate and collinear columns: H_SS singular; the step stops at a sign change or at the
    # minimiser, and the objective only goes down
    rng = np.random.default_rng(1)
    X = (rng.random((200, 12)) < 0.5).astype(np.float64)
    X = np.hstack([X, X[:, :4], X[:, 4:5] + X[:, 5:6] * (1 - X[:, 4:5])])
    Y = rng.standard_normal((200, 1))
    H, B = X.T @ X / 200, X.T @ Y / 200
    lam = 1e-3
    F = lambda Wx: float(  # noqa: E731
        0.5 * Wx[:, 0] @ H @ Wx[:, 0] - B[:, 0] @ Wx[:, 0] + lam * np.abs(Wx[:, 0]).sum()
    )
    for seed in range(20):
        W = np.random.default_rng(seed).standard_normal((X.shape[1], 1))
        HW = H @ W
        before = F(W)
        dec, _ = newton_support_l1(H, B, W, HW, lam)
        assert dec >= 0.0 and F(W) <= before + 1e-12
        assert F(W) == pytest.approx(before - dec, rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(HW, H @ W, atol=1e-9)


@pytest.mark.parametrize("weights", ["uniform", "merged", "real"])
def test_gram_blocks_are_exact(weights):
    rng = np.random.default_rng(2)
    n, s = 333, 70
    X = (rng.random((n, s)) < 0.3).astype(np.float64)
    if weights == "uniform":
        a = np.full(n, 1.0 / n)
    elif weights == "merged":
        a = rng.integers(1, 5, n) / 997.0  # multiplicities of merged rows
    else:
        a = rng.random(n)
    Y = rng.standard_normal((n, 3))
    H_ref = X.T @ (a[:, None] * X)
    B_ref = X.T @ (a[:, None] * Y)
    packed = torch.from_numpy(np.packbits(X.astype(np.uint8), axis=0))
    ops = [SpikeOperator(packed=packed, n_rows=n), DictionaryOperator(X)]
    for op in ops:
        H, B = gram_matrices(op, torch.from_numpy(a), torch.from_numpy(Y))
        np.testing.assert_allclose(H.numpy(), H_ref, rtol=1e-14, atol=0)
        np.testing.assert_allclose(B.numpy(), B_ref, rtol=1e-12, atol=1e-15)
        idx = torch.tensor([3, 7, 50, 69])
        Hk, Bk = gram_columns(op, torch.from_numpy(a), torch.from_numpy(Y), idx)
        np.testing.assert_allclose(Hk.numpy(), H_ref[:, idx.numpy()], rtol=1e-14, atol=0)
        np.testing.assert_allclose(Bk.numpy(), B_ref[idx.numpy()], rtol=1e-12, atol=1e-15)
