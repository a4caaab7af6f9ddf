"""Exact static allocation with fixed lifetimes: a MiniMalloc-style branch and bound.

The problem: buffers with fixed lifetimes and sizes (``interval.Interval``: inclusive step
ranges ``first..last``, the project's convention); give each an offset so that buffers alive
at a common step never share a byte, either (a) within a given capacity (the decision problem
MiniMalloc solves) or (b) with the smallest possible peak address.  Internally time runs in
MiniMalloc's half-open form ``[first, last + 1)``: its sections are the gaps between those
boundaries, converted once in ``_sweep``.

Why this search and not a plain CP-SAT NoOverlap2D model: the latter reached only 1.23x the
optimum on the MiniMalloc benchmarks in 60 s.  The ideas that make MiniMalloc fast (Moffitt,
ASPLOS 2023) are implemented here after the paper and its open-source solver:

* **canonical solutions** -- every buffer sits directly on top of the highest time-overlapping
  buffer below it (its *minimum offset*), and buffers are placed in non-decreasing order of
  offset (ties by a static preorder).  Any packing can be turned into such a one without
  raising any buffer, so the search stays complete;
* **dominance** -- a buffer is never placed at or above the lowest possible top of another
  unplaced buffer (that would leave a gap the other one fills for free);
* **section inference** -- time is cut into *sections* (maximal intervals with one set of
  live buffers); in every section the unplaced buffers stack above the section's floor, so
  ``floor + their total size <= capacity`` must hold;
* **dynamic decomposition** -- when no unplaced buffer crosses a section boundary, the two
  sides are independent sub-problems and are solved one after the other;
* **hatless pruning** -- when the buffer just placed overlaps no unplaced buffer, nothing
  else depends on its placement, so if the rest fails no sibling placement is tried;
* **round-robin restarts** over three static preorders (by lifetime width, area and section
  total; the T key is recomputed from the current unplaced totals whenever a sub-problem
  starts) with MiniMalloc's schedule: a budget of 2n nodes, doubled every round, so one bad
  ordering cannot stall the search.

These are the rules of MiniMalloc's ``solver.cc`` (canonical_only, section_inference,
dynamic_ordering, check_dominance, unallocated_floor, static_preordering,
dynamic_decomposition, monotonic_floor, hatless_pruning, heuristics WAT,TAW,TWA).  The search
runs compiled (``solvers.alloc.exact_jit``, numba) when numba is installed and in Python
otherwise; both visit the same nodes and return the same offsets.

**Memory.**  The search keeps, for every level of its path, the list of buffers still
unplaced (both engines), so a dive through a group of ``k`` buffers that are connected in time
(no step boundary free of live buffers separates them) holds about ``k^2 / 2`` list entries,
some 12 bytes each: 10,000 such buffers took 1.4 GB.  Groups are found up front by a sweep
(``_groups``, O(n log n)); when one has more than ``MAX_EXACT_GROUP`` buffers (about 200 MB of
path lists) the instance is packed by the greedy packer (``alloc.greedy``, memory linear in
the buffers and their time conflicts) instead, reported as ``feasible`` (``optimal`` only when
it meets the peak-live bound) with the reason saying so.

A search that ends without a packing and without hitting a budget is a proof of
infeasibility.  The search is deterministic: no randomness, the node budget (not the clock)
decides the restarts, so the same input gives the same offsets.

**Work budget, not wall time** (issue 14, item 6).  Every search has a total budget of nodes
over all its restarts (``node_budget``: ``PACK_NODES_PER_SECOND`` per second of the time
argument, unless the caller passes ``nodes``), and both engines count the same nodes, so the
same instance and budget stop at the same node on any machine, at any load, with either
engine.  The time argument is kept as a wall-clock safety net only: a search it ends reports
``stopped_by="time"`` (and counts in ``alloc.greedy.wall_cuts``, which the planners read for
``solver.stopped_by``); a search the node budget ends reports ``stopped_by="nodes"`` -- the
same answer on an idle and on a loaded machine.  Before, the wall clock was the only stop: on
densenet121 at a 4 s limit the zero-spill packing got 9,000-40,000 nodes depending on the
load, and ``auto``/``exact`` returned different plans (non-monotone sweeps).
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stowage.solvers import work_meter
from stowage.solvers.alloc.greedy import note_wall_cut
from stowage.solvers.alloc.interval import Interval, Lifetime, peak_live_at

log = logging.getLogger(__name__)

__all__ = ["MAX_EXACT_GROUP", "PACK_NODES_PER_SECOND", "AllocationResult", "check_packing", "exact_pack",
           "node_budget", "solve_allocation"]

Offset = int

#: The largest group of time-connected buffers the exact search takes on (module docstring,
#: "Memory"); larger instances are packed greedily, in memory linear in their size.
MAX_EXACT_GROUP = 4096

#: The exact packer's work budget per second of its time argument, in search nodes over all
#: restarts (``node_budget``).  Calibrated on the 2-core reference VM: the compiled engine
#: runs 300k-400k nodes/s idle on 150-450 buffers (MiniMalloc's instances, densenet121's
#: zero-spill packings) and 160k/s at load 5-6 under ``nice``, so the budget ends a search in
#: about a third of its time argument idle and within it up to a threefold slowdown; only a
#: machine slower than that reaches the wall-clock safety net (``stopped_by="time"``).  The
#: pure-Python engine (15k-25k nodes/s, the fallback without numba) usually meets the safety
#: net first and says so.
PACK_NODES_PER_SECOND = 100_000


def node_budget(seconds: float) -> int:
    """The node budget of a time argument (``PACK_NODES_PER_SECOND`` per second, at least
    one node): what stops a search on any machine; the seconds are only a safety net."""
    return max(1, int(PACK_NODES_PER_SECOND * max(0.0, seconds)))


@dataclass(frozen=True)
class AllocationResult:
    """``offsets`` follow the input order (``None`` when no packing was found).

    ``status``: ``optimal`` (peak proven minimal), ``feasible`` (a packing, optimality not
    proven), ``infeasible`` (proven: no packing within the capacity; ``reason`` says why) or
    ``unknown`` (a budget ran out first).  ``lower_bound`` is a proven lower bound on the peak.
    ``stopped_by``: ``""`` when the search ran to its end (a packing, a proof, or in
    peak mode the best peak proven), ``"nodes"`` when the node budget ended it (the same on
    every machine) and ``"time"`` when the wall-clock safety net did (another machine or load
    may answer differently).
    """

    offsets: tuple[Offset, ...] | None
    status: str
    peak: int | None
    lower_bound: int
    seconds: float
    reason: str = ""
    nodes: int = 0
    stopped_by: str = ""


def check_packing(buffers: Sequence[Lifetime], offsets: Sequence[int], capacity: int | None) -> str | None:
    """A naive independent check (sweep over steps): ``None`` if valid, else what is wrong."""
    if len(offsets) != len(buffers):
        return f"{len(offsets)} offsets for {len(buffers)} buffers"
    for i, (b, o) in enumerate(zip(buffers, offsets)):
        if o < 0:
            return f"buffer {i} has negative offset {o}"
        if capacity is not None and o + b.size > capacity:
            return f"buffer {i} ends at {o + b.size}, beyond the capacity {capacity}"
    idx = sorted(range(len(buffers)), key=lambda i: buffers[i].first)
    active: list[int] = []
    for i in idx:
        b = buffers[i]
        active = [j for j in active if buffers[j].last >= b.first]
        for j in active:
            if b.size and buffers[j].size and offsets[i] < offsets[j] + buffers[j].size \
                    and offsets[j] < offsets[i] + b.size:
                return (f"buffers {j} and {i} are both live at {b.first} and overlap in "
                        f"[{max(offsets[i], offsets[j])}, {min(offsets[i] + b.size, offsets[j] + buffers[j].size)})")
        active.append(i)
    return None


# ----------------------------------------------------------------------------------------
# Analysis: sections, overlaps, cuts (computed once, read-only during the search)
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Sweep:
    sizes: tuple[int, ...]
    widths: tuple[int, ...]           # steps live (last - first + 1)
    sec_lo: tuple[int, ...]           # first section of each buffer
    sec_hi: tuple[int, ...]           # one past its last section
    overlaps: tuple[tuple[int, ...], ...]
    section_members: tuple[tuple[int, ...], ...]
    nsections: int


def _sweep(buffers: Sequence[Lifetime]) -> _Sweep:
    """Sections (between consecutive half-open boundaries ``first`` / ``last + 1``), each
    buffer's section range, its overlaps and each section's members."""
    spans = [(b.first, b.last + 1) for b in buffers]
    times = sorted({t for span in spans for t in span})
    index = {t: i for i, t in enumerate(times)}
    nsec = max(0, len(times) - 1)
    lo = tuple(index[lower] for lower, _ in spans)
    hi = tuple(index[upper] for _, upper in spans)
    members: list[list[int]] = [[] for _ in range(nsec)]
    for i in range(len(buffers)):
        for s in range(lo[i], hi[i]):
            members[s].append(i)
    overlaps: list[set[int]] = [set() for _ in buffers]
    for m in members:
        for i in m:
            overlaps[i].update(m)
    for i in range(len(buffers)):
        overlaps[i].discard(i)
    return _Sweep(
        sizes=tuple(b.size for b in buffers), widths=tuple(upper - lower for lower, upper in spans), sec_lo=lo,
        sec_hi=hi, overlaps=tuple(tuple(sorted(o)) for o in overlaps),
        section_members=tuple(tuple(m) for m in members), nsections=nsec,
    )


# Search outcomes (``_SPENT``: the total node budget of ``_decide``, not one restart's).
_FOUND, _NOTFOUND, _ABORTED, _TIMEOUT, _SPENT = 0, 1, 2, 3, 4

# Static preorders (MiniMalloc's defaults): W = lifetime width, A = area, T = the largest
# section total the buffer is part of; all descending, ties by input index.
_HEURISTICS = ("WAT", "TAW", "TWA")


class _Search:
    """One decision problem: find offsets within ``capacity``."""

    def __init__(self, sw: _Sweep, capacity: int, deadline: float) -> None:
        self.sw = sw
        self.cap = capacity
        self.deadline = deadline
        n = len(sw.sizes)
        self.off = [-1] * n
        self.solution = [-1] * n
        self.minoff = [0] * n
        self.total = [0] * sw.nsections
        for s, m in enumerate(sw.section_members):
            self.total[s] = sum(sw.sizes[i] for i in m)
        self.witness = [m[0] if m else 0 for m in sw.section_members]
        self.cuts = [0] * max(0, sw.nsections - 1)
        for i in range(n):
            for s in range(sw.sec_lo[i], sw.sec_hi[i] - 1):
                self.cuts[s] += 1
        self.nodes = 0
        self.node_limit = 0
        self.heuristic = _HEURISTICS[0]

    # -- preorders and partitions ------------------------------------------------------
    def prepare(self, bufs: Sequence[int]) -> list[int]:
        """Preorder one partition (``bufs`` in ascending ids): the heuristic's keys, all
        descending, ties by id.  T uses the *current* unplaced section totals, as MiniMalloc
        computes it whenever a sub-problem starts."""
        sw, total, h = self.sw, self.total, self.heuristic
        keys = []
        for i in bufs:
            w = sw.widths[i]
            by = {"W": w, "A": w * sw.sizes[i], "T": max(total[sw.sec_lo[i]:sw.sec_hi[i]])}
            keys.append(tuple(-by[c] for c in h) + (i,))
        return [k[-1] for k in sorted(keys)]

    def solve_parts(self, bufs: Sequence[int], s_lo: int, s_hi: int) -> int:
        """Cut [s_lo, s_hi) where no unplaced buffer crosses and solve the pieces in time
        order (``bufs``: unplaced buffers, ascending ids)."""
        cuts, lo, hi = self.cuts, self.sw.sec_lo, self.sw.sec_hi
        a = s_lo
        for s in range(s_lo, s_hi):
            if s == s_hi - 1 or cuts[s] == 0:
                b = s + 1
                part = [i for i in bufs if lo[i] < b and hi[i] > a]
                if part:
                    st = self.search(list(enumerate(self.prepare(part))), a, b, -1, -1)
                    if st != _FOUND:
                        return st
                a = b
        return _FOUND

    # -- the depth-first search ----------------------------------------------------------
    def search(self, rest: list[tuple[int, int]], s_lo: int, s_hi: int, last_off: int, last_rank: int) -> int:
        """``rest``: the unplaced buffers of this partition as (rank, index); the partition
        spans sections [s_lo, s_hi).  ``(last_off, last_rank)`` is the last placement, which
        the next one may not precede (canonical order)."""
        self.nodes += 1
        if self.nodes > self.node_limit:
            return _ABORTED
        if not (self.nodes & 255) and time.perf_counter() > self.deadline:
            return _TIMEOUT
        if not rest:
            return _FOUND
        sw = self.sw
        sizes, minoff, off, total, cap = sw.sizes, self.minoff, self.off, self.total, self.cap
        sec_lo, sec_hi, overlaps, members = sw.sec_lo, sw.sec_hi, sw.overlaps, sw.section_members
        witness = self.witness
        order = sorted([(minoff[i], r, i) for r, i in rest])
        min_height = min(m + sizes[i] for m, _, i in order)
        # Every unplaced buffer of a section stacks above the lowest offset still allowed,
        # so the largest section total bounds all candidates at once (section inference).
        room = cap - max(total[s_lo:s_hi])
        for m, r, i in order:
            if m >= min_height:
                break  # dominance: would leave a gap another buffer fills for free
            if m > room:
                break  # offsets only grow from here on: some section cannot fit
            if m < last_off or (m == last_off and r < last_rank):
                continue  # canonical order: offsets never decrease
            size = sizes[i]
            h = m + size
            off[i] = m
            self.solution[i] = m
            changed = []
            a_lo, a_hi = s_hi, s_lo
            hatless = True
            for o in overlaps[i]:
                if off[o] < 0:
                    hatless = False
                if off[o] < 0 and minoff[o] < h:
                    changed.append((o, minoff[o]))
                    minoff[o] = h
                    if sec_lo[o] < a_lo:
                        a_lo = sec_lo[o]
                    if sec_hi[o] > a_hi:
                        a_hi = sec_hi[o]
            lo_i, hi_i = sec_lo[i], sec_hi[i]
            for s in range(lo_i, hi_i):
                total[s] -= size
            # Unallocated floor: in each section touched by a raised buffer, the unplaced
            # buffers stack above the lowest of their minimum offsets.
            ok = True
            # (``m + t <= cap`` already holds by ``room``; a cached witness -- the member that
            # had the lowest minimum offset last time -- usually shows the bound holds in O(1).)
            for s in range(max(a_lo, s_lo), min(a_hi, s_hi)):
                t = total[s]
                if not t:
                    continue
                w = witness[s]
                if off[w] < 0 and minoff[w] + t <= cap:
                    continue
                f, w = min([(minoff[x], x) for x in members[s] if off[x] < 0])
                witness[s] = w
                if f + t > cap:
                    ok = False
                    break
            st = _NOTFOUND
            if ok:
                child = [x for x in rest if x[1] != i]
                cuts = self.cuts
                split = False
                for s in range(lo_i, hi_i - 1):
                    c = cuts[s] - 1
                    cuts[s] = c
                    if c == 0 and s_lo <= s < s_hi - 1:
                        split = True
                if split:
                    st = self.solve_parts(sorted(x[1] for x in child), s_lo, s_hi)
                else:
                    st = self.search(child, s_lo, s_hi, m, r)
                for s in range(lo_i, hi_i - 1):
                    cuts[s] += 1
            for s in range(lo_i, hi_i):
                total[s] += size
            for o, v in reversed(changed):
                minoff[o] = v
            off[i] = -1
            if st != _NOTFOUND:
                return st
            if hatless:
                break
        return _NOTFOUND


def _jit_arrays(sw: _Sweep) -> tuple:
    """The read-only arrays of ``exact_jit`` (CSR overlap and member lists)."""
    import numpy as np

    def csr(lists: Sequence[Sequence[int]]) -> tuple:
        ptr = np.zeros(len(lists) + 1, np.int64)
        ptr[1:] = np.cumsum([len(x) for x in lists])
        idx = np.fromiter((v for x in lists for v in x), np.int64, int(ptr[-1]))
        return ptr, idx

    ov_ptr, ov_idx = csr(sw.overlaps)
    mem_ptr, mem_idx = csr(sw.section_members)
    a = lambda xs: np.asarray(xs, np.int64)  # noqa: E731
    return (a(sw.sizes), a(sw.sec_lo), a(sw.sec_hi), ov_ptr, ov_idx, mem_ptr, mem_idx, a(sw.widths))


@functools.cache
def _jit_compiled():
    """``solvers.alloc.exact_jit``, compiled (or loaded from numba's disk cache) in this
    process, or ``None`` when numba is missing."""
    try:
        from stowage.solvers.alloc import exact_jit as exact_alloc_jit
    except ImportError as e:  # numba missing: the Python search gives the same answers, slower
        log.warning("exact allocator: numba unavailable (%s); using the pure-Python search", e)
        return None
    import numpy as np

    sw = _sweep([Interval(0, 0, 1, 1), Interval(1, 1, 2, 1)])
    probe = _Search(sw, 2, 0.0)
    M = (np.full(2, -1, np.int64), np.full(2, -1, np.int64), np.zeros(2, np.int64),
         np.asarray(probe.total, np.int64), np.asarray(probe.witness, np.int64),
         np.asarray(probe.cuts, np.int64), np.zeros(2, np.int64))
    exact_alloc_jit.decide(100, _jit_arrays(sw) + (np.arange(3, dtype=np.int64),), M, 2, 1e300)
    return exact_alloc_jit


def _jit_cache_warm() -> bool:
    """Whether numba's disk cache holds the compiled search (loading it takes well under a
    second; compiling it, about 10-15 s of CPU).  Unknown numba internals count as warm (the
    old behaviour: compile in the process)."""
    try:
        from stowage.solvers.alloc import exact_jit as exact_alloc_jit
    except ImportError:
        return True   # numba missing: nothing to compile
    try:
        index = exact_alloc_jit.decide._cache._cache_file._index_path  # type: ignore[attr-defined]  # numba internals
    except AttributeError:
        return True
    return os.path.exists(index)


#: The background compile started by this process (at most one).
_BACKGROUND: list[subprocess.Popen[bytes]] = []


def _compile_in_background() -> None:
    """Start one detached process that compiles the search into numba's disk cache, so this
    process's time limit is not spent compiling (a fresh install's first compile otherwise ran
    ~15 s past its limit) and later processes load it."""
    if _BACKGROUND:
        return
    try:
        _BACKGROUND.append(subprocess.Popen(
            [sys.executable, "-c", "from stowage.solvers.alloc.exact import _jit_compiled; _jit_compiled()"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
        log.info("exact allocator: numba's cache is cold; compiling it in the background "
                 "(this process uses the Python search, node for node the same)")
    except OSError as e:
        log.info("exact allocator: could not start the background compile (%s)", e)


def _jit_module(inline: bool = False):
    """The compiled search for this solve, or ``None`` for the Python one.  With a warm disk
    cache (or ``inline``: ``engine="jit"``) it is loaded, or compiled, here, once per process,
    before any solve starts its clock.  With a cold cache, ``engine="auto"`` starts a
    background compile and this solve runs the Python search: the same nodes, so the same
    answer within the same node budget, only slower (the wall-clock safety net may then end
    it: ``stopped_by``); a later solve, in this process or another, loads the cache once the
    compile has written it."""
    if inline or _jit_compiled.cache_info().currsize or _jit_cache_warm():
        return _jit_compiled()
    _compile_in_background()
    return None


def _decide(sw: _Sweep, capacity: int, deadline: float, engine: str,
            budget: int | None = None) -> tuple[int, list[int] | None, int]:
    """Decision search with round-robin restarts over the preorders, MiniMalloc's schedule:
    a node budget of 2n, doubled after each round.  ``budget`` caps the nodes of all restarts
    together (``None``: no cap): the restart that would pass it gets what is left, and when
    that is spent too the outcome is ``_SPENT``.  Both engines count a node when it is
    entered (the one over a restart's limit included), so they stop at the same node.
    ``deadline`` is the wall-clock safety net (``_TIMEOUT``).  Returns (outcome, offsets,
    nodes)."""
    n = len(sw.sizes)
    if n == 0:
        return _FOUND, [], 0
    jit = _jit_module(inline=engine == "jit") if engine in ("auto", "jit") else None
    if engine == "jit" and jit is None:
        raise RuntimeError("engine 'jit' needs numba")
    if jit is not None:
        import numpy as np

        search = _Search(sw, capacity, deadline)  # the initial totals, witnesses and cuts
        P0 = _jit_arrays(sw)
        M = (np.full(n, -1, np.int64), np.full(n, -1, np.int64), np.zeros(n, np.int64),
             np.asarray(search.total, np.int64), np.asarray(search.witness, np.int64),
             np.asarray(search.cuts or [0], np.int64), np.zeros(2, np.int64))
        dl = deadline if deadline != float("inf") else 1e300
    else:
        search = _Search(sw, capacity, deadline)
    limit = n
    nodes = 0
    while True:
        limit *= 2
        for h in _HEURISTICS:
            if budget is not None and nodes >= budget:
                return _SPENT, None, nodes
            this = limit if budget is None else min(limit, budget - nodes)
            if jit is not None:
                P = P0 + (np.asarray(["WAT".index(c) for c in h], np.int64),)
                st = int(jit.decide(this, P, M, capacity, dl))
                nodes += int(M[6][0])
                offsets = [int(v) for v in M[1]] if st == _FOUND else None
            else:
                search.heuristic = h
                search.nodes = 0
                search.node_limit = this
                st = search.solve_parts(range(n), 0, sw.nsections)
                nodes += search.nodes
                offsets = [int(v) for v in search.solution] if st == _FOUND else None
            if st == _FOUND:
                return _FOUND, offsets, nodes
            if st in (_NOTFOUND, _TIMEOUT):
                return st, None, nodes
            if this < limit:
                return _SPENT, None, nodes  # the total budget ended this restart
            if time.perf_counter() > deadline:
                return _TIMEOUT, None, nodes


def solve_allocation(
    buffers: Sequence[Lifetime],
    capacity: int | None,
    time_limit: float,
    seed: int = 0,
    workers: int | None = None,
    minimize_peak: bool = False,
    engine: str = "auto",
    nodes: int | None = None,
) -> AllocationResult:
    """Pack ``buffers`` (``interval.Interval`` or anything with ``first``, ``last``, ``size``:
    inclusive step ranges, such as ``minimalloc_csv.CsvBuffer``).

    Decision mode (default): any packing within ``capacity``.  ``minimize_peak=True``: the
    smallest peak address (``capacity`` is then an upper limit, ``None`` = unbounded), by
    proving lower bounds infeasible and tightening packings found.  ``seed`` and ``workers``
    are accepted for the common solver interface; the search is single-threaded and uses no
    randomness, so results are identical for every seed and worker count.  ``engine``:
    ``"auto"`` (compiled when numba is installed), ``"jit"`` or ``"python"`` -- the same
    search, so the same answer and node count, at different speeds.

    ``nodes``: the work budget, search nodes over every restart and (peak mode) every probe;
    ``None`` derives it from ``time_limit`` (``node_budget``).  ``time_limit`` itself is the
    wall-clock safety net; ``AllocationResult.stopped_by`` says which one ended the search.
    """
    if engine not in ("auto", "jit", "python"):
        raise ValueError(f"engine must be 'auto', 'jit' or 'python', got {engine!r}")
    del seed, workers
    if engine != "python":
        _jit_module(inline=engine == "jit")  # load (or compile) before the clock starts
    started = time.perf_counter()
    deadline = started + max(0.0, time_limit)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 50 * len(buffers) + 1000))
    try:
        budget = node_budget(time_limit) if nodes is None else max(1, nodes)
        res = _solve(buffers, capacity, deadline, started, minimize_peak, engine, budget)
    finally:
        sys.setrecursionlimit(limit)
    if res.stopped_by == "time":
        note_wall_cut()
    return res


def _solve(buffers: Sequence[Lifetime], capacity: int | None, deadline: float, started: float,
           minimize_peak: bool, engine: str, budget: int) -> AllocationResult:
    for i, b in enumerate(buffers):
        if b.size < 0 or b.first > b.last:
            raise ValueError(f"buffer {i}: needs size >= 0 and first <= last, got {b}")
    if capacity is None and not minimize_peak:
        raise ValueError("decision mode needs a capacity")
    bound, at = peak_live_at(buffers)
    elapsed = lambda: round(time.perf_counter() - started, 4)  # noqa: E731
    if capacity is not None and bound > capacity:
        return AllocationResult(None, "infeasible", None, bound, elapsed(),
                                f"at time {at}, live buffers need {bound} bytes > capacity {capacity}")
    # Zero-size buffers take no space: they sit at offset 0 and stay out of the search.
    real = [i for i, b in enumerate(buffers) if b.size > 0]
    sub = [buffers[i] for i in real]
    largest = _largest_group(sub)
    if largest > MAX_EXACT_GROUP:
        return _greedy(buffers, capacity, bound, at, deadline, elapsed, largest)
    sw = _sweep(sub)

    def full(offs: list[int]) -> tuple[int, ...]:
        out = [0] * len(buffers)
        for k, i in enumerate(real):
            out[i] = offs[k]
        return tuple(out)

    def peak_of(offs: list[int]) -> int:
        return max((o + s for o, s in zip(offs, sw.sizes)), default=0)

    if not minimize_peak:
        assert capacity is not None
        st, offs, nodes = _decide(sw, capacity, deadline, engine, budget)
        if st == _FOUND:
            assert offs is not None
            p = peak_of(offs)
            return AllocationResult(full(offs), "optimal" if p <= bound else "feasible", p, bound,
                                    elapsed(), "", nodes)
        if st == _NOTFOUND:
            return AllocationResult(None, "infeasible", None, capacity + 1, elapsed(),
                                    f"exhaustive search ({nodes} nodes) proves no packing fits in "
                                    f"{capacity} bytes although at most {bound} are live at once "
                                    "(fragmentation)", nodes)
        if st == _SPENT:
            return AllocationResult(None, "unknown", None, bound, elapsed(),
                                    f"node budget of {budget} spent", nodes, "nodes")
        return AllocationResult(None, "unknown", None, bound, elapsed(),
                                f"time limit reached after {nodes} nodes", nodes, "time")

    # Minimise the peak.  The first dive with an unbounded capacity is a greedy skyline
    # packing (an upper bound, never cut); then probe capacities between the proven lower
    # bound and the best peak, each probe getting half of the nodes left (all of them for
    # the last one) -- a share of the work, not of the time, so the probes and their answers
    # are the same on every machine.
    nodes_total = 0
    st, offs, n0 = _decide(sw, sum(sw.sizes), float("inf"), engine)
    nodes_total += n0
    assert offs is not None
    best = offs
    lb = bound
    lo, hi = bound, peak_of(best) - 1
    first = True
    stopped = ""
    while lo <= hi:
        left = budget - nodes_total
        if left <= 0:
            stopped = "nodes"
            break
        if time.perf_counter() >= deadline:
            stopped = "time"
            break
        mid = lo if first else (lo + hi) // 2
        first = False
        st, offs, n2 = _decide(sw, mid, deadline, engine, left if mid == hi else max(1, left // 2))
        nodes_total += n2
        if st == _FOUND:
            assert offs is not None
            best = offs
            hi = peak_of(offs) - 1
        elif st == _NOTFOUND:
            lb = lo = mid + 1
        else:
            lo = mid + 1  # unknown: look higher, the proven bound stays
            if st == _TIMEOUT:
                stopped = "time"
            elif not stopped:
                stopped = "nodes"
    p = peak_of(best)
    if p <= lb:
        stopped = ""                  # proven optimal: no budget decided anything
    if capacity is not None and lb > capacity:
        why = (f"at time {at}, {bound} bytes are live at once" if lb == bound
               else "exhaustive search proves fragmentation")
        return AllocationResult(None, "infeasible", None, lb, elapsed(),
                                f"the minimum peak is at least {lb} bytes > capacity {capacity} ({why})",
                                nodes_total)
    if capacity is not None and p > capacity:
        return AllocationResult(None, "unknown", None, lb, elapsed(),
                                f"best packing found needs {p} bytes > capacity {capacity}; "
                                f"proven lower bound {lb}", nodes_total, stopped)
    status = "optimal" if p <= lb else "feasible"
    return AllocationResult(full(best), status, p, min(lb, p), elapsed(), "", nodes_total, stopped)


def _largest_group(buffers: Sequence[Lifetime]) -> int:
    """The most buffers in one group connected in time: a sweep over the half-open spans
    ``[first, last + 1)`` in start order; a new group starts where no earlier span reaches."""
    spans = sorted((b.first, b.last + 1) for b in buffers)
    largest = count = 0
    reach = None
    for lo, hi in spans:
        if reach is None or lo >= reach:
            count, reach = 0, hi
        count += 1
        reach = max(reach, hi)
        largest = max(largest, count)
    return largest


def _greedy(buffers: Sequence[Lifetime], capacity: int | None, bound: int, at: int | None, deadline: float,
            elapsed: Callable[[], float], largest: int) -> AllocationResult:
    """Pack an instance too large for the exact search with the greedy packer (bounded
    memory; module docstring, "Memory").  Not a proof of anything but the peak-live bound."""
    from stowage.solvers.alloc.greedy import allocate_offsets

    why = (f"{largest} buffers overlap in one group (more than {MAX_EXACT_GROUP}, the exact search's "
           "memory limit); packed by the greedy packer")
    ivs = [Interval(i, b.first, b.last, b.size) for i, b in enumerate(buffers)]
    left = max(0.05, deadline - time.perf_counter()) if deadline != float("inf") else 10.0
    offsets = allocate_offsets(ivs, 1, capacity, time_limit=left)
    if offsets is None:
        return AllocationResult(None, "unknown", None, bound, elapsed(),
                                f"{why}, which found no packing within {capacity} bytes")
    offs = tuple(offsets[i] for i in range(len(buffers)))
    peak = max((o + b.size for o, b in zip(offs, buffers)), default=0)
    status = "optimal" if peak <= bound else "feasible"
    log.info("exact allocator: %s (peak %d, bound %d at %s)", why, peak, bound, at)
    return AllocationResult(offs, status, peak, min(bound, peak), elapsed(), why)


def exact_pack(ivs: Sequence[Interval], alignment: int, capacity: int, time_limit: float,
               on_cut: Callable[[], None] | None = None, work: float | None = None) -> dict[int, int] | None:
    """Offsets (by interval id) within ``capacity`` from the exact packer, or None (none found
    within the budget, or proven impossible).  Sizes and the capacity are counted in
    alignment units, so every offset is aligned (conservative by less than one unit for the
    topmost buffer).  ``work``: seconds of work, turned into the node budget
    (``node_budget``; ``None``: ``time_limit``) -- pass a value that does not depend on the
    time left, so the answer does not either; ``time_limit`` is the wall-clock safety net,
    and ``on_cut`` is called when it, not the node budget, ended the search."""
    a = max(1, alignment)
    units = [Interval(iv.id, iv.first, iv.last, -(-iv.size // a)) for iv in ivs]
    res = solve_allocation(units, capacity // a, time_limit,
                           nodes=node_budget(time_limit if work is None else work))
    work_meter.add_nodes(res.nodes)     # ``solvers.work_meter``: the planners' work budgets
    if res.offsets is None:
        if res.stopped_by == "time" and on_cut is not None:
            on_cut()
        return None
    return {iv.id: off * a for iv, off in zip(ivs, res.offsets)}
