"""Softmax + l1 on the sequential-MNIST paper dictionary: Hessian-free proximal Newton with the
face phase (``solver="newton"``: coordinate-descent proximal steps, Newton-CG on the identified
face, ``convex/_softmax_face.py``, with the explicit face Hessian where the face is small), the
same with conjugate gradients on Hessian-vector products only (``newton-cg``,
``_softmax_face.EXPLICIT = False``), the same solver without the face phase (``newton-noface``,
``_softmax_cd.FACE_PHASE = False``) and FISTA (``solver="fista"``), interleaved in one run.

The dictionary is the CVX one of a configuration of ``convexsnn.experiments.mnist``
(``--config``: ``"paper"``, 6000 x 984, or ``"full"``, 55000 x 3966; seed 0, Gaussian witnesses
of the first scale of its grid), built on its training rows and handed to the solver as the
bit-packed operator (``SpikeDictionary.operator(float64)``, as the pipelines do); ``reg`` is the
pipeline's :math:`\\beta` (``lam = beta * lam_max``). Above ``NEWTON_MAX_ENTRIES`` (the
``full`` dictionary) ``solver="newton"`` goes through working sets. Every solve reports its
certificate (recomputed by the driver on the original problem), its status and the process's
peak RSS so far (``ru_maxrss``).

Usage::

    CONVEXSNN_MNIST_DIR=/work/shared/data/mnist OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        PYTHONPATH=src python benchmarks/bench_softmax_newton.py --max-time-new 600 \\
        --max-time-prev 120 --max-time-fista 60
    # the sequential-MNIST full configuration (55000 x 3966), Newton through working sets
    ... bench_softmax_newton.py --config full --betas 1e-2 1e-3 --max-time-new 1200 \\
        --max-time-prev 0 --max-time-fista 250 \\
        --out benchmarks/results/bench_softmax_newton_55k.json
    # a saved dictionary (D uint8 n x P, y), e.g. the full-rec SG-CVX one at 55000 x 968
    ... bench_softmax_newton.py --dictionary fullrec_s0_dict.npz --betas 1e-3 1e-2 \
        --max-time-new 600 --max-time-cg 600 --max-time-prev 0 --max-time-fista 300
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import convexsnn.convex._softmax_cd as softmax_cd
import convexsnn.convex._softmax_face as softmax_face
from convexsnn.convex import ConvergenceWarning, solve_readout
from convexsnn.dictionary.build import build_dictionary
from convexsnn.dictionary.operator import SpikeOperator
from convexsnn.experiments.mnist import _load_task, config_for
from convexsnn.witnesses import gaussian_witnesses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--betas", type=float, nargs="+", default=[1e-1, 1e-2, 1e-3])
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--max-time-new", type=float, default=600.0)
    ap.add_argument("--max-time-prev", type=float, default=120.0)
    ap.add_argument("--max-time-fista", type=float, default=60.0)
    ap.add_argument("--max-time-cg", type=float, default=0.0)
    ap.add_argument("--config", default="paper", choices=["paper", "full"])
    ap.add_argument(
        "--dictionary",
        default=None,
        help="a saved dictionary (.npz with D, uint8 n x P, and y) instead of --config's",
    )
    ap.add_argument("--out", default="benchmarks/results/bench_softmax_newton.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if args.dictionary is not None:
        z = np.load(args.dictionary)
        Db = z["D"]
        D = SpikeOperator(
            packed=torch.from_numpy(np.packbits(Db, axis=0)),
            n_rows=Db.shape[0],
            dtype=torch.float64,
        )
        y = torch.from_numpy(z["y"]).long()
        del Db
        case = f"saved dictionary {args.dictionary}"
    else:
        cfg = config_for(args.config)
        data_dir = os.environ.get("CONVEXSNN_MNIST_DIR", "/work/shared/data/mnist")
        task = _load_task(cfg, 0, data_dir)
        cc = cfg["cvx"]
        w = gaussian_witnesses(
            task.train.X.shape[2],
            n_branches=cc["n_branches"],
            hidden_widths=list(cc["widths"]),
            scale=list(cc["scales"][0]),
            seed=0,
            leak=cfg["leak"],
            theta=cfg["theta"],
            reset=cfg["reset"],
            dtype=torch.float32,
        )
        D = build_dictionary(w, task.train.X, readout=cfg["readout"]).operator(torch.float64)
        y = task.train.y
        case = f"sequential MNIST {args.config}, seed 0, gaussian scale {cc['scales'][0]}"
    t_build = time.perf_counter() - t0
    n, P = D.shape
    out = {
        "case": case,
        "shape": [int(n), int(P)],
        "build_seconds": t_build,
        "tol": args.tol,
        "threads": 1,
        "load_start": os.getloadavg(),
        "runs": [],
    }
    print(f"dictionary {n} x {P} built in {t_build:.1f} s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    for beta in args.betas:
        for name, solver, mt in (
            ("newton", "newton", args.max_time_new),
            ("newton-cg", "newton", args.max_time_cg),
            ("newton-noface", "newton", args.max_time_prev),
            ("fista", "fista", args.max_time_fista),
        ):
            if mt <= 0:
                continue
            softmax_cd.FACE_PHASE = name != "newton-noface"
            softmax_face.EXPLICIT = name == "newton"
            load = os.getloadavg()[0]
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                sol = solve_readout(
                    D,
                    y,
                    loss="softmax",
                    penalty="l1",
                    reg=beta,
                    n_classes=10,
                    tol=args.tol,
                    max_time=mt,
                    solver=solver,
                )
            c = sol.certificate
            rec = {
                "beta": beta,
                "solver": name,
                "algorithm": c.algorithm,
                "status": c.status,
                "converged": bool(c.converged),
                "rel_gap": float(c.rel_gap),
                "primal": float(c.primal),
                "dual": float(c.dual),
                "iterations": int(c.iterations),
                "seconds": time.perf_counter() - t,
                "max_time": mt,
                "load_1min": load,
                "max_working_set": c.info.get("max_working_set"),
                "nonzeros": c.info.get("nonzeros"),
                "peak_rss_mb_so_far": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
            out["runs"].append(rec)
            print(json.dumps(rec), flush=True)
            Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
