"""Sequential MNIST recipe, standalone: SG, CVX, SG-CVX (and CVX->SG) vs the published numbers.

Usage::

    python experiments/exp_mnist.py --quick                       # ~1 min, 1000 training images
    python experiments/exp_mnist.py --configs paper full --json out/mnist.json --cache out/models
    python experiments/exp_mnist.py --configs full --methods CVX --json out/mnist.json
    python experiments/exp_mnist.py --configs paper --methods SG-CVX --max-time none \\
        --cache out/models --json out/mnist.json      # convex readouts without a time cap

Records of several invocations are merged into ``--json`` (a record replaces an earlier one with
the same config, method, seed and quick flag; each invocation's machine and command line is
appended to its ``runs`` list), and the table printed covers all of them.
Columns: method, configuration, T, depth L, K x widths (after pruning for convex rows), training
images, validation and test accuracy (test evaluated once, for the validation choice), relative
duality gap of the convex readout (certificate), seconds, published anchor.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

from convexsnn._io import atomic_write_json
from convexsnn.experiments import mnist


def _merge(path: Path, records: list[dict], meta: dict) -> list[dict]:
    """Merge ``records`` into the JSON at ``path`` (a record replaces an earlier one with the same
    config, method, seed and quick flag) and append ``meta`` to its ``runs`` list."""
    old, runs = [], []
    if path.exists():
        with open(path) as f:
            data = json.load(f)
        old = data.get("records", [])
        runs = data.get("runs", [data["meta"]] if "meta" in data else [])
    key = lambda r: (r["config"], r["method"], r["seed"], r.get("quick"))  # noqa: E731
    new_keys = {key(r) for r in records}
    merged = [r for r in old if key(r) not in new_keys] + records
    atomic_write_json(
        path,
        {
            "experiment": mnist.NAME,
            "anchors": mnist.ANCHORS,
            "runs": runs + [meta],
            "records": merged,
        },
    )
    return merged


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny subsets (CI smoke run)")
    ap.add_argument(
        "--configs", nargs="+", default=["paper", "full"], choices=sorted(mnist.CONFIGS)
    )
    ap.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="subset of SG CVX SG-CVX CVX->SG (default: the configuration's list)",
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--json", type=Path, default=None, help="write/merge records here")
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="directory where SG networks are saved and reused (for SG-CVX)",
    )
    ap.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files")
    ap.add_argument(
        "--override",
        default=None,
        help='JSON changes to the configuration, e.g. \'{"cvx": {"widths": [4000]}}\'',
    )
    ap.add_argument(
        "--max-time",
        default=None,
        help="wall-clock cap (s) of each convex readout solve, or 'none' for no cap (every "
        "convex solve then runs until it is certified); default: the configuration's",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    max_time: float | None = None
    if args.max_time is not None and args.max_time.lower() != "none":
        try:
            max_time = float(args.max_time)
        except ValueError:
            ap.error(f"--max-time must be a number of seconds or 'none', got {args.max_time!r}")
        if not max_time > 0:
            ap.error(f"--max-time must be positive, got {args.max_time!r}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s"
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = json.loads(args.override) if args.override else None
    if args.max_time is not None:
        overrides = dict(overrides or {})
        overrides["cvx"] = {**overrides.get("cvx", {}), "max_time": max_time}
    meta = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "command": " ".join(sys.argv),
    }
    records = []
    t0 = time.perf_counter()
    for name in args.configs:
        for seed in args.seeds:
            recs = mnist.run_config(
                name,
                seed=seed,
                quick=args.quick,
                methods=args.methods,
                data_dir=args.data_dir,
                cache_dir=args.cache,
                overrides=overrides,
            )
            for r in recs:
                print(
                    f"[{time.perf_counter() - t0:7.0f}s] {r['config']} {r['method']} seed "
                    f"{r['seed']}: val {100 * r['val_accuracy']:.2f}% test "
                    f"{100 * r['test_accuracy']:.2f}% gap {r['rel_gap']}",
                    flush=True,
                )
            records += recs
    if args.json is not None:
        records = _merge(args.json, records, meta)
    print()
    print(mnist.markdown(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
