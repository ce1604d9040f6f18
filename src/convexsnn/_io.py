"""Atomic file writing shared by every module that saves something.

A reader never sees a half-written file: data goes to a temporary file in the destination's
directory, is flushed to disk, and is then moved over the destination with ``os.replace``. New
files get the permissions an ordinary ``open()`` would give them (``0o666`` less the umask), not
the ``0o600`` of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_write_with",
           "atomic_replace_dir", "make_temp_dir"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_mode(path: Path, base: int = 0o666) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return base & ~_umask()


def atomic_write_with(path: str | os.PathLike, writer: Callable[[str], None]) -> Path:
    """Call ``writer(tmp_path)`` to fill a temporary file, then move it to ``path`` atomically.

    If ``path`` exists its permission bits are kept; a failed write leaves it untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    def writer(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    return atomic_write_with(path, writer)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, **kwargs: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (NaN/inf refused)."""
    kwargs.setdefault("indent", 2)
    kwargs.setdefault("sort_keys", True)
    return atomic_write_text(path, json.dumps(obj, allow_nan=False, **kwargs) + "\n")


def make_temp_dir(path: str | os.PathLike) -> Path:
    """A new temporary directory beside ``path`` (same filesystem), mode ``0o777`` less umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def atomic_replace_dir(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Move the finished directory ``tmp`` to ``path``; an old ``path`` is removed only after."""
    tmp, path = Path(tmp), Path(path)
    if path.exists():
        if not path.is_dir():
            raise FileExistsError(f"{path} exists and is not a directory")
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return path


def json_safe(obj: Any, *, strict: bool = False, name: str = "value") -> Any:
    """``obj`` with every nested value converted to a plain JSON type.

    dicts (keys become ``str``), lists and tuples recurse; numpy scalars and arrays and torch
    tensors become Python numbers and lists; ``torch.dtype`` becomes its name (``"float64"``);
    NaN and infinities become ``None`` (JSON has no such numbers). Anything else becomes its
    ``str`` or, with ``strict``, raises ``TypeError`` naming ``name``.
    """
    import math

    import numpy as np
    import torch

    def conv(o: Any) -> Any:
        if isinstance(o, dict):
            return {str(k): conv(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [conv(v) for v in o]
        if isinstance(o, (np.ndarray, torch.Tensor)):
            return conv(o.tolist())
        if isinstance(o, (bool, np.bool_)):
            return bool(o)
        if isinstance(o, (int, np.integer)):
            return int(o)
        if isinstance(o, (float, np.floating)):
            v = float(o)
            return v if math.isfinite(v) else None
        if o is None or isinstance(o, str):
            return o
        if isinstance(o, torch.dtype):
            return str(o).replace("torch.", "")
        if strict:
            raise TypeError(f"{name} must be JSON-safe; got a {type(o).__name__}")
        return str(o)

    return conv(obj)
