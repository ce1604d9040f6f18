"""Softmax + l1 by the Hessian-free proximal Newton solver (:mod:`convexsnn.convex._softmax_cd`).

Reference: cvxpy + Clarabel on the same objective,
:math:`\\frac1n\\sum_i (\\log\\sum_c e^{z_{ic}} - z_{i y_i}) + \\lambda \\lVert W\\rVert_1`,
:math:`Z = DW`, on real spike dictionaries from ``tests/data`` (row / column subsets to keep the
conic solve small). ``solver="newton"`` with ``NEWTON_FULL_HESSIAN`` set to 0, so that every block
goes to the row-form solver (on these sizes the full Hessian would otherwise be formed).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import convexsnn.convex.solver as solver_mod
from conftest import load_packed_fixture
from convexsnn.convex import lambda_max, solve_readout
from convexsnn.convex._inner import Budget
from convexsnn.convex._softmax_cd import prox_newton_softmax_rows
from convexsnn.convex.datafits import make_datafit
from convexsnn.convex.linear_operator import DictionaryOperator
from convexsnn.convex.penalties import make_penalty

pytestmark = pytest.mark.usefixtures("one_thread")


def _objective(D, y, W, lam):
    Z = D @ W
    m = Z.max(axis=1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(Z - m).sum(axis=1))).mean()
    return float(lse - Z[np.arange(len(y)), y].mean() + lam * np.abs(W).sum())


def _clarabel(D, y, C, lam):
    cp = pytest.importorskip("cvxpy")
    n, P = D.shape
    W = cp.Variable((P, C))
    Z = D @ W
    E = np.eye(C)[y]
    obj = (cp.sum(cp.log_sum_exp(Z, axis=1)) - cp.sum(cp.multiply(E, Z))) / n
    prob = cp.Problem(cp.Minimize(obj + lam * cp.sum(cp.abs(W))))
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return float(prob.value)


def _tomita(n=400, P=60, three_classes=False):
    D, y, _ = load_packed_fixture("tomita3_T12_gaussian.npz")
    D, y = D[:n], y[:n].copy()
    keep = np.unique(D[:, :P], axis=1, return_index=True)[1]
    D = D[:, np.sort(keep)]
    if three_classes:
        # a third class from the spike pattern itself (accepted strings firing column 0)
        y[(y == 1) & (D[:, 0] == 1)] = 2
    return D, y


@pytest.fixture
def rows_solver(monkeypatch):
    monkeypatch.setattr(solver_mod, "NEWTON_FULL_HESSIAN", 0)


@pytest.mark.parametrize("rel", [1e-1, 1e-2, pytest.param(1e-3, marks=pytest.mark.slow)])
@pytest.mark.parametrize("three", [False, True])
def test_matches_clarabel(rows_solver, rel, three):
    D, y = _tomita(three_classes=three)
    C = int(y.max()) + 1
    lam = rel * float(lambda_max(D, y, loss="softmax"))
    tol = 1e-7
    sol = solve_readout(
        D, y, loss="softmax", penalty="l1", lam=lam, tol=tol, max_time=60.0, solver="newton"
    )
    cert = sol.certificate
    assert cert.algorithm.startswith("newton") and "fista" not in cert.algorithm
    assert cert.converged and cert.rel_gap <= tol
    ours = _objective(D, y, sol.W.numpy().astype(np.float64), lam)
    assert abs(ours - cert.primal) <= 1e-10 * abs(ours)
    ref = _clarabel(D, y, C, lam)
    assert abs(ours - ref) <= 1e-6 * abs(ref)


def test_duplicate_columns_same_optimum(rows_solver):
    # duplicated columns make D rank deficient; the l1 optimum value is unchanged
    D, y = _tomita(n=300, P=40)
    lam = 1e-2 * float(lambda_max(D, y, loss="softmax"))
    Dd = np.concatenate([D, D[:, :10]], axis=1)
    assert np.linalg.matrix_rank(Dd) < Dd.shape[1]
    a = solve_readout(
        D, y, loss="softmax", penalty="l1", lam=lam, tol=1e-8, max_time=60.0, solver="newton"
    )
    b = solve_readout(
        Dd, y, loss="softmax", penalty="l1", lam=lam, tol=1e-8, max_time=60.0, solver="newton"
    )
    assert a.certificate.converged and b.certificate.converged
    assert b.certificate.rel_gap <= 1e-8
    va = _objective(D, y, a.W.numpy().astype(np.float64), lam)
    vb = _objective(Dd, y, b.W.numpy().astype(np.float64), lam)
    assert abs(va - vb) <= 1e-7 * abs(va)


def test_inner_solver_reaches_its_tolerance_and_descends():
    # the kernel alone (no driver): its own gap falls below tol, and its primal is below W = 0
    D, y = _tomita(n=300, P=40, three_classes=True)
    n, P = D.shape
    C = int(y.max()) + 1
    lam = 1e-2 * float(lambda_max(D, y, loss="softmax"))
    df = make_datafit(
        "softmax", torch.from_numpy(y), torch.full((n,), 1.0 / n, dtype=torch.float64), C
    )
    pen = make_penalty("l1")
    res = prox_newton_softmax_rows(
        DictionaryOperator(D),
        df,
        pen,
        lam,
        torch.zeros(P, C, dtype=torch.float64),
        tol=1e-8,
        budget=Budget(1000, 60.0),
    )
    assert res.converged
    assert res.primal - res.dual <= 1e-8 * abs(res.primal)
    assert res.primal < np.log(C) - 1e-3
    assert abs(_objective(D, y, res.W.numpy(), lam) - res.primal) <= 1e-10
