"""A tiny experiment for tests/test_ray_backend.py whose first cell kills its worker once."""

from __future__ import annotations

import os
from pathlib import Path

from convexsnn.experiments.base import Cell

NAME = "ray_crash"
DESCRIPTION = "Test experiment: a cell whose first attempt kills its worker process."
ANCHORS: dict = {}


def cells(quick, seeds, marker_dir: str = ""):
    marker_dir = os.environ.get("CONVEXSNN_TEST_MARKER_DIR", marker_dir)
    return [Cell(NAME, f"c{k}", {"crash": k == 0, "marker_dir": marker_dir}, k) for k in range(2)]


def run_cell(cell: Cell) -> dict:
    marker = Path(cell.params["marker_dir"]) / f"{cell.id}.started"
    if cell.params["crash"] and not marker.exists():
        marker.write_text("first attempt")
        os._exit(1)  # the worker process dies mid-cell, without raising
    return {"records": [], "value": 10 * cell.seed + 1}


def table(finished) -> str:
    return "".join(f"{c['cell']['id']}: {c['result']['value']}\n" for c in finished)
