"""The spike dictionary: packed storage of binary readout columns, with provenance."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._checks import check_choice, check_sequence_input
from .._persist import arrays_sha256 as _arrays_sha256
from .._persist import check_archive_target, check_format, read_archive, write_archive
from ..witnesses import Witnesses
from ._bits import _unique_columns, _unpack_rows
from .operator import _FLOAT_DTYPES, SpikeOperator
from .simulate import _auto_chunk, _iter_readout_rows

__all__ = ["SpikeDictionary", "STORAGES", "DICTIONARY_FORMAT_VERSION"]

logger = logging.getLogger("convexsnn")

STORAGES = ("bool", "packed")
DICTIONARY_FORMAT_VERSION = 1
_FORMAT = "convexsnn.SpikeDictionary"


_POPCOUNT = np.array([bin(b).count("1") for b in range(256)], np.uint8)


def _popcount(a: np.ndarray) -> np.ndarray:
    """Set bits of every byte (``np.bitwise_count`` from numpy 2.0, else a 256-entry table)."""
    f = getattr(np, "bitwise_count", None)
    return f(a) if f is not None else _POPCOUNT[a]


def _column_counts(packed: np.ndarray, n_rows: int, block: int = 4096) -> np.ndarray:
    """Ones per column of the first ``n_rows`` rows of row-packed bits: a popcount per byte,
    summed over byte rows by blocks (padding bits of the last byte masked)."""
    counts = np.zeros(packed.shape[1], np.int64)
    full = n_rows // 8
    for b0 in range(0, full, block):
        counts += _popcount(packed[b0 : min(full, b0 + block)]).sum(axis=0, dtype=np.int64)
    if n_rows % 8:
        mask = np.uint8((0xFF << (8 - n_rows % 8)) & 0xFF)
        counts += _popcount(packed[full] & mask).astype(np.int64)
    return counts


class SpikeDictionary:
    r"""Binary dictionary of witness-neuron readouts, with provenance.

    Built by :func:`build_dictionary`; not meant to be constructed by hand.

    Attributes
    ----------
    witnesses : Witnesses
        The whole witness set (the dictionary may use a block of its branches).
    branches : ndarray (n_branches_used,)
        Sorted branch indices that were simulated.
    readout, readout_bias, steps
        Readout rule (``"spike"`` / ``"membrane"`` with bias :math:`b`) and row semantics.
    n_samples, n_steps, n_inputs : int
        Shape of the training inputs ``(n_samples, n_steps, n_inputs)``.
    provenance : ndarray (P, 2) int64
        (branch, neuron) of the witness neuron kept for every column.
    neuron_ids : ndarray (n_witness_neurons,) int64
        Global index ``k * n_last + i`` of every simulated neuron, ascending.
    assignment : ndarray (n_witness_neurons,) int64
        Column of every simulated neuron (its own, or the column it duplicates); ``-1`` for
        all-zero neurons (dropped).
    column_counts : ndarray (P,) int64
        Number of ones in every column, :math:`\|d_j\|_1 = \|d_j\|_2^2`.
    deduplicated : bool
        Whether zero and duplicate columns were dropped.
    """

    def __init__(
        self,
        *,
        witnesses: Witnesses,
        branches: np.ndarray,
        readout: str,
        readout_bias: float,
        steps: str,
        n_samples: int,
        n_steps: int,
        n_inputs: int,
        packed: np.ndarray,
        provenance: np.ndarray,
        neuron_ids: np.ndarray,
        assignment: np.ndarray,
        n_unique: int,
        deduplicated: bool,
        storage: str,
        x_fingerprints: list[str],
        chunk_size: int | None = None,
    ):
        check_choice(storage, "storage", STORAGES)
        self.witnesses = witnesses
        self.branches = np.asarray(branches, np.int64)
        self.readout = readout
        self.readout_bias = float(readout_bias)
        self.steps = steps
        self.n_samples = int(n_samples)
        self.n_steps = int(n_steps)
        self.n_inputs = int(n_inputs)
        self.provenance = np.asarray(provenance, np.int64).reshape(-1, 2)
        self.neuron_ids = np.asarray(neuron_ids, np.int64)
        self.assignment = np.asarray(assignment, np.int64)
        self._n_unique = int(n_unique)
        self.deduplicated = bool(deduplicated)
        self.storage = storage
        self.x_fingerprints = list(x_fingerprints)
        self.chunk_size = chunk_size
        packed = np.ascontiguousarray(packed, dtype=np.uint8)
        expect_nb = (self.n_rows + 7) // 8
        if packed.shape != (expect_nb, self.provenance.shape[0]):
            raise ValueError(
                f"packed bits have shape {packed.shape}, expected "
                f"{(expect_nb, self.provenance.shape[0])}"
            )
        self.column_counts = _column_counts(packed, self.n_rows)
        if storage == "packed":
            self._packed = packed
            self._bool = None
        else:
            self._packed = None  # type: ignore[assignment]
            self._bool = torch.from_numpy(
                np.unpackbits(packed, axis=0, count=self.n_rows).view(bool)
            )
        self._operators: dict = {}

    # ------------------------------------------------------------------ sizes
    @property
    def n_rows(self) -> int:
        """Rows: ``n_samples`` (``steps="last"``) or ``n_samples * n_steps`` (``"all"``)."""
        return self.n_samples * (self.n_steps if self.steps == "all" else 1)

    @property
    def n_columns(self) -> int:
        """``P``, the number of stored columns."""
        return int(self.provenance.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.n_columns)

    @property
    def n_witness_neurons(self) -> int:
        """Number of last-layer witness neurons simulated."""
        return int(self.neuron_ids.shape[0])

    @property
    def n_unique(self) -> int:
        """Number of distinct non-zero column patterns among the simulated neurons."""
        return self._n_unique

    @property
    def n_zero(self) -> int:
        """Simulated neurons whose column was all zero."""
        if self.deduplicated:
            return int((self.assignment < 0).sum())
        return int((self.column_counts == 0).sum())

    @property
    def n_duplicates(self) -> int:
        """Simulated neurons dropped (or, undeduplicated, that would be) as duplicates."""
        return self.n_witness_neurons - self.n_zero - self.n_unique

    @property
    def density(self) -> float:
        """Fraction of ones among the stored entries."""
        total = self.n_rows * self.n_columns
        return float(self.column_counts.sum() / total) if total else 0.0

    @property
    def nbytes(self) -> int:
        """Bytes of the stored matrix."""
        return int(
            self._packed.nbytes
            if self._packed is not None
            else self._bool.numel() * self._bool.element_size()
        )

    def duplicate_counts(self) -> np.ndarray:
        """``(P,)``: number of other simulated neurons sharing each column's pattern."""
        if not self.deduplicated:
            return np.zeros(self.n_columns, np.int64)
        counts = np.bincount(self.assignment[self.assignment >= 0], minlength=self.n_columns)
        return counts - 1

    def duplicates(self, column: int) -> np.ndarray:
        """(branch, neuron) rows of the neurons whose pattern equals column ``column``'s, the kept
        neuron first."""
        if not 0 <= column < self.n_columns:
            raise IndexError(f"column {column} out of range [0, {self.n_columns})")
        ids = self.neuron_ids[self.assignment == column]
        n_last = self.witnesses.n_last
        return np.stack([ids // n_last, ids % n_last], axis=1)

    def summary(self) -> dict:
        """JSON-safe summary."""
        return {
            "n_rows": self.n_rows,
            "n_columns": self.n_columns,
            "n_witness_neurons": self.n_witness_neurons,
            "n_unique": self.n_unique,
            "n_zero": self.n_zero,
            "n_duplicates": self.n_duplicates,
            "density": self.density,
            "readout": self.readout,
            "readout_bias": self.readout_bias,
            "steps": self.steps,
            "storage": self.storage,
            "deduplicated": self.deduplicated,
            "n_samples": self.n_samples,
            "n_steps": self.n_steps,
            "n_inputs": self.n_inputs,
            "n_branches_used": int(self.branches.size),
            "nbytes": self.nbytes,
            "witnesses": self.witnesses.description.get("kind"),
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"SpikeDictionary(rows={s['n_rows']}, columns={s['n_columns']}, "
            f"witness_neurons={s['n_witness_neurons']}, density={s['density']:.3f}, "
            f"readout={self.readout!r}, steps={self.steps!r}, storage={self.storage!r})"
        )

    # ------------------------------------------------------------------ matrix access
    def packed_bits(self) -> np.ndarray:
        """Row-packed bits ``(ceil(n/8), P)`` uint8 (``np.packbits(D, axis=0)``)."""
        if self._packed is not None:
            return self._packed
        return np.packbits(self._bool.numpy(), axis=0)

    def matrix(
        self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """The dense ``(n_rows, P)`` 0/1 matrix (``dtype`` may be ``torch.bool``)."""
        if self._bool is not None:
            t = self._bool
        else:
            t = _unpack_rows(torch.from_numpy(self._packed), self.n_rows) != 0
        return t.to(device=device, dtype=dtype)

    def operator(
        self,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        chunk_rows: int = 8192,
        rows: Any = None,
    ) -> SpikeOperator:
        """Operator view for the solvers (see :class:`SpikeOperator`).

        On the CPU the operator holds the packed bits whatever the storage (``bool`` storage is
        packed once, ``n P / 8`` more bytes) and multiplies through byte lookup tables, so no
        ``(n, P)`` float copy is made; on an accelerator ``bool`` storage gives a dense operator
        (the ``(n, P)`` matrix in ``dtype``) and ``packed`` storage unpacks ``chunk_rows`` rows
        per block. ``rows`` (int indices) restricts the operator to those rows, in that order
        (e.g. the representatives of :meth:`unique_rows`). Full-row operators are cached per
        dtype/device.
        """
        if self.n_columns == 0:
            raise ValueError("the dictionary has no columns")
        on_cpu = device is None or torch.device(device).type == "cpu"
        if rows is not None:
            idx = np.asarray(rows, dtype=np.int64).reshape(-1)
            if idx.size == 0 or idx.min() < 0 or idx.max() >= self.n_rows:
                raise ValueError(f"rows must be non-empty indices in [0, {self.n_rows})")
            sub = self._row_block_bool(idx)
            if self._bool is not None and not on_cpu:
                return SpikeOperator(dense=sub, dtype=dtype, device=device, chunk_rows=chunk_rows)
            return SpikeOperator(
                packed=torch.from_numpy(np.packbits(sub.numpy(), axis=0)),
                n_rows=idx.size,
                dtype=dtype,
                device=device,
                chunk_rows=chunk_rows,
            )
        key = (dtype, str(torch.device(device) if device is not None else "cpu"), chunk_rows)
        op = self._operators.get(key)
        if op is None:
            if self._bool is not None and not on_cpu:
                op = SpikeOperator(
                    dense=self._bool, dtype=dtype, device=device, chunk_rows=chunk_rows
                )
            else:
                op = SpikeOperator(
                    packed=torch.from_numpy(self.packed_bits()),
                    n_rows=self.n_rows,
                    dtype=dtype,
                    device=device,
                    chunk_rows=chunk_rows,
                )
            self._operators[key] = op
        return op

    def _row_block_bool(self, idx: np.ndarray) -> torch.Tensor:
        """Bool rows ``idx`` ``(len(idx), P)``."""
        if self._bool is not None:
            return self._bool[torch.from_numpy(idx)]
        return torch.from_numpy(
            np.unpackbits(self._packed[idx // 8], axis=0)
            .reshape(idx.size, 8, -1)[np.arange(idx.size), idx % 8]
            .astype(bool)
        )

    def unique_rows(
        self, labels: Any = None, *, block_rows: int = 65536
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r"""Group identical rows (and, with ``labels``, identical (row, label) pairs).

        The convex problem :math:`\sum_i a_i \ell(y_i, d_i W) + \lambda R(W)` only depends on
        the distinct pairs :math:`(d_i, y_i)`, each weighted by the sum of its :math:`a_i`: solving
        on the representatives with those weights gives the same objective, solution and
        certificate, often on far fewer rows (sequences repeat in small automata tasks).

        Returns
        -------
        first : ndarray (n_groups,)
            Row index of every group's first row (ascending).
        inverse : ndarray (n_rows,)
            Group of every row.
        counts : ndarray (n_groups,)
            Rows per group.
        """
        n = self.n_rows
        lab = None
        if labels is not None:
            lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
            lab = np.ascontiguousarray(lab.reshape(-1).astype(np.int64))
            if lab.shape[0] != n:
                raise ValueError(f"labels has {lab.shape[0]} entries, the dictionary {n} rows")
        keys = []
        for r0 in range(0, n, block_rows):
            idx = np.arange(r0, min(n, r0 + block_rows))
            k = np.packbits(self._row_block_bool(idx).numpy(), axis=1)
            if lab is not None:
                k = np.concatenate([k, lab[idx, None].view(np.uint8).reshape(idx.size, 8)], 1)
            keys.append(k)
        k = np.ascontiguousarray(np.concatenate(keys, 0))
        v = k.view(np.dtype((np.void, k.shape[1]))).ravel()
        _, first, inverse = np.unique(v, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        inverse = rank[inverse].astype(np.int64)
        return first[order].astype(np.int64), inverse, np.bincount(inverse).astype(np.int64)

    def __matmul__(self, W: Any) -> torch.Tensor:
        W = torch.as_tensor(W)
        dtype = W.dtype if W.dtype in _FLOAT_DTYPES else torch.float64
        return self.operator(dtype, W.device).matmul(W.to(dtype))

    # ------------------------------------------------------------------ new inputs
    def _block_witnesses(self, device=None) -> Witnesses:
        w = self.witnesses
        if self.branches.size != w.n_branches or np.any(self.branches != np.arange(w.n_branches)):
            w = w.select_branches(self.branches)
        return w if device is None else w.to(device)

    def transform(
        self,
        X: Any,
        *,
        dtype: torch.dtype = torch.float64,
        chunk_size: int | None = None,
        device: torch.device | str | None = None,
        allow_other_T: bool = False,
        unique_inputs: bool = True,
    ) -> torch.Tensor:
        """Readouts of exactly the kept neurons on new inputs: dense 0/1 ``(rows, P)``.

        The witnesses are simulated with the same code, block of branches and readout as at
        build time, so ``transform(X_train)`` reproduces :meth:`matrix`.

        Parameters
        ----------
        X : array ``(n, T, n_inputs)``
            Inputs.
        dtype : torch.dtype
            Result dtype (``torch.bool`` allowed).
        allow_other_T : bool
            Accept a ``T`` different from the training ``T`` (e.g. out-of-distribution lengths);
            by default a mismatch raises ``ValueError``. With ``steps="all"`` the rows are then
            ``n * T_new``.
        unique_inputs : bool
            Simulate each distinct sequence once (see :func:`build_dictionary`).

        Raises
        ------
        ValueError
            Wrong rank, feature size or (unless allowed) ``T``; NaN or inf in ``X``.
        """
        x = check_sequence_input(X, "X", dtype=self.witnesses.dtype)
        if x.shape[2] != self.n_inputs:
            raise ValueError(
                f"X has {x.shape[2]} features per step, the dictionary was built on {self.n_inputs}"
            )
        if x.shape[1] != self.n_steps and not allow_other_T:
            raise ValueError(
                f"X has T={x.shape[1]} steps, the dictionary was built with T={self.n_steps} "
                f"(steps={self.steps!r}); pass allow_other_T=True to read other lengths"
            )
        wb = self._block_witnesses(device)
        cols = self._local_columns()
        chunk = chunk_size or self.chunk_size or _auto_chunk(wb, x.shape[1], self.readout)
        out = [
            torch.from_numpy(block)[:, cols]
            for block in _iter_readout_rows(
                wb, x, self.readout, self.readout_bias, self.steps, chunk, device, unique_inputs
            )
        ]
        return torch.cat(out, 0).to(dtype)

    def _local_columns(self) -> torch.Tensor:
        """Index of every column's kept neuron within the simulated block."""
        n_last = self.witnesses.n_last
        pos = np.searchsorted(self.branches, self.provenance[:, 0])  # branches are sorted
        return torch.from_numpy((pos * n_last + self.provenance[:, 1]).astype(np.int64))

    # ------------------------------------------------------------------ combination
    def deduplicate(self) -> SpikeDictionary:
        """A copy without all-zero and duplicate columns (first occurrence kept)."""
        packed = self.packed_bits()
        first, inverse, nonzero = _unique_columns(packed)
        keep_group = np.flatnonzero(nonzero)
        new_index = -np.ones(first.size, np.int64)
        new_index[keep_group] = np.arange(keep_group.size)
        col_map = new_index[inverse]  # old column -> new column / -1
        assignment = np.where(self.assignment >= 0, col_map[np.maximum(self.assignment, 0)], -1)
        d = SpikeDictionary(
            witnesses=self.witnesses,
            branches=self.branches,
            readout=self.readout,
            readout_bias=self.readout_bias,
            steps=self.steps,
            n_samples=self.n_samples,
            n_steps=self.n_steps,
            n_inputs=self.n_inputs,
            packed=packed[:, first[keep_group]],
            provenance=self.provenance[first[keep_group]],
            neuron_ids=self.neuron_ids,
            assignment=assignment,
            n_unique=int(keep_group.size),
            deduplicated=True,
            storage=self.storage,
            x_fingerprints=self.x_fingerprints,
            chunk_size=self.chunk_size,
        )
        return d

    @staticmethod
    def concat(
        parts: Sequence[SpikeDictionary],
        axis: str = "columns",
        *,
        dedupe: bool = True,
        storage: str | None = None,
    ) -> SpikeDictionary:
        """Combine dictionaries built on blocks of branches or on shards of rows.

        ``axis="columns"``: parts built on the same inputs and witness set over disjoint blocks of
        branches. Zero and duplicate columns are dropped across blocks, keeping for every pattern
        the neuron with the smallest global index, and columns are ordered by that index: the
        result equals :func:`build_dictionary` on the union of the blocks.

        ``axis="rows"``: parts built with ``dedupe=False`` on the same witness block over
        consecutive shards of samples (in order); with ``dedupe=True`` the result is then
        deduplicated (columns distinct on a shard may coincide on the union, and vice versa, so
        shards must not be deduplicated on their own).
        """
        check_choice(axis, "axis", ("columns", "rows"))
        parts = list(parts)
        if not parts or not all(isinstance(p, SpikeDictionary) for p in parts):
            raise TypeError("concat needs a non-empty sequence of SpikeDictionary")
        p0 = parts[0]
        storage = storage or p0.storage
        check_choice(storage, "storage", STORAGES)
        fp = p0.witnesses.fingerprint()
        for p in parts[1:]:
            same = (
                p.readout == p0.readout
                and p.readout_bias == p0.readout_bias
                and p.steps == p0.steps
                and p.n_steps == p0.n_steps
                and p.n_inputs == p0.n_inputs
            )
            if not same:
                raise ValueError("parts differ in readout, readout_bias, steps or input shape")
            if p.witnesses is not p0.witnesses and p.witnesses.fingerprint() != fp:
                raise ValueError("parts were built from different witness sets")
        if axis == "rows":
            for p in parts:
                if p.deduplicated:
                    raise ValueError(
                        "row shards must be built with dedupe=False (a column that "
                        "is zero or duplicate on one shard may differ on another)"
                    )
                if not np.array_equal(p.branches, p0.branches):
                    raise ValueError("row shards must use the same block of branches")
            bools = [p.matrix(torch.bool).numpy() for p in parts]
            packed = np.packbits(np.concatenate(bools, 0), axis=0)
            first, _, nonzero = _unique_columns(packed)
            d = SpikeDictionary(
                witnesses=p0.witnesses,
                branches=p0.branches,
                readout=p0.readout,
                readout_bias=p0.readout_bias,
                steps=p0.steps,
                n_samples=sum(p.n_samples for p in parts),
                n_steps=p0.n_steps,
                n_inputs=p0.n_inputs,
                packed=packed,
                provenance=p0.provenance,
                neuron_ids=p0.neuron_ids,
                assignment=p0.assignment,
                n_unique=int(nonzero.sum()),
                deduplicated=False,
                storage=storage,
                x_fingerprints=[f for p in parts for f in p.x_fingerprints],
                chunk_size=p0.chunk_size,
            )
            return d.deduplicate() if dedupe else d
        # columns
        for p in parts[1:]:
            if p.n_samples != p0.n_samples or p.x_fingerprints != p0.x_fingerprints:
                raise ValueError("column blocks must be built on the same inputs X")
        branches = np.concatenate([p.branches for p in parts])
        if np.unique(branches).size != branches.size:
            raise ValueError("column blocks must use disjoint sets of branches")
        n_last = p0.witnesses.n_last
        packed = np.concatenate([p.packed_bits() for p in parts], axis=1)
        gid = np.concatenate([p.provenance[:, 0] * n_last + p.provenance[:, 1] for p in parts])
        offsets = np.cumsum([0] + [p.n_columns for p in parts])
        neuron_ids = np.concatenate([p.neuron_ids for p in parts])
        assignment = np.concatenate(
            [
                np.where(p.assignment >= 0, p.assignment + offsets[i], -1)
                for i, p in enumerate(parts)
            ]
        )
        # order stored columns by global neuron id, so "first occurrence" = smallest id
        order = np.argsort(gid, kind="stable")
        inv_order = np.empty_like(order)
        inv_order[order] = np.arange(order.size)
        packed, gid = packed[:, order], gid[order]
        assignment = np.where(assignment >= 0, inv_order[np.maximum(assignment, 0)], -1)
        nid_order = np.argsort(neuron_ids, kind="stable")
        neuron_ids, assignment = neuron_ids[nid_order], assignment[nid_order]
        all_dedup = all(p.deduplicated for p in parts)
        prov = np.stack([gid // n_last, gid % n_last], axis=1)
        first, _, nonzero = _unique_columns(packed)
        d = SpikeDictionary(
            witnesses=p0.witnesses,
            branches=np.sort(branches),
            readout=p0.readout,
            readout_bias=p0.readout_bias,
            steps=p0.steps,
            n_samples=p0.n_samples,
            n_steps=p0.n_steps,
            n_inputs=p0.n_inputs,
            packed=packed,
            provenance=prov,
            neuron_ids=neuron_ids,
            assignment=assignment,
            n_unique=int(nonzero.sum()),
            deduplicated=False,
            storage=storage,
            x_fingerprints=p0.x_fingerprints,
            chunk_size=p0.chunk_size,
        )
        if dedupe or all_dedup:
            d = d.deduplicate()
        return d

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Save to one ``.npz`` file (arrays + JSON manifest, no pickle), written atomically
        (:mod:`convexsnn._persist`).

        Holds the bits, the provenance and the whole witness set, so a loaded dictionary can
        :meth:`transform` new inputs and be reconstructed into a network. A previous dictionary
        save at ``path`` is replaced; any other existing file is refused unless
        ``overwrite=True``.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        check_archive_target(path, _FORMAT, "SpikeDictionary", overwrite=overwrite)
        arrays = {
            "bits": self.packed_bits(),
            "provenance": self.provenance,
            "neuron_ids": self.neuron_ids,
            "assignment": self.assignment,
            "branches": self.branches,
        }
        arrays.update({f"witness.{k}": v for k, v in self.witnesses.state_arrays().items()})
        meta = {
            "format": _FORMAT,
            "format_version": DICTIONARY_FORMAT_VERSION,
            "readout": self.readout,
            "readout_bias": self.readout_bias,
            "steps": self.steps,
            "n_samples": self.n_samples,
            "n_steps": self.n_steps,
            "n_inputs": self.n_inputs,
            "n_unique": self.n_unique,
            "deduplicated": self.deduplicated,
            "storage": self.storage,
            "x_fingerprints": self.x_fingerprints,
            "chunk_size": self.chunk_size,
            "witnesses": self.witnesses.meta(),
            "arrays_sha256": _arrays_sha256(arrays),
            "summary": self.summary(),
        }
        write_archive(path, meta, arrays)
        logger.info("saved SpikeDictionary (%d x %d) to %s", self.n_rows, self.n_columns, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, storage: str | None = None) -> SpikeDictionary:
        """Load a dictionary written by :meth:`save` (checksums verified)."""
        meta, files = read_archive(path, "SpikeDictionary")
        check_format(meta, path, _FORMAT, (DICTIONARY_FORMAT_VERSION,), "SpikeDictionary")
        if _arrays_sha256(files) != meta.get("arrays_sha256"):
            raise ValueError(f"{path}: checksum mismatch; the file is corrupt")
        wit = Witnesses.from_arrays(
            meta["witnesses"],
            {k[len("witness.") :]: v for k, v in files.items() if k.startswith("witness.")},
        )
        return cls(
            witnesses=wit,
            branches=files["branches"],
            readout=meta["readout"],
            readout_bias=meta["readout_bias"],
            steps=meta["steps"],
            n_samples=meta["n_samples"],
            n_steps=meta["n_steps"],
            n_inputs=meta["n_inputs"],
            packed=files["bits"],
            provenance=files["provenance"],
            neuron_ids=files["neuron_ids"],
            assignment=files["assignment"],
            n_unique=meta["n_unique"],
            deduplicated=meta["deduplicated"],
            storage=storage or meta["storage"],
            x_fingerprints=meta["x_fingerprints"],
            chunk_size=meta.get("chunk_size"),
        )
