"""The paper's experiments as plain modules, run by :func:`reproduce`.

:data:`EXPERIMENTS` maps a name to the import path of its module (imported only when used, so an
experiment with an optional dependency does not break the others). A module exposes ``NAME``,
``DESCRIPTION``, ``ANCHORS`` (published numbers), ``cells(quick, seeds) -> list[Cell]``,
``run_cell(cell) -> dict``, ``table(cells) -> str`` and optionally ``plots(cells, out_dir)``; see
:mod:`convexsnn.experiments.base`. To add an experiment, write such a module and add one line to
the dict.
"""

from .base import Cell
from .runner import load_experiment, reproduce

#: name -> module implementing the experiment interface (see :mod:`.base`)
EXPERIMENTS: dict[str, str] = {
    "xor": "convexsnn.experiments.xor",
    "addition": "convexsnn.experiments.addition",
    "ablations": "convexsnn.experiments.ablations",
    "mnist": "convexsnn.experiments.mnist",
    "long_memory": "convexsnn.experiments.long_memory",
    "pure_convex": "convexsnn.experiments.pure_convex",
}

__all__ = ["EXPERIMENTS", "Cell", "reproduce", "load_experiment"]
