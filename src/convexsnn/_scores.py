"""The one rule that turns readout scores into class predictions.

Scores have the classes on their last axis. One column is the single-score binary encoding
(class 1 where the score is ``> 0``, a score of exactly 0 is class 0); several columns are read
by arg-max (the first maximum on ties, as ``torch.argmax``). The network's ``predict``, the
training accuracy and the convex readout's predictions all call :func:`classes_from_scores`, so
they cannot disagree.
"""

from __future__ import annotations

import torch

__all__ = ["classes_from_scores"]


def classes_from_scores(z: torch.Tensor) -> torch.Tensor:
    """``int64`` class predictions from scores ``(..., C)``: ``z[..., 0] > 0`` when ``C == 1``,
    else the arg-max over the last axis."""
    if z.shape[-1] == 1:
        return (z[..., 0] > 0).to(torch.int64)
    return z.argmax(-1)
