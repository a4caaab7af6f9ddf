"""ONNX importer: every bullet of issue 2, each on a small hand-built model with hand-computed
sizes.  Sizes: float32 = 4 bytes per element unless said otherwise."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from stowage import cli
from stowage.errors import ModelError
from stowage.ir.dtypes import element_bits, tensor_bytes
from stowage.ir.graph import TensorKind
from stowage.ir.lifetimes import lifetimes, m_r, summarize
from stowage.ir.onnx_import import _collect_shapes, _infer_shapes, import_model, load_graph, read_model

F = TensorProto.FLOAT


def vi(name: str, shape, elem: int = F) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def model(nodes, inputs, outputs, initializer=(), value_info=(), opset: int = 17, extra_opsets=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializer), value_info=list(value_info))
    ops = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, v) for d, v in extra_opsets)]
    return helper.make_model(g, opset_imports=ops)


def weight_matmul_model() -> onnx.ModelProto:
    """x[1,64] @ W[64,64] -> y[1,64].  W = 16,384 bytes, large enough to go external."""
    w = numpy_helper.from_array(np.ones((64, 64), dtype=np.float32), "W")
    return model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
                 [vi("x", [1, 64])], [vi("y", [1, 64])], initializer=[w])


# --- external data -------------------------------------------------------------------------


def test_graph_only_file_imports_without_its_external_data(tmp_path: Path):
    path = tmp_path / "m.onnx"
    onnx.save(weight_matmul_model(), str(path), save_as_external_data=True,
              all_tensors_to_one_file=True, location="m.bin", size_threshold=0)
    full = summarize(load_graph(path))
    (tmp_path / "m.bin").unlink()
    g = load_graph(path)
    s = summarize(g)
    assert s.weight_bytes == 64 * 64 * 4 == full.weight_bytes
    # MatMul reads x (256 B) and W (16,384 B) and writes y (256 B).
    assert s.m_r_with_weights == 256 + 16384 + 256
    assert s.m_r_without_weights == 512


@pytest.mark.parametrize("location", ["../outside.bin", "sub/../../outside.bin", "/etc/passwd"])
def test_external_data_escaping_the_model_folder_is_refused(tmp_path: Path, location: str):
    m = weight_matmul_model()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", location
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    with pytest.raises(ModelError, match=r"external data location .* (escapes|is absolute)"):
        read_model(path)


def test_external_data_inside_a_subfolder_is_fine(tmp_path: Path):
    m = weight_matmul_model()
    (tmp_path / "data").mkdir()
    onnx.save(m, str(tmp_path / "m.onnx"), save_as_external_data=True, location="data/w.bin",
              size_threshold=0)
    assert summarize(load_graph(tmp_path / "m.onnx")).weight_bytes == 16384


def test_large_embedded_weights_are_sized_but_caller_model_untouched():
    m = weight_matmul_model()
    g = import_model(m)
    assert g.buffers[g.tensor_buffer["W"]].bytes == 16384
    assert len(m.graph.initializer[0].raw_data) == 16384  # import worked on a copy


# --- old-style models, dtypes ---------------------------------------------------------------


def test_old_style_initializers_listed_as_inputs_are_weights():
    m = weight_matmul_model()
    m.graph.input.append(vi("W", [64, 64]))
    g = import_model(m)
    assert g.inputs == ("x",)
    assert g.tensors["W"].kind is TensorKind.WEIGHT
    assert summarize(g).input_bytes == 256


def test_every_onnx_element_type_has_a_size():
    for name, value in TensorProto.DataType.items():
        if name == "UNDEFINED":
            continue
        assert element_bits(value) > 0, name
    with pytest.raises(ModelError, match="unsupported ONNX element type"):
        element_bits(TensorProto.UNDEFINED)


@pytest.mark.parametrize(
    "elem, shape, expected",
    [
        (TensorProto.INT4, (3,), 2),        # 12 bits -> 2 bytes
        (TensorProto.UINT4, (4,), 2),       # 16 bits
        (TensorProto.FLOAT4E2M1, (5,), 3),  # 20 bits -> 3 bytes
        (TensorProto.INT4, (3, 5), 8),      # 60 bits -> 8 bytes
        (TensorProto.BOOL, (7,), 7),
        (TensorProto.COMPLEX128, (2,), 32),
        (TensorProto.FLOAT, (), 4),         # a scalar is one element
    ],
)
def test_sub_byte_types_pack_to_whole_bytes(elem, shape, expected):
    assert tensor_bytes(shape, elem) == expected
    assert tensor_bytes(shape, elem, element_bytes=1) == max(1, int(np.prod(shape)))


def test_int4_tensor_in_a_model():
    # x: int4[3,5] = 60 bits = 8 bytes; Cast to float: y = 15 * 4 = 60 bytes.
    m = model([helper.make_node("Cast", ["x"], ["y"], to=F)],
              [vi("x", [3, 5], TensorProto.INT4)], [vi("y", [3, 5])], opset=21)
    g = import_model(m)
    assert g.tensors["x"].bytes == 8 and g.tensors["x"].dtype == "int4"
    assert m_r(g) == 68


# --- weights and views ----------------------------------------------------------------------


def test_constant_nodes_and_weight_only_subgraphs_are_weights():
    # shape=[4,4] (initializer) -> ConstantOfShape -> w -> Transpose -> t: all weights, folded.
    # k = Constant [4,4].  Computing ops: MatMul(x, t) -> mm ; Add(mm, k) -> y.
    shape = numpy_helper.from_array(np.array([4, 4], dtype=np.int64), "shape")
    k = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "kval")
    m = model(
        [helper.make_node("ConstantOfShape", ["shape"], ["w"], name="cos"),
         helper.make_node("Transpose", ["w"], ["t"], name="tr"),
         helper.make_node("Constant", [], ["k"], value=k, name="const"),
         helper.make_node("MatMul", ["x", "t"], ["mm"], name="mm"),
         helper.make_node("Add", ["mm", "k"], ["y"], name="add")],
        [vi("x", [4, 4])], [vi("y", [4, 4])], initializer=[shape])
    g = import_model(m)
    assert [op.name for op in g.computing_ops] == ["mm", "add"]
    for name in ("shape", "w", "t", "k"):
        assert g.tensors[name].kind is TensorKind.WEIGHT, name
    s = summarize(g)
    assert s.weight_bytes == 64 + 64          # t and k (16 floats each) are read by computing ops
    assert s.m_r_with_weights == 3 * 64       # MatMul: x, t, mm
    assert s.m_r_without_weights == 2 * 64    # MatMul: x, mm


def test_view_chain_shares_one_buffer():
    # a = Relu(x)[1,2,3,4] (96 B); Reshape, Flatten, Unsqueeze, Squeeze, Identity, Dropout
    # (mask unused) are views of a; y = Relu(g).
    shape = numpy_helper.from_array(np.array([2, 12], dtype=np.int64), "shape")
    axes = numpy_helper.from_array(np.array([0], dtype=np.int64), "axes")
    m = model(
        [helper.make_node("Relu", ["x"], ["a"], name="r1"),
         helper.make_node("Reshape", ["a", "shape"], ["b"]),
         helper.make_node("Flatten", ["b"], ["c"], axis=1),
         helper.make_node("Unsqueeze", ["c", "axes"], ["d"]),
         helper.make_node("Squeeze", ["d", "axes"], ["e"]),
         helper.make_node("Identity", ["e"], ["f"]),
         helper.make_node("Dropout", ["f"], ["g", "mask"]),
         helper.make_node("Relu", ["g"], ["y"], name="r2")],
        [vi("x", [1, 2, 3, 4])], [vi("y", [2, 12])], initializer=[shape, axes])
    g = import_model(m)
    assert [op.name for op in g.computing_ops] == ["r1", "r2"]
    assert len({g.tensor_buffer[n] for n in "abcdefg"}) == 1
    buf = g.buffers[g.tensor_buffer["a"]]
    assert buf.bytes == 96 and buf.producer == 0 and buf.consumers == (7,)
    # x, a at step 0; a, y at step 1: 192 bytes each.
    assert lifetimes(g).live_bytes == (192, 192)


def test_dropout_whose_mask_is_used_is_not_a_view():
    m = model(
        [helper.make_node("Dropout", ["x"], ["d", "mask"], name="drop"),
         helper.make_node("Cast", ["mask"], ["mf"], to=F, name="cast"),
         helper.make_node("Add", ["d", "mf"], ["y"], name="add")],
        [vi("x", [1, 8])], [vi("y", [1, 8])])
    g = import_model(m)
    assert [op.name for op in g.computing_ops] == ["drop", "cast", "add"]
    assert g.tensor_buffer["d"] != g.tensor_buffer["x"]


# --- symbolic dims --------------------------------------------------------------------------


def symbolic_model() -> onnx.ModelProto:
    x = vi("x", ["batch", "seq"])
    z = vi("z", [None, 4])  # unnamed dynamic dim
    return model(
        [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("ReduceSum", ["h"], ["s"], keepdims=1),
         helper.make_node("Relu", ["z"], ["y2"])],
        [x, z], [vi("s", ["batch", 1]), vi("y2", [None, 4])],
        value_info=[vi("h", ["batch", "seq"])])


def test_unbound_symbolic_dims_are_all_named_with_how_to_bind():
    with pytest.raises(ModelError) as exc:
        import_model(symbolic_model())
    msg = str(exc.value)
    for part in ("'batch'", "'seq'", "'z[0]'", "--dim batch=1", "--dim seq=1", "--dim 'z[0]=1'"):
        assert part in msg, part
    with pytest.raises(ModelError, match="'seq'") as exc:
        import_model(symbolic_model(), dims={"batch": 2})
    assert "'batch'" not in str(exc.value)


def test_bound_symbolic_dims():
    g = import_model(symbolic_model(), dims={"batch": 2, "seq": 3, "z[0]": 5})
    assert g.tensors["x"].shape == (2, 3) and g.tensors["h"].shape == (2, 3)
    # ReduceSum without axes reduces every axis: [1, 1], whatever the stale declaration
    # [batch, 1] says (issue 17: declared shapes are checked, and inference wins).
    assert g.tensors["s"].shape == (1, 1)
    assert any("tensor 's': the model declares shape [2, 1]" in n for n in g.import_notes)
    assert g.tensors["z"].bytes == 5 * 4 * 4
    assert dict(g.dims) == {"batch": 2, "seq": 3, "z[0]": 5}


# --- shape inference fallback and opaque ops ------------------------------------------------


def fastgelu_model() -> onnx.ModelProto:
    return model(
        [helper.make_node("FastGelu", ["x"], ["g"], domain="com.microsoft", name="fg"),
         helper.make_node("Relu", ["g"], ["y"], name="relu")],
        [vi("x", [2, 8])], [vi("y", None)], extra_opsets=[("com.microsoft", 1)])


def test_symbolic_shape_inference_resolves_what_onnx_cannot():
    m = fastgelu_model()
    assert "g" not in _collect_shapes(_infer_shapes(m).graph)  # onnx alone gives up
    g = import_model(m)
    assert g.tensors["g"].shape == (2, 8) and g.tensors["y"].bytes == 64
    op = g.operators[0]
    assert op.opaque and "com.microsoft" in op.opaque_reason and op.extra_bytes == 0
    assert not g.operators[1].opaque


def test_unknown_custom_op_with_declared_shape_imports_opaque():
    m = model([helper.make_node("Foo", ["x"], ["y"], domain="com.example", name="foo")],
              [vi("x", [2, 8])], [vi("y", [2, 3])], extra_opsets=[("com.example", 1)])
    g = import_model(m)
    assert g.operators[0].opaque and m_r(g) == 64 + 24


def test_unresolvable_shape_is_an_error_naming_the_tensor():
    m = model([helper.make_node("Foo", ["x"], ["u"], domain="com.example", name="foo"),
               helper.make_node("Relu", ["u"], ["y"])],
              [vi("x", [2, 8])], [vi("y", None)], extra_opsets=[("com.example", 1)])
    with pytest.raises(ModelError, match="shape of tensor 'u' \\(output of Foo 'foo'\\) cannot be resolved"):
        import_model(m)


def if_model() -> onnx.ModelProto:
    """x0[1,8] -> Relu -> x (outer value read inside both branches).
    then: a = Relu(x); t = Relu(a)       else: e = Sigmoid(x)."""
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["t"])],
                               "then", [], [vi("t", [1, 8])])
    else_g = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["e"])], "else", [], [vi("e", [1, 8])])
    return model(
        [helper.make_node("Relu", ["x0"], ["x"], name="pre"),
         helper.make_node("Sigmoid", ["x0"], ["q"], name="side"),
         helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="if"),
         helper.make_node("Add", ["y", "q"], ["out"], name="post")],
        [vi("x0", [1, 8]), vi("c", [], TensorProto.BOOL)], [vi("out", [1, 8])])


def test_if_is_opaque_with_branch_peak_and_outer_reads():
    g = import_model(if_model())
    op = next(o for o in g.operators if o.op_type == "If")
    # Outer-scope 'x' becomes an input of the If, so it stays live until the If runs.
    assert op.inputs == ("c", "x")
    # then-branch own buffers: a (32 B); t is the If's output, x is outer: peak 32.
    # else-branch: e is the output, x outer: 0.  Extra = 32.
    assert op.opaque and op.extra_bytes == 32 and "32 bytes" in op.opaque_reason
    lt = lifetimes(g)
    x = g.tensor_buffer["x"]
    assert (lt.first[x], lt.last[x]) == (0, 2)
    # Step 2 (If): c 1 + x 32 + q 32 + y 32 + extra 32 = 129.
    assert lt.live_bytes[2] == 129
    assert g.op_dependencies()[op.index] == frozenset({0})


def loop_model(trip: int = 3) -> onnx.ModelProto:
    """Loop M=3 over carried v[1,8] (init x0), reading outer 'x':
    body: v_out = Add(v_in, x); s = Relu(v_out) (scan output); cond_out = Identity(cond_in)."""
    body = helper.make_graph(
        [helper.make_node("Add", ["v_in", "x"], ["v_out"]), helper.make_node("Relu", ["v_out"], ["s"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [vi("i", [], TensorProto.INT64), vi("cond_in", [], TensorProto.BOOL), vi("v_in", None)],
        [vi("cond_out", [], TensorProto.BOOL), vi("v_out", None), vi("s", None)])
    inits = [numpy_helper.from_array(np.array(trip, dtype=np.int64), "M"),
             numpy_helper.from_array(np.array(True), "cond")]
    return model(
        [helper.make_node("Relu", ["x0"], ["x"], name="pre"),
         helper.make_node("Loop", ["M", "cond", "x0"], ["vf", "ss"], body=body, name="loop")],
        [vi("x0", [1, 8])], [vi("vf", [1, 8]), vi("ss", None)], initializer=inits)


def test_loop_is_opaque_with_body_peak_and_scan_output_sized_by_trip_count():
    g = import_model(loop_model(3))
    op = next(o for o in g.operators if o.op_type == "Loop")
    assert op.inputs == ("M", "cond", "x0", "x")
    # Body: step Add: v_in 32 + v_out 32 = 64 (x is outer); step Relu: v_out + s = 64.
    # i and cond_in are never read by a computing op (Identity is a view): peak 64.
    assert op.extra_bytes == 64
    assert g.tensors["ss"].shape == (3, 1, 8) and g.tensors["ss"].bytes == 96


def test_scan_is_opaque_with_body_peak():
    # State s[1,4]; scan input X[3,4] along axis 0 -> slices xt[4].
    # body: s_out = Add(s_in, xt); yt = Relu(s_out).  Step Add: s_in 16 + xt 16 + s_out 16 = 48;
    # step Relu: s_out + yt = 32.  Peak 48.
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "xt"], ["s_out"]), helper.make_node("Relu", ["s_out"], ["yt"])],
        "body", [vi("s_in", [1, 4]), vi("xt", [4])], [vi("s_out", [1, 4]), vi("yt", [1, 4])])
    m = model([helper.make_node("Scan", ["s0", "X"], ["sf", "Y"], body=body, num_scan_inputs=1, name="scan")],
              [vi("s0", [1, 4]), vi("X", [3, 4])], [vi("sf", [1, 4]), vi("Y", [3, 1, 4])])
    g = import_model(m)
    op = g.operators[0]
    assert op.opaque and op.extra_bytes == 48
    # M_R: s0 16 + X 48 + sf 16 + Y 48 + extra 48.
    assert m_r(g) == 176


def test_nested_control_flow_propagates_outer_reads():
    # Top: z = Relu(x) (step 0), w = Sigmoid(x) (step 1), Loop (step 2) whose body holds an If
    # whose then-branch reads top-level z: the Loop must read z, so z lives until step 2.
    then_g = helper.make_graph([helper.make_node("Add", ["v_in", "z"], ["t"])], "then", [], [vi("t", [1, 8])])
    else_g = helper.make_graph([helper.make_node("Identity", ["v_in"], ["e"])], "else", [], [vi("e", [1, 8])])
    body = helper.make_graph(
        [helper.make_node("If", ["cond_in"], ["v_out"], then_branch=then_g, else_branch=else_g),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [vi("i", [], TensorProto.INT64), vi("cond_in", [], TensorProto.BOOL), vi("v_in", [1, 8])],
        [vi("cond_out", [], TensorProto.BOOL), vi("v_out", [1, 8])])
    inits = [numpy_helper.from_array(np.array(2, dtype=np.int64), "M"),
             numpy_helper.from_array(np.array(True), "cond")]
    m = model(
        [helper.make_node("Relu", ["x"], ["z"], name="z"),
         helper.make_node("Sigmoid", ["x"], ["w"], name="w"),
         helper.make_node("Loop", ["M", "cond", "w"], ["vf"], body=body, name="loop")],
        [vi("x", [1, 8])], [vi("vf", [1, 8])], initializer=inits)
    g = import_model(m)
    loop = g.operators[2]
    assert "z" in loop.inputs and loop.opaque
    lt = lifetimes(g)
    assert lt.last[g.tensor_buffer["z"]] == 2
    # Body: the If (one step) reads cond_in 1 + v_in 32 and writes v_out 32; its own extra is
    # 0 (then: t is its output, v_in/z are outer; else: a view).  Body peak = 65.
    assert loop.extra_bytes == 65


def test_cycle_through_subgraph_reference_is_reported():
    # 'b' feeds the If through its branch, and the If's output feeds 'b': a cycle.
    then_g = helper.make_graph([helper.make_node("Relu", ["b"], ["t"])], "then", [], [vi("t", [1, 8])])
    else_g = helper.make_graph([helper.make_node("Relu", ["b"], ["e"])], "else", [], [vi("e", [1, 8])])
    m = model(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="if"),
         helper.make_node("Relu", ["y"], ["b"], name="r")],
        [vi("c", [], TensorProto.BOOL)], [vi("b", [1, 8])])
    with pytest.raises(ModelError, match=r"cycle: .*if.*r|cycle: .*r.*if"):
        import_model(m)


def test_file_order_not_topological_is_sorted():
    m = model([helper.make_node("Relu", ["a"], ["y"], name="second"),
               helper.make_node("Relu", ["x"], ["a"], name="first")],
              [vi("x", [1, 4])], [vi("y", [1, 4])])
    g = import_model(m)
    assert [op.name for op in g.computing_ops] == ["first", "second"]
    assert g.is_topological(g.file_order())


# --- progress -------------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_and_silenced_by_q(tmp_path: Path, monkeypatch, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(weight_matmul_model(), str(path))
    err = _Tty()
    monkeypatch.setattr("sys.stderr", err)
    assert cli.main(["inspect", str(path)]) == 0
    assert "reading m.onnx" in err.getvalue() and "shape inference" in err.getvalue()
    err2 = _Tty()
    monkeypatch.setattr("sys.stderr", err2)
    assert cli.main(["-q", "inspect", str(path)]) == 0
    assert err2.getvalue() == ""
    assert cli.main(["inspect", "-q", str(path)]) == 0
    assert err2.getvalue() == ""
