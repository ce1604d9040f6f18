"""Simulation and SG-training throughput of convexsnn's LIF core versus snnTorch ``Leaky``.

Network: 2 LIF layers (subtract reset, leak 0.99, threshold 1) of ``--neurons`` neurons each over
``--steps`` steps and ``--batch`` sequences of ``--inputs`` features (sequential-MNIST rows by
default), identical weights in both libraries. Rows:

* ``K=1``: one dense branch, the like-for-like case (both libraries run the same dense matmuls).
* ``K=8``: a ParallelSNN of 8 branches; snnTorch runs the same weights as a dense block-diagonal
  ``nn.Linear``, which is how that library expresses parallel branches.

Spike agreement: snnTorch applies the subtract reset one step late and undecayed
(``mem_t = beta*mem_{t-1} + I_t - theta*1[mem_{t-1} > theta]``) and fires on ``>``; convexsnn
uses ``u_t = beta*m_{t-1} + I_t``, ``m_t = u_t - theta*s_t`` and fires on ``>=``. With ``beta = 1``
the two definitions coincide (away from exact ties), so spikes must agree exactly there; at
``beta = 0.99`` the benchmark reports how many spikes differ, and checks snnTorch against a direct
implementation of its own equation, so every difference is accounted for by the definitions.

Usage::

    python benchmarks/bench_lif.py [--quick] [--json results.json]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import _benchlib
import torch

from convexsnn import ParallelSNN
from convexsnn.lif import simulate


def _build_weights(d, n, K, seed):
    g = torch.Generator().manual_seed(seed)
    w = n // K
    w1 = torch.randn(K, d, w, generator=g) * (2.0 / d**0.5)
    w2 = torch.randn(K, w, w, generator=g) * (3.0 / w**0.5)
    return w1, w2


def _dense(w1, w2):
    """Same weights as dense matrices for snnTorch (block-diagonal second layer)."""
    K, d, w = w1.shape
    W1 = w1.permute(1, 0, 2).reshape(d, K * w)
    W2 = torch.block_diag(*[w2[k] for k in range(K)])
    return W1, W2


def _snn_model(W1, W2, beta):
    import snntorch as snn

    fc1 = torch.nn.Linear(W1.shape[0], W1.shape[1], bias=False)
    fc2 = torch.nn.Linear(W2.shape[0], W2.shape[1], bias=False)
    with torch.no_grad():
        fc1.weight.copy_(W1.T)
        fc2.weight.copy_(W2.T)
    return (
        fc1,
        fc2,
        snn.Leaky(beta=beta, threshold=1.0, reset_mechanism="subtract"),
        snn.Leaky(beta=beta, threshold=1.0, reset_mechanism="subtract"),
    )


def _snn_run(model, x):
    fc1, fc2, l1, l2 = model
    m1, m2 = l1.init_leaky(), l2.init_leaky()
    s1_all, s2_all = [], []
    for t in range(x.shape[1]):
        s1, m1 = l1(fc1(x[:, t]), m1)
        s2, m2 = l2(fc2(s1), m2)
        s1_all.append(s1)
        s2_all.append(s2)
    return torch.stack(s1_all, 1), torch.stack(s2_all, 1)


def _snn_reference(W1, W2, x, beta, theta=1.0):
    """snnTorch's Leaky equation written out: delayed, undecayed subtract reset and ``>``."""
    outs = []
    h = x
    for W in (W1, W2):
        cur = h @ W
        mem = torch.zeros_like(cur[:, 0])
        spikes = []
        for t in range(cur.shape[1]):
            reset = (mem > theta).to(cur.dtype)
            mem = beta * mem + cur[:, t] - reset * theta
            spikes.append((mem > theta).to(cur.dtype))
        h = torch.stack(spikes, 1)
        outs.append(h)
    return outs


def _time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def bench_forward(B, T, d, n, K, repeats, seed=0):
    x = torch.rand(B, T, d, generator=torch.Generator().manual_seed(seed + 1))
    w1, w2 = _build_weights(d, n, K, seed)
    W1, W2 = _dense(w1, w2)
    model = _snn_model(W1, W2, 0.99)

    def ours():
        with torch.no_grad():
            return simulate(x, [w1, w2], leak=0.99, theta=1.0)

    def theirs():
        with torch.no_grad():
            return _snn_run(model, x)

    ours()  # warm-up
    theirs()
    t_ours, t_snn = [], []
    for _ in range(repeats):  # interleaved so both see the same machine load
        t_ours += _time(ours, 1)
        t_snn += _time(theirs, 1)
    neuron_steps = B * T * 2 * n
    res = {
        "K": K,
        "batch": B,
        "steps": T,
        "inputs": d,
        "neurons_per_layer": n,
        "ours_s": statistics.median(t_ours),
        "snntorch_s": statistics.median(t_snn),
    }
    res["ours_neuron_steps_per_s"] = neuron_steps / res["ours_s"]
    res["snntorch_neuron_steps_per_s"] = neuron_steps / res["snntorch_s"]
    res["speedup"] = res["snntorch_s"] / res["ours_s"]

    # spike agreement
    with torch.no_grad():
        ours_s = ours().spikes
        ours_flat = [s.reshape(B, T, -1) for s in ours_s]
        snn_s = _snn_run(model, x)
        ref_s = _snn_reference(W1, W2, x, 0.99)
        res["spikes_total"] = int(sum(s.numel() for s in ours_flat))
        res["spike_rate_layer1"] = float(ours_flat[0].mean())
        res["spike_rate_layer2"] = float(ours_flat[1].mean())
        res["diff_vs_snntorch_beta0.99"] = int(
            sum((a != b).sum() for a, b in zip(ours_flat, snn_s))
        )
        res["snntorch_vs_its_equation_diff"] = int(
            sum((a != b).sum() for a, b in zip(snn_s, ref_s))
        )
        m1 = _snn_model(W1, W2, 1.0)
        o1 = [s.reshape(B, T, -1) for s in simulate(x, [w1, w2], leak=1.0, theta=1.0).spikes]
        s1 = _snn_run(m1, x)
        res["diff_vs_snntorch_beta1"] = int(sum((a != b).sum() for a, b in zip(o1, s1)))
    return res


def bench_training(B, T, d, n, K, n_batches, repeats, seed=0):
    """Seconds per epoch (n_batches mini-batches: forward, CE loss, backward, Adam step)."""
    g = torch.Generator().manual_seed(seed + 2)
    X = torch.rand(n_batches, B, T, d, generator=g)
    Y = torch.randint(0, 10, (n_batches, B), generator=g)
    net = ParallelSNN(d, 10, n_branches=K, hidden_widths=[n // K, n // K], seed=seed)
    w1, w2 = _build_weights(d, n, K, seed)
    with torch.no_grad():
        net.weights[0].copy_(w1)
        net.weights[1].copy_(w2)
    W1, W2 = _dense(w1, w2)
    fc1, fc2, l1, l2 = _snn_model(W1, W2, 0.99)
    out = torch.nn.Linear(n, 10, bias=False)
    with torch.no_grad():
        out.weight.copy_(net.output_weight.T)
    opt_ours = torch.optim.Adam(net.parameters(), lr=1e-3)
    opt_snn = torch.optim.Adam(
        list(fc1.parameters()) + list(fc2.parameters()) + list(out.parameters()), lr=1e-3
    )
    lossf = torch.nn.CrossEntropyLoss()

    def epoch_ours():
        for i in range(n_batches):
            opt_ours.zero_grad()
            loss = lossf(net(X[i]), Y[i])
            loss.backward()
            opt_ours.step()

    def epoch_snn():
        for i in range(n_batches):
            opt_snn.zero_grad()
            _, s2 = _snn_run((fc1, fc2, l1, l2), X[i])
            loss = lossf(out(s2[:, -1]), Y[i])
            loss.backward()
            opt_snn.step()

    epoch_ours()  # warm-up
    epoch_snn()
    t_o, t_s = [], []
    for _ in range(repeats):
        t_o += _time(epoch_ours, 1)
        t_s += _time(epoch_snn, 1)
    return {
        "K": K,
        "batch": B,
        "batches_per_epoch": n_batches,
        "steps": T,
        "neurons_per_layer": n,
        "ours_s_per_epoch": statistics.median(t_o),
        "snntorch_s_per_epoch": statistics.median(t_s),
        "speedup": statistics.median(t_s) / statistics.median(t_o),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=28)
    p.add_argument("--inputs", type=int, default=28)
    p.add_argument("--neurons", type=int, default=1024)
    p.add_argument("--branches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--train-batch", type=int, default=128)
    p.add_argument("--train-batches", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--json", type=str, default=None, help="write the results to this file")
    a = p.parse_args(argv)
    if a.quick:
        a.batch, a.neurons, a.repeats, a.train_batches, a.train_batch = 64, 128, 2, 2, 32
    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "processor": platform.processor(),
    }
    fwd = [bench_forward(a.batch, a.steps, a.inputs, a.neurons, K, a.repeats) for K in a.branches]
    trn = [
        bench_training(
            a.train_batch, a.steps, a.inputs, a.neurons, K, a.train_batches, max(1, a.repeats // 2)
        )
        for K in a.branches
    ]
    print(
        f"\nNo-grad simulation, 2 layers x {a.neurons} LIF, T={a.steps}, batch {a.batch}, "
        f"{info['threads']} threads"
    )
    print(
        "| K | convexsnn neuron-steps/s | snnTorch neuron-steps/s | ratio | spike rate L1/L2 "
        "| diff beta=1 | diff beta=0.99 | snnTorch vs its equation |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in fwd:
        print(
            f"| {r['K']} | {r['ours_neuron_steps_per_s']:.3e} | "
            f"{r['snntorch_neuron_steps_per_s']:.3e} | {r['speedup']:.2f}x | "
            f"{r['spike_rate_layer1']:.3f}/{r['spike_rate_layer2']:.3f} | "
            f"{r['diff_vs_snntorch_beta1']} | {r['diff_vs_snntorch_beta0.99']} of "
            f"{r['spikes_total']} | {r['snntorch_vs_its_equation_diff']} |"
        )
    print(
        f"\nSG training (BPTT, atan surrogate, Adam), batch {a.train_batch}, "
        f"{a.train_batches} batches/epoch"
    )
    print("| K | convexsnn s/epoch | snnTorch s/epoch | ratio |")
    print("|---|---|---|---|")
    for r in trn:
        print(
            f"| {r['K']} | {r['ours_s_per_epoch']:.3f} | {r['snntorch_s_per_epoch']:.3f} | "
            f"{r['speedup']:.2f}x |"
        )
    _benchlib.write_json(a.json, {"info": info, "forward": fwd, "training": trn})
    return fwd, trn


if __name__ == "__main__":
    main()
