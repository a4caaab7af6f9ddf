"""The plan file: round trip plan -> JSON -> plan is identical, and malformed files are
rejected with a ``PlanFormatError`` naming the JSON path."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import light_models
from stowage.errors import PlanFormatError
from stowage.ir.onnx_import import load_graph
from stowage.plan import (
    STATUSES,
    LevelRef,
    Metrics,
    ModelRef,
    Placement,
    Plan,
    PlanBuffer,
    PlanOptions,
    PlanStep,
    SolverInfo,
    TargetRef,
    Transfer,
    load_plan,
    plan_from_json,
    plan_to_dict,
    plan_to_json,
    save_plan,
)
from stowage.solvers.problem import Problem
from stowage.solvers.registry import solve
from stowage.targets.hierarchy import load_target
from test_validate import VALID


def test_round_trip_of_a_real_plan(tmp_path) -> None:
    path = next(p for p in light_models() if p.stem == "light_squeezenet")
    graph = load_graph(path)
    plan = solve(Problem(graph, load_target("sn40l").with_capacity(None), True), "naive")
    save_plan(plan, tmp_path / "p.json")
    again = load_plan(tmp_path / "p.json")
    assert again == plan
    assert plan_to_json(again) == plan_to_json(plan)
    d = json.loads(plan_to_json(plan))
    # The fixed key names of the issue, in order.
    assert list(d) == ["format", "version", "model", "target", "options", "solver", "buffers", "steps",
                       "placements", "transfers", "metrics"]
    assert d["model"]["sha256"] == graph.source_sha256
    assert d["target"]["levels"][0] == {"name": "sram", "capacity": None, "alignment": 64}


def test_round_trip_of_the_hand_plan() -> None:
    plan = plan_from_json(json.dumps(VALID))
    assert VALID["version"] == 1
    # A version 1 plan is written back as version 2: step indices null, in_place false.
    upgraded = copy.deepcopy(VALID)
    upgraded["version"] = 2
    upgraded["options"]["in_place"] = False
    upgraded["options"]["qdq"] = "off"
    upgraded["metrics"]["estimated_seconds"] = None   # docs/timing.md: null when unknown
    for step in upgraded["steps"]:
        step["index"] = None
    assert plan_to_dict(plan) == upgraded
    again = plan_from_json(plan_to_json(plan))
    assert again == replace(plan, version=2)


names = st.text("abcdefghij_/.0123456789", min_size=1, max_size=8)


@st.composite
def plans(draw) -> Plan:
    nlev = draw(st.integers(1, 3))
    levels = tuple(LevelRef(f"L{i}", draw(st.none() | st.integers(1, 10**9)), draw(st.sampled_from([1, 4, 16, 64])))
                   for i in range(nlev))
    lv = st.sampled_from([x.name for x in levels])
    nbuf = draw(st.integers(1, 6))
    buffers = tuple(PlanBuffer(i, tuple(draw(st.lists(names, min_size=1, max_size=3))), draw(st.integers(0, 10**6)),
                               draw(st.sampled_from(["input", "output", "weight", "activation"])), draw(st.none() | lv))
                    for i in range(nbuf))
    bid = st.integers(0, nbuf - 1)
    steps = tuple(PlanStep(draw(names), draw(names), tuple(draw(st.lists(bid, max_size=3))),
                           tuple(draw(st.lists(bid, max_size=2)))) for _ in range(draw(st.integers(0, 5))))
    placements = []
    for _ in range(draw(st.integers(0, 6))):
        f = draw(st.integers(0, 20))
        placements.append(Placement(draw(bid), draw(lv), draw(st.integers(0, 10**9)), f,
                                    f + draw(st.integers(0, 5))))
    transfers = tuple(Transfer(draw(bid), draw(lv), draw(lv), draw(st.integers(0, 20)),
                               draw(st.sampled_from(["before", "after"])))
                      for _ in range(draw(st.integers(0, 4))))
    return Plan(
        model=ModelRef(draw(st.none() | names),
                       draw(st.none() | st.text("0123456789abcdef", min_size=64, max_size=64))),
        target=TargetRef(draw(names), draw(lv), levels),
        options=PlanOptions(draw(st.none() | st.integers(1, 8)), draw(st.booleans()),
                            draw(st.dictionaries(names, st.integers(1, 64), max_size=2))),
        solver=SolverInfo(draw(names), draw(st.sampled_from(["optimal", "feasible", "reference"])),
                          draw(st.none() | st.integers(0, 10**9)), draw(st.none() | st.integers(0, 10**9)),
                          draw(st.floats(0, 1e4, allow_nan=False))),
        buffers=buffers, steps=steps, placements=tuple(placements), transfers=transfers,
        metrics=Metrics(draw(st.integers(0, 10**9)), draw(st.integers(0, 10**9)),
                        {x.name: draw(st.integers(0, 10**9)) for x in levels}),
    )


@settings(max_examples=60, deadline=None)
@given(plans())
def test_round_trip_property(plan) -> None:
    assert plan_from_json(plan_to_json(plan)) == plan


def _broken(edit) -> str:
    d = copy.deepcopy(VALID)
    edit(d)
    return json.dumps(d)


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.pop("steps"), "plan file: $: missing key 'steps'"),
    (lambda d: d["placements"][2].pop("offset"), "plan file: $.placements[2]: missing key 'offset'"),
    (lambda d: d["buffers"][1].update(bytes="64"), 'plan file: $.buffers[1].bytes: expected an integer, got "64"'),
    (lambda d: d["options"].update(weights_in_compute_level=1),
     "plan file: $.options.weights_in_compute_level: expected true or false, got 1"),
    (lambda d: d.update(steps={}), "plan file: $.steps: expected an array, got dict"),
    (lambda d: d["transfers"][0].update(buffer=9),
     "plan file: $.transfers[0].buffer: unknown buffer id 9 (the plan has 4 buffers)"),
    (lambda d: d["steps"][0].update(reads=[7]),
     "plan file: $.steps[0].reads[0]: unknown buffer id 7 (the plan has 4 buffers)"),
    (lambda d: d["placements"][0].update(offset=-16), "plan file: $.placements[0].offset: must be >= 0, got -16"),
    (lambda d: d["placements"][0].update(first=2, last=1),
     "plan file: $.placements[0]: last (1) is before first (2)"),
    (lambda d: d["placements"][0].update(level="l2"),
     "plan file: $.placements[0].level: 'l2' is not one of sram, dram"),
    (lambda d: d["transfers"][0].update(phase="during"),
     "plan file: $.transfers[0].phase: 'during' is not one of before, after"),
    (lambda d: d["buffers"][2].update(id=5),
     "plan file: $.buffers[2]: buffer ids must be 0, 1, 2, ... in order; found 5 at position 2"),
    (lambda d: d["buffers"][0].update(kind="tensor"),
     "plan file: $.buffers[0].kind: 'tensor' is not one of input, output, weight, activation"),
    (lambda d: d.update(format="onnx"), "plan file: $.format is 'onnx', expected 'stowage-plan'"),
    (lambda d: d.update(version=3), "plan file: $.version 3 is not supported (this stowage reads versions 1, 2)"),
    (lambda d: d["target"].update(compute_level="l1"),
     "plan file: $.target.compute_level: 'l1' is not one of sram, dram"),
])
def test_malformed_plans_are_rejected(edit, message) -> None:
    with pytest.raises(PlanFormatError) as exc:
        plan_from_json(_broken(edit))
    assert str(exc.value) == message


def test_solver_status_is_one_of_the_documented_words() -> None:
    """docs/plan-format.md lists five statuses and tools branch on them, so the reader refuses any
    other word (it used to take any string) and says which words it accepts."""
    assert STATUSES == ("optimal", "feasible", "infeasible", "unknown", "reference")
    for status in STATUSES:
        d = copy.deepcopy(VALID)
        d["solver"]["status"] = status
        assert plan_from_json(json.dumps(d)).solver.status == status
    with pytest.raises(PlanFormatError) as exc:
        plan_from_json(_broken(lambda d: d["solver"].update(status="done")))
    assert str(exc.value) == ("plan file: $.solver.status: 'done' is not one of "
                              "optimal, feasible, infeasible, unknown, reference")
    with pytest.raises(PlanFormatError) as exc:
        plan_from_json(_broken(lambda d: d["solver"].update(status=None)))
    assert str(exc.value) == "plan file: $.solver.status: expected a string, got null"


def test_unreadable_files(tmp_path) -> None:
    with pytest.raises(PlanFormatError, match="plan file not found"):
        load_plan(tmp_path / "nope.json")
    (tmp_path / "t.json").write_text("[1, 2")
    with pytest.raises(PlanFormatError, match="plan file is not valid JSON"):
        load_plan(tmp_path / "t.json")
    (tmp_path / "a.json").write_text("[]")
    with pytest.raises(PlanFormatError, match=r"^plan file: \$: expected an object, got list$"):
        load_plan(tmp_path / "a.json")
