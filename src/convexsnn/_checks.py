"""Input validation shared by every layer of convexsnn.

Each check raises ``ValueError`` or ``TypeError`` with a message that names the offending argument
and says what was expected, so that bad input never surfaces as a traceback from deep inside torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_float_tensor",
    "check_sequence_input",
    "check_labels",
    "check_positive_int",
    "check_positive_float",
    "check_choice",
    "check_finite",
    "check_memory",
    "check_array_size",
    "check_layer_weights",
    "check_dictionary_size",
    "memory_limit_bytes",
    "format_bytes",
    "MAX_CLASSES",
]


def check_choice(value: Any, name: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise raise ``ValueError`` listing them."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_positive_int(value: Any, name: str, *, allow_zero: bool = False) -> int:
    """Return ``value`` as ``int`` if it is a (non-negative when ``allow_zero``) positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} ({value!r})")
    value = int(value)
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_positive_float(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as ``float`` if it is finite and positive (or zero when ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return value


def check_finite(t: torch.Tensor, name: str) -> torch.Tensor:
    """Raise ``ValueError`` if a floating tensor holds NaN or infinity."""
    if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
        n_nan = int(torch.isnan(t).sum())
        n_inf = int(torch.isinf(t).sum())
        raise ValueError(f"{name} contains non-finite values ({n_nan} NaN, {n_inf} inf)")
    return t


def as_float_tensor(
    x: Any, name: str, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Convert array-like ``x`` to a floating torch tensor, refusing non-numeric data.

    Integer and boolean inputs are converted to ``float32`` (or ``dtype``); floating inputs keep
    their dtype unless ``dtype`` is given.
    """
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray) or isinstance(x, (list, tuple)):
        arr = np.asarray(x)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must be numeric, got array of dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if t.is_complex():
        raise TypeError(f"{name} must be real-valued, got complex dtype {t.dtype}")
    if dtype is not None:
        t = t.to(dtype)
    elif not t.is_floating_point():
        t = t.to(torch.float32)
    if device is not None:
        t = t.to(device)
    return t


def check_sequence_input(
    x: Any,
    name: str = "x",
    *,
    n_features: int | None = None,
    n_steps: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Validate a batch of input sequences of shape ``(batch, T, features)``.

    Raises
    ------
    ValueError
        Wrong rank, empty batch, wrong feature size, wrong ``T``, NaN or inf values.
    TypeError
        Non-numeric input.
    """
    t = as_float_tensor(x, name, dtype=dtype, device=device)
    if t.ndim != 3:
        raise ValueError(
            f"{name} must have shape (batch, T, features), got a {t.ndim}-D tensor of shape "
            f"{tuple(t.shape)}"
        )
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(
            f"{name} must have at least one sample and one time step, got shape {tuple(t.shape)}"
        )
    if n_features is not None and t.shape[2] != n_features:
        raise ValueError(
            f"{name} has {t.shape[2]} features per step, expected {n_features} "
            f"(shape {tuple(t.shape)})"
        )
    if n_steps is not None and t.shape[1] != n_steps:
        raise ValueError(f"{name} has T={t.shape[1]} time steps, expected T={n_steps}")
    check_finite(t, name)
    return t


def check_labels(
    y: Any,
    name: str = "y",
    *,
    n_classes: int | None = None,
    shape: tuple[int, ...] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Validate integer class labels in ``[0, n_classes)``; return them as an int64 tensor.

    Float arrays holding whole numbers are accepted; anything else raises ``TypeError``.
    """
    if isinstance(y, torch.Tensor):
        t = y
    elif isinstance(y, (np.ndarray, list, tuple)):
        arr = np.asarray(y)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(y).__name__}")
    if t.is_floating_point():
        check_finite(t, name)
        if not bool((t == t.round()).all()):
            raise TypeError(f"{name} must hold integer class labels, got non-integer values")
    elif t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold integer class labels, got dtype {t.dtype}")
    t = t.to(torch.int64)
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    if t.numel():
        lo, hi = int(t.min()), int(t.max())
        if lo < 0:
            raise ValueError(f"{name} has negative label {lo}; labels must be in [0, n_classes)")
        if n_classes is not None and hi >= n_classes:
            raise ValueError(
                f"{name} has label {hi} out of range: expected labels in "
                f"[0, {n_classes - 1}] for n_classes={n_classes}"
            )
    if device is not None:
        t = t.to(device)
    return t


# ---------------------------------------------------------------------- memory guards
#: most distinct class labels accepted from a data file (an output weight column per class)
MAX_CLASSES = 10_000

_GIB = 1024**3


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human-readable string (``"12.3 GiB"``)."""
    n = float(n)
    for unit, size in (("TiB", 1024**4), ("GiB", _GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def memory_limit_bytes() -> int:
    """Bytes one array may take: the physical memory, or less when the process runs under an
    address-space limit (``RLIMIT_AS``); ``CONVEXSNN_MAX_BYTES`` (bytes) overrides both."""
    import os

    env = os.environ.get("CONVEXSNN_MAX_BYTES")
    if env:
        try:
            return max(1, int(float(env)))
        except ValueError:
            raise ValueError(
                f"CONVEXSNN_MAX_BYTES must be a number of bytes, got {env!r}"
            ) from None
    limit = None
    try:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    try:
        import resource

        for which in (resource.RLIMIT_AS, getattr(resource, "RLIMIT_DATA", None)):
            if which is None:
                continue
            soft = resource.getrlimit(which)[0]
            if soft != resource.RLIM_INFINITY and soft > 0:
                limit = soft if limit is None else min(limit, soft)
    except (ImportError, ValueError, OSError):
        pass
    return int(limit) if limit else 1 << 62


def check_memory(n_bytes: float, what: str) -> None:
    """Raise ``ValueError`` when one allocation of ``n_bytes`` cannot fit in memory.

    Called before large arrays are made, so that a size typo (``--p-last 20000000``,
    ``-T 100000000``) is refused within seconds with its size in the message instead of
    running into the allocator or the kernel's OOM killer.
    """
    limit = memory_limit_bytes()
    if n_bytes > limit:
        raise ValueError(
            f"{what} needs {format_bytes(n_bytes)}, more than the "
            f"{format_bytes(limit)} of memory this process may use; choose "
            "smaller sizes (CONVEXSNN_MAX_BYTES overrides the limit)"
        )


def check_array_size(shape: Iterable[int], what: str, *, itemsize: int = 4) -> None:
    """:func:`check_memory` for an array of ``shape`` with ``itemsize`` bytes per element."""
    n = float(itemsize)
    for s in shape:
        n *= max(0, int(s))
    check_memory(n, f"{what} {tuple(int(s) for s in shape)}")


def check_layer_weights(
    n_branches: int, sizes: Iterable[int], what: str, *, itemsize: int = 8, copies: int = 1
) -> None:
    """:func:`check_memory` for the weight matrices ``(K, sizes[l], sizes[l+1])`` of a layer
    stack (``copies`` of each alive at once), before they are drawn."""
    sizes = [int(s) for s in sizes]
    n = sum(int(n_branches) * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    check_memory(
        float(n) * itemsize * copies,
        f"{what} ({n_branches} branch(es) of widths {sizes[1:]}, {n:.3g} weights)",
    )


def check_dictionary_size(n_rows: int, n_columns: int, *, bits: bool = False) -> None:
    """:func:`check_memory` for a spike dictionary of ``n_rows x n_columns`` binary entries
    (one byte each, or one bit when packed), before it is built."""
    n = float(n_rows) * float(n_columns) / (8 if bits else 1)
    check_memory(n, f"the spike dictionary ({int(n_rows)} rows x {int(n_columns)} witness neurons)")
