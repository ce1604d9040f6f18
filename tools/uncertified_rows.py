"""List the convex rows of RESULTS.md whose chosen solve is not certified to a relative gap.

A row is *certified* when every certificate of its chosen solve (one per label head) has a
finite relative duality gap ``<= --gap`` (default 1e-6, the target of issue 13). Read from the
committed JSON only (nothing is run):

* ``results/<experiment>/cells/*.json``: every record with a certificate (``CVX``, ``SG-CVX``,
  ``R-CVX``, ... of the ``reproduce`` experiments; SG records have none);
* ``experiments/results/*.json``: the MNIST, pure-convex, long-memory and deep-wide XOR records
  and the solver benchmark's ``ours`` rows.

For each row the script prints the experiment, cell, method, seed, largest relative gap, the
tolerance and wall-clock cap the solve ran under, the solver's status, iterations and seconds
(where recorded). Records marked ``"old": true`` (superseded by a rerun and kept beside it for
comparison) are left out of the list and the counts unless ``--superseded`` is given::

    python tools/uncertified_rows.py            # the uncertified rows, then a count
    python tools/uncertified_rows.py --all      # every convex row
    python tools/uncertified_rows.py --superseded  # also the records marked "old": true
    python tools/uncertified_rows.py --json out.json
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _num(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _certs(rec: dict) -> list[dict]:
    """The certificate dicts of a record (one per head), or a bare ``rel_gap``."""
    if rec.get("certificates"):
        return [c for c in rec["certificates"] if c]
    if isinstance(rec.get("certificate"), dict):
        return [rec["certificate"]]
    if rec.get("rel_gap") is not None:
        return [
            {
                "rel_gap": rec.get("rel_gap"),
                "converged": rec.get("converged"),
                "status": rec.get("status"),
                "iterations": rec.get("iterations"),
                "seconds": rec.get("solve_seconds"),
            }
        ]
    return []


def _row(
    source: str, cell: str, method: str, seed, certs: list[dict], tol, cap, superseded=False
) -> dict:
    gaps = [_num(c.get("rel_gap")) for c in certs]
    finite = [g for g in gaps if g is not None]
    its = [c.get("iterations") for c in certs if c.get("iterations") is not None]
    secs = [_num(c.get("seconds")) for c in certs if _num(c.get("seconds")) is not None]
    tols = [_num(c.get("tol")) for c in certs if _num(c.get("tol")) is not None]
    status = sorted(
        {
            str(c.get("status") or ("converged" if c.get("converged") else "not converged"))
            for c in certs
            if c.get("status") is not None or c.get("converged") is not None
        }
    )
    return {
        "source": source,
        "cell": cell,
        "method": method,
        "seed": seed,
        "rel_gap": max(finite) if len(finite) == len(gaps) and finite else None,
        "stopped_early": any(c.get("converged") is False for c in certs),
        "tol": max(tols) if tols else _num(tol),
        "max_time": cap,
        "status": "/".join(status) or "-",
        "iterations": max(its) if its else None,
        "seconds": sum(secs) if secs else None,
        "superseded": bool(superseded),
    }


def experiment_rows(root: Path) -> list[dict]:
    """Rows of the ``reproduce`` experiments (``results/*/cells/*.json``)."""
    rows = []
    for f in sorted(glob.glob(str(root / "results" / "*" / "cells" / "*.json"))):
        data = json.loads(Path(f).read_text(encoding="utf-8"))
        cell = data.get("cell") or {}
        params = cell.get("params") or {}
        cfg = params.get("config") or {}
        for rec in (data.get("result") or {}).get("records", []):
            certs = _certs(rec)
            if not certs:
                continue
            rows.append(
                _row(
                    cell.get("experiment", Path(f).parts[-3]),
                    cell.get("id", Path(f).stem),
                    rec.get("method", "?"),
                    rec.get("seed", cell.get("seed")),
                    certs,
                    cfg.get("tol"),
                    cfg.get("max_time"),
                )
            )
    return rows


def benchmark_rows(root: Path) -> list[dict]:
    """Rows of ``experiments/results/*.json`` (read only)."""
    rows = []
    bdir = root / "experiments" / "results"
    p = bdir / "mnist.json"
    if p.is_file():
        for r in json.loads(p.read_text(encoding="utf-8")).get("records", []):
            certs = _certs(r)
            if certs:
                rows.append(
                    _row(
                        "mnist",
                        r.get("config", "?"),
                        r["method"],
                        r.get("seed"),
                        certs,
                        None,
                        None,
                        superseded=r.get("old", False),
                    )
                )
    p = bdir / "pure_convex.json"
    if p.is_file():
        for r in json.loads(p.read_text(encoding="utf-8")).get("records", []):
            certs = _certs(r)
            if certs:
                cell = f"{r.get('method')} n={r.get('n_train')} {r.get('loss', '')}".strip()
                cmd = r.get("command") or ""
                cap = None
                if "--max-time" in cmd:
                    cap = _num(cmd.split("--max-time")[1].split()[0])
                rows.append(
                    _row(
                        "pure_convex",
                        cell,
                        r["method"],
                        r.get("seed"),
                        certs,
                        None,
                        cap,
                        superseded=r.get("old", False),
                    )
                )
    p = bdir / "long_memory.json"
    if p.is_file():
        d = json.loads(p.read_text(encoding="utf-8"))
        cap = (d.get("settings") or {}).get("max_time")
        for r in d.get("rows", []):
            certs = _certs(r)
            if certs:
                w = r.get("witnesses")
                kind = w.get("kind") if isinstance(w, dict) else w
                cell = f"T{r.get('T')}-L{r.get('L')}-{kind}"
                rows.append(_row("bench_long_memory", cell, r["method"], 0, certs, None, cap))
    p = bdir / "xor_T6_L15_wide.json"
    if p.is_file():
        for r in json.loads(p.read_text(encoding="utf-8")):
            certs = _certs(r)
            if certs:
                rows.append(
                    _row("xor_T6_L15_wide", "T6-L15", "CVX", r.get("seed"), certs, None, None)
                )
    p = bdir / "bench_solvers.json"
    if p.is_file():
        for r in json.loads(p.read_text(encoding="utf-8")).get("results", []):
            if r.get("solver") == "ours" and r.get("rel_gap") is not None:
                rows.append(
                    _row("bench_solvers", r.get("case", "?"), "ours", None, [r], None, None)
                )
    return rows


def certified(row: dict, gap: float) -> bool:
    """Every head's relative gap is finite and ``<= gap``, and no solve is recorded as stopped
    before its tolerance (the rule of ``convexsnn.experiments.base.is_certified``)."""
    return row["rel_gap"] is not None and row["rel_gap"] <= gap and not row["stopped_early"]


def _fmt(v, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec) if spec else str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gap", type=float, default=1e-6, help="certified: rel gap <= this")
    ap.add_argument("--all", action="store_true", help="list every convex row")
    ap.add_argument(
        "--no-benchmarks",
        action="store_true",
        help="only results/*/cells (not experiments/results)",
    )
    ap.add_argument(
        "--superseded",
        action="store_true",
        help='also list and count the records marked "old": true (kept beside their reruns)',
    )
    ap.add_argument("--json", help="write the rows as JSON here")
    ap.add_argument("--root", default=str(ROOT), help="repository root")
    a = ap.parse_args(argv)
    root = Path(a.root)
    rows = experiment_rows(root) + ([] if a.no_benchmarks else benchmark_rows(root))
    n_old = sum(r["superseded"] for r in rows)
    if not a.superseded:
        rows = [r for r in rows if not r["superseded"]]
    for r in rows:
        r["certified"] = certified(r, a.gap)
    shown = rows if a.all else [r for r in rows if not r["certified"]]
    print(
        "| source | cell | method | seed | rel gap | tol | cap s | status | iterations | solve s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in shown:
        print(
            f"| {r['source']} | {r['cell']} | {r['method']} | {_fmt(r['seed'])} | "
            f"{_fmt(r['rel_gap'], '.1e')} | {_fmt(r['tol'], 'g')} | {_fmt(r['max_time'], 'g')} | "
            f"{r['status']} | {_fmt(r['iterations'])} | {_fmt(r['seconds'], '.1f')} |"
        )
    by: dict = {}
    for r in rows:
        n, k = by.get(r["source"], (0, 0))
        by[r["source"]] = (n + 1, k + int(r["certified"]))
    print()
    for src, (n, k) in by.items():
        print(f"{src}: {k}/{n} convex rows certified (rel gap <= {a.gap:g})")
    n_all, k_all = len(rows), sum(r["certified"] for r in rows)
    print(f"total: {k_all}/{n_all} certified, {n_all - k_all} not")
    if n_old and not a.superseded:
        print(f"superseded records (marked old, kept beside their reruns; not counted): {n_old}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
