"""The choice of cascades (``stowage.solvers.tiling.partition``): hand-checked partitions of
small conv chains, the one-walk footprint table against real stripe programs, determinism
under a work budget, and traffic monotone in capacity where the DP is exact."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from stowage.api import compile as compile_plan
from stowage.ir.graph import Graph, TensorKind
from stowage.ir.inplace import fuse_in_place
from stowage.ir.onnx_import import import_model
from stowage.ir.tiling import buffer_row_bytes
from stowage.plan.validate import validate
from stowage.solvers.alloc.interval import align_up
from stowage.solvers.tiling import partition
from stowage.solvers.tiling.partition import OutOfWork, Partitioner
from stowage.solvers.tiling.program import NotTileable, stripe_program

ROOT = Path(__file__).resolve().parents[1]


def chain(channels: list[int], strides: list[int], h: int = 16, w: int = 8, residual: bool = False) -> Graph:
    """x (1 x channels[0] x h x w, one byte per element) -> 3x3 convs (pads 1) with the given
    output channels and strides -> y; ``residual``: an Add of the first conv's result to the
    last one's (both must then have the same shape)."""
    rng = np.random.default_rng(0)
    nodes, inits, cur = [], [], "x"
    for i, s in enumerate(strides):
        inits.append(numpy_helper.from_array(
            rng.standard_normal((channels[i + 1], channels[i], 3, 3)).astype(np.float32), f"w{i}"))
        out = f"t{i}" if i < len(strides) - 1 or residual else "y"
        nodes.append(helper.make_node("Conv", [cur, f"w{i}"], [out], name=f"conv{i}", pads=[1, 1, 1, 1],
                                      strides=[s, s], kernel_shape=[3, 3]))
        cur = out
    if residual:
        nodes.append(helper.make_node("Add", [cur, "t0"], ["y"], name="add"))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                             [1, channels[0], h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return fuse_in_place(import_model(model, element_bytes=1))


def names(g: Graph, bufs: frozenset[int]) -> list[str]:
    return sorted(g.buffers[b].tensors[0] for b in bufs)


def test_bands_paced_by_the_tallest_tensor_hold_three_rows_before_a_stride_2_conv() -> None:
    """x (4 x 16 x 8) -> 3x3 s1 -> t0 (4 x 16 x 8) -> 3x3 s2 -> y (4 x 8 x 4).  Rows: x and t0
    32 B, y 16 B.  Banded by y's rows, one y row needs two new t0 rows: x holds 4 rows, t0 3,
    y 1: 128 + 96 + 16 = 240 B.  Paced by t0's 16 rows, every band makes one t0 row: x holds
    3, t0 3 (the stride-2 reader's window), y 1: 96 + 96 + 16 = 208 B."""
    g = chain([4, 4, 4], [1, 2])
    part = Partitioner(g, False, 1)
    assert part.ladder(0, 1)[:2] == [(1, 16), (1, 0)]
    x, t0, y = (g.tensor_buffer[n] for n in ("x", "t0", "y"))
    assert part.windows(0, 1, 1, 16).held == {x: (3, 32), t0: (3, 32), y: (1, 16)}
    assert part.windows(0, 1, 1, 0).held == {x: (4, 32), t0: (3, 32), y: (1, 16)}
    assert part.own(0, 1, 1, pace=16) == 208
    assert part.own(0, 1, 1) == 240
    # The finest band is what the smallest-peak partition uses.
    peak, segs = part.min_peak()
    assert peak == 208 and [(s.ops, s.stripe_rows, s.pace_rows) for s in segs] == [((0, 1), 1, 16)]


def test_least_traffic_cuts_through_the_narrowest_tensor() -> None:
    """4 -> 8 -> 2 -> 8 -> 4 channels, 16 x 8, 3x3 s1 convs.  The four as one cascade in 1-row
    bands need 544 B (its least zero-traffic capacity).  Below it, the cut goes through t1 (2
    channels: 256 B), stored by the first half and loaded by the second: 512 B, not through an
    8-channel tensor (2,048 B).  The halves need 304 B (x 3 rows x 32 + t0 3 x 64 + t1's
    staging row 16) and 272 B (t1 3 x 16 + t2 3 x 64 + y 1 x 32)."""
    from stowage.solvers.tiling.slotfit import least_traffic_packed

    g = chain([4, 8, 2, 8, 4], [1, 1, 1, 1])
    slot = Partitioner(g, False, 1)
    part = Partitioner(g, False, 1)
    t1 = g.tensor_buffer["t1"]
    assert part.own(0, 1, 1, frozenset({t1})) == 304
    assert part.own(2, 3, 1, frozenset({t1})) == 272
    zero, _ = part.min_peak()
    assert zero == 544
    assert part.fewest_stripes(544) is not None and part.fewest_stripes(543) is None
    for cap in (543, 304):
        segs = part.least_traffic(cap)
        assert segs is not None
        assert [s.ops for s in segs] == [(0, 1), (2, 3)]
        assert [names(g, s.dram) for s in segs] == [["t1"], ["t1"]]
        assert [s.traffic for s in segs] == [256, 256]
        assert all(s.peak <= cap for s in segs)
    # At 543 B the second half fits in 2-row bands (the tallest that fits is kept).
    assert [s.stripe_rows for s in part.least_traffic(543) or []] == [2, 2]
    # Below the first half's 304 B a second, dearer cut is needed.
    tighter = part.least_traffic(303)
    assert tighter is not None and sum(s.traffic for s in tighter) > 512
    # With rows by slot, as the planner searches (``slotfit.least_traffic_packed``), the four
    # fit as one cascade at 543 B: its ring bound, within ``partition.BOUND_SLACK`` of the
    # capacity, no longer prunes it, and its rows pack.
    by_slot = least_traffic_packed(slot, 543)
    assert by_slot is not None and [(s.ops, s.slotted, s.traffic) for s in by_slot] == [((0, 1, 2, 3), True, 0)]


def test_compile_below_the_zero_traffic_capacity_moves_the_narrow_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same chain compiled at 543 B (every size above is a multiple of the target's 4-byte
    alignment): with rings only the validator accepts the plan, which moves exactly t1's rows
    off-chip and back (512 B) besides the compulsory input and output rows (512 B each).  With
    rows by slot (the default) the four run as one cascade and move nothing."""
    import stowage.solvers.tiling.partition as partition

    g = chain([4, 8, 2, 8, 4], [1, 1, 1, 1])
    plan = compile_plan(g, target="mcu-cortex-m7", capacity=543, time_limit=60)
    assert validate(g, plan).ok and plan.solver.stopped_by is None
    assert [c.slotted for c in plan.cascades] == [True] and plan.metrics.noncompulsory_bytes == 0
    monkeypatch.setattr(partition, "SLOT_ROWS", False)
    plan = compile_plan(g, target="mcu-cortex-m7", capacity=543, time_limit=5)
    v = validate(g, plan)
    assert v.ok, v.summary()
    assert len(plan.cascades) == 2
    assert plan.metrics.noncompulsory_bytes == 512
    assert plan.metrics.compulsory_bytes == 1024


def _footprint_by_walk(g: Graph, part: Partitioner, i: int, j: int, h: int, pace: int,
                       dram: frozenset[int]) -> int | None:
    """The footprint of the real stripe program with these modes (each part aligned)."""
    try:
        p = stripe_program(g, tuple(part.order[i:j + 1]), h, part.outside(i, j), record=False, dram=dram,
                           pace_rows=pace)
    except NotTileable:
        return None
    parts = [g.buffers[b].bytes for b in (*p.whole_in, *p.whole_out)]
    parts += [r * buffer_row_bytes(g, b) for b, r in (*p.rings.items(), *p.streamed.items())]
    return sum(align_up(x, part.align) for x in parts) + sum(g.operators[o].extra_bytes for o in p.ops)


@pytest.mark.parametrize("channels, strides, residual", [([3, 4, 4, 6, 4], [1, 2, 1, 1], False),
                                                        ([3, 4, 4, 4], [2, 1, 1], True)])
def test_one_walk_gives_the_footprint_of_every_boundary_choice(channels: list[int], strides: list[int],
                                                               residual: bool) -> None:
    """Property: for every segment, band and set of intermediates off-chip, the footprint
    summed from one walk with everything held in rows equals the real program's, and the
    lower bound used for pruning never exceeds it."""
    g = chain(channels, strides, h=20, w=6, residual=residual)
    part = Partitioner(g, False, 16)
    movable = [b.id for b in g.buffers if b.kind is TensorKind.ACTIVATION and not b.is_output]
    checked = 0
    for i in range(part.n):
        for j in range(i, part.n):
            for h, pace in part.ladder(i, j)[:4]:
                for k in range(len(movable) + 1):
                    for dram in map(frozenset, itertools.combinations(movable, k)):
                        touched = set().union(*part.touch[i:j + 1])
                        if not dram <= touched:
                            continue
                        want = _footprint_by_walk(g, part, i, j, h, pace, dram)
                        assert part.own(i, j, h, dram, pace) == want, (i, j, h, pace, names(g, dram))
                        if want is not None:
                            assert part._bound(i, j, dram) <= want
                            checked += 1
    assert checked > 50


def test_traffic_is_monotone_in_capacity_where_the_dp_is_exact() -> None:
    """On a chain at most one intermediate crosses each cut, so the DP keeps every state (no
    beam) and is exact over its partitions; a partition that fits a capacity fits every larger
    one, so the least traffic never grows with the capacity."""
    g = chain([4, 8, 2, 8, 4, 8, 4], [1, 1, 1, 1, 1, 1])
    part = Partitioner(g, False, 1, work=None)
    zero, _ = part.min_peak()
    floor, _ = part.min_peak(bystanders=False)
    traffic = []
    for cap in range(zero, 96, -8):
        segs = part.fewest_stripes(cap)
        if segs is None:
            segs = part.least_traffic(cap)
        if segs is None:
            break
        traffic.append(sum(s.traffic for s in segs))
    assert len(traffic) > 20 and traffic[0] == 0 and traffic[-1] > 0
    assert traffic == sorted(traffic)
    assert floor <= zero


def test_the_work_budget_stops_a_search() -> None:
    """Work is counted in operand rows walked: per band, one per row unit plus one per operand
    it reads in rows, so a walk of one conv step of 16 rows in 1-row bands is 2 x 16 = 32, of
    two steps 64.  A budget of 40 allows the first walk (step 0 alone) but not the second
    (steps 0 and 1: 32 + 64 > 40)."""
    g = chain([4, 8, 2, 8, 4], [1, 1, 1, 1])
    part = Partitioner(g, False, 1, work=40)
    with pytest.raises(OutOfWork):
        part.least_traffic(543)
    assert (part.walks, part.spent) == (1, 32)
    unbounded = Partitioner(g, False, 1, work=None)
    assert unbounded.least_traffic(543) is not None and unbounded.spent > 40


def test_the_same_plan_with_a_tiny_and_a_huge_time_limit_when_the_budget_ends_the_search(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A work budget, not the clock, ends the search: the same partition and traffic whatever
    the time limit, and the plan does not claim a wall-clock stop."""
    g = chain([4, 8, 2, 8, 4, 8, 4], [1, 1, 1, 1, 1, 1])
    monkeypatch.setattr(partition, "WORK_BUDGET", 4)   # the zero-traffic search needs more
    plans = []
    for limit in (1.0, 120.0):
        with caplog.at_level(logging.WARNING, logger="stowage.solvers.tiling.plan"):
            plans.append(compile_plan(g, target="mcu-cortex-m7", capacity=900, time_limit=limit))
    assert any("work budget" in r.getMessage() for r in caplog.records)
    a, b = plans
    assert validate(g, a).ok and validate(g, b).ok
    assert a.cascades == b.cascades
    assert a.metrics.noncompulsory_bytes == b.metrics.noncompulsory_bytes
    assert a.solver.stopped_by is None and b.solver.stopped_by is None


def test_a_wall_clock_stop_is_recorded() -> None:
    """With no time at all the searches stop at once; the fallback partition (smallest
    cascades) is still planned, and the plan says the clock cut the search."""
    g = chain([4, 8, 2, 8, 4, 8, 4], [1, 1, 1, 1, 1, 1])   # M_R 1,536 B; the least peak 832 B
    plan = compile_plan(g, target="mcu-cortex-m7", capacity=900, time_limit=1e-9)
    assert validate(g, plan).ok
    assert plan.solver.stopped_by == "time"


@pytest.mark.slow
def test_mobilenet_v2_partitions_below_the_zero_traffic_capacity() -> None:
    """The suite's MobileNetV2 at 8-bit, activations only, ethos-u55-256 alignment: no traffic
    at 128 KiB, and at 64 KiB only 56x56x24, 28x28x32 and 14x14x96 tensors cross through DRAM:
    263,424 B (docs/tiling.md: residual Adds over their projection's ring, rows made a share at
    a time, one-row rings sharing bytes); 388,864 B without those, 821,632 B before pacing."""
    from stowage.ir.onnx_import import load_graph

    g = fuse_in_place(load_graph(ROOT / "models" / "suite" / "mobilenet_v2.onnx", element_bytes=1))
    part = Partitioner(g, False, 16)
    part.slot_rows = False  # rings only (rows by slot: below)
    assert part.fewest_stripes(128 * 1024) is not None
    segs = part.least_traffic(64 * 1024)
    assert segs is not None
    assert sum(s.traffic for s in segs) == 263_424
    # With rows by slot (``slotfit``) blocks 5 to 7 run as one cascade (its rings 70,784 B,
    # its rows packed within 64 KiB): the 14x14x64 crossing after block 7 goes, 238,336 B.
    slot = Partitioner(g, False, 16)
    got = slot.least_traffic(64 * 1024)
    assert got is not None and sum(s.traffic for s in got) == 238_336
    assert any(s.slotted for s in got) and all(s.peak <= 64 * 1024 for s in got)
    # The stem cascade takes the tallest band that fits: 1 row of its 56-row end, 62,048 B
    # (paced by its 112-row layers it would need 53,536 B).
    assert segs[0].stripe_rows == 1 and segs[0].ops == tuple(part.order[:6]) and segs[0].peak == 62_048
    assert part.walks < partition.WORK_BUDGET


def se_block(c_in: int = 4, c: int = 8, h: int = 16) -> Graph:
    """in (4 x 16 x 16) -> conv1 3x3 -> relu (in place: x, 8 x 16 x 16, 128 B rows) -> gap ->
    fc 1x1 -> sigmoid (s, 8 x 1 x 1: one row of 8 B) -> mul (x * s: m) -> conv2 1x1 -> out, one
    byte per element: a squeeze-excitation block, x read by the reduction and again by the Mul."""
    rng = np.random.default_rng(7)

    def w(name: str, shape: tuple[int, ...]) -> TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["in", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["x"], name="relu"),
        helper.make_node("GlobalAveragePool", ["x"], ["g"], name="gap"),
        helper.make_node("Conv", ["g", "w2"], ["z"], name="fc", kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["z"], ["s"], name="sigmoid"),
        helper.make_node("Mul", ["x", "s"], ["m"], name="mul"),
        helper.make_node("Conv", ["m", "w3"], ["out"], name="conv2", kernel_shape=[1, 1]),
    ]
    inits = [w("w1", (c, c_in, 3, 3)), w("w2", (c, c, 1, 1)), w("w3", (c_in, c, 1, 1))]
    graph = helper.make_graph(nodes, "se", [helper.make_tensor_value_info("in", TensorProto.FLOAT, [1, c_in, h, h])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, c_in, h, h])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return fuse_in_place(import_model(model, element_bytes=1))


def test_below_every_stripe_the_error_names_the_stripe_not_the_se_mul() -> None:
    """Least footprints, each step alone with its intermediates off-chip: conv1 3 rows of in
    (3 x 64) + 1 row of x (128) = 320 B; gap 128 + 8; fc 8 + 8; mul 128 + s whole (8, a
    broadcast operand read whole) + 128 = 264; conv2 128 + 64.  So below 320 B the error
    names conv1 and its input rows; it used to name the Mul as a step that cannot run in
    stripes (its 1-row scale sent off-chip, which no stripe can read, left only the whole
    step: 2,048 + 8 + 2,048 B)."""
    from stowage.errors import CapacityError

    g = se_block()
    with pytest.raises(CapacityError) as err:
        compile_plan(g, target="mcu-cortex-m7", capacity=319, time_limit=5)
    msg = str(err.value)
    assert "operator 'conv1' (Conv) needs 320 bytes in one 1-row stripe" in msg
    assert "3 rows of 'in' (64 bytes each), 192 bytes" in msg
    assert "mul" not in msg and "cannot run in stripes" not in msg
    # At the floor it plans: x crosses through DRAM to the reduction's and to the Mul's
    # cascade; the Mul and conv2 run as one cascade with rows by slot, so m stays on chip (x
    # stored once, loaded twice: 3 x 2,048).  With rings only m crosses too (5 x 2,048).
    plan = compile_plan(g, target="mcu-cortex-m7", capacity=320, time_limit=60)
    assert validate(g, plan).ok and plan.solver.stopped_by is None
    assert plan.metrics.noncompulsory_bytes == 3 * 2048
    assert [(c.ops, c.slotted) for c in plan.cascades][-1] == ((5, 6), True)


def test_one_row_tensors_never_cross_a_cut_off_chip() -> None:
    """At 328 B conv1 + gap run as one cascade (in 3 x 64 + x's staging row 128 + g 8) and mul
    + conv2 as another (x 128 + s 8 + m 128 + out 64): x crosses through DRAM (stored once,
    loaded once: 2 x 2,048 B).  The reduction's one-row result g and the scale s stay on chip:
    a stripe reads a broadcast operand whole, and storing one row saves no ring."""
    g = se_block()
    part = Partitioner(g, False, 1)
    one_row = {g.tensor_buffer[n] for n in ("g", "z")}
    assert not any(part._movable(b) for b in one_row)
    segs = part.least_traffic(328)
    assert segs is not None
    assert [(s.ops, s.stripe_rows) for s in segs] == [((0, 2), 1), ((3,), 0), ((5, 6), 1)]   # op indices
    assert [names(g, s.dram) for s in segs] == [["c1"], [], ["c1"]]
    assert sum(s.traffic for s in segs) == 2 * 2048
    plan = compile_plan(g, target="mcu-cortex-m7", capacity=328, time_limit=5)
    assert validate(g, plan).ok and plan.metrics.noncompulsory_bytes == 2 * 2048
    assert not any(t.tensor in ("g", "z") and t.mode == "streamed" for c in plan.cascades for t in c.tensors)


def test_stripe_counts_are_the_walks() -> None:
    """conv1 + its in-place relu + gap in 1-row bands of the reduction's 16 input rows: three
    row units, 16 stripes each (48, not 2 steps x 16); mul + conv2: 32.  Before a walk the count
    is a lower bound: 16 bands of the end member plus one stripe per other unit (18)."""
    g = se_block()
    part = Partitioner(g, False, 1)
    seg = partition.Segment(tuple(part.order[0:2]), 1, 0)   # steps 0..1: conv1 (+ relu), gap
    assert part._stripes(seg) == 18
    c1 = g.tensor_buffer["c1"]
    assert part.cascade(0, 1, 1, frozenset({c1})) is not None
    assert part._stripes(seg) == 48 == len(part.program(0, 1, 1, record=True, dram=frozenset({c1})).stripes)
    assert part.cascade(3, 4, 1, frozenset({c1})) is not None   # steps 3..4: mul, conv2
    assert part._stripes(partition.Segment(tuple(part.order[3:5]), 1, 0)) == 32


def head_graph() -> Graph:
    """x (1 x 4 x 16 x 8, one byte per element) -> 3x3 conv0 -> a (4 ch); three 1-channel 3x3
    convs of a -> b0, b1, b2 (128 B each), read only by a Concat along W whose result a
    Transpose reads (both whole-tensor steps, last in file order: a detector's heads, as
    ddddocr's); a -> conv1 -> c (16 ch, 2,048 B) -> conv2 -> d (4 ch) -> conv3 -> y."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def conv(name: str, src: str, dst: str, c_in: int, c_out: int) -> None:
        inits.append(numpy_helper.from_array(rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32),
                                             f"w_{name}"))
        nodes.append(helper.make_node("Conv", [src, f"w_{name}"], [dst], name=name, pads=[1, 1, 1, 1],
                                      kernel_shape=[3, 3]))

    conv("conv0", "x", "a", 4, 4)
    for k in range(3):
        conv(f"head{k}", "a", f"b{k}", 4, 1)
    conv("conv1", "a", "c", 4, 16)
    conv("conv2", "c", "d", 16, 4)
    conv("conv3", "d", "y", 4, 4)
    nodes.append(helper.make_node("Concat", ["b0", "b1", "b2"], ["bc"], name="cat", axis=3))
    nodes.append(helper.make_node("Transpose", ["bc"], ["z"], name="tr", perm=[0, 1, 3, 2]))
    graph = helper.make_graph(nodes, "heads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return fuse_in_place(import_model(model, element_bytes=1))


def test_a_buffer_a_whole_tensor_step_reads_never_goes_off_chip() -> None:
    """At 800 B the heads b0..b2 must stay on chip until the Concat (a whole-tensor step cannot
    load rows), so c (2,048 B) goes through DRAM: conv0..conv1 in 1-row bands store c, conv2
    loads it and stores d (c 3 rows x 128 + d's staging row 32 + the heads 384 bystanders =
    800 B), conv3 loads d: 2,048 + 2,560 + 512 = 5,120 B.  Sending a head off-chip instead is
    cheaper (128 B) and keeps c inside a cascade, but no later step can load it: such states
    are dead ends.  Before they were excluded they filled the beam (``MAX_STATES`` cheapest
    plus the roomiest) before conv3, pushing out {d}, the one state that can finish, and the
    search found no partition (ddddocr's detector at 256 KiB after the tiling merge)."""
    g = head_graph()
    part = Partitioner(g, False, 1)
    heads = frozenset(g.tensor_buffer[f"b{k}"] for k in range(3))
    assert all(part._movable(b) and not part._sendable(b) for b in heads)
    assert part._sendable(g.tensor_buffer["c"])
    segs = part.least_traffic(800)
    assert segs is not None
    assert [[g.operators[o].name for o in s.ops] for s in segs] == [
        ["conv0", "head0", "head1", "head2", "conv1"], ["conv2"], ["conv3"], ["cat"], ["tr"]]
    assert [names(g, s.dram) for s in segs] == [["c"], ["c", "d"], ["d"], [], []]
    assert [s.traffic for s in segs] == [2048, 2560, 512, 0, 0]
    assert segs[1].peak == 800
    plan = compile_plan(g, target="mcu-cortex-m7", capacity=800, time_limit=5, params={"reorder": ()})
    v = validate(g, plan)
    assert v.ok, v.summary()
    assert plan.metrics.noncompulsory_bytes == 5120
    # The other orders (``stowage.solvers.tiling.orders``) run conv1 after the heads, so
    # conv1..conv3 are one cascade and c never crosses: 1,024 B (measured).
    default = compile_plan(g, target="mcu-cortex-m7", capacity=800, time_limit=5)
    assert validate(g, default).ok and default.metrics.noncompulsory_bytes == 1024
