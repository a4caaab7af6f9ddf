"""Rows addressed by slot (``CascadeTensor.slots``, ``docs/tiling.md`` "Rows by slot"): the
planner takes a cascade whose rings miss the capacity when its rows, packed by lifetime, fit;
the validator, the simulator and the C replay execute it and refuse its mutants; the bound
counts rows per instant, so such a plan is never below it.

Plans used:
- the conv chain x (4 x 16 x 8) -> 3x3 s1 -> t0 -> 3x3 s2 -> y (8-bit; ``test_tiling_slots``):
  one cascade paced by t0's 16 rows needs 208 B in rings and 192 B per instant, so from 192
  to 207 B, planned by slot, it moves nothing, where rings cross t0 (1,024 B);
- a random DAG at 376 B, where ``compile`` itself picks a slotted partition (0 B, 192 B with
  rings);
- the int8 tiny CNN (models/int8) at 4 KiB: the search's partition with rows by slot (its
  first cascade slotted), planned, for the simulator and the C replay and their mutants.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from stowage.api import compile as compile_plan
from stowage.ir.graph import Graph
from stowage.ir.inplace import fuse_in_place
from stowage.ir.onnx_import import load_graph
from stowage.plan import Plan, plan_from_json, plan_to_json
from stowage.plan.model import Cascade, CascadeTensor
from stowage.plan.validate import validate
from stowage.solvers.tiling.bound import tiled_lower_bound
from stowage.solvers.tiling.partition import Partitioner
from stowage.solvers.tiling.program import NotTileable
from stowage.solvers.tiling.slots import row_lifetimes, slot_layout
from tests.test_emit import needs_gcc, replay
from tests.test_tiling_partition import chain

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "models" / "int8" / "tiny_cnn_int8_qop.onnx"


# ---------------------------------------------------------------------------------------
# Hand-checked: the conv chain
# ---------------------------------------------------------------------------------------
def test_slot_layout_of_the_paced_chain_is_its_per_instant_peak() -> None:
    """Paced by t0's 16 rows the rings are x 3, t0 3, y 1 rows: 96 + 96 + 16 = 208 B.  Per
    instant the busiest stripe holds x rows 2..4 and t0 rows 1..3: 192 B, and the packing
    reaches it: every row gets a slot inside a 192 B region, at most 3 rows of x, 3 of t0 and
    1 of y live at once."""
    g = chain([4, 4, 4], [1, 2])
    p = Partitioner(g, False, 1).program(0, 1, 1, record=True, pace=16)
    lay = slot_layout(g, p)
    assert lay is not None and (lay.region, lay.peak) == (192, 192)
    x, t0, y = (g.tensor_buffer[n] for n in ("x", "t0", "y"))
    assert {b: lay.most[b] for b in (x, t0, y)} == {x: 3, t0: 3, y: 1}
    assert [len(lay.offsets[b]) for b in (x, t0, y)] == [16, 16, 8]
    assert all(0 <= o <= 192 - 32 for b in (x, t0) for o in lay.offsets[b])
    # Two rows live at one stripe never share bytes.
    lives = row_lifetimes(g, p)
    rows = [(r.first, r.last, lay.offsets[r.buffer][r.row], r.size) for r in lives.rows]
    for i, (f1, l1, o1, s1) in enumerate(rows):
        for f2, l2, o2, s2 in rows[i + 1:]:
            if f1 <= l2 and f2 <= l1:
                assert o1 + s1 <= o2 or o2 + s2 <= o1


def _slot_plan(g: Graph, cap: int) -> Plan:
    """The chain as one cascade paced by t0, rows by slot, planned at ``cap`` (the macro graph
    by the default solver; the partition search itself only tries slots where rings fit
    their least rows, ``slotfit``)."""
    from stowage.solvers.problem import Problem
    from stowage.solvers.tiling.plan import _plan_programs
    from stowage.targets import load_target

    p = Partitioner(g, False, 16).program(0, 1, 1, record=True, pace=16)
    problem = Problem(g, load_target("ethos-u55-256").with_capacity(cap), time_limit=5)
    return _plan_programs(problem, [p], "auto", None, [slot_layout(g, p)])


@pytest.mark.parametrize("cap", [192, 200, 207])
def test_a_slot_plan_of_the_chain_moves_nothing_where_rings_must_cross(cap: int) -> None:
    """From 192 to 207 B the one cascade fits only by slot: 0 B moved, in a 192 B region.  The
    bound over ring plans says 1,024 B there (t0 crosses): it would be a false proof for this
    valid plan, so the reported bound is the per-instant one, 0."""
    g = chain([4, 4, 4], [1, 2])
    plan = _slot_plan(g, cap)
    assert validate(g, plan).ok
    assert plan.metrics.noncompulsory_bytes == 0
    (c,) = plan.cascades
    assert c.slotted
    held = [t for t in c.tensors if t.mode != "whole"]
    assert {t.tensor for t in held} == {"x", "t0", "y"} and len({t.buffer for t in held}) == 1
    assert plan.buffers[held[0].buffer].bytes == 192
    assert tiled_lower_bound(g, cap, False, per_instant=False).bytes == 1024
    assert tiled_lower_bound(g, cap, False).bytes == 0 == plan.solver.lower_bound


def test_the_planner_takes_a_slot_partition_when_it_cuts_less(monkeypatch: pytest.MonkeyPatch) -> None:
    """A random DAG (``test_tiling_bound``'s Concat case) at 376 B: with rings its best
    partition moves 192 B; with rows by slot one cascade holds everything, 0 B.  The search
    runs rings first, then rows by slot on a budget of its own, and plans both."""
    import stowage.solvers.tiling.partition as partition
    from stowage.ir.inplace import fuse_in_place as fuse
    from tests.test_tiling_bound import _random_dag

    g = fuse(_random_dag(654584, 7, 8, 2))
    plan = compile_plan(g, "ethos-u55-256", capacity=376, time_limit=5)
    assert plan.metrics.noncompulsory_bytes == 0 and [c.slotted for c in plan.cascades] == [True]
    # Planned below M_R without the Concat in place (``Graph.without_concats``).
    assert not plan.options.concat_in_place and g.without_concats is not None
    assert validate(g.without_concats, plan).ok
    monkeypatch.setattr(partition, "SLOT_ROWS", False)
    # In the file order alone (the min-peak order's rings reach 0 B too: test_tiling_bound).
    rings = compile_plan(g, "ethos-u55-256", capacity=376, time_limit=5, params={"reorder": ()})
    assert rings.metrics.noncompulsory_bytes == 192 and not any(c.slotted for c in rings.cascades)


def test_per_instant_bound_of_the_chain() -> None:
    """Per instant (rows by slot), one cascade needs at conv0's stripe x's 3 rows (96 B), the
    t0 row it writes (32 B) and the t0 row conv1 (stride 2) still needs below it (32 B): 160 B;
    conv1's stripe 3 rows of t0 and one of y: 112 B.  Below 160 B t0 cannot stay on chip
    (whole, 512 B, beside conv0's 128 B does not fit either): it crosses, 2 x 512 B."""
    g = chain([4, 4, 4], [1, 2])
    t0 = g.tensor_buffer["t0"]
    assert tiled_lower_bound(g, 160, False).bytes == 0
    b = tiled_lower_bound(g, 159, False)
    assert b.bytes == 1024 and b.forced == (t0,)
    # Rings: one cascade holds 208 B at least (paced by t0), so t0 crosses below it.
    assert tiled_lower_bound(g, 207, False, per_instant=False).bytes == 1024
    assert tiled_lower_bound(g, 208, False, per_instant=False).bytes == 0


# ---------------------------------------------------------------------------------------
# The plan file
# ---------------------------------------------------------------------------------------
def test_slots_round_trip_in_the_plan_file() -> None:
    g = chain([4, 4, 4], [1, 2])
    plan = _slot_plan(g, 200)
    text = plan_to_json(plan)
    assert '"slots": [' in text and plan_from_json(text) == plan
    # A cascade without slots writes no key: ring-addressed plans stay as before.
    ring = compile_plan(g, "ethos-u55-256", capacity=256, time_limit=5)
    assert '"slots"' not in plan_to_json(ring)


# ---------------------------------------------------------------------------------------
# The tiny int8 CNN at 4 KiB: validator, simulator and C replay, and their mutants
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny() -> tuple[Graph, Plan]:
    """The search's own partition with rows by slot at 4 KiB (its first cascade slotted; it
    cuts no less than the rings' partition there, so ``compile`` keeps rings), planned."""
    from stowage.solvers.problem import Problem
    from stowage.solvers.tiling.plan import _plan_partition
    from stowage.targets import load_target

    g = fuse_in_place(load_graph(str(TINY)))
    part = Partitioner(g, False, 16)
    segs = part.least_traffic(4096)
    assert segs is not None
    problem = Problem(g, load_target("ethos-u55-256").with_capacity(4096), time_limit=5)
    plan = _plan_partition(problem, part, segs, "auto", None)
    assert plan.cascades[0].slotted and not any(c.slotted for c in plan.cascades[1:])
    assert validate(g, plan).ok
    return g, plan


def _with_tensor(plan: Plan, k: int, ct: CascadeTensor) -> Plan:
    c = plan.cascades[k]
    c2: Cascade = replace(c, tensors=tuple(ct if t.tensor == ct.tensor else t for t in c.tensors))
    return replace(plan, cascades=plan.cascades[:k] + (c2,) + plan.cascades[k + 1:])


def _two_live_rows(g: Graph, plan: Plan) -> tuple[CascadeTensor, int, int]:
    """A slotted ring of cascade 0 and two of its rows live at one stripe (by the program's
    own reads: a 3x3 reader reads consecutive rows together)."""
    c = plan.cascades[0]
    for ct in c.tensors:
        if ct.mode != "ring" or not ct.slots:
            continue
        for st in c.stripes:
            for name, lo, hi in st.inputs:
                if name == ct.tensor and hi - lo >= 2:
                    return ct, lo, lo + 1
    raise AssertionError("no ring read two rows at a time")


def _mutants(g: Graph, plan: Plan) -> dict[str, Plan]:
    ct, r0, r1 = _two_live_rows(g, plan)
    shared = list(ct.slots)
    shared[r1] = shared[r0]                 # two rows live at once in one slot
    region = plan.buffers[ct.buffer].bytes
    outside = list(ct.slots)
    outside[r0] = region - ct.row_bytes + 1  # a slot past the region's end
    missing = list(ct.slots)
    missing[r0] = -1                         # a row the program reads has no slot
    return {
        "shared": _with_tensor(plan, 0, replace(ct, slots=tuple(shared))),
        "outside": _with_tensor(plan, 0, replace(ct, slots=tuple(outside))),
        "missing": _with_tensor(plan, 0, replace(ct, slots=tuple(missing))),
    }


def test_validator_refuses_slot_mutants(tiny: tuple[Graph, Plan]) -> None:
    g, plan = tiny
    m = _mutants(g, plan)
    v = validate(g, m["shared"])
    assert not v.ok and any(x.rule == 8 and "overwritten" in x.message for x in v.errors), v.summary()
    v = validate(g, m["outside"])
    assert not v.ok and any("outside its region" in x.message for x in v.errors), v.summary()
    v = validate(g, m["missing"])
    assert not v.ok and any("no slot" in x.message for x in v.errors), v.summary()


@needs_gcc
def test_replay_refuses_a_row_read_from_the_wrong_slot(tiny: tuple[Graph, Plan], tmp_path: Path) -> None:
    """The header lists every row's address per tile (``_row_addrs``): the plan replays; with
    one input tile's row address pointing at another live row's slot, the replay finds the
    wrong row there.  (A per-tensor slot table reads a row where it wrote it, so a wrong read
    shows only in per-stripe addresses; the plan's own mutants are ``_mutants``.)"""
    from dataclasses import replace as rep

    from stowage.backend.emit import build_schedule, render_c

    g, plan = tiny
    sch = build_schedule(plan, g)
    assert any(t.row_addrs for s in sch.stripes for t in s.inputs)
    files = render_c(sch, "net")
    r = replay(files, tmp_path / "ok")
    assert r.returncode == 0, r.stderr
    k, st = next((k, s) for k, s in enumerate(sch.stripes) for t in s.inputs if len(t.row_addrs) >= 2)
    i, t = next((i, t) for i, t in enumerate(st.inputs) if len(t.row_addrs) >= 2)
    wrong = rep(t, row_addrs=(t.row_addrs[1], *t.row_addrs[1:]))
    bad_st = rep(st, inputs=st.inputs[:i] + (wrong,) + st.inputs[i + 1:])
    bad = rep(sch, stripes=sch.stripes[:k] + (bad_st,) + sch.stripes[k + 1:])
    r = replay(render_c(bad, "net"), tmp_path / "bad")
    assert r.returncode == 1 and "FAIL" in r.stderr and "stripe reads" in r.stderr, r.stderr


def test_simulator_runs_the_slotted_plan_bit_exactly(tiny: tuple[Graph, Plan]) -> None:
    import onnx

    from stowage.simulate import Simulator

    g, plan = tiny
    res = Simulator(onnx.load(str(TINY)), g, plan, TINY.parent).run()
    assert res.ok and res.executed, res.first_problem
    assert res.outputs and all(o.exact for o in res.outputs)


def test_simulator_catches_slot_mutants(tiny: tuple[Graph, Plan]) -> None:
    import onnx

    from stowage.simulate import Simulator

    g, plan = tiny
    model = onnx.load(str(TINY))
    for name, bad in _mutants(g, plan).items():
        res = Simulator(model, g, bad, TINY.parent).run()
        assert not res.ok, name
        if name == "shared":
            # Executed, and the bytes show it: the first row read from the shared slot is wrong.
            assert res.executed and res.corruptions, res.first_problem
            assert "corrupted" in res.corruptions[0].message, res.first_problem


def test_a_qdq_broadcast_operand_made_in_the_cascade_ends_it(tmp_path: Path) -> None:
    """A squeeze-excitation block quantized to QDQ int8 (onnxruntime's tool), from its fc to
    the last conv (the global pool ends the cascade before; x and the pool's result come from
    outside): the Mul group reads the sigmoid group's one-row scale whole (a broadcast over H),
    made in the same run, so the run is no cascade, as for the float block.  Before, the folded
    group's float operand names hid the read: PP-OCRv4 det in QDQ int8 at 64 KiB got such a
    cascade, which the validator refused ("reads 'hardsigmoid_8...' whole, but its row 0: it
    was overwritten"; with rings, "it is not produced yet")."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from stowage.api import load_model
    from tests.test_tiling_reduce import se_block

    src = se_block(tmp_path / "se.onnx")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.data = iter([{"in": rng.standard_normal((1, 4, 16, 16)).astype(np.float32)} for _ in range(2)])

        def get_next(self):
            return next(self.data, None)

    q = tmp_path / "se_qdq.onnx"
    quantize_static(str(src), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=False,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    g = load_model(q, in_place=True, qdq="fold")
    part = Partitioner(g, False, 1)
    names = [g.operators[part.order[i]].op_type for i in range(part.n)]
    fc = names.index("GlobalAveragePool") + 1
    with pytest.raises(NotTileable, match=r"reads '.*' whole, made in the cascade"):
        part.program(fc, part.n - 1, 1, record=True)
    mul = names.index("Mul")
    part.program(fc, mul - 1, 1, record=True)   # the run up to the sigmoid is one
