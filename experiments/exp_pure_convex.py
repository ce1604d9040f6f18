"""Pure convex training on sequential MNIST: delay-line witnesses and column generation.

Usage::

    # delay-line witnesses (per-step readout) vs the same sources read at the last step only
    python experiments/exp_pure_convex.py delay --n-train 6000 --neurons 1024 --json out/pure.json
    # column generation over one-layer witnesses with delay lines
    python experiments/exp_pure_convex.py colgen --n-train 6000 --budget 2048 --json out/pure.json

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
from convexsnn.delay import gaussian_delay_witnesses
from convexsnn.dictionary import build_dictionary
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


def _fit_record(name: str, w, task, args) -> dict:
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = fit_convex(
            w,
            task,
            loss=args.loss,
            penalty="l1",
            regs=args.betas,
            tol=args.tol,
            max_time=args.max_time,
            check=True,
            solver_options=_solver_options(args),
        )
    cert = fit.solution.certificate
    rec = {
        "method": name,
        "n_train": task.train.n,
        "T": args.T,
        "seed": args.seed,
        "sources": args.neurons,
        "scale": args.scale,
        "loss": args.loss,
        "n_columns": fit.dictionary.n_columns,
        "beta": fit.reg,
        "support": int(fit.solution.support.numel()),
        "train_accuracy": fit.train_accuracy,
        "val_accuracy": fit.val_accuracy,
        "test_accuracy": fit.test_accuracy,
        "rel_gap": cert.rel_gap,
        "converged": bool(cert.converged),
        "status": cert.status,
        "iterations": cert.iterations,
        "algorithm": cert.algorithm,
        "solver_info": cert.to_dict()["info"],
        "solve_seconds": cert.seconds,
        "prediction_agreement_test": fit.checks.get("test", {}).get("prediction_agreement"),
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


def run_delay(args, task) -> list[dict]:
    wd = gaussian_delay_witnesses(
        task.train.X.shape[2], args.neurons, args.T, scale=args.scale, seed=args.seed
    )
    out = [] if args.no_delay else [_fit_record("CVX-delay", wd, task, args)]
    if args.control:
        wl = gaussian_witnesses(
            task.train.X.shape[2],
            n_branches=args.neurons,
            hidden_widths=[1],
            scale=args.scale,
            seed=args.seed,
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["delay", "colgen"])
    ap.add_argument("--n-train", type=int, default=6000)
    ap.add_argument("--n-val", type=int, default=5000)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--neurons", type=int, default=1024, help="source witness neurons")
    ap.add_argument("--scale", type=float, default=1.0)
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
    ap.add_argument("--pool", type=int, default=2000)
    ap.add_argument("--budget", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.no_delay and not (args.what == "delay" and args.control):
        ap.error("--no-delay needs 'delay --control' (there would be nothing to fit)")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s"
    )
    torch.set_num_threads(args.threads)
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
    records = run_delay(args, task) if args.what == "delay" else run_colgen(args, task)
    for r in records:
        r["command"] = meta["command"]
    _append(args.json, records, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
