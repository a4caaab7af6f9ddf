"""A lower bound valid for EVERY order, by branching on the order: the disjunctive bound.

The crossing bound (``analysis.traffic_bound``, and the cover IP built on the same crossing
sets) sees only buffers that cross an operator in *every* order.  On NAS cells most pressure
is order-dependent: two branches of a cell can run in either order, and whichever runs second
has the first one's result live beside it -- neither crosses the other in every order, so the
crossing bound of PNASNet-5 at M_R is 0 although no order avoids traffic.

The bound.  Let ``T(G)`` be the crossing knapsack bound of a DAG ``G`` (below).  Every
topological order of ``G`` runs two unrelated operators ``a`` and ``b`` one way or the other,
so it is an order of ``G + (a -> b)`` or of ``G + (b -> a)``: the two children cover the
orders of ``G``.  Branching repeatedly gives a tree whose leaves cover every order of the
original graph; the traffic of a plan is at least ``T`` of the leaf its order belongs to, so

    min over the open leaves of T(leaf)   <=   the traffic of every plan.

Adding an edge only adds ancestors and descendants, hence crossings, so a child's ``T`` is at
least its parent's: the minimum over the leaves never decreases as the tree grows, and every
prefix of the search is a valid bound.  A leaf whose crossing buffers cannot leave the compute
level (unmovable bytes over the capacity) holds no feasible order and drops out (``None``).

``T(G)`` for one DAG is ``analysis.traffic_bound``'s argument with the instance's prices
(``joint_data``: the least any plan pays per reload and per store, the prices the cover and
chain bounds use): at operator ``o``, buffers that ``o`` does not touch and that cross it in
every order of ``G`` (produced by an ancestor and consumed by a descendant; inputs and weights
in the compute level: a consumer among the ancestors and one among the descendants) are live
beside ``o``'s own buffers and scratch; if their bytes exceed the capacity by ``E``, buffers of
at least ``E`` bytes are off-chip at ``o``, and each costs at least its reload (plus its store,
for an activation).  The fractional knapsack (cheapest cost per byte first, the partial item
rounded up: traffic is an integer) is a bound for ``o``; the max over operators is ``T(G)``.

Search (``disjunctive_bound``): best-first -- always branch the leaf with the smallest ``T``
(the one that holds the bound down) -- on the pair whose worse child is best among a few
candidates (strong branching).  Candidates: for the operators nearest their capacity in that
leaf, partners whose order relative to them decides the most bytes crossing them.  The
number of ``T`` evaluations is the work budget (``max_evals``), so the result depends on the
instance and the budget only; the wall clock is a safety stop.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from dataclasses import dataclass

import numpy as np

from stowage.solvers.analysis.reach import bits, reach_bitsets
from stowage.solvers.exact.cut_bound import buffer_facts
from stowage.solvers.exact.joint_data import JointData

log = logging.getLogger(__name__)

#: Operators per leaf considered for branching (those with the least room), and partners per
#: operator; each candidate pair costs two evaluations of ``T``.
BRANCH_OPS = 3
BRANCH_PARTNERS = 2


@dataclass(frozen=True)
class DisjunctiveBound:
    """``bound``: proven lower bound on non-compulsory byte-hops over every order;
    ``nodes``: leaves branched; ``evals``: evaluations of ``T``; ``root``: ``T`` of the graph
    itself; ``exhausted``: the smallest leaf is a complete order (no unrelated pair is left
    to branch on), so more work cannot raise the bound."""

    bound: int
    root: int
    nodes: int
    evals: int
    exhausted: bool
    seconds: float


@dataclass(frozen=True)
class _Leaf:
    """A DAG of the tree: the original graph plus the precedence edges ``edges`` (kept
    instead of the closed bitsets, which ``_Instance.closure`` rebuilds: a leaf costs a few
    bytes, so a long search does not grow the memory by megabytes per leaf)."""

    value: int
    edges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class _Dag:
    """A leaf's closed bitsets and its live bytes per position (footprint + crossing)."""

    anc: list[int]
    desc: list[int]
    live: list[int]


def add_precedence(anc: list[int], desc: list[int], a: int, b: int) -> tuple[list[int], list[int]]:
    """Closed ancestor / descendant bitsets plus the precedence ``a -> b`` (``a`` and ``b``
    unrelated): every new path runs u ->* a -> b ->* x, so ``b`` and its descendants gain
    ``a`` and its ancestors as ancestors, and ``a`` and its ancestors gain ``b`` and its
    descendants as descendants.  New lists; the arguments are not changed."""
    new_anc, new_desc = list(anc), list(desc)
    add_anc = anc[a] | (1 << a)
    for x in itertools.chain((b,), bits(desc[b])):
        new_anc[x] |= add_anc
    add_desc = desc[b] | (1 << b)
    for y in itertools.chain((a,), bits(anc[a])):
        new_desc[y] |= add_desc
    return new_anc, new_desc


class _Instance:
    """The per-buffer facts ``T`` reads, in positions of ``data.ops`` (a topological order)."""

    def __init__(self, data: JointData) -> None:
        self.data = data
        ops = list(data.ops)
        self.n = n = len(ops)
        self.pos, self.anc, self.desc = reach_bitsets(ops, data.pred_map().__getitem__)
        foot, facts = buffer_facts(data, self.pos)
        prod = [b.producer for b in facts]
        cons = [b.consumers for b in facts]
        umask = [b.users for b in facts]
        size = [b.size for b in facts]
        cost = [b.cost for b in facts]
        movable = [b.movable for b in facts]
        self.footprint = foot
        self.prod, self.cons, self.umask = prod, cons, umask
        self.size = np.array(size, dtype=np.int64)
        self.cost, self.movable = cost, movable
        # Knapsack order: cheapest byte-hops per byte first (ties by index: deterministic).
        self.by_ratio = sorted(range(len(size)), key=lambda k: (cost[k] / size[k], k))
        self.nbytes = (n + 7) // 8

    def crossing(self, anc: list[int], desc: list[int]) -> np.ndarray:
        """Boolean matrix buffers x positions: buffer crosses the operator in every order."""
        rows = []
        for p, cs, mask in zip(self.prod, self.cons, self.umask, strict=True):
            before = 0
            for c in cs:
                before |= anc[c]
            if p >= 0:
                cross = desc[p] & before
            else:
                after = 0
                for c in cs:
                    after |= desc[c]
                cross = before & after
            rows.append((cross & ~mask).to_bytes(self.nbytes, "little"))
        if not rows:
            return np.zeros((0, self.n), dtype=bool)
        flat = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), self.nbytes)
        return np.unpackbits(flat, axis=1, bitorder="little")[:, : self.n].astype(bool)

    def evaluate(self, anc: list[int], desc: list[int]) -> tuple[int, list[int]] | None:
        """``T`` of the DAG given by its closed bitsets and the live bytes per position, or
        None when no order of it fits."""
        cap = self.data.capacity
        m = self.crossing(anc, desc)
        live = np.asarray(self.footprint, dtype=np.int64) + (self.size @ m if len(self.size) else 0)
        best = 0
        for o in np.flatnonzero(live > cap).tolist():
            excess = int(live[o]) - cap
            col = m[:, o]
            got = 0
            for k in self.by_ratio:
                if not col[k] or not self.movable[k]:
                    continue
                sz = int(self.size[k])
                if sz <= excess:
                    got += self.cost[k]
                    excess -= sz
                else:
                    got += (excess * self.cost[k] + sz - 1) // sz   # the partial item, rounded up
                    excess = 0
                if excess <= 0:
                    break
            if excess > 0:
                return None                 # unmovable bytes alone exceed the capacity
            best = max(best, got)
        return best, [int(x) for x in live]

    def closure(self, edges: tuple[tuple[int, int], ...]) -> tuple[list[int], list[int]]:
        """The closed bitsets of the graph plus ``edges`` (added in the order they were)."""
        anc, desc = self.anc, self.desc
        for a, b in edges:
            anc, desc = add_precedence(anc, desc, a, b)
        return anc, desc

    def candidates(self, leaf: _Dag) -> list[tuple[int, int]]:
        """Pairs worth branching: for the operators with the least room, the unrelated
        operators whose order relative to them decides the most bytes crossing them."""
        cap = self.data.capacity
        full = (1 << self.n) - 1
        tight = sorted(range(self.n), key=lambda o: (cap - leaf.live[o], o))
        out: list[tuple[int, int]] = []
        for o in tight:
            free = full & ~leaf.anc[o] & ~leaf.desc[o] & ~(1 << o)
            if not free:
                continue
            # gain[v]: bytes that start crossing o when v runs before it (v produces a buffer
            # a descendant of o consumes) plus those when v runs after it (v consumes a
            # buffer produced before o that nothing after o needs yet).
            gain: dict[int, int] = {}
            for p, cs, sz in zip(self.prod, self.cons, self.size.tolist(), strict=True):
                if p < 0 or p == o:
                    continue
                later = any((leaf.desc[o] >> c) & 1 for c in cs)
                if later and (free >> p) & 1:
                    gain[p] = gain.get(p, 0) + sz
                elif not later and (leaf.anc[o] >> p) & 1:
                    for c in cs:
                        if (free >> c) & 1:
                            gain[c] = gain.get(c, 0) + sz
            ranked = sorted(gain.items(), key=lambda kv: (-kv[1], kv[0]))
            if not ranked and not out:
                ranked = [(next(bits(free)), 0)]     # no pair moves bytes at o: any pair
            for v, _g in ranked[:BRANCH_PARTNERS]:
                pair = (min(o, v), max(o, v))
                if pair not in out:
                    out.append(pair)
            if len(out) >= BRANCH_OPS * BRANCH_PARTNERS:
                break
        return out


def disjunctive_bound(data: JointData, max_evals: int, deadline: float) -> DisjunctiveBound:
    """Grow the branching tree for at most ``max_evals`` evaluations of ``T`` (or until
    ``deadline``, ``time.perf_counter()``); the minimum of ``T`` over its open leaves."""
    t0 = time.perf_counter()
    if not data.capacity_given or not data.ops:
        return DisjunctiveBound(0, 0, 0, 0, True, 0.0)
    inst = _Instance(data)
    got = inst.evaluate(inst.anc, inst.desc)
    if got is None:           # infeasible in every order: the cover bound reports that
        return DisjunctiveBound(0, 0, 0, 1, False, time.perf_counter() - t0)
    root = _Leaf(got[0], ())
    counter = itertools.count()
    heap: list[tuple[int, int, _Leaf]] = [(root.value, next(counter), root)]
    evals, nodes, exhausted = 1, 0, False
    while heap and evals + 3 <= max_evals and time.perf_counter() < deadline:
        value, _i, leaf = heap[0]
        anc, desc = inst.closure(leaf.edges)
        here = inst.evaluate(anc, desc)
        evals += 1
        assert here is not None              # a leaf on the heap was evaluated feasible
        pairs = inst.candidates(_Dag(anc, desc, here[1]))
        if not pairs:
            exhausted = True                 # a complete order: the smallest leaf is final
            break
        best: tuple[int, list[_Leaf]] | None = None
        for a, b in pairs:
            if evals + 2 > max_evals:
                break
            kids: list[_Leaf] = []
            for edge in ((a, b), (b, a)):
                got = inst.evaluate(*add_precedence(anc, desc, *edge))
                if got is not None:
                    kids.append(_Leaf(max(got[0], value), (*leaf.edges, edge)))
            evals += 2
            worst = min((k.value for k in kids), default=1 << 62)
            if best is None or worst > best[0]:
                best = (worst, kids)
        if best is None:
            break
        heapq.heappop(heap)
        nodes += 1
        for child in best[1]:
            heapq.heappush(heap, (child.value, next(counter), child))
    bound = heap[0][0] if heap else root.value
    seconds = time.perf_counter() - t0
    log.info("disjunctive bound %d (root %d, %d leaves branched, %d evaluations, %.2fs)", bound, root.value,
             nodes, evals, seconds)
    return DisjunctiveBound(bound, root.value, nodes, evals, exhausted, seconds)


__all__ = ["BRANCH_OPS", "BRANCH_PARTNERS", "DisjunctiveBound", "add_precedence", "disjunctive_bound"]
