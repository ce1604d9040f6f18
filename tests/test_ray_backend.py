"""``reproduce`` cells as Ray tasks (local 2-CPU cluster) write the local runner's cell files."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from convexsnn.experiments import reproduce
from convexsnn.experiments.runner import CELL_FORMAT

ray = pytest.importorskip("ray")

# wall-clock fields and the machine description legitimately differ between two runs
VOLATILE = {"finished_at", "machine"}


def _assert_same(a, b, path="") -> None:
    """Same keys everywhere; equal values except wall-clock fields (keys holding 'seconds')."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"keys differ at {path or '/'}"
        for k in a:
            if k in VOLATILE or "seconds" in k:
                continue
            _assert_same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"lengths differ at {path}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        assert math.isnan(b), path
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.slow
def test_ray_cells_equal_local_cells_and_resume(tmp_path, monkeypatch):
    from convexsnn.experiments import EXPERIMENTS
    from convexsnn.experiments.ray_backend import reproduce_ray

    torch.set_num_threads(1)
    local = reproduce(["xor"], tmp_path / "local", quick=True, seeds=(0,))
    assert local["xor"]["failed"] == []
    # a test experiment (importable by the workers) whose first cell kills its worker once
    tests_dir = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", tests_dir + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("CONVEXSNN_TEST_MARKER_DIR", str(tmp_path))
    monkeypatch.setitem(EXPERIMENTS, "ray_crash", "_ray_crash_experiment")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        first = reproduce_ray(["xor"], tmp_path / "ray", quick=True, seeds=(0,))
        assert first["xor"]["backend"] == "ray" and first["xor"]["failed"] == []
        assert first["xor"]["n_run"] == first["xor"]["n_cells"] >= 1
        cells_local = sorted((tmp_path / "local" / "xor" / "cells").glob("*.json"))
        cells_ray = sorted((tmp_path / "ray" / "xor" / "cells").glob("*.json"))
        assert [p.name for p in cells_local] == [p.name for p in cells_ray]
        for pl, pr in zip(cells_local, cells_ray):
            dl, dr = json.loads(pl.read_text()), json.loads(pr.read_text())
            assert dr["format"] == CELL_FORMAT
            _assert_same(dl, dr)
        # the reports exist and list every cell
        res = json.loads((tmp_path / "ray" / "xor" / "results.json").read_text())
        assert len(res["cells"]) == first["xor"]["n_cells"] and res["missing"] == []
        assert (tmp_path / "ray" / "xor" / "table.md").exists()
        # resume: nothing to do; a corrupt cell file is recomputed, the others are kept
        again = reproduce_ray(["xor"], tmp_path / "ray", quick=True, seeds=(0,))
        assert again["xor"]["n_run"] == 0
        victim = cells_ray[0]
        kept = {p: p.stat().st_mtime_ns for p in cells_ray[1:]}
        victim.write_text("{not json")
        fixed = reproduce_ray(["xor"], tmp_path / "ray", quick=True, seeds=(0,))
        assert fixed["xor"]["n_run"] == 1
        _assert_same(json.loads(cells_local[0].read_text()), json.loads(victim.read_text()))
        assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
        # a worker killed mid-cell: Ray re-runs the cell, nothing is lost
        crash = reproduce_ray(["ray_crash"], tmp_path / "crash", seeds=(0,), max_retries=2)
        assert (tmp_path / "c0.started").exists()  # the first attempt did die
        assert crash["ray_crash"]["n_run"] == 2 and crash["ray_crash"]["failed"] == []
        got = {
            p.stem: json.loads(p.read_text())["result"]["value"]
            for p in (tmp_path / "crash" / "ray_crash" / "cells").glob("*.json")
        }
        assert got == {"c0": 1, "c1": 11}
        # dictionary building: one task per block of witness branches, data in the object store
        _check_dictionary_blocks_on_ray()
    finally:
        ray.shutdown()


def test_bad_retries_is_refused_before_any_work(tmp_path):
    from convexsnn.experiments.ray_backend import reproduce_ray

    with pytest.raises(ValueError, match="max_retries"):
        reproduce_ray(["xor"], tmp_path, quick=True, max_retries=-1)
    assert not (tmp_path / "xor").exists()


def _check_dictionary_blocks_on_ray() -> None:
    from convexsnn.dictionary import build_dictionary
    from convexsnn.distributed.ray_blocks import build_dictionary_ray
    from convexsnn.tasks import load_task
    from convexsnn.witnesses import gaussian_witnesses

    task = load_task("xor", T=6, n_train=200, n_val=20, n_test=20, seed=0)
    X = task.train.X
    w = gaussian_witnesses(X.shape[2], n_branches=20, hidden_widths=[8, 8], seed=0, scale=2.0)
    ref = build_dictionary(w, X)
    got = build_dictionary_ray(w, X, n_blocks=3)
    assert got.shape == ref.shape
    assert torch.equal(got.matrix(torch.bool), ref.matrix(torch.bool))
    with pytest.raises(TypeError, match="branches"):
        build_dictionary_ray(w, X, n_blocks=2, branches=[0])
