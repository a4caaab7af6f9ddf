"""``exact --objective latency`` schedules the weight streams with the activations' copies
(``stowage.solvers.stream_timing``, ``latency_model.best_schedule``; ``docs/timing.md``,
"Weight streams").

The contention case of ``test_weight_streams.py``: two int8 1x1 convolutions ``x`` (1x64x16x16)
-> ``y0`` (256 channels, also a graph output) -> ``z`` (128 channels) on ethos-u55-256 (one DMA
channel).  In plan order the 131.200 us store of ``y0`` runs before conv1's two weight slices,
which wait for it: 402.080 us.  Issuing conv1's slices first (its first copy 8.704 us before
conv1 starts, under conv0's last slice, Vela's prefetch) and the store after them, by hand:

* conv0 ends at 103.040 us (as in plan order); conv1's first copy 94.336 -> 127.744 us (128 ns
  + 16,640 B x 2 ns), the second 127.744 -> 161.024 us; the NPU reads 34.384 us per slice:
  127.744 -> 162.128 -> 196.512 us, so conv1 ends at 196.512 us (103.040 + its busy time of
  93.472 us: nothing waits);
* the store of ``y0`` follows the stream on the channel: 161.024 -> 292.224 us; the store of
  ``z`` (65.664 us) then 292.224 -> 357.888 us.

The other orders of the one channel's five copies are no faster (the test enumerates them), so
357.888 us is the optimum of this plan, and CP-SAT proves it.
"""

from __future__ import annotations

import dataclasses
import itertools

import onnx
import pytest

from stowage.api import compile as compile_plan
from stowage.api import load_model
from stowage.plan.validate import plan_graph, validate
from stowage.solvers import stream_timing, timing
from stowage.targets.hierarchy import load_target
from test_weight_streams import conv_chain

U55 = load_target("ethos-u55-256")
US = 1e-6


@pytest.fixture(scope="module")
def contention(tmp_path_factory):
    path = tmp_path_factory.mktemp("xws") / "chain_out.onnx"
    onnx.save(conv_chain(16, (64, 256, 128), extra_output=True), path)
    plan = compile_plan(path, target="ethos-u55-256", tiling="off", time_limit=5, solver="exact",
                        objective="latency")
    return path, plan, plan_graph(load_model(path), plan)


def _untimed(plan):
    return dataclasses.replace(plan, transfers=tuple(dataclasses.replace(t, channel=None, start=None, end=None)
                                                     for t in plan.transfers), weight_loads=())


def test_exact_issues_the_slices_before_the_store(contention):
    _, plan, graph = contention
    assert validate(graph, plan).ok
    assert plan.metrics.estimated_seconds == pytest.approx(357.888 * US, rel=1e-9)
    assert plan.solver.latency_status == "order-optimal"
    assert plan.solver.latency_bound is not None and plan.solver.latency_bound <= plan.metrics.estimated_seconds
    conv1 = [w for w in plan.weight_loads if w.op == "conv1"]
    assert [(w.start / US, w.end / US, w.read_start / US, w.read_end / US) for w in conv1] == [
        pytest.approx((94.336, 127.744, 127.744, 162.128), rel=1e-9),
        pytest.approx((127.744, 161.024, 162.128, 196.512), rel=1e-9)]
    y0 = next(t for t in plan.transfers if t.step == 0 and t.phase == "after")
    z = plan.transfers[-1]
    assert (y0.start / US, y0.end / US) == pytest.approx((161.024, 292.224), rel=1e-9)
    assert (z.start / US, z.end / US) == pytest.approx((292.224, 357.888), rel=1e-9)
    # The plan's own timeline is the recorded one: estimate keeps it (faster than plan order).
    tl = timing.estimate(graph, plan, U55)
    assert tl is not None and tl.makespan == pytest.approx(357.888 * US, rel=1e-9)
    assert tl.steps[1].end / US == pytest.approx(196.512, rel=1e-9)
    plain = timing.estimate(graph, _untimed(plan), U55)
    assert plain is not None and plain.makespan == pytest.approx(402.080 * US, rel=1e-9)


def test_every_queue_order_is_no_faster_and_above_the_bound(contention):
    _, plan, graph = contention
    net = stream_timing.stream_net(graph, plan, U55)
    assert net is not None and len(net.durations) == 3 and len(net.spans) == 2
    got = []
    for perm in itertools.permutations(range(5)):
        tl = stream_timing.replay(graph, _untimed(plan), U55, [list(perm)], net)
        if tl is not None:
            got.append(tl.makespan)
            assert tl.makespan >= tl.lower_bound
            # Every feasible order gives a plan the validator accepts.
            assert validate(graph, timing.annotate(_untimed(plan), tl)).ok
    assert min(got) == pytest.approx(357.888 * US, rel=1e-9)
    assert sorted(round(x / US, 3) for x in got) == [357.888, 393.376, 402.08]


def test_replay_of_estimate_s_queues_is_estimate(contention):
    # The stream constraints with estimate's own queue order give estimate's timeline: the
    # CP-SAT model times the plan with the same model, only the queue order differs.
    _, plan, graph = contention
    plain = _untimed(plan)
    tl = timing.estimate(graph, plain, U55)
    assert tl is not None
    net = stream_timing.stream_net(graph, plain, U55)
    assert net is not None
    again = stream_timing.replay(graph, plain, U55, stream_timing.estimate_queues(net, tl), net)
    assert again is not None
    assert again.makespan == pytest.approx(tl.makespan, rel=1e-12)
    assert [x for s in again.steps for x in (s.start, s.end, s.weight_stall)] == pytest.approx(
        [x for s in tl.steps for x in (s.start, s.end, s.weight_stall)], rel=1e-12, abs=1e-15)
    assert [x for w in again.weight_loads for x in (w.start, w.end, w.read_start, w.read_end, w.offset, w.channel)] \
        == pytest.approx([x for w in tl.weight_loads
                          for x in (w.start, w.end, w.read_start, w.read_end, w.offset, w.channel)], rel=1e-12)


def test_a_plan_with_nothing_competing_keeps_the_block_model_timeline(tmp_path):
    # Without the extra output nothing but the input load and the output store uses the
    # channel: the CP-SAT schedule is the plan-order one, 245.792 us (test_weight_streams.py).
    path = tmp_path / "chain.onnx"
    onnx.save(conv_chain(16, (64, 256, 128)), path)
    plan = compile_plan(path, target="ethos-u55-256", tiling="off", time_limit=5, solver="exact",
                        objective="latency")
    assert plan.metrics.estimated_seconds == pytest.approx(245.792 * US, rel=1e-9)
    assert plan.solver.latency_status == "order-optimal"
    assert validate(plan_graph(load_model(path), plan), plan).ok


def _rule9(graph, plan) -> list[str]:
    verdict = validate(graph, plan)
    assert not verdict.ok
    return [e.message for e in verdict.errors if e.rule == 9]


def test_validator_catches_mutants_of_the_cp_sat_timeline(contention):
    _, plan, graph = contention
    ws = list(plan.weight_loads)
    k = next(i for i, w in enumerate(ws) if w.op == "conv1")
    y0 = next(i for i, t in enumerate(plan.transfers) if t.step == 0 and t.phase == "after")
    tr = list(plan.transfers)

    # The store of y0 moved into the stream's window (it starts with conv1's second copy).
    t = tr[y0]
    moved = dataclasses.replace(t, start=ws[k + 1].start, end=ws[k + 1].start + (t.end - t.start))
    mutant = dataclasses.replace(plan, transfers=(*tr[:y0], moved, *tr[y0 + 1:]))
    assert any("overlap in time on channel 0" in m for m in _rule9(graph, mutant))

    # conv1's first slice read before its copy ended.
    early = dataclasses.replace(ws[k], read_start=ws[k].end - 10 * US)
    mutant = dataclasses.replace(plan, weight_loads=(*ws[:k], early, *ws[k + 1:]))
    assert any("reads a slice only after its copy ended" in m for m in _rule9(graph, mutant))

    # conv1's second slice copied into the half its first is still being read from.
    same = dataclasses.replace(ws[k + 1], offset=ws[k].offset)
    mutant = dataclasses.replace(plan, weight_loads=(*ws[:k + 1], same, *ws[k + 2:]))
    assert any("is read until" in m for m in _rule9(graph, mutant))

    # A makespan that ends before the last slice is read.
    short = dataclasses.replace(plan, metrics=dataclasses.replace(plan.metrics, estimated_seconds=190 * US))
    assert any("a weight slice is read until" in m for m in _rule9(graph, short))


def test_validator_catches_a_stream_model_without_the_byte_rule(tmp_path):
    # A model mutant: drop the constraints "a slice is copied into bytes only after the slice
    # there has been read" (the double buffer's k - 2 rule among them).  On a 32 x 32 input
    # conv0 reads each of its four slices for 34.816 us against 8.704 us of copying, so without
    # the rule slice 2 is copied into half 0 while slice 0 is still being read: rule 9 says so.
    path = tmp_path / "chain32.onnx"
    onnx.save(conv_chain(32, (64, 256, 128)), path)
    cap = 4 << 20
    plan = compile_plan(path, target="ethos-u55-256", capacity=cap, tiling="off", time_limit=5)
    graph = plan_graph(load_model(path), plan)
    hier = U55.with_capacity(cap)
    plain = _untimed(plan)
    net = stream_timing.stream_net(graph, plain, hier)
    tl = timing.estimate(graph, plain, hier)
    assert net is not None and tl is not None and len(net.spans[0].loads) == 4
    queues = stream_timing.estimate_queues(net, tl)
    good = stream_timing.replay(graph, plain, hier, queues, net)
    assert good is not None and validate(graph, timing.annotate(plain, good)).ok
    loads = {v for sp in net.spans for v in sp.loads}
    reads = {v for sp in net.spans for v in sp.reads}
    broken = dataclasses.replace(net, edges=tuple(e for e in net.edges if not (e[0] in reads and e[1] in loads)))
    bad = stream_timing.replay(graph, plain, hier, queues, broken)
    assert bad is not None and bad.makespan <= good.makespan
    assert any("is read until" in m for m in _rule9(graph, timing.annotate(plain, bad)))


@pytest.mark.parametrize(("target", "hw", "chans", "extra"), [
    ("ethos-u55-256", 16, (64, 256, 128), True),
    ("ethos-u65-256", 16, (64, 256, 128), True),      # two DMA channels
    ("ethos-u55-256", 8, (32, 128, 256, 64), True),
    ("ethos-u65-256", 24, (16, 96, 192, 96), False),
])
def test_exact_schedules_are_valid_never_slower_and_above_the_bound(tmp_path, target, hw, chans, extra):
    # Judged by the validator and by the time model itself: the recorded schedule is what
    # estimate replays, it is never slower than the queue in plan order, never below the bound.
    path = tmp_path / "m.onnx"
    onnx.save(conv_chain(hw, chans, extra_output=extra), path)
    plan = compile_plan(path, target=target, tiling="off", time_limit=4, solver="exact", objective="latency")
    graph = plan_graph(load_model(path), plan)
    hier = load_target(target)
    assert plan.weight_loads and validate(graph, plan).ok
    tl = timing.estimate(graph, plan, hier)
    plain = timing.estimate(graph, _untimed(plan), hier)
    assert tl is not None and plain is not None
    assert tl.makespan == pytest.approx(plan.metrics.estimated_seconds, rel=1e-12)
    assert tl.makespan <= plain.makespan * (1 + 1e-12)
    assert tl.makespan >= plan.solver.latency_bound * (1 - 1e-12)
    assert {w.channel for w in plan.weight_loads} <= set(range(hier.compute_engine.dma_channels))
