"""TFLite operators in row bands (issue 12) and TFLite activations fused as Vela fuses them (issue 15).

``tflite_writer.rows_int8_model`` is an int8 NHWC graph of PAD, a dilated CONV_2D, STRIDED_SLICE
along H and along C, SPLIT, SPLIT_V, a dilated DEPTHWISE_CONV_2D, ADD, MEAN and a HARD_SWISH
after the first convolution.  Its row maps are checked by hand and against LiteRT's values
(the rows each result holds are the operand rows the map names); its tiled plans, down to the
least capacity, are valid, replay bit-exactly against LiteRT and lower to C tables the C replay
accepts; mutants are caught by the replay.  Before these row maps, the PAD needed whole
tensors and nothing planned below M_R (2,240 B).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import stowage
from stowage.backend.emit import emit_c
from stowage.errors import CapacityError
from stowage.ir.graph import Graph, Operator
from stowage.ir.inplace import fuse_in_place
from stowage.ir.onnx_import import load_graph
from stowage.ir.tiling import ACCUMULATE, DILATED, RowMap, row_maps, tflite_slice_rows
from stowage.plan import Cascade, Plan
from stowage.plan.validate import validate
from stowage.simulate import SimResult
from stowage.simulate_tflite import Replay, reference_run, simulate_tflite
from stowage.solvers import block_model, block_ops
from stowage.solvers.timing import step_busy_seconds
from stowage.targets.hierarchy import load_target
from test_emit import GCC, needs_gcc, replay
from tflite_writer import rows_int8_model

GCC_FOUND = GCC is not None
#: The graph's M_R (the PAD's 1,024 B operand and 1,216 B result) and its least tiled capacity.
M_R, LEAST = 2240, 224


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("tfl_rows") / "rows.tflite"
    p.write_bytes(rows_int8_model())
    return p


@pytest.fixture(scope="module")
def graph(model: Path) -> Graph:
    return load_graph(model)


@pytest.fixture(scope="module")
def ref(model: Path) -> dict[str, np.ndarray]:
    return reference_run(model)


def _op(g: Graph, name: str) -> Operator:
    return next(o for o in g.operators if o.name == name)


def _values(g: Graph, ref: dict[str, np.ndarray], name: str) -> np.ndarray:
    return ref[name].view(np.int8).reshape(g.tensors[name].shape)


def test_importer_records_constant_operands(graph: Graph) -> None:
    a = {n: _op(graph, n).attributes for n in ("PAD_2", "STRIDED_SLICE_4", "SPLIT_5", "SPLIT_V_8", "MEAN_10")}
    assert a["PAD_2"]["paddings"] == [0, 0, 1, 2, 0, 0, 0, 0]
    assert (a["STRIDED_SLICE_4"]["begin"], a["STRIDED_SLICE_4"]["end"], a["STRIDED_SLICE_4"]["strides"]) == (
        [0, 1, 0, 0], [1, 15, 4, 8], [1, 2, 1, 1])
    assert a["SPLIT_5"]["axis"] == [3] and a["SPLIT_5"]["num_splits"] == 2
    assert (a["SPLIT_V_8"]["size_splits"], a["SPLIT_V_8"]["axis"]) == ([1, 3], [-1])
    assert a["MEAN_10"]["axis"] == [1, 2] and a["MEAN_10"]["keep_dims"]


def test_row_maps_by_hand(graph: Graph) -> None:
    g = graph
    # PAD: one zero row above, two below: output row o is input row o - 1.
    pad = row_maps(g, _op(g, "PAD_2"))["h"]
    assert pad == RowMap(1, 1, 1, 16)
    assert pad.need(0, 1) == (0, 0, 1, 0) and pad.need(1, 4) == (0, 3, 0, 0) and pad.need(17, 19) == (16, 16, 0, 2)
    # The dilated 3x3 VALID conv (dilation 2): output row 0 reads p rows 0, 2 and 4 only.
    conv = row_maps(g, _op(g, "CONV_2D_3"))["p"]
    assert (conv.kind, conv.kernel, conv.dilation, conv.pad_top) == (DILATED, 5, 2, 0)
    assert conv.runs(0, 1) == ((0, 1), (2, 3), (4, 5)) and conv.runs(0, 2) == ((0, 6),)
    assert conv.need(14, 15) == (14, 19, 0, 0)
    # STRIDED_SLICE rows 1:15:2: output row o is q row 1 + 2o.
    sl = row_maps(g, _op(g, "STRIDED_SLICE_4"))["q"]
    assert sl == RowMap(2, 1, -1, 15) and sl.need(0, 1)[:2] == (1, 2) and sl.need(3, 7)[:2] == (7, 14)
    # SPLIT and SPLIT_V along channels, STRIDED_SLICE along channels: the same rows.
    for name, x in (("SPLIT_5", "r"), ("SPLIT_V_8", "s1"), ("STRIDED_SLICE_7", "d")):
        assert row_maps(g, _op(g, name)) == {x: RowMap(1, 1, 0, 7)}
    # The dilated depthwise conv, SAME (pads 2): output row 0 reads rows 0 and 2 (tap -2 is padding).
    dw = row_maps(g, _op(g, "DEPTHWISE_CONV_2D_6"))["s0"]
    assert dw.kind == DILATED and dw.runs(0, 1) == ((0, 1), (2, 3)) and dw.need(0, 1) == (0, 3, 2, 0)
    assert dw.runs(6, 7) == ((4, 5), (6, 7)) and dw.need(6, 7) == (4, 7, 0, 2)
    # MEAN over H and W keeping dims: bands of its operand accumulated into one row.
    assert row_maps(g, _op(g, "MEAN_10")) == {"e": RowMap(1, 1, 0, 7, kind=ACCUMULATE)}


def test_strided_slice_rows_follow_litert_rules() -> None:
    """begin_mask / end_mask bits, negative indices, clamping; shrink and reversal are not rows."""
    def op(**a: object) -> Operator:
        return Operator(0, "s", "STRIDED_SLICE", "tflite", ("x",), ("y",), attributes=a)

    shape = (1, 10, 4, 4)
    base = {"begin": [0, 2, 0, 0], "end": [1, 9, 4, 4], "strides": [1, 3, 1, 1]}
    assert tflite_slice_rows(op(**base), shape) == (2, 3, 3)                              # rows 2, 5, 8
    assert tflite_slice_rows(op(**base, begin_mask=2), shape) == (0, 3, 3)                 # 0, 3, 6
    assert tflite_slice_rows(op(**base, end_mask=2), shape) == (2, 3, 3)                   # 2, 5, 8
    assert tflite_slice_rows(op(**{**base, "begin": [0, -4, 0, 0], "end": [1, 100, 4, 4]}), shape) == (6, 3, 2)
    assert tflite_slice_rows(op(**{**base, "strides": [1, -1, 1, 1]}), shape) is None
    assert tflite_slice_rows(op(**base, shrink_axis_mask=1), shape) is None
    slice_op = Operator(0, "s", "SLICE", "tflite", ("x",), ("y",), attributes={"begin": [0, 3, 0, 0],
                                                                                  "size": [1, -1, 4, 4]})
    assert tflite_slice_rows(slice_op, shape) == (3, 1, 7)


def test_row_maps_agree_with_litert_values(graph: Graph, ref: dict[str, np.ndarray]) -> None:
    """The rows each result holds in LiteRT's run are the operand rows its map names."""
    g = graph
    h, p = _values(g, ref, "h"), _values(g, ref, "p")
    assert np.array_equal(p[:, 1:17], h) and np.all(p[:, 0] == -20) and np.all(p[:, 17:] == -20)  # zero point
    q, r = _values(g, ref, "q"), _values(g, ref, "r")
    assert np.array_equal(r, q[:, 1:15:2])
    s0, s1 = _values(g, ref, "s0"), _values(g, ref, "s1")
    assert np.array_equal(s0, r[..., :4]) and np.array_equal(s1, r[..., 4:])
    v0, v1 = _values(g, ref, "v0"), _values(g, ref, "v1")
    assert np.array_equal(v0, s1[..., :1]) and np.array_equal(v1, s1[..., 1:])
    assert np.array_equal(_values(g, ref, "c"), _values(g, ref, "d")[..., 1:])


def test_nothing_below_m_r_before_is_now_tiled(model: Path) -> None:
    plan = stowage.compile(model, target="ethos-u55-256", capacity="M_R")
    assert plan.metrics.peak_bytes["sram"] == M_R and not plan.cascades
    with pytest.raises(CapacityError, match=r"operator 'CONV_2D_3' \(CONV_2D\) needs 224 bytes in one 1-row stripe"):
        stowage.compile(model, target="ethos-u55-256", capacity=LEAST - 1)


@pytest.mark.parametrize("capacity", [1536, 1024, 768, 512, 300, LEAST])
def test_tiled_plans_replay_bit_exactly(model: Path, graph: Graph, ref: dict[str, np.ndarray], capacity: int) -> None:
    plan = stowage.compile(model, target="ethos-u55-256", capacity=capacity)
    assert plan.cascades and plan.metrics.peak_bytes["sram"] <= capacity
    assert validate(graph, plan).ok
    r = Replay(graph, plan, ref).run()
    assert r.ok, r.first_problem
    assert [(o.name, o.exact) for o in r.outputs] == [("m", True), ("v0", True)]


def test_plan_at_768_by_hand(model: Path) -> None:
    """At 768 B one cascade runs CONV_2D 0 (+ its HARD_SWISH in place), PAD, the dilated conv and
    the row STRIDED_SLICE in 1-row bands of r, moving nothing but the input and outputs
    (x 512 B, v0 28 B, m 3 B); the rest is one whole-tensor step each."""
    plan = stowage.compile(model, target="ethos-u55-256", capacity=768)
    (c,) = plan.cascades
    assert (c.ops, c.stripe_rows) == ((0, 2, 3, 4), 1)
    assert (plan.metrics.compulsory_bytes, plan.metrics.noncompulsory_bytes) == (512 + 28 + 3, 0)
    conv = [s for s in c.stripes if s.op == 3]
    # Output row 0 of the dilated conv reads the taps' rows 0, 2, 4 of p (three runs).
    assert conv[0].inputs == (("p", 0, 1), ("p", 2, 3), ("p", 4, 5))
    hs = [s for s in c.stripes if s.op == 1]
    assert hs and all(s.inputs == (("a", s.out_lo, s.out_hi),) for s in hs)   # in place, row for row


@pytest.fixture(scope="module")
def least(model: Path) -> Plan:
    return stowage.compile(model, target="ethos-u55-256", capacity=300)


def _with_cascade(plan: Plan, k: int, cascade: Cascade) -> Plan:
    cs = list(plan.cascades)
    cs[k] = cascade
    return dataclasses.replace(plan, cascades=tuple(cs))


def _replay(g: Graph, plan: Plan, ref: dict[str, np.ndarray]) -> SimResult:
    return Replay(g, plan, ref).run()


def _find(plan: Plan, op: int) -> tuple[int, Cascade]:
    return next((k, c) for k, c in enumerate(plan.cascades) if op in c.ops)


def test_mean_band_dropped_is_caught(graph: Graph, least: Plan, ref: dict[str, np.ndarray]) -> None:
    k, c = _find(least, 10)
    bands = [j for j, s in enumerate(c.stripes) if s.op == 10]
    assert len(bands) == 7 and [c.stripes[j].inputs for j in bands[:2]] == [(("e", 0, 1),), (("e", 1, 2),)]
    stripes = tuple(s for j, s in enumerate(c.stripes) if j != bands[2])
    r = _replay(graph, _with_cascade(least, k, dataclasses.replace(c, stripes=stripes)), ref)
    assert not r.ok and "'MEAN_10'" in r.first_problem and "e" in r.first_problem
    assert not validate(graph, _with_cascade(least, k, dataclasses.replace(c, stripes=stripes))).ok


def test_split_stripe_naming_the_wrong_result_is_caught(graph: Graph, least: Plan,
                                                        ref: dict[str, np.ndarray]) -> None:
    k, c = _find(least, 8)
    j = next(j for j, s in enumerate(c.stripes) if s.op == 8 and s.output == "v1")
    stripes = tuple(dataclasses.replace(s, output="v0") if i == j else s for i, s in enumerate(c.stripes))
    bad = _with_cascade(least, k, dataclasses.replace(c, stripes=stripes))
    assert not _replay(graph, bad, ref).ok
    assert not validate(graph, bad).ok


def test_dilated_stripe_reading_the_dense_window_is_caught(graph: Graph, least: Plan,
                                                           ref: dict[str, np.ndarray]) -> None:
    k, c = _find(least, 3)
    j = next(j for j, s in enumerate(c.stripes) if s.op == 3)
    assert len(c.stripes[j].inputs) == 3
    dense = dataclasses.replace(c.stripes[j], inputs=(("p", 0, 5),))
    bad = _with_cascade(least, k, dataclasses.replace(c, stripes=tuple(dense if i == j else s
                                                                        for i, s in enumerate(c.stripes))))
    r = _replay(graph, bad, ref)
    assert not r.ok and "window needs" in r.first_problem
    assert not validate(graph, bad).ok


def test_every_dropped_row_transfer_is_caught(graph: Graph, least: Plan, ref: dict[str, np.ndarray]) -> None:
    spots = [(k, j, i) for k, c in enumerate(least.cascades) for j, s in enumerate(c.stripes)
             for i in range(len(s.transfers))]
    assert len(spots) > 10
    for k, j, i in spots[::max(1, len(spots) // 12)]:
        c = least.cascades[k]
        s = c.stripes[j]
        stripes = list(c.stripes)
        stripes[j] = dataclasses.replace(s, transfers=s.transfers[:i] + s.transfers[i + 1:])
        assert not _replay(graph, _with_cascade(least, k, dataclasses.replace(c, stripes=tuple(stripes))), ref).ok


def test_simulate_runs_the_validator_too(model: Path, graph: Graph, least: Plan) -> None:
    assert simulate_tflite(model, graph, least).ok


@needs_gcc
@pytest.mark.parametrize("capacity", [768, 300])
def test_plan_h_of_tiled_tflite_plans_replays_in_c(model: Path, graph: Graph, tmp_path: Path, capacity: int) -> None:
    plan = stowage.compile(model, target="ethos-u55-256", capacity=capacity)
    r = replay(emit_c(plan, fuse_in_place(graph)), tmp_path / str(capacity))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replay ok" in r.stdout


# -- issue 15: activations fused as Vela fuses them --------------------------------------------


def test_hard_swish_runs_in_place_in_its_convolution_step(graph: Graph) -> None:
    fused = fuse_in_place(graph)
    conv, hs = _op(fused, "CONV_2D_0"), _op(fused, "HARD_SWISH_1")
    assert conv.fused == (hs.index,) and hs.fused_into == conv.index and not hs.computing
    assert fused.tensor_buffer["a"] == fused.tensor_buffer["h"]
    assert len(fused.computing_ops) == len(graph.computing_ops) - 1 == 10


def test_fused_hard_swish_is_the_convolutions_lut_output_stage(model: Path, graph: Graph) -> None:
    """Whole tensors at 8 MiB on ethos-u55-256 (500 MHz): the conv step costs the conv with a
    LUT output stage, 1,488 NPU cycles (Vela's ``measure_cycle_cost`` gives the same for a
    16x8x4 -> 16x8x8 3x3 convolution with ``Op.LUT`` into NHCWB16), not the conv (656 cycles)
    plus a stand-alone 1,024-cycle HARD_SWISH pass."""
    target = load_target("ethos-u55-256")
    plan = stowage.compile(model, target=target, capacity="8MiB", tiling="off")
    fused = fuse_in_place(graph)
    assert len(plan.steps) == 10
    busy = step_busy_seconds(fused, plan, target)
    assert busy is not None
    step = next(s for s, st in enumerate(plan.steps) if st.op == "CONV_2D_0")
    assert round(busy[step][1] * 500e6) == 1488
    engine = target.compute_engine
    assert engine is not None and engine.blocks is not None
    arch = engine.blocks
    conv, hs = _op(fused, "CONV_2D_0"), _op(fused, "HARD_SWISH_1")
    assert block_ops.tflite_fused_activation(fused, conv, hs, arch) == "lut"
    sram, flash = block_model.Memory(8.0, 32, 32), block_model.Memory(1.0, 64, 128)
    formats = block_ops.feature_map_formats(fused)
    # The conv's result shares its buffer with the in-place HARD_SWISH's, which is no view: it
    # keeps the NPU's brick format (h is NHWC: the PAD, not a block operation, reads it).
    assert (formats["a"], formats["h"]) == (block_model.NHCWB16, block_model.NHWC)

    def cycles(op: Operator, act: str | None) -> int:
        got = block_ops.query(fused, op, sram, flash, formats, act)
        assert got is not None
        cost = block_model.op_cost(arch, got[0])
        assert cost is not None
        return cost.cycles

    assert (cycles(conv, None), cycles(conv, "lut"), cycles(hs, None)) == (656, 1488, 1024)
    # Not fused: a producer with an activation of its own, or a result read twice.
    with_act = dataclasses.replace(conv, attributes={**conv.attributes, "fused_activation_function": "RELU"})
    assert block_ops.tflite_fused_activation(fused, with_act, hs, arch) is None
    no_lut = dataclasses.replace(arch, shram_reserved_end_banks=0)
    assert block_ops.tflite_fused_activation(fused, conv, hs, no_lut) is None


@pytest.mark.slow
def test_mobilenet_v3_latency_plan_replays() -> None:
    """MobileNetV3-small's squeeze-and-excitation blocks: with MEAN in bands, a cascade could
    start at the 1-row convolutions after a MEAN and reach the MUL that reads their 1-row scale
    whole (a broadcast over H), whose stripes the band walk ran before the scale was made (the
    replay found it poisoned, the validator did not look).  Such a run is no cascade now
    (``stripe_program``), and the validator checks whole reads of tensors made in a cascade."""
    path = Path(__file__).resolve().parent.parent / "models" / "tflite" / "mobilenet_v3_small_int8.tflite"
    plan = stowage.compile(path, target="ethos-u55-256", capacity="256KiB", solver="heuristic",
                           objective="latency", time_limit=20)
    assert plan.metrics.noncompulsory_bytes == 0 and plan.cascades
    r = simulate_tflite(path, load_graph(path), plan)
    assert r.ok, r.first_problem


@pytest.mark.slow
def test_validator_rejects_a_whole_read_before_its_rows_are_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``stripe_program``'s refusal switched off, the cascade of the SE block above comes
    back; the one validator (rule 8's whole reads) rejects it, so ``compile`` returns no plan."""
    from stowage.errors import SolverError
    from stowage.solvers.tiling import program

    monkeypatch.setattr(program, "whole_read_inside", lambda *a: None)
    path = Path(__file__).resolve().parent.parent / "models" / "tflite" / "mobilenet_v3_small_int8.tflite"
    with pytest.raises(SolverError, match=r"stripe 0 \(MUL_66\): reads 'MobileNetV3Small_1/Mul_5' whole, but its "
                                          r"row 0: it is not produced yet"):
        stowage.compile(path, target="ethos-u55-256", capacity="256KiB", solver="heuristic", objective="latency",
                        time_limit=20)


@pytest.mark.parametrize("capacity", [300, LEAST])
def test_a_mean_without_kept_dims_ends_a_cascade(tmp_path: Path, capacity: int) -> None:
    """MEAN with ``keep_dims`` false (a 2-D ``(1, C)`` result, as Keras' global pooling
    converts; MobileNetV2's last MEAN, EfficientNet-B0's squeeze-and-excitation): the same
    accumulating bands, its one row written after the last band; valid, bit-exact, and the C
    replay accepts its tables (``channels`` 1, ``rows`` 1)."""
    path = tmp_path / "rows_flat.tflite"
    path.write_bytes(rows_int8_model(keep_dims=False))
    g = load_graph(path)
    assert g.tensors["m"].shape == (1, 3)
    assert row_maps(g, _op(g, "MEAN_10")) == {"e": RowMap(1, 1, 0, 7, kind=ACCUMULATE)}
    # The file order's cascades: at 224 B the min-peak order's plan moves less (4,968 B
    # against 5,024 B) with the MEAN a plain step, and this test is about its bands.
    plan = stowage.compile(path, target="ethos-u55-256", capacity=capacity, params={"reorder": ()})
    _k, c = _find(plan, 10)
    assert [s.inputs for s in c.stripes if s.op == 10][-1][0][2] == 7   # its last band ends at row 7
    r = simulate_tflite(path, g, plan)
    assert r.ok, r.first_problem
    if GCC_FOUND:
        rr = replay(emit_c(plan, fuse_in_place(g)), tmp_path / "c")
        assert rr.returncode == 0 and "replay ok" in rr.stdout, rr.stdout + rr.stderr
