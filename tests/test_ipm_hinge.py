"""Tests of the hinge + l1 interior-point method (``convexsnn.convex._ipm``), from its equations:
the normal-equation matrices, the step to the boundary, the Newton direction (the linearised
KKT system), and convergence on a real spike dictionary where it used to stall."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from conftest import load_packed_fixture
from convexsnn.convex import ConvergenceWarning, _ipm, labels_to_targets, solve_readout

pytestmark = pytest.mark.usefixtures("one_thread")


def _hinge_l1(D, y, lam, W):
    """Primal objective (1/n) sum_i sum_c max(0, 1 - Y_ic (D W)_ic) + lam |W|_1."""
    Y = labels_to_targets(torch.as_tensor(y)).numpy()
    Z = D @ W
    return float(np.mean(np.sum(np.maximum(0.0, 1.0 - Y * Z), axis=1)) + lam * np.abs(W).sum())


def test_gram_is_the_weighted_normal_matrix():
    # X^T diag(r^2) X, symmetric, on both orientations used by the two normal-equation forms
    rng = np.random.default_rng(0)
    X = torch.from_numpy((rng.random((70, 40)) < 0.4).astype(np.float64))
    r = torch.from_numpy(rng.random(70) + 0.1)
    K = _ipm._gram(X, r)
    ref = X.T @ torch.diag(r * r) @ X
    assert K.shape == (40, 40)
    assert torch.allclose(K, ref, rtol=1e-13, atol=1e-12)
    assert torch.equal(K, K.T)
    r2 = torch.from_numpy(rng.random(40) + 0.1)
    M = _ipm._gram(X.T, r2)
    assert torch.allclose(M, X @ torch.diag(r2 * r2) @ X.T, rtol=1e-13, atol=1e-12)


def test_max_step_is_the_distance_to_the_boundary():
    x = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    dx = torch.tensor([-4.0, 1.0, -0.25, 0.0], dtype=torch.float64)
    # x + t dx >= 0: t <= 1/4 (first entry), t <= 2 (third); capped at 1
    assert _ipm._max_step(x, dx) == pytest.approx(0.25, rel=1e-15)
    assert _ipm._max_step(x, torch.abs(dx)) == 1.0
    assert _ipm._max_step(x[:0], dx[:0]) == 1.0


@pytest.mark.parametrize("shape", [(60, 25), (25, 60)])  # primal (s <= n) and dual (n < s) forms
def test_newton_direction_solves_the_linearised_kkt_system(shape):
    # A dx = rp, A^T dal + ds = rd, s_k dx_k + x_k ds_k = rc_k for the LP of the module docstring
    # (A = [I, B, -B, -I], B = diag(y) X), with the weights theta = x / s of a random interior
    # point spread over 1e-4 .. 1e4 (late iterations, where the rows and columns separate);
    # residuals relative to the size of the direction (the system's conditioning grows with it)
    rng = np.random.default_rng(1)
    n, s = shape
    X = torch.from_numpy((rng.random((n, s)) < 0.4).astype(np.float64))
    y = torch.from_numpy(np.where(rng.random(n) < 0.5, -1.0, 1.0))

    def pos(k):
        return torch.from_numpy(10.0 ** rng.uniform(-2, 2, k))

    x_l = [pos(n), pos(s), pos(s), pos(n)]
    s_l = [pos(n), pos(s), pos(s), pos(n)]
    th = [p / q for p, q in zip(x_l, s_l)]
    nw = _ipm._Newton(X, y, th)
    rp = torch.from_numpy(rng.normal(size=n))
    rd = [torch.from_numpy(rng.normal(size=k)) for k in (n, s, s, n)]
    rc = [torch.from_numpy(rng.normal(size=k)) for k in (n, s, s, n)]
    dx, dal, ds = nw.direction(rp, rd, rc, x_l)
    B = y[:, None] * X
    scale = 1.0 + max(float(t.abs().max()) for t in [rp, *rd, *rc, *dx, *ds])
    r1 = dx[0] + B @ dx[1] - B @ dx[2] - dx[3] - rp
    r2 = [dal + ds[0] - rd[0], B.T @ dal + ds[1] - rd[1], -B.T @ dal + ds[2] - rd[2]]
    r2.append(-dal + ds[3] - rd[3])
    r3 = [q * d + p * e - c for p, q, d, e, c in zip(x_l, s_l, dx, ds, rc)]
    worst = max(float(t.abs().max()) for t in [r1, *r2, *r3])
    assert worst <= 1e-8 * scale


def test_xor_t14_hinge_converges_and_matches_clarabel():
    # the --quick size of benchmark case a14 (500 x 300 real spike dictionary, lam = 0.05 lam_max):
    # the interior point's primal iterates stalled 7.7e-7 above the optimum (residual blow-up in
    # the last Newton steps) and the solve ended "stalled"; the dual-side crossover certifies it
    D, y, meta = load_packed_fixture("xor_T14_hinge_500x300.npz")
    lam = float(meta["lam"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        sol = solve_readout(D, y, loss="hinge", penalty="l1", lam=lam, tol=1e-8)
    c = sol.certificate
    assert c.converged and c.rel_gap <= 1e-8
    ref = float(meta["clarabel_objective"])
    ours = _hinge_l1(D, y, lam, sol.W.numpy())
    assert abs(ours - c.primal) <= 1e-12 * abs(ours)
    assert abs(ours - ref) <= 1e-6 * abs(ref)
    assert c.dual <= ref + 1e-9 * abs(ref)  # a dual value above the optimum would be a false bound


def test_dual_crossover_recovers_the_basis_from_a_near_optimal_dual():
    # from the optimal dual alone (rounded to 1e-9 and a zero primal point) the face read from
    # the dual gives the exact primal solution
    D, y, meta = load_packed_fixture("xor_T14_hinge_500x300.npz")
    lam = float(meta["lam"])
    X = torch.from_numpy(D)
    yc = labels_to_targets(torch.as_tensor(y))[:, 0].to(torch.float64)
    a = torch.full((X.shape[0],), 1.0 / X.shape[0], dtype=torch.float64)
    w, al, it, ok, _ = _ipm.ipm_hinge_l1(X, yc, a, lam, tol=1e-10, max_iter=100)
    p_opt, d_opt = _ipm._certificate(X, yc, a, lam, w, al)
    assert ok and p_opt - d_opt <= 1e-10 * abs(p_opt)
    al_r = torch.round(al * 1e9) / 1e9
    p0, d0 = _ipm._certificate(X, yc, a, lam, torch.zeros_like(w), al_r)
    bp, bw, bd, ba = _ipm._dual_crossover(X, yc, a, lam, p0, torch.zeros_like(w), d0, al_r, 1e-9)
    assert bp - bd <= 1e-9 * abs(bp)
    assert abs(bp - p_opt) <= 1e-9 * abs(p_opt)
