"""Tiled plans: choose cascades, plan the macro graph with a whole-tensor solver, attach rows.

``plan_tiled`` is the heuristic of the design notes (section 9.3):

1. a DP over cut points along the file order chooses cascades and band heights
   (``stowage.solvers.tiling.partition``);
2. the cascades become steps of a macro graph (``stowage.ir.tiling.macro_graph``) whose rings
   are buffers; any whole-tensor solver (``auto`` by default) plans it: order, offsets, spills;
3. the stripe programs are attached to the plan with the home placements of streamed graph
   inputs and outputs and their row transfers (compulsory traffic, counted in the metrics).

With ``auto`` and ``heuristic`` (their ``reorder`` parameter) the same search runs along other
orders too, the min-peak one and a depth-first one (``stowage.solvers.tiling.orders``), and the
plan moving the fewest bytes is kept, the file order's on ties.

With ``--solver exact`` the exact solver chooses cascades too: it starts from ``auto``'s tiled
plan (reusing its walks), and a CP-SAT partition model over candidate cascades in the file order
and each order of ``reorder`` (``stowage.solvers.exact.tiled_search``) adds its partitions to
the heuristic's in those orders; the plan moving the fewest bytes is kept (exact's own on a tie
with auto's), so exact's tiled plan never moves more than auto's.  Every tiled plan names the
order its cascades are runs of (``solver.cascade_order``).

The plan is then checked by the one validator, rows included.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from stowage.errors import CapacityError, SolverError
from stowage.ir.graph import Graph, TensorKind
from stowage.ir.tiling import CascadeSpec, buffer_row_bytes, macro_graph
from stowage.plan import Cascade, CascadeTensor, Metrics, Placement, Plan
from stowage.solvers.alloc.interval import align_up
from stowage.solvers.budgets import m_r_cached
from stowage.solvers.cache import graph_cached
from stowage.solvers.costs import CostModel
from stowage.solvers.problem import Problem
from stowage.solvers.tiling import partition, slotfit
from stowage.solvers.tiling.bound import tiled_lower_bound
from stowage.solvers.tiling.partition import OutOfTime, OutOfWork, Partitioner, Segment
from stowage.solvers.tiling.program import Program
from stowage.solvers.tiling.runs import run_work
from stowage.solvers.tiling.slots import SlotLayout
from stowage.targets.hierarchy import Hierarchy

log = logging.getLogger(__name__)


def _least_stripe(part: Partitioner, i: int) -> tuple[int, str] | None:
    """The least footprint of step ``i`` run in stripes on its own, in its finest band, with every
    intermediate it reads in rows or makes crossing off-chip (a broadcast operand read whole, as
    an SE block's one-row scale, stays whole: a stripe cannot read it row by row), and what
    dominates it; None when the step cannot run in stripes."""
    if not part.tileable[i]:
        return None
    h, pace = part.ladder(i, i)[0]
    w = part.windows(i, i, h, pace)
    if w is None:
        return None
    dram = frozenset(b for b in part.touch[i] if part._movable(b) and b not in w.read_whole)
    own = w.quick(dram)
    if own is None:
        return None
    # The largest part: the rows one band needs of the buffer held in the most bytes, or a
    # buffer read whole, or the weights.
    g = part.g
    parts: list[tuple[int, str]] = []
    for b in (*w.reads, *w.writes):
        name = g.buffers[b].tensors[0]
        io = g.buffers[b].kind is TensorKind.INPUT or g.buffers[b].is_output
        if b in w.held and (b in dram or io):
            r, rb = w.held[b]
            parts.append((part._a(r * rb), f"{r} row{'s' if r > 1 else ''} of '{name}' ({rb} bytes each)"))
        else:
            parts.append((part._a(g.buffers[b].bytes), f"'{name}' whole"))
    if w.fixed:
        parts.append((w.fixed, "its weights and working memory"))
    big = max(parts, default=(0, ""))
    return own, f"{big[1]}, {big[0]} bytes" if big[1] else ""


def _floor_error(part: Partitioner, cap: int, untiled: int, timed_out: bool = False) -> CapacityError:
    """Why no tiled plan fits: the step whose least footprint is largest, each step taking the
    smaller of its whole footprint and one stripe of its finest band with its intermediates
    through off-chip memory (``_least_stripe``), and what dominates it."""
    g = part.g
    worst: tuple[int, str] = (0, "")
    for i in range(part.n):
        op = g.operators[part.order[i]]
        whole = part.plain(i).peak - part.bystanders(i, i)
        striped = _least_stripe(part, i)
        if striped is not None and striped[0] <= whole:
            own = striped[0]
            h, pace = part.ladder(i, i)[0]
            band = f"{h}-row" if not pace else f"{h}-row (of a {pace}-row tensor)"
            what = (f"operator '{op.name}' ({op.op_type}) needs {own} bytes in one {band} stripe with its "
                    f"intermediates through off-chip memory ({striped[1]})")
        elif striped is not None:
            own = whole
            what = f"operator '{op.name}' ({op.op_type}) needs {own} bytes even run whole (its stripes need more)"
        else:
            own = whole
            what = f"operator '{op.name}' ({op.op_type}), which needs whole tensors, needs {own} bytes"
        if own > worst[0]:
            worst = (own, what)
    if worst[0] <= cap:
        # Every step fits on its own: what failed is the search for a partition.
        why = ("the search for cascade boundaries through off-chip memory ran out of time (raise --time-limit)"
               if timed_out else "no partition into cascades fits with the tensors live across its cuts")
        return CapacityError(f"capacity {cap} bytes is below M_R = {untiled} bytes and no tiled plan was found: "
                             f"{why}")
    return CapacityError(f"capacity {cap} bytes is below M_R = {untiled} bytes and too small even when tiled: "
                         f"{worst[1]}")


def choose_candidates(problem: Problem, part: Partitioner, stop_at: float | None = None,
                      in_hand: bool = False) -> list[list[Segment]]:
    """Partitions worth planning at the problem's capacity, best first (see ``partition``):
    one that fits with every boundary in the compute level (no traffic) when it exists; else
    the least-traffic one with boundaries through off-chip memory, and the one with the
    smallest cascades, whose bystanders the whole-tensor planner spills.  A
    ``CapacityError`` names the step that cannot be made to fit.

    ``stop_at`` (``time.monotonic()``): the wall instant by which the caller must return.  The
    smallest-cascades search then stops there (``OutOfTime``, ``part.stopped_by = "time"``)
    whenever something else can be returned: a least-traffic partition, or the caller's own
    plan (``in_hand``: above M_R, the whole-tensor one).  Without either it still runs to its
    end (else a capacity below M_R would have no plan at all); an empty list then means
    the clock ended the only search that could still produce a candidate (``in_hand``)."""
    g, cap = problem.graph, problem.capacity
    align = problem.target.compute.alignment
    if cap is None:
        return [[part.plain(i) for i in range(part.n)]]
    untiled = m_r_cached(g, problem.weights_in_compute_level, align)
    if any(not part.tileable[i] and part.plain(i).peak - part.bystanders(i, i) > cap for i in range(part.n)):
        # A step that cannot run in stripes is a plain step in every partition (a cascade's
        # steps are all row-tileable), with its whole operands and results resident, and
        # nothing else has to be: no search can make it fit.  Refused at once, with the error
        # the searches would end in, instead of after them (23 s for PP-OCRv4 rec's
        # attention Softmax at 256 KiB under load).
        raise _floor_error(part, cap, untiled)
    try:
        segs = part.fewest_stripes(cap)
    except OutOfTime:
        segs = None
        part.stopped_by = "time"
        log.warning("tiling: the zero-traffic search ran out of time; trying the cheaper searches")
    except OutOfWork:
        segs = None
        log.warning("tiling: the zero-traffic search used its work budget; trying the cheaper searches")
    if segs is not None:
        return [segs]
    out: list[list[Segment]] = []
    timed_out = False
    slots = part.slot_rows
    work = part.work
    streamed: list[Segment] | None = None
    try:
        # Rings first, as before rows by slot existed: the same budget gives the same plan.
        part.slot_rows = False
        streamed = part.least_traffic(cap)
        if streamed is not None:
            out.append(streamed)
    except OutOfTime:
        timed_out = True
        part.stopped_by = "time"
        log.warning("tiling: the least-traffic search (cuts through off-chip memory) ran out of time")
    except OutOfWork:
        log.warning("tiling: the least-traffic search (cuts through off-chip memory) used its work budget "
                    "(%d stripe walks)", part.walks)
    finally:
        part.slot_rows = slots
    if slots and not timed_out and (streamed is None or sum(s.traffic for s in streamed) > 0):
        # Then with rows by slot (``slotfit``) on a budget of its own: the walks above are
        # memoised, so it pays for the slot tries and the segments they make feasible.  Its
        # partition is a candidate when it cuts less; when its budget or the clock ends it
        # first, the rings' partition stands.
        # Last, when that still moves bytes, once more with segments the greedy packer misses
        # taken on their live rows and the chosen ones packed exactly
        # (``slotfit.least_traffic_packed``), again on a budget of its own: when it does not
        # complete, the greedy packer's partition stands.
        reach = part.reach
        best = streamed
        for search in (part.least_traffic, lambda c: slotfit.least_traffic_packed(part, c)):
            if best is not None and sum(s.traffic for s in best) == 0:
                break
            try:
                by_slot = search(cap)
            except (OutOfTime, OutOfWork) as e:
                if isinstance(e, OutOfTime):
                    part.stopped_by = "time"   # the clock, not a budget, kept the partition found before
                log.info("tiling: a search with rows by slot did not complete; the partition found before stands")
                break
            if by_slot is not None and any(s.slotted for s in by_slot) and (
                    best is None or sum(s.traffic for s in by_slot) < sum(s.traffic for s in best)):
                out.insert(0, by_slot)
                best = by_slot
        part.reach = reach
    # The smallest-cascades partition is the fallback whatever the clock or the budget says:
    # without it a capacity below M_R has no plan at all (it walks each segment once).  When
    # there is another plan to return (a least-traffic partition, the caller's), it is one
    # more candidate, and the caller's deadline ends it (6-8 s of CPU on PNASNet-5 at M_R,
    # where the whole-tensor plan wins: issue 14, on time).
    cut_ok = stop_at is not None and (bool(out) or in_hand)
    part.deadline = stop_at if cut_ok else None
    part.work = None
    try:
        peak, spilled = part.min_peak(bystanders=False)
        if peak <= cap:
            out.append(spilled)
    except OutOfTime:
        part.stopped_by = "time"
        log.warning("tiling: the smallest-cascades search ran out of time; %s",
                    "the least-traffic partition stands" if out else "the caller's plan stands")
        return out
    finally:
        part.deadline = None
    if not out and (timed_out or part.stopped_by == "time"):
        # The clock cut the least-traffic search and the smallest cascades do not fit (a step
        # that only fits inside a longer cascade, e.g. a Slice of an input read whole on its
        # own): a refusal would then depend on the machine's load.  Finish that search on its
        # work budget alone (its walks are memoised and cost nothing again), past the time
        # limit if need be: a partition at least as far along as an unloaded run's, or the
        # floor error an unloaded run gives.
        log.warning("tiling: no partition found before the clock; finishing the least-traffic search on its "
                    "work budget alone (past the time limit)")
        part.work = work   # rows by slot allowed: rings alone did not complete either
        try:
            late = slotfit.least_traffic_packed(part, cap) if part.slot_rows else part.least_traffic(cap)
            if late is not None:
                out.append(late)
        except OutOfWork:
            log.warning("tiling: the least-traffic search used its work budget (%d stripe walks)", part.walks)
        finally:
            part.work = None
        if not out:
            # The rounds it completed also lengthen the fallback's cascades (``reach``).
            peak, spilled = part.min_peak(bystanders=False)
            if peak <= cap:
                out.append(spilled)
    if not out:
        raise _floor_error(part, cap, untiled, timed_out)
    log.info("tiling: %d candidate partitions below the zero-traffic capacity", len(out))
    return out


def plan_tiled(problem: Problem, solver: str = "auto", params: Any = None, memo: Any = None,
               stop_at: float | None = None, in_hand: bool = False) -> Plan:
    """The best tiled plan among the candidate partitions (least non-compulsory traffic).
    ``memo``: a ``stowage.solvers.tiling.orders.SearchMemo`` that keeps (or, filled by an
    earlier run of the same problem, gives) each order's heuristic search: ``exact`` passes
    the one of ``auto``'s run it starts from.

    ``stop_at`` (``time.monotonic()``; None: no stop): the wall instant by which the caller
    must return (``stowage.compile``: the promise, ``time_limit`` + 10% + 2 s, less the room
    its validation needs).  Once a plan is in hand (the first candidate's, or the caller's
    when ``in_hand``: above M_R, the whole-tensor plan), every phase checks it: the
    smallest-cascades search (``choose_candidates``), each further candidate's macro solve,
    the tiled lower bound; what the clock cut is flagged ``solver.stopped_by = "time"``.
    With ``in_hand`` and no candidate planned by then, ``OutOfTime`` (the caller's plan
    stands)."""
    # The choice of cascades is bounded by its work budget (``partition.WORK_BUDGET``); 80% of
    # the time limit is only its safety net on an overloaded machine.  Each macro solve (one
    # step per cascade) gets the time limit ``macro_limit`` -- a function of the limit only, so
    # its work budgets do not depend on the load (it got the time left, at least a second);
    # the end of the limit is the safety stop: past it, with a plan in hand, the candidates
    # left are skipped and the plan says ``stopped_by = "time"``.
    start = time.monotonic()
    end = start + problem.time_limit
    latency = getattr(params, "objective", "traffic") == "latency"
    how = getattr(params, "partition", "model") if solver == "exact" else "heuristic"
    if how not in ("model", "heuristic"):   # a bad parameter is refused before any work
        raise SolverError(f"exact: unknown partition '{how}'; choose model or heuristic")
    reorder = tuple(getattr(params, "reorder", ())) if solver in ("auto", "heuristic", "exact") else ()
    if reorder:
        from stowage.solvers.tiling.orders import check_names

        check_names(reorder)
    # Below M_R ``exact`` starts from ``auto``'s tiled plan (the same problem, time limit and
    # orders; its heuristic searches are reused below, not repeated): exact's plan is never
    # worse.  Above M_R (a tiled plan tried beside the whole-tensor one) it does not.
    below = problem.capacity is not None and problem.capacity < m_r_cached(
        problem.graph, problem.weights_in_compute_level, problem.target.compute.alignment)
    started_from: Plan | None = None
    if solver == "exact" and not latency and below:
        from stowage.solvers.tiling.orders import SearchMemo

        memo = SearchMemo() if memo is None else memo
        started_from = _auto_start(problem, memo, reorder, stop_at)
    if started_from is not None and started_from.solver.status == "optimal":
        # It meets the bound over every tiling and every order: nothing left to search.
        log.info("tiling: auto's tiled plan meets the tiled lower bound (%d B)",
                 started_from.metrics.noncompulsory_bytes)
        return _from_auto(started_from)
    start_key = (problem.graph.file_order(), problem.capacity)
    if memo is not None and start_key in memo.searched:
        part, first = memo.searched[start_key]
    else:
        part = Partitioner(problem.graph, problem.weights_in_compute_level, problem.target.compute.alignment,
                           deadline=start + 0.8 * problem.time_limit, work=partition.WORK_BUDGET, shared={})
        first = choose_candidates(problem, part, stop_at, in_hand)
        if memo is not None:
            memo.searched[start_key] = (part, first)
    best: Plan | None = None
    error: CapacityError | None = None
    candidates = [(part, segs, "tiling") for segs in first]
    if not candidates:   # only with ``in_hand``: the clock ended the one search left
        raise OutOfTime("tiling: no partition before the caller's deadline")
    partition_bound: int | None = None
    joint_bound: int | None = None
    if how == "model" and not latency and problem.capacity is not None \
            and not _zero_traffic([s for _p, s, _w in candidates], problem.capacity):
        # The exact solver chooses the cascades too: the CP-SAT partition model over candidate
        # cascades, in the file order and each other order (its heuristic partitions there
        # included), then the joint model in the file order (docs/tiling.md).
        from stowage.solvers.exact.tiled_search import exact_candidates

        # Extra candidates (the heuristic's are in hand): the caller's deadline ends them too.
        found = exact_candidates(problem, part, [s for _p, s, _w in candidates],
                                 end if stop_at is None else min(end, stop_at),
                                 joint=bool(getattr(params, "joint", True)), reorder=reorder, memo=memo)
        partition_bound, joint_bound = found.partition_bound, found.joint_bound
        candidates = candidates + found.partitions   # ties keep the heuristic's plan
        reorder = ()                                 # searched above
    if reorder and not latency and problem.capacity is not None \
            and not _zero_traffic([s for _p, s, _w in candidates], problem.capacity):
        # Cascades along other orders too (the min-peak one, a depth-first one whose runs span
        # a branch's paths): ``stowage.solvers.tiling.orders``; ties keep the file order's plan.
        from stowage.solvers.tiling.orders import SEARCH_SHARE, reorder_candidates

        search_end = start + SEARCH_SHARE * problem.time_limit
        candidates += reorder_candidates(problem, part, reorder,
                                         search_end if stop_at is None else min(search_end, stop_at), memo)
    if latency:  # the least-peak partition too: larger cascades can be faster (docs/timing.md)
        from stowage.solvers.exact.latency_model import latency_partitions

        candidates += [(part, s, "tiling") for s in latency_partitions(problem, part, [s for _p, s, _w in candidates])]
    seen: set[tuple[tuple[tuple[int, ...], int, int, frozenset[int]], ...]] = set()
    clock_cut = False
    for cpart, segs, source in candidates:
        key = tuple((s.ops, s.stripe_rows, s.pace_rows, s.dram) for s in segs)
        if key in seen:
            continue   # the same partition from two searches: planned once
        seen.add(key)
        cut = sum(s.traffic for s in segs)
        if source != "tiling" and not latency and (
                (best is not None and cut >= best.metrics.noncompulsory_bytes)
                or (started_from is not None and cut > started_from.metrics.noncompulsory_bytes)):
            # Its cut traffic alone is no better than a plan in hand: no macro solve (one that
            # may tie auto's plan is made: exact's own plan wins a tie).
            continue
        held = best is not None or in_hand or started_from is not None
        if stop_at is not None and held and time.monotonic() >= stop_at:
            clock_cut = True   # the plan in hand is returned; the other candidates are not planned
            log.warning("tiling: the deadline passed; the candidate partitions left are not planned")
            break
        if best is not None and time.monotonic() >= end:
            clock_cut = True   # the end of the limit, the safety stop: the plan says so below
            break
        try:
            limit = macro_limit(problem.time_limit)
            if stop_at is not None and held:
                # A plan is in hand: this macro solve must end by the caller's deadline too.
                limit = min(limit, max(0.1, stop_at - time.monotonic()))
            left = replace(problem, time_limit=limit)
            plan = _plan_partition(left, cpart, segs, solver, params, stop_at, run_work(problem.time_limit))
        except CapacityError as exc:
            error = exc
            continue
        if source != "tiling" and plan.solver.found_by:
            # Which search chose the cascades: the partition model, or another order's.
            plan = replace(plan, solver=replace(plan.solver, found_by=source + plan.solver.found_by[len("tiling"):]))
        plan = replace(plan, solver=replace(plan.solver, cascade_order=_order_label(problem, cpart)))
        if latency:  # time the attached plan (docs/timing.md)
            from stowage.solvers.exact.latency_model import latency_key, latency_of_tiled

            plan = latency_of_tiled(left, plan, solver)
            if best is None or latency_key(plan) < latency_key(best):
                best = plan
        elif best is None or plan.metrics.noncompulsory_bytes < best.metrics.noncompulsory_bytes:
            best = plan
    if started_from is not None and (best is None or started_from.metrics.noncompulsory_bytes
                                     < best.metrics.noncompulsory_bytes):
        # ``auto``'s plan moves less than every plan exact made (its macro planner spilled
        # less on some partition): kept, and ``found_by`` says whose it is.
        log.info("tiling: auto's tiled plan (%d B) is the best", started_from.metrics.noncompulsory_bytes)
        best = _from_auto(started_from)
    if best is None:
        if error is None or clock_cut:   # only with ``in_hand``: the clock stopped the macro solves
            raise OutOfTime("tiling: no candidate planned before the caller's deadline")
        raise error
    if clock_cut and not best.solver.stopped_by:
        best = replace(best, solver=replace(best.solver, stopped_by="time"))
    if started_from is not None and started_from.solver.stopped_by and not best.solver.stopped_by:
        # The clock cut auto's run: its plan, the reference that spared macro solves above,
        # may differ under another load, and so may the plan kept.
        best = replace(best, solver=replace(best.solver, stopped_by=started_from.solver.stopped_by))
    if partition_bound is not None and not any(c.slotted for c in best.cascades):
        # The model's candidates hold rings: a plan with cascades by slot is no partition into
        # them, and may cut less than that bound, so it is not reported for such a plan.
        best = replace(best, solver=replace(best.solver, partition_bound=partition_bound))
    if joint_bound is not None and joint_bound <= best.metrics.noncompulsory_bytes:
        best = replace(best, solver=replace(best.solver, joint_bound=joint_bound))
    elif joint_bound is not None:
        # Valid over the joint model's plans (its candidates, the file order) only: the plan
        # kept lies outside them (another order) and moves less, so the bound says nothing
        # about it and is not reported (never a bound above a valid plan's traffic).
        log.info("tiling: the plan kept (%d B) beats every plan into the file order's candidates (>= %d B)",
                 best.metrics.noncompulsory_bytes, joint_bound)
    if part.stopped_by and not best.solver.stopped_by:
        # The wall clock, not the work budget, cut the choice of cascades: on a less loaded
        # machine the same command may choose others.
        best = replace(best, solver=replace(best.solver, stopped_by=part.stopped_by))
    return best


def _auto_start(problem: Problem, memo: Any, reorder: tuple[str, ...], stop_at: float | None = None) -> Plan | None:
    """``auto``'s tiled plan of ``problem`` with exact's ``reorder`` (the same orders; by
    default every order of ``stowage.solvers.tiling.orders.ORDERS``, as ``auto``'s own
    default), for ``exact`` below M_R to start from, its searches left in ``memo``; None
    when auto finds no tiled plan (exact then reports its own refusal)."""
    from stowage.solvers.registry import make_params

    try:
        return plan_tiled(problem, "auto", make_params("auto", {"reorder": reorder}), memo=memo, stop_at=stop_at)
    except CapacityError as exc:
        log.info("tiling: no tiled plan from auto to start from: %s", exc)
        return None


def _from_auto(plan: Plan) -> Plan:
    """``auto``'s tiled plan returned by ``exact``: its solver name, and ``found_by`` saying
    whose plan it is (``auto: tiling (min-peak order) + ...``)."""
    found_by = f"auto: {plan.solver.found_by or 'tiling'}"
    return replace(plan, solver=replace(plan.solver, name="exact", found_by=found_by))


def _order_label(problem: Problem, part: Partitioner) -> str:
    """``solver.cascade_order``: which order ``part`` cuts (``orders.order_label``)."""
    if part.file:
        return "file"
    from stowage.solvers.tiling.orders import order_label

    return order_label(problem, part)


#: Each macro solve's time limit, as a share of the compile's (at least ``MACRO_MIN`` seconds):
#: the macro graph has one step per cascade, and its solvers end on work budgets derived
#: from this limit.
MACRO_SHARE = 0.25
MACRO_MIN = 1.0


def macro_limit(time_limit: float) -> float:
    """The time limit of one macro solve in ``plan_tiled``: ``MACRO_SHARE`` of the compile's,
    at least ``MACRO_MIN`` -- a function of the limit, not of the time left."""
    return max(MACRO_MIN, MACRO_SHARE * time_limit)


def _zero_traffic(candidates: list[list[Segment]], cap: int) -> bool:
    """Whether the search found a partition moving nothing at its cuts whose every segment fits
    with its bystanders (``fewest_stripes``): nothing is left for the exact model to improve."""
    return any(all(not s.dram and s.peak <= cap for s in segs) for segs in candidates)


def _plan_partition(problem: Problem, part: Partitioner, segs: list[Segment], solver: str, params: Any,
                    stop_at: float | None = None, bound_work: int | None = None) -> Plan:
    programs: list[Program] = []
    roomy: list[Program] = []
    layouts: list[SlotLayout | None] = []
    for s in segs:
        if s.stripe_rows:
            i, j = part.order.index(s.ops[0]), part.order.index(s.ops[-1])
            p = part.program(i, j, s.stripe_rows, record=True, dram=s.dram, pace=s.pace_rows)
            # A segment the search fitted with its rows by slot: the layout it judged.
            lay = slotfit.layout(part, i, j, s.stripe_rows, s.pace_rows, s.dram) if s.slotted else None
            if s.slotted and lay is None:
                raise SolverError(f"tiling: cascade {s.ops[0]}..{s.ops[-1]} was fitted by slot, but its layout is lost")
            programs.append(p)
            layouts.append(lay)
            roomy.append(p if lay is not None else _unstaged(problem, part, s, p, i, j))
    slotted = layouts if any(x is not None for x in layouts) else None
    if any(a is not b for a, b in zip(roomy, programs)):
        # Rings instead of staging where the capacity leaves room (each row loaded once); the
        # staged programs when the macro graph does not fit so.
        try:
            return _plan_programs(problem, roomy, solver, params, slotted, stop_at, bound_work)
        except CapacityError:
            pass
    return _plan_programs(problem, programs, solver, params, slotted, stop_at, bound_work)


def _unstaged(problem: Problem, part: Partitioner, s: Segment, p: Program, i: int, j: int) -> Program:
    """``p`` with rings for its staged buffers (``stripe_program(stage=False)``: each row
    loaded once, not once per stripe reading it) when the segment still fits the capacity
    with them (its peak as the search judged it, plus the rings' extra rows), else ``p``.
    The search judges segments with staging, the least memory; this spends the room left."""
    if not p.staged or problem.capacity is None:
        return p
    alt = part.program(i, j, s.stripe_rows, record=True, dram=s.dram, pace=s.pace_rows, stage=False)
    align = problem.target.compute.alignment
    extra = sum(align_up(alt.streamed[b] * buffer_row_bytes(part.g, b), align)
                - align_up(p.streamed[b] * buffer_row_bytes(part.g, b), align) for b in p.staged)
    return alt if s.peak + extra <= problem.capacity else p


def _plan_programs(problem: Problem, programs: list[Program], solver: str, params: Any,
                   layouts: list[SlotLayout | None] | None = None, stop_at: float | None = None,
                   bound_work: int | None = None) -> Plan:
    """Plan the macro graph of ``programs``; ``layouts[k]``, when given, addresses cascade
    ``k``'s rows by slot (one row region, ``CascadeSpec.region``) instead of by ring.
    ``stop_at``: the caller's deadline, which also ends the tiled lower bound; ``bound_work``:
    the bound's evaluation budget (``runs.run_work`` of the compile's time limit, not of this
    macro solve's share of it)."""
    from stowage.solvers.registry import solve

    g = problem.graph
    lays = layouts or [None] * len(programs)
    specs = [CascadeSpec(p.ops, rings=p.rings, streamed=p.streamed, aliases=p.aliases, region=lay.region)
             if lay is not None else
             CascadeSpec(p.ops, rings=p.rings, streamed=p.streamed, aliases={**p.aliases, **p.shared})
             for p, lay in zip(programs, lays)]
    macro, ring_of = macro_graph(g, specs)
    align = problem.target.compute.alignment
    need = m_r_cached(macro, problem.weights_in_compute_level, align)
    if problem.capacity is not None and need > problem.capacity:
        raise CapacityError(f"capacity {problem.capacity} bytes is too small even when tiled: the largest cascade "
                            f"needs {need} bytes")
    log.info("tiling: %d cascades (%s)", len(programs),
             ", ".join(f"{len(p.ops)} steps x {p.stripe_rows} rows" for p in programs))
    macro_plan = solve(replace(problem, graph=macro), solver, params)
    return with_tiled_bound(problem, attach(g, macro_plan, programs, ring_of, problem.target, lays), stop_at,
                            bound_work)


def with_tiled_bound(problem: Problem, plan: Plan, stop_at: float | None = None, work: int | None = None) -> Plan:
    """``plan`` with the lower bound valid over every tiling (``stowage.solvers.tiling.bound``),
    and ``optimal`` when its traffic meets it.  ``stop_at``: the caller's deadline, which ends
    the bound's search when it comes first (a bound the clock cut is still valid, and
    flagged)."""
    traffic = plan.metrics.noncompulsory_bytes
    cap, weights = problem.capacity, problem.weights_in_compute_level
    # Each candidate partition's plan asks for the same bound (seconds on EfficientNet-B0).
    # The run bound's DP ends on its work budget, a function of the time limit
    # (``runs.run_work``); the end of the time limit is its safety net, and a bound the clock
    # cut says so in ``stopped_by``.
    deadline = time.monotonic() + max(0.0, problem.time_limit)
    if stop_at is not None:
        deadline = min(deadline, stop_at)
    work = run_work(problem.time_limit) if work is None else work
    tb = None if cap is None else graph_cached("tiled_lower_bound", problem.graph, (cap, weights, work),
                                               lambda: tiled_lower_bound(problem.graph, cap, weights, deadline,
                                                                         work=work))
    bound = 0 if tb is None else tb.bytes
    if tb is not None and tb.cut and not plan.solver.stopped_by:
        plan = replace(plan, solver=replace(plan.solver, stopped_by="time"))
    if bound > traffic:  # a defect of the bound: never report it (tests/test_tiling_bound.py)
        log.error("tiling: the tiled lower bound %d exceeds a valid plan's traffic %d; reporting the plan's",
                  bound, traffic)
        bound = traffic
    return replace(plan, solver=replace(plan.solver, lower_bound=bound,
                                        status="optimal" if traffic == bound else "feasible"))


def attach(graph: Graph, plan: Plan, programs: list[Program], ring_of: dict[tuple[int, int], int],
           target: Hierarchy, layouts: list[SlotLayout | None] | None = None) -> Plan:
    """The macro plan plus the cascades: stripe programs, streamed home placements, metrics.
    ``layouts[k]``: cascade ``k`` addresses its rows by slot (``CascadeTensor.slots``)."""
    pos = {st.index: s for s, st in enumerate(plan.steps)}
    placements = list(plan.placements)
    peaks = dict(plan.metrics.peak_bytes)
    compulsory = plan.metrics.compulsory_bytes
    noncompulsory = plan.metrics.noncompulsory_bytes
    seen_rows: dict[tuple[str, str], set[int]] = {}
    homes = {pb.id: pb.home for pb in plan.buffers}
    buffers = list(plan.buffers)
    nsteps = len(plan.steps)
    cascades = []
    for k, p in enumerate(programs):
        step = pos[p.ops[0]]
        tensors: list[CascadeTensor] = []
        home_of: dict[str, str] = {}
        lay = layouts[k] if layouts else None
        for b in p.whole_in + p.whole_out:
            tensors.append(CascadeTensor(graph.buffers[b].tensors[0], "whole", b))
        for b, rows in (p.rings.items() if lay is None else ()):
            # A ring sharing another's bytes (``program.share_rings``) is declared in the host's
            # buffer with its own rows.
            tensors.append(CascadeTensor(graph.buffers[b].tensors[0], "ring", ring_of[(k, p.shared.get(b, b))],
                                         rows, buffer_row_bytes(graph, b)))
        # A result written over its operand's ring: declared as a ring in that ring's buffer,
        # with its rows and row bytes (``stowage.solvers.tiling.alias``).
        for b, host in (p.aliases.items() if lay is None else ()):
            tensors.append(CascadeTensor(graph.buffers[b].tensors[0], "ring", ring_of[(k, p.shared.get(host, host))],
                                         p.rings[host], buffer_row_bytes(graph, host)))
        if lay is not None:
            # Rows by slot: every ring (and a result written over its operand's rows, in the
            # host's slots) in the cascade's row region, at the offsets the packing chose.
            for b, host in (*((b, b) for b in p.rings), *p.aliases.items()):
                tensors.append(CascadeTensor(graph.buffers[b].tensors[0], "ring", ring_of[(k, b)],
                                             lay.most.get(host, 0), buffer_row_bytes(graph, host),
                                             slots=_slots_of(graph, lay, host)))
        for b, rows in p.streamed.items():
            kind = graph.buffers[b].kind
            home: str | None
            if homes.get(b):
                home = homes[b]
            elif kind is TensorKind.INPUT:
                home = target.inputs_home
            elif graph.buffers[b].is_output:
                home = target.outputs_home
            else:
                # An intermediate crossing a boundary off-chip goes where a spill of it would.
                level = CostModel(target).store_level(graph.buffers[b].bytes)
                if level is None:
                    raise CapacityError(f"tensor '{graph.buffers[b].tensors[0]}' must cross a cascade boundary "
                                        f"off-chip, but no level of target '{target.name}' can hold it")
                home = level
            tname = graph.buffers[b].tensors[0]
            if home is None or home == target.compute_level:
                # One-level targets (or homes in the compute level) have nowhere to stream from.
                raise CapacityError(f"tensor '{tname}' would stream through its home, but target '{target.name}' "
                                    "keeps it in the compute level")
            home_of[tname] = home
            mode = "staged" if b in p.staged else "streamed"
            if lay is not None:
                tensors.append(CascadeTensor(tname, mode, ring_of[(k, b)], lay.most.get(b, 0),
                                             buffer_row_bytes(graph, b), home, slots=_slots_of(graph, lay, b)))
            else:
                tensors.append(CascadeTensor(tname, mode, ring_of[(k, b)], rows, buffer_row_bytes(graph, b), home))
            lv = plan.target.level(home)
            covered = [pl for pl in placements if pl.buffer == b and pl.level == home]
            if not covered:
                # The whole tensor lives in its home for the whole run (as an input's or an
                # output's home placement does in a whole-tensor plan).
                off = align_up(peaks.get(home, 0), lv.alignment if lv else 1)
                placements.append(Placement(b, home, off, 0, nsteps - 1))
                peaks[home] = max(peaks.get(home, 0), off + graph.buffers[b].bytes)
            buffers[b] = replace(buffers[b], home=home)
        # Rows of graph inputs loaded and of graph outputs stored are compulsory (each row
        # once); rows of intermediates moved through off-chip memory are not.
        for st in p.stripes:
            for x in st.transfers:
                b = graph.tensor_buffer[x.tensor]
                hops = target.hops(home_of[x.tensor], target.compute_level)
                nbytes = (x.hi - x.lo) * buffer_row_bytes(graph, b) * hops
                io = graph.buffers[b].kind is TensorKind.INPUT or graph.buffers[b].is_output
                seen = seen_rows.setdefault((x.direction, x.tensor), set())
                per_row = nbytes // max(1, x.hi - x.lo)
                for r in range(x.lo, x.hi):
                    if io and r not in seen:
                        seen.add(r)
                        compulsory += per_row
                    else:
                        noncompulsory += per_row
        stripes = tuple(
            replace(st, transfers=tuple(replace(x, level=home_of.get(x.tensor, x.level)) for x in st.transfers))
            if st.transfers else st for st in p.stripes)
        cascades.append(Cascade(step=step, ops=p.ops, end=p.end,
                                stripe_rows=p.stripe_rows, tensors=tuple(tensors), stripes=stripes))
    placements.sort(key=lambda pl: (pl.first, pl.level, pl.offset, pl.buffer))
    metrics = Metrics(compulsory, noncompulsory, peaks)
    # The macro solve's bound holds for this partition only; over every tiling the bound is
    # set by ``with_tiled_bound`` (``stowage.solvers.tiling.bound``): 0 until then.
    solver = replace(plan.solver, objective=noncompulsory, lower_bound=0,
                     status="optimal" if noncompulsory == 0 else "feasible",
                     found_by=f"tiling + {plan.solver.found_by or plan.solver.name}")
    return replace(plan, placements=tuple(placements), buffers=tuple(buffers), metrics=metrics,
                   cascades=tuple(cascades), solver=solver)


def _slots_of(graph: Graph, lay: SlotLayout, b: int) -> tuple[int, ...]:
    """Buffer ``b``'s row slots in ``lay`` (a buffer none of whose rows the walk held, such as
    a ring no stripe touches, gets none: ``-1`` per row)."""
    got = lay.offsets.get(b)
    if got is not None:
        return got
    from stowage.ir.tiling import rows as tensor_rows

    return (-1,) * tensor_rows(graph, graph.tensors[graph.buffers[b].tensors[0]])


__all__ = ["MACRO_MIN", "MACRO_SHARE", "attach", "choose_candidates", "macro_limit", "plan_tiled"]

