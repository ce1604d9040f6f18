"""The experiment interface: cells, records and shared table helpers.

An *experiment* is a plain Python module registered by name in
:data:`convexsnn.experiments.EXPERIMENTS`. It exposes:

``NAME : str``
    Its registry name (also the output sub-folder).
``DESCRIPTION : str``
    One paragraph for the report.
``ANCHORS : dict``
    The published numbers it is compared with, ``{key: {"value": percent, "what": str}}``.
``cells(quick: bool, seeds: Sequence[int]) -> list[Cell]``
    The independent jobs of the experiment. ``quick=True`` must give a small version (seconds
    per cell) of every row of the table, used by the CI test.
``run_cell(cell: Cell) -> dict``
    Run one cell and return a JSON-safe record (any fields; by convention ``records``: a list of
    per-method dicts as returned by :func:`convexsnn.pipelines.run_methods`).
``table(cells: list[dict]) -> str``
    Markdown for the finished cells; every element of ``cells`` is the content of one cell file
    (``{"cell": {...}, "result": {...}, "seconds": ...}``). Published numbers are shown beside
    ours in every row.
``plots(cells: list[dict], out_dir: Path) -> list[Path]`` (optional)
    PNG figures written into ``out_dir``.

Cells must be independent (no shared state, their own seeds) so that a process pool, Ray or a
cluster scheduler can run them in any order; :func:`convexsnn.experiments.runner.reproduce` runs
them and stores one JSON file per cell.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Cell",
    "mean_std",
    "fmt_pct",
    "fmt_mean_std",
    "group_records",
    "gap_cell",
    "is_certified",
    "cert_mark",
    "capped",
    "CERT_LEGEND",
    "CERTIFY_TOL",
    "REQUIRED_ATTRIBUTES",
]

#: the relative duality gap a convex row of the tables must reach to be called certified (issue
#: 13): the tolerance of every experiment's convex solves, and the bar of :func:`gap_cell`
CERTIFY_TOL = 1e-6

REQUIRED_ATTRIBUTES = ("NAME", "DESCRIPTION", "ANCHORS", "cells", "run_cell", "table")

_ID_RE = re.compile(r"^[A-Za-z0-9_.=+-]+$")


@dataclass(frozen=True)
class Cell:
    """One independent job of an experiment.

    Attributes
    ----------
    experiment : str
        Registry name of the experiment.
    id : str
        File-system safe identifier, unique within the experiment (``[A-Za-z0-9_.=+-]``); the
        cell's result is stored as ``<out>/<experiment>/cells/<id>.json``.
    params : dict
        JSON-safe parameters of the cell (task options, method list, pipeline config, ...).
    seed : int
        Seed of everything random in the cell.
    """

    experiment: str
    id: str
    params: dict = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if not _ID_RE.match(self.id):
            raise ValueError(f"cell id {self.id!r} must match {_ID_RE.pattern}")

    def to_dict(self) -> dict:
        """JSON-safe dict (round-trips through :meth:`from_dict`)."""
        return {
            "experiment": self.experiment,
            "id": self.id,
            "params": self.params,
            "seed": int(self.seed),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Cell:
        """Inverse of :meth:`to_dict`."""
        return cls(
            experiment=d["experiment"],
            id=d["id"],
            params=dict(d.get("params", {})),
            seed=int(d.get("seed", 0)),
        )


def mean_std(values: Iterable[Any]) -> tuple[float, float, int]:
    """Mean, population std and count of the finite values (``nan, nan, 0`` if none)."""
    v = np.array([float(x) for x in values if x is not None and math.isfinite(float(x))])
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std()), int(v.size)


def fmt_pct(x: float | None, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage string (``"-"`` for missing)."""
    if x is None or not math.isfinite(float(x)):
        return "-"
    return f"{100.0 * float(x):.{digits}f}"


def fmt_mean_std(values: Iterable[Any], digits: int = 1) -> str:
    """``"mean ± std"`` in percent over seeds (std omitted for a single value)."""
    m, s, n = mean_std(values)
    if n == 0:
        return "-"
    if n == 1:
        return fmt_pct(m, digits)
    return f"{fmt_pct(m, digits)} ± {100.0 * s:.{digits}f}"


def group_records(cells: Sequence[dict], key_fn) -> dict:
    """Group the per-method records of finished cells by ``key_fn(cell_params, record)``.

    Returns ``{key: [record, ...]}`` keeping first-seen key order.
    """
    out: dict = {}
    for c in cells:
        params = c.get("cell", {}).get("params", {})
        for rec in c.get("result", {}).get("records", []):
            out.setdefault(key_fn(params, rec), []).append(rec)
    return out


def record_certificates(record: dict) -> list[dict]:
    """The certificate dicts of one record: ``certificates`` (one per label head),
    ``certificate``, or a bare ``rel_gap`` (with ``converged`` when recorded); ``[]`` for SG."""
    if record.get("certificates"):
        return [c for c in record["certificates"] if c]
    if record.get("certificate"):
        return [record["certificate"]]
    if record.get("rel_gap") is not None:
        return [{"rel_gap": record["rel_gap"], "converged": record.get("converged")}]
    return []


def is_certified(cert: dict, gap: float = CERTIFY_TOL) -> bool:
    """Whether one certificate dict certifies its solve: the solver reached its requested gap
    (``converged``, when recorded) **and** the relative gap is finite and ``<= gap``. A solve
    that converged at a looser tolerance (e.g. 1e-3) is not certified to ``gap``."""
    g = cert.get("rel_gap")
    if g is None or not math.isfinite(float(g)) or float(g) > gap:
        return False
    return cert.get("converged") is not False


def gap_cell(records: Sequence[dict], gap: float = CERTIFY_TOL) -> str:
    """A table cell for the certificates of records (seeds, heads): the largest relative gap,
    followed by ``NOT certified (k/n)`` when ``k`` of the ``n`` solves are not certified to
    ``gap`` (:func:`is_certified`: stopped before their tolerance, or a relative gap above
    ``gap``)."""
    certs = [c for r in records for c in record_certificates(r)]
    gaps = [
        float(c["rel_gap"])
        for c in certs
        if c.get("rel_gap") is not None and math.isfinite(float(c["rel_gap"]))
    ]
    if not gaps:
        return "-"
    bad = [c for c in certs if not is_certified(c, gap)]
    text = f"{max(gaps):.1e}"
    if bad:
        text += f" NOT certified ({len(bad)}/{len(certs)})"
    return text


#: the legend of :func:`cert_mark`, printed under every table that uses it
CERT_LEGEND = (
    f"† = NOT certified: the convex solve of at least one seed (or head) did not reach a "
    f"relative duality gap <= {CERTIFY_TOL:g}; the accuracy is that of the returned point, not "
    "of a certified optimum (gaps in the certificate table)."
)


def cert_mark(records: Sequence[dict], gap: float = CERTIFY_TOL) -> str:
    """``" †"`` when a record of ``records`` has a convex solve that is not certified to ``gap``
    (:func:`is_certified`), else ``""`` (also for records without a convex solve, e.g. SG)."""
    certs = [c for r in records for c in record_certificates(r)]
    return " †" if any(not is_certified(c, gap) for c in certs) else ""


def capped(config: dict, max_time: float, tol: float = 1e-3) -> dict:
    """``config`` with the capped solve settings the cells of the earlier sessions were
    recorded with (``tol`` 1e-3, ``max_time`` seconds per path solve). Experiments give it to
    the cells they list as not yet rerun with certified solves, so that those cells' committed
    files stay valid (and are marked NOT certified in the tables); removing a cell from such a
    list and running ``reproduce`` reruns it certified."""
    return {**config, "tol": float(tol), "max_time": float(max_time)}
