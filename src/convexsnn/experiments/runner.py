"""The ``reproduce`` engine: run experiment cells (resumable, optionally in parallel), then write
``results.json``, ``table.md`` and PNG plots per experiment.

Layout of ``out_dir``::

    <out_dir>/<experiment>/cells/<cell-id>.json   one file per finished cell (written atomically)
    <out_dir>/<experiment>/results.json           every cell record + config + machine + timings
    <out_dir>/<experiment>/table.md               the markdown table (ours beside published)
    <out_dir>/<experiment>/*.png                  plots

Resume: a cell whose file exists, parses, and holds the same cell definition is skipped (unless
``force=True``). A corrupt cell file (unreadable JSON, wrong format or a different cell
definition, e.g. after a config change) is **recomputed** and overwritten; a warning names it.
A cell that raises is logged, listed under ``failed`` in ``results.json`` and left without a file,
so the next call retries it.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import json
import logging
import math
import multiprocessing
import os
import platform
import time
import traceback
from pathlib import Path
from typing import Any, Iterable, Sequence

from .._io import atomic_write_json, atomic_write_text
from .base import REQUIRED_ATTRIBUTES, Cell

__all__ = ["reproduce", "load_experiment", "machine_info", "cell_path", "CELL_FORMAT"]

logger = logging.getLogger("convexsnn")

CELL_FORMAT = "convexsnn.experiment-cell"
CELL_FORMAT_VERSION = 1


def load_experiment(name: str):
    """Import the experiment module registered as ``name`` and check its interface."""
    from . import EXPERIMENTS

    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; registered: {', '.join(EXPERIMENTS)}")
    mod = importlib.import_module(EXPERIMENTS[name])
    missing = [a for a in REQUIRED_ATTRIBUTES if not hasattr(mod, a)]
    if missing:
        raise TypeError(f"experiment module {EXPERIMENTS[name]} lacks {missing}")
    return mod


def machine_info() -> dict:
    """JSON-safe description of the machine and software."""
    import numpy
    import torch

    from .. import __version__

    return {
        "platform": platform.platform(), "machine": platform.machine(),
        "processor": platform.processor(), "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "numpy": numpy.__version__,
        "cuda_available": bool(torch.cuda.is_available()), "convexsnn": __version__,
        "hostname_hash": hash(platform.node()) & 0xFFFF,
    }


def cell_path(out_dir: Path, cell: Cell) -> Path:
    """Result file of ``cell``."""
    return Path(out_dir) / cell.experiment / "cells" / f"{cell.id}.json"


def _read_cell_file(path: Path, cell: Cell) -> dict | None:
    """The stored record if ``path`` holds a valid result of exactly ``cell``, else ``None``."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("cell file %s is corrupt (%s); recomputing it", path, exc)
        return None
    if (not isinstance(data, dict) or data.get("format") != CELL_FORMAT
            or "result" not in data or not isinstance(data.get("cell"), dict)):
        logger.warning("cell file %s is not a convexsnn cell record; recomputing it", path)
        return None
    if data["cell"] != json.loads(json.dumps(cell.to_dict())):
        logger.warning("cell file %s holds a different cell definition; recomputing it", path)
        return None
    return data


def _run_one(module_name: str, cell_dict: dict, path: str, single_thread: bool) -> dict:
    """Run one cell (in this process or a worker), write its file atomically, return it."""
    import torch

    if single_thread:
        torch.set_num_threads(1)
    mod = importlib.import_module(module_name)
    cell = Cell.from_dict(cell_dict)
    t0 = time.perf_counter()
    result = mod.run_cell(cell)
    seconds = time.perf_counter() - t0
    data = {"format": CELL_FORMAT, "format_version": CELL_FORMAT_VERSION,
            "cell": cell.to_dict(), "result": result, "seconds": seconds,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info()}
    atomic_write_json(path, _json_clean(data))
    return data


def _json_clean(o: Any) -> Any:
    """Replace non-finite floats by ``None`` (strict JSON)."""
    if isinstance(o, dict):
        return {str(k): _json_clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _resolve_names(names: str | Iterable[str] | None) -> list[str]:
    from . import EXPERIMENTS

    if names is None or names == "all":
        return list(EXPERIMENTS)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    if "all" in names:
        return list(EXPERIMENTS)
    for n in names:
        if n not in EXPERIMENTS:
            raise ValueError(f"unknown experiment {n!r}; registered: {', '.join(EXPERIMENTS)}")
    return names


def _plots(mod, cells: list[dict], exp_dir: Path) -> list[str]:
    if not hasattr(mod, "plots"):
        return []
    try:
        paths = mod.plots(cells, exp_dir) or []
    except Exception as exc:  # a plot must never lose the numbers
        logger.warning("plots of %s failed: %s", mod.NAME, exc)
        return []
    return [str(Path(p).name) for p in paths]


def reproduce(names: str | Iterable[str] | None, out_dir: str | os.PathLike, *,
              quick: bool = False, jobs: int = 1, seeds: Sequence[int] = (0, 1, 2),
              force: bool = False, run: bool = True) -> dict:
    """Run the cells of the named experiments and write their reports.

    Parameters
    ----------
    names : str, list of str or None
        Registered experiment names (``"all"`` or ``None``: every registered experiment; a
        comma-separated string is accepted).
    out_dir : path
        Output root (created).
    quick : bool
        Run each experiment's small version (CI).
    jobs : int
        ``1`` runs the cells in this process; ``> 1`` runs them in a
        :class:`~concurrent.futures.ProcessPoolExecutor` of that many workers (spawned, one torch
        thread each).
    seeds : sequence of int
        Seeds of the cells (an experiment may use fewer in quick mode).
    force : bool
        Recompute cells even when their result file exists.
    run : bool
        ``False`` runs nothing: the reports are (re)written from the cell files already present
        (e.g. after an interrupted run); missing cells are listed as ``missing``.

    Returns
    -------
    dict
        Per experiment: ``dir``, ``results``, ``table``, ``plots``, ``n_cells``, ``n_run``,
        ``n_skipped``, ``failed`` (cell ids) and ``seconds``.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    seeds = [int(s) for s in seeds]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {}
    for name in _resolve_names(names):
        t_exp = time.perf_counter()
        mod = load_experiment(name)
        from . import EXPERIMENTS

        cells = list(mod.cells(bool(quick), seeds))
        ids = [c.id for c in cells]
        if len(set(ids)) != len(ids):
            raise ValueError(f"experiment {name} has duplicate cell ids")
        exp_dir = out / name
        (exp_dir / "cells").mkdir(parents=True, exist_ok=True)
        done: dict[str, dict] = {}
        pending: list[Cell] = []
        for c in cells:
            p = cell_path(out, c)
            data = _read_cell_file(p, c) if (p.exists() and not force) else None
            if data is not None:
                done[c.id] = data
            else:
                pending.append(c)
        logger.info("%s: %d cells, %d to run, %d done", name, len(cells), len(pending), len(done))
        failed: dict[str, str] = {}
        module_name = EXPERIMENTS[name]
        missing = [c.id for c in pending] if not run else []
        if not run:
            pending = []
        if jobs == 1 or len(pending) <= 1:
            for c in pending:
                try:
                    done[c.id] = _run_one(module_name, c.to_dict(), str(cell_path(out, c)), False)
                    logger.info("%s/%s done in %.1fs", name, c.id, done[c.id]["seconds"])
                except Exception as exc:
                    logger.error("%s/%s failed: %s", name, c.id, exc)
                    failed[c.id] = traceback.format_exc()
        else:
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                futs = {pool.submit(_run_one, module_name, c.to_dict(), str(cell_path(out, c)),
                                    True): c for c in pending}
                for fut in cf.as_completed(futs):
                    c = futs[fut]
                    try:
                        done[c.id] = fut.result()
                        logger.info("%s/%s done in %.1fs", name, c.id, done[c.id]["seconds"])
                    except Exception as exc:
                        logger.error("%s/%s failed: %s", name, c.id, exc)
                        failed[c.id] = "".join(traceback.format_exception(exc))
        finished = [done[c.id] for c in cells if c.id in done]
        table = mod.table(finished) if finished else "(no finished cells)\n"
        header = (f"# {name}\n\n{mod.DESCRIPTION}\n\n"
                  f"Mode: {'quick' if quick else 'full'}; seeds {seeds}; cells {len(finished)}/"
                  f"{len(cells)}; compute {sum(d['seconds'] for d in finished):.0f} s "
                  f"(sum over cells).\n\n")
        table_path = atomic_write_text(exp_dir / "table.md", header + table)
        plot_files = _plots(mod, finished, exp_dir)
        seconds = time.perf_counter() - t_exp
        results = {
            "format": "convexsnn.experiment-results", "format_version": 1,
            "experiment": name, "description": mod.DESCRIPTION, "anchors": mod.ANCHORS,
            "quick": bool(quick), "seeds": seeds, "jobs": jobs,
            "machine": machine_info(),
            "timings": {"wall_seconds_this_call": seconds,
                        "cell_seconds_total": sum(d["seconds"] for d in finished),
                        "cell_seconds": {d["cell"]["id"]: d["seconds"] for d in finished}},
            "n_cells": len(cells), "n_run": len(pending) - len(failed),
            "n_skipped": len(done) - (len(pending) - len(failed)), "failed": failed,
            "missing": missing, "cells": finished, "table_markdown": table, "plots": plot_files,
        }
        res_path = atomic_write_json(exp_dir / "results.json", _json_clean(results))
        summary[name] = {"dir": str(exp_dir), "results": str(res_path), "table": str(table_path),
                         "plots": plot_files, "n_cells": len(cells),
                         "n_run": len(pending) - len(failed),
                         "n_skipped": len(done) - (len(pending) - len(failed)),
                         "failed": sorted(failed), "missing": missing,
                         "seconds": seconds}
    return summary
