"""A cascade's footprint for every choice of boundary modes from one stripe walk.

The partition search asks, for one run of steps ``[i..j]`` and one band height, the footprint
with many different sets of boundary tensors off-chip (``dram``).  Walking the stripes
(``stripe_program``) is the expensive part (milliseconds per walk), and the walk's schedule
(which rows every member produces in every band) does not depend on those modes: a buffer's
row window depends only on its own producer and readers.  So one walk with *every* buffer
held in rows gives each buffer's window, and the footprint for any ``dram`` set is a sum over
the buffers with the mode ``stripe_program`` would give them (whole: all its bytes; ring or
streamed: its window times its row bytes).  ``tests/test_tiling_partition.py`` checks the
sum against a walk with the real modes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from stowage.ir.columns import mixed_buffer
from stowage.ir.graph import BufferId, Graph, OpIndex, TensorKind
from stowage.ir.tiling import buffer_row_bytes, row_units
from stowage.solvers.alloc.interval import align_up
from stowage.solvers.tiling.program import NotTileable, stripe_program


@dataclass(frozen=True)
class Windows:
    """One walk of steps ``ops`` in bands of ``stripe_rows`` rows (of a ``pace_rows``-row
    tensor, 0: the end tensor) with every buffer held in rows: ``held`` maps each activation,
    graph input or output the steps touch (weights aside) to ``(rows of its window, row
    bytes)``.  ``read_whole``: buffers a step reads whole (a broadcast operand), which can
    never be streamed.  ``reads``/``writes``: the non-weight buffers read from outside and
    written inside, in ``stripe_program``'s order."""

    ops: tuple[OpIndex, ...]
    stripe_rows: int
    pace_rows: int
    held: Mapping[BufferId, tuple[int, int]]
    read_whole: frozenset[BufferId]
    reads: tuple[BufferId, ...]
    writes: tuple[BufferId, ...]
    fixed: int  # working memory of the steps, plus their weights when resident
    #: Member stripes of the walk (``Program.count``).
    count: int = 0
    #: The footprint with nothing off-chip, and what each buffer going off-chip adds (each
    #: buffer's part is independent of the others', so the footprint of any ``dram`` set is
    #: ``base`` plus its members' deltas: ``quick``).
    base: int = 0
    delta: Mapping[BufferId, int] = field(default_factory=dict)

    def quick(self, dram: frozenset[BufferId]) -> int | None:
        """``footprint`` for the graph and boundary this walk was made for, in O(|dram|)."""
        if dram & self.read_whole:
            return None
        return self.base + sum(self.delta.get(b, 0) for b in dram)

    def footprint(self, graph: Graph, outside: Mapping[BufferId, bool], dram: frozenset[BufferId],
                  align: int) -> int | None:
        """Compute-level bytes of the cascade as one step with intermediates ``dram`` crossing
        its boundary off-chip (``stripe_program``'s modes, each part aligned), or None when a
        buffer in ``dram`` is read whole (no such program exists)."""
        total = self.fixed
        for b in self.reads:
            buf = graph.buffers[b]
            streamed_input = (buf.kind is TensorKind.INPUT and not outside.get(b, False) and not buf.is_output
                              and b not in self.read_whole)
            if streamed_input or b in dram:
                if b in self.read_whole:
                    return None
                rows, row = self.held[b]
                total += align_up(rows * row, align)
            else:
                total += align_up(buf.bytes, align)
        for b in self.writes:
            buf = graph.buffers[b]
            ring = b in dram or not outside.get(b, False)
            if ring:
                rows, row = self.held[b]
                total += align_up(rows * row, align)
            else:
                total += align_up(buf.bytes, align)
        return total


def walk_windows(graph: Graph, ops: tuple[OpIndex, ...], stripe_rows: int, pace_rows: int,
                 outside: Mapping[BufferId, bool], weights: bool, align: int,
                 spatial: set[BufferId] | None = None,
                 row_bytes: Callable[[BufferId], int] | None = None) -> Windows:
    """The one walk behind ``Windows`` (raises ``NotTileable`` as ``stripe_program`` does).
    ``spatial`` (the buffers the steps read in rows) and ``row_bytes`` may come from the
    caller's caches."""
    if spatial is None:
        spatial = set()
        for i in ops:
            units = row_units(graph, graph.operators[i])
            if units is None:
                raise NotTileable(graph.operators[i].name)
            for u in units:
                spatial.update(graph.tensor_buffer[n] for n in u.maps)
    row = row_bytes or (lambda b: buffer_row_bytes(graph, b))
    written = {b for i in ops for b in graph.op_writes(graph.operators[i])}
    reads: list[BufferId] = []
    weight_set: set[BufferId] = set()
    for b in dict.fromkeys(b for i in ops for b in graph.op_reads(graph.operators[i])):
        if graph.buffers[b].kind is TensorKind.WEIGHT:
            weight_set.add(b)
        elif b not in written:
            reads.append(b)
    # A buffer mixing row layouts (``columns.mixed_buffer``) is whole wherever it is read.
    read_whole = frozenset(b for b in reads if b not in spatial or mixed_buffer(graph, b))
    # Held in rows: every operand read in rows (streamed), and every result read outside
    # (streamed out); a result read only inside is a ring anyway (the same window, without a
    # store per stripe).
    held_set = (frozenset(b for b in reads if b not in read_whole)
                | frozenset(b for b in written if outside.get(b, False) and not mixed_buffer(graph, b)))
    p = stripe_program(graph, ops, stripe_rows, dict(outside), record=False, dram=held_set, pace_rows=pace_rows)
    held = {b: (r, row(b)) for b, r in (*p.rings.items(), *p.streamed.items())}
    # A ring held in another ring's bytes (``program.share_rings``) adds none of its own.
    writes = tuple(b for b in (*p.rings, *p.streamed, *p.whole_out) if b in written and b not in p.shared)
    fixed = sum(graph.operators[i].extra_bytes for i in ops)
    if weights:
        fixed += sum(align_up(graph.buffers[b].bytes, align) for b in weight_set)
    w = Windows(ops, stripe_rows, pace_rows, held, read_whole, tuple(reads), writes, fixed, p.count)
    base = w.footprint(graph, outside, frozenset(), align)
    assert base is not None
    delta: dict[BufferId, int] = {}
    for b in (*w.reads, *w.writes):
        if b not in read_whole and b in held:
            one = w.footprint(graph, outside, frozenset((b,)), align)
            if one is not None and one != base:
                delta[b] = one - base
    return replace(w, base=base, delta=delta)


__all__ = ["Windows", "walk_windows"]
