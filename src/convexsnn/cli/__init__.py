"""The ``convexsnn`` command line: train, evaluate, reproduce, export, inspect and plot models.

Run ``convexsnn --help`` or ``convexsnn COMMAND --help``. Entry point: :func:`main` (also
``python -m convexsnn`` and ``python -m convexsnn.cli``). One module per command family
(:mod:`~convexsnn.cli.train` for ``train`` and ``evaluate``, :mod:`~convexsnn.cli.reproduce`,
:mod:`~convexsnn.cli.export`, :mod:`~convexsnn.cli.info`, :mod:`~convexsnn.cli.plot`,
:mod:`~convexsnn.cli.demo`), each a thin layer over library calls; the shared option and output
helpers are in ``_common``, ``_data`` (``--task`` / ``--data``) and ``_logging``.

Subcommands
-----------
* ``train``: train one method (``cvx``, ``sg``, ``sg-cvx``, ``r-cvx``, ``cvx-sg``, ``sg-sg``) on a
  task or on ``.npz`` data files; writes the model (no pickle) with its certificate and report
  in ``extra``, and ``report.json``.
* ``evaluate``: accuracy of a saved model on a task (by default the one it was trained on) or a
  data file, as JSON.
* ``reproduce``: run the paper's experiments (:func:`convexsnn.experiments.reproduce`).
* ``export``: write a saved model as a NIR graph (:func:`convexsnn.export.export_nir`).
* ``info``: architecture, widths, branches, kept neurons, output sparsity and certificate.
* ``plot``: ``raster`` (spikes of a model on one sample) or ``accuracy`` (accuracy against
  training-set size from ``reproduce`` results); PNG.
* ``demo``: CVX versus SG on FIRST-LAST-XOR (T=6, L=5) and sequential MNIST (T=4), with a
  comparison table of accuracy, seconds and the convex certificate.

Errors. Without ``--debug`` every error ends the program with exit status 1 (2 for a command
line that does not parse) and one line on standard error, ``convexsnn: error: ...``; with
``--debug`` the traceback is shown instead.

Data files. ``--data FILE.npz`` holds ``X`` (``(n, T, d)``; ``(n, d)`` is read as ``T = 1``) and
``y`` (``(n,)`` integer labels ``0..C-1`` read at the last step, or ``(n, T)`` token labels), and
optionally ``X_val``/``y_val`` and ``X_test``/``y_test``. ``--val-data`` / ``--test-data`` name
separate files with ``X`` and ``y``. Without validation data 20% of the training rows are held
out (seeded); without test data the validation split is also reported as test.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..experiments.report import accuracy_vs_size_records
from . import demo, export, info, plot, reproduce, train
from ._common import _DEFAULTS, PROG, CLIError, _common_parent, _one_line, _Parser, _set_threads
from ._logging import _setup_logging, _teardown_logging
from .demo import DEMO_MNIST_OVERRIDES, DEMO_XOR_CONFIG, demo_table
from .info import model_info
from .train import METHOD_NAMES

__all__ = [
    "main",
    "build_parser",
    "model_info",
    "accuracy_vs_size_records",
    "demo_table",
    "METHOD_NAMES",
    "DEMO_XOR_CONFIG",
    "DEMO_MNIST_OVERRIDES",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``convexsnn`` command."""
    from .. import __version__

    common = _common_parent()
    parser = _Parser(
        prog=PROG,
        parents=[common],
        description="Certified convex training (parameter reconstruction) and "
        "surrogate-gradient training of parallel spiking neural "
        "networks.",
        epilog="Run 'convexsnn COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"convexsnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    for command in (train, reproduce, export, info, plot, demo):
        command.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``convexsnn`` command line; return the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        ``0`` on success, ``1`` on an error (one line ``convexsnn: error: ...`` on standard
        error unless ``--debug``), ``2`` for a command line that does not parse, ``130`` when
        interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    for k, v in _DEFAULTS.items():
        if not hasattr(args, k):
            setattr(args, k, v)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    handlers = _setup_logging(args.quiet, args.debug)
    try:
        if args.threads is not None and args.threads < 1:
            raise CLIError(f"--threads must be >= 1, got {args.threads}")
        if args.seed < 0:
            raise CLIError(f"--seed must be >= 0, got {args.seed}")
        _set_threads(args)
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # the reader of our output went away (e.g. '| head'): stop quietly, like other tools
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write(f"{PROG}: error: interrupted\n")
        return 130
    except Exception as exc:  # every error: one line unless --debug
        if debug:
            raise
        sys.stderr.write(f"{PROG}: error: {_one_line(exc)}\n")
        return 1
    finally:
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass
        _teardown_logging(handlers)
