"""Input validation shared by every layer of convexsnn.

Each check raises ``ValueError`` or ``TypeError`` with a message that names the offending argument
and says what was expected, so that bad input never surfaces as a traceback from deep inside torch.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = [
    "as_float_tensor",
    "check_sequence_input",
    "check_labels",
    "check_positive_int",
    "check_seed",
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
    "FLOAT_DTYPES",
    "dtype_name",
    "dtype_from_name",
    "ConvexSNNDeprecationWarning",
    "warn_renamed",
    "rename_keys",
    "renamed_kwargs",
    "renamed_attribute",
    "renamed_function",
]


def check_choice(value: Any, name: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise raise ``ValueError`` listing them."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_seed(seed: Any) -> int:
    """Return ``seed`` as ``int`` if it is an integer (``bool`` refused); else raise ``TypeError``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    return int(seed)


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


# ---------------------------------------------------------------------- dtypes
#: The floating dtypes of models, witnesses and dictionaries, by the name stored in their files.
FLOAT_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def dtype_name(dtype: Any) -> str:
    """The file name (``"float32"`` / ``"float64"``) of a floating torch dtype, or ``TypeError``."""
    for k, v in FLOAT_DTYPES.items():
        if v == dtype:
            return k
    raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")


def dtype_from_name(name: Any, what: str = "dtype") -> torch.dtype:
    """The torch dtype stored as ``name`` in a file, or ``ValueError`` naming ``what``."""
    dtype = FLOAT_DTYPES.get(name) if isinstance(name, str) else None
    if dtype is None:
        raise ValueError(f"{what} must be one of {list(FLOAT_DTYPES)}, got {name!r}")
    return dtype


# ---------------------------------------------------------------------- renamed names
class ConvexSNNDeprecationWarning(DeprecationWarning):
    """A convexsnn argument, attribute or key was used by a deprecated (old) name.

    A subclass of ``DeprecationWarning`` (shown by default when raised from ``__main__``), so that
    a test suite can turn exactly these warnings into errors.
    """


_F = TypeVar("_F", bound=Callable[..., Any])


def warn_renamed(old: str, new: str, where: str, *, stacklevel: int = 2) -> None:
    """Warn (:class:`ConvexSNNDeprecationWarning`) that ``where`` got ``old``, now ``new``.

    ``stacklevel`` counts from the function calling this one (1), as in ``warnings.warn``.
    """
    warnings.warn(
        f"{where}: {old!r} is deprecated, use {new!r} instead (same meaning)",
        ConvexSNNDeprecationWarning,
        stacklevel=stacklevel + 1,
    )


def rename_keys(
    mapping: Mapping[str, Any],
    renames: Mapping[str, str],
    where: str,
    *,
    warn: bool = True,
    stacklevel: int = 2,
) -> dict[str, Any]:
    """A copy of ``mapping`` with each old key of ``renames`` (``{old: new}``) under its new name.

    ``warn=True`` emits a :class:`ConvexSNNDeprecationWarning` per old key (for arguments and
    dicts a user writes); ``warn=False`` translates silently (for files saved by earlier versions,
    which must keep loading). Both the old and the new key: ``TypeError``.
    """
    out = dict(mapping)
    for old, new in renames.items():
        if old in out:
            if new in out:
                raise TypeError(
                    f"{where}: got both {old!r} (deprecated) and {new!r}; pass only {new!r}"
                )
            if warn:
                warn_renamed(old, new, where, stacklevel=stacklevel + 1)
            out[new] = out.pop(old)
    return out


def renamed_kwargs(**renames: str) -> Callable[[_F], _F]:
    """Decorator: the function also accepts each old keyword of ``renames`` (``old="new"``).

    An old keyword is passed on under its new name with a :class:`ConvexSNNDeprecationWarning`
    that names the new one (pointing at the caller); old and new together raise ``TypeError``.
    The signature seen by ``inspect`` (and so by scikit-learn's ``get_params``) is the new one.
    """

    def decorate(fn: _F) -> _F:
        where = fn.__qualname__.replace(".__init__", "")
        olds = frozenset(renames)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if kwargs and not olds.isdisjoint(kwargs):
                kwargs = rename_keys(kwargs, renames, where, stacklevel=2)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def renamed_attribute(new: str, old: str) -> property:
    """A deprecated read/write alias ``old`` of the attribute ``new`` (warns on each use)."""

    def fget(self: Any) -> Any:
        warn_renamed(old, new, type(self).__name__, stacklevel=2)
        return getattr(self, new)

    def fset(self: Any, value: Any) -> None:
        warn_renamed(old, new, type(self).__name__, stacklevel=2)
        setattr(self, new, value)

    return property(fget, fset, doc=f"Deprecated alias of :attr:`{new}`.")


def renamed_function(fn: _F, old: str, **renames: str) -> _F:
    """A deprecated alias ``old`` of the function ``fn`` (warns on each call, naming ``fn``);
    ``renames`` (``old_kw="new_kw"``) are renamed keywords it also accepts."""
    new = fn.__name__

    @functools.wraps(fn)
    def alias(*args: Any, **kwargs: Any) -> Any:
        warn_renamed(old, new, old, stacklevel=2)
        if kwargs and not set(renames).isdisjoint(kwargs):
            kwargs = rename_keys(kwargs, renames, old, warn=False)
        return fn(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old
    alias.__doc__ = f"Deprecated alias of :func:`{new}`."
    return alias  # type: ignore[return-value]
