"""A lower bound on non-compulsory traffic valid for EVERY operator order: the crossing-cover IP.

Why it holds.  Buffer ``b`` *crosses* operator ``o`` when, in every topological order, ``b``
holds data before ``o`` runs and is needed after it (the definition of
``solvers.traffic_bound``).  While ``o`` runs, its own operands (``footprint[o]``) and every
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
``stored[b] >= r[b, u]``.  The objective is the model's (``solvers.joint_data``): reload
byte-hops per reload plus store byte-hops once.  Every real plan gives a feasible point of
this integer program (read ``off`` and ``r`` from its residency), so the IP optimum -- and any
proven bound CP-SAT reaches on it -- is a lower bound on the traffic of every plan.

What it ignores (so it stays a relaxation): addresses and fragmentation, buffers that are
live at ``o`` only in some orders, and the residency of reloaded buffers between reloads.
On graphs whose order is nearly forced (chains of blocks: ResNet, DenseNet, video nets) the
crossing sets are the live sets, and the bound is the no-address optimum.  It is the max over
operators of ``solvers.traffic_bound`` at least (each constraint alone is that knapsack).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from ortools.sat.python import cp_model

from solvers.joint_data import JointData
from solvers.joint_model import configure

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


def _bits(x: int):
    while x:
        low = x & -x
        yield low.bit_length() - 1
        x ^= low


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
    pos = {op: i for i, op in enumerate(ops)}
    preds = data.pred_map()
    anc = [0] * n
    for i, op in enumerate(ops):          # data.ops is a topological order
        a = 0
        for p in preds[op]:
            j = pos[p]
            a |= anc[j] | (1 << j)
        anc[i] = a
    desc = [0] * n
    for i in range(n - 1, -1, -1):
        for p in preds[ops[i]]:
            j = pos[p]
            desc[j] |= desc[i] | (1 << i)

    footprint = [0] * n
    for op, extra in data.scratch:
        footprint[pos[op]] += extra
    crossing: list[list[int]] = [[] for _ in range(n)]   # indices into data.buffers
    consumers: list[list[int]] = []
    for k, mb in enumerate(data.buffers):
        users = [pos[u] for u in mb.users]
        for u in users:
            footprint[u] += mb.size
        umask = 0
        for u in users:
            umask |= 1 << u
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
            for o in _bits(cross):
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
                y = off[(k, o)] = model.NewBoolVar(f"off[{mb.id},{ops[o]}]")
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
                    r = reload[(k, u)] = model.NewBoolVar(f"reload[{mb.id},{ops[u]}]")
                rs.append(r)
            model.Add(sum(rs) >= y)
        model.Add(sum(terms) >= excess)
    if critical == 0:
        return CoverBound(0, True, False, 0, time.perf_counter() - t0)
    cost_terms = []
    stored: dict[int, cp_model.IntVar] = {}
    for (k, u), r in reload.items():
        mb = data.buffers[k]
        if mb.reload_cost:
            cost_terms.append(mb.reload_cost * r)
        if mb.store_cost:
            s = stored.get(k)
            if s is None:
                s = stored[k] = model.NewBoolVar(f"stored[{mb.id}]")
                cost_terms.append(mb.store_cost * s)
            model.AddImplication(r, s)
    model.Minimize(sum(cost_terms))
    remaining = deadline - time.perf_counter()
    if remaining <= 0.01:
        return CoverBound(0, False, False, critical, time.perf_counter() - t0)
    solver = cp_model.CpSolver()
    configure(solver, remaining, work, workers, seed)
    status = solver.Solve(model)
    seconds = time.perf_counter() - t0
    if status == cp_model.INFEASIBLE:
        return CoverBound(0, True, True, critical, seconds)
    if status == cp_model.OPTIMAL:
        value = int(round(solver.ObjectiveValue()))
        log.info("cover bound %d (optimal, %d critical ops, %.2fs)", value, critical, seconds)
        return CoverBound(value, True, False, critical, seconds)
    bound = max(0, math.ceil(solver.BestObjectiveBound() - 1e-6)) if status == cp_model.FEASIBLE or status == cp_model.UNKNOWN else 0
    log.info("cover bound %d (not closed, %d critical ops, %.2fs)", bound, critical, seconds)
    return CoverBound(bound, False, False, critical, seconds)


__all__ = ["CoverBound", "cover_bound"]
