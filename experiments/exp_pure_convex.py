"""Pure convex training on sequential MNIST: delay-line witnesses and column generation.

Usage::

    # delay-line witnesses (per-step readout) vs the same sources read at the last step only
    python experiments/exp_pure_convex.py delay --n-train 6000 --neurons 1024 --json out/pure.json
    # column generation over one-layer witnesses with delay lines
    python experiments/exp_pure_convex.py colgen --n-train 6000 --budget 2048 --json out/pure.json
    # data-dependent sources: patches of training steps with data-set thresholds, leak 0
    python experiments/exp_pure_convex.py delay --n-train 55000 --neurons 2048 --family template \
        --leak 0 --scale 0.5 --loss squared --betas 0.01 0.003 --json out/pure.json
    # a cheap screen of a witness family: ridge validation accuracy (not certified)
    python experiments/exp_pure_convex.py screen --n-train 10000 --neurons 512 --family patch \
        --leak 0 --scale 0.5 --json out/pure_screen.json

No SG-trained weight anywhere: witnesses are Gaussian (``delay``) or proposed by
:func:`convexsnn.colgen.fit_column_generation` (``colgen``). Every record carries the certificate
of its readout (relative duality gap, converged or not), the test accuracy of the reconstructed
network's own forward pass (``delay``; checked against the convex readout), and the command line.
Records are appended to ``--json`` (written atomically).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

from convexsnn._io import atomic_write_json
from convexsnn.convex import ConvergenceWarning, predict_from_scores, solve_readout
from convexsnn.delay import (
    gaussian_delay_witnesses,
    patch_delay_witnesses,
    template_delay_witnesses,
)
from convexsnn.dictionary import build_dictionary
from convexsnn.reconstruct import check_reconstruction
from convexsnn.selection import fit_convex
from convexsnn.tasks import sequential_mnist
from convexsnn.witnesses import gaussian_witnesses

DATA = os.environ.get(
    "CONVEXSNN_MNIST_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")
)


def _append(path: Path | None, records: list[dict], meta: dict) -> None:
    if path is None:
        return
    old = {"records": [], "runs": []}
    if path.exists():
        with open(path) as f:
            old = json.load(f)
    atomic_write_json(
        path,
        {
            "experiment": "pure_convex",
            "runs": old["runs"] + [meta],
            "records": old["records"] + records,
        },
    )


def _solver_options(args) -> dict:
    opts = {"solver": args.solver} if args.solver else {}
    if args.no_polish:
        opts["polish"] = False
    if args.verbose:
        opts["verbose"] = True  # the solver's per-outer-iteration log (working set, gap)
    return opts


def _certified(cert: dict, tol: float) -> bool:
    """A solve is certified when it converged (``status == "converged"``, no cap hit) with a
    finite relative duality gap ``<= tol`` recomputed on the original problem."""
    gap = cert.get("rel_gap")
    return (
        bool(cert.get("converged"))
        and cert.get("status") == "converged"
        and gap is not None
        and math.isfinite(gap)
        and gap <= tol
    )


def memory_estimate(
    n_train: int,
    n_val: int,
    n_test: int,
    n_columns: int,
    check_train: bool = False,
    T: int = 4,
    n_pixels: int = 784,
    check_mem_gb: float = 1.0,
) -> dict:
    r"""Bytes the ``delay`` pipeline holds at its peak, by part, for ``n_columns`` columns ``P``.

    Held throughout: the input images (float64, and a per-step copy: ``16 * 784`` bytes an
    image), the training dictionary (a ``bool`` matrix, ``n P`` bytes, and the packed bits of
    its operator, ``n P / 8``) and the validation dictionary in float64 (``8 n_{val} P``). On
    top, the larger of two phases:

    * the squared + l1 solve: the Gram matrix of the working set and the inverse of the active
      face (``8 P^2`` bytes each) with a float32 block while Gram columns are formed (``4 P^2``),
      and the dense float64 support columns of the polishing step (``8 n P``);
    * the reconstruction check on test rows, a block at a time (:func:`check_chunk_rows`, at
      most ``check_mem_gb``); with ``check_train`` the training rows at once (their dictionary
      in ``bool`` and float64 and the network's forward buffers, ``(9 + 32 T) n P``).

    Measured: n = 55000, P = 4095, T = 4, the test rows checked at once (before the blocks):
    5.4 GiB peak resident memory, in the check.
    """
    P = int(n_columns)
    parts = {
        "inputs": 16 * n_pixels * (n_train + n_val + n_test),
        "train_dictionary": int(n_train * P * (1 + 1 / 8)),
        "val_dictionary": 8 * n_val * P,
        "solver": 20 * P * P + 8 * n_train * P,
        "check": min(
            int(check_mem_gb * 2**30) + (9 + 32 * T) * 8 * P,
            (9 + 32 * T) * n_test * P,
        )
        + ((9 + 32 * T) * n_train * P if check_train else 0),
    }
    parts["total"] = (
        parts["inputs"]
        + parts["train_dictionary"]
        + parts["val_dictionary"]
        + max(parts["solver"], parts["check"])
    )
    return parts


def check_memory_budget(args, n_train: int, n_val: int, n_test: int) -> dict:
    """Refuse (``SystemExit`` with one line) a configuration whose :func:`memory_estimate` for
    the largest possible dictionary (every source at every step) exceeds ``--mem-budget-gb``."""
    P = args.neurons * args.T
    est = memory_estimate(
        n_train,
        n_val,
        n_test,
        P,
        check_train=args.check_train,
        T=args.T,
        n_pixels=784,
        check_mem_gb=args.check_mem_gb,
    )
    gb = est["total"] / 2**30
    if gb > args.mem_budget_gb:
        raise SystemExit(
            f"exp_pure_convex: refusing to start: {args.neurons} sources x T={args.T} = {P} "
            f"columns at n_train={n_train} need about {gb:.1f} GiB (the solver alone "
            f"{est['solver'] / 2**30:.1f} GiB), over --mem-budget-gb "
            f"{args.mem_budget_gb:g}; use fewer --neurons or a smaller --n-train"
        )
    logging.getLogger("convexsnn").info(
        "memory estimate: %.2f GiB for %d columns (budget %g GiB)", gb, P, args.mem_budget_gb
    )
    return est


def check_chunk_rows(n_columns: int, T: int, mem_gb: float) -> int:
    r"""Test rows per block of the reconstruction check so that the block's dictionary rows
    (``bool`` and float64, ``9 P`` bytes a row) and the network's forward buffers (about four
    ``(T, P)`` float64 arrays a row) stay within ``mem_gb`` GiB: at least 8 rows."""
    per_row = (9 + 32 * int(T)) * int(n_columns)
    return max(8, int(mem_gb * 2**30) // per_row)


def chunked_check(model, dictionary, W, X, y, chunk: int) -> dict:
    """:func:`~convexsnn.reconstruct.check_reconstruction` on blocks of ``chunk`` rows of ``X``,
    combined: counts and accuracies summed over the blocks, the largest score difference. A
    prediction that differs beyond a rounding tie raises ``ReconstructionError`` as in one call
    (each block's tie tolerance is computed from its own scores)."""
    n = int(X.shape[0])
    parts = [
        check_reconstruction(
            model, dictionary, W, X[r0 : r0 + chunk], y[r0 : r0 + chunk], unique_inputs=True
        )
        for r0 in range(0, n, chunk)
    ]
    rows = sum(p["n_rows"] for p in parts)
    mismatch = sum(p["n_mismatch"] for p in parts)
    return {
        "n_rows": rows,
        "chunk_rows": int(chunk),
        "max_abs_diff": max(p["max_abs_diff"] for p in parts),
        "max_rel_diff": max(p["max_rel_diff"] for p in parts),
        "prediction_agreement": 1.0 - mismatch / max(1, rows),
        "n_mismatch": mismatch,
        "n_mismatch_at_ties": sum(p["n_mismatch_at_ties"] for p in parts),
        **{
            k: sum(p[k] * p["n_rows"] for p in parts) / max(1, rows)
            for k in ("accuracy_network", "accuracy_dictionary")
        },
    }


def _fit_record(name: str, w, task, args) -> dict:
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # no test split here: the test rows are checked below, a block of rows at a time
        fit = fit_convex(
            w,
            (task.train.X, task.train.y, task.val.X, task.val.y),
            n_classes=10,
            loss=args.loss,
            penalty="l1",
            regs=args.betas,
            tol=args.tol,
            max_time=args.max_time,
            check=["train"] if args.check_train else False,
            solver_options=_solver_options(args),
        )
    t_check = time.perf_counter()
    test_check = chunked_check(
        fit.model,
        fit.dictionary,
        fit.solution.W,
        task.test.X,
        task.test.y,
        check_chunk_rows(fit.dictionary.n_columns, args.T, args.check_mem_gb),
    )
    checks = {**fit.checks, "test": test_check}
    cert = fit.solution.certificate
    rec = {
        "method": name,
        "n_train": task.train.n,
        "T": args.T,
        "seed": args.seed,
        **source_fields(args),
        "loss": args.loss,
        "n_columns": fit.dictionary.n_columns,
        "beta": fit.reg,
        "support": int(fit.solution.support.numel()),
        "train_accuracy": fit.train_accuracy,
        "val_accuracy": fit.val_accuracy,
        "test_accuracy": test_check["accuracy_network"],
        "test_accuracy_dictionary": test_check["accuracy_dictionary"],
        "rel_gap": cert.rel_gap,
        "converged": bool(cert.converged),
        "status": cert.status,
        "iterations": cert.iterations,
        "algorithm": cert.algorithm,
        "solver_info": cert.to_dict()["info"],
        "solve_seconds": cert.seconds,
        "prediction_agreement_test": test_check["prediction_agreement"],
        "checked_splits": sorted(checks),
        "test_check": test_check,
        "timings": dict(fit.timings) | {"test_check": time.perf_counter() - t_check},
        "network_widths": fit.model.hidden_widths,
        "network_branches": fit.model.n_branches,
        "grid": [
            {k: g[k] for k in ("beta", "val_accuracy", "support")}
            | {
                k: g["certificate"].get(k)
                for k in ("rel_gap", "converged", "status", "iterations", "seconds")
            }
            for g in fit.grid
        ],
        "seconds": time.perf_counter() - t0,
        "tol": args.tol,
        "max_time": args.max_time,
        "threads": torch.get_num_threads(),
        "load_start": load_start,
        "load_end": os.getloadavg(),
    }
    rec["certified"] = _certified(rec, args.tol)
    rec["grid_certified"] = all(_certified(g, args.tol) for g in rec["grid"])
    print(json.dumps({k: v for k, v in rec.items() if k != "grid"}), flush=True)
    return rec


def source_fields(args) -> dict:
    """The witness-source settings kept in every record of ``delay`` and ``screen``."""
    return {
        "sources": args.neurons,
        "family": args.family,
        "leak": args.leak,
        "min_patch": list(args.min_patch) if args.family != "gaussian" else None,
        "quantiles": list(args.quantiles) if args.family == "template" else None,
        "scale": args.scale,
    }


def delay_sources(args, X_train):
    """The delay-line witness set of ``delay``, leak ``--leak``: ``--neurons`` Gaussian sources
    (``--family gaussian``, full-field), Gaussian sources on random patches of the step's image
    rows (``--family patch``, :func:`convexsnn.delay.patch_delay_witnesses`), or patches of
    training steps with data-set thresholds (``--family template``,
    :func:`convexsnn.delay.template_delay_witnesses`, from the training rows only)."""
    n_inputs = X_train.shape[2]
    if args.family == "template":
        return template_delay_witnesses(
            X_train,
            args.neurons,
            grid=(n_inputs // 28, 28),
            min_size=tuple(args.min_patch),
            quantiles=tuple(args.quantiles),
            scale=args.scale,
            seed=args.seed,
            leak=args.leak,
        )
    if args.family == "patch":
        return patch_delay_witnesses(
            (n_inputs // 28, 28),
            args.neurons,
            args.T,
            min_size=tuple(args.min_patch),
            scale=args.scale,
            seed=args.seed,
            leak=args.leak,
        )
    return gaussian_delay_witnesses(
        n_inputs, args.neurons, args.T, scale=args.scale, seed=args.seed, leak=args.leak
    )


def run_delay(args, task) -> list[dict]:
    wd = delay_sources(args, task.train.X)
    out = [] if args.no_delay else [_fit_record("CVX-delay", wd, task, args)]
    if args.control:
        wl = gaussian_witnesses(
            task.train.X.shape[2],
            n_branches=args.neurons,
            hidden_widths=[1],
            scale=args.scale,
            seed=args.seed,
            leak=args.leak,
        )
        out.append(_fit_record("CVX-last-step (same sources)", wl, task, args))
    return out


def run_colgen(args, task) -> list[dict]:
    from convexsnn.colgen import fit_column_generation

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = fit_column_generation(
            task.train.X,
            task.train.y,
            n_classes=10,
            loss=args.loss,
            reg=args.betas[0],
            rounds=args.rounds,
            pool=args.pool,
            budget=args.budget,
            n_steps=args.T,
            init_sources=args.neurons,
            scale=args.scale,
            seed=args.seed,
            max_time=args.max_time,
            solver=args.solver or "auto",
            polish=not args.no_polish,
        )
    val = res.accuracy(task.val.X, task.val.y)
    test = res.accuracy(task.test.X, task.test.y)
    rec = {
        "method": "CVX-CG (delay)",
        "n_train": task.train.n,
        "T": args.T,
        "seed": args.seed,
        "beta": args.betas[0],
        "budget": args.budget,
        "pool": args.pool,
        "loss": args.loss,
        "val_accuracy": val,
        "test_accuracy": test,
        "rounds": [r.to_dict() for r in res.rounds],
        "seconds": time.perf_counter() - t0,
    }
    rec["witnesses"] = res.witnesses.n_branches
    rec["n_columns"] = res.dictionary.n_columns
    rec["stopped"] = res.stopped
    print(json.dumps({k: v for k, v in rec.items() if k != "rounds"}), flush=True)
    for r in res.rounds:
        print(json.dumps(r.to_dict()), flush=True)
    out = [rec]
    if args.control:
        # the same lam and solver budget on a random delay-line dictionary of the budget's size
        t0 = time.perf_counter()
        lam = args.betas[0] / math.sqrt(args.budget)
        wd = gaussian_delay_witnesses(
            task.train.X.shape[2], args.budget // args.T, args.T, scale=args.scale, seed=args.seed
        )
        d = build_dictionary(wd, task.train.X.to(torch.float64))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            sol = solve_readout(
                d.operator(),
                task.train.y,
                loss=args.loss,
                lam=lam,
                n_classes=10,
                max_time=args.max_time,
                solver=args.solver or "auto",
                polish=not args.no_polish,
            )
        acc = {}
        for split in ("val", "test"):
            sp = getattr(task, split)
            z = d.transform(sp.X) @ sol.W.to(torch.float64)
            acc[split] = float((predict_from_scores(z) == sp.y).to(torch.float64).mean())
        cert = sol.certificate
        ctrl = {
            "method": "CVX-delay random (same lam, budget)",
            "n_train": task.train.n,
            "T": args.T,
            "seed": args.seed,
            "beta": args.betas[0],
            "lam": lam,
            "budget": args.budget,
            "loss": args.loss,
            "n_columns": d.n_columns,
            "val_accuracy": acc["val"],
            "test_accuracy": acc["test"],
            "primal": cert.primal,
            "rel_gap": cert.rel_gap,
            "converged": bool(cert.converged),
            "seconds": time.perf_counter() - t0,
        }
        print(json.dumps(ctrl), flush=True)
        out.append(ctrl)
    return out


def run_cg(args, task) -> list[dict]:
    """Column generation over template sources with delay lines
    (:func:`convexsnn.colgen.fit_template_column_generation`), squared loss + L1 at one
    ``--betas`` value (``lam = beta / sqrt(P_0)``, ``P_0`` the initial dictionary's columns);
    validation from the convex readout, test from the reconstructed network (checked)."""
    from convexsnn.colgen import fit_template_column_generation

    t0 = time.perf_counter()
    load_start = os.getloadavg()
    n_inputs = task.train.X.shape[2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = fit_template_column_generation(
            task.train.X,
            task.train.y,
            n_classes=10,
            grid=(n_inputs // 28, 28),
            reg=args.betas[0],
            init_sources=args.neurons,
            pool=args.pool,
            add=args.add,
            budget=args.max_sources or args.neurons,
            rounds=args.rounds,
            rule=args.rule,
            min_size=tuple(args.min_patch),
            quantiles=tuple(args.quantiles),
            scale=args.scale,
            leak=args.leak,
            seed=args.seed,
            tol=args.tol,
            max_time=args.max_time,
            solver=args.solver or "auto",
            polish=not args.no_polish,
            validation=(task.val.X, task.val.y),
        )
    t_fit = time.perf_counter() - t0
    val = res.accuracy(task.val.X, task.val.y)
    t_check = time.perf_counter()
    model = res.reconstruct()
    test_check = chunked_check(
        model,
        res.dictionary,
        res.solution.W,
        task.test.X,
        task.test.y,
        check_chunk_rows(res.dictionary.n_columns, args.T, args.check_mem_gb),
    )
    cert = res.solution.certificate
    last = res.rounds[-1]
    rec = {
        "method": "CVX-CG (template delay)",
        "n_train": task.train.n,
        "T": args.T,
        "seed": args.seed,
        **source_fields(args),
        "loss": args.loss,
        "beta": args.betas[0],
        "lam": res.lam,
        "P0": res.settings.get("P0"),
        "pool": args.pool,
        "add": args.add,
        "max_sources": args.max_sources or args.neurons,
        "rule": args.rule,
        "n_sources": int(res.V.shape[0]),
        "n_columns": res.dictionary.n_columns,
        "support": int(res.solution.support.numel()),
        "train_accuracy": last.train_accuracy,
        "val_accuracy": val,
        "test_accuracy": test_check["accuracy_network"],
        "test_accuracy_dictionary": test_check["accuracy_dictionary"],
        "rel_gap": cert.rel_gap,
        "converged": bool(cert.converged),
        "status": cert.status,
        "iterations": cert.iterations,
        "algorithm": cert.algorithm,
        "solve_seconds": cert.seconds,
        "pricing_gap": last.pricing_gap,
        "union_rel_gap": last.union_rel_gap,
        "pricing_candidates": last.n_candidates,
        "stopped": res.stopped,
        "prediction_agreement_test": test_check["prediction_agreement"],
        "test_check": test_check,
        "rounds": [r.to_dict() for r in res.rounds],
        "timings": {"fit": t_fit, "test_check": time.perf_counter() - t_check},
        "network_widths": model.hidden_widths,
        "network_branches": model.n_branches,
        "seconds": time.perf_counter() - t0,
        "tol": args.tol,
        "max_time": args.max_time,
        "threads": torch.get_num_threads(),
        "load_start": load_start,
        "load_end": os.getloadavg(),
    }
    rec["certified"] = _certified(rec, args.tol)
    rec["rounds_certified"] = all(
        r["converged"] and r["rel_gap"] <= args.tol for r in rec["rounds"]
    )
    print(json.dumps({k: v for k, v in rec.items() if k not in ("rounds", "test_check")}))
    for r in rec["rounds"]:
        print(json.dumps(r), flush=True)
    return [rec]


def ridge_screen(D_tr, y_tr, D_val, y_val, lams=(3.0, 10.0, 30.0)) -> dict:
    r"""Validation accuracy of ridge readouts on a dictionary: a cheap screen of witness
    families, not a certified result.

    Columns centred on the training rows, one-hot targets centred,
    :math:`W = (D^\top D + \lambda \tfrac{n}{1000} I)^{-1} D^\top Y` (Cholesky, exact), for
    each ``lam`` in ``lams``; returns the accuracy per ``lam`` and the best."""
    A = D_tr.to(torch.float64)
    B = D_val.to(torch.float64)
    mu = A.mean(0)
    A, B = A - mu, B - mu
    Y = torch.nn.functional.one_hot(y_tr, 10).to(torch.float64)
    Y = Y - Y.mean(0)
    G = A.T @ A
    AY = A.T @ Y
    eye = torch.eye(G.shape[0], dtype=G.dtype)
    acc = {}
    for lam in lams:
        L = torch.linalg.cholesky(G + lam * A.shape[0] / 1000 * eye)
        W = torch.cholesky_solve(AY, L)
        acc[lam] = float(((B @ W).argmax(1) == y_val).to(torch.float64).mean())
    return {"val_by_lam": acc, "val_accuracy": max(acc.values())}


def run_screen(args, task) -> list[dict]:
    t0 = time.perf_counter()
    wd = delay_sources(args, task.train.X)
    d = build_dictionary(wd, task.train.X.to(torch.float64))
    D_tr = d.matrix(torch.float64)
    D_val = d.transform(task.val.X.to(torch.float64))
    res = ridge_screen(D_tr, task.train.y, D_val, task.val.y)
    rec = {
        "method": "screen (ridge on the delay-line dictionary, not certified)",
        "n_train": task.train.n,
        "T": args.T,
        "seed": args.seed,
        **source_fields(args),
        "n_columns": d.n_columns,
        "spike_rate": float(D_tr.mean()),
        "val_accuracy": res["val_accuracy"],
        "val_by_lam": {str(k): v for k, v in res["val_by_lam"].items()},
        "seconds": time.perf_counter() - t0,
        "threads": torch.get_num_threads(),
        "load_start": os.getloadavg(),
    }
    print(json.dumps(rec), flush=True)
    return [rec]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "what",
        choices=["delay", "colgen", "screen", "cg"],
        help="delay: certified fit; colgen: column generation; screen: ridge validation accuracy "
        "of a delay witness family (a cheap screen, not certified); cg: column generation over "
        "template sources with delay lines (squared + L1, the first --betas value)",
    )
    ap.add_argument("--n-train", type=int, default=6000)
    ap.add_argument("--n-val", type=int, default=5000)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--neurons", type=int, default=1024, help="source witness neurons")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument(
        "--family",
        default="gaussian",
        choices=["gaussian", "patch", "template"],
        help="delay: full-field Gaussian sources, Gaussian sources on random patches, or "
        "patches of training steps with data-set thresholds",
    )
    ap.add_argument(
        "--quantiles",
        type=float,
        nargs=2,
        default=[0.5, 0.95],
        metavar=("LO", "HI"),
        help="--family template: range of the threshold's quantile level",
    )
    ap.add_argument("--leak", type=float, default=0.99, help="delay: the witnesses' leak")
    ap.add_argument(
        "--min-patch",
        type=int,
        nargs=2,
        default=[3, 5],
        metavar=("H", "W"),
        help="--family patch / template: smallest patch (image rows, pixels)",
    )
    ap.add_argument("--loss", default="softmax", choices=["softmax", "squared"])
    ap.add_argument("--solver", default=None, help="solve_path solver (default: auto)")
    ap.add_argument("--no-polish", action="store_true", help="solve_path(polish=False)")
    ap.add_argument("--betas", type=float, nargs="+", default=[1e-2, 3e-3, 1e-3])
    ap.add_argument("--n-test", type=int, default=None, help="test images (default: all 10k)")
    ap.add_argument(
        "--max-time",
        type=float,
        default=120.0,
        help="seconds per solve (a solve stopped by it is recorded as not certified)",
    )
    ap.add_argument("--tol", type=float, default=1e-6, help="target relative duality gap")
    ap.add_argument(
        "--check-train",
        action="store_true",
        help="also check the reconstruction on the training rows (default: test rows only; the "
        "training check re-simulates every training image twice)",
    )
    ap.add_argument(
        "--check-mem-gb",
        type=float,
        default=1.0,
        help="memory for one block of test rows in the reconstruction check (GiB)",
    )
    ap.add_argument(
        "--mem-budget-gb",
        type=float,
        default=8.0,
        help="refuse up front when the estimated peak memory (dictionaries, the solver's Gram "
        "matrix and inverse) exceeds this many GiB",
    )
    ap.add_argument(
        "--control",
        action="store_true",
        help="also fit the same sources read at the last step only",
    )
    ap.add_argument(
        "--no-delay",
        action="store_true",
        help="delay: skip the delay-line fit (with --control: the control alone)",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--add", type=int, default=256, help="cg: sources added a round")
    ap.add_argument(
        "--max-sources",
        type=int,
        default=None,
        help="cg: most sources in the dictionary (default --neurons); the least-weighted retire",
    )
    ap.add_argument(
        "--rule",
        default="steepest",
        choices=["price", "steepest"],
        help="cg: rank violating candidates by price or steepest edge",
    )
    ap.add_argument("--pool", type=int, default=2000)
    ap.add_argument("--budget", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.control and args.family != "gaussian":
        ap.error("--control reads full-field Gaussian sources: use it with --family gaussian")
    if args.no_delay and not (args.what == "delay" and args.control):
        ap.error("--no-delay needs 'delay --control' (there would be nothing to fit)")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s"
    )
    torch.set_num_threads(args.threads)
    if args.what == "cg" and args.family != "template":
        ap.error("cg grows template sources: use it with --family template")
    if args.what == "cg" and args.loss != "squared":
        ap.error("cg solves squared + L1: use it with --loss squared")
    if args.what in ("delay", "screen", "cg"):
        n_tr = args.n_train if args.n_train is not None else 60000 - args.n_val
        if args.what == "cg":
            args.neurons, n0 = max(args.neurons, args.max_sources or 0), args.neurons
            check_memory_budget(args, n_tr, args.n_val, args.n_test or 10000)
            args.neurons = n0
        else:
            check_memory_budget(args, n_tr, args.n_val, args.n_test or 10000)
    meta = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load": os.getloadavg(),
        "command": " ".join(sys.argv),
    }
    task = sequential_mnist(
        DATA, T=args.T, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, seed=args.seed
    )
    run = {"delay": run_delay, "colgen": run_colgen, "screen": run_screen, "cg": run_cg}[args.what]
    records = run(args, task)
    for r in records:
        r["command"] = meta["command"]
    _append(args.json, records, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
