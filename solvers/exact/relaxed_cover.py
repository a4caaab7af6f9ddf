"""When the order-free relaxations cannot raise the bound: one order's cheapest once-paid spill set.

The cut bound (``cut_bound``), the group bound (``group_bound``) and the disjunctive bound
(``disjunctive_bound``) all relax a plan the same way: a buffer that is off-chip at some
operator it crosses pays its spill price ``cost_b`` (one reload, plus the store of an
activation: ``joint_data``'s prices) *once*, however often a real plan reloads it; and what
stays on chip only has to fit beside each operator's own operands and scratch (no addresses).

Take one topological order ``pi`` and a set ``S`` of movable buffers such that at every step
of ``pi`` the operator's footprint plus the crossing buffers outside ``S`` fit in the
capacity.  Then ``(pi, S)`` is a feasible point of every one of those relaxations:

* every group IP, whatever its group (``x``, ``z`` and ``c`` read from ``pi``; ``y = 1`` for
  the crossing buffers of ``S``; ``s`` for the buffers of ``S`` it uses; leaving small
  buffers out of the IP only relaxes it further), at a cost of at most ``cost(S & U)`` on its
  buffers ``U``;
* every single operator's knapsack in ``pi`` (``S``'s crossing buffers cover the excess), so
  each cut bound is at most ``cost(S & P(o))``, and the cut bounds the group bound adds on
  buffer sets disjoint from ``U`` and from each other sum to at most ``cost(S)`` together
  with the group's part;
* the disjunctive bound's leaf that contains ``pi`` (what crosses in every order of the leaf
  crosses in ``pi``), so the minimum over the leaves is at most ``cost(S)``.

Hence none of these bounds can ever exceed ``cost(S)``: when an order has such a set with
``cost(S) <= lb`` (the bound already proven), running them cannot raise the bound, and the
pipeline skips them (``AutoPipeline.relaxations_can_pay``).  Conversely, whenever one of them
would raise the bound above ``lb``, no order has such a set, so the test never skips a bound
that pays.  On the suite's Transformer without weights at M_H the incumbent's order and one
32 KiB activation (65,536 B of spill price, the cut bound) are such a point: the group bound
had spent 1-3 s there to return that same 65,536 B.

``cheapest_cover`` finds the cheapest ``S`` for one order by a small covering IP (one boolean
per movable buffer crossing an over-capacity step, one row per such step) with a CP-SAT
deterministic work budget; only its answer relative to ``limit`` is used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ortools.sat.python import cp_model

from stowage.ir.graph import OpIndex
from stowage.solvers.analysis.reach import bits
from stowage.solvers.exact.cut_bound import CutDag
from stowage.solvers.exact.joint_data import JointData
from stowage.solvers.exact.joint_model import configure

log = logging.getLogger(__name__)


def over_steps(data: JointData, dag: CutDag, order: Sequence[OpIndex]) -> list[tuple[int, list[int]]]:
    """Per step of ``order`` whose operator's footprint plus every crossing buffer exceeds the
    capacity: (the excess bytes, which the off-chip buffers must cover; the indices into
    ``dag.bufs`` of the movable crossing buffers).  A buffer crosses a step it does not touch
    when it holds data before it (its producer ran; an input or weight: one consumer ran) and
    a user runs after it -- ``group_bound.overloads``'s rule."""
    step = {dag.pos[op]: s for s, op in enumerate(order)}
    n = len(order)
    crossing: list[list[int]] = [[] for _ in range(n)]
    for i, b in enumerate(dag.bufs):
        ts = sorted(step[u] for u in bits(b.users))
        first = step[b.producer] if b.producer >= 0 else ts[0]
        last = ts[-1]
        touched = set(ts)
        for s in range(first + 1, last):
            if s not in touched:
                crossing[s].append(i)
    out = []
    for s in range(n):
        excess = dag.footprint[dag.pos[order[s]]] + sum(dag.bufs[i].size for i in crossing[s]) - data.capacity
        if excess > 0:
            out.append((excess, [i for i in crossing[s] if dag.bufs[i].movable]))
    return out


def cheapest_cover(data: JointData, order: Sequence[OpIndex], limit: int, work: float, wall: float,
                   seed: int = 0, dag: CutDag | None = None) -> int | None:
    """The least ``cost(S)`` (module docstring) over the sets ``S`` that make every step of
    ``order`` fit, if some ``S`` costs at most ``limit``; ``None`` when none does, or when
    the budget (``work`` CP-SAT deterministic seconds, ``wall`` a safety stop) ran out before
    one was found (the caller then runs its bounds: ``None`` never skips one)."""
    if not data.capacity_given:
        return None
    dag = dag if dag is not None else CutDag(data)
    rows = over_steps(data, dag, order)
    if not rows:
        return 0
    model = cp_model.CpModel()
    pick: dict[int, cp_model.IntVar] = {}
    for excess, movable in rows:
        if sum(dag.bufs[i].size for i in movable) < excess:
            return None          # unmovable bytes alone overflow this order: not a point
        for i in movable:
            if i not in pick:
                pick[i] = model.new_bool_var(f"s[{dag.bufs[i].k}]")
        model.add(sum(dag.bufs[i].size * pick[i] for i in movable) >= excess)
    cost = sum(dag.bufs[i].cost * v for i, v in pick.items())
    model.add(cost <= limit)
    model.minimize(cost)
    solver = cp_model.CpSolver()
    configure(solver, wall, work, 1, seed)
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        log.debug("cheapest cover of the order: none within %d (status %s)", limit, solver.status_name(status))
        return None
    value = round(solver.objective_value)
    log.debug("cheapest cover of the order: %d (%d over-capacity steps, limit %d)", value, len(rows), limit)
    return value


__all__ = ["cheapest_cover", "over_steps"]
