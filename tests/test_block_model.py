"""Vela's block-configuration cycle model (``stowage.solvers.block_model``), its operator mapping
(``block_ops``), the ``[compute.blocks]`` keys and its use in the time model (weight streaming).

Expected numbers: one layer worked out by hand below; the others are the NPU cycles and SRAM
bytes Vela 5.2.0's legacy core prints for the same layers of ``models/tflite/mobilenet_v2_int8.tflite``
(``vela --debug-force-legacy-core --verbose-performance``, ethos-u55-256,
Ethos_U55_High_End_Embedded), and the block configurations of its ``--verbose-schedule``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stowage.errors import TargetError
from stowage.ir.onnx_import import load_graph
from stowage.solvers import block_model as bm
from stowage.solvers import block_ops
from stowage.solvers.timing import _block_step, step_busy_seconds
from stowage.targets.hierarchy import load_target

MODEL = Path(__file__).resolve().parents[1] / "models" / "tflite" / "mobilenet_v2_int8.tflite"
U55 = load_target("ethos-u55-256")
ARCH = U55.compute_engine.blocks if U55.compute_engine else None
SRAM = bm.Memory(bytes_per_cycle=8.0, latency=32, burst=32)     # 4 GB/s at 500 MHz
FLASH = bm.Memory(bytes_per_cycle=1.0, latency=64, burst=128)   # 0.5 GB/s


@pytest.fixture(scope="module")
def graph():
    return load_graph(MODEL)


def _cost(graph, name):
    op = next(o for o in graph.operators if o.name == name)
    got = block_ops.query(graph, op, SRAM, FLASH, block_ops.feature_map_formats(graph))
    assert got is not None and ARCH is not None
    return bm.op_cost(ARCH, got[0]), got


def test_presets_carry_the_block_parameters():
    for name in ("ethos-u55-256", "ethos-u65-256"):
        engine = load_target(name).compute_engine
        assert engine is not None and engine.blocks is not None
        assert engine.blocks.ofm_ublock == (2, 2, 8) and engine.blocks.shram_banks == 48


def test_a_1x1_conv_by_hand(graph):
    # CONV_2D_2: 112x112x32 -> 112x112x16, 1x1, NHCWB16 in and out.  Vela's block: 8x16x16 (IFM
    # 8x16x32).  Per block: 8 x 4 x 2 micro-blocks of 2x2x8; DPU max(32, 4 * 32) * 1 kernel step
    # * 2 = 256 cycles; output stage 0.25 cycles x 2048 elements = 512; command overhead (IFM
    # block 32 + 4096 / 8, OFM block 32 + 2048 / 8, + 512 + 256) / 4 = 400; the output stage is
    # the longer: 512 x 98 blocks (14 x 7 x 1) + 400 = 50,576 cycles (Vela's table: 50,576).
    cost, _ = _cost(graph, "CONV_2D_2")
    assert cost.config.ofm_block == bm.Shape(1, 8, 16, 16) and cost.config.ifm_block == bm.Shape(1, 8, 16, 32)
    assert cost.cycles == 50_576
    # Input read once per 16 output channels (one depth block): 112*112*32 = 401,408 elements;
    # output 200,704; weights 32 per output channel x 16 channels x 98 blocks = 50,176.
    assert (cost.ifm_read, cost.ofm_write, cost.weight_read, cost.scale_read) == (401_408, 200_704, 50_176, 16)
    assert cost.ifm_scale == cost.ofm_scale == 1.0


@pytest.mark.parametrize("name, cycles, sram_read, sram_write, ofm_block", [
    ("DEPTHWISE_CONV_2D_1", 151_312, 524_288, 401_408, (14, 14, 16)),
    ("CONV_2D_3", 306_994, 408_576, 1_204_224, (6, 14, 48)),
    ("DEPTHWISE_CONV_2D_4", 130_262, 1_647_360, 301_056, (10, 12, 16)),
    ("CONV_2D_6", 121_543, 322_560, 451_584, (6, 14, 48)),
    ("ADD_9", 75_264, 200_704, 100_352, (16, 32, 16)),   # 56*56*32 (16-deep bricks) x 0.75 cycles
])
def test_mobilenet_layers_match_vela(graph, name, cycles, sram_read, sram_write, ofm_block):
    cost, (q, *_rest) = _cost(graph, name)
    assert cost.cycles == cycles
    read = cost.ifm_read * cost.ifm_scale + (cost.ifm2_read * cost.ifm2_scale if q.ifm2 is not None else 0)
    assert (read, cost.ofm_write * cost.ofm_scale) == (sram_read, sram_write)
    if q.kind != bm.ELEMENTWISE:
        assert (cost.config.ofm_block.h, cost.config.ofm_block.w, cost.config.ofm_block.c) == ofm_block


def test_a_narrow_nhwc_input_costs_four_bursts_per_byte(graph):
    # The network input (224x224x3, NHWC) is read 8 channels deep (part-kernel traversal): an
    # 8-byte row of a 32-byte burst, so each byte read moves 4.
    cost, (q, *_rest) = _cost(graph, "CONV_2D_0")
    assert q.ifm.format == bm.NHWC and q.ofm.format == bm.NHCWB16
    assert cost.config.part_kernel and cost.ifm_scale == 4.0


def test_float_operators_and_softmax_keep_the_efficiency_model(graph):
    softmax = next(o for o in graph.operators if o.op_type == "SOFTMAX")
    assert block_ops.block_kind(softmax) is None
    assert block_ops.query(graph, softmax, SRAM, FLASH, {}) is None


def test_weight_streaming_and_prefetch_by_hand(graph):
    # CONV_2D_26: 14x14x384 -> 14x14x64, 1x1; 23,256 NPU cycles; block 4x14x64: four blocks of
    # output positions, so read in place the weights (24,576 B + 64 x 4 B of bias) are fetched
    # four times: 98,560 B from flash at 1 B/cycle.  Streamed, they are copied once (one slice:
    # the block is all 64 channels deep), 64 cycles of latency + 24,832 B, then computed:
    # 23,256 + 24,896 = 48,152 cycles.  With the copy under the previous operation (slack of at
    # least 24,896 cycles) only the compute remains, and SRAM becomes the bound: feature maps
    # (86,016 + 12,544) / 8 + the copy's 24,832 B written + the 98,560 B re-read from SRAM, / 8
    # = 12,320 + 3,104 + 12,320 = 27,744 cycles.
    op = next(o for o in graph.operators if o.name == "CONV_2D_26")
    sram, dram = U55.level("sram"), U55.level("dram")
    assert ARCH is not None and U55.compute_engine is not None
    fmts = block_ops.feature_map_formats(graph)
    e = U55.compute_engine

    def busy(room, slack):
        got = _block_step(graph, [op], e, ARCH, (sram, SRAM), (dram, FLASH), fmts, {}, room, slack)
        assert got is not None
        return round(got[0] * e.clock_hz)

    assert busy(None, (0.0, 0)) == 98_560
    assert busy(24_831, (0.0, 0)) == 98_560          # no room for the one buffer
    assert busy(24_832, (0.0, 0)) == 48_152
    assert busy(24_832, (1.0, 0)) == 27_744
    assert busy(24_832, (1.0, 1)) == 48_152          # the previous buffer leaves no room to prefetch


def test_bound_busy_times_never_exceed_the_plan_s(graph):
    from stowage.api import compile as compile_plan

    plan = compile_plan(MODEL, target="ethos-u55-256", capacity=1_509_824, tiling="off", time_limit=5)
    est = step_busy_seconds(graph, plan, U55.with_capacity(1_509_824))
    low = step_busy_seconds(graph, plan, U55.with_capacity(1_509_824), bound=True)
    assert est is not None and low is not None
    assert all(b[0] <= a[0] * (1 + 1e-12) for a, b in zip(est, low, strict=True))
    assert sum(b[0] for b in low) < sum(a[0] for a in est)   # some prefetch the plan order cannot hide


BLOCKS = """
[compute.blocks]
ofm_ublock = [2, 2, 8]
ifm_ublock = [2, 2, 8]
ofm_block_max = [32, 64, 128]
sub_kernel_max = [8, 8]
shram_banks = 48
shram_bank_bytes = 1024
shram_reserved_output_banks = 2
shram_reserved_end_banks = 2
[compute.blocks.shram_granules]
ifm8 = 8
ifm16 = 8
ifm8_elementwise = 8
ifm16_elementwise = 8
ifm32 = 16
acc16 = 8
acc32 = 16
acc40 = 20
[compute.blocks.output_cycles_per_element]
elementwise_32bit_binary = 0.625
elementwise_32bit_unary = 1.125
mul_32bit = 0.5
acc40_or_mul = 0.375
add_simple = 0.5
add = 0.75
maxpool = 0.125
default = 0.25
[compute.blocks.activation_cycles_per_element]
lut = 1.0
relu = 0.25
none = 0.0
"""

TARGET = """name = "npu"
compute_level = "sram"
[homes]
weights = "dram"
inputs = "dram"
outputs = "dram"
[compute]
clock_hz = 5e8
macs_per_cycle = 256
{blocks}
[[levels]]
name = "sram"
capacity = "256KiB"
read_bandwidth = 4e9
write_bandwidth = 4e9
[[levels]]
name = "dram"
read_bandwidth = 5e8
write_bandwidth = 5e8
"""


def test_a_target_file_with_blocks_loads(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text(TARGET.format(blocks=BLOCKS))
    engine = load_target(str(p)).compute_engine
    assert engine is not None and engine.blocks == ARCH


@pytest.mark.parametrize("edit, key", [
    (("ofm_ublock = [2, 2, 8]", "ofm_ublock = [2, 2]"), "compute.blocks.ofm_ublock"),
    (("ofm_ublock = [2, 2, 8]", "ofm_ublock = [2, 0, 8]"), "compute.blocks.ofm_ublock"),
    (("shram_banks = 48", "shram_banks = 4"), "compute.blocks.shram_banks"),
    (("shram_banks = 48", "shram_banks = true"), "compute.blocks.shram_banks"),
    (("shram_banks = 48\n", ""), "compute.blocks.shram_banks"),
    (("acc40 = 20", "acc40 = 2.5"), "compute.blocks.shram_granules.acc40"),
    (("acc40 = 20\n", ""), "compute.blocks.shram_granules.acc40"),
    (("default = 0.25", "default = -1"), "compute.blocks.output_cycles_per_element.default"),
    (("lut = 1.0", "lut = 1.0\nsquare = 2.0"), "compute.blocks.activation_cycles_per_element.square"),
    (("sub_kernel_max = [8, 8]", "sub_kernel_max = [8, 8]\nwarp = 9"), "compute.blocks.warp"),
])
def test_bad_block_keys_are_one_line_errors_naming_the_key(tmp_path, edit, key):
    p = tmp_path / "t.toml"
    p.write_text(TARGET.format(blocks=BLOCKS.replace(*edit)))
    with pytest.raises(TargetError) as info:
        load_target(str(p))
    msg = str(info.value)
    assert f"key '{key}'" in msg and "\n" not in msg


def test_a_folded_qdq_model_times_as_its_qoperator_form():
    # The folded QDQ graph (stowage.ir.qdq) runs the same int8 operations as the QOperator file:
    # its DequantizeLinear/QuantizeLinear members cost nothing, its float operands resolve to
    # the int8 tensors, so the two estimates are equal (before: the QDQ steps fell back to the
    # efficiency model of their Q/DQ members, 71.7 ms against 4.2 ms on ethos-u65-256).
    from stowage.api import compile as compile_plan

    root = MODEL.parents[1] / "int8"
    got = [compile_plan(root / f"mobilenet_v2_int8_{form}.onnx", target="ethos-u65-256", capacity=8 << 20,
                        tiling="off", time_limit=3).metrics.estimated_seconds for form in ("qdq", "qop")]
    assert got[0] is not None and got[1] is not None
    assert got[0] == pytest.approx(got[1], rel=1e-12)
    # 4.1875 ms with Vela's closed form for the weight streams; 4.2001 ms with the double
    # buffer's own schedule, where a copy waits for a free half (docs/timing.md, "Weight streams").
    assert got[1] == pytest.approx(4.2001e-3, rel=1e-4)
