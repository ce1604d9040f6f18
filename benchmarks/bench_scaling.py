"""Strong scaling of dictionary building (by witness block) and of the sharded certified solve.

The same problem at 1 and 2 processes (gloo on loopback, one torch thread per process), in the
same run: every rank builds the dictionary of its block of witness branches (deduplicated within
the block), the blocks form a :class:`~convexsnn.distributed.ShardedSpikeOperator` and the readout
is solved with :func:`~convexsnn.distributed.solve_readout_sharded` at a fixed ``lam`` (columns
duplicated across blocks do not change the optimum). Reported per process count: build and solve
seconds (slowest rank), speed-up against 1 process, columns, certificate, peak RSS per rank.

    PYTHONPATH=src python benchmarks/bench_scaling.py            # table
    PYTHONPATH=src python benchmarks/bench_scaling.py --json out.json

Timings on a shared machine depend on its load: the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import _benchlib
import torch


def _task(args):
    from convexsnn.tasks import load_task

    task = load_task("xor", T=args.T, n_train=args.n_train, n_val=20, n_test=20, seed=0)
    return task.train.X, task.train.y


def _witnesses(args, n_inputs):
    from convexsnn.witnesses import gaussian_witnesses

    return gaussian_witnesses(
        n_inputs,
        n_branches=args.branches,
        hidden_widths=[args.width] * args.layers,
        seed=0,
        scale=args.scale,
    )


def _rank(rank: int, world: int, args, lam: float) -> dict:
    import torch.distributed as dist

    from convexsnn.dictionary import build_dictionary
    from convexsnn.distributed import (
        ShardedSpikeOperator,
        column_blocks,
        solve_readout_sharded,
    )

    torch.set_num_threads(1)
    X, y = _task(args)
    w = _witnesses(args, X.shape[2])
    lo, hi = column_blocks(args.branches, world)[rank]
    dist.barrier()
    t0 = time.perf_counter()
    d = build_dictionary(w, X, branches=list(range(lo, hi)), allow_empty=True)
    build = time.perf_counter() - t0
    op = ShardedSpikeOperator.from_local(d)
    dist.barrier()
    t0 = time.perf_counter()
    sol = solve_readout_sharded(
        op, y, loss=args.loss, penalty=args.penalty, lam=lam, tol=args.tol, max_iter=args.max_iter
    )
    solve = time.perf_counter() - t0
    c = sol.certificate
    return {
        "build_s": build,
        "solve_s": solve,
        "P": op.shape[1],
        "local_P": op.counts[rank],
        "primal": c.primal,
        "rel_gap": c.rel_gap,
        "converged": c.converged,
        "algorithm": c.algorithm,
        "iterations": c.iterations,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, default=8)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--branches", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--scale", type=float, default=2.0)
    p.add_argument("--loss", default="softmax", choices=("squared", "hinge", "softmax"))
    p.add_argument("--penalty", default="l1", choices=("l1", "l21"))
    p.add_argument("--frac", type=float, default=0.3, help="lam = frac * lam_max")
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--max-iter", type=int, default=None)
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)

    from convexsnn.convex import lambda_max
    from convexsnn.dictionary import build_dictionary
    from convexsnn.distributed import run_local

    torch.set_num_threads(1)
    X, y = _task(args)
    D = build_dictionary(_witnesses(args, X.shape[2]), X).matrix(torch.float64)
    lam = args.frac * lambda_max(D, y, loss=args.loss, penalty=args.penalty)
    del D
    rows = []
    for k in args.procs:
        res = run_local(_rank, k, args, lam)
        rows.append(
            {
                "procs": k,
                "build_s": max(r["build_s"] for r in res),
                "solve_s": max(r["solve_s"] for r in res),
                "P": res[0]["P"],
                "local_P": [r["local_P"] for r in res],
                "primal": res[0]["primal"],
                "rel_gap": res[0]["rel_gap"],
                "converged": res[0]["converged"],
                "algorithm": res[0]["algorithm"],
                "iterations": res[0]["iterations"],
                "peak_rss_mb": [round(r["peak_rss_mb"], 1) for r in res],
            }
        )
    base = rows[0]
    for r in rows:
        r["build_speedup"] = base["build_s"] / r["build_s"]
        r["solve_speedup"] = base["solve_s"] / r["solve_s"]
    load = os.getloadavg()
    print(
        f"xor T={args.T} n={args.n_train} branches={args.branches} x {args.layers}x{args.width}"
        f" {args.loss}+{args.penalty} lam={lam:.4g} tol={args.tol:g}; cpus={os.cpu_count()}"
        f" load={load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}"
    )
    print(
        f"{'procs':>5} {'P':>6} {'build s':>8} {'x':>5} {'solve s':>8} {'x':>5} "
        f"{'primal':>14} {'rel_gap':>9} {'iters':>6}  peak RSS MB per rank"
    )
    for r in rows:
        print(
            f"{r['procs']:>5} {r['P']:>6} {r['build_s']:>8.2f} {r['build_speedup']:>5.2f} "
            f"{r['solve_s']:>8.2f} {r['solve_speedup']:>5.2f} {r['primal']:>14.10g} "
            f"{r['rel_gap']:>9.2e} {r['iterations']:>6}  {r['peak_rss_mb']}"
            + ("" if r["converged"] else "  NOT converged")
        )
    _benchlib.write_json(args.json, {"args": vars(args), "lam": lam, "loadavg": load, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
