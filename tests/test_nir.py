"""NIR export: round trip through ``nir.write``/``nir.read``, node values, warnings, and an
independent check of the graph under NIR's own node equations."""

import importlib
import json
import os
import sys
import warnings
from collections import defaultdict
from functools import partial

import numpy as np
import pytest
import torch

from conftest import rand_inputs, small_net

nir = pytest.importorskip("nir")

from convexsnn.export import (  # noqa: E402
    NIRExportError,
    NIRExportWarning,
    export_nir,
    from_nir_graph,
    import_nir,
    nir_neuron_parameters,
    simulate_nir,
    to_nir,
)


# ------------------------------------------------------------------------------------ helpers
def _net(widths=(6, 4), K=2, seed=0, **kw):
    """A small network that spikes often enough to exercise both resets, with random (non-zero)
    biases and recurrent weights when it has them."""
    net = small_net(3, 4, n_branches=K, hidden_widths=list(widths), seed=seed, **kw)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for plist, scale in ((net.biases, 0.3), (net.recurrent_weights, 0.6)):
            if plist is not None:
                for p in plist:
                    p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * scale)
        if net.output_bias is not None:
            net.output_bias.copy_(
                torch.randn(net.output_bias.shape, generator=g, dtype=torch.float64)
            )
    return net


_x = partial(rand_inputs, seed=1, n=5, T=9)


def _export_quiet(net, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRExportWarning)
        return export_nir(net, path, **kw)


def _to_nir_quiet(net, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRExportWarning)
        return to_nir(net, **kw)


def _nir_reference_run(graph, x, dt):
    """Execute a NIR graph with NIR's node equations, independently of convexsnn.

    Forward Euler with step ``dt``; a node's input is the sum of its incoming edges; every node is
    evaluated once per step in a topological order of the graph without its cycle-closing (back)
    edges, which carry the previous step's value (zero at the first step). Firing is NIR's strict
    ``v > v_threshold``, followed by a reset to ``v_reset``. Returns the Output node's values
    ``(B, T, C)`` and every node's output ``{name: (B, T, n)}``.
    """
    nodes = graph.nodes
    (inp,) = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    (out,) = [k for k, v in nodes.items() if isinstance(v, nir.Output)]
    succ = defaultdict(list)
    for a, b in graph.edges:
        succ[a].append(b)
    color, back, post = {}, set(), []

    def dfs(u):
        color[u] = "grey"
        for v in succ[u]:
            if color.get(v) == "grey":
                back.add((u, v))
            elif v not in color:
                dfs(v)
        color[u] = "black"
        post.append(u)

    dfs(inp)
    order = post[::-1]
    preds = defaultdict(list)
    for a, b in graph.edges:
        preds[b].append((a, (a, b) in back))

    x = np.asarray(x, dtype=np.float64)
    B, T, _ = x.shape
    size = {k: int(np.prod(v.output_type["output"])) for k, v in nodes.items()}
    prev = {k: np.zeros((B, size[k])) for k in nodes}
    state = {k: np.zeros((B, size[k])) for k in nodes}
    record = defaultdict(list)
    for t in range(T):
        cur = {}
        for name in order:
            node = nodes[name]
            if isinstance(node, nir.Input):
                cur[name] = x[:, t]
                continue
            i = sum((prev[a] if is_back else cur[a]) for a, is_back in preds[name])
            f = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
            if isinstance(node, nir.Affine):
                y = i @ f(node.weight).T + f(node.bias)
            elif isinstance(node, nir.Linear):
                y = i @ f(node.weight).T
            elif isinstance(node, nir.Scale):
                y = i * f(node.scale)
            elif isinstance(node, (nir.LIF, nir.LI)):
                v = state[name]
                v = v + dt / f(node.tau) * (f(node.v_leak) - v + f(node.r) * i)
                if isinstance(node, nir.LIF):
                    z = v > f(node.v_threshold)
                    v = np.where(z, f(node.v_reset), v)
                    y = z.astype(np.float64)
                else:
                    y = v
                state[name] = v
            elif isinstance(node, (nir.IF, nir.I)):
                v = state[name] + dt * f(node.r) * i
                if isinstance(node, nir.IF):
                    z = v > f(node.v_threshold)
                    v = np.where(z, f(node.v_reset), v)
                    y = z.astype(np.float64)
                else:
                    y = v
                state[name] = v
            elif isinstance(node, nir.Threshold):
                y = (i > f(node.threshold)).astype(np.float64)
            elif isinstance(node, nir.Output):
                y = i
            else:  # pragma: no cover - the exporter writes no other node type
                raise NotImplementedError(type(node).__name__)
            cur[name] = y
            record[name].append(y)
        prev = cur
    return np.stack(record[out], 1), {k: np.stack(v, 1) for k, v in record.items()}


def _reference_spikes(rec, K, n_layers):
    """(B, T, K, n) spikes of every layer from the reference run's node outputs."""
    out = []
    for l in range(n_layers):
        per_branch = []
        for k in range(K):
            name = f"b{k}_l{l}_neuron" if f"b{k}_l{l}_neuron" in rec else f"b{k}_l{l}_spike"
            per_branch.append(rec[name])
        out.append(np.stack(per_branch, 2))
    return out


# ------------------------------------------------------------------------- optional dependency
def test_missing_nir_gives_clear_import_error(monkeypatch, tmp_path):
    net = _net(reset="zero")
    monkeypatch.setitem(sys.modules, "nir", None)  # makes `import nir` raise ImportError
    for call in (
        lambda: to_nir(net),
        lambda: export_nir(net, tmp_path / "n.nir"),
        lambda: simulate_nir(tmp_path / "n.nir", _x()),
    ):
        with pytest.raises(ImportError, match=r"pip install convexsnn\[nir\]"):
            call()
    assert not list(tmp_path.iterdir())


def test_export_package_imports_without_nir(monkeypatch):
    import convexsnn

    monkeypatch.setattr(convexsnn, "export", sys.modules["convexsnn.export"])  # restored after
    monkeypatch.setitem(sys.modules, "nir", None)
    for name in ("convexsnn.export", "convexsnn.export.nir_export"):
        monkeypatch.delitem(sys.modules, name)
    mod = importlib.import_module("convexsnn.export")
    assert callable(mod.to_nir)


# ------------------------------------------------------------------------------- round trip
ROUND_TRIP_CASES = {
    "zero_K3_depth2": dict(widths=(6,), K=3, reset="zero"),
    "subtract_K2_depth3": dict(widths=(6, 4), K=2, reset="subtract"),
    "zero_K2_depth4_bias_f64": dict(
        widths=(5, 4, 3), K=2, reset="zero", bias=True, output_bias=True, dtype=torch.float64
    ),
    "subtract_dense_recurrent": dict(widths=(5, 4), K=2, reset="subtract", recurrent="dense"),
    "zero_diag_recurrent_membrane_all": dict(
        widths=(5, 4),
        K=3,
        reset="zero",
        recurrent="diagonal",
        readout="membrane",
        readout_bias=0.25,
        output="all",
    ),
    "subtract_no_leak": dict(widths=(4, 4), K=2, reset="subtract", leak=1.0, theta=1.5),
    "zero_no_memory": dict(widths=(6, 4), K=2, reset="zero", leak=0.0, theta=0.5),
}


@pytest.mark.parametrize("exact_reset", [False, True], ids=["lif_nodes", "exact_reset"])
@pytest.mark.parametrize("case", list(ROUND_TRIP_CASES))
def test_round_trip_reproduces_spikes_and_scores_exactly(tmp_path, case, exact_reset):
    net = _net(**ROUND_TRIP_CASES[case])
    x = _x()
    path = _export_quiet(net, tmp_path / "net.nir", dt=1e-3, exact_reset=exact_reset)
    graph = nir.read(path)
    scores, trace = simulate_nir(graph, x, return_trace=True)
    with torch.no_grad():
        ref_scores = net(x)
        ref = net.simulate(x, return_membrane=True)
    for layer, (s, s_ref) in enumerate(zip(trace.spikes, ref.spikes)):
        assert 0 < float(s_ref.mean()) < 1, f"layer {layer} does not exercise spiking"
        assert torch.equal(s, s_ref), f"spikes of layer {layer} differ"
    for m, m_ref in zip(trace.membranes, ref.membranes):
        assert torch.equal(m, m_ref)
    assert scores.dtype == ref_scores.dtype and torch.equal(scores, ref_scores)
    rebuilt = import_nir(path)
    assert rebuilt.config == net.config
    for key, value in net.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key


def test_simulate_nir_accepts_graph_and_path_and_returns_scores(tmp_path):
    net = _net(reset="zero", output="all")
    x = _x()
    path = export_nir(net, tmp_path / "sub" / "net.nir")
    assert path.exists()
    with torch.no_grad():
        expected = net(x)
    assert torch.equal(simulate_nir(str(path), x), expected)
    assert torch.equal(simulate_nir(to_nir(net), x), expected)
    with pytest.raises(FileNotFoundError):
        simulate_nir(tmp_path / "missing.nir", x)


# ------------------------------------------------------------------------------- node values
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("leak,theta,dt", [(0.99, 1.0, 1e-3), (0.5, 0.7, 0.25), (0.0, 1.0, 1e-3)])
def test_lif_node_values_follow_documented_formulas(tmp_path, leak, theta, dt, dtype):
    net = _net(widths=(5, 3), K=2, reset="zero", leak=leak, theta=theta, dtype=dtype)
    graph = nir.read(export_nir(net, tmp_path / "net.nir", dt=dt))
    npdt = np.float64 if dtype == torch.float64 else np.float32
    tau, r = npdt(dt / (1 - leak)), npdt(1 / (1 - leak))
    v_thr = np.nextafter(npdt(theta), npdt(-np.inf))
    assert v_thr < theta and np.nextafter(v_thr, npdt(np.inf)) == npdt(theta)
    params = nir_neuron_parameters(leak, theta, dt, npdt)
    assert params["tau"] == tau and params["r"] == r and params["v_threshold"] == v_thr
    for k in range(2):
        for l in range(2):
            node = graph.nodes[f"b{k}_l{l}_neuron"]
            assert isinstance(node, nir.LIF)
            assert node.tau.dtype == npdt
            np.testing.assert_array_equal(node.tau, np.full(net.hidden_widths[l], tau))
            np.testing.assert_array_equal(node.r, np.full(net.hidden_widths[l], r))
            np.testing.assert_array_equal(node.v_threshold, np.full(net.hidden_widths[l], v_thr))
            assert not node.v_leak.any() and not node.v_reset.any()
            # the mapping inverts: beta = 1 - dt/tau, unit input gain R dt / tau = 1
            np.testing.assert_allclose(1 - dt / node.tau.astype(np.float64), leak, atol=1e-6)
            np.testing.assert_allclose(node.r * dt / node.tau.astype(np.float64), 1, rtol=1e-6)
            assert node.metadata["reset"] == "zero" and float(node.metadata["beta"]) == leak
            w = graph.nodes[f"b{k}_l{l}_w"]
            assert isinstance(w, nir.Linear)
            np.testing.assert_array_equal(w.weight, net.weights[l][k].detach().numpy().T)
        ro = graph.nodes[f"b{k}_readout"].weight
        assert ro.shape == (4, 3)  # (C, n_last): NIR's (out, in)
        np.testing.assert_array_equal(ro, net.output_weight[3 * k : 3 * (k + 1)].detach().numpy().T)
    meta = graph.metadata
    assert float(meta["dt"]) == dt and float(meta["beta"]) == leak
    assert float(meta["theta"]) == theta and meta["reset"] == "zero"
    assert meta["format"] == "convexsnn.ParallelSNN" and meta["inexpressible"] == "none"
    assert json.loads(meta["config"]) == net.config


def test_no_leak_is_an_integrate_and_fire_node():
    dt = 2e-3
    net = _net(widths=(4,), K=1, reset="zero", leak=1.0, dtype=torch.float64)
    graph = to_nir(net, dt=dt)
    node = graph.nodes["b0_l0_neuron"]
    assert isinstance(node, nir.IF)
    np.testing.assert_array_equal(node.r, np.full(4, 1 / dt))
    assert nir_neuron_parameters(1.0, 1.0, dt)["tau"] == np.inf
    exact = to_nir(_net(widths=(4,), K=1, reset="subtract", leak=1.0), dt=dt, exact_reset=True)
    assert isinstance(exact.nodes["b0_l0_membrane"], nir.I)
    assert isinstance(exact.nodes["b0_l0_spike"], nir.Threshold)


def test_recurrent_weights_are_cycles_in_nir_layout():
    dense = _net(widths=(5,), K=2, reset="zero", recurrent="dense")
    g = to_nir(dense)
    rec = g.nodes["b1_l0_rec"]
    assert isinstance(rec, nir.Linear)
    np.testing.assert_array_equal(rec.weight, dense.recurrent_weights[0][1].detach().numpy().T)
    assert ("b1_l0_neuron", "b1_l0_rec") in g.edges and ("b1_l0_rec", "b1_l0_neuron") in g.edges
    diag = _net(widths=(5,), K=2, reset="zero", recurrent="diagonal")
    rec = to_nir(diag).nodes["b0_l0_rec"]
    assert isinstance(rec, nir.Scale)
    np.testing.assert_array_equal(rec.scale, diag.recurrent_weights[0][0].detach().numpy())


def test_branches_sum_into_one_output_node_and_bias_is_added_once():
    net = _net(widths=(4,), K=3, reset="zero", output_bias=True)
    g = to_nir(net)
    into_output = [a for a, b in g.edges if b == "output"]
    assert into_output == ["b0_readout", "b1_readout", "b2_readout"]
    assert isinstance(g.nodes["b0_readout"], nir.Affine)
    assert all(isinstance(g.nodes[f"b{k}_readout"], nir.Linear) for k in (1, 2))


# -------------------------------------------------------------------------- warnings / strict
def test_subtract_reset_warns_and_strict_refuses():
    assert issubclass(NIRExportWarning, UserWarning) and issubclass(NIRExportError, ValueError)
    net = _net(reset="subtract")
    with pytest.warns(NIRExportWarning, match="subtract reset"):
        g = to_nir(net)
    assert g.metadata["reset"] == "subtract" and g.metadata["graph_reset"] == "zero"
    assert "subtract reset" in g.metadata["inexpressible"]
    with pytest.raises(NIRExportError, match="subtract reset"):
        to_nir(net, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = to_nir(net, exact_reset=True, strict=True)  # exact: nothing to warn about
        to_nir(_net(reset="zero"), strict=True)
    assert g.metadata["graph_reset"] == "subtract" and g.metadata["neuron_nodes"] == "LI+Threshold"


def test_membrane_readout_warns_and_strict_refuses():
    net = _net(reset="zero", readout="membrane", readout_bias=0.5)
    with pytest.warns(NIRExportWarning, match="membrane indicator"):
        g = to_nir(net)
    assert g.metadata["readout"] == "membrane" and float(g.metadata["readout_bias"]) == 0.5
    with pytest.raises(NIRExportError, match="membrane"):
        to_nir(net, strict=True)


# ------------------------------------------------------------- NIR semantics (no metadata used)
NIR_SEMANTICS_CASES = {
    "zero_feedforward": (dict(widths=(5, 4), K=2, reset="zero"), False),
    "zero_dense_recurrent_bias": (
        dict(widths=(5, 4), K=2, reset="zero", recurrent="dense", bias=True, output_bias=True),
        False,
    ),
    "zero_no_leak_IF": (dict(widths=(5, 4), K=2, reset="zero", leak=1.0), False),
    "subtract_exact_reset": (dict(widths=(5, 4, 3), K=2, reset="subtract"), True),
    "subtract_exact_reset_diag_recurrent": (
        dict(widths=(5, 4), K=2, reset="subtract", recurrent="diagonal"),
        True,
    ),
    "subtract_exact_reset_no_leak": (dict(widths=(5, 4), K=2, reset="subtract", leak=1.0), True),
}


@pytest.mark.parametrize("case", list(NIR_SEMANTICS_CASES))
def test_graph_under_nir_equations_matches_network(tmp_path, case):
    """The written graph means the network under NIR's own equations, not only via metadata."""
    kw, exact = NIR_SEMANTICS_CASES[case]
    dt = 1e-3
    net = _net(dtype=torch.float64, output="all", **kw)
    x = _x(seed=3)
    graph = nir.read(export_nir(net, tmp_path / "net.nir", dt=dt, exact_reset=exact))
    scores, rec = _nir_reference_run(graph, x.numpy(), dt)
    with torch.no_grad():
        trace = net.simulate(x)
        expected = net(x).numpy()
    spikes = _reference_spikes(rec, net.n_branches, len(net.hidden_widths))
    for layer, (s, s_ref) in enumerate(zip(spikes, trace.spikes)):
        assert 0 < float(s_ref.mean()) < 1
        np.testing.assert_array_equal(s, s_ref.numpy(), err_msg=f"layer {layer}")
    np.testing.assert_allclose(scores, expected, rtol=1e-12, atol=1e-12)


def test_subtract_reset_as_lif_nodes_differs_under_nir_equations(tmp_path):
    """Why the warning exists: LIF nodes express a zero reset, only the metadata keeps the truth."""
    dt = 1e-3
    net = _net(widths=(6, 4), K=2, reset="subtract", dtype=torch.float64, output="all")
    x = _x(seed=3)
    path = _export_quiet(net, tmp_path / "net.nir", dt=dt)
    _, rec = _nir_reference_run(nir.read(path), x.numpy(), dt)
    with torch.no_grad():
        trace = net.simulate(x)
    spikes = _reference_spikes(rec, 2, 2)
    assert any(not np.array_equal(s, r.numpy()) for s, r in zip(spikes, trace.spikes))
    assert torch.equal(simulate_nir(path, x), net(x).detach())  # metadata restores it


# --------------------------------------------------------------------- graphs without metadata
def _strip_metadata(graph):
    graph.metadata = {}
    for node in graph.nodes.values():
        node.metadata = {}
    return graph


def test_graph_without_metadata_is_read_from_its_nodes(tmp_path):
    dt = 1e-3
    net = _net(
        widths=(5, 4), K=2, reset="zero", recurrent="dense", dtype=torch.float64, output="all"
    )
    x = _x()
    path = tmp_path / "foreign.nir"
    nir.write(path, _strip_metadata(to_nir(net, dt=dt)))
    graph = nir.read(path)
    with pytest.raises(ValueError, match="pass dt="):
        from_nir_graph(graph)
    model = from_nir_graph(graph, dt=dt)
    cfg = model.config
    assert cfg["reset"] == "zero" and cfg["readout"] == "spike" and cfg["output"] == "all"
    assert cfg["recurrent"] == "dense" and model.dtype == torch.float64
    assert abs(cfg["leak"] - 0.99) < 1e-12 and abs(cfg["theta"] - 1.0) < 1e-12
    with torch.no_grad():
        t_model, t_net = model.simulate(x), net.simulate(x)
        for s, s_ref in zip(t_model.spikes, t_net.spikes):
            assert torch.equal(s, s_ref)
        torch.testing.assert_close(model(x), net(x), rtol=0, atol=1e-12)


def test_exact_reset_graph_without_roles_is_refused():
    graph = _strip_metadata(to_nir(_net(reset="subtract"), exact_reset=True))
    with pytest.raises(ValueError, match="reset feedback"):
        from_nir_graph(graph, dt=1e-3)


# ------------------------------------------------------------------------------ bad input
def test_graph_edited_after_export_is_refused():
    net = _net(reset="zero")
    graph = to_nir(net)
    cfg = json.loads(graph.metadata["config"])
    cfg["leak"] = 0.5
    graph.metadata["config"] = json.dumps(cfg)
    with pytest.raises(ValueError, match="does not match its convexsnn metadata"):
        from_nir_graph(graph)
    graph = to_nir(net)
    graph.nodes["b1_l0_neuron"].tau = graph.nodes["b1_l0_neuron"].tau * 2
    with pytest.raises(ValueError, match="differs between neurons"):
        from_nir_graph(graph)
    with pytest.raises(ValueError, match="differs from the dt"):
        from_nir_graph(to_nir(net, dt=1e-3), dt=2e-3)


def test_bad_arguments():
    net = _net(reset="zero")
    with pytest.raises(TypeError, match="ParallelSNN"):
        to_nir(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="dt"):
        to_nir(net, dt=0.0)
    with pytest.raises(TypeError, match="NIRGraph"):
        from_nir_graph({"nodes": {}})
    other = nir.NIRGraph.from_list(
        nir.Linear(np.ones((2, 3))), nir.LI(np.ones(2), np.ones(2), np.zeros(2))
    )
    with pytest.raises(ValueError):
        from_nir_graph(other, dt=1e-3)


# -------------------------------------------------------------------------------- atomicity
def test_export_is_atomic(tmp_path, monkeypatch):
    net = _net(reset="zero")
    path = tmp_path / "net.nir"
    export_nir(net, path)
    first = path.read_bytes()
    export_nir(net, path)  # overwrite in place
    assert sorted(os.listdir(tmp_path)) == ["net.nir"]
    assert path.stat().st_mode & 0o777 == 0o644

    def broken_write(filename, graph, *a, **k):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nir, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        export_nir(_net(reset="zero", seed=5), path)
    assert path.read_bytes() == first  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ["net.nir"]  # no temp file left behind


# ------------------------------------------------------------------------- delay-line witnesses
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_delay_line_model_round_trips_and_means_the_same_under_nir_equations(tmp_path, reset):
    """A reconstructed delay-line model (relay chains on recurrent weights) survives the NIR
    round trip; with the zero reset every node is a plain LIF and the graph, run under NIR's own
    equations, gives the same spikes (relays included) and scores."""
    from convexsnn.convex import solve_readout
    from convexsnn.delay import gaussian_delay_witnesses
    from convexsnn.dictionary import build_dictionary
    from convexsnn.reconstruct import reconstruct

    x = torch.rand(30, 4, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    y = (x[:, 1, 0] > 0.5).long() + (x[:, 3, 2] > 0.5).long()
    w = gaussian_delay_witnesses(3, 5, 4, scale=2.0, seed=8, reset=reset)
    d = build_dictionary(w, x, steps="last")
    sol = solve_readout(d.operator(), y, loss="squared", lam=1e-3, tol=1e-10)
    model = reconstruct(d, sol)
    assert model.config["recurrent"] == "dense" and model.hidden_widths[0] > 1
    with warnings.catch_warnings():
        warnings.simplefilter("error" if reset == "zero" else "ignore", NIRExportWarning)
        path = export_nir(model, tmp_path / "delay.nir", dt=1e-3)
    back = import_nir(path)
    with torch.no_grad():
        z = model(x)
        np.testing.assert_array_equal(back(x.to(back.dtype)).numpy(), z.numpy())
        np.testing.assert_array_equal(simulate_nir(path, x).numpy(), z.numpy())
    if reset == "zero":
        scores, rec = _nir_reference_run(nir.read(path), x.numpy(), 1e-3)
        with torch.no_grad():
            trace = model.simulate(x)
        (s,) = _reference_spikes(rec, model.n_branches, 1)
        np.testing.assert_array_equal(s, trace.spikes[0].numpy())
        np.testing.assert_allclose(scores[:, -1], z.numpy(), rtol=1e-12, atol=1e-12)
