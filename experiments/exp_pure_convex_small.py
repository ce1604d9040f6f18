"""Pure convex training on small sequence tasks: delay-line witnesses and column generation.

Usage::

    # column generation (the CVX-CG pipeline), leak and scale chosen on validation
    python experiments/exp_pure_convex_small.py cvx-cg --task parity_k2 -T 12 --leaks 0.99 1.0 \\
        --json experiments/results/pure_convex_small.json
    # column generation over two-layer delay witnesses (window neurons), depth L = 5
    python experiments/exp_pure_convex_small.py cvx-cg --task xor -T 14 --family two_layer_delay \\
        --depth 5 --rounds 20 --pool 1024 --budget 2048 \\
        --json experiments/results/pure_convex_small.json
    # automata: window neurons over input relays, fitted and local proposals, steepest edge
    python experiments/exp_pure_convex_small.py cvx-cg --task tomita3_paper -T 20 --rounds 30 \
        --family two_layer_delay --depth 3 --group 256 --proposals dual sparse fit local \
        --rule steepest --pool 1024 --budget 2048 --init-sources 64 --leaks 1.0 --betas 0.1 \
        --max-time 300 --json experiments/results/pure_convex_small.json
    # automata: a recurrent cascade (recurrent witnesses and counter modules), leak 1
    python experiments/exp_pure_convex_small.py cvx-cg --task dfa -T 12 --family recurrent \
        --proposals sparse fit local counter --rule steepest --rounds 20 --pool 512 \
        --budget 512 --init-sources 32 --leaks 1.0 --betas 0.1 --max-time 300 \
        --json experiments/results/pure_convex_small.json
    # automata: the recurrent cascade with automaton modules (hill climbing over transition
    # tables), one JSON file per cell (table: experiments/automata_table.py)
    python experiments/exp_pure_convex_small.py cvx-cg --task dfa -T 20 --family recurrent \
        --proposals sparse local automaton --rule steepest --rounds 4 --pool 96 --budget 512 \
        --init-sources 32 --leaks 1.0 --betas 0.1 --max-time 300 \
        --cell-dir experiments/results/automata_cg
    # a random Gaussian delay-line dictionary (CVX with witnesses="delay"), depth L
    python experiments/exp_pure_convex_small.py cvx-delay --task xor -T 11 --depth 5 \\
        --json experiments/results/pure_convex_small.json

No SG-trained weight anywhere. Every record carries: validation / test / 2T (OOD) accuracy of the
reconstructed ``ParallelSNN``'s own forward pass (checked against the convex readout on every
split), the certificate of the final solve (relative gap, status, ``certified_label``), the
pricing gap (``cvx-cg``: the last round's, over the candidates it priced; ``cvx-delay`` with
one-layer witnesses: over ``--price-pool`` fresh Gaussian sources of the chosen leak and scale,
priced against the final dual), the command line, threads and load average. Records are appended
to ``--json`` (written atomically); with ``--cell-dir`` each record is also written to its own
file ``<task>_T<T>_seed<seed>.json`` there (replacing the cell's previous record).
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
from convexsnn.colgen import price_witnesses
from convexsnn.convex import ConvergenceWarning, certified_label
from convexsnn.delay import delay_line_witnesses
from convexsnn.pipelines import evaluate_model, run_method
from convexsnn.selection import fit_convex
from convexsnn.tasks import load_task
from convexsnn.witnesses import gaussian_witnesses


def _append(path: Path | None, record: dict) -> None:
    if path is None:
        return
    old = {"experiment": "pure_convex_small", "records": []}
    if path.exists():
        with open(path) as f:
            old = json.load(f)
    old["records"].append(record)
    atomic_write_json(path, old)


def _task(args):
    return load_task(
        args.task,
        T=args.T,
        n_train=args.sizes[0],
        n_val=args.sizes[1],
        n_test=args.sizes[2],
        ood_lengths=[2 * args.T],
        seed=args.seed,
    )


def run_cg(args, task) -> dict:
    cfg = {
        "leaks": tuple(args.leaks),
        "scales": tuple(args.scales),
        "regs": tuple(args.betas),
        "loss": args.loss,
        "penalty": "l1",
        "reset": args.reset,
        "tol": args.tol,
        "max_time": args.max_time,
        "cg_rounds": args.rounds,
        "cg_pool": args.pool,
        "cg_budget": args.budget,
        "cg_init_sources": args.init_sources,
        "cg_pricing_tol": args.pricing_tol,
        "cg_backend": args.backend,
        "cg_family": args.family,
        "cg_group": args.group,
        "cg_layer1_sources": args.layer1_sources,
        "cg_proposals": tuple(args.proposals) if args.proposals else None,
        "cg_rule": args.rule,
        "depth": args.depth,
    }
    rec = run_method("CVX-CG", task, config=cfg, seed=args.seed)
    if rec.get("error"):
        raise SystemExit(f"CVX-CG failed: {rec['error']}")
    p = rec["pricing"]
    return {
        "certificate": rec["certificate"],
        "certified": rec["certified"],
        "pricing_gap": p["pricing_gap"],
        "union_rel_gap": p["union_rel_gap"],
        "pricing_over": f"{p['n_candidates']} candidates of the last round",
        "stopped": p["stopped"],
        "rounds": p["rounds"],
        "chosen": rec["chosen"],
        "n_columns": rec["dictionary"]["n_columns"],
        "kept_neurons": rec["kept_neurons"],
        "n_witness_neurons": rec["n_witness_neurons"],
        "val_accuracy": rec["val_accuracy"],
        "test_accuracy": rec["test_accuracy"],
        "ood_accuracy": rec["ood_accuracy"],
        "reconstruction_check": rec["reconstruction_check"],
        "selection_grid": rec["selection_grid"],
        "config": cfg,
    }


def run_delay(args, task) -> dict:
    widths = [args.width] * (args.depth - 1)
    grid = []
    for leak in args.leaks:
        for scale in args.scales:
            base = gaussian_witnesses(
                task.input_size,
                n_branches=args.neurons,
                hidden_widths=widths,
                scale=scale,
                seed=args.seed,
                leak=leak,
                reset=args.reset,
            )
            grid.append(({"leak": leak, "scale": scale}, delay_line_witnesses(base, task.train.T)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = fit_convex(
            grid,
            task,
            loss=args.loss,
            penalty="l1",
            betas=args.betas,
            criterion="accuracy",
            ties="sparsity",
            tol=args.tol,
            max_time=args.max_time,
            check=True,
        )
    ev = evaluate_model(fit.model, task)
    cert = fit.solution.certificate.to_dict()
    out = {
        "certificate": cert,
        "certified": certified_label(cert),
        "chosen": {**fit.witness_settings, "reg_beta": fit.reg, "lam": float(fit.solution.lam)},
        "n_columns": fit.dictionary.n_columns,
        "kept_neurons": int(fit.solution.support.numel()),
        "n_witness_neurons": int(fit.witnesses.n_witness_neurons),
        "val_accuracy": ev["val_accuracy"],
        "test_accuracy": ev["test_accuracy"],
        "ood_accuracy": ev["ood_accuracy"],
        "reconstruction_check": {
            k: {kk: v.get(kk) for kk in ("prediction_agreement", "n_mismatch")}
            for k, v in fit.checks.items()
        },
        "selection_grid": [
            {k: g.get(k) for k in ("beta", "val_accuracy", "support")}
            | {
                k: g["certificate"].get(k)
                for k in ("rel_gap", "converged", "status", "iterations", "seconds")
            }
            | {"witnesses": g.get("witness_settings")}
            for g in fit.grid
        ],
        "pricing_gap": None,
        "pricing_over": None,
        "config": {
            "neurons": args.neurons,
            "depth": args.depth,
            "width": args.width,
            "leaks": args.leaks,
            "scales": args.scales,
            "betas": args.betas,
            "loss": args.loss,
            "reset": args.reset,
            "tol": args.tol,
            "max_time": args.max_time,
        },
    }
    if args.depth == 2 and args.width == 1 and args.price_pool > 0:
        # the pricing gap of the random dictionary: fresh sources of the same family
        leak, scale = fit.witness_settings["leak"], fit.witness_settings["scale"]
        g = torch.Generator().manual_seed(10_000 + args.seed)
        cands = scale * torch.randn(
            task.input_size, args.price_pool, generator=g, dtype=torch.float64
        )
        prices = price_witnesses(
            cands,
            task.train.X,
            fit.solution.dual,
            float(fit.solution.lam),
            delay=True,
            leak=leak,
            reset=args.reset,
        )
        out["pricing_gap"] = float(prices.max()) - 1.0
        out["pricing_over"] = (
            f"{args.price_pool} fresh Gaussian sources (leak {leak}, scale {scale})"
        )
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method", choices=["cvx-cg", "cvx-delay"])
    ap.add_argument("--task", required=True)
    ap.add_argument("-T", type=int, required=True)
    ap.add_argument("--sizes", type=int, nargs=3, default=[2000, 2000, 4000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--leaks", type=float, nargs="+", default=[0.99])
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0])
    ap.add_argument("--betas", type=float, nargs="+", default=[0.1, 0.01])
    ap.add_argument("--loss", default="squared", choices=["squared", "softmax"])
    ap.add_argument("--reset", default="subtract", choices=["subtract", "zero"])
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--max-time", type=float, default=None, help="per solve (default: none)")
    # cvx-cg
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pool", type=int, default=512)
    ap.add_argument("--budget", type=int, default=2048)
    ap.add_argument("--init-sources", type=int, default=64)
    ap.add_argument("--pricing-tol", type=float, default=1e-3)
    ap.add_argument("--backend", default="local", choices=["local", "ray"])
    ap.add_argument(
        "--family",
        default="delay",
        choices=["delay", "two_layer_delay", "recurrent"],
        help="cvx-cg witness family (two_layer_delay: window neurons over relayed layer 1; "
        "recurrent: a recurrent cascade grown neuron by neuron, with counter modules)",
    )
    ap.add_argument("--group", type=int, default=32, help="two_layer_delay: windows per branch")
    ap.add_argument("--layer1-sources", type=int, default=0, help="two_layer_delay: Gaussian")
    ap.add_argument(
        "--rule",
        default="price",
        choices=["price", "steepest"],
        help="cvx-cg: rank violating candidates by price or steepest edge",
    )
    ap.add_argument(
        "--proposals",
        nargs="+",
        default=None,
        help="cvx-cg proposal kinds (default: the family's; e.g. dual sparse fit local)",
    )
    # cvx-delay
    ap.add_argument("--neurons", type=int, default=128, help="branches (sources per layer 1)")
    ap.add_argument(
        "--depth", "-L", type=int, default=None, help="depth counting the output (default 2, 3)"
    )
    ap.add_argument("--width", type=int, default=1, help="neurons per branch and layer")
    ap.add_argument("--price-pool", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--cell-dir", type=Path, default=None, help="also write the record to DIR/<cell>.json"
    )
    args = ap.parse_args(argv)
    if args.depth is None:
        args.depth = 3 if args.family in ("two_layer_delay", "recurrent") else 2
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    task = _task(args)
    res = run_cg(args, task) if args.method == "cvx-cg" else run_delay(args, task)
    rec = {
        "method": {"cvx-cg": "CVX-CG", "cvx-delay": "CVX-delay"}[args.method],
        "task": args.task,
        "T": args.T,
        "L": args.depth if args.method == "cvx-delay" or args.family != "delay" else 2,
        "family": args.family if args.method == "cvx-cg" else "delay",
        "seed": args.seed,
        "sizes": args.sizes,
        **res,
        "rel_gap": res["certificate"]["rel_gap"],
        "status": res["certificate"].get("status"),
        "seconds": time.perf_counter() - t0,
        "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
        "threads": args.threads,
        "load_average_start": load0,
        "load_average_end": os.getloadavg()[0],
        "machine": platform.node(),
    }
    ood = {k: round(100 * v, 2) for k, v in rec["ood_accuracy"].items()}
    pg = rec["pricing_gap"]
    print(
        f"{rec['method']} {args.task} T={args.T}: val {100 * rec['val_accuracy']:.2f} test "
        f"{100 * rec['test_accuracy']:.2f} ood {ood} | {rec['certified']} (rel gap "
        f"{rec['rel_gap']:.1e}) | pricing gap "
        f"{'-' if pg is None or not math.isfinite(pg) else format(pg, '.3g')} | "
        f"{rec['n_columns']} columns, chosen {rec['chosen']} | {rec['seconds']:.0f} s",
        flush=True,
    )
    _append(args.json, rec)
    if args.cell_dir is not None:
        args.cell_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.cell_dir / f"{args.task}_T{args.T}_seed{args.seed}.json", rec)


if __name__ == "__main__":
    main()
