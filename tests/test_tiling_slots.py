"""Rows per instant (``stowage.solvers.tiling.slots``): hand-checked lifetimes and peaks of
small conv chains against their static rings, and properties of the lifetimes and of their
packing over random chains, bands and boundary modes."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from stowage.solvers.alloc.interval import Interval, peak_live
from stowage.solvers.tiling.partition import Partitioner
from stowage.solvers.tiling.slots import pack_rows, row_lifetimes
from tests.test_tiling_partition import chain

ROOT = Path(__file__).resolve().parents[1]


def test_one_row_bands_of_a_stride_2_end_hold_224_bytes_per_instant_not_240() -> None:
    """x (4 x 16 x 8) -> 3x3 s1 -> t0 (4 x 16 x 8) -> 3x3 s2 -> y (4 x 8 x 4); rows of x and
    t0 are 32 B, of y 16 B.  In 1-row bands of y the rings are x 4 rows, t0 3, y 1: 240 B.
    Per instant, the stripe making t0's rows 2..3 (stripe 2) holds x rows 1..4 (128 B) and t0
    rows 1..3 (96 B) while y's staging row is empty (its row 0 was stored by stripe 1, row 1
    comes at stripe 3): 224 B, which the packing reaches."""
    g = chain([4, 4, 4], [1, 2])
    part = Partitioner(g, False, 1)
    p = part.program(0, 1, 1, record=True)
    assert p.footprint(g, False) == 240
    lives = row_lifetimes(g, p)
    assert (lives.peak, lives.at) == (224, 2)
    x, t0, y = (g.tensor_buffer[n] for n in ("x", "t0", "y"))
    span = {(g.buffers[r.buffer].tensors[0], r.row): (r.first, r.last) for r in lives.rows}
    # x row 1: loaded by stripe 0, read by conv0's stripes 0 and 2 (rows 0..3 and 1..5).
    assert span[("x", 1)] == (0, 2)
    # t0 row 1: made by stripe 0, read by conv1's stripes 1 (rows 0..2) and 3 (rows 1..4).
    assert span[("t0", 1)] == (0, 3)
    # y row r: made and stored by stripe 2r + 1.
    assert [span[("y", r)] for r in range(8)] == [(2 * r + 1, 2 * r + 1) for r in range(8)]
    assert {r.buffer for r in lives.rows} == {x, t0, y}
    assert pack_rows(lives)[0] == 224


def test_bands_paced_by_t0_hold_192_bytes_per_instant_not_208() -> None:
    """The same chain paced by t0's 16 rows: rings x 3, t0 3, y 1 (208 B).  Per instant, the
    stripe making t0 row 3 (stripe 4) holds x rows 2..4 and t0 rows 1..3, no row of y:
    192 B."""
    g = chain([4, 4, 4], [1, 2])
    part = Partitioner(g, False, 1)
    p = part.program(0, 1, 1, record=True, pace=16)
    assert p.footprint(g, False) == 208
    lives = row_lifetimes(g, p)
    assert (lives.peak, lives.at) == (192, 4)
    assert pack_rows(lives)[0] == 192


@pytest.mark.slow
def test_mobilenet_v2_blocks_3_and_4_hold_51072_bytes_per_instant_against_61376_in_rings() -> None:
    """Blocks 3 and 4 of the suite's MobileNetV2 (8-bit) as one cascade, block 2's result
    loaded and block 4's stored, paced by the 56-row layers: its rings take 61,376 B
    (docs/tiling.md, "Smaller rings"), its rows live at one instant at most 51,072 B, and the
    interval packing reaches that.  Block 3's Add writes its rows over its projection's
    (``Program.aliases``): those rows stay live until block 4's expansion has read the Add's
    row, and the Add's own buffer holds none."""
    from stowage.api import load_model

    g = load_model(str(ROOT / "models" / "suite" / "mobilenet_v2.onnx"), 1, None, True)
    part = Partitioner(g, False, 1, work=None)

    def out(p: int) -> int:
        return g.tensor_buffer[g.operators[part.order[p]].outputs[0]]

    assert part.ladder(6, 12)[0] == (1, 56)
    p = part.program(6, 12, 1, record=True, dram=frozenset({out(5), out(12)}), pace=56)
    assert p.footprint(g, False) == 61376
    add, proj = out(9), out(8)
    assert p.aliases == {add: proj}
    lives = row_lifetimes(g, p)
    assert lives.peak == 51072
    assert pack_rows(lives)[0] == 51072
    assert add not in {r.buffer for r in lives.rows}
    add_name = g.operators[part.order[9]].outputs[0]
    last_read = {}
    for k, st in enumerate(p.stripes):
        for name, lo, hi in st.inputs:
            if name == add_name:
                for r in range(lo, hi):
                    last_read[r] = k
    span = {r.row: r.last for r in lives.rows if r.buffer == proj}
    assert sorted(last_read) == sorted(span) == list(range(56))
    assert all(span[r] == last_read[r] for r in span)


@pytest.mark.slow
@pytest.mark.parametrize("channels,strides,residual", [
    ([4, 8, 2, 8, 4], [1, 1, 1, 1], False),
    ([3, 6, 6, 5], [2, 1, 2], False),
    ([4, 4, 4], [1, 1], True),
    ([2, 8, 8, 8], [1, 2, 1], False),
])
def test_every_row_a_stripe_touches_is_live_then_and_packing_never_overlaps(
        channels: list[int], strides: list[int], residual: bool) -> None:
    """For every band on the ladder and every set of intermediates off-chip: each row a
    stripe loads, reads, writes or stores is live at that stripe; the per-instant peak is at
    most the static rings; packed rows whose lifetimes meet never share bytes, and the
    region is at least the peak."""
    g = chain(channels, strides, h=16, w=4, residual=residual)
    part = Partitioner(g, False, 1)
    n = part.n
    inner = [b for b in set().union(*part.touch) if part._movable(b)]
    for i, j in itertools.combinations_with_replacement(range(n), 2):
        if not all(part.tileable[i:j + 1]):
            continue
        touched = set().union(*part.touch[i:j + 1])
        for h, pace in part.ladder(i, j)[:3]:
            for dram in ({*()}, {b for b in inner if b in touched}):
                p = part.program(i, j, h, record=True, dram=frozenset(dram), pace=pace)
                lives = row_lifetimes(g, p)
                held = {*p.rings, *p.streamed}
                span = {(r.buffer, r.row): (r.first, r.last) for r in lives.rows}
                for k, st in enumerate(p.stripes):
                    used = [(x.tensor, x.lo, x.hi) for x in st.transfers] + list(st.inputs)
                    used.append((st.output or g.operators[st.op].outputs[0], st.out_lo, st.out_hi))
                    for name, lo, hi in used:
                        b = g.tensor_buffer[name]
                        b = p.aliases.get(b, b)
                        if b not in held:
                            continue
                        for r in range(lo, hi):
                            first, last = span[(b, r)]
                            assert first <= k <= last, (name, r, k)
                assert lives.peak <= p.ring_bytes(g)
                assert lives.peak == peak_live([Interval(0, r.first, r.last, r.size) for r in lives.rows])
                top, off = pack_rows(lives)
                assert top >= lives.peak
                rows = lives.rows
                for a, b2 in itertools.combinations(range(len(rows)), 2):
                    ra, rb = rows[a], rows[b2]
                    if ra.first <= rb.last and rb.first <= ra.last:
                        assert off[a] + ra.size <= off[b2] or off[b2] + rb.size <= off[a]
