r"""The one rule that turns readout scores into class predictions, ties included.

Scores have the classes on their last axis. One column is the single-score binary encoding
(class 1 where the score is ``> 0``, a score of exactly 0 is class 0); several columns are read
by arg-max (the first maximum on ties, as ``torch.argmax``). The network's ``predict``, the
training accuracy and the convex readout's predictions all call :func:`classes_from_scores`, so
they cannot disagree.

Ties
----
A readout score :math:`z_c = \sum_j r_j W_{jc}` (:math:`r_j \in \{0, 1\}` spikes) computed in
floating point differs from the exact sum by at most
:math:`\gamma_n \sum_j |r_j W_{jc}|`, :math:`\gamma_n \approx n\,\varepsilon` for :math:`n`
non-zero terms in any summation order. Two computations of the same exact score (the network's
``r @ W_out``, the dictionary's ``D @ W`` over other columns, in another order) can therefore land
on either side of 0 when the exact score is 0: a hinge readout puts rows exactly there. With the
per-row tolerance of :func:`score_tolerance`,

.. math::

    \tau = n\,\varepsilon \max_c \sum_j |r_j|\,|W_{jc}| \;(+ |b_c|),

the rule is: one column, class 1 iff :math:`z > \tau` (a score in :math:`[-\tau, \tau]` is a tie
and predicts class 0, like an exact 0); several columns, the smallest class index among those with
:math:`z_c \ge \max_{c'} z_{c'} - 2\tau` (an exact two-way tie, however rounded, goes to the
lower class). An exact tie is thus predicted the same way by every computation of the scores
whose rounding obeys the bound; ``tol = 0`` is the plain rule.
"""

from __future__ import annotations

import torch

__all__ = ["classes_from_scores", "score_tolerance", "tolerance_from_abs_sums"]


def score_tolerance(
    r: torch.Tensor,
    W: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Per-row rounding bound :math:`\tau` of the scores :math:`z = r W (+ b)`.

    Parameters
    ----------
    r : torch.Tensor
        Readout features ``(..., F)`` (spikes or membrane indicators).
    W : torch.Tensor
        Output weights ``(F, C)``.
    bias : torch.Tensor, optional
        Output bias ``(C,)``.
    dtype : torch.dtype, optional
        Precision whose :math:`\varepsilon` is used (default: the lower precision of ``r`` and
        ``W``).

    Returns
    -------
    torch.Tensor
        :math:`\tau = n\,\varepsilon \max_c (|r| |W| + |b|)_c`, shape ``r.shape[:-1]``, with
        :math:`n` the number of non-zero rows of ``W`` (plus one with a bias).
    """
    if dtype is None:
        dtype = r.dtype if torch.finfo(r.dtype).eps >= torch.finfo(W.dtype).eps else W.dtype
    Wa = W.detach().abs().to(torch.float64)
    s = r.detach().abs().to(dtype=torch.float64, device=Wa.device) @ Wa
    n = int((Wa != 0).any(dim=1).sum())
    if bias is not None:
        s = s + bias.detach().abs().to(dtype=torch.float64, device=Wa.device)
        n += 1
    return tolerance_from_abs_sums(s, n, dtype)


def tolerance_from_abs_sums(s: torch.Tensor, n_terms: int, dtype: torch.dtype) -> torch.Tensor:
    r""":math:`\tau = n\,\varepsilon \max_c s_c` from the absolute sums
    :math:`s_c = \sum_j |r_j W_{jc}|` (``(..., C)``), ``n_terms`` non-zero terms and the
    :math:`\varepsilon` of ``dtype``; shape ``s.shape[:-1]``."""
    return (max(int(n_terms), 1) * torch.finfo(dtype).eps) * s.amax(dim=-1)


def classes_from_scores(z: torch.Tensor, tol: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``int64`` class predictions from scores ``(..., C)``.

    ``C == 1``: class 1 iff ``z[..., 0] > tol`` (scores within ``tol`` of 0 are ties, class 0).
    ``C > 1``: the smallest index ``c`` with ``z[..., c] >= max(z) - 2 tol`` (``tol = 0``: the
    arg-max, first maximum on ties). ``tol`` is a number or a per-row tensor of shape
    ``z.shape[:-1]`` (see :func:`score_tolerance`).
    """
    tol_t = torch.as_tensor(tol, dtype=z.dtype, device=z.device)
    if z.shape[-1] == 1:
        return (z[..., 0] > tol_t).to(torch.int64)
    if tol_t.ndim == 0 and float(tol_t) == 0.0:
        return z.argmax(-1)
    top = z.amax(dim=-1, keepdim=True)
    near = z >= top - 2 * tol_t.unsqueeze(-1) if tol_t.ndim else z >= top - 2 * tol_t
    # first True along the last axis: argmax of a 0/1 tensor returns the first maximum
    return near.to(torch.int8).argmax(-1)
