"""``reproduce(all, quick=True)`` end to end: files, fields, resume, corrupt cells."""

import json
from pathlib import Path

import pytest

from convexsnn.experiments import EXPERIMENTS, mnist, reproduce
from convexsnn.experiments.runner import load_experiment

MNIST_PRESENT = (Path(mnist.DEFAULT_DATA_DIR) / "train-images-idx3-ubyte.gz").is_file()

RESULT_FIELDS = (
    "experiment",
    "description",
    "anchors",
    "quick",
    "seeds",
    "machine",
    "timings",
    "n_cells",
    "cells",
    "table_markdown",
    "plots",
    "failed",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro")
    summary = reproduce("all", out, quick=True, seeds=(0,))
    return out, summary


def test_every_experiment_writes_reports(quick_run):
    out, summary = quick_run
    assert set(summary) == set(EXPERIMENTS)
    for name in EXPERIMENTS:
        d = out / name
        assert (d / "results.json").is_file() and (d / "table.md").is_file()
        if hasattr(load_experiment(name), "plots"):
            assert list(d.glob("*.png")), name
        res = json.loads((d / "results.json").read_text())
        for f in RESULT_FIELDS:
            assert f in res, (name, f)
        if name == "mnist" and not MNIST_PRESENT:
            # without the IDX files every MNIST cell fails with the loader's clear message
            assert res["failed"] and all("not found" in tb for tb in res["failed"].values())
            continue
        assert not res["failed"]
        assert res["n_cells"] == len(res["cells"]) >= 1
        for c in res["cells"]:
            assert c["result"]["records"], name
            for r in c["result"]["records"]:
                assert "test_accuracy" in r and "seconds" in r
        assert "published" in (d / "table.md").read_text() or name == "ablations"
        assert len(list((d / "cells").glob("*.json"))) == res["n_cells"]


def test_resume_skips_and_corrupt_cell_is_recomputed(quick_run):
    out, _ = quick_run
    cells = sorted((out / "xor" / "cells").glob("*.json"))
    mtimes = {p: p.stat().st_mtime_ns for p in cells}
    summary = reproduce(["xor"], out, quick=True, seeds=(0,))
    assert summary["xor"]["n_skipped"] == len(cells) and summary["xor"]["n_run"] == 0
    assert {p: p.stat().st_mtime_ns for p in cells} == mtimes
    # corrupt one cell file: it is recomputed (with a warning), the others are skipped
    cells[0].write_text("{not json")
    summary = reproduce(["xor"], out, quick=True, seeds=(0,))
    assert summary["xor"]["n_run"] == 1
    json.loads(cells[0].read_text())


def test_unknown_experiment_and_interface():
    with pytest.raises(ValueError, match="unknown experiment"):
        reproduce(["nope"], "unused", quick=True)
    for name in EXPERIMENTS:
        mod = load_experiment(name)
        assert mod.NAME == name and isinstance(mod.ANCHORS, dict)


def test_report_only_runs_nothing(quick_run, tmp_path):
    out, _ = quick_run
    s = reproduce(["addition"], out, quick=True, seeds=(0,), run=False)
    assert s["addition"]["n_run"] == 0 and not s["addition"]["missing"]
    s = reproduce(["addition"], tmp_path, quick=True, seeds=(0,), run=False)
    assert s["addition"]["missing"] == ["quick-b2-leak0-s0"]
    assert (tmp_path / "addition" / "table.md").is_file()


def test_cli_backend_flags_are_checked_before_work(tmp_path):
    # --address belongs to the Ray backend; --jobs to the local one: refused with one line
    from convexsnn.cli import main

    out = tmp_path / "r"
    assert main(["reproduce", "xor", "--quick", "--out", str(out), "--address", "auto"]) != 0
    assert (
        main(["reproduce", "xor", "--quick", "--out", str(out), "--backend", "ray", "--jobs", "2"])
        != 0
    )
    assert not out.exists()


def test_gap_cell_marks_unconverged_solves_in_every_table():
    from convexsnn.experiments.base import gap_cell

    ok = {"certificate": {"rel_gap": 1e-9, "converged": True, "status": "converged"}}
    bad = {"certificate": {"rel_gap": 0.3, "converged": False, "status": "max_time"}}
    heads = {"certificates": [ok["certificate"], bad["certificate"]]}
    assert gap_cell([]) == "-" and gap_cell([{"method": "SG"}]) == "-"
    assert gap_cell([ok, ok]) == "1.0e-09"
    assert gap_cell([ok, bad]) == "3.0e-01 NOT certified (1/2)"
    assert gap_cell([heads]) == "3.0e-01 NOT certified (1/2)"
    # a bare rel_gap with converged recorded (long_memory records), and one without (old files)
    assert gap_cell([{"rel_gap": 0.5, "converged": False}]) == "5.0e-01 NOT certified (1/1)"
    assert gap_cell([{"rel_gap": 1e-7}]) == "1.0e-07"
    # certified means rel gap <= 1e-6 (issue 13): an old file without ``converged``, or a solve
    # that converged at a looser tolerance (1e-3), is not certified
    assert gap_cell([{"rel_gap": 0.5}]) == "5.0e-01 NOT certified (1/1)"
    loose = {"certificate": {"rel_gap": 5e-4, "converged": True, "tol": 1e-3}}
    assert gap_cell([loose, ok]) == "5.0e-04 NOT certified (1/2)"
    assert gap_cell([loose], gap=1e-3) == "5.0e-04"


def test_machine_info_host_tag_is_stable_across_processes():
    import subprocess
    import sys

    code = "from convexsnn.experiments.runner import machine_info; print(machine_info()['hostname_hash'])"
    tags = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(tags) == 1
