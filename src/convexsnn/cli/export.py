"""``convexsnn export``: write a saved model as a NIR graph
(:func:`convexsnn.export.export_nir`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import _check_out_file, _print, add_command
from ._data import _load_model


def cmd_export(args: argparse.Namespace) -> int:
    """``convexsnn export``."""
    out = Path(args.output)
    if out.suffix == "":
        out = out.with_suffix(".nir")
    _check_out_file(str(out), "NIR file")
    model = _load_model(args.model)
    from ..export import export_nir

    path = export_nir(model, out, dt=args.dt, exact_reset=args.exact_reset, strict=args.strict)
    _print(args, f"wrote {path}")
    return 0


#: the one-line description of ``convexsnn export`` (command list and its --help)
HELP = "export a saved model as a NIR graph"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``export`` to the subcommands ``sub``."""
    p = add_command(sub, common, "export", HELP, cmd_export)
    p.add_argument("model", help="saved model")
    p.add_argument("output", help="output file (.nir)")
    p.add_argument("--dt", type=float, default=1e-3, help="time step of the NIR graph (s)")
    p.add_argument(
        "--exact-reset",
        action="store_true",
        help="encode the subtract reset exactly (see convexsnn.export.to_nir)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail instead of warning when NIR cannot express the model exactly",
    )
