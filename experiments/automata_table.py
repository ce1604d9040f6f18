"""The automata table (pure convex column generation, recurrent cascade with automaton modules)
from the per-cell JSON files of ``exp_pure_convex_small.py --cell-dir``.

Usage::

    python experiments/automata_table.py experiments/results/automata_cg \\
        > experiments/results/automata_cg/table.md

One row per (task, T): test / 2T accuracy of the reconstructed network per seed, mean, and per
seed the certificate (relative gap), the last round's pricing gap and union relative gap, the
rounds, columns / kept, and seconds with the load average.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def table(cell_dir: Path) -> str:
    cells = defaultdict(list)
    for f in sorted(cell_dir.glob("*.json")):
        with open(f) as fh:
            r = json.load(fh)
        cells[(r["task"], r["T"])].append(r)
    lines = [
        "| task | T | seeds | test % (per seed) | mean | 2T % (per seed) | train % | certified "
        "(rel gap, max) | pricing gap (last round, per seed) | union rel gap (max) | stopped "
        "(solves) | columns/kept | s (load) | agreement |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {"dfa": 0, "tomita3_paper": 1, "parity_k2": 2, "parity_k3": 3}
    for (task, T), rs in sorted(cells.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0])):
        rs = sorted(rs, key=lambda r: r["seed"])
        test = [r["test_accuracy"] for r in rs]
        ood = [next(iter(r["ood_accuracy"].values())) for r in rs]
        train = [r["rounds"][-1]["train_accuracy"] for r in rs]
        gaps = [r["rel_gap"] for r in rs]
        cert = all(r["certified"] == "certified" for r in rs)
        agree = min(
            min(v["prediction_agreement"] for v in r["reconstruction_check"].values()) for r in rs
        )
        lines.append(
            "| "
            + " | ".join(
                [
                    task,
                    str(T),
                    ",".join(str(r["seed"]) for r in rs),
                    " / ".join(_pct(v) for v in test),
                    f"**{_pct(sum(test) / len(test))}**",
                    " / ".join(_pct(v) for v in ood),
                    " / ".join(f"{100 * v:.1f}" for v in train),
                    f"{'yes' if cert else 'NO'} ({max(gaps):.1e})",
                    " / ".join(f"{r['pricing_gap']:.3g}" for r in rs),
                    f"{max(r['union_rel_gap'] for r in rs):.2g}",
                    ", ".join(f"{r['stopped']} ({len(r['rounds'])})" for r in rs),
                    ", ".join(f"{r['n_columns']}/{r['kept_neurons']}" for r in rs),
                    ", ".join(f"{r['seconds']:.0f} ({r['load_average_start']:.1f})" for r in rs),
                    f"{agree:.4g}",
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(
        table(Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/results/automata_cg"))
    )
