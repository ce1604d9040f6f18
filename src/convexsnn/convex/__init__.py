r"""Certified convex readouts over a spike dictionary (docs/method.md section 5).

.. math::

    \min_{W \in \mathbb{R}^{P \times C}} \sum_i a_i\, \ell\big(y_i, (DW)_i\big) + \lambda R(W)

with :math:`\ell` in {squared, one-vs-rest hinge, softmax cross-entropy}, :math:`R` in {l1, l2,1},
default :math:`a_i = 1/n` and the paper's :math:`\lambda = \beta / \sqrt{P}` (``reg=`` gives
:math:`\beta`). Every solve returns a :class:`Certificate` (primal, feasible dual, gap). See
:mod:`convexsnn.convex.solver`.
"""

from .certificate import Certificate, ConvergenceWarning, certified_label
from .datafits import DATAFITS, Hinge, SoftmaxCrossEntropy, Squared, make_datafit
from .linear_operator import DictionaryOperator, as_operator
from .penalties import L1, L21, PENALTIES, make_penalty
from .solver import (
    ReadoutSolution,
    labels_to_targets,
    lambda_max,
    predict_from_scores,
    solve_path,
    solve_readout,
)

__all__ = [
    "Certificate",
    "ConvergenceWarning",
    "certified_label",
    "ReadoutSolution",
    "solve_readout",
    "solve_path",
    "lambda_max",
    "predict_from_scores",
    "labels_to_targets",
    "DictionaryOperator",
    "as_operator",
    "DATAFITS",
    "PENALTIES",
    "Squared",
    "Hinge",
    "SoftmaxCrossEntropy",
    "L1",
    "L21",
    "make_datafit",
    "make_penalty",
]
