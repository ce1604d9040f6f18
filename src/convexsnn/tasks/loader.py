"""Dispatch a task name to its generator."""

from __future__ import annotations

import re
from typing import Any

from .addition import addition
from .automata import first_last_xor, parity, random_dfa_task, tomita
from .base import TaskData
from .mnist import sequential_mnist

#: names understood by :func:`load_task` (``parity-<k>`` stands for any k >= 1)
TASK_NAMES: tuple[str, ...] = (
    "xor",
    "parity",
    "parity-<k>",
    *(f"tomita{k}" for k in range(1, 8)),
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
        * ``"parity"``, ``"parity-<k>"``: :func:`~convexsnn.tasks.automata.parity`
          (``"parity-3"`` is ``parity(k=3)``)
        * ``"tomita1"`` .. ``"tomita7"``: :func:`~convexsnn.tasks.automata.tomita`
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
    if key == "parity":
        return parity(**options)
    m = re.fullmatch(r"parity-(\d+)", key)
    if m:
        if "k" in options:
            raise ValueError(f"k is given twice: by the name {name!r} and by k={options['k']!r}")
        return parity(k=int(m.group(1)), **options)
    m = re.fullmatch(r"tomita([1-7])", key)
    if m:
        return tomita(int(m.group(1)), **options)
    if key == "dfa":
        return random_dfa_task(**options)
    if key == "mnist":
        return sequential_mnist(**options)
    if key == "addition":
        return addition(**options)
    raise ValueError(f"unknown task name {name!r}; valid names: {', '.join(TASK_NAMES)}")


__all__ = ["TASK_NAMES", "load_task"]
