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

Safety. ``results.json`` and ``table.md`` are written under a lock file (``<experiment>/.lock``,
``fcntl.flock``) from every valid cell file present, so two runs sharing ``out_dir`` (e.g. seeds
0 and seeds 0 1) never drop each other's cells. A folder holding results of another run
configuration (``quick`` versus full, or cell files whose definition differs, e.g. the committed
``results/`` of the repository) is refused before anything runs unless ``overwrite=True`` (or
``force=True``). Worker processes die with their parent (``PR_SET_PDEATHSIG`` on Linux, and a
parent-pid watchdog everywhere).
"""

from __future__ import annotations

import concurrent.futures as cf
import fnmatch
import hashlib
import importlib
import json
import logging
import math
import multiprocessing
import os
import platform
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write_json, atomic_write_text, check_output_path, locked
from .base import REQUIRED_ATTRIBUTES, Cell

__all__ = [
    "reproduce",
    "load_experiment",
    "machine_info",
    "cell_path",
    "CELL_FORMAT",
    "default_threads",
]

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


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine_info() -> dict:
    """JSON-safe description of the machine and software."""
    import numpy
    import torch

    from .. import __version__

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        # the vector kernels torch picked (AVX2, AVX512, ...) and the CPU: SG training is
        # bit-reproducible only on the same kernels (they round differently; see docs/method.md)
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_model": _cpu_model(),
        "numpy": numpy.__version__,
        "cuda_available": bool(torch.cuda.is_available()),
        "convexsnn": __version__,
        # a stable 16-bit tag of the host (Python's hash() is salted per process)
        "hostname_hash": int(hashlib.sha256(platform.node().encode()).hexdigest()[:4], 16),
    }


def cell_path(out_dir: Path, cell: Cell) -> Path:
    """Result file of ``cell``."""
    return Path(out_dir) / cell.experiment / "cells" / f"{cell.id}.json"


def default_threads(jobs: int = 1) -> int:
    """Torch threads per cell: the idle cores (cores less the 1-minute load average) shared
    among ``jobs`` workers, at least 1 and at most ``cores // jobs``. On a busy machine more
    threads than idle cores only add contention (measured: see CHANGELOG.md, issue 14)."""
    cores = os.cpu_count() or 1
    try:
        idle = cores - os.getloadavg()[0]
    except (AttributeError, OSError):
        idle = cores
    return max(1, min(cores // max(1, jobs), int(idle) // max(1, jobs)))


def _die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process end when ``parent_pid`` does: ``PR_SET_PDEATHSIG`` (Linux),
    plus a daemon thread that polls the parent pid (any POSIX)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="convexsnn-parent-watchdog", daemon=True).start()


def _worker_init(parent_pid: int, threads: int) -> None:
    _die_with_parent(parent_pid)
    import torch

    torch.set_num_threads(int(threads))


def _read_cell_file(path: Path, cell: Cell, *, quiet: bool = False) -> dict | None:
    """The stored record if ``path`` holds a valid result of exactly ``cell``, else ``None``."""
    if quiet:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        ok = (
            isinstance(data, dict)
            and data.get("format") == CELL_FORMAT
            and "result" in data
            and data.get("cell") == json.loads(json.dumps(cell.to_dict()))
        )
        return data if ok else None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("cell file %s is corrupt (%s); recomputing it", path, exc)
        return None
    if (
        not isinstance(data, dict)
        or data.get("format") != CELL_FORMAT
        or "result" not in data
        or not isinstance(data.get("cell"), dict)
    ):
        logger.warning("cell file %s is not a convexsnn cell record; recomputing it", path)
        return None
    if data["cell"] != json.loads(json.dumps(cell.to_dict())):
        logger.warning("cell file %s holds a different cell definition; recomputing it", path)
        return None
    return data


def _run_one(module_name: str, cell_dict: dict, path: str, threads: int | None) -> dict:
    """Run one cell (in this process or a worker), write its file atomically, return it."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    mod = importlib.import_module(module_name)
    cell = Cell.from_dict(cell_dict)
    t0 = time.perf_counter()
    result = mod.run_cell(cell)
    seconds = time.perf_counter() - t0
    data = {
        "format": CELL_FORMAT,
        "format_version": CELL_FORMAT_VERSION,
        "cell": cell.to_dict(),
        "result": result,
        "seconds": seconds,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
    }
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


def plan_cells(
    names: str | Iterable[str] | None,
    out: Path,
    *,
    quick: bool,
    seeds: Sequence[int],
    force: bool,
    overwrite: bool,
    run: bool = True,
) -> list:
    """Every check a run makes before it creates or writes anything, for every backend.

    Resolves the experiment names, checks the output folder (a path under a file, a file, not
    writable), refuses folders with files committed to git (unless ``overwrite`` or ``force``,
    or ``run=False``: rebuilding the summaries from the committed cell files computes nothing)
    or results of another run configuration (unless ``overwrite`` or ``force``), and returns
    ``(name, module, cells)`` per experiment.
    """
    names = _resolve_names(names)  # before anything is created
    check_output_path(out, "output folder", directory=True)
    if run and not (overwrite or force):
        n_committed = _committed_files(out)
        if n_committed:
            raise FileExistsError(
                f"{out} holds {n_committed} file(s) committed to git (recorded results of the "
                "repository); choose another --out, or pass --overwrite to update them"
            )
    plans = []
    for name in names:
        mod = load_experiment(name)
        cells = list(mod.cells(bool(quick), [int(s) for s in seeds]))
        ids = [c.id for c in cells]
        if len(set(ids)) != len(ids):
            raise ValueError(f"experiment {name} has duplicate cell ids")
        if not (overwrite or force):
            _refuse_other_config(out / name, cells, bool(quick))
        plans.append((name, mod, cells))
    return plans


def reproduce(
    names: str | Iterable[str] | None,
    out_dir: str | os.PathLike,
    *,
    quick: bool = False,
    jobs: int = 1,
    seeds: Sequence[int] = (0, 1, 2),
    force: bool = False,
    run: bool = True,
    overwrite: bool = False,
    threads: int | None = None,
    progress: bool = False,
    cells: str | Iterable[str] | None = None,
) -> dict:
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
    overwrite : bool
        Write into an experiment folder that holds results of another run configuration
        (otherwise refused before anything runs; see the module docstring).
    threads : int, optional
        Torch threads per cell (default :func:`default_threads`).
    progress : bool
        Show a progress bar of the cells (with an ETA) on a terminal; every finished cell is
        also logged with its count and an ETA, which is what a log file gets.
    cells : str or list of str, optional
        Run only the cells whose id matches one of these shell patterns (``fnmatch``, e.g.
        ``"T8-L5-s1"`` or ``"T*-L5-an-s*"``; a comma-separated string is accepted); the other
        cells are neither run nor touched, and the reports are written from every valid cell
        file as always. A pattern that matches no cell of any named experiment raises
        ``ValueError`` before anything runs.

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
    plans = plan_cells(
        names, out, quick=quick, seeds=seeds, force=force, overwrite=overwrite, run=run
    )
    patterns = _cell_patterns(cells, plans)
    threads = int(threads) if threads else default_threads(jobs)
    out.mkdir(parents=True, exist_ok=True)
    logger.info("reproduce: %d torch thread(s) per cell, %d job(s)", threads, jobs)
    summary: dict = {}
    for name, mod, exp_cells in plans:
        t_exp = time.perf_counter()
        from . import EXPERIMENTS

        exp_dir = out / name
        (exp_dir / "cells").mkdir(parents=True, exist_ok=True)
        done: dict[str, dict] = {}
        pending: list[Cell] = []
        for c in exp_cells:
            p = cell_path(out, c)
            if patterns is not None and not any(fnmatch.fnmatchcase(c.id, q) for q in patterns):
                data = _read_cell_file(p, c, quiet=True) if p.exists() else None
                if data is not None:
                    done[c.id] = data
                continue
            data = _read_cell_file(p, c) if (p.exists() and not force) else None
            if data is not None:
                done[c.id] = data
            else:
                pending.append(c)
        logger.info(
            "%s: %d cells, %d to run, %d done", name, len(exp_cells), len(pending), len(done)
        )
        failed: dict[str, str] = {}
        module_name = EXPERIMENTS[name]
        missing = [c.id for c in pending] if not run else []
        if not run:
            pending = []
        bar = _Progress(name, len(pending), progress)
        try:
            if jobs == 1 or len(pending) <= 1:
                import torch

                previous = torch.get_num_threads()
                try:
                    for c in pending:
                        try:
                            done[c.id] = _run_one(
                                module_name, c.to_dict(), str(cell_path(out, c)), threads
                            )
                            bar.done(c.id, done[c.id]["seconds"])
                        except Exception as exc:
                            bar.failed(c.id, exc)
                            failed[c.id] = traceback.format_exc()
                finally:
                    torch.set_num_threads(previous)
            else:
                ctx = multiprocessing.get_context("spawn")
                with cf.ProcessPoolExecutor(
                    max_workers=jobs,
                    mp_context=ctx,
                    initializer=_worker_init,
                    initargs=(os.getpid(), threads),
                ) as pool:
                    futs = {
                        pool.submit(
                            _run_one, module_name, c.to_dict(), str(cell_path(out, c)), threads
                        ): c
                        for c in pending
                    }
                    for fut in cf.as_completed(futs):
                        c = futs[fut]
                        try:
                            done[c.id] = fut.result()
                            bar.done(c.id, done[c.id]["seconds"])
                        except Exception as exc:
                            bar.failed(c.id, exc)
                            failed[c.id] = "".join(traceback.format_exception(exc))
        finally:
            bar.close()
        with locked(exp_dir / ".lock"):
            # every valid cell file, also those another run wrote meanwhile: never drop a cell
            all_cells, all_seeds = _merge_cells(mod, exp_dir, exp_cells, bool(quick), seeds)
            for c in all_cells:
                if c.id not in done and c.id not in failed:
                    data = _read_cell_file(cell_path(out, c), c, quiet=True)
                    if data is not None:
                        done[c.id] = data
            finished = [done[c.id] for c in all_cells if c.id in done]
            table = mod.table(finished) if finished else "(no finished cells)\n"
            header = (
                f"# {name}\n\n{mod.DESCRIPTION}\n\n"
                f"Mode: {'quick' if quick else 'full'}; seeds {all_seeds}; cells "
                f"{len(finished)}/{len(all_cells)}; compute "
                f"{sum(d['seconds'] for d in finished):.0f} s (sum over cells).\n\n"
            )
            table_path = atomic_write_text(exp_dir / "table.md", header + table)
            plot_files = _plots(mod, finished, exp_dir)
            seconds = time.perf_counter() - t_exp
            n_run = len(pending) - len(failed)
            results = {
                "format": "convexsnn.experiment-results",
                "format_version": 1,
                "experiment": name,
                "description": mod.DESCRIPTION,
                "anchors": mod.ANCHORS,
                "quick": bool(quick),
                "seeds": all_seeds,
                "jobs": jobs,
                "threads": threads,
                "machine": machine_info(),
                "timings": {
                    "wall_seconds_this_call": seconds,
                    "cell_seconds_total": sum(d["seconds"] for d in finished),
                    "cell_seconds": {d["cell"]["id"]: d["seconds"] for d in finished},
                },
                "n_cells": len(all_cells),
                "n_run": n_run,
                "n_skipped": len(done) - n_run,
                "failed": failed,
                "missing": missing,
                "cells": finished,
                "table_markdown": table,
                "plots": plot_files,
            }
            res_path = atomic_write_json(exp_dir / "results.json", _json_clean(results))
        summary[name] = {
            "dir": str(exp_dir),
            "results": str(res_path),
            "table": str(table_path),
            "plots": plot_files,
            "n_cells": len(all_cells),
            "n_run": n_run,
            "n_skipped": len(done) - n_run,
            "failed": sorted(failed),
            "missing": missing,
            "seconds": seconds,
        }
    return summary


def _cell_patterns(cells: str | Iterable[str] | None, plans: list) -> list[str] | None:
    """The ``cells`` patterns of :func:`reproduce` as a list (``None``: every cell); each must
    match a cell id of the planned experiments."""
    if cells is None:
        return None
    pats = [q.strip() for q in cells.split(",")] if isinstance(cells, str) else list(cells)
    pats = [q for q in pats if q]
    if not pats:
        raise ValueError("cells must name at least one cell id or pattern")
    ids = [c.id for _, _, cs in plans for c in cs]
    unmatched = [q for q in pats if not any(fnmatch.fnmatchcase(i, q) for i in ids)]
    if unmatched:
        raise ValueError(f"cells {unmatched} match no cell of the named experiments")
    return pats


def _merge_cells(
    mod, exp_dir: Path, cells: list[Cell], quick: bool, seeds: list[int]
) -> tuple[list[Cell], list[int]]:
    """This run's cells plus those of the other seeds whose cell files are in ``exp_dir``."""
    found: set[int] = set()
    for f in (exp_dir / "cells").glob("*.json"):
        try:
            cd = json.loads(f.read_text(encoding="utf-8")).get("cell") or {}
            found.add(int(cd["seed"]))
        except (OSError, ValueError, TypeError, AttributeError, KeyError):
            continue
    by_id = {c.id: c for c in cells}
    seeds_all = set(seeds)
    for s in sorted(found - set(seeds)):
        try:
            extra = mod.cells(quick, [s])
        except Exception:  # pragma: no cover - an experiment that rejects this seed
            continue
        for c in extra:
            if (
                c.id not in by_id
                and _read_cell_file(exp_dir / "cells" / f"{c.id}.json", c, quiet=True) is not None
            ):
                by_id[c.id] = c
                seeds_all.add(s)
    return list(by_id.values()), sorted(seeds_all)


def _committed_files(out: Path) -> int:
    """Number of files under ``out`` tracked by git (0 when git is absent or ``out`` is new)."""
    if not out.is_dir():
        return 0
    import subprocess

    try:
        proc = subprocess.run(
            ["git", "ls-files", "--", "."], cwd=out, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return 0
    return len(proc.stdout.splitlines()) if proc.returncode == 0 else 0


def _refuse_other_config(exp_dir: Path, cells: list[Cell], quick: bool) -> None:
    """Raise if ``exp_dir`` holds results of another run configuration (see module doc)."""
    res = exp_dir / "results.json"
    if res.is_file():
        try:
            old = json.loads(res.read_text(encoding="utf-8"))
            old_quick = old.get("quick") if isinstance(old, dict) else None
        except (OSError, ValueError):
            old_quick = None
        if isinstance(old_quick, bool) and old_quick != quick:
            raise FileExistsError(
                f"{exp_dir} holds {'quick' if old_quick else 'full'} results; this "
                f"{'quick' if quick else 'full'} run would mix with them: choose another --out, "
                "or pass --overwrite"
            )
    differ = []
    for c in cells:
        p = exp_dir / "cells" / f"{c.id}.json"
        if not p.is_file():
            continue
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # corrupt: recomputed, as always
        if (
            isinstance(data, dict)
            and data.get("format") == CELL_FORMAT
            and isinstance(data.get("cell"), dict)
            and data["cell"] != json.loads(json.dumps(c.to_dict()))
        ):
            differ.append(c.id)
    if differ:
        raise FileExistsError(
            f"{exp_dir} holds {len(differ)} cell file(s) of another run configuration (e.g. "
            f"{differ[0]}); this run would overwrite them: choose another --out, or pass "
            "--overwrite (or --force) to recompute them"
        )


class _Progress:
    """Cells finished of one experiment: a tqdm bar on a terminal, and one log line per cell
    with its count and an ETA (what a log file or a pipe gets)."""

    def __init__(self, name: str, total: int, show: bool):
        self.name, self.total, self.n = name, total, 0
        self.t0 = time.perf_counter()
        self.bar = None
        if show and total and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, desc=f"{name} cells", unit="cell", file=sys.stderr, leave=False
            )

    def _eta(self) -> str:
        if not self.n:
            return "?"
        left = (time.perf_counter() - self.t0) / self.n * (self.total - self.n)
        return f"{left:.0f}s"

    def done(self, cell_id: str, seconds: float) -> None:
        self.n += 1
        if self.bar is not None:
            self.bar.update(1)
        logger.info(
            "%s/%s done in %.1fs (%d/%d, ETA %s)",
            self.name,
            cell_id,
            seconds,
            self.n,
            self.total,
            self._eta(),
        )

    def failed(self, cell_id: str, exc: BaseException) -> None:
        self.n += 1
        if self.bar is not None:
            self.bar.update(1)
        logger.error("%s/%s failed: %s (%d/%d)", self.name, cell_id, exc, self.n, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
