"""What every benchmark records about its run, and how it saves it.

Shared by the scripts of this folder (``import _benchlib``: a script's own folder is on
``sys.path`` when it runs as ``python benchmarks/bench_x.py``):

* :data:`THREADS`: the one-thread settings for the subprocesses a benchmark starts;
* :func:`load`: the load average, rounded (record it with every timing);
* :func:`git_commit`: the commit (and whether the tree is dirty) of the checkout holding a path;
* :func:`run_meta`: command line, arguments, commits of the compared codes, load, thread
  settings, machine and time, as one dict (the ``"meta"`` entry of a benchmark's JSON);
* :func:`write_json`: write a result atomically (``convexsnn._io.atomic_write_json``: a reader
  never sees a half-written file), with NaN / inf as ``null`` and other objects as strings.

Nothing here imports the library at module level: a benchmark's child processes choose the code
they measure by ``PYTHONPATH`` and import this module too.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: one thread everywhere (set in the environment of every measured subprocess)
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded to 0.01 (``[]`` where unavailable)."""
    if not hasattr(os, "getloadavg"):
        return []
    return [round(v, 2) for v in os.getloadavg()]


def git_commit(path: str | os.PathLike) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``path`` (``None`` when it
    is not in one or git is missing)."""
    p = Path(path).resolve()
    where = str(p if p.is_dir() else p.parent)
    try:
        sha = subprocess.run(
            ["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        st = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": sha, "dirty": bool(st.strip())}


def _threads_now() -> dict[str, Any]:
    out: dict[str, Any] = {k: os.environ.get(k) for k in THREADS}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_threads"] = torch.get_num_threads()
    return out


def run_meta(args: Any = None, codes: Mapping[str, str] | None = None, **extra: Any) -> dict:
    """The record of this run: ``command`` (as typed), ``args`` (an ``argparse`` namespace or a
    dict), ``git`` (commit of each compared code: ``codes`` maps a label to its ``src`` folder;
    default this script's checkout), ``load`` (now: call it when the measurements are done),
    ``threads`` (the environment's thread settings and torch's, where imported), ``host``,
    ``cpus``, ``machine`` (platform string), ``python`` and ``time`` (UTC); ``extra`` is merged
    in last."""
    here = Path(sys.argv[0]).resolve().parent if sys.argv and sys.argv[0] else Path.cwd()
    codes = dict(codes) if codes else {"new": str(here)}
    a = vars(args) if args is not None and hasattr(args, "__dict__") else args
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": dict(a) if a is not None else None,
        "git": {label: git_commit(src) for label, src in codes.items()},
        "load": load(),
        "threads": _threads_now(),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    meta.update(extra)
    return meta


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN / inf -> None, tuples -> lists, unknown objects -> ``str``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    item = getattr(obj, "item", None)  # numpy / torch scalars
    if callable(item) and getattr(obj, "ndim", 1) == 0:
        return _clean(item())
    return str(obj)


def write_json(path: str | os.PathLike | None, obj: Any, indent: int = 2) -> Path | None:
    """Write ``obj`` as JSON to ``path`` atomically (keys in insertion order); nothing when
    ``path`` is empty. Returns the path written."""
    if not path:
        return None
    from convexsnn._io import atomic_write_json

    return atomic_write_json(path, _clean(obj), indent=indent, sort_keys=False)
