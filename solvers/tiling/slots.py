"""Row lifetimes of a stripe program: what a cascade holds *per instant*, and a packing of it.

A plan holds every ring at its largest window for the whole cascade (``docs/tiling.md``,
"Static rings"): row ``r`` of a ring sits in slot ``r mod ring_rows``, so a slot a ring needs
for a few stripes is reserved for all of them.  The design notes' row model sums the rows live
*at each instant* instead.  This module measures that sum for stowage's own programs, so the
two accountings can be compared on the same cascade, and packs the rows as small buffers with
lifetimes ``[made, last read]`` (stripe indices, inclusive) with the interval allocator
(``stowage.solvers.alloc.greedy``): the footprint a plan addressing rows by slot, not by ring
modulo, reaches.  ``slot_layout`` turns such a packing into the row slots a plan records
(``CascadeTensor.slots``, ``docs/tiling.md`` "Rows by slot").

When a row lives, stripe by stripe (the validator's order within a stripe: loads, then the
operator reads its operands and writes its band, then stores):
- a row is *made* by the stripe that writes it or the load that brings it;
- it is *live* through the last stripe that reads it, stores it, or rewrites it in place (a
  fused ReLU over its Conv's row, a residual Add over its operand's ring: ``Program.aliases``,
  one row of bytes for both tensors);
- a staged row (``Program.staged``) lives for its one stripe.
A row read and a row written by the same stripe are live at once (an operator reads while it
writes), so they never share bytes; a row whose last reader is stripe ``k`` and a row made at
``k + 1`` may.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stowage.ir.graph import BufferId, Graph
from stowage.ir.tiling import buffer_row_bytes, row_units
from stowage.solvers.alloc.greedy import allocate_offsets
from stowage.solvers.alloc.interval import Interval, peak_live_at
from stowage.solvers.tiling.program import Program


@dataclass(frozen=True)
class RowLife:
    """Row ``row`` of buffer ``buffer`` (the ring holding it: an alias's host) needs
    ``size`` bytes from stripe ``first`` to stripe ``last`` (inclusive).  ``visit``
    distinguishes the loads of a staged row (each stripe's own copy)."""

    buffer: BufferId
    row: int
    visit: int
    first: int
    last: int
    size: int


@dataclass(frozen=True)
class RowLifetimes:
    """Every row a program holds in rows (rings, streamed windows, staging), and the most
    bytes of them live at one stripe (``peak``, at stripe ``at``)."""

    rows: tuple[RowLife, ...]
    peak: int
    at: int | None


def row_lifetimes(graph: Graph, program: Program) -> RowLifetimes:
    """The lifetimes of every row ``program`` holds in rows (it must be recorded:
    ``stripe_program(..., record=True)``)."""
    if program.count and not program.stripes:
        raise ValueError("the program was not recorded (stripe_program(..., record=True))")
    held: set[BufferId] = {*program.rings, *program.streamed}
    alias: Mapping[BufferId, BufferId] = program.aliases

    def holder(name: str) -> BufferId | None:
        b = graph.tensor_buffer.get(name)
        if b is None:
            return None
        b = alias.get(b, b)
        return b if b in held else None

    span: dict[tuple[BufferId, int, int], list[int]] = {}
    visits: dict[tuple[BufferId, int], int] = {}

    def touch(b: BufferId, r: int, k: int, make: bool = False) -> None:
        if b in program.staged:
            if make:
                visits[(b, r)] = visits.get((b, r), 0) + 1
            key = (b, r, visits.get((b, r), 0))
        else:
            key = (b, r, 0)
        got = span.get(key)
        if got is None:
            span[key] = [k, k]
        else:
            got[1] = max(got[1], k)

    for k, st in enumerate(program.stripes):
        for x in st.transfers:
            b = holder(x.tensor)
            if b is not None:
                for r in range(x.lo, x.hi):
                    touch(b, r, k, make=x.direction == "load")
        for name, lo, hi in st.inputs:
            b = holder(name)
            if b is not None:
                for r in range(lo, hi):
                    touch(b, r, k)
        out = st.output or _result(graph, st.op)
        b = holder(out)
        if b is not None:
            for r in range(st.out_lo, st.out_hi):
                touch(b, r, k)
    rows = tuple(RowLife(b, r, v, f, last, buffer_row_bytes(graph, b))
                 for (b, r, v), (f, last) in sorted(span.items()))
    peak, at = peak_live_at(rows)
    return RowLifetimes(rows, peak, at)


def _result(graph: Graph, op_index: int) -> str:
    """The tensor a stripe of operator ``op_index`` writes: its result, or for the core of a
    folded QDQ group (``stowage.ir.qdq``: its float result has no buffer) the group's int8
    result, its row unit's output (as the validator and the emitter resolve it)."""
    op = graph.operators[op_index]
    out = next((o for o in op.outputs if o), "")
    if out in graph.tensor_buffer:
        return out
    host = op if op.computing or op.fused_into is None else graph.operators[op.fused_into]
    unit = next((u for u in row_units(graph, host) or () if u.op.index == op_index), None)
    return unit.output if unit is not None else out


def pack_rows(lives: RowLifetimes, alignment: int = 1, time_limit: float = 30.0) -> tuple[int, dict[int, int]]:
    """Offsets for every row of ``lives`` (index in ``lives.rows`` -> byte offset in one region)
    with the interval allocator, and the region's size: at least ``lives.peak``.  The
    allocator's move budget ends its search; ``time_limit`` is only its safety stop, generous
    so that the result does not depend on the machine's load."""
    got = pack_rows_within(lives, None, alignment=alignment, time_limit=time_limit)
    assert got is not None  # no capacity given: always packs
    return got


def pack_rows_within(lives: RowLifetimes, capacity: int | None, work: float | None = None, alignment: int = 1,
                     time_limit: float = 30.0, exact_work: float | None = None,
                     exact_wall: float | None = None) -> tuple[int, dict[int, int]] | None:
    """``pack_rows`` within a region of ``capacity`` bytes: the search stops at the first
    packing that fits, None when it found none.  ``work``: a smaller move budget (seconds of
    work, ``alloc.greedy.allocate_offsets``), deterministic, for the partition search, which
    packs many candidate cascades.  ``exact_work``: when the greedy packing misses
    ``capacity`` although the rows live at one stripe fit it, the exact row packer
    (``rowpack.exact_rows``) tries with that much CP-SAT deterministic time (``exact_wall``:
    its wall-clock safety net, ``rowpack.SAFETY_SECONDS`` when None)."""
    ivs = [Interval(i, r.first, r.last, r.size) for i, r in enumerate(lives.rows)]
    off = allocate_offsets(ivs, alignment, capacity=capacity, time_limit=time_limit, work=work)
    if off is None and capacity is not None and exact_work is not None and lives.peak <= capacity:
        from stowage.solvers.tiling.rowpack import exact_rows

        off = exact_rows(ivs, capacity, exact_work, alignment, wall=exact_wall)
    if off is None:
        return None
    top = max((off[iv.id] + iv.size for iv in ivs), default=0)
    return top, off


@dataclass(frozen=True)
class SlotLayout:
    """Where a slot-addressed cascade keeps its rows: one region of ``region`` bytes, and per
    buffer held in rows (a ring, an alias's host, a streamed buffer) the byte offset of each of
    its rows (``-1``: never held), and ``most``, the most rows of it live at one stripe."""

    region: int
    offsets: Mapping[BufferId, tuple[int, ...]]
    most: Mapping[BufferId, int]
    peak: int


def slot_layout(graph: Graph, program: Program, time_limit: float = 30.0, capacity: int | None = None,
                work: float | None = None, lives: RowLifetimes | None = None,
                exact_work: float | None = None, exact_wall: float | None = None) -> SlotLayout | None:
    """The row slots of recorded ``program`` packed by their lifetimes (``pack_rows``; with
    ``capacity``, a region of at most that many bytes), or None when it has no rows, stages a
    buffer (staging keeps its own per-stripe slots) or no packing within ``capacity`` was
    found.  ``lives``: ``row_lifetimes(graph, program)`` when the caller has it;
    ``exact_work``: the exact row packer's budget when the greedy one misses
    (``pack_rows_within``)."""
    if program.staged:
        return None
    if lives is None:
        lives = row_lifetimes(graph, program)
    if not lives.rows or (capacity is not None and lives.peak > capacity):
        return None
    packed = pack_rows_within(lives, capacity, work=work, time_limit=time_limit, exact_work=exact_work,
                              exact_wall=exact_wall)
    if packed is None:
        return None
    top, off = packed
    from stowage.ir.tiling import rows as tensor_rows

    table: dict[BufferId, list[int]] = {}
    events: dict[BufferId, list[tuple[int, int]]] = {}
    for i, life in enumerate(lives.rows):
        if life.buffer not in table:
            table[life.buffer] = [-1] * tensor_rows(graph, graph.tensors[graph.buffers[life.buffer].tensors[0]])
        table[life.buffer][life.row] = off[i]
        events.setdefault(life.buffer, []).extend(((life.first, 1), (life.last + 1, -1)))
    most: dict[BufferId, int] = {}
    for b, ev in events.items():
        cur = best = 0
        for _k, d in sorted(ev):
            cur += d
            best = max(best, cur)
        most[b] = best
    return SlotLayout(top, {b: tuple(v) for b, v in table.items()}, most, lives.peak)


__all__ = ["RowLife", "RowLifetimes", "SlotLayout", "pack_rows", "pack_rows_within", "row_lifetimes", "slot_layout"]
