"""Atomic file writing shared by every module that saves something.

A reader never sees a half-written file: data goes to a temporary file in the destination's
directory, is flushed to disk, and is then moved over the destination with ``os.replace``. New
files get the permissions an ordinary ``open()`` would give them (``0o666`` less the umask), not
the ``0o600`` of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_with",
    "atomic_replace_dir",
    "make_temp_dir",
    "output_path_problem",
    "check_output_path",
    "locked",
]

logger = logging.getLogger("convexsnn")


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


def atomic_replace_dir(
    tmp: str | os.PathLike, path: str | os.PathLike, *, owned: Iterable[str] | None = None
) -> Path:
    """Move the finished directory ``tmp`` to ``path``.

    An old ``path`` is moved aside first and removed only after the new one is in place. With
    ``owned`` (file names) only those files of the old directory are deleted; if anything else
    is found there (another program wrote into it meanwhile) the old directory is kept, renamed,
    and a warning names it, so nothing a user saved is ever removed.
    """
    tmp, path = Path(tmp), Path(path)
    if path.exists():
        if not path.is_dir():
            raise FileExistsError(f"{path} exists and is not a directory")
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        os.replace(tmp, path)
        if owned is None:
            shutil.rmtree(old, ignore_errors=True)
        else:
            for name in owned:
                try:
                    (old / name).unlink()
                except FileNotFoundError:
                    pass
            try:
                old.rmdir()
            except OSError:
                logger.warning(
                    "%s held files convexsnn did not write; they were kept in %s", path, old
                )
    else:
        os.replace(tmp, path)
    return path


def output_path_problem(path: str | os.PathLike, *, directory: bool = False) -> str | None:
    """Why ``path`` cannot be written (``None`` when it can), checked without writing anything.

    A file path must not be a folder; a folder path must not be a file; the first existing
    ancestor must be a folder (not a file) that this process may write into.
    """
    path = Path(path)
    if path.exists():
        if directory and not path.is_dir():
            return f"{path} exists and is a file, not a folder"
        if not directory and path.is_dir():
            return f"{path} is a folder, not a file"
        target = path if directory else path.parent
        if not os.access(target if str(target) else ".", os.W_OK):
            return f"{target} is not writable"
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    check = parent if str(parent) else Path(".")
    if not check.is_dir():
        return f"{path} lies under {check}, which is a file, not a folder"
    if not os.access(check, os.W_OK | os.X_OK):
        return f"{path} cannot be created: {check} is not writable"
    return None


def check_output_path(
    path: str | os.PathLike, what: str = "output", *, directory: bool = False
) -> Path:
    """Raise ``OSError`` naming the problem if ``path`` cannot be written (see
    :func:`output_path_problem`); call it before long work so that no result is lost."""
    problem = output_path_problem(path, directory=directory)
    if problem is not None:
        raise NotADirectoryError(f"cannot write the {what}: {problem}")
    return Path(path)


class locked:
    """Exclusive advisory lock on ``path`` (created if needed) while the ``with`` block runs.

    Uses ``fcntl.flock`` where available (POSIX), so concurrent processes that write the same
    summary files take turns; elsewhere it does nothing. The lock dies with its process.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None

    def __enter__(self) -> locked:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


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
