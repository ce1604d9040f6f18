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
