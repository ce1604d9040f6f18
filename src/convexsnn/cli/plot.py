"""``convexsnn plot``: ``raster`` (the spikes of a saved model on one sample) and ``accuracy``
(accuracy against training-set size from ``reproduce`` results); PNG files."""

from __future__ import annotations

import argparse
from typing import Any

from ..experiments.report import accuracy_vs_size_records
from ._common import CLIError, _check_out_file, _Parser, _print, add_command
from ._data import (
    _add_task_args,
    _load_model,
    _load_task,
    _model_label_values,
    _saved_task_spec,
    _task_spec,
)


def cmd_plot_raster(args: argparse.Namespace) -> int:
    """``convexsnn plot raster``."""
    from ..plots import plot_raster

    _check_out_file(args.out, "plot")
    model = _load_model(args.model)
    spec = _task_spec(args) or _saved_task_spec(model, args)
    task = _load_task(spec, _model_label_values(model), for_model=True)
    splits = task.splits()
    if args.split not in splits:
        raise CLIError(f"unknown split {args.split!r}; this task has {', '.join(splits)}")
    s = splits[args.split]
    if not 0 <= args.sample < s.n:
        raise CLIError(
            f"--sample {args.sample} is out of range: the {args.split} split has {s.n} samples"
        )
    x = s.X[args.sample : args.sample + 1]
    label = s.y[args.sample]
    label_txt = str(int(label)) if label.ndim == 0 else "token labels"
    title = args.title or f"{task.name} {args.split} sample {args.sample} (label {label_txt})"
    path = plot_raster(model, x, args.out, sample=0, title=title)
    _print(args, f"wrote {path}")
    return 0


def cmd_plot_accuracy(args: argparse.Namespace) -> int:
    """``convexsnn plot accuracy``."""
    from ..plots import plot_accuracy_vs_size

    _check_out_file(args.out, "plot")
    records = accuracy_vs_size_records(args.results, args.metric)
    path = plot_accuracy_vs_size(
        records, args.out, title=args.title, ylabel=args.metric.replace("_", " ")
    )
    _print(args, f"wrote {path} ({len(records)} points)")
    return 0


def _plot_needs_kind(args: argparse.Namespace) -> int:
    raise CLIError(
        "plot needs a kind: 'convexsnn plot raster ...' or 'convexsnn plot accuracy ...'"
    )


#: the one-line description of ``convexsnn plot`` (command list and its --help)
HELP = "plots (PNG): a spike raster or accuracy against training-set size"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``plot`` (with its kinds ``raster`` and ``accuracy``) to the subcommands ``sub``."""
    p = add_command(sub, common, "plot", HELP, _plot_needs_kind)
    psub: Any = p.add_subparsers(dest="kind", metavar="KIND", parser_class=_Parser)
    pr = psub.add_parser(
        "raster",
        help="spike raster of a saved model on one sample",
        description="spike raster of a saved model on one sample",
        parents=[common],
    )
    pr.set_defaults(func=cmd_plot_raster)
    pr.add_argument("model", help="saved model")
    _add_task_args(pr)
    pr.add_argument("--split", default="test", help="split of the sample (default test)")
    pr.add_argument("--sample", type=int, default=0, help="sample index (default 0)")
    pr.add_argument("--out", "-o", default="raster.png", metavar="FILE.png")
    pr.add_argument("--title")
    pa = psub.add_parser(
        "accuracy",
        help="accuracy against training-set size from reproduce results",
        description="accuracy against training-set size, one curve per "
        "method (mean +- std over seeds), from results.json files "
        "or folders written by 'convexsnn reproduce'",
        parents=[common],
    )
    pa.set_defaults(func=cmd_plot_accuracy)
    pa.add_argument("results", nargs="+", help="results.json files or folders")
    pa.add_argument(
        "--metric", default="test_accuracy", help="record field to plot (default test_accuracy)"
    )
    pa.add_argument("--out", "-o", default="accuracy_vs_size.png", metavar="FILE.png")
    pa.add_argument("--title")
