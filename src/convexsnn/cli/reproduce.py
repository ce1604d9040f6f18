"""``convexsnn reproduce``: run the paper's experiments (:func:`convexsnn.experiments.reproduce`,
or Ray tasks with ``--backend ray``) and write their tables and plots."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import CLIError, _print, add_command


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``convexsnn reproduce``."""
    from ..experiments import reproduce

    names = None if not args.names or args.names == ["all"] else args.names
    both = {"quick": args.quick, "seeds": args.seeds, "force": args.force}
    if args.backend == "ray":
        if args.jobs != 1:
            raise CLIError(
                "--jobs is for the local backend; with --backend ray every cell is "
                "a Ray task (size the cluster instead)"
            )
        if args.overwrite:
            raise CLIError("--overwrite is not supported with --backend ray; use a fresh --out")
        from ..experiments.ray_backend import reproduce_ray

        summary = reproduce_ray(names, args.out, address=args.address, **both)
    else:
        if args.address is not None:
            raise CLIError("--address needs --backend ray")
        summary = reproduce(
            names,
            args.out,
            jobs=args.jobs,
            overwrite=args.overwrite,
            threads=args.threads,
            progress=not (args.quiet or args.no_progress),
            **both,
        )
    failed = 0
    for name, s in summary.items():
        failed += len(s.get("failed", []))
        _print(
            args,
            f"{name}: {s['n_cells']} cells ({s['n_run']} run, {s['n_skipped']} "
            f"reused, {len(s.get('failed', []))} failed) in {s['seconds']:.0f}s -> "
            f"{s['table']}",
        )
    if failed:
        raise CLIError(
            f"{failed} cell(s) failed; rerun the same command to retry them (--debug for details)"
        )
    return 0


#: the one-line description of ``convexsnn reproduce`` (command list and its --help)
HELP = "run the paper's experiments and write tables and plots"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``reproduce`` to the subcommands ``sub``."""
    p = add_command(sub, common, "reproduce", HELP, cmd_reproduce)
    p.add_argument(
        "names", nargs="*", metavar="NAME", help="experiment names (default: all registered)"
    )
    p.add_argument(
        "--out", "-o", default="results", metavar="DIR", help="output folder (default ./results)"
    )
    p.add_argument("--quick", action="store_true", help="small versions of every cell (CI)")
    p.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=1,
        metavar="N",
        help="parallel worker processes (default 1)",
    )
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="S", help="seeds (default 0 1 2)"
    )
    p.add_argument("--force", action="store_true", help="recompute finished cells")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into DIR even if it holds cell files of another run "
        "configuration (e.g. the committed results/ of the repository)",
    )
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local process pool (default) or Ray tasks (needs convexsnn[ray])",
    )
    p.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="with --backend ray: an existing cluster ('auto', 'ray://host:10001'); "
        "default: start a local one",
    )
