"""The exact joint model in CP-SAT: order + residency segments + spills/reloads + offsets.

Blocks: data (``solvers.exact.joint_data.JointData``), variables, constraints, objective,
solve, extract.  Fixes to the ILP of the COSMA paper (the joint scheduling and spilling model
this planner is measured against; ``exact`` in docs/solvers.md): one operator per step (the
positions are a permutation), base cases at the first step (a buffer's first segment starts
exactly at its producer's step; inputs and weights are loaded on demand), exact integer
arithmetic (offsets are integers in units of the alignment; no tolerances anywhere).

Instead of big-M disjunctions, every residency segment is an optional interval in time and a
fixed-size optional interval in address, and one ``NoOverlap2D`` forbids two segments sharing
a byte at a step; a ``Cumulative`` over the same time intervals is a redundant capacity cut
that gives the LP and the propagators a bound COSMA's relaxation lacks.

Objective: ``traffic * (capacity + 1) + peak`` -- non-compulsory byte-hops first, the peak
address as a tie-breaker (exact because ``peak <= capacity``).  Mode ``min-peak`` minimises
the peak alone with one segment per buffer (no spill): its optimum over all orders is M_P.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from ortools.sat.python import cp_model

from stowage.solvers.exact.joint_data import JointData, JointSolution, Segment, SolveResult, step_bounds, tighten

log = logging.getLogger(__name__)


@dataclass
class _SegmentVars:
    present: cp_model.IntVar | int
    start: cp_model.IntVar
    end: cp_model.IntVar
    offset: cp_model.LinearExprT
    slot: cp_model.IntVar
    time_interval: cp_model.IntervalVar
    addr_interval: cp_model.IntervalVar


#: Every CP-SAT solver ``configure`` has set up and that still exists: what
#: ``stop_all_searches`` stops.  Weak, so a finished solve's solver is not kept alive.
_LIVE_SOLVERS: weakref.WeakSet[cp_model.CpSolver] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def stop_all_searches() -> int:
    """Ask every CP-SAT search in progress to stop now (``CpSolver.stop_search``: the solve
    returns its best solution so far); returns how many solvers were asked.

    This is how Ctrl-C reaches a search.  CP-SAT's own SIGINT catching is off (see
    ``configure``), and Python runs signal handlers only in the main thread between bytecodes,
    which a thread blocked in ``solve`` never reaches: so ``stowage.cli`` watches for SIGINT on
    a wakeup pipe from another thread and calls this; the solve then returns and the pending
    ``KeyboardInterrupt`` is raised in the main thread.  Safe from any thread; a solver that is
    not solving ignores it."""
    with _LIVE_LOCK:
        solvers = list(_LIVE_SOLVERS)
    for solver in solvers:
        solver.stop_search()
    return len(solvers)


def configure(solver: cp_model.CpSolver, wall: float, work: float | None, workers: int, seed: int,
              deterministic: bool = True) -> None:
    """Set the limits and the search of one CP-SAT run, the same way for every model.

    ``work`` is CP-SAT's deterministic time (``max_deterministic_time``, in CP-SAT's own
    work units, calibrated to roughly seconds): a run that stops on it has done the same
    search on a fast or a loaded machine, so the same seed and worker count give the same
    answer.  ``wall`` (seconds) is a safety stop only; when it ends a run first, the answer
    can depend on the machine's load.  With several workers the subsolvers take turns in a
    fixed schedule (``interleave_search``) so that the result does not depend on which
    thread finishes first.

    CP-SAT's SIGINT catching is off: with it on, OR-Tools swallows Ctrl-C and then restores
    ``SIG_DFL`` instead of Python's handler, so the interrupt never becomes
    ``KeyboardInterrupt`` and a second Ctrl-C kills the process raw.  The solver is registered
    for ``stop_all_searches``, which is how Ctrl-C stops it instead."""
    p = solver.parameters
    p.catch_sigint_signal = False
    with _LIVE_LOCK:
        _LIVE_SOLVERS.add(solver)
    p.max_time_in_seconds = max(0.01, float(wall))
    if work is not None:
        p.max_deterministic_time = max(0.01, float(work))
    p.num_workers = max(1, int(workers))
    p.random_seed = int(seed)
    if deterministic and workers > 1:
        p.interleave_search = True


class _Progress(cp_model.CpSolverSolutionCallback):
    """Reports best objective, bound and elapsed time on the status line."""

    def __init__(self, label: str, on_progress: Callable[[str], None] | None) -> None:
        super().__init__()
        self.label = label
        self.on_progress = on_progress
        self.t0 = time.perf_counter()
        self.solutions = 0

    def on_solution_callback(self) -> None:
        self.solutions += 1
        if self.on_progress is None:
            return
        self.on_progress(f"{self.label}: best {int(self.objective_value)} bound "
                         f"{int(self.best_objective_bound)} after {time.perf_counter() - self.t0:.1f}s")


class JointCpModel:
    """Builds the CP-SAT model of a ``JointData``; ``solve`` runs it and extracts a solution."""

    def __init__(self, data: JointData, addresses: bool = True) -> None:
        """``addresses=False`` builds the *relaxation without addresses*: no offsets, no
        ``NoOverlap2D``, only the cumulative capacity and the objective traffic.  Every plan
        is a solution of it, so its optimum (or CP-SAT's proven bound on it) bounds the
        traffic of the full problem from below, and it is far smaller and easier to prove."""
        self.data = data
        self.addresses = addresses
        self.model = cp_model.CpModel()
        self.weight = data.capacity + 1          # lexicographic weight of traffic over peak
        self._variables()
        self._constraints()
        self._objective()

    # -- variables ---------------------------------------------------------------------
    def _variables(self) -> None:
        d, m = self.data, self.model
        bounds = step_bounds(d)
        self.step_bounds = bounds
        # pos_by_op: the step at which each operator runs.
        self.pos_by_op = {op: m.new_int_var(lo, hi, f"pos[{op}]") for op, (lo, hi) in bounds.items()}
        self.segments_by_buffer: dict[int, list[_SegmentVars]] = {}
        # covers_by_buffer_user[b][u][k]: segment k of buffer b is resident when u runs.
        self.covers_by_buffer_user: dict[int, dict[int, list]] = {}
        for mb in d.buffers:
            lo = min(bounds[u][0] for u in mb.users)
            hi = max(bounds[u][1] for u in mb.users)
            max_off = d.capacity - mb.size
            segs = []
            for k in range(mb.max_segments):
                present = 1 if k == 0 else m.new_bool_var(f"present[{mb.id},{k}]")
                start = m.new_int_var(lo, hi, f"start[{mb.id},{k}]")
                end = m.new_int_var(lo, hi, f"end[{mb.id},{k}]")
                length = m.new_int_var(1, hi - lo + 1, f"length[{mb.id},{k}]")
                # Offsets in units of the alignment: exact and a small domain.
                slot = m.new_int_var(0, max_off // d.alignment if self.addresses else 0, f"slot[{mb.id},{k}]")
                offset = slot * d.alignment if d.alignment > 1 else slot
                if k == 0:
                    t_iv = m.new_interval_var(start, length, end + 1, f"time[{mb.id},{k}]")
                    a_iv = m.new_fixed_size_interval_var(offset, mb.size, f"addr[{mb.id},{k}]")
                else:
                    t_iv = m.new_optional_interval_var(start, length, end + 1, present, f"time[{mb.id},{k}]")
                    a_iv = m.new_optional_fixed_size_interval_var(offset, mb.size, present, f"addr[{mb.id},{k}]")
                segs.append(_SegmentVars(present, start, end, offset, slot, t_iv, a_iv))
            self.segments_by_buffer[mb.id] = segs
            if mb.max_segments > 1:
                self.covers_by_buffer_user[mb.id] = {
                    u: [m.new_bool_var(f"covers[{mb.id},{u},{k}]") for k in range(mb.max_segments)]
                    for u in mb.users
                }
        # scratch_offset_by_op: working memory of opaque operators, one step long.
        self.scratch_by_op = {}
        for op, extra in d.scratch:
            slot = m.new_int_var(0, (d.capacity - extra) // d.alignment if self.addresses else 0,
                               f"scratch_slot[{op}]")
            off = slot * d.alignment if d.alignment > 1 else slot
            pos = self.pos_by_op[op]
            self.scratch_by_op[op] = (off, m.new_interval_var(pos, 1, pos + 1, f"scratch_time[{op}]"),
                                      m.new_fixed_size_interval_var(off, extra, f"scratch_addr[{op}]"), slot)
        self.peak = m.new_int_var(0, d.capacity, "peak")

    # -- constraints ------------------------------------------------------------------
    def _constraints(self) -> None:
        d, m = self.data, self.model
        pos = self.pos_by_op
        # Schedule: a permutation (one operator per step) respecting dependencies.
        if d.order is None:
            m.add_all_different(list(pos.values()))
            for op, preds in d.preds:
                for p in preds:
                    m.add(pos[p] < pos[op])
        for mb in d.buffers:
            segs = self.segments_by_buffer[mb.id]
            # Base case: an activation appears when its producer runs.
            if mb.producer is not None:
                m.add(segs[0].start == pos[mb.producer])
            # Segments are ordered in time and used in order (symmetry breaking).
            for a, b in itertools.pairwise(segs):
                assert not isinstance(b.present, int)     # only segment 0 is present for sure
                m.add_implication(b.present, a.present)
                m.add(b.start >= a.end + 1).only_enforce_if(b.present)
                # An absent segment is pinned (no symmetric copies of it).
                m.add(b.start == b.end).only_enforce_if(b.present.negated())
                m.add(b.start == segs[0].start).only_enforce_if(b.present.negated())
                m.add(b.offset == 0).only_enforce_if(b.present.negated())
            for s in segs if self.addresses else ():
                top = m.add(self.peak >= s.offset + mb.size)
                if not isinstance(s.present, int):
                    top.only_enforce_if(s.present)
            # Residency: every operator touching the buffer finds it in some segment.
            if mb.max_segments == 1:
                for u in mb.users:
                    m.add(segs[0].start <= pos[u])
                    m.add(segs[0].end >= pos[u])
                continue
            covers = self.covers_by_buffer_user[mb.id]
            for u, cov in covers.items():
                m.add_exactly_one(cov)
                for k, c in enumerate(cov):
                    if k > 0:
                        m.add_implication(c, segs[k].present)
                    m.add(segs[k].start <= pos[u]).only_enforce_if(c)
                    m.add(segs[k].end >= pos[u]).only_enforce_if(c)
            if mb.producer is not None:
                m.add(covers[mb.producer][0] == 1)
            for k in range(1, mb.max_segments):
                # A present segment serves some operator (else it is pure cost).
                m.add_bool_or([covers[u][k] for u in mb.users]).only_enforce_if(segs[k].present)
            if d.order is not None:
                # Fixed order: users in time order take segments 0, 0/1, ... (no gaps).
                step = {op: s for s, op in enumerate(d.order)}
                ordered = sorted(mb.users, key=lambda u: step[u])
                idx = [sum(k * c for k, c in enumerate(covers[u])) for u in ordered]
                m.add(idx[0] == 0)
                for a, b in itertools.pairwise(idx):
                    m.add(b - a >= 0)
                    m.add(b - a <= 1)
        # Addresses: no two resident segments share a byte at a step.
        x_intervals, y_intervals, demands = [], [], []
        for mb in d.buffers:
            if mb.size == 0:
                continue
            for s in self.segments_by_buffer[mb.id]:
                x_intervals.append(s.time_interval)
                y_intervals.append(s.addr_interval)
                demands.append(mb.size)
        for op, (off, t_iv, a_iv, _slot) in self.scratch_by_op.items():
            extra = dict(d.scratch)[op]
            x_intervals.append(t_iv)
            y_intervals.append(a_iv)
            demands.append(extra)
            if self.addresses:
                m.add(self.peak >= off + extra)
        if x_intervals:
            if self.addresses:
                m.add_no_overlap_2d(x_intervals, y_intervals)
            # Redundant: bytes resident at any step never exceed the capacity.
            m.add_cumulative(x_intervals, demands, d.capacity)

    # -- objective --------------------------------------------------------------------
    def _objective(self) -> None:
        d = self.data
        terms = []
        for mb in d.buffers:
            segs = self.segments_by_buffer[mb.id]
            for k, s in enumerate(segs[1:], start=1):
                cost = mb.reload_cost + (mb.store_cost if k == 1 else 0)
                if cost:
                    terms.append(cost * s.present)
        self.traffic = sum(terms) if terms else 0
        if d.mode == "min-peak":
            self.model.minimize(self.peak)
        elif not self.addresses:
            self.weight = 1
            self.model.minimize(self.traffic)
        else:
            self.model.minimize(self.traffic * self.weight + self.peak)

    # -- warm start -------------------------------------------------------------------
    def add_hint(self, sol: JointSolution) -> None:
        """Hint every decision variable from a feasible solution (checked by the caller)."""
        m = self.model
        step = {op: s for s, op in enumerate(sol.order)}
        for op, v in self.pos_by_op.items():
            m.add_hint(v, step[op])
        by_buf: dict[int, list[Segment]] = {}
        for seg in sol.segments:
            by_buf.setdefault(seg.buffer, []).append(seg)
        peak = 0
        for mb in self.data.buffers:
            got = sorted(by_buf.get(mb.id, []), key=lambda s: s.start)
            segs = self.segments_by_buffer[mb.id]
            for k, sv in enumerate(segs):
                if k < len(got):
                    g = got[k]
                    if not isinstance(sv.present, int):  # k > 0: segment 0 is present for sure
                        m.add_hint(sv.present, 1)
                    m.add_hint(sv.start, g.start)
                    m.add_hint(sv.end, g.end)
                    m.add_hint(sv.slot, g.offset // self.data.alignment if self.addresses else 0)
                    peak = max(peak, g.offset + mb.size)
                else:
                    assert not isinstance(sv.present, int)   # a solution has a segment 0 of every buffer
                    m.add_hint(sv.present, 0)
                    m.add_hint(sv.start, got[0].start if got else 0)
                    m.add_hint(sv.end, got[0].start if got else 0)
                    m.add_hint(sv.slot, 0)
            if mb.id in self.covers_by_buffer_user:
                for u, cov in self.covers_by_buffer_user[mb.id].items():
                    k_u = next((k for k, g in enumerate(got) if g.start <= step[u] <= g.end), 0)
                    for k, c in enumerate(cov):
                        m.add_hint(c, int(k == k_u))
        for op, off in sol.scratch_offsets:
            if op in self.scratch_by_op:
                m.add_hint(self.scratch_by_op[op][3], off // self.data.alignment if self.addresses else 0)
                peak = max(peak, off + dict(self.data.scratch)[op])
        m.add_hint(self.peak, peak)

    # -- solve and extract -------------------------------------------------------------
    def solve(self, time_limit: float, workers: int, seed: int, deterministic: bool = True,
              label: str = "exact", work: float | None = None,
              on_progress: Callable[[str], None] | None = None) -> SolveResult:
        """``time_limit``: wall-clock seconds (a safety stop when ``work`` is given);
        ``work``: deterministic time (see ``configure``); ``on_progress`` gets a line per
        improving solution (``Problem.on_progress``)."""
        solver = cp_model.CpSolver()
        configure(solver, time_limit, work, workers, seed, deterministic)
        t0 = time.perf_counter()
        cb = _Progress(label, on_progress)
        status = solver.solve(self.model, cb)
        seconds = time.perf_counter() - t0
        name = {cp_model.OPTIMAL: "optimal", cp_model.FEASIBLE: "feasible",
                cp_model.INFEASIBLE: "infeasible"}.get(status, "unknown")
        log.info("cp-sat %s: %s obj=%s bound=%s in %.2fs (%s)", self.data.mode, name,
                 solver.objective_value if name in ("optimal", "feasible") else None,
                 solver.best_objective_bound, seconds, solver.response_stats().splitlines()[0])
        if name not in ("optimal", "feasible"):
            return SolveResult(None, name, None, None, seconds, "cp-sat")
        sol = self._extract(solver)
        bound = math.ceil(solver.best_objective_bound - 1e-6) if status != cp_model.OPTIMAL else None
        if self.data.mode == "min-peak":
            value = int(solver.value(self.peak))
            bound = value if status == cp_model.OPTIMAL else max(0, bound or 0)
        else:
            value = int(solver.value(self.traffic)) if not isinstance(self.traffic, int) else 0
            bound = value if status == cp_model.OPTIMAL else max(0, (bound or 0) // self.weight)
        return SolveResult(sol, name, value, bound, seconds, "cp-sat")

    def _extract(self, solver: cp_model.CpSolver) -> JointSolution:
        d = self.data
        order = tuple(sorted(d.ops, key=lambda op: solver.value(self.pos_by_op[op])))
        segs: list[Segment] = []
        for mb in d.buffers:
            for s in self.segments_by_buffer[mb.id]:
                if isinstance(s.present, int) or solver.boolean_value(s.present):
                    segs.append(Segment(mb.id, solver.value(s.start), solver.value(s.end), solver.value(s.offset)))
        scratch = tuple((op, solver.value(v[0])) for op, v in self.scratch_by_op.items())
        return tighten(d, JointSolution(order, tuple(segs), scratch))
