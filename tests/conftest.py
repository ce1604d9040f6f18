"""Fixtures and helpers shared by the test modules.

* ``one_thread``: run a module's tests with one intra-op torch thread (opt in with
  ``pytestmark = pytest.mark.usefixtures("one_thread")``).
* :func:`rand_inputs`: seeded uniform input sequences ``(n, T, d)``.
* :func:`small_net`: a small ``ParallelSNN`` whose hidden layers spike often.
* :func:`load_packed_fixture`: a bit-packed spike dictionary saved under ``tests/data``.

The helpers are plain functions (``from conftest import rand_inputs, small_net``): each module
binds its own sizes once, e.g. ``_x = functools.partial(rand_inputs, n=6, T=7)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from convexsnn import ParallelSNN


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for the module, restored afterwards.

    The models of the unit tests are tiny: one thread is as fast, and immune to the multi-second
    OpenMP stalls seen when other processes share the cores.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def rand_inputs(
    seed: int = 0,
    n: int = 8,
    T: int = 5,
    d: int = 3,
    *,
    dtype: torch.dtype | None = None,
    scale: float = 1.0,
    shift: float = 0.0,
) -> torch.Tensor:
    """Inputs ``scale * U[0, 1) + shift`` of shape ``(n, T, d)``, drawn from a generator seeded
    with ``seed`` (the global RNG is left alone)."""
    x = torch.rand(n, T, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    if scale != 1.0 or shift != 0.0:
        x = x * scale + shift
    return x


def small_net(n_inputs: int = 3, n_outputs: int = 2, **kw) -> ParallelSNN:
    """A ``ParallelSNN`` with ``seed=0`` and ``init_scale=3.0`` (hidden layers that spike often
    enough to exercise resets and readouts) unless ``kw`` says otherwise."""
    kw.setdefault("seed", 0)
    kw.setdefault("init_scale", 3.0)
    return ParallelSNN(n_inputs, n_outputs, **kw)


def load_packed_fixture(name: str):
    """``(D (n, P) float64, labels (n,) int64, meta dict)`` of a bit-packed dictionary saved in
    ``tests/data`` (``packed``: the rows packed along axis 0, ``n_rows``, ``labels``, ``meta``)."""
    z = np.load(Path(__file__).parent / "data" / name)
    n = int(z["n_rows"])
    D = np.unpackbits(z["packed"], axis=0)[:n].astype(np.float64)
    return D, z["labels"].astype(np.int64), json.loads(str(z["meta"]))


def gram_fixture(name: str):
    """``(D, labels, H, B, Y)`` of the packed fixture ``name`` for squared-loss Gram solvers:
    ``Y`` the +-1 class indicators (one column for two classes), ``H = D^T D / n``,
    ``B = D^T Y / n``."""
    D, y, _ = load_packed_fixture(name)
    n = D.shape[0]
    C = int(y.max()) + 1
    Y = -np.ones((n, C))
    Y[np.arange(n), y] = 1.0
    if C == 2:
        Y = Y[:, 1:]
    return D, y, D.T @ D / n, D.T @ Y / n, Y
