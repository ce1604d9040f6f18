r"""Exact merging of duplicate rows.

Rows :math:`i, i'` with the same dictionary row :math:`D_i = D_{i'}` and the same target contribute
:math:`(a_i + a_{i'})\, \ell(y_i, (DW)_i)` together, so they can be merged into one row of weight
:math:`a_i + a_{i'}` without changing the objective (e.g. FIRST-LAST-XOR at ``T = 8`` has at most
256 distinct strings among its 2000 samples). A dual point :math:`U'` of the merged problem maps
back to :math:`U_i = (a_i / a'_{g(i)})\, U'_{g(i)}` (:math:`g(i)` the group of row :math:`i`), which
has the same :math:`D^\top U` and the same dual value for all three datafits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .datafits import Datafit, Hinge, SoftmaxCrossEntropy, Squared, make_datafit
from .linear_operator import DictionaryOperator

logger = logging.getLogger("convexsnn")

__all__ = ["RowGroups", "merge_duplicate_rows"]

MAX_DENSE_ENTRIES = 60_000_000  # do not densify larger dictionaries just to look for duplicates


@dataclass
class RowGroups:
    """Merged problem and the map back to the original rows."""

    op: DictionaryOperator
    datafit: Datafit
    inverse: torch.Tensor  # (n,) group of every original row
    weights: torch.Tensor  # (n,) original row weights a_i
    group_weights: torch.Tensor  # (n',) merged weights a'_g

    def expand_dual(self, U: torch.Tensor) -> torch.Tensor:
        """Map a merged dual point ``(n', C)`` back to the original rows ``(n, C)``."""
        gw = self.group_weights
        ratio = torch.where(
            gw[self.inverse] > 0,
            self.weights / torch.where(gw > 0, gw, torch.ones_like(gw))[self.inverse],
            torch.zeros_like(self.weights),
        )
        return U[self.inverse] * ratio[:, None]


def _targets_key(datafit: Datafit) -> tuple[torch.Tensor, str]:
    if isinstance(datafit, SoftmaxCrossEntropy):
        return datafit.labels.to(torch.float64)[:, None], "labels"
    return datafit.Y.to(torch.float64), "Y"


def merge_duplicate_rows(
    op, datafit: Datafit, *, min_reduction: float = 0.05, seed: int = 0
) -> RowGroups | None:
    """Merge rows with equal dictionary row and target; ``None`` if not worth it / not possible.

    Needs ``op.dense()`` and at most :data:`MAX_DENSE_ENTRIES` entries. Rows are grouped by a
    random projection of the row plus the target, and every row is then compared exactly with its
    group's representative (a hash collision would only make the merge fall back to exact
    ``torch.unique``).
    """
    n, P = op.shape
    if not callable(getattr(op, "dense", None)) or n * P > MAX_DENSE_ENTRIES or n < 2:
        return None
    if type(datafit) not in (Squared, Hinge, SoftmaxCrossEntropy):
        return None  # a user-defined datafit: its row-merged form is not known here
    D = op.dense()
    key_t, kind = _targets_key(datafit)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    r = torch.randn(P, generator=gen, dtype=torch.float64).to(D.device)
    rt = torch.randn(key_t.shape[1], generator=gen, dtype=torch.float64).to(D.device)
    # one scalar key per row (a 1-d unique sorts n numbers; unique over rows was ~10x slower)
    key = D.to(torch.float64) @ r + key_t.to(D.device) @ rt
    _, inverse = torch.unique(key, return_inverse=True)
    n_groups = int(inverse.max()) + 1
    if n_groups > (1.0 - min_reduction) * n:
        return None
    first = torch.full((n_groups,), n, dtype=torch.long, device=D.device)
    first.scatter_reduce_(0, inverse, torch.arange(n, device=D.device), reduce="amin")
    # exact verification in row blocks
    ok = True
    for r0 in range(0, n, 8192):
        blk = slice(r0, min(n, r0 + 8192))
        reps = first[inverse[blk]]
        if not bool((D[blk] == D[reps]).all()) or not bool(
            (key_t[blk] == key_t[reps.to(key_t.device)]).all()
        ):
            ok = False
            break
    if not ok:  # pragma: no cover - hash collision, astronomically unlikely
        M = torch.cat([D.to(torch.float64), key_t.to(D.device)], dim=1)
        _, inverse = torch.unique(M, dim=0, return_inverse=True)
        n_groups = int(inverse.max()) + 1
        first = torch.full((n_groups,), n, dtype=torch.long, device=D.device)
        first.scatter_reduce_(0, inverse, torch.arange(n, device=D.device), reduce="amin")
    a = datafit.weights
    gw = torch.zeros(n_groups, dtype=a.dtype, device=a.device)
    gw.index_add_(0, inverse.to(a.device), a)
    first_a = first.to(a.device)
    if kind == "labels":
        df = make_datafit("softmax", datafit.labels[first_a], gw, n_classes=datafit.n_outputs)
    else:
        df = type(datafit)(datafit.Y[first_a], gw)
    sub = DictionaryOperator(D[first], dtype=op.dtype, device=op.device, check_binary=False)
    logger.debug("merged %d duplicate rows: %d -> %d", n - n_groups, n, n_groups)
    return RowGroups(op=sub, datafit=df, inverse=inverse.to(a.device), weights=a, group_weights=gw)
