"""Dispatch a task name to its generator."""

from __future__ import annotations

import re
from typing import Any

from .._checks import check_memory
from .addition import addition
from .automata import (
    _PARITY_RENAMED,
    first_last_xor,
    parity_k,
    parity_odd,
    parity_prefix,
    random_dfa_task,
    tomita,
)
from .base import TaskData
from .mnist import sequential_mnist

#: names understood by :func:`load_task` (``<k>`` stands for an integer: k >= 2 for
#: ``parity_k<k>``, k >= 1 for ``parity_prefix<k>``)
TASK_NAMES: tuple[str, ...] = (
    "xor",
    "parity_k<k>",
    "parity_odd",
    "parity_prefix<k>",
    *(f"tomita{k}" for k in (1, 2)),
    "tomita3_paper",
    "tomita3_textbook",
    *(f"tomita{k}" for k in range(4, 8)),
    "dfa",
    "mnist",
    "addition",
)

_XOR_ALIASES = ("xor", "first-last-xor", "first_last_xor")

_AUTOMATA_OPTIONS = ("T", "n_train", "n_val", "n_test", "n_ood", "ood_lengths", "balanced", "seed")
#: options a task description read from a file (a saved model's ``task_spec``) may carry: no
#: paths and no ``download`` (MNIST's ``directory`` is supplied by the caller)
SAFE_TASK_OPTIONS: dict[str, tuple[str, ...]] = {
    "xor": _AUTOMATA_OPTIONS,
    "parity": _AUTOMATA_OPTIONS + ("k",),
    "tomita": _AUTOMATA_OPTIONS,
    "dfa": _AUTOMATA_OPTIONS + ("n_states", "alphabet_size", "min_fraction", "dfa_seed"),
    "mnist": ("T", "n_train", "n_val", "n_test", "permute", "seed"),
    "addition": ("base", "n_digits", "n_train", "n_val", "n_test", "n_ood", "ood_n_digits", "seed"),
}


def _family(name: str) -> str | None:
    key = name.strip().lower()
    if key in _XOR_ALIASES:
        return "xor"
    if key == "parity" or re.fullmatch(r"parity(-\d+|_k\d*|_odd|_prefix\d*)", key):
        return "parity"
    if re.fullmatch(r"tomita[1-7](_paper|_textbook)?", key):
        return "tomita"
    return key if key in ("dfa", "mnist", "addition") else None


def safe_task_options(name: Any, options: Any) -> dict:
    """Check a task description read from a file against an allow-list; return its options.

    ``name`` must be one of :data:`TASK_NAMES` and ``options`` a dict whose keys are in
    :data:`SAFE_TASK_OPTIONS` for that task and whose values are numbers, booleans, short
    strings or lists of numbers. Paths and ``download`` are refused, so a crafted file can
    neither make :func:`load_task` read or create folders nor contact the network.
    """
    family = _family(name) if isinstance(name, str) else None
    if family is None:
        raise ValueError(f"task name {name!r} is not one of {', '.join(TASK_NAMES)}")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ValueError(f"task options must be a JSON object, got {type(options).__name__}")
    allowed = SAFE_TASK_OPTIONS[family]
    bad = sorted(str(k) for k in options if k not in allowed)
    if bad:
        raise ValueError(
            f"task {name!r}: options {bad} are not accepted from a file (allowed: "
            f"{', '.join(allowed)})"
        )

    def plain(v: Any) -> bool:
        if v is None or isinstance(v, (bool, int, float)):
            return True
        if isinstance(v, str):
            return len(v) <= 64
        return (
            isinstance(v, list)
            and len(v) <= 64
            and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v)
        )

    for k, v in options.items():
        if not plain(v):
            raise ValueError(f"task {name!r}: option {k}={v!r} is not a plain number or flag")
    return dict(options)


def _check_task_size(family: str, options: dict) -> None:
    """Refuse sizes whose arrays cannot fit in memory, before generating anything."""

    def num(key: str, default: Any) -> Any:
        v = options.get(key, default)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else default

    for key in ("n_train",):
        if (
            key in options
            and isinstance(options[key], (int, float))
            and not isinstance(options[key], bool)
            and options[key] == 0
        ):
            raise ValueError(f"{key} must be >= 1: a task needs training samples, got 0")
    if family == "mnist":
        return  # at most 70000 images of 784 pixels: bounded by the files
    if family == "addition":
        steps, width = num("n_digits", 5) + 1, 2 * num("base", 2) + 1
        ood = [10 * num("n_digits", 5)]
    else:
        steps, width = num("T", 8), max(2, num("alphabet_size", 2))
        ood = options.get("ood_lengths") or [5 * steps]
        ood = [v for v in ood if isinstance(v, (int, float))] if isinstance(ood, list) else []
    n = num("n_train", 2000) + num("n_val", 2000) + num("n_test", 4000)
    n_ood = num("n_ood", num("n_test", 4000))
    elements = float(n) * steps * width + sum(float(n_ood) * L * width for L in ood)
    check_memory(
        4 * elements, f"task {family} with {n:.4g} samples of {steps:.4g} steps (float32 inputs)"
    )


def load_task(name: str, **options: Any) -> TaskData:
    """Generate or load a task by name.

    Parameters
    ----------
    name : str
        One of :data:`TASK_NAMES` (case-insensitive):

        * ``"xor"`` (aliases ``"first-last-xor"``, ``"first_last_xor"``):
          :func:`~convexsnn.tasks.automata.first_last_xor`
        * ``"parity_k<k>"`` (the paper's ``parity_k``, label 1 iff ``#ones mod k == 0``; also
          ``"parity_k"`` with ``k=``): :func:`~convexsnn.tasks.automata.parity_k`
        * ``"parity_odd"`` (textbook, label 1 iff ``#ones`` is odd):
          :func:`~convexsnn.tasks.automata.parity_odd`
        * ``"parity_prefix<k>"`` (odd ``#ones`` among the first ``k`` symbols):
          :func:`~convexsnn.tasks.automata.parity_prefix`
        * ``"tomita1"`` .. ``"tomita7"``: :func:`~convexsnn.tasks.automata.tomita`, except
          ``"tomita3"``: ``"tomita3_paper"`` (no ``101``, the paper's code) or
          ``"tomita3_textbook"``; ``"tomita<k>_paper"`` / ``"tomita<k>_textbook"`` work for
          every ``k``
        * the former names ``"parity"``, ``"parity-<k>"`` and ``"tomita3"`` raise
          ``ValueError`` naming their replacements
        * ``"dfa"``: :func:`~convexsnn.tasks.automata.random_dfa_task`
        * ``"mnist"``: :func:`~convexsnn.tasks.mnist.sequential_mnist`
          (needs ``directory=``)
        * ``"addition"``: :func:`~convexsnn.tasks.addition.addition`
    **options
        Keyword arguments of that generator (``seed``, ``T``, sizes, ...).

    Returns
    -------
    TaskData

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones), bad option
        values, ``n_train=0``, or sizes whose arrays cannot fit in memory
        (refused before anything is generated; the message gives the size).
    """
    if not isinstance(name, str):
        raise ValueError(f"name must be a string, one of {list(TASK_NAMES)}; got {name!r}")
    key = name.strip().lower()
    family = _family(key)
    if family is not None:
        _check_task_size(family, options)
    if key in _XOR_ALIASES:
        return first_last_xor(**options)
    if key == "parity" or re.fullmatch(r"parity-\d+", key):
        raise ValueError(f"task {name!r}: {_PARITY_RENAMED}")
    m = re.fullmatch(r"parity_k(\d*)", key)
    if m:
        if m.group(1):
            _check_k_once(name, options)
            return parity_k(int(m.group(1)), **options)
        return parity_k(**options)
    if key == "parity_odd":
        return parity_odd(**options)
    m = re.fullmatch(r"parity_prefix(\d*)", key)
    if m:
        if m.group(1):
            _check_k_once(name, options)
            return parity_prefix(int(m.group(1)), **options)
        return parity_prefix(**options)
    m = re.fullmatch(r"tomita([1-7])(?:_(paper|textbook))?", key)
    if m:
        return tomita(int(m.group(1)), variant=m.group(2), **options)
    if key == "dfa":
        return random_dfa_task(**options)
    if key == "mnist":
        return sequential_mnist(**options)
    if key == "addition":
        return addition(**options)
    raise ValueError(f"unknown task name {name!r}; valid names: {', '.join(TASK_NAMES)}")


def _check_k_once(name: str, options: dict) -> None:
    if "k" in options:
        raise ValueError(f"k is given twice: by the name {name!r} and by k={options['k']!r}")


__all__ = ["TASK_NAMES", "SAFE_TASK_OPTIONS", "load_task", "safe_task_options"]
