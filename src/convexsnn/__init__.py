"""convexsnn: globally optimal, certified convex training of parallel spiking neural networks.

Layers (imports point down): tasks -> lif -> network / surrogate -> witnesses -> dictionary ->
convex -> reconstruct -> train / pipelines -> experiments -> cli, estimators, export.
"""

import logging

from .lif import lif_scan, lif_step, simulate
from .network import ParallelSNN
from .surrogate import get_surrogate

__version__ = "0.1.0"

logging.getLogger("convexsnn").addHandler(logging.NullHandler())

__all__ = ["ParallelSNN", "simulate", "lif_step", "lif_scan", "get_surrogate", "__version__"]
