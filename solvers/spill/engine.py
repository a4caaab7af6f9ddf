"""Residency and replacement for a FIXED operator order and compute-level capacity.

``simulate(problem, order, config)`` walks the steps of ``order``.  Before step ``s`` every
buffer the operator needs (``ir.lifetimes.op_buffers``) must be resident in the compute
level: inputs and weights are loaded from their home on demand, buffers that left earlier
are reloaded from wherever a valid copy is (their spill level, or the outputs' home), and
the operator's results get fresh space.  When that space cannot be found, resident buffers
that the step does not need are evicted, chosen by a policy (``policies``).

Two ways of assigning addresses (``Config.alloc``):

* ``"online"`` -- an arena (``arena``: best fit or first fit among the gaps left by resident
  buffers), with allocation-aware victim choice.
* ``"bytes"`` -- residency decided on byte counts only (capacity minus ``slack``); the
  resulting placements (fixed step ranges) are then packed offline (``packing``).  Returns
  ``None`` when packing fails, so the caller can retry with more slack or go online.

Timing conventions (those of ``docs/plan-format.md``): a buffer evicted to make room before
step ``s`` ends its placement at the last step that touched it (``<= s - 1``); a dirty
victim is stored ``after`` that step to a writable slower level.  Reloads happen ``before``
the step that needs the buffer, possibly at a different offset.  Graph outputs are stored to
``outputs_home`` ``after`` their producing step (compulsory) and stay resident only while
later steps read them.  Clean buffers are dropped without a store.

Off-chip addresses are decided here too, not only byte counts (``offchip``, the same
occupancy rule ``solvers.assemble.assemble_plan`` uses): home data ``[0, end]``, an output
from its store to the end, a spilled buffer from its store (its last touch) to its last use
(a superset of the assembler's "until the last reload"); the offsets go to the assembler
(``SpillResult.offchip`` -> ``assemble_plan(offchip_offsets=...)``), so a bounded spill level
never overflows and is never fragmented differently from what the engine assumed.

**Which level a spilled buffer goes to**: the first of ``CostModel.spill_rank`` (byte-hops of
a store + reload, then transfer time, then nearness) with a free address range over the whole
reservation; the victim choice sees that price (``evict_cost``).

A simulation can be paused and forked (``SpillEngine.run_steps`` / ``fork``): everything it
changes lives in one ``EngineState`` record, copied field by field, so ``solvers.divide`` can
try several continuations from one point.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TypeVar

from stowage.errors import CapacityError
from stowage.ir.graph import OpIndex, TensorKind
from stowage.plan import Transfer
from stowage.solvers import work_meter
from stowage.solvers.alloc.interval import Interval, align_up, peak_address
from stowage.solvers.budgets import check_capacity, m_r_cached
from stowage.solvers.cache import graph_cached
from stowage.solvers.costs import CostModel, home_level
from stowage.solvers.problem import Problem
from stowage.solvers.spill.arena import Arena
from stowage.solvers.spill.config import Config, SpillResult
from stowage.solvers.spill.offchip import OffChip
from stowage.solvers.spill.packing import pack
from stowage.solvers.spill.policies import bytes_order, window_victims
from stowage.solvers.spill.uses import Uses, uses_for

log = logging.getLogger(__name__)

_PHASE = {"before": 0, "after": 1}
_IMMUTABLE = (int, float, str, bool, tuple, frozenset, type(None))
_T = TypeVar("_T")


class PackFailed(Exception):
    """Bytes mode could not fit (slack too large) or its placements could not be packed."""


class OutOfTime(Exception):
    """The caller's deadline passed during a simulation."""


@dataclass
class EngineState:
    """Everything a simulation changes while it runs.  One record so that ``copy`` (and so
    ``SpillEngine.fork``) copies it generically, field by field: a field added here is copied
    too, never shared between two forks by accident.  Every mutable field has a ``copy()``
    whose elements are immutable (ints, strings, tuples, frozen dataclasses) or copy
    themselves (``Arena``, ``OffChip``)."""

    arena: Arena
    offchip: OffChip
    used_bytes: int = 0                                               # bytes-mode occupancy
    resident: dict[int, int] = field(default_factory=dict)            # buffer -> first step of its placement
    last_touch: dict[int, int] = field(default_factory=dict)
    valid_at: dict[int, str] = field(default_factory=dict)            # buffer -> off-chip level with a valid copy
    placements: list[Interval] = field(default_factory=list)          # offset None in bytes mode
    transfers: list[tuple[int, int, int, Transfer]] = field(default_factory=list)  # (step, phase, seq, transfer)
    seq: int = 0
    noncompulsory: int = 0
    loaded_once: set[int] = field(default_factory=set)
    offchip_at: dict[tuple[int, str], int] = field(default_factory=dict)

    def copy(self) -> EngineState:
        return EngineState(**{f.name: _copied(getattr(self, f.name)) for f in fields(self)})


def _copied(value: _T) -> _T:
    """``value`` itself when it is immutable, else its ``copy()`` (of the same type)."""
    if isinstance(value, _IMMUTABLE):
        return value
    return value.copy()  # type: ignore[attr-defined]  # a mutable field without copy() fails loudly


class SpillEngine:
    """One simulation of ``order`` under ``cfg``: the run's fixed facts as attributes, its
    mutable bookkeeping in ``state``."""

    def __init__(self, problem: Problem, order: Sequence[OpIndex], cfg: Config,
                 state: EngineState | None = None, uses: Uses | None = None,
                 costs: CostModel | None = None) -> None:
        self.problem = problem
        self.graph = problem.graph
        self.target = problem.target
        self.cfg = cfg
        self.order = tuple(order)
        self.weights_in_compute_level = problem.weights_in_compute_level
        self.capacity = problem.capacity
        self.alignment = self.target.compute.alignment
        self.compute = self.target.compute_level
        self.end = max(0, len(self.order) - 1)
        # Fixed facts of the run; a fork shares them (they are read-only) instead of rebuilding.
        self.uses = uses if uses is not None else uses_for(self.graph, self.order, self.weights_in_compute_level)
        self.costs = costs if costs is not None else CostModel(self.target)
        # A memo, not state: (offchip version, level) per buffer; a fork starts it empty.
        self._spill_memo: dict[int, tuple[int, str]] = {}
        if state is not None:
            self.state = state
            return
        self.state = EngineState(Arena(self.capacity, self.alignment), OffChip(self.target, self.end))
        # Home data occupies its home for the whole run, placed first and in buffer order,
        # exactly as ``assemble_plan`` does.
        for b in self.graph.buffers:
            home = home_level(self.graph, self.target, b.id)
            if b.kind in (TensorKind.INPUT, TensorKind.WEIGHT) and home is not None:
                self.state.valid_at[b.id] = home
                self._reserve(b.id, home, 0, self.end)

    @property
    def noncompulsory(self) -> int:
        """Byte-hops of reloads and spill stores so far."""
        return self.state.noncompulsory

    def fork(self, cfg: Config | None = None) -> SpillEngine:
        """An independent copy of the simulation at this point (so a caller can try several
        continuations -- ``solvers.divide``); ``cfg`` replaces the policy from here on."""
        return SpillEngine(self.problem, self.order, cfg or self.cfg, self.state.copy(), self.uses, self.costs)

    # -- off-chip reservations and prices ----------------------------------------------
    def _reserve(self, b: int, level: str, first: int, last: int, off: int | None = None) -> None:
        st = self.state
        if level not in st.offchip:  # a home faster than the compute level: the assembler's
            return
        size = self.graph.buffers[b].bytes
        if off is None:
            off = st.offchip.find(level, size, first, last)
        if off is None:
            raise CapacityError(f"level '{level}' ({st.offchip.capacity(level)} bytes) cannot also hold "
                                f"'{self.graph.buffers[b].tensors[0]}' ({size} bytes)")
        st.offchip.take(level, off, size, first, last)
        st.offchip_at[(b, level)] = off

    def _emit(self, b: int, src: str, dst: str, step: int, phase: str) -> None:
        st = self.state
        st.transfers.append((step, _PHASE[phase], st.seq, Transfer(b, src, dst, step, phase)))
        st.seq += 1

    def spill_target(self, b: int) -> str:
        """The level a dirty ``b`` would be stored to if evicted now: the best of
        ``CostModel.spill_rank`` with a free range over [last touch, last use]."""
        offchip = self.state.offchip
        hit = self._spill_memo.get(b)
        if hit is not None and hit[0] == offchip.version:
            return hit[1]
        size = self.graph.buffers[b].bytes
        first, last = self.state.last_touch[b], self.uses.last_use(b)
        chosen = next((lv.name for _, lv in self.costs.spill_rank(size)
                       if offchip.fits(lv.name, size, first, last)), None)
        if chosen is None:
            raise CapacityError(
                f"no spill level of target '{self.target.name}' has room for buffer {b} ({size} bytes); "
                "enlarge an off-chip level or the compute capacity"
            )
        self._spill_memo[b] = (offchip.version, chosen)
        return chosen

    def evict_cost(self, b: int) -> int:
        """Byte-hops added by evicting ``b`` now (it is used again: dead buffers are freed)."""
        size = self.graph.buffers[b].bytes
        src = self.state.valid_at.get(b)
        if src is not None:
            return self.costs.copy_cost(size, src)
        return 2 * self.costs.copy_cost(size, self.spill_target(b))

    # -- residency ---------------------------------------------------------------------
    def _release(self, b: int, last: int) -> None:
        """End ``b``'s current compute placement at step ``last``."""
        st = self.state
        first = st.resident.pop(b)
        size = self.graph.buffers[b].bytes
        off: int | None = None
        if self.cfg.alloc == "online":
            off = st.arena.where[b][0]
            st.arena.remove(b)
        else:
            st.used_bytes -= self.counted(size)
        st.placements.append(Interval(b, first, last, size, off))

    def evict(self, b: int) -> None:
        """Make room: drop ``b``, storing it first when no valid copy exists off-chip."""
        st = self.state
        last = st.last_touch[b]
        self._release(b, last)
        if b not in st.valid_at:  # dirty: store it after its last touch
            lvl = self.spill_target(b)
            self._emit(b, self.compute, lvl, last, "after")
            st.noncompulsory += self.costs.copy_cost(self.graph.buffers[b].bytes, lvl)
            st.valid_at[b] = lvl
            self._reserve(b, lvl, last, self.uses.last_use(b))

    def free(self, b: int, s: int) -> None:
        """``b`` is dead after step ``s``."""
        self._release(b, s)

    def run(self, deadline: float | None = None) -> None:
        self.run_steps(0, len(self.order), deadline)

    def run_steps(self, lo: int, hi: int, deadline: float | None = None) -> None:
        """Steps ``lo .. hi - 1`` of the order (the state carries over between calls); raises
        ``OutOfTime`` when ``deadline`` (a ``time.perf_counter()`` value, checked every 32
        steps) passes, ``PackFailed`` when bytes mode cannot make room."""
        g, st = self.graph, self.state
        # The steps count as work whether or not the run completes (``solvers.work_meter``).
        work_meter.add_steps(max(0, hi - lo))
        for s in range(lo, hi):
            idx = self.order[s]
            if s % 32 == 0 and s:
                st.offchip.prune(min((st.last_touch[b] for b in st.resident), default=s))
                if deadline is not None and time.perf_counter() > deadline:
                    raise OutOfTime()
            op = g.operators[idx]
            needs = self.uses.needs[s]
            pinned = set(needs)
            missing = [b for b in needs if b not in st.resident]
            extra = op.extra_bytes
            if self.cfg.alloc == "online":
                missing = self._place_online(s, missing, pinned, extra)
            else:
                self._place_bytes(s, missing, pinned, extra)
            writes = self.uses.writes[s]
            for b in missing:
                st.resident[b] = s
                if b in writes and b not in st.valid_at:
                    continue  # (a Concat-in-place buffer a later writer adds to is reloaded)
                src = st.valid_at.get(b)
                assert src is not None, f"buffer {b} read before it was produced"
                self._emit(b, src, self.compute, s, "before")
                if b in st.loaded_once or g.buffers[b].kind not in (TensorKind.INPUT, TensorKind.WEIGHT):
                    st.noncompulsory += self.costs.copy_cost(g.buffers[b].bytes, src)
                st.loaded_once.add(b)
            for b in needs:
                st.last_touch[b] = s
            for b in needs:
                if (b in writes and g.buffers[b].writers and b in st.valid_at and not g.buffers[b].is_output
                        and (op.fused or idx != g.buffers[b].writers[-1])):
                    # A later writer of a Concat-in-place buffer with a copy off-chip: keep
                    # that copy current (write-through), or a reload would bring stale bytes
                    # (the Concat itself, the last writer, changes no byte unless an in-place
                    # operator runs in its step).
                    self._emit(b, self.compute, st.valid_at[b], s, "after")
                    st.noncompulsory += self.costs.copy_cost(g.buffers[b].bytes, st.valid_at[b])
            for b in needs:
                if b in writes and g.buffers[b].is_output:
                    self._emit(b, self.compute, self.target.outputs_home, s, "after")
                    st.valid_at[b] = self.target.outputs_home
                    self._reserve(b, self.target.outputs_home, s, self.end)
            for b in needs:
                if self.uses.last_use(b) == s:
                    self.free(b, s)

    # -- online arena ------------------------------------------------------------------
    def _place_online(self, s: int, missing: list[int], pinned: set[int], extra: int) -> list[int]:
        """Give every missing buffer an offset; returns the buffers placed fresh this step."""
        arena = self.state.arena
        reqs: list[tuple[int, int]] = [(b, self.graph.buffers[b].bytes) for b in missing]
        if extra:
            reqs.append((-1, extra))
        reqs.sort(key=lambda r: (-r[1], r[0]))
        placed: list[int] = []
        for key, size in reqs:
            off = arena.find(size, self.cfg.fit)
            if off is None:
                victims = window_victims(self, s, size, pinned | set(placed))
                if victims is None:
                    return self._reset_step(s, reqs, pinned)
                for v in victims:
                    self.evict(v)
                off = arena.find(size, self.cfg.fit)
                assert off is not None
            arena.insert(key, off, size)
            placed.append(key)
        if extra:
            arena.remove(-1)
        return missing

    def _reset_step(self, s: int, reqs: list[tuple[int, int]], pinned: set[int]) -> list[int]:
        """Fragmentation by buffers this step needs blocks every window: evict everything
        resident (the needed ones are reloaded at once) and lay the step out from 0."""
        log.debug("step %d: no usable window; re-laying out the step", s)
        arena = self.state.arena
        for key, _ in reqs:
            if key in arena.where:
                arena.remove(key)
        for b in list(self.state.resident):
            if b in arena.where:
                self.evict(b)
        need = [(b, self.graph.buffers[b].bytes) for b in pinned]
        if any(k == -1 for k, _ in reqs):
            need.append((-1, next(sz for k, sz in reqs if k == -1)))
        # Largest first, except that the one wasting the most padding goes on top: the step
        # then fits in its aligned footprint, i.e. in any capacity >= the aligned M_R.
        need.sort(key=lambda r: (-r[1], r[0]))
        align = self.alignment
        if len(need) > 1 and align > 1:
            top = max(range(len(need)), key=lambda i: (align_up(need[i][1], align) - need[i][1], -i))
            need.append(need.pop(top))
        off = 0
        for key, size in need:
            if self.capacity is not None and off + size > self.capacity:
                op = self.graph.operators[self.order[s]]
                raise CapacityError(
                    f"capacity {self.capacity} bytes cannot hold operator '{op.name}' ({op.op_type}) with "
                    f"{align}-byte alignment: it needs {off + size} bytes "
                    f"(M_R = {m_r_cached(self.graph, self.weights_in_compute_level, align)} bytes)"
                )
            arena.insert(key, off, size)
            off = align_up(off + size, align)
        if -1 in arena.where:
            arena.remove(-1)
        # Every buffer of the step is placed fresh (needed ones evicted above are reloaded).
        return list(self.uses.needs[s])

    # -- byte counts -------------------------------------------------------------------
    def counted(self, size: int) -> int:
        """What ``size`` bytes occupy in bytes mode: rounded up to the compute alignment,
        since the offline packer places every buffer at an aligned offset.  Counting raw
        bytes let a residency "fit" that no packing can hold -- at alignment 16 a few bytes
        over -- and the slack ladder's next step then spilled whole buffers around single
        steps (issue 14's packing misses)."""
        return align_up(size, self.alignment)

    def _place_bytes(self, s: int, missing: list[int], pinned: set[int], extra: int) -> None:
        st, buffers = self.state, self.graph.buffers
        limit = self.capacity if self.capacity is not None else float("inf")
        # The topmost buffer of a packing needs no padding: aligned sizes may exceed the
        # capacity by less than one alignment unit (a necessary condition; the packer decides).
        limit = limit - (self.capacity or 0) * self.cfg.slack + (self.alignment - 1)
        need = sum(self.counted(buffers[b].bytes) for b in missing) + self.counted(extra)
        over = st.used_bytes + need - limit
        if over > 0:
            chosen = []
            for b in bytes_order(self, [b for b in st.resident if b not in pinned], s):
                if over <= 0:
                    break
                chosen.append(b)
                over -= self.counted(buffers[b].bytes)
            if over > 0:
                raise PackFailed()
            # Drop victims that turned out unnecessary (largest-first filling can overshoot).
            for b in sorted(chosen, key=lambda b: buffers[b].bytes):
                if over + self.counted(buffers[b].bytes) <= 0:
                    over += self.counted(buffers[b].bytes)
                    chosen.remove(b)
            for b in chosen:
                self.evict(b)
        st.used_bytes += need - self.counted(extra)

    # -- the result --------------------------------------------------------------------
    def finish(self) -> SpillResult | None:
        """The result of a completed simulation (packs bytes-mode placements; ``None`` when
        that packing fails)."""
        st = self.state
        placements = list(st.placements)
        if self.cfg.alloc == "bytes":
            offsets = pack(self.problem, placements, self.cfg)
            if offsets is None:
                return None
            placements = [replace(iv, offset=offsets[i]) for i, iv in enumerate(placements)]
        cps = tuple(sorted(placements, key=lambda p: (p.first, p.offset, p.id)))
        transfers = tuple(t for *_, t in sorted(st.transfers, key=lambda x: x[:3]))
        offchip = tuple(sorted((b, lvl, off) for (b, lvl), off in st.offchip_at.items()))
        return SpillResult(self.order, cps, transfers, st.noncompulsory, peak_address(cps), self.cfg, offchip)


#: Completed online simulations kept per graph (``simulate``'s memo).
MEMO_ENTRIES = 6


def simulate(problem: Problem, order: Sequence[OpIndex], cfg: Config,
             deadline: float | None = None) -> SpillResult | None:
    """Plan residency for ``order``; ``None`` when ``bytes`` mode cannot pack its result, or
    when ``deadline`` (a ``time.perf_counter()`` value, checked every 32 steps) passes.

    Completed ``online`` runs are memoised per graph (the last ``MEMO_ENTRIES``, keyed by
    target, setting, order and configuration): they depend on nothing else, and a planner's
    portfolio and the baselines it keeps as candidates run some of the same simulations
    (the min-peak order with Belady and greedy replacement; on 10,000 operators 0.3-0.9 s
    each).  Bytes-mode runs are not memoised: their packing has a time budget."""
    check_capacity(problem.graph, problem.capacity, problem.weights_in_compute_level, problem.target.compute.alignment)
    cfg.check()
    order = tuple(order)
    memo: OrderedDict[Hashable, SpillResult] | None = None
    key: Hashable = None
    if cfg.alloc == "online":
        memo = graph_cached("spill.simulate", problem.graph, "memo", OrderedDict[Hashable, SpillResult])
        key = (problem.target, problem.weights_in_compute_level, order, cfg)
        hit = memo.get(key)
        if hit is not None:
            memo.move_to_end(key)
            # Charged as the run it saves (``solvers.work_meter``), so a work budget does not
            # depend on what this process happened to simulate before.
            work_meter.add_steps(len(order))
            return hit
    eng = SpillEngine(problem, order, cfg)
    try:
        eng.run(deadline)
    except (PackFailed, OutOfTime):
        return None
    res = eng.finish()
    if memo is not None and res is not None:
        memo[key] = res
        while len(memo) > MEMO_ENTRIES:
            memo.popitem(last=False)
    return res


__all__ = ["MEMO_ENTRIES", "EngineState", "OutOfTime", "PackFailed", "SpillEngine", "simulate"]
