"""A lower bound valid for EVERY order from minimum cuts: the least pressure each operator can see.

The crossing bound (``analysis.traffic_bound``) counts at operator ``o`` only buffers that are
live across ``o`` in every order.  What an order decides is which of the operators unrelated to
``o`` (neither ancestors nor descendants) run before it: a set ``D`` closed under predecessors
(any such set is realised by some order: ``o``'s ancestors, ``D``, ``o``, the rest).  Given
``D``, buffer ``b`` (not touched by ``o``) crosses ``o`` exactly when it holds data before ``o``
and is needed after it: an activation whose producer is in ``A = anc(o) + D`` with a consumer
outside ``A``; an input or weight with a consumer in ``A`` and one outside.

Per operator (``operator_bound``).  Off-chip buffers at ``o`` must cover the excess
``live - capacity``, each costing at least ``c_b`` (its reload, plus its store for an
activation: the instance's prices, ``joint_data``).  The fractional knapsack over the crossing
set ``S`` has, for every ``lambda >= 0`` (weak LP duality),

    knap(S) >= lambda * (footprint(o) - capacity) + sum_{b in S} min(lambda * s_b, c_b)

(an unmovable buffer counts ``lambda * s_b``).  The right side is linear in which buffers
cross, with non-negative weights, so its minimum over all predecessor-closed ``D`` is a
minimum-weight *closure* problem -- a minimum cut (Picard 1976): one node per unrelated
operator (in the closure = runs before ``o``; it implies its unrelated predecessors), and per
buffer the indicators "some user before ``o``" (implied by each user before) and "every
consumer before ``o``" (implies each consumer), the buffer's weight on the first minus the
second.  The minimum over ``D`` at each breakpoint ``lambda = c_b / s_b`` bounds the traffic
paid for buffers that can cross ``o``, in every order; it is at least the crossing bound at
``o`` and, when all movable buffers have one price per byte, exactly the least knapsack over
all orders.

Across operators (``cut_bound``).  Call ``P(o)`` the movable buffers that can cross ``o`` in
some order.  The traffic an operator's bound accounts for is paid on buffers of ``P(o)``, so
for operators whose sets ``P(o)`` are pairwise disjoint the bounds add up: a plan pays each
buffer's reloads and store once, and no buffer is counted for two operators.  The bound is
the best sum over a greedy disjoint selection (largest first) -- never below the single best
operator.  Addresses and alignment are ignored: they only make plans worse.

Work: one maximum flow (OR-Tools ``SimpleMaxFlow``) per operator whose possible live bytes
exceed the capacity and per price breakpoint; the deadline is a safety stop (the operators
done so far still give a valid bound).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from ortools.graph.python import max_flow

from stowage.ir.graph import OpIndex
from stowage.solvers.analysis.reach import bits, reach_bitsets
from stowage.solvers.exact.joint_data import JointData

log = logging.getLogger(__name__)

#: Total arc capacity a cut may carry (OR-Tools' max flow uses int64): a breakpoint whose
#: weights sum to more is skipped, which only weakens the bound.
MAX_WEIGHT = 1 << 60


@dataclass(frozen=True)
class OperatorBound:
    """The cut bound of one operator: ``value`` (byte-hops), its ``position`` in
    ``data.ops``, and ``mask``, the bitset (over indices of ``data.buffers``) of the movable
    buffers that may cross it -- the buffers its traffic is paid on."""

    value: int
    position: int
    mask: int


@dataclass(frozen=True)
class CutBound:
    """``bound``: proven lower bound on non-compulsory byte-hops over every order;
    ``best_single``: the largest single-operator bound; ``operators``: how many operators
    the sum adds; ``cuts``: maximum flows solved; ``complete``: every operator was bounded
    (else the deadline stopped the scan; the bound is still valid); ``found``: every
    positive per-operator bound (``group_bound`` starts from them and adds the disjoint
    ones to its own)."""

    bound: int
    best_single: int
    operators: int
    cuts: int
    complete: bool
    seconds: float
    found: tuple[OperatorBound, ...] = ()


@dataclass(frozen=True)
class _Buf:
    k: int                          # index into data.buffers
    producer: int                   # position, -1 for inputs and weights
    consumers: tuple[int, ...]      # positions (the producer excluded)
    users: int                      # bitset of every user
    size: int
    cost: int                       # reload + store byte-hops (the least a spill costs)
    movable: bool


def buffer_facts(data: JointData, pos: dict[OpIndex, int]) -> tuple[list[int], list[_Buf]]:
    """Each position's footprint (the bytes of the buffers its operator touches, plus its
    scratch) and the buffers that may cross an operator they do not touch (sized, with a
    consumer besides the producer, or two readers of an input): what both order-free bounds
    (this one and ``stowage.solvers.exact.disjunctive_bound``) read."""
    foot = [0] * len(pos)
    for op, extra in data.scratch:
        foot[pos[op]] += extra
    bufs = []
    for k, mb in enumerate(data.buffers):
        users = [pos[u] for u in mb.users]
        for u in users:
            foot[u] += mb.size
        p = pos[mb.producer] if mb.producer is not None else -1
        cs = tuple(u for u in users if u != p)
        if mb.size <= 0 or not cs or (p < 0 and len(cs) < 2):
            continue                    # never crosses an operator it does not touch
        mask = 0
        for u in users:
            mask |= 1 << u
        bufs.append(_Buf(k, p, cs, mask, mb.size, mb.reload_cost + mb.store_cost, mb.reload_src is not None))
    return foot, bufs


class CutDag:
    """The DAG facts both the cut bound and the group bound read: positions, closed ancestor
    and descendant bitsets, direct predecessors, footprints and the buffers that may cross an
    operator (``buffer_facts``)."""

    def __init__(self, data: JointData) -> None:
        ops = list(data.ops)
        self.n = len(ops)
        self.pos, self.anc, self.desc = reach_bitsets(ops, data.pred_map().__getitem__)
        self.preds = [[self.pos[p] for p in data.pred_map()[op]] for op in ops]
        self.footprint, self.bufs = buffer_facts(data, self.pos)

    def possible(self, o: int, before: int | None = None, after: int | None = None) -> list[_Buf]:
        """Buffers that cross ``o`` in some order (``o`` does not touch them).  ``before`` /
        ``after``: bitsets of operators that run before / after ``o`` (default: its ancestors
        and descendants; ``group_bound`` passes larger, consistent ones)."""
        anc = self.anc[o] if before is None else before
        desc = self.desc[o] if after is None else after
        out = []
        for b in self.bufs:
            if (b.users >> o) & 1:
                continue
            if b.producer >= 0:
                if (desc >> b.producer) & 1 or all((anc >> c) & 1 for c in b.consumers):
                    continue
            elif all((anc >> c) & 1 for c in b.consumers) or all((desc >> c) & 1 for c in b.consumers):
                continue
            out.append(b)
        return out


def min_closure(dag: CutDag, o: int, bufs: list[_Buf], weight: list[int], fixed_before: int | None = None,
                 fixed_after: int | None = None) -> int:
    """min over predecessor-closed sets D of unrelated operators of sum_b weight_b *
    [b crosses o when D runs before o], as a minimum cut.  Node 0 source, 1 sink, then one
    node per unrelated operator and per indicator.  ``fixed_before`` / ``fixed_after``:
    operators fixed to run before / after ``o`` (default its ancestors / descendants; larger
    sets must be closed under predecessors / successors, and ``bufs`` must be
    ``dag.possible`` under them)."""
    anc = dag.anc[o] if fixed_before is None else fixed_before
    desc = dag.desc[o] if fixed_after is None else fixed_after
    free = ((1 << dag.n) - 1) & ~anc & ~desc & ~(1 << o)
    node: dict[int, int] = {}
    for v in bits(free):
        node[v] = len(node) + 2
    nxt = len(node) + 2
    tails: list[int] = []
    heads: list[int] = []
    caps: list[int] = []
    inf = sum(weight) + 1
    # Closure implications: u before o -> its unrelated predecessors before o.
    for v, nv in node.items():
        for p in dag.preds[v]:
            if p in node:
                tails.append(nv)
                heads.append(node[p])
                caps.append(inf)
    const = 0
    to_sink: dict[int, int] = {}      # node -> weight (positive: costs when in the closure)
    from_source: dict[int, int] = {}  # node -> weight (negative weight: saves when in it)

    def before(v: int) -> int | None:
        """None for an ancestor of ``o`` (always before), -1 for ``o`` and its descendants
        (never before), else the node of ``v``."""
        if (anc >> v) & 1:
            return None
        return node.get(v, -1)

    for b, w in zip(bufs, weight, strict=True):
        if w == 0:
            continue
        # "some user holds data before o": the producer, or (inputs) any consumer.
        if b.producer >= 0:
            first = before(b.producer)
            first_nodes = [] if first is None else [first]
            some_fixed = first is None
        else:
            nodes = [before(c) for c in b.consumers]
            some_fixed = any(x is None for x in nodes)
            first_nodes = [x for x in nodes if x is not None and x >= 0]
        # "every consumer runs before o" (then nothing needs b after o).
        cons = [before(c) for c in b.consumers]
        all_fixed_after = any(x == -1 for x in cons)       # a consumer among o's descendants
        last_nodes = [x for x in cons if x is not None and x >= 0]
        if some_fixed:
            const += w
        elif len(first_nodes) == 1 and b.producer >= 0:
            to_sink[first_nodes[0]] = to_sink.get(first_nodes[0], 0) + w
        else:
            u = nxt
            nxt += 1
            to_sink[u] = w
            for x in first_nodes:           # a consumer before o -> "some user before o"
                tails.append(x)
                heads.append(u)
                caps.append(inf)
        if not all_fixed_after:
            if not last_nodes:
                const -= w                  # every consumer is an ancestor of o: never (not in P)
            else:
                z = nxt
                nxt += 1
                from_source[z] = w
                for x in last_nodes:        # "all consumers before o" -> each of them before o
                    tails.append(z)
                    heads.append(x)
                    caps.append(inf)
    for v, w in to_sink.items():
        tails.append(v)
        heads.append(1)
        caps.append(w)
    for v, w in from_source.items():
        tails.append(0)
        heads.append(v)
        caps.append(w)
    if not tails:
        return const
    flow = max_flow.SimpleMaxFlow()
    flow.add_arcs_with_capacity(np.array(tails, dtype=np.int64), np.array(heads, dtype=np.int64),
                                np.array(caps, dtype=np.int64))
    status = flow.solve(0, 1)
    if status != flow.OPTIMAL:
        raise RuntimeError(f"max flow failed with status {status}")
    # Minimum weight closure = (positive weights cut) - (negative weights kept) = flow - sum(from_source).
    return const + int(flow.optimal_flow()) - sum(from_source.values())


def operator_bound(dag: CutDag, o: int, capacity: int,
                   bufs: list[_Buf] | None = None) -> tuple[int, list[_Buf], int]:
    """(the bound at ``o`` over every order, the movable buffers it is paid on, cuts run).
    ``bufs``: ``dag.possible(o)`` when the caller has it."""
    bufs = dag.possible(o) if bufs is None else bufs
    over = dag.footprint[o] - capacity
    if over + sum(b.size for b in bufs) <= 0:
        return 0, [b for b in bufs if b.movable], 0
    movable = [b for b in bufs if b.movable]
    best, cuts = 0, 0
    # lambda = c_k / s_k at every distinct price per byte, scaled by s_k to stay integral.
    ratios = sorted({(b.cost, b.size) for b in movable}, key=lambda cs: (cs[0] / cs[1], cs))
    seen: set[float] = set()
    for c_k, s_k in ratios:
        r = c_k / s_k
        if r in seen:
            continue
        seen.add(r)
        weight = [min(c_k * b.size, b.cost * s_k) if b.movable else c_k * b.size for b in bufs]
        if sum(weight) >= MAX_WEIGHT:
            continue                   # capacities would overflow the flow's int64: no bound here
        total = c_k * over + min_closure(dag, o, bufs, weight)
        cuts += 1
        if total > 0:
            best = max(best, -(-total // s_k))      # traffic is an integer: round up
    return best, movable, cuts


def min_crossing_bytes(data: JointData, op: int) -> int:
    """The fewest bytes crossing operator ``op`` over every order (one minimum cut with each
    buffer weighted by its size): the quantity the bound minimises, for tests and reports."""
    dag = CutDag(data)
    o = dag.pos[op]
    bufs = dag.possible(o)
    return min_closure(dag, o, bufs, [b.size for b in bufs])


def disjoint_sum(found: tuple[OperatorBound, ...], extra: tuple[int, int] | None = None) -> int:
    """The best sum over a greedy selection (largest first) of bounds whose buffer masks are
    pairwise disjoint: ``found`` and ``extra`` (a (value, mask) pair such as a group's,
    ``group_bound``).  A plan pays each buffer's traffic once, so bounds paid on disjoint
    buffer sets add up; never below the largest single one."""
    items = [(f.value, f.position, f.mask) for f in found]
    if extra is not None:
        items.append((extra[0], -1, extra[1]))
    total, used = 0, 0
    for value, _o, mask in sorted(items, key=lambda f: (-f[0], f[1])):
        if value <= 0 or mask & used:
            continue
        used |= mask
        total += value
    return total


def cut_bound(data: JointData, deadline: float, dag: CutDag | None = None) -> CutBound:
    """The sum of per-operator cut bounds over a disjoint selection (module docstring).
    Operators are bounded in decreasing order of the bytes that may be live at them, so that a
    scan cut short by ``deadline`` has bounded the most promising ones."""
    t0 = time.perf_counter()
    if not data.capacity_given or not data.ops:
        return CutBound(0, 0, 0, 0, True, 0.0)
    dag = dag if dag is not None else CutDag(data)
    found: list[OperatorBound] = []
    cuts = 0
    complete = True
    possible = [dag.possible(o) for o in range(dag.n)]
    promise = sorted(range(dag.n), key=lambda o: (-(dag.footprint[o] + sum(b.size for b in possible[o])), o))
    for o in promise:
        if time.perf_counter() > deadline:
            complete = False
            break
        value, movable, c = operator_bound(dag, o, data.capacity, possible[o])
        cuts += c
        if value > 0:
            mask = 0
            for b in movable:
                mask |= 1 << b.k
            found.append(OperatorBound(value, o, mask))
    found.sort(key=lambda f: f.position)
    total = disjoint_sum(tuple(found))
    chosen = _chosen(tuple(found))
    best = max((f.value for f in found), default=0)
    seconds = time.perf_counter() - t0
    log.info("cut bound %d (best operator %d, %d operators added, %d cuts, %.2fs%s)", total, best, chosen, cuts,
             seconds, "" if complete else ", cut by the deadline")
    return CutBound(total, best, chosen, cuts, complete, seconds, tuple(found))


def _chosen(found: tuple[OperatorBound, ...]) -> int:
    """How many operators ``disjoint_sum`` adds (for the log and ``CutBound.operators``)."""
    used, chosen = 0, 0
    for f in sorted(found, key=lambda f: (-f.value, f.position)):
        if not f.mask & used:
            used |= f.mask
            chosen += 1
    return chosen


__all__ = ["CutBound", "CutDag", "OperatorBound", "cut_bound", "disjoint_sum", "min_closure", "min_crossing_bytes",
           "operator_bound"]
