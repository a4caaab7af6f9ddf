"""``exact`` with ``objective = latency``: the fastest timing of a plan, proven with CP-SAT.

For a plan -- its operator order, placements and copies fixed -- the time model
(``stowage.solvers.timing``) leaves one choice open: which DMA channel runs each copy and in
which order.  ``estimate`` takes the queue in plan order, which can hold a prefetch behind a
spill whose data is not ready yet.  This model chooses the queues:

* **Intervals.**  One per step (its busy time) and one per copy (its transfer time), on an
  integer time grid (``GRID``: the warm start's makespan is ``GRID`` units; every duration is
  rounded *up*, so a grid schedule is a real schedule at least as fast: ``earliest_starts``
  with the real durations and the same queues can only start things earlier).
* **Channels.**  ``NoOverlap`` over the copies with one channel; with ``k`` channels each copy
  has ``k`` optional intervals, exactly one present, ``NoOverlap`` per channel, and a
  cumulative of capacity ``k`` over the copies as a redundant constraint.
* **Precedences** (``timing.TimeGraph``, the time model's own rules): steps in plan order; a
  reload (any ``before`` copy) ends before its step starts; a spill or store starts after the
  step (or the copy) that made its source valid; a copy into bytes, or a step writing into
  them, starts after every copy from or to the earlier placement that held them ended (and,
  in the compute level, after its last step).
* **Memory.**  The plan's placements are kept, so the capacity holds at every step; time x
  address exclusivity is the precedence above (validator rule 9 checks it independently).
* **Weight streams.**  When the engine streams weights (``timing.estimate``'s
  ``weight_loads``), the steps' times depend on when their slices arrive: the model is then
  ``stream_timing.StreamNet``'s constraints (each stream one interval on a channel, sharing
  the ``NoOverlap`` with the copies; the double buffer's precedences; a step ends after its
  last slice is read), so CP-SAT orders slices and copies together (``_stream_schedule``).
* **Objective.**  The makespan.  Traffic is fixed by the plan: the tie-break between
  candidate plans (``solve_latency``) is their traffic.

Warm start: the timeline ``estimate`` gives the plan, so the answer is never slower than it.
A proof (CP-SAT ``OPTIMAL``) is a fixed-order optimum: no timing of *this* order, placements
and copies is faster, up to the grid (at most one unit per interval on the critical path).
The bound valid for every plan is ``timing.latency_bound``, which the plan records as
``solver.latency_bound`` (``docs/plan-format.md``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ortools.sat.python import cp_model

from stowage.ir.graph import Graph
from stowage.plan import Plan
from stowage.solvers.exact.joint_model import configure
from stowage.solvers.problem import Problem
from stowage.solvers.timing import (
    Timeline,
    earliest_starts,
    estimate,
    record_latency,
    replay,
    time_graph,
)
from stowage.targets.hierarchy import Hierarchy

log = logging.getLogger(__name__)

#: Grid units in the warm start's makespan (a grid unit is its makespan / GRID).
GRID = 1_000_000


@dataclass(frozen=True)
class Schedule:
    """The best timing found for one plan: the timeline (real durations), whether CP-SAT proved
    it a fixed-order optimum, and whether the wall clock cut the search."""

    timeline: Timeline
    proven: bool
    hit_wall: bool


def _queues_of(tl: Timeline, channels: int) -> list[list[int]]:
    queues: list[list[tuple[float, int]]] = [[] for _ in range(channels)]
    for t in tl.transfers:
        queues[t.channel].append((t.start, t.index))
    return [[i for _, i in sorted(q)] for q in queues]


def _solve_hinted(model: Any, on: Sequence[Sequence[Any]], queues: Sequence[Sequence[int]], wall: float,
                  work: float, workers: int, seed: int, deterministic: bool) -> tuple[Any, Any, float]:
    """Hint each copy's channel literals from the warm start's ``queues`` and solve ``model``
    under the work budget (``configure``; the wall clock its safety stop): (solver, status,
    seconds).  Both latency models (with and without weight streams) end so."""
    channel_of = {i: c for c, q in enumerate(queues) for i in q}
    for i, lits in enumerate(on):
        for c, lit in enumerate(lits):
            model.add_hint(lit, channel_of[i] == c)
    solver = cp_model.CpSolver()
    configure(solver, wall, work, workers, seed, deterministic)
    t0 = time.perf_counter()
    status = solver.solve(model)
    return solver, status, time.perf_counter() - t0


def best_schedule(graph: Graph, plan: Plan, target: Hierarchy, wall: float, work: float, workers: int = 1,
                  seed: int = 0, deterministic: bool = True,
                  hint_queues: Sequence[Sequence[int]] | None = None) -> Schedule | None:
    """The fastest DMA schedule of ``plan`` within the limits (``wall`` seconds, ``work`` CP-SAT
    deterministic time); None when its time is unknown.  ``hint_queues`` (per channel, plan
    transfer indices: the residency model's queues) is a second warm start, used when its
    replay is faster than ``estimate``'s.  A plan whose engine streams weights gets the model
    with the streams (``_stream_schedule``), warm-started from ``estimate`` only."""
    tg = time_graph(graph, plan, target)
    warm = estimate(graph, plan, target)
    if tg is None or warm is None:
        return None
    if warm.weight_loads:
        # The engine streams weights through the DMA: its steps' times depend on when the
        # slices arrive, so the schedule is the stream model's (``stream_timing``).  The
        # residency model's queues (``hint_queues``) hold the transfers only: not a warm start.
        return _stream_schedule(graph, plan, target, warm, wall, work, workers, seed, deterministic)
    if hint_queues:
        alt = replay(graph, plan, target, hint_queues)
        if alt is not None and alt.makespan < warm.makespan:
            warm = alt
    n, m = tg.nsteps, len(tg.duration)
    if m == 0 or warm.makespan <= 0:
        return Schedule(warm, True, False)        # steps only: back to back is the one timing
    unit = warm.makespan / GRID
    dur = [max(0, math.ceil(d / unit)) for d in (*tg.busy, *tg.duration)]
    hint_queues = _queues_of(warm, tg.channels)
    hint = earliest_starts(tg, hint_queues, dur)
    assert hint is not None, "the warm start's queues are a schedule of its own time graph"
    horizon = int(max(hint[v] + dur[v] for v in range(n + m)))
    model = cp_model.CpModel()
    start = [model.new_int_var(0, horizon - dur[v], f"s{v}") for v in range(n + m)]
    for v, ps in enumerate(tg.preds):
        for u in ps:
            model.add(start[v] >= start[u] + dur[u])
    makespan = model.new_int_var(0, horizon, "makespan")
    model.add(makespan >= start[n - 1] + dur[n - 1])
    copies = [model.new_fixed_size_interval_var(start[n + i], dur[n + i], f"c{i}") for i in range(m)]
    on: list[list[Any]] = []
    if tg.channels == 1:
        model.add_no_overlap(copies)
    else:
        k = tg.channels
        per_channel: list[list[Any]] = [[] for _ in range(k)]
        for i in range(m):
            lits = [model.new_bool_var(f"x{i}_{c}") for c in range(k)]
            model.add_exactly_one(lits)
            for c in range(k):
                per_channel[c].append(model.new_optional_fixed_size_interval_var(
                    start[n + i], dur[n + i], lits[c], f"c{i}_{c}"))
            on.append(lits)
        for ivs in per_channel:
            model.add_no_overlap(ivs)
        model.add_cumulative(copies, [1] * m, k)
    for i in range(m):
        model.add(makespan >= start[n + i] + dur[n + i])
    model.minimize(makespan)
    for v in range(n + m):
        model.add_hint(start[v], int(hint[v]))
    model.add_hint(makespan, horizon)
    solver, status, seconds = _solve_hinted(model, on, hint_queues, wall, work, workers, seed, deterministic)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        log.info("latency model: no answer in %.2fs; keeping the warm start", seconds)
        return Schedule(warm, False, seconds >= 0.95 * wall)
    value = {v: solver.value(start[v]) for v in range(n + m)}
    queues: list[list[int]] = [[] for _ in range(tg.channels)]
    for i in sorted(range(m), key=lambda i: (value[n + i], i)):
        c = 0 if tg.channels == 1 else next(c for c, lit in enumerate(on[i]) if solver.boolean_value(lit))
        queues[c].append(i)
    found = replay(graph, plan, target, queues)
    assert found is not None, "a CP-SAT schedule satisfies every precedence of the time graph"
    proven = status == cp_model.OPTIMAL
    log.info("latency model: %d steps, %d copies, %d channel(s): %s %.6g s (warm start %.6g s, grid %.3g s) in "
             "%.2fs", n, m, tg.channels, "optimal" if proven else "feasible", found.makespan, warm.makespan, unit,
             seconds)
    best = found if found.makespan < warm.makespan else warm
    return Schedule(best, proven, not proven and seconds >= 0.95 * wall)


def _stream_schedule(graph: Graph, plan: Plan, target: Hierarchy, warm: Timeline, wall: float, work: float,
                     workers: int, seed: int, deterministic: bool) -> Schedule:
    """``best_schedule`` for a plan with weight streams: the constraints of
    ``stream_timing.StreamNet`` on the integer grid (every lag rounded up, a negative one
    towards zero), the activations' copies and the streams (one interval per stream, from its
    first copy's start to its last copy's end) sharing the channels' ``NoOverlap``, so CP-SAT
    chooses the queue order of slices and copies together.  Warm-started from ``warm``
    (``estimate``'s timeline, its queues replayed on the grid); the answer is the replay of the
    best queues with the real times, kept only when faster than ``warm``."""
    from stowage.solvers import stream_timing

    net = stream_timing.stream_net(graph, plan, target)
    queues0 = stream_timing.estimate_queues(net, warm) if net is not None else None
    if net is None or queues0 is None or warm.makespan <= 0:
        log.info("latency model: the weight streams are not this plan's; keeping estimate's timeline")
        return Schedule(warm, False, False)
    n = net.nsteps
    m = len(net.durations)
    items = m + len(net.spans)
    unit = warm.makespan / GRID
    lags = [math.ceil(lag / unit) for _, _, lag in net.edges]
    item_lag = [math.ceil(net.item_end(i)[1] / unit) for i in range(items)]
    hint = stream_timing.earliest(net, queues0, lags, item_lag)
    assert hint is not None, "estimate's queues are a schedule of its own stream constraints"
    horizon = int(max([hint[2 * n - 1], *(hint[net.item_end(i)[0]] + item_lag[i] for i in range(items))]))
    model = cp_model.CpModel()
    t = [model.new_int_var(0, horizon, f"t{v}") for v in range(net.nodes)]
    for (u, v, _), lag in zip(net.edges, lags, strict=True):
        model.add(t[v] >= t[u] + lag)
    makespan = model.new_int_var(0, horizon, "makespan")
    model.add(makespan >= t[2 * n - 1])
    starts = [t[net.item_start(i)] for i in range(items)]
    ends = [t[net.item_end(i)[0]] + item_lag[i] for i in range(items)]
    sizes = [model.new_int_var(0, horizon, f"d{i}") for i in range(items)]
    for i in range(items):
        model.add(makespan >= ends[i])
    k = net.channels
    on: list[list[Any]] = []
    if k == 1:
        model.add_no_overlap([model.new_interval_var(starts[i], sizes[i], ends[i], f"q{i}") for i in range(items)])
    else:
        per_channel: list[list[Any]] = [[] for _ in range(k)]
        for i in range(items):
            lits = [model.new_bool_var(f"x{i}_{c}") for c in range(k)]
            model.add_exactly_one(lits)
            for c in range(k):
                per_channel[c].append(model.new_optional_interval_var(starts[i], sizes[i], ends[i], lits[c],
                                                                      f"q{i}_{c}"))
            on.append(lits)
        for ivs in per_channel:
            model.add_no_overlap(ivs)
        model.add_cumulative([model.new_interval_var(starts[i], sizes[i], ends[i], f"a{i}") for i in range(items)],
                             [1] * items, k)
    model.minimize(makespan)
    for v in range(net.nodes):
        model.add_hint(t[v], int(hint[v]))
    solver, status, seconds = _solve_hinted(model, on, queues0, wall, work, workers, seed, deterministic)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        log.info("latency model (weight streams): no answer in %.2fs; keeping the warm start", seconds)
        return Schedule(warm, False, seconds >= 0.95 * wall)
    queues: list[list[int]] = [[] for _ in range(k)]
    for i in sorted(range(items), key=lambda i: (solver.value(starts[i]), i)):
        c = 0 if k == 1 else next(c for c, lit in enumerate(on[i]) if solver.boolean_value(lit))
        queues[c].append(i)
    found = stream_timing.replay(graph, plan, target, queues, net)
    proven = status == cp_model.OPTIMAL and found is not None
    log.info("latency model: %d steps, %d copies, %d weight streams, %d channel(s): %s %s s (warm start %.6g s, "
             "grid %.3g s) in %.2fs", n, m, len(net.spans), k, "optimal" if proven else "feasible",
             f"{found.makespan:.6g}" if found is not None else "none", warm.makespan, unit, seconds)
    best = found if found is not None and found.makespan < warm.makespan else warm
    return Schedule(best, proven, not proven and seconds >= 0.95 * wall)


def with_latency(graph: Graph, plan: Plan, target: Hierarchy, schedule: Schedule | None) -> Plan:
    """``plan`` timed by ``schedule`` (by ``estimate`` without one), with the latency bound and
    what is proven about its makespan (``timing.record_latency``)."""
    return record_latency(graph, plan, target, schedule.timeline if schedule is not None else None,
                          proven=schedule is not None and schedule.proven)


def _key(plan: Plan) -> tuple[float, int, int]:
    est = plan.metrics.estimated_seconds
    return (est if est is not None else math.inf, plan.metrics.noncompulsory_bytes,
            max(plan.metrics.peak_bytes.values(), default=0))


def solve_latency(problem: Problem, params: Any, started: float, time_limit: float, workers: int, seed: int,
                  traffic_solver: Callable[[Problem, Any], Plan]) -> Plan:
    """``exact`` for the latency objective: candidate plans, each timed by ``best_schedule``;
    the smallest makespan wins, then the least traffic, then the smaller peak.

    The candidates are exact's own plan for traffic (``traffic_solver`` with the same params
    and ``objective = traffic``, on the whole limit: the plan of a standalone run, since the
    pipeline's budgets scale with the limit) and the heuristic's latency plan (15%: the
    fastest by ``estimate`` of its best results and the baselines), each scheduled on its share
    of what is left; then, with ``params.latency_residency`` (the default), when no candidate
    meets the latency bound and the time left holds its work budget (15% of the limit), the
    residency model's plan for each whole-tensor candidate's order (``latency_residency``:
    which buffers to spill and when, chosen for time), scheduled with 5% of the limit and its
    DMA queues as a second warm start.  Each is warm-started from its own timeline, and the
    traffic plan is a candidate, so the result is never slower than exact's traffic plan, nor
    than without the residency model.  The traffic status and bound (``solver.status``,
    ``solver.lower_bound``) stay those of exact's proof, judged on the chosen plan's traffic."""
    from stowage.solvers.heuristic import HeuristicParams, plan_heuristic

    # The whole limit, as ``--objective traffic`` gets it, so that its plan is this candidate and
    # the latency plan is never slower than it (on 55% of the limit densenet121 at M_R got
    # another plan of the same traffic, 0.5% slower).  Where the traffic solve uses the whole
    # limit the phases below get their 0.05 s floors: the traffic plan's timeline stands.
    traffic = traffic_solver(problem, replace(params, objective="traffic", time_limit=time_limit))
    bound = traffic.solver.lower_bound
    candidates = [(traffic.solver.found_by or "exact", traffic)]
    left = time_limit - (time.perf_counter() - started)
    if left > 0.3 * time_limit:
        quick = replace(problem, time_limit=max(0.2, 0.15 * time_limit))
        fast = plan_heuristic(quick, HeuristicParams(fast=True, improve_iters=8, objective="latency"), "exact",
                              label="heuristic")
        if fast.steps != traffic.steps or fast.transfers != traffic.transfers or \
                fast.placements != traffic.placements:
            candidates.append((fast.solver.found_by or "heuristic (latency)", fast))
    hit_wall = traffic.solver.stopped_by == "time"
    deterministic = getattr(params, "deterministic", True)

    def schedule(who: str, plan: Plan, work: float, wall: float,
                 hint: Sequence[Sequence[int]] | None = None) -> Plan:
        nonlocal hit_wall
        sched = best_schedule(problem.graph, plan, problem.target, wall=wall, work=work, workers=workers,
                              seed=seed, deterministic=deterministic, hint_queues=hint)
        hit_wall = hit_wall or (sched is not None and sched.hit_wall)
        timed = with_latency(problem.graph, plan, problem.target, sched)
        return replace(timed, solver=replace(timed.solver, found_by=f"exact: latency schedule of {who}"))

    scheduled: list[Plan] = []
    for k, (who, plan) in enumerate(candidates):
        left = time_limit - (time.perf_counter() - started)
        # A work budget; the wall clock, up to what is left of the limit, is only its safety stop.
        share = max(0.05, 0.9 * left / (len(candidates) - k))
        scheduled.append(schedule(who, plan, share, max(share, min(1.5 * share, 0.95 * left))))
    at_bound = min(scheduled, key=_key).solver.latency_status == "optimal"
    if getattr(params, "latency_residency", True) and not at_bound:
        # After today's candidates, in the time they left (they stop on work budgets, usually
        # early): so the result is never slower than without the residency model.
        found: list[tuple[str, Plan, Sequence[Sequence[int]]]] = []
        hit_wall = _residency_candidates(problem, candidates, found, started, time_limit, workers, seed,
                                         deterministic) or hit_wall
        for who, plan, hint in found:
            work = RESIDENCY_SCHEDULE_SHARE * time_limit
            left = time_limit - (time.perf_counter() - started)
            scheduled.append(schedule(who, plan, work, max(0.05, min(1.5 * work, 0.95 * left)), hint))
    best = min(scheduled, key=_key)
    got = best.metrics.noncompulsory_bytes
    status = "optimal" if bound is not None and got <= bound else "feasible"
    log.info("exact (latency): %d candidates, fastest %.6g s (%s), traffic %d B", len(scheduled),
             best.metrics.estimated_seconds or 0.0, best.solver.latency_status, got)
    return replace(best, solver=replace(best.solver, name="exact", status=status, lower_bound=bound,
                                        seconds=time.perf_counter() - started,
                                        stopped_by="time" if hit_wall else best.solver.stopped_by))


#: Shares of the time limit, as CP-SAT work (deterministic): the residency model
#: (``latency_residency``), split between the candidate orders it runs on, and the DMA
#: schedule of each plan it proposes.
RESIDENCY_SHARE = 0.15
RESIDENCY_SCHEDULE_SHARE = 0.05


def _residency_candidates(problem: Problem, candidates: list[tuple[str, Plan]],
                          found: list[tuple[str, Plan, Sequence[Sequence[int]]]], started: float, time_limit: float,
                          workers: int, seed: int, deterministic: bool) -> bool:
    """Append to ``found`` the residency model's plan for each whole-tensor candidate order
    (``latency_residency.residency_for_latency``: which buffers to spill and when, chosen for
    time) with its DMA queues, unless it equals a candidate.  Work budgets are fixed shares of
    the limit (deterministic); a run starts only when that much time is left, and the wall
    clock (at most 80% of what is left) is its safety stop.  Returns whether the wall clock cut
    a run or left no time for one."""
    from stowage.solvers.exact.latency_residency import residency_for_latency

    orders = []
    refs = []
    for who, plan in candidates:
        order = tuple(st.op for st in plan.steps)
        if not plan.cascades and order not in orders:
            orders.append(order)
            refs.append((who, plan))
    hit_wall = False
    for who, plan in refs:
        work = RESIDENCY_SHARE * time_limit / len(refs)
        left = time_limit - (time.perf_counter() - started)
        if left < work:
            hit_wall = True     # the clock, not a work budget, decided: say so (stopped_by)
            break
        wall = min(1.5 * work, 0.8 * left)
        got = residency_for_latency(problem, plan, wall=wall, work=work, workers=workers, seed=seed,
                                    deterministic=deterministic)
        if got is None:
            continue
        hit_wall = hit_wall or got.hit_wall
        if not any(got.plan.transfers == p.transfers and got.plan.placements == p.placements for _, p in candidates):
            found.append((f"residency model on the order of {who}", got.plan, got.queues))
    return hit_wall


def latency_of_tiled(problem: Problem, plan: Plan, solver: str) -> Plan:
    """A tiled plan (cascades attached) for the latency objective: timed again with its row
    copies in the steps' busy times, and with its latency bound; for ``exact`` the DMA
    schedule is optimised on that timeline (``best_schedule``, a tenth of the limit, at least
    0.2 s), for other solvers it is ``estimate``'s.  The hook of ``solvers.tiling.plan``."""
    sched = None
    if solver == "exact":
        wall = max(0.2, 0.1 * problem.time_limit)
        sched = best_schedule(problem.graph, plan, problem.target, wall, wall, problem.workers or 1, problem.seed)
    return with_latency(problem.graph, plan, problem.target, sched)


def latency_partitions(problem: Problem, part: Any, chosen: Sequence[Any]) -> list[Any]:
    """Partitions the latency objective times besides ``chosen`` (``tiling.choose_candidates``,
    which look for the least traffic): the least-peak one (``Partitioner.min_peak``), when it
    fits and is not already there.  Its cascades are longer, and a cascade's busy time is the
    largest of its summed compute and summed memory time, so it can be faster even where the
    zero-traffic partition exists (MobileNetV2 int8 on ethos-u55-256 at 1,509,824 B: 13.24 ms
    against 13.82 ms)."""
    if problem.capacity is None:
        return []
    deadline, part.deadline = part.deadline, None
    try:
        peak, segs = part.min_peak(bystanders=False)
    finally:
        part.deadline = deadline
    return [segs] if peak <= problem.capacity and segs not in chosen else []


def latency_key(plan: Plan) -> tuple[float, int, int]:
    """How the latency objective ranks plans: estimated makespan, then traffic, then peak."""
    return _key(plan)


__all__ = ["GRID", "Schedule", "best_schedule", "latency_key", "latency_of_tiled", "latency_partitions",
           "solve_latency", "with_latency"]
