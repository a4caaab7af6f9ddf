"""The run bound: which tensors must cross off-chip memory because no partition into cascades
can hold the steps around them (part of ``stowage.solvers.tiling.bound``).

The per-buffer bound of ``bound`` looks at one buffer and one step (or one small cascade) at
a time.  On MobileNetV2 every such test passes below 128 KiB, yet plans move bytes there: a
cascade holds a ring of *every* tensor between its members at once, so a cascade long enough
to avoid a large cut is too big, and the cut tensors a shorter one leaves whole sit beside
it.  This module turns that into a bound valid for every plan the plan format allows.

**Articulation steps.**  ``a`` is an articulation step when every other step is its
ancestor or its descendant.  Articulation steps are totally ordered (file order), and every
order runs them in that order.  MobileNetV2, EfficientNet-B0 and the backbones of the suite
CNNs are chains of them (a residual block's steps are all comparable).  A few side branches
may be left out first (``kept_steps``): the argument holds on any subset of the steps with
the graph's own ancestry, since a cascade meets it in a convex set of it too.  Leaving out
LR-ASPP's low-level classifier, parallel to the whole high-level path, makes 115 of its 117
steps articulation steps instead of 21.  Number them ``a_0 < a_1 < ... < a_{m-1}``; link
``k`` joins ``a_k`` and ``a_{k+1}``.

**Facts every plan satisfies** (a plan: any order of steps, any partition of the steps into
cascades, each cascade a convex set, since the macro graph is acyclic; any band heights):

1. The cascade ``K`` of ``a_i`` meets the articulation steps in an interval ``a_i..a_j`` (two
   members and convexity put every articulation step between them in ``K``) and contains the
   hull ``H(i, j)``: every kept step that is a descendant of ``a_i`` and an ancestor of
   ``a_j``.  So the cascades cut the articulation steps into *runs*; link ``k`` is *joined*
   when ``a_k``, ``a_{k+1}`` share a cascade.
2. ``L(t)``, the links a tensor ``t`` spans: links ``k`` with ``t``'s producer ``p <= a_k``
   (equal or an ancestor) and some reader ``c >= a_{k+1}``.  ``L(t)`` is an interval.  If a
   link of ``L(t)`` is not joined, ``t`` is not inside one cascade (``p`` and ``c`` in one
   cascade would put ``a_k`` and ``a_{k+1}`` in it), so ``t`` is whole on chip from ``p``'s
   cascade to its last reader's, or it crosses off-chip memory.  Crossing costs at least
   ``2 * min_c read_c(t)`` non-compulsory bytes (stored once, loaded by a reader), as in
   ``bound``; each crossing buffer counts once, however many links it spans.
3. For a run ``a_i..a_j`` with cascade ``K``: a tensor ``t`` whose ``L(t)`` holds link
   ``i - 1`` or link ``j`` (both unjoined) and that does not cross is whole and resident
   while ``K`` runs: its producer is ``<= a_j`` (so its cascade is ``K`` or runs before) and a
   reader is ``>= a_i`` (so its cascade is ``K`` or runs after).
4. ``K``'s footprint is at least the sum, over the buffers its hull's steps touch, of the
   most any of those steps needs of it at once (``bound``'s ``m_i(b)``: rows of a read, one
   row of a write, the whole of a broadcast operand or of an operand of a step that cannot
   run in stripes, weights when they live in the compute level), with each tensor of facts 3
   and 5 counted whole, plus the resident tensors it does not touch, plus the largest
   working memory of one of its steps.  A cascade holds every one of its buffers (ring,
   streamed window or whole) in its own bytes for the whole macro step (the macro graph's
   buffers, ``stowage.ir.tiling.macro_graph``), except rings that may be empty between
   stripes (every reader's window leaves no row for its next, ``sharable_rings``), which
   may share bytes with each other (``program.share_rings``): those count once, at the
   largest of their terms.  The other exception allowed for is in-place
   execution: a step running an operator that may write over an operand
   (``stowage.ir.inplace.data_operands``: elementwise, as a residual Add writing into the
   skip's ring) may put its result in that operand's bytes, so buffers linked by such a
   step of the hull count as one group, needing the larger of its whole tensors' bytes (a
   whole buffer shares bytes only as one graph buffer) and its largest other term.  A run
   whose footprint exceeds the capacity is impossible.
5. *Barrier tensors* (``bound._barriers``): a tensor reduced over H by a step
   (``RowMap.accumulate``, a global pool) that a reader of every row depends on (a
   squeeze-excitation Mul).  That reader starts after the pool's last band, when every row
   is made and none of them read by it, so the tensor is whole wherever it lives (a ring
   would hold all its rows) or crosses.  In a run that holds all of ``L(t)``'s links it is
   therefore whole too, unless it crosses.

**The bound.**  Minimise, over every partition of ``a_0..a_{m-1}`` into runs and every choice
of crossing tensors, the crossing cost subject to facts 3-5 for every run.  Every plan gives
one such choice (its runs, its crossing tensors), so the minimum is at most its traffic.  A
DP over the run boundaries computes it exactly: its state is the run's first articulation
step and which tensors spanning the link before it cross (decided once, when their first
unjoined link is met, so each is paid once; a barrier tensor inside one run is decided
there, cheapest choice first, and leaves no state).  To keep the state small at most
``TRACKED`` tensors per link and ``INSIDE`` barrier tensors per run are tracked, the
costliest; an untracked tensor is treated as crossing for free (a relaxation, so still a
bound).  Past ``WORK`` run evaluations the run bound claims nothing.  Tensors ``bound``
already proves must cross are crossing and paid there, not here.

**Per instant** (``per_instant``): fact 4 per stripe (``_Instant``, the running step's own
terms) and with the rows the rest of the cascade holds at that stripe
(``stowage.solvers.tiling.instants.ChainInstants``, consulted first); a run fits only when
both do.  Each answer is kept per run and set of whole tensors.

**What would break it.**  Rings sized per instant (two rings of one cascade sharing bytes at
different times) or in-place execution of operators outside ``data_operands`` would need
fact 4 to sum per instant or to group more buffers; compute engines reading off-chip memory
in place would make crossing cheaper than a store and a load; splitting one operator's
weights across cascades would break "weights whole".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from stowage.ir.graph import BufferId, Graph, Operator, TensorKind
from stowage.ir.inplace import data_operands
from stowage.ir.tiling import WINDOW, row_units
from stowage.solvers.tiling.instants import ChainInstants

#: Tensors tracked per link by the DP (the costliest); the rest cross for free in it.
TRACKED = 4
#: Barrier tensors (fact 5) decided inside one run, the costliest; the rest cross for free.
INSIDE = 2
#: Run evaluations the DP may make at most; past it the run bound claims nothing (deterministic,
#: unlike a clock).  (MobileNetV2 needs a few thousand, EfficientNet-B0 at 256 KiB more than
#: 500,000: 182 s at load 7 on the 2-core VM, about 2,700-5,000 evaluations per second.)
WORK = 500_000
#: Run evaluations per second of the compile's time limit (``run_work``): the budget the
#: compile gives the DP, so that it ends on this count, not on the clock.  It used to be
#: ``WORK`` with the time limit as the safety net, which the clock reached first on every
#: large CNN, so the bound (and ``stopped_by``) depended on the load.  5,000 per second
#: (50,000 at the default 10 s): the per-instant chain (``instants``) needs about 20,000 on
#: MobileNetV2 at 64 KiB to prove 150,528 B (0 at 5,000), and 50,000 cost at most 1.0 s of
#: CPU on the suite CNNs measured idle (EfficientNet-B0, DenseNet-121, LR-ASPP at 256 KiB,
#: ResNet-50 at 64 KiB).  The compile's limit, not a macro solve's share of it, sets it.
RUN_EVALS_PER_SECOND = 5_000

log = logging.getLogger(__name__)

#: ``(m, read, tileable)`` of a step, as ``bound._step_needs`` gives it.
Needs = tuple[dict[BufferId, int], dict[BufferId, int], bool]


@dataclass(frozen=True)
class RunBound:
    """``bytes``: the least crossing cost over every partition into runs; ``crossing``: the
    tensors one least-cost choice sends off-chip (one witness, not a set every plan sends);
    ``articulations``: how many articulation steps the runs cut; ``runs``: the runs of that
    choice, as ``(first, last)`` positions of articulation steps in file order."""

    bytes: int
    crossing: tuple[BufferId, ...]
    articulations: int
    runs: tuple[tuple[int, int], ...] = ()
    #: The wall-clock ``deadline`` (a safety net for the compile's time limit), not the work
    #: budget, ended the DP: the run bound then claims nothing, and the value depends on load.
    cut: bool = False


def _alias_pairs(graph: Graph, op: Operator) -> list[tuple[BufferId, BufferId]]:
    """Buffers step ``op`` may put in one another's bytes: each result and each activation
    operand it reaches through members that may write over their operands
    (``data_operands``), also through the unplanned tensors inside a folded QDQ group
    (DequantizeLinear -> Add -> QuantizeLinear may write the int8 sum over an int8 operand)."""
    tb = graph.tensor_buffer
    flows: dict[str, set[str]] = {}
    for member in graph.step_members(op):
        for d in data_operands(member):
            flows.setdefault(d, set()).update(o for o in member.outputs if o)
    pairs: list[tuple[BufferId, BufferId]] = []
    for src in flows:
        if src not in tb or graph.buffers[tb[src]].kind is not TensorKind.ACTIVATION:
            continue
        seen, todo = {src}, [src]
        while todo:
            for nxt in flows.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        pairs += [(tb[t], tb[src]) for t in seen if t != src and t in tb and tb[t] != tb[src]]
    return pairs


class _Hull:
    """Fact 4 for a growing hull: the most each step needs of each buffer, alias groups
    (union-find) with their largest term, and the footprint for any set of whole tensors."""

    def __init__(self, aliasable: frozenset[BufferId], sharable: frozenset[BufferId] = frozenset()) -> None:
        self.sharable = sharable
        self.sterm: dict[BufferId, int] = {}   # terms of the buffers whose rings may share bytes
        self.parent: dict[BufferId, BufferId] = {}
        self.term: dict[BufferId, int] = {}
        self.top: dict[BufferId, int] = {}
        self.total = 0      # sum of the groups' largest terms
        self.mono = 0       # sum of the terms of buffers no step may overwrite (monotone)
        self.work = 0       # the largest working memory of one step
        self.aliasable = aliasable

    def find(self, b: BufferId) -> BufferId:
        root = b
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while b != root:
            self.parent[b], b = root, self.parent.get(b, b)
        return root

    def add_step(self, m: Mapping[BufferId, int], pairs: list[tuple[BufferId, BufferId]], extra: int,
                 index: int | None = None) -> None:
        del index  # every ring counts at its largest window here, whichever step it is
        for b, v in m.items():
            if b in self.sharable:
                # A ring that may empty between stripes may share bytes with others like it
                # (``program.share_rings``): counted apart, in ``footprint``.
                if v > self.sterm.get(b, 0):
                    self.sterm[b] = v
                self.find(b)
                continue
            old = self.term.get(b, 0)
            if v <= old:
                continue
            self.term[b] = v
            if b not in self.aliasable:
                self.mono += v - old
            r = self.find(b)
            if v > self.top.get(r, 0):
                self.total += v - self.top.get(r, 0)
                self.top[r] = v
        for a, c in pairs:
            ra, rc = self.find(a), self.find(c)
            if ra != rc:
                ta, tc = self.top.pop(ra, 0), self.top.get(rc, 0)
                self.parent[ra] = rc
                self.top[rc] = max(ta, tc)
                self.total += max(ta, tc) - ta - tc
        self.work = max(self.work, extra)

    def footprint(self, whole: Mapping[BufferId, int]) -> int:
        """With the tensors ``whole`` (buffer -> bytes) whole.  Within an alias group the whole
        tensors are in their own bytes (a whole buffer shares bytes only as one graph buffer)
        and a ring or window of the group may lie inside them or in another one's: the group
        needs the larger of its whole bytes and its largest other term (a whole member's term
        is at most its bytes, so the group's largest term serves)."""
        sums: dict[BufferId, int] = {}
        for b, v in whole.items():
            r = self.find(b)
            sums[r] = sums.get(r, 0) + v
        # The rings that may share bytes (``sharable_rings``) may all lie in one region: in
        # their own (beside every group's) or in their alias group's.  The largest excess of
        # one of them over its group's other terms is what they add at least.
        share = max((v - self.top.get(self.find(b), 0) for b, v in self.sterm.items() if b not in whole),
                    default=0)
        return (self.total + self.work + max(0, share)
                + sum(max(0, v - self.top.get(r, 0)) for r, v in sums.items()))


class _Instant:
    """Fact 4 counted per instant, valid when a cascade addresses its rows by slot
    (``CascadeTensor.slots``: rows of different tensors share bytes at different stripes).
    While step ``s`` of the hull runs the cascade holds at least: every weight of the hull
    (the macro step reads them all: they are resident for all of it), the whole tensors (of
    facts 3 and 5) in their own bytes, and what ``s`` itself needs of the other buffers it
    touches (``m_s(b)``) plus its working memory.  The footprint is the largest such sum.
    It ignores rows of other steps live at that instant (a skip's lag rows), so it is weaker
    than ``_Hull``; it needs no alias groups (``m_s`` already gives an in-place result no
    bytes of its own)."""

    def __init__(self, weights: frozenset[BufferId], graph: Graph | None = None,
                 lags: Mapping[tuple[int, BufferId], int] | None = None) -> None:
        self.weights = weights
        self.graph = graph
        self.lags = lags or {}
        self.wterm: dict[BufferId, int] = {}
        self.mono = 0       # the hull's weights (monotone)
        self.work = 0       # the largest working memory of one step (monotone)
        self.steps: list[tuple[int, dict[BufferId, int]]] = []   # (what s needs in all, its non-weight terms)
        self.at: dict[int, int] = {}                              # step index -> position in ``steps``
        #: Per step, per buffer it makes: the rows a reader in the hull still needs while it
        #: writes (``bound._lags``), the largest over those readers.
        self.lag: list[dict[BufferId, int]] = []
        self._at: np.ndarray | None = None          # ``footprint``'s per-step sums, and per buffer
        self._of: dict[BufferId, np.ndarray] = {}   # its terms and lags (cleared when stale)
        self._stale = False

    def add_step(self, m: Mapping[BufferId, int], pairs: list[tuple[BufferId, BufferId]], extra: int,
                 index: int | None = None) -> None:
        del pairs  # in-place results already need no bytes of their own in ``m``
        own: dict[BufferId, int] = {}
        for b, v in m.items():
            if b in self.weights:
                if v > self.wterm.get(b, 0):
                    self.mono += v - self.wterm.get(b, 0)
                    self.wterm[b] = v
            else:
                own[b] = v
                lag = self.lags.get((index, b), 0) if index is not None and self.graph is not None else 0
                prod = self.graph.buffers[b].producer if lag and self.graph is not None else None
                if prod is not None and prod in self.at:
                    got = self.lag[self.at[prod]]
                    if lag > got.get(b, 0):
                        got[b] = lag
                        self._stale = True
        if index is not None:
            self.at[index] = len(self.steps)
        self.steps.append((sum(own.values()) + extra, own))
        self.lag.append({})
        self.work = max(self.work, extra)

    def footprint(self, whole: Mapping[BufferId, int]) -> int:
        """With the tensors ``whole`` (buffer -> bytes) whole and resident: per step, its terms
        and lag rows (``at``) less the terms and lags of the whole tensors (vectorised over the
        steps, rebuilt when the hull has grown since the last call)."""
        if not self.steps:
            return self.mono + sum(whole.values()) + self.work
        if self._at is None or len(self._at) != len(self.steps) or self._stale:
            self._at = np.array([t + sum(lag.values()) for (t, _), lag in zip(self.steps, self.lag)], dtype=np.int64)
            self._of.clear()
            self._stale = False
        at = self._at
        for b in whole:
            d = self._of.get(b)
            if d is None:
                d = self._of[b] = np.array(
                    [own.get(b, 0) + lag.get(b, 0) for (_, own), lag in zip(self.steps, self.lag)], dtype=np.int64)
            at = at - d
        return self.mono + sum(whole.values()) + max(int(at.max()), self.work)


def _undominated(states: Mapping[frozenset[BufferId], tuple[int, tuple[BufferId, ...], tuple[tuple[int, int], ...]]]
                 ) -> list[tuple[frozenset[BufferId], tuple[int, tuple[BufferId, ...], tuple[tuple[int, int], ...]]]]:
    """The states no other one dominates: one crossing a superset of the tensors (so keeping
    fewer of them whole, which never makes a run larger) at no greater cost."""
    items = sorted(states.items(), key=lambda kv: (kv[1][0], -len(kv[0])))
    kept: list[tuple[frozenset[BufferId], tuple[int, tuple[BufferId, ...], tuple[tuple[int, int], ...]]]] = []
    for k, v in items:
        if not any(k2 >= k for k2, _ in kept):
            kept.append((k, v))
    return kept


def articulations(steps: list[Operator], anc: Mapping[int, int], desc: Mapping[int, int],
                  kept: int | None = None) -> list[int]:
    """Positions (in ``steps``, file order) of the steps of ``kept`` (a bit set; all when None)
    comparable with every other step of it."""
    full = (1 << len(steps)) - 1 if kept is None else kept
    return [k for k, op in enumerate(steps)
            if full >> k & 1 and (anc[op.index] | desc[op.index] | 1 << k) & full == full]


def kept_steps(steps: list[Operator], anc: Mapping[int, int], desc: Mapping[int, int]) -> int:
    """Steps to reason about (a bit set): all of them but a few side branches, left out when
    that makes more articulation steps.  Leaving steps out is sound (module docstring, fact
    1): a cascade meets the kept steps in a convex set of their order (the graph's own), so
    the argument holds on them with the graph's ancestry, only with fewer terms.  Greedy,
    the steps incomparable with the most others first (LR-ASPP's low-level classifier,
    parallel to the whole high-level path, makes 96 steps articulation steps when left out)."""
    n = len(steps)
    kept = (1 << n) - 1
    best = len(articulations(steps, anc, desc, kept))
    apart = sorted((k for k in range(n) if (anc[steps[k].index] | desc[steps[k].index] | 1 << k) != kept),
                   key=lambda k: (-(n - bin(anc[steps[k].index] | desc[steps[k].index]).count("1")), k))
    for k in apart[:64]:
        trial = kept & ~(1 << k)
        count = len(articulations(steps, anc, desc, trial))
        if count > best:
            kept, best = trial, count
    return kept


def sharable_rings(graph: Graph, steps: list[Operator]) -> frozenset[BufferId]:
    """Activations whose ring may be empty between stripes, so that the stripe program may put
    it in the bytes of another such ring (``stowage.solvers.tiling.program.share_rings``:
    rings with more than one live interval): every reader's window leaves no row for its next
    one (kernel <= stride; any map of another kind counts too, conservatively).  A ring read
    by overlapping windows keeps rows between its reader's stripes, so it is live throughout.
    The set may hold more than the rings a program shares: the bound only gets lower."""
    tb = graph.tensor_buffer
    overlapping: set[BufferId] = set()
    read: set[BufferId] = set()
    for op in steps:
        for u in row_units(graph, op) or ():
            for name, rm in u.maps.items():
                b = tb.get(name)
                if b is None:
                    continue
                read.add(b)
                if rm.kind == WINDOW and rm.kernel > rm.stride:
                    overlapping.add(b)
    return frozenset(b for b in read - overlapping if graph.buffers[b].kind is TensorKind.ACTIVATION
                     and not graph.buffers[b].is_output)


def run_bound(graph: Graph, capacity: int, steps: list[Operator], needs: Mapping[int, Needs],
              anc: Mapping[int, int], desc: Mapping[int, int], skip: frozenset[BufferId],
              barrier: frozenset[BufferId] = frozenset(), deadline: float | None = None,
              per_instant: bool = True, lags: Mapping[tuple[int, BufferId], int] | None = None,
              work: int | None = None) -> RunBound:
    """The bound of the module docstring.  ``anc``/``desc``: bit sets over positions in
    ``steps``; ``skip``: buffers already counted as crossing (``bound``'s forced ones);
    ``barrier``: buffers that are never a ring of fewer than all their rows (fact 5).
    ``per_instant``: fact 4 per instant (``_Instant``), valid for cascades addressing rows by
    slot; False: every ring at its largest window for the whole cascade (``_Hull``).  ``lags``:
    ``bound._lags``, the rows a reader still needs while their producer writes (per instant).
    ``work``: the evaluation budget (at most ``WORK``, the default; ``run_work``); ``deadline``
    is only the safety net (``RunBound.cut``)."""
    budget = WORK if work is None else max(0, min(WORK, work))
    pos = {op.index: k for k, op in enumerate(steps)}
    kept = kept_steps(steps, anc, desc)
    arts = articulations(steps, anc, desc, kept)
    m = len(arts)
    if m < 2:
        return RunBound(0, (), m)
    art_bit = [1 << k for k in arts]

    def le(x: int, k: int) -> bool:  # step at position x <= articulation k
        return x == arts[k] or bool(anc[steps[arts[k]].index] >> x & 1)

    def ge(x: int, k: int) -> bool:  # step at position x >= articulation k
        return x == arts[k] or bool(desc[steps[arts[k]].index] >> x & 1)

    # Tensors spanning links (fact 2) and their crossing costs.
    users: dict[BufferId, list[int]] = {}
    for op in steps:
        for b in needs[op.index][0]:
            users.setdefault(b, []).append(op.index)
    span: dict[BufferId, tuple[int, int]] = {}
    cost: dict[BufferId, int] = {}
    for b, us in users.items():
        buf = graph.buffers[b]
        if (buf.kind is not TensorKind.ACTIVATION or buf.is_output or buf.producer is None or buf.writers
                or b in skip or buf.producer not in pos):
            continue
        readers = [i for i in us if b not in graph.op_writes(graph.operators[i])]
        if not readers:
            continue
        p = pos[buf.producer]
        lo = next((k for k in range(m) if le(p, k)), m)
        hi = max((k for k in range(m - 1) for c in readers if ge(pos[c], k + 1)), default=-1)
        if lo <= hi:
            span[b] = (lo, hi)
            cost[b] = 2 * min(needs[i][1][b] for i in readers)
    # Track the costliest TRACKED tensors on every link.
    tracked: set[BufferId] = set()
    load = [0] * (m - 1)
    for b in sorted(span, key=lambda x: (-cost[x], x)):
        lo, hi = span[b]
        if all(load[k] < TRACKED for k in range(lo, hi + 1)):
            tracked.add(b)
            for k in range(lo, hi + 1):
                load[k] += 1
    walls = [b for b in barrier if b in span]
    on_link: list[tuple[BufferId, ...]] = [tuple(sorted(b for b in tracked if span[b][0] <= k <= span[b][1]))
                                           for k in range(m - 1)]
    pairs = {op.index: _alias_pairs(graph, op) for op in steps}
    aliasable = frozenset(x for prs in pairs.values() for pr in prs for x in pr)
    extra = {op.index: sum(mm.extra_bytes for mm in graph.step_members(op)) for op in steps}

    # One run of every articulation step (and everything between): nothing is cut.
    sharable = sharable_rings(graph, steps)
    wset = frozenset(b for op in steps for b in needs[op.index][0] if graph.buffers[b].kind is TensorKind.WEIGHT)

    def new_hull() -> _Hull | _Instant:
        return _Instant(wset, graph, lags) if per_instant else _Hull(aliasable, sharable)

    # Fact 4 per instant, with the rows other steps hold (``instants``): only for slot plans'
    # accounting (ring plans hold at least as much).
    chain = ChainInstants(graph, steps, arts, needs, capacity, deadline=deadline) if per_instant else None

    seen: dict[tuple[int, int, frozenset[BufferId]], bool] = {}

    def fits(h: _Hull | _Instant, i: int, j: int, whole: Mapping[BufferId, int]) -> bool:
        # One answer per run and set of whole tensors (the DP asks again for other states).
        key = (i, j, frozenset(whole))
        got = seen.get(key)
        if got is None:
            if len(seen) > 200_000:
                seen.clear()
            # The chain first: vectorised, and it rejects most runs that do not fit.
            got = seen[key] = not (chain is not None and chain.footprint(
                i, j, whole, h.mono if isinstance(h, _Instant) else 0) > capacity) and h.footprint(whole) <= capacity
        return got

    everything = new_hull()
    span_all = (anc[steps[arts[-1]].index] | art_bit[-1]) & (desc[steps[arts[0]].index] | art_bit[0]) & kept
    for op in steps:
        if span_all >> pos[op.index] & 1:
            everything.add_step(needs[op.index][0], pairs[op.index], extra[op.index], op.index)
    if fits(everything, 0, m - 1, {b: graph.buffers[b].bytes for b in walls}):
        return RunBound(0, (), m, ((arts[0], arts[-1]),), cut=chain is not None and chain.cut)

    inf = 1 << 62
    evaluations = 0
    # best[i][crossing among on_link[i-1]] = (cost, witness, runs)
    best: list[dict[frozenset[BufferId], tuple[int, tuple[BufferId, ...], tuple[tuple[int, int], ...]]]] = [
        {} for _ in range(m + 1)]
    best[0][frozenset()] = (0, (), ())
    for i in range(m):
        if not best[i]:
            continue
        left = on_link[i - 1] if i > 0 else ()
        hull = new_hull()
        bits_in = 0
        for j in range(i, m):
            # Grow the hull to H(i, j): descendants of a_i that are ancestors of a_j.
            aj = steps[arts[j]].index
            bits = (anc[aj] | art_bit[j]) & (desc[steps[arts[i]].index] | art_bit[i]) & kept
            new = bits & ~bits_in
            bits_in = bits
            while new:
                low = new & -new
                s = steps[low.bit_length() - 1]
                new ^= low
                hull.add_step(needs[s.index][0], pairs[s.index], extra[s.index], s.index)
            # Fact 4 is not monotone in j (merging alias groups lowers it); its part over
            # buffers no step may overwrite (weights among them) is: past the capacity, stop.
            if hull.mono + hull.work > capacity:
                break
            right = on_link[j] if j < m - 1 else ()
            # Fact 5: barrier tensors spanning only joined links of this run are whole in it
            # unless they cross (the costliest few tracked; the rest cross for free).
            inside = sorted((b for b in walls if i <= span[b][0] and span[b][1] <= j - 1),
                            key=lambda x: (-cost[x], x))[:INSIDE]
            fresh = [b for b in right if b not in left]
            # The tensors decided inside the run leave no state: only their cheapest feasible
            # choice matters, so their subsets are tried cheapest first.
            inner = sorted((sub for r in range(len(inside) + 1) for sub in combinations(inside, r)),
                           key=lambda sub: sum(cost[b] for b in sub))
            for crossing_left, (c0, wit0, runs0) in _undominated(best[i]):
                for r in range(len(fresh) + 1):
                    for chosen in combinations(fresh, r):
                        base_cross = crossing_left | frozenset(chosen)
                        loosest = {b: graph.buffers[b].bytes for b in (*left, *right)
                                   if b not in base_cross and b not in inside}
                        evaluations += 1
                        if not fits(hull, i, j, loosest):
                            continue  # infeasible even with every inside tensor crossing
                        for sub in inner:
                            evaluations += 1
                            if evaluations > budget:
                                log.info("tiled bound: the run bound used its work budget (%d runs); "
                                         "reporting the per-buffer bound alone", budget)
                                return RunBound(0, (), m)
                            if deadline is not None and evaluations % 1024 == 0 and time.monotonic() > deadline:
                                log.warning("tiled bound: the wall clock ended the run bound after %d runs; "
                                            "reporting the per-buffer bound alone", evaluations)
                                return RunBound(0, (), m, cut=True)
                            crossing = crossing_left | frozenset(chosen) | frozenset(sub)
                            whole = {b: graph.buffers[b].bytes for b in (*left, *right, *inside) if b not in crossing}
                            if not fits(hull, i, j, whole):
                                continue
                            c = c0 + sum(cost[b] for b in (*chosen, *sub))
                            key = frozenset(b for b in crossing if b in right)
                            if c < best[j + 1].get(key, (inf,))[0]:
                                best[j + 1][key] = (c, (*wit0, *chosen, *sub), (*runs0, (arts[i], arts[j])))
                            break
    if not best[m]:
        # No partition of the articulation steps fits at all: no plan exists at this capacity
        # (every plan gives one); any bound is then vacuous, so claim nothing.
        return RunBound(0, (), m)
    c, wit, runs = min(best[m].values())
    return RunBound(c, tuple(sorted(wit)), m, runs, cut=chain is not None and chain.cut)


def run_work(time_limit: float) -> int:
    """The run bound's evaluation budget for a compile's time limit: ``RUN_EVALS_PER_SECOND``
    per second, at most ``WORK`` (a function of the limit only, so the bound is the same at
    any load whenever the budget, not the safety deadline, ends the DP)."""
    return min(WORK, int(RUN_EVALS_PER_SECOND * max(0.0, time_limit)))


__all__ = ["RUN_EVALS_PER_SECOND", "TRACKED", "WORK", "RunBound", "articulations", "kept_steps", "run_bound",
           "run_work"]
