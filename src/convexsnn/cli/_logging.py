"""Logging of the command line: log records and warnings as single lines on standard error
(through ``tqdm.write``, so progress bars stay intact) and one progress line per SG epoch."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Any, cast


class _TqdmHandler(logging.StreamHandler):
    """Log records written through ``tqdm.write`` so they do not break progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


class _EpochProgress(logging.Handler):
    """One line per SG training epoch, ``SG epoch 3/20 (ETA 41s)``, built from the training
    loop's own log records (its start line gives the number of epochs, its per-epoch debug line
    marks each epoch) and written through ``out`` at INFO, so ``--quiet`` hides it."""

    def __init__(self, out: logging.Handler):
        super().__init__(logging.DEBUG)
        self.out, self.total, self.t0 = out, 0, 0.0

    def emit(self, record: logging.LogRecord) -> None:
        # the training loop logs numbers: its args are a tuple of ints
        msg, args = str(record.msg), cast(Any, record.args)
        try:
            if msg.startswith("SG training: ") and isinstance(args, tuple) and len(args) > 3:
                self.total, self.t0 = int(args[3]), time.perf_counter()
            elif msg.startswith("epoch %d: ") and self.total and isinstance(args, tuple) and args:
                done = int(args[0]) + 1
                eta = (time.perf_counter() - self.t0) / done * max(0, self.total - done)
                line = logging.LogRecord(
                    record.name,
                    logging.INFO,
                    record.pathname,
                    record.lineno,
                    "SG epoch %d/%d (ETA %.0fs)",
                    (done, self.total, eta),
                    None,
                )
                if line.levelno >= self.out.level:
                    self.out.handle(line)
        except Exception:  # pragma: no cover - progress must never break a run
            pass


def _setup_logging(quiet: bool, debug: bool) -> list[logging.Handler]:
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    handler = _TqdmHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(message)s" if not debug else "%(levelname)s %(name)s: %(message)s")
    )
    handler.setLevel(level)
    pkg = logging.getLogger("convexsnn")
    handler._previous_level = pkg.level  # type: ignore[attr-defined]
    pkg.addHandler(handler)
    epochs = _EpochProgress(handler)
    pkg.addHandler(epochs)
    # DEBUG records reach the epoch-progress handler; the output handler keeps ``level``
    pkg.setLevel(logging.DEBUG if level <= logging.INFO else level)
    previous = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        # one line per warning, through the package logger (silenced by --quiet)
        pkg.warning("warning: %s: %s", category.__name__, " ".join(str(message).split()))

    warnings.showwarning = showwarning
    handler._previous_showwarning = previous  # type: ignore[attr-defined]
    return [handler, epochs]


def _teardown_logging(handlers: list[logging.Handler]) -> None:
    for h in handlers:
        prev = getattr(h, "_previous_showwarning", None)
        if prev is not None:
            warnings.showwarning = prev
        logging.getLogger("convexsnn").removeHandler(h)
        if hasattr(h, "_previous_level"):
            logging.getLogger("convexsnn").setLevel(h._previous_level)
