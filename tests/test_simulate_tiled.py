"""The simulator executes tiled plans (plan.cascades): stripes read rows from rings, whole
buffers and streamed tensors, and the result matches ONNX Runtime bit for bit on an int8
model.  Mutated programs (a ring one row short, a missing halo row, two stripes swapped, a
row load dropped) are caught."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from stowage.api import compile as compile_plan
from stowage.ir.inplace import fuse_in_place
from stowage.ir.onnx_import import load_graph
from stowage.plan import Cascade, Plan
from stowage.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "models" / "int8" / "tiny_cnn_int8_qop.onnx"
MOBILENET_Q = ROOT / "models" / "int8" / "mobilenet_v2_int8_qop.onnx"
#: Below the tiny CNN's M_R (15 KiB): cascades with rings, a streamed input and whole buffers.
CAPACITY = "10KiB"


def _graph(path: Path, plan: Plan):
    graph = load_graph(path, dims=dict(plan.options.dims))
    return fuse_in_place(graph) if plan.options.in_place else graph


@pytest.fixture(scope="module")
def tiny() -> tuple[object, Plan]:
    plan = compile_plan(TINY, capacity=CAPACITY)
    assert plan.cascades, "the plan should be tiled below M_R"
    return _graph(TINY, plan), plan


def _with_cascade(plan: Plan, k: int, cascade: Cascade) -> Plan:
    cs = list(plan.cascades)
    cs[k] = cascade
    return dataclasses.replace(plan, cascades=tuple(cs))


def test_tiled_plan_matches_ort_bit_exactly(tiny) -> None:
    graph, plan = tiny
    modes = {t.mode for c in plan.cascades for t in c.tensors}
    assert {"ring", "streamed", "whole"} <= modes
    r = simulate(TINY, graph, plan)
    assert r.ok, r.first_problem
    assert r.corruptions == ()
    assert r.outputs and all(o.exact for o in r.outputs)
    assert [o.name for o in r.outputs] == list(graph.outputs)


def test_ring_overrun_is_caught(tiny) -> None:
    graph, plan = tiny
    k, c = next((k, c) for k, c in enumerate(plan.cascades) if any(t.mode == "ring" and t.ring_rows >= 2
                                                                      for t in c.tensors))
    j, t = next((j, t) for j, t in enumerate(c.tensors) if t.mode == "ring" and t.ring_rows >= 2)
    tensors = list(c.tensors)
    tensors[j] = dataclasses.replace(t, ring_rows=t.ring_rows - 1)
    r = simulate(TINY, graph, _with_cascade(plan, k, dataclasses.replace(c, tensors=tuple(tensors))))
    assert not r.ok
    assert r.corruptions and f"step {c.step} " in r.first_problem and "stripe" in r.first_problem


def test_missing_halo_row_is_caught(tiny) -> None:
    graph, plan = tiny
    # The stripe with the widest input window (a convolution whose kernel still fits the
    # rows left, so the kernel runs and makes a band one row short).
    k, c, j = max(((k, c, j) for k, c in enumerate(plan.cascades) for j, s in enumerate(c.stripes)
                   if any(hi > lo + 1 for _, lo, hi in s.inputs)),
                  key=lambda x: max(hi - lo for _, lo, hi in x[1].stripes[x[2]].inputs))
    st = c.stripes[j]
    i = next(i for i, (_, lo, hi) in enumerate(st.inputs) if hi > lo + 1)
    inputs = list(st.inputs)
    name, lo, hi = inputs[i]
    inputs[i] = (name, lo, hi - 1)
    stripes = list(c.stripes)
    stripes[j] = dataclasses.replace(st, inputs=tuple(inputs))
    r = simulate(TINY, graph, _with_cascade(plan, k, dataclasses.replace(c, stripes=tuple(stripes))))
    assert not r.ok
    assert f"stripe {j} " in r.first_problem


def test_swapped_stripes_are_caught(tiny) -> None:
    graph, plan = tiny
    # Two stripes of the first operator of a cascade whose results a later member reads.
    k, c = next((k, c) for k, c in enumerate(plan.cascades)
                if len({s.op for s in c.stripes}) > 1 and sum(s.op == c.stripes[0].op for s in c.stripes) >= 2)
    first = c.stripes[0].op
    a, b = [j for j, s in enumerate(c.stripes) if s.op == first][:2]
    stripes = list(c.stripes)
    stripes[a], stripes[b] = stripes[b], stripes[a]
    r = simulate(TINY, graph, _with_cascade(plan, k, dataclasses.replace(c, stripes=tuple(stripes))))
    assert not r.ok
    assert r.corruptions and "stripe" in r.first_problem


def test_dropped_row_load_is_caught(tiny) -> None:
    graph, plan = tiny
    k, c, j = next((k, c, j) for k, c in enumerate(plan.cascades) for j, s in enumerate(c.stripes)
                   if any(t.direction == "load" for t in s.transfers) and j > 0)
    st = c.stripes[j]
    drop = next(i for i, t in enumerate(st.transfers) if t.direction == "load")
    stripes = list(c.stripes)
    stripes[j] = dataclasses.replace(st, transfers=st.transfers[:drop] + st.transfers[drop + 1:])
    r = simulate(TINY, graph, _with_cascade(plan, k, dataclasses.replace(c, stripes=tuple(stripes))))
    assert not r.ok
    assert "row" in r.first_problem and f"step {c.step} " in r.first_problem


def test_dropped_first_load_leaves_poison(tiny) -> None:
    graph, plan = tiny
    k, c = next((k, c) for k, c in enumerate(plan.cascades) if c.stripes[0].transfers)
    st = c.stripes[0]
    stripes = list(c.stripes)
    stripes[0] = dataclasses.replace(st, transfers=tuple(t for t in st.transfers if t.direction != "load"))
    r = simulate(TINY, graph, _with_cascade(plan, k, dataclasses.replace(c, stripes=tuple(stripes))))
    assert not r.ok
    assert "poison" in r.first_problem


def test_whole_plan_of_same_model_still_simulates() -> None:
    plan = compile_plan(TINY, capacity="M_R", tiling="off")
    assert not plan.cascades
    r = simulate(TINY, _graph(TINY, plan), plan)
    assert r.ok, r.first_problem


def test_tiled_mobilenet_int8_matches_bit_exactly() -> None:
    plan = compile_plan(MOBILENET_Q, capacity="256KiB")
    assert plan.cascades
    r = simulate(MOBILENET_Q, _graph(MOBILENET_Q, plan), plan)
    assert r.ok, r.first_problem
    assert all(o.exact for o in r.outputs)
