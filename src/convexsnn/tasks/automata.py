"""Regular-language tasks: FIRST-LAST-XOR, parity, Tomita grammars, random DFAs.

Every task here is the membership problem of a deterministic finite automaton
(DFA) over an alphabet of ``S`` symbols: a string ``s_1 .. s_T`` gets label 1
when the DFA, started in ``start`` and fed the symbols, ends in an accepting
state, else 0.  Inputs are one-hot (``S`` channels per step); the label is a
sequence label, read at the last step.

Sampling
--------
With ``balanced=True`` (default) a split of ``n`` strings holds exactly
``n // 2`` strings of class 1 and ``n - n // 2`` of class 0, and each string is
drawn *uniformly at random among all length-T strings of its class*, i.e. from
the iid-uniform string distribution conditioned on the label.  This is done
exactly, without rejection, by counting: with ``N_t(q)`` the number of
suffixes of length ``T - t`` that lead from state ``q`` to the target class,

    N_T(q) = 1[accepting(q) == label],   N_t(q) = sum_a N_{t+1}(delta(q, a)),

symbol ``a`` is drawn at step ``t`` from state ``q`` with probability
``N_{t+1}(delta(q, a)) / N_t(q)``.  Counts are exact Python integers, so even
very sparse classes (Tomita 1 has a single positive string per length) are
sampled correctly: such a class simply repeats its few strings.  A class with
no string of length ``T`` (e.g. Tomita 2 or 5 at odd ``T``) raises
``ValueError``.

With ``balanced=False`` strings are iid uniform and labels are whatever the
DFA says (as in the paper's iid sampling before balancing).

Strings are sampled iid, so for small ``T`` (``2**T`` strings in all) the same
string appears many times, within and across splits; this matches the paper,
which samples iid.  Every split draws from its own seeded stream (see
:func:`convexsnn.tasks.base.rng_for`).

Definitions (alphabet ``{0, 1}`` unless stated)
-----------------------------------------------
Where the paper's code and the textbook disagree, the paper's definition (the one its published
numbers were measured on) and the textbook one both exist, under names that say which; see
``docs/method.md`` (Tasks).

* ``xor`` (FIRST-LAST-XOR): label = ``s_1 XOR s_T`` (needs ``T >= 2``).
* ``parity_k<k>`` (the paper's ``parity_k``): label 1 iff ``#ones mod k == 0``
  (``k >= 2``).  For ``k = 2`` this is *even* parity, the complement of
  ``parity_odd``.
* ``parity_odd`` (textbook): label 1 iff the number of ones is odd (the
  former ``parity``).
* ``parity_prefix<k>``: label 1 iff the number of ones among the first ``k``
  symbols is odd (the former ``parity-<k>``; needs ``T >= k``).  Not a task
  of the paper.
* Tomita grammars (Tomita 1982), membership = label 1:

  1. ``1*``
  2. ``(10)*``
  3. paper (``tomita3_paper``): no ``101`` substring.
     textbook (``tomita3_textbook``): no odd-length (maximal) run of 1s
     immediately followed by an odd-length (maximal) run of 0s.
     The two disagree on 891 of the 4096 strings of length 12 (21.8%).
  4. no ``000`` substring
  5. even number of 0s and even number of 1s
  6. ``(#0 - #1) mod 3 == 0``
  7. ``0*1*0*1*``

  Grammars 1, 2, 4-7 have one definition (``tomita<k>``, also reachable as
  ``tomita<k>_paper`` / ``tomita<k>_textbook``); the bare name ``tomita3`` is
  refused because it is ambiguous.

The former names ``parity`` and ``parity-<k>`` (and ``tomita3``, which meant the
textbook rule) raise ``ValueError`` naming the new ones, so no old call silently
gets a different language.

* ``dfa``: a seeded random DFA with ``n_states`` states over ``alphabet_size``
  symbols (transitions uniform, each state accepting with probability 1/2,
  start state 0), resampled until the accepted fraction of all length-``T``
  strings lies in ``[min_fraction, 1 - min_fraction]`` and both classes are
  non-empty at every OOD length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .base import (
    STREAM_MODEL,
    STREAM_OOD,
    STREAM_TEST,
    STREAM_TRAIN,
    STREAM_VAL,
    Split,
    TaskData,
    balanced_labels,
    check_int,
    check_lengths,
    check_seed,
    json_safe,
    logger,
    one_hot,
    rng_for,
)

# ---------------------------------------------------------------------------
# DFA
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DFA:
    """Deterministic finite automaton over symbols ``0 .. S-1``.

    Parameters
    ----------
    transitions : numpy.ndarray
        ``(Q, S)`` integer table, ``transitions[q, a]`` = next state.
    accepting : numpy.ndarray
        ``(Q,)`` boolean, accepting states (label 1).
    start : int
        Start state.
    """

    transitions: np.ndarray
    accepting: np.ndarray
    start: int = 0

    def __post_init__(self) -> None:
        trans = np.array(self.transitions, dtype=np.int64)
        acc = np.array(self.accepting, dtype=bool)
        if trans.ndim != 2 or trans.shape[0] < 1 or trans.shape[1] < 1:
            raise ValueError(f"transitions must have shape (Q, S), got {trans.shape}")
        q = trans.shape[0]
        if acc.shape != (q,):
            raise ValueError(f"accepting must have shape ({q},), got {acc.shape}")
        if trans.min() < 0 or trans.max() >= q:
            raise ValueError("transitions must hold state indices in [0, Q)")
        start = check_int("start", self.start, minimum=0)
        if start >= q:
            raise ValueError(f"start must be < {q}, got {start}")
        trans.setflags(write=False)
        acc.setflags(write=False)
        object.__setattr__(self, "transitions", trans)
        object.__setattr__(self, "accepting", acc)
        object.__setattr__(self, "start", start)

    @property
    def n_states(self) -> int:
        """Number of states ``Q``."""
        return int(self.transitions.shape[0])

    @property
    def alphabet_size(self) -> int:
        """Number of symbols ``S``."""
        return int(self.transitions.shape[1])

    def run(self, strings: np.ndarray) -> np.ndarray:
        """Final states after reading ``strings`` (``(n, T)`` ints), shape ``(n,)``."""
        strings = np.asarray(strings, dtype=np.int64)
        if strings.ndim != 2:
            raise ValueError(f"strings must have shape (n, T), got {strings.shape}")
        if strings.size and (strings.min() < 0 or strings.max() >= self.alphabet_size):
            raise ValueError(f"symbols must lie in [0, {self.alphabet_size})")
        states = np.full(strings.shape[0], self.start, dtype=np.int64)
        for t in range(strings.shape[1]):
            states = self.transitions[states, strings[:, t]]
        return states

    def accepts(self, strings: np.ndarray) -> np.ndarray:
        """Labels (``int64`` 0/1, shape ``(n,)``) of ``strings``."""
        return self.accepting[self.run(strings)].astype(np.int64)

    def _suffix_counts(self, T: int, label: int) -> list[np.ndarray]:
        """``N[t][q]``: number of length ``T - t`` suffixes from ``q`` ending in class ``label``.

        Object arrays of exact Python integers, ``t = 0 .. T``.
        """
        target = (self.accepting == bool(label)).astype(np.int64)
        counts = [np.empty(0, dtype=object)] * (T + 1)
        counts[T] = np.array([int(v) for v in target], dtype=object)
        for t in range(T - 1, -1, -1):
            counts[t] = counts[t + 1][self.transitions].sum(axis=1)
        return counts

    def count(self, T: int) -> tuple[int, int]:
        """Exact numbers of length-``T`` strings with label 0 and with label 1."""
        T = check_int("T", T, minimum=0)
        n1 = int(self._suffix_counts(T, 1)[0][self.start])
        return self.alphabet_size**T - n1, n1

    def accepted_fraction(self, T: int) -> float:
        """Fraction of all length-``T`` strings that are accepted."""
        _, n1 = self.count(T)
        return n1 / self.alphabet_size ** int(T)

    def sample(self, T: int, n: int, label: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` strings uniformly among the length-``T`` strings with ``label``.

        Returns
        -------
        numpy.ndarray
            ``(n, T)`` ``int64`` symbols.

        Raises
        ------
        ValueError
            If no string of length ``T`` has this label.
        """
        T = check_int("T", T, minimum=0)
        n = check_int("n", n, minimum=0)
        counts = self._suffix_counts(T, label)
        total = int(counts[0][self.start])
        if total == 0:
            raise ValueError(f"no string of length T={T} has label {label} for this automaton")
        if total < n:
            logger.info(
                "class %d at T=%d has only %d distinct strings; %d samples will repeat them",
                label,
                T,
                total,
                n,
            )
        # per-step conditional probabilities P[t][q, a]
        probs = []
        for t in range(T):
            num = counts[t + 1][self.transitions]  # (Q, S) object
            den = counts[t].copy()
            den[den == 0] = 1
            probs.append((num / den[:, None]).astype(np.float64))
        out = np.empty((n, T), dtype=np.int64)
        states = np.full(n, self.start, dtype=np.int64)
        for t in range(T):
            p = probs[t][states]  # (n, S)
            cdf = np.cumsum(p, axis=1)
            cdf /= cdf[:, -1:]
            u = rng.random(n)
            sym = (cdf <= u[:, None]).sum(axis=1)
            out[:, t] = sym
            states = self.transitions[states, sym]
        if n and not np.all(self.accepting[states] == bool(label)):  # pragma: no cover - invariant
            raise RuntimeError("internal error: sampled strings have the wrong label")
        return out

    def to_dict(self) -> dict:
        """JSON-safe description."""
        return {
            "transitions": self.transitions.tolist(),
            "accepting": [bool(v) for v in self.accepting],
            "start": int(self.start),
        }

    @classmethod
    def from_dict(cls, d: dict) -> DFA:
        """Inverse of :meth:`to_dict`."""
        return cls(
            np.asarray(d["transitions"]), np.asarray(d["accepting"], dtype=bool), int(d["start"])
        )


# ---------------------------------------------------------------------------
# the automata
# ---------------------------------------------------------------------------


def xor_dfa() -> DFA:
    """FIRST-LAST-XOR: accept iff first symbol != last symbol.

    States: 0 = start, ``1 + 2 f + l`` = (first symbol ``f``, last symbol ``l``).
    """
    trans = np.zeros((5, 2), dtype=np.int64)
    for a in (0, 1):
        trans[0, a] = 1 + 2 * a + a
        for f in (0, 1):
            for last in (0, 1):
                trans[1 + 2 * f + last, a] = 1 + 2 * f + a
    acc = np.array([False] + [f != last for f in (0, 1) for last in (0, 1)])
    return DFA(trans, acc, 0)


def parity_k_dfa(k: int = 2) -> DFA:
    """The paper's ``parity_k``: accept iff the number of ones is ``0 mod k``.

    States ``q = #ones mod k``; accept iff ``q == 0``.  ``k = 2`` is even parity.
    """
    k = check_int("k", k, minimum=2)
    trans = np.array([[q, (q + 1) % k] for q in range(k)], dtype=np.int64)
    acc = np.arange(k) == 0
    return DFA(trans, acc, 0)


def parity_odd_dfa() -> DFA:
    """Textbook parity: accept iff the number of ones is odd (states = parity so far)."""
    return DFA(np.array([[0, 1], [1, 0]]), np.array([False, True]), 0)


def parity_prefix_dfa(k: int) -> DFA:
    """Accept iff the number of ones among the first ``k`` symbols is odd.

    States ``(i, p)`` -> ``2 i + p`` with ``i = min(symbols read, k)`` and ``p``
    the parity so far; accept iff ``p == 1``.
    """
    k = check_int("k", k, minimum=1)
    trans = np.zeros((2 * (k + 1), 2), dtype=np.int64)
    for i in range(k + 1):
        for p in (0, 1):
            for a in (0, 1):
                if i < k:
                    trans[2 * i + p, a] = 2 * (i + 1) + (p ^ a)
                else:
                    trans[2 * i + p, a] = 2 * i + p
    acc = np.array([p == 1 for i in range(k + 1) for p in (0, 1)])
    return DFA(trans, acc, 0)


_PARITY_RENAMED = (
    "the names 'parity' and 'parity-<k>' were ambiguous and are gone: use parity_k (load_task "
    "'parity_k<k>', label 1 iff #ones mod k == 0, the paper's definition; k = 2 "
    "is even parity), parity_odd (label 1 iff #ones is odd, the former 'parity') "
    "or parity_prefix (label 1 iff #ones among the first k symbols is odd, the "
    "former 'parity-<k>')"
)


def parity_dfa(*args: object, **kwargs: object) -> DFA:
    """Removed: raises ``ValueError`` naming :func:`parity_k_dfa`, :func:`parity_odd_dfa` and
    :func:`parity_prefix_dfa` (``parity_dfa()`` was odd parity, ``parity_dfa(k)`` the parity of
    the first ``k`` symbols; neither is the paper's ``parity_k``)."""
    raise ValueError(
        _PARITY_RENAMED.replace("parity_k (", "parity_k_dfa (")
        .replace("parity_odd (", "parity_odd_dfa (")
        .replace("parity_prefix (", "parity_prefix_dfa (")
    )


# transition rows are [on 0, on 1]
_TOMITA_TABLES: dict[int, tuple[list[list[int]], list[bool]]] = {
    # 1: 1*          0 = all ones so far, 1 = sink
    1: ([[1, 0], [1, 1]], [True, False]),
    # 2: (10)*       0 = expect 1 (accept), 1 = expect 0, 2 = sink
    2: ([[2, 1], [0, 2], [2, 2]], [True, False, False]),
    # 4: no 000      state = trailing zeros (0, 1, 2), 3 = sink
    4: ([[1, 0], [2, 0], [3, 0], [3, 3]], [True, True, True, False]),
    # 5: even #0 and even #1; state = p0 + 2 p1
    5: ([[1, 2], [0, 3], [3, 0], [2, 1]], [True, False, False, False]),
    # 6: (#0 - #1) mod 3 == 0; state = (#0 - #1) mod 3
    6: ([[1, 2], [2, 0], [0, 1]], [True, False, False]),
    # 7: 0*1*0*1*    0..3 = current block, 4 = sink
    7: ([[0, 1], [2, 1], [2, 3], [4, 3], [4, 4]], [True, True, True, True, False]),
}


#: Tomita 3, textbook: 0 = safe, 1 = odd 1-run, 2 = even 1-run, 3 = odd 0-run after odd 1-run,
#: 4 = even 0-run after odd 1-run, 5 = sink
_TOMITA3_TEXTBOOK = (
    [[0, 1], [3, 2], [0, 1], [4, 5], [3, 1], [5, 5]],
    [True, True, True, False, True, False],
)
#: Tomita 3 as the paper's code has it, "no 101": 0 = no progress, 1 = read "1", 2 = read "10",
#: 3 = sink ("101" seen)
_TOMITA3_PAPER = ([[0, 1], [2, 1], [0, 3], [3, 3]], [True, True, True, False])

TOMITA_VARIANTS = ("paper", "textbook")


def _check_tomita(k: object, variant: object) -> tuple[int, str | None]:
    k = check_int("k", k, minimum=1)
    if k not in range(1, 8):
        raise ValueError(f"k must be in 1..7 for the Tomita grammars, got {k}")
    if variant is not None and variant not in TOMITA_VARIANTS:
        raise ValueError(f"variant must be one of {TOMITA_VARIANTS} or None, got {variant!r}")
    if k == 3 and variant is None:
        raise ValueError(
            "Tomita 3 has two definitions: variant='paper' (tomita3_paper, rejects every string "
            "containing '101', the authors' code) or variant='textbook' (tomita3_textbook, no odd "
            "run of 1s followed by an odd run of 0s; the former 'tomita3'); they disagree on "
            "21.8% of the length-12 strings"
        )
    return k, variant


def tomita_dfa(k: int, variant: str | None = None) -> DFA:
    """Minimal DFA of Tomita grammar ``k`` (1..7); see the module docstring.

    Parameters
    ----------
    k : int
        Grammar number.
    variant : {"paper", "textbook"} or None
        Which definition of Tomita 3 (required for ``k = 3``; the other grammars have one
        definition and accept any value).
    """
    k, variant = _check_tomita(k, variant)
    if k == 3:
        trans, acc = _TOMITA3_PAPER if variant == "paper" else _TOMITA3_TEXTBOOK
    else:
        trans, acc = _TOMITA_TABLES[k]
    return DFA(np.array(trans), np.array(acc), 0)


def random_dfa(
    n_states: int,
    alphabet_size: int = 2,
    *,
    seed: int = 0,
    T: int | None = None,
    min_fraction: float = 0.2,
    lengths: Sequence[int] = (),
    max_tries: int = 10000,
) -> DFA:
    """Seeded random DFA, resampled until non-trivial.

    Transitions are drawn uniformly from ``[0, n_states)``, each state is
    accepting with probability 1/2, the start state is 0.  A draw is kept when
    it has at least one accepting and one rejecting state and, if ``T`` is
    given, the accepted fraction of all ``alphabet_size**T`` strings lies in
    ``[min_fraction, 1 - min_fraction]``, and both classes are non-empty at
    every length in ``lengths``.

    Raises
    ------
    ValueError
        For bad arguments, or when no acceptable DFA is found in ``max_tries``.
    """
    n_states = check_int("n_states", n_states, minimum=2)
    alphabet_size = check_int("alphabet_size", alphabet_size, minimum=2)
    seed = check_seed(seed)
    if T is not None:
        T = check_int("T", T, minimum=1)
    min_fraction = float(min_fraction)
    if not 0.0 <= min_fraction <= 0.5:
        raise ValueError(f"min_fraction must lie in [0, 0.5], got {min_fraction}")
    lengths = check_lengths("lengths", lengths)
    max_tries = check_int("max_tries", max_tries, minimum=1)
    rng = rng_for(seed, STREAM_MODEL)
    for _ in range(max_tries):
        trans = rng.integers(0, n_states, size=(n_states, alphabet_size))
        acc = rng.random(n_states) < 0.5
        if acc.all() or not acc.any():
            continue
        dfa = DFA(trans, acc, 0)
        if T is not None:
            frac = dfa.accepted_fraction(T)
            if not min_fraction <= frac <= 1.0 - min_fraction:
                continue
        if any(min(dfa.count(L)) == 0 for L in lengths):
            continue
        return dfa
    raise ValueError(
        f"no random DFA with n_states={n_states}, alphabet_size={alphabet_size} met the "
        f"non-triviality criterion (min_fraction={min_fraction}, T={T}) in {max_tries} tries"
    )


# ---------------------------------------------------------------------------
# task construction
# ---------------------------------------------------------------------------


def sample_strings(
    dfa: DFA, T: int, n: int, rng: np.random.Generator, *, balanced: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``n`` strings of length ``T`` and their labels.

    Parameters
    ----------
    dfa : DFA
        The automaton defining the labels.
    T, n : int
        Length and number of strings.
    rng : numpy.random.Generator
        Source of randomness.
    balanced : bool
        If True, exactly ``n // 2`` strings of class 1 and ``n - n // 2`` of
        class 0, each uniform within its class, in random order.  If False,
        iid uniform strings.

    Returns
    -------
    strings : numpy.ndarray
        ``(n, T)`` ``int64`` symbols.
    labels : numpy.ndarray
        ``(n,)`` ``int64`` labels.
    """
    if not balanced:
        strings = rng.integers(0, dfa.alphabet_size, size=(n, T), dtype=np.int64)
        return strings, dfa.accepts(strings)
    labels = balanced_labels(n, 2, rng)
    strings = np.empty((n, T), dtype=np.int64)
    for c in (0, 1):
        idx = np.flatnonzero(labels == c)
        try:
            strings[idx] = dfa.sample(T, idx.size, c, rng)
        except ValueError:
            raise ValueError(
                f"cannot build a class-balanced set at T={T}: no string of that length has "
                f"label {c}; choose another T (or OOD length) or balanced=False"
            ) from None
    return strings, labels


def _make_split(dfa: DFA, T: int, n: int, rng: np.random.Generator, balanced: bool) -> Split:
    strings, labels = sample_strings(dfa, T, n, rng, balanced=balanced)
    return Split(one_hot(strings, dfa.alphabet_size), torch.from_numpy(labels))


def automaton_task(
    dfa: DFA,
    *,
    name: str,
    T: int = 8,
    n_train: int = 2000,
    n_val: int = 2000,
    n_test: int = 4000,
    n_ood: int | None = None,
    ood_lengths: Sequence[int] | None = None,
    balanced: bool = True,
    seed: int = 0,
    extra_meta: dict | None = None,
) -> TaskData:
    """Build a :class:`TaskData` for the membership problem of ``dfa``.

    Parameters
    ----------
    dfa : DFA
        The automaton; label 1 = accepted.
    name : str
        Task name stored in the result.
    T : int
        Sequence length of the train / val / test splits.
    n_train, n_val, n_test : int
        Split sizes (>= 0).
    n_ood : int, optional
        Size of each OOD test set (default ``n_test``).
    ood_lengths : sequence of int, optional
        Lengths of the OOD test sets, keyed ``"T=<L>"`` (default ``(2T, 5T)``;
        pass ``()`` for none).
    balanced : bool
        Class-balanced sampling (see :func:`sample_strings`).
    seed : int
        Seed; each split uses its own stream.
    extra_meta : dict, optional
        Added to ``meta``.

    Returns
    -------
    TaskData
        Inputs ``(n, T, S)`` one-hot float32, labels ``(n,)`` int64,
        ``n_classes=2``, ``label_mode="sequence"``.
    """
    T = check_int("T", T, minimum=1)
    n_train = check_int("n_train", n_train, minimum=0)
    n_val = check_int("n_val", n_val, minimum=0)
    n_test = check_int("n_test", n_test, minimum=0)
    n_ood = n_test if n_ood is None else check_int("n_ood", n_ood, minimum=0)
    ood_lengths = (
        (2 * T, 5 * T) if ood_lengths is None else check_lengths("ood_lengths", ood_lengths)
    )
    seed = check_seed(seed)
    balanced = bool(balanced)

    train = _make_split(dfa, T, n_train, rng_for(seed, STREAM_TRAIN), balanced)
    val = _make_split(dfa, T, n_val, rng_for(seed, STREAM_VAL), balanced)
    test = _make_split(dfa, T, n_test, rng_for(seed, STREAM_TEST), balanced)
    ood = {
        f"T={L}": _make_split(dfa, L, n_ood, rng_for(seed, STREAM_OOD, L), balanced)
        for L in ood_lengths
    }
    n0, n1 = dfa.count(T)
    meta = {
        "name": name,
        "T": T,
        "alphabet_size": dfa.alphabet_size,
        "n_train": n_train,
        "n_val": n_val,
        "n_test": n_test,
        "n_ood": n_ood,
        "ood_lengths": list(ood_lengths),
        "balanced": balanced,
        "seed": seed,
        "accepted_fraction": n1 / (n0 + n1),
        "distinct_strings_per_class": [int(n0), int(n1)],
        "dfa": dfa.to_dict(),
    }
    if extra_meta:
        meta.update(extra_meta)
    logger.debug(
        "generated task %s: %s", name, {k: meta[k] for k in ("T", "n_train", "n_val", "n_test")}
    )
    return TaskData(
        train=train,
        val=val,
        test=test,
        n_classes=2,
        label_mode="sequence",
        name=name,
        meta=json_safe(meta),
        ood=ood,
    )


def first_last_xor(
    *,
    T: int = 8,
    n_train: int = 2000,
    n_val: int = 2000,
    n_test: int = 4000,
    n_ood: int | None = None,
    ood_lengths: Sequence[int] | None = None,
    balanced: bool = True,
    seed: int = 0,
) -> TaskData:
    """FIRST-LAST-XOR: label = first symbol XOR last symbol.

    Binary strings, one-hot (2 channels per step), label read at the last
    step.  Defaults follow the paper's sizes (2000 / 2000 / 4000); the paper's
    grid is ``T in {6, 8, 11, 14}``.  OOD test sets at ``2T`` and ``5T`` by
    default.  See :func:`automaton_task` for the arguments.
    """
    T = check_int("T", T, minimum=1)
    if T < 2:
        raise ValueError(f"T must be >= 2 for FIRST-LAST-XOR, got {T}")
    return automaton_task(
        xor_dfa(),
        name="xor",
        T=T,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        n_ood=n_ood,
        ood_lengths=ood_lengths,
        balanced=balanced,
        seed=seed,
    )


def parity_k(
    k: int = 2,
    *,
    T: int = 8,
    n_train: int = 2000,
    n_val: int = 2000,
    n_test: int = 4000,
    n_ood: int | None = None,
    ood_lengths: Sequence[int] | None = None,
    balanced: bool = True,
    seed: int = 0,
) -> TaskData:
    """The paper's ``parity_k``: label 1 iff ``#ones mod k == 0`` (task name ``"parity_k<k>"``).

    ``k = 2`` is even parity (the complement of :func:`parity_odd`).  See
    :func:`automaton_task` for the other arguments.
    """
    dfa = parity_k_dfa(k)
    return automaton_task(
        dfa,
        name=f"parity_k{int(k)}",
        T=T,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        n_ood=n_ood,
        ood_lengths=ood_lengths,
        balanced=balanced,
        seed=seed,
        extra_meta={"k": int(k), "definition": "paper"},
    )


def parity_odd(
    *,
    T: int = 8,
    n_train: int = 2000,
    n_val: int = 2000,
    n_test: int = 4000,
    n_ood: int | None = None,
    ood_lengths: Sequence[int] | None = None,
    balanced: bool = True,
    seed: int = 0,
) -> TaskData:
    """Textbook parity: label 1 iff the number of ones is odd (task name ``"parity_odd"``)."""
    return automaton_task(
        parity_odd_dfa(),
        name="parity_odd",
        T=T,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        n_ood=n_ood,
        ood_lengths=ood_lengths,
        balanced=balanced,
        seed=seed,
        extra_meta={"definition": "textbook"},
    )


def parity_prefix(
    k: int,
    *,
    T: int = 8,
    n_train: int = 2000,
    n_val: int = 2000,
    n_test: int = 4000,
    n_ood: int | None = None,
    ood_lengths: Sequence[int] | None = None,
    balanced: bool = True,
    seed: int = 0,
) -> TaskData:
    """Label 1 iff the number of ones among the first ``k`` symbols is odd (``"parity_prefix<k>"``).

    Needs ``T >= k``; the OOD sets (longer strings) keep the same ``k``.  Not a task of the
    paper (the former ``"parity-<k>"``).  See :func:`automaton_task` for the other arguments.
    """
    T = check_int("T", T, minimum=1)
    k = check_int("k", k, minimum=1)
    if k > T:
        raise ValueError(f"k must be <= T, got k={k}, T={T}")
    lengths = (2 * T, 5 * T) if ood_lengths is None else check_lengths("ood_lengths", ood_lengths)
    if any(L < k for L in lengths):
        raise ValueError(f"ood_lengths must be >= k={k}, got {list(lengths)}")
    return automaton_task(
        parity_prefix_dfa(k),
        name=f"parity_prefix{k}",
        T=T,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        n_ood=n_ood,
        ood_lengths=lengths,
        balanced=balanced,
        seed=seed,
        extra_meta={"k": k},
    )


def parity(*args: object, **kwargs: object) -> TaskData:
    """Removed: raises ``ValueError`` naming :func:`parity_k`, :func:`parity_odd` and
    :func:`parity_prefix` (``parity()`` was odd parity, ``parity(k=k)`` the parity of the first
    ``k`` symbols; neither is the paper's ``parity_k``)."""
    raise ValueError(_PARITY_RENAMED)


def tomita(
    k: int,
    *,
    variant: str | None = None,
    T: int = 8,
    n_train: int = 2000,
    n_val: int = 2000,
    n_test: int = 4000,
    n_ood: int | None = None,
    ood_lengths: Sequence[int] | None = None,
    balanced: bool = True,
    seed: int = 0,
) -> TaskData:
    """Tomita grammar ``k`` (1..7): label = membership.

    ``variant`` (``"paper"`` or ``"textbook"``) is required for ``k = 3``, whose two definitions
    differ (see the module docstring); the task is then named ``"tomita3_<variant>"``.  For the
    other grammars the task is ``"tomita<k>"`` (``"tomita<k>_<variant>"`` when a variant is
    given; both variants are the same language).

    Class-balanced sets are exact (uniform within each class, see the module
    docstring); grammars 1 and 2 have a single positive string per (even, for
    2) length, so their positive class repeats it.  Grammars 2 and 5 have no
    positive string at odd lengths: an odd ``T`` or OOD length raises
    ``ValueError`` when ``balanced=True``.
    """
    dfa = tomita_dfa(k, variant)
    name = f"tomita{int(k)}" + ("" if variant is None else f"_{variant}")
    return automaton_task(
        dfa,
        name=name,
        T=T,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        n_ood=n_ood,
        ood_lengths=ood_lengths,
        balanced=balanced,
        seed=seed,
        extra_meta={"k": int(k), "variant": variant},
    )


def random_dfa_task(
    *,
    n_states: int = 6,
    alphabet_size: int = 2,
    T: int = 8,
    n_train: int = 2000,
    n_val: int = 2000,
    n_test: int = 4000,
    n_ood: int | None = None,
    ood_lengths: Sequence[int] | None = None,
    balanced: bool = True,
    min_fraction: float = 0.2,
    dfa_seed: int | None = None,
    seed: int = 0,
) -> TaskData:
    """Membership of a seeded random DFA (see :func:`random_dfa`).

    The DFA is drawn from ``dfa_seed`` (default ``seed``) and stored in
    ``meta["dfa"]`` (transition table, accepting states, start).  Inputs are
    one-hot with ``alphabet_size`` channels.
    """
    T = check_int("T", T, minimum=1)
    seed = check_seed(seed)
    dfa_seed = seed if dfa_seed is None else check_seed(dfa_seed)
    lengths = (2 * T, 5 * T) if ood_lengths is None else check_lengths("ood_lengths", ood_lengths)
    dfa = random_dfa(
        n_states,
        alphabet_size,
        seed=dfa_seed,
        T=T,
        min_fraction=min_fraction,
        lengths=lengths if balanced else (),
    )
    return automaton_task(
        dfa,
        name="dfa",
        T=T,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        n_ood=n_ood,
        ood_lengths=lengths,
        balanced=balanced,
        seed=seed,
        extra_meta={
            "n_states": dfa.n_states,
            "dfa_seed": dfa_seed,
            "min_fraction": float(min_fraction),
        },
    )


__all__ = [
    "DFA",
    "xor_dfa",
    "parity_k_dfa",
    "parity_odd_dfa",
    "parity_prefix_dfa",
    "parity_dfa",
    "tomita_dfa",
    "TOMITA_VARIANTS",
    "random_dfa",
    "sample_strings",
    "automaton_task",
    "first_last_xor",
    "parity_k",
    "parity_odd",
    "parity_prefix",
    "parity",
    "tomita",
    "random_dfa_task",
]
