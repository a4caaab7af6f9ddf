"""Per-graph memoisation with one eviction rule, for every analysis that solvers repeat.

A search simulates the same graph many times and asks for the same M_R, budgets, use lists
and traffic bound over and over; those depend only on the (immutable) graph and a few
settings.  ``graph_cached(name, graph, key, compute)`` keeps one entry per (name, graph
object, key).  The rule: an entry lives as long as its graph object does (a weak reference
drops it when the graph is collected) and each name keeps at most ``MAX_ENTRIES_PER_NAME``
entries, oldest evicted first, so a long sweep over many graphs or orders stays bounded.
Graphs that cannot be weakly referenced are not cached (the value is computed each time).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from stowage.ir.graph import Graph

T = TypeVar("T")

#: Entries kept per cache name (oldest dropped first).
MAX_ENTRIES_PER_NAME = 32

_CACHES: dict[str, OrderedDict[tuple[int, Hashable], tuple[weakref.ref[Any], Any]]] = {}


def graph_cached(name: str, graph: Graph, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, memoised per ``name``, graph object and ``key``."""
    cache = _CACHES.setdefault(name, OrderedDict())
    full = (id(graph), key)
    hit = cache.get(full)
    if hit is not None and hit[0]() is graph:
        cache.move_to_end(full)
        value: T = hit[1]
        return value
    value = compute()

    def forget(_ref: weakref.ref[Graph]) -> None:
        """The graph was collected: drop its entry."""
        cache.pop(full, None)

    try:
        ref = weakref.ref(graph, forget)
    except TypeError:
        return value
    cache[full] = (ref, value)
    while len(cache) > MAX_ENTRIES_PER_NAME:
        cache.popitem(last=False)
    return value


__all__ = ["MAX_ENTRIES_PER_NAME", "graph_cached"]
