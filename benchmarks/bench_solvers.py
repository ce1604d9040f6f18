r"""Benchmark of the convex readout solvers against cvxpy + Clarabel (and scikit-learn's Lasso).

Every case builds one spike dictionary (Gaussian witnesses simulated on the task's training
inputs, :mod:`convexsnn.dictionary`), then solves the *same* problem with

* ``convexsnn.convex.solve_readout`` (``tol`` relative duality gap, default 1e-8),
* cvxpy + Clarabel (default Clarabel tolerances), in a subprocess killed after
  ``--cvxpy-timeout`` seconds,
* peers on the same objective (same :math:`1/n` scaling, no intercept, ``--peer-tol``):
  scikit-learn ``Lasso`` with ``precompute=False`` (``sklearn-cd``) and ``precompute=True``
  (Gram form, ``sklearn-precompute``), skglm ``Lasso`` and celer ``Lasso`` (all with
  ``alpha = lam``, one fit per one-vs-rest column) for squared + l1; scikit-learn's multinomial
  ``LogisticRegression(solver="saga", l1_ratio=1, C = 1/(n lam))`` for softmax + l1 (more than
  two classes). ``--repeat k`` solves every case k times with the solvers interleaved (order
  alternating) and keeps each solver's fastest run.

The objective of every returned ``W`` is re-evaluated by one numpy function, so the "rel. diff"
column compares like with like. Cases:

(x6)  FIRST-LAST-XOR T=6, squared + l1, n=2000, P=189 (small scale: scikit-learn's home turf),
(c4)  sequential MNIST T=4, 4000 images, P=512, squared (one-vs-rest +-1) + l1,
(a)   FIRST-LAST-XOR T=8, hinge + l1, n=2000 rows, P=1000 columns (256 distinct strings),
(a14) FIRST-LAST-XOR T=14, hinge + l1, n=2000, P=1000 (rows nearly all distinct),
(b)   sequential MNIST T=4, 6000 training images, P=1024, softmax cross-entropy + l1,
(c)   sequential MNIST T=4, 20000 images, P=2048, squared (one-vs-rest +-1) + l1,
(t3s) Tomita-3 T=12 spike dictionary of issue 11 (``tests/data/tomita3_T12_gaussian.npz``,
      2000 x 127, rank 126, two classes), softmax + l1 at 1e-3 lambda_max,
(t3q) the same dictionary, squared + l1 at 1e-3 lambda_max (the false-stop case of issue 11).

``lam = ratio * lambda_max`` (default ratio 0.05, or the case's own ``ratio``; the table also
gives the paper's ``reg = sqrt(P) * lam``).

Two-class softmax + l1 is l1-regularised logistic regression on :math:`v = w_1 - w_0`: for any
:math:`v` the smallest :math:`\lVert w_0\rVert_1 + \lVert w_1\rVert_1` with
:math:`w_1 - w_0 = v` is :math:`\lVert v\rVert_1` (at :math:`w_1 = -w_0 = v/2`), so the binary
peers (scikit-learn SAGA, skglm ``SparseLogisticRegression``, celer ``LogisticRegression``) solve
the same problem and their ``v`` is scored as :math:`W = [-v/2, v/2]`.

Every peer and cvxpy + Clarabel run in a subprocess (the time inside it is reported, the
process is killed after ``--peer-timeout`` / ``--cvxpy-timeout`` seconds), interleaved with ours
in one run. "Equal objective": a peer counts for the ``x peer`` speed-up when its objective is
within ``--equal-rtol`` (relative) of the lowest objective of the case; a peer that stopped higher
is listed with its difference but not counted.

Usage::

    python benchmarks/bench_solvers.py                      # all cases (~25 min at load 4)
    python benchmarks/bench_solvers.py --quick              # small versions (~2 min)
    python benchmarks/bench_solvers.py --cases b --cvxpy-timeout 1800 --json out.json
    python benchmarks/bench_solvers.py --sweep 54 --json sweep.json  # property sweep (long)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# one BLAS thread for every solver unless the caller says otherwise (before numpy loads BLAS)
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

#: MNIST IDX files (override with the environment variable CONVEXSNN_MNIST_DIR)
MNIST_DIR = Path(os.environ.get("CONVEXSNN_MNIST_DIR", ROOT.parent / "shared" / "data" / "mnist"))

CASES = {
    "x6": dict(
        title="XOR T=6 squared+l1",
        task="xor",
        T=6,
        n=2000,
        P=189,
        loss="squared",
        penalty="l1",
        witness=dict(n_branches=2, hidden_widths=[128, 1500], scale=2.0),
    ),
    "c4": dict(
        title="MNIST T=4 n=4k squared+l1",
        task="mnist",
        T=4,
        n=4000,
        P=512,
        loss="squared",
        penalty="l1",
        witness=dict(n_branches=8, hidden_widths=[256, 256, 512], scale=4.0),
    ),
    "a": dict(
        title="XOR T=8 hinge+l1",
        task="xor",
        T=8,
        n=2000,
        P=1000,
        loss="hinge",
        penalty="l1",
        witness=dict(n_branches=2, hidden_widths=[128, 1500], scale=2.0),
    ),
    "a14": dict(
        title="XOR T=14 hinge+l1",
        task="xor",
        T=14,
        n=2000,
        P=1000,
        loss="hinge",
        penalty="l1",
        witness=dict(n_branches=2, hidden_widths=[128, 1500], scale=2.0),
    ),
    "b": dict(
        title="MNIST T=4 softmax+l1",
        task="mnist",
        T=4,
        n=6000,
        P=1024,
        loss="softmax",
        penalty="l1",
        witness=dict(n_branches=4, hidden_widths=[256, 256, 512], scale=4.0),
    ),
    "c": dict(
        title="MNIST T=4 n=20k squared+l1",
        task="mnist",
        T=4,
        n=20000,
        P=2048,
        loss="squared",
        penalty="l1",
        witness=dict(n_branches=8, hidden_widths=[256, 256, 512], scale=4.0),
    ),
    "t3s": dict(
        title="Tomita-3 T=12 softmax+l1 1e-3",
        task="fixture",
        fixture="tomita3_T12_gaussian.npz",
        n=2000,
        P=127,
        loss="softmax",
        penalty="l1",
        ratio=1e-3,
    ),
    "t3q": dict(
        title="Tomita-3 T=12 squared+l1 1e-3",
        task="fixture",
        fixture="tomita3_T12_gaussian.npz",
        n=2000,
        P=127,
        loss="squared",
        penalty="l1",
        ratio=1e-3,
    ),
}
#: cases where cvxpy + Clarabel is not run (reason recorded in the table)
CLARABEL_SKIP = {
    "b": "skipped: killed (out of memory) after ~10 minutes in the solver owner's earlier runs "
    "(RESULTS.md, solver benchmark section); the quick size (1000 x 256) runs",
    "c": "skipped: SIGKILLed (out of memory) after 249 s on this shared 24 GiB machine "
    "(2026-11-28 run, benchmarks/results/bench_solvers.json of that date)",
}
QUICK = {
    "t3s": dict(n=500, P=60),
    "t3q": dict(n=500, P=60),
    "x6": dict(n=500),
    "c4": dict(n=1000, P=256),
    "a": dict(n=500, P=300),
    "a14": dict(n=500, P=300),
    "b": dict(n=1000, P=256),
    "c": dict(n=4000, P=512),
}


# --------------------------------------------------------------------------------- data


def build_case(case: dict, seed: int = 0):
    """Dictionary (dense 0/1 float64 tensor), targets and labels for one case."""
    from convexsnn.dictionary import build_dictionary
    from convexsnn.tasks import first_last_xor, sequential_mnist
    from convexsnn.witnesses import gaussian_witnesses

    if case["task"] == "fixture":
        # a saved bit-packed dictionary (rows packed along axis 0), as tests/conftest.py reads it
        z = np.load(ROOT / "tests" / "data" / case["fixture"])
        n = min(int(z["n_rows"]), case["n"])
        D = np.unpackbits(z["packed"], axis=0)[:n].astype(np.float64)
        keep = np.sort(np.unique(D[:, : case["P"]], axis=1, return_index=True)[1])
        D = np.ascontiguousarray(D[:, keep])
        return torch.from_numpy(D), z["labels"][:n].astype(np.int64)
    if case["task"] == "xor":
        task = first_last_xor(T=case["T"], n_train=case["n"], seed=seed)
    else:
        task = sequential_mnist(MNIST_DIR, T=case["T"], n_train=case["n"], seed=seed)
    X, y = task.train.X, task.train.y
    w = gaussian_witnesses(
        X.shape[2], normalized=True, seed=seed, dtype=torch.float64, **case["witness"]
    )
    d = build_dictionary(w, X)
    op = d.operator(torch.float64)
    P = min(case["P"], d.n_columns)
    D = op.dense()[:, :P].contiguous()
    return D, y.numpy().astype(np.int64)


def targets(loss: str, y: np.ndarray):
    """What the solvers get: labels, or +-1 one-vs-rest targets for squared."""
    from convexsnn.convex import labels_to_targets

    if loss == "squared":
        return labels_to_targets(y).numpy()
    return y


def objective(
    D: np.ndarray, y: np.ndarray, loss: str, penalty: str, lam: float, W: np.ndarray
) -> float:
    """Primal objective with a_i = 1/n, evaluated in numpy (shared by all solvers)."""
    from convexsnn.convex import labels_to_targets

    n = D.shape[0]
    Z = D @ W
    if loss == "squared":
        Y = labels_to_targets(y).numpy()
        fit = 0.5 * np.mean(np.sum((Z - Y) ** 2, axis=1))
    elif loss == "hinge":
        Y = labels_to_targets(y).numpy()
        fit = np.mean(np.sum(np.maximum(0.0, 1.0 - Y * Z), axis=1))
    else:
        m = Z.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(Z - m).sum(axis=1, keepdims=True)))[:, 0]
        fit = np.mean(lse - Z[np.arange(n), y])
    pen = np.abs(W).sum() if penalty == "l1" else np.linalg.norm(W, axis=1).sum()
    return float(fit + lam * pen)


# --------------------------------------------------------------------------------- solvers


def run_ours(D: torch.Tensor, y: np.ndarray, case: dict, lam: float, tol: float) -> dict:
    from convexsnn.convex import solve_readout

    # warm-up (first-call overheads of torch kernels), not timed
    solve_readout(
        D[:50, :20],
        y[:50],
        loss=case["loss"],
        penalty=case["penalty"],
        lam=lam,
        tol=1e-3,
        n_classes=int(y.max()) + 1,
    )
    t0 = time.perf_counter()
    sol = solve_readout(
        D,
        y,
        loss=case["loss"],
        penalty=case["penalty"],
        lam=lam,
        tol=tol,
        n_classes=int(y.max()) + 1,
    )
    sec = time.perf_counter() - t0
    c = sol.certificate
    return dict(
        seconds=sec,
        W=sol.W.numpy(),
        gap=c.rel_gap,
        status=c.status,
        iterations=c.iterations,
        algorithm=c.algorithm,
        support=int((sol.W != 0).any(dim=1).sum()),
        screened=c.info.get("screened"),
    )


def _fit_columns(make, D: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
    """Fit one single-output model per target column (the problem separates over columns)."""
    import warnings

    W = np.zeros((D.shape[1], Y.shape[1]))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in range(Y.shape[1]):
            m = make()
            m.fit(D, Y[:, c])
            W[:, c] = np.asarray(m.coef_).reshape(-1)
    return time.perf_counter() - t0, W


def run_lasso_peer(name: str, D: np.ndarray, y: np.ndarray, lam: float, tol: float) -> dict:
    r"""Squared + l1 peers. All of them minimise :math:`\frac{1}{2n}\lVert y - Dw\rVert^2 +
    \alpha \lVert w\rVert_1` per output column, which is our objective (:math:`a_i = 1/n`,
    summed over the one-vs-rest columns) with :math:`\alpha = \lambda`."""
    Y = targets("squared", y)
    if name.startswith("sklearn"):
        from sklearn.linear_model import Lasso

        pre = name.endswith("precompute")
        make = lambda: Lasso(
            alpha=lam,
            fit_intercept=False,
            tol=tol,
            max_iter=100_000,  # noqa
            precompute=pre,
        )
    elif name == "skglm":
        from skglm import Lasso

        make = lambda: Lasso(alpha=lam, fit_intercept=False, tol=tol)  # noqa: E731
    elif name == "celer":
        from celer import Lasso

        make = lambda: Lasso(alpha=lam, fit_intercept=False, tol=tol)  # noqa: E731
    else:
        raise ValueError(name)
    sec, W = _fit_columns(
        make, np.ascontiguousarray(D) if name != "sklearn-cd" else np.asfortranarray(D), Y
    )
    return dict(seconds=sec, W=W, gap=float("nan"), status="done", iterations=None)


def run_logistic_peer(name: str, D: np.ndarray, y: np.ndarray, lam: float, tol: float) -> dict:
    r"""Softmax + l1 peers. scikit-learn's ``LogisticRegression`` with SAGA minimises
    :math:`\lVert W\rVert_1 + C_{\rm sk} \sum_i \ell_i`; ours is :math:`\frac1n \sum_i
    \ell_i + \lambda \lVert W\rVert_1`, the same minimiser with :math:`C_{\rm sk} = 1/(n
    \lambda)` (multinomial for more than two classes). With two classes the peers fit the binary
    logistic model :math:`v` (see the module docstring): skglm's ``SparseLogisticRegression``
    (``alpha = lam``, the :math:`1/n` mean), celer's ``LogisticRegression`` (``C = 1/(n lam)``)
    and SAGA; scored as :math:`W = [-v/2, v/2]`."""
    import warnings

    n = D.shape[0]
    binary = int(y.max()) == 1
    if name == "saga":
        from sklearn.linear_model import LogisticRegression

        m = LogisticRegression(
            C=1.0 / (n * lam),
            l1_ratio=1.0,
            solver="saga",
            tol=tol,
            max_iter=10_000,
            fit_intercept=False,
        )
        yy = y
    elif name == "skglm":
        from skglm import SparseLogisticRegression

        m = SparseLogisticRegression(alpha=lam, tol=tol, fit_intercept=False, max_iter=200)
        yy = 2 * y - 1
    elif name == "celer":
        from celer import LogisticRegression as CelerLogistic

        m = CelerLogistic(C=1.0 / (n * lam), tol=tol, fit_intercept=False, max_iter=200)
        yy = 2 * y - 1
    else:
        raise ValueError(name)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.fit(D, yy)
    sec = time.perf_counter() - t0
    coef = np.asarray(m.coef_, dtype=np.float64)
    if binary:
        v = coef.reshape(-1)
        W = np.stack([-0.5 * v, 0.5 * v], axis=1)
    else:
        W = coef.T
    it = getattr(m, "n_iter_", None)
    return dict(
        seconds=sec,
        W=W,
        gap=float("nan"),
        status="done",
        iterations=int(np.max(it)) if it is not None else None,
    )


PEERS = ("sklearn-cd", "sklearn-precompute", "skglm", "celer", "saga")
CLARABEL = "cvxpy+clarabel"


def peer_applies(name: str, case: dict, y: np.ndarray) -> bool:
    """Whether peer ``name`` solves this case's objective."""
    if name == CLARABEL:
        return True
    if case["penalty"] != "l1":
        return False
    if case["loss"] == "squared":
        return name != "saga"
    if case["loss"] == "softmax":
        # skglm / celer: binary logistic only; SAGA: binary or multinomial
        return name == "saga" or (name in ("skglm", "celer") and int(y.max()) == 1)
    return False  # hinge + l1: no peer besides Clarabel (LinearSVC has no l1 + hinge)


def _solve_peer(
    name: str, D: np.ndarray, y: np.ndarray, loss: str, penalty: str, lam: float, tol: float
) -> dict:
    """One peer's solve (in the worker subprocess)."""
    if name == CLARABEL:
        return _clarabel(D, y, loss, penalty, lam)
    if loss == "softmax":
        return run_logistic_peer(name, D, y, lam, tol)
    return run_lasso_peer(name, D, y, lam, tol)


def _clarabel(D: np.ndarray, y: np.ndarray, loss: str, penalty: str, lam: float) -> dict:
    """cvxpy + Clarabel at its default tolerances (the time includes cvxpy's compilation)."""
    import cvxpy as cp

    n, P = D.shape
    t0 = time.perf_counter()
    if loss == "softmax":
        C = int(y.max()) + 1
        W = cp.Variable((P, C))
        Zv = D @ W
        E = np.eye(C)[y]
        fit = cp.sum(cp.log_sum_exp(Zv, axis=1)) / n - cp.sum(cp.multiply(E, Zv)) / n
    else:
        from convexsnn.convex import labels_to_targets

        Y = labels_to_targets(y).numpy()
        W = cp.Variable((P, Y.shape[1]))
        Zv = D @ W
        if loss == "squared":
            fit = 0.5 * cp.sum_squares(Zv - Y) / n
        else:
            fit = cp.sum(cp.pos(1 - cp.multiply(Y, Zv))) / n
    pen = cp.sum(cp.abs(W)) if penalty == "l1" else cp.sum(cp.norm(W, 2, axis=1))
    prob = cp.Problem(cp.Minimize(fit + lam * pen))
    prob.solve(solver="CLARABEL")
    sec = time.perf_counter() - t0
    return dict(
        seconds=sec,
        W=np.asarray(W.value) if W.value is not None else None,
        gap=float("nan"),
        status=str(prob.status),
        iterations=int(prob.solver_stats.num_iters or -1),
        solve_time=float(prob.solver_stats.solve_time or float("nan")),
    )


def _worker(name: str, npz: str, out: str) -> None:
    """Subprocess body: one peer's solve, saved with its W."""
    z = np.load(npz)
    if name != CLARABEL:
        # warm-up on a slice, not timed: skglm and celer compile their kernels on first use
        # (numba / first-call overheads), as run_ours warms torch's kernels up
        n0 = min(60, z["D"].shape[0])
        y0 = z["y"][:n0]
        if len(np.unique(y0)) == len(np.unique(z["y"])):
            _solve_peer(
                name,
                z["D"][:n0, :20],
                y0,
                str(z["loss"]),
                str(z["penalty"]),
                float(z["lam"]),
                1e-3,
            )
    r = _solve_peer(
        name, z["D"], z["y"], str(z["loss"]), str(z["penalty"]), float(z["lam"]), float(z["tol"])
    )
    W = r.pop("W")
    np.savez(out, W=W if W is not None else np.zeros((0, 0)), meta=json.dumps(r))


def run_peer(name: str, npz: str, timeout: float) -> dict:
    """Run peer ``name`` on the case saved in ``npz`` in a subprocess killed after ``timeout``
    seconds; ``seconds`` is the solve time measured inside it (imports and loading excluded)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.npz")
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--_worker", name, npz, out], start_new_session=True
        )
        fail = dict(seconds=float("nan"), W=None, gap=float("nan"), iterations=None)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return dict(fail, status=f"timeout > {timeout:.0f}s", wall=time.perf_counter() - t0)
        wall = time.perf_counter() - t0
        if rc != 0 or not os.path.exists(out):
            why = " = SIGKILL, e.g. out of memory" if rc == -signal.SIGKILL else ""
            return dict(fail, status=f"failed after {wall:.0f}s (rc={rc}{why})", wall=wall)
        z = np.load(out)
        r = json.loads(str(z["meta"]))
        W = z["W"]
        r["W"] = W if W.ndim == 2 and W.size else None
        r["wall"] = wall
        return r


# --------------------------------------------------------------------------------- sweep


def sweep(n_dicts: int, out_json: str | None, max_time: float) -> int:
    """The full property sweep of ``tests/test_solver_properties.py``: real spike dictionaries
    (tasks x leaks x depths x seeds, duplicated columns appended) x every datafit x penalty x
    lam in {1, 1e-1, 1e-2, 1e-3, 1e-4} lam_max, against cvxpy + Clarabel. A cell passes when the
    solve converged with rel. objective difference <= 1e-6 and gap <= tol, or reported
    not-converged with a gap that brackets the reference."""
    import itertools
    import warnings

    sys.path.insert(0, str(ROOT / "tests"))
    from convexsnn.convex import ConvergenceWarning, lambda_max, solve_readout
    from test_solver_properties import clarabel_value, spike_dictionary

    grid = list(itertools.product(("xor", "parity", "count"), (0.5, 0.9, 0.99), (3, 4), range(3)))[
        :n_dicts
    ]
    rows, bad = [], 0
    for task, leak, L, seed in grid:
        _, D, y = spike_dictionary(task, T=6, L=L, leak=leak, seed=seed)
        C = int(y.max()) + 1
        for loss, pen, fac in itertools.product(
            ("squared", "hinge", "softmax"), ("l1", "l21"), (1.0, 1e-1, 1e-2, 1e-3, 1e-4)
        ):
            lam = fac * lambda_max(D, y, loss=loss, penalty=pen)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                t0 = time.perf_counter()
                sol = solve_readout(
                    D, y, loss=loss, penalty=pen, lam=lam, tol=1e-8, max_time=max_time
                )
                sec = time.perf_counter() - t0
            c = sol.certificate
            try:
                ref, exact = clarabel_value(D, y, loss, pen, lam, C)
            except Exception as exc:  # noqa: BLE001 - a failed reference is reported, not fatal
                ref, exact = float("nan"), False
                print(f"clarabel failed: {exc}")
            diff = (c.primal - ref) / abs(ref) if math.isfinite(ref) and ref else float("nan")
            honest = c.dual <= ref + 1e-12 * abs(ref)
            ok = honest and (
                (
                    c.converged
                    and c.rel_gap <= 1e-8
                    and (abs(diff) <= 1e-6 if exact else diff <= 1e-6)
                )
                or not c.converged
            )
            bad += not ok
            rows.append(
                dict(
                    task=task,
                    leak=leak,
                    L=L,
                    seed=seed,
                    n=D.shape[0],
                    P=D.shape[1],
                    loss=loss,
                    penalty=pen,
                    lam_ratio=fac,
                    seconds=sec,
                    status=c.status,
                    rel_gap=c.rel_gap,
                    rel_diff=diff,
                    ok=bool(ok),
                )
            )
            print(
                f"{task:6s} leak={leak:<4} L={L} s={seed} P={D.shape[1]:4d} {loss:7s} {pen:3s} "
                f"lam={fac:<6g} {sec:7.2f}s {c.status:9s} gap={c.rel_gap:8.1e} "
                f"diff={diff:9.1e} {'ok' if ok else 'FAIL'}",
                flush=True,
            )
    print(f"\n{len(rows) - bad}/{len(rows)} cells pass")
    if out_json:
        Path(out_json).write_text(json.dumps({"sweep": rows}, indent=1, default=str))
    return 1 if bad else 0


# --------------------------------------------------------------------------------- driver


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated subset of {','.join(CASES)}",
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, short time-outs")
    ap.add_argument(
        "--cvxpy-timeout",
        type=float,
        default=None,
        help="seconds before the cvxpy+Clarabel subprocess is killed "
        "(default 240, 60 with --quick)",
    )
    ap.add_argument("--no-cvxpy", action="store_true", help="skip cvxpy+Clarabel")
    ap.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated peers among {','.join(PEERS)} (empty: none)",
    )
    ap.add_argument(
        "--peer-tol",
        type=float,
        default=1e-8,
        help="tol of the peers (their own stopping rules, not a duality gap)",
    )
    ap.add_argument(
        "--peer-timeout",
        type=float,
        default=None,
        help="seconds before a peer's subprocess is killed (default 150, 60 with --quick)",
    )
    ap.add_argument(
        "--equal-rtol",
        type=float,
        default=1e-6,
        help="a peer is at 'equal objective' when within this relative distance of the "
        "case's lowest objective",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="solve every case this many times, solvers interleaved (the table "
        "keeps the fastest run of each; Clarabel runs once)",
    )
    ap.add_argument("--tol", type=float, default=1e-8, help="relative duality gap of ours")
    ap.add_argument(
        "--ratio",
        type=float,
        default=0.05,
        help="lam = ratio * lambda_max (cases with their own ratio keep it)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1; BLAS threads of the peers: set OMP_NUM_THREADS, "
        "1 unless given)",
    )
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    ap.add_argument(
        "--sweep",
        type=int,
        default=0,
        metavar="N",
        help="run the property sweep on N real spike dictionaries (up to 54) x "
        "every datafit x penalty x 5 lam values against cvxpy + Clarabel",
    )
    ap.add_argument("--_worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker:
        _worker(*args._worker)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sweep:
        return sweep(args.sweep, args.json, max_time=60.0)
    import _benchlib

    timeout = args.cvxpy_timeout or (60.0 if args.quick else 240.0)
    peer_timeout = args.peer_timeout or (60.0 if args.quick else 150.0)
    from convexsnn.convex import lambda_max

    rows = []
    load_start = _benchlib.load()
    for key in [c.strip() for c in args.cases.split(",") if c.strip()]:
        if key not in CASES:
            raise SystemExit(f"unknown case {key!r}; choose from {list(CASES)}")
        case = dict(CASES[key])
        if args.quick:
            case.update(QUICK[key])
        print(f"\n[{key}] building the dictionary (load {_benchlib.load()})", flush=True)
        t0 = time.perf_counter()
        D, y = build_case(case)
        t_dict = time.perf_counter() - t0
        n, P = D.shape
        ratio = case.get("ratio", args.ratio)
        lam = ratio * float(lambda_max(D, y, loss=case["loss"], penalty=case["penalty"]))
        Dn = D.numpy()
        names = [p.strip() for p in args.peers.split(",") if p.strip()]
        names = [p for p in names if peer_applies(p, case, y)]
        skip_clarabel = None
        if args.no_cvxpy:
            skip_clarabel = "skipped (--no-cvxpy)"
        elif key in CLARABEL_SKIP and not args.quick:
            skip_clarabel = CLARABEL_SKIP[key]
        res: dict = {}
        with tempfile.TemporaryDirectory() as tmp:
            npz = os.path.join(tmp, "case.npz")
            np.savez(
                npz,
                D=Dn,
                y=y,
                lam=lam,
                loss=case["loss"],
                penalty=case["penalty"],
                tol=args.peer_tol,
            )
            for rep in range(max(1, args.repeat)):
                order = ["ours"] + names + ([CLARABEL] if rep == 0 and not skip_clarabel else [])
                if rep % 2:
                    order = order[::-1]  # interleave: alternate the order between repetitions
                for name in order:
                    load_before = _benchlib.load()
                    if name == "ours":
                        r = run_ours(D, y, case, lam, args.tol)
                    else:
                        r = run_peer(name, npz, timeout if name == CLARABEL else peer_timeout)
                    r["load"] = [load_before, _benchlib.load()]
                    print(
                        f"  {name:18s} {_fmt(r['seconds'], '8.2f')} s  {r['status']}  "
                        f"load {r['load'][1]}",
                        flush=True,
                    )
                    old = res.get(name)
                    if old is None or not (old["seconds"] <= r["seconds"]):
                        res[name] = r
        if skip_clarabel:
            res[CLARABEL] = dict(
                seconds=float("nan"),
                W=None,
                gap=float("nan"),
                status=skip_clarabel,
                iterations=None,
            )
        for r in res.values():
            r["objective"] = (
                objective(Dn, y, case["loss"], case["penalty"], lam, r["W"])
                if r.get("W") is not None
                else float("nan")
            )
        ref = res[CLARABEL]["objective"]
        best = min(r["objective"] for r in res.values() if math.isfinite(r["objective"]))
        ours_t = res["ours"]["seconds"]
        for name, r in res.items():
            row = dict(
                case=key,
                title=case["title"],
                n=n,
                P=P,
                loss=case["loss"],
                penalty=case["penalty"],
                ratio=ratio,
                lam=lam,
                reg=lam * math.sqrt(P),
                solver=name,
                seconds=r["seconds"],
                objective=r["objective"],
                rel_gap=r["gap"],
                status=r["status"],
                iterations=r.get("iterations"),
                dict_seconds=t_dict,
                algorithm=r.get("algorithm"),
                support=r.get("support"),
                screened=r.get("screened"),
                load=r.get("load"),
                threads=torch.get_num_threads(),
            )
            row["rel_diff_vs_clarabel"] = (
                (r["objective"] - ref) / abs(ref) if math.isfinite(ref) else float("nan")
            )
            row["rel_diff_vs_best"] = (r["objective"] - best) / abs(best)
            row["equal_objective"] = (
                bool(row["rel_diff_vs_best"] <= args.equal_rtol)
                if math.isfinite(r["objective"])
                else None  # no objective (time-out, failure, skipped)
            )
            if name == "ours":
                cv = res[CLARABEL]
                if math.isfinite(cv["seconds"]):
                    row["speedup_vs_clarabel"] = cv["seconds"] / ours_t
                elif cv["status"].startswith("timeout"):
                    row["speedup_vs_clarabel"] = f"> {timeout / ours_t:.0f}"
                others = [
                    (r2["seconds"], k2)
                    for k2, r2 in res.items()
                    if k2 not in ("ours", CLARABEL)
                    and math.isfinite(r2["seconds"])
                    and (r2["objective"] - best) / abs(best) <= args.equal_rtol
                ]
                fastest = min(others, default=(float("nan"), None))
                row["fastest_peer_equal_objective"] = fastest[1]
                row["speedup_vs_fastest_peer"] = fastest[0] / ours_t
            rows.append(row)
        _print_rows([r for r in rows if r["case"] == key])
    meta = _benchlib.run_meta(
        args,
        codes={"convexsnn": str(ROOT / "src")},
        load_start=load_start,
        cvxpy_timeout=timeout,
        peer_timeout=peer_timeout,
        versions=_versions(),
    )
    print(f"\nrun: {meta}")
    if args.json:
        _benchlib.write_json(args.json, {"meta": meta, "results": rows})
        print(f"wrote {args.json}")
    return 0


def _versions() -> dict:
    """Versions of torch and of the peers' packages (``None`` when not installed)."""
    from importlib import metadata

    out = {}
    for pkg in ("torch", "numpy", "scikit-learn", "skglm", "celer", "cvxpy", "clarabel"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _fmt(v, spec):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec) if not isinstance(v, str) else v


def _print_rows(rows):
    if not rows:
        return
    r0 = rows[0]
    print(
        f"\n== ({r0['case']}) {r0['title']}: n={r0['n']} P={r0['P']} lam={r0['lam']:.3g} "
        f"reg={r0['reg']:.3g} (dictionary built in {r0['dict_seconds']:.1f}s)"
    )
    print(
        f"{'solver':18s} {'seconds':>9s} {'objective':>18s} {'rel.gap':>9s} "
        f"{'rel.diff':>9s} {'x clarabel':>10s} {'x peer':>7s}  status"
    )
    for r in rows:
        sp = r.get("speedup_vs_clarabel")
        sp = _fmt(sp, ".1f") if sp is not None else ""
        sq = r.get("speedup_vs_fastest_peer")
        sq = _fmt(sq, ".2f") if sq is not None else ""
        eq = " (higher objective: not counted)" if r.get("equal_objective") is False else ""
        print(
            f"{r['solver']:18s} {_fmt(r['seconds'], '9.2f')} {_fmt(r['objective'], '18.12f')} "
            f"{_fmt(r['rel_gap'], '9.1e')} {_fmt(r['rel_diff_vs_clarabel'], '9.1e')} "
            f"{sp:>10s} {sq:>7s}  {r['status']}{eq}"
            + (
                f" [{r['algorithm']}, support {r['support']}, screened {r.get('screened')}]"
                if r.get("algorithm")
                else ""
            )
            + (f" load {r['load'][1][0]}" if r.get("load") and r["load"][1] else "")
        )


if __name__ == "__main__":
    sys.exit(main())
