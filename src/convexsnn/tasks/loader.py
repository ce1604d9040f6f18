"""Dispatch a task name to its generator."""

from __future__ import annotations

import re
from typing import Any

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
        For an unknown name (the message lists the valid ones) or bad option
        values.
    """
    if not isinstance(name, str):
        raise ValueError(f"name must be a string, one of {list(TASK_NAMES)}; got {name!r}")
    key = name.strip().lower()
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


__all__ = ["TASK_NAMES", "load_task"]
