r"""The spike dictionary: binary readouts of witness neurons on the training inputs.

Simulating a :class:`~convexsnn.witnesses.Witnesses` set on inputs :math:`X` (``n`` sequences of
``T`` steps) gives, for every last-layer neuron :math:`j = (k, i)` (branch ``k``, neuron ``i``) and
step ``t``, the binary readout

.. math::

    r^{(j)}_{s,t} = s_t \quad (\text{readout}=\text{"spike"}), \qquad
    r^{(j)}_{s,t} = \mathbb 1[m_t - b \ge 0] \quad (\text{readout}=\text{"membrane"})

of sample ``s`` (:mod:`convexsnn.lif`, docs/method.md section 1). A *column* of the dictionary is
one neuron's readout on every row:

* ``steps="last"`` -- rows are samples, :math:`D_{s j} = r^{(j)}_{s,T}` (sequence labels);
* ``steps="all"`` -- rows are (sample, step) pairs, row :math:`s T + t` holds
  :math:`r^{(j)}_{s,t}` (token labels).

All-zero columns carry no information and duplicate columns are redundant for the convex problem
(two equal columns can share one weight), so :func:`build_dictionary` drops them and keeps, for
every distinct non-zero pattern, the first neuron (in branch-major order ``k * n_last + i``) that
produced it. The provenance of every kept column and the neurons it absorbed are recorded, so a
solution :math:`W` over the dictionary maps back to witness neurons
(:mod:`convexsnn.reconstruct`).

Building is a pure function of (witness block, data shard): dictionaries built on blocks of
branches combine with :meth:`SpikeDictionary.concat` (``axis="columns"``) into exactly the
dictionary built at once; dictionaries built on shards of rows with ``dedupe=False`` combine with
``axis="rows"``.

Storage is a ``bool`` matrix or bits packed along rows (``np.packbits(axis=0)``: byte ``r`` of
column ``j`` holds rows ``8r .. 8r+7``, most significant bit first), 8x smaller. The solvers see
the dictionary through :meth:`SpikeDictionary.operator`, which implements the operator protocol of
:mod:`convexsnn.convex.linear_operator` (``shape``, ``dtype``, ``device``, ``matmul``, ``rmatmul``,
``columns``, ``dense``) and, for packed storage, unpacks one block of rows at a time.

The package has one module per concept: :mod:`.simulate` (readout rows of witnesses on inputs),
:mod:`.build` (:func:`build_dictionary`), :mod:`.storage` (:class:`SpikeDictionary`),
:mod:`.operator` (:class:`SpikeOperator`) and :mod:`._bits` (bit packing, equal columns).
"""

from __future__ import annotations

# private names re-exported for callers that import them from here
from ._bits import _RowPacker, _unique_columns, _unpack_rows  # noqa: F401
from .build import _x_fingerprint, build_dictionary  # noqa: F401
from .operator import _FLOAT_DTYPES, SpikeOperator, _TransposedOperator  # noqa: F401
from .simulate import (  # noqa: F401
    _DEFAULT_CHUNK_BYTES,
    STEPS,
    _auto_chunk,
    _iter_readout_rows,
    _readout_rows,
    _unique_sequences,
)
from .storage import (  # noqa: F401
    DICTIONARY_FORMAT_VERSION,
    STORAGES,
    SpikeDictionary,
    _arrays_sha256,
)

__all__ = [
    "SpikeDictionary",
    "SpikeOperator",
    "build_dictionary",
    "STEPS",
    "STORAGES",
    "DICTIONARY_FORMAT_VERSION",
]
