"""Softmax + l1: the face phase (Newton-CG on the support, :mod:`convexsnn.convex._softmax_face`)
of the row-form proximal Newton solver.

Reference: cvxpy + Clarabel on :math:`\\frac1n\\sum_i (\\log\\sum_c e^{z_{ic}} - z_{i y_i}) +
\\lambda \\lVert W\\rVert_1`, :math:`Z = DW`, on the real Tomita-3 spike dictionary of
``tests/data`` (rows / columns subsets). ``NEWTON_FULL_HESSIAN`` is set to 0 so that every block
goes to the row-form solver.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import convexsnn.convex._softmax_cd as cd_mod
import convexsnn.convex._softmax_face as face_mod
import convexsnn.convex.solver as solver_mod
from convexsnn.convex import ConvergenceWarning, lambda_max, solve_readout
from convexsnn.convex._softmax_face import face_newton_cg
from test_solver_softmax import _clarabel, _objective, _tomita

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def rows_solver(monkeypatch):
    monkeypatch.setattr(solver_mod, "NEWTON_FULL_HESSIAN", 0)


def _solve(D, y, lam, tol, face, monkeypatch, **kw):
    monkeypatch.setattr(cd_mod, "FACE_PHASE", face)
    return solve_readout(
        D, y, loss="softmax", penalty="l1", lam=lam, tol=tol, solver="newton", **kw
    )


@pytest.mark.parametrize("rel", [1e-1, 1e-2, 1e-3])
def test_face_phase_matches_clarabel(rows_solver, monkeypatch, rel):
    D, y = _tomita(n=400, P=60, three_classes=True)
    C = int(y.max()) + 1
    lam = rel * float(lambda_max(D, y, loss="softmax"))
    tol = 1e-7
    sol = _solve(D, y, lam, tol, True, monkeypatch, max_time=60.0)
    cert = sol.certificate
    assert cert.status == "converged" and cert.converged and cert.rel_gap <= tol
    ours = _objective(D, y, sol.W.numpy().astype(np.float64), lam)
    # the certificate's primal is the objective of the returned W
    assert abs(ours - cert.primal) <= 1e-10 * abs(ours)
    ref = _clarabel(D, y, C, lam)
    assert abs(ours - ref) <= 1e-6 * abs(ref)


def test_face_phase_same_optimum_as_plain_newton(rows_solver, monkeypatch):
    D, y = _tomita(n=400, P=60)
    lam = 1e-2 * float(lambda_max(D, y, loss="softmax"))
    on = _solve(D, y, lam, 1e-8, True, monkeypatch, max_time=60.0)
    off = _solve(D, y, lam, 1e-8, False, monkeypatch, max_time=60.0)
    assert on.certificate.converged and off.certificate.converged
    a = _objective(D, y, on.W.numpy(), lam)
    b = _objective(D, y, off.W.numpy(), lam)
    assert abs(a - b) <= 2e-8 * abs(b)


def test_capped_solve_reports_not_converged(rows_solver, monkeypatch):
    D, y = _tomita(n=400, P=60)
    lam = 1e-3 * float(lambda_max(D, y, loss="softmax"))
    with pytest.warns(ConvergenceWarning):
        sol = _solve(D, y, lam, 1e-10, True, monkeypatch, max_iter=1)
    cert = sol.certificate
    assert not cert.converged and cert.status == "max_iter"
    assert cert.rel_gap > 1e-10


def _face_problem(three: bool):
    D, y = _tomita(n=300, P=50, three_classes=three)
    n, P = D.shape
    C = int(y.max()) + 1
    a = np.full(n, 1.0 / n)
    E = np.eye(C)[y]
    lam = 1e-2 * float(lambda_max(D, y, loss="softmax"))

    def product(W):
        return np.ascontiguousarray((D @ W).T)

    def gradient(Zt):
        Z = Zt.T
        Pm = np.exp(Z - Z.max(axis=1, keepdims=True))
        Pm /= Pm.sum(axis=1, keepdims=True)
        return Pm, D.T @ (a[:, None] * (Pm - E)), None

    def objective(W, Zt):
        return _objective(D, y, W, lam)

    return D, y, a, lam, product, gradient, objective


@pytest.mark.parametrize("explicit", [False, True])
@pytest.mark.parametrize("three", [False, True])
def test_face_newton_cg_descends_keeps_signs_and_solves_the_face(
    rows_solver, monkeypatch, three, explicit
):
    # from a perturbed optimum (same signs) the face phase never raises F, never flips a sign
    # and ends at a stationary point of the face it ends on: the optimum's value when no
    # coordinate left the face (the optimum lies on it); a coordinate can leave it, as the l1
    # term is linear along the directions the loss does not see (a constant added to every
    # class of one neuron). The early stop for violations off the face is switched off: this
    # tests the face solve itself.
    monkeypatch.setattr(face_mod, "FACE_BALANCE", 0.0)
    monkeypatch.setattr(face_mod, "EXPLICIT", explicit)
    D, y, a, lam, product, gradient, objective = _face_problem(three)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        sol = solve_readout(D, y, loss="softmax", penalty="l1", lam=lam, tol=1e-10, solver="newton")
    Wstar = sol.W.numpy().astype(np.float64)
    Fstar = objective(Wstar, None)
    rng = np.random.default_rng(0)
    W0 = Wstar * (1.0 + 0.3 * rng.uniform(-1, 1, Wstar.shape))
    F0 = objective(W0, None)
    assert F0 > Fstar + 1e-6

    def face_grad_norm(W):
        _, G, _ = gradient(product(W))
        return float(np.linalg.norm(np.where(W != 0, G + lam * np.sign(W), 0.0)))

    seen = [F0]
    res = face_newton_cg(
        D.astype(np.float32),
        product,
        gradient,
        objective,
        W0,
        product(W0),
        F0,
        lam,
        a,
        max_steps=60,
        binary=True,
        on_point=lambda W, Zt: seen.append(objective(W, None)),
    )
    assert all(b <= f + 1e-15 for f, b in zip(seen, seen[1:], strict=False))
    assert res.steps > 0 and res.F < F0 - 1e-6
    assert np.all((res.W == 0) | (np.sign(res.W) == np.sign(W0)))
    assert abs(res.F - objective(res.W, None)) <= 1e-14
    assert face_grad_norm(res.W) <= 1e-5 * face_grad_norm(W0)
    if not res.left_face:
        assert res.F - Fstar <= 1e-9 * abs(Fstar)
    # the explicit Hessian was used (or not)
    assert (res.explicit > 0) == explicit


@pytest.mark.slow
def test_tomita_2000_small_lam_matches_clarabel(rows_solver, monkeypatch):
    # the case: 2000 x 127 Tomita-3 dictionary, softmax + l1 at 1e-3 lam_max
    D, y = _tomita(n=2000, P=127)
    lam = 1e-3 * float(lambda_max(D, y, loss="softmax"))
    sol = _solve(D, y, lam, 1e-7, True, monkeypatch, max_time=120.0)
    assert sol.certificate.converged and sol.certificate.rel_gap <= 1e-7
    ours = _objective(D, y, sol.W.numpy().astype(np.float64), lam)
    ref = _clarabel(D, y, 2, lam)
    assert abs(ours - ref) <= 1e-6 * abs(ref)


def test_class_blocks_are_the_hessian_diagonal_blocks():
    # B_j = sum_i a_i d_ij^2 (diag p_i - p_i p_i^T), from the equation, against _class_blocks
    # (assembled as a Laplacian: positive semidefinite, B_j 1 = 0) on a real spike block
    D, y = _tomita(n=300, P=30, three_classes=True)
    n, C = D.shape[0], int(y.max()) + 1
    rng = np.random.default_rng(1)
    Z = D @ rng.normal(size=(D.shape[1], C))
    Pm = np.exp(Z - Z.max(axis=1, keepdims=True))
    Pm /= Pm.sum(axis=1, keepdims=True)
    a = np.full(n, 1.0 / n)
    B = face_mod._class_blocks(
        D.astype(np.float32), (a[:, None] * Pm).astype(np.float32), Pm.astype(np.float32)
    )
    for j in range(D.shape[1]):
        ref = sum(a[i] * D[i, j] ** 2 * (np.diag(Pm[i]) - np.outer(Pm[i], Pm[i])) for i in range(n))
        assert np.abs(B[j] - ref).max() <= 1e-6 * max(np.abs(ref).max(), 1e-12)
        assert np.abs(B[j].sum(axis=1)).max() <= 1e-12 * max(np.abs(B[j]).max(), 1e-300)
        assert np.linalg.eigvalsh(B[j]).min() >= -1e-12 * max(np.abs(B[j]).max(), 1e-300)
    # the preconditioner restricted to the free classes, and its inverse
    fr = rng.random((D.shape[1], C)) < 0.7
    fr[0] = True
    Binv, Mb = face_mod._block_inverse(B, fr, 1e-8)
    for j in range(D.shape[1]):
        f = np.flatnonzero(fr[j])
        if f.size:
            assert np.allclose(
                Binv[j][np.ix_(f, f)] @ Mb[j][np.ix_(f, f)], np.eye(f.size), atol=1e-6
            )
        off = np.flatnonzero(~fr[j])
        assert not Binv[j][off].any() and not Binv[j][:, off].any()


@pytest.mark.parametrize("three", [False, True])
def test_face_hessian_matches_gradient_differences(three):
    # H on the free coordinates against central differences of the gradient
    # G(W) = D^T A (P(DW) - E) (an independent route: no Hessian formula), on a real spike block,
    # with probabilities near 0 / 1 on some rows (where p - p^2 would cancel)
    D, y = _tomita(n=300, P=30, three_classes=three)
    n, P = D.shape
    C = int(y.max()) + 1
    a = np.random.default_rng(2).uniform(0.5, 1.5, n) / n
    E = np.eye(C)[y]
    rng = np.random.default_rng(3)
    W = rng.normal(scale=2.0, size=(P, C))

    def probs(Wx):
        Z = D @ Wx
        Pm = np.exp(Z - Z.max(axis=1, keepdims=True))
        return Pm / Pm.sum(axis=1, keepdims=True)

    def grad(Wx):
        return D.T @ (a[:, None] * (probs(Wx) - E))

    fr = rng.random((P, C)) < 0.5
    fr[0] = True  # a column with every class free (H is singular along 1 there)
    H = face_mod.face_hessian(D.astype(np.float32), a, probs(W), fr, chunk=64)
    F = int(fr.sum())
    assert H.shape == (F, F) and np.allclose(H, H.T, rtol=0, atol=1e-15)
    flat = np.flatnonzero(fr.reshape(-1))
    eps = 1e-5
    for f in rng.choice(F, size=8, replace=False):
        V = np.zeros(P * C)
        V[flat[f]] = 1.0
        V = V.reshape(P, C)
        col = ((grad(W + eps * V) - grad(W - eps * V)) / (2 * eps)).reshape(-1)[flat]
        assert np.abs(H[:, f] - col).max() <= 1e-6 * max(np.abs(col).max(), 1e-12)
    assert np.linalg.eigvalsh(H).min() >= -1e-12 * np.abs(H).max()


def test_block_csc_matches_the_dense_block():
    # the compressed columns (compiled count / fill kernels), read from the operator or from
    # the float32 copy, hold exactly the nonzeros of each column, in row order
    import torch

    from convexsnn.convex.linear_operator import as_operator

    D, _ = _tomita(n=700, P=45)
    D = D * np.random.default_rng(4).choice([1.0, 0.5], size=D.shape)  # non-binary values too
    op = as_operator(torch.from_numpy(D), check_binary=False)
    cd_mod._compile()
    Db = cd_mod._block_dense32(op, chunk=16)
    assert Db.dtype == np.float32 and np.array_equal(Db, D.astype(np.float32))
    for dense in (None, Db):
        ptr, idx, val = cd_mod._block_csc(op, chunk=16, dense=dense)
        assert ptr[0] == 0 and ptr[-1] == np.count_nonzero(D)
        for j in range(D.shape[1]):
            rows = np.flatnonzero(D[:, j])
            assert np.array_equal(idx[ptr[j] : ptr[j + 1]], rows)
            assert np.array_equal(val[ptr[j] : ptr[j + 1]], D[rows, j].astype(np.float32))
