"""Common containers and helpers shared by every task generator.

Every task returns a :class:`TaskData` holding three :class:`Split` objects
(train / val / test) plus optional out-of-distribution test sets.  Inputs are
always ``float32`` tensors of shape ``(n, T, d)``; labels are ``int64`` with
shape ``(n,)`` for *sequence* labels (one label per sequence, read at the last
step) or ``(n, T)`` / ``(n, T, H)`` for *token* labels (one label per step, per
head).

Seeding
-------
Generators never touch global RNG state.  Each split draws from its own
``numpy.random.Generator`` built by :func:`rng_for` from the user's ``seed``
and a fixed stream key (train, val, test, each OOD length, ...).  Streams are
independent, so e.g. adding an OOD length does not change the train set, and
the same ``seed`` reproduces every tensor bit for bit (numpy's PCG64 stream is
platform independent).
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .._io import json_safe

logger = logging.getLogger("convexsnn")

LABEL_MODES = ("sequence", "token")

# Stream keys used with :func:`rng_for`.  Fixed integers so results do not
# depend on the order in which splits are generated.
STREAM_TRAIN = 0
STREAM_VAL = 1
STREAM_TEST = 2
STREAM_OOD = 3
STREAM_MODEL = 4  # e.g. the random DFA itself
STREAM_PERMUTATION = 5


@dataclass
class Split:
    """One data split.

    Parameters
    ----------
    X : torch.Tensor
        Inputs, ``float32``, shape ``(n, T, d)``.
    y : torch.Tensor
        Labels, ``int64``; shape ``(n,)`` for sequence labels (the target of
        the last step), ``(n, T)`` for single-head token labels or
        ``(n, T, H)`` for ``H`` token heads.
    """

    X: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.X, torch.Tensor) or not isinstance(self.y, torch.Tensor):
            raise TypeError("Split.X and Split.y must be torch tensors")
        if self.X.ndim != 3:
            raise ValueError(f"Split.X must have shape (n, T, d), got {tuple(self.X.shape)}")
        if self.X.dtype != torch.float32:
            raise ValueError(f"Split.X must be float32, got {self.X.dtype}")
        if self.y.dtype != torch.int64:
            raise ValueError(f"Split.y must be int64, got {self.y.dtype}")
        if self.y.ndim not in (1, 2, 3) or self.y.shape[0] != self.X.shape[0]:
            raise ValueError(
                f"Split.y shape {tuple(self.y.shape)} does not match X shape {tuple(self.X.shape)}"
            )
        if self.y.ndim >= 2 and self.y.shape[1] != self.X.shape[1]:
            raise ValueError(
                f"token labels need y.shape[1] == T; got y {tuple(self.y.shape)}, "
                f"X {tuple(self.X.shape)}"
            )

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def n(self) -> int:
        """Number of sequences."""
        return int(self.X.shape[0])

    @property
    def T(self) -> int:
        """Number of time steps."""
        return int(self.X.shape[1])

    @property
    def input_size(self) -> int:
        """Number of input features per step."""
        return int(self.X.shape[2])

    def to(self, device: torch.device | str) -> Split:
        """Return a copy of the split on ``device``."""
        return Split(self.X.to(device), self.y.to(device))


@dataclass
class TaskData:
    """A complete task: splits, label description and generation metadata.

    Parameters
    ----------
    train, val, test : Split
        In-distribution splits.
    n_classes : int or list of int
        Number of classes, or one entry per token head (e.g. ``[base, 2]`` for
        addition: sum digit, carry).
    label_mode : {"sequence", "token"}
        ``"sequence"``: one label per sequence, read at the last step.
        ``"token"``: one label per step (and head).
    name : str
        Task name as understood by :func:`convexsnn.tasks.load_task`.
    meta : dict
        All generation parameters, JSON-serialisable.
    ood : dict of str to Split
        Out-of-distribution test sets, keyed by a description such as
        ``"T=12"`` or ``"n_digits=10"``.
    """

    train: Split
    val: Split
    test: Split
    n_classes: int | list[int]
    label_mode: str
    name: str
    meta: dict = field(default_factory=dict)
    ood: dict[str, Split] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {self.label_mode!r}")

    @property
    def input_size(self) -> int:
        """Number of input features per step."""
        return self.train.input_size

    def splits(self) -> dict[str, Split]:
        """All splits by name: ``train``, ``val``, ``test`` then ``ood:<key>``."""
        out = {"train": self.train, "val": self.val, "test": self.test}
        for key, split in self.ood.items():
            out[f"ood:{key}"] = split
        return out


# ---------------------------------------------------------------------------
# argument checking
# ---------------------------------------------------------------------------


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Validate an integer option and return it as a Python ``int``.

    Raises
    ------
    ValueError
        If ``value`` is not an integer (booleans excluded) or is below
        ``minimum``; the message names the argument.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_seed(seed: object) -> int:
    """Validate a seed (non-negative integer)."""
    return check_int("seed", seed, minimum=0)


def check_lengths(
    name: str, lengths: Iterable[object] | None, *, minimum: int = 1
) -> tuple[int, ...]:
    """Validate a sequence of lengths; duplicates are dropped, order is kept."""
    if lengths is None:
        return ()
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, Iterable):
        raise ValueError(f"{name} must be a sequence of integers, got {lengths!r}")
    out: list[int] = []
    for value in lengths:
        v = check_int(name, value, minimum=minimum)
        if v not in out:
            out.append(v)
    return tuple(out)


# ---------------------------------------------------------------------------
# randomness and encoding
# ---------------------------------------------------------------------------


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """Independent generator for ``seed`` and a stream key.

    ``np.random.default_rng(SeedSequence([seed, *stream]))``: distinct stream
    keys give statistically independent streams, identical keys give
    bit-identical draws.
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed), *[int(s) for s in stream]]))


def one_hot(symbols: np.ndarray, alphabet_size: int) -> torch.Tensor:
    """One-hot encode integer symbols.

    Parameters
    ----------
    symbols : numpy.ndarray
        Integer array of shape ``(n, T)`` with values in ``[0, alphabet_size)``.
    alphabet_size : int
        Number of channels ``S``.

    Returns
    -------
    torch.Tensor
        ``float32`` tensor of shape ``(n, T, S)``.
    """
    sym = torch.as_tensor(np.ascontiguousarray(symbols), dtype=torch.int64)
    return torch.nn.functional.one_hot(sym, alphabet_size).to(torch.float32)


def balanced_labels(n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Labels with exactly ``n // n_classes`` per class (remainder to the lowest classes), shuffled."""
    counts = [n // n_classes + (1 if c < n % n_classes else 0) for c in range(n_classes)]
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), counts)
    return labels[rng.permutation(n)]


def as_int_array(name: str, value: object, ndim: int) -> np.ndarray:
    """Convert a tensor / array-like of integers to a numpy ``int64`` array of ``ndim`` dims."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name} must hold integers")
    return arr.astype(np.int64, copy=False)


__all__: Sequence[str] = (
    "Split",
    "TaskData",
    "LABEL_MODES",
    "check_int",
    "check_seed",
    "check_lengths",
    "rng_for",
    "one_hot",
    "balanced_labels",
    "json_safe",
)
