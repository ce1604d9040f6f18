"""Seeded task generators and dataset loaders.

Every task is returned as a :class:`TaskData` (train / val / test
:class:`Split` objects plus out-of-distribution test sets); use
:func:`load_task` to get one by name, and :func:`load_npz_task` for user data
in ``.npz`` files.
"""

from .addition import (
    addition,
    addition_metrics,
    addition_operands,
    addition_rollout,
    addition_split,
    addition_targets,
)
from .automata import (
    DFA,
    TOMITA_VARIANTS,
    automaton_task,
    first_last_xor,
    parity,
    parity_dfa,
    parity_k,
    parity_k_dfa,
    parity_odd,
    parity_odd_dfa,
    parity_prefix,
    parity_prefix_dfa,
    random_dfa,
    random_dfa_task,
    sample_strings,
    tomita,
    tomita_dfa,
    xor_dfa,
)
from .base import Split, TaskData, one_hot, rng_for
from .loader import TASK_NAMES, load_task
from .mnist import (
    MNIST_FILES,
    MNIST_MIRRORS,
    MNIST_SHA256,
    clear_mnist_cache,
    download_mnist,
    load_mnist_idx,
    mnist_split_indices,
    pixel_permutation,
    read_idx_gz,
    sequential_mnist,
    stratified_subset,
)
from .npz import load_npz_task, read_npz

__all__ = [
    "Split",
    "TaskData",
    "TASK_NAMES",
    "load_task",
    "load_npz_task",
    "read_npz",
    "one_hot",
    "rng_for",
    # automata
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
    # addition
    "addition",
    "addition_split",
    "addition_targets",
    "addition_operands",
    "addition_rollout",
    "addition_metrics",
    # mnist
    "MNIST_FILES",
    "MNIST_SHA256",
    "MNIST_MIRRORS",
    "load_mnist_idx",
    "download_mnist",
    "read_idx_gz",
    "clear_mnist_cache",
    "stratified_subset",
    "mnist_split_indices",
    "pixel_permutation",
    "sequential_mnist",
]
