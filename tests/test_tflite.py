"""TFLite import (issue 13 item 5): ``.tflite`` files into the same IR, planned, validated and
replayed against LiteRT.

The tiny model is written in the test (``tflite_writer``, no TensorFlow); its numbers are
worked out by hand in ``test_tiny_model_numbers``.  The committed MobileNetV2 is compared
with its ONNX QOperator twin.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stowage import cli
from stowage.errors import ModelError
from stowage.ir.graph import TensorKind
from stowage.ir.lifetimes import lifetimes, m_r
from stowage.ir.onnx_import import load_graph
from stowage.ir.tflite_import import _same_pads, is_tflite
from tests.test_cli_errors import assert_one_line_error
from tflite_writer import tiny_int8_model

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models" / "tflite"
MNV2 = MODELS / "mobilenet_v2_int8.tflite"
MNV3 = MODELS / "mobilenet_v3_small_int8.tflite"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("tfl") / "tiny.tflite"
    p.write_bytes(tiny_int8_model())
    return p


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------
# Import


def test_tiny_model_numbers(tiny: Path) -> None:
    g = load_graph(tiny)
    assert [o.op_type for o in g.operators] == [
        "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD", "RESHAPE", "FULLY_CONNECTED"]
    assert {o.domain for o in g.operators} == {"tflite"}
    # int8 activations at their NHWC shapes; int32 biases; weights from the buffers.
    t = g.tensors
    assert (t["x"].shape, t["x"].dtype, t["x"].bytes, t["x"].kind) == ((1, 8, 8, 3), "int8", 192, TensorKind.INPUT)
    assert (t["a"].bytes, t["b"].bytes, t["c"].bytes, t["d"].bytes, t["y"].bytes) == (512, 128, 128, 128, 10)
    assert (t["conv1/w"].bytes, t["conv1/b"].dtype, t["conv1/b"].bytes) == (216, "int32", 32)
    assert t["fc/w"].kind is TensorKind.WEIGHT and t["fc/w"].bytes == 1280
    weights = [b for b in g.buffers if b.kind is TensorKind.WEIGHT]
    # 216+32 + 72+32 + 64+32 + 8 (the RESHAPE's shape) + 1280+40
    assert sum(b.bytes for b in weights) == 1776
    # RESHAPE is a view: d and r are one buffer, and it is no step.
    assert g.tensor_buffer["d"] == g.tensor_buffer["r"]
    assert not g.operators[4].computing and len(g.computing_ops) == 5
    # SAME padding made explicit: 8 -> 8 (k3 s1) pads 1 all round; 8 -> 4 (k3 s2) the odd one at
    # the bottom/right, as TFLite does; VALID is zeros.
    c1, dw, c2 = (g.operators[i].attributes for i in range(3))
    assert (c1["pads"], c1["strides"], c1["kernel_shape"], c1["fused_activation_function"]) == (
        [1, 1, 1, 1], [1, 1], [3, 3], "RELU")
    assert (dw["pads"], dw["strides"], dw["fused_activation_function"], dw["depth_multiplier"]) == (
        [0, 0, 1, 1], [2, 2], "RELU6", 1)
    assert (c2["pads"], c2["padding"], c2["layout"]) == ([0, 0, 0, 0], "VALID", "NHWC")
    # MACs: out elements x kernel volume (x C_in for CONV_2D); FC rows x units x K.
    assert [(o.cost, o.cost_unit) for o in g.operators if o.computing] == [
        (512 * 27, "MACs"), (128 * 9, "MACs"), (128 * 8, "MACs"), (128, "FLOPs"), (1280, "MACs")]
    # Footprints: conv1 192+512 (+216+32), dw 512+128 (+72+32), conv2 256 (+96), add 384,
    # fc 128+10 (+1280+40).
    assert m_r(g, weights_in_compute_level=False) == 704
    assert m_r(g, weights_in_compute_level=True) == 1458
    lt = lifetimes(g, g.file_order(), weights_in_compute_level=False)
    assert list(lt.live_bytes) == [704, 640, 256, 384, 138]  # b stays live to the ADD


def test_dispatch_by_identifier_and_suffix(tmp_path: Path, tiny: Path) -> None:
    other = tmp_path / "model.bin"
    other.write_bytes(tiny.read_bytes())
    assert is_tflite(other) and is_tflite(tiny) and not is_tflite(ROOT / "models" / "tiny_cnn.onnx")
    assert m_r(load_graph(other), False) == 704
    g = load_graph(tiny, element_bytes=2)  # the override applies as for ONNX
    assert g.tensors["a"].bytes == 1024


def test_custom_op_is_opaque(tmp_path: Path) -> None:
    p = tmp_path / "custom.tflite"
    p.write_bytes(tiny_int8_model(custom=True))
    g = load_graph(p)
    op = g.operators[3]
    assert (op.op_type, op.opaque, op.attributes["custom_code"], op.computing) == ("CUSTOM", True, "MyAdd", True)
    assert "MyAdd" in (op.opaque_reason or "")
    assert m_r(g, False) == 704


def test_more_subgraphs_plan_subgraph_0_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "two.tflite"
    p.write_bytes(tiny_int8_model(subgraphs=2))
    with caplog.at_level(logging.WARNING, logger="stowage.ir.tflite_import"):
        g = load_graph(p)
    assert "2 subgraphs: planning subgraph 0" in caplog.text
    assert len(g.computing_ops) == 5


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(1, 300), st.integers(1, 7), st.integers(1, 4), st.integers(1, 3))
def test_same_padding_gives_ceil_output(size: int, k: int, stride: int, dilation: int) -> None:
    top, bottom = _same_pads(size, k, stride, dilation)
    eff = (k - 1) * dilation + 1
    assert 0 <= bottom - top <= 1
    if size + top + bottom >= eff:
        assert (size + top + bottom - eff) // stride + 1 == math.ceil(size / stride)


# --------------------------------------------------------------------------------------------
# Bad input: one line, exit 2


def test_corrupt_file(tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tiny.read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: len(data) // 3])
    assert_one_line_error(*run(capsys, "inspect", str(cut)), "corrupt TFLite file")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    assert_one_line_error(*run(capsys, "inspect", str(junk)), "is not a TFLite model")
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    assert_one_line_error(*run(capsys, "inspect", str(empty)), "model file is empty")


def test_unsupported_schema_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "v2.tflite"
    p.write_bytes(tiny_int8_model(version=2))
    assert_one_line_error(*run(capsys, "inspect", str(p)), "TFLite schema version 2 is not supported")


def test_dim_is_refused(tiny: Path) -> None:
    with pytest.raises(ModelError, match="--dim does not apply"):
        load_graph(tiny, dims={"batch": 1})


# --------------------------------------------------------------------------------------------
# Commands


def test_inspect_compile_validate_simulate(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "inspect", str(tiny))
    assert code == 0 and "704" in out and "1,458" in out
    outdir = tmp_path / "plan"
    code, out, err = run(capsys, "compile", str(tiny), "--target", "ethos-u55-256", "--capacity", "704",
                         "-o", str(outdir))
    assert code == 0, err
    code, out, _ = run(capsys, "validate", str(tiny), str(outdir / "plan.json"))
    assert code == 0 and "valid" in out
    code, out, _ = run(capsys, "simulate", str(tiny), str(outdir / "plan.json"))
    assert code == 0, out
    assert "output y: bit-exact vs LiteRT" in out and "match:" in out
    code, out, _ = run(capsys, "simulate", "--json", str(tiny), str(outdir / "plan.json"))
    doc = json.loads(out)
    assert code == 0 and doc["match"] and doc["steps"] == 5 and doc["tolerance"] == "bit-exact"


def _plan(tiny: Path, capacity: int | str, weights: bool = False):  # type: ignore[no-untyped-def]
    import stowage

    return stowage.compile(tiny, target="ethos-u55-256", capacity=capacity, weights_in_sram=weights)


def test_replay_moves_weights_when_they_must_be_loaded(tiny: Path) -> None:
    from stowage.simulate_tflite import simulate_tflite

    plan = _plan(tiny, "M_R", weights=True)
    g = load_graph(tiny)
    loaded = {t.buffer for t in plan.transfers if t.dst == plan.target.compute_level}
    assert {g.tensor_buffer["conv1/w"], g.tensor_buffer["fc/w"]} <= loaded
    result = simulate_tflite(tiny, g, plan)
    assert result.ok and result.steps == 5 and [o.exact for o in result.outputs] == [True]


def test_replay_finds_a_result_placed_over_a_live_operand(tiny: Path) -> None:
    from stowage.simulate_tflite import Replay, reference_run

    plan = _plan(tiny, 4096)
    g = load_graph(tiny)
    ref = reference_run(tiny)
    assert Replay(g, plan, ref).run().ok
    # Put c (written by conv2 at step 2) on top of b, its operand, which the ADD reads later:
    # c's placement begins (poisoned) over b's bytes before conv2 reads b.
    b, c = g.tensor_buffer["b"], g.tensor_buffer["c"]
    sram = plan.target.compute_level
    pb = next(p for p in plan.placements if p.buffer == b and p.level == sram)
    moved = tuple(dataclasses.replace(p, offset=pb.offset) if p.buffer == c and p.level == sram else p
                  for p in plan.placements)
    bad = Replay(g, dataclasses.replace(plan, placements=moved), ref).run()
    assert not bad.ok
    first = bad.corruptions[0].message
    assert first.startswith("step 2 (CONV_2D_2): read of buffer") and "('b')" in first and "poison" in first
    # And a missing load: the input never reaches the compute level.
    x = g.tensor_buffer["x"]
    no_load = tuple(t for t in plan.transfers if not (t.buffer == x and t.dst == sram))
    bad = Replay(g, dataclasses.replace(plan, transfers=no_load), ref).run()
    assert not bad.ok and "step 0" in bad.corruptions[0].message and "poison" in bad.corruptions[0].message


# --------------------------------------------------------------------------------------------
# The committed models


def test_mobilenet_v2_matches_its_onnx_qoperator_twin() -> None:
    g = load_graph(MNV2)
    q = load_graph(ROOT / "models" / "int8" / "mobilenet_v2_int8_qop.onnx")
    assert MNV2.stat().st_size < 4 << 20
    assert {g.tensors[n].dtype for n in (*g.inputs, *g.outputs)} == {"int8"}
    # Same M_R without weights: the expand output 112x112x96 plus the stride-2 depthwise output
    # 56x56x96, int8, in both formats.
    assert m_r(g, False) == m_r(q, False) == 1_505_280 == 112 * 112 * 96 + 56 * 56 * 96
    # Activation sizes agree except where the graphs differ: the ONNX twin takes a float
    # input (602,112 B, then QuantizeLinear) and dequantizes its logits (4,000 B float); the
    # Keras model ends in an int8 SOFTMAX (one more 1,000 B tensor).
    def sizes(x):  # type: ignore[no-untyped-def]
        from collections import Counter

        return Counter(b.bytes for b in x.buffers if b.kind is not TensorKind.WEIGHT
                       and (b.producer is not None or b.consumers))
    only_tflite, only_onnx = sizes(g) - sizes(q), sizes(q) - sizes(g)
    assert dict(only_tflite) == {1000: 1} and dict(only_onnx) == {602_112: 1, 4000: 1}


@pytest.mark.slow
def test_committed_models_plan_and_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for model, mr in ((MNV2, 1_505_280), (MNV3, 401_408)):
        g = load_graph(model)
        assert m_r(g, False) == mr
        out = tmp_path / model.stem
        code, _, err = run(capsys, "compile", str(model), "--capacity", "M_R", "-o", str(out))
        assert code == 0, err
        code, text, _ = run(capsys, "simulate", str(model), str(out / "plan.json"))
        assert code == 0, text


@settings(max_examples=120, deadline=None, derandomize=True)
@given(st.data())
def test_damaged_files_import_or_fail_with_one_line(data: st.DataObject) -> None:
    """Truncated or byte-flipped files: the importer accepts them (a flip inside weight data)
    or raises a ModelError, never another exception."""
    from stowage.ir.tflite_import import import_tflite, parse_model

    raw = bytearray(_TINY)
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 5))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        import_tflite(parse_model(bytes(raw), "m.tflite"), "m")
    except ModelError as exc:
        assert "\n" not in str(exc)


_TINY = tiny_int8_model()
