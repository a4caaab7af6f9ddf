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
from dataclasses import dataclass

from stowage.ir.graph import BufferId, Graph, OpIndex
from stowage.ir.lifetimes import lifetimes
from stowage.ir.tiling import step_row_maps
from stowage.solvers.alloc.interval import align_up
from stowage.solvers.tiling.program import NotTileable, Program, stripe_program

log = logging.getLogger(__name__)

#: Longest cascade tried (steps); Vela's cascades are shorter, the design notes used 12.
MAX_LEN = 16
#: Band heights tried, tallest kept when it fits.
HEIGHTS = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class Segment:
    ops: tuple[OpIndex, ...]
    stripe_rows: int          # 0: a plain step (whole tensors)
    peak: int                 # with bystanders, aligned


class Partitioner:
    """Segment costs for one graph, setting and alignment, memoised."""

    def __init__(self, graph: Graph, weights: bool, alignment: int = 1) -> None:
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
        self.memo: dict[tuple[int, int, int], Segment | None] = {}

    def _a(self, n: int) -> int:
        return align_up(n, self.align)

    def bystanders(self, i: int, j: int) -> int:
        inside = set().union(*self.touch[i:j + 1])
        return sum(self._a(self.g.buffers[b].bytes) for b, f in self.first.items()
                   if f < i and self.last[b] > j and b not in inside)

    def plain(self, i: int) -> Segment:
        g, op = self.g, self.g.operators[self.order[i]]
        own = sum(self._a(g.buffers[b].bytes) for b in self.touch[i]
                  if self.weights or g.buffers[b].kind.value != "weight") + op.extra_bytes
        return Segment((self.order[i],), 0, own + self.bystanders(i, i))

    def outside(self, i: int, j: int) -> dict[BufferId, bool]:
        inside = set(self.order[i:j + 1])
        return {b.id: any(c not in inside for c in b.consumers) for b in self.g.buffers}

    def program(self, i: int, j: int, h: int, record: bool = False) -> Program:
        return stripe_program(self.g, tuple(self.order[i:j + 1]), h, self.outside(i, j), record=record)

    def cascade(self, i: int, j: int, h: int) -> Segment | None:
        key = (i, j, h)
        if key not in self.memo:
            try:
                p = self.program(i, j, h)
            except NotTileable:
                self.memo[key] = None
            else:
                sizes = self._footprint(p)
                self.memo[key] = Segment(p.ops, h, sizes + self.bystanders(i, j))
        return self.memo[key]

    def _footprint(self, p: Program) -> int:
        g = self.g
        parts = [g.buffers[b].bytes for b in (*p.whole_in, *p.whole_out)]
        parts += [r * _row(g, b) for b, r in (*p.rings.items(), *p.streamed.items())]
        if self.weights:
            parts += [g.buffers[b].bytes for b in p.weights(g)]
        return sum(self._a(x) for x in parts) + sum(g.operators[i].extra_bytes for i in p.ops)

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
        for h in reversed(HEIGHTS):
            cand = self.cascade(i, j, h)
            if cand is not None and cand.peak <= capacity:
                return cand
        return None

    def _stripes(self, seg: Segment) -> int:
        if not seg.stripe_rows:
            return 1
        end = self.g.operators[seg.ops[-1]]
        member = self.g.step_members(end)[-1]
        h = self.g.tensors[next(o for o in member.outputs if o)].shape[2]
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


__all__ = ["HEIGHTS", "MAX_LEN", "Partitioner", "Segment"]
