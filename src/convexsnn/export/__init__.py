"""Exports of convexsnn networks to the formats of the neuromorphic ecosystem.

Only :mod:`convexsnn.export.nir_export` exists so far (the Neuromorphic Intermediate
Representation, https://neuroir.org). The optional dependency ``nir`` is imported lazily, inside the
functions that need it, so importing this package never requires it
(``pip install convexsnn[nir]``).
"""

from .nir_export import (
    NIR_METADATA_FORMAT,
    NIRExportError,
    NIRExportWarning,
    export_nir,
    from_nir_graph,
    import_nir,
    nir_neuron_parameters,
    simulate_nir,
    to_nir,
)

__all__ = [
    "NIR_METADATA_FORMAT",
    "NIRExportError",
    "NIRExportWarning",
    "export_nir",
    "from_nir_graph",
    "import_nir",
    "nir_neuron_parameters",
    "simulate_nir",
    "to_nir",
]
