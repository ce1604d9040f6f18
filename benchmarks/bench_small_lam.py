"""Squared + L1 readouts at small lambda (the near-interpolating regime), new against old code.

Dictionaries (built once and cached in ``--cache-dir``, default ``benchmarks/.cache``):

* ``delay6k``: the pure-convex MNIST delay-line dictionary of ``experiments/exp_pure_convex.py
  delay`` (sequential MNIST T = 4, 6000 training images, 1024 Gaussian sources, scale 1, seed 0,
  delay lines: 6000 x ~4083), at :math:`\\lambda = \\beta / \\sqrt P`;
* ``template2048``: the pure-convex dictionary of ``experiments/exp_pure_convex.py delay
  --n-train 55000 --neurons 2048 --family template --leak 0 --scale 0.5`` (seed ``--seed``;
  55000 x ~8020, the solve mnist97b needs at beta 1e-2 and 3e-3);
* ``mnist55k``: the 55k x 16k dictionary of ``benchmarks/bench_dictionary.py solve`` (16384
  Gaussian witnesses, scale 0.3, T = 4; a ``--cache`` file written by that command is read as
  it is).

``run``: for each ``--beta``, one solve with this checkout's code and one with ``--ref`` (the
``src`` folder of another checkout, e.g. ``/work/main/src``), interleaved, each in a fresh
subprocess on one thread (``OMP/MKL/NUMBA_NUM_THREADS=1``), cold start, ``tol`` 1e-6, capped at
``--max-time``. The table prints time, status, the certified relative gap (recomputed on the
original problem by the solver), objective, peak RSS and the load average; ``--json`` keeps it.

Usage::

    python benchmarks/bench_small_lam.py run --problem delay6k --beta 3e-2 1e-2 \\
        --ref /work/main/src --max-time 600 --json benchmarks/results/bench_small_lam_delay6k.json
    python benchmarks/bench_small_lam.py run --problem mnist55k --beta 1e-2 --cache d55k.npz \\
        --codes new --max-time 900 --json benchmarks/results/bench_small_lam_55k.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import _benchlib

HERE = Path(__file__).resolve().parent
NEW_SRC = HERE.parent / "src"
MNIST = os.environ.get("CONVEXSNN_MNIST_DIR", str(HERE.parent.parent / "shared" / "data" / "mnist"))
THREADS = _benchlib.THREADS
_load = _benchlib.load


def _problem(a):
    """``(dictionary, labels)`` of ``--problem`` (built and cached on first use)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from convexsnn.dictionary import SpikeDictionary, build_dictionary
    from convexsnn.tasks.mnist import sequential_mnist

    cache_dir = Path(a.cache_dir)
    if a.problem == "delay6k":
        path = cache_dir / f"delay6k_seed{a.seed}.npz"
        task = sequential_mnist(MNIST, T=4, n_train=6000, n_val=5000, seed=a.seed)
        y = task.train.y
        if path.exists():
            return SpikeDictionary.load(path, storage="packed"), y
        from convexsnn.delay import gaussian_delay_witnesses

        wd = gaussian_delay_witnesses(task.train.X.shape[2], 1024, 4, scale=1.0, seed=a.seed)
        d = build_dictionary(wd, task.train.X, storage="packed")
        cache_dir.mkdir(parents=True, exist_ok=True)
        d.save(path)
        return d, y
    if a.problem == "template2048":
        path = Path(a.cache) if a.cache else cache_dir / f"template2048_seed{a.seed}.npz"
        task = sequential_mnist(MNIST, T=4, n_train=55000, n_val=5000, seed=a.seed)
        y = task.train.y
        if path.exists():
            return SpikeDictionary.load(path, storage="packed"), y
        from convexsnn.delay import template_delay_witnesses

        X = task.train.X
        wd = template_delay_witnesses(
            X, 2048, grid=(X.shape[2] // 28, 28), min_size=(3, 5), quantiles=(0.5, 0.95),
            scale=0.5, seed=a.seed, leak=0.0,
        )  # fmt: skip
        d = build_dictionary(wd, X, storage="packed")
        path.parent.mkdir(parents=True, exist_ok=True)
        d.save(path)
        return d, y
    path = Path(a.cache) if a.cache else cache_dir / "mnist55k_16k.npz"
    task = sequential_mnist(MNIST, T=4, n_train=55000, n_val=5000)
    y = task.train.y
    if path.exists():
        d = SpikeDictionary.load(path, storage="packed")
        if d.n_rows != y.shape[0]:
            raise SystemExit(f"{path} holds {d.n_rows} rows, not {y.shape[0]}")
        return d, y
    from convexsnn.witnesses import gaussian_witnesses

    X = task.train.X
    w = gaussian_witnesses(
        X.shape[2], n_branches=1, hidden_widths=[16384], scale=[0.3], leak=0.99, seed=0,
        dtype=torch.float32,
    )  # fmt: skip
    d = build_dictionary(w, X, storage="packed")
    cache_dir.mkdir(parents=True, exist_ok=True)
    d.save(path)
    del np
    return d, y


def _child(a) -> None:
    """One solve (PYTHONPATH selects the code); its JSON record on the last line of stdout."""
    import logging

    import torch

    torch.set_num_threads(1)
    d, y = _problem(a)
    from convexsnn.convex import solve_readout

    if a.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    P = d.shape[1]
    lam = a.beta[0] / P**0.5
    load0 = _load()
    t = time.perf_counter()
    c0 = time.process_time()
    sol = solve_readout(
        d, y, loss="squared", penalty="l1", lam=lam, n_classes=10, tol=a.tol, max_time=a.max_time
    )
    wall = time.perf_counter() - t
    cpu = time.process_time() - c0
    c = sol.certificate
    print(
        json.dumps(
            {
                "shape": list(d.shape),
                "beta": a.beta[0],
                "lam": lam,
                "solve_s": wall,
                "cpu_s": cpu,
                "iterations": int(c.iterations),
                "info": dict(c.info),
                "status": c.status,
                "rel_gap": float(c.rel_gap),
                "objective": float(c.primal),
                "algorithm": c.algorithm,
                "support": int((sol.W != 0).any(1).sum()),
                "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "load_start": load0,
                "load_end": _load(),
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


def _run_child(src: str, a, beta: float) -> dict:
    env = {**os.environ, "PYTHONPATH": src, **THREADS}
    args = ["_child", "--problem", a.problem, "--beta", str(beta), "--tol", str(a.tol)]
    args += ["--max-time", str(a.max_time), "--cache-dir", a.cache_dir, "--seed", str(a.seed)]
    if a.cache:
        args += ["--cache", a.cache]
    if a.verbose:
        args += ["-v"]
    cmd = [sys.executable, __file__, *args]
    if a.verbose:
        out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    else:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        tail = (out.stderr or "")[-2000:]
        return {"beta": beta, "status": "error", "error": tail, "returncode": out.returncode}
    return json.loads(out.stdout.strip().splitlines()[-1])


def cmd_run(a) -> dict:
    codes = {"new": str(NEW_SRC)}
    if "old" in a.codes:
        if not a.ref or not Path(a.ref, "convexsnn").is_dir():
            raise SystemExit("run: --ref must name the src folder of the code to compare against")
        codes["old"] = a.ref
    codes = {k: v for k, v in codes.items() if k in a.codes}
    _problem(a)  # build the cache once, before any timing
    rows = []
    for beta in a.beta:
        for label, src in codes.items():
            r = _run_child(src, a, beta)
            r.update(code=label, beta=beta)
            rows.append(r)
            if r["status"] == "error":
                print(f"{label:>4} beta {beta:g}: error\n{r['error']}", flush=True)
                continue
            print(
                f"{label:>4} beta {beta:g} {tuple(r['shape'])}: {r['solve_s']:8.1f} s "
                f"(cpu {r.get('cpu_s', float('nan')):.1f} s)  "
                f"{r['status']:>9}  rel gap {r['rel_gap']:.2e}  objective {r['objective']:.12g}  "
                f"support {r['support']}  rss {r['maxrss_mb']:.0f} MB  load {r['load_end']}",
                flush=True,
            )
    print("\n| problem | beta | code | seconds | cpu s | status | rel gap | RSS MB | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["status"] == "error":
            continue
        print(
            f"| {a.problem} {r['shape'][0]}x{r['shape'][1]} | {r['beta']:g} | {r['code']} | "
            f"{r['solve_s']:.1f} | {r.get('cpu_s', float('nan')):.1f} | {r['status']} | "
            f"{r['rel_gap']:.1e} | {r['maxrss_mb']:.0f} | "
            f"{r['load_end'][0]} |"
        )
    return {"runs": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=["run", "_child"])
    p.add_argument("--problem", default="delay6k", choices=["delay6k", "mnist55k", "template2048"])
    p.add_argument("--beta", type=float, nargs="+", default=[3e-2, 1e-2])
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--max-time", type=float, default=600.0)
    p.add_argument("--codes", nargs="+", default=["new", "old"], choices=["new", "old"])
    p.add_argument("--ref", help="src folder of the old code")
    p.add_argument("--cache-dir", default=str(HERE / ".cache"))
    p.add_argument("--cache", help="mnist55k: the dictionary .npz (bench_dictionary --cache)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true", help="solver log on stderr")
    p.add_argument("--json")
    a = p.parse_args(argv)
    if a.command == "_child":
        _child(a)
        return 0
    load0 = _load()
    res = cmd_run(a)
    codes = {"new": str(NEW_SRC)}
    if "old" in a.codes and a.ref:
        codes["old"] = a.ref
    res["meta"] = _benchlib.run_meta(a, codes, load_start=load0)
    _benchlib.write_json(a.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
