"""A lower bound on non-compulsory traffic that holds for EVERY order, computed once per problem.

Why it is valid: take an operator ``o``.  A buffer ``b`` that ``o`` does not touch *crosses*
``o`` when, in every topological order, ``b`` already holds data before ``o`` runs and is
needed after it:

* an activation whose producer is an ancestor of ``o`` and one of whose consumers is a
  descendant of ``o``;
* an input (or a weight, when weights occupy the compute level) with one consumer among
  ``o``'s ancestors and another among its descendants.

While ``o`` runs, its own buffers (``op_footprint``) plus every crossing buffer either sit in
the compute level or are off-chip.  If their bytes exceed the capacity by ``E``, crossing
buffers totalling at least ``E`` bytes are off-chip at that step, and each such buffer costs
at least: a reload (clean buffers: inputs, weights, graph outputs -- byte-hops from their
home) or a store plus a reload (other activations -- byte-hops to the cheapest spill level
that can ever hold the buffer and back, ``CostModel.store_level``: a level smaller than the
buffer is no option, and one with room at the time can only cost more).  Choosing which
buffers is a knapsack cover; its fractional relaxation (cheapest cost per byte first) is a
lower bound, and so is the maximum over operators (one spill may serve
several operators, so the per-operator bounds are not added).  Addresses, alignment and
fragmentation only make things worse, so the bound ignores them.

It is 0 whenever the live set of every operator fits (always at M_P and above), and is not
computed for graphs above ``MAX_OPS`` computing operators (0 is reported: always valid).
"""

from __future__ import annotations

import logging

from stowage.ir.graph import TensorKind
from stowage.ir.lifetimes import op_buffers
from stowage.solvers.analysis.reach import bits, reach_bitsets
from stowage.solvers.cache import graph_cached
from stowage.solvers.costs import CostModel
from stowage.solvers.problem import Problem

log = logging.getLogger(__name__)

MAX_OPS = 4000


def _clean_cost(home_hops: int, store_hops: int) -> int:
    """A clean buffer comes back from its home, or from a copy stored to a spill level."""
    return min(home_hops, 2 * store_hops) if store_hops else home_hops


def traffic_lower_bound(problem: Problem) -> int:
    """Byte-hops of non-compulsory traffic every plan of ``problem`` must pay (cached per
    graph; the key holds everything of the target the bound reads)."""
    g, t, cap = problem.graph, problem.target, problem.capacity
    if cap is None:
        return 0
    key = (cap, problem.weights_in_compute_level, t.name, t.compute_level,
           tuple((lv.name, lv.capacity, lv.writable) for lv in t.levels),
           t.inputs_home, t.weights_home, t.outputs_home)
    return graph_cached("traffic_lower_bound", g, key, lambda: _compute(problem))


def _compute(problem: Problem) -> int:
    g, t, cap = problem.graph, problem.target, problem.capacity
    assert cap is not None
    weights_in_compute_level = problem.weights_in_compute_level
    ops = list(g.file_order())
    n = len(ops)
    if n == 0 or n > MAX_OPS:
        return 0
    deps = g.op_dependencies()
    pos, anc, desc = reach_bitsets(ops, deps.__getitem__)  # bitsets over positions in file order
    needs = [set(op_buffers(g, g.operators[op], weights_in_compute_level)) for op in ops]
    footprint = [sum(g.buffers[b].bytes for b in needs[i]) + g.operators[ops[i]].extra_bytes for i in range(n)]
    compute = t.compute_level
    costs = CostModel(t)

    def store_hops(size: int) -> int:
        """Hops to the cheapest level that can hold a ``size``-byte spill (0: none can)."""
        level = costs.store_level(size)
        return 0 if level is None else costs.hops(level)

    crossing: list[list[tuple[int, int]]] = [[] for _ in range(n)]  # (cost per byte, bytes)
    for b in g.buffers:
        users = [pos[op] for op in b.consumers if op in pos]
        if b.producer is None:
            if b.kind is TensorKind.WEIGHT and not weights_in_compute_level:
                continue
            home = t.inputs_home if b.kind is TensorKind.INPUT else t.weights_home
            if b.kind not in (TensorKind.INPUT, TensorKind.WEIGHT) or len(users) < 2:
                continue
            after = before = 0
            for u in users:
                after |= desc[u]
                before |= anc[u]
            cross = after & before
            cpb = _clean_cost(t.hops(home, compute), store_hops(b.bytes))
        else:
            if b.producer not in pos or not users:
                continue
            before = 0
            for u in users:
                before |= anc[u]
            cross = desc[pos[b.producer]] & before
            cpb = (_clean_cost(t.hops(t.outputs_home, compute), store_hops(b.bytes)) if b.is_output
                   else 2 * store_hops(b.bytes))
        if cpb <= 0:
            continue
        for o in bits(cross):
            if b.id not in needs[o]:
                crossing[o].append((cpb, b.bytes))
    best = 0
    for o in range(n):
        live = footprint[o] + sum(sz for _, sz in crossing[o])
        excess = live - cap
        if excess <= 0:
            continue
        cost = 0
        for cpb, sz in sorted(crossing[o]):
            take = min(sz, excess)
            cost += take * cpb
            excess -= take
            if excess <= 0:
                break
        best = max(best, cost)
    log.debug("traffic lower bound %d for capacity %d", best, cap)
    return best                                   # integer byte-hops: sizes and hops are ints


__all__ = ["MAX_OPS", "traffic_lower_bound"]
