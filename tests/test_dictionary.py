"""Spike dictionary: hand-checked readouts, dedupe provenance, storage, chunking, composition."""

import json

import numpy as np
import pytest
import torch

from convexsnn.convex import as_operator, solve_readout
from convexsnn.dictionary import SpikeDictionary, build_dictionary
from convexsnn.witnesses import Witnesses, gaussian_witnesses


def _one_neuron(reset="subtract"):
    # dyadic numbers: every LIF operation below is exact in floating point
    return Witnesses(
        [torch.tensor([[[0.625]]], dtype=torch.float64)], leak=0.5, theta=1.0, reset=reset
    )


# x_a = 1,1,1,0   u = .625, .9375, 1.09375 (spike, m = .09375), .046875
# x_c = 0,1,1,1   u = 0, .625, .9375, 1.09375 (spike at the last step)
# x_d = 1,1,1,1   u = .625, .9375, 1.09375 (spike), .09375/2 + .625 = .671875
_X_HAND = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.float32)[..., None]


def test_hand_checked_single_neuron():
    w = _one_neuron()
    d = build_dictionary(w, _X_HAND)
    assert d.matrix().flatten().tolist() == [0, 1, 0]
    assert d.provenance.tolist() == [[0, 0]]
    d_all = build_dictionary(w, _X_HAND, steps="all")
    assert d_all.matrix().flatten().tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0]
    # membrane readout, post-reset m: x_c -> m = 0, .625, .9375, .09375; 1[m >= .5]
    d_m = build_dictionary(w, _X_HAND, steps="all", readout="membrane", readout_bias=0.5)
    assert d_m.matrix()[4:8].flatten().tolist() == [0, 1, 1, 0]
    # zero reset: after the spike of x_d, m = 0 and u_4 = .625 (no spike); same readout here,
    # but the membrane differs: m_4 = .625 instead of .671875
    d_z = build_dictionary(
        _one_neuron("zero"), _X_HAND, steps="all", readout="membrane", readout_bias=0.65
    )
    assert d_z.matrix()[8:12].flatten().tolist() == [0, 1, 0, 0]
    d_s = build_dictionary(w, _X_HAND, steps="all", readout="membrane", readout_bias=0.65)
    assert d_s.matrix()[8:12].flatten().tolist() == [0, 1, 0, 1]


def test_dedupe_drops_zero_and_duplicate_columns_with_provenance():
    # one LIF layer, 2 branches x 4 neurons; neuron weights on a single input:
    # branch 0: [0.625 (A), 0 (silent), 0.625 (= A), 2.0 (B)]
    # branch 1: [2.0 (= B), 0.625 (= A), -1 (silent), 0.75 (C)]
    w0 = torch.tensor([[[0.625, 0.0, 0.625, 2.0]], [[2.0, 0.625, -1.0, 0.75]]], dtype=torch.float64)
    w = Witnesses([w0], leak=0.5, theta=1.0)
    X = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]], dtype=torch.float64)[
        ..., None
    ]
    d = build_dictionary(w, X, steps="all")
    assert d.n_witness_neurons == 8
    assert d.provenance.tolist() == [[0, 0], [0, 3], [1, 3]]  # A, B, C
    assert d.n_columns == d.n_unique == 3
    assert d.n_zero == 2 and d.n_duplicates == 3
    assert d.assignment.tolist() == [0, -1, 0, 1, 1, 0, -1, 2]
    assert d.duplicates(0).tolist() == [[0, 0], [0, 2], [1, 1]]
    assert d.duplicates(1).tolist() == [[0, 3], [1, 0]]
    assert d.duplicate_counts().tolist() == [2, 1, 0]
    s = d.summary()
    json.dumps(s)
    assert s["n_rows"] == 16 and s["n_columns"] == 3
    M = d.matrix()
    assert s["density"] == pytest.approx(float(M.mean()))
    # without dedupe every neuron keeps its column
    nd = build_dictionary(w, X, steps="all", dedupe=False)
    assert nd.n_columns == 8 and nd.n_unique == 3 and nd.n_zero == 2
    full = w.readout(X).reshape(-1, 8)
    assert torch.equal(nd.matrix(torch.bool), full)
    dd = nd.deduplicate()
    assert torch.equal(dd.matrix(), d.matrix()) and np.array_equal(dd.assignment, d.assignment)


def _random_case(seed=0, n=37, T=5, d=3, widths=(6, 7, 9), K=3):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, T, d, generator=g) * 2 - 0.5
    w = gaussian_witnesses(
        d, n_branches=K, hidden_widths=list(widths), scale=1.5, seed=seed, leak=0.9
    )
    return w, X


@pytest.mark.parametrize("readout", ["spike", "membrane"])
@pytest.mark.parametrize("steps", ["last", "all"])
def test_chunked_packed_unique_equal_reference(readout, steps):
    w, X = _random_case()
    X = torch.cat([X, X[:9]])  # repeated sequences exercise unique_inputs
    kw = dict(readout=readout, readout_bias=0.2, steps=steps)
    ref = build_dictionary(w, X, chunk_size=1000, unique_inputs=False, **kw)
    for other in (
        build_dictionary(w, X, chunk_size=5, **kw),
        build_dictionary(w, X, chunk_size=3, storage="packed", unique_inputs=False, **kw),
        build_dictionary(w, X, storage="packed", **kw),
    ):
        assert torch.equal(other.matrix(), ref.matrix())
        assert np.array_equal(other.provenance, ref.provenance)
        assert np.array_equal(other.assignment, ref.assignment)
    # the reference against the witnesses' own readout
    r = w.readout(X, readout=readout, readout_bias=0.2)
    idx = ref.provenance[:, 0] * w.n_last + ref.provenance[:, 1]
    expect = r[:, -1][:, idx] if steps == "last" else r.reshape(-1, r.shape[2])[:, idx]
    assert torch.equal(ref.matrix(torch.bool), expect)
    if steps == "all":  # row i*T + t is sample i at step t
        T = X.shape[1]
        i, t = 7, 2
        assert torch.equal(ref.matrix(torch.bool)[i * T + t], r[i, t][idx])


def test_packed_operator_matches_dense_and_follows_protocol():
    w, X = _random_case(1, n=61)
    db = build_dictionary(w, X, steps="all")
    dp = build_dictionary(w, X, steps="all", storage="packed")
    assert dp.nbytes * 4 < db.nbytes
    g = torch.Generator().manual_seed(0)
    M = db.matrix()
    Wt = torch.randn(db.n_columns, 3, generator=g, dtype=torch.float64)
    R = torch.randn(db.n_rows, 3, generator=g, dtype=torch.float64)
    for op in (db.operator(), dp.operator(chunk_rows=16), dp.operator()):
        assert op.shape == (db.n_rows, db.n_columns)
        torch.testing.assert_close(op.matmul(Wt), M @ Wt, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(op @ Wt, M @ Wt, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(op.rmatmul(R), M.T @ R, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(op.T @ R, M.T @ R, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(op.matmul(Wt[:, 0]), M @ Wt[:, 0], rtol=1e-13, atol=1e-13)
        idx = torch.tensor([3, 0, 5])
        assert torch.equal(op.columns(idx).dense(), M[:, idx])
        assert torch.equal(op.dense(), M)
        assert as_operator(op) is op
    assert torch.equal(dp.operator(rows=[5, 2, 9]).dense(), M[[5, 2, 9]])
    assert torch.equal(db.operator(rows=[5, 2, 9]).dense(), M[[5, 2, 9]])
    # the solver gives the same answer on the operator and on the dense matrix
    y = (M[:, 0] + M[:, 1] > 0).to(torch.int64)
    a = solve_readout(dp.operator(chunk_rows=16), y, loss="squared", reg=0.1, tol=1e-10)
    b = solve_readout(M, y, loss="squared", reg=0.1, tol=1e-10)
    torch.testing.assert_close(a.W, b.W, rtol=1e-6, atol=1e-7)


def test_unique_rows_groups_rows_and_labels():
    w, X = _random_case(2, n=10)
    X = torch.cat([X, X[:4], X[:2]])
    d = build_dictionary(w, X, storage="packed")
    first, inv, counts = d.unique_rows()
    M = d.matrix()
    assert torch.equal(M[torch.from_numpy(first)][torch.from_numpy(inv)], M)
    assert counts.sum() == d.n_rows
    y = torch.arange(16) % 2
    f2, inv2, _ = d.unique_rows(y)
    assert torch.equal(y[torch.from_numpy(f2)][torch.from_numpy(inv2)], y)
    assert f2.size >= first.size


def test_transform_reproduces_training_matrix_and_validates():
    w, X = _random_case(3)
    for steps in ("last", "all"):
        d = build_dictionary(w, X, steps=steps, readout="membrane", readout_bias=-0.1)
        assert torch.equal(d.transform(X), d.matrix())
        assert torch.equal(
            d.transform(X, unique_inputs=False, chunk_size=4, dtype=torch.bool),
            d.matrix(torch.bool),
        )
        assert torch.equal(
            d.transform(X[5:9]), d.matrix()[5:9] if steps == "last" else d.matrix()[5 * 5 : 9 * 5]
        )
    with pytest.raises(ValueError, match="features"):
        d.transform(torch.rand(4, 5, 2))
    with pytest.raises(ValueError, match="T=7"):
        d.transform(torch.rand(4, 7, 3))
    assert d.transform(torch.rand(4, 7, 3), allow_other_T=True).shape == (28, d.n_columns)
    with pytest.raises(ValueError, match="NaN"):
        d.transform(torch.full((2, 5, 3), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        d.transform(torch.rand(5, 3))


def test_bad_input_and_empty_dictionary():
    w, X = _random_case(4)
    with pytest.raises(ValueError, match="NaN"):
        Xn = X.clone()
        Xn[0, 0, 0] = float("nan")
        build_dictionary(w, Xn)
    with pytest.raises(ValueError, match="shape"):
        build_dictionary(w, X[0])
    with pytest.raises(ValueError, match="features"):
        build_dictionary(w, X[..., :2])
    with pytest.raises(ValueError, match="readout"):
        build_dictionary(w, X, readout="voltage")
    silent = gaussian_witnesses(3, n_branches=2, hidden_widths=[4, 4], scale=1e-6, seed=0)
    with pytest.raises(ValueError, match="larger witness scale"):
        build_dictionary(silent, X)
    empty = build_dictionary(silent, X, allow_empty=True)
    assert empty.n_columns == 0 and empty.n_zero == 8


def test_blocks_concatenated_equal_built_at_once():
    w, X = _random_case(5, K=5, widths=(4, 6))
    ref = build_dictionary(w, X, steps="all")
    blocks = [build_dictionary(w, X, steps="all", branches=b) for b in ([3, 4], [0], [1, 2])]
    c = SpikeDictionary.concat(blocks)
    assert torch.equal(c.matrix(), ref.matrix())
    assert np.array_equal(c.provenance, ref.provenance)
    assert np.array_equal(c.assignment, ref.assignment)
    assert np.array_equal(c.branches, np.arange(5))
    assert c.n_unique == ref.n_unique and c.n_duplicates == ref.n_duplicates
    assert torch.equal(c.transform(X), ref.matrix())
    # rows: shards built without dedupe, concatenated, then deduplicated
    shards = [
        build_dictionary(w, X[a:b], steps="all", dedupe=False)
        for a, b in ((0, 13), (13, 14), (14, 37))
    ]
    r = SpikeDictionary.concat(shards, axis="rows")
    assert torch.equal(r.matrix(), ref.matrix())
    assert np.array_equal(r.provenance, ref.provenance)
    with pytest.raises(ValueError, match="dedupe=False"):
        SpikeDictionary.concat([ref, ref], axis="rows")
    with pytest.raises(ValueError, match="disjoint"):
        SpikeDictionary.concat([blocks[0], blocks[0]])
    other = build_dictionary(w, X[:20], steps="all", branches=[0])
    with pytest.raises(ValueError, match="same inputs"):
        SpikeDictionary.concat([blocks[0], other])


@pytest.mark.parametrize("storage", ["bool", "packed"])
def test_save_load_round_trip(tmp_path, storage):
    w, X = _random_case(6)
    d = build_dictionary(w, X, steps="all", readout="membrane", readout_bias=0.3, storage=storage)
    p = d.save(tmp_path / "dict")
    assert p.suffix == ".npz"
    e = SpikeDictionary.load(p)
    assert e.storage == storage
    assert torch.equal(e.matrix(), d.matrix())
    assert np.array_equal(e.provenance, d.provenance)
    assert np.array_equal(e.assignment, d.assignment)
    assert e.summary() == d.summary()
    assert e.witnesses.fingerprint() == d.witnesses.fingerprint()
    assert torch.equal(e.transform(X), d.matrix())
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError):
        SpikeDictionary.load(bad)
    with pytest.raises(FileNotFoundError):
        SpikeDictionary.load(tmp_path / "missing.npz")


# -- bit-packed products (byte lookup tables) ----------------------------------------------
@pytest.mark.parametrize(
    "n, P, C, density",
    [(1, 1, 1, 1.0), (13, 7, 2, 0.5), (64, 300, 3, 0.3), (203, 1100, 1, 0.5), (77, 520, 4, 0.0)],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_packed_products_equal_dense_products(n, P, C, density, dtype):
    """Integer-valued W and R: every float sum is exact, so the packed products must equal the
    dense ones bit for bit, for n not a multiple of 8, P on both sides of the lookup-table
    threshold, W with zero rows (skipped) and all-zero dictionaries."""
    from convexsnn.dictionary import SpikeOperator

    g = torch.Generator().manual_seed(n * 1000 + P)
    M = (torch.rand(n, P, generator=g) < density).to(dtype)
    packed = torch.from_numpy(np.packbits(M.numpy().astype(bool), axis=0))
    op = SpikeOperator(packed=packed, n_rows=n, dtype=dtype)
    W = torch.randint(-50, 50, (P, C), generator=g).to(dtype)
    W[::3] = 0  # zero rows are skipped by D @ W
    R = torch.randint(-50, 50, (n, C), generator=g).to(dtype)
    assert torch.equal(op.matmul(W), M @ W)
    assert torch.equal(op.rmatmul(R), M.T @ R)
    assert torch.equal(op.matmul(W[:, 0]), M @ W[:, 0])
    assert torch.equal(op.rmatmul(R[:, 0]), M.T @ R[:, 0])
    few = torch.zeros_like(W)
    few[: min(P, 5)] = W[: min(P, 5)]  # few non-zero rows: direct bit additions
    assert torch.equal(op.matmul(few), M @ few)
    # real-valued arguments: equal up to the order of the additions
    Wr = torch.randn(P, C, generator=g, dtype=torch.float64).to(dtype)
    Rr = torch.randn(n, C, generator=g, dtype=torch.float64).to(dtype)
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(op.matmul(Wr), M @ Wr, rtol=tol, atol=tol * max(1, P) ** 0.5)
    torch.testing.assert_close(op.rmatmul(Rr), M.T @ Rr, rtol=tol, atol=tol * max(1, n) ** 0.5)
    assert op.matmul(Wr).dtype == dtype and op.rmatmul(Rr).dtype == dtype


def test_solver_sees_packed_bits_for_every_storage():
    """The operator a solver gets from a SpikeDictionary holds the packed bits (n P / 8 bytes),
    never an n x P float copy, for bool storage too; solutions equal the dense ones."""
    w, X = _random_case(4, n=64)
    for storage in ("bool", "packed"):
        d = build_dictionary(w, X, steps="all", storage=storage)
        op = as_operator(d)
        assert op.packed and op.nbytes == d.packed_bits().nbytes
        y = (d.matrix()[:, 0] > 0).to(torch.int64)
        a = solve_readout(d, y, loss="squared", reg=0.05, tol=1e-10)
        b = solve_readout(d.matrix(), y, loss="squared", reg=0.05, tol=1e-10)
        torch.testing.assert_close(a.W, b.W, rtol=1e-6, atol=1e-7)
        assert a.certificate.rel_gap <= 1e-10


def test_dense_block_of_a_packed_operator_is_refused_up_front(monkeypatch):
    w, X = _random_case(5, n=64)
    op = build_dictionary(w, X, steps="all", storage="packed").operator()
    monkeypatch.setenv("CONVEXSNN_MAX_BYTES", str(op.shape[0] * 8))  # one float64 column
    assert op.columns([0]).dense().shape == (op.shape[0], 1)
    with pytest.raises(ValueError, match=r"dense .* block of the packed dictionary.*needs"):
        op.columns([0, 1]).dense()


def test_padding_bits_of_the_last_byte_are_ignored():
    """Rows past n in the last packed byte (set in a crafted array) change neither the products
    nor the column counts."""
    from convexsnn.dictionary import SpikeOperator
    from convexsnn.dictionary.storage import _column_counts

    g = torch.Generator().manual_seed(3)
    n, P = 13, 300
    M = (torch.rand(n, P, generator=g) < 0.4).to(torch.float64)
    packed = np.packbits(M.numpy().astype(bool), axis=0)
    packed[-1] |= 0x07  # rows 13, 14, 15 do not exist
    W = torch.randint(-9, 9, (P, 2), generator=g).to(torch.float64)
    R = torch.randint(-9, 9, (n, 2), generator=g).to(torch.float64)
    for cols in (slice(None), slice(0, 4)):  # lookup tables, and direct bit additions
        op = SpikeOperator(packed=torch.from_numpy(packed[:, cols].copy()), n_rows=n)
        assert torch.equal(op.matmul(W[cols]), M[:, cols] @ W[cols])
        assert torch.equal(op.rmatmul(R), M[:, cols].T @ R)
    assert np.array_equal(_column_counts(packed, n), M.sum(0).numpy().astype(np.int64))


def test_auto_chunk_keeps_every_buffer_under_the_cap():
    from convexsnn.dictionary import _auto_chunk

    w = gaussian_witnesses(196, hidden_widths=[16384], dtype=torch.float32)
    c = _auto_chunk(w, 4, "spike")
    assert c % 8 == 0 and c * 4 * 16384 * 4 <= 1 << 24
    assert _auto_chunk(w, 4, "spike", max_buffer=1 << 40) > c  # the old budget alone
    small = gaussian_witnesses(3, hidden_widths=[4], dtype=torch.float32)
    assert _auto_chunk(small, 5, "membrane") % 8 == 0


@pytest.mark.parametrize(
    "layers, reset, dtype, bias",
    [
        ([512], "subtract", torch.float32, False),
        ([8, 300], "zero", torch.float32, True),
        ([64], "subtract", torch.float64, True),
    ],
)
def test_compiled_last_step_scan_equals_the_lif_simulation(monkeypatch, layers, reset, dtype, bias):
    # the compiled scan keeps only the last step: its spikes must be bit-identical to the full
    # simulation's (float32 currents near the threshold make any reordering show)
    from convexsnn.dictionary import simulate as sim

    g = torch.Generator().manual_seed(3)
    X = torch.rand(203, 4, 20, generator=g, dtype=dtype)
    w = gaussian_witnesses(20, n_branches=2, hidden_widths=layers, scale=0.3, seed=1, dtype=dtype)
    w.theta, w.reset, w.leak = 0.37, reset, 0.93
    if bias:
        w.biases = [0.05 * torch.randn(2, m, generator=g, dtype=dtype) for m in layers]
    expect = w.readout(X)[:, -1]  # (n, K * n_last), through lif.simulate
    assert sim._fused_ok(w, X)
    got = sim._last_spikes_fused(w, X)
    assert got.dtype == torch.bool and torch.equal(got, expect)
    assert 0.05 < float(expect.float().mean()) < 0.95  # spikes and silences both present
    # build_dictionary takes this path (the per-step simulation is not called)
    calls = []
    monkeypatch.setattr(type(w), "simulate", lambda *a, **k: calls.append(1) or 1 / 0)
    d = build_dictionary(w, X, dedupe=False)
    assert not calls and torch.equal(d.matrix(torch.bool), expect)


@pytest.mark.parametrize("shape", [(8, 1), (64, 300), (24, 0)])
def test_compiled_row_packing_equals_numpy_packbits(shape):
    from convexsnn.dictionary._kernels import pack_rows

    bits = np.random.default_rng(shape[0]).random(shape) < 0.3
    assert np.array_equal(pack_rows(bits), np.packbits(bits, axis=0))
    with pytest.raises(ValueError, match="multiple of 8"):
        pack_rows(bits[:-1]) if shape[0] > 1 else pack_rows(np.zeros((3, 2), bool))
