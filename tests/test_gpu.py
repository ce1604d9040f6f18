"""CUDA paths against the CPU ones (skipped without a GPU; run by ``benchmarks/gpu_check.sh``).

Dictionary building, the certified solve and surrogate-gradient training selected by
``device="cuda"``: the same spikes (up to near-ties of the threshold comparison, float64
currents), the same optimum within the certified gaps, and a training run that stays on the GPU.
"""

from __future__ import annotations

import math

import pytest
import torch

from convexsnn.convex import lambda_max, solve_readout
from convexsnn.dictionary import build_dictionary
from convexsnn.network import ParallelSNN
from convexsnn.tasks import load_task
from convexsnn.train import train_surrogate
from convexsnn.witnesses import gaussian_witnesses

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _task():
    task = load_task("xor", T=6, n_train=300, n_val=50, n_test=50, seed=0)
    return task.train.X, task.train.y


def test_cuda_dictionary_equals_cpu():  # pragma: no cover - needs a GPU
    X, _ = _task()
    w = gaussian_witnesses(X.shape[2], n_branches=32, hidden_widths=[8, 8], seed=0, scale=2.0)
    d_cpu = build_dictionary(w, X, dedupe=False).matrix(torch.float64)
    d_gpu = build_dictionary(w, X, dedupe=False, device="cuda").matrix(torch.float64)
    assert d_cpu.shape == d_gpu.shape
    # float64 currents summed in another order can flip a spike only at a near-tie of the
    # threshold comparison: allow at most 1 entry in 10^5
    assert int((d_cpu != d_gpu).sum()) <= d_cpu.numel() // 100_000


@pytest.mark.parametrize("loss,pen", [("squared", "l1"), ("hinge", "l1"), ("softmax", "l21")])
def test_cuda_solve_equals_cpu_within_the_gaps(loss, pen):  # pragma: no cover - needs a GPU
    X, y = _task()
    w = gaussian_witnesses(X.shape[2], n_branches=32, hidden_widths=[8, 8], seed=0, scale=2.0)
    D = build_dictionary(w, X).matrix(torch.float64)
    beta = 0.5 * lambda_max(D, y, loss=loss, penalty=pen) * math.sqrt(D.shape[1])
    cpu = solve_readout(D, y, loss=loss, penalty=pen, reg=beta, tol=1e-9).certificate
    gpu = solve_readout(D, y, loss=loss, penalty=pen, reg=beta, tol=1e-9, device="cuda").certificate
    assert cpu.converged and gpu.converged and gpu.info["device"].startswith("cuda")
    assert abs(cpu.primal - gpu.primal) <= max(cpu.gap, gpu.gap) + 1e-12 * abs(cpu.primal)


def test_cuda_float32_solve_certifies_to_float32_accuracy():  # pragma: no cover - needs a GPU
    X, y = _task()
    w = gaussian_witnesses(X.shape[2], n_branches=32, hidden_widths=[8, 8], seed=0, scale=2.0)
    D = build_dictionary(w, X).matrix(torch.float64)
    sol = solve_readout(D, y, loss="softmax", reg=0.5, tol=1e-4, device="cuda", dtype=torch.float32)
    ref = solve_readout(D, y, loss="softmax", reg=0.5, tol=1e-9).certificate
    c = sol.certificate
    assert sol.W.dtype == torch.float32 and c.converged
    assert abs(c.primal - ref.primal) <= c.gap + 1e-5 * abs(ref.primal)


def test_cuda_surrogate_training_runs_on_the_gpu():  # pragma: no cover - needs a GPU
    X, y = _task()
    model = ParallelSNN(X.shape[2], 2, n_branches=2, depth=2, p_rec=16, p_last=16, seed=0)
    res = train_surrogate(model, X, y, epochs=3, batch_size=64, progress=False, device="cuda")
    assert next(model.parameters()).device.type == "cuda"
    assert res is not None
