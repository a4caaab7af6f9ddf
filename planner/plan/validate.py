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
7. the plan's ``metrics`` equal the recomputed ones;
8. (tiled plans) each cascade's stripe program, replayed row by row: every row a stripe reads
   is present (in its ring slot, written earlier in the cascade, or loaded; in a staging
   buffer, loaded by the stripe itself), the rows and pads are exactly what the operator's
   attributes need (a dilated convolution: the runs of its taps' rows), every output row is
   produced once, every streamed output row is stored once after it is produced, rings fit
   their buffers (rings declared in another ring's buffer share its bytes: a row written
   evicts every row whose bytes it meets, and a stripe writes over a row it reads only as an
   elementwise in-place operator rewriting that row); a
   reduction over H reduces every input row once, in order, and its one result row is
   readable only after its last band;
9. (timed plans, ``docs/timing.md``) every transfer has a start, an end and a channel or none
   does; on one channel copies do not overlap in time; a copy out of a level starts after the
   copy that brought the buffer there ended; a copy into a placement starts after every copy
   from or to an earlier placement sharing a byte with it ended (no time x address overlap);
   ``metrics.estimated_seconds`` is at least the last copy's end.  (Step times are not in the
   plan; ``stowage.solvers.timing`` derives them.)  Weight streams (``plan.weight_loads``):
   each slice is a weight its step reads, copied from its home into free bytes of the compute
   level, ending before the step reads it; no slice is copied into bytes a slice still being
   read holds; the engine reads one slice at a time in step order; an operator's slices cover
   its output channels once; weight loads share no channel time with each other or with the
   transfers (``check_weight_loads``).

Replay order within step ``s``: placements with ``first == s`` begin (empty, except the home
placement of an input or weight, ``first == 0``, which holds its data from the start), the
``before`` transfers run in listed order, the operator reads then writes, the ``after``
transfers run, then placements with ``last == s`` end and their data is gone.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from stowage.ir.columns import column_tensors, transposed_columns
from stowage.ir.graph import VIEW_OP_TYPES, Graph, Operator, TensorKind
from stowage.plan import Metrics, Placement, Plan, Transfer
from stowage.plan.model import RING_MODES, Cascade, CascadeTensor, LevelRef, RowTransfer, Stripe

if TYPE_CHECKING:
    from stowage.ir.tiling import CascadeSpec

__all__ = ["LevelLike", "TargetLike", "Verdict", "Violation", "plan_graph", "recompute_metrics", "validate"]


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
    rule: int                 # 1..9, the rule number of docs/plan-format.md
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
        self.slice_offsets: dict[int, frozenset[int]] = {}
        #: Concat in place (``replay``): the slices (offsets) a placement holds while not all
        #: are written, and per buffer the slices its writers have written so far.
        self.held: dict[Placement, frozenset[int]] = {}
        self.slices_written: dict[int, set[int]] = defaultdict(set)

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
                    continue
                # A Concat in place: every writer of a slice runs before any reader.
                late = [w for w in g.buffers[b].writers if w not in ran and w != op_idx]
                if late:
                    self.fail(1, s, (b,), f"reads {self.buf(b)} before '{g.operators[late[0]].name}' has "
                              "written its slice (Concat in place)")
            ran.add(op_idx)
        self.check_slices()
        return True

    # -- rule 1: the layout of a Concat run in place ---------------------------------
    def check_slices(self) -> None:
        """Each Concat whose operands are slices of its result (``Graph.tensor_offsets``):
        recompute the layout from the node and the shapes (every axis before the Concat axis
        of size 1, operand ``i`` at the bytes of the operands before it, the bytes adding up
        to the result's), and compare it with the graph's offsets and the plan's ``slices``."""
        g, p = self.graph, self.plan
        expected: dict[int, list[tuple[int, int]]] = {}
        for op in g.operators:
            if op.op_type != "Concat" or not op.inputs or not all(i in g.tensor_offsets for i in op.inputs if i):
                continue
            out = next((o for o in op.outputs if o), "")
            y = g.tensors.get(out)
            bid = g.tensor_buffer.get(out)
            if y is None or bid is None:
                continue
            rank = len(y.shape)
            axis = int(op.attributes.get("axis", 0))
            axis = axis % rank if rank else 0
            problem = ""
            if any(d != 1 for d in y.shape[:axis]):
                problem = f"axis {axis} of shape {list(y.shape)} is not contiguous (an axis before it is not 1)"
            layout: list[tuple[int, int]] = []
            off = 0
            for name in op.inputs:
                x = g.tensors[name]
                if g.tensor_buffer.get(name) != bid:
                    problem = problem or f"operand '{name}' is not in the result's buffer"
                if (len(x.shape) != rank or x.shape[:axis] != y.shape[:axis]
                        or x.shape[axis + 1:] != y.shape[axis + 1:]):
                    problem = problem or f"operand '{name}' has shape {list(x.shape)}, not a slice of {list(y.shape)}"
                if g.tensor_offsets[name] != off:
                    problem = problem or (f"operand '{name}' is at byte {g.tensor_offsets[name]} of the result, "
                                          f"the operands before it end at byte {off}")
                layout.append((off, x.bytes))
                off += x.bytes
            if off != y.bytes or y.bytes != g.buffers[bid].bytes:
                problem = problem or f"the operands add up to {off} bytes, the result has {y.bytes}"
            if problem:
                self.fail(1, None, (bid,), f"Concat '{op.name}' in place: {problem}")
            expected[bid] = layout
        for pb in p.buffers:
            want = expected.get(pb.id, [])
            got = [(sl.offset, sl.bytes) for sl in pb.slices]
            if got != want:
                self.fail(1, None, (pb.id,), f"{self.buf(pb.id)} has slices {got} (offset, bytes) in the plan but "
                          f"{want} in the graph (plan made with another --in-place setting?)")
            for sl in pb.slices:
                if g.tensor_buffer.get(sl.tensor) != pb.id or g.tensor_offsets.get(sl.tensor) != sl.offset:
                    self.fail(1, None, (pb.id,), f"{self.buf(pb.id)}: slice '{sl.tensor}' is not at byte "
                              f"{sl.offset} of this buffer in the graph")
        #: Per buffer with slices, the offsets of all its slices.
        self.slice_offsets = {bid: frozenset(o for o, _ in lay) for bid, lay in expected.items()}

    # -- rule 4: placements ---------------------------------------------------------
    def check_placements(self) -> None:
        p = self.plan
        per_level: dict[str, list[Placement]] = defaultdict(list)
        # Name -> level (the first of a name, as ``TargetRef.level``) and buffer sizes, looked
        # up once: this loop runs once per placement (20,000+ on 10,000 operators).
        levels: dict[str, LevelRef] = {}
        for level_ref in p.target.levels:
            levels.setdefault(level_ref.name, level_ref)
        sizes = [b.bytes for b in p.buffers]
        for pl in p.placements:
            lv = levels[pl.level]   # every level name was checked by _references_ok
            size = sizes[pl.buffer]
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
        sizes = [b.bytes for b in self.plan.buffers]
        ends = [pl.offset + sizes[pl.buffer] for pl in pls]
        order = sorted(range(len(pls)), key=lambda i: (pls[i].first, pls[i].offset))
        for i in order:
            pl = pls[i]
            while ending and ending[0][0] < pl.first:
                _, j = heapq.heappop(ending)
                k = bisect.bisect_left(active, (pls[j].offset, ends[j], j))
                if k < len(active) and active[k][2] == j:
                    active.pop(k)
            start, end = pl.offset, ends[i]
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
        # Concat in place: the slices (offsets) a placement holds while not all are written,
        # and per buffer the slices its writers have written so far.
        self.held = {}
        self.slices_written = defaultdict(set)
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
                elif b in self.slice_offsets:
                    self._write_slices(s, b, pl, valid)
                else:
                    valid.add(pl)
            self._transfers(s, transfers.get((s, "after"), ()), valid)
            if s == self.nsteps - 1:
                self.final_valid = set(valid)
            for ended in ends.get(s, ()):
                valid.discard(ended)
                self.held.pop(ended, None)
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

    def _what(self, t: Transfer) -> str:
        """A transfer as messages name it (built only for a violation: replay runs this loop
        once per transfer)."""
        return f"transfer of {self.buf(t.buffer)} {t.src} -> {t.dst} ({t.phase})"

    def _transfers(self, s: int, ts: Iterable[Transfer], valid: set[Placement]) -> None:
        for t in ts:
            if t.src == t.dst:
                self.fail(3, s, (t.buffer,), f"{self._what(t)}: source and destination are the same level")
                continue
            if self.target is not None and not self.target.level(t.dst).writable:
                self.fail(3, s, (t.buffer,), f"{self._what(t)}: level {t.dst} is not writable")
            src = self.placement_at(t.buffer, t.src, s)
            dst = self.placement_at(t.buffer, t.dst, s)
            if src is None:
                self.fail(3, s, (t.buffer,), f"{self._what(t)}: no {t.src} placement covers the step")
            elif src not in valid and not self.held.get(src):
                self.fail(3, s, (t.buffer,), f"{self._what(t)}: the {t.src} copy at [{src.offset}, "
                          f"{src.offset + self.nbytes(t.buffer)}) holds no valid data at this point")
            if dst is None:
                self.fail(3, s, (t.buffer,), f"{self._what(t)}: no {t.dst} placement covers the step")
            elif src is not None and src in valid:
                valid.add(dst)
                self.held.pop(dst, None)
            elif src is not None and self.held.get(src):
                # A Concat-in-place buffer between its writers: the copy holds the same slices.
                self.held[dst] = self.held[src]
                valid.discard(dst)

    def _write_slices(self, s: int, b: int, pl: Placement, valid: set[Placement]) -> None:
        """Step ``s`` writes into buffer ``b``, whose tensors are slices of a Concat run in
        place.  A producer writes its slice (the offsets of its members' results in the
        graph); it must find every slice written before still in this placement (nothing
        overwrote it, it was not dropped or reloaded without it).  A step writing no slice
        (the Concat itself, and in-place operators over its whole result) completes it."""
        g = self.graph
        op_idx = self.step_op[s] if s < len(self.step_op) else None
        everything = self.slice_offsets[b]
        mine: set[int] = set()
        if op_idx is not None:
            for m in g.step_members(g.operators[op_idx]):
                mine.update(g.tensor_offsets[n] for n in m.outputs
                            if n in g.tensor_offsets and g.tensor_buffer.get(n) == b)
        prior = everything if pl in valid else self.held.get(pl, frozenset())
        if not mine:
            if prior != everything:
                missing = sorted(everything - prior)
                self.fail(3, s, (b,), f"writes {self.buf(b)} in {pl.level} at [{pl.offset}, "
                          f"{pl.offset + self.nbytes(b)}), which does not hold the slices at offsets {missing} "
                          "(Concat in place: all slices must be there)")
            valid.add(pl)
            self.held.pop(pl, None)
            return
        lost = sorted(self.slices_written[b] - prior - mine)
        if lost:
            self.fail(3, s, (b,), f"writes its slice of {self.buf(b)} into {pl.level} at [{pl.offset}, "
                      f"{pl.offset + self.nbytes(b)}), which no longer holds the slices at offsets {lost} "
                      "written by earlier steps (Concat in place: overwritten, or not reloaded)")
        self.slices_written[b] |= mine
        held = frozenset(prior | mine)
        if held >= everything:
            valid.add(pl)
            self.held.pop(pl, None)
        else:
            valid.discard(pl)
            self.held[pl] = held

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


    # -- rule 9: the timeline of a timed plan -------------------------------------------
    def check_timeline(self) -> None:
        """Rule 9 (module docstring), from the transfers' own times; nothing to check when no
        transfer is timed."""
        ts = self.plan.transfers
        if not any(t.start is not None or t.end is not None or t.channel is not None for t in ts):
            if self.plan.weight_loads:
                if ts:
                    t = ts[0]
                    self.fail(9, t.step, (t.buffer,), f"the plan has weight loads but transfer 0 of "
                              f"{self.buf(t.buffer)} has no start, end or channel")
                    return
                self.check_weight_loads([])
            return
        eps = 1e-12
        times: list[tuple[float, float, int]] = []   # (start, end, channel) per transfer
        for i, t in enumerate(ts):
            if t.start is None or t.end is None or t.channel is None:
                self.fail(9, t.step, (t.buffer,), f"transfer {i} of {self.buf(t.buffer)} has no "
                          "start, end or channel while others have them")
                return
            if not (0 <= t.start <= t.end) or t.channel < 0:
                self.fail(9, t.step, (t.buffer,), f"transfer {i} of {self.buf(t.buffer)}: start {t.start}, "
                          f"end {t.end}, channel {t.channel} (need 0 <= start <= end, channel >= 0)")
                return
            times.append((t.start, t.end, t.channel))
        self.check_weight_loads(times)
        by_channel: dict[int, list[int]] = defaultdict(list)
        for i, (_, _, ch) in enumerate(times):
            by_channel[ch].append(i)
        for ch, idx in by_channel.items():
            idx.sort(key=lambda k: times[k][:2])
            for a, b in itertools.pairwise(idx):
                if times[b][0] + eps < times[a][1]:
                    self.fail(9, ts[b].step, (ts[b].buffer,), f"transfers {a} and {b} overlap in time on channel "
                              f"{ch} ({times[a][0]:.6g}-{times[a][1]:.6g} s and {times[b][0]:.6g} s)")
        # Data: a copy out of a level waits for the copy that brought the buffer there.
        arrived: dict[tuple[int, str], float] = {}
        for i, t in enumerate(ts):
            came = arrived.get((t.buffer, t.src))
            if came is not None and times[i][0] + eps < came:
                self.fail(9, t.step, (t.buffer,), f"transfer {i} copies {self.buf(t.buffer)} out of {t.src} at "
                          f"{times[i][0]:.6g} s, before the copy into {t.src} ended at {came:.6g} s")
            arrived[(t.buffer, t.dst)] = times[i][1]
        # Time x address: the first copy into a placement and the last copy from or to one.
        into: dict[Placement, float] = {}
        touch: dict[Placement, float] = {}
        for i, t in enumerate(ts):
            for level, incoming in ((t.dst, True), (t.src, False)):
                pl = self.placement_at(t.buffer, level, t.step)
                if pl is None:
                    continue
                touch[pl] = max(touch.get(pl, 0.0), times[i][1])
                if incoming:
                    into[pl] = min(into.get(pl, float("inf")), times[i][0])
        # Per level, the touched placements by offset: only those starting in
        # [q_lo - largest size, q_hi) can share a byte with q.
        by_level: dict[str, list[tuple[int, int, Placement, float]]] = defaultdict(list)
        for p, p_end in touch.items():
            by_level[p.level].append((p.offset, self.nbytes(p.buffer), p, p_end))
        for rows in by_level.values():
            rows.sort(key=lambda r: r[0])
        offsets = {lv: [r[0] for r in rows] for lv, rows in by_level.items()}
        widest = {lv: max(r[1] for r in rows) for lv, rows in by_level.items()}
        for q, q_start in into.items():
            q_lo, q_hi = q.offset, q.offset + self.nbytes(q.buffer)
            rows = by_level[q.level]
            lo = bisect.bisect_left(offsets[q.level], q_lo - widest[q.level])
            hi = bisect.bisect_left(offsets[q.level], q_hi)
            for p_off, p_size, p, p_end in rows[lo:hi]:
                if (p.last < q.first and q_lo < p_off + p_size and q_start + eps < p_end):
                    self.fail(9, q.first, (q.buffer, p.buffer), f"a copy into {self.buf(q.buffer)} in {q.level} starts "
                              f"at {q_start:.6g} s, before the copy of {self.buf(p.buffer)}, which held those bytes, "
                              f"ended at {p_end:.6g} s")
        est = self.plan.metrics.estimated_seconds
        last = max(e for _, e, _ in times)
        if est is not None and est + eps < last:
            self.fail(9, None, (), f"metrics.estimated_seconds is {est:.6g}, but a copy ends at {last:.6g} s")

    def check_weight_loads(self, times: Sequence[tuple[float, float, int]]) -> None:
        """Rule 9 for weight streams (``plan.weight_loads``, ``docs/timing.md``): each slice is a
        weight the step reads, copied from its home into the compute level, inside the level
        and on no byte of a placement live at the step or the one before (under which it may
        be prefetched); its copy ends before the step starts reading it; no slice is copied
        into bytes another slice still being read holds; the engine reads one slice at a time,
        steps in order; a streamed operator's slices cover its output channels once, in order;
        the weight loads and ``times`` (the transfers' start, end, channel) share no channel
        time; ``metrics.estimated_seconds`` is at least every load's and reading's end."""
        ws = self.plan.weight_loads
        if not ws:
            return
        eps = 1e-12
        if self.plan.options.weights_in_compute_level:
            self.fail(9, ws[0].step, (ws[0].buffer,), "the plan streams weights although they are planned "
                      "into the compute level (options.weights_in_compute_level)")
            return
        caps = {lv.name: (lv.capacity, lv.alignment) for lv in self.plan.target.levels}
        live: dict[tuple[str, int], list[Placement]] = defaultdict(list)
        for p in self.plan.placements:
            for st in range(p.first, p.last + 1):
                live[(p.level, st)].append(p)
        for k, w in enumerate(ws):
            name = f"weight load {k} ({w.op}, channels {w.channels_lo}-{w.channels_hi})"
            if not (0 <= w.buffer < len(self.plan.buffers) and 0 <= w.step < self.nsteps
                    and w.src in caps and w.dst in caps):
                self.fail(9, None, (), f"{name} names an unknown buffer, step or level")
                return
            pb = self.plan.buffers[w.buffer]
            if pb.kind != "weight" or w.src != pb.home or w.dst != self.compute:
                self.fail(9, w.step, (w.buffer,), f"{name} copies {self.buf(w.buffer)} ({pb.kind}, home "
                          f"{pb.home}) from {w.src} to {w.dst}: a weight from its home into {self.compute}")
                continue
            if w.buffer not in self.plan.steps[w.step].reads:
                self.fail(9, w.step, (w.buffer,), f"{name}: the step does not read {self.buf(w.buffer)}")
            if not (0 <= w.start <= w.end <= w.read_start <= w.read_end) or w.channel < 0 or w.bytes < 1:
                self.fail(9, w.step, (w.buffer,), f"{name}: copied {w.start:.6g}-{w.end:.6g} s, read "
                          f"{w.read_start:.6g}-{w.read_end:.6g} s, channel {w.channel} (need 0 <= start <= end "
                          "<= read_start <= read_end: the step reads a slice only after its copy ended)")
            cap, align = caps[w.dst]
            if w.offset % align or (cap is not None and w.offset + w.bytes > cap):
                self.fail(9, w.step, (w.buffer,), f"{name} lands at [{w.offset}, {w.offset + w.bytes}) of "
                          f"{w.dst}: outside the level (capacity {cap}) or not {align}-aligned")
            for st in {w.step, max(w.step - 1, 0)}:
                for p in live.get((w.dst, st), ()):
                    if p.offset < w.offset + w.bytes and w.offset < p.offset + self.nbytes(p.buffer):
                        self.fail(9, w.step, (w.buffer, p.buffer), f"{name} lands at [{w.offset}, "
                                  f"{w.offset + w.bytes}) of {w.dst}, on {self.buf(p.buffer)} placed there at "
                                  f"{self.step_name(st)}")
                        break
        # Bytes: a slice is not copied into bytes a slice still being read holds.
        order = sorted(range(len(ws)), key=lambda i: (ws[i].start, i))
        active: list[int] = []
        for b in order:
            wb = ws[b]
            active = [a for a in active if ws[a].read_end > wb.start + eps]
            for a in active:
                wa = ws[a]
                if wa.dst == wb.dst and wa.offset < wb.offset + wb.bytes and wb.offset < wa.offset + wa.bytes:
                    self.fail(9, wb.step, (wb.buffer, wa.buffer), f"weight load {b} ({wb.op}) is copied into "
                              f"[{wb.offset}, {wb.offset + wb.bytes}) of {wb.dst} at {wb.start:.6g} s, while weight "
                              f"load {a} ({wa.op}) in those bytes is read until {wa.read_end:.6g} s")
            active.append(b)
        # The engine: one slice at a time, steps in order.
        reads = sorted(range(len(ws)), key=lambda i: (ws[i].read_start, ws[i].read_end, i))
        for a, b in itertools.pairwise(reads):
            if ws[b].read_start + eps < ws[a].read_end or ws[b].step < ws[a].step:
                self.fail(9, ws[b].step, (ws[b].buffer,), f"weight loads {a} and {b}: the engine reads slices "
                          f"{ws[a].read_start:.6g}-{ws[a].read_end:.6g} s (step {ws[a].step}) and "
                          f"{ws[b].read_start:.6g}-{ws[b].read_end:.6g} s (step {ws[b].step}), "
                          "not one after another in step order")
        # The slices of one streamed operator: its output channels once, in order of reading.
        streams: dict[tuple[int, str, int], list[int]] = defaultdict(list)
        for i in reads:
            streams[(ws[i].step, ws[i].op, ws[i].buffer)].append(i)
        for (step, op, bid), idx in streams.items():
            nxt = 0
            for i in idx:
                if ws[i].channels_lo != nxt:
                    self.fail(9, step, (bid,), f"weight load {i} ({op}) reads channels {ws[i].channels_lo}-"
                              f"{ws[i].channels_hi} after channels up to {nxt}: the slices must cover the "
                              "output channels once, in order")
                    break
                nxt = ws[i].channels_hi
            else:
                cout = self._output_channels(op, bid)
                if cout is not None and nxt != cout:
                    self.fail(9, step, (bid,), f"the weight loads of {op} cover channels 0-{nxt} of its {cout}")
        # Channels: weight loads and transfers share no channel time.
        lanes: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
        for i, (t_a, t_e, ch) in enumerate(times):
            lanes[ch].append((t_a, t_e, f"transfer {i}"))
        for i, w in enumerate(ws):
            lanes[w.channel].append((w.start, w.end, f"weight load {i} ({w.op})"))
        for ch, lane in lanes.items():
            lane.sort()
            a0, a1, an = lane[0]        # the interval that ends last so far
            for b0, b1, bn in lane[1:]:
                if b0 + eps < a1 and ("weight" in an or "weight" in bn):
                    self.fail(9, None, (), f"{an} and {bn} overlap in time on channel {ch} "
                              f"({a0:.6g}-{a1:.6g} s and {b0:.6g} s)")
                if b1 > a1:
                    a0, a1, an = b0, b1, bn
        est = self.plan.metrics.estimated_seconds
        last = max(max(w.end, w.read_end) for w in ws)
        if est is None or est + eps < last:
            self.fail(9, None, (), f"metrics.estimated_seconds is {est}, but a weight slice is read until "
                      f"{last:.6g} s")

    def _output_channels(self, op: str, bid: int) -> int | None:
        """The output channels of a weight (None when the graph does not say): dim 0 of a
        convolution's weight (OIHW, TFLite's OHWI), the last of a TFLite depthwise one."""
        names = self.plan.buffers[bid].tensors
        tensor = self.graph.tensors.get(names[0]) if names else None
        node = next((o for o in self.graph.operators if o.name == op), None)
        if tensor is None or node is None or not tensor.shape:
            return None
        if node.domain == "tflite" and node.op_type == "DEPTHWISE_CONV_2D":
            return tensor.shape[-1]
        return tensor.shape[0]

    # -- rule 8: the rows of tiled cascades ---------------------------------------------
    def check_rows(self, graph: Graph) -> None:
        """Rule 8, per cascade: replay its stripe program row by row against ``graph`` (the
        model's graph, not the macro graph)."""
        # Rows of intermediates stored off-chip by a cascade, in step order: a later cascade
        # may load only rows an earlier one stored (graph inputs are home from the start).
        home_rows: dict[str, set[int]] = defaultdict(set)
        for k, c in sorted(enumerate(self.plan.cascades), key=lambda kc: kc[1].step):
            replay = _RowReplay(self, graph, k, c, home_rows)
            replay.run()
            for tensor, rows in replay.stored.items():
                home_rows[tensor].update(rows)

def recompute_metrics(plan: Plan) -> Metrics:
    """Metrics from the plan alone (rule 6), independent of any solver's bookkeeping."""
    levels = [lv.name for lv in plan.target.levels]
    compute = plan.target.compute_level
    position: dict[str, int] = {}
    for i, name in enumerate(levels):
        position.setdefault(name, i)   # the first of a name, as ``list.index``

    def hops(a: str, b: str) -> int:
        return abs(position[a] - position[b]) if a in position and b in position else \
            abs(levels.index(a) - levels.index(b))   # an unknown name raises as before

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
    # Row transfers of tiled plans: the first move of each row of a streamed graph input
    # (load) or output (store) is compulsory; any repeat, and every row of an intermediate
    # moved through off-chip memory between cascades, is not.
    kind_of = {t: pb.kind for pb in plan.buffers for t in pb.tensors}
    seen: set[tuple[str, str, int]] = set()
    for c in plan.cascades:
        row_bytes = {t.tensor: t.row_bytes for t in c.tensors}
        for st in c.stripes:
            for x in st.transfers:
                rb = row_bytes.get(x.tensor, 0)
                h = hops(x.level, compute) if x.level in levels else 0
                io = kind_of.get(x.tensor) == ("input" if x.direction == "load" else "output")
                for r in range(x.lo, x.hi):
                    moved += rb * h
                    if io and (x.direction, x.tensor, r) not in seen:
                        seen.add((x.direction, x.tensor, r))
                        compulsory += rb * h
    peak = {name: 0 for name in levels}
    for pl in plan.placements:
        peak[pl.level] = max(peak[pl.level], pl.offset + plan.buffers[pl.buffer].bytes)
    return Metrics(compulsory_bytes=compulsory, noncompulsory_bytes=moved - compulsory, peak_bytes=peak)


_CONV_LIKE = frozenset({"Conv", "QLinearConv", "ConvInteger", "MaxPool", "AveragePool",
                        # TFLite builtins, whose importer gives them ONNX-style attributes
                        "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D"})


def _row_axis(graph: Graph) -> int:
    """Rows are axis 2 of an NCHW activation, axis 1 of an NHWC one (TFLite)."""
    return 1 if graph.layout == "NHWC" else 2
_ROW_LIMIT = 12   # rule-8 violations reported per cascade


def _attr_ints(v: object, n: int, default: int) -> list[int]:
    if isinstance(v, (list, tuple)) and len(v) >= n:
        return [int(x) for x in v]
    return [default] * n


def _is_rows(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[0] == 1


def _has_rows(graph: Graph, name: str) -> bool:
    """Whether tensor ``name`` has rows: an NCHW tensor of batch 1, or a column tensor (rows
    along its last axis, ``stowage.ir.columns``: a layout fact of the graph, like its layout)."""
    t = graph.tensors.get(name)
    return t is not None and (name in column_tensors(graph) or name in transposed_columns(graph) or _is_rows(t.shape))


def _rows(graph: Graph, name: str) -> int:
    """Rows of tensor ``name``: its last axis for a column tensor, its H for a 4-D one, else 1
    (a TFLite MEAN's 2-D result: one row, complete after the reduction's last band)."""
    t = graph.tensors[name]
    if name in column_tensors(graph):
        return t.shape[-1]
    if name in transposed_columns(graph):
        return t.shape[1]   # position-major (1, N, C): one position a row
    return t.shape[_row_axis(graph)] if len(t.shape) == 4 else 1


def _column_need(graph: Graph, op: Operator) -> dict[str, tuple[int, int, int, int]] | str:
    """``_need`` for an operator on column tensors, recomputed from the shapes: a Concat along
    the last axis reads piece ``k`` at output rows ``[offset_k, offset_k + N_k)`` (a window of
    one row with top offset ``offset_k``; the rows outside it are other pieces', no padding),
    every other banded operator (per position ``n``) the same rows of every column operand."""
    cols = column_tensors(graph)
    y = graph.tensors[next(o for o in op.outputs if o)]
    rank = len(y.shape)
    if op.op_type == "Concat" and int(op.attributes.get("axis", 0)) % rank == rank - 1:
        need: dict[str, tuple[int, int, int, int]] = {}
        off = 0
        for name in op.inputs:
            x = graph.tensors[name]
            if x.shape[-1] and _flat_source(graph, name) is None:   # a flattened piece: ``_flat_need``
                need[name] = (1, 1, off, x.shape[-1])
            off += x.shape[-1]
        if off != y.shape[-1]:
            return "its pieces do not add up to its result"
        return need
    return {name: (1, 1, 0, y.shape[-1]) for name in op.inputs
            if name in cols and graph.tensors[name].shape[-1] == y.shape[-1]}


def _flat_source(graph: Graph, name: str) -> tuple[str, int] | None:
    """``(source, W)`` when ``name`` is a flattened piece of a Concat along ``N`` that is not a
    column tensor (``stowage.ir.columns.flattened_pieces``), recomputed from the graph: the
    result of a Reshape or Flatten running no kernel, in its operand's buffer, of shape
    ``(1, C, H*W)`` for an operand ``(1, C, H, W)``.  Its position ``n`` is row ``n // W`` of
    the operand, so a stripe reads the operand's H rows."""
    if name in column_tensors(graph):
        return None
    for op in graph.operators:
        if op.computing or op.op_type not in ("Reshape", "Flatten") or not op.inputs or not op.outputs \
                or op.outputs[0] != name:
            continue
        f, x = graph.tensors.get(op.inputs[0]), graph.tensors.get(name)
        if (f is None or x is None or not _is_rows(f.shape) or x.shape != (1, f.shape[1], f.shape[2] * f.shape[3])
                or graph.tensor_buffer.get(f.name) != graph.tensor_buffer.get(name)):
            return None
        return f.name, f.shape[3]
    return None


def _flat_need(graph: Graph, op: Operator, a: int, b: int) -> dict[str, tuple[int, int]]:
    """Per flattened piece of a Concat along ``N`` (``_flat_source``): the rows ``[lo, hi)`` of
    its NCHW operand that output positions ``[a, b)`` read, by enumerating the positions of the
    piece in the band (``[0, 0)`` or ``[H, H)`` when the band holds none of it)."""
    out: dict[str, tuple[int, int]] = {}
    y = graph.tensors.get(next((o for o in op.outputs if o), ""))
    along_n = op.op_type == "Concat" and y is not None and int(op.attributes.get("axis", 0)) % len(y.shape) == len(
        y.shape) - 1
    if y is None or not (along_n or (op.op_type == "Transpose" and op.inputs and len(y.shape) == 3)):
        return out   # a Transpose (0, 2, 1): one piece at offset 0 (``_need`` checks its perm)
    off = 0
    for name in op.inputs:
        x = graph.tensors[name]
        src = _flat_source(graph, name)
        if src is not None and x.shape[-1]:
            h = graph.tensors[src[0]].shape[2]
            taken = [(o - off) // src[1] for o in range(a, b) if off <= o < off + x.shape[-1]]
            out[src[0]] = (taken[0], taken[-1] + 1) if taken else ((0, 0) if b <= off else (h, h))
        off += x.shape[-1]
    return out


def _need(graph: Graph, op: Operator) -> dict[str, tuple[int, int, int, int]] | str:
    """Per spatial operand of ``op``: ``(stride, dilated kernel, pads top, input rows)``,
    recomputed from the node's attributes; a string says why the operator has no row bands."""
    outs = [o for o in op.outputs if o]
    several = op.op_type in ("Split", "SPLIT", "SPLIT_V") and len(outs) > 1   # every result has the operand's rows
    if (len(outs) != 1 and not several) or any(not _has_rows(graph, o) for o in outs):
        return "its result is not one NCHW tensor of batch 1"
    from stowage.ir.tiling import row_maps

    if row_maps(graph, op) is None:   # only which operators have bands; the rows are ours
        return f"{op.op_type} needs whole tensors"
    if op.op_type == "Transpose" and outs[0] in transposed_columns(graph):
        # (1, C, N) -> (1, N, C): output row n is position n of the operand (a flattened
        # piece's rows are ``_flat_need``'s).
        xt = graph.tensors[op.inputs[0]]
        if tuple(int(v) for v in op.attributes.get("perm", ())) != (0, 2, 1) or len(xt.shape) != 3:
            return "a Transpose other than (0, 2, 1) of a (1, C, N) tensor"
        return {} if _flat_source(graph, xt.name) is not None else {xt.name: (1, 1, 0, xt.shape[2])}
    if any(n in column_tensors(graph) for n in (*op.inputs, *outs)):
        return _column_need(graph, op)
    ax = _row_axis(graph)
    h_out = graph.tensors[outs[0]].shape[ax]
    a = op.attributes
    if op.op_type in ("Slice", "Pad"):
        x = graph.tensors.get(op.inputs[0]) if op.inputs else None
        if x is None or not _is_rows(x.shape):
            return "its operand is not an NCHW tensor of batch 1"
        shift = _slice_shift(a, x.shape) if op.op_type == "Slice" else _pad_shift(a)
        if shift is None:
            return f"the {op.op_type}'s operands along H are unknown"
        step, first = shift
        return {x.name: (step, 1, -first, x.shape[ax])}
    if op.op_type in ("STRIDED_SLICE", "SLICE", "PAD", "PADV2") and op.domain == "tflite":
        x = graph.tensors.get(op.inputs[0]) if op.inputs else None
        if x is None or not _is_rows(x.shape):
            return "its operand is not an NHWC tensor of batch 1"
        shift = _tflite_pad_shift(a) if op.op_type.startswith("PAD") else _tflite_slice_shift(op.op_type, a, x.shape)
        if shift is None:
            return f"the {op.op_type}'s operands along H are unknown"
        step, first = shift
        return {x.name: (step, 1, -first, x.shape[ax])}
    if op.op_type in _CONV_LIKE:
        x = graph.tensors.get(op.inputs[0]) if op.inputs else None
        if x is None or not _is_rows(x.shape):
            return "its operand is not an NCHW tensor of batch 1"
        if "kernel_shape" in a:
            kh = _attr_ints(a["kernel_shape"], 2, 1)[0]
        else:
            w_at = 3 if op.op_type == "QLinearConv" else 1
            w = graph.tensors.get(op.inputs[w_at]) if len(op.inputs) > w_at else None
            if w is None or len(w.shape) != 4:
                return "its kernel height is unknown"
            kh = w.shape[2]
        s = _attr_ints(a.get("strides"), 2, 1)[0]
        d = _attr_ints(a.get("dilations"), 2, 1)[0]
        pads = _attr_ints(a.get("pads"), 4, 0)
        return {x.name: (s, d * (kh - 1) + 1, pads[0], x.shape[ax])}
    need: dict[str, tuple[int, int, int, int]] = {}
    for name in op.inputs:
        t = graph.tensors.get(name) if name else None
        if t is None or t.kind is TensorKind.WEIGHT:
            continue
        if _is_rows(t.shape) and t.shape[ax] == h_out:
            need[name] = (1, 1, 0, h_out)
    return need


def _tflite_slice_shift(op_type: str, a: Mapping[str, Any], shape: tuple[int, ...]) -> tuple[int, int] | None:
    """``(step, first row)`` a TFLite ``STRIDED_SLICE`` or ``SLICE`` takes along H (axis 1 of
    NHWC), from LiteRT's ``strided_slice_logic.h`` (``StartForAxis``: a set bit of
    ``begin_mask`` starts the axis at 0, a negative start counts from the end, then clamped to
    ``[0, H]``); ``SLICE``'s ``begin``.  None for unknown operands, a reversal and the
    ellipsis / new-axis / shrink-axis / offset forms."""
    begin = a.get("begin")
    if not isinstance(begin, (list, tuple)) or len(begin) != len(shape):
        return None
    h = shape[1]
    if op_type == "SLICE":
        return (1, int(begin[1])) if 0 <= int(begin[1]) <= h else None
    strides = a.get("strides")
    if not isinstance(strides, (list, tuple)) or len(strides) != len(shape) or int(strides[1]) < 1:
        return None
    if a.get("offset") or any(a.get(m) for m in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask")):
        return None
    first = 0 if int(a.get("begin_mask", 0) or 0) >> 1 & 1 else int(begin[1])
    if first < 0:
        first += h
    return int(strides[1]), min(max(first, 0), h)


def _tflite_pad_shift(a: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(1, -top)`` for a TFLite ``PAD`` / ``PADV2`` adding ``top`` rows above (``paddings``:
    ``[before, after]`` per axis of NHWC, flattened: H's before is element 2)."""
    pads = a.get("paddings")
    if not isinstance(pads, (list, tuple)) or len(pads) != 8 or int(pads[2]) < 0:
        return None
    return 1, -int(pads[2])


def _tap_runs(graph: Graph, op: Operator, a: int, b: int) -> tuple[tuple[int, int], ...] | None:
    """The rows output rows ``[a, b)`` of a dilated Conv or QLinearConv (NCHW), or a dilated
    TFLite ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` (NHWC; weights ``[., KH, KW, .]``), with dilation
    > 1 along H and more than one tap, read, recomputed by enumerating its taps: per tap, the rows
    ``o*s - p + i*d`` of the band inside the tensor span ``[first, last + 1)``; spans that meet
    or overlap are one run.  None for every other operator (its rows are one window)."""
    tfl = op.domain == "tflite" and op.op_type in ("CONV_2D", "DEPTHWISE_CONV_2D") and _row_axis(graph) == 1
    if not tfl and (op.op_type not in ("Conv", "QLinearConv") or _row_axis(graph) != 2):
        return None
    if not op.inputs:
        return None
    x = graph.tensors.get(op.inputs[0])
    at = op.attributes
    w_at = 3 if op.op_type == "QLinearConv" else 1
    w = graph.tensors.get(op.inputs[w_at]) if len(op.inputs) > w_at else None
    kh = _attr_ints(at["kernel_shape"], 2, 1)[0] if "kernel_shape" in at else (
        w.shape[1 if tfl else 2] if w is not None and len(w.shape) == 4 else 1)
    d = _attr_ints(at.get("dilations"), 2, 1)[0]
    if x is None or not _is_rows(x.shape) or d <= 1 or kh <= 1:
        return None
    s = _attr_ints(at.get("strides"), 2, 1)[0]
    p = _attr_ints(at.get("pads"), 4, 0)[0]
    h = x.shape[_row_axis(graph)]
    runs: list[tuple[int, int]] = []
    for i in range(kh):
        hit = [o * s - p + i * d for o in range(a, b) if 0 <= o * s - p + i * d < h]
        if not hit:
            continue
        lo, hi = hit[0], hit[-1] + 1
        if runs and lo <= runs[-1][1]:
            runs[-1] = (runs[-1][0], max(runs[-1][1], hi))
        else:
            runs.append((lo, hi))
    return tuple(runs)


def _slice_shift(a: Mapping[str, Any], shape: tuple[int, ...]) -> tuple[int, int] | None:
    """``(step, first row)`` a Slice (attribute form: ``starts``, ``ends``, ``axes``, ``steps``)
    takes along H, from ONNX's definition (a negative start counts from the end, clamped to
    the tensor); ``(1, 0)`` when it does not cut H; None for unknown values or a reversal."""
    starts, axes, steps = a.get("starts"), a.get("axes"), a.get("steps")
    if not isinstance(starts, (list, tuple)):
        return None
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    for axis, start, step in zip(axes, starts, steps):
        if int(axis) in (2, 2 - len(shape)):
            if int(step) < 1:
                return None
            h = shape[2]
            first = int(start) + h if int(start) < 0 else int(start)
            return int(step), min(max(first, 0), h)
    return 1, 0


def _pad_shift(a: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(1, -top)`` for a constant Pad adding ``top`` rows above (attribute form ``pads``:
    begins of N, C, H, W, then ends)."""
    pads = a.get("pads")
    mode = a.get("mode", "constant")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "constant" or not isinstance(pads, (list, tuple)) \
            or len(pads) != 8:
        return None
    return 1, -int(pads[2])


_ACCUMULATE = frozenset({"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "QLinearGlobalAveragePool"})


@dataclass(frozen=True)
class _Special:
    """An operator whose stripes are not a window over its operand (recomputed here from the
    node): ``accumulate`` reduces operand ``x`` over H, band by band, into a one-row result;
    ``resize`` scales H by the integer ``scale`` with ONNX Resize's ``mode``, ``coord`` and
    ``nearest`` attributes; ``mirror`` is an edge / reflect Pad (``border``) adding ``pad_top``
    rows above ``in_rows`` rows, ``out_rows`` in all."""

    kind: str
    x: str
    in_rows: int
    scale: int = 1
    mode: str = ""
    coord: str = ""
    nearest: str = ""
    kernel: int = 1
    pad_top: int = 0
    border: str = ""
    out_rows: int = 0

    def transposed_rows(self, a: int, b: int) -> tuple[int, int]:
        """Input rows of a ConvTranspose whose kernel footprint ``[i*s - p, i*s - p + k)``
        meets output rows ``[a, b)`` (``scale`` is the stride)."""
        hit = [i for i in range(self.in_rows)
               if i * self.scale - self.pad_top < b and i * self.scale - self.pad_top + self.kernel > a]
        return (hit[0], hit[-1] + 1) if hit else (0, 0)

    def mirrored(self, o: int) -> int:
        """The input row output row ``o`` of an edge / reflect / symmetric Pad copies
        (``pad_top`` rows above, in mode ``border``), from ONNX Pad's and LiteRT
        MIRROR_PAD's definitions: inside the tensor row ``o - top``; in a border edge repeats
        the outer row, reflect mirrors about it, symmetric about its outer side."""
        j, h = o - self.pad_top, self.in_rows
        if j < 0:
            return {"edge": 0, "symmetric": -j - 1}.get(self.border, -j)
        if j >= h:
            return {"edge": h - 1, "symmetric": 2 * h - 1 - j}.get(self.border, 2 * h - 2 - j)
        return j

    def taps(self, o: int) -> tuple[int, int]:
        """Input rows ``[lo, hi)`` output row ``o`` of the Resize reads (ONNX's formulas, with
        onnxruntime's clamping to the tensor)."""
        s, top = self.scale, self.in_rows - 1
        if self.coord == "asymmetric":
            x = o / s
        else:
            x = (o + 0.5) / s - 0.5
        if self.mode == "linear":
            i0 = math.floor(min(max(x, 0.0), float(top)))
            return i0, min(i0 + 1, top) + 1
        i = {"floor": math.floor(x), "ceil": math.ceil(x), "round_prefer_ceil": math.floor(x + 0.5)}.get(
            self.nearest, math.ceil(x - 0.5))
        i = min(max(i, 0), top)
        return i, i + 1


def _text(v: object, default: str) -> str:
    return v.decode() if isinstance(v, bytes) else v if isinstance(v, str) else default


def _special(graph: Graph, op: Operator) -> _Special | None:
    """The accumulating or resizing row semantics of ``op``, or None (a window, or no bands)."""
    outs = [o for o in op.outputs if o]
    x = graph.tensors.get(op.inputs[0]) if op.inputs else None
    y = graph.tensors.get(outs[0]) if len(outs) == 1 else None
    if (x is None or y is None or not _is_rows(x.shape)
            or x.name in column_tensors(graph) or y.name in column_tensors(graph)):
        return None
    from stowage.ir.tiling import row_maps

    if _row_axis(graph) != 2:
        # TFLite's MEAN over H and W (NHWC axes 1 and 2): a reduction into one row, kept 4-D
        # with ``keep_dims``, else ``(1, C)``.
        axis = op.attributes.get("axis")
        one = (1, 1, 1, x.shape[3]) if op.attributes.get("keep_dims") else (1, x.shape[3])
        if (op.domain == "tflite" and op.op_type == "MEAN" and isinstance(axis, (list, tuple))
                and sorted(int(v) % 4 for v in axis) == [1, 2] and y.shape == one
                and row_maps(graph, op) is not None):
            return _Special("accumulate", x.name, x.shape[1])
        pads = op.attributes.get("paddings")
        if (op.domain == "tflite" and op.op_type == "MIRROR_PAD" and isinstance(pads, (list, tuple))
                and len(pads) == 8 and _is_rows(y.shape) and row_maps(graph, op) is not None):
            # MirrorPadOptions.mode: 0 REFLECT, 1 SYMMETRIC; paddings [before, after] per NHWC axis.
            border = "symmetric" if int(op.attributes.get("mode", 0) or 0) == 1 else "reflect"
            return _Special("mirror", x.name, x.shape[1], border=border, pad_top=int(pads[2]), out_rows=y.shape[1])
        return None
    if not _is_rows(y.shape) or row_maps(graph, op) is None:
        return None   # which operators have bands (reported by ``_need``); the rows are ours
    if op.op_type in _ACCUMULATE and y.shape[2] == 1 and y.shape[1] == x.shape[1]:
        return _Special("accumulate", x.name, x.shape[2])
    if op.op_type == "Pad" and _text(op.attributes.get("mode"), "constant") in ("edge", "reflect"):
        pads = op.attributes.get("pads")
        if isinstance(pads, (list, tuple)) and len(pads) == 8:
            return _Special("mirror", x.name, x.shape[2], border=_text(op.attributes.get("mode"), ""),
                            pad_top=int(pads[2]), out_rows=y.shape[2])
    if op.op_type == "ConvTranspose":
        w = graph.tensors.get(op.inputs[1]) if len(op.inputs) > 1 else None
        a = op.attributes
        kh = _attr_ints(a.get("kernel_shape"), 2, w.shape[2] if w is not None and len(w.shape) == 4 else 1)[0]
        d = _attr_ints(a.get("dilations"), 2, 1)[0]
        return _Special("transposed", x.name, x.shape[2], _attr_ints(a.get("strides"), 2, 1)[0],
                        kernel=d * (kh - 1) + 1, pad_top=_attr_ints(a.get("pads"), 4, 0)[0])
    if op.op_type == "Upsample" and y.shape[2] % x.shape[2] == 0:
        # The deprecated Resize: asymmetric coordinates, nearest rounds down (onnxruntime).
        return _Special("resize", x.name, x.shape[2], y.shape[2] // x.shape[2], _text(op.attributes.get("mode"),
                        "nearest"), "asymmetric", "floor")
    if op.op_type == "Resize" and y.shape[2] % x.shape[2] == 0:
        a = op.attributes
        return _Special("resize", x.name, x.shape[2], y.shape[2] // x.shape[2], _text(a.get("mode"), "nearest"),
                        _text(a.get("coordinate_transformation_mode"), "half_pixel"),
                        _text(a.get("nearest_mode"), "round_prefer_floor"))
    return None


class _RowReplay:
    """Rule 8 for cascade ``k``: the stripe program replayed row by row.

    State: per plan buffer held as a ring, ``slot -> (row, tensor last written there)``; per
    whole buffer written in the cascade, ``row -> tensor``; per streamed output, the rows
    stored home."""

    def __init__(self, chk: _Checker, graph: Graph, k: int, c: Cascade,
                 home_rows: dict[str, set[int]] | None = None) -> None:
        self.chk, self.g, self.k, self.c = chk, graph, k, c
        self.home_rows = home_rows if home_rows is not None else {}
        self.count = 0
        # The units stripes run, and the tensor each one writes.  A folded QDQ group
        # (stowage.ir.qdq: DequantizeLinear -> core -> QuantizeLinear, floats without buffers)
        # is one unit named by its core, reading the DQs' int8 inputs and writing the Q's output.
        self.members: dict[int, Operator] = {}
        self.result: dict[int, str] = {}
        #: Every result of an operator with several (a Split: each stripe names the one it writes).
        self.results: dict[int, tuple[str, ...]] = {}
        self.int8_of: dict[str, str] = {}        # a group's float operand -> the int8 tensor it came from
        for i in c.ops:
            if 0 <= i < len(graph.operators):
                step = graph.step_members(graph.operators[i])
                unplanned = any(m.op_type in ("DequantizeLinear", "QuantizeLinear")
                                and any(n and n in graph.tensors and n not in graph.tensor_buffer
                                        for n in (*m.inputs, *m.outputs))
                                for m in step)
                if not unplanned:
                    for m in step:
                        self.members[m.index] = m
                        self.result[m.index] = next((o for o in m.outputs if o), "")
                        if len([o for o in m.outputs if o]) > 1:
                            self.results[m.index] = tuple(o for o in m.outputs if o)
                    continue
                qs = [m for m in step if m.op_type == "QuantizeLinear"]
                core = [m for m in step if m.op_type not in ("DequantizeLinear", "QuantizeLinear")]
                unit = core[0] if core else (qs[0] if qs else step[0])
                self.members[unit.index] = unit
                self.result[unit.index] = next((o for o in qs[0].outputs if o), "") if qs else ""
                outs = [o for o in unit.outputs if o] if core else []
                if len(outs) > 1:
                    # A folded DQ -> Split -> Q per result: each stripe names the int8 result
                    # (the Q's output) it writes, in the core's order.
                    q_out = {q.inputs[0]: q.outputs[0] for q in qs if q.inputs and q.outputs}
                    self.results[unit.index] = tuple(q_out.get(o, o) for o in outs)
                for m in step:
                    if m.op_type == "DequantizeLinear" and m.inputs and m.outputs:
                        self.int8_of[m.outputs[0]] = m.inputs[0]
        #: The tensors the cascade's members make (``whole_reads``; filled on first use).
        self._made: set[str] | None = None
        #: ``made_inside``'s sets: the made tensors, and their buffers (filled on first use).
        self._made_names: set[str] = set()
        self._made_bufs: set[int] | None = None
        self.holder_by_buffer: dict[int, CascadeTensor] = {}
        for ct in c.tensors:
            b = graph.tensor_buffer.get(ct.tensor)
            if b is not None:
                self.holder_by_buffer.setdefault(b, ct)
        # plan buffer -> byte offset of a ring row -> (row, tensor, bytes): rings sharing a
        # buffer (``stowage.solvers.tiling.program.share_rings``) lay rows out differently, so
        # a row written evicts every row whose bytes it meets.
        self.slots: dict[int, dict[int, tuple[int, str, int]]] = defaultdict(dict)
        layouts: dict[int, set[int]] = defaultdict(set)
        for ct in c.tensors:
            if ct.mode in ("ring", "streamed"):
                layouts[ct.buffer].add(ct.row_bytes)
        self.mixed = {b for b, sizes in layouts.items() if len(sizes) > 1}
        # A slot-addressed region (``CascadeTensor.slots``) lays rows out anywhere.
        self.mixed |= {ct.buffer for ct in c.tensors if ct.slots}
        self.stage: dict[int, dict[int, int]] = defaultdict(dict)               # staging buffer -> row -> slot
        self.rows: dict[int, dict[int, str]] = defaultdict(dict)                # graph buffer -> row
        self.produced: dict[tuple[int, str], dict[int, int]] = defaultdict(dict)  # (op, result) -> row -> stripe
        self.stored: dict[str, dict[int, int]] = defaultdict(dict)              # tensor -> row -> stripe
        # Accumulating reductions: op -> input rows reduced so far; result tensor -> its op.
        self.reduced: dict[int, int] = {}
        self.partial: dict[str, tuple[int, str, int]] = {}                       # result -> (op, x, H)

    def fail(self, text: str, buffers: tuple[int, ...] = ()) -> None:
        self.count += 1
        if self.count <= _ROW_LIMIT:
            self.chk.fail(8, self.c.step, buffers, f"cascade {self.k}, " + text)
        elif self.count == _ROW_LIMIT + 1:
            self.chk.fail(8, self.c.step, (), f"cascade {self.k}: further row violations not listed")

    def holder(self, name: str) -> CascadeTensor | None:
        ct = self.c.tensor(name)
        if ct is not None:
            return ct
        b = self.g.tensor_buffer.get(name)
        return self.holder_by_buffer.get(b) if b is not None else None

    def made_inside(self, name: str) -> bool:
        """Whether a member of the cascade makes ``name`` or another tensor of its buffer.
        Asked for every row a stripe reads: the made tensors and their buffers (fixed by
        ``__init__``) are collected once, not per call (issue 14, on time: the list scan was
        quadratic in the cascade's size)."""
        t = self.g.tensors.get(name)
        if t is None:
            return False
        if self._made_bufs is None:
            made = {*self.result.values(), *(o for outs in self.results.values() for o in outs)}
            self._made_names = made
            self._made_bufs = {b for o in made if (b := self.g.tensor_buffer.get(o)) is not None}
        if name in self._made_names:
            return True
        b = self.g.tensor_buffer.get(name)
        return b is not None and b in self._made_bufs

    def rows_of(self, name: str) -> int:
        return _rows(self.g, name)

    def run(self) -> None:
        if not self.check_tensors():
            return
        for i, st in enumerate(self.c.stripes):
            self.stripe(i, st)
        self.finish()

    # (e) ring sizes and the modes of the cascade's tensors
    def check_tensors(self) -> bool:
        ok = True
        nbuf = len(self.chk.plan.buffers)
        for ct in self.c.tensors:
            t = self.g.tensors.get(ct.tensor)
            if t is None or ct.mode not in RING_MODES or not 0 <= ct.buffer < nbuf:
                self.fail(f"tensor '{ct.tensor}': unknown tensor, mode '{ct.mode}' or buffer {ct.buffer}")
                ok = False
                continue
            if ct.mode == "whole":
                if ct.slots:
                    self.fail(f"tensor '{ct.tensor}' is whole: only rings and streamed tensors have row slots",
                              (ct.buffer,))
                    ok = False
                continue
            flat = _row_axis(self.g) == 1 and len(t.shape) == 2 and t.shape[0] == 1   # a MEAN's (1, C): one row
            if not _has_rows(self.g, ct.tensor) and not flat:
                self.fail(f"tensor '{ct.tensor}' ({ct.mode}) has no rows (shape {list(t.shape)})", (ct.buffer,))
                ok = False
                continue
            want = t.bytes // self.rows_of(ct.tensor)
            if ct.row_bytes != want:
                self.fail(f"tensor '{ct.tensor}': row_bytes is {ct.row_bytes}, a row of it is "
                          f"{want} bytes", (ct.buffer,))
                ok = False
            have = self.chk.plan.buffers[ct.buffer].bytes
            if ct.slots or self.c.slotted:
                ok = self.check_slots(ct, have) and ok
                continue
            if ct.ring_rows < 1:
                self.fail(f"tensor '{ct.tensor}': a ring of {ct.ring_rows} rows", (ct.buffer,))
                ok = False
            if have < ct.ring_rows * ct.row_bytes:
                self.fail(f"tensor '{ct.tensor}': ring of {ct.ring_rows} rows x {ct.row_bytes} bytes does not fit "
                          f"{self.chk.buf(ct.buffer)} of {have} bytes", (ct.buffer,))
            if ct.mode == "staged" and self.made_inside(ct.tensor):
                self.fail(f"tensor '{ct.tensor}' is staged, but the cascade makes it (staging only loads)",
                          (ct.buffer,))
                ok = False
            if ct.mode in ("streamed", "staged") and ct.level not in self.chk.levels:
                self.fail(f"tensor '{ct.tensor}' is streamed from unknown level {ct.level}", (ct.buffer,))
                ok = False
        return ok

    def check_slots(self, ct: CascadeTensor, have: int) -> bool:
        """A slot-addressed tensor (``CascadeTensor.slots``): a ring or streamed tensor with one
        slot per row, each inside its region (buffer ``ct.buffer`` of ``have`` bytes).  Whether
        two rows share a slot while both live is the replay's business (a row written evicts
        every row whose bytes it meets)."""
        if ct.mode not in ("ring", "streamed") or not ct.slots:
            self.fail(f"tensor '{ct.tensor}' ({ct.mode}) has no row slots in a cascade addressing rows by slot"
                      if not ct.slots else f"tensor '{ct.tensor}' is {ct.mode}: only rings and streamed tensors "
                      "have row slots", (ct.buffer,))
            return False
        h = self.rows_of(ct.tensor)
        if len(ct.slots) != h:
            self.fail(f"tensor '{ct.tensor}': {len(ct.slots)} row slots for its {h} rows", (ct.buffer,))
            return False
        for r, off in enumerate(ct.slots):
            if off != -1 and not 0 <= off <= have - ct.row_bytes:
                self.fail(f"tensor '{ct.tensor}': row {r} at bytes [{off}, {off + ct.row_bytes}) lies outside its "
                          f"region, {self.chk.buf(ct.buffer)} of {have} bytes", (ct.buffer,))
                return False
        return True

    def offset(self, ct: CascadeTensor, r: int) -> int:
        """Byte offset of row ``r`` in its holder's buffer (its slot, or ring modulo)."""
        return ct.row_offset(r)

    def slot_name(self, ct: CascadeTensor, r: int) -> str:
        return (f"its slot (byte {ct.row_offset(r)})" if ct.slots
                else f"its ring slot {r % ct.ring_rows}")

    def present(self, name: str, r: int) -> str | None:
        """Why row ``r`` of tensor ``name`` is not readable now, or None when it is."""
        ct = self.holder(name)
        inside = self.made_inside(name)
        if name in self.partial:
            op_i, x, h = self.partial[name]
            if self.reduced.get(op_i, 0) < h:
                return (f"it is the result of a reduction still accumulating (rows [{self.reduced.get(op_i, 0)}, {h}) "
                        f"of '{x}' not reduced yet)")
        if ct is None:
            if inside:
                return "it is not one of the cascade's tensors"
            return None if 0 <= r < self.rows_of(name) else "the tensor has no such row"
        if not 0 <= r < self.rows_of(name):
            return "the tensor has no such row"
        if ct.mode == "staged":
            return None if r in self.stage[ct.buffer] else "this stripe's loads do not stage it"
        if ct.mode == "whole":
            if not inside:
                return None
            got = self.rows[self.g.tensor_buffer[name]].get(r)
            if got is None:
                return "it is not produced yet"
            return None if got == name or self.views_alike(got, name) else f"it was rewritten by '{got}'"
        if ct.slots:
            return self.present_slot(ct, name, r, inside)
        slot = r % ct.ring_rows
        held = self.slots[ct.buffer].get(slot * ct.row_bytes)
        other = held is not None and self.g.tensor_buffer.get(held[1]) != self.g.tensor_buffer.get(name)
        if other and held is not None:
            # Another tensor's row in a ring sharing this buffer's bytes.
            return f"ring slot {slot} of '{ct.tensor}' holds row {held[0]} of '{held[1]}', which shares its bytes"
        if held is None or held[0] < r:
            return ("it is not produced yet" if inside else "it was never loaded") + \
                (f" (ring slot {slot} holds row {held[0]})" if held else "")
        if held[0] > r:
            return f"ring slot {slot} of '{ct.tensor}' ({ct.ring_rows} rows) holds row {held[0]}: overwritten"
        if held[1] != name and (inside or held[1] != ct.tensor) and not self.views_alike(name, held[1]):
            return f"ring slot {slot} holds that row of '{held[1]}'"
        return None

    def present_slot(self, ct: CascadeTensor, name: str, r: int, inside: bool) -> str | None:
        """``present`` for a slot-addressed tensor: its slot must hold exactly that row, put
        there by its producer or load and not overwritten since (every write evicts the rows
        whose bytes it meets)."""
        off = ct.row_offset(r)
        if off < 0:
            return f"'{ct.tensor}' has no slot for row {r}"
        held = self.slots[ct.buffer].get(off)
        if held is None:
            done = r in self.produced_rows(name) if inside else False
            return (("it was overwritten" if done else "it is not produced yet") if inside
                    else "it was never loaded, or was overwritten") + f" (nothing at byte {off})"
        same = self.g.tensor_buffer.get(held[1]) == self.g.tensor_buffer.get(name)
        if not same or held[0] != r:
            return f"byte {off}, its slot, holds row {held[0]} of '{held[1]}': overwritten or not yet written"
        if held[1] != name and (inside or held[1] != ct.tensor) and not self.views_alike(name, held[1]):
            return f"its slot holds that row of '{held[1]}'"
        return None

    def produced_rows(self, name: str) -> set[int]:
        return {r for (_op, out), rows in self.produced.items() if out == name for r in rows}

    def view_root(self, name: str) -> str:
        """The tensor whose bytes ``name`` reinterprets through views (Reshape and the like,
        which run no kernel), else ``name``.  A requantization of the same scale written as
        ``DequantizeLinear -> views -> QuantizeLinear`` that ``stowage.ir.qdq`` made an alias
        (no node of it a step or a group member; the floats between have no buffer) is a view
        too: the integer bytes are the same."""
        if not hasattr(self, "_view_src"):
            tb = self.g.tensor_buffer
            self._view_src = {
                op.outputs[0]: op.inputs[0] for op in self.g.operators
                if not op.computing and op.inputs and op.outputs and (
                    (op.op_type in VIEW_OP_TYPES and tb.get(op.inputs[0]) == tb.get(op.outputs[0]))
                    or (op.op_type in ("DequantizeLinear", "QuantizeLinear") and op.fused_into is None
                        and (op.inputs[0] not in tb) != (op.outputs[0] not in tb)))}
        for _ in range(64):
            if name not in self._view_src:
                break
            name = self._view_src[name]
        return name

    def views_alike(self, a: str, b: str) -> bool:
        """Whether tensors ``a`` and ``b`` are views of one another's bytes with the same rows
        (a Reshape of a column tensor that keeps its last axis: the DFL's ``(1, 64, N)`` ->
        ``(1, 4, 16, N)``): a row of one is that row of the other."""
        tb = self.g.tensor_buffer
        return (self.view_root(a) == self.view_root(b) and tb.get(a) == tb.get(b) and a in tb
                and _has_rows(self.g, a) and _has_rows(self.g, b)
                and _rows(self.g, a) == _rows(self.g, b)
                and self.g.tensors[a].bytes // _rows(self.g, a) == self.g.tensors[b].bytes // _rows(self.g, b))

    def put(self, ct: CascadeTensor, r: int, tensor: str) -> None:
        """Row ``r`` of ``tensor`` written (or loaded) into its slot of ring ``ct``."""
        slots = self.slots[ct.buffer]
        off = ct.row_offset(r)
        if off < 0:
            self.fail(f"writes row {r} of '{tensor}', which has no slot", (ct.buffer,))
            return
        if ct.buffer in self.mixed:
            for o, (_r, _t, n) in list(slots.items()):
                if o < off + ct.row_bytes and off < o + n:
                    del slots[o]
        slots[off] = (r, tensor, ct.row_bytes)

    def stripe(self, i: int, st: Stripe) -> None:
        op = self.members.get(st.op)
        if op is None:
            name = self.g.operators[st.op].name if 0 <= st.op < len(self.g.operators) else f"#{st.op}"
            self.fail(f"stripe {i}: operator {name} is not an operator of the cascade")
            return
        where = f"stripe {i} ({op.name})"
        self.stage.clear()   # staged rows live for one stripe
        # loads before the stripe
        for x in st.transfers:
            if x.direction == "load":
                self.load(where, x)
            elif x.direction != "store":
                self.fail(f"{where}: row transfer of '{x.tensor}' has direction '{x.direction}'")
        self.reads(where, op, st)
        self.writes(where, i, op, st)
        for x in st.transfers:
            if x.direction == "store":
                self.store(where, i, x)

    def streamed(self, where: str, x: RowTransfer, inside: bool) -> CascadeTensor | None:
        ct = self.c.tensor(x.tensor)
        what = "load" if x.direction == "load" else "store"
        if (ct is None or ct.mode not in ("streamed", "staged") or self.made_inside(x.tensor) != inside
                or (ct.mode == "staged" and inside)):
            kind = "output made in the cascade" if inside else "input of the cascade"
            self.fail(f"{where}: {what} of rows [{x.lo}, {x.hi}) of '{x.tensor}', which is not a streamed {kind}")
            return None
        if x.level != ct.level:
            self.fail(f"{where}: {what} of '{x.tensor}' via {x.level}, its home is {ct.level}", (ct.buffer,))
        if not 0 <= x.lo < x.hi <= self.rows_of(x.tensor):
            self.fail(f"{where}: {what} of rows [{x.lo}, {x.hi}) of '{x.tensor}', which has "
                      f"{self.rows_of(x.tensor)} rows", (ct.buffer,))
            return None
        return ct

    def load(self, where: str, x: RowTransfer) -> None:
        ct = self.streamed(where, x, inside=False)
        if ct is not None:
            t = self.g.tensors.get(x.tensor)
            if t is not None and t.kind is not TensorKind.INPUT:
                missing = [r for r in range(x.lo, x.hi) if r not in self.home_rows.get(x.tensor, ())]
                if missing:
                    self.fail(f"{where}: loads row {missing[0]} of '{x.tensor}' from {x.level}, where no earlier "
                              "cascade stored it", (ct.buffer,))
                    return
            if ct.mode == "staged":
                # The stripe's j-th loaded row goes to slot j; nothing survives the stripe.
                stage = self.stage[ct.buffer]
                if len(stage) + x.hi - x.lo > ct.ring_rows:
                    self.fail(f"{where}: loads {len(stage) + x.hi - x.lo} rows of '{x.tensor}' into a staging of "
                              f"{ct.ring_rows} rows", (ct.buffer,))
                for r in range(x.lo, x.hi):
                    if r in stage:
                        self.fail(f"{where}: stages row {r} of '{x.tensor}' twice", (ct.buffer,))
                    stage[r] = len(stage)
                return
            for r in range(x.lo, x.hi):
                self.put(ct, r, ct.tensor)

    def store(self, where: str, i: int, x: RowTransfer) -> None:
        ct = self.streamed(where, x, inside=True)
        if ct is None:
            return
        b = self.g.tensor_buffer[ct.tensor]
        final = self.final_tensor(b)
        for r in range(x.lo, x.hi):
            held = self.slots[ct.buffer].get(ct.row_offset(r))
            if held is None or held[0] != r or held[1] != final:
                got = "nothing" if held is None else f"row {held[0]} of '{held[1]}'"
                self.fail(f"{where}: stores row {r} of '{x.tensor}', but {self.slot_name(ct, r)} "
                          f"holds {got} (the row is stored before it is produced, or after it was overwritten)",
                          (ct.buffer,))
                return
            if r in self.stored[ct.tensor]:
                self.fail(f"{where}: stores row {r} of '{x.tensor}' again (first stored by stripe "
                          f"{self.stored[ct.tensor][r]})", (ct.buffer,))
                return
            self.stored[ct.tensor][r] = i

    def final_tensor(self, b: int) -> str:
        """The last tensor the cascade's operators write into graph buffer ``b``."""
        last = ""
        for idx in sorted(self.members):
            for o in self.results.get(idx, (self.result.get(idx, ""),)):
                if o and self.g.tensor_buffer.get(o) == b:
                    last = o
        return last

    def whole_reads(self, where: str, op: Operator, spatial: set[str]) -> None:
        """An operand the stripe reads whole (not a spatial one: a broadcast over H, such as a
        squeeze-and-excitation scale of one row) that a member of the cascade makes: every row
        of it must be present already."""
        if self._made is None:
            self._made = set(self.result.values()) | {o for outs in self.results.values() for o in outs}
        made = self._made
        for name in dict.fromkeys(n for n in op.inputs if n):
            name = self.int8_of.get(name, name)
            if name in spatial or name not in made or name not in self.g.tensors \
                    or not _is_rows(self.g.tensors[name].shape):
                continue
            for r in range(self.rows_of(name)):
                why = self.present(name, r)
                if why is not None:
                    ct = self.holder(name)
                    self.fail(f"{where}: reads '{name}' whole, but its row {r}: {why}", (ct.buffer,) if ct else ())
                    break

    # (a) and (b): the rows read are present and exactly what the operator needs
    def reads(self, where: str, op: Operator, st: Stripe) -> None:
        self.whole_reads(where, op, {name for name, _lo, _hi in st.inputs})
        sp = _special(self.g, op)
        if sp is not None:
            self.special_reads(where, op, st, sp)
            return
        need = _need(self.g, op)
        if not isinstance(need, str) and self.int8_of:
            need = {self.int8_of.get(name, name): v for name, v in need.items()}
        if isinstance(need, str):
            self.fail(f"{where}: the operator cannot run on row bands ({need})")
            return
        listed: dict[str, tuple[int, int]] = {}
        runs_of: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for name, lo, hi in st.inputs:
            listed[name] = (lo, hi)
            runs_of[name].append((lo, hi))
        flat = _flat_need(self.g, op, st.out_lo, st.out_hi) if op.op_type in ("Concat", "Transpose") else {}
        for name, (lo, hi) in flat.items():
            # A flattened piece: the H rows of its NCHW operand holding the band's positions.
            got = listed.get(name)
            if got != (lo, hi) or len(runs_of.get(name, ())) > 1:
                self.fail(f"{where}: reads rows {runs_of.get(name, [])} of '{name}', output positions "
                          f"[{st.out_lo}, {st.out_hi}) need rows [{lo}, {hi}) of it (a flattened piece)")
                continue
            for r in range(lo, hi):
                why = self.present(name, r)
                if why is not None:
                    ct = self.holder(name)
                    self.fail(f"{where}: reads row {r} of '{name}', but {why}", (ct.buffer,) if ct else ())
                    break
        for name in listed.keys() - need.keys() - flat.keys():
            self.fail(f"{where}: reads rows of '{name}', which is not a spatial operand of the operator")
        want_pads = (0, 0)
        taps = _tap_runs(self.g, op, st.out_lo, st.out_hi)
        for name, (s, k_eff, p_top, h_in) in need.items():
            lo_raw = st.out_lo * s - p_top
            hi_raw = (st.out_hi - 1) * s - p_top + k_eff
            lo, hi = min(max(0, lo_raw), h_in), max(min(h_in, hi_raw), 0)
            if ((s, k_eff, p_top) != (1, 1, 0) or op.op_type in _CONV_LIKE or op.op_type in ("Pad", "PAD", "PADV2")) \
                    and op.op_type != "Concat":
                # The rows of the window above row 0 and below the last row (all of them for
                # a band wholly inside a Pad's border).
                want_pads = (max(0, min(hi_raw, 0) - lo_raw), max(0, hi_raw - max(lo_raw, h_in)))
            if taps is not None:
                # A dilated read: exactly its taps' runs (the pads stay the dense window's).
                if tuple(runs_of.get(name, ())) != taps:
                    self.fail(f"{where}: reads rows {runs_of.get(name, [])} of '{name}', output rows "
                              f"[{st.out_lo}, {st.out_hi}) of the dilated {op.op_type} read the runs {list(taps)}")
                for r in sorted({r for r_lo, r_hi in runs_of.get(name, ()) for r in range(r_lo, r_hi)}):
                    why = self.present(name, r)
                    if why is not None:
                        ct = self.holder(name)
                        self.fail(f"{where}: reads row {r} of '{name}', but {why}", (ct.buffer,) if ct else ())
                        break
                continue
            if len(runs_of.get(name, ())) > 1:
                self.fail(f"{where}: reads '{name}' in {len(runs_of[name])} runs; only a dilated convolution's "
                          "taps read several")
            got = listed.get(name)
            if got is None:
                self.fail(f"{where}: output rows [{st.out_lo}, {st.out_hi}) need rows [{lo}, {hi}) of "
                          f"'{name}', which the stripe does not read")
                continue
            if got != (lo, hi):
                self.fail(f"{where}: reads rows [{got[0]}, {got[1]}) of '{name}', output rows "
                          f"[{st.out_lo}, {st.out_hi}) need rows [{lo}, {hi})"
                          + (f" (halo row {hi - 1} missing)" if got[0] <= lo and got[1] < hi else ""))
            for r in range(got[0], got[1]):
                why = self.present(name, r)
                if why is not None:
                    ct = self.holder(name)
                    self.fail(f"{where}: reads row {r} of '{name}', but {why}", (ct.buffer,) if ct else ())
                    break
        if (st.pad_top, st.pad_bottom) != want_pads:
            self.fail(f"{where}: pads [{st.pad_top}, {st.pad_bottom}] for output rows [{st.out_lo}, "
                      f"{st.out_hi}), the operator's attributes give [{want_pads[0]}, {want_pads[1]}]")

    def special_reads(self, where: str, op: Operator, st: Stripe, sp: _Special) -> None:
        """(a) and (b) for an accumulating reduction (its stripes read consecutive bands of its
        operand, each row once, and update row 0 of its result) and a Resize (the rows its
        output rows interpolate from, no padding)."""
        x = self.int8_of.get(sp.x, sp.x)
        listed = {name: (lo, hi) for name, lo, hi in st.inputs}
        for name in listed.keys() - {x}:
            self.fail(f"{where}: reads rows of '{name}', which is not a spatial operand of the operator")
        got = listed.get(x)
        if sp.kind == "mirror":
            # The band's border rows: those above row 0 / below the last row of the input.
            lo_d, hi_d = st.out_lo - sp.pad_top, st.out_hi - sp.pad_top
            want = (max(0, min(hi_d, 0) - lo_d), max(0, hi_d - max(lo_d, sp.in_rows)))
            if (st.pad_top, st.pad_bottom) != want:
                self.fail(f"{where}: pads [{st.pad_top}, {st.pad_bottom}] for output rows [{st.out_lo}, "
                          f"{st.out_hi}) of the {sp.border} Pad, its border rows are [{want[0]}, {want[1]}]")
        elif (st.pad_top, st.pad_bottom) != (0, 0):
            self.fail(f"{where}: pads [{st.pad_top}, {st.pad_bottom}], a {op.op_type} stripe has none")
        if sp.kind == "mirror":
            if not 0 <= st.out_lo < st.out_hi <= sp.out_rows:
                return   # reported by writes()
            copied = [sp.mirrored(o) for o in range(st.out_lo, st.out_hi)]
            lo, hi = min(copied), max(copied) + 1
            if got != (lo, hi):
                self.fail(f"{where}: reads rows {list(got) if got else 'none'} of '{x}', output rows "
                          f"[{st.out_lo}, {st.out_hi}) of the {sp.border} Pad (top {sp.pad_top}) copy rows "
                          f"{copied}: [{lo}, {hi})")
            if got is None:
                return
        elif sp.kind == "accumulate":
            start = self.reduced.get(op.index, 0)
            out = self.result.get(op.index, "")
            self.partial[out] = (op.index, x, sp.in_rows)
            if (st.out_lo, st.out_hi) != (0, 1):
                self.fail(f"{where}: writes rows [{st.out_lo}, {st.out_hi}) of '{out}'; a reduction over H "
                          "updates its one row [0, 1) with every band")
            if got is None or not start == got[0] < got[1] <= sp.in_rows:
                self.fail(f"{where}: reduces rows {list(got) if got else 'none'} of '{x}', the next band must start "
                          f"at row {start} (every row of it reduced once, in order, {sp.in_rows} rows)")
                if got is None or got[0] >= got[1]:
                    return
            self.reduced[op.index] = max(start, got[1])
        elif sp.kind == "transposed":
            lo, hi = sp.transposed_rows(st.out_lo, st.out_hi)
            if got != (lo, hi):
                self.fail(f"{where}: reads rows {list(got) if got else 'none'} of '{x}', output rows "
                          f"[{st.out_lo}, {st.out_hi}) of the ConvTranspose (stride {sp.scale}, kernel "
                          f"{sp.kernel}, pad {sp.pad_top}) need rows [{lo}, {hi})")
            if got is None:
                return
        else:
            lo, hi = sp.taps(st.out_lo)[0], sp.taps(st.out_hi - 1)[1]
            if got != (lo, hi):
                self.fail(f"{where}: reads rows {list(got) if got else 'none'} of '{x}', output rows "
                          f"[{st.out_lo}, {st.out_hi}) of the {sp.mode} Resize (x{sp.scale}, {sp.coord}) need "
                          f"rows [{lo}, {hi})")
            if got is None:
                return
        for r in range(got[0], got[1]):
            why = self.present(x, r)
            if why is not None:
                ct = self.holder(x)
                self.fail(f"{where}: reads row {r} of '{x}', but {why}", (ct.buffer,) if ct else ())
                break

    # (c) every output row produced once; the writes land in the tensor's holder
    def writes(self, where: str, i: int, op: Operator, st: Stripe) -> None:
        out = self.result.get(op.index, "")
        several = self.results.get(op.index)
        if several is not None or st.output:
            if several is None or st.output not in several:
                self.fail(f"{where}: names result '{st.output}'; the operator's results are "
                          f"{list(several or (out,))}" + (" (a stripe of it must name one)" if several else ""))
                return
            out = st.output
        if not (_has_rows(self.g, out) or out in self.partial):
            return  # reported by reads()
        if out in self.partial and self.partial[out][0] == op.index:
            _op, _x, h_in = self.partial[out]
            if self.reduced.get(op.index, 0) < h_in or (st.out_lo, st.out_hi) != (0, 1):
                return  # still accumulating: row 0 is not a result yet
            if 0 in self.produced[(op.index, out)]:
                self.fail(f"{where}: completes '{out}' again (first completed by stripe "
                          f"{self.produced[(op.index, out)][0]})")
                return
        h = self.rows_of(out)
        if not 0 <= st.out_lo < st.out_hi <= h:
            self.fail(f"{where}: writes rows [{st.out_lo}, {st.out_hi}) of '{out}', which has {h} rows")
            return
        ct = self.holder(out)
        if ct is None:
            self.fail(f"{where}: writes '{out}', which is not one of the cascade's tensors")
            return
        b = self.g.tensor_buffer[out]
        if ct.mode != "whole":
            clash = self.clash(op, st, ct)
            if clash is not None:
                self.fail(f"{where}: {clash}", (ct.buffer,))
                return
        done = self.produced[(op.index, out)]
        for r in range(st.out_lo, st.out_hi):
            if r in done:
                self.fail(f"{where}: produces row {r} of '{out}' again (first produced by stripe {done[r]})",
                          (ct.buffer,))
                break
            done[r] = i
        for r in range(st.out_lo, st.out_hi):
            if ct.mode == "whole":
                self.rows[b][r] = out
            else:
                self.put(ct, r, out)

    def clash(self, op: Operator, st: Stripe, ct: CascadeTensor) -> str | None:
        """Why stripe ``st`` may not write its rows into ring ``ct``, or None: a row it writes
        must not meet the bytes of a row it reads, unless it is that row's own slot and
        ``op`` (a folded group's core) is an elementwise in-place operator
        (``stowage.ir.inplace.data_operands``) of that operand, whose element ``i`` needs
        element ``i`` of the row it replaces only (a fused ReLU over its Conv's rows, a
        residual Add over its projection's, ``stowage.solvers.tiling.alias``)."""
        from stowage.ir.inplace import data_operands

        elementwise = {self.int8_of.get(n, n) for n in data_operands(op)}
        for name, lo, hi in st.inputs:
            h = self.holder(name)
            if h is None or h.mode == "whole" or h.buffer != ct.buffer or (h.ring_rows < 1 and not h.slots):
                continue
            for rr in range(lo, hi):
                o_r = h.row_offset(rr)
                for r in range(st.out_lo, st.out_hi):
                    o_w = ct.row_offset(r)
                    if o_r < 0 or o_w < 0:
                        continue  # a row without a slot: reported by the read or the write
                    if o_w < o_r + h.row_bytes and o_r < o_w + ct.row_bytes and not (
                            r == rr and o_w == o_r and name in elementwise):
                        return (f"writes row {r} of its result over row {rr} of '{name}', which it reads "
                                f"(buffer {ct.buffer}, bytes [{o_w}, {o_w + ct.row_bytes}))")
        return None

    def finish(self) -> None:
        for m in self.members.values():
            for out in self.results.get(m.index, (self.result.get(m.index, ""),)):
                if not (_has_rows(self.g, out) or out in self.partial):
                    continue
                if out in self.partial and self.partial[out][0] == m.index:
                    _op, x, h_in = self.partial[out]
                    if self.reduced.get(m.index, 0) < h_in:
                        self.fail(f"operator {m.name}: rows [{self.reduced.get(m.index, 0)}, {h_in}) of '{x}' are "
                                  f"never reduced, so '{out}' is never complete")
                        continue
                missing = [r for r in range(self.rows_of(out)) if r not in self.produced[(m.index, out)]]
                if missing:
                    self.fail(f"operator {m.name}: rows {_ranges(missing)} of '{out}' are never produced")
        for ct in self.c.tensors:
            if ct.mode == "streamed" and self.made_inside(ct.tensor):
                missing = [r for r in range(self.rows_of(ct.tensor)) if r not in self.stored[ct.tensor]]
                if missing:
                    self.fail(f"tensor '{ct.tensor}': rows {_ranges(missing)} are never stored to "
                              f"{ct.level}", (ct.buffer,))


def _ranges(rows: list[int]) -> str:
    parts: list[str] = []
    for _, grp in itertools.groupby(enumerate(rows), key=lambda x: x[1] - x[0]):
        g = [r for _, r in grp]
        parts.append(f"[{g[0]}, {g[-1] + 1})")
    return ", ".join(parts[:4]) + (" ..." if len(parts) > 4 else "")

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


def _macro_graph(graph: Graph, plan: Plan) -> Graph | str:
    """The macro graph of a tiled plan's cascades, or why it cannot be built."""
    from stowage.ir.tiling import CascadeSpec, macro_graph

    specs = []
    regions: dict[int, int] = {}   # slot-addressed cascade -> its row region's buffer in the plan
    for k, c in enumerate(plan.cascades):
        bad = [i for i in c.ops if not 0 <= i < len(graph.operators) or not graph.operators[i].computing]
        if bad or not c.ops:
            return f"cascade {k}: operator index {bad[0] if bad else '(none)'} is not a step of the graph"
        unknown = [t.tensor for t in c.tensors if t.tensor not in graph.tensor_buffer]
        if unknown:
            return f"cascade {k}: tensor '{unknown[0]}' is not in the graph"
        # A ring in another tensor's ring buffer is a declared alias (an elementwise result
        # written over its operand's rows, ``stowage.solvers.tiling.alias``): the host must be
        # a ring of this cascade held in its own buffer; rule 8 checks the rows and the writer.
        if c.slotted:
            got = _slot_spec(graph, plan, k, c)
            if isinstance(got, str):
                return got
            specs.append(got[0])
            regions[k] = got[1]
            continue
        own = {t.buffer for t in c.tensors if t.mode == "ring" and graph.tensor_buffer[t.tensor] == t.buffer}
        aliases: dict[int, int] = {}
        for t in c.tensors:
            if t.mode == "ring" and graph.tensor_buffer[t.tensor] != t.buffer:
                if t.buffer not in own:
                    return (f"cascade {k}: tensor '{t.tensor}' is a ring in buffer {t.buffer}, which holds no ring "
                            "of the cascade")
                aliases[graph.tensor_buffer[t.tensor]] = t.buffer
        rings = {graph.tensor_buffer[t.tensor]: t.ring_rows for t in c.tensors
                 if t.mode == "ring" and graph.tensor_buffer[t.tensor] not in aliases}
        streamed = {graph.tensor_buffer[t.tensor]: t.ring_rows for t in c.tensors if t.mode in ("streamed", "staged")}
        specs.append(CascadeSpec(tuple(c.ops), rings, streamed, aliases))
    try:
        macro, ring_of = macro_graph(graph, specs)
    except (KeyError, ValueError, IndexError, ZeroDivisionError) as exc:
        return f"the cascades do not describe this graph ({type(exc).__name__}: {exc})"
    for k, region in regions.items():
        made = {nb for (kk, _b), nb in ring_of.items() if kk == k}
        if made != {region}:
            return (f"cascade {k}: its rows lie in buffer {region}, but its row region is buffer "
                    f"{sorted(made)[0] if made else '(none)'}")
    return macro


def _slot_spec(graph: Graph, plan: Plan, k: int, c: Cascade) -> tuple[CascadeSpec, int] | str:
    """The macro step of a cascade addressing rows by slot: every ring and streamed tensor in
    one row region, a buffer the macro graph adds (``CascadeSpec.region``), or why not."""
    from stowage.ir.tiling import CascadeSpec

    held = [t for t in c.tensors if t.mode != "whole"]
    bad = [t for t in held if t.mode not in ("ring", "streamed") or not t.slots]
    if bad:
        return (f"cascade {k}: tensor '{bad[0].tensor}' ({bad[0].mode}) has no row slots, but the cascade "
                "addresses rows by slot (every ring and streamed tensor needs them; staging is not slotted)")
    regions = {t.buffer for t in held}
    if len(regions) != 1:
        return f"cascade {k}: its slot-addressed rows lie in buffers {sorted(regions)}, not in one row region"
    region = regions.pop()
    if not 0 <= region < len(plan.buffers) or plan.buffers[region].bytes < 1:
        return f"cascade {k}: row region buffer {region} is not a buffer of the plan"
    rings = {graph.tensor_buffer[t.tensor]: max(1, t.ring_rows) for t in held if t.mode == "ring"}
    streamed = {graph.tensor_buffer[t.tensor]: max(1, t.ring_rows) for t in held if t.mode == "streamed"}
    return CascadeSpec(tuple(c.ops), rings, streamed, {}, region=plan.buffers[region].bytes), region


def plan_graph(graph: Graph, plan: Plan) -> Graph:
    """The graph a plan's steps are steps of: the macro graph of a tiled plan's cascades
    (``stowage.ir.tiling.macro_graph``), else ``graph`` itself.  Raises ``PlanFormatError``
    when the cascades do not describe ``graph``."""
    if not plan.cascades:
        return graph
    macro = _macro_graph(graph, plan)
    if isinstance(macro, str):
        from stowage.errors import PlanFormatError

        raise PlanFormatError(macro)
    return macro


def validate(graph: Graph, plan: Plan, target: TargetLike | None = None) -> Verdict:
    """Check ``plan`` against ``graph`` and rules 1-8; never raises on a bad plan.

    ``target`` (optional, e.g. a ``stowage.targets.Hierarchy``) adds the checks the plan file
    cannot express on its own: no transfer into a non-writable level, same level names.

    A plan made with in-place operators (``options.in_place``) is judged against the fused
    graph, as ``stowage validate`` does: ``validate(load_graph(path), plan)`` then works for
    the plans ``stowage.compile`` makes by default (the README's snippet).  Likewise a plan
    made with QDQ groups folded (``options.qdq == "fold"``) is judged against the folded graph
    (folding comes first, as in ``stowage.compile``)."""
    if plan.options.qdq == "fold" and not graph.qdq and not graph.in_place:
        from stowage.ir.qdq import fold_qdq

        graph = fold_qdq(graph)
    if plan.options.in_place and not graph.in_place:
        from stowage.ir.inplace import fuse_in_place

        graph = fuse_in_place(graph, concat=plan.options.concat_in_place)
    if plan.options.channel_split and dict(graph.channel_splits) != dict(plan.options.channel_split):
        from stowage.ir.channel_split import split_channels

        try:
            graph = split_channels(graph, plan.options.channel_split)
        except ValueError as exc:
            return Verdict(False, (Violation(1, None, (), f"options.channel_split: {exc}"),), recompute_metrics(plan))
    model_graph = graph
    if plan.cascades:
        # A tiled plan's steps, buffers and placements are those of the macro graph its
        # cascades define: rules 1-7 judge it against that graph, rule 8 the rows against
        # the model's graph.
        macro = _macro_graph(graph, plan)
        if isinstance(macro, str):
            return Verdict(False, (Violation(1, None, (), macro),), recompute_metrics(plan))
        graph = macro
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
        c.check_timeline()
    if plan.cascades:
        c.check_rows(model_graph)
    c.check_metrics(metrics)
    return Verdict(not c.errors, tuple(c.errors), metrics)
