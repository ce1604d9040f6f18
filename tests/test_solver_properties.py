"""Property tests of the readout solver on real spike dictionaries against cvxpy + Clarabel.

Dictionaries are built with the library (Gaussian witnesses on XOR / parity inputs, several leaks
and depths; duplicated columns appended on purpose) and every (datafit, penalty, lam) cell is
checked against an independent conic solve of the same objective: the relative objective
difference is at most 1e-6 and the reported gap at most the requested tolerance, or the solve
says it did not converge. The CI subset is small; ``benchmarks/bench_solvers.py --sweep`` runs the
full grid.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from convexsnn.convex import L1, ConvergenceWarning, Squared, lambda_max, solve_path, solve_readout
from convexsnn.convex.penalties import Penalty, soft_threshold

cp = pytest.importorskip("cvxpy")


pytestmark = pytest.mark.usefixtures("one_thread")


def spike_dictionary(
    task: str,
    *,
    T: int = 6,
    L: int = 3,
    leak: float = 0.9,
    seed: int = 0,
    n: int = 300,
    duplicate: int = 3,
    storage: str = "bool",
):
    """A real spike dictionary (plus ``duplicate`` repeated columns) and its labels."""
    from convexsnn.dictionary import build_dictionary
    from convexsnn.witnesses import gaussian_witnesses

    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, size=(n, T))
    if task == "xor":
        y = bits[:, 0] ^ bits[:, -1]
    elif task == "parity":
        y = bits[:, :3].sum(axis=1) % 2
    else:  # three classes: number of ones in the first three steps, capped at 2
        y = np.minimum(bits[:, :3].sum(axis=1), 2)
    X = np.stack([bits, 1 - bits], axis=2).astype(np.float64)
    w = gaussian_witnesses(
        2, n_branches=4, hidden_widths=[16] * (L - 1), scale=1.5, seed=seed, leak=leak
    )
    d = build_dictionary(w, X, storage=storage)
    D = d.matrix(torch.float64).numpy()
    if duplicate:
        D = np.concatenate([D, D[:, :duplicate]], axis=1)
    return d, D, y.astype(np.int64)


def objective(D, y, loss, penalty, lam, W) -> float:
    """Our objective (a_i = 1/n) at ``W``, in numpy (independent of the library)."""
    n = D.shape[0]
    Z = D @ W
    if loss == "softmax":
        m = Z.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(Z - m).sum(axis=1, keepdims=True)))[:, 0]
        fit = np.mean(lse - Z[np.arange(n), y])
    else:
        Y = _pm1(y, W.shape[1])
        fit = (
            0.5 * np.mean(np.sum((Z - Y) ** 2, axis=1))
            if loss == "squared"
            else np.mean(np.sum(np.maximum(0.0, 1.0 - Y * Z), axis=1))
        )
    reg = np.abs(W).sum() if penalty == "l1" else np.linalg.norm(W, axis=1).sum()
    return float(fit + lam * reg)


def _pm1(y, C):
    if C == 1:
        return np.where(y == 1, 1.0, -1.0)[:, None]
    Y = -np.ones((y.shape[0], C))
    Y[np.arange(y.shape[0]), y] = 1.0
    return Y


def clarabel_value(D, y, loss, penalty, lam, C) -> tuple[float, bool]:
    """Our objective at the cvxpy + Clarabel solution (an upper bound on the optimum) and
    whether Clarabel reported it optimal (not merely "optimal_inaccurate")."""
    n, P = D.shape
    if loss == "softmax":
        Wv = cp.Variable((P, C))
        Z = D @ Wv
        E = np.eye(C)[y]
        fit = cp.sum(cp.log_sum_exp(Z, axis=1) - cp.sum(cp.multiply(E, Z), axis=1)) / n
    else:
        Y = _pm1(y, 1 if C == 2 else C)
        Wv = cp.Variable((P, Y.shape[1]))
        Z = D @ Wv
        fit = (
            0.5 * cp.sum_squares(Z - Y) / n
            if loss == "squared"
            else cp.sum(cp.pos(1 - cp.multiply(Y, Z))) / n
        )
    reg = cp.sum(cp.abs(Wv)) if penalty == "l1" else cp.sum(cp.norm(Wv, 2, axis=1))
    prob = cp.Problem(cp.Minimize(fit + lam * reg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prob.solve(
            solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11, max_iter=500
        )
    return objective(D, y, loss, penalty, lam, np.asarray(Wv.value)), prob.status == "optimal"


#: (task, options, lam / lam_max): one lam per dictionary in the suite, kept moderate so the
#: suite stays fast (tiny lam: test_ci_subset_matches_clarabel; the full grid of
#: 5 lam values x 54 dictionaries is ``benchmarks/bench_solvers.py --sweep``)
CASES = [
    ("xor", dict(T=6, L=3, leak=0.9, seed=0), 1e-1),
    ("parity", dict(T=5, L=4, leak=0.5, seed=1), 1e-2),
    ("count", dict(T=6, L=3, leak=0.99, seed=2), 1e-2),
]
GRID = [
    (k % len(CASES), loss, pen)
    for k, (loss, pen) in enumerate(
        (loss, pen) for loss in ("squared", "hinge", "softmax") for pen in ("l1", "l21")
    )
]
_DICTS: dict = {}


def _case(k: int):
    if k not in _DICTS:
        task, kw, fac = CASES[k]
        _DICTS[k] = spike_dictionary(task, **kw)[1:] + (fac,)
    return _DICTS[k]


@pytest.mark.slow
@pytest.mark.parametrize("k,loss,penalty", GRID)
def test_matches_clarabel_on_spike_dictionaries(k, loss, penalty):
    """Every datafit x penalty, each on one of the dictionaries (round robin)."""
    D, y, fac = _case(k)
    C = int(y.max()) + 1
    lam = fac * lambda_max(D, y, loss=loss, penalty=penalty)
    tol = 1e-8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sol = solve_readout(D, y, loss=loss, penalty=penalty, lam=lam, tol=tol, max_time=60)
    cert = sol.certificate
    ref, exact = clarabel_value(D, y, loss, penalty, lam, C)
    # the certificate is honest: its dual bound is below a feasible point's objective
    assert cert.dual <= ref + 1e-12 * abs(ref)
    assert cert.primal == pytest.approx(
        objective(D, y, loss, penalty, lam, sol.W.numpy()), rel=1e-10
    )
    if cert.converged:
        assert cert.rel_gap <= tol
        assert cert.primal <= ref * (1 + 1e-6)
        if exact:
            assert abs(cert.primal - ref) <= 1e-6 * abs(ref)
    else:
        assert cert.status in ("max_iter", "max_time", "stalled")


def test_ci_subset_matches_clarabel():
    """A fast slice of the property grid (tiny lam, duplicated columns)."""
    d, D, y = spike_dictionary("xor", T=6, L=3, leak=0.9, seed=0, duplicate=5)
    for loss, penalty, fac in [
        ("squared", "l1", 1e-4),
        ("squared", "l21", 1e-2),
        ("hinge", "l1", 1e-2),
        ("softmax", "l1", 1e-2),
    ]:
        lam = fac * lambda_max(D, y, loss=loss, penalty=penalty)
        sol = solve_readout(D, y, loss=loss, penalty=penalty, lam=lam, tol=1e-8, max_time=30)
        ref, _ = clarabel_value(D, y, loss, penalty, lam, 2)
        assert sol.certificate.converged, (loss, penalty, sol.certificate)
        assert abs(sol.certificate.primal - ref) <= 1e-6 * abs(ref), (loss, penalty)


def test_spike_dictionary_is_accepted_as_it_is():
    """solve_readout / solve_path take a SpikeDictionary (bool or packed) directly."""
    d, D, y = spike_dictionary("xor", duplicate=0, storage="packed")
    lam = 1e-2 * lambda_max(D, y)
    a = solve_readout(d, y, lam=lam, tol=1e-9)
    b = solve_readout(D, y, lam=lam, tol=1e-9)
    assert a.certificate.converged and b.certificate.converged
    assert a.certificate.primal == pytest.approx(b.certificate.primal, rel=1e-8)
    path = solve_path(d, y, lams=[lam, 2 * lam], tol=1e-8)
    assert all(p.certificate.converged for p in path)
    assert torch.allclose(a.scores(d), a.scores(D))


def test_budget_exhausted_reports_not_converged():
    d, D, y = spike_dictionary("xor", duplicate=0)
    lam = 1e-3 * lambda_max(D, y, loss="softmax")
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        sol = solve_readout(D, y, loss="softmax", lam=lam, tol=1e-12, max_iter=5)
    cert = sol.certificate
    assert not cert.converged and cert.status == "max_iter" and cert.rel_gap > 1e-12
    assert cert.to_dict()["status"] == "max_iter"
    assert "NOT converged (max_iter)" in str(cert)


def test_working_set_grows_until_kkt_holds_everywhere():
    """A forced working set on a dictionary of many columns ends with every dual constraint
    satisfied over the whole dictionary (not only inside the last working set)."""
    rng = np.random.default_rng(3)
    n, P = 400, 1500
    D = (rng.random((n, P)) < 0.2).astype(np.float64)
    Y = D[:, :40] @ rng.standard_normal((40, 3)) + 0.1 * rng.standard_normal((n, 3))
    for loss, y in (("squared", Y), ("softmax", np.argmax(Y, axis=1))):
        lam = 1e-2 * lambda_max(D, y, loss=loss)
        sol = solve_readout(D, y, loss=loss, lam=lam, tol=1e-8, working_set=True)
        cert = sol.certificate
        assert cert.converged and "+ws" in cert.algorithm
        Dt = torch.from_numpy(D)
        G = Dt.T @ sol.dual
        assert float(G.abs().max()) <= lam * (1 + 1e-9)  # dual feasible on all P columns


class ScaledL1(Penalty):
    """A user-defined penalty: 2 x l1 (elementwise, row separable)."""

    name = "scaled_l1"
    elementwise = True
    row_separable = True

    def value(self, W):
        return 2.0 * W.abs().sum(dtype=torch.float64)

    def value_columns(self, W):
        return 2.0 * W.abs().sum(dim=0, dtype=torch.float64)

    def prox(self, V, thresh):
        return soft_threshold(V, 2.0 * thresh)

    def row_scores(self, G):
        return G.abs().amax(dim=1) / 2.0


class MySquared(Squared):
    """A user-defined datafit class (here the squared loss under another name)."""

    name = "my_squared"


def test_user_defined_penalty_and_datafit():
    d, D, y = spike_dictionary("xor", duplicate=0)
    lam = 1e-2 * lambda_max(D, y)
    ref = solve_readout(D, y, lam=2 * lam, tol=1e-10)
    mine = solve_readout(D, y, lam=lam, penalty=ScaledL1(), tol=1e-10)
    assert mine.certificate.converged and mine.penalty == "scaled_l1"
    assert mine.certificate.primal == pytest.approx(ref.certificate.primal, rel=1e-8)
    fit = solve_readout(D, y, lam=lam, loss=MySquared, tol=1e-10)
    base = solve_readout(D, y, lam=lam, tol=1e-10)
    assert fit.loss == "my_squared" and fit.certificate.converged
    assert fit.certificate.primal == pytest.approx(base.certificate.primal, rel=1e-8)
    with pytest.raises(ValueError, match="penalty must be"):
        solve_readout(D, y, lam=lam, penalty=object())


def test_cd_needs_row_separable_penalty_clear_error():
    class Dense(ScaledL1):
        row_separable = False

    d, D, y = spike_dictionary("xor", duplicate=0)
    with pytest.raises(ValueError, match="row-separable"):
        solve_readout(D, y, lam=1e-3, penalty=Dense(), solver="cd")


def test_l1_is_exported():
    assert isinstance(L1(), Penalty) and math.isfinite(float(L1().value(torch.ones(2, 2))))


def test_dictionary_that_cannot_fit_is_refused_up_front():
    """A dense float copy larger than the available memory is refused before any work, with the
    size in the message (a stride-0 view: nothing is allocated)."""
    from convexsnn.convex.linear_operator import available_memory

    if available_memory() is None:
        pytest.skip("no /proc/meminfo")
    huge = torch.zeros(1, 1, dtype=torch.bool).expand(400_000, 400_000)
    with pytest.raises(MemoryError, match=r"400000 x 400000 float64 .* GiB"):
        solve_readout(huge, np.zeros(400_000), lam=1.0)
