"""ParallelSNN: structure, readouts, persistence and input checks."""

import json
import os
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import rand_inputs, small_net
from convexsnn import ParallelSNN
from convexsnn.lif import simulate

_net = partial(small_net, 3, 5, n_branches=4, depth=3, p_rec=32, p_last=16)
_x = partial(rand_inputs, n=6, T=7)


def test_default_widths_follow_depth_rule():
    net = ParallelSNN(2, 2, n_branches=4, depth=5, p_rec=64, p_last=32)
    assert net.hidden_widths == [16, 16, 16, 8]
    assert len(net.weights) == 4  # depth counts the output layer
    assert net.n_features == 32
    assert ParallelSNN(2, 2, depth=2, p_last=10).hidden_widths == [10]


def test_forward_equals_features_times_output_weight():
    net = _net()
    x = _x()
    with torch.no_grad():
        r = net.features(x)
        z = net(x)
    assert r.shape == (6, 7, 16)
    assert set(r.unique().tolist()) <= {0.0, 1.0} and r.sum() > 0
    assert torch.equal(z, r[:, -1] @ net.output_weight)


def test_branches_are_independent():
    """Changing a weight of branch 0 leaves the readout of branch 1 untouched."""
    net = _net()
    x = _x()
    with torch.no_grad():
        before = net.features(x)
        net.weights[0][0] += 1.0
        after = net.features(x)
    n_last = net.hidden_widths[-1]
    assert torch.equal(before[..., n_last:], after[..., n_last:])


def test_features_equal_lif_simulate():
    net = _net(output="all")
    x = _x(1)
    with torch.no_grad():
        trace = simulate(x, list(net.weights), leak=0.99, theta=1.0)
        assert torch.equal(net.features(x), trace.spikes[-1].reshape(6, 7, -1))
        assert net(x).shape == (6, 7, 5)


def test_membrane_readout_is_indicator_of_post_reset_membrane():
    net = _net(readout="membrane", readout_bias=0.25)
    x = _x(2)
    with torch.no_grad():
        trace = net.simulate(x, return_membrane=True)
        expected = (trace.membranes[-1] >= 0.25).float().reshape(6, 7, -1)
        assert torch.equal(net.features(x), expected)


def test_provenance_maps_features_to_branch_and_neuron():
    net = _net()
    prov = net.provenance()
    assert prov.shape == (16, 2)
    assert prov[5].tolist() == [1, 1]  # 4 neurons per branch


def test_path_norm_matches_explicit_sum():
    net = ParallelSNN(2, 3, n_branches=2, hidden_widths=[3, 2], seed=1, dtype=torch.float64)
    total = 0.0
    w_out = net.output_weight.detach().abs().reshape(2, 2, 3)
    for k in range(2):
        a = net.weights[0][k].detach().abs()
        b = net.weights[1][k].detach().abs()
        total += float(
            torch.ones(2, dtype=torch.float64)
            @ a
            @ b
            @ w_out[k]
            @ torch.ones(3, dtype=torch.float64)
        )
    assert net.path_norm().item() == pytest.approx(total, rel=1e-12)


def test_seed_gives_identical_weights():
    a, b, c = _net(seed=5), _net(seed=5), _net(seed=6)
    for p, q, r in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(p, q)
    assert not torch.equal(a.weights[0], c.weights[0])


@pytest.mark.parametrize("suffix", ["model_dir", "model.npz"])
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"readout": "membrane", "bias": True, "output_bias": True},
        {"recurrent": "diagonal", "dtype": torch.float64},
    ],
)
def test_save_load_round_trip(tmp_path, suffix, kw):
    net = _net(**kw)
    x = _x(3)
    path = net.save(tmp_path / suffix, extra={"note": "hello"})
    loaded = ParallelSNN.load(path)
    assert loaded.config == net.config
    assert loaded.saved_extra == {"note": "hello"}
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_save_overwrites_existing_directory_atomically(tmp_path):
    a, b = _net(seed=1), _net(seed=2)
    a.save(tmp_path / "m")
    b.save(tmp_path / "m")
    assert torch.equal(ParallelSNN.load(tmp_path / "m").weights[0], b.weights[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary left behind


def test_load_refuses_corrupt_weights(tmp_path):
    path = _net().save(tmp_path / "m")
    raw = bytearray((path / "weights.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (path / "weights.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        ParallelSNN.load(path)


def test_load_refuses_truncated_single_file(tmp_path):
    path = _net().save(tmp_path / "m.npz")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="corrupt|could not be read"):
        ParallelSNN.load(path)


def _reseal(meta):
    """Recompute the whole-config checksum the way save() does (sha256 of canonical JSON)."""
    import hashlib

    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    meta["meta_sha256"] = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    return meta


def test_load_refuses_mismatched_config(tmp_path):
    path = _net().save(tmp_path / "m")
    meta = json.loads((path / "config.json").read_text())
    meta["config"]["hidden_widths"] = [8, 8]
    (path / "config.json").write_text(json.dumps(_reseal(meta)))
    with pytest.raises(ValueError, match="shape"):
        ParallelSNN.load(path)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["config"].__setitem__("leak", 0.5),
        lambda m: m["extra"].__setitem__(
            "task_spec",
            {"kind": "task", "name": "mnist", "options": {"download": True, "directory": "/tmp/x"}},
        ),
        lambda m: m.__setitem__("shapes", {}),
    ],
)
def test_load_refuses_edited_config(tmp_path, edit):
    path = _net().save(tmp_path / "m", extra={"task_spec": {"kind": "task", "name": "xor"}})
    meta = json.loads((path / "config.json").read_text())
    edit(meta)
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="config checksum mismatch"):
        ParallelSNN.load(path)


def test_load_reads_format_version_1_with_a_warning(tmp_path, caplog):
    """Models saved by the previous version (weights-only checksum) still load."""
    net = _net()
    path = net.save(tmp_path / "m")
    meta = json.loads((path / "config.json").read_text())
    meta["format_version"] = 1
    del meta["meta_sha256"]
    (path / "config.json").write_text(json.dumps(meta))
    with caplog.at_level("WARNING", logger="convexsnn"):
        loaded = ParallelSNN.load(path)
    assert torch.equal(loaded.weights[0], net.weights[0])
    assert "format version 1" in caplog.text and "save it again" in caplog.text
    loaded.save(path)  # re-saving upgrades it
    assert json.loads((path / "config.json").read_text())["format_version"] == 2


# ---------------------------------------------------------------- saving never deletes (issue 14)
def test_save_keeps_a_file_next_to_the_target(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    _net(seed=1).save(tmp_path / "m")
    _net(seed=2).save(tmp_path / "m")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "notes.txt"]


def test_save_refuses_a_folder_that_is_not_a_model(tmp_path):
    d = tmp_path / "thesis"
    (d / "sub").mkdir(parents=True)
    (d / "notes.txt").write_text("mine")
    (d / "sub" / "thesis.tex").write_text("tex")
    with pytest.raises(FileExistsError, match="not a convexsnn model.*overwrite"):
        _net().save(d)
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt", "sub"]
    # asked explicitly: the model is written beside the user's files, which are kept
    net = _net(seed=3)
    net.save(d, overwrite=True)
    assert (d / "notes.txt").read_text() == "mine" and (d / "sub" / "thesis.tex").exists()
    assert torch.equal(ParallelSNN.load(d).weights[0], net.weights[0])
    # a model folder holding a user's file: replaced, the file kept
    _net(seed=4).save(d)
    assert (d / "notes.txt").exists() and (d / "sub" / "thesis.tex").exists()


def test_save_to_cwd_is_refused_clearly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="refusing to save into .*non-empty folder"):
        _net().save(".")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_save_refuses_bad_targets_and_foreign_npz(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OSError, match="is a file"):
        _net().save(f)
    with pytest.raises(OSError, match="lies under .*which is a file"):
        _net().save(f / "m")
    other = tmp_path / "data.npz"
    np.savez(other, a=np.arange(3))
    with pytest.raises(FileExistsError, match="not a convexsnn model file"):
        _net().save(other)
    assert np.load(other)["a"].tolist() == [0, 1, 2]
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # root may write anywhere
            with pytest.raises(OSError, match="not writable"):
                _net().save(ro / "m")
    finally:
        ro.chmod(0o700)


def test_load_refuses_garbage_and_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        ParallelSNN.load(tmp_path / "nothing")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError):
        ParallelSNN.load(tmp_path / "junk.npz")
    d = tmp_path / "d"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    (d / "weights.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="JSON"):
        ParallelSNN.load(d)


# ---------------------------------------------------------------- bad input (issue point 5)
@pytest.mark.parametrize(
    "x, match",
    [
        (torch.zeros(4, 3), "shape \\(batch, T, features\\)"),
        (torch.zeros(2, 3, 4, 5), "shape \\(batch, T, features\\)"),
        (torch.zeros(2, 5, 4), "features"),
        (torch.full((2, 5, 3), float("nan")), "NaN"),
        (torch.full((2, 5, 3), float("inf")), "inf"),
        (torch.zeros(0, 5, 3), "at least one sample"),
    ],
)
def test_bad_inputs_raise_value_error(x, match):
    with pytest.raises(ValueError, match=match):
        _net()(x)


def test_non_numeric_input_raises_type_error():
    with pytest.raises(TypeError, match="x"):
        _net()(np.array([["a"]], dtype=object))
    with pytest.raises(TypeError, match="x"):
        _net()("not an array")


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        ({"p_rec": 0}, ValueError, "p_rec"),
        ({"p_last": -4}, ValueError, "p_last"),
        ({"hidden_widths": [4, 0]}, ValueError, "hidden_widths\\[1\\]"),
        ({"p_rec": 30}, ValueError, "not divisible by n_branches"),
        ({"n_branches": 0}, ValueError, "n_branches"),
        ({"depth": 1}, ValueError, "depth"),
        ({"surrogate": "tanh"}, ValueError, "surrogate"),
        ({"reset": "hard"}, ValueError, "reset"),
        ({"readout": "rate"}, ValueError, "readout"),
        ({"recurrent": "full"}, ValueError, "recurrent"),
        ({"leak": 1.5}, ValueError, "leak"),
        ({"theta": 0.0}, ValueError, "theta"),
        ({"p_rec": 2.5}, TypeError, "p_rec"),
    ],
)
def test_bad_constructor_arguments(kw, exc, match):
    with pytest.raises(exc, match=match):
        _net(**kw)


def test_one_prediction_rule_for_network_training_and_convex_readout():
    """network.predict, the training accuracy and convex.predict_from_scores share one rule:
    one column -> score > 0 (0 is class 0); several -> first arg-max."""
    from convexsnn._scores import classes_from_scores
    from convexsnn.convex import predict_from_scores
    from convexsnn.train import _Layout, _n_correct

    one = torch.tensor([[0.5], [-0.1], [0.0]])
    assert classes_from_scores(one).tolist() == [1, 0, 0]
    many = torch.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, -1.0]])
    assert classes_from_scores(many).tolist() == [1, 0]
    assert torch.equal(predict_from_scores(many), classes_from_scores(many))
    assert torch.equal(predict_from_scores(one[:, 0]), classes_from_scores(one))
    layout = _Layout(label_mode="sequence", heads=(3,), explicit_heads=False)
    assert _n_correct(many, torch.tensor([[1], [0]]), layout) == 2
    assert _n_correct(many, torch.tensor([[2], [0]]), layout) == 1  # tie goes to class 1
    # the network's own predict: a 1-output network whose score is exactly 0 predicts class 0
    net = ParallelSNN(3, 1, hidden_widths=[4], seed=0)
    x = torch.rand(5, 2, 3)
    assert torch.equal(net.predict(x), classes_from_scores(net(x)))
    assert net.predict(x).tolist() == [0] * 5  # output weights start at zero
    assert classes_from_scores(net(x)).dtype == torch.int64


def test_save_into_a_model_folder_that_is_the_working_folder(tmp_path, monkeypatch):
    d = tmp_path / "m"
    _net(seed=1).save(d)
    monkeypatch.chdir(d)
    net = _net(seed=2)
    net.save(".")
    assert Path.cwd() == d and sorted(os.listdir(d)) == ["config.json", "weights.npz"]
    assert torch.equal(ParallelSNN.load(d).weights[0], net.weights[0])
