"""The latency residency model (``stowage.solvers.exact.latency_residency``): for a fixed order,
CP-SAT chooses which buffer to spill and when, for time.

The toy engine of ``tests/test_timing.py``: 1 item per cycle at 100 MHz (10 ns per element),
SRAM at 64 GB/s (never the limit here), DRAM at 1 GB/s (a 16-byte copy takes 16 ns), one DMA
channel.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from spill_cases import import_model, random_graphs
from stowage.api import compile as compile_plan
from stowage.errors import StowageError
from stowage.plan.validate import validate
from stowage.solvers.budgets import resolve_capacity
from stowage.solvers.exact.latency_model import best_schedule
from stowage.solvers.exact.latency_residency import residency_for_latency
from stowage.solvers.problem import Problem
from stowage.solvers.timing import annotate, estimate, replay, step_busy_seconds
from test_timing import toy

NS = 1e-9


def _which_spill():
    """x (16 B input), W (16x16 weight, read in place from DRAM):
    relu: q = Relu(x); matmul: p = MatMul(x, W); concat: c = Concat(x, x) (32 B, a graph
    output); add: y = Add(p, q) (a graph output).  At 64 B of SRAM in file order, concat
    needs x, c (48 B) while p and q wait for add: one of them must be off-chip during concat."""
    vi = lambda t, w: helper.make_tensor_value_info(t, TensorProto.FLOAT, [1, w])  # noqa: E731
    w = numpy_helper.from_array(np.ones((16, 16), np.float32), "W")
    nodes = [helper.make_node("Relu", ["x"], ["q"], name="relu"),
             helper.make_node("MatMul", ["x", "W"], ["p"], name="matmul"),
             helper.make_node("Concat", ["x", "x"], ["c"], name="concat", axis=1),
             helper.make_node("Add", ["p", "q"], ["y"], name="add")]
    m = helper.make_model(helper.make_graph(nodes, "which", [vi("x", 16)], [vi("c", 32), vi("y", 16)], [w]),
                          opset_imports=[helper.make_opsetid("", 17)])
    return import_model(m, element_bytes=1)


def _spilled(plan) -> list[str]:
    names = {b.id: b.tensors[0] for b in plan.buffers}
    outputs = {b.id for b in plan.buffers if b.kind == "output"}
    return sorted(names[t.buffer] for t in plan.transfers if t.src == "sram" and t.buffer not in outputs)


def test_spilling_the_early_tensor_hides_its_store_under_the_long_matmul():
    """Busy times: relu 160 ns, matmul 2560 ns (256 MACs; its 256 B of weights read from DRAM
    in 256 ns overlap), concat 640 ns, add 160 ns.  Copies: 16 ns per 16 B, c's store 32 ns.

    Spill p (the greedy file-order baseline's choice, which the traffic objective cannot tell
    from spilling q: 16 B out and back either way): load x 0-16, relu 16-176, matmul
    176-2736; p's store 2736-2752 must end before concat writes c into p's bytes (64 B hold
    x, q, c), so concat runs 2752-3392; c's store 3392-3424, then p's reload 3424-3440 (into
    the bytes concat's x frees), add 3440-3600, y's store 3600-3616: 3616 ns, and CP-SAT proves
    no DMA order of that plan faster.

    Spill q (the model's choice): q's store 176-192 runs under the matmul, so concat starts at
    once: 2736-3376; c's store 3376-3408, q's reload 3408-3424, add 3424-3584, y's store
    3584-3600: 3600 ns, 16 ns faster for the same traffic."""
    g = _which_spill()
    target = toy(64)
    ref = compile_plan(g, target=target, capacity=64, solver="baseline-fileorder-greedy", tiling="off",
                       in_place=False)
    assert [s.op for s in ref.steps] == ["relu", "matmul", "concat", "add"]
    assert _spilled(ref) == ["p"]
    busy = step_busy_seconds(g, ref, target)
    assert busy is not None
    assert [round(b / NS) for b, *_ in busy] == [160, 2560, 640, 160]
    fixed = best_schedule(g, ref, target, wall=5, work=5)
    assert fixed is not None and fixed.proven
    assert fixed.timeline.makespan == pytest.approx(3616 * NS)

    got = residency_for_latency(Problem(graph=g, target=target, time_limit=5), ref, wall=5, work=5, workers=1, seed=0)
    assert got is not None
    assert _spilled(got.plan) == ["q"]
    assert got.plan.metrics.noncompulsory_bytes == ref.metrics.noncompulsory_bytes == 32
    tl = replay(g, got.plan, target, got.queues)
    assert tl is not None
    assert tl.makespan == pytest.approx(3600 * NS)
    assert [(round(s.start / NS), round(s.end / NS)) for s in tl.steps] == \
        [(16, 176), (176, 2736), (2736, 3376), (3424, 3584)]
    names = {b.id: b.tensors[0] for b in got.plan.buffers}
    copies = sorted((round(t.start / NS), round(t.end / NS), names[got.plan.transfers[t.index].buffer])
                    for t in tl.transfers)
    assert copies == [(0, 16, "x"), (176, 192, "q"), (3376, 3408, "c"), (3408, 3424, "q"), (3584, 3600, "y")]
    # The model's own makespan is on its grid (durations rounded up): never below the replay.
    assert got.model_makespan >= tl.makespan * (1 - 1e-9)
    assert got.model_makespan == pytest.approx(3600 * NS, rel=1e-3)
    assert validate(g, annotate(got.plan, tl)).ok


def test_exact_latency_with_the_residency_model_is_never_slower_on_the_hand_case():
    """The same graph through ``exact --objective latency`` with and without the residency
    model (``latency_residency``): exact's own order may avoid the spill altogether, so this
    checks only the guarantee -- with the model, never slower -- and that both plans pass the
    validator with their times (rule 9)."""
    g = _which_spill()
    target = toy(64)
    plans = {}
    for on in (False, True):
        plans[on] = compile_plan(g, target=target, capacity=64, solver="exact", objective="latency", tiling="off",
                                 in_place=False, time_limit=5, params={"latency_residency": on})
        assert validate(g, plans[on]).ok
    assert plans[True].metrics.estimated_seconds <= plans[False].metrics.estimated_seconds * (1 + 1e-12)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_graphs(max_ops=8), st.sampled_from(["M_R", "M_H"]), st.sampled_from([1, 2]),
       st.sampled_from(["heuristic", "baseline-fileorder-greedy"]))
def test_residency_plans_are_valid_and_no_slower_than_the_model_says(g, budget, channels, solver):
    """Random small graphs: the model's plan, replayed with the model's DMA queues, passes the
    validator with its times and is no slower than the model's makespan (the gates only
    delay); and ``exact --objective latency`` is never slower than exact's traffic plan."""
    target = toy(None, channels)
    try:
        ref = compile_plan(g, target=target, capacity=budget, solver=solver, tiling="off", in_place=False)
    except StowageError:
        return                                  # no plan at that budget (e.g. no spill level needed)
    hier = target.with_capacity(resolve_capacity(budget, g, target, False))
    got = residency_for_latency(Problem(graph=g, target=hier, time_limit=2), ref, wall=2, work=1, workers=1, seed=0)
    assert got is not None
    tl = replay(g, got.plan, hier, got.queues)
    assert tl is not None
    assert validate(g, annotate(got.plan, tl)).ok
    assert tl.makespan <= got.model_makespan * (1 + 1e-9)
    traffic = compile_plan(g, target=target, capacity=budget, solver="exact", tiling="off", in_place=False,
                           time_limit=2)
    latency = compile_plan(g, target=target, capacity=budget, solver="exact", objective="latency", tiling="off",
                           in_place=False, time_limit=2)
    assert validate(g, latency).ok
    t_traffic = estimate(g, traffic, hier)
    assert t_traffic is not None and latency.metrics.estimated_seconds is not None
    assert latency.metrics.estimated_seconds <= t_traffic.makespan * (1 + 1e-12)
