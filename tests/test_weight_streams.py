"""Weight streams as timed DMA transfers (``docs/timing.md``, "Weight streams"): the weight
slices an Ethos-U class engine copies into its double buffers are ``WeightLoad`` records of the
plan, queued on the DMA channels with the activations' copies, checked by validator rule 9,
reported by ``--per-layer`` and emitted in the C header.

The hand-checked case: two int8 1x1 convolutions, ``x`` (1x64x16x16) -> ``y0`` (256 channels)
-> ``z`` (128 channels), on ethos-u55-256 (DRAM 0.5 GB/s, 64 cycles = 128 ns latency, burst
128 B; SRAM 4 GB/s; one DMA channel).  The block model gives the NPU times (34.816 us and
68.768 us, from ``block_model.op_cost``, checked against Vela in ``test_block_model.py``);
everything else below is worked out by hand.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as oh
from onnx import numpy_helper as nh

from stowage.api import compile as compile_plan
from stowage.api import load_model
from stowage.backend.emit import build_schedule, emit_c
from stowage.plan import plan_from_json, plan_to_json
from stowage.plan.validate import plan_graph, validate
from stowage.solvers import timing
from stowage.targets.hierarchy import load_target

U55 = load_target("ethos-u55-256")
US = 1e-6


def conv_chain(hw: int, chans: tuple[int, ...], extra_output: bool = False) -> onnx.ModelProto:
    """QLinearConv 1x1 layers ``chans[0] -> chans[1] -> ...`` on an int8 ``hw x hw`` input,
    int32 bias; ``extra_output`` makes the first result a graph output too."""
    inits = [nh.from_array(np.array(0.05, np.float32), "s"), nh.from_array(np.array(0, np.int8), "zp")]
    nodes = []
    prev = "x"
    for i, (ci, co) in enumerate(itertools.pairwise(chans)):
        w = (np.arange(co * ci) % 7 - 3).astype(np.int8).reshape(co, ci, 1, 1)
        inits += [nh.from_array(w, f"w{i}"), nh.from_array(np.array(0.02, np.float32), f"ws{i}"),
                  nh.from_array(np.array(0, np.int8), f"wz{i}"), nh.from_array(np.zeros(co, np.int32), f"b{i}")]
        out = f"y{i}" if i < len(chans) - 2 else "z"
        nodes.append(oh.make_node("QLinearConv", [prev, "s", "zp", f"w{i}", f"ws{i}", f"wz{i}", "s", "zp", f"b{i}"],
                                  [out], name=f"conv{i}", kernel_shape=[1, 1]))
        prev = out
    outputs = [oh.make_tensor_value_info("z", TensorProto.INT8, [1, chans[-1], hw, hw])]
    if extra_output:
        outputs.append(oh.make_tensor_value_info("y0", TensorProto.INT8, [1, chans[1], hw, hw]))
    g = oh.make_graph(nodes, "chain", [oh.make_tensor_value_info("x", TensorProto.INT8, [1, chans[0], hw, hw])],
                      outputs, inits)
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    path = tmp_path_factory.mktemp("ws") / "chain.onnx"
    onnx.save(conv_chain(16, (64, 256, 128)), path)
    plan = compile_plan(path, target="ethos-u55-256", tiling="off", time_limit=5)
    return path, plan, plan_graph(load_model(path), plan)


def _top(plan) -> int:
    size = {b.id: b.bytes for b in plan.buffers}
    top = max(p.offset + size[p.buffer] for p in plan.placements if p.level == "sram")
    return -(-top // 16) * 16


def test_two_convolutions_by_hand(chain):
    _, plan, graph = chain
    assert validate(graph, plan).ok
    ws = plan.weight_loads
    # conv0: 256 x 64 B of weights + 256 x 4 B of bias = 17,408 B in four 64-channel slices of
    # 4,352 B (the block is 64 deep); conv1: 128 x 256 + 128 x 4 = 33,280 B, two of 16,640 B.
    assert [(w.op, w.channels_lo, w.channels_hi, w.bytes) for w in ws] == [
        ("conv0", 0, 64, 4352), ("conv0", 64, 128, 4352), ("conv0", 128, 192, 4352), ("conv0", 192, 256, 4352),
        ("conv1", 0, 64, 16640), ("conv1", 64, 128, 16640)]
    assert all((w.src, w.dst, w.channel) == ("dram", "sram", 0) for w in ws)
    assert {w.buffer for w in ws[:4]} == {b.id for b in plan.buffers if "w0" in b.tensors}
    # The double buffers sit above every placement: conv0's at the bottom of a window of 8,704
    # + 33,280 B (halves of 4,352 B), conv1's at its top (halves of 16,640 B), so conv1's first
    # slice can be copied while conv0 still reads its own.
    lo = _top(plan)
    assert [w.offset for w in ws] == [lo, lo + 4352, lo, lo + 4352, lo + 8704, lo + 8704 + 16_640]
    # The input x (16,384 B) first: 128 ns + 16,384 B / 0.5 GB/s = 32.896 us.  Then conv0's
    # slices back to back: 128 ns + 4,352 x 2 ns = 8.832 us, then 8.704 us each; the NPU reads
    # each as soon as it has arrived (8.704 us of conv0's 34.816 us per slice, shorter than a
    # copy, so a half is always free in time).
    x_load = plan.transfers[0]
    assert (x_load.start, x_load.end) == pytest.approx((0.0, 32.896 * US), rel=1e-12)
    ends = [41.728, 50.432, 59.136, 67.840]
    assert [w.start / US for w in ws[:4]] == pytest.approx([32.896, *ends[:3]], rel=1e-12)
    assert [w.end / US for w in ws[:4]] == pytest.approx(ends, rel=1e-12)
    assert [w.read_start / US for w in ws[:4]] == pytest.approx(ends, rel=1e-12)
    assert [w.read_end / US for w in ws[:4]] == pytest.approx([50.432, 59.136, 67.840, 76.544], rel=1e-12)
    # conv0 is bound by its SRAM accesses (53.760 us), so it ends at 86.656 us.  conv1's first
    # copy (128 ns + 16,640 x 2 ns = 33.408 us) is issued under conv0's last slice (8.704 us
    # before conv1 starts, Vela's slack): 77.952 -> 111.360 us; the second copy 33.280 us ->
    # 144.640 us.  The NPU reads 34.384 us per slice: 111.360 -> 145.744 -> 180.128 us.
    assert [(w.start / US, w.end / US, w.read_start / US, w.read_end / US) for w in ws[4:]] == [
        pytest.approx((77.952, 111.360, 111.360, 145.744), rel=1e-12),
        pytest.approx((111.360, 144.640, 145.744, 180.128), rel=1e-12)]
    # Then z (32,768 B) goes home: 128 ns + 65.536 us, ending at 245.792 us.
    assert plan.metrics.estimated_seconds == pytest.approx(245.792 * US, rel=1e-12)


def test_the_makespan_is_the_block_model_s_when_nothing_competes(chain):
    # Nothing else uses the channel while the weights stream: the timeline is the input load,
    # the steps' busy times and the output store, the block model's numbers.  Here the double
    # buffer's own schedule and Vela's closed form agree: conv1 = max(66.688 - 8.704 + 34.384,
    # 68.768 + 33.408 - 8.704) = 93.472 us.
    _, plan, graph = chain
    tl = timing.estimate(graph, plan, U55)
    assert tl is not None
    busy = timing.step_busy_seconds(graph, plan, U55)
    assert busy is not None
    assert [b[0] / US for b in busy] == pytest.approx([53.760, 93.472], rel=1e-12)
    assert tl.makespan == pytest.approx(32.896 * US + busy[0][0] + busy[1][0] + 65.664 * US, rel=1e-12)
    assert [(s.weight_bytes, s.weight_dma / US, s.weight_stall / US) for s in tl.steps] == [
        (17_408, pytest.approx(34.944, rel=1e-12), pytest.approx(8.832, rel=1e-12)),
        (33_280, pytest.approx(66.688, rel=1e-12), pytest.approx(24.704, rel=1e-12))]


def test_a_store_on_the_channel_delays_the_next_stream(tmp_path):
    # y0 is also a graph output: its store (65,536 B: 128 ns + 131.072 us) is queued after
    # conv0, before conv1's weights (plan order on the one channel), so conv1's slices wait
    # for it: 234.240 -> 267.648 -> 300.928 us, read 267.648 -> 302.032 -> 336.416 us.
    path = tmp_path / "chain_out.onnx"
    onnx.save(conv_chain(16, (64, 256, 128), extra_output=True), path)
    plan = compile_plan(path, target="ethos-u55-256", tiling="off", time_limit=5)
    graph = plan_graph(load_model(path), plan)
    assert validate(graph, plan).ok
    store = next(t for t in plan.transfers if t.step == 0 and t.phase == "after")
    conv0_end = 103.040    # the input load, then conv0 (70.144 us: y0 is NHWC, a graph output)
    assert (store.start / US, store.end / US) == pytest.approx((conv0_end, conv0_end + 131.200), rel=1e-12)
    ws = [w for w in plan.weight_loads if w.op == "conv1"]
    assert [(w.start / US, w.end / US, w.read_start / US, w.read_end / US) for w in ws] == [
        pytest.approx((234.240, 267.648, 267.648, 302.032), rel=1e-12),
        pytest.approx((267.648, 300.928, 302.032, 336.416), rel=1e-12)]
    tl = timing.estimate(graph, plan, U55)
    assert tl is not None and tl.steps[1].end / US == pytest.approx(336.416, rel=1e-12)
    assert plan.metrics.estimated_seconds == pytest.approx((336.416 + 65.664) * US, rel=1e-12)


def _mutant(plan, k, **changes):
    ws = list(plan.weight_loads)
    ws[k] = dataclasses.replace(ws[k], **changes)
    return dataclasses.replace(plan, weight_loads=tuple(ws))


def _rule9(graph, plan) -> list[str]:
    verdict = validate(graph, plan)
    assert not verdict.ok
    return [e.message for e in verdict.errors if e.rule == 9]


def test_validator_catches_a_load_that_ends_after_its_reader_starts(chain):
    _, plan, graph = chain
    w = plan.weight_loads[4]
    late = _mutant(plan, 4, start=w.start + 40 * US, end=w.end + 40 * US)
    assert any("reads a slice only after its copy ended" in m for m in _rule9(graph, late))


def test_validator_catches_two_loads_overlapping_on_one_channel(chain):
    _, plan, graph = chain
    w0 = plan.weight_loads[0]
    early = _mutant(plan, 1, start=w0.start + 1 * US)      # still before its reading, but during load 0
    assert any("overlap in time on channel 0" in m for m in _rule9(graph, early))


def test_validator_catches_a_load_overlapping_a_transfer(chain):
    _, plan, graph = chain
    store = plan.transfers[-1]
    w = plan.weight_loads[5]
    moved = dataclasses.replace(plan, transfers=(*plan.transfers[:-1], dataclasses.replace(
        store, start=w.start, end=w.start + (store.end - store.start))))
    assert any("overlap in time on channel 0" in m and "transfer" in m for m in _rule9(graph, moved))


def test_validator_catches_a_slice_copied_into_a_half_still_being_read(chain):
    _, plan, graph = chain
    # Slice 2 copied into the half slice 1 is read from (50.432 - 59.136 us) at 50.432 us.
    w1 = plan.weight_loads[1]
    wrong = _mutant(plan, 2, offset=w1.offset)
    assert any("while weight load 1" in m and "is read until" in m for m in _rule9(graph, wrong))


def test_validator_catches_a_slice_landing_on_a_placement(chain):
    _, plan, graph = chain
    assert any("on buffer" in m for m in _rule9(graph, _mutant(plan, 0, offset=0)))


def test_validator_catches_slices_that_miss_channels(chain):
    _, plan, graph = chain
    ws = tuple(w for i, w in enumerate(plan.weight_loads) if i != 3)
    assert any("cover channels 0-192 of its 256" in m
               for m in _rule9(graph, dataclasses.replace(plan, weight_loads=ws)))


def test_the_plan_file_keeps_the_weight_loads_and_old_files_load(chain):
    _, plan, graph = chain
    again = plan_from_json(plan_to_json(plan))
    assert again.weight_loads == plan.weight_loads
    old = plan_from_json(plan_to_json(dataclasses.replace(plan, weight_loads=())))
    assert old.weight_loads == () and '"weight_loads"' not in plan_to_json(old)
    assert validate(graph, again).ok


def test_resident_weights_stream_nothing(chain):
    path, plan, _ = chain
    resident = compile_plan(path, target="ethos-u55-256", tiling="off", time_limit=5, weights_in_sram=True)
    assert resident.weight_loads == ()
    assert any(t.buffer == plan.weight_loads[0].buffer for t in resident.transfers)   # loaded whole instead


def test_per_layer_csv_reports_the_weight_streams(chain):
    import csv
    import io

    _, plan, graph = chain
    tl = timing.estimate(graph, plan, U55)
    rows = list(csv.DictReader(io.StringIO(timing.per_layer_csv(graph, plan, tl))))
    assert [int(r["weight_bytes"]) for r in rows] == [17_408, 33_280]
    assert [float(r["weight_dma_s"]) / US for r in rows] == pytest.approx([34.944, 66.688], rel=1e-8)
    assert [float(r["weight_stall_s"]) / US for r in rows] == pytest.approx([8.832, 24.704], rel=1e-8)


def test_the_c_header_has_the_weight_load_table(chain, tmp_path):
    path, plan, _ = chain
    sch = build_schedule(plan, load_model(path))
    assert [(w.dst_offset, w.bytes, w.start_ns, w.end_ns, w.wait_read) for w in sch.weight_loads[:3]] == [
        (plan.weight_loads[0].offset, 4352, 32_896, 41_728, None),
        (plan.weight_loads[1].offset, 4352, 41_728, 50_432, None),
        (plan.weight_loads[0].offset, 4352, 50_432, 59_136, 0)]     # half 0 again: after slice 0's reading
    extent = _top(plan) + 8704 + 33_280
    assert sch.weight_stream_extent == extent
    files = emit_c(plan, load_model(path), prefix="net")
    header = files["plan.h"]
    assert "#define NET_NUM_WEIGHT_LOADS 6u" in header and f"#define NET_WEIGHT_STREAM_EXTENT {extent}u" in header
    assert "NET_NUM_TRANSFERS" in header and "NET_SRAM_EXTENT" in header     # existing names kept
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    main = tmp_path / "main.c"
    main.write_text('#include "plan.h"\nint main(void) { return (int)(net_weight_loads[2].wait_read'
                    ' + net_weight_loads[5].end_ns / 1000u - 144u); }\n')
    exe = tmp_path / "a.out"
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-o", str(exe), str(main), str(tmp_path / "plan.c")],
                   check=True, capture_output=True)
    # wait_read of load 2 is 0; load 5 (conv1's second slice) ends at 144,640 ns.
    assert subprocess.run([str(exe)]).returncode == 0


def test_mobilenet_v2_plans_validate_with_their_weight_loads():
    root = Path(__file__).resolve().parents[1] / "models"
    path = root / "tflite" / "mobilenet_v2_int8.tflite"
    plan = compile_plan(path, target="ethos-u65-256", capacity=8 << 20, tiling="off", time_limit=3)
    graph = plan_graph(load_model(path), plan)
    assert len(plan.weight_loads) > 50 and validate(graph, plan).ok
    tl = timing.estimate(graph, plan, load_target("ethos-u65-256").with_capacity(8 << 20))
    assert tl is not None and tl.makespan == plan.metrics.estimated_seconds
    # Nothing but the input load and the output store uses the channels: no step waits for them.
    assert sum(s.busy for s in tl.steps) == pytest.approx(
        sum(b[0] for b in timing.step_busy_seconds(graph, plan, load_target("ethos-u65-256").with_capacity(8 << 20))),
        rel=1e-12)


def test_the_exact_latency_schedule_includes_the_streams(tmp_path):
    # exact --objective latency schedules the weight slices with the copies (its CP-SAT model
    # has the streams, stream_timing): conv1's slices go before y0's store on the one channel,
    # 357.888 us against plan order's 402.08 us, proven for this plan (worked out by hand in
    # test_exact_weight_streams.py).
    path = tmp_path / "chain_out.onnx"
    onnx.save(conv_chain(16, (64, 256, 128), extra_output=True), path)
    plan = compile_plan(path, target="ethos-u55-256", tiling="off", time_limit=5, solver="exact", objective="latency")
    assert plan.metrics.estimated_seconds == pytest.approx(357.888 * US, rel=1e-9)
    assert plan.solver.latency_status == "order-optimal" and len(plan.weight_loads) == 6
    assert plan.solver.latency_bound is not None and plan.solver.latency_bound < plan.metrics.estimated_seconds
    assert validate(plan_graph(load_model(path), plan), plan).ok
