"""Tests of the task generators and loaders (convexsnn.tasks).

Labels are always checked against an independent computation: direct XOR,
sums mod 2, Python regular expressions for the Tomita grammars, a plain-Python
re-run of the stored DFA table, and Python integers for addition.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from convexsnn.tasks import (
    DFA,
    MNIST_FILES,
    MNIST_SHA256,
    TASK_NAMES,
    Split,
    TaskData,
    addition,
    addition_metrics,
    addition_operands,
    addition_rollout,
    addition_split,
    load_mnist_idx,
    load_task,
    mnist_split_indices,
    parity,
    parity_dfa,
    parity_k_dfa,
    parity_odd_dfa,
    random_dfa,
    read_idx_gz,
    tomita_dfa,
)

MNIST_DIR = Path(
    os.environ.get(
        "CONVEXSNN_MNIST_DIR",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist",
    )
)
needs_mnist = pytest.mark.skipif(
    not all((MNIST_DIR / f).is_file() for f in MNIST_FILES),
    reason=f"MNIST files not found in {MNIST_DIR}",
)

SMALL = dict(n_train=300, n_val=100, n_test=400)


def decode(X: torch.Tensor) -> np.ndarray:
    """One-hot (n, T, S) -> symbols (n, T), checking it is a valid one-hot code."""
    Xn = X.numpy()
    assert set(np.unique(Xn)) <= {0.0, 1.0}
    assert np.all(Xn.sum(-1) == 1.0)
    return Xn.argmax(-1)


def as_strings(sym: np.ndarray) -> list[str]:
    return ["".join(str(int(v)) for v in row) for row in sym]


def assert_data_equal(a: TaskData, b: TaskData) -> None:
    sa, sb = a.splits(), b.splits()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k].X, sb[k].X), k
        assert torch.equal(sa[k].y, sb[k].y), k
    assert a.meta == b.meta


# independent membership tests for the Tomita grammars; 3 has two definitions, keyed by name
TOMITA = {
    1: lambda s: re.fullmatch(r"1*", s) is not None,
    2: lambda s: re.fullmatch(r"(?:10)*", s) is not None,
    # textbook: reject an odd maximal run of 1s immediately followed by an odd maximal run of 0s
    "3_textbook": lambda s: re.search(r"(?:^|0)(?:11)*1(?:00)*0(?!0)", s) is None,
    # the paper's code: reject every string containing 101
    "3_paper": lambda s: "101" not in s,
    4: lambda s: re.search(r"000", s) is None,
    5: lambda s: s.count("0") % 2 == 0 and s.count("1") % 2 == 0,
    6: lambda s: (s.count("0") - s.count("1")) % 3 == 0,
    7: lambda s: re.fullmatch(r"0*1*0*1*", s) is not None,
}


# ---------------------------------------------------------------------------
# containers, names, options
# ---------------------------------------------------------------------------


def test_split_validation():
    with pytest.raises(ValueError):
        Split(torch.zeros(3, 4), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError):
        Split(torch.zeros(3, 4, 2), torch.zeros(3, dtype=torch.int32))
    with pytest.raises(ValueError):
        Split(torch.zeros(3, 4, 2), torch.zeros(3, 5, dtype=torch.int64))
    s = Split(torch.zeros(3, 4, 2), torch.zeros(3, 4, 2, dtype=torch.int64))
    assert (len(s), s.T, s.input_size) == (3, 4, 2)


def test_unknown_task_name_lists_valid_names():
    with pytest.raises(ValueError) as exc:
        load_task("nope")
    for name in (
        "xor",
        "parity_k",
        "parity_odd",
        "parity_prefix",
        "tomita1",
        "tomita3_paper",
        "tomita3_textbook",
        "tomita7",
        "dfa",
        "mnist",
        "addition",
    ):
        assert name in str(exc.value)
        assert any(n.startswith(name) for n in TASK_NAMES)


@pytest.mark.parametrize(
    "name, options, argument",
    [
        ("xor", dict(T=1), "T"),
        ("xor", dict(T=0), "T"),
        ("xor", dict(n_train=-1), "n_train"),
        ("xor", dict(n_val=-5), "n_val"),
        ("xor", dict(n_test=-1), "n_test"),
        ("xor", dict(seed=-1), "seed"),
        ("xor", dict(ood_lengths=(0,)), "ood_lengths"),
        ("parity_prefix", dict(T=4, k=5), "k"),
        ("parity_k", dict(T=4, k=1), "k"),
        ("parity_k3", dict(T=4, k=3), "given twice"),
        ("tomita3", dict(T=8), "tomita3_paper"),
        ("tomita3", dict(T=8), "tomita3_textbook"),
        ("parity", dict(T=8), "parity_k"),
        ("parity", dict(T=8), "parity_odd"),
        ("parity-3", dict(T=8), "parity_prefix"),
        ("tomita5", dict(T=7, **SMALL), "T=7"),
        ("tomita2", dict(T=6, ood_lengths=(9,), **SMALL), "T=9"),
        ("dfa", dict(n_states=1), "n_states"),
        ("dfa", dict(alphabet_size=1), "alphabet_size"),
        ("addition", dict(base=1), "base"),
        ("addition", dict(n_digits=0), "n_digits"),
        ("addition", dict(n_train=-3), "n_train"),
        ("addition", dict(ood_n_digits=(0,)), "ood_n_digits"),
        ("mnist", dict(directory=str(MNIST_DIR), T=5), "T"),
        ("mnist", dict(directory=str(MNIST_DIR), n_val=-1), "n_val"),
        ("mnist", dict(directory=str(MNIST_DIR), n_train=-1), "n_train"),
        ("mnist", dict(directory=str(MNIST_DIR), n_test=10001), "n_test"),
        ("mnist", dict(), "directory"),
    ],
)
def test_bad_options_raise_value_error_naming_argument(name, options, argument):
    with pytest.raises(ValueError, match=re.escape(argument)):
        load_task(name, **options)


# ---------------------------------------------------------------------------
# FIRST-LAST-XOR
# ---------------------------------------------------------------------------


def test_xor_defaults_labels_balance_and_ood():
    data = load_task("xor", T=6)
    assert (data.train.n, data.val.n, data.test.n) == (2000, 2000, 4000)
    assert data.n_classes == 2 and data.label_mode == "sequence" and data.name == "xor"
    assert set(data.ood) == {"T=12", "T=30"}
    json.dumps(data.meta)
    for key, split in data.splits().items():
        T = 6 if not key.startswith("ood") else int(key.split("=")[1])
        assert split.X.shape == (split.n, T, 2) and split.X.dtype == torch.float32
        assert split.y.shape == (split.n,) and split.y.dtype == torch.int64
        sym = decode(split.X)
        expected = sym[:, 0] ^ sym[:, -1]
        assert np.array_equal(split.y.numpy(), expected), key
        assert int(split.y.sum()) == split.n // 2, key  # exactly balanced


def test_xor_odd_size_and_iid_mode():
    data = load_task("xor", T=8, n_train=7, n_val=0, n_test=5, ood_lengths=())
    assert data.val.n == 0 and data.ood == {}
    assert int(data.train.y.sum()) == 3 and int(data.test.y.sum()) == 2
    iid = load_task("xor", T=8, n_train=2000, n_val=10, n_test=10, balanced=False, ood_lengths=())
    sym = decode(iid.train.X)
    assert np.array_equal(iid.train.y.numpy(), sym[:, 0] ^ sym[:, -1])
    assert 0.4 < iid.train.y.float().mean() < 0.6


def test_balanced_sampling_is_uniform_within_class():
    # T=3, class 1 = {001, 011, 100, 110}: each should get about 1/4 of 4000 samples
    data = load_task("xor", T=3, n_train=8000, n_val=0, n_test=0, ood_lengths=())
    strings = as_strings(decode(data.train.X))
    pos = [s for s, y in zip(strings, data.train.y.tolist()) if y == 1]
    counts = {s: pos.count(s) for s in set(pos)}
    assert set(counts) == {"001", "011", "100", "110"}
    assert all(850 < c < 1150 for c in counts.values()), counts


# ---------------------------------------------------------------------------
# parity, Tomita, random DFA
# ---------------------------------------------------------------------------


def test_parity_k_is_the_papers_ones_count_mod_k():
    # the paper's parity_k: label 1 iff #ones mod k == 0 (independent rule: Python str.count)
    for k, T in ((2, 9), (3, 7), (5, 11)):
        data = load_task(f"parity_k{k}", T=T, **SMALL)
        assert data.name == f"parity_k{k}" and data.meta["k"] == k
        for key, split in data.splits().items():
            strings = as_strings(decode(split.X))
            expected = [int(s.count("1") % k == 0) for s in strings]
            assert split.y.tolist() == expected, (k, key)
            assert int(split.y.sum()) == split.n // 2, (k, key)
        assert_data_equal(data, load_task("parity_k", k=k, T=T, **SMALL))
    # every string of a small length, through the DFA alone
    for k in (2, 3, 4):
        for T in range(0, 10):
            sym = np.array(list(itertools.product([0, 1], repeat=T)), dtype=np.int64).reshape(
                2**T, T
            )
            expected = [int(s.count("1") % k == 0) for s in as_strings(sym)]
            assert parity_k_dfa(k).accepts(sym).tolist() == expected, (k, T)


def test_parity_odd_and_prefix_are_the_textbook_variants():
    data = load_task("parity_odd", T=9, **SMALL)
    for key, split in data.splits().items():
        strings = as_strings(decode(split.X))
        assert split.y.tolist() == [s.count("1") % 2 for s in strings], key
        assert int(split.y.sum()) == split.n // 2
    # parity_k2 is the exact complement of parity_odd on every string
    sym = np.array(list(itertools.product([0, 1], repeat=8)), dtype=np.int64)
    assert np.array_equal(parity_k_dfa(2).accepts(sym), 1 - parity_odd_dfa().accepts(sym))
    data3 = load_task("parity_prefix3", T=6, **SMALL)
    assert data3.name == "parity_prefix3" and data3.meta["k"] == 3
    for key, split in data3.splits().items():
        strings = as_strings(decode(split.X))
        assert split.y.tolist() == [s[:3].count("1") % 2 for s in strings], key
    assert_data_equal(data3, load_task("parity_prefix", T=6, k=3, **SMALL))


def test_removed_names_raise_and_point_to_the_new_ones():
    for call in (lambda: parity(T=8), lambda: parity_dfa(), lambda: parity_dfa(3)):
        with pytest.raises(ValueError, match="parity_k.*parity_odd.*parity_prefix"):
            call()
    with pytest.raises(ValueError, match="variant='paper'.*variant='textbook'"):
        tomita_dfa(3)


TOMITA_CASES = [
    (1, None),
    (2, None),
    (3, "paper"),
    (3, "textbook"),
    (4, None),
    (5, None),
    (6, None),
    (7, None),
]


def _tomita_rule(k, variant):
    return TOMITA[f"3_{variant}"] if k == 3 else TOMITA[k]


@pytest.mark.parametrize("k, variant", TOMITA_CASES)
def test_tomita_dfa_matches_regex_exhaustively(k, variant):
    rule = _tomita_rule(k, variant)
    for v in (variant,) if k == 3 else (None, "paper", "textbook"):
        dfa = tomita_dfa(k, v)
        for T in range(0, 11):
            sym = np.array(list(itertools.product([0, 1], repeat=T)), dtype=np.int64).reshape(
                2**T, T
            )
            got = dfa.accepts(sym)
            expected = np.array([rule(s) for s in as_strings(sym)], dtype=np.int64)
            assert np.array_equal(got, expected), (k, v, T)
            n0, n1 = dfa.count(T)
            assert (n0, n1) == (int((expected == 0).sum()), int(expected.sum()))


def test_tomita3_variants_disagree_on_21_8_percent_at_length_12():
    sym = np.array(list(itertools.product([0, 1], repeat=12)), dtype=np.int64)
    paper = tomita_dfa(3, "paper").accepts(sym)
    textbook = tomita_dfa(3, "textbook").accepts(sym)
    # the references themselves, to hold the DFAs to them at this length too
    strings = as_strings(sym)
    assert paper.tolist() == [int(TOMITA["3_paper"](s)) for s in strings]
    assert textbook.tolist() == [int(TOMITA["3_textbook"](s)) for s in strings]
    disagree = int((paper != textbook).sum())
    assert disagree == 891 and round(100 * disagree / 4096, 1) == 21.8


@pytest.mark.parametrize("k, variant", TOMITA_CASES)
def test_tomita_task_labels_and_balance(k, variant):
    name = f"tomita{k}" + ("" if variant is None else f"_{variant}")
    data = load_task(name, T=8, **SMALL)
    assert data.name == name
    assert set(data.ood) == {"T=16", "T=40"}
    rule = _tomita_rule(k, variant)
    for key, split in data.splits().items():
        strings = as_strings(decode(split.X))
        expected = np.array([rule(s) for s in strings], dtype=np.int64)
        assert np.array_equal(split.y.numpy(), expected), key
        assert int(split.y.sum()) == split.n // 2, key
    if k == 1:  # a single positive string per length: constructed, repeated
        pos = {s for s, y in zip(as_strings(decode(data.train.X)), data.train.y.tolist()) if y}
        assert pos == {"1" * 8}


def _run_table(meta_dfa: dict, string: list[int]) -> int:
    q = meta_dfa["start"]
    for a in string:
        q = meta_dfa["transitions"][q][a]
    return int(meta_dfa["accepting"][q])


def test_random_dfa_labels_nontrivial_and_seeded():
    data = load_task("dfa", n_states=7, alphabet_size=3, T=10, **SMALL)
    assert data.input_size == 3
    m = data.meta["dfa"]
    assert len(m["transitions"]) == 7 and len(m["transitions"][0]) == 3
    assert 0.2 <= data.meta["accepted_fraction"] <= 0.8
    json.dumps(data.meta)
    for key, split in data.splits().items():
        sym = decode(split.X)
        expected = [_run_table(m, list(row)) for row in sym]
        assert split.y.tolist() == expected, key
        assert int(split.y.sum()) == split.n // 2
    # the DFA depends on dfa_seed (default: seed), the strings on seed
    other = load_task("dfa", n_states=7, alphabet_size=3, T=10, dfa_seed=1, **SMALL)
    assert other.meta["dfa"] != m
    same_dfa = load_task("dfa", n_states=7, alphabet_size=3, T=10, seed=5, dfa_seed=0, **SMALL)
    assert same_dfa.meta["dfa"] == m
    # exact non-triviality on uniform strings, checked by enumeration
    dfa = random_dfa(5, 2, seed=3, T=9)
    sym = np.array(list(itertools.product([0, 1], repeat=9)))
    frac = np.mean([_run_table(dfa.to_dict(), list(r)) for r in sym])
    assert 0.2 <= frac <= 0.8 and frac == pytest.approx(dfa.accepted_fraction(9))
    assert isinstance(DFA.from_dict(dfa.to_dict()), DFA)


@pytest.mark.parametrize("name", ["xor", "parity_k3", "tomita3_paper", "dfa", "addition"])
def test_seeds_reproduce_and_differ(name):
    opts = dict(SMALL) if name != "addition" else dict(n_train=200, n_val=50, n_test=100)
    a = load_task(name, seed=11, **opts)
    b = load_task(name, seed=11, **opts)
    assert_data_equal(a, b)
    c = load_task(name, seed=12, **opts)
    assert not torch.equal(a.train.X, c.train.X)
    assert not torch.equal(a.test.X, c.test.X)
    # splits are independent streams: changing the OOD sets leaves train/val/test alone
    ood_key = "ood_n_digits" if name == "addition" else "ood_lengths"
    d = load_task(name, seed=11, **opts, **{ood_key: ()})
    for k in ("train", "val", "test"):
        assert torch.equal(getattr(a, k).X, getattr(d, k).X)
        assert torch.equal(getattr(a, k).y, getattr(d, k).y)
    # train and test come from different streams
    assert not torch.equal(a.train.X[:50], a.test.X[:50])


# ---------------------------------------------------------------------------
# addition
# ---------------------------------------------------------------------------


def _digits_to_int(digits, base) -> int:
    return sum(int(d) * base**i for i, d in enumerate(digits))


def _int_to_digits(value: int, base: int, n: int) -> list[int]:
    out = []
    for _ in range(n):
        out.append(value % base)
        value //= base
    assert value == 0
    return out


@pytest.mark.parametrize("base", [2, 3, 5, 7, 10])
def test_addition_labels_against_python_integers(base):
    data = load_task("addition", base=base, n_train=200, n_val=50, n_test=100, seed=base)
    assert data.n_classes == [base, 2] and data.label_mode == "token"
    assert set(data.ood) == {"n_digits=10", "n_digits=25", "n_digits=50"}
    json.dumps(data.meta)
    for key, split in data.splits().items():
        nd = 5 if not key.startswith("ood") else int(key.split("=")[1])
        T = nd + 1
        assert split.X.shape == (split.n, T, 3) and split.y.shape == (split.n, T, 2)
        raw = split.X.numpy().astype(np.float64) * (base - 1)
        ints = np.round(raw).astype(np.int64)
        assert np.allclose(raw, ints, atol=1e-5)
        assert np.all(ints[:, -1, :2] == 0)  # final step: a = b = 0
        for i in range(split.n):
            a = _digits_to_int(ints[i, :nd, 0], base)
            b = _digits_to_int(ints[i, :nd, 1], base)
            total = a + b
            assert split.y[i, :, 0].tolist() == _int_to_digits(total, base, T)
            # carry out of step t = the part of (a mod base^(t+1) + b mod base^(t+1)) that overflows
            carries = [
                ((a % base ** (t + 1)) + (b % base ** (t + 1))) // base ** (t + 1) for t in range(T)
            ]
            assert split.y[i, :, 1].tolist() == carries
            assert ints[i, :, 2].tolist() == [0] + carries[:-1]  # teacher-forced carry in
    a_d, b_d = addition_operands(data.test.X, base)
    assert a_d.shape == (data.test.n, 5)
    assert torch.equal(addition_split(a_d, b_d, base).X, data.test.X)


def _oracle(base, *, stateful=False, wrong=False):
    """Computes the true digit and carry from the current step's input."""

    def step(x):
        v = torch.round(x * (base - 1)).to(torch.int64)
        s = v[:, 0] + v[:, 1] + (0 if wrong else v[:, 2])
        return s % base, s // base

    if stateful:
        return lambda x, state: (*step(x), state)
    return lambda prefix: step(prefix[:, -1, :])


@pytest.mark.parametrize("base", [2, 3, 5, 7, 10])
def test_addition_rollout_oracle(base):
    data = addition(base=base, n_train=0, n_val=0, n_test=300, seed=1)  # test-only data
    for key in ("test", "ood:n_digits=10", "ood:n_digits=25", "ood:n_digits=50"):
        split = data.splits()[key]
        a, b = addition_operands(split.X, base)
        for stateful in (False, True):
            pd, pc = addition_rollout(
                _oracle(base, stateful=stateful), a, b, base, stateful=stateful
            )
            m = addition_metrics(pd, pc, split.y[..., 0], split.y[..., 1])
            assert m["joint_token_acc"] == 1.0 and m["sequence_acc"] == 1.0, key
            assert m["first_error_position"] is None and sum(m["first_error_histogram"]) == 0
        # ignoring the carry-in is wrong whenever a carry occurs
        pd, pc = addition_rollout(_oracle(base, wrong=True), a, b, base)
        m = addition_metrics(pd, pc, split.y[..., 0], split.y[..., 1])
        assert m["joint_token_acc"] < 1.0 and m["sequence_acc"] < 1.0


def test_addition_rollout_feeds_back_predicted_carry():
    # a model that always predicts carry 1 sees carry_in = 1 from step 1 on
    seen = []

    def model(prefix):
        seen.append(prefix[:, -1, 2].clone())
        n = prefix.shape[0]
        return torch.zeros(n, dtype=torch.int64), torch.tensor([[0.1, 0.9]]).repeat(n, 1)

    a = torch.zeros(2, 3, dtype=torch.int64)
    pd, pc = addition_rollout(model, a, a, 3)
    assert pd.shape == pc.shape == (2, 4) and torch.all(pc == 1)
    assert seen[0].tolist() == [0.0, 0.0]
    assert all(s.tolist() == [0.5, 0.5] for s in seen[1:])  # 1 / (base - 1)


def test_addition_metrics_hand_example():
    true_d = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 1, 0]])
    true_c = torch.tensor([[0, 1, 0], [0, 0, 0], [1, 1, 0]])
    pred_d = true_d.clone()
    pred_c = true_c.clone()
    pred_d[1, 2] = 0  # sequence 1: first error at step 2 (digit head)
    pred_c[2, 0] = 0  # sequence 2: first error at step 0 (carry head)
    pred_d[2, 1] = 0
    m = addition_metrics(pred_d, pred_c, true_d, true_c)
    assert m["sum_token_acc"] == pytest.approx(7 / 9)
    assert m["carry_token_acc"] == pytest.approx(8 / 9)
    assert m["joint_token_acc"] == pytest.approx(6 / 9)
    assert m["sequence_acc"] == pytest.approx(1 / 3)
    assert m["first_error_position"] == pytest.approx(1.0)
    assert m["first_error_histogram"] == [1, 0, 1]
    assert m["n_error_sequences"] == 2
    with pytest.raises(ValueError):
        addition_metrics(pred_d[:, :2], pred_c, true_d, true_c)


# ---------------------------------------------------------------------------
# MNIST
# ---------------------------------------------------------------------------


@needs_mnist
def test_mnist_loader_counts_and_statistics():
    tr_x, tr_y, te_x, te_y = load_mnist_idx(MNIST_DIR)
    assert tr_x.shape == (60000, 28, 28) and te_x.shape == (10000, 28, 28)
    assert tr_x.dtype == np.uint8 and tr_y.shape == (60000,) and te_y.shape == (10000,)
    assert np.bincount(tr_y).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert np.bincount(te_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    hist = np.bincount(tr_x.ravel(), minlength=256).astype(
        np.float64
    )  # exact moments, no big copies
    v = np.arange(256) / 255.0
    mean = (hist * v).sum() / hist.sum()
    std = np.sqrt((hist * v**2).sum() / hist.sum() - mean**2)
    assert mean == pytest.approx(0.1307, abs=5e-5)
    assert std == pytest.approx(0.3081, abs=5e-5)
    assert load_mnist_idx(MNIST_DIR)[0] is tr_x  # cached per directory
    assert not tr_x.flags.writeable


@needs_mnist
def test_sequential_mnist_shapes_and_splits():
    tr_x, tr_y, te_x, te_y = load_mnist_idx(MNIST_DIR)
    d4 = load_task("mnist", directory=MNIST_DIR, T=4, n_train=6000, n_val=1000, seed=0)
    assert d4.train.X.shape == (6000, 4, 196) and d4.val.X.shape == (1000, 4, 196)
    assert d4.test.X.shape == (10000, 4, 196)
    assert d4.n_classes == 10 and d4.label_mode == "sequence" and d4.ood == {}
    json.dumps(d4.meta)
    # test set in canonical order, pixels / 255, chunks of 196 consecutive pixels
    assert torch.equal(d4.test.y, torch.from_numpy(te_y.astype(np.int64)))
    expected = torch.from_numpy(te_x[:3].reshape(3, 4, 196).astype(np.float32) / np.float32(255))
    assert torch.equal(d4.test.X[:3], expected)
    # stratified subsets: class proportions follow the full training set
    counts = torch.bincount(d4.train.y, minlength=10).numpy()
    assert np.all(np.abs(counts - 6000 * np.bincount(tr_y) / 60000) <= 1)
    train_idx, val_idx = mnist_split_indices(tr_y, n_train=6000, n_val=1000, seed=0)
    assert len(set(train_idx.tolist()) & set(val_idx.tolist())) == 0
    assert torch.equal(d4.train.y, torch.from_numpy(tr_y[train_idx].astype(np.int64)))
    assert torch.equal(
        d4.val.X[:5].reshape(5, 28, 28) * 255,
        torch.from_numpy(tr_x[val_idx[:5]].astype(np.float32)),
    )
    # T=28: one row a step
    d28 = load_task("mnist", directory=MNIST_DIR, T=28, n_train=500, n_val=100, n_test=200, seed=0)
    assert d28.train.X.shape == (500, 28, 28) and d28.test.X.shape == (200, 28, 28)
    assert torch.equal(d28.train.X[:, 3, :], d28.train.X.reshape(500, 784)[:, 84:112])
    # seeds reproduce / differ; permutation is a fixed permutation of the pixels
    again = load_task(
        "mnist", directory=MNIST_DIR, T=28, n_train=500, n_val=100, n_test=200, seed=0
    )
    assert_data_equal(d28, again)
    other = load_task(
        "mnist", directory=MNIST_DIR, T=28, n_train=500, n_val=100, n_test=200, seed=1
    )
    assert not torch.equal(d28.train.y, other.train.y)
    perm = load_task(
        "mnist", directory=MNIST_DIR, T=28, n_train=500, n_val=100, n_test=200, permute=True
    )
    assert torch.equal(perm.train.y, d28.train.y)
    assert not torch.equal(perm.train.X, d28.train.X)
    assert torch.equal(
        perm.train.X.reshape(500, -1).sort(1).values, d28.train.X.reshape(500, -1).sort(1).values
    )


def _copy_mnist(dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in MNIST_FILES:
        shutil.copyfile(MNIST_DIR / f, dst / f)
    return dst


@needs_mnist
def test_mnist_rejects_tampered_and_missing_files(tmp_path):
    d = _copy_mnist(tmp_path / "copy")
    name = "train-labels-idx1-ubyte.gz"
    raw = bytearray((d / name).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / name).write_bytes(bytes(raw))
    with pytest.raises(ValueError) as exc:
        load_mnist_idx(d)
    msg = str(exc.value)
    assert name in msg and MNIST_SHA256[name] in msg and "expected" in msg and "got" in msg
    os.remove(d / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(FileNotFoundError) as exc:
        load_mnist_idx(d)
    assert "t10k-images-idx3-ubyte.gz" in str(exc.value) and str(d.resolve()) in str(exc.value)


def test_read_idx_rejects_malformed_headers(tmp_path):
    good = tmp_path / "good.gz"
    good.write_bytes(gzip.compress(struct.pack(">BBBBII", 0, 0, 8, 2, 2, 3) + bytes(range(6))))
    assert read_idx_gz(good).tolist() == [[0, 1, 2], [3, 4, 5]]
    cases = {
        "magic.gz": struct.pack(">BBBBI", 1, 0, 8, 1, 2) + b"ab",
        "dtype.gz": struct.pack(">BBBBI", 0, 0, 0x0D, 1, 2) + b"ab",
        "short.gz": struct.pack(">BBBBI", 0, 0, 8, 1, 5) + b"ab",
        "trunc.gz": b"\x00\x00",
    }
    for fname, payload in cases.items():
        path = tmp_path / fname
        path.write_bytes(gzip.compress(payload))
        with pytest.raises(ValueError, match="malformed"):
            read_idx_gz(path)
    with pytest.raises(ValueError, match="expected 3"):
        read_idx_gz(good, expected_ndim=3)
    notgz = tmp_path / "plain.gz"
    notgz.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="gzip"):
        read_idx_gz(notgz)


@needs_mnist
def test_mnist_download_from_mirror(tmp_path):
    target = tmp_path / "downloaded"
    # unreachable mirror: clear ConnectionError naming the file, no partial files left
    with pytest.raises(ConnectionError, match="train-images-idx3-ubyte.gz"):
        load_mnist_idx(target, download=True, mirrors=[(tmp_path / "nowhere").as_uri()])
    assert not any(p.name.endswith(".part") for p in target.iterdir())
    # a file:// mirror stands in for the network
    arrays = load_mnist_idx(
        target, download=True, mirrors=["file:///nonexistent/", MNIST_DIR.as_uri()]
    )
    assert sorted(p.name for p in target.iterdir()) == sorted(MNIST_FILES)
    assert arrays[0].shape == (60000, 28, 28)
    assert np.array_equal(arrays[1], load_mnist_idx(MNIST_DIR)[1])


def test_addition_rollout_reads_scores_by_the_package_rule():
    """Digit scores (n, base) by arg-max, a one-column carry score by its sign (> 0 is 1)."""
    base = 3
    data = addition(base=base, n_train=0, n_val=0, n_test=200, seed=2)  # test-only data
    a, b = addition_operands(data.test.X, base)
    truth = _oracle(base)

    def scored(prefix):
        d, c = truth(prefix)
        digit_scores = torch.nn.functional.one_hot(d, base).double()
        carry_score = (2.0 * c.double() - 1.0)[:, None]  # +1 / -1, one column
        return digit_scores, carry_score

    pd, pc = addition_rollout(scored, a, b, base)
    m = addition_metrics(pd, pc, data.test.y[..., 0], data.test.y[..., 1])
    assert m["joint_token_acc"] == 1.0 and m["sequence_acc"] == 1.0
