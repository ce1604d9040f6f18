"""Spike-dictionary build and packed products, old against new, in one run.

``build``: sequential MNIST (T steps, ``--n`` training images) through one layer of ``--width``
Gaussian witness neurons (scale 0.3, leak 0.99, float32, spike readout at the last step). Each
repetition builds the dictionary once with this checkout's code and once with a reference
checkout (``--ref``, required: the ``src`` folder of e.g. a ``git worktree`` of an earlier
commit), alternating, each in a fresh subprocess with one torch thread; both must give the same
packed bits (checked by sha256).

``products``: on the dictionary built by this checkout, :math:`DW` and :math:`D^\\top R`
(``C = 10`` columns, float64) with the packed operator (byte lookup tables), with the previous
packed path (unpack a block of rows, then BLAS) and with a dense float64 matrix (BLAS).

``solve``: build (packed storage) and squared + L1 readout solve to ``--tol`` with
``solver=--solver`` on the whole dictionary; prints times, gap and the peak RSS of the process.

Usage::

    python benchmarks/bench_dictionary.py build --n 5504 --reps 3 [--json out.json]
    python benchmarks/bench_dictionary.py products --n 13760
    python benchmarks/bench_dictionary.py solve --n 55000 --width 16384 --json out.json
    python benchmarks/bench_dictionary.py subset --n 10000 --width 4096 --ratio 1e-4 \
        --cache d55k.npz --ref /work/main/src --json out.json
    python benchmarks/bench_dictionary.py gram --width 8192 --reps 1 --cache d55k.npz \
        --ref /work/main/src --json out.json

``gram``: on the first ``--width`` columns of the cached dictionary (``--cache``), the Gram
matrix :math:`D^\top D / n` of the first ``--width / 2`` columns by packed popcounts, its ridge
inverse, then the Gram columns of the other half and the inverse grown by them (the steps of the
squared + L1 active-set solver when its working set doubles), this checkout against ``--ref``,
alternating, each in a fresh subprocess with one thread; times, peak RSS, and the largest
difference between the two codes' grown inverses (relative to its largest entry).

``subset``: squared + L1 at ``--ratio`` lam_max on the first ``--n`` rows and ``--width``
columns of the cached dictionary (``--cache``, written by ``solve --cache``), this checkout
against ``--ref``, each in a fresh subprocess with one thread.
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
#: MNIST IDX folder: $CONVEXSNN_MNIST_DIR, else ``shared/data/mnist`` beside the repository
MNIST = os.environ.get("CONVEXSNN_MNIST_DIR", str(HERE.parent.parent / "shared" / "data" / "mnist"))


def _setup(n: int, T: int, width: int, seed: int = 0):
    import torch

    torch.set_num_threads(1)
    from convexsnn.tasks.mnist import sequential_mnist
    from convexsnn.witnesses import gaussian_witnesses

    n_val = 5000
    task = sequential_mnist(MNIST, T=T, n_train=n, n_val=n_val)
    X, y = task.train.X, task.train.y
    kw = dict(n_branches=1, hidden_widths=[width], scale=[0.3], seed=seed, dtype=torch.float32)
    try:
        w = gaussian_witnesses(X.shape[2], leak=0.99, **kw)
    except TypeError:  # a reference checkout from before the leak/reg renaming (--ref)
        w = gaussian_witnesses(X.shape[2], beta=0.99, **kw)
    return X, y, w


def _child_build(a) -> None:
    """Runs in a subprocess (PYTHONPATH selects the code): one build, JSON on stdout."""
    import hashlib

    X, _, w = _setup(a.n, a.T, a.width)
    from convexsnn.dictionary import build_dictionary

    t0 = time.perf_counter()
    c0 = time.process_time()
    d = build_dictionary(w, X, storage=a.storage)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    bits = d.packed_bits()
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "shape": list(d.shape),
                "sha256": hashlib.sha256(bits.tobytes()).hexdigest(),
                "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def _run_child(src: str, args: list[str]) -> dict:
    """Run this script's hidden sub-command ``args`` with the code under ``src`` on one thread,
    in a fresh process; its JSON record (the last line it prints)."""
    env = {**os.environ, "PYTHONPATH": src, **_benchlib.THREADS}
    cmd = [sys.executable, __file__, *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


_load = _benchlib.load


def cmd_build(a) -> dict:
    if not a.ref or not Path(a.ref, "convexsnn").is_dir():
        raise SystemExit("build: --ref must name the src folder of the code to compare against")
    rows = []
    for rep in range(a.reps):
        for label, src in (("new", str(NEW_SRC)), ("old", a.ref)):
            r = _run_child(
                src,
                ["_child", "--n", str(a.n), "--T", str(a.T), "--width", str(a.width)]
                + ["--storage", a.storage],
            )
            r.update(code=label, rep=rep, load=_load())
            rows.append(r)
            print(
                f"{label:>4} rep {rep}: wall {r['wall_s']:7.2f} s  cpu {r['cpu_s']:7.2f} s  "
                f"shape {tuple(r['shape'])}  maxrss {r['maxrss_mb']:.0f} MB  load {r['load']}",
                flush=True,
            )
    same = len({r["sha256"] for r in rows}) == 1
    med = {}
    for label in ("old", "new"):
        walls = sorted(r["wall_s"] for r in rows if r["code"] == label)
        cpus = sorted(r["cpu_s"] for r in rows if r["code"] == label)
        med[label] = {"wall_s": walls[len(walls) // 2], "cpu_s": cpus[len(cpus) // 2]}
    speed = {k: med["old"][k] / med["new"][k] for k in ("wall_s", "cpu_s")}
    print(f"\n{'code':>5} {'median wall s':>14} {'median cpu s':>13}")
    for label in ("old", "new"):
        print(f"{label:>5} {med[label]['wall_s']:14.2f} {med[label]['cpu_s']:13.2f}")
    print(f"speed-up: wall {speed['wall_s']:.2f}x, cpu {speed['cpu_s']:.2f}x; same bits: {same}")
    return {"runs": rows, "median": med, "speedup": speed, "same_bits": same}


def cmd_products(a) -> dict:
    sys.path.insert(0, str(NEW_SRC))
    import torch

    X, _, w = _setup(a.n, a.T, a.width)
    from convexsnn.convex.linear_operator import DictionaryOperator
    from convexsnn.dictionary import build_dictionary

    d = build_dictionary(w, X, storage="packed")
    n, P = d.shape
    g = torch.Generator().manual_seed(0)
    W = torch.randn(P, 10, generator=g, dtype=torch.float64)
    R = torch.randn(n, 10, generator=g, dtype=torch.float64)
    lut = d.operator()
    old = d.operator(chunk_rows=8192 + 8)  # a separate cached operator, forced to unpack
    old._lut = lambda: None
    dense = DictionaryOperator(d.matrix(torch.float64), check_binary=False)
    ref_mm, ref_rm = dense.matmul(W), dense.rmatmul(R)
    res = {}
    for _rep in range(a.reps):
        for name, op in (("lut", lut), ("unpack", old), ("dense", dense)):
            t = time.perf_counter()
            mm = op.matmul(W)
            t_mm = time.perf_counter() - t
            t = time.perf_counter()
            rm = op.rmatmul(R)
            t_rm = time.perf_counter() - t
            err = max(
                float((mm - ref_mm).abs().max() / ref_mm.abs().max()),
                float((rm - ref_rm).abs().max() / ref_rm.abs().max()),
            )
            res.setdefault(name, []).append({"DW_s": t_mm, "DtR_s": t_rm, "rel_err": err})
    print(f"D: {n} x {P}, C = 10, float64, one thread, load {_load()}")
    print(f"{'operator':>9} {'D@W s':>8} {'D^T R s':>8} {'max rel err':>12}")
    summary = {}
    for name, rs in res.items():
        mm = sorted(r["DW_s"] for r in rs)[len(rs) // 2]
        rm = sorted(r["DtR_s"] for r in rs)[len(rs) // 2]
        e = max(r["rel_err"] for r in rs)
        summary[name] = {"DW_s": mm, "DtR_s": rm, "rel_err": e}
        print(f"{name:>9} {mm:8.3f} {rm:8.3f} {e:12.1e}")
    return {"shape": [n, P], "runs": res, "median": summary}


def cmd_solve(a) -> dict:
    sys.path.insert(0, str(NEW_SRC))
    import torch

    t_all = time.perf_counter()
    X, y, w = _setup(a.n, a.T, a.width)
    t_data = time.perf_counter() - t_all
    from convexsnn.convex import solve_readout
    from convexsnn.dictionary import build_dictionary

    t = time.perf_counter()
    cached = bool(a.cache) and Path(a.cache).exists()
    if cached:
        from convexsnn.dictionary import SpikeDictionary

        d = SpikeDictionary.load(a.cache, storage="packed")
        if d.n_rows != X.shape[0]:
            raise SystemExit(f"--cache {a.cache} holds {d.n_rows} rows, not --n {X.shape[0]}")
    else:
        d = build_dictionary(w, X, storage="packed")
        if a.cache:
            d.save(a.cache)
    t_build = time.perf_counter() - t
    rss_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    how = "loaded" if cached else "built"
    print(f"{how} {d.shape} in {t_build:.1f} s (data {t_data:.1f} s), rss {rss_build:.0f} MB")
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from convexsnn.convex import lambda_max

    lam_max = float(lambda_max(d, y, loss="squared", penalty="l1", n_classes=10))
    lam = a.reg / d.shape[1] ** 0.5
    print(
        f"lam = reg/sqrt(P) = {lam:.4g}, lam_max = {lam_max:.4g}, lam/lam_max = {lam / lam_max:.3g}"
    )
    t = time.perf_counter()
    sol = solve_readout(
        d,
        y,
        loss="squared",
        penalty="l1",
        reg=a.reg,
        n_classes=10,
        tol=a.tol,
        solver=a.solver,
        max_time=a.max_time,
    )
    t_solve = time.perf_counter() - t
    cert = sol.certificate
    out = {
        "shape": list(d.shape),
        "build_s": t_build,
        "dictionary_cached": cached,
        "data_s": t_data,
        "solve_s": t_solve,
        "total_s": time.perf_counter() - t_all,
        "rel_gap": float(cert.rel_gap),
        "status": getattr(cert, "status", None),
        "objective": float(cert.primal),
        "support": int((sol.W != 0).any(1).sum()),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "packed_mb": d.nbytes / 2**20,
        "reg": a.reg,
        "lam": lam,
        "lam_max": lam_max,
        "lam_over_lam_max": lam / lam_max,
        "iterations": int(cert.iterations),
        "algorithm": cert.algorithm,
        "info": dict(cert.info),
        "tol": a.tol,
        "solver": a.solver,
        "load_end": _load(),
        "torch_threads": torch.get_num_threads(),
    }
    for k, v in out.items():
        print(f"{k:>14}: {v}")
    return out


def _child_subset(a) -> None:
    """Runs in a subprocess (PYTHONPATH selects the code): squared + L1 on the first ``--n`` rows
    and ``--width`` columns of the cached dictionary, at ``--ratio`` lam_max; JSON on stdout."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from convexsnn.convex import lambda_max, solve_readout
    from convexsnn.dictionary import SpikeDictionary
    from convexsnn.dictionary.operator import SpikeOperator

    d = SpikeDictionary.load(a.cache, storage="packed")
    _, y, _ = _setup(d.n_rows, a.T, 8)  # the labels of the cached rows
    y = y[: a.n]
    bits = d.packed_bits()[: (a.n + 7) // 8, : a.width]
    if a.n % 8:
        bits = bits.copy()
        bits[-1] &= np.uint8((0xFF << (8 - a.n % 8)) & 0xFF)
    op = SpikeOperator(packed=torch.from_numpy(np.ascontiguousarray(bits)), n_rows=a.n)
    lam = a.ratio * float(lambda_max(op, y, n_classes=10))
    t = time.perf_counter()
    sol = solve_readout(op, y, lam=lam, n_classes=10, tol=a.tol, max_time=a.max_time)
    wall = time.perf_counter() - t
    c = sol.certificate
    print(
        json.dumps(
            {
                "solve_s": wall,
                "status": c.status,
                "rel_gap": float(c.rel_gap),
                "objective": float(c.primal),
                "algorithm": c.algorithm,
                "nonzeros": int((sol.W != 0).sum()),
                "support": int((sol.W != 0).any(1).sum()),
                "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def _child_gram(a) -> None:
    """Runs in a subprocess (PYTHONPATH selects the code): Gram columns and a grown inverse."""
    import hashlib

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from convexsnn.convex._inner import gram_columns
    from convexsnn.convex._polish import _grown_inverse
    from convexsnn.dictionary import SpikeDictionary

    d = SpikeDictionary.load(a.cache, storage="packed")
    n = d.n_rows
    op = d.operator().columns(torch.arange(a.width))
    wts = torch.full((n,), 1.0 / n, dtype=torch.float64)
    Y = torch.zeros(n, 1, dtype=torch.float64)
    m = a.width // 2
    t = {}
    t0 = time.perf_counter()
    H_old, _ = gram_columns(op.columns(torch.arange(m)), wts, Y)
    t["gram_half_s"] = time.perf_counter() - t0
    rho = 1e-6 * float(H_old.diagonal().max())
    t0 = time.perf_counter()
    M = H_old.clone()
    M.diagonal().add_(rho)
    inv_old = torch.cholesky_inverse(torch.linalg.cholesky(M)).numpy()
    del M
    t["inverse_half_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    Hk, _ = gram_columns(op, wts, Y, torch.arange(m, a.width))
    H = torch.empty(a.width, a.width, dtype=torch.float64)
    H[:, m:] = Hk
    H[m:, :] = Hk.T
    H[:m, :m] = H_old
    del Hk, H_old
    t["gram_grow_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    inv = _grown_inverse(H.numpy(), inv_old, rho, np.arange(m))
    t["inverse_grow_s"] = time.perf_counter() - t0
    assert inv is not None
    np.save(a.json + ".inv.npy", inv[:: max(1, a.width // 512), :: max(1, a.width // 512)])
    t.update(
        width=a.width,
        n=n,
        maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        H_sha256=hashlib.sha256(H.numpy().tobytes()).hexdigest(),
    )
    print(json.dumps(t))


def cmd_gram(a) -> dict:
    """This checkout against ``--ref``: Gram columns and the grown inverse (alternating)."""
    import numpy as np

    if not a.ref or not a.cache or not a.json:
        raise SystemExit("gram: --ref, --cache and --json are required")
    rows = []
    for rep in range(a.reps):
        for label, src in (("new", str(NEW_SRC)), ("old", a.ref)):
            args = ["_gram", "--width", str(a.width), "--cache", a.cache]
            args += ["--json", f"{a.json}.{label}"]
            load0 = _load()
            r = _run_child(src, args)
            r.update(code=label, rep=rep, load_start=load0, load_end=_load())
            rows.append(r)
            print(
                f"{label:>4} rep {rep}: gram half {r['gram_half_s']:6.1f} s  inverse half "
                f"{r['inverse_half_s']:6.1f} s  gram grow {r['gram_grow_s']:6.1f} s  inverse grow "
                f"{r['inverse_grow_s']:6.1f} s  rss {r['maxrss_mb']:.0f} MB  load {r['load_end']}",
                flush=True,
            )
    a_new = np.load(f"{a.json}.new.inv.npy")
    a_old = np.load(f"{a.json}.old.inv.npy")
    diff = float(np.abs(a_new - a_old).max() / np.abs(a_old).max())
    same_H = len({r["H_sha256"] for r in rows}) == 1
    keys = ("gram_half_s", "inverse_half_s", "gram_grow_s", "inverse_grow_s", "maxrss_mb")
    med = {
        lab: {k: sorted(r[k] for r in rows if r["code"] == lab)[a.reps // 2] for k in keys}
        for lab in ("new", "old")
    }
    print(f"\n| code | {' | '.join(keys)} |\n|---|" + "---|" * len(keys))
    for lab in ("old", "new"):
        print(f"| {lab} | " + " | ".join(f"{med[lab][k]:.1f}" for k in keys) + " |")
    print(f"same Gram bits: {same_H}; grown inverses differ by {diff:.1e} (relative, sampled)")
    for lab in ("new", "old"):
        Path(f"{a.json}.{lab}.inv.npy").unlink(missing_ok=True)
    return {"runs": rows, "median": med, "same_gram": same_H, "inverse_rel_diff": diff}


def cmd_subset(a) -> dict:
    """This checkout against ``--ref`` on a row/column subset of the cached dictionary."""
    if not a.ref or not a.cache:
        raise SystemExit("subset: --ref (src folder of the old code) and --cache are required")
    rows = []
    for label, src in (("new", str(NEW_SRC)), ("old", a.ref)):
        args = ["_subset", "--n", str(a.n), "--width", str(a.width), "--ratio", str(a.ratio)]
        args += ["--tol", str(a.tol), "--max-time", str(a.max_time), "--cache", a.cache]
        load0 = _load()
        r = _run_child(src, args)
        r.update(code=label, load_start=load0, load_end=_load())
        rows.append(r)
        print(
            f"{label:>4}: {r['solve_s']:8.1f} s  {r['status']:>9}  rel gap {r['rel_gap']:.2e}  "
            f"objective {r['objective']:.12g}  rss {r['maxrss_mb']:.0f} MB  load {r['load_end']}",
            flush=True,
        )
    return {"runs": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "command",
        choices=["build", "products", "solve", "subset", "gram", "_child", "_subset", "_gram"],
    )
    p.add_argument("--n", type=int, default=5504, help="training images")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--width", type=int, default=16384, help="witness neurons")
    p.add_argument("--storage", default="bool", choices=["bool", "packed"])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--ref", help="src folder of the old code (build: required)")
    p.add_argument("--reg", type=float, default=1e-3)
    p.add_argument("--ratio", type=float, default=1e-4, help="subset: lam / lam_max")
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--solver", default="cd")
    p.add_argument("--max-time", type=float, default=1800.0)
    p.add_argument("--json", help="write the results here")
    p.add_argument(
        "--cache",
        help="solve: load the dictionary from this .npz if it exists, else build and save it",
    )
    a = p.parse_args(argv)
    if a.command == "_child":
        _child_build(a)
        return 0
    if a.command == "_subset":
        _child_subset(a)
        return 0
    if a.command == "_gram":
        _child_gram(a)
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cmds = {"build": cmd_build, "products": cmd_products, "solve": cmd_solve, "subset": cmd_subset}
    cmds["gram"] = cmd_gram
    load0 = _load()
    res = cmds[a.command](a)
    codes = {"new": str(NEW_SRC)}
    if a.ref and a.command in ("build", "subset", "gram"):
        codes["old"] = a.ref
    res["meta"] = _benchlib.run_meta(a, codes, load_start=load0)
    _benchlib.write_json(a.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
