"""A lower bound valid for EVERY order over a group of operators whose buffer sets overlap.

The cut bound (``cut_bound``) asks, for one operator ``o`` at a time, for the least pressure
any order leaves at ``o``; bounds of operators whose sets of possibly-crossing buffers are
disjoint add up.  On NAS stems they are not disjoint, and the orders that are best for one
operator are the worst for another: on PNASNet-5 at M_R the three stem operators Pad, Slice,
Slice_1 each need the whole capacity, and the least that crosses them (1.5 MB) is reached
only by running the stem cell first -- which puts its own 2.9 MB step beside the 2.6 MB stem
activation.  Per operator the bound is 3.0 MB of traffic; the plan pays 5.9 MB.

The group IP.  For a group ``G = {g_1, ..., g_m}`` of operators (positions in ``data.ops``):

* ``x[i, v]`` for every operator ``v`` unrelated to ``g_i``: ``v`` runs before ``g_i``
  (ancestors 1, descendants 0).  The set is closed under predecessors
  (``x[i, v] <= x[i, p]`` for each predecessor ``p``), as in every order;
* the sets of two group operators are nested the way their order says: when ``g_i`` runs
  before ``g_j`` (fixed by the DAG, else a boolean ``z[i, j]``) every operator before
  ``g_i`` is before ``g_j`` (``x[i, v] <= x[j, v]``) and ``g_i`` is among them
  (``x[j, g_i] = z``, ``x[i, g_j] = 1 - z``) -- true in every order;
* ``c[i, b]``: buffer ``b`` (not touched by ``g_i``, possibly crossing it: ``cut_bound``'s
  ``P(g_i)``) crosses ``g_i``: forced to 1 when it holds data before ``g_i`` and is needed
  after (``c >= x[i, producer] - x[i, u]`` for each consumer ``u``; an input or weight:
  ``c >= x[i, u1] - x[i, u2]``);
* ``y[i, b] <= c[i, b]``: off-chip at ``g_i``; what crosses and stays fits beside
  ``g_i``'s own operands and scratch (``footprint``):
  ``sum_b size_b * (c[i, b] - y[i, b]) <= capacity - footprint(g_i)`` (a buffer that cannot
  leave the compute level has no ``y``);
* ``s[b] >= y[i, b]``: spilled somewhere in the group; the objective is
  ``sum_b cost_b * s[b]`` with ``cost_b`` the least a spill of ``b`` costs (one reload, plus
  the store of an activation: ``joint_data``'s prices).

Why it is a bound.  Any plan gives a feasible point: read ``x`` and ``z`` from its order,
``c`` from which buffers cross ``g_i`` in that order, and ``y[i, b] = 1`` when ``b`` crosses
``g_i`` and is not resident at ``g_i``'s step.  The resident crossing buffers and ``g_i``'s
operands fit in the capacity (addresses and alignment only add).  A buffer off-chip at
``g_i`` while it holds data before ``g_i`` and is needed after was reloaded at least once,
and stored once if it is an activation, so the plan pays at least ``cost_b`` for it; distinct
buffers are paid separately.  So the plan's traffic on the buffers ``U = union of P(g_i)`` is
at least the IP's value at its point, hence at least the IP's optimum, and at least any
proven bound CP-SAT reaches on it.  Every group gives a valid bound; a larger group only
adds constraints (the bound of a superset is at least as large, when closed).  Traffic on
buffers outside ``U`` is not counted, so the cut bounds of operators whose ``P(o)`` is
disjoint from ``U`` (and from each other) add to it (``GroupBound.bound``).

Which group (``group_bound``): row generation.  Start from the operators with a positive
cut bound (or the operator with the largest footprint); solve; read the IP's order
(``order_from``: each operator after the group operators it follows, inside a segment in the
incumbent's order) and its spilled set.  Add the worst ``ADD_PER_ROUND`` operators that the
solution overloads in EVERY order that keeps each operator between the same two group
operators, counting the buffers it did not spill as resident (``separate``: one minimum cut
each, the cut bound's closure with the other segments fixed) -- their rows cut the solution
off; when there are none, those over capacity in the completion itself (``overloads``: two
operators of one segment can each fit alone but not together).  Stop when nothing is over,
the group has ``MAX_GROUP`` operators, the bound reaches ``target``, or the work budget is
spent; a round that does not close within ``ROUND_SHARE`` of the budget left still gives a
bound and a solution, and when nothing is added it is solved again on the rest.  On
PNASNet-5 at M_R the group grows from the three stem Slice/Pad operators to twelve (the stem
ReLU and max-pool, the cell's first convolution and ReLU, ...), and its bound meets the
heuristic's plan, 5,916,348 B: the plan is optimal.

The IP's orders (every round's, ``evaluate``; the last in ``GroupBound.order``) are also
orders to plan with: the pipeline plans them with the gap model (``residency_model``) like
its other candidate orders.  On PNASNet-5 at M_H and NASNet-A at M_H one of them is a plan
that meets the bound.

Determinism: every solve gets a CP-SAT deterministic-time budget (``work``) and the group
depends only on the instance and the solutions, so the result does not depend on the
machine's load; the wall deadline is a safety stop (``GroupBound.hit_wall``).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ortools.sat.python import cp_model

from stowage.ir.graph import OpIndex
from stowage.solvers.analysis.reach import bits
from stowage.solvers.exact.cut_bound import CutDag, OperatorBound, disjoint_sum, min_closure
from stowage.solvers.exact.joint_data import JointData
from stowage.solvers.exact.joint_model import configure

log = logging.getLogger(__name__)

#: Operators added per round of row generation (the most over the capacity first).
ADD_PER_ROUND = 2

#: Share of the budget left that one round's IP may take: a round that does not close in it
#: still gives a bound and a solution to separate, and the next, larger group may close
#: where it did not (CP-SAT's time on these IPs varies by 10x between similar groups).
ROUND_SHARE = 0.3

#: Movable buffers smaller than this share of the capacity are left out of the IP (their
#: rows and their spill cost): dropping terms of a capacity row only relaxes it, so the
#: bound stays valid and loses at most their few bytes.  With weights in the compute level,
#: PNASNet-5's 1-108 B constants shared by dozens of operators made the IP's LP flat.
SMALL_SHARE = 1e-4

#: Largest group: each group operator brings one boolean per operator unrelated to it.
MAX_GROUP = 24

#: Group IPs with more order variables than this are not built (the bound keeps the last).
MAX_VARS = 60_000

#: A literal of the group IP: a CP-SAT boolean, or 0/1 when the DAG decides it.
Lit = cp_model.IntVar | int


@dataclass(frozen=True)
class GroupBound:
    """``bound``: proven lower bound on non-compulsory byte-hops over every order (the group
    IP plus the cut bounds of operators disjoint from it); ``group_value``: the group IP's
    own proven bound; ``group``: its operators (``OpIndex``); ``rounds``: IPs solved;
    ``closed``: the last IP was solved to optimality; ``order``: a topological order that
    follows the last solution's decisions (None without one); ``work``: CP-SAT
    deterministic time spent; ``hit_wall``: the wall deadline, not the budget, ended it."""

    bound: int
    group_value: int
    group: tuple[OpIndex, ...]
    rounds: int
    closed: bool
    order: tuple[OpIndex, ...] | None
    work: float
    hit_wall: bool
    seconds: float


@dataclass(frozen=True)
class _Answer:
    bound: int
    closed: bool
    spilled: frozenset[int]            # buffer indices (into data.buffers)
    before: tuple[int, ...] | None     # per group operator: the bitset of what runs before it
    work: float


class _GroupIP:
    """The group IP of the module docstring for the positions ``group``.

    Order variables exist only for the operators that matter to a group operator ``g``:
    users of the buffers that may cross it, and the other group operators (``kept``); the
    closure rows link each to its nearest kept ancestors (the transitive reduction).  Every
    row is implied by the rows over all operators, so this is a relaxation of that IP and
    its bounds stay valid; it has the same optimum, since a down-set of the kept operators
    closed under the reduced rows extends to a down-set of all (its predecessor closure)."""

    def __init__(self, data: JointData, dag: CutDag, group: list[int]) -> None:
        self.data, self.dag, self.group = data, dag, group
        self.model = cp_model.CpModel()
        self.x: dict[tuple[int, int], cp_model.IntVar] = {}
        self.spilled: dict[int, cp_model.IntVar] = {}
        self.costs: dict[int, int] = {}
        small = SMALL_SHARE * data.capacity
        self.possible = [[b for b in dag.possible(g) if not (b.movable and b.size < small)] for g in group]
        members = 0
        for g in group:
            members |= 1 << g
        self.kept: list[int] = []
        for g, bufs in zip(group, self.possible, strict=True):
            users = members
            for b in bufs:
                users |= b.users
            self.kept.append(users & ~dag.anc[g] & ~dag.desc[g] & ~(1 << g))

    def bef(self, i: int, v: int) -> Lit | None:
        """``v`` runs before group operator ``i``: 1 for an ancestor, 0 for a descendant,
        its variable for a kept operator, None for the group operator itself and for the
        operators the IP leaves out."""
        g = self.group[i]
        if (self.dag.anc[g] >> v) & 1:
            return 1
        if (self.dag.desc[g] >> v) & 1:
            return 0
        return self.x.get((i, v))

    def size(self) -> int:
        return sum(bin(k).count("1") for k in self.kept)

    def build(self) -> None:
        """The variables, rows and objective.  (No floor at the previous round's bound: a
        valid cut, but it made CP-SAT 13 times slower on PNASNet-5's stem group.)"""
        m, dag = self.model, self.dag
        for i, kept in enumerate(self.kept):
            for v in bits(kept):
                self.x[(i, v)] = m.new_bool_var(f"x[{i},{v}]")
        for i, kept in enumerate(self.kept):
            for v in bits(kept):
                up = dag.anc[v] & kept
                for a in bits(up):
                    if not dag.desc[a] & up:      # no kept operator between a and v
                        m.add(self.x[(i, v)] <= self.x[(i, a)])
        self._nesting()
        for i in range(len(self.group)):
            self._capacity_row(i)
        m.minimize(sum(self.costs[k] * s for k, s in self.spilled.items()))

    def _nesting(self) -> None:
        """Before-sets of two group operators nest as their order says (module docstring),
        over the operators both keep.  Pairs the DAG orders through a third group operator
        are implied and skipped."""
        m, dag, grp = self.model, self.dag, self.group
        for i, j in itertools.combinations(range(len(grp)), 2):
            gi, gj = grp[i], grp[j]
            pairs: list[tuple[int, int, cp_model.LiteralT | None]]
            if (dag.anc[gj] >> gi) & 1 or (dag.anc[gi] >> gj) & 1:
                first, second = (i, j) if (dag.anc[gj] >> gi) & 1 else (j, i)
                ga, gb = grp[first], grp[second]
                if any((dag.desc[ga] >> g) & 1 and (dag.anc[gb] >> g) & 1 for g in grp):
                    continue                      # a -> g -> b: implied by the two links
                pairs = [(first, second, None)]
            else:
                z = m.new_bool_var(f"z[{i},{j}]")  # g_i before g_j
                m.add(self.x[(j, gi)] == z)
                m.add(self.x[(i, gj)] == 1 - z)
                pairs = [(i, j, z), (j, i, z.Not())]
            for a, b, lit in pairs:
                for v in bits(self.kept[a] | self.kept[b]):
                    xa, xb = self.bef(a, v), self.bef(b, v)
                    if xa is None or xb is None or (isinstance(xa, int) and isinstance(xb, int)):
                        continue
                    row = m.add(xa <= xb)
                    if lit is not None:
                        row.only_enforce_if(lit)

    def _capacity_row(self, i: int) -> None:
        m, dag = self.model, self.dag
        terms: list[cp_model.LinearExprT] = []
        for b in self.possible[i]:
            c = m.new_bool_var(f"c[{i},{b.k}]")
            if b.producer >= 0:
                pairs = [(b.producer, u) for u in b.consumers]
            else:
                pairs = [(u1, u2) for u1 in b.consumers for u2 in b.consumers if u1 != u2]
            for first, later in pairs:
                e1, e2 = self.bef(i, first), self.bef(i, later)
                assert e1 is not None and e2 is not None      # users are kept; g is no user
                if isinstance(e1, int) and isinstance(e2, int):
                    if e1 > e2:
                        m.add(c == 1)
                else:
                    m.add(c >= e1 - e2)
            if b.movable:
                y = m.new_bool_var(f"y[{i},{b.k}]")
                m.add(y <= c)
                s = self.spilled.get(b.k)
                if s is None:
                    s = self.spilled[b.k] = m.new_bool_var(f"s[{b.k}]")
                    self.costs[b.k] = b.cost
                m.add(s >= y)
                terms.append(b.size * (c - y))
            else:
                terms.append(b.size * c)
        m.add(sum(terms) <= self.data.capacity - dag.footprint[self.group[i]])

    def solve(self, wall: float, work: float, workers: int, seed: int) -> _Answer:
        solver = cp_model.CpSolver()
        configure(solver, wall, work, workers, seed)
        # Full linearization: the closure and nesting rows make the LP strong (at the
        # default level CP-SAT did not prove the three-operator stem group in 60 s; with it,
        # the six-operator group closes in about a second); and branching on the LP
        # (PNASNet-5's stem groups: 0.7-3.2 deterministic s, where the default search took
        # 4.4-15 or did not close).
        solver.parameters.linearization_level = 2
        solver.parameters.search_branching = cp_model.LP_SEARCH
        status = solver.solve(self.model)
        spent = solver.deterministic_time
        if status == cp_model.INFEASIBLE:
            return _Answer(-1, True, frozenset(), None, spent)
        has = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
        bound = max(0, math.ceil(solver.best_objective_bound - 1e-6)) if has or status == cp_model.UNKNOWN else 0
        if not has:
            return _Answer(bound, False, frozenset(), None, spent)
        spilled = frozenset(k for k, s in self.spilled.items() if solver.boolean_value(s))
        return _Answer(bound, status == cp_model.OPTIMAL, spilled, self._before_sets(solver), spent)

    def _before_sets(self, solver: cp_model.CpSolver) -> tuple[int, ...]:
        """Per group operator, the operators before it in the solution: its ancestors and
        the kept operators set before it, closed under predecessors."""
        out = []
        for i, g in enumerate(self.group):
            d = self.dag.anc[g]
            for v in bits(self.kept[i]):
                if solver.boolean_value(self.x[(i, v)]):
                    d |= self.dag.anc[v] | (1 << v)
            out.append(d)
        return tuple(out)


def order_from(dag: CutDag, group: list[int], before: tuple[int, ...], rank: list[int]) -> list[int]:
    """A topological order (positions) that follows an IP solution: an operator's key is the
    number of group operators it does not run before (a group operator: the number that run
    before it, plus one half); Kahn's algorithm takes the smallest (key, ``rank``) among the
    ready operators, so the order is topological whatever the keys, and follows them where
    they are consistent."""
    n = dag.n
    key = [0.0] * n
    for d in before:
        for v in range(n):
            if not (d >> v) & 1:
                key[v] += 1
    for i, g in enumerate(group):
        key[g] = sum(1 for j, _h in enumerate(group) if j != i and (before[i] >> group[j]) & 1) + 0.5
    succs: list[list[int]] = [[] for _ in range(n)]
    indeg = [0] * n
    for v in range(n):
        for p in dag.preds[v]:
            succs[p].append(v)
            indeg[v] += 1
    ready = [(key[v], rank[v], v) for v in range(n) if indeg[v] == 0]
    heapq.heapify(ready)
    out: list[int] = []
    while ready:
        _k, _r, v = heapq.heappop(ready)
        out.append(v)
        for w in succs[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                heapq.heappush(ready, (key[w], rank[w], w))
    return out


def separate(data: JointData, dag: CutDag, group: list[int], order: list[int],
             spilled: frozenset[int]) -> list[tuple[int, int]]:
    """(excess bytes, position) of the operators outside ``group`` that are over the
    capacity in EVERY order that keeps the group operators where ``order`` has them (each
    other operator stays between the same two group operators, free inside that segment)
    when the buffers not in ``spilled`` stay resident: there the IP's solution is no plan,
    and the operator's row would cut it off.  One minimum cut per candidate (``cut_bound``'s
    closure, with the segments before and after fixed); worst first."""
    members = set(group)
    n = len(order)
    prefix = [0] * (n + 1)          # prefix[t]: the operators of steps 0..t-1
    for t, v in enumerate(order):
        prefix[t + 1] = prefix[t] | (1 << v)
    seg_before = [0] * dag.n        # by position: every operator of earlier segments
    seg_after = [0] * dag.n
    last_group = -1
    for t, v in enumerate(order):
        if v in members:
            last_group = t
        else:
            seg_before[v] = prefix[last_group + 1]
    next_group = n
    for t in range(n - 1, -1, -1):
        v = order[t]
        if v in members:
            next_group = t
        else:
            seg_after[v] = prefix[n] & ~prefix[next_group]
    out = []
    for v in range(dag.n):
        if v in members:
            continue
        before = seg_before[v] | dag.anc[v]
        after = seg_after[v] | dag.desc[v]
        bufs = dag.possible(v, before, after)
        weight = [0 if b.movable and b.k in spilled else b.size for b in bufs]
        room = data.capacity - dag.footprint[v]
        if sum(weight) <= room:
            continue
        least = min_closure(dag, v, bufs, weight, before, after)
        if least > room:
            out.append((least - room, v))
    return sorted(out, key=lambda ev: (-ev[0], ev[1]))


def overloads(data: JointData, dag: CutDag, order: list[int], spilled: frozenset[int]) -> list[tuple[int, int]]:
    """(excess bytes, position) of the operators where, in ``order`` (positions), the
    operands plus the crossing buffers not in ``spilled`` exceed the capacity; worst first.
    The fallback of ``separate``: an operator over in one completion of the IP's order (not
    in all of them) -- two operators of one segment can each fit alone but not together."""
    step = {v: s for s, v in enumerate(order)}
    n = len(order)
    delta = [0] * (n + 1)
    for b in dag.bufs:
        if b.movable and b.k in spilled:
            continue
        ts = [step[u] for u in bits(b.users)]
        first = step[b.producer] if b.producer >= 0 else min(ts)
        last = max(ts)
        if last - first < 2:
            continue
        delta[first + 1] += b.size
        delta[last] -= b.size
        for t in ts:                      # a step that touches b counts it in its footprint
            if first < t < last:
                delta[t] -= b.size
                delta[t + 1] += b.size
    out, live = [], 0
    for s in range(n):
        live += delta[s]
        excess = dag.footprint[order[s]] + live - data.capacity
        if excess > 0:
            out.append((excess, order[s]))
    return sorted(out, key=lambda ev: (-ev[0], ev[1]))


def fixed_group_bound(data: JointData, group: list[OpIndex], work: float, wall: float, seed: int = 0) -> int:
    """The proven bound of the group IP over the operators ``group`` alone (no row
    generation, no cut bounds added): for tests and for reading what a group proves."""
    if not data.capacity_given or not group:
        return 0
    dag = CutDag(data)
    ip = _GroupIP(data, dag, sorted(dag.pos[op] for op in group))
    ip.build()
    return max(0, ip.solve(wall, work, 1, seed).bound)


def group_bound(data: JointData, work: float, deadline: float, operators: tuple[OperatorBound, ...] = (),
                workers: int = 1, seed: int = 0, dag: CutDag | None = None,
                incumbent: tuple[OpIndex, ...] | None = None, target: int | None = None,
                evaluate: Callable[[tuple[OpIndex, ...]], int | None] | None = None) -> GroupBound:
    """Row generation over groups (module docstring) for at most ``work`` CP-SAT
    deterministic seconds or until ``deadline`` (``time.perf_counter()``).  ``operators``:
    the cut bound's per-operator bounds (``CutBound.found``): the seeds, and the terms that
    add to the group's bound when disjoint from it.  ``incumbent``: an order of the
    operators (the best plan's) that completes the IP's order inside its segments
    (``order_from``).  ``target``: stop once the bound reaches it (the incumbent's traffic:
    proven optimal).  ``evaluate``: called with the order of every round's solution
    (``order_from``); returns the traffic of the best plan known after planning with it (or
    None), which lowers ``target`` -- on PNASNet-5 at M_H such an order is the optimal plan's."""
    t0 = time.perf_counter()
    if not data.capacity_given or not data.ops:
        return GroupBound(0, 0, (), 0, True, None, 0.0, False, 0.0)
    dag = dag if dag is not None else CutDag(data)
    rank = list(range(dag.n))
    if incumbent is not None:
        for t, op in enumerate(incumbent):
            rank[dag.pos[op]] = t
    ranked = sorted(operators, key=lambda f: (-f.value, f.position))
    group = [f.position for f in ranked if f.value > 0][:MAX_GROUP // 2]
    if not group:
        group = [max(range(dag.n), key=lambda o: (dag.footprint[o], -o))]

    def combined(members: list[int], value: int) -> int:
        """The group's bound plus the cut bounds of operators disjoint from it."""
        used = 0
        for g in members:
            for b in dag.possible(g):
                if b.movable:
                    used |= 1 << b.k
        return disjoint_sum(tuple(f for f in operators if f.position not in members), (value, used))

    best_value, best_group = 0, sorted(group)
    spent, rounds, hit_wall, closed = 0.0, 0, False, False
    last: list[int] | None = None     # the order of the last answer
    retried = False
    while True:
        left = deadline - time.perf_counter()
        if left <= 0.05:
            hit_wall = True
            break
        if work - spent <= 0.01:
            break
        members = sorted(group)
        ip = _GroupIP(data, dag, members)
        if ip.size() > MAX_VARS:
            break
        ip.build()
        share = 1.0 if retried else ROUND_SHARE
        ans = ip.solve(left, max(0.5, share * (work - spent)), workers, seed)
        rounds += 1
        spent += ans.work
        log.debug("group IP round %d: %d operators, %d order variables, bound %d%s, %.2f deterministic s",
                  rounds, len(members), len(ip.x), ans.bound, " (closed)" if ans.closed else "", ans.work)
        if ans.bound < 0:
            break                         # infeasible: no order fits (the cover bound reports it)
        closed = ans.closed
        if ans.bound > best_value:
            best_value, best_group = ans.bound, members
        if ans.before is None or (target is not None and combined(best_group, best_value) >= target):
            break
        order = order_from(dag, members, ans.before, rank)
        last = order
        if evaluate is not None:
            got = evaluate(tuple(data.ops[v] for v in order))
            if got is not None:
                target = got if target is None else min(target, got)
                if combined(best_group, best_value) >= target:
                    break
        over = [o for _e, o in separate(data, dag, members, order, ans.spilled)]
        if not over:
            over = [o for _e, o in overloads(data, dag, order, ans.spilled) if o not in group]
        log.debug("group IP round %d: adds %s", rounds, over[:ADD_PER_ROUND])
        if not over and not ans.closed and not retried:
            retried = True                # the same group again, on the rest of the budget
            continue
        if not over or len(group) >= MAX_GROUP:
            break
        group = group + over[:min(ADD_PER_ROUND, MAX_GROUP - len(group))]
    total = combined(best_group, best_value)
    order_ops = None if last is None else tuple(data.ops[v] for v in last)
    seconds = time.perf_counter() - t0
    log.info("group bound %d (group IP %d over %d operators, %d rounds, %.2f deterministic s, %.2fs%s)", total,
             best_value, len(best_group), rounds, spent, seconds, ", cut by the deadline" if hit_wall else "")
    return GroupBound(total, best_value, tuple(data.ops[g] for g in best_group), rounds, closed, order_ops, spent,
                      hit_wall, seconds)


__all__ = ["ADD_PER_ROUND", "MAX_GROUP", "GroupBound", "fixed_group_bound", "group_bound", "order_from", "overloads",
           "separate"]
