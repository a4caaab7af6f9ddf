"""The one independent plan validator.

Every solver's plan passes through ``validate(graph, plan)`` before anyone sees it, so this
module is deliberately plain: it shares no code with the solvers (nothing from ``solvers/``),
recomputes every metric itself, and replays the plan event by event.  The rules are numbered
as in ``docs/plan-format.md``:

1. the plan describes this graph (buffer table, steps = computing operators with the right
   reads and writes) and the steps are a topological order, each operator once;
2. a step's read buffers hold valid data in a compute-level placement covering the step, its
   written buffers have one (weights read in place when ``weights_in_compute_level`` is off);
3. data becomes valid by being written or copied from a placement where it was valid; a
   transfer needs source and destination placements covering its step;
4. placements of one level that are live at a common step share no byte; offsets are aligned
   and inside the capacity; a buffer has at most one placement per level at any step;
5. every graph output ends valid in its home level;
6. compulsory / non-compulsory traffic (recomputed here);
7. the plan's ``metrics`` equal the recomputed ones.

Replay order within step ``s``: placements with ``first == s`` begin (empty, except the home
placement of an input or weight, ``first == 0``, which holds its data from the start), the
``before`` transfers run in listed order, the operator reads then writes, the ``after``
transfers run, then placements with ``last == s`` end and their data is gone.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from stowage.ir.graph import Graph, TensorKind
from stowage.plan import Metrics, Placement, Plan, Transfer

__all__ = ["LevelLike", "TargetLike", "Verdict", "Violation", "recompute_metrics", "validate"]


class LevelLike(Protocol):
    """The part of a target level the validator reads (``stowage.targets.Level`` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def writable(self) -> bool: ...


class TargetLike(Protocol):
    """The part of a target the validator reads; ``stowage.targets.Hierarchy`` satisfies it.

    A Protocol rather than an import of ``Hierarchy``: the validator must stay checkable on its
    own (it shares nothing with the code whose plans it judges), and any object with these
    members, such as a test double, can stand in for a target.
    """

    @property
    def name(self) -> str: ...

    @property
    def levels(self) -> Sequence[LevelLike]: ...

    @property
    def inputs_home(self) -> str: ...

    @property
    def weights_home(self) -> str: ...

    @property
    def outputs_home(self) -> str: ...

    def level(self, name: str) -> LevelLike: ...


@dataclass(frozen=True)
class Violation:
    rule: int                 # 1..7, the rule number of docs/plan-format.md
    step: int | None
    buffers: tuple[int, ...]
    message: str


@dataclass(frozen=True)
class Verdict:
    ok: bool
    errors: tuple[Violation, ...]
    metrics: Metrics          # recomputed by the validator

    def summary(self, limit: int = 10) -> str:
        if self.ok:
            return "valid"
        lines = [f"invalid: {len(self.errors)} violation(s)"]
        lines += [f"  rule {e.rule}: {e.message}" for e in self.errors[:limit]]
        if len(self.errors) > limit:
            lines.append(f"  ... {len(self.errors) - limit} more")
        return "\n".join(lines)


class _Checker:
    """Holds the plan, the graph and the violations found so far; one method per rule."""

    def __init__(self, graph: Graph, plan: Plan, target: TargetLike | None = None) -> None:
        self.graph = graph
        self.plan = plan
        self.target = target
        self.errors: list[Violation] = []
        self.levels = [lv.name for lv in plan.target.levels]
        self.compute = plan.target.compute_level
        self.nsteps = len(plan.steps)
        self.index: dict[tuple[int, str], tuple[list[int], list[Placement]]] = {}
        self.final_valid: set[Placement] = set()

    # -- message helpers -------------------------------------------------------------
    def fail(self, rule: int, step: int | None, buffers: tuple[int, ...], text: str) -> None:
        where = f"{self.step_name(step)}: " if step is not None else ""
        self.errors.append(Violation(rule, step, tuple(buffers), where + text))

    def step_name(self, step: int | None) -> str:
        if step is None:
            return ""
        if 0 <= step < self.nsteps:
            return f"step {step} ({self.plan.steps[step].op})"
        return f"step {step}"

    def buf(self, bid: int) -> str:
        names = self.plan.buffers[bid].tensors if bid < len(self.plan.buffers) else ()
        return f"buffer {bid} ({names[0]})" if names else f"buffer {bid}"

    def nbytes(self, bid: int) -> int:
        return self.plan.buffers[bid].bytes

    def hops(self, a: str, b: str) -> int:
        return abs(self.levels.index(a) - self.levels.index(b))

    # -- rule 1: the plan describes this graph; the order is topological --------------
    def check_graph(self) -> bool:
        """Returns False when the plan is for another graph (later rules would be noise)."""
        g, p = self.graph, self.plan
        if len(p.buffers) != len(g.buffers):
            self.fail(1, None, (), f"plan has {len(p.buffers)} buffers, the graph has {len(g.buffers)}"
                      " (plan made for another model or another --dim/--element-bytes?)")
            return False
        ok = True
        for pb, gb in zip(p.buffers, g.buffers):
            kind = "output" if gb.is_output and gb.kind is TensorKind.ACTIVATION else gb.kind.value
            if pb.bytes != gb.bytes or pb.kind != kind:
                self.fail(1, None, (pb.id,), f"{self.buf(pb.id)} is {pb.bytes} bytes, {pb.kind} in the plan "
                          f"but {gb.bytes} bytes, {kind} in the graph")
                ok = False
            elif pb.kind in ("input", "weight") and pb.home is None:
                self.fail(1, None, (pb.id,), f"{self.buf(pb.id)} is a {pb.kind} without a home level")
                ok = False
        if not ok:
            return False
        by_name: dict[str, list[int]] = defaultdict(list)
        for op in g.computing_ops:
            by_name[op.name].append(op.index)
        self.step_op: list[int | None] = []
        done: set[int] = set()
        for s, st in enumerate(p.steps):
            if st.index is not None:
                # Version 2: the step names its operator by index (node names may repeat).
                if not 0 <= st.index < len(g.operators) or not g.operators[st.index].computing:
                    self.fail(1, s, (), f"operator index {st.index} ('{st.op}') is not a computing "
                              "operator of the graph")
                    self.step_op.append(None)
                    continue
                if st.index in done:
                    self.fail(1, s, (), f"operator '{st.op}' (index {st.index}) appears twice in the steps")
                    self.step_op.append(None)
                    continue
                if g.operators[st.index].name != st.op:
                    self.fail(1, s, (), f"operator index {st.index} is '{g.operators[st.index].name}' in the "
                              f"graph but '{st.op}' in the plan")
                cands = [st.index]
            else:
                cands = [i for i in by_name.get(st.op, []) if i not in done]
            if not cands:
                again = st.op in by_name
                self.fail(1, s, (), f"operator '{st.op}' " + ("appears twice in the steps" if again
                          else "is not a computing operator of the graph"))
                self.step_op.append(None)
                continue
            idx = cands[0]
            op = g.operators[idx]
            done.add(idx)
            self.step_op.append(idx)
            if st.op_type != op.op_type:
                self.fail(1, s, (), f"op_type is {st.op_type} in the plan but {op.op_type} in the graph")
            fused = tuple(g.operators[f].name for f in op.fused)
            if st.fused != fused and (st.index is not None or st.fused):
                self.fail(1, s, (), f"fused in-place operators {list(st.fused)} in the plan but "
                          f"{list(fused)} in the graph (plan made with another --in-place setting?)")
            for what, plan_ids, graph_ids in (("reads", st.reads, g.op_reads(op)),
                                              ("writes", st.writes, g.op_writes(op))):
                if set(plan_ids) != set(graph_ids):
                    diff = tuple(sorted(set(plan_ids) ^ set(graph_ids)))
                    self.fail(1, s, diff, f"{what} buffers {sorted(set(plan_ids))} but the operator "
                              f"{what} {sorted(set(graph_ids))}")
        missing = [op for op in g.computing_ops if op.index not in done]
        for op in missing[:5]:
            self.fail(1, None, (), f"operator '{op.name}' ({op.op_type}) is never run")
        if len(missing) > 5:
            self.fail(1, None, (), f"... and {len(missing) - 5} more operators are never run")
        # Topological: every producer of a read buffer ran at an earlier step.
        ran: set[int] = set()
        for s, op_idx in enumerate(self.step_op):
            if op_idx is None:
                continue
            for b in g.op_reads(g.operators[op_idx]):
                prod = g.buffers[b].producer
                if prod is not None and prod not in ran:
                    self.fail(1, s, (b,), f"reads {self.buf(b)} before its producer "
                              f"'{g.operators[prod].name}' has run")
            ran.add(op_idx)
        return True

    # -- rule 4: placements ---------------------------------------------------------
    def check_placements(self) -> None:
        p = self.plan
        per_level: dict[str, list[Placement]] = defaultdict(list)
        for pl in p.placements:
            lv = p.target.level(pl.level)
            assert lv is not None  # checked by _references_ok
            size = self.nbytes(pl.buffer)
            if pl.last >= self.nsteps or pl.first > pl.last:
                self.fail(4, None, (pl.buffer,), f"{self.buf(pl.buffer)} in {pl.level}: step range "
                          f"[{pl.first}, {pl.last}] is not inside the plan's {self.nsteps} steps")
                continue
            if pl.offset % lv.alignment:
                self.fail(4, pl.first, (pl.buffer,), f"{self.buf(pl.buffer)} in {pl.level}: offset "
                          f"{pl.offset} is not a multiple of the alignment {lv.alignment}")
            if lv.capacity is not None and pl.offset + size > lv.capacity:
                self.fail(4, pl.first, (pl.buffer,), f"{self.buf(pl.buffer)} in {pl.level} at "
                          f"[{pl.offset}, {pl.offset + size}) exceeds the capacity {lv.capacity}")
            per_level[pl.level].append(pl)
        # One placement per (buffer, level) at any step.
        per_buffer_level: dict[tuple[int, str], list[Placement]] = defaultdict(list)
        for level, pls in per_level.items():
            for pl in pls:
                per_buffer_level[(pl.buffer, level)].append(pl)
        for (bid, level), pls in per_buffer_level.items():
            pls.sort(key=lambda x: x.first)
            for a, b in itertools.pairwise(pls):
                if b.first <= a.last:
                    self.fail(4, b.first, (bid,), f"{self.buf(bid)} has two placements in {level} "
                              f"(steps [{a.first}, {a.last}] and [{b.first}, {b.last}])")
        self.index = {key: ([q.first for q in pls], pls) for key, pls in per_buffer_level.items()}
        for level, pls in per_level.items():
            self._sweep(level, pls)

    def _sweep(self, level: str, pls: list[Placement]) -> None:
        """Time sweep: ``active`` holds the placements live at the current step, sorted by
        offset and pairwise disjoint, so a new one can only collide with its neighbours."""
        active: list[tuple[int, int, int]] = []          # (offset, end, placement index)
        ending: list[tuple[int, int]] = []               # heap of (last, placement index)
        order = sorted(range(len(pls)), key=lambda i: (pls[i].first, pls[i].offset))
        for i in order:
            pl = pls[i]
            while ending and ending[0][0] < pl.first:
                _, j = heapq.heappop(ending)
                k = bisect.bisect_left(active, (pls[j].offset, pls[j].offset + self.nbytes(pls[j].buffer), j))
                if k < len(active) and active[k][2] == j:
                    active.pop(k)
            start, end = pl.offset, pl.offset + self.nbytes(pl.buffer)
            if end == start:
                continue
            k = bisect.bisect_left(active, (start, end, i))
            clash = []
            if k > 0 and active[k - 1][1] > start:
                clash.append(active[k - 1])
            m = k
            while m < len(active) and active[m][0] < end:
                clash.append(active[m])
                m += 1
            if clash:
                for o_start, o_end, j in clash:
                    other = pls[j]
                    lo, hi = max(start, o_start), min(end, o_end)
                    self.fail(4, pl.first, (pl.buffer, other.buffer),
                              f"{self.buf(pl.buffer)} overlaps {self.buf(other.buffer)} in {level} at "
                              f"[{lo}, {hi}) (steps [{pl.first}, {pl.last}] and [{other.first}, {other.last}])")
                continue  # keep ``active`` disjoint
            active.insert(k, (start, end, i))
            heapq.heappush(ending, (pl.last, i))

    def placement_at(self, bid: int, level: str, step: int) -> Placement | None:
        entry = self.index.get((bid, level))
        if entry is None:
            return None
        firsts, pls = entry
        k = bisect.bisect_right(firsts, step) - 1
        if k >= 0 and pls[k].last >= step:
            return pls[k]
        return None

    # -- rules 2, 3, 5: replay data validity ------------------------------------------
    def replay(self) -> None:
        g, p = self.graph, self.plan
        valid: set[Placement] = set()
        for start in p.placements:
            pb = p.buffers[start.buffer]
            if start.first == 0 and pb.kind in ("input", "weight") and start.level == pb.home:
                valid.add(start)
        transfers: dict[tuple[int, str], list[Transfer]] = defaultdict(list)
        for t in p.transfers:
            if not 0 <= t.step < self.nsteps:
                self.fail(3, None, (t.buffer,), f"transfer of {self.buf(t.buffer)} {t.src} -> {t.dst} "
                          f"at step {t.step}: the plan has {self.nsteps} steps")
                continue
            transfers[(t.step, t.phase)].append(t)
        ends: dict[int, list[Placement]] = defaultdict(list)
        for ending in p.placements:
            ends[ending.last].append(ending)
        read_in_place = not p.options.weights_in_compute_level
        for s in range(self.nsteps):
            self._transfers(s, transfers.get((s, "before"), ()), valid)
            st = p.steps[s]
            for b in st.reads:
                pl = self.placement_at(b, self.compute, s)
                if pl is not None and pl in valid:
                    continue
                if read_in_place and p.buffers[b].kind == "weight":
                    home = p.buffers[b].home
                    hp = self.placement_at(b, home, s) if home else None
                    if hp is not None and hp in valid:
                        continue
                    self.fail(2, s, (b,), f"reads weight {self.buf(b)} in place, but it is not valid in its "
                              f"home level {home} at this step")
                elif pl is None:
                    self.fail(2, s, (b,), f"reads {self.buf(b)}, which has no {self.compute} placement "
                              "covering the step")
                else:
                    self.fail(2, s, (b,), f"reads {self.buf(b)} from {self.compute} at [{pl.offset}, "
                              f"{pl.offset + self.nbytes(b)}), which holds no valid data (never loaded, "
                              "or not reloaded after it left)")
            for b in st.writes:
                pl = self.placement_at(b, self.compute, s)
                if pl is None:
                    self.fail(2, s, (b,), f"writes {self.buf(b)}, which has no {self.compute} placement "
                              "covering the step")
                else:
                    valid.add(pl)
            self._transfers(s, transfers.get((s, "after"), ()), valid)
            if s == self.nsteps - 1:
                self.final_valid = set(valid)
            for ended in ends.get(s, ()):
                valid.discard(ended)
        # Rule 5: outputs end valid at home (placements valid after the last step's
        # ``after`` transfers).
        for gb in g.buffers:
            if not gb.is_output:
                continue
            home = p.buffers[gb.id].home
            if home is None:
                self.fail(5, None, (gb.id,), f"graph output {self.buf(gb.id)} has no home level")
                continue
            pl = self.placement_at(gb.id, home, self.nsteps - 1) if self.nsteps else None
            if pl is None or pl not in self.final_valid:
                self.fail(5, None, (gb.id,), f"graph output {self.buf(gb.id)} does not end valid in its home "
                          f"level {home}" + ("" if pl else " (no placement there at the last step)"))

    def _transfers(self, s: int, ts: Iterable[Transfer], valid: set[Placement]) -> None:
        for t in ts:
            what = f"transfer of {self.buf(t.buffer)} {t.src} -> {t.dst} ({t.phase})"
            if t.src == t.dst:
                self.fail(3, s, (t.buffer,), f"{what}: source and destination are the same level")
                continue
            if self.target is not None and not self.target.level(t.dst).writable:
                self.fail(3, s, (t.buffer,), f"{what}: level {t.dst} is not writable")
            src = self.placement_at(t.buffer, t.src, s)
            dst = self.placement_at(t.buffer, t.dst, s)
            if src is None:
                self.fail(3, s, (t.buffer,), f"{what}: no {t.src} placement covers the step")
            elif src not in valid:
                self.fail(3, s, (t.buffer,), f"{what}: the {t.src} copy at [{src.offset}, "
                          f"{src.offset + self.nbytes(t.buffer)}) holds no valid data at this point")
            if dst is None:
                self.fail(3, s, (t.buffer,), f"{what}: no {t.dst} placement covers the step")
            elif src is not None and src in valid:
                valid.add(dst)

    # -- rules 6 and 7 -----------------------------------------------------------------
    def check_metrics(self, metrics: Metrics) -> None:
        if metrics.noncompulsory_bytes < 0:
            self.fail(6, None, (), f"transfers move {metrics.compulsory_bytes + metrics.noncompulsory_bytes} "
                      f"byte-hops, less than the compulsory {metrics.compulsory_bytes}")
        claimed = self.plan.metrics
        for key in ("compulsory_bytes", "noncompulsory_bytes"):
            if getattr(claimed, key) != getattr(metrics, key):
                self.fail(7, None, (), f"metrics.{key} is {getattr(claimed, key)}, "
                          f"recomputed {getattr(metrics, key)}")
        if dict(claimed.peak_bytes) != dict(metrics.peak_bytes):
            self.fail(7, None, (), f"metrics.peak_bytes is {dict(claimed.peak_bytes)}, "
                      f"recomputed {dict(metrics.peak_bytes)}")


def recompute_metrics(plan: Plan) -> Metrics:
    """Metrics from the plan alone (rule 6), independent of any solver's bookkeeping."""
    levels = [lv.name for lv in plan.target.levels]
    compute = plan.target.compute_level

    def hops(a: str, b: str) -> int:
        return abs(levels.index(a) - levels.index(b))

    read = {b for st in plan.steps for b in st.reads}
    written = {b for st in plan.steps for b in st.writes}
    weights_in_compute_level = plan.options.weights_in_compute_level
    compulsory = 0
    for pb in plan.buffers:
        loaded_from_home = pb.kind == "input" or (pb.kind == "weight" and weights_in_compute_level)
        if pb.id in read and pb.home is not None and loaded_from_home:
            compulsory += pb.bytes * hops(pb.home, compute)
        if pb.kind == "output" and pb.id in written and pb.home is not None:
            compulsory += pb.bytes * hops(compute, pb.home)
    moved = sum(plan.buffers[t.buffer].bytes * hops(t.src, t.dst) for t in plan.transfers)
    peak = {name: 0 for name in levels}
    for pl in plan.placements:
        peak[pl.level] = max(peak[pl.level], pl.offset + plan.buffers[pl.buffer].bytes)
    return Metrics(compulsory_bytes=compulsory, noncompulsory_bytes=moved - compulsory, peak_bytes=peak)


def _references_ok(c: _Checker) -> bool:
    """Every level name and buffer id the plan uses exists (``plan_from_json`` guarantees it
    for files; plans built in code get a violation instead of an exception)."""
    p, levels, nbuf = c.plan, set(c.levels), len(c.plan.buffers)
    bad: list[str] = []
    if p.target.compute_level not in levels:
        bad.append(f"compute level {p.target.compute_level}")
    bad += [f"level {x}" for pl in p.placements for x in (pl.level,) if x not in levels]
    bad += [f"level {x}" for t in p.transfers for x in (t.src, t.dst) if x not in levels]
    bad += [f"level {b.home}" for b in p.buffers if b.home is not None and b.home not in levels]
    ids = [pl.buffer for pl in p.placements] + [t.buffer for t in p.transfers]
    ids += [b for st in p.steps for b in (*st.reads, *st.writes)]
    bad += [f"buffer {b}" for b in ids if not 0 <= b < nbuf]
    bad += [f"buffer id {b.id} at position {i}" for i, b in enumerate(p.buffers) if b.id != i]
    for what in dict.fromkeys(bad):
        c.fail(1, None, (), f"the plan refers to an unknown {what}")
    return not bad


def validate(graph: Graph, plan: Plan, target: TargetLike | None = None) -> Verdict:
    """Check ``plan`` against ``graph`` and rules 1-7; never raises on a bad plan.

    ``target`` (optional, e.g. a ``stowage.targets.Hierarchy``) adds the checks the plan file
    cannot express on its own: no transfer into a non-writable level, same level names."""
    c = _Checker(graph, plan, target)
    if not _references_ok(c):
        # Plans built in code (not read from JSON) can name unknown levels or buffers.
        return Verdict(False, tuple(c.errors), Metrics(0, 0, {name: 0 for name in c.levels}))
    metrics = recompute_metrics(plan)
    if target is not None:
        names = tuple(lv.name for lv in target.levels)
        if names != tuple(c.levels):
            c.fail(1, None, (), f"plan levels {list(c.levels)} differ from target "
                   f"'{target.name}' levels {list(names)}")
            return Verdict(False, tuple(c.errors), metrics)
        homes = {"input": target.inputs_home, "weight": target.weights_home, "output": target.outputs_home}
        for pb in plan.buffers:
            if pb.kind in homes and pb.home != homes[pb.kind]:
                c.fail(1, None, (pb.id,), f"{c.buf(pb.id)} ({pb.kind}) has home {pb.home}, target "
                       f"'{target.name}' keeps {pb.kind}s in {homes[pb.kind]}")
    if c.check_graph():
        c.check_placements()
        c.replay()
    c.check_metrics(metrics)
    return Verdict(not c.errors, tuple(c.errors), metrics)
