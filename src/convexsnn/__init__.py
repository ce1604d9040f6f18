"""convexsnn: globally optimal, certified convex training of parallel spiking neural networks.

Layers (imports point down): tasks -> lif / surrogate -> network -> witnesses -> dictionary ->
convex -> reconstruct / selection -> train -> pipelines -> experiments -> cli, estimators, export,
plots. The faces (``convexsnn.cli``, ``convexsnn.estimators`` (needs scikit-learn),
``convexsnn.export`` (NIR), ``convexsnn.plots`` (matplotlib)) are imported on demand.
"""

import logging

from .convex import Certificate, ConvergenceWarning, ReadoutSolution, solve_path, solve_readout
from .dictionary import SpikeDictionary, build_dictionary
from .lif import LIFParams, LIFState, lif_scan, lif_step, simulate
from .network import ParallelSNN
from .reconstruct import ReconstructionError, check_reconstruction, reconstruct
from .selection import ConvexFit, fit_convex
from .surrogate import get_surrogate
from .tasks import load_task
from .train import TrainResult, train_surrogate
from .witnesses import (
    Witnesses,
    concat_witnesses,
    gaussian_witnesses,
    reservoir_witnesses,
    witnesses_from_network,
)

__version__ = "0.1.0"

logging.getLogger("convexsnn").addHandler(logging.NullHandler())

__all__ = [
    "ParallelSNN",
    "simulate",
    "lif_step",
    "lif_scan",
    "LIFParams",
    "LIFState",
    "get_surrogate",
    "Witnesses",
    "gaussian_witnesses",
    "witnesses_from_network",
    "reservoir_witnesses",
    "concat_witnesses",
    "SpikeDictionary",
    "build_dictionary",
    "solve_readout",
    "solve_path",
    "Certificate",
    "ReadoutSolution",
    "ConvergenceWarning",
    "reconstruct",
    "check_reconstruction",
    "ReconstructionError",
    "fit_convex",
    "ConvexFit",
    "train_surrogate",
    "TrainResult",
    "load_task",
    "__version__",
]
