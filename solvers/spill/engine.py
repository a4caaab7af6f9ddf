"""Residency and replacement for a FIXED operator order and compute-level capacity.

``simulate(problem, order, config)`` walks the steps of ``order``.  Before step ``s`` every
buffer the operator needs (``ir.lifetimes.op_buffers``) must be resident in the compute
level: inputs and weights are loaded from their home on demand, buffers that left earlier
are reloaded from wherever a valid copy is (their spill level, or the outputs' home), and
the operator's results get fresh space.  When that space cannot be found, resident buffers
that the step does not need are evicted, chosen by a pluggable ``Policy``:

* ``belady``  -- evict the buffer whose next use is furthest in the future, again and again
  until the request fits (a size-blind classic);
* ``greedy``  -- per decision, the eviction set with the least *added* traffic: a clean
  buffer (a valid copy exists off-chip: inputs, weights, outputs already stored, buffers
  spilled before) costs its reload, a dirty one its store plus its reload;
* ``cost``    -- the heuristic's policy: added traffic (in byte-hops, i.e. weighted by how
  far the copy travels) divided by ``distance ** beta`` where ``distance`` is the number of
  steps until the victim is needed again, so cheap and long-unused buffers go first.

Two ways of assigning addresses (``Config.alloc``):

* ``"online"`` -- an arena (TFLite's ``SimpleMemoryArena``: best fit or first fit among the
  gaps left by resident buffers).  Victims are chosen *allocation-aware*: the policy scores
  every contiguous window ``[x, x + size)`` that contains no pinned buffer by the victims
  overlapping it, so an eviction always opens a hole that is actually usable.  Belady keeps
  evicting in its order until a hole fits and then keeps only the victims that overlap the
  hole it uses.
* ``"bytes"`` -- residency decided on byte counts only (capacity minus ``slack``); the
  resulting placements (fixed step ranges) are then packed offline by
  ``solvers.allocate.allocate_offsets`` under the capacity.  Returns ``None`` when packing
  fails, so the caller can retry with more slack or fall back to ``"online"``.

Timing conventions (those of ``docs/plan-format.md``): a buffer evicted to make room before
step ``s`` ends its placement at the last step that touched it (``<= s - 1``); a dirty
victim is stored ``after`` that step to a writable slower level (``Hierarchy.spill_levels``)
chosen by ``_OffChip``'s rule (below).
Reloads happen ``before`` the step that needs the buffer, possibly at a different offset.
Graph outputs are stored to ``outputs_home`` ``after`` their producing step (compulsory) and
stay resident only while later steps read them.  Clean buffers are dropped without a store.

Off-chip addresses are decided here too, not only byte counts: the engine keeps every
off-chip level's occupancy as address ranges over step ranges (``_OffChip``), with the same
ranges ``solvers.assemble.assemble_plan`` derives -- home data ``[0, end]``, an output from its
store to the end, a spilled buffer from its store (its last touch) to its last use (a superset
of the assembler's "until the last reload") -- and hands the offsets to the assembler
(``SpillResult.offchip`` -> ``assemble_plan(offchip_offsets=...)``).  A bounded spill level (hbm
on sn40l, sdram on mcu-cortex-m7) therefore never overflows and is never fragmented differently
from what the engine assumed.

**Which level a spilled buffer goes to** (multi-level targets): among the writable levels
slower than the compute level that have a free address range for the whole reservation, the
one with the least cost ``bytes x (hops(compute, L) + hops(L, compute))`` (the objective, in
byte-hops), ties broken by transfer time ``bytes / write_bandwidth + bytes / read_bandwidth``
(unknown bandwidths count as infinitely slow), then by nearness.  So a dirty victim goes to hbm
while hbm has an aligned hole for it over its whole off-chip lifetime, and to ddr otherwise;
the victim choice itself sees that price (``evict_cost`` uses the level the buffer would get).
"""

from __future__ import annotations

import bisect
import copy
import heapq
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from stowage.errors import CapacityError
from stowage.ir.graph import Graph, OpIndex, TensorKind
from stowage.ir.lifetimes import op_buffers, op_footprint
from stowage.plan import Transfer
from stowage.solvers.alloc.greedy import Interval
from stowage.solvers.assemble import ComputePlacement, align_up
from stowage.solvers.budgets import m_r_aligned, m_r_operator_aligned
from stowage.solvers.problem import Problem
from stowage.targets.hierarchy import Hierarchy

log = logging.getLogger(__name__)

INF = math.inf
POLICIES = ("belady", "greedy", "cost")
ALLOCS = ("online", "bytes")
FITS = ("best", "first")
_PHASE = {"before": 0, "after": 1}


@dataclass(frozen=True)
class Config:
    """How one simulation decides.

    ``policy``: ``belady`` | ``greedy`` | ``cost`` (see the module docstring).
    ``alloc``: ``online`` (arena, allocation-aware eviction) | ``bytes`` (byte counts, then
    offline packing).  ``fit``: gap choice of the online arena, ``best`` (TFLite) or ``first``.
    ``beta``: distance exponent of the ``cost`` policy (0 = pure least traffic).
    ``slack``: fraction of the capacity held back in ``bytes`` mode so that the offline
    packing has room for fragmentation.  ``pack_time``: seconds for that packing.
    ``exact_pack``: seconds for the exact (MiniMalloc-style) packer when the offline packer
    finds no packing within the capacity (0 = never); worth it where one packing decides
    between zero spill and spilling (the M_P order's lifetimes often pack exactly at M_P when
    the greedy packer ends 6-10% above it)."""

    policy: str = "belady"
    alloc: str = "online"
    fit: str = "best"
    beta: float = 1.0
    slack: float = 0.0
    pack_time: float = 0.5
    seed: int = 0
    exact_pack: float = 0.0


@dataclass(frozen=True)
class SpillResult:
    order: tuple[OpIndex, ...]
    placements: tuple[ComputePlacement, ...]
    transfers: tuple[Transfer, ...]
    noncompulsory: int          # byte-hops of reloads and spill stores
    peak_address: int           # highest end offset in the compute level
    config: Config = field(default_factory=Config)
    #: (buffer, level, offset) of every off-chip placement (homes, outputs, spills); pass as
    #: ``assemble_plan(..., offchip_offsets=result.offchip_offsets())``.
    offchip: tuple[tuple[int, str, int], ...] = ()

    def offchip_offsets(self) -> dict[tuple[int, str], int]:
        return {(b, lvl): off for b, lvl, off in self.offchip}


_M_R_CACHE: dict[tuple[int, bool, int], tuple[Graph, int]] = {}
_USES_CACHE: dict[tuple[int, bool, int], tuple[Graph, tuple[OpIndex, ...], "_Uses"]] = {}


def _m_r(graph: Graph, weights_in_compute_level: bool, alignment: int = 1) -> int:
    """M_R at ``alignment`` (``solvers.budgets.m_r_aligned``), memoised per graph object (a
    search simulates the same graph many times)."""
    key = (id(graph), weights_in_compute_level, alignment)
    hit = _M_R_CACHE.get(key)
    if hit is not None and hit[0] is graph:
        return hit[1]
    value = m_r_aligned(graph, weights_in_compute_level, alignment)
    if len(_M_R_CACHE) > 16:
        _M_R_CACHE.clear()
    _M_R_CACHE[key] = (graph, value)
    return value


def check_capacity(graph: Graph, capacity: int | None, weights_in_compute_level: bool, alignment: int = 1) -> None:
    """Raise ``CapacityError`` naming M_R (at ``alignment``, the same number ``--capacity M_R``
    resolves to on a target with that compute alignment) and its operator when no plan can
    exist."""
    if capacity is None:
        return
    need = _m_r(graph, weights_in_compute_level, alignment)
    if capacity < need:
        op = m_r_operator_aligned(graph, weights_in_compute_level, alignment)
        name = f"'{op.name}' ({op.op_type})" if op else "?"
        setting = "with" if weights_in_compute_level else "without"
        aligned = f", {alignment}-byte aligned" if alignment > 1 else ""
        raise CapacityError(
            f"capacity {capacity} bytes is below M_R = {need} bytes ({setting} weights{aligned}): operator "
            f"{name} alone needs {need} bytes of inputs and outputs resident at once"
        )


class _Uses:
    """Steps at which each buffer is needed in the compute level, for next-use queries
    (per-buffer sorted use lists + bisect).  Read-only after construction, so ``uses_for``
    shares one instance between the simulations of the same order."""

    def __init__(self, graph: Graph, order: Sequence[OpIndex], weights_in_compute_level: bool) -> None:
        self.needs: list[tuple[int, ...]] = []
        self.uses: dict[int, list[int]] = {}
        for s, idx in enumerate(order):
            bs = op_buffers(graph, graph.operators[idx], weights_in_compute_level)
            self.needs.append(bs)
            for b in bs:
                self.uses.setdefault(b, []).append(s)

    def next_use(self, b: int, s: int) -> float:
        u = self.uses[b]
        k = bisect.bisect_left(u, s)
        return u[k] if k < len(u) else INF

    def last_use(self, b: int) -> int:
        return self.uses[b][-1]


def uses_for(graph: Graph, order: tuple[OpIndex, ...], weights_in_compute_level: bool) -> _Uses:
    key = (id(graph), weights_in_compute_level, hash(order))
    hit = _USES_CACHE.get(key)
    if hit is not None and hit[0] is graph and hit[1] == order:
        return hit[2]
    uses = _Uses(graph, order, weights_in_compute_level)
    if len(_USES_CACHE) >= 8:
        _USES_CACHE.pop(next(iter(_USES_CACHE)))
    _USES_CACHE[key] = (graph, order, uses)
    return uses


class _Arena:
    """Resident buffers of the compute level sorted by offset (online mode)."""

    def __init__(self, capacity: int | None, alignment: int) -> None:
        self.capacity = capacity
        self.alignment = alignment
        self.blocks: list[tuple[int, int, int]] = []  # (offset, end, key)
        self.where: dict[int, tuple[int, int, int]] = {}

    def gaps(self, blocks: Sequence[tuple[int, int, int]]):
        start = 0
        for off, end, _ in blocks:
            if off > start:
                yield start, off
            start = max(start, align_up(end, self.alignment))
        yield start, self.capacity if self.capacity is not None else INF

    def find(self, size: int, fit: str, blocks: Sequence[tuple[int, int, int]] | None = None) -> int | None:
        best: tuple[float, int] | None = None
        for lo, hi in self.gaps(self.blocks if blocks is None else blocks):
            if hi - lo >= size:
                if fit == "first":
                    return lo
                cand = (hi - lo, lo)
                if best is None or cand < best:
                    best = cand
        return None if best is None else best[1]

    def insert(self, key: int, off: int, size: int) -> None:
        blk = (off, off + size, key)
        bisect.insort(self.blocks, blk)
        self.where[key] = blk

    def remove(self, key: int) -> None:
        blk = self.where.pop(key)
        k = bisect.bisect_left(self.blocks, blk)
        self.blocks.pop(k)

    def peak(self) -> int:
        return self.blocks[-1][1] if self.blocks else 0


class _OffChip:
    """Occupancy of the off-chip levels as (offset range x step range) rectangles.

    Per level a list sorted by offset of ``(offset, end, first, last)``; ``find`` is first fit
    over the rectangles whose step ranges meet the request (the assembler's rule), so what the
    engine reserves is exactly what the plan will hold.  Rectangles that last to the end of the
    run (home data, stored outputs) conflict with every later request (a request always
    reaches at least the current step), so they are kept apart as merged offset ranges
    (``perm``): thousands of outputs cost a few blocks per query, not thousands."""

    def __init__(self, target: Hierarchy, end: int) -> None:
        self.end = end
        self.perm: dict[str, list[tuple[int, int]]] = {lv.name: [] for lv in target.levels}
        ci = target.index(target.compute_level)
        self.levels = {lv.name: lv for lv in target.levels[ci + 1:]}
        self.items: dict[str, list[tuple[int, int, int, int]]] = {n: [] for n in self.levels}
        self.top: dict[str, int] = {n: 0 for n in self.levels}
        self.version = 0

    def find(self, level: str, size: int, first: int, last: int) -> int | None:
        lv = self.levels[level]
        a = lv.alignment
        off = 0
        items = self.items[level]
        perm = self.perm[level]
        stream = heapq.merge(items, [(o, e, 0, self.end) for o, e in perm]) if perm else items
        for o, e, f, l in stream:
            if l < first or f > last or e <= o:
                continue
            if off + size <= o:
                break
            if e > off:
                off = (e + a - 1) // a * a
        if lv.capacity is not None and off + size > lv.capacity:
            return None
        return off

    def fits(self, level: str, size: int, first: int, last: int) -> bool:
        """Whether ``find`` would succeed; O(1) when the level is unbounded or its top has room."""
        lv = self.levels[level]
        if lv.capacity is None or self.top[level] + size <= lv.capacity:
            return True
        return self.find(level, size, first, last) is not None

    def take(self, level: str, off: int, size: int, first: int, last: int) -> None:
        if last >= self.end:
            self._merge(self.perm[level], off, off + size)
        else:
            bisect.insort(self.items[level], (off, off + size, first, last))
        self.top[level] = max(self.top[level], align_up(off + size, self.levels[level].alignment))
        self.version += 1

    @staticmethod
    def _merge(blocks: list[tuple[int, int]], o: int, e: int) -> None:
        k = bisect.bisect_left(blocks, (o, e))
        if k > 0 and blocks[k - 1][1] >= o:
            k -= 1
            o = blocks[k][0]
            e = max(e, blocks[k][1])
            blocks.pop(k)
        while k < len(blocks) and blocks[k][0] <= e:
            e = max(e, blocks[k][1])
            blocks.pop(k)
        blocks.insert(k, (o, e))

    def prune(self, before: int) -> None:
        """Forget rectangles that end before step ``before``: no later request starts earlier
        (the engine passes the oldest last touch among resident buffers).  Keeps ``find``
        linear in the rectangles that can still conflict, not in all of them."""
        for name, items in self.items.items():
            if items and len(items) > 16:
                self.items[name] = [it for it in items if it[3] >= before]


class _Engine:
    """One simulation: mutable bookkeeping, discarded after ``run``."""

    def __init__(self, problem: Problem, order: Sequence[OpIndex], cfg: Config) -> None:
        self.p = problem
        self.g = problem.graph
        self.t: Hierarchy = problem.target
        self.cfg = cfg
        self.order = tuple(order)
        self.weights_in_compute_level = problem.weights_in_compute_level
        self.cap = problem.capacity
        self.align = self.t.compute.alignment
        self.compute = self.t.compute_level
        self.uses = uses_for(self.g, self.order, self.weights_in_compute_level)
        self.arena = _Arena(self.cap, self.align)
        self.used_bytes = 0                        # bytes-mode occupancy
        self.resident: dict[int, int] = {}         # buffer -> first step of current placement
        self.last_touch: dict[int, int] = {}
        self.valid_at: dict[int, str] = {}         # buffer -> off-chip level with a valid copy
        self.end = max(0, len(self.order) - 1)
        self.placements: list[tuple[int, int, int, int]] = []  # (buffer, offset|-1, first, last)
        self.transfers: list[tuple[int, int, int, Transfer]] = []
        self.seq = 0
        self.noncompulsory = 0
        self.loaded_once: set[int] = set()
        self.spill_levels = self.t.spill_levels()
        names = self.t.level_names
        ci = names.index(self.compute)
        self.hop = {n: abs(i - ci) for i, n in enumerate(names)}
        self.offchip = _OffChip(self.t, self.end)
        self.offchip_at: dict[tuple[int, str], int] = {}
        self._target_cache: dict[int, tuple[int, str]] = {}
        # Home data occupies its home for the whole run, placed first and in buffer order,
        # exactly as ``assemble_plan`` does.
        for b in self.g.buffers:
            home = self._home(b.id)
            if b.kind in (TensorKind.INPUT, TensorKind.WEIGHT) and home is not None:
                self.valid_at[b.id] = home
                self._reserve(b.id, home, 0, self.end)

    def _reserve(self, b: int, level: str, first: int, last: int, off: int | None = None) -> None:
        if level not in self.offchip.levels:  # a home faster than the compute level: the assembler's
            return
        size = self.g.buffers[b].bytes
        if off is None:
            off = self.offchip.find(level, size, first, last)
        if off is None:
            cap = self.offchip.levels[level].capacity
            raise CapacityError(f"level '{level}' ({cap} bytes) cannot also hold "
                                f"'{self.g.buffers[b].tensors[0]}' ({size} bytes)")
        self.offchip.take(level, off, size, first, last)
        self.offchip_at[(b, level)] = off

    # -- helpers ---------------------------------------------------------------------
    def _home(self, b: int) -> str | None:
        buf = self.g.buffers[b]
        if buf.kind is TensorKind.INPUT:
            return self.t.inputs_home
        if buf.kind is TensorKind.WEIGHT:
            return self.t.weights_home
        if buf.is_output:
            return self.t.outputs_home
        return None

    def _emit(self, b: int, src: str, dst: str, step: int, phase: str) -> None:
        self.transfers.append((step, _PHASE[phase], self.seq, Transfer(b, src, dst, step, phase)))
        self.seq += 1

    def spill_target(self, b: int) -> str:
        """The level a dirty ``b`` would be stored to if evicted now: the cheapest level with a
        free range over [last touch, last use] (rule in the module docstring)."""
        hit = self._target_cache.get(b)
        if hit is not None and hit[0] == self.offchip.version:
            return hit[1]
        size = self.g.buffers[b].bytes
        first, last = self.last_touch[b], self.uses.last_use(b)
        best: tuple | None = None
        for key, name in self.level_rank(size):
            if self.offchip.fits(name, size, first, last):
                best = (key, name)
                break
        if best is None:
            raise CapacityError(
                f"no spill level of target '{self.t.name}' has room for buffer {b} ({size} bytes); "
                "enlarge an off-chip level or the compute capacity"
            )
        self._target_cache[b] = (self.offchip.version, best[1])
        return best[1]

    def level_rank(self, size: int) -> list[tuple[tuple, str]]:
        """Spill levels by the cost of a store + reload of ``size`` bytes: byte-hops, then
        transfer seconds from the bandwidths, then nearness."""
        ranked = []
        for i, lv in enumerate(self.spill_levels):
            secs = sum(size / bw if bw else INF for bw in (lv.write_bandwidth, lv.read_bandwidth))
            ranked.append(((2 * size * self.hop[lv.name], secs, i), lv.name))
        ranked.sort()
        return ranked

    def evict_cost(self, b: int) -> int:
        """Byte-hops added by evicting ``b`` now (it is used again: dead buffers are freed)."""
        size = self.g.buffers[b].bytes
        src = self.valid_at.get(b)
        if src is not None:
            return size * self.hop[src]
        return 2 * size * self.hop[self.spill_target(b)]

    # -- residency ---------------------------------------------------------------------
    def evict(self, b: int) -> None:
        first = self.resident.pop(b)
        last = self.last_touch[b]
        if self.cfg.alloc == "online":
            off = self.arena.where[b][0]
            self.arena.remove(b)
        else:
            off = -1
            self.used_bytes -= self.g.buffers[b].bytes
        self.placements.append((b, off, first, last))
        if b not in self.valid_at:  # dirty: store it after its last touch
            lvl = self.spill_target(b)
            self._emit(b, self.compute, lvl, last, "after")
            self.noncompulsory += self.g.buffers[b].bytes * self.hop[lvl]
            self.valid_at[b] = lvl
            self._reserve(b, lvl, last, self.uses.last_use(b))

    def free(self, b: int, s: int) -> None:
        first = self.resident.pop(b)
        if self.cfg.alloc == "online":
            off = self.arena.where[b][0]
            self.arena.remove(b)
        else:
            off = -1
            self.used_bytes -= self.g.buffers[b].bytes
        self.placements.append((b, off, first, s))

    def fork(self, cfg: Config | None = None) -> "_Engine":
        """An independent copy of the state (so a caller can try several continuations from
        the same point -- ``solvers.divide``); ``cfg`` replaces the policy from here on."""
        other = copy.copy(self)
        other.cfg = cfg or self.cfg
        other.arena = _Arena(self.cap, self.align)
        other.arena.blocks = list(self.arena.blocks)
        other.arena.where = dict(self.arena.where)
        other.resident = dict(self.resident)
        other.last_touch = dict(self.last_touch)
        other.valid_at = dict(self.valid_at)
        other.placements = list(self.placements)
        other.transfers = list(self.transfers)
        other.loaded_once = set(self.loaded_once)
        other.offchip = copy.copy(self.offchip)
        other.offchip.items = {k: list(v) for k, v in self.offchip.items.items()}
        other.offchip.perm = {k: list(v) for k, v in self.offchip.perm.items()}
        other.offchip.top = dict(self.offchip.top)
        other.offchip_at = dict(self.offchip_at)
        other._target_cache = {}
        return other

    def run(self, deadline: float | None = None) -> None:
        self.run_steps(0, len(self.order), deadline)

    def run_steps(self, lo: int, hi: int, deadline: float | None = None) -> None:
        """Steps ``lo .. hi - 1`` of the order (the state carries over between calls)."""
        g = self.g
        for s in range(lo, hi):
            idx = self.order[s]
            if s % 32 == 0 and s:
                self.offchip.prune(min((self.last_touch[b] for b in self.resident), default=s))
                if deadline is not None and time.perf_counter() > deadline:
                    raise _OutOfTime()
            op = g.operators[idx]
            needs = self.uses.needs[s]
            pinned = set(needs)
            missing = [b for b in needs if b not in self.resident]
            extra = op.extra_bytes
            if self.cfg.alloc == "online":
                missing = self._place_online(s, missing, pinned, extra)
            else:
                self._place_bytes(s, missing, pinned, extra)
            writes = set(g.op_writes(op))
            for b in missing:
                self.resident[b] = s
                if b in writes:
                    continue
                src = self.valid_at.get(b)
                assert src is not None, f"buffer {b} read before it was produced"
                self._emit(b, src, self.compute, s, "before")
                hops = self.hop[src]
                if b in self.loaded_once or g.buffers[b].kind not in (TensorKind.INPUT, TensorKind.WEIGHT):
                    self.noncompulsory += g.buffers[b].bytes * hops
                self.loaded_once.add(b)
            for b in needs:
                self.last_touch[b] = s
            for b in needs:
                if b in writes and g.buffers[b].is_output:
                    self._emit(b, self.compute, self.t.outputs_home, s, "after")
                    self.valid_at[b] = self.t.outputs_home
                    self._reserve(b, self.t.outputs_home, s, self.end)
            for b in needs:
                if self.uses.last_use(b) == s:
                    self.free(b, s)

    # -- online arena ------------------------------------------------------------------
    def _place_online(self, s: int, missing: list[int], pinned: set[int], extra: int) -> list[int]:
        """Give every missing buffer an offset; returns the buffers placed fresh this step."""
        sizes = {b: self.g.buffers[b].bytes for b in missing}
        reqs: list[tuple[int, int]] = [(b, sizes[b]) for b in missing]
        if extra:
            reqs.append((-1, extra))
        reqs.sort(key=lambda r: (-r[1], r[0]))
        placed: list[int] = []
        for key, size in reqs:
            off = self.arena.find(size, self.cfg.fit)
            if off is None:
                victims = self._choose_window(s, size, pinned | set(placed))
                if victims is None:
                    return self._reset_step(s, reqs, pinned)
                for v in victims:
                    self.evict(v)
                off = self.arena.find(size, self.cfg.fit)
                assert off is not None
            self.arena.insert(key, off, size)
            placed.append(key)
        if extra:
            self.arena.remove(-1)
        return missing

    def _reset_step(self, s: int, reqs: list[tuple[int, int]], pinned: set[int]) -> list[int]:
        """Fragmentation by buffers this step needs blocks every window: evict everything
        resident (the needed ones are reloaded at once) and lay the step out from 0."""
        log.debug("step %d: no usable window; re-laying out the step", s)
        for key, _ in reqs:
            if key in self.arena.where:
                self.arena.remove(key)
        for b in list(self.resident):
            if b in self.arena.where:
                self.evict(b)
        need = [(b, self.g.buffers[b].bytes) for b in pinned]
        if any(k == -1 for k, _ in reqs):
            need.append((-1, next(sz for k, sz in reqs if k == -1)))
        # Largest first, except that the one wasting the most padding goes on top: the step
        # then fits in its aligned footprint, i.e. in any capacity >= the aligned M_R.
        need.sort(key=lambda r: (-r[1], r[0]))
        if len(need) > 1 and self.align > 1:
            top = max(range(len(need)), key=lambda i: (align_up(need[i][1], self.align) - need[i][1], -i))
            need.append(need.pop(top))
        off = 0
        for key, size in need:
            if self.cap is not None and off + size > self.cap:
                op = self.g.operators[self.order[s]]
                raise CapacityError(
                    f"capacity {self.cap} bytes cannot hold operator '{op.name}' ({op.op_type}) with "
                    f"{self.align}-byte alignment: it needs {off + size} bytes "
                    f"(M_R = {_m_r(self.g, self.weights_in_compute_level, self.align)} bytes)"
                )
            self.arena.insert(key, off, size)
            off = align_up(off + size, self.align)
        if -1 in self.arena.where:
            self.arena.remove(-1)
        # Every buffer of the step is placed fresh (needed ones evicted above are reloaded).
        return [b for b in self.uses.needs[s]]

    def _choose_window(self, s: int, size: int, pinned: set[int]) -> list[int] | None:
        blocks = self.arena.blocks
        cands = [blk for blk in blocks if blk[2] not in pinned and blk[2] >= 0]
        if self.cfg.policy == "belady":
            ranked = sorted(cands, key=lambda blk: (-self.uses.next_use(blk[2], s), -blk[1] + blk[0], blk[2]))
            removed: set[int] = set()
            for blk in ranked:
                removed.add(blk[2])
                rest = [x for x in blocks if x[2] not in removed]
                off = self.arena.find(size, self.cfg.fit, rest)
                if off is not None:
                    return [x[2] for x in blocks if x[2] in removed and x[0] < off + size and x[1] > off]
            return None
        best: tuple | None = None
        starts = sorted({0, *(align_up(blk[1], self.align) for blk in blocks)})
        cap = self.cap if self.cap is not None else INF
        for x in starts:
            if x + size > cap:
                break
            k = bisect.bisect_left(blocks, (x, -1, -(10**18)))
            lo = k - 1 if k > 0 and blocks[k - 1][1] > x else k
            victims: list[int] = []
            ok = True
            m = lo
            while m < len(blocks) and blocks[m][0] < x + size:
                key = blocks[m][2]
                if key in pinned or key < 0:
                    ok = False
                    break
                if blocks[m][1] > x:
                    victims.append(key)
                m += 1
            if not ok:
                continue
            score = self._score(victims, s)
            if best is None or score < best[0]:
                best = (score, victims)
        return None if best is None else best[1]

    def _score(self, victims: list[int], s: int) -> tuple:
        nbytes = sum(self.g.buffers[v].bytes for v in victims)
        nearest = min((self.uses.next_use(v, s) for v in victims), default=INF)
        if self.cfg.policy == "greedy":
            traffic = sum(self.evict_cost(v) for v in victims)
            return (traffic, nbytes, -nearest)
        weighted = sum(self.evict_cost(v) / max(1.0, self.uses.next_use(v, s) - s) ** self.cfg.beta
                       for v in victims)
        return (weighted, nbytes, -nearest)

    # -- byte counts -------------------------------------------------------------------
    def _place_bytes(self, s: int, missing: list[int], pinned: set[int], extra: int) -> None:
        limit = (self.cap if self.cap is not None else INF)
        limit = limit - (self.cap or 0) * self.cfg.slack
        need = sum(self.g.buffers[b].bytes for b in missing) + extra
        over = self.used_bytes + need - limit
        if over > 0:
            cands = [b for b in self.resident if b not in pinned]
            if self.cfg.policy == "belady":
                cands.sort(key=lambda b: (-self.uses.next_use(b, s), -self.g.buffers[b].bytes, b))
            elif self.cfg.policy == "greedy":
                cands.sort(key=lambda b: (self.evict_cost(b) / self.g.buffers[b].bytes, -self.uses.next_use(b, s), b))
            else:
                beta = self.cfg.beta
                cands.sort(key=lambda b: (self.evict_cost(b) / self.g.buffers[b].bytes
                                          / max(1.0, self.uses.next_use(b, s) - s) ** beta, b))
            chosen = []
            for b in cands:
                if over <= 0:
                    break
                chosen.append(b)
                over -= self.g.buffers[b].bytes
            if over > 0:
                raise _PackFailed()
            # Drop victims that turned out unnecessary (largest-first filling can overshoot).
            for b in sorted(chosen, key=lambda b: self.g.buffers[b].bytes):
                if over + self.g.buffers[b].bytes <= 0:
                    over += self.g.buffers[b].bytes
                    chosen.remove(b)
            for b in chosen:
                self.evict(b)
        self.used_bytes += need - extra


class _PackFailed(Exception):
    """Bytes mode could not fit (slack too large) or its placements could not be packed."""


class _OutOfTime(Exception):
    """The caller's deadline passed during a simulation."""


def simulate(problem: Problem, order: Sequence[OpIndex], cfg: Config,
             deadline: float | None = None) -> SpillResult | None:
    """Plan residency for ``order``; ``None`` when ``bytes`` mode cannot pack its result, or
    when ``deadline`` (a ``time.perf_counter()`` value, checked every 32 steps) passes."""
    check_capacity(problem.graph, problem.capacity, problem.weights_in_compute_level, problem.target.compute.alignment)
    if cfg.policy not in POLICIES or cfg.alloc not in ALLOCS or cfg.fit not in FITS:
        raise ValueError(f"bad spill config {cfg}")
    eng = _Engine(problem, order, cfg)
    try:
        eng.run(deadline)
    except (_PackFailed, _OutOfTime):
        return None
    return _finish(problem, eng, cfg)


def _finish(problem: Problem, eng: _Engine, cfg: Config) -> SpillResult | None:
    """The result of a completed simulation (packs bytes-mode placements)."""
    order = eng.order
    placements = eng.placements
    if cfg.alloc == "bytes":
        offsets = pack(problem, placements, cfg)
        if offsets is None:
            return None
        placements = [(b, offsets[i], f, l) for i, (b, _, f, l) in enumerate(placements)]
    cps = tuple(ComputePlacement(b, off, f, l) for b, off, f, l in
                sorted(placements, key=lambda p: (p[2], p[1], p[0])))
    transfers = tuple(t for *_, t in sorted(eng.transfers, key=lambda x: x[:3]))
    peak = max((c.offset + problem.graph.buffers[c.buffer].bytes for c in cps), default=0)
    offchip = tuple(sorted((b, lvl, off) for (b, lvl), off in eng.offchip_at.items()))
    return SpillResult(tuple(order), cps, transfers, eng.noncompulsory, peak, cfg, offchip)


def pack(problem: Problem, placements: Sequence[tuple[int, int, int, int]], cfg: Config) -> dict[int, int] | None:
    """Offsets for bytes-mode placements (index -> offset) within the capacity, or None."""
    sizes = [problem.graph.buffers[b].bytes for b, *_ in placements]
    align = problem.target.compute.alignment
    cap = problem.capacity
    try:
        from stowage.solvers.alloc.greedy import Interval, allocate_offsets
    except ImportError:  # the offline allocator not there yet: greedy by size
        return greedy_by_size([(i, f, l, sizes[i]) for i, (_, _, f, l) in enumerate(placements)], align, cap)
    ivs = [Interval(i, f, l, sizes[i]) for i, (_, _, f, l) in enumerate(placements)]
    offsets = allocate_offsets(ivs, alignment=align, capacity=cap, time_limit=cfg.pack_time, seed=cfg.seed)
    if offsets is None and cap is not None and cfg.exact_pack > 0:
        offsets = exact_pack(ivs, align, cap, cfg.exact_pack)
    return offsets


def exact_pack(ivs: Sequence[Interval], alignment: int, capacity: int, time_limit: float) -> dict[int, int] | None:
    """Offsets (by interval id) within ``capacity`` from the exact packer, or None (none found
    in time, or proven impossible).  Sizes and the capacity are counted in alignment units, so
    every offset is aligned (conservative by less than one unit for the topmost buffer)."""
    try:
        from stowage.solvers.alloc.exact import AllocBuffer, solve_allocation
    except ImportError:
        return None
    a = max(1, alignment)
    res = solve_allocation([AllocBuffer(iv.first, iv.last + 1, -(-iv.size // a)) for iv in ivs], capacity // a,
                           time_limit)
    if res.offsets is None:
        return None
    return {iv.id: off * a for iv, off in zip(ivs, res.offsets)}


def greedy_by_size(items: Sequence[tuple[int, int, int, int]], alignment: int, capacity: int | None) -> dict[int, int] | None:
    """TFLite-style greedy-by-size offline packing of (id, first, last, size) items."""
    placed: list[tuple[int, int, int, int]] = []  # (first, last, offset, end)
    out: dict[int, int] = {}
    for i, f, l, size in sorted(items, key=lambda it: (-it[3], it[1], it[0])):
        busy = sorted((o, e) for pf, pl, o, e in placed if not (pl < f or pf > l))
        off = 0
        for o, e in busy:
            if off + size <= o:
                break
            off = max(off, align_up(e, alignment))
        if capacity is not None and off + size > capacity:
            return None
        placed.append((f, l, off, off + size))
        out[i] = off
    return out


def fits_without_spill(problem: Problem, order: Sequence[OpIndex]) -> bool:
    """Whether peak live bytes of ``order`` fit the capacity (necessary for zero spill)."""
    from stowage.ir.lifetimes import peak_live

    return problem.capacity is None or peak_live(problem.graph, order, problem.weights_in_compute_level) <= problem.capacity


__all__ = ["Config", "SpillResult", "simulate", "check_capacity", "pack", "greedy_by_size",
           "fits_without_spill", "POLICIES", "ALLOCS", "FITS", "op_footprint"]
