"""Shared pieces of the command line: the one-line error, the parser class and common options,
result printing and JSON output, and small argument checks."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PROG = "convexsnn"


class CLIError(Exception):
    """An error with a message meant for the user (one line, no traceback)."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line: ``convexsnn: error: ...`` (exit status 2)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        hint = f" (see '{self.prog} --help')"
        sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}{hint}\n")
        sys.exit(2)


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    if isinstance(exc, KeyError):
        msg = f"missing key {msg}"
    if isinstance(exc, ImportError) and getattr(exc, "name", None):
        extra = {"nir": "nir", "matplotlib": "plot", "sklearn": "sklearn", "cvxpy": "cvxpy"}
        top = str(exc.name).split(".")[0]
        if top in extra:
            msg += f" (install it with: pip install 'convexsnn[{extra[top]}]')"
    if not msg:
        msg = type(exc).__name__
    elif not isinstance(
        exc,
        (
            CLIError,
            ValueError,
            TypeError,
            FileNotFoundError,
            ImportError,
            FileExistsError,
            NotADirectoryError,
            IsADirectoryError,
            PermissionError,
        ),
    ):
        msg = f"{type(exc).__name__}: {msg}"
    return msg


def _print(args: argparse.Namespace, text: str = "") -> None:
    """Print a result line to stdout (results are printed even with --quiet)."""
    print(text, flush=True)


def _dumps(obj: Any) -> str:
    """Strict JSON text (the package's one conversion, :func:`convexsnn._io.json_safe`:
    numpy / torch values become plain numbers, non-finite floats ``None``, paths strings)."""
    from .._io import json_safe

    return json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False)


def _write_json(path: Path, obj: Any) -> Path:
    from .._io import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, _dumps(obj) + "\n")


def _parse_value(text: str) -> Any:
    """A ``--set``/``--task-option`` value: JSON when it parses (numbers, lists, true/null),
    otherwise the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low in ("none", "null"):
            return None
        return text


def _key_values(items: Sequence[str] | None, flag: str) -> dict:
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"{flag} expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        if not k:
            raise CLIError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[k] = _parse_value(v.strip())
    return out


def _set_threads(args: argparse.Namespace) -> None:
    import torch

    threads = getattr(args, "threads", None)
    if threads:
        torch.set_num_threads(int(threads))


def _check_device(device: str | None) -> str | None:
    if device is None:
        return None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise CLIError(f"invalid --device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {device}: CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError(f"--device {device}: MPS is not available on this machine")
    return str(dev)


def _check_out_file(path: str | None, what: str) -> None:
    if path:
        from .._io import check_output_path

        check_output_path(Path(path), what)


def _certificate_of(record: dict | None) -> dict | None:
    if not record:
        return None
    cert = record.get("certificate")
    if cert is None and record.get("certificates"):
        cert = record["certificates"][0]
    return cert


def _fmt_cert(cert: dict | None) -> str:
    if not cert:
        return "-"

    def g(k, fmt):
        v = cert.get(k)
        return "-" if v is None else format(v, fmt)

    from ..convex import certified_label

    return (
        f"primal {g('primal', '.6g')}, dual {g('dual', '.6g')}, rel gap {g('rel_gap', '.1e')}"
        f": {certified_label(cert)}"
    )


def _pct(x: Any) -> str:
    return "-" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.1f}"


def _common_parent() -> argparse.ArgumentParser:
    """The options every command takes, before or after its name (their defaults are
    suppressed here and filled from :data:`_DEFAULTS`, so a later default never hides an
    earlier value)."""
    flag = {"action": "store_true"}
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    for names, kw, help_ in (
        (("-q", "--quiet"), flag, "print results only (no progress or log messages)"),
        (("--debug",), flag, "debug logging; show tracebacks on errors"),
        (("--device",), {"metavar": "DEV"}, "torch device, e.g. cpu or cuda:0 (default cpu)"),
        (("--seed",), {"type": int, "metavar": "S"}, "seed of everything random (default 0)"),
        (
            ("--threads",),
            {"type": int, "metavar": "N"},
            "torch CPU threads (default: torch's choice; reproduce: the idle "
            "cores shared among --jobs, at least 1)",
        ),
        (("--no-progress",), flag, "no progress bars"),
    ):
        g.add_argument(*names, default=argparse.SUPPRESS, help=help_, **kw)
    return p


#: values of the common options when they are not given (the parent parser suppresses its
#: defaults so that an option given before or after the command is kept)
_DEFAULTS = {
    "quiet": False,
    "debug": False,
    "device": None,
    "seed": 0,
    "threads": None,
    "no_progress": False,
}


def add_command(
    sub: Any,
    common: argparse.ArgumentParser,
    name: str,
    help_: str,
    func: Callable[[argparse.Namespace], int],
    **kw: Any,
) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` (with the common options) that runs ``func(args)``."""
    p = sub.add_parser(name, help=help_, description=help_, parents=[common], **kw)
    p.set_defaults(func=func)
    return p
