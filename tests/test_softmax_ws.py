"""Softmax + l1 through working sets: the proximal Newton solver (row form, face phase) on
column blocks, the KKT conditions checked over the whole dictionary by the driver, the stop
decided on the certificate of the original problem.

Reference: cvxpy + Clarabel on :math:`\\frac1n\\sum_i (\\log\\sum_c e^{z_{ic}} - z_{i y_i}) +
\\lambda \\lVert W\\rVert_1`, :math:`Z = DW`, on the real Tomita-3 spike dictionary of
``tests/data`` with its duplicated columns kept (rank-deficient). ``NEWTON_MAX_ENTRIES`` (and
``WORKING_SET_MIN_COLUMNS``) is set to 0 so that every dictionary goes through working sets,
``NEWTON_WS_MIN`` to a few columns so that the sets have to grow, and ``NEWTON_FULL_HESSIAN``
to 0 so that every block goes to the row-form solver (the one the large dictionaries use).
"""

from __future__ import annotations

import numpy as np
import pytest

import convexsnn.convex._softmax_cd as cd_mod
import convexsnn.convex.solver as solver_mod
from conftest import load_packed_fixture
from convexsnn.convex import ConvergenceWarning, lambda_max, solve_readout
from convexsnn.convex._softmax_face import face_newton_cg
from test_solver_softmax import _clarabel, _objective

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def ws_solver(monkeypatch):
    monkeypatch.setattr(solver_mod, "NEWTON_MAX_ENTRIES", 0)
    monkeypatch.setattr(solver_mod, "WORKING_SET_MIN_COLUMNS", 0)
    monkeypatch.setattr(solver_mod, "NEWTON_WS_MIN", 4)
    monkeypatch.setattr(solver_mod, "NEWTON_FULL_HESSIAN", 0)


def _dictionary(n=300, P=40, three=False):
    """Rows and columns of the Tomita-3 dictionary, duplicated columns kept, plus one exact
    copy of the first nonzero column (so the block is rank-deficient for sure)."""
    D, y, _ = load_packed_fixture("tomita3_T12_gaussian.npz")
    D, y = D[:n, :P].astype(np.float64), y[:n].copy()
    j = int(np.flatnonzero(D.sum(axis=0) > 0)[0])
    D = np.concatenate([D, D[:, j : j + 1]], axis=1)
    if three:
        y[(y == 1) & (D[:, j] == 1)] = 2
    assert np.linalg.matrix_rank(D) < D.shape[1]
    return D, y


@pytest.mark.parametrize(
    "rel, three",
    [(1e-1, False), (1e-2, True), (1e-3, False)],
)
def test_working_set_newton_matches_clarabel(ws_solver, rel, three):
    D, y = _dictionary(three=three)
    C = int(y.max()) + 1
    lam = rel * float(lambda_max(D, y, loss="softmax"))
    tol = 1e-7
    sol = solve_readout(
        D, y, loss="softmax", penalty="l1", lam=lam, tol=tol, max_time=60.0, solver="newton"
    )
    cert = sol.certificate
    # above NEWTON_MAX_ENTRIES the Newton solver goes through working sets
    assert cert.algorithm.startswith("newton+ws")
    assert cert.status == "converged" and cert.converged and cert.rel_gap <= tol
    ours = _objective(D, y, sol.W.numpy().astype(np.float64), lam)
    assert abs(ours - cert.primal) <= 1e-10 * abs(ours)
    ref = _clarabel(D, y, C, lam)
    assert abs(ours - ref) <= 1e-6 * abs(ref)


def test_working_set_grows_until_kkt_holds(ws_solver, monkeypatch):
    # the first set holds NEWTON_WS_MIN = 4 columns while the optimum uses more: the set has to
    # grow on the violations of the dual constraints outside it
    D, y = _dictionary()
    lam = 1e-2 * float(lambda_max(D, y, loss="softmax"))
    face_steps = []

    def counted(*args, **kw):
        res = face_newton_cg(*args, **kw)
        face_steps.append(res.steps)
        return res

    monkeypatch.setattr(cd_mod, "face_newton_cg", counted)
    sol = solve_readout(
        D, y, loss="softmax", penalty="l1", lam=lam, tol=1e-8, max_time=60.0, solver="newton"
    )
    # the blocks' face phases ran (Newton-CG steps on the support)
    assert sum(face_steps) > 0
    cert = sol.certificate
    assert cert.algorithm.startswith("newton+ws")
    assert cert.converged and cert.rel_gap <= 1e-8
    support = int((sol.W.abs().sum(dim=1) > 0).sum())
    assert support > 4
    assert cert.info["max_working_set"] >= support
    assert cert.info["outer_iterations"] >= 2
    # the KKT conditions over the whole dictionary: |D^T (P - E)| / n <= lam (up to the gap)
    Z = D @ sol.W.numpy()
    Pm = np.exp(Z - Z.max(axis=1, keepdims=True))
    Pm /= Pm.sum(axis=1, keepdims=True)
    G = D.T @ (Pm - np.eye(int(y.max()) + 1)[y]) / len(y)
    assert float(np.abs(G).max()) <= lam * (1 + 1e-3)


def test_working_set_capped_solve_reports_not_converged(ws_solver):
    D, y = _dictionary()
    lam = 1e-3 * float(lambda_max(D, y, loss="softmax"))
    with pytest.warns(ConvergenceWarning):
        sol = solve_readout(
            D, y, loss="softmax", penalty="l1", lam=lam, tol=1e-10, max_iter=1, solver="newton"
        )
    cert = sol.certificate
    assert cert.algorithm.startswith("newton+ws")
    assert not cert.converged and cert.status == "max_iter"
    assert cert.rel_gap > 1e-10


def test_auto_picks_newton_working_sets_above_newton_max_entries(ws_solver):
    # measured faster there (the 55k full-rec SG-CVX dictionary:
    # benchmarks/results/bench_softmax_55k_sgcvx_run1.json); the certificate still decides the stop
    D, y = _dictionary()
    C = int(y.max()) + 1
    lam = 1e-1 * float(lambda_max(D, y, loss="softmax"))
    sol = solve_readout(D, y, loss="softmax", penalty="l1", lam=lam, tol=1e-7, max_time=60.0)
    cert = sol.certificate
    assert cert.algorithm.startswith("newton+ws")
    assert cert.converged and cert.rel_gap <= 1e-7
    ours = _objective(D, y, sol.W.numpy().astype(np.float64), lam)
    ref = _clarabel(D, y, C, lam)
    assert abs(ours - ref) <= 1e-6 * abs(ref)
