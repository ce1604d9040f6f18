"""The ``convexsnn`` command line, end to end in a temporary directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from convexsnn.cli import accuracy_vs_size_records, build_parser, demo_table, main
from convexsnn.network import ParallelSNN

XOR = [
    "--task",
    "xor",
    "-T",
    "4",
    "--n-train",
    "200",
    "--n-val",
    "100",
    "--n-test",
    "200",
    "--task-option",
    "ood_lengths=[8]",
]
CVX = ["--n-branches", "4", "--depth", "2", "--p-last", "64", "--reg", "0.1", "0.01"]
SG = ["--depth", "2", "--sg-epochs", "2", "--set", "sg_n_branches=2", "--set", "sg_p_last=16"]


def _error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("convexsnn: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CVX and SG model trained on FIRST-LAST-XOR (T=4) through ``main``."""
    root = tmp_path_factory.mktemp("cli")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["train", *XOR, "--method", "cvx", *CVX, "--out", "cvx", "-q"]) == 0
        assert main(["train", *XOR, "--method", "sg", *SG, "--out", "sg", "-q"]) == 0
    finally:
        os.chdir(cwd)
    return root


def test_train_writes_model_and_report(trained):
    rep = json.loads((trained / "cvx" / "report.json").read_text())
    cert = rep["certificate"]
    assert rep["method"] == "CVX"
    assert cert["dual"] <= cert["primal"] + 1e-12 and 0 <= cert["rel_gap"] <= 1e-3
    assert 0.5 < rep["record"]["test_accuracy"] <= 1.0
    model = ParallelSNN.load(trained / "cvx" / "model")
    assert model.saved_extra["certificate"] == cert
    assert model.saved_extra["task_spec"]["name"] == "xor"
    assert model.saved_extra["report"]["test_accuracy"] == rep["record"]["test_accuracy"]
    sg = json.loads((trained / "sg" / "report.json").read_text())
    assert sg["method"] == "SG" and sg["certificate"] is None
    assert (trained / "sg" / "model" / "weights.npz").exists()


def test_info(trained, capsys):
    assert main(["info", str(trained / "cvx")]) == 0
    out = capsys.readouterr().out
    assert "kept neurons" in out and "certificate" in out and "rel gap" in out
    assert main(["info", str(trained / "sg" / "model"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["hidden_widths"] == [8] and info["n_branches"] == 2
    assert info["certificate"] is None and info["method"] == "SG"
    assert 0.0 <= info["output_weights"]["sparsity"] <= 1.0


def test_evaluate_matches_report(trained, capsys, tmp_path):
    out = tmp_path / "acc.json"
    assert main(["evaluate", str(trained / "cvx"), "-q", "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    rep = json.loads((trained / "cvx" / "report.json").read_text())
    assert res["split"] == "test"
    assert res["value"] == pytest.approx(rep["record"]["test_accuracy"])
    assert json.loads(out.read_text())["value"] == res["value"]
    assert main(["evaluate", str(trained / "sg"), "-q", "--split", "all"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["accuracy"]) == {"train", "val", "test", "ood:T=8"}


def test_export_nir(trained, tmp_path, capsys):
    pytest.importorskip("nir")
    out = tmp_path / "model.nir"
    assert main(["export", str(trained / "cvx"), str(out), "-q"]) == 0
    assert out.exists() and out.stat().st_size > 0


def test_plot_raster_and_accuracy(trained, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "raster.png"
    assert (
        main(["plot", "raster", str(trained / "cvx"), "--sample", "3", "--out", str(png), "-q"])
        == 0
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # accuracy vs training-set size from a reproduce-style results.json
    cells = []
    for seed in (0, 1):
        recs = [
            {"method": m, "test_accuracy": 0.5 + 0.1 * k + 0.01 * seed, "task_meta": {"n_train": n}}
            for k, (m, n) in enumerate([("CVX", 100), ("CVX", 1000), ("SG", 100), ("SG", 1000)])
        ]
        cells.append({"cell": {"params": {}}, "result": {"records": recs}})
    res_dir = tmp_path / "results" / "exp"
    res_dir.mkdir(parents=True)
    (res_dir / "results.json").write_text(json.dumps({"cells": cells}))
    recs = accuracy_vs_size_records([str(tmp_path / "results")])
    assert len(recs) == 4 and all(r["std"] == pytest.approx(0.005) for r in recs)
    png2 = tmp_path / "acc.png"
    assert main(["plot", "accuracy", str(tmp_path / "results"), "--out", str(png2), "-q"]) == 0
    assert png2.exists()


def test_train_on_npz_data(tmp_path, monkeypatch, capsys):
    from convexsnn.tasks import load_task

    monkeypatch.chdir(tmp_path)
    task = load_task("xor", T=4, n_train=160, n_val=80, n_test=80, ood_lengths=(), seed=3)
    np.savez(
        tmp_path / "train.npz",
        X=task.train.X.numpy(),
        y=task.train.y.numpy(),
        X_test=task.test.X.numpy(),
        y_test=task.test.y.numpy(),
    )
    assert main(["train", "--data", "train.npz", *CVX, "--out", "d", "-q"]) == 0
    rep = json.loads((tmp_path / "d" / "report.json").read_text())
    assert rep["task_spec"]["kind"] == "data"
    assert rep["record"]["test_accuracy"] > 0.5
    capsys.readouterr()
    np.savez(tmp_path / "other.npz", X=task.val.X.numpy(), y=task.val.y.numpy())
    assert main(["evaluate", "d", "--data", "other.npz", "--split", "train", "-q"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["value"] <= 1.0


def test_reproduce_passes_options(monkeypatch, tmp_path, capsys):
    calls = {}

    def fake_reproduce(names, out_dir, *, quick, jobs, seeds, force, overwrite, threads, progress):
        calls.update(
            names=names,
            out=out_dir,
            quick=quick,
            jobs=jobs,
            seeds=seeds,
            force=force,
            overwrite=overwrite,
            threads=threads,
            progress=progress,
        )
        return {
            "xor": {
                "n_cells": 2,
                "n_run": 2,
                "n_skipped": 0,
                "failed": [],
                "seconds": 1.0,
                "table": str(tmp_path / "xor" / "table.md"),
            }
        }

    fake = types.ModuleType("convexsnn.experiments")
    fake.reproduce = fake_reproduce
    monkeypatch.setitem(sys.modules, "convexsnn.experiments", fake)
    assert (
        main(
            [
                "reproduce",
                "xor",
                "mnist",
                "--out",
                str(tmp_path),
                "--quick",
                "--jobs",
                "2",
                "--seeds",
                "4",
                "5",
                "--force",
                "-q",
            ]
        )
        == 0
    )
    assert calls == {
        "names": ["xor", "mnist"],
        "out": str(tmp_path),
        "quick": True,
        "jobs": 2,
        "seeds": [4, 5],
        "force": True,
        "overwrite": False,
        "threads": None,
        "progress": False,
    }
    assert "xor: 2 cells" in capsys.readouterr().out
    calls.clear()
    assert main(["reproduce", "-q"]) == 0 and calls["names"] is None
    assert calls["seeds"] == [0, 1, 2] and calls["quick"] is False


def test_demo_quick_xor_only(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quick", "--skip-mnist", "-q", "--out", "demo.json"]) == 0
    out = capsys.readouterr().out
    assert "CVX" in out and "SG" in out and "rel gap" in out
    rows = json.loads((tmp_path / "demo.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["SG", "CVX"]
    assert rows[1]["certificate"]["rel_gap"] is not None
    table = demo_table(rows)
    assert table.splitlines()[0].startswith("task")
    assert table.splitlines()[0].rstrip().endswith("certified")


def test_demo_table_marks_an_unconverged_solve():
    base = {
        "task": "xor",
        "setting": "T=6",
        "val_accuracy": 1.0,
        "test_accuracy": 1.0,
        "seconds": 1.0,
    }
    ok = {"primal": 1.0, "dual": 1.0, "rel_gap": 0.0, "converged": True, "status": "converged"}
    bad = {"primal": 1.0, "dual": 0.3, "rel_gap": 0.7, "converged": False, "status": "max_time"}
    lines = demo_table(
        [
            {**base, "method": "SG"},
            {**base, "method": "CVX", "certificate": ok},
            {**base, "method": "CVX", "certificate": bad},
        ]
    ).splitlines()
    assert lines[2].rstrip().endswith("-")
    assert lines[3].rstrip().endswith("certified") and "NOT" not in lines[3]
    assert lines[4].rstrip().endswith("NOT certified (max_time, rel gap 7.0e-01)")


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["info", "does/not/exist"], "no saved model"),
        (["train", "--task", "no-such-task", "-q"], "unknown task name"),
        (["train", "--data", "missing.npz", "-q"], "does not exist"),
        (["train", "-q"], "needs --task"),
        (["train", "--task", "xor", "--set", "nonsense=1", "-q"], "unknown pipeline options"),
        (["demo", "--mnist-dir", "no/such/dir", "-q"], "does not exist"),
        (["plot", "-q"], "needs a kind"),
    ],
)
def test_errors_are_one_line(argv, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    assert fragment in _error_line(capsys.readouterr().err)


def test_corrupt_model_and_bad_arguments(trained, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(trained / "cvx" / "model", bad)
    (bad / "weights.npz").write_bytes(b"not a zip file")
    assert main(["evaluate", str(bad)]) == 1
    assert "corrupt" in _error_line(capsys.readouterr().err)
    (bad / "config.json").write_text("{broken")
    assert main(["info", str(bad)]) == 1
    assert "not valid JSON" in _error_line(capsys.readouterr().err)
    assert main(["train", "--no-such-flag"]) == 2
    assert "unrecognized arguments" in _error_line(capsys.readouterr().err)
    assert main(["train", "--method", "magic"]) == 2
    assert "invalid choice" in _error_line(capsys.readouterr().err)


def test_debug_shows_traceback(capsys):
    with pytest.raises(FileNotFoundError):
        main(["info", "does/not/exist", "--debug"])


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("train", "evaluate", "reproduce", "export", "info", "plot", "demo"):
        assert cmd in out


@pytest.mark.slow
def test_subprocess_entry_point(trained, tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    ok = subprocess.run(
        [sys.executable, "-m", "convexsnn.cli", "info", str(trained / "cvx")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "ParallelSNN" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "convexsnn.cli", "evaluate", str(tmp_path / "missing-model")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 1
    assert "no saved model" in _error_line(bad.stderr)
    wrong = subprocess.run(
        [sys.executable, "-m", "convexsnn.cli", "train", "--task", "nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert wrong.returncode == 1
    assert "unknown task name 'nope'" in _error_line(wrong.stderr)
