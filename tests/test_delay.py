"""Delay-line witnesses: relay exactness bit for bit, per-step columns, reconstruction, NIR."""

import json

import pytest
import torch

from convexsnn.convex import solve_readout
from convexsnn.delay import (
    delay_line_map,
    delay_line_witnesses,
    gaussian_delay_witnesses,
    is_delay_line,
    patch_delay_witnesses,
    template_delay_witnesses,
    template_sources,
    threshold_delay_witnesses,
    threshold_weights,
)
from convexsnn.dictionary import build_dictionary
from convexsnn.lif import lif_scan
from convexsnn.reconstruct import check_reconstruction, reconstruct
from convexsnn.structured import gaussian_recurrent_witnesses
from convexsnn.witnesses import gaussian_witnesses


def _x(n=40, T=7, d=3, seed=0, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, T, d, generator=g, dtype=torch.float64) * scale


def _bases(leak=0.99, theta=1.0, reset="subtract"):
    kw = {"leak": leak, "theta": theta, "reset": reset}
    return {
        "feedforward": gaussian_witnesses(
            3, n_branches=3, hidden_widths=[5, 2], scale=2 * theta, seed=1, **kw
        ),
        "diagonal": gaussian_recurrent_witnesses(
            3,
            n_branches=2,
            hidden_widths=[4, 3],
            recurrent="diagonal",
            scale=2.0,
            recurrent_scale=0.7,
            seed=2,
            **kw,
        ),
        "dense": gaussian_recurrent_witnesses(
            3,
            n_branches=2,
            hidden_widths=[3],
            recurrent="dense",
            scale=2.0,
            recurrent_scale=0.8,
            seed=3,
            **kw,
        ),
    }


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("leak,theta", [(0.99, 1.0), (0.0, 1.0), (1.0, 0.7), (0.5, 2.3)])
def test_relays_reproduce_every_step_bit_for_bit(reset, leak, theta):
    X = _x(T=7)
    T = X.shape[1]
    for name, base in _bases(leak, theta, reset).items():
        dw = delay_line_witnesses(base, T)
        sb = base.simulate(X).spikes[-1]
        tr = dw.simulate(X, return_membrane=True)
        sd, md = tr.spikes[-1], tr.membranes[-1]
        assert sb.any() and not sb.all(), name  # the test sees both 0s and 1s
        for lag in range(T):
            # relay `lag` at step t is the source at step t - lag, silent before
            assert torch.equal(sd[:, lag:, :, lag::T], sb[:, : T - lag]), (name, lag)
            assert not sd[:, :lag, :, lag::T].any(), (name, lag)
            if lag:
                assert torch.equal(md[..., lag::T], torch.zeros_like(md[..., lag::T])), name


def test_relay_weight_above_threshold_breaks_under_subtract_reset():
    """Why the relay weight is exactly theta: w > theta leaves a residue that fires later."""
    s_in = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0], dtype=torch.float64)
    T = s_in.numel()
    shifted = torch.cat([torch.zeros(1, dtype=torch.float64), s_in[:-1]])
    for w, exact in ((1.0, True), (1.5, False)):
        cur = (w * shifted).reshape(1, T, 1, 1)
        s, _ = lif_scan(cur, leak=0.99, theta=1.0, reset="subtract")
        assert torch.equal(s.reshape(-1), shifted) is exact
    # with the zero reset any weight >= theta is exact
    s, _ = lif_scan((1.5 * shifted).reshape(1, T, 1, 1), leak=0.99, theta=1.0, reset="zero")
    assert torch.equal(s.reshape(-1), shifted)


def test_last_step_columns_are_the_per_step_spikes():
    X = _x(n=60, T=5, d=4, seed=3)
    w = gaussian_delay_witnesses(4, 6, 5, scale=1.5, seed=4)
    assert is_delay_line(w) and w.n_branches == 6 and w.hidden_widths == [5]
    base = gaussian_witnesses(4, n_branches=6, hidden_widths=[1], scale=1.5, seed=4)
    s = base.simulate(X).spikes[-1][..., 0]  # (n, T, K)
    d = build_dictionary(w, X, steps="last", dedupe=False)
    D = d.matrix(torch.float64)
    mp = delay_line_map(w)
    for j in range(D.shape[1]):
        k, i, lag = mp[j]
        assert i == 0
        assert torch.equal(D[:, j], s[:, 4 - lag, k]), j
    json.dumps(w.description)
    assert w.description["base"]["kind"] == "gaussian"


def test_patch_sources_are_scaled_gaussians_on_rectangles():
    H, C, n, s = 4, 6, 200, 0.7
    w = patch_delay_witnesses((H, C), n, 3, min_size=(2, 3), scale=s, seed=5, leak=0.0)
    assert is_delay_line(w) and w.n_branches == n and w.hidden_widths == [3]
    W = w.weights[0][:, :, 0].reshape(n, H, C)  # lag 0 = the source
    assert torch.count_nonzero(w.weights[0][:, :, 1:]) == 0  # relays read no input
    shapes = set()
    for j in range(n):
        nz = W[j] != 0
        r, c = nz.any(1).nonzero().flatten(), nz.any(0).nonzero().flatten()
        h, wd = int(r[-1] - r[0] + 1), int(c[-1] - c[0] + 1)
        assert h >= 2 and wd >= 3
        assert bool(nz[r[0] : r[-1] + 1, c[0] : c[-1] + 1].all())  # a full rectangle
        assert int(nz.sum()) == h * wd
        shapes.add((h, wd))
    assert {h for h, _ in shapes} == {2, 3, 4} and {wd for _, wd in shapes} == {3, 4, 5, 6}
    # W_ij = s sqrt(HC/|R_j|) G_ij: E ||W_j||^2 = s^2 H C whatever the patch
    sq = (W**2).sum((1, 2))
    assert abs(float(sq.mean()) / (s * s * H * C) - 1) < 0.15
    again = patch_delay_witnesses((H, C), n, 3, min_size=(2, 3), scale=s, seed=5, leak=0.0)
    assert torch.equal(again.weights[0], w.weights[0])
    other = patch_delay_witnesses((H, C), n, 3, min_size=(2, 3), scale=s, seed=6, leak=0.0)
    assert not torch.equal(other.weights[0], w.weights[0])
    json.dumps(w.description)
    with pytest.raises(ValueError, match="grid"):
        patch_delay_witnesses((0, 3), 2, 3)


def test_patch_columns_at_leak_zero_threshold_each_step():
    X = _x(n=80, T=4, d=6, seed=8)
    w = patch_delay_witnesses((2, 3), 5, 4, min_size=(1, 1), scale=1.2, seed=9, leak=0.0)
    d = build_dictionary(w, X, steps="last", dedupe=False)
    D = d.matrix(torch.float64)
    Wsrc = w.weights[0][:, :, 0]  # (K, 6)
    mp = delay_line_map(w)
    for j in range(D.shape[1]):
        k, _, lag = mp[j]
        expect = (X[:, 3 - lag] @ Wsrc[k] >= 1.0).to(torch.float64)  # s_t = 1[W^T x_t >= theta]
        assert torch.equal(D[:, j], expect), j
    y = (X[:, 1, 0] > 0.7).long()
    sol = solve_readout(d.operator(), y, loss="squared", lam=2e-3, tol=1e-10)
    chk = check_reconstruction(reconstruct(d, sol), d, sol, X, y)
    assert chk["prediction_agreement"] == 1.0 and chk["max_abs_diff"] < 1e-9


def _ink(n=120, T=4, d=12, seed=11):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, T, d, generator=g, dtype=torch.float64)
    return X * (torch.rand(n, T, d, generator=g, dtype=torch.float64) < 0.4)


def test_template_sources_copy_training_steps_with_quantile_thresholds():
    X = _ink()
    n, T, d = X.shape
    lo, hi = 0.6, 0.9
    w = template_delay_witnesses(
        X, 40, grid=(3, 4), min_size=(1, 2), quantiles=(lo, hi), n_sample=n, seed=3, leak=0.0
    )
    assert is_delay_line(w) and w.n_branches == 40 and w.hidden_widths == [T]
    Wsrc, b = w.weights[0][:, :, 0], w.biases[0][:, 0]
    assert torch.count_nonzero(w.biases[0][:, 1:]) == 0  # relays carry no bias
    c = 0.5 * d**0.5
    assert torch.allclose(Wsrc.norm(dim=1), torch.full((40,), c, dtype=torch.float64))
    mu = X.mean((0, 1))
    steps = X.reshape(-1, d)
    for k in range(40):
        v = Wsrc[k] / c
        m = v != 0
        # v is the masked, centred copy of one training step, normalised
        cand = (steps - mu)[:, m]
        cand = cand / cand.norm(dim=1, keepdim=True)
        assert bool(((cand - v[m]).abs().max(1).values < 1e-12).any()), k
        # b = theta - c q with q an empirical quantile of level in [lo, hi] of v^T x over the
        # training steps: P(v^T x < q) <= hi and P(v^T x <= q) >= lo
        q = (1.0 - b[k]) / c
        p = steps @ v
        assert float((p < q - 1e-9).to(torch.float64).mean()) <= hi + 1e-9, k
        assert float((p <= q + 1e-9).to(torch.float64).mean()) >= lo - 1e-9, k
    again = template_delay_witnesses(
        X, 40, grid=(3, 4), min_size=(1, 2), quantiles=(lo, hi), n_sample=n, seed=3, leak=0.0
    )
    assert torch.equal(again.weights[0], w.weights[0])
    assert torch.equal(again.biases[0], w.biases[0])
    json.dumps(w.description)


def test_template_columns_and_reconstruction_at_leak_zero():
    X = _ink(n=90, seed=12)
    w = template_delay_witnesses(X, 6, grid=(3, 4), min_size=(1, 1), seed=4, leak=0.0)
    d = build_dictionary(w, X, steps="last", dedupe=False)
    D = d.matrix(torch.float64)
    Wsrc, b = w.weights[0][:, :, 0], w.biases[0][:, 0]
    for j, (k, _, lag) in enumerate(delay_line_map(w)):
        expect = (X[:, 3 - lag] @ Wsrc[k] + b[k] >= 1.0).to(torch.float64)
        assert torch.equal(D[:, j], expect), j
    y = (X[:, 2, 5] > 0.3).long()
    sol = solve_readout(d.operator(), y, loss="squared", lam=2e-3, tol=1e-10)
    chk = check_reconstruction(reconstruct(d, sol), d, sol, _ink(n=50, seed=13), None)
    assert chk["prediction_agreement"] == 1.0 and chk["max_abs_diff"] < 1e-9


def test_template_bad_input():
    X = _ink(n=10)
    with pytest.raises(ValueError, match="grid"):
        template_delay_witnesses(X, 2, grid=(3, 3))
    with pytest.raises(ValueError, match="quantiles"):
        template_delay_witnesses(X, 2, grid=(3, 4), quantiles=(0.9, 0.5))
    with pytest.raises(ValueError, match="tensor"):
        template_delay_witnesses(X[0], 2, grid=(3, 4))


def test_reconstruction_is_exact_and_prunes_chains():
    X = _x(n=120, T=4, d=3, seed=5)
    y = (X[:, 0, 0] + X[:, 2, 1] > 1.5).long() + (X[:, 3, 2] > 0.9).long()
    w = delay_line_witnesses(_bases()["feedforward"], 4)
    d = build_dictionary(w, X, steps="last")
    sol = solve_readout(d.operator(), y, loss="squared", lam=2e-3, tol=1e-10)
    model = reconstruct(d, sol)
    chk = check_reconstruction(model, d, sol, X, y)
    assert chk["prediction_agreement"] == 1.0 and chk["max_abs_diff"] < 1e-9
    Xt = _x(n=50, T=4, d=3, seed=6)
    chk = check_reconstruction(model, d, sol, Xt)
    assert chk["prediction_agreement"] == 1.0
    # every kept relay keeps its chain back to the source
    assert model.recurrent_weights is not None
    rec = model.reconstruction
    assert rec["layout"] == "padded"


def test_bad_input():
    base = gaussian_witnesses(2, n_branches=1, hidden_widths=[2], seed=0)
    with pytest.raises(TypeError):
        delay_line_witnesses("nope", 3)
    with pytest.raises(ValueError, match="n_steps"):
        delay_line_witnesses(base, 0)
    with pytest.raises(ValueError, match="already"):
        delay_line_witnesses(delay_line_witnesses(base, 3), 3)
    with pytest.raises(ValueError, match="delay_line_witnesses"):
        delay_line_map(base)


@pytest.mark.slow
def test_pipeline_cvx_with_delay_witnesses():
    from convexsnn.pipelines import run_method
    from convexsnn.tasks.automata import first_last_xor

    task = first_last_xor(T=6, n_train=200, n_val=100, n_test=100, seed=0)
    cfg = {
        "n_branches": 4,
        "depth": 2,
        "p_rec": 4,
        "p_last": 4,
        "scales": [2.0],
        "regs": [1e-2],
        "max_time": 5.0,
        "witnesses": "delay",
    }
    rec, model = run_method("CVX", task, config=cfg, return_model=True)
    assert rec["config"]["witnesses"] == "delay"
    assert model.config["recurrent"] == "dense"
    assert model.reconstruction["witnesses"]["kind"] == "delay_line"
    assert model.reconstruction["witnesses"]["n_steps"] == 6
    with pytest.raises(ValueError, match="witnesses"):
        run_method("CVX", task, config={**cfg, "witnesses": "magic"})


def test_template_split_reproduces_template_witnesses_and_thresholds():
    X = _ink(n=70, seed=21)
    w = template_delay_witnesses(X, 9, grid=(3, 4), min_size=(1, 2), seed=5, leak=0.0, scale=0.7)
    V, q = template_sources(X, 9, grid=(3, 4), min_size=(1, 2), seed=5)
    assert torch.allclose(V.norm(dim=1), torch.ones(9, dtype=torch.float64))
    W, b = threshold_weights(V, q, scale=0.7)
    assert torch.equal(w.weights[0][:, :, 0], W.T) and torch.equal(w.biases[0][:, 0], b)
    t = threshold_delay_witnesses(V, q, X.shape[1], scale=0.7, leak=0.0)
    for a, c in zip(t.weights + t.biases + t.recurrent, w.weights + w.biases + w.recurrent):
        assert torch.equal(a, c)
    # leak 0: source j spikes at step t iff v_j^T x_t >= q_j (the threshold's meaning)
    d = build_dictionary(t, X, steps="last", dedupe=False).matrix(torch.float64)
    for j, (k, _, lag) in enumerate(delay_line_map(t)):
        p = X[:, 3 - lag] @ V[k]
        far = (p - q[k]).abs() > 1e-9
        assert torch.equal(d[far, j], (p[far] >= q[k]).to(torch.float64)), j
    # another seed draws other templates
    V2, _ = template_sources(X, 9, grid=(3, 4), min_size=(1, 2), seed=6)
    assert not torch.equal(V, V2)
    with pytest.raises(ValueError, match="V must be"):
        threshold_weights(V, q[:-1])
