"""A task from user data files: ``.npz`` archives of inputs and labels.

:func:`load_npz_task` reads the files behind ``convexsnn train --data FILE.npz`` (and
``--val-data`` / ``--test-data``) into a :class:`~convexsnn.tasks.TaskData`, checking every array
before any work: a file that is not a plain ``.npz`` archive (no pickle is ever read), inputs
that are not finite numbers of shape ``(n, T, d)`` or ``(n, d)``, labels that are not integer
classes, and splits that disagree with each other are refused with a one-line ``ValueError``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from .._checks import MAX_CLASSES
from .._persist import short_error as _short
from .base import Split, TaskData

logger = logging.getLogger("convexsnn")

__all__ = ["load_npz_task", "read_npz"]

#: share of the training rows held out as validation data when a file has none
VAL_FRACTION = 0.2


def read_npz(path: str | os.PathLike, what: str = "data") -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` archive at ``path`` (read without pickle).

    Parameters
    ----------
    path : path-like
    what : str
        What the file is, for the messages (``"training data"``, ...).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        ``path`` is a folder, a single ``.npy`` array, or not a readable ``.npz`` archive of plain
        arrays.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} file {p} does not exist")
    if p.is_dir():
        raise ValueError(f"{what} file {p} is a folder, not a .npz file")
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as exc:  # BadZipFile, ValueError on object arrays, OSError ...
        raise ValueError(f"{what} file {p} could not be read as .npz ({_short(exc)})") from None
    if not hasattr(z, "files"):
        raise ValueError(
            f"{what} file {p} is a single .npy array, not a .npz archive with arrays X and y"
        )
    try:
        with z:
            return {k: z[k] for k in z.files}
    except Exception as exc:
        raise ValueError(f"{what} file {p} could not be read as .npz ({_short(exc)})") from None


def _split_from(arrs: dict, xk: str, yk: str, source: str) -> Split:
    """The :class:`Split` of arrays ``arrs[xk]`` (inputs; ``(n, d)`` is read as ``T = 1``) and
    ``arrs[yk]`` (integer labels), checked."""
    if xk not in arrs or yk not in arrs:
        raise ValueError(f"{source} must hold arrays {xk!r} and {yk!r} (found {sorted(arrs)})")
    X, y = np.asarray(arrs[xk]), np.asarray(arrs[yk])
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise ValueError(f"{source}: {xk} must be numeric, got dtype {X.dtype}")
    if X.ndim == 2:
        X = X[:, None, :]
    if X.ndim != 3:
        raise ValueError(f"{source}: {xk} must have shape (n, T, d) or (n, d), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{source}: {xk} contains NaN or inf")
    if not (
        np.issubdtype(y.dtype, np.integer)
        or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))
    ):
        raise ValueError(
            f"{source}: {yk} must hold integer class labels 0..C-1, got dtype {y.dtype}"
        )
    if y.size and y.min() < 0:
        raise ValueError(f"{source}: {yk} has negative labels; labels must be 0..C-1")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{source}: {xk} has {X.shape[0]} rows but {yk} has {y.shape[0]}")
    return Split(
        torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
    )


def _label_values(train: Split, val: Split, test: Split, source: str) -> list[int] | None:
    """The distinct labels of the splits, mapped to classes ``0..C-1`` in increasing order
    (``None`` when they already are ``0..C-1``). Refuses a single training class and more than
    :data:`~convexsnn._checks.MAX_CLASSES` classes."""
    uniq = np.unique(np.concatenate([s.y.reshape(-1).numpy() for s in (train, val, test) if s.n]))
    if uniq.size > MAX_CLASSES:
        raise ValueError(
            f"{source}: the labels hold {uniq.size} distinct values, more "
            f"than the {MAX_CLASSES} classes convexsnn accepts from a data file (one "
            "output per class)"
        )
    train_classes = np.unique(train.y.reshape(-1).numpy())
    if train_classes.size < 2:
        raise ValueError(
            f"{source}: training labels hold only one class "
            f"({int(train_classes[0]) if train_classes.size else 'none'}); a "
            "classifier needs samples of at least 2 classes"
        )
    if np.array_equal(uniq, np.arange(uniq.size)):
        return None
    logger.info("labels %s mapped to classes 0..%d", uniq[:10].tolist(), uniq.size - 1)
    return [int(v) for v in uniq]


def load_npz_task(
    train: str | os.PathLike,
    val: str | os.PathLike | None = None,
    test: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    label_values: list[int] | None = None,
    for_model: bool = False,
) -> TaskData:
    """A :class:`~convexsnn.tasks.TaskData` from ``.npz`` data files.

    Parameters
    ----------
    train : path-like
        ``.npz`` archive with ``X`` (``(n, T, d)``; ``(n, d)`` is read as ``T = 1``) and ``y``
        (``(n,)`` integer labels read at the last step: sequence labels, or ``(n, T)`` token
        labels), and optionally ``X_val``/``y_val`` and ``X_test``/``y_test``.
    val, test : path-like, optional
        Separate archives with ``X`` and ``y``; they replace the splits of ``train``'s archive.
    seed : int
        Seed of the held-out validation rows: without validation data a share
        ``VAL_FRACTION = 0.2`` of the training rows (``max(1, round(0.2 n))``, drawn by a
        permutation from ``SeedSequence([seed, 1])``) becomes the validation split. Without
        test data the validation split is also the test split.
    label_values : list of int, optional
        The label of each class ``0..C-1``: labels ``label_values[c]`` become class ``c``.
        Without it (and without ``for_model``) the distinct labels of the files are mapped to
        ``0..C-1`` in increasing order (no mapping when they already are ``0..C-1``).
    for_model : bool
        Data for a trained model: ``label_values`` (its recorded mapping, ``None``: labels are
        already its classes) is used as is, and labels outside it are refused.

    Returns
    -------
    TaskData
        Named ``data:<stem of train>``; ``n_classes = max(2, C)``, ``label_mode`` ``"sequence"``
        for ``(n,)`` labels and ``"token"`` otherwise; ``meta`` records the sources (``kind``,
        ``train``, ``val``, ``test``, ``seed``), ``T``, the split sizes, ``notes`` (held-out
        rows, a test split that is the validation split) and ``label_values``.

    Raises
    ------
    FileNotFoundError
        A file does not exist.
    ValueError
        A file or array is not as described above, the splits disagree on features per step or
        label shape, fewer than 5 training rows are left to hold out validation data, the
        training labels hold one class, or more than ``MAX_CLASSES`` classes.
    """
    source = {
        "kind": "data",
        "train": str(train),
        "val": None if val is None else str(val),
        "test": None if test is None else str(test),
        "seed": int(seed),
    }
    name = str(train)
    arrs = read_npz(train, "training data")
    tr = _split_from(arrs, "X", "y", name)
    va = te = None
    if "X_val" in arrs:
        va = _split_from(arrs, "X_val", "y_val", name)
    if "X_test" in arrs:
        te = _split_from(arrs, "X_test", "y_test", name)
    if val is not None:
        va = _split_from(read_npz(val, "validation data"), "X", "y", str(val))
    if test is not None:
        te = _split_from(read_npz(test, "test data"), "X", "y", str(test))
    notes = []
    if va is None:
        if tr.n < 5:
            raise ValueError(
                f"{name}: too few rows ({tr.n}) to hold out validation "
                "data; give X_val/y_val or --val-data"
            )
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
        perm = torch.from_numpy(rng.permutation(tr.n))
        n_val = max(1, int(round(VAL_FRACTION * tr.n)))
        va = Split(tr.X[perm[:n_val]], tr.y[perm[:n_val]])
        tr = Split(tr.X[perm[n_val:]], tr.y[perm[n_val:]])
        notes.append(f"held out {n_val} training rows as validation data")
    if te is None:
        te = va
        notes.append("no test data: the test split is the validation split")
    for what, s in (("validation", va), ("test", te)):
        if s.X.shape[2] != tr.X.shape[2]:
            raise ValueError(
                f"{what} data has {s.X.shape[2]} features per step, training data "
                f"has {tr.X.shape[2]}"
            )
        if s.y.ndim != tr.y.ndim:
            raise ValueError(
                f"{what} labels have shape {tuple(s.y.shape)}, training labels {tuple(tr.y.shape)}"
            )
    if for_model or label_values is not None:
        values = None if label_values is None else [int(v) for v in label_values]
    else:
        values = _label_values(tr, va, te, name)
    if values is not None:
        lookup = {v: i for i, v in enumerate(values)}

        def remap(s: Split) -> Split:
            flat = s.y.reshape(-1).tolist()
            unknown = sorted({v for v in flat if v not in lookup})
            if unknown:
                raise ValueError(
                    f"labels {unknown[:5]} do not occur in the model's training "
                    f"labels {values[:10]}"
                )
            return Split(
                s.X, torch.tensor([lookup[v] for v in flat], dtype=torch.int64).reshape(s.y.shape)
            )

        tr, va, te = remap(tr), remap(va), remap(te)
    n_classes = max(
        2,
        len(values)
        if values is not None
        else int(max(int(s.y.max()) for s in (tr, va, te) if s.n)) + 1,
    )
    for n in notes:
        logger.info("%s", n)
    return TaskData(
        train=tr,
        val=va,
        test=te,
        n_classes=n_classes,
        label_mode="sequence" if tr.y.ndim == 1 else "token",
        name=f"data:{Path(name).stem}",
        meta={
            "source": source,
            "T": int(tr.T),
            "n_train": tr.n,
            "n_val": va.n,
            "n_test": te.n,
            "notes": notes,
            "label_values": values,
        },
    )
