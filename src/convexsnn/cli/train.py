"""``convexsnn train`` (one pipeline method on a task or data files; saves the model and a
report) and ``convexsnn evaluate`` (accuracy of a saved model, as JSON)."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from ..pipelines import ALL_METHODS
from ._common import (
    CLIError,
    _certificate_of,
    _check_device,
    _check_out_file,
    _dumps,
    _fmt_cert,
    _key_values,
    _pct,
    _print,
    _write_json,
    add_command,
)
from ._data import (
    _add_task_args,
    _describe_task,
    _load_model,
    _load_task,
    _model_label_values,
    _saved_task_spec,
    _task_spec,
)

logger = logging.getLogger("convexsnn")


def _cli_name(method: str) -> str:
    """The command-line name of a :data:`convexsnn.pipelines.ALL_METHODS` entry: lower case, ``->``
    written ``-`` (``CVX->SG`` is ``cvx-sg``)."""
    return method.lower().replace("->", "-")


#: CLI method names -> :data:`convexsnn.pipelines.ALL_METHODS` (every method there, ``cvx`` first:
#: the default)
METHOD_NAMES = {_cli_name(m): m for m in ("CVX", *(m for m in ALL_METHODS if m != "CVX"))}


def _pipeline_config(args: argparse.Namespace) -> dict:
    """Pipeline options from ``--config``, the shortcut flags and ``--set``."""
    cfg: dict = {}
    if getattr(args, "config", None):
        text = args.config
        p = Path(text)
        if p.suffix == ".json" or p.exists():
            if not p.exists():
                raise FileNotFoundError(f"config file {p} does not exist")
            text = p.read_text()
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CLIError(f"--config is not valid JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise CLIError("--config must be a JSON object of pipeline options")
        cfg.update(loaded)
    shortcuts = {
        "n_branches": "n_branches",
        "depth": "depth",
        "p_rec": "p_rec",
        "p_last": "p_last",
        "leak": "leak",
        "theta": "theta",
        "reset": "reset",
        "readout": "readout",
        "loss": "loss",
        "penalty": "penalty",
        "tol": "tol",
        "max_time": "max_time",
        "scales": "scales",
        "reg": "regs",
        "witnesses": "witnesses",
        "sg_epochs": "sg_epochs",
        "sg_lr": "sg_lr",
        "sg_batch_size": "sg_batch_size",
        "ft_epochs": "ft_epochs",
    }
    for attr, key in shortcuts.items():
        v = getattr(args, attr, None)
        if v is not None:
            cfg[key] = list(v) if isinstance(v, list) else v
    cfg.update(_key_values(getattr(args, "set", None), "--set"))
    from ..pipelines import PipelineConfig

    return PipelineConfig.from_dict(cfg).to_dict()


def _run_pipeline(method: str, task, config: dict, seed: int):
    """Run one pipeline method; return ``(record, model)``."""
    from .. import pipelines

    pkg = logging.getLogger("convexsnn")
    drop = _DropPipelineFailure()
    pkg.addFilter(drop)  # the error below says it once
    try:
        record, model = pipelines.run_method(
            method, task, config=config, seed=seed, return_model=True
        )
    finally:
        pkg.removeFilter(drop)
    if model is None:
        raise ValueError(f"method {method} failed: {record.get('error')}")
    return record, model


class _DropPipelineFailure(logging.Filter):
    """Drop the pipelines' 'pipeline X failed' warning (the CLI reports the failure itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("pipeline %s failed")


def _canonical_task_name(name: str) -> str:
    key = name.strip().lower()
    return "xor" if key in ("first-last-xor", "first_last_xor") else key


def _check_train_out(out: Path, overwrite: bool) -> None:
    """Refuse an output folder ``train`` cannot fill, before training starts."""
    from .._io import check_output_path
    from ..network import check_save_target

    check_output_path(out, "output folder", directory=True)
    check_save_target(out / "model", overwrite=overwrite)
    report = out / "report.json"
    check_output_path(report, "report")
    if report.exists() and not overwrite:
        try:
            data = json.loads(report.read_text())
            ours = isinstance(data, dict) and {"method", "task_spec", "record"} <= set(data)
        except (OSError, ValueError):
            ours = False
        if not ours:
            raise FileExistsError(
                f"refusing to overwrite {report}: it is not a convexsnn "
                "train report (pass --overwrite to replace it)"
            )


def _check_model_sizes(method: str, task, config: dict) -> None:
    """Refuse, before any work, networks and spike dictionaries that cannot fit in memory."""
    from .._checks import check_dictionary_size, check_layer_weights
    from ..witnesses import resolve_widths

    for prefix in ("", "sg_"):
        K = config.get(f"{prefix}n_branches") or config["n_branches"]
        try:
            widths = resolve_widths(
                n_branches=K,
                depth=config.get(f"{prefix}depth") or config["depth"],
                p_rec=config.get(f"{prefix}p_rec") or config["p_rec"],
                p_last=config.get(f"{prefix}p_last") or config["p_last"],
            )
        except (TypeError, ValueError):
            continue  # the pipeline reports bad widths itself
        check_layer_weights(K, [task.input_size] + widths, f"the {prefix or 'witness '}network")
        if not prefix and method in ("CVX", "R-CVX", "CVX->SG"):
            rows = task.train.n * (task.train.T if task.label_mode == "token" else 1)
            check_dictionary_size(rows, K * widths[-1])


def cmd_train(args: argparse.Namespace) -> int:
    """``convexsnn train``."""
    method = METHOD_NAMES[args.method]
    spec = _task_spec(args)
    if spec is None:
        raise CLIError("train needs --task NAME or --data FILE.npz")
    config = _pipeline_config(args)
    device = _check_device(args.device)
    if device is not None and device != "cpu":
        from ..pipelines import PipelineConfig

        if "device" not in PipelineConfig.__dataclass_fields__:
            raise CLIError(
                f"--device {device}: the training pipelines run on the CPU in this "
                "version (evaluate, info and plot accept --device)"
            )
        config["device"] = device
    if args.out:
        out = Path(args.out)
    else:
        name = (
            f"data-{Path(spec['train']).stem}"
            if spec["kind"] == "data"
            else _canonical_task_name(spec["name"])
        )
        out = Path("runs") / f"{name}-{args.method}-seed{args.seed}"
    _check_train_out(out, args.overwrite)  # before any work: a result is never lost
    task = _load_task(spec)
    logger.info("task %s", _describe_task(task))
    _check_model_sizes(method, task, config)
    t0 = time.perf_counter()
    record, model = _run_pipeline(method, task, config, args.seed)
    seconds = time.perf_counter() - t0
    cert = _certificate_of(record)
    extra = dict(getattr(model, "saved_extra", None) or {})
    extra.update(
        {
            "method": method,
            "task_spec": spec,
            "certificate": cert,
            "certificates": record.get("certificates"),
            "report": record,
            "label_mode": task.label_mode,
            "label_values": task.meta.get("label_values"),
            "heads": task.n_classes if isinstance(task.n_classes, list) else None,
        }
    )
    model_path = model.save(
        out / "model", extra=json.loads(_dumps(extra)), overwrite=args.overwrite
    )
    report = {
        "method": method,
        "cli_method": args.method,
        "task_spec": spec,
        "model_path": str(model_path),
        "seconds": seconds,
        "certificate": cert,
        "record": record,
    }
    report_path = _write_json(out / "report.json", report)
    _print(
        args,
        f"{method} on {task.name}: val {_pct(record.get('val_accuracy'))}%, test "
        f"{_pct(record.get('test_accuracy'))}%, {seconds:.1f}s, kept neurons "
        f"{record.get('kept_neurons')}",
    )
    if cert:
        _print(args, f"certificate: {_fmt_cert(cert)}")
    _print(args, f"model: {model_path}")
    _print(args, f"report: {report_path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``convexsnn evaluate``."""
    from ..train import evaluate_accuracy

    _check_out_file(args.out, "output file")
    device = _check_device(args.device)
    model = _load_model(args.model, device)
    spec = _task_spec(args) or _saved_task_spec(model, args)
    task = _load_task(spec, _model_label_values(model), for_model=True)
    heads = task.n_classes if isinstance(task.n_classes, list) else None
    splits = task.splits()
    if args.split == "all":
        names = list(splits)
    elif args.split == "ood":
        names = [k for k in splits if k.startswith("ood:")]
        if not names:
            raise CLIError(f"task {task.name} has no out-of-distribution splits")
    elif args.split in splits:
        names = [args.split]
    else:
        raise CLIError(
            f"unknown split {args.split!r}; this task has {', '.join(splits)} (or use ood, all)"
        )
    result = {
        "model": str(args.model),
        "task": task.name,
        "task_spec": spec,
        "label_mode": task.label_mode,
        "accuracy": {},
        "n": {},
    }
    for name in names:
        s = splits[name]
        if s.n == 0:
            continue
        result["accuracy"][name] = float(
            evaluate_accuracy(model, s.X, s.y, label_mode=task.label_mode, heads=heads)
        )
        result["n"][name] = s.n
    if len(names) == 1 and names[0] in result["accuracy"]:
        result["split"] = names[0]
        result["value"] = result["accuracy"][names[0]]
    text = _dumps(result)
    if args.out:
        _write_json(Path(args.out), result)
    _print(args, text)
    return 0


#: the one-line description of ``convexsnn train`` (command list and its --help)
TRAIN_HELP = "train one method on a task or data files; save the model and a report"

#: the one-line description of ``convexsnn evaluate`` (command list and its --help)
EVALUATE_HELP = "accuracy of a saved model (JSON)"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``train`` and ``evaluate`` to the subcommands ``sub``."""
    # train
    p = add_command(sub, common, "train", TRAIN_HELP, cmd_train)
    p.add_argument(
        "--method",
        "-m",
        choices=list(METHOD_NAMES),
        default="cvx",
        help="cvx (Gaussian witnesses + certified convex readout, default), sg "
        "(surrogate gradients), sg-cvx (SG hidden layers + convex readout), r-cvx "
        "(reservoir witnesses), cvx-sg (CVX then SG fine-tuning), sg-sg, cvx-cg (pure convex "
        "column generation over one-neuron witnesses with delay lines; options cg_* via --set, "
        "e.g. --set cg_family=two_layer_delay for window neurons over relayed layer-1 spikes, "
        "--set cg_family=recurrent for a recurrent layer grown neuron by neuron)",
    )
    _add_task_args(p)
    g = p.add_argument_group("model and training (pipeline options)")
    g.add_argument("--n-branches", type=int, metavar="K", help="parallel branches")
    g.add_argument("--depth", "-L", type=int, metavar="L", help="depth, counting the output layer")
    g.add_argument(
        "--p-rec", type=int, metavar="P", help="neurons of each inner layer (all branches)"
    )
    g.add_argument(
        "--p-last", type=int, metavar="P", help="neurons of the last LIF layer (all branches)"
    )
    g.add_argument("--leak", type=float, metavar="LEAK", help="LIF leak (default 0.99)")
    g.add_argument("--theta", type=float, help="LIF threshold (default 1)")
    g.add_argument("--reset", choices=["subtract", "zero"], help="LIF reset")
    g.add_argument("--readout", choices=["spike", "membrane"], help="last-layer readout")
    g.add_argument("--loss", choices=["squared", "hinge", "softmax"], help="convex datafit")
    g.add_argument("--penalty", choices=["l1", "l21"], help="convex penalty")
    g.add_argument(
        "--reg",
        type=float,
        nargs="+",
        metavar="B",
        help="regularisation path: reg values (the paper's beta) with lam = reg / sqrt(P) "
        "(default: a geometric grid below reg_max), chosen on validation",
    )
    g.add_argument(
        "--scales",
        type=float,
        nargs="+",
        metavar="S",
        help="Gaussian witness scales, chosen on validation",
    )
    g.add_argument(
        "--witnesses",
        choices=["gaussian", "delay"],
        help="cvx witness family: gaussian (default) or delay (a delay line behind "
        "every last-layer neuron: its spikes at every step become columns)",
    )
    g.add_argument("--tol", type=float, help="relative duality gap of the convex solves")
    g.add_argument("--max-time", type=float, metavar="SEC", help="time budget per convex path")
    g.add_argument("--sg-epochs", type=int, metavar="N", help="SG training epochs")
    g.add_argument("--sg-lr", type=float, metavar="LR", help="SG learning rate")
    g.add_argument("--sg-batch-size", type=int, metavar="N", help="SG mini-batch size")
    g.add_argument("--ft-epochs", type=int, metavar="N", help="fine-tuning epochs (cvx-sg)")
    g.add_argument(
        "--config", metavar="JSON|FILE", help="pipeline options as a JSON object or a .json file"
    )
    g.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any pipeline option (repeatable; see convexsnn.pipelines.PipelineConfig)",
    )
    p.add_argument(
        "--out",
        "-o",
        metavar="DIR",
        help="output folder: DIR/model and DIR/report.json (default runs/<task>-<method>-seed<S>)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into DIR even if DIR/model or DIR/report.json is not a convexsnn "
        "output (other files there are kept; a previous model is always "
        "replaced atomically)",
    )

    # evaluate
    p = add_command(sub, common, "evaluate", EVALUATE_HELP, cmd_evaluate)
    p.add_argument("model", help="saved model (folder, .npz, or a train output folder)")
    _add_task_args(p)
    p.add_argument(
        "--split",
        default="test",
        help="train, val, test (default), ood, all, or one 'ood:<key>' split",
    )
    p.add_argument("--out", "-o", metavar="FILE.json", help="also write the JSON here")
