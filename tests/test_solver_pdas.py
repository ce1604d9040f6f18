"""Primal-dual active-set steps with one shared inverse, and popcount Gram blocks, on real spike
dictionaries (squared + l1, Gram form).

Fixtures (``tests/data``): ``xor_T11_wide_sub.npz``, the ``CVX-wide`` Gaussian-witness dictionary
of the XOR T=11, L=5 cell subsampled to 1000 x 393 (rank 389), and ``tomita3_T12_gaussian.npz``,
Tomita-3 at T=12 (2000 x 127, rank 126): rank-deficient, near-interpolating at small
:math:`\\lambda`. The reference optima come from many coordinate-descent sweeps (independent of
the active-set step) or from cvxpy + Clarabel.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import gram_fixture, load_packed_fixture
from convexsnn.convex import lambda_max, solve_readout
from convexsnn.convex._cd_numba import cd_gram_sweeps, gram_gap, popcount_gram
from convexsnn.convex._inner import _packed_words, gram_matrices
from convexsnn.convex._polish import (
    _grown_inverse,
    active_face_solves,
    newton_support_l1,
    pdas_l1,
)
from convexsnn.dictionary.operator import SpikeOperator

pytestmark = pytest.mark.usefixtures("one_thread")


def _F(H, B, W, lam):
    return float((0.5 * (W * (H @ W)).sum(0) - (W * B).sum(0) + lam * np.abs(W).sum(0)).sum())


@pytest.mark.parametrize("name", ["xor_T11_wide_sub.npz", "tomita3_T12_gaussian.npz"])
def test_popcount_gram_is_the_exact_gram_matrix(name):
    D, _, _ = load_packed_fixture(name)
    n = D.shape[0]
    op = SpikeOperator(packed=torch.from_numpy(np.packbits(D.astype(np.uint8), axis=0)), n_rows=n)
    words = _packed_words(op)
    counts = popcount_gram(words, words[[0, 5, D.shape[1] - 1]])
    if counts is None:
        pytest.skip("compiled kernels unavailable")
    ref = D.T @ D[:, [0, 5, D.shape[1] - 1]]
    np.testing.assert_array_equal(counts.astype(np.float64), ref)
    # the symmetric kernel (each pair counted once, mirrored), on a column count that is not a
    # multiple of its 16-column blocks
    for k in (D.shape[1], 37, 1):
        sym = popcount_gram(words[:k])
        np.testing.assert_array_equal(sym.astype(np.float64), D[:, :k].T @ D[:, :k])
    # and through gram_matrices (uniform weights 1/n: popcounts scaled by 1/n)
    H, _ = gram_matrices(op, torch.full((n,), 1.0 / n, dtype=torch.float64), torch.ones(n, 1))
    np.testing.assert_allclose(H.numpy(), D.T @ D / n, rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", ["xor_T11_wide_sub.npz", "tomita3_T12_gaussian.npz"])
@pytest.mark.parametrize("shared", [True, False])
def test_pdas_step_decreases_the_objective_by_what_it_reports(name, shared):
    D, y, H, B, _ = gram_fixture(name)
    lam = 1e-4 * float(np.abs(B).max())
    rng = np.random.default_rng(0)
    for _ in range(5):
        W = rng.standard_normal(B.shape) * (rng.random(B.shape) < 0.8) * 0.1
        HW = H @ W
        before = _F(H, B, W, lam)
        dec, work, _ = pdas_l1(H, B, W, HW, lam, state={} if shared else None)
        assert dec >= 0.0 and work >= 0.0
        assert _F(H, B, W, lam) == pytest.approx(before - dec, rel=1e-9, abs=1e-12)
        assert _F(H, B, W, lam) <= before + 1e-12
        np.testing.assert_allclose(HW, H @ W, atol=1e-9)


def test_shared_inverse_solves_the_active_faces_exactly():
    # the Schur-complement solve through the shared inverse (H + rho I)^-1 of the whole block
    # equals a dense solve of (H_AA + rho I) x = r on each active face (strict subsets, real
    # dictionary, several faces at once)
    D, y, H, B, _ = gram_fixture("tomita3_T12_gaussian.npz")
    s = H.shape[0]
    rng = np.random.default_rng(3)
    acts, rhs = {}, {}
    for c, k in enumerate((s - 3, s - 20, s - 40)):
        act = np.zeros(s, dtype=bool)
        act[rng.choice(s, k, replace=False)] = True
        acts[c], rhs[c] = act, rng.standard_normal(k) * 1e-2
    state: dict = {}
    X, work = active_face_solves(H, acts, rhs, state)
    assert state.get("inverse") is not None and work > 0  # the shared path ran
    rho = state["ridge"]
    for c, act in acts.items():
        Ha = H[np.ix_(act, act)] + rho * np.eye(int(act.sum()))
        ref = np.linalg.solve(Ha, rhs[c])
        # the residual of the face equations, relative to the size of their terms
        res = np.abs(Ha @ X[c] - rhs[c]).max() / (np.abs(Ha).max() * np.abs(X[c]).max())
        assert res <= 1e-12
        # forward error: bounded by the condition number times the backward error of both
        # solves (the faces are rank-deficient up to the ridge, kappa ~ 1e10, so two correct
        # solves can differ by ~1e-6 relative in the null-space components; BLAS-dependent)
        kappa = np.linalg.cond(Ha)
        err = np.abs(X[c] - ref).max() / np.abs(ref).max()
        assert err <= max(1e-9, 10 * kappa * np.finfo(float).eps), (err, kappa)


def test_pdas_with_sweeps_reaches_the_optimum_of_a_rank_deficient_real_gram():
    # Tomita-3 (rank 126 of 127) at lam = 1e-4 lam_max: 4 sweeps + one active-set step per
    # round certify the Gram-form gap to 1e-10 within 30 rounds, where the sweeps alone stay
    # above a relative gap of 0.9 (the near-interpolating regime)
    D, y, H, B, Y = gram_fixture("tomita3_T12_gaussian.npz")
    lam = 1e-4 * float(np.abs(B).max())
    y2 = (Y * Y).sum(0) / Y.shape[0]
    rows = np.arange(H.shape[0])

    def run(active_set: bool) -> float:
        W = np.zeros_like(B)
        HW = H @ W
        state: dict = {}
        gap = 1.0
        for _ in range(30):
            cd_gram_sweeps(
                H,
                B,
                W,
                HW,
                y2,
                lam,
                group=False,
                per_col=True,
                rows=rows,
                gram_tol=-1.0,
                max_sweeps=4,
            )
            if active_set:
                _, _, stuck = pdas_l1(H, B, W, HW, lam, state=state)
                if stuck:  # singular faces: the support Newton's homotopy steps, as the solver
                    newton_support_l1(H, B, W, HW, lam, outputs=stuck)
            p, d = gram_gap(H, B, W, HW, y2, lam, False, True)
            gap = (p - d) / p
            if gap <= 1e-10:
                break
        np.testing.assert_allclose(HW, H @ W, atol=1e-9)
        return gap

    assert run(True) <= 1e-10
    assert run(False) > 0.9


@pytest.mark.slow
@pytest.mark.parametrize("ratio", [1e-4, 1e-5])
def test_packed_near_interpolating_solve_certifies_the_clarabel_optimum(ratio):
    cp = pytest.importorskip("cvxpy")
    D, y, _ = load_packed_fixture("tomita3_T12_gaussian.npz")
    n = D.shape[0]
    op = SpikeOperator(packed=torch.from_numpy(np.packbits(D.astype(np.uint8), axis=0)), n_rows=n)
    lam = ratio * float(lambda_max(D, y))
    sol = solve_readout(op, y, loss="squared", penalty="l1", lam=lam, tol=1e-8, max_time=60.0)
    cert = sol.certificate
    assert cert.converged and cert.rel_gap <= 1e-8
    Y = np.where(y == 1, 1.0, -1.0)
    w = cp.Variable(D.shape[1])
    prob = cp.Problem(cp.Minimize(0.5 / n * cp.sum_squares(D @ w - Y) + lam * cp.norm1(w)))
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    Wn = sol.W.numpy()[:, 0]
    ours = 0.5 / n * float(((D @ Wn - Y) ** 2).sum()) + lam * float(np.abs(Wn).sum())
    assert abs(ours - cert.primal) <= 1e-12 * abs(ours)
    assert prob.value * (1 - 1e-8) <= ours <= prob.value * (1 + 1e-6)


def test_grown_inverse_equals_the_inverse_of_the_grown_block():
    # the block-inverse update used when a working set grows, on a real (rank-deficient) Gram
    # matrix with the ridge: the same matrix as inverting the grown block directly
    D, y, H, B, _ = gram_fixture("xor_T11_wide_sub.npz")
    s = H.shape[0]
    rho = 1e-4 * float(np.diag(H).max())  # condition number 1.4e6
    pos = np.sort(np.random.default_rng(4).choice(s, 250, replace=False))
    inv_old = np.linalg.inv(H[np.ix_(pos, pos)] + rho * np.eye(pos.size))
    grown = _grown_inverse(H, inv_old, rho, pos)
    M = H + rho * np.eye(s)
    assert grown is not None
    # (H + rho I) grown = I, to the accuracy the conditioning allows (measured 2e-8; a fresh
    # inverse reaches 1e-11: the block update loses accuracy like cond^1.5 eps)
    assert np.abs(M @ grown - np.eye(s)).max() <= 1e-7
    np.testing.assert_allclose(grown, np.linalg.inv(M), rtol=0, atol=1e-7 * np.abs(grown).max())


def test_grown_inverse_compiled_fill_equals_the_indexed_writes(monkeypatch):
    # the compiled pass that writes the blocks of the grown inverse gives the same matrix as
    # numpy's indexed assignments (the path taken without numba)
    from convexsnn.convex import _polish

    D, y, H, B, _ = gram_fixture("xor_T11_wide_sub.npz")
    s = H.shape[0]
    rho = 1e-4 * float(np.diag(H).max())
    pos = np.sort(np.random.default_rng(5).choice(s, 180, replace=False))
    inv_old = np.linalg.inv(H[np.ix_(pos, pos)] + rho * np.eye(pos.size))
    fast = _grown_inverse(H, inv_old.copy(), rho, pos)
    monkeypatch.setattr(_polish, "fill_grown_inverse", lambda *a: False)
    slow = _grown_inverse(H, inv_old.copy(), rho, pos)
    assert fast is not None and slow is not None
    np.testing.assert_array_equal(fast, slow)


def test_shared_inverse_is_not_started_when_it_would_overrun_max_time():
    from convexsnn.convex._inner import Budget, _flop_rate, _inverse_fits_budget, _inverse_flops

    s = 30000  # 2.7e13 flops: minutes on one core
    assert s**3 / _flop_rate() > 5.0
    assert not _inverse_fits_budget({}, s, Budget(10, 5.0))
    assert _inverse_fits_budget({}, s, Budget(10, None))  # no deadline: always
    assert _inverse_fits_budget({"inverse": np.eye(2)}, s, Budget(10, 5.0))  # formed already
    assert _inverse_fits_budget({"inverse": None}, s, Budget(10, 5.0))  # refused: not formed
    assert _inverse_fits_budget({}, 50, Budget(10, 5.0))  # small blocks: microseconds
    # growing by a few columns costs far less than a fresh inverse: 2 m^2 k + 2 m k^2 + k^3
    grown = {"previous": (None, 0.0, np.arange(s - 10))}
    assert _inverse_flops(grown, s) == 2 * (s - 10) ** 2 * 10 + 2 * (s - 10) * 100 + 1000
    assert _inverse_flops(grown, s) < 1e-3 * _inverse_flops({}, s)
