"""A lower bound on non-compulsory traffic valid for every plan Stowage can make, tiled or not.

COSMA's bounds (``stowage.solvers.exact``) hold over whole-tensor plans only: a cascade can keep
a tensor on chip as a ring of a few rows where the whole-tensor model must spill it, so a
whole-tensor bound is *not* a bound once ``--tiling auto`` may tile.  This module gives one
that is, for any order, any partition into cascades, any band heights and any spill choice.

**The plan space it covers.**  Every operator runs from the compute level (the targets'
compute engines read and write only that level), either in one step on whole tensors, or in
stripes inside a cascade.  Each intermediate buffer ``t`` (made by a step, read by steps, not a
graph input, output or weight) has one form: *whole* (one buffer of ``bytes(t)``, allocated from
its producer's step through its last reader's, possibly spilled and reloaded), or a *ring*
(its producer and every reader in one cascade), or it leaves the chip (stored off-chip, whole or
row by row, and loaded back by a reader).

**Local minimum footprints.**  While step ``i`` runs, at some instant it holds, of each buffer
``b`` it touches, at least ``m_i(b)`` bytes:

- a weight: when weights live in the compute level, all of it, or one output channel's
  slice of it when the operator may run as output-channel groups
  (``stowage.ir.channel_split``: each group holds its slice); else nothing;
- in a step that cannot run in stripes: the whole buffer;
- in a step that can: the rows one output row needs (``RowMap.need``), at the output row that
  needs the most, for a buffer it reads; one row for a buffer it writes (none for an
  elementwise result it may write over an operand's rows, a ring alias); the whole buffer for
  an operand every stripe reads whole (a broadcast scale).  An operand whose rows accumulate
  over stripes (a reduction) needs only one row.

``F_i = sum_b m_i(b) + extra`` is then a lower bound on the compute-level bytes of step ``i``.

**The per-buffer bound.**  ``t`` moves no bytes only if it is whole everywhere, which needs
``bytes(t) + F_i - m_i(t) <= C`` at every step ``i`` touching it, or a ring, which needs every
step touching it to run in stripes and ``R + F_i - m_i(t) <= C`` with ``R = max_i m_i(t)`` (one
ring serves all its readers).  When neither holds, some reader ``c`` gets rows of ``t`` from
off-chip memory that were first stored there: at least ``2 * read_c(t)`` bytes, with
``read_c`` the bytes of the rows ``c`` needs.  Transfers of distinct buffers are distinct, so
the sum over such buffers of ``2 * min_c read_c(t)`` is a lower bound on the non-compulsory
bytes of every plan.  (Were stripes ever cut along a second axis, or compute engines to read
off-chip memory in place, ``m_i`` would have to shrink with them.)

**The run bound** (``stowage.solvers.tiling.runs``) adds what the per-buffer argument cannot
see, that a cascade holds the rings of all its members at once and that the tensors a cut
leaves whole sit beside the cascades on both sides: a DP over the runs of *articulation
steps* (steps comparable with every other) that every partition into cascades makes, with
the tensors the per-buffer bound already counts as crossing, so no buffer is paid twice.
With rings held at their largest window (``per_instant=False``) MobileNetV2 at 8 bits,
activations only, gives 150,528 B at 96 KiB and 238,336 B at 64 KiB.

**Per instant** (``per_instant``, the default: plans may address rows by slot, so a ring holds
only its rows live at each stripe).  Part 1 counts what each step between a ring's producer
and readers needs at once, plus the rows a reader still needs while the producer writes
(``_lags``).  The run bound judges each run at single stripes (``runs._Instant``: the running
step's own terms) and, on the articulation chain, with the rows every other member of the
cascade must hold at that stripe (``stowage.solvers.tiling.instants``: an exact DP over how
far each member has got, whose argument that module gives).  MobileNetV2 as above: 0 down to
96 KiB, 150,528 B at 64 KiB and 238,336 B at 48 KiB (0 at all five before the chain).
``tests/test_tiling_bound.py`` checks both parts by hand on small graphs and against the
planners on random ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from stowage.ir.channel_split import split_spec
from stowage.ir.graph import BufferId, Graph, Operator, TensorKind
from stowage.ir.tiling import WINDOW, RowMap, buffer_row_bytes, row_units, rows
from stowage.solvers.tiling.alias import alias_operands
from stowage.solvers.tiling.runs import run_bound


@dataclass(frozen=True)
class TiledBound:
    """``bytes``: the bound; ``forced``: the buffers the per-buffer argument counts (none can
    stay on chip); ``runs``: the part the run bound adds (``stowage.solvers.tiling.runs``),
    ``crossing`` one cheapest choice of tensors it sends off-chip (a witness: other plans may
    send others at no lower cost)."""

    bytes: int
    forced: tuple[BufferId, ...]  # buffers of ``graph.without_concats`` when that bound is used
    runs: int = 0
    crossing: tuple[BufferId, ...] = ()
    #: The wall clock ended the run bound (``runs.RunBound.cut``): ``runs`` is 0 and the
    #: bound, still valid, depends on load.
    cut: bool = False


def _rows_per_output_row(rm: RowMap, out_rows: int) -> int:
    """Input rows one output row needs at the output row that needs the most."""
    most = 1
    for r in range(out_rows):
        most = max(most, sum(hi - lo for lo, hi in rm.runs(r, r + 1)))   # a dilated read: its taps' rows
    return most


def _rows_read(rm: RowMap, out_rows: int) -> int:
    """Distinct input rows all output rows need together."""
    covered: set[int] = set()
    for r in range(out_rows):
        for lo, hi in rm.runs(r, r + 1):
            covered.update(range(lo, hi))
    return max(1, len(covered))


def _least_weights(graph: Graph, op: Operator) -> dict[BufferId, int]:
    """The least bytes of each weight a step holds when weights live in the compute level: all
    of it, except a weight that output-channel groups may cut (``stowage.ir.channel_split``:
    with ``--weights-in-sram`` an operator whose step does not fit becomes groups, each
    holding its slice), of which one channel's slice."""
    tb = graph.tensor_buffer
    least: dict[BufferId, int] = {}
    for member in graph.step_members(op):
        spec = split_spec(graph, member)
        if spec is None:
            continue
        for pos, _ in spec.cut:
            name = member.inputs[pos]
            if name in tb and graph.buffers[tb[name]].kind is TensorKind.WEIGHT:
                b = tb[name]
                least[b] = min(least.get(b, graph.buffers[b].bytes), graph.buffers[b].bytes // spec.channels)
    return least


def _step_needs(graph: Graph, op: Operator, weights: bool) -> tuple[dict[BufferId, int], dict[BufferId, int], bool]:
    """``(m, read, tileable)``: the least bytes step ``op`` holds of each buffer it touches,
    the bytes of each buffer it reads (distinct rows), and whether it can run in stripes."""
    tb = graph.tensor_buffer
    reads, writes = graph.op_reads(op), graph.op_writes(op)
    m: dict[BufferId, int] = {}
    read: dict[BufferId, int] = {}
    units = row_units(graph, op)
    least = _least_weights(graph, op) if weights else {}
    for b in (*reads, *writes):
        buf = graph.buffers[b]
        if buf.kind is TensorKind.WEIGHT:
            m[b] = least.get(b, buf.bytes) if weights else 0
        elif units is None:
            m[b] = buf.bytes
        read.setdefault(b, buf.bytes)
    if units is None:
        return m, read, False
    row_need: dict[BufferId, int] = {}
    row_read: dict[BufferId, int] = {}
    for u in units:
        for name, rm in u.maps.items():
            b = tb[name]
            if graph.buffers[b].kind is TensorKind.WEIGHT:
                continue
            rb = buffer_row_bytes(graph, b)
            out_rows = rows(graph, graph.tensors[u.output])
            need = 1 if rm.accumulate else _rows_per_output_row(rm, out_rows)
            row_need[b] = max(row_need.get(b, 0), need * rb)
            read_rows = rm.in_rows if rm.accumulate else _rows_read(rm, out_rows)
            row_read[b] = max(row_read.get(b, 0), read_rows * rb)
    for b in (*reads, *writes):
        buf = graph.buffers[b]
        if buf.kind is TensorKind.WEIGHT:
            continue
        if b in row_need:
            m[b] = row_need[b]
            read[b] = min(buf.bytes, row_read[b])
        elif b in writes:
            m[b] = buffer_row_bytes(graph, b)
        else:
            m[b] = buf.bytes  # read whole by every stripe
    for b in writes:
        if graph.buffers[b].kind is not TensorKind.WEIGHT:
            m[b] = max(m[b], buffer_row_bytes(graph, b))
    # An elementwise result that may be written over its operand's rows (a ring alias,
    # ``stowage.solvers.tiling.alias``) needs no bytes of its own in this step.
    for u in units:
        yb = tb.get(u.output)
        if yb is not None and yb in m and alias_operands(graph, op.index, u):
            m[yb] = 0
    return m, read, True


def _interior_rows(graph: Graph, op: Operator, b: BufferId) -> list[int]:
    """Rows ``r`` of buffer ``b`` that step ``op`` writes (every one of its row units writes
    ``b``) with every window it reads unclipped: at such a row each read needs its whole
    kernel, the most any row needs (``_rows_per_output_row``).  Empty when a unit is not a
    plain window map (then no row is known to be such an instant)."""
    units = row_units(graph, op)
    if not units:
        return []
    tb = graph.tensor_buffer
    if any(tb.get(u.output) != b for u in units):
        return []
    heights = {rows(graph, graph.tensors[u.output]) for u in units}
    if len(heights) != 1:
        return []
    maps = [rm for u in units for rm in u.maps.values()]
    if any(rm.kind != WINDOW or rm.accumulate for rm in maps):
        return []
    (h,) = heights
    return [r for r in range(h)
            if all(r * rm.stride - rm.pad_top >= 0 and r * rm.stride - rm.pad_top + rm.kernel <= rm.in_rows
                   for rm in maps)]


def _lags(graph: Graph, steps: list[Operator]) -> dict[tuple[int, BufferId], int]:
    """``(reader step c, buffer b) -> bytes``: rows of ``b`` that ``c`` still needs, made
    before, while ``b``'s producer writes a row at which its reads need their whole kernels
    (``_interior_rows``; the least over such rows).  ``c``'s next output row needs the row
    being written, so it has not run, and the rows of its window below that row are live:
    whatever the band heights, the order or the slots, when ``c`` runs in the producer's
    cascade.  Only plain windows (``WINDOW``; a dilated read, a reduction, a Resize: none)."""
    tb = graph.tensor_buffer
    out: dict[tuple[int, BufferId], int] = {}
    interior: dict[BufferId, list[int]] = {}
    for c in steps:
        for u in row_units(graph, c) or ():
            for name, rm in u.maps.items():
                b = tb.get(name)
                if (b is None or rm.kind != WINDOW or rm.accumulate
                        or graph.buffers[b].kind is not TensorKind.ACTIVATION):
                    continue
                prod = graph.buffers[b].producer
                if prod is None or prod == c.index or not graph.operators[prod].computing:
                    continue
                if b not in interior:
                    interior[b] = _interior_rows(graph, graph.operators[prod], b)
                out_rows = rows(graph, graph.tensors[u.output])
                least = None
                for r in interior[b]:
                    o = max(0, -(-(r - rm.kernel + 1 + rm.pad_top) // rm.stride))
                    held = r - max(0, o * rm.stride - rm.pad_top) if o < out_rows else 0
                    least = held if least is None else min(least, held)
                    if least <= 0:
                        break
                if least:
                    key = (c.index, b)
                    out[key] = max(out.get(key, 0), least * buffer_row_bytes(graph, b))
    return out


def _closures(graph: Graph, steps: list[Operator]) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    """Bit sets (over positions in file order) of each step's ancestors and descendants, and
    the position of each step.  File order is topological, so one pass each way suffices."""
    pos = {op.index: k for k, op in enumerate(steps)}
    deps = graph.op_dependencies()
    anc: dict[int, int] = {}
    for op in steps:
        bits = 0
        for d in deps[op.index]:
            if d in pos:
                bits |= anc[d] | (1 << pos[d])
        anc[op.index] = bits
    succ: dict[int, list[int]] = {op.index: [] for op in steps}
    for op in steps:
        for d in deps[op.index]:
            if d in succ:
                succ[d].append(op.index)
    desc: dict[int, int] = {}
    for op in reversed(steps):
        bits = 0
        for s in succ[op.index]:
            bits |= desc[s] | (1 << pos[s])
        desc[op.index] = bits
    return anc, desc, pos


def tiled_lower_bound(graph: Graph, capacity: int, weights_in_compute_level: bool,
                      deadline: float | None = None, per_instant: bool = True,
                      work: int | None = None) -> TiledBound:
    """The bound of the module docstring at compute-level capacity ``capacity``, over the plans
    of ``graph`` and, when it runs Concats in place, of the same model without them
    (``Graph.without_concats``: ``stowage.compile`` plans that one below M_R, where its
    producers can run in stripes): the smaller of the two bounds.

    ``per_instant`` (default): valid also for cascades addressing rows by slot
    (``CascadeTensor.slots``), whose rows share bytes over time, so a cascade holds per
    instant only what the step running needs of its rows; False: for plans whose rings are
    held at their largest window for the whole cascade (the stronger bound of the plans
    before rows by slot).  ``work``: the run bound's evaluation budget for each of the two
    graphs (``runs.run_work``; default ``runs.WORK``); ``deadline`` is its safety net."""
    own = _bound(graph, capacity, weights_in_compute_level, deadline, per_instant, work)
    if graph.without_concats is None or own.bytes == 0:
        return own
    plain = _bound(graph.without_concats, capacity, weights_in_compute_level, deadline, per_instant, work)
    best = plain if plain.bytes < own.bytes else own
    return replace(best, cut=own.cut or plain.cut)


def _bound(graph: Graph, capacity: int, weights_in_compute_level: bool,
           deadline: float | None = None, per_instant: bool = True, work: int | None = None) -> TiledBound:
    """The bound over the plans of ``graph`` as it is.

    Two facts about the steps *between* a buffer's producer ``p`` and its readers (descendants
    of ``p`` and ancestors of a reader: every order runs them after ``p`` and before that
    reader) tighten it, still for every order: a whole buffer is resident while they run
    (``bytes(t) + F_s <= C``), and a ring puts them in its cascade, one macro step holding the
    weights of all its members at once (``stowage.solvers.tiling.program.Program.footprint``),
    so ``R + sum of their distinct weights + max_s (F_s - weights_s - m_s(t)) <= C``."""
    steps = [op for op in graph.operators if op.computing]
    needs = {op.index: _step_needs(graph, op, weights_in_compute_level) for op in steps}
    extra = {op.index: sum(mm.extra_bytes for mm in graph.step_members(op)) for op in steps}
    foot = {i: sum(m.values()) + extra[i] for i, (m, _, _) in needs.items()}
    wts = {i: {b for b in m if graph.buffers[b].kind is TensorKind.WEIGHT} if weights_in_compute_level else set()
           for i, (m, _, _) in needs.items()}
    anc, desc, _ = _closures(graph, steps)
    lags = _lags(graph, steps) if per_instant else {}
    at = [op.index for op in steps]
    users: dict[BufferId, list[int]] = {}
    for op in steps:
        for b in needs[op.index][0]:
            users.setdefault(b, []).append(op.index)
    total = 0
    forced: list[BufferId] = []
    for b, us in users.items():
        buf = graph.buffers[b]
        if buf.kind is not TensorKind.ACTIVATION or buf.is_output or buf.producer is None:
            continue
        readers = [i for i in us if b not in graph.op_writes(graph.operators[i])]
        if not readers:
            continue
        up = 0
        for r in readers:
            up |= anc[r]
        between_bits = 0
        for w in (i for i in us if i not in readers):
            between_bits |= desc[w] & up
        between = [at[k] for k in range(len(at)) if between_bits >> k & 1 and at[k] not in us]
        whole = (all(buf.bytes + foot[i] - needs[i][0][b] <= capacity for i in us)
                 and all(buf.bytes + foot[s] <= capacity for s in between))
        if whole:
            continue
        members = [*us, *between]
        if all(needs[i][2] for i in members):
            ring = max(needs[i][0][b] for i in us)
            held: dict[BufferId, int] = {}
            for i in members:
                for w in wts[i]:
                    held[w] = max(held.get(w, 0), needs[i][0][w])
            weights = sum(held.values())
            if per_instant:
                # Rows by slot: at each step the ring holds at least what that step needs of
                # it (its term in ``foot``), not its largest window.
                # Its producer also holds the rows its readers still need (``_lags``).
                ring = 0
                lag = max((lags.get((r, b), 0) for r in readers), default=0)
                rest = max(foot[i] - sum(needs[i][0][w] for w in wts[i]) + (lag if i == buf.producer else 0)
                           for i in members)
            else:
                rest = max(foot[i] - sum(needs[i][0][w] for w in wts[i]) - needs[i][0].get(b, 0) for i in members)
            if ring + weights + rest <= capacity:
                continue
        total += 2 * min(needs[i][1][b] for i in readers)
        forced.append(b)
    run = run_bound(graph, capacity, steps, needs, anc, desc, frozenset(forced), _barriers(graph, steps, needs, desc),
                    deadline, per_instant=per_instant, lags=lags, work=work)
    return TiledBound(total + run.bytes, tuple(forced), run.bytes, run.crossing, run.cut)


def _barriers(graph: Graph, steps: list[Operator],
              needs: dict[int, tuple[dict[BufferId, int], dict[BufferId, int], bool]],
              desc: dict[int, int]) -> frozenset[BufferId]:
    """Activations no ring of fewer than all their rows can serve (``runs``, fact 5): reduced
    over H by a step (``RowMap.accumulate``) that a reader reading every row depends on.  A
    squeeze-excitation Mul runs after the pool's last band, so when it starts every row of
    its operand is made and none is read yet."""
    pos = {op.index: k for k, op in enumerate(steps)}
    reduced: dict[BufferId, list[int]] = {}
    for op in steps:
        for u in row_units(graph, op) or ():
            for name, rm in u.maps.items():
                if rm.accumulate:
                    reduced.setdefault(graph.tensor_buffer[name], []).append(op.index)
    out: set[BufferId] = set()
    for b, reducers in reduced.items():
        buf = graph.buffers[b]
        full = [c for c in buf.consumers if c in pos and needs[c][1].get(b, 0) >= buf.bytes]
        if buf.kind is TensorKind.ACTIVATION and any(desc[r] >> pos[c] & 1 for r in reducers for c in full):
            out.add(b)
    return frozenset(out)


def can_tile(graph: Graph) -> bool:
    """Whether any step can run in stripes.  When none can, every plan is a whole-tensor plan
    and COSMA's bounds hold as they are."""
    return any(row_units(graph, op) is not None for op in graph.operators if op.computing)
