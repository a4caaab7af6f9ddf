"""Candidate cascades, whole tensors and spills packed in one CP-SAT model (below M_R).

The partition model (``stowage.solvers.exact.tiled_model``) picks the cascades with a memory
*sum* per macro step and every whole tensor live across a cascade (a *bystander*) kept on
chip; the order, the offsets and the spills of the macro graph are left to the whole-tensor
solver afterwards.  So a partition that the sum admits may not pack (fragmentation), and a
partition that would fit once a bystander is spilled whole is never considered.  This model
decides all of it at once, with the macro steps in the partitioner's order (the order the
partition model uses):

* **time** is the positions ``0..n-1`` of that order; a candidate ``c = [i..j]`` (the partition
  model's candidates, ``enumerate_candidates``) occupies ``[i, j+1)`` when chosen (``x[c]``,
  exactly one chosen candidate covers each position).  The macro step holding position ``p``
  starts at ``ms[p] = sum(c.i * x[c])`` and ends at ``me[p] = sum((c.j + 1) * x[c])`` over the
  candidates covering ``p`` (linear: exactly one is chosen);
* **a candidate's private rectangle**: its footprint in its finest band (``Windows.base``)
  less the whole boundary tensors it counts, plus the rows of each boundary tensor crossing
  off-chip (``off[b]``, as in the partition model: stored row by row by its maker, loaded by
  every later reader); rings, staging and working memory, present only during its step;
* **whole tensors**: a buffer some chosen candidate counts whole (read from before it, or made
  in it and read after it) and that is not off-chip is whole on chip from the macro step of
  its first touch to that of its last, at one offset per residency.  Between two consecutive
  touches (a *gap*) it either stays (``keep``) or is spilled: absent from the end of the first
  touch's macro step to the start of the next one's, and reloaded there (its bytes; a first
  spill of an activation also stores it, its bytes once; graph inputs and outputs have a
  home, so no store).  A gap inside one macro step cannot be spilled.  A reload may land at
  another offset;
* all rectangles in one ``NoOverlap2D`` over (position, address) under the capacity, with one
  linear row per position (the bytes of the macro step holding it: private parts plus every
  whole tensor resident there, ``_resident``) as a redundant constraint;
* **objective**: non-compulsory traffic = the partition model's cut traffic (each off-chip
  tensor's bytes once per cascade storing or loading it) + stores + reloads of whole spills.
  Two LP cuts per off-chip tensor (its maker's candidate stores it, its last reader's loads
  it) keep the linear relaxation from pricing half-chosen cuts at nothing.

**The relaxation and its bound.**  Without the ``NoOverlap2D`` (addresses free: the rows per
position only) the same model is a relaxation of every plan whose macro steps are chosen
candidates run in this order, whatever its addresses and reload offsets: at each macro step
every whole tensor between two touches is either resident or paid for (COSMA's gap argument,
``residency_model``), and each candidate's finest band is its least memory.  Its proven bound
is ``solver.joint_bound``.  It is *not* a bound over every tiling (other orders, longer
cascades, candidates the work budget left out), and a cascade's row loads that skip rows no
reader needs (``docs/tiling.md``, "Loads start at the first row read") cost less than the
tensor's bytes counted here; so the caller withholds it on graphs with such loads
(``tiled_search.partial_loads``) and never reports it above the plan's traffic.

**The plan.**  The address model's partition (its candidates and off-chip tensors) becomes the
partitioner's segments (``tiled_model.segments_of``, bands re-fitted to the tallest that fits)
and is planned like every candidate partition: the whole-tensor solver on its macro graph
(order, offsets and spills again: it may do better, or under a short clock worse, than this
model's packing), stripes attached,
and the one validator judges the result.  Graphs whose weights live in the compute level are
not modelled (the weights would be whole tensors shared by cascades).

Both solves run on CP-SAT's deterministic time (``max_deterministic_time``) with a fixed
worker count, the wall clock only as a safety net (``timed``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ortools.sat.python import cp_model

from stowage.ir.graph import BufferId, TensorKind
from stowage.solvers.exact.joint_model import configure
from stowage.solvers.exact.tiled_model import Candidate, partition_of, sendable
from stowage.solvers.tiling.partition import Partitioner, Segment

log = logging.getLogger(__name__)

#: CP-SAT deterministic time of the no-address relaxation (the bound).
RELAX_WORK = 10.0
#: CP-SAT deterministic time of the address model (the plan).
PACK_WORK = 20.0
#: Share of ``PACK_WORK`` that places the warm start's partition (``JointTiledModel.repair``).
REPAIR_SHARE = 0.25
#: Above this many candidates x whole tensors the model is not built (its NoOverlap2D grows
#: with both, and CP-SAT spends the budget propagating instead of searching).
MAX_SIZE = 200_000


@dataclass(frozen=True)
class Whole:
    """A buffer that some candidate counts whole: its aligned bytes, its touch positions in
    the order, what a spill's store and a reload cost (bytes), and the candidates counting
    it whole."""

    buffer: BufferId
    size: int
    touches: tuple[int, ...]
    store: int
    reload: int
    counted_by: tuple[int, ...]


@dataclass(frozen=True)
class JointResult:
    """The model's choice: candidates in order, tensors off-chip (rows), whole spills (buffer,
    gap index), its traffic, the proven bound of the solve and its status; ``relaxed`` says
    whether it came from the relaxation (no addresses) or the address model."""

    chosen: tuple[Candidate, ...]
    off: frozenset[BufferId]
    spills: frozenset[tuple[BufferId, int]]
    traffic: int
    bound: int
    status: str
    relaxed: bool


def whole_set(part: Partitioner, c: Candidate) -> frozenset[BufferId]:
    """The boundary buffers candidate ``c``'s base footprint counts whole: a plain step's every
    non-weight buffer; a cascade's operands read from before it (but a graph input read only
    here, streamed from its home) and its results read after it."""
    g = part.g
    if c.stripe_rows == 0:
        return frozenset(b for b in part.touch[c.i] if g.buffers[b].kind is not TensorKind.WEIGHT)
    w = part.windows(c.i, c.j, c.stripe_rows, c.pace_rows)
    assert w is not None
    out = part.outside(c.i, c.j)
    bs: set[BufferId] = set()
    for b in w.reads:
        buf = g.buffers[b]
        streamed = (buf.kind is TensorKind.INPUT and not out.get(b, False) and not buf.is_output
                    and b not in w.read_whole)
        if not streamed:
            bs.add(b)
    bs.update(b for b in w.writes if out.get(b, False))
    return frozenset(bs)


def wholes(part: Partitioner, cands: Sequence[Candidate]) -> tuple[list[Whole], list[frozenset[BufferId]]]:
    """The whole tensors of the model and, per candidate, the buffers it counts whole."""
    g = part.g
    per = [whole_set(part, c) for c in cands]
    counted: dict[BufferId, list[int]] = {}
    for k, bs in enumerate(per):
        for b in bs:
            counted.setdefault(b, []).append(k)
    out = []
    for b in sorted(counted):
        buf = g.buffers[b]
        touches = tuple(p for p in range(part.n) if b in part.touch[p])
        home = buf.kind is TensorKind.INPUT or buf.is_output
        out.append(Whole(b, part._a(buf.bytes), touches, 0 if home else buf.bytes, buf.bytes, tuple(counted[b])))
    return out, per


class JointTiledModel:
    """The CP-SAT model of the module docstring; ``addresses`` False: the relaxation."""

    def __init__(self, part: Partitioner, cap: int, cands: Sequence[Candidate], addresses: bool,
                 floor: int = 0) -> None:
        self.part, self.cap, self.cands, self.addresses = part, cap, list(cands), addresses
        g, n = part.g, part.n
        m = self.model = cp_model.CpModel()
        self.wholes, per = wholes(part, self.cands)
        movable = sendable(part)
        used = set().union(*(c.moves for c in self.cands), set())
        self.off = {b: m.new_bool_var(f"off[{b}]") for b in sorted(movable & used)}
        self.x = [m.new_bool_var(f"x[{c.i},{c.j},{c.stripe_rows}]") for c in self.cands]
        cover: list[list[int]] = [[] for _ in range(n)]
        for k, c in enumerate(self.cands):
            for p in range(c.i, c.j + 1):
                cover[p].append(k)
        for ks in cover:
            m.add_exactly_one(self.x[k] for k in ks)
        # Macro step start / end of each position (one covering candidate is chosen).
        self.ms = [m.new_int_var(0, n, f"ms[{p}]") for p in range(n)]
        self.me = [m.new_int_var(1, n, f"me[{p}]") for p in range(n)]
        for p in range(n):
            m.add(self.ms[p] == sum(self.cands[k].i * self.x[k] for k in cover[p]))
            m.add(self.me[p] == sum((self.cands[k].j + 1) * self.x[k] for k in cover[p]))
        #: Per position, the bytes it holds (``size * literal`` terms).
        load: list[list[cp_model.LinearExprT]] = [[] for _ in range(n)]
        self._load = load
        xs: list[cp_model.IntervalVar] = []
        ys: list[cp_model.IntervalVar] = []
        demands: list[cp_model.LinearExprT] = []
        traffic: list[cp_model.LinearExprT] = []
        makers: dict[BufferId, list[cp_model.IntVar]] = {}
        stores: dict[BufferId, list[cp_model.IntVar]] = {}
        loads: dict[BufferId, list[cp_model.IntVar]] = {}
        # Candidates: private rectangles, the partition model's off-chip rules and cut traffic.
        for k, c in enumerate(self.cands):
            x = self.x[k]
            for b in c.on_chip:
                if b in self.off:
                    m.add_implication(x, self.off[b].negated())
            counted = per[k]
            const = c.base - sum(part._a(g.buffers[b].bytes) for b in counted)
            assert const >= 0, (c, const)
            varying = {b: part._a(g.buffers[b].bytes) + c.delta.get(b, 0) for b in counted if b in self.off
                       and b in c.moves}
            # Rings and working memory: one rectangle for the fixed part, one per boundary
            # tensor crossing off-chip (its rows), each present only when it has bytes (CP-SAT's
            # NoOverlap2D refuses an empty box inside another).
            if const > 0:
                self._rect(m, xs, ys, demands, c.i, c.j + 1, const, x, f"c{k}")
            for b, v in varying.items():
                if v <= 0:
                    continue
                both = m.new_bool_var(f"ring[{k},{b}]")
                m.add_implication(both, x)
                m.add_implication(both, self.off[b])
                m.add_bool_or([x.negated(), self.off[b].negated(), both])
                self._rect(m, xs, ys, demands, c.i, c.j + 1, v, both, f"c{k}.{b}")
            for b in c.moves:
                if b not in self.off:
                    continue
                y = m.new_bool_var(f"y[{k},{b}]")
                m.add_bool_or([x.negated(), self.off[b].negated(), y])
                traffic.append(g.buffers[b].bytes * y)
                if g.buffers[b].producer in part.order[c.i:c.j + 1]:
                    makers.setdefault(b, []).append(x)
                    stores.setdefault(b, []).append(y)
                if c.i <= part.last[b] <= c.j:
                    loads.setdefault(b, []).append(y)
        for b, o in self.off.items():
            m.add_bool_or(makers.get(b, [])).only_enforce_if(o)
            # Cuts for the LP: an off-chip tensor is stored by the candidate making it and
            # loaded by the one holding its last reader (another: it crosses a cut), so it
            # costs at least twice its bytes (``y >= x + off - 1`` alone lets x = off = 1/2
            # cost nothing).
            m.add(sum(stores.get(b, [])) >= o)
            m.add(sum(loads.get(b, [])) >= o)
        # Whole tensors: residency intervals between touches, kept or spilled.
        self.whole: dict[BufferId, cp_model.IntVar] = {}
        self.spill: dict[tuple[BufferId, int], cp_model.IntVar] = {}
        for wt in self.wholes:
            b = wt.buffer
            w = self.whole[b] = m.new_bool_var(f"whole[{b}]")
            ob = self.off.get(b)
            for k in wt.counted_by:
                if ob is None:
                    m.add_implication(self.x[k], w)
                else:
                    m.add_bool_or([self.x[k].negated(), ob, w])
            if ob is not None:
                m.add_implication(w, ob.negated())
            m.add_bool_or([self.x[k] for k in wt.counted_by]).only_enforce_if(w)
            ts = wt.touches
            keeps: list[cp_model.IntVar] = []
            stored = m.new_bool_var(f"stored[{b}]") if wt.store else None
            y_prev: cp_model.IntVar | None = None
            keep_prev: cp_model.IntVar | None = None
            for gi in range(len(ts)):
                yv = m.new_int_var(0, max(0, cap - wt.size), f"y[{b},{gi}]") if addresses else None
                if y_prev is not None and yv is not None and keep_prev is not None:
                    m.add(yv == y_prev).only_enforce_if(keep_prev)
                if gi == len(ts) - 1:
                    self._interval(m, xs, ys, demands, self.ms[ts[gi]], self.me[ts[gi]], wt.size, w, yv, f"w{b}.{gi}")
                    break
                keep = m.new_bool_var(f"keep[{b},{gi}]")
                sp = self.spill[(b, gi)] = m.new_bool_var(f"spill[{b},{gi}]")
                m.add(keep + sp == w)
                # Both touches in one macro step: a chosen candidate covers both (0 or 1).
                same = sum(self.x[k] for k in cover[ts[gi]] if self.cands[k].j >= ts[gi + 1])
                # A spilled gap leaves one macro step for another.
                m.add(same == 0).only_enforce_if(sp)
                # The kept stretch [ms(t_g), ms(t_g+1)) is empty inside one macro step: present
                # only when it is not (NoOverlap2D refuses an empty box inside another).
                span = m.new_bool_var(f"span[{b},{gi}]")
                m.add(span <= keep)
                m.add(span + same <= 1)
                m.add(span >= keep - same)
                self._interval(m, xs, ys, demands, self.ms[ts[gi]], self.ms[ts[gi + 1]], wt.size, span, yv,
                               f"k{b}.{gi}")
                self._interval(m, xs, ys, demands, self.ms[ts[gi]], self.me[ts[gi]], wt.size, sp, yv, f"s{b}.{gi}")
                traffic.append(wt.reload * sp)
                if stored is not None:
                    m.add_implication(sp, stored)
                y_prev, keep_prev = yv, keep
                keeps.append(keep)
            if stored is not None:
                traffic.append(wt.store * stored)
            self._resident(m, load, cover, wt, w, keeps)
        # Memory per position: the bytes of the macro step holding it (a linear row each; the
        # relaxation's whole memory model, and a redundant one beside the NoOverlap2D).
        for p in range(n):
            if load[p]:
                m.add(sum(load[p]) <= cap)
        if addresses:
            m.add_no_overlap_2d(xs, ys)
        self.traffic: cp_model.LinearExprT = sum(traffic) if traffic else 0
        if floor and traffic:
            m.add(self.traffic >= floor)
        m.minimize(self.traffic)
        self.timed = False

    def _rect(self, m: cp_model.CpModel, xs: list[cp_model.IntervalVar], ys: list[cp_model.IntervalVar],
              demands: list[cp_model.LinearExprT], t0: int, t1: int, size: int, present: cp_model.IntVar,
              name: str) -> None:
        """A candidate's private rectangle of ``size`` bytes over fixed positions ``[t0, t1)``."""
        for p in range(t0, t1):
            self._load[p].append(size * present)
        if self.addresses:
            xs.append(m.new_optional_fixed_size_interval_var(t0, t1 - t0, present, f"tx[{name}]"))
            demands.append(size)
            yv = m.new_int_var(0, max(0, self.cap - size), f"ya[{name}]")
            ys.append(m.new_optional_fixed_size_interval_var(yv, size, present, f"iy[{name}]"))

    def _interval(self, m: cp_model.CpModel, xs: list[cp_model.IntervalVar], ys: list[cp_model.IntervalVar],
                  demands: list[cp_model.LinearExprT], start: cp_model.IntVar, end: cp_model.IntVar, size: int,
                  present: cp_model.IntVar, yv: cp_model.IntVar | None, name: str) -> None:
        """A whole tensor's residency from macro-step position ``start`` to ``end`` (a
        rectangle of the address model; the relaxation counts residency per position)."""
        if not self.addresses:
            return
        ln = m.new_int_var(0, self.part.n, f"len[{name}]")
        xs.append(m.new_optional_interval_var(start, ln, end, present, f"tx[{name}]"))
        demands.append(size)
        if yv is not None:
            ys.append(m.new_optional_fixed_size_interval_var(yv, size, present, f"iy[{name}]"))

    def _resident(self, m: cp_model.CpModel, load: list[list[cp_model.LinearExprT]], cover: list[list[int]],
                  wt: Whole, w: cp_model.IntVar, keeps: list[cp_model.IntVar]) -> None:
        """Add ``wt``'s bytes to every position of a macro step it is resident in: a position
        of a touch's macro step (``same``: a chosen candidate covers both), or between two
        touches whose gap is kept.  Lower bounds suffice (the rows push them down)."""
        ts = wt.touches

        def same(p: int, t: int) -> cp_model.LinearExpr:
            return cp_model.LinearExpr.sum([self.x[k] for k in cover[p] if self.cands[k].i <= t <= self.cands[k].j])

        lo = min((self.cands[k].i for k in cover[ts[0]]), default=ts[0])   # no candidate: infeasible anyway
        hi = max((self.cands[k].j for k in cover[ts[-1]]), default=ts[-1])
        for p in range(lo, hi + 1):
            if p in ts:
                load[p].append(wt.size * w)
                continue
            r = self.model.new_bool_var(f"res[{wt.buffer},{p}]")
            load[p].append(wt.size * r)
            before = [t for t in ts if t < p]
            after = [t for t in ts if t > p]
            near = ([before[-1]] if before else []) + ([after[0]] if after else [])
            for t in near:
                m.add(same(p, t) + w - r <= 1)
            if ts[0] < p < ts[-1]:
                g = max(k for k, t in enumerate(ts) if t < p)
                m.add(r >= keeps[g])

    def _partition_of(self, segs: Sequence[Segment]) -> tuple[set[int], set[BufferId]] | None:
        """The candidates and off-chip tensors of a partition; None when a segment is no
        candidate."""
        return partition_of(self.part, self.cands, segs)

    def hint(self, segs: Sequence[Segment]) -> bool:
        """Hint a partition (the partition model's or the heuristic's) with no whole spills;
        False when one of its segments is no candidate."""
        got = self._partition_of(segs)
        if got is None:
            return False
        chosen, off = got
        for k, x in enumerate(self.x):
            self.model.add_hint(x, k in chosen)
        for b, o in self.off.items():
            self.model.add_hint(o, b in off)
        for sp in self.spill.values():
            self.model.add_hint(sp, False)
        return True

    def repair(self, start: Sequence[Segment] | JointResult, wall: float, work: float, workers: int,
               seed: int) -> JointResult | None:
        """Warm start from a partition (segments, or another model's result): solve a copy of
        the model with its candidates and off-chip tensors fixed (the whole spills and every
        offset free: a partition the memory sum admits but that does not pack gets the spills
        that make it pack), and hint every variable of this model with that solution.  That
        solution (its status about the fixed partition), or None (none found: then the
        partition alone is hinted)."""
        if isinstance(start, JointResult):
            index = {c.key: k for k, c in enumerate(self.cands)}
            got: tuple[set[int], set[BufferId]] | None = ({index[c.key] for c in start.chosen}, set(start.off))
        else:
            got = self._partition_of(start)
        if got is None:
            return None
        chosen, off = got
        fixed = self.model.clone()
        for k, x in enumerate(self.x):
            fixed.add(fixed.get_bool_var_from_proto_index(x.index) == (k in chosen))
        for b, o in self.off.items():
            fixed.add(fixed.get_bool_var_from_proto_index(o.index) == (b in off))
        fixed.clear_hints()
        solver = cp_model.CpSolver()
        configure(solver, wall, work, workers, seed)
        status = solver.solve(fixed)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            self.timed = status != cp_model.INFEASIBLE and solver.wall_time >= 0.95 * wall
            for k, x in enumerate(self.x):
                self.model.add_hint(x, k in chosen)
            return None
        self.model.clear_hints()
        for i in range(len(self.model.proto.variables)):
            v = self.model.get_int_var_from_proto_index(i)
            self.model.add_hint(v, solver.value(v))
        # Optimal only for the fixed partition: no status or bound about the model.
        return replace(self._read(solver, status), bound=0, status="feasible")

    def solve(self, wall: float, work: float, workers: int, seed: int) -> JointResult | None:
        """The best solution found and the proven bound; None when CP-SAT found none."""
        solver = cp_model.CpSolver()
        configure(solver, wall, work, workers, seed)
        status = solver.solve(self.model)
        self.timed = self.timed or (status not in (cp_model.OPTIMAL, cp_model.INFEASIBLE)
                                    and solver.wall_time >= 0.95 * wall)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None
        return self._read(solver, status)

    def _read(self, solver: cp_model.CpSolver, status: cp_model.CpSolverStatus) -> JointResult:
        chosen = tuple(sorted((c for c, x in zip(self.cands, self.x) if solver.boolean_value(x)), key=lambda c: c.i))
        off = frozenset(b for b, o in self.off.items() if solver.boolean_value(o))
        spills = frozenset(key for key, v in self.spill.items() if solver.boolean_value(v))
        traffic = 0 if isinstance(self.traffic, int) else round(solver.value(self.traffic))
        bound = traffic if status == cp_model.OPTIMAL else math.ceil(solver.best_objective_bound - 1e-6)
        # Traffic is never negative: CP-SAT's bound before any proof can be (PP-OCRv4's
        # detector at 128 KiB: -321,600), and a negative ``joint_bound`` would be written
        # into the plan, which the plan reader then refuses.
        bound = max(0, bound)
        return JointResult(chosen, off, spills, traffic, min(bound, traffic),
                           "optimal" if status == cp_model.OPTIMAL else "feasible", not self.addresses)

    def size(self) -> int:
        return len(self.cands) + sum(len(w.touches) for w in self.wholes) * 3


@dataclass(frozen=True)
class JointOutcome:
    """What ``joint_partition`` gives the caller: the address model's partition as segments
    (None when it found none), its traffic by the model's measure, and the relaxation's
    proven bound (None when it found none) with whether the clock cut a solve."""

    segments: tuple[Segment, ...] | None
    traffic: int | None
    bound: int | None
    relaxed_status: str
    timed: bool


def joint_partition(part: Partitioner, cap: int, cands: Sequence[Candidate], warm: Sequence[Segment] | None,
                    deadline: float, workers: int, seed: int, relax_work: float = RELAX_WORK,
                    pack_work: float = PACK_WORK) -> JointOutcome | None:
    """Solve the relaxation (the bound, hinted with ``warm``, the partition model's
    partition), place its optimum (else ``warm``) in the address model, and unless that meets
    the bound solve the address model from it; return its partition as segments.  None when
    the model is not built (weights in the compute level, or too large)."""
    from stowage.solvers.exact.tiled_model import segments_of

    if part.weights or not cands:
        return None
    t0 = time.monotonic()
    relax = JointTiledModel(part, cap, cands, addresses=False)
    if relax.size() > MAX_SIZE:
        log.info("tiled joint model: too large (%d), skipped", relax.size())
        return None
    wall = lambda: max(0.5, deadline - time.monotonic())  # noqa: E731 (the safety net left)
    # The bound first (the warm start's partition is planned already): the relaxation, every
    # variable hinted with the warm start's partition and the spills it needs.
    if warm:
        relax.repair(list(warm), wall(), REPAIR_SHARE * relax_work, workers, seed)
    r = relax.solve(wall(), (1 - REPAIR_SHARE) * relax_work, workers, seed)
    bound = r.bound if r is not None else None
    t1 = time.monotonic()
    # Then a plan: a partition placed (spills and offsets) on a quarter of the address
    # model's budget, the relaxation's optimum first, else the warm start's.
    packed = JointTiledModel(part, cap, cands, addresses=True, floor=bound or 0)
    repaired: JointResult | None = None
    for start in ([r] if r is not None else []) + ([list(warm)] if warm else []):
        repaired = packed.repair(start, wall(), REPAIR_SHARE * pack_work, workers, seed)
        if repaired is not None:
            break
    t2 = time.monotonic()
    p: JointResult | None
    if repaired is not None and bound is not None and repaired.traffic <= bound:
        # A partition packs at the relaxation's bound: optimal over the model's plans.
        p = replace(repaired, bound=bound, status="optimal")
    else:
        p = packed.solve(wall(), (1 - REPAIR_SHARE) * pack_work, workers, seed)
        if p is None or (repaired is not None and repaired.traffic <= p.traffic):
            p = repaired
    segs = None if p is None else tuple(segments_of(part, cap, list(p.chosen), p.off))
    timed = relax.timed
    timed = timed or packed.timed
    log.info("tiled joint model: %d candidates, %d whole tensors; relaxation %s, bound %s (%.1fs); a partition %s "
             "(%.1fs); address model %s, traffic %s, %s whole spills (%.1fs)", len(cands), len(relax.wholes),
             "none" if r is None else r.status, bound, t1 - t0,
             "none" if repaired is None else f"packed at {repaired.traffic}", t2 - t1,
             "none" if p is None else p.status, None if p is None else p.traffic, None if p is None else len(p.spills),
             time.monotonic() - t2)
    return JointOutcome(segs, None if p is None else p.traffic, bound, "none" if r is None else r.status, timed)


__all__ = ["PACK_WORK", "RELAX_WORK", "JointOutcome", "JointResult", "JointTiledModel", "Whole",
           "joint_partition", "whole_set", "wholes"]
