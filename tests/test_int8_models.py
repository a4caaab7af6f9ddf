"""The int8 models (models/int8/, listed in models/int8.toml, made by models/quantize.py with
onnxruntime's quantize_static): every file imports at its real dtypes, its M_R is the number
derived by hand below, the QOperator form keeps activations int8 between its QLinear ops, and a
plan at M_R computes the model's outputs bit-exactly (stowage simulate).

M_R here is the plain IR's (COSMA's definitions: an operator's operands and results never share
bytes; ``load_graph`` does not fuse in-place operators), activations only unless stated."""

from __future__ import annotations

import json
import math
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto

from models.quantize import OUT_DIR, load_int8_manifest
from stowage.cli import main
from stowage.ir.graph import TensorKind
from stowage.ir.lifetimes import m_r, peak_live
from stowage.ir.onnx_import import load_graph

INT8 = load_int8_manifest()
BY_NAME = {m.name: m for m in INT8}
FAST_E2E = "tiny_cnn_int8_qop"  # the smallest int8 model (20 steps, real weights)

HW112 = 112 * 112
# Hand-derived M_R (activations only, then with weights) for each file: the largest operator's
# operand + result bytes at the tensors' real dtypes (int8 = 1 B, float = 4 B).
EXPECTED_M_R: dict[str, tuple[int, int]] = {
    # The input QuantizeLinear: float 1x3x32x32 in (12,288 B) + int8 out (3,072 B); with weights
    # its scale (float, 4 B) and zero point (int8, 1 B).
    "tiny_cnn_int8_qop": (3 * 32 * 32 * 4 + 3 * 32 * 32, 3 * 32 * 32 * 5 + 5),
    # The gate's float Mul (between DQ and Q): stem 4x32x32 float + gate 4x1x1 float + result
    # 4x32x32 float = 16,384 + 16 + 16,384.  With weights: gate_conv2's float Conv: in and out
    # 16x16x16 float (16,384 B each) + the dequantized (folded) weight 16x16x3x3 float
    # (9,216 B) and bias 16 float (64 B).
    "tiny_cnn_int8_qdq": (2 * 4 * 32 * 32 * 4 + 16, 2 * 16 * 16 * 16 * 4 + 16 * 16 * 9 * 4 + 16 * 4),
    # ReLU6 is folded into QLinearConv (the quantizer maps the Clip's calibrated range onto the
    # conv's output), so no Clip doubles the 96x112x112 expansion: the largest step is the
    # stride-2 depthwise QLinearConv of block 2, int8 96x112x112 in + 96x56x56 out.  With
    # weights: + int8 weight 96x1x3x3 (864 B) + int32 bias 96 (384 B) + three float scales and
    # three int8 zero points (15 B).
    "mobilenet_v2_int8_qop": (96 * HW112 + 96 * 56 * 56, 96 * HW112 + 96 * 56 * 56 + 864 + 384 + 15),
    # The same depthwise conv runs in float between DequantizeLinear and QuantizeLinear: 4 B per
    # element; with weights the dequantized weight and bias are float (864 * 4 + 96 * 4 B).
    "mobilenet_v2_int8_qdq": (4 * (96 * HW112 + 96 * 56 * 56), 4 * (96 * HW112 + 96 * 56 * 56 + 864 + 96)),
    # SiLU's QLinearMul at stage 2 (x * sigmoid(x), 96x112x112): two int8 operands + the int8
    # result; with weights six scalars (3 float scales, 3 int8 zero points).
    "efficientnet_b0_int8_qop": (3 * 96 * HW112, 3 * 96 * HW112 + 15),
    # The same Mul in float (operands and result 4 B per element); it reads no weight.
    "efficientnet_b0_int8_qdq": (3 * 4 * 96 * HW112, 3 * 4 * 96 * HW112),
    # The output DequantizeLinear: int8 1x21x224x224 in + float out; with weights scale + zero point.
    "lraspp_mobilenet_v3_int8_qop": (21 * 224 * 224 * 5, 21 * 224 * 224 * 5 + 5),
    "lraspp_mobilenet_v3_int8_qdq": (21 * 224 * 224 * 5, 21 * 224 * 224 * 5 + 5),
}


def test_manifest_matches_the_files() -> None:
    assert {m.name for m in INT8} == set(EXPECTED_M_R)
    committed = {p.name for p in OUT_DIR.glob("*")}
    assert committed == {Path(m.file).name for m in INT8}, "models/int8/ holds exactly the manifest's files"
    for m in INT8:
        assert m.path.parent == OUT_DIR and m.path.name == f"{m.name}.onnx"
        assert m.source_path.is_file(), m.source_file
        assert (m.per_channel, m.activation_type, m.weight_type) == (False, "QInt8", "QInt8")
    sources = {m.source for m in INT8}
    assert {"mobilenet_v2", "efficientnet_b0", "lraspp_mobilenet_v3"} <= sources
    for s in sources:
        assert {m.form for m in INT8 if m.source == s} == {"qop", "qdq"}, s


@pytest.mark.parametrize("m", INT8, ids=lambda m: m.name)
def test_int8_file_is_quantized_per_tensor_and_small(m) -> None:
    proto = onnx.load_model(m.path, load_external_data=False)
    assert m.path.stat().st_size < 1_000_000
    ops = {n.op_type for n in proto.graph.node}
    if m.form == "qop":
        assert "QLinearConv" in ops and "Conv" not in ops
    else:
        assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops and "QLinearConv" not in ops
    # Per-tensor: every scale and zero point holds one value (a scalar; the QDQ form's int32
    # bias scales, input scale x weight scale, are stored with shape [1]).
    qparams = [t for t in proto.graph.initializer if t.name.endswith(("_scale", "_zero_point"))]
    assert qparams
    assert all(math.prod(t.dims) == 1 for t in qparams), [(t.name, list(t.dims)) for t in qparams
                                                          if math.prod(t.dims) != 1][:3]
    external = [t for t in proto.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    if m.graph_only:
        assert external, "graph-only: big initializers point at absent external data"
        assert {t.data_type for t in external} <= {TensorProto.INT8, TensorProto.INT32}
        assert not list(OUT_DIR.glob("*.weights.bin")), "weight data is never committed"
    else:
        assert not external


@pytest.mark.parametrize("m", INT8, ids=lambda m: m.name)
def test_int8_model_imports_with_hand_checked_m_r(m) -> None:
    graph = load_graph(m.path)
    act, with_w = EXPECTED_M_R[m.name]
    assert m_r(graph, False) == act
    assert m_r(graph, True) == with_w
    assert act <= peak_live(graph, None, False)
    int8_acts = [t for t in graph.tensors.values() if t.kind is TensorKind.ACTIVATION and t.dtype == "int8"]
    assert int8_acts and all(t.bytes == math.prod(t.shape) for t in int8_acts), "1 byte per int8 element"


@pytest.mark.parametrize("m", [m for m in INT8 if m.form == "qop"], ids=lambda m: m.name)
def test_qoperator_form_has_no_float_activations_between_qlinear_ops(m) -> None:
    graph = load_graph(m.path)
    ops = graph.operators
    floats = [t for t in graph.tensors.values() if t.kind is TensorKind.ACTIVATION and t.dtype == "float"]
    # The graph input is read by the one input QuantizeLinear; the output is written by a DequantizeLinear.
    for name in graph.inputs:
        assert {ops[c].op_type for c in graph.tensors[name].consumers} == {"QuantizeLinear"}
    for name in graph.outputs:
        assert ops[graph.tensors[name].producer].op_type == "DequantizeLinear"
    if not m.float_ops:
        assert floats == [], [t.name for t in floats[:5]]
        assert sum(op.op_type == "QuantizeLinear" for op in ops) == len(graph.inputs)
        return
    # Otherwise float only in DequantizeLinear -> float op -> QuantizeLinear islands.
    assert floats
    for t in floats:
        producer = ops[t.producer].op_type
        readers = {ops[c].op_type for c in t.consumers}
        if producer == "DequantizeLinear":
            assert readers and readers <= set(m.float_ops), t.name
        else:
            assert producer in m.float_ops and readers == {"QuantizeLinear"}, t.name


def _compile_and_simulate(m, tmp_path: Path, capsys) -> dict:
    out = tmp_path / m.name
    assert main(["compile", "-q", str(m.path), "--capacity", "M_R", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["simulate", "-q", "--json", str(m.path), str(out / "plan.json")]) == 0
    return json.loads(capsys.readouterr().out)


def _assert_bit_exact(result: dict) -> None:
    assert result["match"], result
    assert not result["corruptions"]
    assert result["outputs"] and all(o["bit_exact"] for o in result["outputs"]), result["outputs"]


def test_smallest_int8_model_plans_at_m_r_and_simulates_bit_exactly(tmp_path, capsys) -> None:
    m = BY_NAME[FAST_E2E]
    result = _compile_and_simulate(m, tmp_path, capsys)
    _assert_bit_exact(result)
    assert not result["random_weights"], "tiny_cnn_int8 carries its real quantized weights"


@pytest.mark.slow
@pytest.mark.parametrize("m", [m for m in INT8 if m.name != FAST_E2E], ids=lambda m: m.name)
def test_int8_model_plans_at_m_r_and_simulates_bit_exactly(m, tmp_path, capsys) -> None:
    result = _compile_and_simulate(m, tmp_path, capsys)
    _assert_bit_exact(result)
    assert result["random_weights"] == m.graph_only


@pytest.mark.slow
def test_quantize_script_regenerates_the_tiny_models(tmp_path) -> None:
    from models.quantize import quantize_source

    entries = [m for m in INT8 if m.source == "tiny_cnn"]
    written = quantize_source(entries, dest=tmp_path)
    for m, path in zip(entries, written):
        a = onnx.load_model(path, load_external_data=False)
        b = onnx.load_model(m.path, load_external_data=False)
        assert [n.op_type for n in a.graph.node] == [n.op_type for n in b.graph.node]
        assert sorted((t.name, tuple(t.dims), t.data_type) for t in a.graph.initializer) == sorted(
            (t.name, tuple(t.dims), t.data_type) for t in b.graph.initializer)
        assert m_r(load_graph(path), False) == EXPECTED_M_R[m.name][0]
