"""Persistence shared by models and dictionaries (``convexsnn._persist``).

Files written by convexsnn before the shared module (``tests/data/saved_v0``, saved by main at
b3a5d88) must still load and give the same objects; the shared rules (no pickle, checksums,
refuse to clobber a foreign file) hold for both kinds of save.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from convexsnn import ParallelSNN
from convexsnn._persist import (
    arrays_sha256,
    check_archive_target,
    meta_sha256,
    read_archive,
    write_archive,
)
from convexsnn.dictionary import SpikeDictionary, build_dictionary
from convexsnn.witnesses import gaussian_witnesses

DATA = Path(__file__).parent / "data" / "saved_v0"


@pytest.mark.parametrize("storage", ["packed", "bool"])
def test_dictionary_saved_by_earlier_version_loads(storage):
    d = SpikeDictionary.load(DATA / f"dictionary_{storage}.npz")
    exp = np.load(DATA / "dictionary_expected.npz")
    assert d.storage == storage
    assert np.array_equal(d.matrix(torch.uint8).numpy(), exp["matrix"])
    assert np.array_equal(d.provenance, exp["provenance"])
    # the witnesses travelled with it: simulating them again gives the same columns
    assert np.array_equal(d.transform(torch.from_numpy(exp["X"])).numpy(), exp["matrix"])


@pytest.mark.parametrize("name", ["model.npz", "model_dir"])
def test_model_saved_by_earlier_version_loads(name):
    net = ParallelSNN.load(DATA / name)
    exp = np.load(DATA / "model_expected.npz")
    got = net.state_arrays()
    assert set(got) == set(exp.files)
    for k in exp.files:
        assert np.array_equal(got[k], exp[k]), k
    if name == "model.npz":
        assert net.saved_extra == {"note": "saved by convexsnn main b3a5d88"}


def test_archive_round_trip_and_checksums(tmp_path):
    arrays = {"a": np.arange(5, dtype=np.int64), "b": np.ones((2, 3), np.float32)}
    meta = {"format": "test.Thing", "format_version": 1, "sha": arrays_sha256(arrays)}
    p = write_archive(tmp_path / "x.npz", meta, arrays)
    m, a = read_archive(p, "thing")
    assert m == meta and set(a) == {"a", "b"}
    assert arrays_sha256(a) == meta["sha"]
    a["a"][0] = 7  # any change of content changes the checksum
    assert arrays_sha256(a) != meta["sha"]
    assert meta_sha256({**meta, "meta_sha256": "x"}) == meta_sha256(meta)
    assert meta_sha256({**meta, "format_version": 2}) != meta_sha256(meta)


def test_archive_refuses_pickles_and_foreign_files(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "obj.npz").write_bytes((tmp_path / "obj.npy").read_bytes())
    with pytest.raises(ValueError, match="obj.npz"):
        read_archive(tmp_path / "obj.npz", "thing")
    np.savez(tmp_path / "plain.npz", X=np.zeros(3))
    with pytest.raises(ValueError, match="not a convexsnn thing file"):
        read_archive(tmp_path / "plain.npz", "thing")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="could not be read"):
        read_archive(tmp_path / "text.npz", "thing")
    with pytest.raises(FileNotFoundError):
        read_archive(tmp_path / "missing.npz", "thing")


def test_dictionary_save_refuses_to_clobber_a_foreign_file(tmp_path):
    X = torch.rand(12, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    w = gaussian_witnesses(3, hidden_widths=[5], n_branches=2, scale=2.0, dtype=torch.float64)
    d = build_dictionary(w, X)
    data = tmp_path / "data.npz"
    np.savez(data, X=X.numpy())
    before = data.read_bytes()
    with pytest.raises(FileExistsError, match="not a convexsnn SpikeDictionary.*overwrite"):
        d.save(data)
    assert data.read_bytes() == before  # untouched
    # a previous dictionary save is replaced; overwrite=True replaces anything
    p = d.save(tmp_path / "d.npz")
    d.save(p)
    assert torch.equal(SpikeDictionary.load(p).matrix(), d.matrix())
    d.save(data, overwrite=True)
    assert torch.equal(SpikeDictionary.load(data).matrix(), d.matrix())
    # a model file is not a dictionary, and the other way round
    net = ParallelSNN(n_inputs=3, n_outputs=2, hidden_widths=[4])
    m = net.save(tmp_path / "m.npz")
    with pytest.raises(FileExistsError):
        d.save(m)
    with pytest.raises(FileExistsError):
        net.save(p)
    with pytest.raises(ValueError, match="not a convexsnn ParallelSNN save|not a convexsnn model"):
        ParallelSNN.load(p)
    with pytest.raises(ValueError, match="not a convexsnn SpikeDictionary save"):
        SpikeDictionary.load(m)


def test_check_archive_target_refuses_folders(tmp_path):
    (tmp_path / "f.npz").mkdir()
    with pytest.raises(OSError, match="folder"):
        check_archive_target(tmp_path / "f.npz", "test.Thing", "thing")
