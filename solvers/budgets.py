"""The capacity budgets COSMA reports at: M_R, M_P and M_H (``docs/solvers.md``, "Budgets";
M_R's footprint: ``docs/ir.md``), the ``--capacity`` spec that may name them, and the check
that a capacity is not below M_R (the API and every spill simulation ask it).

Budgets are computed *at the compute level's alignment* ``a`` (ethos-u55-256: 16 B; COSMA's
abstract machine and ``budgets(graph, w)``: 1).  Placements start at multiples of ``a``, so a
buffer of ``s`` bytes blocks ``align_up(s, a)`` bytes unless it is the topmost one:

* ``M_R`` -- the smallest capacity at which any plan exists: the maximum over operators of the
  operator's *aligned footprint*, the smallest top address that holds its operands, results
  and working memory at once at aligned offsets (``aligned_footprint``: every size rounded up
  to ``a`` except the one wasting the most padding, which goes on top).  Below it some
  operator cannot run even with everything else spilled; at it, laying that step out from 0
  fits.  At ``a = 1`` it is ``ir.lifetimes.m_r``.
* ``M_P`` -- the minimum over orders of the peak live bytes *of the sizes rounded up to a*:
  what a perfect packing of the best order reaches at that alignment (every aligned packing
  of an order needs at least its rounded peak live minus less than ``a`` bytes, so this is a
  lower bound up to ``a - 1`` bytes and an achievable capacity for a perfect packer).  The
  order is ``min_peak_order`` on the rounded sizes (``m_p_proven`` when the exact DP finished
  or the peak equals the largest rounded footprint); unproven, it is an upper bound on the
  true minimum (the Transformer's fell from 622,592 to 327,680 B once the scheduler also
  tried reversed list scheduling).  M_P is defined by peak live, not by the best packing
  found: it does not include fragmentation, and the budget stays a property of the graph,
  not of a packer.  Measured (docs/benchmarks.md, COSMA section): the orders whose greedy
  packing ended 6-10% above M_P (PNASNet-5, the Transformer with weights) pack exactly at M_P
  with the exact packer, which the solvers now fall back to.
* ``M_H = (M_R + M_P) // 2``.

Budgets depend on the graph, on whether weights occupy the compute level, and on the
alignment, and are cached per graph object (``solvers.cache.graph_cached``) so that the CLI,
the solvers and the reports compute them once; so is M_R alone, which a search checks on
every simulation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from stowage.errors import CapacityError, TargetError
from stowage.ir.graph import Graph, Operator, OpIndex
from stowage.ir.lifetimes import op_buffers, peak_live
from stowage.solvers.alloc.interval import align_up
from stowage.solvers.analysis.schedule import min_peak_order_ex
from stowage.solvers.cache import graph_cached
from stowage.targets.hierarchy import MAX_SIZE, Hierarchy, parse_size

BUDGET_NAMES = ("M_R", "M_H", "M_P")


@dataclass(frozen=True)
class Budgets:
    m_r: int
    m_p: int
    m_h: int
    m_p_order: tuple[OpIndex, ...]  # an order whose (rounded) peak live bytes is m_p
    m_p_proven: bool  # True when m_p is proven minimal (exact DP or m_p == rounded M_R)
    alignment: int = 1

    def get(self, name: str) -> int:
        return {"M_R": self.m_r, "M_H": self.m_h, "M_P": self.m_p}[name.upper()]


def aligned_footprint(sizes: Sequence[int], alignment: int) -> int:
    """Smallest top address holding all ``sizes`` at once at offsets that are multiples of
    ``alignment``: stack them with every size rounded up, except the one wasting the most
    padding, which goes last (only the topmost buffer may end unaligned).  E.g. 10, 20, 30 at
    16: rounded 16, 32, 32 = 80, minus the 12 B of padding of the 20 B buffer on top = 68."""
    sizes = [s for s in sizes if s > 0]
    if not sizes:
        return 0
    a = max(1, alignment)
    padded = [align_up(s, a) for s in sizes]
    return sum(padded) - max(p - s for p, s in zip(padded, sizes))


def op_sizes(graph: Graph, op: Operator, weights_in_compute_level: bool) -> list[int]:
    """Sizes an operator needs resident at once: its distinct buffers and its working memory."""
    sizes = [graph.buffers[b].bytes for b in op_buffers(graph, op, weights_in_compute_level)]
    if op.extra_bytes:
        sizes.append(op.extra_bytes)
    return sizes


def m_r_aligned(graph: Graph, weights_in_compute_level: bool, alignment: int = 1) -> int:
    """M_R at ``alignment``: the largest aligned footprint of any computing operator."""
    return max((aligned_footprint(op_sizes(graph, op, weights_in_compute_level), alignment)
                for op in graph.computing_ops), default=0)


def m_r_operator_aligned(graph: Graph, weights_in_compute_level: bool, alignment: int = 1) -> Operator | None:
    """The (first) operator that sets M_R at ``alignment`` (for error messages)."""
    ops = graph.computing_ops
    if not ops:
        return None
    return max(ops, key=lambda op: (aligned_footprint(op_sizes(graph, op, weights_in_compute_level), alignment),
                                    -op.index))


def rounded_graph(graph: Graph, alignment: int) -> Graph:
    """The same graph with every buffer size and working memory rounded up to ``alignment``
    (the sizes a packing at that alignment blocks); the graph itself when ``alignment <= 1``."""
    if alignment <= 1:
        return graph
    return replace(
        graph,
        buffers=tuple(replace(b, bytes=align_up(b.bytes, alignment)) for b in graph.buffers),
        operators=tuple(replace(op, extra_bytes=align_up(op.extra_bytes, alignment)) if op.extra_bytes else op
                        for op in graph.operators),
    )


def m_r_cached(graph: Graph, weights_in_compute_level: bool, alignment: int = 1) -> int:
    """``m_r_aligned``, memoised per graph object (a search simulates one graph many times)."""
    return graph_cached("budgets.m_r", graph, (weights_in_compute_level, alignment),
                        lambda: m_r_aligned(graph, weights_in_compute_level, alignment))


def check_capacity(graph: Graph, capacity: int | None, weights_in_compute_level: bool, alignment: int = 1) -> None:
    """Raise ``CapacityError`` naming M_R (at ``alignment``, the same number ``--capacity M_R``
    resolves to on a target with that compute alignment) and its operator when no plan can
    exist."""
    if capacity is None:
        return
    need = m_r_cached(graph, weights_in_compute_level, alignment)
    if capacity < need:
        op = m_r_operator_aligned(graph, weights_in_compute_level, alignment)
        name = f"'{op.name}' ({op.op_type})" if op else "?"
        setting = "with" if weights_in_compute_level else "without"
        aligned = f", {alignment}-byte aligned" if alignment > 1 else ""
        raise CapacityError(
            f"capacity {capacity} bytes is below M_R = {need} bytes ({setting} weights{aligned}): operator "
            f"{name} alone needs {need} bytes of inputs and outputs resident at once"
        )


def budgets(graph: Graph, weights_in_compute_level: bool, time_limit: float = 5.0, *, alignment: int = 1) -> Budgets:
    """M_R, M_P, M_H for a graph in one setting at ``alignment`` (cached per graph object;
    ``time_limit`` bounds the scheduler on the first call only)."""
    a = max(1, int(alignment))
    return graph_cached("budgets.budgets", graph, (weights_in_compute_level, a),
                        lambda: _budgets(graph, weights_in_compute_level, time_limit, a))


def _budgets(graph: Graph, weights_in_compute_level: bool, time_limit: float, a: int) -> Budgets:
    mr = m_r_cached(graph, weights_in_compute_level, a)
    rounded = rounded_graph(graph, a)
    order, proven = min_peak_order_ex(rounded, weights_in_compute_level, time_limit)
    mp = peak_live(rounded, order, weights_in_compute_level)
    return Budgets(m_r=mr, m_p=mp, m_h=(mr + mp) // 2, m_p_order=order, m_p_proven=proven or mp == mr,
                   alignment=a)


def target_budgets(graph: Graph, target: Hierarchy, weights_in_compute_level: bool) -> Budgets:
    """``budgets`` at the alignment of ``target``'s compute level (what ``--capacity M_R``
    means on that target)."""
    return budgets(graph, weights_in_compute_level, alignment=target.compute.alignment)


def resolve_capacity(spec: str | int | None, graph: Graph, target: Hierarchy,
                     weights_in_compute_level: bool) -> int | None:
    """The compute-level capacity a ``--capacity`` value means.

    ``None`` keeps the target's own compute capacity (``None`` = unbounded); an int is bytes;
    a string is a size with unit (``256KiB``, ``1.5MB``) or one of ``M_R``, ``M_H``, ``M_P``
    (case-insensitive), computed for this graph and setting at the alignment of the target's
    compute level."""
    if spec is None:
        return target.compute.capacity
    if isinstance(spec, bool) or not isinstance(spec, (int, str)):
        raise TargetError(_bad(spec))
    if isinstance(spec, int):
        if not 0 <= spec < MAX_SIZE:
            raise TargetError(_bad(spec))
        return spec
    text = spec.strip()
    if text.upper() == "M_R":
        # M_R alone is one pass over the operators; the budgets' min-peak order (for M_P and
        # M_H) is a scheduler search of up to 5 s (1.3 s of CPU on NASNet-A) that
        # ``--capacity M_R`` does not need (issue 14, on time).  The same number:
        # ``_budgets`` takes its M_R from this memo.
        return m_r_cached(graph, weights_in_compute_level, max(1, int(target.compute.alignment)))
    if text.upper() in BUDGET_NAMES:
        return target_budgets(graph, target, weights_in_compute_level).get(text)
    try:
        return parse_size(text, "--capacity")
    except TargetError:
        raise TargetError(_bad(spec)) from None


def _bad(spec: Any) -> str:
    """One line, whatever ``spec`` is (a 5,000-digit number is shown cut short)."""
    shown = repr(spec)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return (f"--capacity: {shown} is not a capacity; use bytes from 0 to below 2^48 (262144), a size with "
            "unit (256KiB, 1.5MiB, 2MB) or a budget name (M_R, M_H, M_P)")


__all__ = ["BUDGET_NAMES", "Budgets", "aligned_footprint", "budgets", "check_capacity", "m_r_aligned", "m_r_cached",
           "m_r_operator_aligned", "op_sizes", "resolve_capacity", "rounded_graph", "target_budgets"]
