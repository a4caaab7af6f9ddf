"""Shapes are checked, not trusted (issue 17 item 4), and shapes static inference cannot give
(issue 13 item 3): declared ``value_info`` that disagrees with inference is overridden with a
warning and an import note; com.microsoft QLinear ops have shape rules; the rest comes from
one ONNX Runtime run.  Sizes: float32, 4 bytes per element."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from stowage import cli
from stowage.errors import ModelError
from stowage.ir.build import RawTensor
from stowage.ir.onnx_import import import_model, load_graph
from stowage.ir.onnx_shapes import contrib_shapes

F, I8, U8 = TensorProto.FLOAT, TensorProto.INT8, TensorProto.UINT8
MODELS = Path(__file__).resolve().parent.parent / "models"


def stale_model() -> onnx.ModelProto:
    """x[64, 64] -> Relu -> a -> Neg -> y, with a and y declared [1, 3] (12 bytes) although
    they are [64, 64] (16,384 bytes): the issue-17 case."""
    x = helper.make_tensor_value_info("x", F, [64, 64])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["a"], name="relu"),
                           helper.make_node("Neg", ["a"], ["y"], name="neg")], "stale", [x],
                          [helper.make_tensor_value_info("y", F, [1, 3])],
                          value_info=[helper.make_tensor_value_info("a", F, [1, 3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_stale_value_info_is_overridden_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="stowage.ir.onnx_shapes"):
        g = import_model(stale_model())
    assert g.tensors["a"].bytes == g.tensors["y"].bytes == 64 * 64 * 4
    assert len(g.import_notes) == 2
    assert "tensor 'a': the model declares shape [1, 3], but shape inference gives [64, 64]" in g.import_notes[0]
    assert sum("declares shape [1, 3]" in r.getMessage() for r in caplog.records) == 2


def test_stale_value_info_plans_real_sizes_and_simulates(tmp_path: Path, capsys):
    path = tmp_path / "stale.onnx"
    onnx.save(stale_model(), str(path))
    out = tmp_path / "out"
    assert cli.main(["compile", str(path), "-o", str(out), "-q"]) == 0
    plan = (out / "plan.json").read_text()
    assert '"bytes": 16384' in plan and '"bytes": 12' not in plan
    assert cli.main(["validate", str(path), str(out / "plan.json")]) == 0
    assert cli.main(["simulate", str(path), str(out / "plan.json")]) == 0
    assert "match" in capsys.readouterr().out
    assert cli.main(["inspect", str(path)]) == 0
    assert "the model declares shape [1, 3]" in capsys.readouterr().out


def test_contrib_rules_by_hand():
    """Each rule on hand-made shapes: GAP NCHW and NHWC, Concat of inputs 2, 5, 8 along the
    axis, QGemm like Gemm (A = input 0, B = input 3, transB), the shape-keeping ops."""
    def q(op, ins, out="o", **attrs):
        return helper.make_node(op, ins, [out], domain="com.microsoft", **attrs)

    s = {"x": RawTensor("x", (1, 8, 7, 7), I8), "h": RawTensor("h", (1, 7, 7, 8), U8),
         "a": RawTensor("a", (4, 16), U8), "b": RawTensor("b", (10, 16), U8), "zp": RawTensor("zp", (), U8),
         "c2": RawTensor("c2", (1, 3, 7, 7), I8)}
    sc = ["s", "z"]
    nodes = [q("QLinearGlobalAveragePool", ["x", *sc, *sc], "g1", channels_last=0),
             q("QLinearGlobalAveragePool", ["h", *sc, *sc], "g2", channels_last=1),
             q("QLinearConcat", [*sc, "x", *sc, "c2", *sc, "x", *sc], "cat", axis=-3),
             q("QGemm", ["a", *sc, "b", *sc, "", "s", "zp"], "fc", transB=1),
             q("QGemm", ["a", *sc, "b", *sc], "fcf", transB=1),
             q("QLinearSigmoid", ["x", *sc, *sc], "sg"), q("QLinearLeakyRelu", ["h", *sc, *sc], "lr"),
             q("QLinearSoftmax", ["a", *sc, *sc], "sm")]
    got = contrib_shapes(helper.make_graph(nodes, "g", [], []), s)
    assert got["g1"] == RawTensor("g1", (1, 8, 1, 1), I8)
    assert got["g2"] == RawTensor("g2", (1, 1, 1, 8), U8)
    assert got["cat"] == RawTensor("cat", (1, 19, 7, 7), I8)
    assert got["fc"] == RawTensor("fc", (4, 10), U8)
    assert got["fcf"] == RawTensor("fcf", (4, 10), F)  # no y_scale: a float result
    assert got["sg"].shape == (1, 8, 7, 7) and got["lr"].shape == (1, 7, 7, 8) and got["sm"].shape == (4, 16)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny_cnn_int8_qop"])
def test_raw_quantize_static_qoperator_file_imports_without_value_info(tmp_path: Path, name: str):
    """models/quantize.py writes value_info as a workaround; without it (what onnxruntime's
    quantize_static really writes) the rules give the same graph, and no ORT run is needed."""
    src = MODELS / "int8" / f"{name}.onnx"
    m = onnx.load(str(src))
    assert len(m.graph.value_info) > 0
    del m.graph.value_info[:]
    raw = tmp_path / "raw.onnx"
    onnx.save(m, str(raw))
    with_vi, without = load_graph(src), load_graph(raw)
    assert {n: t.bytes for n, t in without.tensors.items()} == {n: t.bytes for n, t in with_vi.tensors.items()}
    assert without.tensors["head_concat_out_quantized"].shape == (1, 32, 8, 8)
    assert without.tensors["logits_quantized"].shape == (1, 10)
    assert not any("ONNX Runtime run" in n for n in without.import_notes)


def inverse_model() -> onnx.ModelProto:
    """com.microsoft Inverse: neither onnx nor the symbolic engine knows it; ORT runs it."""
    x = helper.make_tensor_value_info("x", F, [2, 3, 3])
    g = helper.make_graph([helper.make_node("Inverse", ["x"], ["inv"], domain="com.microsoft", name="inv"),
                           helper.make_node("Relu", ["inv"], ["y"], name="relu")], "inv", [x],
                          [helper.make_tensor_value_info("y", F, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def test_shapes_by_execution_when_static_inference_gives_up(tmp_path: Path, capsys):
    m = inverse_model()
    graph = import_model(m)
    assert graph.tensors["inv"].shape == graph.tensors["y"].shape == (2, 3, 3)
    assert graph.tensors["y"].bytes == 72
    assert any("taken from one ONNX Runtime run on seeded inputs: 'inv', 'y'" in n for n in graph.import_notes)
    path = tmp_path / "inv.onnx"
    onnx.save(m, str(path))
    assert cli.main(["inspect", str(path)]) == 0
    assert "ONNX Runtime run" in capsys.readouterr().out


def custom_op_model(declared: bool) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", F, [4, 4])
    vi = [helper.make_tensor_value_info("c", F, [4, 2])] if declared else []
    g = helper.make_graph([helper.make_node("Mystery", ["x"], ["c"], domain="my.ops", name="mys"),
                           helper.make_node("Relu", ["c"], ["y"], name="relu")], "custom", [x],
                          [helper.make_tensor_value_info("y", F, None)], value_info=vi)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)])


def test_declared_shape_is_the_unchecked_last_resort():
    """An op nobody can infer or run: its declared shape is used (and said to be unchecked),
    and inference carries it downstream; without one, a one-line error saying why."""
    g = import_model(custom_op_model(True))
    assert g.tensors["c"].shape == g.tensors["y"].shape == (4, 2)
    assert any("value_info, unchecked" in n for n in g.import_notes)
    with pytest.raises(ModelError, match=r"shape of tensor 'c'.*running the model to find it failed") as exc:
        import_model(custom_op_model(False))
    assert "\n" not in str(exc.value)


@pytest.mark.slow
def test_executed_shapes_compile_validate_simulate(tmp_path: Path, capsys):
    path = tmp_path / "inv.onnx"
    onnx.save(inverse_model(), str(path))
    out = tmp_path / "out"
    assert cli.main(["compile", str(path), "-o", str(out), "-q"]) == 0
    assert cli.main(["validate", str(path), str(out / "plan.json")]) == 0
    assert cli.main(["simulate", str(path), str(out / "plan.json")]) == 0
    assert "match" in capsys.readouterr().out
