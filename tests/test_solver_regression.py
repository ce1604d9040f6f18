"""Regression tests of the readout solver on real spike dictionaries stored as fixtures.

``tests/data/tomita3_T12_gaussian.npz`` is a Gaussian-witness spike dictionary on Tomita-3 (T=12,
2000 rows x 127 columns, rank 126: two columns are nearly collinear on the support), stored as
row-packed bits with the labels, so these tests do not depend on the task generators. Squared + l1
at ``lam = 1e-3 lam_max`` used to stop after ~90 iterations on a false Gram-form gap: the polish
step solved a nearly singular normal-equation system that Cholesky accepted, returned weights of
~1e13, and the Gram-form primal/dual values of that point cancelled catastrophically.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from conftest import load_packed_fixture
from convexsnn.convex import ConvergenceWarning, lambda_max, solve_readout

pytestmark = pytest.mark.usefixtures("one_thread")


def squared_l1_reference(D: np.ndarray, y: np.ndarray, lam: float) -> float | None:
    """Optimal value by cvxpy + Clarabel (``None`` when cvxpy is missing)."""
    try:
        import cvxpy as cp
    except ImportError:  # pragma: no cover - cvxpy is a test dependency
        return None
    n = D.shape[0]
    Y = np.where(y == 1, 1.0, -1.0)
    w = cp.Variable(D.shape[1])
    prob = cp.Problem(cp.Minimize(0.5 / n * cp.sum_squares(D @ w - Y) + lam * cp.norm1(w)))
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return float(prob.value)


@pytest.fixture(scope="module")
def tomita3():
    D, y, meta = load_packed_fixture("tomita3_T12_gaussian.npz")
    lam = 1e-3 * lambda_max(D, y)
    ref = squared_l1_reference(D, y, lam)
    if ref is None:
        ref = meta["clarabel_objective"]
    return D, y, lam, ref, meta


def test_fixture_is_the_rank_deficient_case(tomita3):
    D, y, lam, ref, meta = tomita3
    assert D.shape == (2000, 127)
    assert np.linalg.matrix_rank(D) == meta["rank"] == 126
    assert lam == pytest.approx(meta["lam"], rel=1e-12)


@pytest.mark.parametrize("kw", [{}, {"merge_rows": False}, {"solver": "gram"}, {"polish": False}])
def test_tomita3_squared_l1_certifies_the_optimum(tomita3, kw):
    """The default solve (and every Gram variant) reaches the requested gap at the optimum."""
    D, y, lam, ref, _ = tomita3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        sol = solve_readout(D, y, lam=lam, tol=1e-6, **kw)
    cert = sol.certificate
    assert cert.converged and cert.status == "converged"
    assert cert.rel_gap <= 1e-6
    # the certificate is honest: recompute the primal value independently
    Y = np.where(y == 1, 1.0, -1.0)[:, None]
    W = sol.W.numpy()
    primal = 0.5 * np.mean((D @ W - Y) ** 2) + lam * np.abs(W).sum()
    assert primal == pytest.approx(cert.primal, rel=1e-12)
    assert abs(primal - ref) <= 1e-6 * abs(ref)
    # no blown-up weights from a singular polish
    assert float(sol.W.abs().max()) < 1e3


def test_guarded_solve_refuses_the_near_singular_cholesky():
    """Two nearly collinear columns: Cholesky succeeds but its solution is ~1/eps large; the
    guarded solve returns the (bounded) minimum-norm least-squares solution instead."""
    from convexsnn.convex._polish import guarded_spd_solve

    X = torch.tensor([[1.0, 1.0], [1.0, 1.0 + 1e-9], [0.0, 0.0]], dtype=torch.float64)
    H = X.T @ X
    b = torch.tensor([1.0, 1.0 + 3e-9], dtype=torch.float64)
    L, info = torch.linalg.cholesky_ex(H)
    naive = torch.cholesky_solve(b[:, None], L)[:, 0]
    assert int(info) == 0 and float(naive.abs().max()) > 1e3  # what the old polish used
    x = guarded_spd_solve(H, b)
    assert x is not None and float(x.abs().max()) < 10.0
    assert torch.allclose(H @ x, b, atol=1e-6)


def test_gram_matrices_by_column_blocks_match_dense(tomita3):
    """Forming H = D^T A D from column blocks (no n x s copy) gives the dense result."""
    from convexsnn.convex._inner import gram_matrices
    from convexsnn.convex.linear_operator import as_operator

    D, y, *_ = tomita3
    op = as_operator(D)
    a = torch.rand(D.shape[0], dtype=torch.float64)
    Y = torch.randn(D.shape[0], 2, dtype=torch.float64)
    H1, B1 = gram_matrices(op, a, Y)
    H2, B2 = gram_matrices(op, a, Y, block_entries=2000 * 10)
    Dt = torch.from_numpy(D)
    assert torch.allclose(H1, (Dt * a[:, None]).T @ Dt, rtol=1e-12, atol=1e-12)
    assert torch.allclose(H2, H1, rtol=1e-12, atol=1e-12)
    assert torch.allclose(B2, B1, rtol=1e-12, atol=1e-12)


def test_cd_on_the_fixture_is_honest(tomita3):
    """Coordinate descent converges slowly on this ill-conditioned case; with a small budget it
    must say so (status max_iter, converged False) and its gap must bound the true error."""
    D, y, lam, ref, _ = tomita3
    with pytest.warns(ConvergenceWarning):
        sol = solve_readout(D, y, lam=lam, tol=1e-10, solver="cd", max_iter=30)
    cert = sol.certificate
    assert not cert.converged and cert.status == "max_iter"
    assert cert.dual <= ref + 1e-12 <= cert.primal + 2e-12
