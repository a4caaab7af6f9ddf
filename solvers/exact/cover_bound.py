"""A lower bound on non-compulsory traffic valid for EVERY operator order: the crossing-cover IP.

Why it holds.  Buffer ``b`` *crosses* operator ``o`` when, in every topological order, ``b``
holds data before ``o`` runs and is needed after it (the definition of
``analysis.traffic_bound``).  While ``o`` runs, its own operands (``footprint[o]``) and every
crossing buffer are either resident or off-chip, so when their bytes exceed the capacity by
``E[o] > 0``, crossing buffers of at least ``E[o]`` bytes are off-chip at ``o``'s step:

    sum_{b crosses o} size[b] * off[b, o] >= E[o]          (off binary)

A buffer off-chip at ``o`` comes back before the first of its consumers that runs after
``o``: a *reload* ``r[b, u] = 1`` at some consumer ``u`` that can be that first consumer in
some order (``u`` not an ancestor of ``o``, and not a descendant of a consumer of ``b`` that
always runs after ``o``):

    off[b, o] <= sum_{u in S(b, o)} r[b, u]

One reload may serve several operators (the sets overlap), two operators whose sets are
disjoint need two reloads.  An activation with any reload was stored once:
``stored[b] >= r[b, u]``.  The objective is the model's (``exact.joint_data``): reload
byte-hops per reload plus store byte-hops once.  Every real plan gives a feasible point of
this integer program (read ``off`` and ``r`` from its residency), so the IP optimum -- and any
proven bound CP-SAT reaches on it -- is a lower bound on the traffic of every plan.

What it ignores (so it stays a relaxation): addresses and fragmentation, buffers that are
live at ``o`` only in some orders, and the residency of reloaded buffers between reloads.
On graphs whose order is nearly forced (chains of blocks: ResNet, DenseNet, video nets) the
crossing sets are the live sets, and the bound is the no-address optimum.  It is the max over
operators of ``analysis.traffic_bound`` at least (each constraint alone is that knapsack).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from ortools.sat.python import cp_model

from stowage.solvers.analysis.reach import bits, reach_bitsets
from stowage.solvers.exact.joint_data import JointData, JointSolution, segments_by_buffer
from stowage.solvers.exact.joint_model import configure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoverBound:
    """``bound``: proven lower bound on non-compulsory byte-hops (0 when nothing must move).
    ``optimal``: the IP was solved to optimality (``bound`` is its optimum).
    ``infeasible``: some operator cannot run in any order (buffers that cannot leave the
    compute level already exceed it) -- then no plan exists."""

    bound: int
    optimal: bool
    infeasible: bool
    critical_ops: int
    seconds: float
    #: ``chain_bound`` only: for every operator, how many chain operators run before it in
    #: the IP's best solution (chain operators get ``i + 0.5``); an order sorted by it is
    #: topological and follows the IP's choices (the exact pipeline can try it).
    phase: tuple[tuple[int, float], ...] = ()


def _footprints(data: JointData, pos: dict[int, int], n: int) -> tuple[list[int], list[tuple[list[int], int]]]:
    """Per operator position: bytes it needs resident itself (its buffers + scratch); per
    buffer: the positions of its users and the same set as a bitmask."""
    footprint = [0] * n
    for op, extra in data.scratch:
        footprint[pos[op]] += extra
    users_by_buffer: list[tuple[list[int], int]] = []
    for mb in data.buffers:
        users = [pos[u] for u in mb.users]
        umask = 0
        for u in users:
            footprint[u] += mb.size
            umask |= 1 << u
        users_by_buffer.append((users, umask))
    return footprint, users_by_buffer


def cover_bound(data: JointData, time_limit: float, workers: int = 1, seed: int = 0,
                work: float | None = None) -> CoverBound:
    """Build and solve the crossing-cover IP of ``data`` (its capacity; order ignored).
    ``time_limit``: wall seconds; ``work``: CP-SAT deterministic time."""
    t0 = time.perf_counter()
    deadline = t0 + max(0.0, time_limit)
    ops = list(data.ops)
    n = len(ops)
    if not data.capacity_given or n == 0:
        return CoverBound(0, True, False, 0, 0.0)
    preds = data.pred_map()
    pos, anc, desc = reach_bitsets(ops, preds.__getitem__)  # data.ops is a topological order

    footprint, users_by_buffer = _footprints(data, pos, n)
    crossing: list[list[int]] = [[] for _ in range(n)]   # indices into data.buffers
    consumers: list[list[int]] = []
    for k, mb in enumerate(data.buffers):
        users, umask = users_by_buffer[k]
        if mb.producer is not None:
            p = pos[mb.producer]
            cons = [u for u in users if u != p]
            before = 0
            for u in cons:
                before |= anc[u]
            cross = desc[p] & before
        else:
            cons = users
            before = after = 0
            for u in cons:
                before |= anc[u]
                after |= desc[u]
            cross = before & after
        consumers.append(cons)
        cross &= ~umask
        if mb.size > 0:
            for o in bits(cross):
                crossing[o].append(k)

    model = cp_model.CpModel()
    off: dict[tuple[int, int], cp_model.IntVar] = {}
    reload: dict[tuple[int, int], cp_model.IntVar] = {}
    critical = 0
    for o in range(n):
        if time.perf_counter() > deadline:
            return CoverBound(0, False, False, critical, time.perf_counter() - t0)
        live = footprint[o] + sum(data.buffers[k].size for k in crossing[o])
        excess = live - data.capacity
        if excess <= 0:
            continue
        critical += 1
        movable = [k for k in crossing[o] if data.buffers[k].reload_src is not None]
        if sum(data.buffers[k].size for k in movable) < excess:
            return CoverBound(0, True, True, critical, time.perf_counter() - t0)
        terms = []
        for k in movable:
            mb = data.buffers[k]
            y = off.get((k, o))
            if y is None:
                y = off[(k, o)] = model.new_bool_var(f"off[{mb.id},{ops[o]}]")
            terms.append(mb.size * y)
            # Consumers that can be the first one after o in some order.
            later = 0
            for v in consumers[k]:
                if (desc[o] >> v) & 1:
                    later |= desc[v]
            serve = [u for u in consumers[k] if not (anc[o] >> u) & 1 and not (later >> u) & 1]
            rs = []
            for u in serve:
                r = reload.get((k, u))
                if r is None:
                    r = reload[(k, u)] = model.new_bool_var(f"reload[{mb.id},{ops[u]}]")
                rs.append(r)
            model.add(sum(rs) >= y)
        model.add(sum(terms) >= excess)
    if critical == 0:
        return CoverBound(0, True, False, 0, time.perf_counter() - t0)
    cost_terms = []
    stored: dict[int, cp_model.IntVar] = {}
    for (k, _u), r in reload.items():
        mb = data.buffers[k]
        if mb.reload_cost:
            cost_terms.append(mb.reload_cost * r)
        if mb.store_cost:
            s = stored.get(k)
            if s is None:
                s = stored[k] = model.new_bool_var(f"stored[{mb.id}]")
                cost_terms.append(mb.store_cost * s)
            model.add_implication(r, s)
    model.minimize(sum(cost_terms))
    remaining = deadline - time.perf_counter()
    if remaining <= 0.01:
        return CoverBound(0, False, False, critical, time.perf_counter() - t0)
    solver = cp_model.CpSolver()
    configure(solver, remaining, work, workers, seed)
    status = solver.solve(model)
    seconds = time.perf_counter() - t0
    if status == cp_model.INFEASIBLE:
        return CoverBound(0, True, True, critical, seconds)
    if status == cp_model.OPTIMAL:
        value = round(solver.objective_value)
        log.info("cover bound %d (optimal, %d critical ops, %.2fs)", value, critical, seconds)
        return CoverBound(value, True, False, critical, seconds)
    closed_or_open = status in (cp_model.FEASIBLE, cp_model.UNKNOWN)
    bound = max(0, math.ceil(solver.best_objective_bound - 1e-6)) if closed_or_open else 0
    log.info("cover bound %d (not closed, %d critical ops, %.2fs)", bound, critical, seconds)
    return CoverBound(bound, False, False, critical, seconds)


# -- the chain-cut bound: order-aware along a chain of tight operators -------------------------

#: A literal of the chain IP: a CP-SAT boolean, or a constant 0/1 when the DAG decides it.
Lit = cp_model.IntVar | int


@dataclass(frozen=True)
class _Buf:
    """A buffer the chain IP may see crossing an operator (positions in ``data.ops``)."""

    k: int                          # index into data.buffers
    producer: int | None
    consumers: tuple[int, ...]
    users_mask: int


@dataclass(frozen=True)
class _Reach:
    """The DAG facts every step of ``chain_bound`` reads: positions, strict ancestor and
    descendant bitsets (by position), per-position footprints, the candidate buffers."""

    ops: list[int]
    pos: dict[int, int]
    anc: list[int]
    desc: list[int]
    footprint: list[int]
    bufs: list[_Buf]

    @property
    def n(self) -> int:
        return len(self.ops)

    def may_cross(self, b: _Buf, o: int) -> tuple[bool, bool]:
        """(``b`` can cross ``o`` in some order, ``b`` crosses ``o`` in every order)."""
        anc, desc, cons = self.anc[o], self.desc[o], b.consumers
        if (b.users_mask >> o) & 1:
            return False, False
        if b.producer is not None:
            if (desc >> b.producer) & 1 or all((anc >> c) & 1 for c in cons):
                return False, False
            always = bool((anc >> b.producer) & 1) and any((desc >> c) & 1 for c in cons)
            return True, always
        if len(cons) < 2 or all((anc >> c) & 1 for c in cons) or all((desc >> c) & 1 for c in cons):
            return False, False
        always = any((anc >> c) & 1 for c in cons) and any((desc >> c) & 1 for c in cons)
        return True, always


def _reach(data: JointData) -> _Reach:
    ops = list(data.ops)
    pos, anc, desc = reach_bitsets(ops, data.pred_map().__getitem__)  # data.ops is topological
    footprint, users_by_buffer = _footprints(data, pos, len(ops))
    bufs = []
    for k, mb in enumerate(data.buffers):
        users, umask = users_by_buffer[k]
        p = pos[mb.producer] if mb.producer is not None else None
        cons = tuple(u for u in users if u != p)
        if mb.size > 0 and cons:
            bufs.append(_Buf(k, p, cons, umask))
    return _Reach(ops, pos, anc, desc, footprint, bufs)


Candidates = dict[int, list[tuple[_Buf, bool]]]   # tight operator -> (buffer, crosses always)


def _tight_operators(data: JointData, r: _Reach, sometimes_tight: bool,
                     deadline: float) -> tuple[list[int], Candidates] | None:
    """Operators at which something crossing them in some order has to be off-chip: their
    operands and the always-crossing buffers do not fit (with ``sometimes_tight``: or the
    room left is smaller than a buffer that crosses in some orders).  In topological order,
    each with the buffers that may cross it; None when the deadline passed."""
    tight: list[int] = []
    cand: Candidates = {}
    for o in range(r.n):
        if time.perf_counter() > deadline:
            return None
        room = data.capacity - r.footprint[o]
        maybe = []
        for b in r.bufs:
            can, always = r.may_cross(b, o)
            if can:
                maybe.append((b, always))
                if always:
                    room -= data.buffers[b.k].size
        sometimes = [data.buffers[b.k].size for b, always in maybe if not always]
        if room < 0 or (sometimes_tight and sometimes and room < max(sometimes)):
            tight.append(o)
            cand[o] = maybe
    return tight, cand


def _longest_chain(tight: list[int], anc: list[int]) -> list[int]:
    """The longest chain of tight operators, each an ancestor of the next (so they run in
    this order in every plan); ties go to the chain ending earliest."""
    best_len = {o: 1 for o in tight}
    prev: dict[int, int | None] = {o: None for o in tight}
    for j, o in enumerate(tight):                       # tight is in topological order
        for q in tight[:j]:
            if (anc[o] >> q) & 1 and best_len[q] + 1 > best_len[o]:
                best_len[o], prev[o] = best_len[q] + 1, q
    chain: list[int] = []
    cur: int | None = max(tight, key=lambda o: (best_len[o], -o))
    while cur is not None:
        chain.append(cur)
        cur = prev[cur]
    chain.reverse()
    return chain


class _ChainIP:
    """The chain-cut IP of ``chain_bound`` in blocks: order variables, order constraints,
    crossing and capacity rows, reloads and cost.  ``before_by_step[i][v]``: operator ``v``
    runs before chain operator ``i``; ``cross_by_step[i][k]`` / ``off_by_step[i][k]``: buffer
    ``k`` crosses / is off-chip at chain operator ``i``; ``reload_by_buffer_step[(k, i)]``: a
    reload of ``k`` in the interval after chain operator ``i``; ``stored_by_buffer[k]``: ``k``
    was stored.  ``cost_terms`` is empty when nothing in the IP costs traffic."""

    def __init__(self, data: JointData, r: _Reach, chain: list[int], cand: Candidates) -> None:
        self.data, self.r, self.chain, self.cand = data, r, chain, cand
        self.model = cp_model.CpModel()
        self.before_by_step: list[dict[int, cp_model.IntVar]] = []
        self.cross_by_step: list[dict[int, Lit]] = []
        self.off_by_step: list[dict[int, cp_model.IntVar]] = []
        self.reload_by_buffer_step: dict[tuple[int, int], cp_model.IntVar] = {}
        self.stored_by_buffer: dict[int, cp_model.IntVar] = {}
        self.cost_terms: list = []

    def bef(self, i: int, v: int) -> Lit | None:
        """Whether ``v`` runs before chain operator ``i``: 1 for an ancestor, 0 for a
        descendant, its variable otherwise, None for the chain operator itself."""
        o = self.chain[i]
        if v == o:
            return None
        if (self.r.anc[o] >> v) & 1:
            return 1
        if (self.r.desc[o] >> v) & 1:
            return 0
        return self.before_by_step[i][v]

    # -- variables: which operators run before each chain operator ------------------------
    def order_variables(self, max_vars: int) -> bool:
        """One boolean per (chain operator, unrelated operator); False when that is more
        than ``max_vars`` (the IP would be too large to help)."""
        r, n, nvars = self.r, self.r.n, 0
        for o in self.chain:
            free = ((1 << n) - 1) & ~r.anc[o] & ~r.desc[o] & ~(1 << o)
            nvars += bin(free).count("1")
            if nvars > max_vars:
                return False
            self.before_by_step.append({v: self.model.new_bool_var(f"before[{r.ops[v]},{r.ops[o]}]")
                                        for v in bits(free)})
        return True

    # -- constraints: the down-sets are closed and monotone along the chain ---------------
    def order_constraints(self) -> None:
        m, r, preds = self.model, self.r, self.data.pred_map()
        for i, _o in enumerate(self.chain):
            for v, x in self.before_by_step[i].items():
                for p in preds[r.ops[v]]:
                    bp = self.bef(i, r.pos[p])
                    if not isinstance(bp, int):
                        m.add(x <= bp)     # v before o -> its predecessors too (linear: in the LP)
                if i + 1 < len(self.chain):
                    nx = self.bef(i + 1, v)
                    if isinstance(nx, int):
                        if nx == 0:
                            m.add(x == 0)
                    elif nx is not None:
                        m.add(x <= nx)

    # -- constraints: crossing buffers that stay on-chip fit beside the operands ----------
    def capacity_rows(self) -> None:
        m, d = self.model, self.data
        for i, o in enumerate(self.chain):
            cross_by_buffer: dict[int, Lit] = {}
            off_by_buffer: dict[int, cp_model.IntVar] = {}
            terms: list[cp_model.LinearExprT] = []
            for b, always in self.cand[o]:
                mb = d.buffers[b.k]
                c = 1 if always else self._crossing_var(i, b)
                cross_by_buffer[b.k] = c
                if mb.reload_src is not None:
                    y = m.new_bool_var(f"off[{mb.id},{self.r.ops[o]}]")
                    m.add(y <= c)
                    off_by_buffer[b.k] = y
                    terms.append(mb.size * (c - y))
                else:
                    terms.append(mb.size * c)
            m.add(sum(terms) <= d.capacity - self.r.footprint[o])
            self.cross_by_step.append(cross_by_buffer)
            self.off_by_step.append(off_by_buffer)

    def _crossing_var(self, i: int, b: _Buf) -> cp_model.IntVar:
        """``cross[b, o_i]``, forced up when ``b`` exists before ``o_i`` and is used after."""
        m = self.model
        c = m.new_bool_var(f"cross[{self.data.buffers[b.k].id},{self.r.ops[self.chain[i]]}]")
        if b.producer is not None:
            for u in b.consumers:
                bu = self.bef(i, u)
                if bu is None:
                    continue
                bp = self.bef(i, b.producer)
                assert bp is not None                 # o_i is no user of b (``_Reach.may_cross``)
                m.add(c >= bp - bu)
        else:
            for u1 in b.consumers:
                for u2 in b.consumers:
                    if u1 == u2:
                        continue
                    b1, b2 = self.bef(i, u1), self.bef(i, u2)
                    if b1 is not None and b2 is not None:
                        m.add(c >= b1 - b2)
        return c

    # -- constraints and objective: reloads per interval, one store per spill -------------
    def reload_rows(self) -> None:
        """Reloads per interval (o_i, o_{i+1}]; the last interval is everything after o_m."""
        byk = {b.k: b for o in self.chain for b, _always in self.cand[o]}
        for k, b in sorted(byk.items()):
            for i in range(len(self.chain)):
                if k in self.off_by_step[i]:
                    self._reload_row(k, b, i)

    def _reload_row(self, k: int, b: _Buf, i: int) -> None:
        m, mb, m_len = self.model, self.data.buffers[k], len(self.chain)
        y = self.off_by_step[i][k]
        ins = []                                       # (consumer, "in the interval" expression)
        for u in b.consumers:
            a = self.bef(i, u)
            if a is None:
                continue                          # u is o_i: b does not cross it
            after_i = 1 - a
            if i + 1 < m_len:
                bn = self.bef(i + 1, u)
                upto = 1 if bn is None else bn
            else:
                upto = 1
            ins.append((u, after_i + upto - 1))
        r = m.new_bool_var(f"reload[{mb.id},{i}]")
        self.reload_by_buffer_step[(k, i)] = r
        resident = self.cross_by_step[i][k] - y        # crossing o_i and on-chip there
        for u, e in ins:
            if isinstance(e, int) and e <= 0:
                continue
            m.add(r >= y + e - 1)
            # The same implication, stronger in the LP: a consumer in the interval while
            # the buffer exists before o_i needs it either resident at o_i or reloaded.
            if b.producer is not None:
                bp = self.bef(i, b.producer)
                if bp is not None:
                    m.add(r >= e - resident - (1 - bp))
            else:
                for u2 in b.consumers:
                    b2 = self.bef(i, u2)
                    if u2 != u and b2 is not None:
                        m.add(r >= e - resident - (1 - b2))
        if mb.reload_cost:
            self.cost_terms.append(mb.reload_cost * r)
        if mb.store_cost:
            s = self.stored_by_buffer.get(k)
            if s is None:
                s = self.stored_by_buffer[k] = m.new_bool_var(f"stored[{mb.id}]")
                self.cost_terms.append(mb.store_cost * s)
            m.add(r <= s)
        if i + 1 < m_len and k in self.cross_by_step[i + 1]:
            nxt = self.off_by_step[i + 1].get(k)
            c2 = self.cross_by_step[i + 1][k]
            if nxt is not None:
                m.add(nxt >= y + c2 - 1 - sum(e for _u, e in ins))

    # -- warm start (and the test of the claim that every plan is a point) ----------------
    def hint(self, sol: JointSolution) -> None:
        """Hint the IP with the point a real plan gives (tests fix the variables to these
        values to check that every plan is feasible)."""
        m, data, ops, chain = self.model, self.data, self.r.ops, self.chain
        step = {op: s for s, op in enumerate(sol.order)}
        segs = segments_by_buffer(sol)
        chain_steps = [step[ops[o]] for o in chain]
        for i, _o in enumerate(chain):
            for v, x in self.before_by_step[i].items():
                m.add_hint(x, int(step[ops[v]] < chain_steps[i]))
        for i, _o in enumerate(chain):
            t = chain_steps[i]
            for k, c in self.cross_by_step[i].items():
                mb = data.buffers[k]
                ts = [step[u] for u in mb.users]
                first = step[mb.producer] if mb.producer is not None else min(ts)
                crossing = first < t < max(ts)
                if not isinstance(c, int):
                    m.add_hint(c, int(crossing))
                y = self.off_by_step[i].get(k)
                if y is not None:
                    resident = any(g.start <= t <= g.end for g in segs.get(mb.id, []))
                    m.add_hint(y, int(crossing and not resident))
        for (k, i), r in self.reload_by_buffer_step.items():
            mb = data.buffers[k]
            lo = chain_steps[i]
            hi = chain_steps[i + 1] if i + 1 < len(chain) else len(sol.order)
            got = segs.get(mb.id, [])
            m.add_hint(r, int(any(lo < g.start <= hi for g in got[1:])))
        for k, s in self.stored_by_buffer.items():
            m.add_hint(s, int(len(segs.get(data.buffers[k].id, [])) > 1))

    def hint_is_feasible(self) -> bool:
        """Solve with every variable fixed to its hint (no objective): is the hint a point?"""
        self.model.clear_objective()
        solver = cp_model.CpSolver()
        solver.parameters.catch_sigint_signal = False  # Ctrl-C must reach Python (joint_model.configure)
        solver.parameters.fix_variables_to_their_hinted_value = True
        solver.parameters.max_time_in_seconds = 10
        return solver.solve(self.model) in (cp_model.OPTIMAL, cp_model.FEASIBLE)

    # -- extract -------------------------------------------------------------------------
    def phase_keys(self, solver: cp_model.CpSolver) -> tuple[tuple[int, float], ...]:
        """Per operator, how many chain operators run before it in the solution (chain
        operators get ``i + 0.5``): sorting by it gives a topological order."""
        keys = []
        chain_at = {o: i for i, o in enumerate(self.chain)}
        for v in range(self.r.n):
            if v in chain_at:
                keys.append((self.r.ops[v], chain_at[v] + 0.5))
                continue
            count = 0
            for i in range(len(self.chain)):
                x = self.bef(i, v)
                if (isinstance(x, int) and x == 0) or (x is not None and not isinstance(x, int)
                                                       and not solver.boolean_value(x)):
                    count += 1                        # o_i runs before v
            keys.append((self.r.ops[v], float(count)))
        return tuple(keys)


def _solve_chain_ip(ip: _ChainIP, remaining: float, work: float | None, workers: int, seed: int,
                    t0: float) -> CoverBound:
    """Solve the IP with full linearization; its proven bound as a ``CoverBound``."""
    m = len(ip.chain)
    solver = cp_model.CpSolver()
    configure(solver, remaining, work, workers, seed)
    # Full linearization: the down-set and interval constraints are what make the LP
    # strong (at the default level CP-SAT keeps the bound at the trivial value for long).
    solver.parameters.linearization_level = 2
    status = solver.solve(ip.model)
    seconds = time.perf_counter() - t0
    if status == cp_model.INFEASIBLE:
        return CoverBound(0, True, True, m, seconds)
    phase = ip.phase_keys(solver) if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else ()
    if status == cp_model.OPTIMAL:
        value = round(solver.objective_value)
        log.info("chain bound %d (optimal, chain of %d tight ops, %.2fs)", value, m, seconds)
        return CoverBound(value, True, False, m, seconds, phase)
    open_status = status in (cp_model.FEASIBLE, cp_model.UNKNOWN)
    bound = max(0, math.ceil(solver.best_objective_bound - 1e-6)) if open_status else 0
    log.info("chain bound %d (not closed, best %s, chain of %d tight ops, %.2fs)", bound,
             solver.objective_value if status == cp_model.FEASIBLE else None, m, seconds)
    return CoverBound(bound, False, False, m, seconds, phase)


def chain_bound(data: JointData, time_limit: float, workers: int = 1, seed: int = 0,
                work: float | None = None, max_vars: int = 200_000, hint: JointSolution | None = None,
                check_hint: bool = False, sometimes_tight: bool = False) -> CoverBound:
    """A lower bound that sees buffers live at an operator in *some* orders only.

    The crossing-cover IP (``cover_bound``) counts only buffers that cross an operator in
    every order.  On the Transformer the decoder's cross-attention inputs are derived from
    the encoder output by six independent projection chains: at a decoder FFN either the
    encoder output is live (its later projections have not run) or the projections' results
    are -- which one depends on the order, so neither crosses in *every* order and the
    cover bound sees nothing.  This IP models the orders themselves, locally:

    * a *chain* of tight operators ``o_1 < ... < o_m`` (each an ancestor of the next, so they
      run in this order in every plan), the longest such chain of the graph.  Tight: its
      operands and the buffers that cross it in every order do not fit; with
      ``sometimes_tight`` also when the room left is smaller than some buffer that crosses
      it in some orders (more operators, a larger IP: the Transformer at M_H, where the
      residual fits beside a decoder FFN but the encoder output does not, needs it);
    * for every ``o_i`` and every operator ``v`` that is neither its ancestor nor its
      descendant, ``before[v, i]``: v runs before o_i.  ``before`` is closed under
      predecessors, ancestors are 1, descendants 0, and it is monotone along the chain
      (before o_i implies before o_{i+1}) -- every real order satisfies all of this;
    * buffer b crosses o_i when it was produced before o_i and a consumer runs after
      (inputs/weights: one consumer before, one after); crossing bytes that are not
      off-chip fit beside o_i's operands;
    * off-chip at o_i and a consumer between o_i and o_{i+1} -> a reload in that interval
      ``R[b, i]``; off-chip at o_i, no consumer in the interval and still crossing o_{i+1}
      -> still off-chip there (a plan never needs to reload a buffer except right before a
      use, so some optimal plan is of this form);
    * cost: reloads per interval, one store per spilled activation (the instance's prices).

    Every plan of that normal form gives a feasible point, so the IP's proven bound is a
    lower bound on the traffic of every plan.  ``hint``: a solution whose point hints the
    IP; with ``check_hint`` the IP is not solved but checked: ``bound`` is 1 when that point
    satisfies every constraint (vacuously when no IP is needed), else 0 (tests).  Relaxed:
    operators outside the chain, and the relative order of operators between two chain
    operators.

    Steps: reachability and candidate buffers (``_reach``), tight operators
    (``_tight_operators``), the longest chain (``_longest_chain``), the IP (``_ChainIP``),
    the solve (``_solve_chain_ip``)."""
    t0 = time.perf_counter()
    deadline = t0 + max(0.0, time_limit)
    if not data.capacity_given or not data.ops:
        return CoverBound(int(check_hint), True, False, 0, 0.0)
    r = _reach(data)
    found = _tight_operators(data, r, sometimes_tight, deadline)
    if found is None:
        return CoverBound(0, False, False, 0, time.perf_counter() - t0)
    tight, cand = found
    if not tight:
        return CoverBound(int(check_hint), True, False, 0, time.perf_counter() - t0)
    chain = _longest_chain(tight, r.anc)
    ip = _ChainIP(data, r, chain, cand)
    if not ip.order_variables(max_vars):
        return CoverBound(0, False, False, len(chain), time.perf_counter() - t0)
    ip.order_constraints()
    ip.capacity_rows()
    ip.reload_rows()
    if not ip.cost_terms:
        return CoverBound(int(check_hint), True, False, len(chain), time.perf_counter() - t0)
    ip.model.minimize(sum(ip.cost_terms))
    if hint is not None:
        ip.hint(hint)
        if check_hint:
            return CoverBound(int(ip.hint_is_feasible()), True, False, len(chain), 0.0)
    remaining = deadline - time.perf_counter()
    if remaining <= 0.01:
        return CoverBound(0, False, False, len(chain), time.perf_counter() - t0)
    return _solve_chain_ip(ip, remaining, work, workers, seed, t0)


__all__ = ["CoverBound", "chain_bound", "cover_bound"]
