"""The stripe program of one cascade, and the exact ring sizes it implies.

``stripe_program`` walks the cascade's output in bands of ``stripe_rows`` rows of its last
tensor.  For each band it asks, backwards through the members, how many rows of every tensor
are needed (``RowMap.need``), then runs each member forwards on the rows it has not produced
yet.  After every member's stripe it measures, for each buffer held in a ring, the window of
rows written and still needed (by a later member's next band, by an in-place rewrite that has
not happened yet, or by a store that has not run): the ring needs the largest such window,
which is the exact row liveness of the design notes, residual lags included (a tensor read by
two members at different offsets stays live for the lag between them).

A loaded buffer a dilated convolution reads sparsely is *staged* instead of held in a ring
when that holds fewer rows (``staged_loads``): each stripe loads the rows it reads.

A cascade ending in a reduction over H (``ACCUMULATE``) walks the reduction's *input* rows
instead: each of its stripes reduces the next band and writes row ``[0, 1)`` of its result,
which is complete (and, when it streams, stored) after the last band.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from stowage.ir.columns import mixed_buffer
from stowage.ir.graph import BufferId, Graph, Operator, OpIndex, TensorKind
from stowage.ir.tiling import (
    DILATED,
    FLATTEN,
    MIRROR,
    RESIZE,
    TRANSPOSED,
    RowMap,
    RowUnit,
    accumulates,
    buffer_row_bytes,
    row_units,
    rows,
)
from stowage.plan import RowTransfer, Stripe
from stowage.solvers.tiling.alias import ring_aliases


@dataclass(frozen=True)
class Program:
    """A cascade's stripes and what it holds: ``rings`` (interior buffer -> rows), ``streamed``
    (graph input or output buffer -> rows of its staging ring), ``whole`` buffers, and the
    bytes its row transfers move (each streamed row exactly once)."""

    ops: tuple[OpIndex, ...]
    stripe_rows: int
    end: str
    stripes: tuple[Stripe, ...]
    rings: dict[BufferId, int]
    streamed: dict[BufferId, int]
    whole_in: tuple[BufferId, ...]
    whole_out: tuple[BufferId, ...]
    load_bytes: int
    store_bytes: int
    #: Member stripes of the walk (as many as ``stripes`` holds when recorded): the partition
    #: search's count, exact for in-place members and for members with fewer rows than the end.
    count: int = 0
    #: Streamed buffers held as staging (``staged_loads``: a dilated member's tap rows loaded
    #: per stripe), not as a ring.
    staged: frozenset[BufferId] = frozenset()
    #: Result buffers written over an operand's ring (``stowage.solvers.tiling.alias``): buffer
    #: -> the ring buffer (in ``rings``) whose slots hold its rows.
    aliases: Mapping[BufferId, BufferId] = field(default_factory=dict)
    #: Rings (in ``rings``, with their own rows) held in the bytes of another ring, the host
    #: (``share_rings``): ring -> host.  A host's ring is the largest of its group.
    shared: Mapping[BufferId, BufferId] = field(default_factory=dict)

    def ring_bytes(self, graph: Graph) -> int:
        return sum(r * buffer_row_bytes(graph, b) for b, r in (*self.rings.items(), *self.streamed.items())
                   if b not in self.shared)

    def footprint(self, graph: Graph, weights: bool) -> int:
        """Compute-level bytes of the cascade as one step: whole operands and results plus rings."""
        ww = sum(graph.buffers[b].bytes for b in self.weights(graph)) if weights else 0
        return (sum(graph.buffers[b].bytes for b in (*self.whole_in, *self.whole_out)) + self.ring_bytes(graph) + ww
                + sum(graph.operators[i].extra_bytes for i in self.ops))

    def weights(self, graph: Graph) -> set[BufferId]:
        return {b for i in self.ops for b in graph.op_reads(graph.operators[i])
                if graph.buffers[b].kind is TensorKind.WEIGHT}


class NotTileable(Exception):
    """The steps cannot run as one cascade (an operator needs whole tensors)."""


@dataclass(frozen=True)
class _Member:
    """One row unit of the walk.  ``index`` is its position in the cascade, the walk's key: a
    Split is one unit per result, all of one operator (``op``).  ``output`` is named in its
    stripes when the operator has several results."""

    index: int
    op: Operator
    output: str
    several: bool

    @property
    def name(self) -> str:
        return self.op.name


def whole_read_inside(members: Sequence[_Member], maps: Mapping[int, Mapping[str, RowMap]],
                      producer: Mapping[str, int], int8_of: Mapping[str, str] | None = None) -> str | None:
    """Why the members cannot be one cascade because one of them reads whole (a broadcast
    over H: a squeeze-and-excitation scale of one row) a tensor another member makes, or None.
    Such a reader needs all of it before its first stripe, which the band walk (ordered by the
    rows stripes read) does not ensure.  ``int8_of``: a folded QDQ group's float operand ->
    the int8 tensor its DequantizeLinear reads (the member's operator is the group's core,
    whose operands are those float names; without it a QDQ squeeze-and-excitation scale slipped
    through, and PP-OCRv4 det in QDQ int8 at 64 KiB got a cascade whose Mul read the scale
    before it was made, which the validator refused)."""
    int8_of = int8_of or {}
    for m in members:
        for name in m.op.inputs:
            name = int8_of.get(name, name)
            if name in producer and producer[name] != m.index and name not in maps[m.index]:
                return f"{m.op.name} reads '{name}' whole, made in the cascade"
    return None


def stripe_program(graph: Graph, ops: tuple[OpIndex, ...], stripe_rows: int,
                   outside_readers: dict[BufferId, bool], stream: bool = True, record: bool = True,
                   dram: frozenset[BufferId] = frozenset(), pace_rows: int = 0, stage: bool = True,
                   in_place: bool = True, interleave: bool = True, share: bool = True) -> Program:
    """The program of steps ``ops`` (contiguous in file order) in bands of ``stripe_rows`` rows.

    ``outside_readers[b]``: whether buffer ``b`` is read by a step outside the cascade (then a
    buffer made inside is whole).  ``stream``: graph inputs read only here and graph outputs
    read nowhere else pass through rings from and to their home level.  ``record=False`` only
    sizes the rings (the partition search evaluates thousands of candidates).  ``dram``:
    intermediate buffers that cross a cascade boundary off-chip: the cascade making one
    stores its rows as it goes, one reading it loads them (non-compulsory traffic).
    ``pace_rows`` (0: the end tensor's rows): bands are ``stripe_rows`` rows of a tensor of
    that many rows, each member producing its proportional share per band.  ``stage``: a
    loaded buffer a dilated member reads is staged (``staged_loads``) when that holds fewer
    rows than its ring; False keeps every such buffer in a ring (each row loaded once).
    ``in_place``: elementwise results may be written over their operand's ring (``alias``;
    ``aliases``).  ``interleave``: members make a band's rows one share at a time (see the
    band loop).  ``share``: rings whose live intervals never meet share bytes (``share_rings``)."""
    members: list[_Member] = []
    maps: dict[int, dict[str, RowMap]] = {}
    unit_out: dict[int, str] = {}
    unit_list: list[tuple[OpIndex, RowUnit]] = []
    for i in ops:
        units = row_units(graph, graph.operators[i])
        if units is None:
            raise NotTileable(graph.operators[i].name)
        for u in units:
            key = len(members)
            maps[key] = dict(u.maps)
            members.append(_Member(key, u.op, u.output, len([o for o in u.op.outputs if o]) > 1))
            unit_out[key] = u.output
            unit_list.append((i, u))
    tb: Mapping[str, BufferId] = graph.tensor_buffer
    out_of = unit_out
    producer = {out_of[m.index]: m.index for m in members}
    # A reduction accumulating over H (``ACCUMULATE``) runs on bands of its input and its
    # one-row result is complete only after the last band: it can only end a cascade.  Its
    # "rows" here are the input rows it has reduced.
    acc = {m.index: next(iter(maps[m.index].values())).in_rows for m in members if accumulates(maps[m.index])}
    if any(i != members[-1].index for i in acc):
        raise NotTileable("a reduction over H must end its cascade")
    rows_of = {m.index: acc.get(m.index) or rows(graph, graph.tensors[out_of[m.index]]) for m in members}
    written = {tb[out_of[m.index]] for m in members}
    read_in_rows = {tb[name] for m in members for name in maps[m.index]}
    int8_of = {d.outputs[0]: d.inputs[0] for m in members for d in graph.step_members(m.op)
               if d.op_type == "DequantizeLinear" and d.inputs and d.outputs and d.outputs[0] not in tb}
    why = whole_read_inside(members, maps, producer, int8_of)
    if why is not None:
        raise NotTileable(why)

    streamed: dict[BufferId, int] = {}
    rings: dict[BufferId, int] = {}
    whole_in: list[BufferId] = []
    whole_out: list[BufferId] = []
    # A buffer mixing row layouts (a flattening Reshape's view of an NCHW map, read in columns
    # by a detection head's Concat: ``columns.mixed_buffer``) has no common row: it is whole,
    # made before the cascade reading its view in rows.
    mixed = {b for b in (*written, *read_in_rows) if mixed_buffer(graph, b)}
    for b in mixed:
        if b in written and b in read_in_rows:
            raise NotTileable(f"{graph.buffers[b].tensors[0]}: its views have different rows")
        if b in dram:
            raise NotTileable(f"{graph.buffers[b].tensors[0]}: its views have different rows, it cannot cross in rows")
    for b in dict.fromkeys(b for i in ops for b in graph.op_reads(graph.operators[i])):
        buf = graph.buffers[b]
        if b in written or buf.kind is TensorKind.WEIGHT:
            continue  # weights: read whole by every stripe, counted only when resident (``weights``)
        if b in mixed:
            whole_in.append(b)
        elif (stream and buf.kind is TensorKind.INPUT and not outside_readers.get(b, False)
                and not buf.is_output and b in read_in_rows):
            streamed[b] = 0
        elif b in dram:
            if b not in read_in_rows:
                raise NotTileable(f"{buf.tensors[0]} is off-chip but read whole")
            streamed[b] = 0
        else:
            whole_in.append(b)
    for b in dict.fromkeys(tb[out_of[m.index]] for m in members):
        buf = graph.buffers[b]
        if b in mixed:
            if not outside_readers.get(b, False):
                raise NotTileable(f"{buf.tensors[0]}: its views have different rows")
            whole_out.append(b)
        elif b in dram:
            streamed[b] = 0
        elif buf.is_output:
            if stream and not outside_readers.get(b, False):
                streamed[b] = 0
            else:
                whole_out.append(b)
        elif outside_readers.get(b, False):
            whole_out.append(b)
        else:
            rings[b] = 0
    # An elementwise result written over its operand's ring rows (``alias``): its tensors
    # live in the operand's buffer for the walk, as a fused in-place operator's do.
    aliases = ring_aliases(graph, unit_list, rings) if in_place else {}
    if aliases:
        remap = dict(graph.tensor_buffer)
        for yb, xb in aliases.items():
            del rings[yb]
            for t in graph.buffers[yb].tensors:
                remap[t] = xb
        tb = remap
    # The first member writing a buffer makes its rows; later ones (in-place) rewrite them.
    maker: dict[BufferId, OpIndex] = {}
    last_writer: dict[BufferId, OpIndex] = {}
    for m in members:
        maker.setdefault(tb[out_of[m.index]], m.index)
        last_writer[tb[out_of[m.index]]] = m.index
    for b in maker:
        # A whole buffer holds each tensor in its own NCHW layout: an in-place chain that
        # changes the element size (Conv -> QuantizeLinear -> DequantizeLinear unfolded, one
        # buffer) would write a narrow row over wide rows not yet rewritten.  Rings are safe
        # (one slot size for every tensor of the buffer); a buffer read outside may be whole
        # (whatever ``dram`` says: the partition search walks with everything in rows).
        widths = {graph.tensors[out_of[m.index]].bytes for m in members if tb[out_of[m.index]] == b}
        if len(widths) > 1 and outside_readers.get(b, False):
            raise NotTileable(f"{graph.buffers[b].tensors[0]}: an in-place chain changes its width")

    end = out_of[members[-1].index]
    h_end = rows_of[members[-1].index]
    done = {m.index: 0 for m in members}
    # Rows loaded so far, for streamed buffers made outside (those made here are stored).
    loaded = {b: 0 for b in streamed if b not in written}
    # Loaded buffers a dilated member reads sparsely: the rows each stripe reads of them, and
    # the rows the high-water loading moves, to choose between a ring and staging
    # (``staged_loads``) after the walk.
    gathered: dict[BufferId, list[tuple[int, tuple[tuple[int, int], ...]]]] = {
        b: [] for b in loaded if any(rm.kind == DILATED and tb[n] == b for c in maps.values() for n, rm in c.items())}
    ring_loads = dict.fromkeys(gathered, 0)
    held = {**rings, **streamed}
    base = dict.fromkeys(held, 0)
    span = dict.fromkeys(held, 0)
    opened = dict.fromkeys(rings, -1)
    lives: dict[BufferId, list[tuple[int, int]]] = {b: [] for b in rings}
    stripes: list[Stripe] = []
    load_bytes = store_bytes = 0
    count = 0

    def made(b: BufferId) -> int:
        return loaded[b] if b in loaded else done[maker[b]]

    row_b: dict[BufferId, int] = {}

    def row_bytes_of(b: BufferId) -> int:
        if b not in row_b:
            row_b[b] = buffer_row_bytes(graph, b)
        return row_b[b]

    # The walk is the partition search's inner loop (thousands of walks; DenseNet's
    # concatenations read dozens of operands per stripe): each member's operands with their
    # row maps, and for a window map (every kind but resize, transposed, dilated, flatten and mirror) its stride,
    # padding, extent and input rows, so ``need`` and ``first_needed`` are inlined below.
    def fast(rm: RowMap) -> tuple[int, int, int, int]:
        return (rm.stride, rm.pad_top, rm.kernel, rm.in_rows) if rm.kind not in (RESIZE, TRANSPOSED, DILATED, FLATTEN,
                                                                                  MIRROR) \
            else (0, 0, 0, 0)

    operands = {m.index: [(name, tb[name], rm, producer.get(name), rm.kernel > 1 or rm.stride > 1 or rm.pad_top != 0,
                           *fast(rm)) for name, rm in maps[m.index].items()] for m in members}
    # Per held buffer: its readers' row maps, and the in-place members that rewrite it.
    read_maps: dict[BufferId, list[tuple[OpIndex, RowMap, int, int, int, int]]] = {b: [] for b in held}
    for m in members:
        for name, rm in maps[m.index].items():
            if tb[name] in read_maps:
                read_maps[tb[name]].append((m.index, rm, *fast(rm)))
    rewriters = {b: [m.index for m in members if tb[out_of[m.index]] == b and m.index != maker[b]]
                 for b in held if b in maker}
    touched_by = {m.index: {tb[n] for n in maps[m.index] if tb[n] in held}
                  | ({tb[out_of[m.index]]} if tb[out_of[m.index]] in held else set()) for m in members}

    def first_read(b: BufferId, low: int) -> int:
        """The lowest row of ``b`` a reader of the cascade that has bands left reads from now
        on, or ``low`` when that is lower."""
        for c, rm, st, pt, _k, inr in read_maps[b]:
            d = done[c]
            if d < rows_of[c]:
                if st:   # RowMap.first_needed of a window map
                    v = d * st - pt
                    v = 0 if v < 0 else inr if v > inr else v
                else:
                    v = rm.first_needed(d)
                if v < low:
                    low = v
        return low

    def lowest_needed(b: BufferId) -> int:
        """The lowest row of loaded buffer ``b`` a reader of the cascade reads from now on."""
        return first_read(b, rows_of_buffer.get(b, 1 << 30))

    rows_of_buffer = {b: max(rm.in_rows for _c, rm, *_ in read_maps[b]) for b in loaded if read_maps.get(b)}

    def release(bufs: set[BufferId]) -> None:
        """Raise the lowest live row of ``bufs``: only a member's own operands and result can
        change when it runs (its readers' next band, its rewrite, the rows it made)."""
        for b in bufs:
            low = first_read(b, loaded[b] if b in loaded else done[maker[b]])
            # Rows an in-place member has yet to rewrite (a store follows the last writer at once).
            for r in rewriters.get(b, ()):
                if done[r] < low:
                    low = done[r]
            if low > base[b]:
                base[b] = low

    # Bands of ``stripe_rows`` rows of the end tensor, or with ``pace_rows`` of a tensor that
    # tall (the cascade's tallest): every member then keeps pace with it, so the layers before
    # a stride-2 step run in bands finer than one end row (smaller rings there).
    pace = max(pace_rows, h_end)
    rewrites_host = [(m.index, maker[tb[out_of[m.index]]]) for m in members if m.index != maker[tb[out_of[m.index]]]]
    # Rows a member makes per band on average (at least one): its share of a band.
    quota = {m.index: max(1, -(-stripe_rows * rows_of[m.index] // pace)) for m in members}

    def _run(m: _Member, lo_o: int, hi_o: int) -> None:
        """Member ``m`` makes rows ``[lo_o, hi_o)``: its stripe, loads, store and windows."""
        nonlocal load_bytes, store_bytes, count
        inputs: list[tuple[str, int, int]] = []
        moves: list[RowTransfer] = []
        pad_t = pad_b = 0
        for name, b, rm, _p, padded, st, pt, k, inr in operands[m.index]:
            if b in gathered:
                gathered[b].append((count, rm.runs(lo_o, hi_o)))
            if record:
                lo, hi, p_t, p_b = rm.need(lo_o, hi_o)
                if rm.kind == DILATED:
                    inputs.extend((name, r_lo, r_hi) for r_lo, r_hi in rm.runs(lo_o, hi_o))
                else:
                    inputs.append((name, lo, hi))
                if padded or p_b:   # p_b alone: a Pad adding rows below only
                    pad_t, pad_b = p_t, p_b
            elif b not in loaded:
                continue   # only loads matter when sizing rings
            elif st:   # RowMap.need(lo_o, hi_o)[1] of a window map
                hi = (hi_o - 1) * st - pt + k
                hi = inr if hi > inr else hi
            else:
                hi = rm.need(lo_o, hi_o)[1]
            if b in loaded and hi > loaded[b]:
                if b not in gathered:
                    # Rows no reader of the cascade will read (those a Slice skips, above the
                    # first it takes or between its taken rows) are never loaded: the load
                    # starts at the lowest row any reader still needs.
                    low = lowest_needed(b)
                    if low > loaded[b]:
                        loaded[b] = min(low, hi)
                        if base[b] < loaded[b]:
                            base[b] = loaded[b]
                if record:
                    moves.append(RowTransfer(graph.buffers[b].tensors[0], loaded[b], hi, "", "load"))
                load_bytes += (hi - loaded[b]) * row_bytes_of(b)
                if b in ring_loads:
                    ring_loads[b] += hi - loaded[b]
                loaded[b] = hi
        ob = tb[out_of[m.index]]
        done[m.index] = hi_o
        count += 1
        # An accumulating stripe updates the one row of its result, complete (and stored,
        # when it streams) after the last band.
        w_lo, w_hi = (0, 1) if m.index in acc else (lo_o, hi_o)
        if ob in held:
            # A band is written whole before any of it is read or stored.
            span[ob] = max(span[ob], w_hi - w_lo)
        if ob in streamed and last_writer[ob] == m.index and (m.index not in acc or hi_o == rows_of[m.index]):
            moves.append(RowTransfer(graph.buffers[ob].tensors[0], w_lo, w_hi, "", "store"))
            store_bytes += (w_hi - w_lo) * row_bytes_of(ob)
        if record:
            stripes.append(Stripe(op=m.op.index, out_lo=w_lo, out_hi=w_hi, inputs=tuple(inputs),
                                  pad_top=pad_t, pad_bottom=pad_b, transfers=tuple(moves),
                                  output=m.output if m.several else ""))
        for b in touched_by[m.index]:
            if b != ob or m.index not in acc:
                v = (loaded[b] if b in loaded else done[maker[b]]) - base[b]
                if v > span[b]:
                    span[b] = v
        release(touched_by[m.index])
        # Live intervals of the rings (``share``): a ring goes live at the stripe writing
        # into it while empty, and dies at the stripe after which it holds no needed row.
        for b in touched_by[m.index]:
            if b in opened:
                if done[maker[b]] > base[b]:
                    if opened[b] < 0:
                        opened[b] = count
                elif opened[b] >= 0:
                    lives[b].append((opened[b], count))
                    opened[b] = -1

    for a in range(0, pace, stripe_rows):
        hi_pace = min(a + stripe_rows, pace)
        hi_end = h_end if hi_pace == pace else hi_pace * h_end // pace
        want: dict[OpIndex, int] = {members[-1].index: hi_end}
        for m in reversed(members):
            if pace_rows:
                r = rows_of[m.index]
                want[m.index] = max(want.get(m.index, 0), r if hi_pace == pace else hi_pace * r // pace)
            if m.index not in want:
                # A member nothing later in the cascade reads (a result that leaves) keeps pace
                # with the end tensor.  Set before its producers are visited, so that its
                # operands' rows are made in time (a side branch ending in a whole result, as
                # YOLOv5's CSP bottlenecks have).
                want[m.index] = math.ceil(hi_end * rows_of[m.index] / h_end)
            w_m = want.get(m.index)
            if not w_m:
                continue
            for _name, _b, rm, p, _padded, st, pt, k, inr in operands[m.index]:
                if p is not None:
                    if st:   # RowMap.need(0, w_m)[1] of a window map
                        hi = (w_m - 1) * st - pt + k
                        hi = inr if hi > inr else hi
                    else:
                        hi = rm.need(0, w_m)[1]
                    if hi > want.get(p, 0):
                        want[p] = hi
        # An in-place member rewrites what its host made: never behind it.
        for mi, host in rewrites_host:
            if want[host] > want[mi]:
                want[mi] = want[host]
        # The members run in passes, each making at most its share of a band (``quota``) and
        # only rows whose operand rows exist: where a band's wants lead by several rows (the
        # first band, a stride-2 reader's two rows), rows are made and consumed one share at a
        # time instead of all at once, so fewer are live together.  Without ``interleave`` one
        # pass makes every wanted row.
        left = True
        while left:
            moved = left = False
            for m in members:
                lo_o = done[m.index]
                hi_o = target = min(want[m.index], rows_of[m.index])
                if hi_o <= lo_o:
                    continue
                if interleave:
                    q = quota[m.index]
                    if hi_o > lo_o + q:
                        hi_o = lo_o + q
                    for _name, _b, rm, p, _padded, st, pt, k, _inr in operands[m.index]:
                        if p is None or done[p] >= rm.in_rows:
                            continue
                        if st:   # the largest hi with RowMap.need(lo_o, hi)[1] <= done[p]
                            top = (done[p] + pt - k) // st + 1
                            if top < hi_o:
                                hi_o = top
                        else:
                            while hi_o > lo_o and rm.need(lo_o, hi_o)[1] > done[p]:
                                hi_o -= 1
                    if hi_o < target:
                        left = True   # another pass makes the rest
                    if hi_o <= lo_o:
                        continue
                moved = True
                _run(m, lo_o, hi_o)
            left = left and moved
    for m in members:
        if done[m.index] != rows_of[m.index]:
            raise NotTileable(f"{m.name}: {done[m.index]} of {rows_of[m.index]} rows produced")
    for b in rings:
        rings[b] = max(1, span[b])
    for b in streamed:
        streamed[b] = max(1, span[b])
    staged: set[BufferId] = set()
    for b, reads in gathered.items():
        # Staging (each stripe loads every row it reads) when it holds fewer rows than the ring.
        n_rows, loads = staged_loads(reads)
        if not stage or n_rows >= streamed[b]:
            continue
        staged.add(b)
        streamed[b] = n_rows
        load_bytes += (sum(hi - lo for moves in loads.values() for lo, hi in moves) - ring_loads[b]) * row_bytes_of(b)
        if record:
            name = graph.buffers[b].tensors[0]
            for at, st_at in enumerate(stripes):
                moves_at = tuple(RowTransfer(name, lo, hi, "", "load") for lo, hi in loads.get(at, ()))
                kept = tuple(x for x in st_at.transfers if x.tensor != name)
                if moves_at or len(kept) != len(st_at.transfers):
                    stripes[at] = replace(st_at, transfers=(*moves_at, *kept))
    for b, at in opened.items():
        if at >= 0:
            lives[b].append((at, count))
    shared = share_rings(rings, lives, row_bytes_of) if share else {}
    return Program(ops=ops, stripe_rows=stripe_rows, end=end, stripes=tuple(stripes), rings=rings,
                   streamed=streamed, whole_in=tuple(whole_in), whole_out=tuple(whole_out),
                   load_bytes=load_bytes, store_bytes=store_bytes, count=count, staged=frozenset(staged),
                   aliases=aliases, shared=shared)


def staged_loads(reads: list[tuple[int, tuple[tuple[int, int], ...]]]) -> tuple[int, dict[int, list[tuple[int, int]]]]:
    """Staging of a loaded buffer that a dilated member reads sparsely (mode ``staged``):
    before every stripe reading it, the rows that stripe reads are loaded, in ascending runs,
    into slots ``0, 1, ...`` of the staging buffer (nothing is kept from one stripe to the
    next).  A ring (row ``r`` in slot ``r mod rows``) must hold the rows between the taps too,
    or rows whose slots collide (rows 24 apart cannot share a ring of 2, 3 or 4 rows);
    staging holds only the taps' rows, at the price of loading a row once per stripe reading
    it.  ``reads``: per stripe (its index in the walk) the runs of rows it reads.  Returns
    the staging rows (the most one stripe loads) and per stripe index its loads."""
    by_stripe: dict[int, set[int]] = {}
    for at, runs in reads:
        by_stripe.setdefault(at, set()).update(r for lo, hi in runs for r in range(lo, hi))
    loads: dict[int, list[tuple[int, int]]] = {}
    for at, rs in by_stripe.items():
        moves = loads.setdefault(at, [])
        for r in sorted(rs):
            if moves and moves[-1][1] == r:
                moves[-1] = (moves[-1][0], r + 1)
            else:
                moves.append((r, r + 1))
    return max([1, *(len(rs) for rs in by_stripe.values())]), {at: m for at, m in loads.items() if m}


def share_rings(rings: Mapping[BufferId, int], lives: Mapping[BufferId, list[tuple[int, int]]],
                row_bytes: Callable[[BufferId], int]) -> dict[BufferId, BufferId]:
    """Rings that may share bytes: ring -> the ring whose bytes it uses.

    A ring whose rows are all consumed soon after they are made (a depthwise convolution's
    output, read by the 1x1 projection right after it) is empty between those stripes: its
    live intervals (``lives``, stripe indices, both ends included: the stripe writing into it
    while empty, the stripe after which it holds no needed row) are many and short.  Two rings
    whose intervals never meet may use the same bytes, each with its own row layout; a stripe
    reading one and writing the other makes both live at that stripe, so they never share.
    Rings live from start to end (one interval) keep their own bytes.  The groups are chosen
    greedily, largest ring first, each joining the first group none of whose members it
    meets; a group's bytes are its first (largest) member's, the host."""
    cands = sorted((b for b in rings if len(lives[b]) > 1), key=lambda b: (-rings[b] * row_bytes(b), b))
    groups: list[tuple[BufferId, list[tuple[int, int]]]] = []
    out: dict[BufferId, BufferId] = {}
    for b in cands:
        mine = lives[b]
        for k, (host, taken) in enumerate(groups):
            if not _meet(mine, taken):
                out[b] = host
                groups[k] = (host, sorted(taken + mine))
                break
        else:
            groups.append((b, list(mine)))
    return out


def _meet(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> bool:
    """Whether two sorted lists of disjoint closed intervals share a point."""
    i = j = 0
    while i < len(a) and j < len(b):
        (a0, a1), (b0, b1) = a[i], b[j]
        if a0 <= b1 and b0 <= a1:
            return True
        if a1 < b1:
            i += 1
        else:
            j += 1
    return False


__all__ = ["NotTileable", "Program", "share_rings", "staged_loads", "stripe_program"]
