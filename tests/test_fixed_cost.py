"""The fixed-cost rewrites of issue 14 item 3 ("on time"): each faster part gives the same
answers as the code it replaced, on small hand-checked cases and on random ones.

* ``Graph``'s per-step views (``op_reads``, ``op_writes``, ``step_members``,
  ``op_dependencies``, ``computing_ops``, ``file_order``) are memoised per graph object;
* ``alloc.greedy._pack`` reads sizes and ends from lists (same offsets as before);
* ``Hierarchy.index`` looks names up in a table instead of scanning the levels;
  ``lifetimes.op_buffers`` and ``CostModel.spill_rank`` are memoised (same answers);
* ``joint_data.check_solution`` finds overlapping residency boxes by a sweep
  (``boxes_overlap``) instead of a pairwise scan, and must reject exactly the same mutants,
  with the same message;
* ``stowage.compile`` validates the plan it returns once (the whole-tensor solve and the
  tiled search no longer validate a plan that ``_timed`` validates again).
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stowage.api import compile as compile_plan
from stowage.api import load_model
from stowage.errors import SolverError, TargetError
from stowage.ir.graph import Graph, Operator, TensorKind
from stowage.ir.inplace import fuse_in_place
from stowage.ir.lifetimes import op_buffers
from stowage.plan import Plan
from stowage.plan import validate as validate_module
from stowage.solvers import registry
from stowage.solvers.alloc import greedy
from stowage.solvers.alloc.interval import Interval, first_fit
from stowage.solvers.costs import CostModel
from stowage.solvers.exact.joint_data import (
    JointSolution,
    Segment,
    boxes_overlap,
    check_solution,
    greedy_solution,
    joint_data,
)
from stowage.solvers.problem import Problem
from stowage.targets.hierarchy import load_target
from tests.spill_cases import random_graphs, three_level, two_level
from tests.test_exact_lns import make_graph


# -- the code these replace, kept here as the reference --------------------------------------------
def old_op_reads(g: Graph, op: Operator) -> tuple[int, ...]:
    seen: dict[int, None] = {}
    written: set[int] = set()
    for member in sorted((op, *(g.operators[f] for f in op.fused)), key=lambda m: m.index):
        for name in member.inputs:
            if name and name in g.tensor_buffer:
                b = g.tensor_buffer[name]
                if b not in written:
                    seen.setdefault(b, None)
        written.update(g.tensor_buffer[n] for n in member.outputs if n and n in g.tensor_buffer)
    return tuple(seen)


def old_op_writes(g: Graph, op: Operator) -> tuple[int, ...]:
    seen: dict[int, None] = {}
    for member in sorted((op, *(g.operators[f] for f in op.fused)), key=lambda m: m.index):
        for name in member.outputs:
            if name and name in g.tensor_buffer:
                seen.setdefault(g.tensor_buffer[name], None)
    return tuple(seen)


def old_pairwise(boxes: list[tuple[int, int, int, int]]) -> str | None:
    boxes = sorted(boxes)
    for i, (_f1, l1, o1, e1) in enumerate(boxes):
        for f2, _l2, o2, e2 in boxes[i + 1:]:
            if f2 > l1:
                break
            if o1 < e2 and o2 < e1:
                return f"overlap at step {f2} addresses [{max(o1, o2)}, {min(e1, e2)})"
    return None


# -- Graph's memoised views -----------------------------------------------------------------------------
def chain() -> Graph:
    """x -> a -> A -> b -> B (outputs y = b(A)); sizes 16, 32, 8 B."""
    return make_graph({"x": 16, "A": 32, "B": 8}, [("a", ["x"], ["A"]), ("b", ["A"], ["B"])], ["x"], ["B"])


def test_memoised_views_on_a_hand_checked_chain() -> None:
    g = chain()
    a, b = (g.operators[i] for i in g.file_order())
    bx, ba, bb = (g.tensor_buffer[n] for n in ("x", "A", "B"))
    assert g.op_reads(a) == (bx,) and g.op_writes(a) == (ba,)
    assert g.op_reads(b) == (ba,) and g.op_writes(b) == (bb,)
    assert g.op_dependencies() == {a.index: frozenset(), b.index: frozenset({a.index})}
    assert g.file_order() == (a.index, b.index) and g.computing_ops == (a, b)
    # A second call returns the memoised value, the same object.
    assert g.op_reads(a) is g.op_reads(a) and g.computing_ops is g.computing_ops


def test_op_dependencies_is_a_fresh_dict_each_call() -> None:
    g = chain()
    deps = g.op_dependencies()
    deps.clear()
    assert len(g.op_dependencies()) == 2


def test_an_operator_of_another_graph_is_not_answered_from_the_memo() -> None:
    g = chain()
    a = g.operators[g.file_order()[0]]
    g.op_reads(a)   # fill the memo
    other = replace(a, inputs=("A",), outputs=("B",))   # same index, other operands
    assert g.op_reads(other) == (g.tensor_buffer["A"],)
    assert g.op_writes(other) == (g.tensor_buffer["B"],)
    assert g.op_reads(a) == (g.tensor_buffer["x"],)


def test_the_memo_is_not_a_field() -> None:
    g = chain()
    g.op_dependencies()
    assert "_stowage_memo" in g.__dict__
    renamed = replace(g, name="other")   # a new graph object starts without a memo
    assert "_stowage_memo" not in renamed.__dict__
    assert replace(g) == g and renamed.op_dependencies() == g.op_dependencies()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs(max_ops=10), st.booleans())
def test_memoised_views_equal_the_old_computation(graph: Graph, fused: bool) -> None:
    g = fuse_in_place(graph) if fused else graph
    for _ in range(2):   # cold, then from the memo
        for op in g.computing_ops:
            assert g.op_reads(op) == old_op_reads(g, op)
            assert g.op_writes(op) == old_op_writes(g, op)
            assert g.step_members(op) == tuple(sorted((op, *(g.operators[f] for f in op.fused)),
                                                      key=lambda m: m.index))
        assert g.computing_ops == tuple(op for op in g.operators if op.computing)
        assert g.file_order() == tuple(op.index for op in g.operators if op.computing)
        assert g.is_topological(g.file_order())


# -- Hierarchy.index ---------------------------------------------------------------------------------
def test_level_index_table() -> None:
    t = three_level(100, 1000)
    assert [t.index(n) for n in ("sram", "hbm", "ddr")] == [0, 1, 2]
    assert t.hops("sram", "ddr") == 2 and t.hops("hbm", "sram") == 1
    narrowed = t.with_capacity(50)   # a copy: its own table, same answers
    assert narrowed.index("ddr") == 2
    with pytest.raises(TargetError, match="no level 'flash'"):
        t.index("flash")
    u55 = load_target("ethos-u55-256")
    assert [u55.index(n) for n in u55.level_names] == list(range(len(u55.levels)))


# -- check_solution's overlap sweep ------------------------------------------------------------------
@pytest.mark.parametrize(("boxes", "expected"), [
    ([], None),
    ([(0, 5, 0, 16), (1, 2, 16, 32), (3, 3, 0, 0)], None),                 # touching, empty at 0
    ([(0, 5, 0, 16), (5, 6, 8, 24)], "overlap at step 5 addresses [8, 16)"),  # meet at step 5
    ([(0, 4, 0, 16), (5, 6, 8, 24)], None),                                 # one after the other
    ([(0, 9, 0, 64), (2, 2, 32, 32)], "overlap at step 2 addresses [32, 32)"),  # empty box inside
    ([(0, 9, 0, 64), (2, 2, 64, 64)], None),                                # empty box at the end
    ([(0, 9, 0, 8), (1, 1, 8, 16), (2, 3, 4, 12)], "overlap at step 2 addresses [4, 8)"),
])
def test_overlap_sweep_on_hand_checked_boxes(boxes: list[tuple[int, int, int, int]], expected: str | None) -> None:
    assert old_pairwise(boxes) == expected
    assert boxes_overlap(sorted(boxes)) == (expected is not None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 6), st.integers(0, 10), st.integers(0, 6)),
                max_size=14))
def test_overlap_sweep_agrees_with_the_pairwise_scan(raw: list[tuple[int, int, int, int]]) -> None:
    boxes = sorted((f, f + d, o, o + w) for f, d, o, w in raw)
    assert boxes_overlap(boxes) == (old_pairwise(boxes) is not None)


def diamond_problem(capacity: int) -> Problem:
    g = make_graph({"x": 16, "A": 32, "B": 32, "y": 16},
                   [("a", ["x"], ["A"]), ("b", ["x"], ["B"]), ("j", ["A", "B"], ["y"])], ["x"], ["y"])
    return Problem(g, two_level(capacity, 16), False, time_limit=5.0, seed=0, workers=1)


def test_check_solution_rejects_the_same_mutants_with_the_same_message() -> None:
    """Every single-segment offset mutant of a feasible solution: accepted iff no two boxes
    overlap, and the message is the pairwise scan's."""
    prob = diamond_problem(96)
    data = joint_data(prob, "joint")
    sol = greedy_solution(data, prob.graph.file_order())
    assert sol is not None and check_solution(data, sol) is None
    size = {mb.id: mb.size for mb in data.buffers}
    rejected = 0
    for k, seg in enumerate(sol.segments):
        for off in range(0, 96, 16):
            segs = list(sol.segments)
            segs[k] = Segment(seg.buffer, seg.start, seg.end, off)
            mutant = JointSolution(sol.order, tuple(segs), sol.scratch_offsets)
            boxes = [(s.start, s.end, s.offset, s.offset + size[s.buffer]) for s in segs if size[s.buffer] > 0]
            why = check_solution(data, mutant)
            if off + size[seg.buffer] > 96:
                assert why is not None and "out of capacity" in why
                continue
            assert why == old_pairwise(boxes)
            rejected += why is not None
    assert rejected > 0   # some mutants collide: the check is exercised both ways


def test_check_solution_random_offsets_agree_with_the_pairwise_scan() -> None:
    prob = diamond_problem(128)
    data = joint_data(prob, "joint")
    sol = greedy_solution(data, prob.graph.file_order())
    assert sol is not None
    size = {mb.id: mb.size for mb in data.buffers}
    rng = random.Random(0)
    seen = {True: 0, False: 0}
    for _ in range(200):
        segs = tuple(Segment(s.buffer, s.start, s.end, 16 * rng.randrange(0, (128 - size[s.buffer]) // 16 + 1))
                     for s in sol.segments)
        why = check_solution(data, JointSolution(sol.order, segs, sol.scratch_offsets))
        boxes = [(s.start, s.end, s.offset, s.offset + size[s.buffer]) for s in segs if size[s.buffer] > 0]
        assert why == old_pairwise(boxes)
        seen[why is None] += 1
    assert seen[True] > 0 and seen[False] > 0


# -- the greedy packer's inner loop ------------------------------------------------------------------
def old_pack(order: list[int], ivs: list[Interval], adj: list[list[int]], align: int,
             best_fit: bool) -> tuple[list[int], int]:
    offset = [-1] * len(ivs)
    peak = 0
    for i in order:
        size = ivs[i].size
        if size == 0:
            offset[i] = 0
            continue
        busy = sorted((offset[j], offset[j] + ivs[j].size) for j in adj[i]
                      if offset[j] >= 0 and ivs[j].size > 0)
        chosen = first_fit(busy, size, align, presorted=True) if not best_fit else greedy._best_fit(busy, size, align)
        offset[i] = chosen
        peak = max(peak, chosen + size)
    return offset, peak


def test_pack_on_a_hand_checked_case() -> None:
    # Three intervals live together (8 + 4 + 0 B) and one after them (16 B): first-fit puts
    # the 8 B at 0, the 4 B at 8 (aligned to 4), the empty one at 0, the late one at 0.
    ivs = [Interval(0, 0, 2, 8), Interval(1, 1, 2, 4), Interval(2, 1, 1, 0), Interval(3, 3, 4, 16)]
    adj = greedy._conflicts(ivs)
    assert greedy._pack([0, 1, 2, 3], ivs, adj, 4, False) == ([0, 8, 0, 0], 16)
    assert greedy._pack([1, 0, 2, 3], ivs, adj, 4, True) == ([4, 0, 0, 0], 16)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10), st.integers(0, 5), st.integers(0, 40)), min_size=1, max_size=16),
       st.sampled_from([1, 4, 16]), st.booleans(), st.randoms(use_true_random=False))
def test_pack_equals_the_old_loop(raw: list[tuple[int, int, int]], align: int, best_fit: bool,
                                  rng: random.Random) -> None:
    ivs = [Interval(i, f, f + d, s) for i, (f, d, s) in enumerate(raw)]
    adj = greedy._conflicts(ivs)
    order = list(range(len(ivs)))
    rng.shuffle(order)
    assert greedy._pack(order, ivs, adj, align, best_fit) == old_pack(order, ivs, adj, align, best_fit)


# -- compile validates the plan it returns once ------------------------------------------------------
TINY = Path(__file__).resolve().parents[1] / "models" / "tiny_cnn.onnx"


def _count_validations(monkeypatch: pytest.MonkeyPatch) -> list[Plan]:
    """Every plan the validator judges, through both names it is called by."""
    seen: list[Plan] = []
    real = validate_module.validate

    def counting(graph: Graph, plan: Plan, target: object = None) -> validate_module.Verdict:
        seen.append(plan)
        return real(graph, plan, target)  # type: ignore[arg-type]

    monkeypatch.setattr(validate_module, "validate", counting)
    monkeypatch.setattr(registry, "run_validator", counting)
    return seen


#: A preset with a compute engine (plans are timed) and a target without one.
TARGETS = [pytest.param("ethos-u55-256", id="timed"), pytest.param(two_level(None), id="untimed")]


@pytest.mark.parametrize("target", TARGETS)
def test_compile_validates_the_returned_plan_once(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """With a compute engine the plan returned is the timed one; without one it is the
    solver's plan: either way it is judged once, and it is valid."""
    seen = _count_validations(monkeypatch)
    plan = compile_plan(TINY, target, capacity="M_P", time_limit=5)
    assert len(seen) == 1 and seen[0] is plan
    assert validate_module.validate(load_model(TINY), plan).ok


@pytest.mark.parametrize("target", TARGETS)
def test_compile_still_rejects_an_invalid_solver_plan(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """A solver's plan with its first load dropped (a real plan, mutated) is refused with the
    message the registry's own check gave."""
    real = registry.solve

    def dropping(problem: Problem, name: str = "auto", params: object = None, validate: bool = True) -> Plan:
        plan = real(problem, name, params, validate=False)
        return replace(plan, transfers=plan.transfers[1:])

    monkeypatch.setattr(registry, "solve", dropping)
    with pytest.raises(SolverError, match="solver 'auto' produced an invalid plan"):
        compile_plan(TINY, target, capacity="M_P", time_limit=5)


# -- op_buffers and spill_rank, memoised ---------------------------------------------------------------
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs(max_ops=10), st.booleans())
def test_op_buffers_equals_the_old_computation(graph: Graph, weights: bool) -> None:
    for _ in range(2):   # cold, then from the memo
        for op in graph.computing_ops:
            old: dict[int, None] = {}
            for b in (*old_op_reads(graph, op), *old_op_writes(graph, op)):
                if weights or graph.buffers[b].kind is not TensorKind.WEIGHT:
                    old.setdefault(b, None)
            assert op_buffers(graph, op, weights) == tuple(old)


def test_spill_rank_is_memoised_per_size_and_returns_a_fresh_list() -> None:
    # sram -> hbm (one hop, capacity 1000) -> ddr (two hops): a 100 B spill ranks hbm first.
    costs = CostModel(three_level(100, 1000))
    first = costs.spill_rank(100)
    assert [lv.name for _, lv in first] == ["hbm", "ddr"]
    assert [key[0] for key, _ in first] == [200, 400]   # 2 x size x hops
    first.clear()
    assert [lv.name for _, lv in costs.spill_rank(100)] == ["hbm", "ddr"]
    assert costs.spill_candidates(2000) == ("ddr",)      # hbm can never hold 2,000 B
