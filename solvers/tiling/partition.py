"""Which steps run as cascades, and in bands of how many rows: DPs over cut points.

Along the file order of the (in-place fused) graph, a segment ``[i..j]`` of row-tileable steps
is a candidate cascade; its cost at a capacity is its peak as one step (whole operands and
results, rings, weights when resident) plus the *bystanders*, buffers live across the segment
in that order that it does not touch.  A segment's bands are ``h`` rows of its end tensor, or
``h`` rows of its tallest tensor when that is finer than one end row (``ladder``).  Three
searches:

1. ``fewest_stripes``: among partitions whose every segment fits the capacity, the one with
   the fewest stripes, each cascade taking the tallest band that fits (Vela keeps the largest
   stripe that fits: fewer commands, better utilisation); branch and bound, exact;
2. ``least_traffic``: when no such partition exists, the one moving the fewest bytes through
   off-chip memory at its cuts (a DP over cut states, in rounds of longer cascades);
3. ``min_peak``: the partition minimising the largest segment peak (finest bands), the
   fallback whose bystanders the whole-tensor planner spills: when even it does not fit with
   its bystanders, only each cascade's own footprint must fit, which the caller checks.

The searches are deterministic: a segment's footprint for any boundary modes comes from one
memoised stripe walk (``stowage.solvers.tiling.footprint``), and a work budget
(``WORK_BUDGET``, ``OutOfWork``) ends a search the same way on an idle and a loaded machine.
The wall-clock ``deadline`` stays as a safety net (``OutOfTime``; ``stopped_by = "time"``,
which the plan records).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import combinations

from stowage.ir.columns import column_tensors, has_rows, mixed_buffer, transposed_columns
from stowage.ir.graph import BufferId, Graph, OpIndex, TensorKind
from stowage.ir.lifetimes import lifetimes
from stowage.ir.tiling import DILATED, accumulates, buffer_row_bytes, row_units, rows
from stowage.solvers.alloc.interval import align_up
from stowage.solvers.tiling.alias import ring_aliases
from stowage.solvers.tiling.footprint import Windows, walk_windows
from stowage.solvers.tiling.program import NotTileable, Program, stripe_program
from stowage.solvers.tiling.slotfit import SlotCache, slot_peak

log = logging.getLogger(__name__)

#: Longest cascade tried (steps); Vela's cascades are shorter, the design notes used 12.
MAX_LEN = 16
#: Band heights tried, tallest kept when it fits.
HEIGHTS = (1, 2, 4, 8, 16)
#: A column cascade's (``stowage.ir.columns``) bands are ``HEIGHTS`` groups of
#: ``positions // COLUMN_BANDS`` positions (at least one): a position is one element per channel,
#: so a group of 16 of YOLOv8's 2,100 costs 16 x 82 B, and walks run 16x fewer bands.
COLUMN_BANDS = 128
#: States (sets of intermediates off-chip) kept per cut by ``least_traffic``.
#: Measured (idle 2-core VM): MobileNetV2 at 160/128/96/64 KiB gives the same traffic with 2,
#: 4 or 8 states; DenseNet-121 at 256 KiB takes 28 s with 2 and 211 s with 8, for 11% less
#: traffic with 8; but with 2 the tiny CNN at 3/4 of M_R on ethos-u65-256 finds no plan (3 do).
#: The state with the most bytes off-chip is kept besides these.
MAX_STATES = 4
#: Work one search (``fewest_stripes``, ``least_traffic``) may do before it stops with
#: ``OutOfWork``, in operand rows walked (``footprint.walk_windows``: per band of a walk, one
#: per row unit plus one per operand it reads in rows): a budget, not a clock, so the same
#: command gives the same plan on an idle and a loaded machine.  MobileNetV2 needs at most
#: ~600,000 (least traffic at 144 KiB); DenseNet-121 at 256 KiB completes the 8-step round
#: only (``ROUNDS``).
WORK_BUDGET = 1_000_000
#: Longest cascades of each round of ``least_traffic``: a round that completes within the work
#: budget replaces the previous round's partition (graphs with long-lived tensors, DenseNet,
#: cannot afford every 16-step segment).
ROUNDS = (4, 8, 12, MAX_LEN)
#: Whether searches may fit a segment with its rows addressed by slot (``slotfit``) when its
#: rings miss the capacity: ``Partitioner.slot_rows``' default.
SLOT_ROWS = True
#: In the planner's search with rows by slot (``slotfit.least_traffic_packed``), ``_fit``
#: walks a segment whose ring bound (``_bound``) is at most this many times the capacity: the
#: bound holds every ring at least one stripe's reads for the whole cascade, which rows
#: counted per instant do not need.  MobileNetV2's stem to block 3 at 64 KiB: 78,624 B bound
#: (1.20x), 62,944 B live at its busiest stripe; in the int8 files, whose float input is
#: quantized inside that cascade, more (1.2 misses their 213,248 B plan).  The same slack as
#: ``slotfit.SLACK``, the rings' footprint a slot try accepts.
BOUND_SLACK = 1.35


@dataclass(frozen=True)
class Segment:
    ops: tuple[OpIndex, ...]
    stripe_rows: int          # 0: a plain step (whole tensors)
    peak: int                 # with bystanders, aligned
    #: Intermediate buffers this cascade stores to or loads from off-chip memory row by row.
    dram: frozenset[BufferId] = frozenset()
    #: Bytes those row transfers move (each row once per direction and cascade).
    traffic: int = 0
    #: 0: bands of ``stripe_rows`` rows of the end tensor; else of a tensor that tall (the
    #: cascade's tallest), finer than one end row before a stride-2 step.
    pace_rows: int = 0
    #: Its rows addressed by slot (``slotfit``): ``peak`` counts their packed region, not rings.
    slotted: bool = False


class OutOfTime(Exception):
    """A search passed ``Partitioner.deadline`` (the wall-clock safety net)."""


class OutOfWork(Exception):
    """A search used up ``Partitioner.work`` stripe walks (deterministic)."""


class Partitioner:
    """Segment costs for one graph, setting and alignment, memoised."""

    def __init__(self, graph: Graph, weights: bool, alignment: int = 1, deadline: float | None = None,
                 work: int | None = WORK_BUDGET, order: tuple[OpIndex, ...] | None = None,
                 shared: dict[tuple[tuple[OpIndex, ...], int, int], Windows | None] | None = None) -> None:
        #: ``time.monotonic()`` after which the searches give up (``OutOfTime``): a safety net
        #: for a compile's time limit on an overloaded machine; the work budget normally ends
        #: a search first.
        self.deadline = deadline
        #: Work (member stripes walked) a search may do before ``OutOfWork`` (None:
        #: unbounded); ``spent`` counts it for the current search, ``walks`` the walks made.
        self.work = work
        self.spent = 0
        self.walks = 0
        #: The longest cascades the last ``least_traffic`` searched completely.
        self.reach = MAX_LEN
        #: ``"time"`` once the deadline ended a search (the caller records it in the plan).
        self.stopped_by: str | None = None
        #: Whether ``_fit`` may address a segment's rows by slot when its rings miss the
        #: capacity (``slotfit``; the plan's cascades then carry ``CascadeTensor.slots``).
        self.slot_rows = SLOT_ROWS
        self.slot_cache = SlotCache()
        self._windows: dict[tuple[int, int, int, int], Windows | None] = {}
        #: Walks keyed by the run's steps, band and pace, which a partitioner of another order of
        #: the same graph and setting may pass in (``stowage.solvers.tiling.orders``): a walk
        #: depends on the steps and their sequence only, not on where they sit in the order, and
        #: one already made costs no work.
        self.shared = shared
        self._own: dict[tuple[int, int, int, int, frozenset[BufferId]], int | None] = {}
        self._ladder: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self._safe: dict[tuple[int, int], bool] = {}
        self._deps: dict[OpIndex, frozenset[OpIndex]] | None = None
        self._succs: dict[OpIndex, set[OpIndex]] = {}
        self.g, self.weights, self.align = graph, weights, max(1, alignment)
        #: The operator order the cut points run along: the file order, or another topological
        #: order (``order``; ``stowage.solvers.exact.tiled_model`` offers the min-peak one).
        #: In another order a run of steps is a cascade only when ``macro_safe`` (the macro
        #: graph puts a cascade at its first step's index, and its file order must stay
        #: topological).
        self.order = graph.file_order() if order is None else tuple(order)
        self.file = self.order == graph.file_order()
        self.n = len(self.order)
        self.pos = {op: p for p, op in enumerate(self.order)}
        #: Each step's row units (``ir.tiling.row_units``; None: it needs whole tensors).
        self.units = [row_units(graph, graph.operators[i]) for i in self.order]
        self.tileable = [u is not None for u in self.units]
        self._rowb: dict[BufferId, int] = {}
        self._mov: dict[BufferId, bool] = {}
        self._send: dict[BufferId, bool] = {}
        lt = lifetimes(graph, self.order, weights)
        self.first, self.last = dict(lt.first), dict(lt.last)
        self.touch: list[set[BufferId]] = []
        for i in self.order:
            op = graph.operators[i]
            self.touch.append({*graph.op_reads(op), *graph.op_writes(op)})
        self._by: dict[tuple[int, int], frozenset[BufferId]] = {}
        self._whole: dict[tuple[int, int], tuple[int, dict[BufferId, int]]] = {}
        self._parts_memo: dict[tuple[int, int], tuple[list[BufferId], list[BufferId], set[BufferId],
                                                      dict[BufferId, int], int]] = {}
        self._outside: dict[tuple[int, int], dict[BufferId, bool]] = {}
        # Buffers live just before each position (made earlier, still needed there or later).
        self.live_at: list[frozenset[BufferId]] = []
        for p in range(self.n):
            self.live_at.append(frozenset(b for b, f in self.first.items() if f < p <= self.last[b]))

    def _a(self, n: int) -> int:
        return align_up(n, self.align)

    def bystander_set(self, i: int, j: int) -> frozenset[BufferId]:
        """Buffers live across positions ``i..j`` (in this order) that the segment does not touch."""
        key = (i, j)
        if key not in self._by:
            inside = set().union(*self.touch[i:j + 1])
            self._by[key] = frozenset(b for b in self.live_at[i] if self.last[b] > j and b not in inside
                                      and self.first[b] < i)
        return self._by[key]

    def bystanders(self, i: int, j: int, off_chip: frozenset[BufferId] = frozenset()) -> int:
        return sum(self._a(self.g.buffers[b].bytes) for b in self.bystander_set(i, j) if b not in off_chip)

    def plain(self, i: int) -> Segment:
        g, op = self.g, self.g.operators[self.order[i]]
        own = sum(self._a(g.buffers[b].bytes) for b in self.touch[i]
                  if self.weights or g.buffers[b].kind.value != "weight") + op.extra_bytes
        return Segment((self.order[i],), 0, own + self.bystanders(i, i))

    def outside(self, i: int, j: int) -> dict[BufferId, bool]:
        key = (i, j)
        if key not in self._outside:
            inside = set(self.order[i:j + 1])
            bufs = set().union(*self.touch[i:j + 1])
            self._outside[key] = {b: any(c not in inside for c in self.g.buffers[b].consumers) for b in bufs}
        return self._outside[key]

    def program(self, i: int, j: int, h: int, record: bool = False,
                dram: frozenset[BufferId] = frozenset(), pace: int = 0, stage: bool = True) -> Program:
        return stripe_program(self.g, tuple(self.order[i:j + 1]), h, self.outside(i, j), record=record, dram=dram,
                              pace_rows=pace, stage=stage)

    def ladder(self, i: int, j: int) -> list[tuple[int, int]]:
        """Band choices ``(stripe_rows, pace_rows)`` for segment ``[i..j]``, least memory first:
        bands finer than one end row (``h`` rows of the tallest member, for each ``h`` in
        ``HEIGHTS`` under the ratio of the tallest to the end), then ``HEIGHTS`` rows of the end."""
        key = (i, j)
        if key not in self._ladder:
            g = self.g
            heights = [0]
            cols, swapped = column_tensors(g), transposed_columns(g)
            for p in range(i, j + 1):
                for u in self.units[p] or ():
                    r = rows(g, g.tensors[u.output])
                    # A member in columns (thousands of positions: a head output made inside
                    # a segment ending elsewhere, PicoDet's) paces as its COLUMN_BANDS groups,
                    # not as thousands of rows: it would make the walk run a band per position.
                    heights.append(r // max(1, r // COLUMN_BANDS) if u.output in cols or u.output in swapped else r)
            heights.append(self._end_rows(self.order[j]))
            end = self._end_rows(self.order[j])
            tallest = max(heights)
            fine = [(h, tallest) for h in HEIGHTS if h * end < tallest] if 0 < end < tallest else []
            # A column cascade (rows along N, ``stowage.ir.columns``: a detection head's 2,100
            # positions of a few dozen bytes each) bands by groups of positions: its finest
            # band is 1/COLUMN_BANDS of them, so a walk runs at most that many bands.
            units = self.units[j] or ()
            group = (max(1, end // COLUMN_BANDS) if units and (units[-1].output in column_tensors(g)
                                                                or units[-1].output in transposed_columns(g)) else 1)
            self._ladder[key] = fine + [(h * group, 0) for h in HEIGHTS]
        return self._ladder[key]

    def windows(self, i: int, j: int, h: int, pace: int = 0) -> Windows | None:
        """The memoised walk of ``[i..j]`` (None: not tileable); counts against the budgets."""
        key = (i, j, h, pace)
        if key in self._windows:
            return self._windows[key]
        skey = (tuple(self.order[i:j + 1]), h, pace)
        if self.shared is not None and skey in self.shared:
            self._windows[key] = self.shared[skey]
        else:
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise OutOfTime("the tiling search ran out of time")
            cost = self._weight(i, j) * -(-max(pace, self._end_rows(self.order[j])) // h)
            if self.work is not None and self.spent + cost > self.work:
                raise OutOfWork(f"the tiling search used its work budget ({self.work} member stripes)")
            self.spent += cost
            self.walks += 1
            try:
                if not all(self.tileable[i:j + 1]):
                    raise NotTileable("a step needs whole tensors")
                if not self.macro_safe(i, j):
                    raise NotTileable("the macro graph of this run would not be in topological file order")
                self._windows[key] = walk_windows(self.g, tuple(self.order[i:j + 1]), h, pace, self.outside(i, j),
                                                  self.weights, self.align, self._parts(i, j)[2], self.row_bytes)
            except NotTileable:
                self._windows[key] = None
            if self.shared is not None:
                self.shared[skey] = self._windows[key]
        return self._windows[key]

    def macro_safe(self, i: int, j: int) -> bool:
        """Whether steps ``[i..j]`` of this order may be one cascade: always in file order; in
        another order, when its first step has the smallest index of the run, every step
        outside it that a member depends on has a smaller index and every step depending on a
        member a larger one.  ``macro_graph`` puts the cascade at its first step's index, so
        then every edge of the macro graph (cascade to cascade included: a predecessor
        cascade's first index is at most its member's, below this first index) still goes
        from a smaller index to a larger one, and the file order stays topological."""
        if self.file or i == j:
            return True
        key = (i, j)
        if key not in self._safe:
            ops = self.order[i:j + 1]
            members, first = set(ops), ops[0]
            ok = first == min(ops)
            if ok:
                if self._deps is None:
                    self._deps = self.g.op_dependencies()
                    self._succs = {}
                    for op, ps in self._deps.items():
                        for q in ps:
                            self._succs.setdefault(q, set()).add(op)
                for m in ops:
                    if any(q not in members and q > first for q in self._deps.get(m, ())) or \
                            any(c not in members and c < first for c in self._succs.get(m, ())):
                        ok = False
                        break
            self._safe[key] = ok
        return self._safe[key]

    def _weight(self, i: int, j: int) -> int:
        """Work of one band of ``[i..j]``: per row unit, one plus its operands read in rows
        (a walk's cost per band grows with both: DenseNet's concatenations read dozens)."""
        return sum(1 + len(u.maps) for us in self.units[i:j + 1] for u in us or ())

    def own(self, i: int, j: int, h: int, dram: frozenset[BufferId] = frozenset(), pace: int = 0) -> int | None:
        """Footprint of ``[i..j]`` as one step, bystanders aside (None: no such program)."""
        key = (i, j, h, pace, dram)
        if key not in self._own:
            w = self.windows(i, j, h, pace)
            self._own[key] = None if w is None else w.quick(dram)
        return self._own[key]

    def cascade(self, i: int, j: int, h: int, dram: frozenset[BufferId] = frozenset(),
                off_chip: frozenset[BufferId] = frozenset(), pace: int = 0) -> Segment | None:
        """Segment ``[i..j]`` in bands of ``h`` rows (of a ``pace``-row tensor, 0: the end);
        ``dram``: intermediates it streams from or to off-chip memory; ``off_chip``: buffers
        already off-chip while it runs (not bystanders in the compute level)."""
        own = self.own(i, j, h, dram, pace)
        if own is None:
            return None
        return Segment(tuple(self.order[i:j + 1]), h, own + self.bystanders(i, j, off_chip), dram, pace_rows=pace)

    def _bound(self, i: int, j: int, dram: frozenset[BufferId]) -> int:
        """A lower bound on the footprint of ``[i..j]`` in any bands that needs no walk: its
        whole buffers (``Windows.footprint``'s modes) plus, per buffer held in rows, the rows
        one stripe of its widest reader needs (a ring holds at least what one read takes), the
        interior rings of one row counted once, at the largest (they may share bytes).  Each
        buffer's part is independent of the others': a base plus one delta per buffer
        off-chip."""
        key = (i, j)
        if key not in self._whole:
            reads, writes, spatial, least, fixed = self._parts(i, j)
            g, out = self.g, self.outside(i, j)

            def part_of(b: BufferId, off: bool) -> int:
                buf = g.buffers[b]
                if b in writes:
                    return least[b] if off or not out.get(b, False) else self._a(buf.bytes)
                streamed = off or (buf.kind is TensorKind.INPUT and not out.get(b, False) and not buf.is_output
                                   and b in spatial)
                return least[b] if streamed else self._a(buf.bytes)

            # Interior rings one row deep may share bytes (``program.share_rings``): together
            # they hold at least the largest of them.
            sharable = {b for b in writes if not out.get(b, False) and not g.buffers[b].is_output
                        and least[b] <= self._a(self.row_bytes(b))}
            base = fixed + sum(part_of(b, False) for b in (*reads, *writes) if b not in sharable)
            base += max((least[b] for b in sharable), default=0)
            delta = {b: part_of(b, True) - part_of(b, False) for b in (*reads, *writes) if b not in sharable}
            self._whole[key] = (base, {b: d for b, d in delta.items() if d})
        base, delta = self._whole[key]
        return base + sum(delta.get(b, 0) for b in dram)

    def _parts(self, i: int, j: int) -> tuple[list[BufferId], list[BufferId], set[BufferId], dict[BufferId, int], int]:
        """What ``_bound`` sums for ``[i..j]``: non-weight buffers read from outside and written
        inside, those read in rows, the least ring bytes of each, and the fixed bytes."""
        key = (i, j)
        if key not in self._parts_memo:
            g = self.g
            written: set[BufferId] = set()
            reads: list[BufferId] = []
            weights: set[BufferId] = set()
            least_rows: dict[BufferId, int] = {}
            for p in range(i, j + 1):
                op = g.operators[self.order[p]]
                for b in g.op_reads(op):
                    if g.buffers[b].kind is TensorKind.WEIGHT:
                        weights.add(b)
                    elif b not in written and b not in reads:
                        reads.append(b)
                written.update(g.op_writes(op))
                for u in self.units[p] or ():
                    for name, rm in u.maps.items():
                        b = g.tensor_buffer[name]
                        full = rm.in_rows >= rm.kernel + rm.pad_top + rm.stride   # an unclipped stripe exists
                        # A dilated read may need only its taps' rows (``RowMap.runs``): one.
                        least_rows[b] = max(least_rows.get(b, 1), rm.kernel if full and rm.kind != DILATED else 1)
            reads = [b for b in reads if b not in written]
            # A result written over its operand's ring (``alias``) adds no bytes; the ring it
            # shares holds at least what its readers need too.
            out = self.outside(i, j)
            units = [(self.order[p], u) for p in range(i, j + 1) for u in self.units[p] or ()]
            aliases = ring_aliases(g, units, {b for b in written if not out.get(b, False)
                                              and not g.buffers[b].is_output})
            for yb, xb in aliases.items():
                least_rows[xb] = max(least_rows.get(xb, 1), least_rows.get(yb, 1))
            writes = sorted(written - aliases.keys())
            least = {b: self._a(least_rows.get(b, 1) * self.row_bytes(b)) for b in (*reads, *writes)}
            fixed = sum(g.operators[self.order[p]].extra_bytes for p in range(i, j + 1))
            if self.weights:
                fixed += sum(self._a(g.buffers[b].bytes) for b in weights)
            self._parts_memo[key] = (reads, writes, set(least_rows), least, fixed)
        return self._parts_memo[key]

    def _movable(self, b: BufferId) -> bool:
        """Whether a buffer may cross a cascade boundary off-chip: an intermediate activation
        (graph inputs and outputs have homes of their own; weights stay where they are) of more
        than one row.  A one-row tensor (a reduction's result, an SE block's scale) stays on
        chip: a reader broadcasting it reads it whole, which no stripe can load row by row, and
        its one row is all a ring of it would hold, so storing it would only add traffic."""
        if b not in self._mov:
            buf = self.g.buffers[b]
            self._mov[b] = (buf.kind is TensorKind.ACTIVATION and not buf.is_output
                            and self.row_bytes(b) > 0 and self.row_bytes(b) < buf.bytes
                            and not mixed_buffer(self.g, b))
        return self._mov[b]

    def _sendable(self, b: BufferId) -> bool:
        """Whether a cascade may store ``b`` off-chip for later steps: it is ``_movable`` and
        every step reading it runs in stripes.  A step that needs whole tensors (a plain step:
        ddddocr's head Concat) cannot load a buffer row by row, so a state with ``b`` off-chip
        before it is a dead end; kept, such states fill ``least_traffic``'s beam
        (``MAX_STATES``) and push out the states that can finish."""
        if b not in self._send:
            self._send[b] = self._movable(b) and all(self.tileable[self.pos[c]]
                                                     for c in self.g.buffers[b].consumers if c in self.pos)
        return self._send[b]

    def least_traffic(self, capacity: int) -> list[Segment] | None:
        """The partition with the least off-chip row traffic whose every segment fits
        ``capacity``, where a cut may send the intermediates crossing it through off-chip memory
        (stored row by row by the cascade making them, loaded by each cascade reading them);
        ties go to fewer stripes.  A DP over (cut, set of crossing buffers off-chip), in rounds
        of longer cascades (``ROUNDS``, walks memoised across rounds): when the work budget
        ends a round, the last complete round's partition stands (``OutOfWork`` when none
        completed).  ``reach`` says which round that was.  The wall clock ends it the same
        way after the first round, setting ``stopped_by``."""
        self.spent = 0
        found: list[Segment] | None = None
        rounds = sorted({min(r, MAX_LEN) for r in ROUNDS})
        for k, length in enumerate(rounds):
            try:
                segs = self._least_traffic(capacity, length)
            except OutOfWork:
                if k == 0:
                    self.reach = length   # the fallback's cascades stay as short as this round's
                    raise
                log.info("tiling: the work budget ended the search at cascades of %d steps", rounds[k - 1])
                return found
            except OutOfTime:
                if k == 0:
                    raise
                self.stopped_by = "time"   # the last complete round stands, but the clock chose it
                log.warning("tiling: the wall clock ended the search at cascades of %d steps", rounds[k - 1])
                return found
            self.reach = length
            if segs is not None:
                found = segs
        return found

    def _least_traffic(self, capacity: int, max_len: int) -> list[Segment] | None:
        g = self.g
        written = [{b for b in self.touch[p] if g.buffers[b].producer == self.order[p]} for p in range(self.n)]
        start: frozenset[BufferId] = frozenset()
        best: list[dict[frozenset[BufferId], tuple[int, int, Segment | None, frozenset[BufferId]]]] = [
            {} for _ in range(self.n + 1)]
        best[0][start] = (0, 0, None, start)
        for i in range(self.n):
            beam = MAX_STATES
            if len(best[i]) > beam:
                # Graphs with many long-lived tensors (DenseNet's concatenations) have many
                # subsets off-chip: keep the cheapest few (a beam; the result stays valid),
                # and the state with the most bytes off-chip, which leaves later cascades the
                # most room (the cheapest ones may all be dead ends at a tight capacity).
                ranked = sorted(best[i].items(), key=lambda kv: kv[1][:2])
                roomiest = max(ranked, key=lambda kv: sum(g.buffers[b].bytes for b in kv[0]))
                best[i] = dict(ranked[:beam] + [roomiest])
            for d_in, (traffic, stripes, _seg, _prev) in list(best[i].items()):
                made: set[BufferId] = set()
                reads: set[BufferId] = set()
                for j in range(i, min(self.n, i + max_len)):
                    if j > i and not (self.tileable[i] and self.tileable[j]):
                        break
                    made |= written[j]
                    reads |= self.touch[j] - made
                    outgoing = frozenset(b for b in made if self.last.get(b, -1) > j and self._sendable(b))
                    loads = frozenset(d_in & reads)
                    crossing = self.live_at[j + 1] if j + 1 < self.n else frozenset()
                    h0, p0 = self.ladder(i, j)[0]
                    least = 1 if i == j else self._stripes(Segment(tuple(self.order[i:j + 1]), h0, 0, pace_rows=p0))
                    for sent in _subsets(outgoing):
                        dram = loads | sent
                        moved = sum(g.buffers[b].bytes for b in dram)
                        d_out = frozenset((d_in & crossing) | sent)
                        cur = best[j + 1].get(d_out)
                        if cur is not None and (traffic + moved, stripes + least) >= cur[:2]:
                            continue  # cannot beat what reaches this state already: no walk
                        seg = self._fit(i, j, capacity, dram, d_in, finest=True)
                        if seg is None:
                            continue
                        seg = replace(seg, traffic=moved)
                        val = (traffic + moved, stripes + self._stripes(seg), seg, d_in)
                        if cur is None or val[:2] < cur[:2]:
                            best[j + 1][d_out] = val
        if not best[self.n]:
            return None
        d = min(best[self.n], key=lambda k: best[self.n][k][:2])
        segs: list[Segment] = []
        j = self.n
        while j > 0:
            _t, _s, seg, prev = best[j][d]
            assert seg is not None
            if seg.stripe_rows:
                # The DP judged feasibility in the finest bands (one walk per segment); the
                # chosen cascades get the tallest band that fits with the same boundaries.
                i = j - len(seg.ops)
                tall = self._fit(i, j - 1, capacity, seg.dram, prev)
                assert tall is not None
                seg = replace(tall, traffic=seg.traffic)
            segs.append(seg)
            j -= len(seg.ops)
            d = prev
        return segs[::-1]

    def _fit(self, i: int, j: int, capacity: int, dram: frozenset[BufferId],
             off_chip: frozenset[BufferId], finest: bool = False) -> Segment | None:
        """The segment with the tallest band that fits (``finest``: the finest band, if it
        fits), or None (a plain step when nothing of it is off-chip and it fits whole)."""
        if i == j and not dram:
            seg = self.plain(i)
            seg = replace(seg, peak=seg.peak - self.bystanders(i, i) + self.bystanders(i, i, off_chip))
            if seg.peak <= capacity:
                return seg
            if not self.tileable[i]:
                return None
        if self.bystanders(i, j, off_chip) > capacity:
            return None
        slack = BOUND_SLACK if self.slot_rows and self.slot_cache.optimistic else 1
        if self._bound(i, j, dram) + self.bystanders(i, j, off_chip) > capacity * slack:
            # Its whole operands and results alone do not fit, whatever the bands.  The bound
            # counts rings; rows by slot are counted per instant, which it overstates.
            return None
        ladder = self.ladder(i, j)
        return self._tallest_fit(lambda e: self._fit_band(i, j, e, capacity, dram, off_chip),
                                 ladder[:1] if finest else ladder, capacity)

    def _fit_band(self, i: int, j: int, band: tuple[int, int], capacity: int, dram: frozenset[BufferId],
                  off_chip: frozenset[BufferId]) -> Segment | None:
        """``cascade`` in ``band``, addressed by slot (``slotfit``) when its rings miss the
        capacity and its rows, packed, fit."""
        seg = self.cascade(i, j, band[0], dram, off_chip, band[1])
        if seg is None or seg.peak <= capacity or not self.slot_rows:
            return seg
        peak = slot_peak(self, i, j, band[0], band[1], dram, seg.peak, self.bystanders(i, j, off_chip), capacity)
        return seg if peak is None or peak >= seg.peak else replace(seg, peak=peak, slotted=True)

    @staticmethod
    def _tallest_fit(make: Callable[[tuple[int, int]], Segment | None], ladder: list[tuple[int, int]],
                     capacity: int, finest_first: bool = True) -> Segment | None:
        """The tallest band of ``ladder`` whose segment fits, by bisection, since a taller band
        never needs less memory (its rings hold at least as many rows).  ``finest_first``: try
        the finest band first (when it does not fit, nothing does: one walk; what a tight
        capacity wants), else start in the middle (what a roomy one wants)."""
        best: Segment | None = None
        lo, hi = 0, len(ladder) - 1
        if finest_first:
            best = make(ladder[0])
            if best is None or best.peak > capacity:
                return None
            lo = 1
        while lo <= hi:
            mid = (lo + hi) // 2
            seg = make(ladder[mid])
            if seg is not None and seg.peak <= capacity:
                best, lo = seg, mid + 1
            else:
                hi = mid - 1
        return best

    def candidates(self, j: int, max_len: int = MAX_LEN) -> list[int]:
        """Segment starts ``i`` for a segment ending at ``j`` (longer ones need tileable steps)."""
        out = [j]
        i = j - 1
        while i >= 0 and j - i < max_len and self.tileable[i] and self.tileable[j]:
            out.append(i)
            i -= 1
        return out

    def min_peak(self, bystanders: bool = True) -> tuple[int, list[Segment]]:
        """The partition with the smallest largest peak (each segment in its finest bands);
        ``bystanders=False`` counts each segment's own footprint only (the planner may spill
        the rest).  Cascades are at most ``reach`` steps long (what ``least_traffic`` could
        afford)."""
        inf = (float("inf"), 0)
        best: list[tuple[float, int]] = [(0, 0)] + [inf] * self.n
        arg: list[Segment | None] = [None] * (self.n + 1)
        for j in range(self.n):
            for i in self.candidates(j, self.reach):
                if best[i][0] == float("inf"):
                    continue
                if i < j:
                    # Branch and bound: a segment whose least footprint (no walk) cannot improve
                    # on what reaches ``j + 1`` already is not walked.
                    least = self._bound(i, j, frozenset()) + (self.bystanders(i, j) if bystanders else 0)
                    if (max(best[i][0], least), best[i][1] + 1) >= best[j + 1]:
                        continue
                h, pace = self.ladder(i, j)[0]
                seg: Segment | None = self.plain(i) if i == j else self.cascade(i, j, h, pace=pace)
                if i == j and self.tileable[i]:
                    alt = self.cascade(i, j, h, pace=pace)   # a single step streaming a graph input or output
                    if alt is not None and seg is not None and alt.peak < seg.peak:
                        seg = alt
                if seg is None:
                    continue
                peak = seg.peak if bystanders else seg.peak - self.bystanders(i, j)
                v = (max(best[i][0], peak), best[i][1] + 1)
                if v < best[j + 1]:
                    best[j + 1], arg[j + 1] = v, seg
        return int(best[self.n][0]), self._unwind(arg)

    def fewest_stripes(self, capacity: int) -> list[Segment] | None:
        """Among partitions whose every segment fits ``capacity``, the one with fewest stripes
        (plain steps count one); None when none fits.  A segment that cannot beat the best
        partition of its prefix found so far, even in the tallest band, is not walked (branch
        and bound: the result is the DP's)."""
        self.spent = 0
        inf = float("inf")
        best: list[float] = [0.0] + [inf] * self.n
        arg: list[Segment | None] = [None] * (self.n + 1)
        for j in range(self.n):
            end = self._end_rows(self.order[j])
            for i in self.candidates(j):
                if best[i] == inf:
                    continue
                # The fewest stripes it can run (``_stripes``' bound, in the tallest band).
                least = 1 if i == j else -(-end // HEIGHTS[-1]) + self._n_units(i, j) - 1
                if best[i] + least >= best[j + 1]:
                    continue
                seg = self._tallest(i, j, capacity)
                if seg is None:
                    continue
                cost = best[i] + self._stripes(seg)
                if cost < best[j + 1]:
                    best[j + 1], arg[j + 1] = cost, seg
        if best[self.n] == inf:
            return None
        return self._unwind(arg)

    def _tallest(self, i: int, j: int, capacity: int) -> Segment | None:
        if i == j:
            seg = self.plain(i)
            if seg.peak <= capacity or not self.tileable[i]:
                return seg if seg.peak <= capacity else None
        if self.bystanders(i, j) > capacity:
            return None
        if self._bound(i, j, frozenset()) + self.bystanders(i, j) > capacity:
            return None
        return self._tallest_fit(lambda e: self.cascade(i, j, e[0], pace=e[1]), self.ladder(i, j), capacity,
                                 finest_first=False)

    def _end_rows(self, op: OpIndex) -> int:
        """Rows of the tensor a segment ending at step ``op`` is banded by."""
        units = self.units[self.pos[op]]
        if not units:
            return 0
        if accumulates(units[-1].maps):
            # A reduction over H (``stripe_program``): its bands are rows of its input.
            return next(iter(units[-1].maps.values())).in_rows
        return rows(self.g, self.g.tensors[units[-1].output])

    def row_bytes(self, b: BufferId) -> int:
        """Bytes of one row of buffer ``b``, memoised (0 for one that is never held in rows)."""
        if b not in self._rowb:
            self._rowb[b] = _row_bytes(self.g, b)
        return self._rowb[b]

    def _stripes(self, seg: Segment) -> int:
        """Stripes of a segment: 1 for a plain step, else the member stripes its walk runs
        (in-place members and accumulating reductions included, members with fewer rows than
        the bands running fewer), or before any walk a lower bound: every band runs the end
        member, every other row unit runs at least once."""
        if not seg.stripe_rows:
            return 1
        i, j = self.pos[seg.ops[0]], self.pos[seg.ops[-1]]
        w = self._windows.get((i, j, seg.stripe_rows, seg.pace_rows))
        if w is not None:
            return w.count
        h = max(seg.pace_rows, self._end_rows(seg.ops[-1]))
        return -(-h // seg.stripe_rows) + self._n_units(i, j) - 1

    def _n_units(self, i: int, j: int) -> int:
        return sum(len(u or ()) for u in self.units[i:j + 1])

    def _unwind(self, arg: list[Segment | None]) -> list[Segment]:
        segs: list[Segment] = []
        j = self.n
        while j > 0:
            seg = arg[j]
            assert seg is not None
            segs.append(seg)
            j -= len(seg.ops)
        return segs[::-1]


def _row_bytes(graph: Graph, b: BufferId) -> int:
    """Bytes of one row of buffer ``b`` (0 for a buffer no tensor of which has rows, neither 4-D
    nor a column tensor, ``stowage.ir.columns``: it is never held in rows)."""
    if not any(has_rows(graph, graph.tensors[n]) for n in graph.buffers[b].tensors):
        return 0
    return buffer_row_bytes(graph, b)


def _subsets(outgoing: frozenset[BufferId]) -> list[frozenset[BufferId]]:
    """Which of the tensors leaving a segment go off-chip: every subset of up to three (so
    only the cheapest one need be streamed), else none, all, or one of them."""
    items = sorted(outgoing)
    if len(items) <= 3:
        return [frozenset(c) for k in range(len(items) + 1) for c in combinations(items, k)]
    return [frozenset(), outgoing, *(frozenset((b,)) for b in items)]


__all__ = ["HEIGHTS", "MAX_LEN", "MAX_STATES", "ROUNDS", "WORK_BUDGET", "OutOfTime", "OutOfWork", "Partitioner",
           "Segment"]
