r"""``ParallelSNN``: K parallel branches of LIF layers summed by one linear output layer.

Branch :math:`k` is a stack of LIF layers (:mod:`convexsnn.lif`); the readout of its last layer at
step :math:`t` is its spikes :math:`r_t = s_t` (``readout="spike"``) or the indicator
:math:`r_t = \mathbb{1}[m_t \ge b]` of the post-reset membrane (``readout="membrane"``). The readouts
of all branches are concatenated (feature :math:`j = k\,n_{last} + i` is neuron :math:`i` of branch
:math:`k`) and mapped to scores :math:`z_t = r_t W_{out} (+ b_{out})`, at the last step
(``output="last"``) or at every step (``output="all"``).

Depth ``L`` counts the output layer: there are ``L - 1`` LIF layers, by default ``L - 2`` of width
``p_rec / K`` per branch then one of ``p_last / K``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._checks import (
    check_choice,
    check_memory,
    check_positive_float,
    check_positive_int,
    check_sequence_input,
    dtype_from_name,
    dtype_name,
    rename_keys,
    renamed_kwargs,
)
from ._io import atomic_replace_dir, atomic_write_bytes, check_output_path, make_temp_dir
from ._persist import (
    META_KEY,
    check_archive_target,
    check_format,
    meta_sha256,
    npz_bytes,
    read_archive,
    read_error,
    write_archive,
)
from ._persist import short_error as _short
from ._scores import classes_from_scores, score_tolerance
from .lif import RESETS, Trace, check_leak, simulate
from .surrogate import SURROGATES, Surrogate, get_surrogate

__all__ = [
    "ParallelSNN",
    "READOUTS",
    "OUTPUTS",
    "RECURRENT_KINDS",
    "FORMAT_VERSION",
    "check_save_target",
]

logger = logging.getLogger("convexsnn")

READOUTS = ("spike", "membrane")
OUTPUTS = ("last", "all")
RECURRENT_KINDS = ("dense", "diagonal", "sparse")
#: 2: ``meta_sha256`` covers the whole ``config.json`` (config, shapes, extra, weights checksum);
#: 1 (read with a warning): only the weights were checksummed
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
_CONFIG_NAME = "config.json"
_WEIGHTS_NAME = "weights.npz"
_FORMAT = "convexsnn.ParallelSNN"


def _default_widths(depth: int, n_branches: int, p_rec: int, p_last: int) -> list[int]:
    for name, p in (("p_rec", p_rec), ("p_last", p_last)):
        if p % n_branches:
            raise ValueError(f"{name}={p} is not divisible by n_branches={n_branches}")
    return [p_rec // n_branches] * (depth - 2) + [p_last // n_branches]


class ParallelSNN(nn.Module):
    r"""Parallel LIF spiking network.

    Parameters
    ----------
    n_inputs, n_outputs : int
        Input features per step and output classes (score columns).
    n_branches : int
        ``K``, the number of independent branches.
    depth : int
        ``L`` >= 2, counting the output layer (``L - 1`` LIF layers).
    p_rec, p_last : int
        Total neurons (over all branches) of each inner layer and of the last LIF layer; each must
        be divisible by ``n_branches``. Ignored when ``hidden_widths`` is given.
    hidden_widths : list of int, optional
        Per-branch widths of the LIF layers (overrides ``depth``/``p_rec``/``p_last``).
    leak, theta, reset
        Leak :math:`\beta`, threshold and reset of every LIF layer (docs/method.md section 1).
    readout : {"spike", "membrane"}
        Last-layer readout: spikes, or the membrane indicator :math:`1[m_t \ge b]`.
    readout_bias : float
        ``b`` of the membrane readout.
    output : {"last", "all"}
        Scores at the last step ``(B, C)`` or at every step ``(B, T, C)``.
    bias : bool
        Per-neuron bias in the LIF layers' input currents.
    output_bias : bool
        Bias of the output layer (off for reconstructed networks, whose convex readout has none).
    recurrent : {None, "dense", "diagonal", "sparse"}
        Recurrent weights ``s_{t-1} W_rec`` in every LIF layer (None: feed-forward). ``"sparse"``
        is a dense ``(K, n, n)`` matrix used through a fixed 0/1 mask :math:`M`: the layer sees
        :math:`W_{rec} \odot M`, so gradients off the mask are zero. The masks are buffers
        (``recurrent_mask_<l>``), saved and loaded with the weights; they start as a seeded
        Bernoulli(``recurrent_density``) draw and can be replaced with
        :meth:`set_recurrent_masks`.
    recurrent_density : float
        Probability of a connection in the initial sparse masks (only with ``"sparse"``).
    surrogate : str or Surrogate
        Spike function used when gradients are needed (forward always exact).
    surrogate_params : dict, optional
        Hyper-parameters of the surrogate.
    init_scale : float
        Hidden weights are drawn :math:`U(-s/\sqrt{n_{in}}, s/\sqrt{n_{in}})`.
    seed : int, optional
        Seed of the initial weights (a local generator; global RNG state untouched).
    """

    @renamed_kwargs(beta="leak")
    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        *,
        n_branches: int = 1,
        depth: int = 2,
        p_rec: int = 128,
        p_last: int = 128,
        hidden_widths: list[int] | None = None,
        leak: float = 0.99,
        theta: float = 1.0,
        reset: str = "subtract",
        readout: str = "spike",
        readout_bias: float = 0.0,
        output: str = "last",
        bias: bool = False,
        output_bias: bool = False,
        recurrent: str | None = None,
        surrogate: str | Surrogate = "atan",
        surrogate_params: dict | None = None,
        init_scale: float = 1.0,
        seed: int | None = None,
        recurrent_density: float = 0.1,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        n_inputs = check_positive_int(n_inputs, "n_inputs")
        n_outputs = check_positive_int(n_outputs, "n_outputs")
        n_branches = check_positive_int(n_branches, "n_branches")
        if hidden_widths is None:
            depth = check_positive_int(depth, "depth")
            if depth < 2:
                raise ValueError(f"depth must be >= 2 (it counts the output layer), got {depth}")
            p_rec = check_positive_int(p_rec, "p_rec")
            p_last = check_positive_int(p_last, "p_last")
            hidden_widths = _default_widths(depth, n_branches, p_rec, p_last)
        else:
            if len(hidden_widths) == 0:
                raise ValueError("hidden_widths must name at least one LIF layer")
            hidden_widths = [
                check_positive_int(w, f"hidden_widths[{i}]") for i, w in enumerate(hidden_widths)
            ]
        leak = check_leak(leak)
        theta = check_positive_float(theta, "theta")
        check_choice(reset, "reset", RESETS)
        check_choice(readout, "readout", READOUTS)
        check_choice(output, "output", OUTPUTS)
        if recurrent is not None:
            check_choice(recurrent, "recurrent", RECURRENT_KINDS)
        recurrent_density = check_positive_float(
            recurrent_density, "recurrent_density", allow_zero=True
        )
        if recurrent_density > 1.0:
            raise ValueError(f"recurrent_density must be in [0, 1], got {recurrent_density}")
        if isinstance(surrogate, Surrogate):
            surrogate_name, surrogate_params = surrogate.name, surrogate.params()
        else:
            check_choice(surrogate, "surrogate", SURROGATES)
            surrogate_name = surrogate
        surrogate_params = dict(surrogate_params or {})
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")

        self.config: dict[str, Any] = {
            "n_inputs": n_inputs,
            "n_outputs": n_outputs,
            "n_branches": n_branches,
            "hidden_widths": list(hidden_widths),
            "leak": float(leak),
            "theta": float(theta),
            "reset": reset,
            "readout": readout,
            "readout_bias": float(readout_bias),
            "output": output,
            "bias": bool(bias),
            "output_bias": bool(output_bias),
            "recurrent": recurrent,
            "surrogate": surrogate_name,
            "surrogate_params": surrogate_params,
            "dtype": dtype_name(dtype),
        }
        if recurrent == "sparse":  # only then, so other configs stay as they were
            self.config["recurrent_density"] = recurrent_density
        self.spike_fn = get_surrogate(surrogate_name, **surrogate_params)

        K = n_branches
        sizes = [n_inputs] + list(hidden_widths)
        n_params = sum(K * sizes[i] * sizes[i + 1] for i in range(len(hidden_widths)))
        if recurrent in ("dense", "sparse"):
            n_params += sum(K * w * w * (2 if recurrent == "sparse" else 1) for w in hidden_widths)
        n_params += K * hidden_widths[-1] * n_outputs
        check_memory(
            n_params * (8 if dtype == torch.float64 else 4),
            f"a ParallelSNN with {K} branches of widths {list(hidden_widths)} "
            f"({n_params:.3g} parameters)",
        )
        self.weights = nn.ParameterList(
            [
                nn.Parameter(torch.empty(K, sizes[i], sizes[i + 1], dtype=dtype))
                for i in range(len(hidden_widths))
            ]
        )
        self.biases = (
            nn.ParameterList([nn.Parameter(torch.zeros(K, w, dtype=dtype)) for w in hidden_widths])
            if bias
            else None
        )
        if recurrent in ("dense", "sparse"):
            self.recurrent_weights = nn.ParameterList(
                [nn.Parameter(torch.zeros(K, w, w, dtype=dtype)) for w in hidden_widths]
            )
        elif recurrent == "diagonal":
            self.recurrent_weights = nn.ParameterList(
                [nn.Parameter(torch.zeros(K, w, dtype=dtype)) for w in hidden_widths]
            )
        else:
            self.recurrent_weights = None
        if recurrent == "sparse":
            # a separate generator, so the weights drawn below do not depend on the masks
            mgen = torch.Generator().manual_seed(int(seed) + 0x5EED) if seed is not None else None
            for l, w in enumerate(hidden_widths):
                mask = torch.rand(K, w, w, generator=mgen, dtype=torch.float64) < recurrent_density
                self.register_buffer(f"recurrent_mask_{l}", mask.to(dtype))
        self.output_weight = nn.Parameter(
            torch.zeros(K * hidden_widths[-1], n_outputs, dtype=dtype)
        )
        self.output_bias = (
            nn.Parameter(torch.zeros(n_outputs, dtype=dtype)) if output_bias else None
        )
        self.reset_parameters(seed=seed, scale=init_scale)

    # ------------------------------------------------------------------ properties
    @property
    def n_branches(self) -> int:
        return self.config["n_branches"]

    @property
    def hidden_widths(self) -> list[int]:
        return list(self.config["hidden_widths"])

    @property
    def n_features(self) -> int:
        """Number of readout features, ``K * n_last``."""
        return self.n_branches * self.hidden_widths[-1]

    @property
    def dtype(self) -> torch.dtype:
        return self.output_weight.dtype

    @property
    def device(self) -> torch.device:
        return self.output_weight.device

    @property
    def recurrent_masks(self) -> list[torch.Tensor] | None:
        """The 0/1 masks ``(K, n_l, n_l)`` of a ``"sparse"`` network (``None`` otherwise)."""
        if self.config["recurrent"] != "sparse":
            return None
        return [getattr(self, f"recurrent_mask_{l}") for l in range(len(self.hidden_widths))]

    def effective_recurrent_weights(self) -> list[torch.Tensor] | None:
        r"""Recurrent weights as the layers use them: :math:`W_{rec} \odot M` for ``"sparse"``,
        the parameters themselves for ``"dense"`` / ``"diagonal"``, ``None`` when feed-forward."""
        if self.recurrent_weights is None:
            return None
        masks = self.recurrent_masks
        if masks is None:
            return list(self.recurrent_weights)
        return [w * m for w, m in zip(self.recurrent_weights, masks)]

    @torch.no_grad()
    def set_recurrent_masks(self, masks) -> None:
        """Replace the masks of a ``"sparse"`` network (one 0/1 array ``(K, n_l, n_l)`` per layer).

        Recurrent weights off the new mask are set to zero, so the stored parameters equal the
        effective weights.
        """
        if self.config["recurrent"] != "sparse":
            raise ValueError("set_recurrent_masks needs a network built with recurrent='sparse'")
        masks = list(masks)
        widths = self.hidden_widths
        if len(masks) != len(widths):
            raise ValueError(f"need one mask per LIF layer ({len(widths)}), got {len(masks)}")
        K = self.n_branches
        new = []
        for l, (m, w) in enumerate(zip(masks, widths)):
            m = torch.as_tensor(np.asarray(m) if not isinstance(m, torch.Tensor) else m)
            if tuple(m.shape) != (K, w, w):
                raise ValueError(f"mask {l} must have shape {(K, w, w)}, got {tuple(m.shape)}")
            m = m.to(device=self.device, dtype=self.dtype)
            if not bool(((m == 0) | (m == 1)).all()):
                raise ValueError(f"mask {l} must hold only 0 and 1")
            new.append(m)
        for l, m in enumerate(new):
            getattr(self, f"recurrent_mask_{l}").copy_(m)
            self.recurrent_weights[l].mul_(m)

    def provenance(self) -> np.ndarray:
        """``(n_features, 2)`` array of (branch, neuron) for every readout feature."""
        n_last = self.hidden_widths[-1]
        j = np.arange(self.n_features)
        return np.stack([j // n_last, j % n_last], axis=1)

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None, scale: float = 1.0) -> None:
        """Draw hidden weights :math:`U(-s/\\sqrt{n_{in}}, s/\\sqrt{n_{in}})` and output weights
        :math:`U(-1/\\sqrt{F}, 1/\\sqrt{F})`; biases and recurrent weights start at zero."""
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        for w in self.weights:
            bound = scale / np.sqrt(w.shape[1])
            w.copy_((torch.rand(w.shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
        bound = 1.0 / np.sqrt(self.output_weight.shape[0])
        self.output_weight.copy_(
            (torch.rand(self.output_weight.shape, generator=gen, dtype=torch.float64) * 2 - 1)
            * bound
        )
        for plist in (self.biases, self.recurrent_weights):
            if plist is not None:
                for p in plist:
                    p.zero_()
        if self.output_bias is not None:
            self.output_bias.zero_()

    # ------------------------------------------------------------------ forward
    def check_input(self, x: Any, name: str = "x") -> torch.Tensor:
        """Validate ``x`` of shape ``(batch, T, n_inputs)`` and cast it to the network's dtype."""
        return check_sequence_input(
            x, name, n_features=self.config["n_inputs"], dtype=self.dtype, device=self.device
        )

    def simulate(self, x: Any, return_membrane: bool = False) -> Trace:
        """Spikes (and membranes) of every LIF layer, each ``(B, T, K, n_l)``."""
        x = self.check_input(x)
        return simulate(
            x,
            list(self.weights),
            biases=list(self.biases) if self.biases is not None else None,
            recurrent=self.effective_recurrent_weights(),
            leak=self.config["leak"],
            theta=self.config["theta"],
            reset=self.config["reset"],
            spike_fn=self.spike_fn,
            return_membrane=return_membrane,
        )

    def features(self, x: Any) -> torch.Tensor:
        """Readout of the last LIF layer at every step, ``(B, T, K * n_last)``."""
        need_membrane = self.config["readout"] == "membrane"
        trace = self.simulate(x, return_membrane=need_membrane)
        if need_membrane:
            m = trace.membranes[-1]
            r = self.spike_fn(m - self.config["readout_bias"])
        else:
            r = trace.spikes[-1]
        B, T = r.shape[:2]
        return r.reshape(B, T, -1)

    def scores_from_features(self, r: torch.Tensor) -> torch.Tensor:
        """Output layer :math:`z = r W_{out} (+ b_{out})` applied to readout features."""
        z = r @ self.output_weight
        if self.output_bias is not None:
            z = z + self.output_bias
        return z

    def forward(self, x: Any) -> torch.Tensor:
        """Scores ``(B, C)`` at the last step, or ``(B, T, C)`` with ``output="all"``."""
        r = self.features(x)
        if self.config["output"] == "last":
            r = r[:, -1]
        return self.scores_from_features(r)

    def scores_and_tolerance(self, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (as :meth:`forward`) and their per-row rounding bound
        (:func:`convexsnn._scores.score_tolerance`), the inputs of the prediction rule."""
        r = self.features(x)
        if self.config["output"] == "last":
            r = r[:, -1]
        tol = score_tolerance(r, self.output_weight, self.output_bias)
        return self.scores_from_features(r), tol.to(device=r.device)

    @torch.no_grad()
    def predict(self, x: Any) -> torch.Tensor:
        """Class predictions: argmax of the scores (sign for a single score column); scores
        within rounding of a tie are ties (:func:`convexsnn._scores.classes_from_scores`)."""
        z, tol = self.scores_and_tolerance(x)
        return classes_from_scores(z, tol)

    def path_norm(self) -> torch.Tensor:
        r"""Path norm :math:`\sum_k \sum_{paths} \prod |w|` over input -> ... -> output paths.

        Computed per branch as :math:`\mathbf 1^\top |W_1| |W_2| \cdots |W_{out,k}| \mathbf 1`
        (recurrent and bias terms are not part of the path norm).
        """
        K = self.n_branches
        v = torch.ones(K, 1, self.config["n_inputs"], dtype=self.dtype, device=self.device)
        for w in self.weights:
            v = torch.bmm(v, w.abs())
        w_out = self.output_weight.abs().reshape(K, self.hidden_widths[-1], -1)
        return torch.bmm(v, w_out).sum()

    def summary(self) -> dict:
        r"""Architecture, sparsity and training record of the network, as a JSON-safe dict.

        A last-layer neuron :math:`j` is *kept* when its output row is non-zero,
        :math:`W_{out,j,:} \ne 0` (a convex readout zeroes whole rows; docs/method.md); the
        output sparsity is the share of zero entries of :math:`W_{out}`.

        Returns
        -------
        dict
            ``architecture``, ``n_inputs``, ``n_outputs``, ``n_branches``, ``depth`` (hidden
            layers + the output layer), ``hidden_widths``, ``n_features``, ``lif``
            (``leak``, ``theta``, ``reset``), ``readout``, ``readout_bias``, ``output``,
            ``recurrent``, ``bias``, ``output_bias``, ``dtype``, ``kept_neurons``,
            ``kept_neurons_per_branch``, ``branches_with_kept_neurons``, ``output_weights``
            (``shape``, ``nonzero``, ``sparsity``), ``n_parameters``, ``path_norm``; and, from
            what training recorded in ``saved_extra`` (``None`` when absent): ``method``,
            ``task``, ``val_accuracy``, ``test_accuracy`` and ``certificate``.
        """
        cfg = self.config
        W = self.output_weight.detach()
        row_nz = (W != 0).any(dim=1)
        per_branch = row_nz.reshape(self.n_branches, self.hidden_widths[-1]).sum(dim=1)
        extra = getattr(self, "saved_extra", None) or {}
        report = extra.get("report") or {}
        trained = report.get("certificate")
        if trained is None:
            trained = (report.get("certificates") or [None])[0]
        certificate = (
            extra.get("certificate") or trained or (extra.get("certificates") or [None])[0]
        )
        return {
            "architecture": "ParallelSNN",
            "n_inputs": cfg["n_inputs"],
            "n_outputs": cfg["n_outputs"],
            "n_branches": self.n_branches,
            "depth": len(self.hidden_widths) + 1,
            "hidden_widths": self.hidden_widths,
            "n_features": self.n_features,
            "lif": {"leak": cfg["leak"], "theta": cfg["theta"], "reset": cfg["reset"]},
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
            "n_parameters": int(sum(p.numel() for p in self.parameters())),
            "path_norm": float(self.path_norm().detach().to(torch.float64)),
            "method": extra.get("method"),
            "task": (extra.get("task_spec") or {}).get("name") or report.get("task"),
            "val_accuracy": report.get("val_accuracy"),
            "test_accuracy": report.get("test_accuracy"),
            "certificate": certificate,
        }

    # ------------------------------------------------------------------ persistence
    def state_arrays(self) -> dict[str, np.ndarray]:
        """All weights as numpy arrays keyed by parameter name."""
        return {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}

    def save(
        self, path: str | os.PathLike, extra: dict | None = None, *, overwrite: bool = False
    ) -> Path:
        """Save to a directory (``config.json`` + ``weights.npz``) or, for a path ending in
        ``.npz``, to a single file. No pickle; written atomically; ``config.json`` carries a
        sha256 of the weights and one of itself (``meta_sha256``), both checked on load.
        ``extra`` (JSON-safe) is stored beside the config (e.g. a certificate); by default the
        network's own ``saved_extra`` (set by :meth:`load` and by reconstruction) is kept.

        Nothing that :meth:`save` did not write is ever deleted. A previous model at ``path`` is
        replaced atomically (the new one is written to a temporary sibling and renamed over it);
        a non-empty folder or a file that is not a convexsnn model is refused unless
        ``overwrite=True``, which writes ``config.json`` and ``weights.npz`` into the folder
        beside the files already there (see :func:`check_save_target`).
        """
        path = check_save_target(path, overwrite=overwrite)
        arrays = self.state_arrays()
        weights_bytes = npz_bytes(arrays)
        meta = {
            "format": _FORMAT,
            "format_version": FORMAT_VERSION,
            "config": self.config,
            "shapes": {k: list(v.shape) for k, v in arrays.items()},
            "weights_sha256": hashlib.sha256(weights_bytes).hexdigest(),
            "extra": extra if extra is not None else getattr(self, "saved_extra", {}),
        }
        meta["meta_sha256"] = meta_sha256(meta)
        meta_bytes = json.dumps(meta, indent=2, sort_keys=True).encode()
        if path.suffix == ".npz":
            write_archive(
                path, meta_bytes, {"__weights__": np.frombuffer(weights_bytes, dtype=np.uint8)}
            )
        elif path.is_dir() and (
            not any(path.iterdir())
            or not set(os.listdir(path)) <= set(_MODEL_FILES)
            or Path.cwd().resolve().is_relative_to(path.resolve())
        ):
            # an empty folder, one holding other files too, or the working folder (which is
            # never renamed): write our two files into it
            # (each atomically; weights first, so a reader never pairs a new config with old
            # weights without the checksum noticing) and leave everything else alone
            atomic_write_bytes(path / _WEIGHTS_NAME, weights_bytes)
            atomic_write_bytes(path / _CONFIG_NAME, meta_bytes)
        else:
            tmp = make_temp_dir(path)
            try:
                (tmp / _WEIGHTS_NAME).write_bytes(weights_bytes)
                (tmp / _CONFIG_NAME).write_bytes(meta_bytes)
                atomic_replace_dir(tmp, path, owned=_MODEL_FILES)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        logger.info("saved ParallelSNN to %s", path)
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, map_location: str | torch.device | None = None
    ) -> ParallelSNN:
        """Load a network saved by :meth:`save`, refusing corrupt or mismatched files.

        Loading only reads ``path``: nothing is downloaded or written. Files of format version
        1 (earlier convexsnn, whose checksum covered the weights only) still load, with a
        warning that their config is unverified; saving them again upgrades them.
        """
        meta, weights_bytes = _read_saved(Path(path))
        try:
            net = cls.from_config(meta["config"])
        except (ValueError, TypeError, OverflowError) as exc:
            text = _short(exc)
            if not text.startswith("config does not describe"):
                text = f"config does not describe a ParallelSNN: {text}"
            raise ValueError(f"{path}: {text[:300]}") from None
        try:
            with np.load(io.BytesIO(weights_bytes), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # np.load raises several types on corrupt data
            raise ValueError(f"{path}: weights could not be read ({_short(exc)})") from None
        expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in arrays.items()}
        if set(expected) != set(got):
            raise ValueError(
                f"{path}: weight names {sorted(got)} do not match the config, which "
                f"needs {sorted(expected)}"
            )
        for k in expected:
            if expected[k] != got[k]:
                raise ValueError(
                    f"{path}: weight {k!r} has shape {got[k]}, the config needs {expected[k]}"
                )
        for k, v in arrays.items():
            if v.dtype.kind not in "fiub":
                raise ValueError(f"{path}: weight {k!r} has dtype {v.dtype}, not a number")
        net.load_state_dict(
            {k: torch.from_numpy(np.array(v)).to(net.dtype) for k, v in arrays.items()}
        )
        extra = meta.get("extra", {})
        net.saved_extra = extra if isinstance(extra, dict) else {}
        if map_location is not None:
            net.to(map_location)
        return net

    @classmethod
    def from_config(cls, config: dict) -> ParallelSNN:
        """Build an (untrained) network from a config dict as stored by :meth:`save`."""
        # configs saved before the leak was renamed say "beta": they load unchanged
        cfg = rename_keys(config, {"beta": "leak"}, "ParallelSNN config", warn=False)
        try:
            dtype = dtype_from_name(cfg.pop("dtype", "float32"), "config dtype")
        except ValueError:
            raise ValueError(f"config has unknown dtype {config.get('dtype')!r}") from None
        try:
            return cls(dtype=dtype, **cfg)
        except TypeError as exc:
            raise ValueError(f"config does not describe a ParallelSNN: {exc}") from None

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"n_inputs={c['n_inputs']}, n_outputs={c['n_outputs']}, K={c['n_branches']}, "
            f"widths={c['hidden_widths']}, leak={c['leak']}, theta={c['theta']}, "
            f"reset={c['reset']}, readout={c['readout']}, recurrent={c['recurrent']}"
        )


# ---------------------------------------------------------------------- file helpers
_MODEL_FILES = (_CONFIG_NAME, _WEIGHTS_NAME)


def _is_model_dir(path: Path) -> bool:
    try:
        meta = json.loads((path / _CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == "convexsnn.ParallelSNN"


def _is_model_file(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:
            return META_KEY in z.files and "__weights__" in z.files
    except Exception:
        return False


def check_save_target(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check, without writing anything, that :meth:`ParallelSNN.save` may write ``path``.

    Refused: a path that lies under a file or in a folder that is not writable; a folder path
    that is a file; a ``.npz`` path that is a folder; and, unless ``overwrite``, a non-empty
    folder or an existing file that is not a convexsnn model (saving never deletes what it did
    not write). ``"."`` and other paths without a name are resolved first. Returns the path
    :meth:`~ParallelSNN.save` will write.
    """
    path = Path(path)
    if path.name in ("", ".", ".."):
        path = path.resolve()
    if path.suffix == ".npz":
        return check_archive_target(
            path, _FORMAT, "model", overwrite=overwrite, is_ours=_is_model_file
        )
    check_output_path(path, "model", directory=True)
    if path.is_dir() and any(path.iterdir()) and not overwrite and not _is_model_dir(path):
        n = sum(1 for _ in path.iterdir())
        raise FileExistsError(
            f"refusing to save into {path}: it is a non-empty folder ({n} entries) that is not "
            "a convexsnn model; choose a new or empty folder, or pass overwrite=True / "
            "--overwrite to write config.json and weights.npz beside the files there (nothing "
            "else is touched)"
        )
    return path


def _read_saved(path: Path) -> tuple[dict, bytes]:
    """Manifest and weights bytes of a saved model (folder or ``.npz`` archive), checked."""
    if not path.exists():
        raise FileNotFoundError(f"no saved model at {path}")
    if path.is_dir():
        try:
            cfg, wts = path / _CONFIG_NAME, path / _WEIGHTS_NAME
            for f in (cfg, wts):
                if not f.exists():
                    raise FileNotFoundError(f"{path}: missing {f.name}")
            meta = json.loads(cfg.read_text())
            weights_bytes = wts.read_bytes()
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, OSError, EOFError) as exc:
            err = read_error(exc, path, "model", "config")
            if err is exc:
                raise
            raise err from None
    else:
        meta, arrays = read_archive(path, "model")
        if "__weights__" not in arrays:
            raise ValueError(f"{path}: not a convexsnn model file")
        weights_bytes = arrays["__weights__"].tobytes()
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"{path}: not a convexsnn ParallelSNN save")
    version = check_format(meta, path, _FORMAT, _READABLE_VERSIONS, "ParallelSNN")
    if version >= 2:
        if meta.get("meta_sha256") != meta_sha256(meta):
            raise ValueError(
                f"{path}: config checksum mismatch: config.json was changed after "
                "it was saved (or is corrupt); refusing to load it"
            )
    else:
        logger.warning(
            "%s was saved by an earlier convexsnn (format version 1) whose checksum "
            "covers only the weights, so its config is unverified; save it again "
            "(ParallelSNN.load(p).save(p)) to protect it",
            path,
        )
    digest = hashlib.sha256(weights_bytes).hexdigest()
    if digest != meta.get("weights_sha256"):
        raise ValueError(
            f"{path}: weights checksum mismatch (expected "
            f"{meta.get('weights_sha256')}, got {digest}); the file is corrupt"
        )
    if not isinstance(meta.get("config"), dict):
        raise ValueError(f"{path}: config.json has no 'config' object")
    return meta, weights_bytes
