"""Issue 13: every convex row of the reproduce experiments is solved to a certified gap.

The full-size configurations ask for a relative duality gap of ``CERTIFY_TOL`` (1e-6) without a
wall-clock cap; ``reproduce(cells=...)`` reruns chosen cells only; ``tools/uncertified_rows.py``
lists the rows of committed JSON that are not certified.
"""

import importlib.util
import json
from pathlib import Path

import pytest

from convexsnn.experiments import reproduce
from convexsnn.experiments.base import CERTIFY_TOL, capped, is_certified
from convexsnn.experiments.runner import _read_cell_file, load_experiment

ROOT = Path(__file__).resolve().parent.parent


def test_full_configs_ask_for_certified_uncapped_solves():
    assert CERTIFY_TOL == 1e-6
    for name in ("addition", "ablations", "long_memory", "xor"):
        mod = load_experiment(name)
        cells = mod.cells(False, [0, 1, 2])
        ids = {c.id for c in cells}
        assert set(mod.CAPPED_CELLS) <= ids, name  # every listed cell exists
        for c in cells:
            cfg = c.params["config"]
            if c.id in mod.CAPPED_CELLS:
                # not rerun yet: the configuration its committed file was recorded with
                assert cfg["tol"] == 1e-3 and cfg["max_time"] in (8.0, 10.0, 30.0), c.id
            else:
                assert cfg["tol"] == CERTIFY_TOL and cfg["max_time"] is None, (name, c.id)
    assert capped({"tol": 1e-6, "max_time": None, "x": 1}, 8.0) == {
        "tol": 1e-3,
        "max_time": 8.0,
        "x": 1,
    }


@pytest.mark.parametrize("name", ["addition", "ablations", "long_memory", "xor"])
def test_committed_cell_files_match_their_cell_definitions(name):
    # a committed cell file is read by the tables only when it holds exactly the cell its module
    # defines now: taking a cell off CAPPED_CELLS without rerunning it (or rerunning it without
    # taking it off) would drop that cell from every table
    mod = load_experiment(name)
    cells = {c.id: c for c in mod.cells(False, [0, 1, 2])}
    files = sorted((ROOT / "results" / name / "cells").glob("*.json"))
    assert files, name
    stale = [p.stem for p in files if p.stem not in cells or not _read_cell_file(p, cells[p.stem])]
    assert stale == [], (name, stale)


def test_is_certified_needs_the_gap_and_convergence():
    assert is_certified({"rel_gap": 1e-9, "converged": True})
    assert is_certified({"rel_gap": 1e-9})  # old records without ``converged``
    assert not is_certified({"rel_gap": 1e-9, "converged": False})
    assert not is_certified({"rel_gap": 2e-6, "converged": True})
    assert not is_certified({"rel_gap": None, "converged": True})
    assert not is_certified({"rel_gap": float("nan")})


@pytest.mark.slow
def test_reproduce_runs_only_the_named_cells(tmp_path):
    with pytest.raises(ValueError, match="match no cell"):
        reproduce(["xor"], tmp_path / "r", quick=True, seeds=(0,), cells="T99-*")
    assert not (tmp_path / "r").exists()  # refused before anything was created
    s = reproduce(["xor"], tmp_path, quick=True, seeds=(0,), cells="quick-T6-L5-an-*")
    files = sorted(p.name for p in (tmp_path / "xor" / "cells").glob("*.json"))
    assert files == ["quick-T6-L5-an-s0.json"]
    assert s["xor"]["n_run"] == 1 and s["xor"]["n_cells"] == 3
    mtime = (tmp_path / "xor" / "cells" / files[0]).stat().st_mtime_ns
    # another pattern: that cell is run, the finished one is kept (neither run nor rewritten)
    s = reproduce(["xor"], tmp_path, quick=True, seeds=(0,), cells=["quick-T6-L5-s0"])
    assert s["xor"]["n_run"] == 1 and s["xor"]["n_skipped"] == 1
    assert (tmp_path / "xor" / "cells" / files[0]).stat().st_mtime_ns == mtime
    res = json.loads((tmp_path / "xor" / "results.json").read_text())
    assert sorted(c["cell"]["id"] for c in res["cells"]) == ["quick-T6-L5-an-s0", "quick-T6-L5-s0"]


def _tool():
    spec = importlib.util.spec_from_file_location(
        "uncertified_rows", ROOT / "tools" / "uncertified_rows.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_uncertified_rows_lists_the_rows_above_the_gap(tmp_path, capsys):
    tool = _tool()
    cells = tmp_path / "results" / "demo" / "cells"
    cells.mkdir(parents=True)

    def cert(g, conv=True, it=10):
        return {"rel_gap": g, "converged": conv, "tol": 1e-3, "iterations": it, "seconds": 0.5}

    records = {
        "a": [{"method": "CVX", "seed": 0, "certificates": [cert(1e-9), cert(1e-8)]}],
        "b": [
            {"method": "CVX", "seed": 1, "certificate": cert(4e-4)},  # converged at 1e-3 only
            {"method": "SG", "seed": 1},  # no convex solve: no row
        ],
        "c": [{"method": "CVX", "seed": 2, "rel_gap": 0.3, "converged": False}],
    }
    for cid, recs in records.items():
        data = {
            "cell": {"experiment": "demo", "id": cid, "params": {"config": {"max_time": 8.0}}},
            "result": {"records": recs},
        }
        (cells / f"{cid}.json").write_text(json.dumps(data))
    out = tmp_path / "rows.json"
    assert tool.main(["--root", str(tmp_path), "--no-benchmarks", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert [(r["cell"], r["certified"]) for r in rows] == [("a", True), ("b", False), ("c", False)]
    assert rows[0]["rel_gap"] == 1e-8 and rows[0]["iterations"] == 10
    assert rows[1]["max_time"] == 8.0 and rows[1]["tol"] == 1e-3
    assert "| demo | b | CVX | 1 | 4.0e-04 |" in text and "| demo | a |" not in text
    assert "demo: 1/3 convex rows certified" in text


def test_uncertified_rows_leaves_superseded_records_out_of_the_counts(tmp_path, capsys):
    tool = _tool()
    bdir = tmp_path / "experiments" / "results"
    bdir.mkdir(parents=True)
    recs = [
        {
            "method": "CVX-delay",
            "n_train": 6000,
            "seed": 0,
            "rel_gap": 0.34,
            "converged": False,
            "old": True,
        },
        {"method": "CVX-delay", "n_train": 6000, "seed": 0, "rel_gap": 4e-11, "converged": True},
    ]
    (bdir / "pure_convex.json").write_text(json.dumps({"records": recs}))
    assert tool.main(["--root", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "pure_convex: 1/1 convex rows certified" in text
    assert "not counted): 1" in text
    assert tool.main(["--root", str(tmp_path), "--superseded"]) == 0
    text = capsys.readouterr().out
    assert "pure_convex: 1/2 convex rows certified" in text and "3.4e-01" in text


def _sync_tool():
    spec = importlib.util.spec_from_file_location(
        "sync_results", ROOT / "tools" / "sync_results.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sync_results_replaces_only_the_marked_blocks(tmp_path):
    tool = _sync_tool()
    begin = "<!-- generated from results/xor/table.md -->"
    end = "<!-- end of generated results/xor/table.md -->"
    text = f"# R\n\nhand text\n\n{begin}\n\nMode: old\n\n| a |\n\n{end}\n\nreading\n"
    new, done = tool.sync_text(text, {"xor": "Mode: new\n\n| b |", "addition": "Mode: x"})
    assert done == ["xor"]  # no markers for addition: nothing inserted
    assert new == f"# R\n\nhand text\n\n{begin}\n\nMode: new\n\n| b |\n\n{end}\n\nreading\n"
    assert tool.sync_text(new, {"xor": "Mode: new\n\n| b |"})[0] == new  # idempotent
    with pytest.raises(ValueError, match="expected one"):
        tool.sync_text(text + begin + "\n", {"xor": "Mode: new"})
    # the body is table.md from its Mode: line on (title and description stay hand-written)
    exp = tmp_path / "results" / "xor"
    exp.mkdir(parents=True)
    (exp / "table.md").write_text("# xor\n\ndescription\n\nMode: full\n\n| c |\n\n")
    assert tool.generated_body(tmp_path, "xor") == "Mode: full\n\n| c |"


def test_results_md_blocks_match_the_committed_tables():
    # RESULTS.md's generated blocks are the committed table.md files (tools/sync_results.py)
    assert _sync_tool().main(["--check"]) == 0
