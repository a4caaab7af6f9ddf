"""Monotone in capacity across a sweep (issue 14, item 2): along the capacities of one model,
target and solver a cell takes an earlier cell's plan when that moves fewer bytes
(``stowage.tools.sweep_monotone``), and says so in ``plan_from``.

The real case: the COSMA baselines are not monotone on their own.  On ``crossing_model`` (six
operators, 8-bit, weights in SRAM; M_R = 52 B, M_P = 80 B) ``baseline-fileorder-belady`` moves
36, 36, 36, 16, 24, 8 B at M_R..M_P:6 when each capacity is planned alone: at 74 B the
TFLite-style arena fragments where 69 B did not.  The sweep's column is 36, 36, 36, 16, 16, 8
with the 74 B cell reporting the 69 B cell's plan, which the validator accepts at 74 B."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from stowage.ir.onnx_import import load_graph
from stowage.plan.validate import validate
from stowage.solvers.portfolio import at_capacity
from stowage.solvers.problem import Problem
from stowage.solvers.registry import solve
from stowage.targets.hierarchy import load_target
from stowage.tools.sweep import NONDETERMINISTIC_COLUMNS, PRE_PLAN_FROM_COLUMNS, ResultsDirError, sweep
from stowage.tools.sweep_monotone import Chains, monotone_row
from tests.helpers import save
from tests.spill_cases import random_models

BELADY = "baseline-fileorder-belady"


def crossing_model() -> onnx.ModelProto:
    """x[1,4] -> MatMul t0[1,4] -> Add(x, t0) t1; MatMul x -> t2[1,8]; MatMul t0 -> t3[1,8];
    outputs Concat(t2, t1) and Concat(t1, t3), both [1,12] (found by a search over
    ``random_models`` for a baseline whose traffic rises with the capacity)."""
    def w(name: str, rows: int, cols: int) -> onnx.TensorProto:
        return helper.make_tensor(name, TensorProto.FLOAT, [rows, cols], [1.0] * (rows * cols))

    nodes = [helper.make_node("MatMul", ["x", "w0"], ["t0"], name="n0"),
             helper.make_node("Add", ["x", "t0"], ["t1"], name="n1"),
             helper.make_node("MatMul", ["x", "w2"], ["t2"], name="n2"),
             helper.make_node("MatMul", ["t0", "w3"], ["t3"], name="n3"),
             helper.make_node("Concat", ["t2", "t1"], ["t4"], name="n4", axis=1),
             helper.make_node("Concat", ["t1", "t3"], ["t5"], name="n5", axis=1)]
    vi = lambda t, n: helper.make_tensor_value_info(t, TensorProto.FLOAT, [1, n])  # noqa: E731
    g = helper.make_graph(nodes, "crossing", [vi("x", 4)], [vi("t4", 12), vi("t5", 12)],
                          initializer=[w("w0", 4, 4), w("w2", 4, 8), w("w3", 4, 8)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _sweep(model: str, out: Path, solvers: list[str], **kw):
    args = dict(element_bytes=1, weights_in_sram=True, time_limit=2.0, report=False, executor="serial")
    args.update(kw)
    return sweep([model], "M_R..M_P:6", solvers=solvers, results_dir=out, **args)


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in NONDETERMINISTIC_COLUMNS} for r in rows]


def test_a_baseline_that_rises_alone_is_monotone_in_the_sweep(tmp_path):
    model = str(save(crossing_model(), tmp_path / "crossing.onnx"))
    g = load_graph(model, element_bytes=1)
    target = load_target("ethos-u55-256")
    alone = [solve(Problem(g, target.with_capacity(c), True, time_limit=2.0), BELADY) for c in (52, 58, 63, 69, 74, 80)]
    assert [p.metrics.noncompulsory_bytes for p in alone] == [36, 36, 36, 16, 24, 8]      # rises at 74 B

    res = _sweep(model, tmp_path / "r", [BELADY])
    rows = res.rows
    assert [r["capacity_bytes"] for r in rows] == [52, 58, 63, 69, 74, 80]
    assert [r["noncompulsory_bytes"] for r in rows] == [36, 36, 36, 16, 16, 8]
    # 58 B and 63 B: the same traffic with a smaller compute peak at M_R; 74 B: the 69 B plan.
    assert [r["plan_from"] for r in rows] == [None, "M_R..M_P@0", "M_R..M_P@0", None, "M_R..M_P@0.6", None]
    at74 = rows[4]
    assert at74["compute_peak_bytes"] == alone[3].metrics.peak_bytes["sram"] <= 69
    assert at74["status"] == "feasible" and at74["lower_bound"] == 0 and at74["gap"] == 16
    # The 69 B plan is a plan at 74 B: the validator accepts it there.
    relabelled = at_capacity(alone[3], Problem(g, target.with_capacity(74), True))
    assert validate(g, relabelled).ok
    # The CSV says the same (the column is documented and written).
    with open(tmp_path / "r" / "results.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["plan_from"] for r in table] == ["", "M_R..M_P@0", "M_R..M_P@0", "", "M_R..M_P@0.6", ""]


def test_every_executor_and_a_resume_give_the_same_monotone_table(tmp_path):
    model = str(save(crossing_model(), tmp_path / "crossing.onnx"))
    solvers = [BELADY, "baseline-minpeak-belady"]
    serial = _sweep(model, tmp_path / "s", solvers)
    local = _sweep(model, tmp_path / "l", solvers, executor="local", workers=2)
    dask = _sweep(model, tmp_path / "d", solvers, executor="dask", workers=2)
    assert _strip(serial.rows) == _strip(local.rows) == _strip(dask.rows)
    # A resume whose table holds only the first cells (M_R, and minpeak at 58 B): the later
    # cells take those rows as candidates, as a full run does.
    out = tmp_path / "resumed"
    _sweep(model, out, solvers)
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:3] + lines[4:5]))
    resumed = _sweep(model, out, solvers)
    assert resumed.ran == 12 - 3
    assert _strip(resumed.rows) == _strip(serial.rows)
    for solver in solvers:
        traffic = [r["noncompulsory_bytes"] for r in serial.rows if r["solver"] == solver]
        assert traffic == sorted(traffic, reverse=True), (solver, traffic)


def test_monotone_row_takes_the_best_earlier_plan_with_its_own_bound():
    own = {"capacity_spec": "B", "status": "feasible", "noncompulsory_bytes": "24", "compute_peak_bytes": "70",
           "lower_bound": "10", "gap": "14", "gap_ratio": "0.5833", "seconds": "1.5", "objective": "",
           "estimated_seconds": "0.2", "latency_bound": "0.1", "plan_from": ""}
    a = dict(own, capacity_spec="A", noncompulsory_bytes="10", compute_peak_bytes="60", lower_bound="4",
             estimated_seconds="0.3", seconds="9")
    worse = dict(own, capacity_spec="A0", noncompulsory_bytes="30")
    err = {"capacity_spec": "E", "status": "error", "noncompulsory_bytes": "", "error": "boom"}
    got = monotone_row(own, [worse, err, a])
    # a's plan (10 B) under own's bound 10: optimal, gap 0; own's seconds stay.
    assert (got["noncompulsory_bytes"], got["compute_peak_bytes"], got["estimated_seconds"]) == ("10", "60", "0.3")
    assert (got["status"], got["gap"], got["gap_ratio"], got["plan_from"], got["seconds"]) == \
        ("optimal", "0", "0", "A", "1.5")
    # A tie on traffic goes to the smaller peak; a full tie keeps the cell's own plan.
    assert monotone_row(own, [dict(own, capacity_spec="T", compute_peak_bytes="69")])["plan_from"] == "T"
    assert monotone_row(own, [dict(own, capacity_spec="T")])["plan_from"] == ""
    # A plan found further down is named by the cell that found it.
    assert monotone_row(own, [dict(a, capacity_spec="A2", plan_from="A1")])["plan_from"] == "A1"
    # An error row stays an error.
    assert monotone_row(err, [a]) == {**err, "plan_from": ""}
    # Without a bound: feasible, no gap.
    nob = monotone_row(dict(own, lower_bound=""), [a])
    assert (nob["status"], nob["gap"], nob["gap_ratio"]) == ("feasible", "", "")


def test_chains_hold_a_row_until_the_smaller_capacities_have_theirs():
    def row(spec: str, traffic: int) -> dict:
        return {"capacity_spec": spec, "status": "feasible", "noncompulsory_bytes": str(traffic),
                "compute_peak_bytes": "1", "lower_bound": "0"}

    chains = Chains({"k": ["a", "b", "c"]})
    assert chains.add("c", row("c", 9)) == [] and chains.held == 1
    assert chains.add("x", row("x", 5)) == [("x", row("x", 5))]     # in no chain: straight through
    assert chains.add("b", row("b", 3)) == [] and chains.held == 2
    ready = chains.add("a", row("a", 4))
    assert [(cid, r["noncompulsory_bytes"], r["plan_from"]) for cid, r in ready] == \
        [("a", "4", ""), ("b", "3", ""), ("c", "3", "b")]
    assert chains.held == 0
    # Rows already final (a resumed table) are candidates, never emitted again.
    resumed = Chains({"k": ["a", "b"]}, {"a": row("a", 2)})
    assert [(cid, r["plan_from"]) for cid, r in resumed.add("b", row("b", 3))] == [("b", "a")]


def test_a_table_without_plan_from_is_refused(tmp_path):
    import pytest

    out = tmp_path / "old"
    out.mkdir()
    (out / "results.csv").write_text(",".join(PRE_PLAN_FROM_COLUMNS) + "\n")
    model = str(save(crossing_model(), tmp_path / "crossing.onnx"))
    with pytest.raises(ResultsDirError, match="no plan_from column"):
        _sweep(model, out, [BELADY])


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=random_models(max_ops=8), weights=st.booleans())
def test_a_sweeps_traffic_never_rises_with_capacity(m, weights):
    # auto and exact (each cell planned alone, then the chain pass), and a baseline, which
    # is not monotone by itself: every solver's column falls or stays along M_R..M_P:4.
    with tempfile.TemporaryDirectory() as tmp:
        model = str(save(m, Path(tmp) / "m.onnx"))
        res = sweep([model], "M_R..M_P:4,M_H", solvers=["auto", "exact", BELADY], results_dir=Path(tmp) / "r",
                    element_bytes=1, weights_in_sram=weights, time_limit=1.0, report=False, executor="serial")
        g = load_graph(model, element_bytes=1)
    target = load_target("ethos-u55-256")
    for solver in ("auto", "exact", BELADY):
        rows = sorted((r for r in res.rows if r["solver"] == solver), key=lambda r: r["capacity_bytes"])
        assert all(r["status"] != "error" for r in rows), [r["error"] for r in rows]
        traffic = [r["noncompulsory_bytes"] for r in rows]
        assert traffic == sorted(traffic, reverse=True), (solver, traffic)
        for r in rows:
            assert r["lower_bound"] is None or r["noncompulsory_bytes"] >= r["lower_bound"]
            assert r["compute_peak_bytes"] <= r["capacity_bytes"]
            if r["plan_from"] is not None and solver == BELADY:   # a fast solver: re-plan and validate
                src = next(x for x in rows if x["capacity_spec"] == r["plan_from"])
                plan = solve(Problem(g, target.with_capacity(src["capacity_bytes"]), weights, time_limit=1.0), solver)
                assert plan.metrics.noncompulsory_bytes == r["noncompulsory_bytes"]
                relabelled = at_capacity(plan, Problem(g, target.with_capacity(r["capacity_bytes"]), weights))
                assert validate(g, relabelled).ok
