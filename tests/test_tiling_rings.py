"""Smaller rings inside a cascade (docs/tiling.md, "Ring sizes"): a residual Add written over its
projection's ring (a declared alias), rows made one band's share at a time, and one-row rings
whose live intervals never meet sharing bytes.  Ring sizes are hand-checked on small graphs;
the plans pass the validator and run in the simulator, and mutants that clobber a live row
are rejected by the validator's row replay (rule 8)."""

from __future__ import annotations

import dataclasses as dc
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import save
from stowage.api import compile as compile_plan
from stowage.backend.emit import emit_c
from stowage.ir.graph import Graph
from stowage.ir.inplace import fuse_in_place
from stowage.ir.lifetimes import m_r
from stowage.ir.onnx_import import import_model
from stowage.ir.tiling import row_units
from stowage.plan import Plan
from stowage.plan.validate import validate
from stowage.simulate import simulate
from stowage.solvers.tiling.alias import ring_aliases
from stowage.solvers.tiling.program import _meet, share_rings, stripe_program
from test_emit import needs_gcc, replay

W = 8   # columns of every tensor


def _model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], c_in: int, h: int,
           tail: bool = False) -> onnx.ModelProto:
    """``tail``: the last conv's result ``z`` is averaged (``g``, 4 x 1 x 1) and a Softmax
    (whole tensors) makes ``y`` from it, so the plan copies ``y`` to its home as a whole
    tensor (tests/c/replay.c needs a transfer)."""
    if tail:
        nodes = [*nodes[:-1], helper.make_node(nodes[-1].op_type, list(nodes[-1].input), ["z"], name=nodes[-1].name,
                                               **{a.name: helper.get_attribute_value(a) for a in nodes[-1].attribute}),
                 helper.make_node("GlobalAveragePool", ["z"], ["g"], name="gap"),
                 helper.make_node("Softmax", ["g"], ["y"], name="soft", axis=1)]
    g = helper.make_graph(nodes, "rings", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, h, W])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _conv(rng: np.random.Generator, name: str, x: str, y: str, c_in: int, c_out: int, k: int,
          inits: list[onnx.TensorProto]) -> onnx.NodeProto:
    inits.append(numpy_helper.from_array((rng.standard_normal((c_out, c_in, k, k)) * 0.3).astype(np.float32),
                                         f"w_{name}"))
    p = k // 2
    return helper.make_node("Conv", [x, f"w_{name}"], [y], name=name, pads=[p, p, p, p], kernel_shape=[k, k])


def residual_model(h: int = 16, tail: bool = False) -> onnx.ModelProto:
    """x (4 x h x 8) -> e = Relu(conv 1x1, 8 ch) -> d = Relu(conv 3x3, 8 ch) -> p = conv 1x1
    (4 ch) -> a = p + x -> y = conv 1x1 (4 ch): an inverted residual block and one more conv, so
    the Add's result is read inside the cascade.  One byte per element: e and d rows are 64 B,
    p, a, x and y rows 32 B."""
    rng = np.random.default_rng(3)
    inits: list[onnx.TensorProto] = []
    nodes = [_conv(rng, "ce", "x", "e0", 4, 8, 1, inits), helper.make_node("Relu", ["e0"], ["e"], name="re"),
             _conv(rng, "cd", "e", "d0", 8, 8, 3, inits), helper.make_node("Relu", ["d0"], ["d"], name="rd"),
             _conv(rng, "cp", "d", "p", 8, 4, 1, inits), helper.make_node("Add", ["p", "x"], ["a"], name="add"),
             _conv(rng, "co", "a", "y", 4, 4, 1, inits)]
    return _model(nodes, inits, 4, h, tail)


def transient_model(h: int = 16, tail: bool = False) -> onnx.ModelProto:
    """x (4 x h x 8) -> t0 = conv 3x3 (8 ch) -> t1 = conv 1x1 (4 ch) -> t2 = conv 3x3 (4 ch) ->
    y = conv 1x1 (4 ch).  t0 (64 B rows) and t2 (32 B rows) are each read by a 1x1 conv right
    after they are made: one-row rings, empty between those stripes.  t1 is read by a 3x3 conv:
    three rows, live from its first row to its last."""
    rng = np.random.default_rng(5)
    inits: list[onnx.TensorProto] = []
    nodes = [_conv(rng, "c0", "x", "t0", 4, 8, 3, inits), _conv(rng, "c1", "t0", "t1", 8, 4, 1, inits),
             _conv(rng, "c2", "t1", "t2", 4, 4, 3, inits), _conv(rng, "c3", "t2", "y", 4, 4, 1, inits)]
    return _model(nodes, inits, 4, h, tail)


def _graph(model: onnx.ModelProto) -> Graph:
    return fuse_in_place(import_model(model, element_bytes=1))


def _program(g: Graph, **kw: bool):
    return stripe_program(g, tuple(g.file_order()), 1, {b.id: False for b in g.buffers}, **kw)


def test_the_residual_add_writes_over_its_projection_ring() -> None:
    g = _graph(residual_model())
    tb = g.tensor_buffer
    # The ReLUs are fused in place (e0/e, d0/d share buffers); the Add is not (its step would
    # hold x beside the conv's operands), so its result a has a buffer of its own.
    assert tb["e0"] == tb["e"] and tb["d0"] == tb["d"] and tb["a"] != tb["p"]
    prog = _program(g)
    # a's rows go into p's slots: p is read by the Add alone, with the identity row map.
    assert dict(prog.aliases) == {tb["a"]: tb["p"]}
    # e is read by a 3x3 conv: 3 rows; d and p (holding a after the Add) one row each; x is
    # read at row r + 1 by the 1x1 conv feeding the 3x3 and at row r by the Add: 2 rows.
    assert prog.rings == {tb["e"]: 3, tb["d"]: 1, tb["p"]: 1}
    assert prog.streamed == {tb["x"]: 2, tb["y"]: 1}
    assert prog.ring_bytes(g) == 3 * 64 + 64 + 32 + 2 * 32 + 32
    # Without the alias a needs a ring of its own (one-row rings sharing bytes aside: a, live
    # from the Add's stripe to the last conv's, could also take d's bytes).
    without = _program(g, in_place=False, share=False)
    assert without.aliases == {} and without.rings == {tb["e"]: 3, tb["d"]: 1, tb["p"]: 1, tb["a"]: 1}
    assert without.ring_bytes(g) - _program(g, share=False).ring_bytes(g) == 32
    # The rule needs a as a ring: read outside the cascade it is whole, and no alias is made.
    units = [(i, u) for i in g.file_order() for u in row_units(g, g.operators[i]) or ()]
    assert ring_aliases(g, units, {tb["e"], tb["d"], tb["p"]}) == {}
    assert ring_aliases(g, units, {tb["e"], tb["d"], tb["p"], tb["a"]}) == {tb["a"]: tb["p"]}


def test_rows_made_a_share_at_a_time() -> None:
    """The first band's lead: y row 0 needs d rows [0, 1] (the 3x3 conv's halo: e rows [0, 2)),
    so the one-pass walk makes e rows [0, 2) and d rows ... in one stripe each; in shares, the
    1x1 conv makes one row of e per pass and d's ring stays one row deep."""
    g = _graph(transient_model())
    tb = g.tensor_buffer
    one_pass = _program(g, interleave=False, share=False)
    shares = _program(g, share=False)
    # t1 feeds a 3x3 conv: 3 rows either way.  t0 is made two rows at a time in the first band
    # of the one-pass walk (t1 rows 0 and 1 are needed for t2 row 0).
    assert one_pass.rings == {tb["t0"]: 2, tb["t1"]: 3, tb["t2"]: 1}
    assert shares.rings == {tb["t0"]: 1, tb["t1"]: 3, tb["t2"]: 1}
    firsts = [(g.operators[s.op].name, s.out_lo, s.out_hi) for s in shares.stripes[:6]]
    assert firsts == [("c0", 0, 1), ("c1", 0, 1), ("c0", 1, 2), ("c1", 1, 2), ("c2", 0, 1), ("c3", 0, 1)]


def test_one_row_rings_that_never_meet_share_bytes() -> None:
    g = _graph(transient_model())
    tb = g.tensor_buffer
    prog = _program(g)
    # t0 lives from c0's stripe to c1's, t2 from c2's to c3's: never at once.  t2 (32 B) takes
    # t0's bytes (64 B, the larger, the host); t1 is live throughout and keeps its own.
    assert dict(prog.shared) == {tb["t2"]: tb["t0"]}
    assert prog.rings == {tb["t0"]: 1, tb["t1"]: 3, tb["t2"]: 1}
    # x: 3 rows for the 3x3 conv; y: one row stored as it is made.
    assert prog.ring_bytes(g) == 64 + 3 * 32 + 3 * 32 + 32
    assert _program(g, share=False).ring_bytes(g) - prog.ring_bytes(g) == 32


def test_share_rings_groups_by_intervals() -> None:
    """Hand-made intervals: a and b alternate, c meets both, d is live throughout."""
    rings = {1: 1, 2: 1, 3: 1, 4: 3}
    lives = {1: [(1, 2), (5, 6)], 2: [(3, 4), (7, 8)], 3: [(2, 3), (6, 7)], 4: [(1, 8)]}
    rb = {1: 64, 2: 32, 3: 16, 4: 8}
    # a (64 B) hosts b; c meets a at stripe 2 and b at 3 (a stripe reading one and writing the
    # other holds both), so it keeps its bytes; d has one interval and is never shared.
    assert share_rings(rings, lives, rb.__getitem__) == {2: 1}
    assert _meet([(1, 2)], [(2, 3)]) and not _meet([(1, 2), (5, 6)], [(3, 4), (7, 8)])


def _compiled(model: onnx.ModelProto, frac: float) -> tuple[Graph, Plan]:
    """A float plan (4 bytes per element: the simulator runs the model's own bytes) below M_R."""
    g = fuse_in_place(import_model(model))
    plan = compile_plan(g, target="mcu-cortex-m7", capacity=int(m_r(g, False) * frac), time_limit=5)
    assert plan.cascades and len(plan.cascades) == 1
    assert validate(g, plan).ok
    return g, plan


@pytest.mark.parametrize("which", ["residual", "transient"])
def test_plans_validate_and_simulate(tmp_path: Path, which: str) -> None:
    model = residual_model() if which == "residual" else transient_model()
    g, plan = _compiled(model, 0.3)
    c = plan.cascades[0]
    by = {t.tensor: t for t in c.tensors}
    if which == "residual":
        # The alias is declared: a is a ring in p's buffer, with p's rows and row bytes.
        assert (by["a"].mode, by["a"].buffer, by["a"].ring_rows, by["a"].row_bytes) == (
            "ring", by["p"].buffer, by["p"].ring_rows, by["p"].row_bytes)
    else:
        # t2 is declared in t0's buffer with its own layout: rows of 128 B (4 channels x 8
        # columns x 4 B) in a ring of 256 B rows.
        assert (by["t2"].buffer, by["t2"].row_bytes, by["t0"].row_bytes) == (by["t0"].buffer, 128, 256)
        assert plan.buffers[by["t0"].buffer].bytes == by["t0"].ring_rows * 256 >= by["t2"].ring_rows * 128
    v = validate(g, plan)
    assert v.ok, v.summary()
    res = simulate(save(model, tmp_path / "m.onnx"), g, plan)
    assert res.ok, res.first_problem


def _moved(plan: Plan, tensor: str, buffer: int) -> Plan:
    c = plan.cascades[0]
    tensors = tuple(dc.replace(t, buffer=buffer) if t.tensor == tensor else t for t in c.tensors)
    return dc.replace(plan, cascades=(dc.replace(c, tensors=tensors),))


def test_a_ring_declared_over_rows_still_read_is_rejected() -> None:
    """t1 (live throughout) declared in t0's bytes: t0's next row overwrites a t1 row the 3x3
    conv still needs.  The validator names the row and the tensor sharing the bytes."""
    model = transient_model()
    g, plan = _compiled(model, 0.3)
    by = {t.tensor: t for t in plan.cascades[0].tensors}
    bad = _moved(plan, "t1", by["t0"].buffer)
    v = validate(g, bad)
    assert not v.ok
    assert any("reads row" in e.message and "which shares its bytes" in e.message for e in v.errors if e.rule == 8), \
        v.summary()


def test_a_non_elementwise_writer_over_its_operand_is_rejected() -> None:
    """d (the 3x3 conv's result) declared in p's ring: the 1x1 conv reading d row r would write
    p row r over it.  Only an elementwise operator may write over its operand's row."""
    g, plan = _compiled(residual_model(), 0.3)
    by = {t.tensor: t for t in plan.cascades[0].tensors}
    bad = _moved(plan, "d0", by["p"].buffer)   # d0 (the conv's result) and d (its ReLU) share a buffer
    v = validate(g, bad)
    assert not v.ok
    assert any("writes row" in e.message and "over row" in e.message and "of 'd', which it reads" in e.message
               for e in v.errors if e.rule == 8), v.summary()


@needs_gcc
@pytest.mark.parametrize("which", ["residual", "transient"])
def test_shared_rings_replay_in_c(tmp_path: Path, which: str) -> None:
    """plan.h / plan.c address each tensor of a shared ring with its own layout; the C replay
    (tests/c/replay.c) checks every row read holds what its producer wrote there."""
    model = residual_model(tail=True) if which == "residual" else transient_model(tail=True)
    g = fuse_in_place(import_model(model))
    plan = compile_plan(g, target="mcu-cortex-m7", capacity=int(m_r(g, False) * 0.3), time_limit=5)
    assert validate(g, plan).ok and plan.transfers
    assert any(t.mode == "ring" and g.tensor_buffer[t.tensor] != t.buffer for c in plan.cascades for t in c.tensors)
    r = replay(emit_c(plan, g, weights=False), tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("replay ok:")


def hard_swish_model(h: int = 16) -> onnx.ModelProto:
    """x (4 x h x 8) -> c = conv 3x3 (4 ch) -> s = c + 3 -> k = Clip(s, 0, 6) -> m = c * k ->
    y = conv 1x1: a hard swish as Paddle exports it (PP-OCR's detector).  The in-place pass
    fuses the Clip and the Mul into the Add's step, so c's only reader *step* is the Add's,
    but its Mul reads c after the Add: the Add must not write over c's ring."""
    rng = np.random.default_rng(7)
    inits: list[onnx.TensorProto] = [numpy_helper.from_array(np.array(3.0, np.float32), "three"),
                                     numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
                                     numpy_helper.from_array(np.array(6.0, np.float32), "hi")]
    nodes = [_conv(rng, "cc", "x", "c", 4, 4, 3, inits), helper.make_node("Add", ["c", "three"], ["s"], name="add3"),
             helper.make_node("Clip", ["s", "lo", "hi"], ["k"], name="clip"),
             helper.make_node("Mul", ["c", "k"], ["m"], name="mul"), _conv(rng, "co", "m", "y", 4, 4, 1, inits)]
    return _model(nodes, inits, 4, 16)


def test_an_operand_another_member_of_its_step_reads_later_is_not_written_over(tmp_path: Path) -> None:
    """PP-OCRv4 det's tiled plan was refused as invalid after the Add alias landed ("reads row
    0 of 'p2o.Add.11', but ring slot 0 ... holds row 0 of 'p2o.Clip.3'"): the alias rule
    checked the operand's reader steps, not the step's members."""
    model = hard_swish_model()
    g = fuse_in_place(import_model(model))
    step = next(op for op in g.operators if op.name == "add3")
    assert {g.operators[f].name for f in step.fused} == {"clip", "mul"}, "the Clip and the Mul join the Add's step"
    assert [g.operators[i].name for i in g.buffers[g.tensor_buffer["c"]].consumers] == ["add3"]
    units = [(op.index, u) for op in g.operators if op.computing for u in row_units(g, op) or ()]
    rings = {b.id for b in g.buffers if b.kind.name == "ACTIVATION" and not b.is_output}
    assert g.tensor_buffer["c"] not in ring_aliases(g, units, rings).values()
    plan = compile_plan(g, target="mcu-cortex-m7", capacity=int(m_r(g, False) * 0.3), time_limit=5)
    assert plan.cascades
    v = validate(g, plan)
    assert v.ok, v.summary()
    res = simulate(save(model, tmp_path / "m.onnx"), g, plan)
    assert res.ok, res.first_problem
