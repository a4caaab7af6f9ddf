"""When each buffer is needed in the compute level, for the next-use queries of every policy."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from stowage.ir.graph import Graph, OpIndex
from stowage.ir.lifetimes import op_buffers
from stowage.solvers.cache import graph_cached

INF = math.inf


class Uses:
    """Steps at which each buffer is needed (per-buffer sorted use lists + bisect).  Read-only
    after construction, so ``uses_for`` shares one instance between the simulations of the
    same order (a search simulates one order with many configurations)."""

    def __init__(self, graph: Graph, order: Sequence[OpIndex], weights_in_compute_level: bool) -> None:
        self.needs: list[tuple[int, ...]] = []
        self.uses: dict[int, list[int]] = {}
        for s, idx in enumerate(order):
            bs = op_buffers(graph, graph.operators[idx], weights_in_compute_level)
            self.needs.append(bs)
            for b in bs:
                self.uses.setdefault(b, []).append(s)

    def next_use(self, b: int, s: int) -> float:
        """The first step ``>= s`` that needs ``b`` (``inf``: none)."""
        u = self.uses[b]
        k = bisect.bisect_left(u, s)
        return u[k] if k < len(u) else INF

    def last_use(self, b: int) -> int:
        return self.uses[b][-1]


def uses_for(graph: Graph, order: tuple[OpIndex, ...], weights_in_compute_level: bool) -> Uses:
    """``Uses`` of ``order``, memoised per graph (``solvers.cache``)."""
    return graph_cached("spill.uses", graph, (weights_in_compute_level, order),
                        lambda: Uses(graph, order, weights_in_compute_level))


__all__ = ["Uses", "uses_for"]
