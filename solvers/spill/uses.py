"""When each buffer is needed in the compute level, for the next-use queries of every policy."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from stowage.ir.graph import Graph, OpIndex
from stowage.solvers.analysis.steps import step_table
from stowage.solvers.cache import graph_cached

INF = math.inf


class Uses:
    """Steps at which each buffer is needed (per-buffer sorted use lists + bisect).  Read-only
    after construction, so ``uses_for`` shares one instance between the simulations of the
    same order (a search simulates one order with many configurations)."""

    def __init__(self, graph: Graph, order: Sequence[OpIndex], weights_in_compute_level: bool) -> None:
        table = step_table(graph, weights_in_compute_level)
        self.needs: list[tuple[int, ...]] = [table.needs[idx] for idx in order]
        #: The buffers each step writes (same indexing as ``needs``).
        self.writes: list[frozenset[int]] = [table.written[idx] for idx in order]
        self.uses: dict[int, list[int]] = {}
        for s, bs in enumerate(self.needs):
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
