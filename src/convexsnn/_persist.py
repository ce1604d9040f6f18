r"""Saving and loading: the one archive format shared by models and spike dictionaries.

A convexsnn save is an ``.npz`` archive (a zip of plain ``.npy`` arrays, never a pickle) holding
``__meta__``, a JSON manifest stored as bytes, next to the named arrays. The manifest names the
``format`` (``"convexsnn.ParallelSNN"``, ``"convexsnn.SpikeDictionary"``) and its
``format_version``, and carries sha256 checksums of the content, so that a corrupt or edited file
is refused on load instead of giving a silently different object:

* :func:`arrays_sha256` hashes named arrays (name, dtype, shape and bytes of each, in name order);
* :func:`meta_sha256` hashes the manifest itself (less its own ``meta_sha256`` entry) as canonical
  JSON.

Writing goes through :mod:`convexsnn._io` (temporary sibling, ``fsync``, ``os.replace``), so a
reader never sees half a file. :func:`check_archive_target` refuses, before anything is written,
to replace a file that is not a save of the same kind (nothing a user saved is deleted unless
asked). Reading (:func:`read_archive`) opens the archive with ``allow_pickle=False`` and turns
every failure into a one-line ``ValueError`` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_bytes, check_output_path

__all__ = [
    "META_KEY",
    "arrays_sha256",
    "read_error",
    "meta_sha256",
    "npz_bytes",
    "write_archive",
    "read_archive",
    "read_manifest",
    "check_format",
    "check_archive_target",
    "short_error",
]

#: name of the JSON manifest inside a saved archive
META_KEY = "__meta__"


def short_error(exc: BaseException) -> str:
    """One line of an exception's text, without numpy's ``allow_pickle`` advice (a model or data
    file holding pickled objects is refused, never unpickled)."""
    text = " ".join(str(exc).split())
    if "allow_pickle" in text or "pickle" in text.lower():
        return "not a zip (.npz) archive of plain arrays"
    return text or type(exc).__name__


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over named arrays: name, dtype, shape and bytes of each, in name order."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode())
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def meta_sha256(meta: dict) -> str:
    """sha256 of ``meta`` (less its own ``meta_sha256``) as canonical JSON."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of an (uncompressed) ``.npz`` archive of ``arrays``."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def write_archive(
    path: str | os.PathLike, meta: dict | bytes, arrays: dict[str, np.ndarray]
) -> Path:
    """Write ``arrays`` and the manifest ``meta`` (a dict, written as sorted JSON, or ready JSON
    bytes) to the ``.npz`` file ``path``, atomically."""
    if META_KEY in arrays:
        raise ValueError(f"{META_KEY!r} is reserved for the manifest")
    meta_bytes = meta if isinstance(meta, bytes) else json.dumps(meta, sort_keys=True).encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = npz_bytes({META_KEY: np.frombuffer(meta_bytes, dtype=np.uint8), **arrays})
    return atomic_write_bytes(path, data)


def read_error(exc: BaseException, path: Path, what: str, part: str) -> BaseException:
    """The one-line error for ``exc`` raised while reading the ``part`` (``"manifest"``,
    ``"config"``) of a saved ``what`` at ``path``: a ``ValueError`` naming the path for bad JSON,
    JSON nested too deeply and unreadable files; a ``FileNotFoundError`` is returned as it is."""
    if isinstance(exc, FileNotFoundError):
        return exc
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return ValueError(f"{path}: {part} is not valid JSON ({exc})")
    if isinstance(exc, RecursionError):
        return ValueError(f"{path}: {part} is nested too deeply to be a convexsnn {what}")
    return ValueError(f"{path}: file could not be read, it may be corrupt ({short_error(exc)})")


def read_archive(path: str | os.PathLike, what: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Manifest and arrays of a saved archive, refusing anything that is not one.

    Raises ``FileNotFoundError`` when ``path`` does not exist and a one-line ``ValueError`` naming
    ``path`` and ``what`` (e.g. ``"model"``) for a file that cannot be read: not a zip, a single
    ``.npy`` array, pickled objects, no manifest, a manifest that is not a JSON object.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved {what} at {path}")
    try:
        z = np.load(path, allow_pickle=False)
        if not hasattr(z, "files"):
            raise ValueError(f"{path}: a single .npy array, not a convexsnn {what} file")
        with z:
            if META_KEY not in z.files:
                raise ValueError(f"{path}: not a convexsnn {what} file")
            arrays = {k: np.array(z[k]) for k in z.files}
        meta = json.loads(arrays.pop(META_KEY).tobytes().decode())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, OSError, EOFError) as exc:
        raise read_error(exc, path, what, "manifest") from None
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(
            f"{path}: file could not be read, it is corrupt or not a convexsnn "
            f"{what} ({short_error(exc)})"
        ) from None
    except Exception as exc:  # zipfile.BadZipFile and friends
        raise ValueError(
            f"{path}: file could not be read, it is corrupt or not a convexsnn "
            f"{what} ({short_error(exc)})"
        ) from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: not a convexsnn {what} file (manifest is not an object)")
    return meta, arrays


def read_manifest(path: str | os.PathLike) -> dict | None:
    """The manifest of a saved archive, or ``None`` when ``path`` is not one (never raises)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if META_KEY not in z.files:
                return None
            meta = json.loads(z[META_KEY].tobytes().decode())
    except Exception:
        return None
    return meta if isinstance(meta, dict) else None


def check_format(
    meta: dict, path: str | os.PathLike, fmt: str, readable: tuple[int, ...], what: str
) -> int:
    """Check the manifest's ``format`` is ``fmt`` and its ``format_version`` one of ``readable``;
    return the version. One-line ``ValueError`` naming ``path`` otherwise."""
    if meta.get("format") != fmt:
        raise ValueError(f"{path}: not a convexsnn {what} save")
    version = meta.get("format_version")
    if isinstance(version, bool) or version not in readable:
        raise ValueError(
            f"{path}: format version {repr(version)[:40]} is not supported "
            f"(this convexsnn reads versions {list(readable)})"
        )
    return int(version)


def check_archive_target(
    path: str | os.PathLike, fmt: str, what: str, *, overwrite: bool = False, is_ours: Any = None
) -> Path:
    """Check, without writing anything, that a save of format ``fmt`` may write ``path``.

    Refused: a path that is a folder, lies under a file or in a folder that is not writable;
    and, unless ``overwrite``, an existing file that is not a save of the same format (saving
    never deletes what it did not write). ``is_ours(path) -> bool`` may replace the format test
    (e.g. for archives written before the manifest named its format). Returns ``path``.
    """
    path = Path(path)
    check_output_path(path, what, directory=False)
    if path.exists() and not overwrite:
        ours = (
            is_ours(path)
            if is_ours is not None
            else (read_manifest(path) or {}).get("format") == fmt
        )
        if not ours:
            raise FileExistsError(
                f"refusing to overwrite {path}: it is not a convexsnn {what} "
                "file (pass overwrite=True / --overwrite to replace it)"
            )
    return path
