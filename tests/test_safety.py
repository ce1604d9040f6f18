"""Nothing lost, nothing silent (issue 14): saves, output paths, memory guards, crafted model
files, concurrent and killed ``reproduce`` runs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from convexsnn import ParallelSNN
from convexsnn.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env(**extra):
    env = dict(
        os.environ,
        PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        OMP_NUM_THREADS="1",
    )
    env.update(extra)
    return env


def _reseal(meta: dict) -> dict:
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    meta["meta_sha256"] = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    return meta


def _small_model(tmp_path: Path, extra: dict | None = None) -> Path:
    net = ParallelSNN(2, 2, n_branches=1, depth=2, p_last=4, seed=0)
    return net.save(tmp_path / "m", extra=extra or {})


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ------------------------------------------------------------------ saving and output paths
def test_train_refuses_a_foreign_folder_and_keeps_its_files(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "model" / "sub").mkdir(parents=True)
    (out / "model" / "notes.txt").write_text("mine")
    (out / "model" / "sub" / "thesis.tex").write_text("tex")
    t0 = time.perf_counter()
    assert (
        main(
            [
                "train",
                "--task",
                "xor",
                "-T",
                "3",
                "--n-train",
                "40",
                "--n-val",
                "20",
                "--n-test",
                "20",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 1
    )
    assert time.perf_counter() - t0 < 10  # refused before training
    assert "not a convexsnn model" in _err(capsys)
    assert (out / "model" / "notes.txt").read_text() == "mine"
    assert (out / "model" / "sub" / "thesis.tex").read_text() == "tex"


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--task", "xor", "-T", "3", "--n-train", "40", "--out", "{f}/sub"],
        ["train", "--task", "xor", "-T", "3", "--n-train", "40", "--out", "{f}"],
        ["reproduce", "xor", "--quick", "--out", "{f}/r"],
        ["demo", "--quick", "--skip-mnist", "--out", "{f}/d.json"],
        ["plot", "accuracy", "{d}", "--out", "{f}/a.png"],
        ["export", "{d}", "{f}/m.nir"],
    ],
)
def test_output_under_a_file_is_refused_before_work(argv, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    argv = [a.format(f=f, d=tmp_path) for a in argv] + ["-q"]
    t0 = time.perf_counter()
    assert main(argv) == 1
    assert time.perf_counter() - t0 < 10
    err = _err(capsys)
    assert "file" in err and str(f) in err
    assert f.read_text() == "x"


def test_reproduce_unknown_name_creates_nothing(tmp_path, capsys):
    assert main(["reproduce", "bogus", "--out", str(tmp_path / "X"), "-q"]) == 1
    assert "unknown experiment" in _err(capsys)
    assert not (tmp_path / "X").exists()


def test_reproduce_refuses_results_of_another_configuration(tmp_path):
    from convexsnn.experiments import reproduce

    exp = tmp_path / "xor"
    exp.mkdir()
    (exp / "results.json").write_text(json.dumps({"quick": False, "cells": []}))
    with pytest.raises(FileExistsError, match="holds full results.*--overwrite"):
        reproduce(["xor"], tmp_path, quick=True, seeds=(0,), run=False)
    assert sorted(p.name for p in exp.iterdir()) == ["results.json"]
    (exp / "results.json").unlink()
    (exp / "cells").mkdir()
    cell = {
        "format": "convexsnn.experiment-cell",
        "cell": {"experiment": "xor", "id": "quick-T6-L5-s0", "params": {"other": 1}, "seed": 0},
        "result": {},
    }
    (exp / "cells" / "quick-T6-L5-s0.json").write_text(json.dumps(cell))
    with pytest.raises(FileExistsError, match="another run configuration"):
        reproduce(["xor"], tmp_path, quick=True, seeds=(0,), run=False)
    assert json.loads((exp / "cells" / "quick-T6-L5-s0.json").read_text()) == cell


# ------------------------------------------------------------------ memory guards (4 GiB cap)
_CAPPED = textwrap.dedent("""
    import resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    from convexsnn.cli import main
    t = time.perf_counter()
    rc = main(sys.argv[1:])
    print(f"rc={rc} seconds={time.perf_counter() - t:.1f}")
""")


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--task", "xor", "--p-last", "20000000"], "GiB"),
        (["train", "--task", "xor", "--n-train", "100000000"], "GiB"),
        (["train", "--task", "xor", "-T", "100000000"], "TiB"),
        (["info", "{crafted}"], "GiB"),
    ],
)
def test_oom_class_inputs_refused_within_seconds_under_a_4gib_cap(args, fragment, tmp_path):
    path = _small_model(tmp_path)
    meta = json.loads((path / "config.json").read_text())
    meta["config"]["hidden_widths"] = [200000, 200000]
    (path / "config.json").write_text(json.dumps(_reseal(meta)))
    args = (
        [a.format(crafted=path) for a in args]
        + ["--out", str(tmp_path / "o")] * (args[0] == "train")
        + ["-q"]
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CAPPED, *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    wall = time.perf_counter() - t0
    assert "rc=1" in proc.stdout, (proc.stdout, proc.stderr)
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "needs" in err[0] and fragment in err[0], err
    seconds = float(proc.stdout.split("seconds=")[1])
    assert seconds < 5, (seconds, wall)


@pytest.mark.slow
def test_data_labels_are_mapped_to_their_distinct_values(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.random((60, 2, 3)).astype(np.float32)
    y = np.where(X[:, -1, 0] > 0.5, 1000000, 0)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "d.npz"),
                "--out",
                str(out),
                "--p-last",
                "64",
                "--n-branches",
                "2",
                "--depth",
                "2",
                "-q",
            ]
        )
        == 0
    )
    capsys.readouterr()
    model = ParallelSNN.load(out / "model")
    assert model.config["n_outputs"] <= 2  # not 1000001 classes
    assert model.saved_extra["label_values"] == [0, 1000000]
    assert (
        main(["evaluate", str(out), "--data", str(tmp_path / "d.npz"), "--split", "train", "-q"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["value"] >= 0.5
    # evaluating on data of one class uses the model's mapping (no single-class refusal)
    keep = y == 1000000
    np.savez(tmp_path / "ones.npz", X=X[keep], y=y[keep], X_val=X[keep], y_val=y[keep])
    assert main(["evaluate", str(out), "--data", str(tmp_path / "ones.npz"), "-q"]) == 0
    capsys.readouterr()
    # single class: refused like the estimator does
    np.savez(tmp_path / "one.npz", X=X, y=np.full(60, 3))
    assert (
        main(["train", "--data", str(tmp_path / "one.npz"), "--out", str(tmp_path / "r1"), "-q"])
        == 1
    )
    assert "only one class" in _err(capsys)
    # too many classes: refused with the count
    np.savez(tmp_path / "many.npz", X=rng.random((20001, 1, 1)), y=np.arange(20001))
    assert (
        main(["train", "--data", str(tmp_path / "many.npz"), "--out", str(tmp_path / "r2"), "-q"])
        == 1
    )
    assert "20001 distinct values" in _err(capsys)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "--task", "xor", "--n-train", "0"], "n_train must be >= 1"),
        # a failed pipeline: one line (not also the pipelines' warning)
        (
            [
                "train",
                "--task",
                "xor",
                "-T",
                "3",
                "--n-train",
                "40",
                "--n-val",
                "20",
                "--n-test",
                "20",
                "--scales",
                "1e-9",
            ],
            "method CVX failed",
        ),
    ],
)
def test_clear_messages(argv, fragment, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path / "o"), "-q"]) == 1
    assert fragment in _err(capsys)


def test_load_task_refuses_no_training_samples():
    from convexsnn.tasks import load_task

    with pytest.raises(ValueError, match="n_train must be >= 1"):
        load_task("xor", n_train=0)


def test_unknown_experiment_leaves_no_folder(tmp_path, monkeypatch):
    from convexsnn.experiments import reproduce

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="unknown experiment"):
        reproduce(["nope"], "unused", quick=True)
    assert not (tmp_path / "unused").exists()


def test_demo_text_cites_no_missing_file():
    import inspect

    from convexsnn import cli

    assert "DESIGN.md" not in inspect.getsource(cli)


def test_non_zip_files_get_no_pickle_advice(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"hello, not a zip archive at all" * 10)
    npy = tmp_path / "array.npz"
    with open(npy, "wb") as f:
        np.save(f, np.arange(3))  # a .npy array under a .npz name
    for path in (bad, npy):
        for argv in (
            ["info", str(path)],
            ["train", "--data", str(path), "--out", str(tmp_path / "o")],
        ):
            assert main(argv + ["-q"]) == 1
            err = _err(capsys)
            assert "pickle" not in err and "context manager" not in err and str(path) in err


# ------------------------------------------------------------------ crafted model files
def test_crafted_task_spec_is_refused_and_touches_nothing(tmp_path, capsys, monkeypatch):
    """A resealed config whose task asks for downloads into another folder, or names a data
    file, is refused; nothing is created and no socket is opened."""
    import socket

    def no_network(*a, **k):
        raise AssertionError("a loaded model must not open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    elsewhere = tmp_path / "elsewhere"
    specs = [
        {
            "kind": "task",
            "name": "mnist",
            "options": {"directory": str(elsewhere / "m"), "download": True},
        },
        {"kind": "task", "name": "xor", "options": {"directory": str(elsewhere)}},
        {"kind": "data", "train": str(tmp_path / "secret.npz")},
        {"kind": "task", "name": "../../etc", "options": {}},
        {"kind": "task", "name": "xor", "options": {"n_train": {"nested": 1}}},
    ]
    np.savez(tmp_path / "secret.npz", X=np.zeros((10, 1, 2)), y=np.arange(10) % 2)
    for spec in specs:
        path = _small_model(tmp_path / "x", extra={"task_spec": spec})
        for argv in (
            ["evaluate", str(path)],
            ["plot", "raster", str(path), "--out", str(tmp_path / "r.png")],
        ):
            assert (
                main(
                    argv + ["-q", "--mnist-dir", str(tmp_path / "nomnist")]
                    if argv[0] == "plot"
                    else argv + ["-q"]
                )
                == 1
            ), spec
            err = _err(capsys)
            assert "refused" in err or "does not read files" in err or "--mnist-dir" in err, err
        assert not elsewhere.exists()
    assert not (tmp_path / "r.png").exists()


def test_crafted_beta_is_refused(tmp_path, capsys):
    path = _small_model(tmp_path)
    meta = json.loads((path / "config.json").read_text())
    meta["config"]["leak"] = 0.5
    (path / "config.json").write_text(json.dumps(meta))
    assert main(["info", str(path), "-q"]) == 1
    assert "config checksum mismatch" in _err(capsys)


# ------------------------------------------------------------------ reproduce: lock and workers
_FAKE = textwrap.dedent('''
    """A fake experiment for the runner tests: cells sleep, then write their seed."""
    import os, time
    from convexsnn.experiments.base import Cell
    NAME = "fake"
    DESCRIPTION = "fake"
    ANCHORS = {}

    def cells(quick, seeds):
        return [Cell(NAME, f"c-s{s}", {"sleep": float(os.environ.get("FAKE_SLEEP", "0.2"))}, s)
                for s in seeds]

    def run_cell(cell):
        d = os.environ.get("FAKE_PIDS")
        if d:
            open(os.path.join(d, str(os.getpid())), "w").close()
        time.sleep(cell.params["sleep"] * (3 if cell.seed == 0 else 1))
        return {"records": [{"seed": cell.seed}]}

    def table(cells):
        return "\\n".join(sorted(c["cell"]["id"] for c in cells)) + "\\n"
''')

_RUN = textwrap.dedent("""
    import sys
    from convexsnn.experiments import EXPERIMENTS, reproduce
    EXPERIMENTS["fake"] = "fake_experiment"
    seeds = [int(s) for s in sys.argv[2].split(",")]
    reproduce(["fake"], sys.argv[1], seeds=seeds, jobs=int(sys.argv[3]), threads=1)
""")


def _fake_env(tmp_path: Path, **extra) -> dict:
    (tmp_path / "fake_experiment.py").write_text(_FAKE)
    env = _env(**extra)
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env["PYTHONPATH"]
    return env


@pytest.mark.slow
def test_concurrent_reproduce_keeps_every_cell(tmp_path):
    env = _fake_env(tmp_path, FAKE_SLEEP="0.5")
    out = tmp_path / "out"
    # run A (seeds 0 1 2) and run B (seed 0, slow cell: writes its summary last)
    a = subprocess.Popen([sys.executable, "-c", _RUN, str(out), "1,2", "1"], env=env)
    b = subprocess.Popen([sys.executable, "-c", _RUN, str(out), "0", "1"], env=env)
    assert a.wait(300) == 0 and b.wait(300) == 0
    res = json.loads((out / "fake" / "results.json").read_text())
    assert sorted(c["cell"]["id"] for c in res["cells"]) == ["c-s0", "c-s1", "c-s2"]
    assert res["seeds"] == [0, 1, 2]
    table = (out / "fake" / "table.md").read_text()
    assert all(f"c-s{s}" in table for s in (0, 1, 2))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
def test_killed_parent_leaves_no_worker(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    env = _fake_env(tmp_path, FAKE_SLEEP="60", FAKE_PIDS=str(pids))
    parent = subprocess.Popen(
        [sys.executable, "-c", _RUN, str(tmp_path / "out"), "1,2", "2"], env=env
    )
    try:
        deadline = time.time() + 240  # spawned workers import torch: slow on a busy machine
        while len(list(pids.iterdir())) < 2 and time.time() < deadline:
            time.sleep(0.2)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        return "\nState:\tZ" not in state

    deadline = time.time() + 10
    while any(alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.2)
    left = [p for p in workers if alive(p)]
    for p in left:  # do not leave them running if the test fails
        os.kill(p, signal.SIGKILL)
    assert not left


def test_reproduce_refuses_committed_results(tmp_path):
    import shutil

    from convexsnn.experiments import reproduce

    if shutil.which("git") is None:
        pytest.skip("git not installed")
    out = tmp_path / "results"
    (out / "xor").mkdir(parents=True)
    (out / "xor" / "table.md").write_text("recorded")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(git + ["add", "results"], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-qm", "r"], cwd=tmp_path, check=True)
    monkeypatch_run = {"n": 0}

    def no_cell(*a, **k):  # a refused run must not compute anything
        monkeypatch_run["n"] += 1
        raise AssertionError("a cell ran")

    import convexsnn.experiments.runner as runner

    orig = runner._run_one
    runner._run_one = no_cell
    try:
        with pytest.raises(FileExistsError, match="committed to git.*--overwrite"):
            reproduce(["addition"], out, quick=True, seeds=(0,))
        assert sorted(p.name for p in out.iterdir()) == ["xor"]
        # rebuilding the summaries from committed cell files computes nothing: allowed
        reproduce(["addition"], out, quick=True, seeds=(0,), run=False)
        assert (out / "addition" / "table.md").is_file()
    finally:
        runner._run_one = orig
    assert monkeypatch_run["n"] == 0


def test_reproduce_logs_each_cell_with_an_eta(tmp_path, monkeypatch, caplog):
    from convexsnn.experiments import EXPERIMENTS, reproduce

    _fake_env(tmp_path, FAKE_SLEEP="0.01")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(EXPERIMENTS, "fake", "fake_experiment")
    with caplog.at_level("INFO", logger="convexsnn"):
        reproduce(["fake"], tmp_path / "out", seeds=(1, 2), threads=1)
    lines = [r.getMessage() for r in caplog.records if "done in" in r.getMessage()]
    assert len(lines) == 2 and "(1/2, ETA" in lines[0] and "(2/2, ETA 0s)" in lines[1]


@pytest.mark.slow
def test_sg_training_prints_each_epoch_with_an_eta(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--task",
                "xor",
                "-T",
                "3",
                "--n-train",
                "40",
                "--n-val",
                "20",
                "--n-test",
                "20",
                "--method",
                "sg",
                "--sg-epochs",
                "3",
                "--out",
                str(tmp_path / "o"),
                "--no-progress",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    for k in (1, 2, 3):
        assert f"SG epoch {k}/3 (ETA" in err
    import logging

    assert logging.getLogger("convexsnn").level == logging.NOTSET  # restored
