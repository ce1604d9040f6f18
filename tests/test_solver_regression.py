"""Regression tests of the readout solver on real spike dictionaries stored as fixtures.

``tests/data/tomita3_T12_gaussian.npz`` is a Gaussian-witness spike dictionary on Tomita-3 (T=12,
2000 rows x 127 columns, rank 126: two columns are nearly collinear on the support), stored as
row-packed bits with the labels, so these tests do not depend on the task generators. Squared + l1
at ``lam = 1e-3 lam_max`` used to stop after ~90 iterations on a false Gram-form gap: the polish
step solved a nearly singular normal-equation system that Cholesky accepted, returned weights of
~1e13, and the Gram-form primal/dual values of that point cancelled catastrophically.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from convexsnn.convex import ConvergenceWarning, lambda_max, solve_readout

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def load_fixture(name: str):
    """``(D (n, P) float64, labels (n,) int64, meta dict)`` of a packed fixture."""
    z = np.load(DATA / name)
    n = int(z["n_rows"])
    D = np.unpackbits(z["packed"], axis=0)[:n].astype(np.float64)
    return D, z["labels"].astype(np.int64), json.loads(str(z["meta"]))


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
    D, y, meta = load_fixture("tomita3_T12_gaussian.npz")
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


@pytest.mark.parametrize("kw", [{}, {"merge_rows": False},
                                {"solver": "gram"}, {"polish": False}])
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
