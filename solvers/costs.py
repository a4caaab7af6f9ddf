"""The one cost model: what moving a buffer costs, where it lives, and where a spill goes.

Traffic is counted in **byte-hops**: a copy of ``n`` bytes between levels ``i`` and ``j`` of
the hierarchy costs ``n * |i - j|`` (on a two-level target, plain bytes).  The spill engine,
the traffic lower bound, the exact model's instance and its lowering all ask this module, so
they cannot disagree about a price or about which level a spilled buffer may go to.

**Which level a spill goes to.**  A spilled (dirty) buffer is stored to one of the writable
levels slower than the compute level (``Hierarchy.spill_levels``) and later reloaded from it.
Candidates are ranked by the cost of that store + reload, ``2 * bytes * hops(compute, L)``,
ties broken by transfer time from the bandwidths (``bytes / write_bw + bytes / read_bw``,
unknown bandwidths count as infinitely slow), then by nearness.  A level whose capacity is
smaller than the buffer can never hold it and is not a candidate at all
(``spill_candidates``); whether a candidate has a free address range *at that time* is a
question of occupancy that the caller answers with ``first_fit`` over its own reservations,
trying candidates in this order.  So the cheapest level that can ever hold ``b``
(``store_level``) is both the level an uncontended plan uses and the price any plan pays at
least, which is what the lower bounds need.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stowage.ir.graph import Graph, TensorKind
from stowage.targets.hierarchy import Hierarchy, Level

INF = float("inf")


def home_level(graph: Graph, target: Hierarchy, buffer_id: int) -> str | None:
    """Where a buffer's data lives outside the compute level for the whole run: graph inputs
    and weights at their homes, graph outputs where they are stored; ``None`` for an
    intermediate activation (it exists off-chip only if spilled)."""
    b = graph.buffers[buffer_id]
    if b.kind is TensorKind.INPUT:
        return target.inputs_home
    if b.kind is TensorKind.WEIGHT:
        return target.weights_home
    if b.is_output:
        return target.outputs_home
    return None


@dataclass(frozen=True)
class CostModel:
    """Prices and spill-level choices for one target (build once per problem)."""

    target: Hierarchy
    _hops: dict[str, int] = field(init=False, repr=False, compare=False)
    #: ``spill_rank`` by size: the spill engine asks at every eviction, for few distinct sizes.
    _ranks: dict[int, tuple[tuple[tuple[float, float, int], Level], ...]] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = self.target.level_names
        ci = names.index(self.target.compute_level)
        object.__setattr__(self, "_hops", {n: abs(i - ci) for i, n in enumerate(names)})
        object.__setattr__(self, "_ranks", {})

    @property
    def compute_level(self) -> str:
        return self.target.compute_level

    def hops(self, level: str) -> int:
        """Hops between ``level`` and the compute level."""
        return self._hops[level]

    def copy_cost(self, size: int, level: str) -> int:
        """Byte-hops of one copy of ``size`` bytes between ``level`` and the compute level."""
        return size * self._hops[level]

    def spill_rank(self, size: int) -> list[tuple[tuple[float, float, int], Level]]:
        """Every spill level with its rank key for a ``size``-byte buffer, best first, whether
        or not it can hold it (the engine keeps the key for its tie-breaks).  A fresh list of a
        ranking memoised per size."""
        hit = self._ranks.get(size)
        if hit is None:
            ranked: list[tuple[tuple[float, float, int], Level]] = []
            for i, lv in enumerate(self.target.spill_levels()):
                secs = sum(size / bw if bw else INF for bw in (lv.write_bandwidth, lv.read_bandwidth))
                ranked.append(((2 * size * self._hops[lv.name], secs, i), lv))
            ranked.sort(key=lambda kv: kv[0])
            hit = self._ranks[size] = tuple(ranked)
        return list(hit)

    def spill_candidates(self, size: int) -> tuple[str, ...]:
        """The levels a ``size``-byte spill may go to, best first: writable, slower than the
        compute level, and large enough to ever hold it."""
        return tuple(lv.name for _, lv in self.spill_rank(size) if lv.capacity is None or lv.capacity >= size)

    def store_level(self, size: int) -> str | None:
        """The cheapest level that can ever hold a ``size``-byte spill (``None``: the buffer
        cannot be spilled on this target)."""
        cands = self.spill_candidates(size)
        return cands[0] if cands else None

    def spill_cost(self, size: int) -> int | None:
        """Byte-hops of storing and reloading a ``size``-byte buffer at ``store_level`` (the
        least any spill of it costs); ``None`` when it cannot be spilled."""
        level = self.store_level(size)
        return None if level is None else 2 * self.copy_cost(size, level)

    def reload_cost(self, graph: Graph, buffer_id: int) -> int | None:
        """Byte-hops of bringing a buffer back after it left the compute level: from its home
        when it has one (a clean copy is there), else a store plus a reload (``spill_cost``)."""
        b = graph.buffers[buffer_id]
        home = home_level(graph, self.target, buffer_id)
        if home is not None:
            return self.copy_cost(b.bytes, home)
        return self.spill_cost(b.bytes)


__all__ = ["CostModel", "home_level"]
