"""Which steps run as cascades, and in bands of how many rows: a DP over cut points.

Along the file order of the (in-place fused) graph, a segment ``[i..j]`` of row-tileable steps
is a candidate cascade; its cost at a capacity is its peak as one step (``Program.footprint``:
whole operands and results, rings, weights when resident) plus the *bystanders*, buffers live
across the segment in that order that it does not touch.  Two passes:

1. ``min_peak``: the partition minimising the largest segment peak (band height 1, the least
   memory), which says whether any plan without spills exists in this order;
2. ``fewest_stripes``: among partitions whose every segment fits the capacity, the one with
   the fewest stripes, each cascade taking the tallest band that fits (Vela keeps the largest
   stripe that fits: fewer commands, better utilisation).

When even the min-peak partition does not fit with its bystanders, the whole-tensor planner
run afterwards on the macro graph spills bystanders; only each cascade's own footprint must
fit then, which the caller checks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from stowage.ir.graph import BufferId, Graph, OpIndex, TensorKind
from stowage.ir.lifetimes import lifetimes
from stowage.ir.tiling import rows, step_row_maps
from stowage.solvers.alloc.interval import align_up
from stowage.solvers.tiling.program import NotTileable, Program, stripe_program

log = logging.getLogger(__name__)

#: Longest cascade tried (steps); Vela's cascades are shorter, the design notes used 12.
MAX_LEN = 16
#: Band heights tried, tallest kept when it fits.
HEIGHTS = (1, 2, 4, 8, 16)
#: States (sets of intermediates off-chip) kept per cut by ``least_traffic``.
#: Measured (idle 2-core VM): MobileNetV2 at 160/128/96/64 KiB gives the same traffic with 2,
#: 4 or 8 states; DenseNet-121 at 256 KiB takes 28 s with 2 and 211 s with 8, for 11% less
#: traffic with 8; but with 2 the tiny CNN at 3/4 of M_R on ethos-u65-256 finds no plan (3 do).
#: The state with the most bytes off-chip is kept besides these.
MAX_STATES = 4


@dataclass(frozen=True)
class Segment:
    ops: tuple[OpIndex, ...]
    stripe_rows: int          # 0: a plain step (whole tensors)
    peak: int                 # with bystanders, aligned
    #: Intermediate buffers this cascade stores to or loads from off-chip memory row by row.
    dram: frozenset[BufferId] = frozenset()
    #: Bytes those row transfers move (each row once per direction and cascade).
    traffic: int = 0


class OutOfTime(Exception):
    """A search passed ``Partitioner.deadline``."""


class Partitioner:
    """Segment costs for one graph, setting and alignment, memoised."""

    def __init__(self, graph: Graph, weights: bool, alignment: int = 1, deadline: float | None = None) -> None:
        #: ``time.monotonic()`` after which the searches give up (``OutOfTime``): the DP over
        #: off-chip cut states grows with the tensors live across cuts (DenseNet's
        #: concatenations), and a compile must stay within its time limit.
        self.deadline = deadline
        self.g, self.weights, self.align = graph, weights, max(1, alignment)
        self.order = graph.file_order()
        self.n = len(self.order)
        self.tileable = [step_row_maps(graph, graph.operators[i]) is not None for i in self.order]
        lt = lifetimes(graph, self.order, weights)
        self.first, self.last = dict(lt.first), dict(lt.last)
        self.touch: list[set[BufferId]] = []
        for i in self.order:
            op = graph.operators[i]
            self.touch.append({*graph.op_reads(op), *graph.op_writes(op)})
        self.dmemo: dict[tuple[int, int, int, frozenset[BufferId]], tuple[int, tuple[OpIndex, ...]] | None] = {}
        self._by: dict[tuple[int, int], frozenset[BufferId]] = {}
        self._whole: dict[tuple[int, int, frozenset[BufferId]], int] = {}
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
                dram: frozenset[BufferId] = frozenset()) -> Program:
        return stripe_program(self.g, tuple(self.order[i:j + 1]), h, self.outside(i, j), record=record, dram=dram)

    def cascade(self, i: int, j: int, h: int, dram: frozenset[BufferId] = frozenset(),
                off_chip: frozenset[BufferId] = frozenset()) -> Segment | None:
        """Segment ``[i..j]`` in bands of ``h`` rows; ``dram``: intermediates it streams from or
        to off-chip memory; ``off_chip``: buffers already off-chip while it runs (not
        bystanders in the compute level)."""
        key = (i, j, h, dram)
        if key not in self.dmemo:
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise OutOfTime("the tiling search ran out of time")
            try:
                p = self.program(i, j, h, dram=dram)
            except NotTileable:
                self.dmemo[key] = None
            else:
                self.dmemo[key] = (self._footprint(p), p.ops)
        got = self.dmemo[key]
        if got is None:
            return None
        own, ops = got
        return Segment(ops, h, own + self.bystanders(i, j, off_chip), dram)

    def _whole_bytes(self, i: int, j: int, dram: frozenset[BufferId]) -> int:
        """A lower bound on a cascade's footprint that needs no walk: the buffers it must hold
        whole (made outside and read inside, or made inside and read outside, not streamed)."""
        key = (i, j, dram)
        if key not in self._whole:
            g, out = self.g, self.outside(i, j)
            inside = set(self.order[i:j + 1])
            total = 0
            for b in set().union(*self.touch[i:j + 1]):
                buf = g.buffers[b]
                if buf.kind is TensorKind.WEIGHT or b in dram:
                    continue
                made_here = buf.producer in inside
                if made_here and (out.get(b, False)) and not buf.is_output:
                    total += self._a(buf.bytes)
                elif not made_here and buf.kind is not TensorKind.INPUT:
                    total += self._a(buf.bytes)
            self._whole[key] = total
        return self._whole[key]

    def _footprint(self, p: Program) -> int:
        g = self.g
        parts = [g.buffers[b].bytes for b in (*p.whole_in, *p.whole_out)]
        parts += [r * _row(g, b) for b, r in (*p.rings.items(), *p.streamed.items())]
        if self.weights:
            parts += [g.buffers[b].bytes for b in p.weights(g)]
        return sum(self._a(x) for x in parts) + sum(g.operators[i].extra_bytes for i in p.ops)

    def _movable(self, b: BufferId) -> bool:
        """Whether a buffer may cross a cascade boundary off-chip: an intermediate activation
        (graph inputs and outputs have homes of their own; weights stay where they are)."""
        buf = self.g.buffers[b]
        return buf.kind is TensorKind.ACTIVATION and not buf.is_output

    def least_traffic(self, capacity: int) -> list[Segment] | None:
        """The partition with the least off-chip row traffic whose every segment fits
        ``capacity``, where a cut may send the intermediates crossing it through off-chip memory
        (stored row by row by the cascade making them, loaded by each cascade reading them);
        ties go to fewer stripes.  A DP over (cut, set of crossing buffers off-chip)."""
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
                for j in range(i, min(self.n, i + MAX_LEN)):
                    if j > i and not (self.tileable[i] and self.tileable[j]):
                        break
                    made |= written[j]
                    reads |= self.touch[j] - made
                    outgoing = frozenset(b for b in made if self.last.get(b, -1) > j and self._movable(b))
                    loads = frozenset(d_in & reads)
                    for out_dram in ((False, True) if outgoing else (False,)):
                        dram = loads | (outgoing if out_dram else frozenset())
                        seg = self._fit(i, j, capacity, dram, d_in)
                        if seg is None:
                            continue
                        moved = sum(g.buffers[b].bytes for b in dram)
                        seg = replace(seg, traffic=moved)
                        crossing = self.live_at[j + 1] if j + 1 < self.n else frozenset()
                        d_out = frozenset((d_in & crossing) | (outgoing if out_dram else frozenset()))
                        val = (traffic + moved, stripes + self._stripes(seg), seg, d_in)
                        cur = best[j + 1].get(d_out)
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
            segs.append(seg)
            j -= len(seg.ops)
            d = prev
        return segs[::-1]

    def _fit(self, i: int, j: int, capacity: int, dram: frozenset[BufferId],
             off_chip: frozenset[BufferId]) -> Segment | None:
        """The segment with the tallest band that fits, or None (a plain step when nothing of
        it is off-chip and it fits whole)."""
        if i == j and not dram:
            seg = self.plain(i)
            seg = replace(seg, peak=seg.peak - self.bystanders(i, i) + self.bystanders(i, i, off_chip))
            if seg.peak <= capacity:
                return seg
            if not self.tileable[i]:
                return None
        if self.bystanders(i, j, off_chip) > capacity:
            return None
        if self._whole_bytes(i, j, dram) + self.bystanders(i, j, off_chip) > capacity:
            return None  # its whole operands and results alone do not fit, whatever the bands
        return self._tallest_fit(lambda h: self.cascade(i, j, h, dram, off_chip), capacity)

    @staticmethod
    def _tallest_fit(make: Callable[[int], Segment | None], capacity: int) -> Segment | None:
        """The tallest band in ``HEIGHTS`` whose segment fits, by bisection: a taller band
        never needs less memory (its rings hold at least as many rows), so at most three of the
        five heights are walked."""
        lo, hi = 0, len(HEIGHTS) - 1
        best: Segment | None = None
        while lo <= hi:
            mid = (lo + hi) // 2
            seg = make(HEIGHTS[mid])
            if seg is not None and seg.peak <= capacity:
                best, lo = seg, mid + 1
            else:
                hi = mid - 1
        return best

    def candidates(self, j: int) -> list[int]:
        """Segment starts ``i`` for a segment ending at ``j`` (longer ones need tileable steps)."""
        out = [j]
        i = j - 1
        while i >= 0 and j - i < MAX_LEN and self.tileable[i] and self.tileable[j]:
            out.append(i)
            i -= 1
        return out

    def min_peak(self, bystanders: bool = True) -> tuple[int, list[Segment]]:
        """The partition with the smallest largest peak (1-row bands); ``bystanders=False``
        counts each segment's own footprint only (the planner may spill the rest)."""
        inf = (float("inf"), 0)
        best: list[tuple[float, int]] = [(0, 0)] + [inf] * self.n
        arg: list[Segment | None] = [None] * (self.n + 1)
        for j in range(self.n):
            for i in self.candidates(j):
                if best[i][0] == float("inf"):
                    continue
                seg: Segment | None = self.plain(i) if i == j else self.cascade(i, j, 1)
                if i == j and self.tileable[i]:
                    alt = self.cascade(i, j, 1)   # a single step streaming a graph input or output
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
        (plain steps count one); None when none fits."""
        inf = float("inf")
        best: list[float] = [0.0] + [inf] * self.n
        arg: list[Segment | None] = [None] * (self.n + 1)
        for j in range(self.n):
            for i in self.candidates(j):
                if best[i] == inf:
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
        if self._whole_bytes(i, j, frozenset()) + self.bystanders(i, j) > capacity:
            return None
        return self._tallest_fit(lambda h: self.cascade(i, j, h), capacity)

    def _stripes(self, seg: Segment) -> int:
        if not seg.stripe_rows:
            return 1
        end = self.g.operators[seg.ops[-1]]
        member = self.g.step_members(end)[-1]
        h = rows(self.g, self.g.tensors[next(o for o in member.outputs if o)])
        return len(seg.ops) * -(-h // seg.stripe_rows)

    def _unwind(self, arg: list[Segment | None]) -> list[Segment]:
        segs: list[Segment] = []
        j = self.n
        while j > 0:
            seg = arg[j]
            assert seg is not None
            segs.append(seg)
            j -= len(seg.ops)
        return segs[::-1]


def _row(graph: Graph, b: BufferId) -> int:
    from stowage.ir.tiling import buffer_row_bytes

    return buffer_row_bytes(graph, b)


__all__ = ["HEIGHTS", "MAX_LEN", "MAX_STATES", "OutOfTime", "Partitioner", "Segment"]
