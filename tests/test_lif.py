"""Golden values and consistency of the one LIF definition (docs/method.md section 1)."""

import pytest
import torch

from convexsnn.lif import layer_current, lif_scan, lif_step, simulate
from convexsnn.surrogate import get_surrogate

# Two neurons, five steps, beta = 0.5, theta = 1: currents and hand-computed trajectories.
# All numbers are exact binary fractions, so float32 and float64 reproduce them exactly.
CURRENTS = [[0.75, 1.0], [0.75, 0.5], [0.5, 0.75], [1.0, 0.25], [0.0, 2.5]]
GOLDEN = {
    # neuron A: u = .75, 1.125, .5625, 1.28125, .140625 ; neuron B: u = 1 (tie), .5, 1 (tie), .25, 2.625
    "subtract": {
        "spikes": [[0, 1], [1, 0], [0, 1], [1, 0], [0, 1]],
        "membranes": [[0.75, 0.0], [0.125, 0.5], [0.5625, 0.0], [0.28125, 0.25], [0.140625, 1.625]],
    },
    # neuron A: u = .75, 1.125, .5, 1.25, 0 ; neuron B: u = 1 (tie), .5, 1 (tie), .25, 2.625
    "zero": {
        "spikes": [[0, 1], [1, 0], [0, 1], [1, 0], [0, 1]],
        "membranes": [[0.75, 0.0], [0.0, 0.5], [0.5, 0.0], [0.0, 0.25], [0.0, 0.0]],
    },
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_golden_trajectories(reset, dtype):
    cur = torch.tensor(CURRENTS, dtype=dtype).reshape(1, 5, 1, 2)
    s, m = lif_scan(cur, leak=0.5, theta=1.0, reset=reset, return_membrane=True)
    exp_s = torch.tensor(GOLDEN[reset]["spikes"], dtype=dtype).reshape(1, 5, 1, 2)
    exp_m = torch.tensor(GOLDEN[reset]["membranes"], dtype=dtype).reshape(1, 5, 1, 2)
    assert torch.equal(s, exp_s)
    assert torch.equal(m, exp_m)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_golden_through_simulate_with_identity_weights(reset):
    x = torch.tensor(CURRENTS, dtype=torch.float64).reshape(1, 5, 2)
    w = torch.eye(2, dtype=torch.float64).reshape(1, 2, 2)
    trace = simulate(x, [w], leak=0.5, theta=1.0, reset=reset, return_membrane=True)
    assert trace.spikes[0].reshape(5, 2).tolist() == GOLDEN[reset]["spikes"]
    assert trace.membranes[0].reshape(5, 2).tolist() == GOLDEN[reset]["membranes"]


def test_threshold_tie_spikes_in_both_paths():
    u = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    s, m = lif_step(
        torch.zeros(1, dtype=torch.float64), u, leak=0.9, theta=1.0, spike_fn=get_surrogate("atan")
    )
    assert s.item() == 1.0 and m.item() == 0.0
    s2, _ = lif_step(torch.zeros(1), torch.tensor([1.0]), leak=0.9, theta=1.0)
    assert s2.item() == 1.0


def _random_stack(seed, dtype, K=3, d=5, widths=(7, 6), scale=1.5):
    g = torch.Generator().manual_seed(seed)
    sizes = (d,) + widths
    ws = [
        torch.randn(K, sizes[i], sizes[i + 1], generator=g, dtype=torch.float64) * scale
        for i in range(len(widths))
    ]
    x = torch.rand(4, 9, d, generator=g, dtype=torch.float64) * 2
    return x.to(dtype), [w.to(dtype) for w in ws]


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_multistep_equals_python_loop(reset):
    x, ws = _random_stack(0, torch.float64)
    trace = simulate(x, ws, leak=0.9, theta=1.0, reset=reset, return_membrane=True)
    h = x
    for layer, w in enumerate(ws):
        cur = (
            torch.einsum("btki,kij->btkj", h, w)
            if h.ndim == 4
            else torch.einsum("bti,kij->btkj", h, w)
        )
        m = torch.zeros_like(cur[:, 0])
        spikes = []
        for t in range(cur.shape[1]):
            s, m = lif_step(m, cur[:, t], leak=0.9, theta=1.0, reset=reset)
            spikes.append(s)
            assert torch.allclose(m, trace.membranes[layer][:, t], rtol=0, atol=1e-12)
        ref = torch.stack(spikes, 1)
        assert torch.equal(ref, trace.spikes[layer])
        h = ref


def test_float32_equals_float64_away_from_ties():
    x64, ws64 = _random_stack(3, torch.float64)
    t64 = simulate(x64, ws64, leak=0.95, theta=1.0, return_membrane=True)
    # the seeded network stays well away from ties: every pre-reset potential is > 1e-4 from theta
    margins = []
    for layer, w in enumerate(ws64):
        cur = layer_current(x64 if layer == 0 else t64.spikes[layer - 1], w)
        m_prev = torch.cat([torch.zeros_like(cur[:, :1]), t64.membranes[layer][:, :-1]], 1)
        u = 0.95 * m_prev + cur
        margins.append((u - 1.0).abs().min().item())
    assert min(margins) > 1e-4
    t32 = simulate(x64.float(), [w.float() for w in ws64], leak=0.95, theta=1.0)
    for s32, s64 in zip(t32.spikes, t64.spikes):
        assert torch.equal(s32.double(), s64)
        assert s64.sum() > 0  # the test is not vacuous


@pytest.mark.parametrize(
    "name", ["atan", "fast_sigmoid", "sigmoid", "triangular", "straight_through"]
)
def test_grad_path_spikes_equal_no_grad_path(name):
    x, ws = _random_stack(1, torch.float64)
    with torch.no_grad():
        ref = simulate(x, ws, leak=0.9, theta=1.0)
    ws_g = [w.clone().requires_grad_(True) for w in ws]
    out = simulate(x, ws_g, leak=0.9, theta=1.0, spike_fn=get_surrogate(name))
    for a, b in zip(ref.spikes, out.spikes):
        assert torch.equal(a, b.detach())
    out.spikes[-1].sum().backward()
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in ws_g)


def test_no_hidden_state_repeat_calls_identical():
    x, ws = _random_stack(2, torch.float32)
    a = simulate(x, ws, leak=0.9, theta=1.0)
    b = simulate(x, ws, leak=0.9, theta=1.0)
    for s1, s2 in zip(a.spikes, b.spikes):
        assert torch.equal(s1, s2)


def test_bias_adds_to_current():
    x = torch.zeros(1, 3, 1)
    w = torch.zeros(1, 1, 1)
    b = torch.full((1, 1), 0.5)
    s = simulate(x, [w], biases=[b], leak=1.0, theta=1.0).spikes[0].flatten().tolist()
    assert s == [0.0, 1.0, 0.0]  # u = .5, 1.0 (spike, m=0), .5


def test_bad_reset_name():
    with pytest.raises(ValueError, match="reset"):
        lif_scan(torch.zeros(1, 2, 1, 1), reset="hard")


# ------------------------------------------------------------------ parameters and state
def test_lif_params_validates_once():
    from convexsnn.lif import LIFParams

    p = LIFParams(leak=0.5, threshold=2, reset="zero")
    assert (p.leak, p.threshold, p.reset) == (0.5, 2.0, "zero")
    for bad, msg in [
        ({"leak": 1.5}, "leak"),
        ({"leak": -0.1}, "leak"),
        ({"leak": float("nan")}, "leak"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": float("inf")}, "threshold"),
        ({"reset": "hard"}, "reset"),
        ({"leak": True}, "leak"),
    ]:
        with pytest.raises(ValueError, match=msg):
            LIFParams(**bad)
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        p.leak = 0.1  # frozen


def test_params_replace_keywords():
    from convexsnn.lif import LIFParams

    g = torch.Generator().manual_seed(3)
    cur = torch.randn(4, 7, 2, 5, generator=g, dtype=torch.float64)
    a = lif_scan(cur, leak=0.7, theta=0.8, reset="zero", return_membrane=True)
    b = lif_scan(cur, params=LIFParams(0.7, 0.8, "zero"), return_membrane=True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("rec", [None, "dense", "diagonal"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_streaming_in_pieces_is_bit_identical(reset, rec, grad):
    # one scan over T steps == scans over pieces with the state passed on (spikes, membranes,
    # final state), with and without recurrence, on the gradient-free and autograd paths
    g = torch.Generator().manual_seed(0)
    B, T, K, n = 3, 11, 2, 6
    cur = 1.2 * torch.randn(B, T, K, n, generator=g, dtype=torch.float64)
    w_rec = None
    if rec == "dense":
        w_rec = 0.5 * torch.randn(K, n, n, generator=g, dtype=torch.float64)
    elif rec == "diagonal":
        w_rec = 0.5 * torch.randn(K, n, generator=g, dtype=torch.float64)
    fn = get_surrogate("atan") if grad else None
    if grad:
        cur.requires_grad_(True)
    kw = dict(leak=0.9, theta=1.0, reset=reset, spike_fn=fn, recurrent=w_rec, return_membrane=True)
    s_all, m_all, st_all = lif_scan(cur, return_state=True, **kw)
    state, pieces_s, pieces_m = None, [], []
    for lo, hi in [(0, 4), (4, 5), (5, 11)]:
        s, m, state = lif_scan(cur[:, lo:hi], state=state, return_state=True, **kw)
        pieces_s.append(s)
        pieces_m.append(m)
    assert torch.equal(torch.cat(pieces_s, 1), s_all)
    assert torch.equal(torch.cat(pieces_m, 1), m_all)
    assert torch.equal(state.membrane, st_all.membrane)
    assert torch.equal(state.spikes, st_all.spikes)
    assert torch.equal(st_all.membrane, m_all[:, -1]) and torch.equal(st_all.spikes, s_all[:, -1])


def test_detached_state_truncates_bptt():
    from convexsnn.lif import LIFState

    g = torch.Generator().manual_seed(1)
    cur = torch.randn(2, 6, 1, 3, generator=g, dtype=torch.float64, requires_grad=True)
    fn = get_surrogate("atan")
    _, _, st = lif_scan(cur[:, :3], leak=0.9, spike_fn=fn, return_state=True)
    s2, _ = lif_scan(cur[:, 3:], leak=0.9, spike_fn=fn, state=st.detach())
    (grad,) = torch.autograd.grad(s2.sum(), cur, allow_unused=True)
    assert grad[:, :3].abs().sum() == 0 and grad[:, 3:].abs().sum() > 0
    assert isinstance(st.detach(), LIFState)
    # without detaching, the gradient reaches the first piece through the membrane
    s2b, _ = lif_scan(cur[:, 3:], leak=0.9, spike_fn=fn, state=st)
    (grad_b,) = torch.autograd.grad(s2b.sum(), cur)
    assert grad_b[:, :3].abs().sum() > 0


def test_state_shape_is_checked():
    from convexsnn.lif import LIFState

    cur = torch.zeros(2, 4, 1, 3)
    bad = LIFState(torch.zeros(2, 1, 4), torch.zeros(2, 1, 4))
    with pytest.raises(ValueError, match="per-step shape"):
        lif_scan(cur, state=bad)


@pytest.mark.parametrize("bad", [1.5, -0.01, float("nan"), True, "x", None])
def test_one_leak_rule_everywhere(bad):
    # lif.check_leak is the one home of the leak rule: the network, witnesses, structured
    # circuits and NIR export all refuse the same values with the same message
    from convexsnn import ParallelSNN, gaussian_witnesses
    from convexsnn.lif import check_leak

    with pytest.raises(ValueError, match=r"leak\)? must be"):
        check_leak(bad)
    with pytest.raises(ValueError, match=r"leak\)? must be"):
        ParallelSNN(2, 2, n_branches=1, hidden_widths=[3], leak=bad)
    with pytest.raises(ValueError, match=r"leak\)? must be"):
        gaussian_witnesses(2, n_branches=1, depth=2, p_rec=3, p_last=3, leak=bad, seed=0)
