"""Small graphs and a random-DAG strategy shared by the spill, baseline, heuristic and CLI tests."""

from __future__ import annotations

import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper

from stowage.ir.graph import Graph
from stowage.ir.onnx_import import import_model
from stowage.targets.hierarchy import Hierarchy, Level


def fanout_model(width: int = 16) -> onnx.ModelProto:
    """x -> a=Relu(x), b=Sigmoid(x), c=Tanh(x); d=Add(a,b); y=Add(d,c).  Every tensor is
    ``width`` bytes at element_bytes=1.  M_R = 3*width (the Adds); every order has a step
    with 4 live tensors (x must stay until its third reader), so peak live = 4*width."""
    v = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, width])  # noqa: E731
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Sigmoid", ["x"], ["b"], name="sig"),
        helper.make_node("Tanh", ["x"], ["c"], name="tanh"),
        helper.make_node("Add", ["a", "b"], ["d"], name="add_d"),
        helper.make_node("Add", ["d", "c"], ["y"], name="add_y"),
    ]
    g = helper.make_graph(nodes, "fanout", [v("x")], [v("y")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def two_level(capacity: int | None, alignment: int = 1) -> Hierarchy:
    return Hierarchy(name="test2", levels=(Level("sram", capacity, alignment), Level("dram", None, alignment)),
                     compute_level="sram", weights_home="dram", inputs_home="dram", outputs_home="dram")


def three_level(capacity: int | None, mid: int | None) -> Hierarchy:
    return Hierarchy(name="test3", levels=(Level("sram", capacity, 1), Level("hbm", mid, 1), Level("ddr", None, 1)),
                     compute_level="sram", weights_home="ddr", inputs_home="ddr", outputs_home="ddr")


@st.composite
def random_graphs(draw, max_ops: int = 10) -> Graph:
    """Random DAGs of Relu / Add / Concat / MatMul-with-weight nodes over [1, w] tensors,
    imported at element_bytes=1."""
    return import_model(draw(random_models(max_ops)), element_bytes=1)


@st.composite
def random_models(draw, max_ops: int = 10) -> onnx.ModelProto:
    """The ONNX models behind ``random_graphs`` (float32; weights are drawn small integers so
    that results are exact in any summation order)."""
    n = draw(st.integers(2, max_ops))
    widths = {"x": draw(st.sampled_from([4, 8, 12, 16, 24]))}
    nodes, inits, used = [], [], set()
    for i in range(n):
        names = list(widths)
        kind = draw(st.sampled_from(["relu", "add", "concat", "matmul"]))
        a = draw(st.sampled_from(names))
        out = f"t{i}"
        if kind == "add":
            same = [m for m in names if widths[m] == widths[a]]
            b = draw(st.sampled_from(same))
            nodes.append(helper.make_node("Add", [a, b], [out], name=f"n{i}"))
            widths[out] = widths[a]
            used |= {a, b}
        elif kind == "concat" and widths[a] <= 32:
            b = draw(st.sampled_from(names))
            nodes.append(helper.make_node("Concat", [a, b], [out], name=f"n{i}", axis=1))
            widths[out] = widths[a] + widths[b]
            used |= {a, b}
        elif kind == "matmul":
            w_out = draw(st.sampled_from([4, 8, 16]))
            wname = f"w{i}"
            vals = draw(st.lists(st.integers(-2, 2), min_size=1, max_size=4))
            inits.append(helper.make_tensor(wname, TensorProto.FLOAT, [widths[a], w_out],
                                            [float(vals[k % len(vals)]) for k in range(widths[a] * w_out)]))
            nodes.append(helper.make_node("MatMul", [a, wname], [out], name=f"n{i}"))
            widths[out] = w_out
            used.add(a)
        else:
            nodes.append(helper.make_node("Relu", [a], [out], name=f"n{i}"))
            widths[out] = widths[a]
            used.add(a)
    outs = [t for t in widths if t != "x" and (t not in used or t == f"t{n - 1}")]
    vi = lambda t: helper.make_tensor_value_info(t, TensorProto.FLOAT, [1, widths[t]])  # noqa: E731
    g = helper.make_graph(nodes, "rand", [vi("x")], [vi(t) for t in outs], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def fanout_graph(width: int = 16) -> Graph:
    return import_model(fanout_model(width), element_bytes=1)


def same(a, b) -> bool:
    """Two plans with the same steps, placements and transfers (solver info aside)."""
    return (a.steps, a.placements, a.transfers) == (b.steps, b.placements, b.transfers)
