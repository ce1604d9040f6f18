"""The ``convexsnn`` command line: train, evaluate, reproduce, export, inspect and plot models.

Run ``convexsnn --help`` or ``convexsnn COMMAND --help``. Entry point: :func:`main` (also
``python -m convexsnn.cli``).

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
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

logger = logging.getLogger("convexsnn")

PROG = "convexsnn"

#: CLI method names -> :data:`convexsnn.pipelines.METHODS`
METHOD_NAMES = {
    "cvx": "CVX",
    "sg": "SG",
    "sg-cvx": "SG-CVX",
    "r-cvx": "R-CVX",
    "cvx-sg": "CVX->SG",
    "sg-sg": "SG->SG",
}

#: changes to the full-size configuration of :mod:`convexsnn.experiments.xor` for the demo's
#: FIRST-LAST-XOR part (T=6, L=5, 2000/2000/4000 samples): one witness scale, and a larger SG
#: network trained longer, so that SG gets a fair budget
DEMO_XOR_CONFIG = {
    "depth": 5,
    "scales": [2.0],
    "sg_n_branches": 4,
    "sg_p_rec": 64,
    "sg_p_last": 64,
    "sg_epochs": 20,
}

#: overrides of the ``paper`` configuration of :mod:`convexsnn.experiments.mnist` for the demo
#: (T=4, L=3, 6000 training images; smaller SG network and fewer epochs to fit in minutes; CVX:
#: the paper configuration's witness set, one scale and one beta; seed 0 measured 69.7% test,
#: vs 68.2% with the earlier 16 x [64, 64] set at the same cost)
DEMO_MNIST_OVERRIDES = {
    "n_val": 2000,
    "n_test": 10000,
    "sg": {"widths": [256, 256], "epochs": 8, "batch_size": 128, "lr": 3e-3},
    "cvx": {
        "n_branches": 1,
        "widths": [1024, 1024],
        "scales": [[1.0, 1.0]],
        "betas": [1e-2],
        "max_time": 60.0,
    },
}

_PUBLISHED = {
    ("xor", "CVX"): "100",
    ("xor", "SG"): "-",
    ("mnist", "CVX"): "70.0",
    ("mnist", "SG"): "85.2",
}


# ====================================================================================== helpers
class CLIError(Exception):
    """An error with a message meant for the user (one line, no traceback)."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line: ``convexsnn: error: ...`` (exit status 2)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        hint = f" (see '{self.prog} --help')"
        sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}{hint}\n")
        sys.exit(2)


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
        msg, args = str(record.msg), record.args
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


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    if isinstance(exc, KeyError):
        msg = f"missing key {msg}"
    if isinstance(exc, ImportError) and getattr(exc, "name", None):
        extra = {"nir": "nir", "matplotlib": "plot", "sklearn": "sklearn", "cvxpy": "cvxpy"}
        top = exc.name.split(".")[0]
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
    from ._io import json_safe

    return json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False)


def _write_json(path: Path, obj: Any) -> Path:
    from ._io import atomic_write_text

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


# ================================================================================= task loading
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


def _load_npz(path: str, what: str) -> dict:
    import numpy as np

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} file {p} does not exist")
    if p.is_dir():
        raise CLIError(f"{what} file {p} is a folder, not a .npz file")
    try:
        z = np.load(p, allow_pickle=False)
        if not hasattr(z, "files"):
            raise CLIError(
                f"{what} file {p} is a single .npy array, not a .npz archive with arrays X and y"
            )
        with z:
            return {k: z[k] for k in z.files}
    except CLIError:
        raise
    except Exception as exc:  # BadZipFile, ValueError on object arrays, OSError ...
        from .network import _short

        raise CLIError(f"{what} file {p} could not be read as .npz ({_short(exc)})") from None


def _split_from(arrs: dict, xk: str, yk: str, source: str):
    import numpy as np
    import torch

    from .tasks import Split

    if xk not in arrs or yk not in arrs:
        raise CLIError(f"{source} must hold arrays {xk!r} and {yk!r} (found {sorted(arrs)})")
    X, y = np.asarray(arrs[xk]), np.asarray(arrs[yk])
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise CLIError(f"{source}: {xk} must be numeric, got dtype {X.dtype}")
    if X.ndim == 2:
        X = X[:, None, :]
    if X.ndim != 3:
        raise CLIError(f"{source}: {xk} must have shape (n, T, d) or (n, d), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise CLIError(f"{source}: {xk} contains NaN or inf")
    if not (
        np.issubdtype(y.dtype, np.integer)
        or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))
    ):
        raise CLIError(f"{source}: {yk} must hold integer class labels 0..C-1, got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise CLIError(f"{source}: {yk} has negative labels; labels must be 0..C-1")
    if y.shape[0] != X.shape[0]:
        raise CLIError(f"{source}: {xk} has {X.shape[0]} rows but {yk} has {y.shape[0]}")
    return Split(
        torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
    )


def _data_task(spec: dict, label_values: list | None = None, for_model: bool = False):
    import numpy as np
    import torch

    from .tasks import Split, TaskData

    arrs = _load_npz(spec["train"], "training data")
    train = _split_from(arrs, "X", "y", spec["train"])
    val = test = None
    if "X_val" in arrs:
        val = _split_from(arrs, "X_val", "y_val", spec["train"])
    if "X_test" in arrs:
        test = _split_from(arrs, "X_test", "y_test", spec["train"])
    if spec.get("val"):
        val = _split_from(_load_npz(spec["val"], "validation data"), "X", "y", spec["val"])
    if spec.get("test"):
        test = _split_from(_load_npz(spec["test"], "test data"), "X", "y", spec["test"])
    notes = []
    if val is None:
        if train.n < 5:
            raise CLIError(
                f"{spec['train']}: too few rows ({train.n}) to hold out validation "
                "data; give X_val/y_val or --val-data"
            )
        rng = np.random.default_rng(np.random.SeedSequence([int(spec.get("seed", 0)), 1]))
        perm = torch.from_numpy(rng.permutation(train.n))
        n_val = max(1, int(round(0.2 * train.n)))
        val = Split(train.X[perm[:n_val]], train.y[perm[:n_val]])
        train = Split(train.X[perm[n_val:]], train.y[perm[n_val:]])
        notes.append(f"held out {n_val} training rows as validation data")
    if test is None:
        test = val
        notes.append("no test data: the test split is the validation split")
    for name, s in (("validation", val), ("test", test)):
        if s.X.shape[2] != train.X.shape[2]:
            raise CLIError(
                f"{name} data has {s.X.shape[2]} features per step, training data "
                f"has {train.X.shape[2]}"
            )
        if s.y.ndim != train.y.ndim:
            raise CLIError(
                f"{name} labels have shape {tuple(s.y.shape)}, training labels "
                f"{tuple(train.y.shape)}"
            )
    values = label_values if for_model else _label_values(train, val, test, spec, label_values)
    if values is not None:
        lookup = {int(v): i for i, v in enumerate(values)}

        def remap(s):
            flat = s.y.reshape(-1).tolist()
            unknown = sorted({v for v in flat if v not in lookup})
            if unknown:
                raise CLIError(
                    f"labels {unknown[:5]} do not occur in the model's training "
                    f"labels {values[:10]}"
                )
            return Split(
                s.X, torch.tensor([lookup[v] for v in flat], dtype=torch.int64).reshape(s.y.shape)
            )

        train, val, test = remap(train), remap(val), remap(test)
    n_classes = max(
        2,
        len(values)
        if values is not None
        else int(max(int(s.y.max()) for s in (train, val, test) if s.n)) + 1,
    )
    label_mode = "sequence" if train.y.ndim == 1 else "token"
    for n in notes:
        logger.info("%s", n)
    return TaskData(
        train=train,
        val=val,
        test=test,
        n_classes=n_classes,
        label_mode=label_mode,
        name=f"data:{Path(spec['train']).stem}",
        meta={
            "source": spec,
            "T": int(train.T),
            "n_train": train.n,
            "n_val": val.n,
            "n_test": test.n,
            "notes": notes,
            "label_values": values,
        },
    )


def _label_values(train, val, test, spec: dict, given: list | None) -> list[int] | None:
    """The distinct labels of a data file, mapped to classes ``0..C-1`` in increasing order
    (``None`` when they already are ``0..C-1``); ``given``: the mapping a model was trained with.
    Refuses a single class and more than :data:`~convexsnn._checks.MAX_CLASSES` classes."""
    import numpy as np

    from ._checks import MAX_CLASSES

    if given is not None:
        return [int(v) for v in given]
    uniq = np.unique(np.concatenate([s.y.reshape(-1).numpy() for s in (train, val, test) if s.n]))
    if uniq.size > MAX_CLASSES:
        raise CLIError(
            f"{spec['train']}: the labels hold {uniq.size} distinct values, more "
            f"than the {MAX_CLASSES} classes convexsnn accepts from a data file (one "
            "output per class)"
        )
    train_classes = np.unique(train.y.reshape(-1).numpy())
    if train_classes.size < 2:
        raise CLIError(
            f"{spec['train']}: training labels hold only one class "
            f"({int(train_classes[0]) if train_classes.size else 'none'}); a "
            "classifier needs samples of at least 2 classes"
        )
    if np.array_equal(uniq, np.arange(uniq.size)):
        return None
    logger.info("labels %s mapped to classes 0..%d", uniq[:10].tolist(), uniq.size - 1)
    return [int(v) for v in uniq]


def _load_task(spec: dict, label_values: list | None = None, for_model: bool = False):
    """The :class:`~convexsnn.tasks.TaskData` described by ``spec`` (see :func:`_task_spec`);
    ``for_model``: data for a trained model, whose label mapping ``label_values`` is used as is
    (``None``: labels are already its classes)."""
    if spec.get("kind") == "data":
        return _data_task(spec, label_values, for_model)
    if spec.get("kind") != "task":
        raise CLIError(f"unknown task description {spec!r}")
    from .tasks import load_task

    try:
        return load_task(spec["name"], **spec.get("options", {}))
    except TypeError as exc:
        raise CLIError(f"task {spec['name']!r}: {' '.join(str(exc).split())}") from None


def _saved_task_spec(model, args: argparse.Namespace) -> dict:
    """The task a saved model records, checked against an allow-list: a model file never makes
    convexsnn read a path it names, create folders or download anything."""
    from .tasks.loader import safe_task_options

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
    from .network import ParallelSNN

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


# ==================================================================================== pipelines
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
        "leak": "beta",
        "theta": "theta",
        "reset": "reset",
        "readout": "readout",
        "loss": "loss",
        "penalty": "penalty",
        "tol": "tol",
        "max_time": "max_time",
        "scales": "scales",
        "reg": "reg_betas",
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
    from .pipelines import PipelineConfig

    return PipelineConfig.from_dict(cfg).to_dict()


def _run_pipeline(method: str, task, config: dict, seed: int):
    """Run one pipeline method; return ``(record, model)``."""
    from . import pipelines

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

    from .convex import certified_label

    return (
        f"primal {g('primal', '.6g')}, dual {g('dual', '.6g')}, rel gap {g('rel_gap', '.1e')}"
        f": {certified_label(cert)}"
    )


def _pct(x: Any) -> str:
    return "-" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.1f}"


# ===================================================================================== commands
def _canonical_task_name(name: str) -> str:
    key = name.strip().lower()
    return "xor" if key in ("first-last-xor", "first_last_xor") else key


def _check_train_out(out: Path, overwrite: bool) -> None:
    """Refuse an output folder ``train`` cannot fill, before training starts."""
    from ._io import check_output_path
    from .network import check_save_target

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
    from ._checks import check_dictionary_size, check_layer_weights
    from .witnesses import resolve_widths

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


def _check_out_file(path: str | None, what: str) -> None:
    if path:
        from ._io import check_output_path

        check_output_path(Path(path), what)


def cmd_train(args: argparse.Namespace) -> int:
    """``convexsnn train``."""
    method = METHOD_NAMES[args.method]
    spec = _task_spec(args)
    if spec is None:
        raise CLIError("train needs --task NAME or --data FILE.npz")
    config = _pipeline_config(args)
    device = _check_device(args.device)
    if device is not None and device != "cpu":
        from .pipelines import PipelineConfig

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
    from .train import evaluate_accuracy

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


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``convexsnn reproduce``."""
    from .experiments import reproduce

    names = args.names or ["all"]
    if args.backend == "ray":
        if args.jobs != 1:
            raise CLIError(
                "--jobs is for the local backend; with --backend ray every cell is "
                "a Ray task (size the cluster instead)"
            )
        if args.overwrite:
            raise CLIError("--overwrite is not supported with --backend ray; use a fresh --out")
        from .experiments.ray_backend import reproduce_ray

        summary = reproduce_ray(
            names if names != ["all"] else None,
            args.out,
            quick=args.quick,
            seeds=args.seeds,
            force=args.force,
            address=args.address,
        )
    else:
        if args.address is not None:
            raise CLIError("--address needs --backend ray")
        summary = reproduce(
            names if names != ["all"] else None,
            args.out,
            quick=args.quick,
            jobs=args.jobs,
            seeds=args.seeds,
            force=args.force,
            overwrite=args.overwrite,
            threads=args.threads,
            progress=not (args.quiet or args.no_progress),
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


def cmd_export(args: argparse.Namespace) -> int:
    """``convexsnn export``."""
    out = Path(args.output)
    if out.suffix == "":
        out = out.with_suffix(".nir")
    _check_out_file(str(out), "NIR file")
    model = _load_model(args.model)
    from .export import export_nir

    path = export_nir(model, out, dt=args.dt, exact_reset=args.exact_reset, strict=args.strict)
    _print(args, f"wrote {path}")
    return 0


def model_info(model) -> dict:
    """Architecture, sparsity and certificate of a loaded :class:`ParallelSNN` (JSON-safe)."""
    import torch

    cfg = dict(model.config)
    W = model.output_weight.detach()
    n_last = model.hidden_widths[-1]
    row_nz = (W != 0).any(dim=1)
    per_branch = row_nz.reshape(model.n_branches, n_last).sum(dim=1)
    extra = getattr(model, "saved_extra", None) or {}
    report = extra.get("report") or {}
    n_params = int(sum(p.numel() for p in model.parameters()))
    return {
        "architecture": "ParallelSNN",
        "n_inputs": cfg["n_inputs"],
        "n_outputs": cfg["n_outputs"],
        "n_branches": model.n_branches,
        "depth": len(model.hidden_widths) + 1,
        "hidden_widths": model.hidden_widths,
        "n_features": model.n_features,
        "lif": {"beta": cfg["beta"], "theta": cfg["theta"], "reset": cfg["reset"]},
        "readout": cfg["readout"],
        "readout_bias": cfg["readout_bias"],
        "output": cfg["output"],
        "recurrent": cfg["recurrent"],
        "bias": cfg["bias"],
        "output_bias": cfg["output_bias"],
        "dtype": cfg.get("dtype"),
        "kept_neurons": int(row_nz.sum()),
        "kept_neurons_per_branch": [int(v) for v in per_branch.tolist()],
        "branches_with_kept_neurons": int((per_branch > 0).sum()),
        "output_weights": {
            "shape": list(W.shape),
            "nonzero": int((W != 0).sum()),
            "sparsity": float((W == 0).double().mean()) if W.numel() else 0.0,
        },
        "n_parameters": n_params,
        "path_norm": float(model.path_norm().detach().to(torch.float64)),
        "method": extra.get("method"),
        "task": (extra.get("task_spec") or {}).get("name") or report.get("task"),
        "val_accuracy": report.get("val_accuracy"),
        "test_accuracy": report.get("test_accuracy"),
        "certificate": extra.get("certificate")
        or _certificate_of(report)
        or (extra.get("certificates") or [None])[0],
    }


def cmd_info(args: argparse.Namespace) -> int:
    """``convexsnn info``."""
    model = _load_model(args.model)
    info = model_info(model)
    if args.json:
        _print(args, _dumps(info))
        return 0
    lif = info["lif"]
    ow = info["output_weights"]
    lines = [
        f"model        {args.model}",
        f"architecture ParallelSNN, {info['n_inputs']} inputs -> {info['n_branches']} branches "
        f"x widths {info['hidden_widths']} -> {info['n_outputs']} outputs (depth L="
        f"{info['depth']}, output={info['output']})",
        f"LIF          beta={lif['beta']}, theta={lif['theta']}, reset={lif['reset']}, "
        f"readout={info['readout']}"
        + (f" (bias {info['readout_bias']})" if info["readout"] == "membrane" else "")
        + (f", recurrent={info['recurrent']}" if info["recurrent"] else ""),
        f"kept neurons {info['kept_neurons']} of {info['n_features']} last-layer neurons, in "
        f"{info['branches_with_kept_neurons']} of {info['n_branches']} branches",
        f"output W     {ow['shape'][0]} x {ow['shape'][1]}, {ow['nonzero']} non-zero, sparsity "
        f"{100 * ow['sparsity']:.1f}%",
        f"parameters   {info['n_parameters']}, path norm {info['path_norm']:.6g}",
    ]
    if info["method"] or info["task"]:
        lines.append(
            f"trained      {info['method'] or '-'} on {info['task'] or '-'}: val "
            f"{_pct(info['val_accuracy'])}%, test {_pct(info['test_accuracy'])}%"
        )
    cert = info["certificate"]
    if cert:
        lines.append(
            f"certificate  {cert.get('datafit', '?')}+{cert.get('penalty', '?')}, "
            f"lam={cert.get('lam')}: {_fmt_cert(cert)}, "
            f"{'converged' if cert.get('converged') else 'not converged'}"
        )
    else:
        lines.append("certificate  none (not a convex readout)")
    for line in lines:
        _print(args, line)
    return 0


def cmd_plot_raster(args: argparse.Namespace) -> int:
    """``convexsnn plot raster``."""
    from .plots import plot_raster

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


def _results_files(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
        if p.is_dir():
            found = sorted(p.glob("results.json")) + sorted(p.glob("*/results.json"))
            if not found:
                raise FileNotFoundError(
                    f"no results.json in {p} or its sub-folders (run 'convexsnn reproduce' first)"
                )
            files += found
        else:
            files.append(p)
    return files


def accuracy_vs_size_records(paths: Sequence[str], metric: str = "test_accuracy") -> list[dict]:
    """``[{"method", "n_train", "accuracy", "std"}]`` (mean and std over seeds) from the
    ``results.json`` files of :func:`convexsnn.experiments.reproduce` (files or folders)."""
    import numpy as np

    groups: dict = {}
    for f in _results_files(paths):
        try:
            data = json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CLIError(f"{f} is not a readable results file ({exc})") from None
        cells = data.get("cells") if isinstance(data, dict) else None
        if not isinstance(cells, list):
            raise CLIError(f"{f} is not a 'convexsnn reproduce' results.json (no 'cells')")
        for c in cells:
            params = (c.get("cell") or {}).get("params") or {}
            for rec in (c.get("result") or {}).get("records") or []:
                acc = rec.get(metric)
                n = rec.get(
                    "n_train", (rec.get("task_meta") or {}).get("n_train", params.get("n_train"))
                )
                if acc is None or n is None or rec.get("method") is None:
                    continue
                groups.setdefault((rec["method"], int(n)), []).append(float(acc))
    if not groups:
        raise CLIError(
            f"no records with a method, a training-set size and {metric} in "
            f"{', '.join(map(str, paths))}"
        )
    return [
        {"method": m, "n_train": n, "accuracy": float(np.mean(v)), "std": float(np.std(v))}
        for (m, n), v in groups.items()
    ]


def cmd_plot_accuracy(args: argparse.Namespace) -> int:
    """``convexsnn plot accuracy``."""
    from .plots import plot_accuracy_vs_size

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


# ========================================================================================= demo
def _demo_xor(args: argparse.Namespace, bar) -> list[dict]:
    from .experiments import xor as xor_exp
    from .pipelines import run_methods
    from .tasks import load_task

    opts = {"T": 6, "seed": args.seed, "ood_lengths": ()}
    config = {**xor_exp.FULL_CONFIG, **DEMO_XOR_CONFIG}
    if args.quick:
        opts.update(n_train=300, n_val=300, n_test=600)
        config = {**xor_exp.QUICK_CONFIG, "depth": 5, "p_last": 64, "sg_epochs": 3}
    task = load_task("xor", **opts)
    bar.set_description("demo: FIRST-LAST-XOR (SG, CVX)")
    t0 = time.perf_counter()
    records = run_methods(["SG", "CVX"], task, config=config, seed=args.seed)
    logger.info("demo xor done in %.1fs", time.perf_counter() - t0)
    bar.update(1)
    return [
        _demo_row(
            "xor",
            f"T=6, L={config['depth']}, n={task.train.n}",
            r,
            kept_neurons=r.get("kept_neurons"),
            certificate=_certificate_of(r),
        )
        for r in records
    ]


def _demo_row(
    task: str, setting: str, record: dict, *, kept_neurons: Any, certificate: dict | None
) -> dict:
    """One row of the demo table from a pipeline / experiment record."""
    return {
        "task": task,
        "setting": setting,
        "method": record["method"],
        "val_accuracy": record["val_accuracy"],
        "test_accuracy": record["test_accuracy"],
        "seconds": (record.get("seconds") or {}).get("total"),
        "kept_neurons": kept_neurons,
        "certificate": certificate,
    }


def _demo_mnist(args: argparse.Namespace, bar) -> list[dict]:
    from .experiments import mnist as mnist_exp

    overrides = json.loads(json.dumps(DEMO_MNIST_OVERRIDES))
    overrides["n_train"] = args.mnist_train
    quick = bool(args.quick)
    if quick:
        overrides = {
            "n_train": min(args.mnist_train, 1000),
            "n_val": 500,
            "n_test": 1000,
            "sg": {"widths": [64, 64], "epochs": 2},
            "cvx": {
                "n_branches": 4,
                "widths": [64, 64],
                "scales": [[1.0, 0.3]],
                "betas": [1e-2],
                "max_time": 5.0,
            },
        }
    bar.set_description("demo: sequential MNIST (SG, CVX)")
    records = mnist_exp.run_config(
        "paper",
        seed=args.seed,
        quick=quick,
        methods=["SG", "CVX"],
        data_dir=str(args.mnist_dir_resolved),
        overrides=overrides,
    )
    bar.update(1)
    return [
        _demo_row(
            "mnist",
            f"T={r['T']}, L={r['depth']}, n={r['n_train']}",
            r,
            kept_neurons=None,
            certificate=r.get("certificate"),
        )
        for r in records
    ]


class _ticking:
    """Refresh a tqdm bar every second while its step runs, so its clock never stands still
    (the demo's steps take minutes); ``None``: do nothing (log lines mark the steps)."""

    def __init__(self, bar):
        import threading

        self.bar, self.stop = bar, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True) if bar is not None else None

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                self.bar.refresh()
            except Exception:  # pragma: no cover - a closed bar
                return

    def __enter__(self):
        if self.thread is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(2.0)


def demo_table(rows: Sequence[dict]) -> str:
    """The demo's comparison table (plain text)."""
    from .convex import certified_label

    head = [
        "task",
        "setting",
        "method",
        "val %",
        "test %",
        "published %",
        "seconds",
        "certificate (primal / dual / rel gap)",
        "certified",
    ]
    body = []
    for r in rows:
        cert = r.get("certificate")
        if cert:
            ctext = (
                f"{cert.get('primal', float('nan')):.6g} / {cert.get('dual', float('nan')):.6g}"
                f" / {cert.get('rel_gap', float('nan')):.1e}"
            )
        else:
            ctext = "- (SG: no certificate)"
        secs = r.get("seconds")
        body.append(
            [
                r["task"],
                r["setting"],
                r["method"],
                _pct(r.get("val_accuracy")),
                _pct(r.get("test_accuracy")),
                _PUBLISHED.get((r["task"], r["method"]), "-"),
                "-" if secs is None else f"{secs:.1f}",
                ctext,
                certified_label(cert),
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]

    def fmt(row):
        return "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()

    lines = [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(b) for b in body]
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    """``convexsnn demo``: CVX versus SG on FIRST-LAST-XOR and sequential MNIST."""
    from tqdm.auto import tqdm

    _check_out_file(args.out, "output file")
    mnist_dir = Path(args.mnist_dir) if args.mnist_dir else _default_mnist_dir()
    run_mnist = not args.skip_mnist
    if run_mnist and not mnist_dir.is_dir():
        if args.mnist_dir:
            raise FileNotFoundError(f"--mnist-dir {mnist_dir} does not exist")
        logger.warning(
            "MNIST files not found in %s (the default ../shared/data/mnist); "
            "skipping the sequential MNIST part. Pass --mnist-dir DIR to include it.",
            mnist_dir,
        )
        run_mnist = False
    args.mnist_dir_resolved = mnist_dir.resolve()
    t0 = time.perf_counter()
    rows: list[dict] = []
    show = not (args.quiet or args.no_progress) and sys.stderr.isatty()
    with (
        tqdm(
            total=1 + int(run_mnist), desc="demo", disable=not show, leave=False, file=sys.stderr
        ) as bar,
        _ticking(bar if show else None),
    ):
        rows += _demo_xor(args, bar)
        if run_mnist:
            rows += _demo_mnist(args, bar)
    total = time.perf_counter() - t0
    _print(args, "")
    _print(args, "CVX (certified convex parameter reconstruction) versus SG (surrogate gradients)")
    _print(args, demo_table(rows))
    _print(
        args,
        f"total {total:.0f}s; 'published' = the paper's best numbers for that setting "
        "(see RESULTS.md).",
    )
    if args.out:
        path = _write_json(
            Path(args.out),
            {"rows": rows, "seconds": total, "seed": args.seed, "quick": bool(args.quick)},
        )
        _print(args, f"wrote {path}")
    return 0


# ======================================================================================= parser
def _common_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print results only (no progress or log messages)",
    )
    g.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="debug logging; show tracebacks on errors",
    )
    g.add_argument(
        "--device",
        default=argparse.SUPPRESS,
        metavar="DEV",
        help="torch device, e.g. cpu or cuda:0 (default cpu)",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=argparse.SUPPRESS,
        metavar="S",
        help="seed of everything random (default 0)",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="torch CPU threads (default: torch's choice; reproduce: the idle "
        "cores shared among --jobs, at least 1)",
    )
    g.add_argument(
        "--no-progress", action="store_true", default=argparse.SUPPRESS, help="no progress bars"
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``convexsnn`` command."""
    from . import __version__

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

    def add(name: str, help_: str, func, **kw) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, parents=[common], **kw)
        p.set_defaults(func=func)
        return p

    # train
    p = add(
        "train", "train one method on a task or data files; save the model and a report", cmd_train
    )
    p.add_argument(
        "--method",
        "-m",
        choices=list(METHOD_NAMES),
        default="cvx",
        help="cvx (Gaussian witnesses + certified convex readout, default), sg "
        "(surrogate gradients), sg-cvx (SG hidden layers + convex readout), r-cvx "
        "(reservoir witnesses), cvx-sg (CVX then SG fine-tuning), sg-sg",
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
    g.add_argument("--leak", type=float, metavar="BETA", help="LIF leak beta (default 0.99)")
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
        help="regularisation path: beta values with lam = beta / sqrt(P) (default: a "
        "geometric grid below beta_max), chosen on validation",
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
    p = add("evaluate", "accuracy of a saved model (JSON)", cmd_evaluate)
    p.add_argument("model", help="saved model (folder, .npz, or a train output folder)")
    _add_task_args(p)
    p.add_argument(
        "--split",
        default="test",
        help="train, val, test (default), ood, all, or one 'ood:<key>' split",
    )
    p.add_argument("--out", "-o", metavar="FILE.json", help="also write the JSON here")

    # reproduce
    p = add("reproduce", "run the paper's experiments and write tables and plots", cmd_reproduce)
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

    # export
    p = add("export", "export a saved model as a NIR graph", cmd_export)
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

    # info
    p = add(
        "info", "architecture, kept neurons, output sparsity and certificate of a model", cmd_info
    )
    p.add_argument("model", help="saved model")
    p.add_argument("--json", action="store_true", help="print JSON")

    # plot
    p = add(
        "plot",
        "plots (PNG): a spike raster or accuracy against training-set size",
        _plot_needs_kind,
    )
    psub = p.add_subparsers(dest="kind", metavar="KIND", parser_class=_Parser)
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

    # demo
    p = add(
        "demo", "CVX versus SG on FIRST-LAST-XOR (T=6, L=5) and sequential MNIST (T=4)", cmd_demo
    )
    p.add_argument(
        "--mnist-dir",
        metavar="DIR",
        help="folder of the MNIST IDX files (default ../shared/data/mnist)",
    )
    p.add_argument(
        "--mnist-train",
        type=int,
        default=6000,
        metavar="N",
        help="MNIST training images (default 6000, the paper's subset)",
    )
    p.add_argument("--skip-mnist", action="store_true", help="FIRST-LAST-XOR only")
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds; for tests)")
    p.add_argument("--out", "-o", metavar="FILE.json", help="also write the rows as JSON")
    return parser


_DEFAULTS = {
    "quiet": False,
    "debug": False,
    "device": None,
    "seed": 0,
    "threads": None,
    "no_progress": False,
}


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


if __name__ == "__main__":
    sys.exit(main())
