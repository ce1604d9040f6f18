"""The solver benchmark (``benchmarks/bench_solvers.py``) at its ``--quick`` size: one case,
ours against one peer in a subprocess, and the fields its JSON promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_case_records_speedups_objectives_and_metadata(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(ROOT / "src")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_solvers.py"),
            "--quick",
            "--cases",
            "t3q",
            "--no-cvxpy",
            "--peers",
            "sklearn-precompute",
            "--json",
            str(out),
        ],
        check=True,
        env=env,
        timeout=300,
        capture_output=True,
    )
    res = json.loads(out.read_text())
    meta = res["meta"]
    assert len(meta["git"]["convexsnn"]["commit"]) == 40
    assert meta["threads"]["OMP_NUM_THREADS"] == "1" and meta["threads"]["torch_threads"] == 1
    assert len(meta["load"]) == 3
    rows = {r["solver"]: r for r in res["results"]}
    assert set(rows) == {"ours", "sklearn-precompute", "cvxpy+clarabel"}
    ours, peer = rows["ours"], rows["sklearn-precompute"]
    assert ours["status"] == "converged" and ours["rel_gap"] <= 1e-8
    # both solve the same objective (the peer at its own tol): equal to 1e-6, ours the lower
    assert abs(peer["objective"] - ours["objective"]) <= 1e-6 * abs(ours["objective"])
    assert ours["rel_diff_vs_best"] <= 1e-12
    assert ours["fastest_peer_equal_objective"] == "sklearn-precompute"
    assert ours["speedup_vs_fastest_peer"] == pytest.approx(peer["seconds"] / ours["seconds"])
    assert rows["cvxpy+clarabel"]["status"].startswith("skipped")
    assert ours["load"] and len(ours["load"]) == 2
