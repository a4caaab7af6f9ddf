"""``stowage inspect`` on the onnx wheel's light model zoo and on a hand-built graph whose every
number is computed by hand below."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from stowage import cli
from stowage.ir.lifetimes import lifetimes
from stowage.ir.onnx_import import load_graph
from tests.conftest import light_models

F = TensorProto.FLOAT


def inspect_json(capsys, *argv: str) -> dict:
    assert cli.main(["inspect", "--json", "--in-place", "off", *argv]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return json.loads(out)


@pytest.mark.parametrize("path", light_models(), ids=lambda p: p.stem)
def test_every_light_zoo_model_inspects_plausibly(path: Path, capsys):
    d = inspect_json(capsys, str(path))
    # Every model in the light zoo is an ImageNet classifier: 1x3x224x224 float32 in,
    # 1x1000 float32 out.
    assert d["input_bytes"] == 3 * 224 * 224 * 4 == 602_112
    assert d["output_bytes"] == 1000 * 4
    assert d["opaque"] == []
    assert 0 < d["computing_operators"] <= d["operators"]
    assert d["buffers"] <= d["tensors"]
    assert d["weight_bytes"] > 1_000_000  # at least ~250k parameters: real networks
    # Peak live bytes at any step include the running operator's operands, so the peak in any
    # order is at least M_R; leaving weights out can only lower both.
    assert d["largest_activation"] <= d["m_r_without_weights"] <= d["m_r_with_weights"]
    assert d["m_r_with_weights"] <= d["peak_live_file_order_with_weights"]
    assert d["m_r_without_weights"] <= d["peak_live_file_order_without_weights"]
    assert d["peak_live_file_order_without_weights"] <= d["activation_bytes"] + d["input_bytes"]


def test_resnet50_figures(capsys):
    d = inspect_json(capsys, str(next(p for p in light_models() if p.stem == "light_resnet50")))
    # Largest activation: the 1x256x56x56 float32 outputs of the first stage = 3,211,264 bytes.
    assert d["largest_activation"] == 256 * 56 * 56 * 4 == 3_211_264
    # M_R without weights: a residual Add in stage 1 reads two of them and writes a third.
    assert d["m_r_without_weights"] == 3 * 3_211_264
    # 25,557,032 trainable parameters + 53,120 BatchNorm running mean/var values, float32.
    assert d["weight_bytes"] == (25_557_032 + 53_120) * 4


def test_vgg19_and_alexnet_figures(capsys):
    vgg = inspect_json(capsys, str(next(p for p in light_models() if p.stem == "light_vgg19")))
    assert vgg["largest_activation"] == 64 * 224 * 224 * 4            # conv1 output
    assert vgg["weight_bytes"] == 143_667_240 * 4                     # VGG-19 parameters
    # M_R with weights: fc6 reads 25088 floats and a 25088x4096 matrix, writes 4096 (+ bias).
    assert vgg["m_r_with_weights"] == (25088 + 25088 * 4096 + 4096 + 4096) * 4
    alex = inspect_json(capsys, str(next(p for p in light_models() if p.stem == "light_bvlc_alexnet")))
    assert alex["weight_bytes"] == 60_965_224 * 4                     # AlexNet parameters


def test_element_bytes_override_on_resnet50(capsys):
    d = inspect_json(capsys, str(next(p for p in light_models() if p.stem == "light_resnet50")),
                     "--element-bytes", "1")
    assert d["largest_activation"] == 256 * 56 * 56 and d["element_bytes"] == 1


def residual_model() -> onnx.ModelProto:
    """x[1,16] f32 (64 B)
    step 0  a = Relu(x)
    step 1  b = MatMul(a, W)        W[16,16] = 1024 B
    step 2  c = Add(b, x)           residual: x stays live until here
            r = Reshape(c, [4,4])   view of c (one buffer); 'shape' is 2 int64 = 16 B
    step 3  y = Softmax(r)          y[4,4] = 64 B
    """
    w = numpy_helper.from_array(np.ones((16, 16), dtype=np.float32), "W")
    shape = numpy_helper.from_array(np.array([4, 4], dtype=np.int64), "shape")
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"], name="relu"),
         helper.make_node("MatMul", ["a", "W"], ["b"], name="mm"),
         helper.make_node("Add", ["b", "x"], ["c"], name="add"),
         helper.make_node("Reshape", ["c", "shape"], ["r"], name="view"),
         helper.make_node("Softmax", ["r"], ["y"], name="softmax")],
        "residual", [helper.make_tensor_value_info("x", F, [1, 16])],
        [helper.make_tensor_value_info("y", F, [4, 4])], initializer=[w, shape])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_hand_built_residual_graph(tmp_path: Path, capsys):
    path = tmp_path / "residual.onnx"
    onnx.save(residual_model(), str(path))
    g = load_graph(path)
    # Lifetimes without weights: x [0,2], a [0,1], b [1,2], c=r [2,3], y [3,3].
    lt = lifetimes(g, weights_in_compute_level=False)
    bid = g.tensor_buffer
    assert {n: (lt.first[bid[n]], lt.last[bid[n]]) for n in "xabcy"} == {
        "x": (0, 2), "a": (0, 1), "b": (1, 2), "c": (2, 3), "y": (3, 3)}
    # live: step0 x+a = 128; step1 x+a+b = 192; step2 x+b+c = 192; step3 c+y = 128.
    assert lt.live_bytes == (128, 192, 192, 128)
    # With weights W (1024 B) is live at step 1 only: 192 + 1024.
    assert lifetimes(g, weights_in_compute_level=True).live_bytes == (128, 1216, 192, 128)

    d = inspect_json(capsys, str(path))
    assert d["operators"] == 5 and d["computing_operators"] == 4     # Reshape is a view
    assert d["tensors"] == 8                                          # x a W b shape c r y
    assert d["buffers"] == 6                                          # x a W b c(=r) y; shape unread
    assert d["weight_bytes"] == 1024                                  # 'shape' feeds only a view
    assert d["activation_bytes"] == 4 * 64                            # a b c y
    assert d["input_bytes"] == 64 and d["output_bytes"] == 64
    assert d["largest_activation"] == 64
    # M_R with weights: MatMul a + W + b = 64 + 1024 + 64.  Without: Add b + x + c = 192.
    assert d["m_r_with_weights"] == 1152 and d["m_r_without_weights"] == 192
    assert d["peak_live_file_order_with_weights"] == 1216
    assert d["peak_live_file_order_without_weights"] == 192

    # 8-bit setting: every element one byte, so activations are 16 B and W 256 B.
    d8 = inspect_json(capsys, str(path), "--element-bytes", "1")
    assert d8["m_r_with_weights"] == 16 + 256 + 16 and d8["peak_live_file_order_with_weights"] == 48 + 256

    assert cli.main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "largest activation                      64 (y)" in text
    assert "M_R with weights                        1,152" in text
    assert "opaque operators" not in text


def test_inspect_text_shows_opaque_operators_and_why(tmp_path: Path, capsys):
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["t"])],
                               "then", [], [helper.make_tensor_value_info("t", F, [1, 8])])
    else_g = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", F, [1, 8])])
    g = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="branch"),
         helper.make_node("FastGelu", ["y"], ["z"], domain="com.microsoft", name="gelu")],
        "g", [helper.make_tensor_value_info("x", F, [1, 8]), helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("z", F, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    path = tmp_path / "cf.onnx"
    onnx.save(m, str(path))
    assert cli.main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "opaque operators (2):" in out
    assert "branch (If): control flow (If): runs as one step; working memory = peak of its branches, 32 bytes" in out
    assert "gelu (FastGelu): non-standard domain 'com.microsoft'" in out
    # If: c 1 + x 32 + y 32 + branch peak 32 = 97.
    assert "M_R with weights                        97" in out


# ---------------------------------------------------------------------------------------
# inspect --per-op on the tiny CNN (numbers by hand from models/build.py's tiny_cnn)
# ---------------------------------------------------------------------------------------
def _per_op(capsys, *argv: str) -> dict[str, dict]:
    from models.build import TINY_PATH

    assert cli.main(["inspect", str(TINY_PATH), "--per-op", "--json", *argv]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return {r["op"]: r for r in json.loads(out)["per_op"]}


def test_per_op_rows_of_the_tiny_cnn(capsys):
    on = _per_op(capsys, "--in-place", "on")
    stem = on["stem"]
    # Conv 3->4 channels, 3x3, 32x32 output: 4*32*32 outputs x 3*3*3 MACs each.
    assert stem["macs"] == 4 * 32 * 32 * 27 == 110_592
    assert stem["input_bytes"] == 3 * 32 * 32 * 4 == 12_288
    assert stem["weight_bytes"] == (4 * 3 * 3 * 3 + 4) * 4 == 448  # kernel + bias, float32
    assert stem["output_bytes"] == 4 * 32 * 32 * 4 == 16_384
    assert stem["footprint_bytes"] == 12_288 + 448 + 16_384
    assert stem["in_place_into"] is None
    # The Relu after it runs in place: its output is its operand's buffer, counted once.
    relu = on["stem_relu"]
    assert relu["in_place_into"] == "stem" and relu["macs"] is None and relu["cost_unit"] == "FLOPs"
    assert relu["footprint_bytes"] == 16_384
    # The residual Add reads two 8 KiB tensors and writes over one of them.
    add = on["block_add"]
    assert add["input_bytes"] == 2 * 8_192 and add["output_bytes"] == 8_192 and add["footprint_bytes"] == 16_384
    assert add["in_place_into"] == "block_proj"
    # Views and constant folds are left out (they are free); 25 operators do work.
    assert len(on) == 25 and sum(r["in_place_into"] is not None for r in on.values()) == 9


def test_per_op_in_place_off_says_which_could(capsys):
    off = _per_op(capsys, "--in-place", "off")
    relu = off["stem_relu"]
    assert relu["in_place_into"] is None and relu["can_run_in_place_into"] == "stem"
    assert relu["footprint_bytes"] == 2 * 16_384  # its own output buffer now
    assert off["stem"]["footprint_bytes"] == 29_120  # unchanged
    cli.main(["inspect", str(Path(__file__).resolve().parent.parent / "models" / "tiny_cnn.onnx"),
              "--per-op", "--in-place", "off"])
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if " stem_relu " in line)
    assert "can, into stem" in row and "32.00 KiB" in row
    assert text.splitlines()[0].startswith("25 operators (--in-place off")
