"""``exact`` with ``objective = latency``: residency chosen for time, for a fixed operator order.

``latency_model.best_schedule`` times a plan whose copies are fixed.  This model keeps only
the order fixed and lets CP-SAT choose *which* buffers leave the compute level between which
uses -- the residency segments of the traffic joint model (``joint_data``) -- together with
when every step and copy runs, so it can spill a buffer whose store overlaps a long step
instead of one whose reload stalls a short one, and prefetch a reload as early as memory
allows.

Variables, for the order's ``n`` steps and each buffer with users at steps ``t_1 < ... < t_m``
(producer first for an activation):

* **Residency.**  ``reload_i`` (``i >= 2``, when the buffer can be reloaded): a new segment
  starts at user ``i``.  Segment ``i`` covers users ``i..j`` (``run_end_i = t_j``, ``j`` the
  last user before the next reload) at its own offset; an activation with a reload is stored
  once (``spilled``).  Costs: the joint model's byte-hops (``ModelBuffer``).
* **Memory in steps.**  Segment ``i`` occupies its bytes from step ``a_i`` to step ``r_i``:
  ``a_i <= t_i`` for a segment copied in (an input's or weight's load, a reload: the copy
  runs while the steps ``a_i .. t_i - 1`` compute, a prefetch), ``a_1 = t_1`` for an
  activation's first segment; ``r_i >= run_end_i`` for a segment with a copy out (a spill's
  store, a graph output's store: holding the bytes longer lets the store finish without
  stalling a step), else ``r_i = run_end_i``.  ``NoOverlap2D`` over (step occupancy x address)
  and a redundant ``Cumulative`` of the capacity.
* **Time** (an integer grid, ``GRID`` units in the reference makespan, durations rounded
  up): step ``s`` runs ``[S_s, E_s = S_s + busy_s)``, steps in order.  A *gate* ``G_a`` per
  step boundary (``G_0 = 0``, non-decreasing, ``G_a >= E_{a-1}``) is when every occupancy
  ending at step ``a - 1`` has been released: its copy out ends by ``G_{r_i + 1}``; every
  occupancy starting at step ``a`` waits for it: a copy in starts at ``>= G_{a_i}``, a step
  starts at ``>= G_s``.  A copy in ends by ``S_{t_i}``; a store starts after its producer
  ends; a reload starts after its store ends (an output's reload after its compulsory store).
* **Channels.**  Copies are optional intervals (present iff their segment or spill is);
  one ``NoOverlap`` with one DMA channel, else one optional interval per channel with a
  channel choice and ``NoOverlap`` per channel (a ``Cumulative`` of ``dma_channels`` as a
  redundant cut).
* **Objective.**  The makespan first; then, with the makespan fixed at the best found, the
  traffic (``phase 2``).

Why it is sound: the gate only delays things (it waits for *every* release at a boundary,
not only for the bytes that overlap), so a solution of this model, lowered to a plan
(``lower_solution``) and replayed by the time model with the model's DMA queues, is no
slower than the model's makespan except where the assembler changes something the model
does not see (an off-chip offset reused).  The plan is therefore timed again by
``best_schedule`` -- the time model decides, this model proposes -- and it is one candidate
of ``solve_latency`` beside the plans whose copies are fixed, so the latency objective is
never slower than before.  Steps' busy times are the reference plan's; where they depend on
the free room above the plan (the block model's weight streams), the model's addresses stay
below the reference plan's top, so no step gets slower.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ortools.sat.python import cp_model

from stowage.errors import StowageError
from stowage.plan import Plan
from stowage.solvers.exact.joint_data import (
    JointData,
    JointSolution,
    ModelBuffer,
    Segment,
    check_solution,
    joint_data,
    solution_from_plan,
    traffic_of,
)
from stowage.solvers.exact.joint_model import configure
from stowage.solvers.exact.lower import lower_solution
from stowage.solvers.exact.warm_start import plan_order
from stowage.solvers.problem import Problem
from stowage.solvers.timing import estimate, step_busy_seconds, transfer_seconds

log = logging.getLogger(__name__)

#: Grid units in the reference plan's makespan.
GRID = 100_000

#: How many steps before its use a copy in may take its bytes (a prefetch window), and how
#: many steps past its last use a segment with a copy out may hold them: small windows keep
#: the step-indexed gates (``AddElement``) small.
PREFETCH = 8
HOLD = 4

#: Share of the work budget for phase 1 (the makespan); the rest minimises traffic at it.
PHASE1_SHARE = 0.7


@dataclass(frozen=True)
class ResidencyPlan:
    """What the model proposes: the lowered ``plan``, the DMA ``queues`` of the model's
    timeline (plan transfer indices per channel), the model's makespan in seconds (on its
    grid, an upper bound of the plan's replay when nothing outside the model changed),
    whether CP-SAT proved it optimal for the order (on its gated model) and whether the wall
    clock cut a phase."""

    plan: Plan
    queues: tuple[tuple[int, ...], ...]
    model_makespan: float
    proven: bool
    hit_wall: bool


@dataclass
class _Seg:
    """One possible segment of a buffer (starting at user ``i``) and its model variables."""

    buffer: ModelBuffer
    i: int
    t: int                      # the step of the user it starts at
    present: Any                # literal or 1
    run_end: Any                # var or int
    slot: Any
    a: Any                      # acquire step (var or int)
    r: Any                      # release step (var or int)
    a_lits: Any = None          # acquire step -> literal (a segment copied in)
    r_lits: Any = None          # (literal, user j, extension e, release step) (a segment with a copy out)
    length: Any = None
    copy_in: Any = None         # interval of the load / reload (None: none)
    copy_in_start: Any = None
    copy_in_dur: int = 0
    key_in: tuple[int, int, str] | None = None    # (buffer, step, phase) of the plan transfer


@dataclass
class _Copy:
    """One copy the model may schedule: interval, presence, start, duration, the transfer it
    becomes in the lowered plan (``key``: buffer, step or None, phase)."""

    interval: Any
    present: Any
    start: Any
    dur: int
    key: tuple[int, Any, str]
    channels: list[Any]


class LatencyResidencyModel:
    """The CP-SAT model of the module docstring for ``data`` (fixed order) and one reference
    plan of that order (its busy times, its top address, its residency as the hint)."""

    def __init__(self, problem: Problem, data: JointData, reference: Plan, hint: JointSolution) -> None:
        assert data.order is not None
        self.problem, self.data, self.reference = problem, data, reference
        target, graph = problem.target, problem.graph
        engine = target.compute_engine
        assert engine is not None
        busy = step_busy_seconds(graph, reference, target)
        warm = estimate(graph, reference, target)
        assert busy is not None and warm is not None and warm.makespan > 0
        self.unit = warm.makespan / GRID
        self.n = n = len(data.order)
        self.step_of = {op: s for s, op in enumerate(data.order)}
        self.busy = [max(0, math.ceil(b / self.unit)) for b, _, _, _ in busy]
        self.channels = engine.dma_channels
        by_level = {lv.name: lv for lv in target.levels}

        def dur(nbytes: int, src: str, dst: str) -> int:
            d = transfer_seconds(nbytes, by_level[src], by_level[dst], engine)
            assert d is not None, "estimate timed the reference plan, so every bandwidth is known"
            return max(1, math.ceil(d / self.unit))

        # Addresses stay below the reference plan's top when the block model's weight streams
        # use the room above it (a step is never slower than in the reference plan).
        top = data.capacity
        if engine.blocks is not None and not problem.weights_in_compute_level:
            top = max((p.offset + b.bytes for p in reference.placements for b in reference.buffers
                       if p.buffer == b.id and p.level == data.compute_level), default=0)
            top = min(data.capacity, max(top, 1))
        self.top = top
        m = self.model = cp_model.CpModel()
        # A horizon from the hint's own timeline in this model (``_hint_schedule``), so it is feasible.
        self.segs: dict[int, list[_Seg]] = {}
        self.copies: list[_Copy] = []
        hint_sol = hint
        hint_times = self._hint_schedule(hint_sol, dur)
        horizon = hint_times["makespan"]
        self.horizon = horizon
        S = [m.new_int_var(0, horizon, f"S{s}") for s in range(n)]
        E = [m.new_int_var(0, horizon, f"E{s}") for s in range(n)]
        G = [m.new_constant(0)] + [m.new_int_var(0, horizon, f"G{a}") for a in range(1, n + 1)]
        self.S, self.E, self.G = S, E, G
        makespan = m.new_int_var(0, horizon, "makespan")
        self.makespan = makespan
        for s in range(n):
            m.add(E[s] == S[s] + self.busy[s])
            m.add(S[s] >= G[s])
            if s:
                m.add(S[s] >= E[s - 1])
            m.add(G[s + 1] >= G[s])
            m.add(G[s + 1] >= E[s])
        m.add(makespan >= G[n])
        align = data.alignment
        x_iv, y_iv, demand = [], [], []
        traffic_terms: list[Any] = []
        for mb in data.buffers:
            t = sorted({self.step_of[u] for u in mb.users})
            k = len(t) if (mb.reload_src is not None and mb.max_segments > 1) else 1
            reload: list[Any] = [None] + [m.new_bool_var(f"reload[{mb.id},{i}]") for i in range(1, k)]
            segs: list[_Seg] = []
            for i in range(k):
                # run_end_i: t_i when user i + 1 reloads (or i is the last), else run_end_{i+1}.
                if k == 1:
                    run_end: Any = t[-1]
                elif i == k - 1:
                    run_end = t[i]
                else:
                    run_end = m.new_int_var_from_domain(cp_model.Domain.from_values(t[i:]), f"run[{mb.id},{i}]")
                segs.append(_Seg(mb, i, t[i], 1 if i == 0 else reload[i], run_end, None, None, None))
            for i in range(k - 1):
                nxt = segs[i + 1].run_end
                m.add(segs[i].run_end == t[i]).only_enforce_if(reload[i + 1])
                m.add(segs[i].run_end == nxt).only_enforce_if(reload[i + 1].negated())
            spilled: Any = 0
            if k > 1 and mb.store_dst is not None:
                spilled = m.new_bool_var(f"spilled[{mb.id}]")
                m.add_max_equality(spilled, reload[1:])
            is_output = self.problem.graph.buffers[mb.id].is_output and mb.producer is not None
            max_slot = max(0, (top - mb.size) // align)
            for seg in segs:
                seg.slot = m.new_int_var(0, max_slot, f"slot[{mb.id},{seg.i}]")
                present = seg.present
                if not isinstance(present, int):
                    m.add(seg.slot == 0).only_enforce_if(present.negated())
                copy_src = (mb.load_src if seg.i == 0 else mb.reload_src)
                has_in = copy_src is not None and copy_src != data.compute_level
                if seg.i == 0 and mb.producer is not None:
                    has_in = False                 # an activation appears where its producer writes it
                if has_in:
                    lo = max(0 if seg.i == 0 else t[seg.i - 1] + 1, seg.t - PREFETCH)
                    seg.a = m.new_int_var(lo, seg.t, f"a[{mb.id},{seg.i}]")
                    # The acquire step by value literals: presolve handles these far better
                    # than an AddElement over variables.
                    seg.a_lits = {v: m.new_bool_var(f"a[{mb.id},{seg.i}]={v}") for v in range(lo, seg.t + 1)}
                    m.add_exactly_one(seg.a_lits.values())
                    m.add(seg.a == sum(v * lit for v, lit in seg.a_lits.items()))
                    if not isinstance(present, int):
                        m.add_implication(present.negated(), seg.a_lits[seg.t])
                    d = dur(mb.size, copy_src, data.compute_level)       # type: ignore[arg-type]
                    start = m.new_int_var(0, horizon, f"in[{mb.id},{seg.i}]")
                    for v, lit in seg.a_lits.items():
                        if v > 0:
                            ct = m.add(start >= G[v]).only_enforce_if(lit)
                            if not isinstance(present, int):
                                ct.only_enforce_if(present)
                    self._enforce(m.add(start + d <= S[seg.t]), present)
                    iv = self._interval(start, d, present, f"cin[{mb.id},{seg.i}]")
                    self.copies.append(_Copy(iv, present, start, d, (mb.id, seg.t, "before"), []))
                    seg.copy_in, seg.copy_in_start, seg.copy_in_dur = iv, start, d
                else:
                    seg.a = seg.t
                out_kind = None
                if seg.i == 0 and is_output:
                    out_kind = "output"
                elif seg.i == 0 and not isinstance(spilled, int):
                    out_kind = "spill"
                if out_kind is not None:
                    # r = run_end + e (e <= HOLD), by value literals over (user j ending the
                    # run, e): each fixes r and the gate G[r + 1] the copy out must meet.
                    js = [t.index(seg.run_end)] if isinstance(seg.run_end, int) else range(len(t))
                    es = range(HOLD + 1)
                    seg.r_lits = [(m.new_bool_var(f"r[{mb.id}]={j},{e}"), j, e, min(n - 1, t[j] + e))
                                  for j in js for e in es if e == 0 or t[j] + e <= n - 1]
                    m.add_exactly_one(lit for lit, *_ in seg.r_lits)
                    if not isinstance(seg.run_end, int):
                        m.add(seg.run_end == sum(t[j] * lit for lit, j, _, _ in seg.r_lits))
                    seg.r = m.new_int_var(seg.t, n - 1, f"r[{mb.id},{seg.i}]")
                    m.add(seg.r == sum(r * lit for lit, _, _, r in seg.r_lits))
                    if out_kind == "spill":
                        for lit, _, e, _ in seg.r_lits:
                            if e:
                                m.add_implication(lit, spilled)
                else:
                    seg.r = seg.run_end
                if mb.size > 0:
                    length = m.new_int_var(1, n, f"len[{mb.id},{seg.i}]")
                    seg.length = length
                    if isinstance(present, int):
                        tiv = m.new_interval_var(seg.a, length, seg.r + 1, f"occ[{mb.id},{seg.i}]")
                        aiv = m.new_fixed_size_interval_var(seg.slot * align, mb.size, f"adr[{mb.id},{seg.i}]")
                    else:
                        tiv = m.new_optional_interval_var(seg.a, length, seg.r + 1, present, f"occ[{mb.id},{seg.i}]")
                        aiv = m.new_optional_fixed_size_interval_var(seg.slot * align, mb.size, present,
                                                                     f"adr[{mb.id},{seg.i}]")
                    x_iv.append(tiv)
                    y_iv.append(aiv)
                    demand.append(mb.size)
                if seg.i > 0 and mb.reload_cost:
                    traffic_terms.append(mb.reload_cost * present)
            # Copies out of the first segment: an output's store (always), a spill's store.
            first = segs[0]
            store_start = None
            if is_output or not isinstance(spilled, int):
                dst = self.problem.target.outputs_home if is_output else mb.store_dst
                assert dst is not None
                d = dur(mb.size, data.compute_level, dst)
                store_start = m.new_int_var(0, horizon, f"st[{mb.id}]")
                present = 1 if is_output else spilled
                self._enforce(m.add(store_start >= E[first.t]), present)
                for lit, _, _, r in first.r_lits:
                    ct = m.add(store_start + d <= G[r + 1]).only_enforce_if(lit)
                    if not isinstance(present, int):
                        ct.only_enforce_if(present)
                iv = self._interval(store_start, d, present, f"cst[{mb.id}]")
                self.copies.append(_Copy(iv, present, store_start, d, (mb.id, None, "after"), []))
                if not isinstance(spilled, int) and mb.store_cost:
                    traffic_terms.append(mb.store_cost * spilled)
                for seg in segs[1:]:
                    if seg.copy_in_start is not None:
                        self._enforce(m.add(seg.copy_in_start >= store_start + d), seg.present)
            self.segs[mb.id] = segs
        for op, extra in data.scratch:
            s = self.step_of[op]
            slot = m.new_int_var(0, max(0, (top - extra) // align), f"scratch[{op}]")
            x_iv.append(m.new_fixed_size_interval_var(s, 1, f"sct[{op}]"))
            y_iv.append(m.new_fixed_size_interval_var(slot * align, extra, f"sca[{op}]"))
            demand.append(extra)
            self.scratch = getattr(self, "scratch", {})
            self.scratch[op] = slot
        if not hasattr(self, "scratch"):
            self.scratch = {}
        if x_iv:
            m.add_no_overlap_2d(x_iv, y_iv)
            m.add_cumulative(x_iv, demand, top)
        self._channels()
        for c in self.copies:
            self._enforce(m.add(makespan >= c.start + c.dur), c.present)
        self.traffic = sum(traffic_terms) if traffic_terms else 0
        self._hint(hint_sol, hint_times)

    @staticmethod
    def _enforce(ct: Any, lit: Any) -> None:
        if not isinstance(lit, int):
            ct.only_enforce_if(lit)

    def _interval(self, start: Any, d: int, present: Any, name: str) -> Any:
        if isinstance(present, int):
            return self.model.new_fixed_size_interval_var(start, d, name)
        return self.model.new_optional_fixed_size_interval_var(start, d, present, name)

    def _channels(self) -> None:
        m = self.model
        if not self.copies:
            return
        if self.channels == 1:
            m.add_no_overlap([c.interval for c in self.copies])
            return
        per: list[list[Any]] = [[] for _ in range(self.channels)]
        for j, c in enumerate(self.copies):
            lits = [m.new_bool_var(f"ch[{j},{k}]") for k in range(self.channels)]
            if isinstance(c.present, int):
                m.add_exactly_one(lits)
            else:
                m.add(sum(lits) == c.present)
            for k, lit in enumerate(lits):
                per[k].append(m.new_optional_fixed_size_interval_var(c.start, c.dur, lit, f"c{j}_{k}"))
            c.channels = lits
        for ivs in per:
            m.add_no_overlap(ivs)
        m.add_cumulative([c.interval for c in self.copies], [1] * len(self.copies), self.channels)

    # -- the hint: the reference plan's residency, timed by this model's rules -------------
    def _hint_segments(self, sol: JointSolution) -> dict[int, list[tuple[int, int, int]]]:
        """Per buffer, ``(user index, run end, offset)`` of the hint's segments."""
        out: dict[int, list[tuple[int, int, int]]] = {}
        for g in sorted(sol.segments, key=lambda g: (g.buffer, g.start)):
            mb = next(b for b in self.data.buffers if b.id == g.buffer)
            t = sorted({self.step_of[u] for u in mb.users})
            out.setdefault(g.buffer, []).append((t.index(g.start), g.end, g.offset))
        return out

    def _hint_schedule(self, sol: JointSolution, dur: Any) -> dict[str, Any]:
        """A feasible timeline of the hint's residency in this model: acquire each copied-in
        segment as early as the bytes it shares allow, release at the run's end, then list
        scheduling in step order (copies in before their step, stores after their producer)."""
        data, n = self.data, self.n
        by_buf = self._hint_segments(sol)
        size = {mb.id: mb.size for mb in data.buffers}
        mbs = {mb.id: mb for mb in data.buffers}
        # Occupancies in order of first step; acquire after the last overlapping release.
        occ: list[tuple[int, int, int, int, int, int]] = []    # buffer, i, t, run_end, lo_addr, hi_addr
        for bid, segs in by_buf.items():
            t = sorted({self.step_of[u] for u in mbs[bid].users})
            for i, end, off in segs:
                occ.append((bid, i, t[i], end, off, off + size[bid]))
        occ.sort(key=lambda o: (o[2], o[0], o[1]))
        acquire: dict[tuple[int, int], int] = {}
        extra = dict(data.scratch)
        placed: list[tuple[int, int, int, int]] = [      # a, r, lo, hi (scratch: its one step)
            (self.step_of[op], self.step_of[op], off, off + extra[op]) for op, off in sol.scratch_offsets]
        for bid, i, ti, end, lo, hi in occ:
            mb = mbs[bid]
            src = mb.load_src if i == 0 else mb.reload_src
            copied = src is not None and src != data.compute_level and not (i == 0 and mb.producer is not None)
            a = ti
            if copied:
                t = sorted({self.step_of[u] for u in mb.users})
                floor = max(0 if i == 0 else t[i - 1] + 1, ti - PREFETCH)
                a = max([floor, *(r + 1 for (a2, r, l2, h2) in placed if l2 < hi and lo < h2 and r < ti)])
                a = min(a, ti)
            acquire[(bid, i)] = a
            if size[bid] > 0:
                placed.append((a, end, lo, hi))
        # List scheduling.
        chan = [0] * self.channels
        S = [0] * n
        E = [0] * n
        G = [0] * (n + 1)
        starts: dict[tuple[int, Any, str], tuple[int, int]] = {}   # copy key -> (start, channel)
        store_end: dict[int, int] = {}
        release_at: dict[int, list[int]] = {}        # step r -> store ends that gate r + 1
        ins_at: dict[int, list[tuple[int, int, int]]] = {}   # acquire step -> (buffer, i, t)
        for (bid, i), a in acquire.items():
            mb = mbs[bid]
            src = mb.load_src if i == 0 else mb.reload_src
            if src is not None and src != data.compute_level and not (i == 0 and mb.producer is not None):
                steps = sorted({self.step_of[u] for u in mb.users})
                ins_at.setdefault(a, []).append((bid, i, steps[i]))
        pending: list[tuple[int, int, int, int]] = []   # (bid, i, t, start) copies in waiting for step t
        for s in range(n):
            G[s] = max(G[s - 1] if s else 0, E[s - 1] if s else 0, *release_at.get(s - 1, ()))
            for bid, i, ti in sorted(ins_at.get(s, ())):
                mb = mbs[bid]
                src = mb.load_src if i == 0 else mb.reload_src
                d = dur(mb.size, src, data.compute_level)
                ready = max(G[s], store_end.get(bid, 0))
                k = min(range(self.channels), key=lambda c: (max(chan[c], ready), c))
                st = max(chan[k], ready)
                chan[k] = st + d
                starts[(bid, ti, "before")] = (st, k)
                pending.append((bid, i, ti, st + d))
            need = [e for (_b, _i, ti, e) in pending if ti == s]
            S[s] = max(G[s], E[s - 1] if s else 0, *need)
            E[s] = S[s] + self.busy[s]
            for mb in data.buffers:
                if mb.producer is None or self.step_of[mb.producer] != s:
                    continue
                segs = by_buf.get(mb.id, [])
                is_output = self.problem.graph.buffers[mb.id].is_output
                if not (is_output or (len(segs) > 1 and mb.store_dst is not None)):
                    continue
                dst = self.problem.target.outputs_home if is_output else mb.store_dst
                d = dur(mb.size, data.compute_level, dst)
                k = min(range(self.channels), key=lambda c: (max(chan[c], E[s]), c))
                st = max(chan[k], E[s])
                chan[k] = st + d
                starts[(mb.id, None, "after")] = (st, k)
                store_end[mb.id] = st + d
                release_at.setdefault(segs[0][1], []).append(st + d)
        G[n] = max(G[n - 1], E[n - 1], *release_at.get(n - 1, ()))
        makespan = max(G[n], *chan)
        return {"S": S, "E": E, "G": G, "acquire": acquire, "starts": starts, "makespan": makespan,
                "segments": by_buf}

    def _hint(self, sol: JointSolution, ht: dict[str, Any]) -> None:
        m = self.model
        for s in range(self.n):
            m.add_hint(self.S[s], ht["S"][s])
            m.add_hint(self.E[s], ht["E"][s])
            m.add_hint(self.G[s + 1], ht["G"][s + 1])
        m.add_hint(self.makespan, ht["makespan"])
        by_buf = ht["segments"]
        for bid, segs in self.segs.items():
            got = {i: (end, off) for i, end, off in by_buf.get(bid, [])}
            for seg in segs:
                on = seg.i in got
                if not isinstance(seg.present, int):
                    m.add_hint(seg.present, on)
                if not isinstance(seg.run_end, int):
                    # The run of user i: the end of the hint segment containing its step.
                    ends = [(i, end) for i, end, _ in by_buf.get(bid, [])]
                    run = next(end for i, end in reversed(ends) if i <= seg.i)
                    m.add_hint(seg.run_end, run)
                m.add_hint(seg.slot, got[seg.i][1] // self.data.alignment if on else 0)
                if not isinstance(seg.a, int):
                    m.add_hint(seg.a, ht["acquire"].get((bid, seg.i), seg.t) if on else seg.t)
                a = ht["acquire"].get((bid, seg.i), seg.t) if on else seg.t
                if seg.length is not None:
                    r_h = got[0][0] if (seg.r_lits is not None and on) else (got[seg.i][0] if on else seg.t)
                    m.add_hint(seg.length, r_h + 1 - a)
                if seg.a_lits is not None:
                    for v, lit in seg.a_lits.items():
                        m.add_hint(lit, v == a)
                if seg.r_lits is not None:
                    t = sorted({self.step_of[u] for u in seg.buffer.users})
                    run0 = got[0][0]
                    m.add_hint(seg.r, run0)
                    for lit, j, e, _ in seg.r_lits:
                        m.add_hint(lit, t[j] == run0 and e == 0)
        for op, off in sol.scratch_offsets:
            if op in self.scratch:
                m.add_hint(self.scratch[op], off // self.data.alignment)
        for c in self.copies:
            key = c.key
            got_c = ht["starts"].get(key)
            m.add_hint(c.start, got_c[0] if got_c is not None else 0)
            for k, lit in enumerate(c.channels):
                m.add_hint(lit, got_c is not None and got_c[1] == k)

    # -- solve ------------------------------------------------------------------------------
    def solve(self, wall: float, work: float, workers: int, seed: int, deterministic: bool
              ) -> tuple[JointSolution, list[list[tuple[int, Any, str]]], float, bool, bool] | None:
        """Phase 1 (makespan), phase 2 (traffic at that makespan).  Returns the solution, the
        copy keys per channel in start order, the makespan in seconds, whether phase 1 was
        proven and whether the wall clock cut a phase; None when no solution was found."""
        m = self.model
        m.minimize(self.makespan)
        solver = cp_model.CpSolver()
        configure(solver, PHASE1_SHARE * wall, PHASE1_SHARE * work, workers, seed, deterministic)
        _light_presolve(solver)
        t0 = time.perf_counter()
        status = solver.solve(m)
        secs = time.perf_counter() - t0
        hit_wall = status != cp_model.OPTIMAL and secs >= 0.95 * PHASE1_SHARE * wall
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            log.info("latency residency: no answer in %.2fs", secs)
            return None
        proven = status == cp_model.OPTIMAL
        best = solver.value(self.makespan)
        log.info("latency residency: phase 1 %s makespan %d units (hint %d) in %.2fs",
                 "optimal" if proven else "feasible", best, self.horizon, secs)
        chosen = solver
        if not isinstance(self.traffic, int):
            # Phase 2: the least traffic at that makespan, hinted with phase 1's answer.
            m.clear_hints()
            seen: set[int] = set()
            for v in self._decision_vars():
                if v.index not in seen:
                    seen.add(v.index)
                    m.add_hint(v, solver.value(v))
            m.add(self.makespan <= best)
            m.minimize(self.traffic)
            solver2 = cp_model.CpSolver()
            rest = 1 - PHASE1_SHARE
            configure(solver2, rest * wall, rest * work, workers, seed, deterministic)
            _light_presolve(solver2)
            t0 = time.perf_counter()
            status2 = solver2.solve(m)
            secs2 = time.perf_counter() - t0
            if status2 in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                chosen = solver2
            hit_wall = hit_wall or (status2 != cp_model.OPTIMAL and secs2 >= 0.95 * rest * wall)
        return (*self._extract(chosen), best * self.unit, proven, hit_wall)

    def _decision_vars(self) -> list[Any]:
        out: list[Any] = [*self.S, *self.E, *self.G[1:], self.makespan]
        for segs in self.segs.values():
            for seg in segs:
                lits = [*(seg.a_lits or {}).values(), *(lit for lit, *_ in seg.r_lits or ())]
                for v in (seg.present, seg.run_end, seg.slot, seg.a, seg.r, seg.length, *lits):
                    if v is not None and not isinstance(v, int):
                        out.append(v)
        for c in self.copies:
            out.append(c.start)
            out.extend(c.channels)
        out.extend(self.scratch.values())
        return out

    def _extract(self, solver: cp_model.CpSolver) -> tuple[JointSolution, list[list[tuple[int, Any, str]]]]:
        assert self.data.order is not None
        segments: list[Segment] = []
        for bid, segs in self.segs.items():
            for seg in segs:
                if isinstance(seg.present, int) or solver.boolean_value(seg.present):
                    end = seg.run_end if isinstance(seg.run_end, int) else solver.value(seg.run_end)
                    segments.append(Segment(bid, seg.t, end, solver.value(seg.slot) * self.data.alignment))
        scratch = tuple((op, solver.value(v) * self.data.alignment) for op, v in self.scratch.items())
        sol = JointSolution(self.data.order, tuple(segments), scratch)
        queues: list[list[tuple[int, tuple[int, Any, str]]]] = [[] for _ in range(self.channels)]
        for c in self.copies:
            if not isinstance(c.present, int) and not solver.boolean_value(c.present):
                continue
            k = 0 if not c.channels else next(k for k, lit in enumerate(c.channels) if solver.boolean_value(lit))
            queues[k].append((solver.value(c.start), c.key))
        return sol, [[key for _, key in sorted(q, key=lambda x: (x[0], str(x[1])))] for q in queues]


def _light_presolve(solver: cp_model.CpSolver) -> None:
    """One presolve pass, no probing: the full presolve spends seconds of wall time (little
    of it counted as work) propagating the step chain's bounds on a 250-step graph before the
    search starts from the hint (densenet121 at M_R: 10 s without a first solution)."""
    solver.parameters.max_presolve_iterations = 1
    solver.parameters.cp_model_probing_level = 0


def _queues_of_plan(plan: Plan, keys: Sequence[Sequence[tuple[int, Any, str]]]) -> tuple[tuple[int, ...], ...] | None:
    """The model's channel queues as ``plan.transfers`` indices (a store's step is whatever the
    lowering chose, after its producer); None when a copy of the model is not in the plan or a
    transfer of the plan is not in the model."""
    index: dict[tuple[int, Any, str], int] = {}
    for j, t in enumerate(plan.transfers):
        key = (t.buffer, t.step if t.phase == "before" else None, t.phase)
        if key in index:
            return None
        index[key] = j
    out = []
    seen = set()
    for q in keys:
        row = []
        for key in q:
            if key not in index:
                return None
            row.append(index[key])
            seen.add(index[key])
        out.append(tuple(row))
    return tuple(out) if len(seen) == len(plan.transfers) else None


def residency_for_latency(problem: Problem, reference: Plan, wall: float, work: float, workers: int, seed: int,
                          deterministic: bool = True) -> ResidencyPlan | None:
    """The model's plan for ``reference``'s order (None when it does not apply: a tiled plan,
    an unknown time, an order the model cannot read, or no solution within the limits)."""
    if reference.cascades or problem.target.compute_engine is None:
        return None
    order = plan_order(problem, reference)
    if order is None:
        return None
    started = time.perf_counter()
    try:
        data = joint_data(problem, "fixed-schedule", order, None)
    except (StowageError, ValueError) as exc:
        log.info("latency residency: no instance (%s)", exc)
        return None
    hint = solution_from_plan(data, reference, order)
    tl = estimate(problem.graph, reference, problem.target)
    if hint is None or tl is None or tl.makespan <= 0:
        return None
    model = LatencyResidencyModel(problem, data, reference, hint)
    got = model.solve(wall, work, workers, seed, deterministic)
    if got is None:
        return None
    sol, keys, makespan, proven, hit_wall = got
    why = check_solution(data, sol)
    if why is not None:
        log.warning("latency residency: the model's solution fails the joint check (%s); dropped", why)
        return None
    plan = lower_solution(problem, data, sol, "exact", "feasible", None, started,
                          "exact: latency residency model")
    log.info("latency residency: %d steps, traffic %d B (reference %d B), model makespan %.6g s",
             len(order), traffic_of(data, sol), reference.metrics.noncompulsory_bytes, makespan)
    queues = _queues_of_plan(plan, keys)
    return ResidencyPlan(plan, queues or (), makespan, proven, hit_wall)


__all__ = ["GRID", "LatencyResidencyModel", "ResidencyPlan", "residency_for_latency"]
