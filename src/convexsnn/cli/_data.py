"""Data options of the commands: ``--task`` / ``--data`` flags, the JSON task description they
stand for, and loading it (generated tasks through :func:`convexsnn.tasks.load_task`, ``.npz``
files through :func:`convexsnn.tasks.load_npz_task`); saved models and the task they record."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import CLIError, _key_values


def _add_task_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    g = p.add_argument_group("data (a generated task or .npz files)")
    g.add_argument(
        "--task",
        metavar="NAME",
        help="task name: xor, parity_k<k>, parity_odd, parity_prefix<k>, tomita1..7 "
        "(tomita3_paper or tomita3_textbook), dfa, mnist, addition",
    )
    g.add_argument("-T", "--T", dest="T", type=int, metavar="T", help="sequence length")
    g.add_argument("--n-train", type=int, metavar="N", help="training samples")
    g.add_argument("--n-val", type=int, metavar="N", help="validation samples")
    g.add_argument("--n-test", type=int, metavar="N", help="test samples")
    g.add_argument(
        "--task-seed", type=int, metavar="S", help="seed of the task generator (default: --seed)"
    )
    g.add_argument(
        "--mnist-dir",
        metavar="DIR",
        help="folder of the MNIST IDX files (task mnist; default "
        "../shared/data/mnist if it exists)",
    )
    g.add_argument(
        "--task-option",
        action="append",
        metavar="KEY=VALUE",
        help="any other option of the task generator (repeatable; JSON values)",
    )
    g.add_argument(
        "--data",
        metavar="FILE.npz",
        help="training data: X (n,T,d) or (n,d), y; optional X_val, y_val, X_test, y_test",
    )
    g.add_argument("--val-data", metavar="FILE.npz", help="validation data (X, y)")
    g.add_argument("--test-data", metavar="FILE.npz", help="test data (X, y)")


def _default_mnist_dir() -> Path:
    return Path.cwd().parent / "shared" / "data" / "mnist"


def _task_spec(args: argparse.Namespace) -> dict | None:
    """A JSON-safe description of the data asked for on the command line (``None``: none)."""
    seed = args.task_seed if getattr(args, "task_seed", None) is not None else args.seed
    if getattr(args, "data", None):
        if args.task:
            raise CLIError("give either --task or --data, not both")
        return {
            "kind": "data",
            "train": str(Path(args.data).resolve()),
            "val": str(Path(args.val_data).resolve()) if args.val_data else None,
            "test": str(Path(args.test_data).resolve()) if args.test_data else None,
            "seed": int(seed),
        }
    if args.val_data or args.test_data:
        raise CLIError("--val-data and --test-data need --data")
    if not getattr(args, "task", None):
        return None
    opts = _key_values(args.task_option, "--task-option")
    for key, val in (
        ("T", args.T),
        ("n_train", args.n_train),
        ("n_val", args.n_val),
        ("n_test", args.n_test),
    ):
        if val is not None:
            opts[key] = val
    opts.setdefault("seed", int(seed))
    name = args.task.strip().lower()
    if name == "mnist":
        d = Path(args.mnist_dir) if args.mnist_dir else _default_mnist_dir()
        if not d.is_dir():
            raise FileNotFoundError(
                f"MNIST folder {d} not found; pass --mnist-dir DIR (the "
                "folder with the four IDX .gz files)"
            )
        opts.setdefault("directory", str(d.resolve()))
    elif args.mnist_dir:
        raise CLIError("--mnist-dir only applies to --task mnist")
    return {"kind": "task", "name": name, "options": opts}


def _load_task(spec: dict, label_values: list | None = None, for_model: bool = False):
    """The :class:`~convexsnn.tasks.TaskData` described by ``spec`` (see :func:`_task_spec`);
    ``for_model``: data for a trained model, whose label mapping ``label_values`` is used as is
    (``None``: labels are already its classes)."""
    from ..tasks import load_npz_task, load_task

    if spec.get("kind") == "data":
        return load_npz_task(
            spec["train"],
            spec.get("val"),
            spec.get("test"),
            seed=int(spec.get("seed", 0)),
            label_values=label_values,
            for_model=for_model,
        )
    if spec.get("kind") != "task":
        raise CLIError(f"unknown task description {spec!r}")

    try:
        return load_task(spec["name"], **spec.get("options", {}))
    except TypeError as exc:
        raise CLIError(f"task {spec['name']!r}: {' '.join(str(exc).split())}") from None


def _saved_task_spec(model, args: argparse.Namespace) -> dict:
    """The task a saved model records, checked against an allow-list: a model file never makes
    convexsnn read a path it names, create folders or download anything."""
    from ..tasks.loader import safe_task_options

    spec = _model_task_spec(model)
    if spec is None:
        raise CLIError(f"{args.model} records no task; give --task NAME or --data FILE.npz")
    if not isinstance(spec, dict) or spec.get("kind") not in ("task", "data"):
        raise CLIError(
            f"{args.model}: the recorded task is not a task description; give "
            "--task NAME or --data FILE.npz"
        )
    if spec["kind"] == "data":
        raise CLIError(
            f"{args.model} was trained on data files ({spec.get('train')!r}); "
            "convexsnn does not read files named inside a model: pass --data "
            "FILE.npz to evaluate on them"
        )
    try:
        options = safe_task_options(spec.get("name"), spec.get("options"))
    except ValueError as exc:
        raise CLIError(f"{args.model}: recorded task refused: {exc}") from None
    name = spec["name"].strip().lower()
    if name == "mnist":
        d = Path(args.mnist_dir) if getattr(args, "mnist_dir", None) else _default_mnist_dir()
        if not d.is_dir():
            raise FileNotFoundError(
                f"{args.model} was trained on MNIST: pass --mnist-dir DIR "
                "(the folder with the four IDX .gz files)"
            )
        options["directory"] = str(d.resolve())
    return {"kind": "task", "name": name, "options": options}


def _model_label_values(model) -> list | None:
    values = (getattr(model, "saved_extra", None) or {}).get("label_values")
    if values is None:
        return None
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    ):
        raise CLIError("the model's recorded label_values are not a list of integers")
    return values


def _describe_task(task) -> str:
    return (
        f"{task.name}: T={task.train.T}, d={task.input_size}, {task.train.n}/{task.val.n}/"
        f"{task.test.n} train/val/test, {task.n_classes} classes ({task.label_mode} labels)"
    )


def _load_model(path: str, device: str | None = None):
    from ..network import ParallelSNN

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no saved model at {p}")
    # a training output folder holds the model in 'model/'
    if p.is_dir() and not (p / "config.json").exists() and (p / "model").is_dir():
        p = p / "model"
    return ParallelSNN.load(p, map_location=device)


def _model_task_spec(model) -> dict | None:
    extra = getattr(model, "saved_extra", None) or {}
    return extra.get("task_spec")
