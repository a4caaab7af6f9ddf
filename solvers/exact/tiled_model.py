"""Candidate cascades and off-chip cuts as one CP-SAT model (``--solver exact`` below M_R).

The heuristic partition search (``stowage.solvers.tiling.partition``) is a DP over cut points
whose states are the sets of intermediates crossing a cut off-chip, pruned to a beam of
``MAX_STATES`` per cut and to a few subsets per segment.  This model searches the same space
without the beam:

* **candidates**: every run ``[i..j]`` of the order (at most ``MAX_LEN`` steps, shortest
  first, under a work budget of stripe walks shared with the heuristic's memo) that can be a
  cascade, in its finest band (``Partitioner.ladder``; the least memory), plus every step as
  a plain (whole-tensor) step.  One walk gives a candidate's footprint for *any* set of its
  boundary tensors off-chip as a base plus one delta per tensor (``footprint.Windows``), so a
  candidate's memory is linear in the off-chip booleans;
* **variables**: ``x[c]`` (candidate ``c`` is a macro step of the plan) and, per intermediate
  that may cross a cut through off-chip memory (``Partitioner._sendable``), ``off[b]`` (its
  producer's cascade stores it row by row, every later cascade reading it loads it);
* **constraints**: exactly one chosen candidate covers each step; each chosen candidate is a
  time step whose memory, its own footprint with its boundary tensors' modes plus the whole
  tensors live across it that are not off-chip (the *bystanders*: a cut separates their
  producer and a reader), fits the capacity; a plain step, or a stripe reading an operand
  whole, keeps its tensors on chip; ``off[b]`` needs a chosen candidate that makes ``b`` and
  leaves a reader to a later one;
* **objective**: non-compulsory traffic at the cuts (each off-chip tensor's bytes once per
  cascade storing or loading it: the heuristic's measure).  Stripes are no tie-break: proving
  them too made CP-SAT five times slower, and the bands are chosen afterwards (below).

The heuristic's partition is the warm start (a hint; the model keeps it unless it finds a
strictly better one), so the model's partition is never worse by this measure.  Stripe
heights: given the off-chip choices, each cascade's memory constraint is independent of the
others', so the tallest band that fits (``Partitioner._fit``, as the heuristic does after its
DP) is the best height; the model therefore decides feasibility in the finest band only.

The chosen partition is planned by the whole-tensor ``exact`` solver on the macro graph and
attached as every tiled plan is (``stowage.solvers.tiling.plan``); the validator judges it.

**Bounds.** CP-SAT's proven bound (``PartitionResult.bound``) holds for the cut traffic of
every partition into these candidates in this order, with every crossing tensor either whole
on chip across the cut or moved row by row; a plan's traffic is at least its partition's cut
traffic.  It is *not* a bound over every tiling (other orders, longer cascades, candidates the
work budget left out), so it is reported as ``solver.partition_bound`` and never as
``solver.lower_bound``, which stays the bound over every tiling
(``stowage.solvers.tiling.bound``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ortools.sat.python import cp_model

from stowage.ir.graph import BufferId
from stowage.solvers.exact.joint_model import configure
from stowage.solvers.tiling.partition import MAX_LEN, OutOfTime, OutOfWork, Partitioner, Segment

log = logging.getLogger(__name__)

#: Stripe walks (``Partitioner`` work units) the candidate enumeration may spend beyond what the
#: heuristic already walked: a budget, not a clock, so the candidate set does not depend on load.
CANDIDATE_WORK = 2_000_000
#: CP-SAT's deterministic time (its work units, ~seconds) for one partition model.
MODEL_WORK = 20.0


@dataclass(frozen=True)
class Candidate:
    """Steps ``[i..j]`` of the partitioner's order as one macro step.

    ``stripe_rows`` 0: a plain step (whole tensors).  ``base``: its footprint with nothing
    off-chip; ``delta``: what each boundary tensor going off-chip adds (negative: rows instead
    of the whole tensor).  ``moves``: the boundary tensors that may go off-chip (loaded, or
    made here and read later); ``on_chip``: those that must stay on chip when it is chosen
    (a plain step, or a stripe reading them whole).  ``bystanders``: whole tensors live across
    it, with their aligned bytes.  ``stripes``: member stripes in its finest band (1 plain)."""

    i: int
    j: int
    stripe_rows: int
    pace_rows: int
    base: int
    stripes: int
    delta: Mapping[BufferId, int] = field(default_factory=dict)
    moves: frozenset[BufferId] = frozenset()
    on_chip: frozenset[BufferId] = frozenset()
    bystanders: tuple[tuple[BufferId, int], ...] = ()

    @property
    def key(self) -> tuple[int, int, bool]:
        return (self.i, self.j, self.stripe_rows == 0)


@dataclass(frozen=True)
class PartitionResult:
    """The model's partition (``segments``, bands re-fitted to the tallest that fits), its cut
    traffic, CP-SAT's proven bound on the cut traffic over the candidate set, its status
    (``optimal`` when proven over the candidates), and how many candidates it had."""

    segments: tuple[Segment, ...]
    traffic: int
    bound: int
    status: str
    candidates: int
    complete: bool   # every run up to MAX_LEN steps was a candidate (the work budget did not end it)
    #: The candidates themselves (``stowage.solvers.exact.tiled_joint`` packs the same set).
    pool: tuple[Candidate, ...] = ()


def sendable(part: Partitioner) -> frozenset[BufferId]:
    """Intermediates that may cross a cut through off-chip memory: made by a step of the order
    and ``Partitioner._sendable`` (more than one row, every reader runs in stripes)."""
    g = part.g
    out: set[BufferId] = set()
    for p in range(part.n):
        for b in part.touch[p]:
            if g.buffers[b].producer == part.order[p] and part._sendable(b):
                out.add(b)
    return frozenset(out)


def _bystanders(part: Partitioner, i: int, j: int) -> tuple[tuple[BufferId, int], ...]:
    g = part.g
    return tuple(sorted((b, part._a(g.buffers[b].bytes)) for b in part.bystander_set(i, j)))


def _plain(part: Partitioner, i: int, movable: frozenset[BufferId]) -> Candidate:
    seg = part.plain(i)
    own = seg.peak - part.bystanders(i, i)
    return Candidate(i, i, 0, 0, own, 1, on_chip=frozenset(part.touch[i] & movable),
                     bystanders=_bystanders(part, i, i))


def _cascade(part: Partitioner, i: int, j: int, movable: frozenset[BufferId]) -> Candidate | None:
    """The candidate of run ``[i..j]`` in its finest band, or None (not a cascade)."""
    h, pace = part.ladder(i, j)[0]
    w = part.windows(i, j, h, pace)
    if w is None:
        return None
    made = set(w.writes) | {b for p in range(i, j + 1) for b in part.touch[p]
                            if part.g.buffers[b].producer == part.order[p]}
    sends = {b for b in made if b in movable and part.last.get(b, -1) > j}
    loads = {b for b in w.reads if b in movable}
    on_chip = frozenset(loads & w.read_whole)
    moves = frozenset((loads - on_chip) | sends)
    delta = {b: d for b, d in w.delta.items() if b in moves and d}
    return Candidate(i, j, h, pace, w.base, w.count, delta, moves, on_chip, _bystanders(part, i, j))


def _fits_somehow(c: Candidate, cap: int, movable: frozenset[BufferId]) -> bool:
    """Whether some choice of off-chip tensors lets ``c`` fit: its least memory (every
    negative delta taken, every movable bystander off-chip) is within the capacity."""
    fixed = sum(n for b, n in c.bystanders if b not in movable)
    return c.base + sum(min(0, d) for d in c.delta.values()) + fixed <= cap


def enumerate_candidates(part: Partitioner, cap: int, work: int = CANDIDATE_WORK,
                         must: tuple[tuple[int, int, bool], ...] = (),
                         deadline: float | None = None) -> tuple[list[Candidate], bool]:
    """Candidates of ``part``'s order at capacity ``cap``, runs of 1, 2, ... steps (shortest
    first, so the budget cuts the longest), and whether the enumeration completed (the work
    budget, or ``deadline``, a wall-clock safety net, ended it otherwise).  ``must``: keys
    (``Candidate.key``) always included (the warm start's)."""
    movable = sendable(part)
    old_work, old_spent, old_deadline = part.work, part.spent, part.deadline
    part.work, part.spent, part.deadline = work, 0, deadline
    out: dict[tuple[int, int, bool], Candidate] = {}
    complete = True
    try:
        for i in range(part.n):
            c = _plain(part, i, movable)
            if _fits_somehow(c, cap, movable):
                out[c.key] = c
        for length in range(1, MAX_LEN + 1):
            for i in range(part.n - length + 1):
                j = i + length - 1
                if not all(part.tileable[i:j + 1]) or not part.macro_safe(i, j):
                    continue
                if length > 1 or part.tileable[i]:
                    # Prune before the walk: the run's whole buffers and least rows
                    # (``Partitioner._bound``) with every helpful tensor off-chip.
                    part._bound(i, j, frozenset())
                    base, delta = part._whole[(i, j)]
                    fixed = sum(n for b, n in _bystanders(part, i, j) if b not in movable)
                    if base + sum(min(0, d) for d in delta.values()) + fixed > cap:
                        continue
                    try:
                        c2 = _cascade(part, i, j, movable)
                    except OutOfWork:
                        complete = False
                        raise
                    if c2 is not None and _fits_somehow(c2, cap, movable):
                        out[(i, j, False)] = c2
    except OutOfWork:
        complete = False
        log.info("tiled model: the candidate budget ended the enumeration (%d candidates)", len(out))
    except OutOfTime:
        complete = False
        part.stopped_by = "time"
        log.warning("tiled model: the wall clock ended the enumeration (%d candidates)", len(out))
    finally:
        part.work, part.spent, part.deadline = None, 0, None
        for (i, j, plain) in must:
            if (i, j, plain) not in out:
                c3 = _plain(part, i, movable) if plain else _cascade(part, i, j, movable)
                if c3 is not None:
                    out[c3.key] = c3
        part.work, part.spent, part.deadline = old_work, old_spent, old_deadline
    return sorted(out.values(), key=lambda c: (c.i, c.j, c.stripe_rows == 0)), complete


class TiledPartitionModel:
    """The CP-SAT model of the module docstring over one ``Partitioner``'s candidates."""

    def __init__(self, part: Partitioner, cap: int, candidates: list[Candidate]) -> None:
        self.part, self.cap, self.cands = part, cap, candidates
        g = part.g
        m = self.model = cp_model.CpModel()
        movable = sendable(part)
        used = set().union(*(c.moves for c in candidates)) | {b for c in candidates for b, _ in c.bystanders}
        self.off = {b: m.new_bool_var(f"off[{b}]") for b in sorted(movable & used)}
        self.x = [m.new_bool_var(f"x[{c.i},{c.j},{c.stripe_rows}]") for c in candidates]
        cover: list[list[cp_model.IntVar]] = [[] for _ in range(part.n)]
        makers: dict[BufferId, list[cp_model.IntVar]] = {}
        traffic = []
        for c, x in zip(candidates, self.x):
            for p in range(c.i, c.j + 1):
                cover[p].append(x)
            for b in c.on_chip:
                if b in self.off:
                    m.add_implication(x, self.off[b].negated())
            mem: list[cp_model.LinearExprT] = [c.base]
            for b, d in c.delta.items():
                if b in self.off:
                    mem.append(d * self.off[b])
            for b, n in c.bystanders:
                mem.append(n * (1 - self.off[b]) if b in self.off else n)
            m.add(sum(mem) <= cap).only_enforce_if(x)
            for b in c.moves:
                if b not in self.off:
                    continue
                y = m.new_bool_var(f"y[{c.i},{c.j},{b}]")
                m.add_bool_or([x.negated(), self.off[b].negated(), y])
                traffic.append(g.buffers[b].bytes * y)
                if g.buffers[b].producer in part.order[c.i:c.j + 1]:
                    makers.setdefault(b, []).append(x)
        for xs in cover:
            m.add_exactly_one(xs)
        for b, o in self.off.items():
            # Off-chip only when a chosen cascade makes it and a later one reads it.
            m.add_bool_or(makers.get(b, [])).only_enforce_if(o)
        self.traffic = sum(traffic) if traffic else 0
        self.timed = False
        # Traffic alone: a tie-break on stripes made CP-SAT prove the stripes too (LR-ASPP at
        # 256 KiB: 22.9 s against 4.5 s to optimality); the bands are chosen afterwards.
        m.minimize(self.traffic)

    def hint(self, segs: list[Segment]) -> bool:
        """Hint the heuristic's partition; False when one of its segments is no candidate."""
        got = partition_of(self.part, self.cands, segs)
        if got is None:
            return False
        chosen, off = got
        for k, x in enumerate(self.x):
            self.model.add_hint(x, k in chosen)
        for b, o in self.off.items():
            self.model.add_hint(o, b in off)
        return True

    def solve(self, wall: float, work: float, workers: int, seed: int) -> tuple[list[Candidate], frozenset[BufferId],
                                                                                   int, int, str] | None:
        """The chosen candidates in order, the tensors off-chip, the cut traffic, the proven
        bound on it and the status; None when CP-SAT found no partition."""
        solver = cp_model.CpSolver()
        configure(solver, wall, work, workers, seed)
        status = solver.solve(self.model)
        #: Whether the wall clock (a safety net) rather than the work limit ended the search.
        self.timed = status != cp_model.OPTIMAL and solver.wall_time >= 0.95 * wall
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None
        chosen = [c for c, x in zip(self.cands, self.x) if solver.boolean_value(x)]
        off = frozenset(b for b, o in self.off.items() if solver.boolean_value(o))
        traffic = int(solver.value(self.traffic)) if not isinstance(self.traffic, int) else 0
        bound = traffic if status == cp_model.OPTIMAL else math.ceil(solver.best_objective_bound - 1e-6)
        return (sorted(chosen, key=lambda c: c.i), off, traffic, min(bound, traffic),
                "optimal" if status == cp_model.OPTIMAL else "feasible")


def partition_of(part: Partitioner, cands: Sequence[Candidate],
                 segs: Sequence[Segment]) -> tuple[set[int], set[BufferId]] | None:
    """A partition as indices into ``cands`` and the tensors it sends off-chip; None when one
    of its segments is no candidate (the partition and joint models hint and repair with it)."""
    index = {c.key: k for k, c in enumerate(cands)}
    pos = part.pos
    chosen: set[int] = set()
    off: set[BufferId] = set()
    for s in segs:
        key = (pos[s.ops[0]], pos[s.ops[-1]], s.stripe_rows == 0)
        if key not in index:
            return None
        chosen.add(index[key])
        off |= set(s.dram)
    return chosen, off


def segments_of(part: Partitioner, cap: int, chosen: list[Candidate], off: frozenset[BufferId]) -> list[Segment]:
    """The chosen candidates as the partitioner's segments, each cascade in the tallest band
    that fits with its off-chip tensors (``Partitioner._fit``, as the heuristic's DP does)."""
    g = part.g
    segs: list[Segment] = []
    old_work, old_deadline = part.work, part.deadline
    part.work, part.deadline = None, None
    try:
        for c in chosen:
            dram = frozenset(c.moves & off)
            before = frozenset(b for b in off if part.first.get(b, part.n) < c.i)
            moved = sum(g.buffers[b].bytes for b in dram)
            seg: Segment | None
            if c.stripe_rows == 0:
                seg = part.plain(c.i)
                seg = replace(seg, peak=seg.peak - part.bystanders(c.i, c.i) + part.bystanders(c.i, c.i, before))
            else:
                # A one-step cascade moving nothing becomes a plain step where that fits.
                seg = part._fit(c.i, c.j, cap, dram, before)
                if seg is None:
                    seg = part.cascade(c.i, c.j, c.stripe_rows, dram, before, c.pace_rows)
            assert seg is not None
            segs.append(replace(seg, traffic=moved))
    finally:
        part.work, part.deadline = old_work, old_deadline
    return segs


def cut_traffic(segs: list[Segment]) -> int:
    return sum(s.traffic for s in segs)


def exact_partition(part: Partitioner, cap: int, warm: list[Segment] | None, deadline: float, workers: int,
                    seed: int, work: int = CANDIDATE_WORK, model_work: float = MODEL_WORK,
                    keep_pool: bool = False) -> PartitionResult | None:
    """The model's partition of ``part``'s order at ``cap`` (warm-started with ``warm``), or
    None when it has no candidate partition (``keep_pool``: then a result with no segments,
    status ``none``, and the candidates, for the joint model).  ``deadline`` (``time.monotonic()``): a
    wall-clock safety net for the enumeration and the solve (the work budgets end them first
    on a normal load); when it ends either, ``part.stopped_by`` is ``"time"``."""
    started = time.monotonic()
    pos = part.pos
    must = tuple((pos[s.ops[0]], pos[s.ops[-1]], s.stripe_rows == 0) for s in warm or ())
    cands, complete = enumerate_candidates(part, cap, work, must, deadline)
    model = TiledPartitionModel(part, cap, cands)
    hinted = model.hint(warm) if warm else False
    left = max(0.5, deadline - time.monotonic())
    got = model.solve(left, model_work, workers, seed)
    if model.timed:
        part.stopped_by = "time"   # the wall clock, not the deterministic work limit, ended the solve
    log.info("tiled model: %d candidates (%s), hint %s, %.1fs", len(cands), "complete" if complete else "budget",
             "kept" if hinted else "none", time.monotonic() - started)
    if got is None:
        return PartitionResult((), 0, 0, "none", len(cands), complete, tuple(cands)) if keep_pool else None
    chosen, off, traffic, bound, status = got
    segs = segments_of(part, cap, chosen, off)
    if warm and cut_traffic(warm) <= traffic:
        # Never worse than the warm start by the search's measure (ties keep the heuristic's).
        segs, traffic = list(warm), cut_traffic(warm)
    return PartitionResult(tuple(segs), traffic, bound, status, len(cands), complete, tuple(cands))


__all__ = [
    "CANDIDATE_WORK",
    "MODEL_WORK",
    "Candidate",
    "PartitionResult",
    "TiledPartitionModel",
    "enumerate_candidates",
    "exact_partition",
    "partition_of",
    "segments_of",
    "sendable",
]
