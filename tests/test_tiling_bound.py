"""The lower bound valid over tiled plans (``stowage.solvers.tiling.bound``): hand-checked on a
conv chain, and never above the traffic of a plan the planners find."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stowage.api import compile as compile_plan
from stowage.errors import CapacityError
from stowage.ir.onnx_import import import_model
from stowage.solvers.tiling.bound import tiled_lower_bound
from tests.test_tiling import conv_chain


def _chain():
    # x 1x4x16x8 -> conv s1 -> t0 1x4x16x8 (512 B, 32 B a row) -> conv s2 -> t1 1x4x8x4
    # (128 B, 16 B a row) -> conv s1 -> y; 3x3 kernels, pads 1, 1-byte elements.
    return import_model(conv_chain((1, 2, 1)), element_bytes=1)


def test_hand_checked_bound_on_a_conv_chain() -> None:
    """Least footprints (activations only): conv0 3 rows of x + 1 row of t0 = 96 + 32 = 128;
    conv1 3 rows of t0 + 1 row of t1 = 96 + 16 = 112; conv2 3 rows of t1 + 1 row of y
    (16 B) = 64.  Every step is an articulation step, so the cascades cut the chain into runs
    (``stowage.solvers.tiling.runs``), each holding every ring at once:
    - one run: x 96 + t0 96 + t1 48 + y 16 = 256: nothing moves from 256 B up;
    - conv0..conv1, then conv2: 96 + 96 + 16 = 208 with t1 crossing (conv2 reads its 8 rows:
      2 x 128 B), 320 with t1 whole: 256 B from 208 to 255;
    - conv0, then conv1..conv2: t0 whole needs 96 + 512 beside conv0, so it crosses
      (conv1 reads its 16 rows: 2 x 512 B), and conv1..conv2 needs 96 + 48 + 16 = 160;
    - each step alone, both crossing: 1,280 B, down to conv0's 128.
    The per-buffer argument alone (``forced``) proves t0 off-chip only below 192 and t1 below
    144 (its one-step rings: 96 + 128 - 32 and 48 + 112 - 16)."""
    g = _chain()
    t0, t1 = g.tensor_buffer["t0"], g.tensor_buffer["t1"]
    assert tiled_lower_bound(g, 256, False).bytes == 0
    b = tiled_lower_bound(g, 255, False)
    assert (b.bytes, b.forced, b.runs, b.crossing) == (256, (), 256, (t1,))
    assert tiled_lower_bound(g, 208, False).bytes == 256
    b = tiled_lower_bound(g, 207, False)
    assert (b.bytes, b.forced, b.crossing) == (1024, (), (t0,))
    assert tiled_lower_bound(g, 192, False).forced == ()
    assert tiled_lower_bound(g, 191, False).forced == (t0,)
    assert tiled_lower_bound(g, 160, False).bytes == 1024
    assert tiled_lower_bound(g, 159, False).bytes == 1024 + 256
    assert tiled_lower_bound(g, 143, False).forced == (t0, t1)


def test_weights_in_the_compute_level_count_whole() -> None:
    # Each 4x4x3x3 weight is 144 B: conv0's least footprint becomes 272, conv1's 256.  A ring
    # of t0 puts conv0 and conv1 in one cascade holding both weights: 96 (ring) + 288 + the
    # larger remainder (conv0: 272 - 144 - 32 = 96) = 480; whole, t0 needs 512 + 240 = 752.
    g = _chain()
    assert g.tensor_buffer["t0"] not in tiled_lower_bound(g, 480, True).forced
    assert g.tensor_buffer["t0"] in tiled_lower_bound(g, 479, True).forced


def test_a_stride_2_pointwise_reader_reads_half_the_rows() -> None:
    """A 1x1 stride-2 conv reads every other row: leaving the chip costs 2 x the rows read."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w0 = numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w0")
    w1 = numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "w1")
    nodes = [helper.make_node("Conv", ["x", "w0"], ["t"], name="c0", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Conv", ["t", "w1"], ["y"], name="c1", strides=[2, 2], kernel_shape=[1, 1])]
    graph = helper.make_graph(nodes, "p", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w0, w1])
    g = import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), element_bytes=1)
    # One cascade of c0 and c1 holds 3 rows of x, 1 of t and 1 of y (16 B): 96 + 32 + 16 =
    # 144; run apart, t whole needs 512 + 96 beside c0: it crosses below 144.
    assert tiled_lower_bound(g, 144, False).bytes == 0
    # c1 reads rows 0, 2, ..., 14 of t: 8 rows x 32 B.
    assert tiled_lower_bound(g, 143, False).bytes == 2 * 8 * 32


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strides=st.lists(st.sampled_from([1, 2]), min_size=2, max_size=4), h=st.sampled_from([8, 12, 16]),
       frac=st.floats(0.05, 1.2), weights=st.booleans())
def test_bound_never_above_a_plan(strides: list[int], h: int, frac: float, weights: bool) -> None:
    """Over random conv chains and capacities from far below M_R to above it: every plan the
    default planner returns (tiled or whole) moves at least the bound, and the plan's own
    reported bound never exceeds its traffic."""
    g = import_model(conv_chain(tuple(strides), h=h), element_bytes=1)
    total = sum(b.bytes for b in g.buffers)
    cap = max(64, int(frac * total))
    try:
        plan = compile_plan(g, "ethos-u55-256", capacity=cap, weights_in_sram=weights, time_limit=5)
    except CapacityError:
        return
    bound = tiled_lower_bound(g, cap, weights).bytes
    assert bound <= plan.metrics.noncompulsory_bytes
    assert plan.solver.lower_bound is None or plan.solver.lower_bound <= plan.metrics.noncompulsory_bytes


@pytest.mark.parametrize("cap", [180, 150, 130])
def test_bound_below_the_tiled_plans_of_the_chain(cap: int) -> None:
    g = _chain()
    try:
        plan = compile_plan(g, "ethos-u55-256", capacity=cap, time_limit=5)
    except CapacityError:
        pytest.skip(f"no tiled plan at {cap} B")
    assert tiled_lower_bound(g, cap, False).bytes <= plan.metrics.noncompulsory_bytes


def _resblock(c: int = 8, h: int = 16):
    """x (1x8x16x16, 2 KiB at 8-bit) -> 3x3 conv -> 3x3 conv -> Add(x, .): the skip x is live
    across the second conv."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = [numpy_helper.from_array(rng.standard_normal((c, c, 3, 3)).astype(np.float32), f"w{i}") for i in range(2)]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["t0"], name="c0", pads=[1] * 4, kernel_shape=[3, 3]),
             helper.make_node("Conv", ["t0", "w1"], ["t1"], name="c1", pads=[1] * 4, kernel_shape=[3, 3]),
             helper.make_node("Add", ["x", "t1"], ["y"], name="add")]
    gr = helper.make_graph(nodes, "res", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, h])],
                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], w)
    return import_model(helper.make_model(gr, opset_imports=[helper.make_opsetid("", 17)]), element_bytes=1)


def test_a_whole_tensor_proof_is_not_reported_as_a_proof_over_tilings() -> None:
    """With weights in SRAM at M_R the whole-tensor optimum spills the 2 KiB skip once
    (2,048 B, proven by ``exact``), but a cascade keeps it as a ring and moves nothing: with
    ``--tiling auto`` the whole-tensor bound must not be reported as the bound."""
    from stowage.api import _whole_bound_over_tilings
    from stowage.solvers.budgets import target_budgets
    from stowage.solvers.problem import Problem
    from stowage.solvers.registry import solve
    from stowage.targets.hierarchy import load_target

    g = _resblock()
    t = load_target("ethos-u55-256")
    cap = target_budgets(g, t, True).m_r
    problem = Problem(g, t.with_capacity(cap), True, time_limit=3)
    whole = solve(problem, "exact")
    assert (whole.metrics.noncompulsory_bytes, whole.solver.lower_bound, whole.solver.status) == (2048, 2048, "optimal")
    relabelled = _whole_bound_over_tilings(problem, whole)
    assert relabelled.solver.lower_bound == tiled_lower_bound(g, cap, True).bytes == 0
    assert relabelled.solver.status == "feasible" and relabelled.solver.whole_tensor_bound == 2048
    tiled = compile_plan(g, "ethos-u55-256", capacity=cap, weights_in_sram=True, time_limit=3)
    assert tiled.cascades and tiled.metrics.noncompulsory_bytes == 0 and tiled.solver.status == "optimal"
    off = compile_plan(g, "ethos-u55-256", capacity=cap, weights_in_sram=True, time_limit=3, tiling="off")
    assert off.solver.lower_bound == 2048 and off.solver.whole_tensor_bound is None


def test_graphs_nothing_can_tile_keep_their_whole_tensor_bounds() -> None:
    from stowage.api import _whole_bound_over_tilings
    from stowage.solvers.problem import Problem
    from stowage.solvers.registry import solve
    from stowage.solvers.tiling.bound import can_tile
    from stowage.targets.hierarchy import load_target
    from tests.spill_cases import fanout_graph

    g = fanout_graph(16)  # MatMuls over [1, w] tensors: no rows
    assert not can_tile(g)
    t = load_target("ethos-u55-256")
    problem = Problem(g, t.with_capacity(48), False, time_limit=2)
    plan = solve(problem, "exact")
    assert plan.solver.lower_bound == 16  # one 16 B tensor must go off-chip, proven
    assert _whole_bound_over_tilings(problem, plan) is plan
    via_api = compile_plan(g, "ethos-u55-256", capacity=48, solver="exact", time_limit=2, in_place=False)
    assert via_api.solver.lower_bound == 16 and via_api.solver.whole_tensor_bound is None


def test_steps_between_a_producer_and_its_reader_join_its_cascade() -> None:
    """x -> c0 -> t0 -> c1 -> t1 -> c2 -> t2 -> Add(t0, t2): c2 runs between t0's producer and
    its last reader in every order, and every step is an articulation step.  With weights
    (144 B each, every tensor 512 B, 32 B a row), one cascade of all four steps holds: 3 rows
    of x (96), 3 rows of t0 (c1's window, 96), 3 of t1 (96), the three weights (432), and the
    Add's result y, which may be written over t0's or t2's rows (an in-place Add), so y, t0
    and t2 count once, at the largest (96): 96 + 96 + 96 + 432 = 720.  Without it, t0 whole
    beside c0 needs 512 + 96 + 144: t0 crosses, c1 and the Add read all of it, 2 x 512 B.
    The per-buffer argument alone proves it only below 656 (the steps' rings one at a time)."""
    g = _skip()
    t0 = g.tensor_buffer["t0"]
    assert tiled_lower_bound(g, 720, True).bytes == 0
    b = tiled_lower_bound(g, 719, True)
    assert (b.bytes, b.forced, b.crossing) == (1024, (), (t0,))
    assert tiled_lower_bound(g, 656, True).forced == ()
    assert tiled_lower_bound(g, 655, True).forced == (t0,)
    # Activations only: 96 + 96 + 96 = 288 (the per-buffer argument: 224).
    assert tiled_lower_bound(g, 288, False).bytes == 0
    assert tiled_lower_bound(g, 287, False).bytes == 1024
    assert tiled_lower_bound(g, 224, False).forced == ()


def _skip(h: int = 16, stride: int = 1):
    """x -> c0 -> t0 -> c1 -> t1 -> c2 -> t2 -> Add(t0, t2) -> y, 3x3 convs, 4 channels; ``stride``
    on c0."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    w = [numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), f"w{i}") for i in range(3)]
    conv = [helper.make_node("Conv", [a, f"w{i}"], [o], name=f"c{i}", pads=[1] * 4, kernel_shape=[3, 3],
                             strides=[stride if i == 0 else 1] * 2)
            for i, (a, o) in enumerate([("x", "t0"), ("t0", "t1"), ("t1", "t2")])]
    nodes = [*conv, helper.make_node("Add", ["t0", "t2"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "skip", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, h, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], w)
    return import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), element_bytes=1)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.sampled_from([8, 16]), stride=st.sampled_from([1, 2]), frac=st.floats(0.05, 1.0),
       weights=st.booleans(), in_place=st.booleans())
def test_bound_never_above_a_plan_with_a_skip(h: int, stride: int, frac: float, weights: bool,
                                               in_place: bool) -> None:
    g = _skip(h, stride)
    if in_place:
        from stowage.ir.inplace import fuse_in_place

        g = fuse_in_place(g)
    cap = max(64, int(frac * sum(b.bytes for b in g.buffers)))
    try:
        plan = compile_plan(g, "ethos-u55-256", capacity=cap, weights_in_sram=weights, time_limit=5)
    except CapacityError:
        return
    assert tiled_lower_bound(g, cap, weights).bytes <= plan.metrics.noncompulsory_bytes
    assert plan.solver.lower_bound is None or plan.solver.lower_bound <= plan.metrics.noncompulsory_bytes
