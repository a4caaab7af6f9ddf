"""The capacity budgets COSMA reports at: M_R, M_P and M_H (docs/domain.md), and the
``--capacity`` spec that may name them.

* ``M_R`` -- the largest single-operator footprint (``ir.lifetimes.m_r``): below it no plan
  exists.
* ``M_P`` -- the minimum, over schedules without spilling, of the peak live bytes, i.e. the
  best order *with perfect packing*.  It is the peak live bytes of ``min_peak_order`` (proven
  optimal when the exact DP finished: ``m_p_proven``).  It does not include fragmentation:
  an allocator that cannot pack that order at its peak-live bound needs a little more, which
  the solvers then treat as pressure (and spill) rather than redefining the budget.
* ``M_H = (M_R + M_P) // 2``.

Budgets depend on the graph and on whether weights occupy the compute level, and are cached
per graph object (keyed by ``id`` and guarded by a weak reference, since a ``Graph`` holds
unhashable mappings) so that the CLI, the solvers and the reports compute them once.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from ir.errors import TargetError
from ir.graph import Graph, OpIndex
from ir.lifetimes import m_r as compute_m_r
from ir.lifetimes import peak_live
from solvers.schedule import min_peak_order_ex
from targets.hierarchy import Hierarchy, parse_size

BUDGET_NAMES = ("M_R", "M_H", "M_P")


@dataclass(frozen=True)
class Budgets:
    m_r: int
    m_p: int
    m_h: int
    m_p_order: tuple[OpIndex, ...]  # an order whose peak live bytes is m_p
    m_p_proven: bool  # True when m_p is proven minimal (exact DP or m_p == m_r)

    def get(self, name: str) -> int:
        return {"M_R": self.m_r, "M_H": self.m_h, "M_P": self.m_p}[name.upper()]


_CACHE: dict[tuple[int, bool], tuple[weakref.ref, Budgets]] = {}


def budgets(graph: Graph, include_weights: bool, time_limit: float = 5.0) -> Budgets:
    """M_R, M_P, M_H for a graph in one setting (cached per graph object)."""
    key = (id(graph), include_weights)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is graph:
        return hit[1]
    mr = compute_m_r(graph, include_weights)
    order, proven = min_peak_order_ex(graph, include_weights, time_limit)
    mp = peak_live(graph, order, include_weights)
    result = Budgets(m_r=mr, m_p=mp, m_h=(mr + mp) // 2, m_p_order=order, m_p_proven=proven or mp == mr)
    try:
        ref = weakref.ref(graph, lambda _r, k=key: _CACHE.pop(k, None))
    except TypeError:  # not weak-referenceable: do not cache
        return result
    _CACHE[key] = (ref, result)
    return result


def resolve_capacity(spec: str | int | None, graph: Graph, target: Hierarchy,
                     include_weights: bool) -> int | None:
    """The compute-level capacity a ``--capacity`` value means.

    ``None`` keeps the target's own compute capacity (``None`` = unbounded); an int is bytes;
    a string is a size with unit (``256KiB``, ``1.5MB``) or one of ``M_R``, ``M_H``, ``M_P``
    (case-insensitive), computed for this graph and setting."""
    if spec is None:
        return target.compute.capacity
    if isinstance(spec, bool) or not isinstance(spec, (int, str)):
        raise TargetError(_bad(spec))
    if isinstance(spec, int):
        if spec < 0:
            raise TargetError(_bad(spec))
        return spec
    text = spec.strip()
    if text.upper() in BUDGET_NAMES:
        return budgets(graph, include_weights).get(text)
    try:
        return parse_size(text, "--capacity")
    except TargetError:
        raise TargetError(_bad(spec)) from None


def _bad(spec: Any) -> str:
    return (f"--capacity: {spec!r} is not a capacity; use bytes (262144), a size with unit "
            "(256KiB, 1.5MiB, 2MB) or a budget name (M_R, M_H, M_P)")
