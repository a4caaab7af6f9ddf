"""Rule 8 of the validator: the rows of tiled plans.

A compiled tiled plan validates; mutants of its stripe program (a ring one row short, a stripe
missing a halo row, two stripes of one operator swapped, a load dropped, a wrong pad, a store
dropped or repeated, a stripe of an operator outside the cascade) are each rejected by rule 8
with a message naming the cascade, the stripe, the operator, the tensor and the row.
"""

from __future__ import annotations

import dataclasses as dc
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from stowage.api import compile as compile_plan
from stowage.api import load_model
from stowage.ir.graph import Graph
from stowage.ir.inplace import fuse_in_place
from stowage.ir.onnx_import import import_model
from stowage.plan import Plan
from stowage.plan.model import Cascade, Stripe
from stowage.plan.validate import validate

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "models" / "int8" / "tiny_cnn_int8_qop.onnx"


@cache
def tiny() -> tuple[Graph, Plan]:
    """tiny_cnn (int8, QOperator) at 6 KiB, below its M_R (15,360 B): the first cascade streams
    the image in (QuantizeLinear, then a 3x3 QLinearConv reading a ring) in 2-row bands."""
    g = load_model(TINY, in_place=True)
    plan = compile_plan(g, capacity="6KiB", time_limit=5)
    return g, plan


def conv_chain(h: int = 32, c: int = 4) -> Graph:
    """x (1 x c x h x 8, one byte per element) -> 3x3 conv (pads 1) -> 3x3 conv stride 2 -> y."""
    rng = np.random.default_rng(0)
    nodes, inits, cur = [], [], "x"
    for i, s in enumerate((1, 2)):
        inits.append(numpy_helper.from_array(rng.standard_normal((c, c, 3, 3)).astype(np.float32), f"w{i}"))
        out = "t0" if i == 0 else "y"
        nodes.append(helper.make_node("Conv", [cur, f"w{i}"], [out], name=f"conv{i}", pads=[1, 1, 1, 1],
                                      strides=[s, s], kernel_shape=[3, 3]))
        cur = out
    gr = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, 8])],
                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(gr, opset_imports=[helper.make_opsetid("", 17)])
    return fuse_in_place(import_model(model, element_bytes=1))


@cache
def chain() -> tuple[Graph, Plan]:
    g = conv_chain()
    plan = compile_plan(g, target="mcu-cortex-m7", capacity=600, time_limit=5)  # stripes of 1 row: see report
    return g, plan


def with_cascade(plan: Plan, k: int, c: Cascade) -> Plan:
    return dc.replace(plan, cascades=plan.cascades[:k] + (c,) + plan.cascades[k + 1:])


def with_stripes(plan: Plan, k: int, stripes: list[Stripe]) -> Plan:
    return with_cascade(plan, k, dc.replace(plan.cascades[k], stripes=tuple(stripes)))


def rule8(g: Graph, plan: Plan) -> list[str]:
    v = validate(g, plan)
    assert not v.ok
    msgs = [e.message for e in v.errors if e.rule == 8]
    assert msgs, v.summary()
    assert all(e.step == plan.cascades[0].step for e in v.errors if e.rule == 8 and "cascade 0," in e.message)
    return msgs


def first_conv_stripe(g: Graph, c: Cascade, nth: int = 0) -> int:
    """Index of the ``nth`` stripe of the cascade whose operator is a convolution with a halo."""
    hits = [i for i, s in enumerate(c.stripes)
            if g.operators[s.op].op_type in ("Conv", "QLinearConv")
            and s.inputs and s.inputs[0][2] - s.inputs[0][1] > 1]
    return hits[nth]


def test_compiled_tiled_plans_validate() -> None:
    for g, plan in (tiny(), chain()):
        assert plan.cascades
        assert any(t.mode == "ring" for c in plan.cascades for t in c.tensors)
        assert any(t.mode == "streamed" for c in plan.cascades for t in c.tensors)
        v = validate(g, plan)
        assert v.ok, v.summary()


def test_ring_overrun_is_rejected() -> None:
    g, plan = tiny()
    k, c = next((k, c) for k, c in enumerate(plan.cascades) if any(t.mode == "ring" for t in c.tensors))
    ring = next(t for t in c.tensors if t.mode == "ring")
    tensors = tuple(dc.replace(t, ring_rows=t.ring_rows - 1) if t is ring else t for t in c.tensors)
    msgs = rule8(g, with_cascade(plan, k, dc.replace(c, tensors=tensors)))
    assert any(f"cascade {k}, stripe" in m and f"of '{ring.tensor}', but ring slot" in m and "overwritten" in m
               for m in msgs), msgs


def test_missing_halo_row_is_rejected() -> None:
    g, plan = tiny()
    c = plan.cascades[0]
    i = first_conv_stripe(g, c, 1)
    st = list(c.stripes)
    name, lo, hi = st[i].inputs[0]
    st[i] = dc.replace(st[i], inputs=((name, lo, hi - 1),))
    op = g.operators[st[i].op].name
    msgs = rule8(g, with_stripes(plan, 0, st))
    assert any(m.endswith(f"cascade 0, stripe {i} ({op}): reads rows [{lo}, {hi - 1}) of '{name}', output rows "
                          f"[{st[i].out_lo}, {st[i].out_hi}) need rows [{lo}, {hi}) (halo row {hi - 1} missing)")
               for m in msgs), msgs


def test_swapped_stripes_of_one_operator_are_rejected() -> None:
    g, plan = tiny()
    c = plan.cascades[0]
    a, b = first_conv_stripe(g, c, 0), first_conv_stripe(g, c, 1)
    assert c.stripes[a].op == c.stripes[b].op
    st = list(c.stripes)
    st[a], st[b] = st[b], st[a]
    op = g.operators[st[a].op].name
    msgs = rule8(g, with_stripes(plan, 0, st))
    assert any(f"cascade 0, stripe {a} ({op}): reads row" in m and "not produced yet" in m for m in msgs), msgs


def test_dropped_load_is_rejected() -> None:
    g, plan = tiny()
    c = plan.cascades[0]
    i = next(i for i, s in enumerate(c.stripes) if i > 0 and any(x.direction == "load" for x in s.transfers))
    st = list(c.stripes)
    load = next(x for x in st[i].transfers if x.direction == "load")
    st[i] = dc.replace(st[i], transfers=tuple(x for x in st[i].transfers if x is not load))
    op = g.operators[st[i].op].name
    msgs = rule8(g, with_stripes(plan, 0, st))
    assert any(f"cascade 0, stripe {i} ({op}): reads row {load.lo} of '{load.tensor}', but it was never loaded" in m
               for m in msgs), msgs


def test_wrong_pad_top_is_rejected() -> None:
    g, plan = tiny()
    c = plan.cascades[0]
    i = next(i for i, s in enumerate(c.stripes) if s.pad_top > 0)
    st = list(c.stripes)
    st[i] = dc.replace(st[i], pad_top=0)
    op = g.operators[st[i].op].name
    msgs = rule8(g, with_stripes(plan, 0, st))
    assert any(f"cascade 0, stripe {i} ({op}): pads [0, {st[i].pad_bottom}] for output rows" in m
               and f"give [{c.stripes[i].pad_top}, {st[i].pad_bottom}]" in m for m in msgs), msgs


def test_dropped_and_repeated_stores_are_rejected() -> None:
    g, plan = chain()
    k, c = next((k, c) for k, c in enumerate(plan.cascades)
                if any(x.direction == "store" for s in c.stripes for x in s.transfers))
    i = next(i for i, s in enumerate(c.stripes) if any(x.direction == "store" for x in s.transfers))
    store = next(x for x in c.stripes[i].transfers if x.direction == "store")
    st = list(c.stripes)
    st[i] = dc.replace(st[i], transfers=tuple(x for x in st[i].transfers if x is not store))
    msgs = rule8(g, with_stripes(plan, k, st))
    assert any(f"cascade {k}, tensor '{store.tensor}': rows [{store.lo}, " in m and "never stored" in m
               for m in msgs), msgs
    st = list(c.stripes)
    st[i] = dc.replace(st[i], transfers=(*st[i].transfers, store))
    msgs = rule8(g, with_stripes(plan, k, st))
    assert any(f"stores row {store.lo} of '{store.tensor}' again" in m for m in msgs), msgs
    # A store before the stripe that produces the row: moved to the stripe before it.
    if i > 0:
        st = list(c.stripes)
        st[i] = dc.replace(st[i], transfers=tuple(x for x in st[i].transfers if x is not store))
        st[i - 1] = dc.replace(st[i - 1], transfers=(*st[i - 1].transfers, store))
        msgs = rule8(g, with_stripes(plan, k, st))
        assert any(f"stores row {store.lo} of '{store.tensor}', but its ring slot" in m for m in msgs), msgs


def test_ring_row_bytes_and_foreign_operators_are_rejected() -> None:
    g, plan = tiny()
    c = plan.cascades[0]
    streamed = next(t for t in c.tensors if t.mode == "streamed")
    tensors = tuple(dc.replace(t, row_bytes=t.row_bytes + 1) if t is streamed else t for t in c.tensors)
    msgs = rule8(g, with_cascade(plan, 0, dc.replace(c, tensors=tensors)))
    assert any(f"cascade 0, tensor '{streamed.tensor}': row_bytes is {streamed.row_bytes + 1}" in m for m in msgs)
    foreign = plan.cascades[1].ops[0]
    st = list(c.stripes)
    st[0] = dc.replace(st[0], op=foreign)
    msgs = rule8(g, with_stripes(plan, 0, st))
    assert any(f"cascade 0, stripe 0: operator {g.operators[foreign].name} is not an operator of the cascade" in m
               for m in msgs), msgs
    # And the operator of stripe 0 then never produces its first rows.
    assert any("are never produced" in m for m in msgs), msgs


@pytest.mark.slow
def test_mobilenet_v2_tiled_plan_validates_and_rejects_a_halo_mutant() -> None:
    g = load_model(ROOT / "models" / "suite" / "mobilenet_v2.onnx", element_bytes=1, in_place=True)
    plan = compile_plan(g, time_limit=10)
    assert plan.cascades
    v = validate(g, plan)
    assert v.ok, v.summary()
    c = plan.cascades[0]
    i = first_conv_stripe(g, c, 2)
    st = list(c.stripes)
    name, lo, hi = st[i].inputs[0]
    st[i] = dc.replace(st[i], inputs=((name, lo, hi - 1),))
    msgs = rule8(g, with_stripes(plan, 0, st))
    assert any(f"(halo row {hi - 1} missing)" in m for m in msgs), msgs
