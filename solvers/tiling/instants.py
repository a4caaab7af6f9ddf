"""Rows every plan holds at one instant of a cascade: the per-instant part of the run bound
(``stowage.solvers.tiling.runs``, fact 4 per instant) that sees the rows *other* steps hold.

``runs._Instant`` counts, while step ``s`` runs, only what ``s`` itself touches.  A cascade
holds more: the rows of every tensor between its members that are made and still to be read.
On MobileNetV2 at 64 KiB that is what makes a long cascade impossible (the expanded tensors'
halo rows, a residual block's skip rows), and without it the bound was 0 down to 48 KiB.

**The instant.**  Fix an articulation step ``s = a_k`` (``runs``: comparable with every other
step) whose stripes can run (one written activation buffer ``y_s``, every unit of it reading
its operands through a row map; a *simple* step), and a row ``r`` of ``y_s``.  ``T`` is the
stripe of ``s`` that writes row ``r``, in any plan putting ``s`` in a cascade ``K``.

**Facts about ``T``** (any order, any partition, any band heights, rings, slots or whole):

1. *Monotone production.*  Inside a cascade every member makes its rows in increasing order,
   each once (``program.stripe_program`` walks bands top down and runs each member "on the
   rows it has not produced yet"; a reduction's bands in order).  Write ``P_q`` for the rows
   member ``q`` has made when ``T`` starts, ``y_s``'s rows below ``r`` counted and row ``r``
   being written.
2. *Data dependencies.*  A member's output rows ``[0, P)`` need the input rows ``[0, hi(P))``
   of each operand (``hi``: the highest row its row map reads for them, plus one), so
   ``P_producer >= hi_reader(P_reader)`` for every edge inside ``K``.  ``T`` needs the rows
   ``[0, hi_s(r + 1))`` of its operands, and no row that needs row ``r`` of ``y_s`` exists
   yet, so a reader of ``y_s`` has ``hi(P) <= r``.  Propagated backwards (``pmin``: the least
   ``P`` of each ancestor) and forwards (``pmax``: the most ``P`` of each descendant) along
   the articulation steps' own edges: fewer edges only loosen both, so the result still
   holds.
3. *Live rows.*  Row ``u`` of a buffer ``b`` made inside ``K`` (its producer ``q`` in ``K``)
   is on chip during ``T`` when ``u < P_q`` and a reader ``c`` in ``K`` still reads it, that
   is ``last_c(u) >= P_c`` (``last_c(u)``: the last output row of ``c`` reading ``u``; for
   ``s`` itself, ``>= r``: its own window).  Whatever ``b``'s mode: a ring or slot holds it,
   a whole buffer holds all rows, and a buffer stored off-chip row by row keeps each row on
   chip until the cascade's own readers have read it (the program loads only buffers made
   outside the cascade; ``slots.row_lifetimes``: a row lives to its last read or store).
   Rows on chip at once occupy pairwise disjoint bytes (a row written over another evicts it,
   and the validator checks that every read finds its row), except the row ``T`` writes over
   the operand row it reads (an in-place result: ``bound._step_needs`` gives it 0 bytes).
4. *Whole and weights.*  The tensors ``runs`` keeps whole (facts 3, 5 there) are resident in
   their own bytes, and the hull's weights, when they live on chip, for the whole macro step
   (as in ``runs._Instant``).  The step's working memory (``extra_bytes``) is its own.

**The least live bytes at ``T``.**  Over the chain ``a_i .. a_j`` of a run (the cascade's
articulation steps, ``i <= k <= j``), each *chain edge* ``a_m -> a_{m+1}`` (``a_{m+1}``
reads ``y_{a_m}`` through one row map) costs ``row bytes x #{u < P_m : last_{m+1}(u) >=
P_{m+1}}``, with ``P_m >= hi_{m+1}(P_{m+1})``, ``P >= pmin`` for ancestors and ``P <= pmax``
for descendants.  ``P_s`` is fixed, so the chain splits at ``s`` into two paths, and an
exact DP over the values of ``P`` (min-plus products of small matrices, ``numpy``) gives,
for every ``i``, the least cost of the edges between ``a_i`` and ``s`` (``left``) and for
every ``j`` of those between ``s`` and ``a_j`` (``right``).  Every plan's state at ``T`` is
one feasible choice, so the minimum is at most the bytes its chain buffers hold.

To it are added, without counting a row twice (each with the least row bytes of its
buffer's tensors):
- rows of a buffer made in the run that a reader off the chain edge (a residual Add's skip,
  ``s`` reading an older tensor) still reads by facts 2-3 (``u < pmin_q``, ``last_c(u) >=
  pmax_c``), except rows the chain DP may already count for it (for an edge into an ancestor
  of ``s``, the rows with ``last_{m+1}(u) >= pmin_{m+1}``; for an edge after ``s``, all);
- what ``s`` reads at row ``r`` of buffers made outside the run (loaded or whole) and its
  whole-read operands; row ``r`` of ``y_s`` when no chain edge after ``s`` is in the run
  (none for an in-place result);
- whole tensors in their bytes (a whole buffer the chain DP counts rows of adds nothing:
  its bytes cover them), the hull's weights and ``s``'s working memory.

Only the articulation steps' own edges are used: any edge left out (a side branch, an edge
of a kind other than a plain, dilated, resize or transposed window, a reduction, a step with
several results) only removes terms or constraints, which lowers the bound.  So do the work
budgets, all deterministic: facts 2-3 and the DP follow at most ``REACH`` articulation steps
each way and ``WORK`` matrix cells in all (a run reaching further is charged the value at the
cut, which its true value is at least: more edges only add); at most ``INSTANTS`` instants are
taken; past ``EVALS`` instant evaluations a run is judged without the chain.  The compile's
deadline (a wall-clock safety net) may end the instants early (``cut``).
``tests/test_tiling_bound.py`` checks it by hand and against every planner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from stowage.ir.graph import BufferId, Graph, Operator, TensorKind
from stowage.ir.tiling import ACCUMULATE, CONCAT, FLATTEN, WINDOW, RowMap, row_axis_of, row_bytes, row_units, rows
from stowage.solvers.tiling.alias import alias_operands

#: Matrix cells (``P`` pairs) the chain DPs of one graph may visit in all, shared equally by
#: the instants: a work budget, so the bound does not depend on load.  MobileNetV2 needs
#: about 2 million.
WORK = 20_000_000
#: Instants per step: rows ``r`` of ``y_s`` tried (spread over its interior), and at most
#: ``INSTANTS`` in all (one per step on chains longer than ``INSTANTS / 3``: DenseNet-121).
ROWS_PER_STEP = 3
INSTANTS = 256
#: Articulation steps before and after ``s`` that facts 2-3 follow (and the DP's reach): a
#: window, so the work per instant does not grow with the graph; a shorter reach only
#: weakens the bound.
REACH = 72
#: Instant evaluations (one instant for one run's last step) all runs may make; past it every
#: further run is judged without the chain (``footprint`` 0: the bound only gets weaker).  A
#: work budget, so the bound does not depend on load.  MobileNetV2 makes about 250,000.
EVALS = 2_000_000

_INF = np.iinfo(np.int64).max // 4
log = logging.getLogger(__name__)
_NO_MAP = (ACCUMULATE, CONCAT, FLATTEN)

#: ``(m, read, tileable)`` of a step, as ``bound._step_needs`` gives it.
Needs = tuple[dict[BufferId, int], dict[BufferId, int], bool]


@dataclass(frozen=True)
class _Simple:
    """A step whose stripes the chain can reason about: it writes one buffer ``out`` (an
    activation or a graph output) of ``height`` rows, and reads each operand buffer in ``maps`` through one row map
    (a fused in-place chain only rewrites its own rows).  ``alias``: its result may be written
    over an operand's rows (no bytes of its own at the instant)."""

    out: BufferId
    height: int
    row: int
    maps: Mapping[BufferId, RowMap]
    alias: bool


def _least_row_bytes(graph: Graph, b: BufferId) -> int:
    """The narrowest row among the tensors of ``b`` (a row on chip holds at least that)."""
    shaped = []
    for n in graph.buffers[b].tensors:
        t = graph.tensors[n]
        try:
            shaped.append(row_bytes(t, row_axis_of(graph, t)))
        except (IndexError, ValueError, ZeroDivisionError):
            continue
    return min(shaped) if shaped else 0


def _simple(graph: Graph, op: Operator, m: Mapping[BufferId, int]) -> _Simple | None:
    units = row_units(graph, op)
    writes = [b for b in graph.op_writes(op) if graph.buffers[b].kind is not TensorKind.WEIGHT]
    if not units or len(writes) != 1 or len(graph.op_writes(op)) != 1:
        return None
    y = writes[0]
    tb = graph.tensor_buffer
    heights = set()
    maps: dict[BufferId, RowMap] = {}
    for u in units:
        if tb.get(u.output) != y:
            return None
        heights.add(rows(graph, graph.tensors[u.output]))
        for name, rm in u.maps.items():
            b = tb.get(name)
            if b is None:
                return None
            if b == y:
                # A fused in-place member rewriting the step's own rows: only row for row.
                if not (rm.kind == WINDOW and rm.kernel == 1 and rm.stride == 1 and rm.pad_top == 0):
                    return None
                continue
            if graph.buffers[b].kind is TensorKind.WEIGHT:
                continue
            if b in maps or rm.kind in _NO_MAP:
                return None
            maps[b] = rm
    if len(heights) != 1:
        return None
    (h,) = heights
    rb = _least_row_bytes(graph, y)
    if h < 1 or rb <= 0:
        return None
    return _Simple(y, h, rb, maps, m.get(y, 1) == 0 or any(alias_operands(graph, op.index, u) for u in units))


def _last(rm: RowMap, out_rows: int) -> np.ndarray:
    """``last[u]``: the last output row reading input row ``u`` (-1: none)."""
    last = np.full(rm.in_rows, -1, dtype=np.int64)
    for o in range(out_rows):
        for lo, hi in rm.runs(o, o + 1):
            last[max(0, lo):min(hi, rm.in_rows)] = o
    return last


def _hi(rm: RowMap, out_rows: int) -> np.ndarray:
    """``hi[P]``: input rows ``[0, hi[P])`` output rows ``[0, P)`` need (``P`` in 0..out_rows)."""
    hi = np.zeros(out_rows + 1, dtype=np.int64)
    top = 0
    for o in range(out_rows):
        for _lo, h in rm.runs(o, o + 1):
            top = max(top, min(h, rm.in_rows))
        hi[o + 1] = top
    return hi


class ChainInstants:
    """The least bytes a run ``a_i..a_j`` holds at its busiest instant, by the module
    docstring, for any set of whole tensors: ``footprint(i, j, whole)``.  ``arts``: positions
    of the articulation steps in ``steps``; ``needs``: ``bound._step_needs`` per step."""

    def __init__(self, graph: Graph, steps: list[Operator], arts: list[int], needs: Mapping[int, Needs],
                 capacity: int, work: int | None = None, evals: int = EVALS, deadline: float | None = None) -> None:
        self.graph = graph
        self.m = m = len(arts)
        ops = [steps[p] for p in arts]
        self.simple: list[_Simple | None] = [_simple(graph, op, needs[op.index][0]) for op in ops]
        self.extra = [sum(mm.extra_bytes for mm in graph.step_members(op)) for op in ops]
        self.own_m = [needs[op.index][0] for op in ops]
        # producer (articulation index) of each eligible buffer, readers (index, map)
        self.prod: dict[BufferId, int] = {}
        for k, sp in enumerate(self.simple):
            if sp is None:
                continue
            buf = graph.buffers[sp.out]
            if (buf.kind is TensorKind.ACTIVATION and not buf.is_output and not buf.writers
                    and buf.producer == ops[k].index):
                self.prod[sp.out] = k
        self.readers: dict[BufferId, list[int]] = {}
        for k, sp in enumerate(self.simple):
            if sp is not None:
                for b in sp.maps:
                    if b in self.prod and self.prod[b] < k:
                        self.readers.setdefault(b, []).append(k)
        #: The last articulation step reading each buffer.
        self.reach = {b: max(ns) for b, ns in self.readers.items()}
        for b in self.prod:
            self.reach.setdefault(b, -1)
        self._last: dict[tuple[BufferId, int], np.ndarray] = {}
        self._hi: dict[tuple[BufferId, int], np.ndarray] = {}
        # Chain edges: edge[k] is the edge a_{k-1} -> a_k, its buffer.
        self.edge: list[BufferId | None] = [None] * m
        for k in range(1, m):
            prev, cur = self.simple[k - 1], self.simple[k]
            if prev is not None and cur is not None and prev.out in cur.maps and self.prod.get(prev.out) == k - 1:
                self.edge[k] = prev.out
        self._cost: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.capacity = capacity
        self.evals = evals
        self.spent = 0
        # Instants per step: ROWS_PER_STEP, fewer on long chains (at most INSTANTS in all).
        rows_each = max(1, min(ROWS_PER_STEP, INSTANTS // max(1, m)))
        per = max(1, (WORK if work is None else work) // max(1, m * rows_each))
        self.instants: list[_Instant] = []
        #: The wall clock, not a work budget, ended the instants (the bound depends on load).
        self.cut = False
        for k in range(m):
            sp = self.simple[k]
            if sp is None:
                continue
            if deadline is not None and time.monotonic() > deadline:
                # The compile's wall-clock safety net: fewer instants only weaken the bound.
                log.warning("tiled bound: the wall clock ended the chain's instants at step %d of %d", k, m)
                self.cut = True
                break
            for r in _rows_to_try(sp.height, rows_each):
                self.instants.append(self._instant(k, r, per))
        self.by_step: dict[int, list[_Instant]] = {}
        for ins in self.instants:
            self.by_step.setdefault(ins.k, []).append(ins)
        self._delta: dict[tuple[BufferId, int], np.ndarray] = {}   # per whole buffer, for ``_at``'s runs
        self._at: tuple[int, tuple[np.ndarray, np.ndarray, dict[BufferId, np.ndarray]] | None] | None = None

    # -- row maps -------------------------------------------------------------------------
    def last(self, b: BufferId, k: int) -> np.ndarray:
        key = (b, k)
        if key not in self._last:
            sp = self.simple[k]
            assert sp is not None
            self._last[key] = _last(sp.maps[b], sp.height)
        return self._last[key]

    def hi(self, b: BufferId, k: int) -> np.ndarray:
        key = (b, k)
        if key not in self._hi:
            sp = self.simple[k]
            assert sp is not None
            self._hi[key] = _hi(sp.maps[b], sp.height)
        return self._hi[key]

    def cost(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Edge ``a_{k-1} -> a_k``: ``(cost, allowed)`` over ``(P_{k-1}, P_k)``: bytes of its
        buffer's live rows (``_INF`` where not allowed), and whether ``P_{k-1} >= hi(P_k)``."""
        if k not in self._cost:
            b = self.edge[k]
            assert b is not None
            prev, cur = self.simple[k - 1], self.simple[k]
            assert prev is not None and cur is not None
            last = self.last(b, k)
            n_in = min(prev.height, len(last))
            ind = last[:n_in, None] >= np.arange(cur.height + 1)[None, :]
            cnt = np.zeros((prev.height + 1, cur.height + 1), dtype=np.int64)
            cnt[1:n_in + 1] = np.cumsum(ind, axis=0)
            if prev.height > n_in:
                cnt[n_in + 1:] = cnt[n_in]
            allowed = np.arange(prev.height + 1)[:, None] >= self.hi(b, k)[None, :]
            self._cost[k] = (np.where(allowed, cnt * prev.row, _INF), allowed)
        return self._cost[k]

    # -- one instant ----------------------------------------------------------------------
    def _instant(self, k: int, r: int, per: int) -> _Instant:
        sp = self.simple[k]
        assert sp is not None
        m = self.m
        # Fact 2: pmin (ancestors, rows made) and pmax (descendants, rows made at most).
        pmin: dict[int, int] = {k: r + 1}
        need_of_s = {b: int(self.hi(b, k)[r + 1]) for b in sp.maps}
        for q in range(k - 1, max(-1, k - 1 - REACH), -1):
            qs = self.simple[q]
            if qs is None:
                continue
            best = 0
            for n in self.readers.get(qs.out, ()) if self.prod.get(qs.out) == q else ():
                if n == k:
                    best = max(best, need_of_s[qs.out])
                elif n in pmin and n < k:
                    best = max(best, int(self.hi(qs.out, n)[pmin[n]]))
            if best:
                pmin[q] = min(best, qs.height)
        pmax: dict[int, int] = {k: r}
        for n in range(k + 1, min(m, k + 1 + REACH)):
            ns = self.simple[n]
            if ns is None:
                continue
            lim: int | None = None
            for b in ns.maps:
                src = self.prod.get(b)
                if src is None or src not in pmax or src >= n:
                    continue
                p = int(np.searchsorted(self.hi(b, n), pmax[src], side="right")) - 1   # most P, hi[P] <= made
                lim = p if lim is None else min(lim, p)
            if lim is not None:
                pmax[n] = lim
        # The chain DP, left of s then right of s, within the work budget.
        left = [0]                    # left[d]: least cost of the edges a_{k-d} .. s
        cells = 0
        if k >= 1 and self.edge[k] is not None:
            cost, allowed = self.cost(k)
            v = np.where(allowed[:, r + 1], cost[:, r], _INF)
            v = self._floor(v, k - 1, pmin)
            left.append(int(v.min()))
            q = k - 1
            while q >= 1 and k - q < REACH and cells < per and left[-1] <= self.capacity:
                if self.edge[q] is None:
                    break
                cost, allowed = self.cost(q)
                cells += cost.size
                v = np.minimum((cost + v[None, :]).min(axis=1), _INF)
                v = self._floor(v, q - 1, pmin)
                left.append(int(min(v.min(), _INF)))
                q -= 1
        right = [0]
        if k + 1 < m and self.edge[k + 1] is not None:
            nxt = self.simple[k + 1]
            assert nxt is not None
            cost, allowed = self.cost(k + 1)
            ok = self.hi(sp.out, k + 1) <= r
            w = np.where(ok, cost[r] + (0 if sp.alias else sp.row), _INF)
            w = self._ceil(w, k + 1, pmax)
            right.append(int(w.min()))
            n = k + 2
            while n < m and n - k < REACH and cells < 2 * per and right[-1] <= self.capacity:
                if self.edge[n] is None:
                    break
                cost, allowed = self.cost(n)
                cells += cost.size
                w = np.minimum((cost + w[:, None]).min(axis=0), _INF)
                w = self._ceil(w, n, pmax)
                right.append(int(min(w.min(), _INF)))
                n += 1
        # Fact 3 off the chain edges: per buffer made at or before s, the rows each reader
        # still reads (bit sets), and the rows the chain DP may count for it.
        terms: list[_Term] = []
        for b, q in self.prod.items():
            if q > k or (q < k and (q not in pmin or self.reach[b] < k or q < k - REACH)):
                continue   # made later, or read only by ancestors of s (which may be done)
            made = r + 1 if q == k else pmin[q]
            masks: list[tuple[int, int]] = []
            for n in self.readers.get(b, ()):
                thr = r if n == k else pmax.get(n) if k < n <= k + REACH else None
                if thr is None:
                    continue
                last = self.last(b, n)
                bits = _bits(np.nonzero(last[:made] >= thr)[0])
                if q == k and sp.alias:
                    bits &= ~(1 << r)   # an in-place result's row r lies in its operand's bytes
                if bits:
                    masks.append((n, bits))
            own = 0
            if q == k and not sp.alias:
                own = 1 << r
            if not masks and not own:
                continue
            graph_rb = _least_row_bytes(self.graph, b)
            # What the chain DP may count of b: the edge out of its producer.
            dp: int | None = None     # None: the DP never counts b
            if q + 1 < m and self.edge[q + 1] == b:
                if q + 1 <= k:
                    thr = r if q + 1 == k else pmin.get(q + 1, 0)
                    dp = _bits(np.nonzero(self.last(b, q + 1) >= thr)[0])
                else:
                    dp = -1   # all rows
            terms.append(_Term(b, q, graph_rb, own, tuple(masks), dp))
        # What s reads of buffers not made on the chain (or made before the run): its window
        # at row r (or the whole-read operands, bound._step_needs).
        reads: list[tuple[BufferId, int, int | None]] = []   # (buffer, bytes, producer index or None)
        for b, held in self.own_m[k].items():
            buf = self.graph.buffers[b]
            if buf.kind is TensorKind.WEIGHT or b == sp.out:
                continue
            if b in sp.maps:
                rm = sp.maps[b]
                n_rows = sum(min(top, rm.in_rows) - max(bot, 0) for bot, top in rm.runs(r, r + 1))
                held = n_rows * _least_row_bytes(self.graph, b)
            reads.append((b, held, self.prod.get(b) if self.prod.get(b, k) < k else None))
        if sp.out not in self.prod and not sp.alias:
            reads.append((sp.out, sp.row, None))   # the row it writes of a graph output (stored)
        return _Instant(k, r, tuple(left), tuple(right), tuple(terms), tuple(reads), self.extra[k])

    @staticmethod
    def _floor(v: np.ndarray, q: int, pmin: Mapping[int, int]) -> np.ndarray:
        lo = pmin.get(q, 0)
        if lo:
            v = v.copy()
            v[:lo] = _INF
        return v

    @staticmethod
    def _ceil(w: np.ndarray, n: int, pmax: Mapping[int, int]) -> np.ndarray:
        hi = pmax.get(n)
        if hi is not None and hi + 1 < len(w):
            w = w.copy()
            w[hi + 1:] = _INF
        return w

    # -- a run ----------------------------------------------------------------------------
    def _first(self, i: int) -> tuple[np.ndarray, np.ndarray, dict[BufferId, np.ndarray]] | None:
        """For runs starting at ``a_i``, per instant at or after it (rows, ordered by step) and
        per last step ``j`` (columns): the instant's bytes with no tensor whole, and per buffer
        the bytes the instant counts of it outside the chain DP (``-1``: the DP counts rows of
        it).  None once the work budget is spent."""
        if self._at is not None and self._at[0] == i:
            return self._at[1]
        m = self.m
        inst = [ins for ins in self.instants if ins.k >= i]
        if self.spent + len(inst) * (m - i) > self.evals:
            self._at = (i, None)
            return None
        self.spent += len(inst) * (m - i)
        ks = np.array([ins.k for ins in inst], dtype=np.int64)
        base = np.zeros((len(inst), m), dtype=np.int64)
        counted: dict[BufferId, np.ndarray] = {}

        def count(b: BufferId) -> np.ndarray:
            if b not in counted:
                counted[b] = np.zeros((len(inst), m), dtype=np.int64)
            return counted[b]

        for x, ins in enumerate(inst):
            k = ins.k
            row = base[x]
            row[k:] += ins.left[min(k - i, len(ins.left) - 1)] + ins.extra
            # Past the DP's reach the value at the cut holds (more edges only add).
            rr = np.array(ins.right, dtype=np.int64)
            d = np.minimum(np.arange(m - k), len(rr) - 1)
            row[k:] += rr[d]
            termed = {t.buffer for t in ins.terms if t.q >= i}
            for b, v, q in ins.reads:
                if q is not None and q >= i and b in termed:
                    continue   # made in the run: its term counts its readers' rows, s's among them
                row[k:] += v
                c = count(b)
                c[x, k:] = np.where(c[x, k:] < 0, -1, c[x, k:] + v)
            for t in ins.terms:
                if t.q < i:
                    continue
                cuts = sorted({k, *(n for n, _ in t.masks if n > k), *([t.q + 1] if t.q + 1 > k else [])})
                c = count(t.buffer)
                for lo, hi in zip(cuts, [*cuts[1:], m]):
                    if lo >= m:
                        break
                    cl = t.own
                    for n, bits in t.masks:
                        if n <= lo:
                            cl |= bits
                    if t.dp is not None and t.q + 1 <= lo:
                        # The DP may count rows of it: only the others are added.
                        cl = 0 if t.dp == -1 else cl & ~t.dp
                        c[x, lo:hi] = -1
                    else:
                        c[x, lo:hi] = np.where(c[x, lo:hi] < 0, -1, c[x, lo:hi] + bin(cl).count("1") * t.row)
                    row[lo:hi] += bin(cl).count("1") * t.row
        got = (ks, base, counted)
        self._at = (i, got)
        self._delta = {}
        return got

    def footprint(self, i: int, j: int, whole: Mapping[BufferId, int], weights: int = 0) -> int:
        """The least bytes the run ``a_i..a_j`` holds at one instant, with the tensors ``whole``
        (buffer -> bytes) whole and resident, and ``weights`` bytes of weights resident; 0 (no
        claim) once the work budget is spent.  Runs are asked in order of their first step
        (the run DP's), which the one-row cache of ``_first`` relies on for speed only."""
        got = self._first(i)
        if got is None:
            return 0
        ks, base, counted = got
        end = int(np.searchsorted(ks, j, side="right"))
        if not end:
            return 0
        total = base[:end, j]
        flat = 0
        for b, v in whole.items():
            if b not in counted:
                flat += v
                continue
            # A whole buffer replaces the rows counted of it; one the DP counts rows of adds
            # nothing (its bytes cover them).
            d = self._delta.get((b, v))
            if d is None:
                c = counted[b]
                d = self._delta[(b, v)] = np.where(c < 0, 0, v - np.minimum(c, v))
            total = total + d[:end, j]
        return int(total.max()) + flat + weights


@dataclass(frozen=True)
class _Term:
    """Buffer ``buffer`` made by articulation step ``q``: ``own`` (row ``r`` of ``y_s``, as a
    bit), ``masks`` (per reader index, the rows it still reads, as bits), ``dp`` (the rows the
    chain DP may count of it when its edge is in the run; -1: all; None: never)."""

    buffer: BufferId
    q: int
    row: int
    own: int
    masks: tuple[tuple[int, int], ...]
    dp: int | None


@dataclass(frozen=True)
class _Instant:
    """Stripe of ``a_k`` writing row ``r``: ``left[d]``/``right[d]`` the least chain-DP bytes of
    the ``d`` edges before/after it (the last entry holds for longer runs), ``terms`` fact 3
    off the chain, ``reads`` what it reads of other buffers, ``extra`` its working memory."""

    k: int
    r: int
    left: tuple[int, ...]
    right: tuple[int, ...]
    terms: tuple[_Term, ...]
    reads: tuple[tuple[BufferId, int, int | None], ...]
    extra: int


def _bits(idx: np.ndarray) -> int:
    out = 0
    for u in idx.tolist():
        out |= 1 << int(u)
    return out


def _rows_to_try(h: int, count: int = ROWS_PER_STEP) -> list[int]:
    """Rows ``r`` of a step's result to take instants at: spread over its interior."""
    if h <= 2:
        return list(range(h))
    picks = {max(1, min(h - 2, round(h * f))) for f in ((0.5,) if count == 1 else (0.25, 0.5, 0.75)[:count])}
    return sorted(picks)


__all__ = ["EVALS", "INSTANTS", "REACH", "ROWS_PER_STEP", "WORK", "ChainInstants"]
