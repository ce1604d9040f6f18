"""Run experiment cells as Ray tasks, on this machine or an existing Ray cluster.

The same cells, the same per-cell files and the same resume rule as
:func:`~convexsnn.experiments.runner.reproduce`: a cell whose file exists and holds the same cell
definition is skipped, every finished cell is written (atomically, by the driver) as soon as its
task returns, so an interrupted run loses only the cells in flight; a task whose worker dies is
retried by Ray (``max_retries``), a cell that raises is reported under ``failed`` and left
without a file. The reports (``results.json``, ``table.md``, plots) are then written by the local
runner from the cell files (``reproduce(..., run=False)``).

Ray is an optional dependency (``pip install convexsnn[ray]``). On an existing cluster every
node must be able to import ``convexsnn`` (installed there, or shipped with
``runtime_env={"py_modules": [...]}``); the cell files are written on the driver's machine.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write_json
from ..distributed.ray_blocks import import_ray
from .runner import (
    _json_clean,
    _read_cell_file,
    _run_one,
    cell_path,
    load_experiment,
    plan_cells,
    reproduce,
)

__all__ = ["reproduce_ray"]

logger = logging.getLogger("convexsnn")


def _cell_task(module_name: str, cell_dict: dict) -> dict:
    """Body of one Ray task: run the cell with the local runner's code and return its record."""
    with tempfile.TemporaryDirectory(prefix="convexsnn-cell-") as tmp:
        # _run_one writes the record to a file (here a scratch one); the driver writes the real
        # file, so cells run on other machines need no shared file system
        return _run_one(module_name, cell_dict, os.path.join(tmp, "cell.json"), 1)


def reproduce_ray(
    names: str | Iterable[str] | None,
    out_dir: str | os.PathLike,
    *,
    quick: bool = False,
    seeds: Sequence[int] = (0, 1, 2),
    force: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    max_retries: int = 3,
    runtime_env: dict | None = None,
) -> dict:
    """Like :func:`~convexsnn.experiments.runner.reproduce`, with every cell a Ray task.

    Parameters
    ----------
    names, out_dir, quick, seeds, force
        As in :func:`~convexsnn.experiments.runner.reproduce`.
    address : str, optional
        Address of an existing Ray cluster (``"auto"``, ``"ray://host:10001"``, ...); default:
        start a local one (shut down again at the end).
    num_cpus : int, optional
        CPUs of the local cluster (ignored with ``address``). Each cell takes one CPU and runs
        with one torch thread.
    max_retries : int
        How often Ray re-runs a cell whose worker process died.
    runtime_env : dict, optional
        Passed to ``ray.init`` (e.g. ``{"py_modules": [...]}`` on a cluster without convexsnn).

    Returns
    -------
    dict
        The summary of ``reproduce(..., run=False)`` per experiment, with ``n_run`` (cells
        computed by Ray in this call), ``failed`` (their ids) and ``backend: "ray"``.
    """
    ray = import_ray()
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}")
    seeds = [int(s) for s in seeds]
    out = Path(out_dir)
    # the local runner's checks, before anything is created (committed results, other configs)
    names_l = [
        name
        for name, _, _ in plan_cells(
            names, out, quick=quick, seeds=seeds, force=force, overwrite=False
        )
    ]
    out.mkdir(parents=True, exist_ok=True)
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if runtime_env is not None:
            kw["runtime_env"] = runtime_env
        if address is None:
            kw["num_cpus"] = num_cpus
        ray.init(address=address, **kw)
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=int(max_retries))(_cell_task)
        summary = {}
        for name in names_l:
            summary[name] = _run_experiment(ray, task, name, out, quick, seeds, force)
        return summary
    finally:
        if started:
            ray.shutdown()


def _run_experiment(
    ray, task, name: str, out: Path, quick: bool, seeds: list[int], force: bool
) -> dict:
    from . import EXPERIMENTS

    t0 = time.perf_counter()
    mod = load_experiment(name)
    cells = list(mod.cells(bool(quick), seeds))
    if len({c.id for c in cells}) != len(cells):
        raise ValueError(f"experiment {name} has duplicate cell ids")
    (out / name / "cells").mkdir(parents=True, exist_ok=True)
    pending = [
        c
        for c in cells
        if force or not cell_path(out, c).exists() or _read_cell_file(cell_path(out, c), c) is None
    ]
    logger.info("%s: %d cells, %d to run on Ray", name, len(cells), len(pending))
    refs = {task.remote(EXPERIMENTS[name], c.to_dict()): c for c in pending}
    failed: dict[str, str] = {}
    n_run = 0
    waiting = list(refs)
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        c = refs[ready[0]]
        try:
            data = ray.get(ready[0])
        except Exception as exc:  # noqa: BLE001 - a failing cell must not lose the others
            logger.error("%s/%s failed on Ray: %s", name, c.id, exc)
            failed[c.id] = str(exc)
            continue
        atomic_write_json(cell_path(out, c), _json_clean(data))
        n_run += 1
        logger.info("%s/%s done in %.1fs (Ray)", name, c.id, data["seconds"])
    report = reproduce([name], out, quick=quick, seeds=seeds, run=False)[name]
    report.update(
        n_run=n_run,
        n_skipped=len(cells) - len(pending),
        failed=sorted(failed),
        backend="ray",
        seconds=time.perf_counter() - t0,
    )
    return report
