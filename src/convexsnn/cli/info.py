"""``convexsnn info``: architecture, kept neurons, output sparsity and certificate of a saved
model (:meth:`convexsnn.network.ParallelSNN.summary`), as text or JSON."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import _dumps, _fmt_cert, _pct, _print, add_command
from ._data import _load_model


def model_info(model) -> dict:
    """Architecture, sparsity and certificate of a loaded :class:`ParallelSNN` (JSON-safe):
    :meth:`convexsnn.network.ParallelSNN.summary`."""
    return model.summary()


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
        f"LIF          leak={lif['leak']}, theta={lif['theta']}, reset={lif['reset']}, "
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


#: the one-line description of ``convexsnn info`` (command list and its --help)
HELP = "architecture, kept neurons, output sparsity and certificate of a model"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``info`` to the subcommands ``sub``."""
    p = add_command(sub, common, "info", HELP, cmd_info)
    p.add_argument("model", help="saved model")
    p.add_argument("--json", action="store_true", help="print JSON")
