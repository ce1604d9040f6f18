"""Base-b addition with carry, teacher-forced for training, autoregressive for evaluation.

Two operands ``a`` and ``b`` of ``n_digits`` base-``base`` digits each (every
digit iid uniform in ``[0, base)``, leading zeros allowed) are read least
significant digit first.  With ``c_0 = 0`` and, for ``t = 0 .. n_digits - 1``,

    s_t = a_t + b_t + c_t,   digit_t = s_t mod base,   c_{t+1} = floor(s_t / base),

plus one extra final step ``t = n_digits`` with ``a_t = b_t = 0`` that emits
the last carry (``digit_t = c_t``, carry-out 0), so ``T = n_digits + 1`` and
the sum digits are exactly the base-``base`` digits of ``a + b`` (LSD first).

Input at step ``t`` (3 features): ``[a_t, b_t, c_t] / (base - 1)``, where
``c_t`` is the carry *into* step ``t``.  In the teacher-forced data it is the
true carry.  Token labels at every step, two heads: ``y[:, t, 0] = digit_t``
(``base`` classes) and ``y[:, t, 1] = c_{t+1}`` (carry-out, 2 classes), so
``y`` has shape ``(n, T, 2)`` and ``n_classes = [base, 2]``.

Autoregressive evaluation (:func:`addition_rollout`) replaces the true
carry-in of step ``t + 1`` by the model's predicted carry-out of step ``t``.

Default sizes 2000 / 1000 / 2000 (train / val / test); OOD test sets at 2x, 5x
and 10x ``n_digits`` keyed ``"n_digits=<m>"`` (each ``n_test`` sequences, ``T =
m + 1`` steps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .._scores import classes_from_scores
from .base import (
    STREAM_OOD,
    STREAM_TEST,
    STREAM_TRAIN,
    STREAM_VAL,
    Split,
    TaskData,
    as_int_array,
    check_int,
    check_lengths,
    check_seed,
    json_safe,
    rng_for,
)


def _check_base(base: object) -> int:
    return check_int("base", base, minimum=2)


def _check_operands(a_digits: Any, b_digits: Any, base: int) -> tuple[np.ndarray, np.ndarray]:
    a = as_int_array("a_digits", a_digits, 2)
    b = as_int_array("b_digits", b_digits, 2)
    if a.shape != b.shape:
        raise ValueError(
            f"a_digits and b_digits must have the same shape, got {a.shape} and {b.shape}"
        )
    if a.shape[1] < 1:
        raise ValueError("a_digits must have at least one digit (n_digits >= 1)")
    for name, arr in (("a_digits", a), ("b_digits", b)):
        if arr.size and (arr.min() < 0 or arr.max() >= base):
            raise ValueError(f"{name} must hold digits in [0, {base})")
    return a, b


def addition_targets(
    a_digits: Any, b_digits: Any, base: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True carries and sum digits for LSD-first operands.

    Parameters
    ----------
    a_digits, b_digits : array-like of int
        ``(n, n_digits)`` operand digits, least significant first.
    base : int
        The base (>= 2).

    Returns
    -------
    carry_in : numpy.ndarray
        ``(n, T)`` carry into each step (``c_t``), ``T = n_digits + 1``.
    sum_digits : numpy.ndarray
        ``(n, T)`` sum digit of each step.
    carry_out : numpy.ndarray
        ``(n, T)`` carry out of each step (``c_{t+1}``; 0 at the final step).
    """
    base = _check_base(base)
    a, b = _check_operands(a_digits, b_digits, base)
    n, nd = a.shape
    T = nd + 1
    a_ext = np.concatenate([a, np.zeros((n, 1), np.int64)], axis=1)
    b_ext = np.concatenate([b, np.zeros((n, 1), np.int64)], axis=1)
    carry_in = np.zeros((n, T), np.int64)
    sum_digits = np.zeros((n, T), np.int64)
    carry_out = np.zeros((n, T), np.int64)
    c = np.zeros(n, np.int64)
    for t in range(T):
        carry_in[:, t] = c
        s = a_ext[:, t] + b_ext[:, t] + c
        sum_digits[:, t] = s % base
        c = s // base
        carry_out[:, t] = c
    return carry_in, sum_digits, carry_out


def _encode_inputs(
    a_ext: np.ndarray, b_ext: np.ndarray, carry_in: np.ndarray, base: int
) -> torch.Tensor:
    feats = np.stack([a_ext, b_ext, carry_in], axis=-1).astype(np.float32)
    return torch.from_numpy(feats / np.float32(base - 1))


def addition_split(a_digits: Any, b_digits: Any, base: int) -> Split:
    """Teacher-forced split for given operands.

    Parameters
    ----------
    a_digits, b_digits : array-like of int
        ``(n, n_digits)`` operand digits, LSD first.
    base : int
        The base.

    Returns
    -------
    Split
        ``X`` ``(n, n_digits + 1, 3)`` = ``[a_t, b_t, c_t] / (base - 1)``,
        ``y`` ``(n, n_digits + 1, 2)`` = (sum digit, carry-out).
    """
    base = _check_base(base)
    a, b = _check_operands(a_digits, b_digits, base)
    carry_in, sum_digits, carry_out = addition_targets(a, b, base)
    n = a.shape[0]
    pad = np.zeros((n, 1), np.int64)
    X = _encode_inputs(np.concatenate([a, pad], 1), np.concatenate([b, pad], 1), carry_in, base)
    y = torch.from_numpy(np.stack([sum_digits, carry_out], axis=-1))
    return Split(X, y)


def addition_operands(X: torch.Tensor, base: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Recover the operand digits from (teacher-forced) addition inputs.

    Parameters
    ----------
    X : torch.Tensor
        ``(n, T, 3)`` inputs as built by :func:`addition_split`.
    base : int
        The base used to build them.

    Returns
    -------
    a_digits, b_digits : torch.Tensor
        ``(n, T - 1)`` ``int64`` digits, LSD first (the final padding step is dropped).
    """
    base = _check_base(base)
    if X.ndim != 3 or X.shape[-1] != 3 or X.shape[1] < 2:
        raise ValueError(f"X must have shape (n, T >= 2, 3), got {tuple(X.shape)}")
    digits = torch.round(X[:, :-1, :2].double() * (base - 1)).to(torch.int64)
    return digits[..., 0].contiguous(), digits[..., 1].contiguous()


def _as_prediction(name: str, value: Any, n: int, n_classes: int) -> torch.Tensor:
    """Model output -> ``(n,)`` int64 predictions (scores ``(n, C)`` are read by the package's one
    rule, :func:`convexsnn._scores.classes_from_scores`: arg-max, or ``> 0`` for one column)."""
    v = torch.as_tensor(value).detach()
    if v.ndim == 2:
        v = classes_from_scores(v)
    if v.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) or ({n}, classes), got {tuple(v.shape)}")
    if v.is_floating_point():
        v = torch.round(v)
    v = v.to(torch.int64).cpu()
    if n and (v.min() < 0 or v.max() >= n_classes):
        raise ValueError(f"{name} predictions must lie in [0, {n_classes})")
    return v


def addition_rollout(
    model_fn: Callable[..., Any],
    a_digits: Any,
    b_digits: Any,
    base: int,
    *,
    stateful: bool = False,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Autoregressive evaluation: the predicted carry is fed back as the next carry-in.

    Step ``t`` input is ``[a_t, b_t, chat_t] / (base - 1)`` with ``chat_0 = 0``
    and ``chat_{t+1}`` = the model's carry prediction at step ``t``; one extra
    final step with ``a_t = b_t = 0``, so ``T = n_digits + 1``.

    Parameters
    ----------
    model_fn : callable
        Default (``stateful=False``): ``model_fn(X_prefix) -> (digit, carry)``
        where ``X_prefix`` is the ``(n, t + 1, 3)`` float32 input so far and
        ``digit`` / ``carry`` are the predictions at the *last* step, either
        ``(n,)`` class indices or ``(n, base)`` / ``(n, 2)`` scores (argmax is
        taken).  A causal network (e.g. an SNN simulated from rest) simply
        runs on the prefix; this costs ``O(T^2)`` steps but needs no state.
        With ``stateful=True``: ``model_fn(x_t, state) -> (digit, carry,
        state)`` with ``x_t`` of shape ``(n, 3)`` and ``state=None`` at
        ``t = 0``; ``O(T)`` steps.
    a_digits, b_digits : array-like of int
        ``(n, n_digits)`` operand digits, LSD first (see
        :func:`addition_operands` to get them from a split).
    base : int
        The base.
    stateful : bool
        Selects the ``model_fn`` interface (above).
    device : torch.device or str, optional
        Device the inputs are built on (default CPU).

    Returns
    -------
    pred_digits, pred_carry : torch.Tensor
        ``(n, T)`` ``int64`` predictions on CPU.

    Notes
    -----
    Runs under :func:`torch.no_grad`.
    """
    base = _check_base(base)
    a, b = _check_operands(a_digits, b_digits, base)
    n, nd = a.shape
    T = nd + 1
    pad = np.zeros((n, 1), np.int64)
    X = _encode_inputs(
        np.concatenate([a, pad], 1), np.concatenate([b, pad], 1), np.zeros((n, T), np.int64), base
    )
    X = X.to(device) if device is not None else X
    pred_digits = torch.zeros((n, T), dtype=torch.int64)
    pred_carry = torch.zeros((n, T), dtype=torch.int64)
    state = None
    with torch.no_grad():
        for t in range(T):
            if stateful:
                out = model_fn(X[:, t, :], state)
                if not isinstance(out, (tuple, list)) or len(out) != 3:
                    raise ValueError(
                        "with stateful=True, model_fn must return (digit, carry, state)"
                    )
                digit, carry, state = out
            else:
                out = model_fn(X[:, : t + 1, :])
                if not isinstance(out, (tuple, list)) or len(out) != 2:
                    raise ValueError("model_fn must return (digit, carry)")
                digit, carry = out
            pred_digits[:, t] = _as_prediction("digit", digit, n, base)
            pred_carry[:, t] = _as_prediction("carry", carry, n, 2)
            if t + 1 < T:
                X[:, t + 1, 2] = (pred_carry[:, t].to(X.dtype) / (base - 1)).to(X.device)
    return pred_digits, pred_carry


def addition_metrics(pred_digits: Any, pred_carry: Any, true_digits: Any, true_carry: Any) -> dict:
    """Token and sequence metrics for addition.

    Parameters
    ----------
    pred_digits, pred_carry, true_digits, true_carry : array-like of int
        ``(n, T)`` predicted / true sum digits and carry-outs.

    Returns
    -------
    dict
        ``sum_token_acc``, ``carry_token_acc``: per-head accuracy over all
        samples and steps; ``joint_token_acc``: fraction of (sample, step)
        pairs with both heads right; ``sequence_acc``: fraction of sequences
        with every step of both heads right; ``first_error_position``: mean,
        over sequences with an error, of the first step (0-based) where a head
        is wrong (``None`` if there is no error); ``first_error_histogram``:
        list of length ``T``, number of sequences whose first error is at each
        step; ``n_sequences``, ``n_steps``, ``n_error_sequences``.
    """
    pd = torch.as_tensor(as_int_array("pred_digits", pred_digits, 2))
    pc = torch.as_tensor(as_int_array("pred_carry", pred_carry, 2))
    td = torch.as_tensor(as_int_array("true_digits", true_digits, 2))
    tc = torch.as_tensor(as_int_array("true_carry", true_carry, 2))
    if not (pd.shape == pc.shape == td.shape == tc.shape):
        raise ValueError(
            "prediction and target arrays must share one (n, T) shape, got "
            f"{tuple(pd.shape)}, {tuple(pc.shape)}, {tuple(td.shape)}, {tuple(tc.shape)}"
        )
    n, T = pd.shape
    if n == 0 or T == 0:
        raise ValueError("metrics need at least one sequence and one step")
    ok_d = pd == td
    ok_c = pc == tc
    joint = ok_d & ok_c
    err = ~joint
    has_err = err.any(dim=1)
    first = err.to(torch.int64).argmax(dim=1)[has_err]
    hist = torch.bincount(first, minlength=T)
    return {
        "sum_token_acc": float(ok_d.double().mean()),
        "carry_token_acc": float(ok_c.double().mean()),
        "joint_token_acc": float(joint.double().mean()),
        "sequence_acc": float(joint.all(dim=1).double().mean()),
        "first_error_position": float(first.double().mean()) if first.numel() else None,
        "first_error_histogram": [int(v) for v in hist.tolist()],
        "n_sequences": int(n),
        "n_steps": int(T),
        "n_error_sequences": int(has_err.sum()),
    }


def _random_split(base: int, n_digits: int, n: int, rng: np.random.Generator) -> Split:
    a = rng.integers(0, base, size=(n, n_digits), dtype=np.int64)
    b = rng.integers(0, base, size=(n, n_digits), dtype=np.int64)
    return addition_split(a, b, base)


def addition(
    *,
    base: int = 2,
    n_digits: int = 5,
    n_train: int = 2000,
    n_val: int = 1000,
    n_test: int = 2000,
    n_ood: int | None = None,
    ood_n_digits: Sequence[int] | None = None,
    seed: int = 0,
) -> TaskData:
    """Base-``base`` addition with carry (see the module docstring).

    Parameters
    ----------
    base : int
        Base >= 2 (the paper uses 2, 3, 5; also 7, 10).
    n_digits : int
        Digits per operand (>= 1); ``T = n_digits + 1``.
    n_train, n_val, n_test : int
        Split sizes (>= 0).
    n_ood : int, optional
        Size of each OOD set (default ``n_test``).
    ood_n_digits : sequence of int, optional
        Operand lengths of the OOD sets (default ``(2, 5, 10) * n_digits``;
        ``()`` for none), keyed ``"n_digits=<m>"``.
    seed : int
        Seed; each split has its own stream.

    Returns
    -------
    TaskData
        ``X`` ``(n, T, 3)``, ``y`` ``(n, T, 2)``, ``n_classes=[base, 2]``,
        ``label_mode="token"``.
    """
    base = _check_base(base)
    n_digits = check_int("n_digits", n_digits, minimum=1)
    n_train = check_int("n_train", n_train, minimum=0)
    n_val = check_int("n_val", n_val, minimum=0)
    n_test = check_int("n_test", n_test, minimum=0)
    n_ood = n_test if n_ood is None else check_int("n_ood", n_ood, minimum=0)
    if ood_n_digits is None:
        ood_n_digits = (2 * n_digits, 5 * n_digits, 10 * n_digits)
    ood_n_digits = check_lengths("ood_n_digits", ood_n_digits)
    seed = check_seed(seed)

    train = _random_split(base, n_digits, n_train, rng_for(seed, STREAM_TRAIN))
    val = _random_split(base, n_digits, n_val, rng_for(seed, STREAM_VAL))
    test = _random_split(base, n_digits, n_test, rng_for(seed, STREAM_TEST))
    ood = {
        f"n_digits={m}": _random_split(base, m, n_ood, rng_for(seed, STREAM_OOD, m))
        for m in ood_n_digits
    }
    meta = {
        "name": "addition",
        "base": base,
        "n_digits": n_digits,
        "T": n_digits + 1,
        "n_train": n_train,
        "n_val": n_val,
        "n_test": n_test,
        "n_ood": n_ood,
        "ood_n_digits": list(ood_n_digits),
        "seed": seed,
        "heads": ["sum_digit", "carry_out"],
        "input_features": ["a_t/(base-1)", "b_t/(base-1)", "carry_in_t/(base-1)"],
        "digit_order": "lsd_first",
    }
    return TaskData(
        train=train,
        val=val,
        test=test,
        n_classes=[base, 2],
        label_mode="token",
        name="addition",
        meta=json_safe(meta),
        ood=ood,
    )


__all__ = [
    "addition",
    "addition_split",
    "addition_targets",
    "addition_operands",
    "addition_rollout",
    "addition_metrics",
]
