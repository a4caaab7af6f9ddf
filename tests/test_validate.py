"""The validator on hand-written plans: one valid plan per setting, one invalid plan per rule
(with the expected rule and message), and the CLI's exit codes.

The graph is ``chain_model(3)``: x -> relu0 -> t0 -> relu1 -> t1 -> relu2 -> y, float32
[1,16], so every buffer is 64 bytes: 0 = x (input), 1 = t0, 2 = t1, 3 = y (output).
The valid plan (sram 192 B, alignment 16; dram unbounded) reuses x's bytes for t1:

    sram  x [0,64) steps 0-0 | t0 [64,128) steps 0-1 | t1 [0,64) steps 1-2 | y [64,128) step 2
    dram  x [0,64) steps 0-2 | y [64,128) step 2
    load x before step 0, store y after step 2: compulsory 128, peak sram 128, dram 128
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import chain_model, diamond_model
from stowage.cli import main
from stowage.ir.onnx_import import load_graph
from stowage.plan import plan_from_dict
from stowage.plan.validate import validate
from stowage.solvers.problem import Problem
from stowage.solvers.registry import solve
from stowage.targets.hierarchy import load_target

VALID = {
    "format": "stowage-plan", "version": 1,
    "model": {"path": "chain.onnx", "sha256": None},
    "target": {"name": "test", "compute_level": "sram",
               "levels": [{"name": "sram", "capacity": 192, "alignment": 16},
                          {"name": "dram", "capacity": None, "alignment": 16}]},
    "options": {"element_bytes": None, "weights_in_compute_level": True, "dims": {}},
    "solver": {"name": "hand", "status": "feasible", "objective": 0, "lower_bound": 0, "seconds": 0.0},
    "buffers": [
        {"id": 0, "tensors": ["x"], "bytes": 64, "kind": "input", "home": "dram"},
        {"id": 1, "tensors": ["t0"], "bytes": 64, "kind": "activation", "home": None},
        {"id": 2, "tensors": ["t1"], "bytes": 64, "kind": "activation", "home": None},
        {"id": 3, "tensors": ["y"], "bytes": 64, "kind": "output", "home": "dram"},
    ],
    "steps": [
        {"op": "relu0", "op_type": "Relu", "reads": [0], "writes": [1]},
        {"op": "relu1", "op_type": "Relu", "reads": [1], "writes": [2]},
        {"op": "relu2", "op_type": "Relu", "reads": [2], "writes": [3]},
    ],
    "placements": [
        {"buffer": 0, "level": "dram", "offset": 0, "first": 0, "last": 2},
        {"buffer": 3, "level": "dram", "offset": 64, "first": 2, "last": 2},
        {"buffer": 0, "level": "sram", "offset": 0, "first": 0, "last": 0},
        {"buffer": 1, "level": "sram", "offset": 64, "first": 0, "last": 1},
        {"buffer": 2, "level": "sram", "offset": 0, "first": 1, "last": 2},
        {"buffer": 3, "level": "sram", "offset": 64, "first": 2, "last": 2},
    ],
    "transfers": [
        {"buffer": 0, "src": "dram", "dst": "sram", "step": 0, "phase": "before"},
        {"buffer": 3, "src": "sram", "dst": "dram", "step": 2, "phase": "after"},
    ],
    "metrics": {"compulsory_bytes": 128, "noncompulsory_bytes": 0, "peak_bytes": {"sram": 128, "dram": 128}},
}


@pytest.fixture(scope="module")
def chain_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("chain") / "chain.onnx"
    onnx.save(chain_model(3), path)
    return path


@pytest.fixture(scope="module")
def chain(chain_path):
    return load_graph(chain_path)


def edited(**changes) -> dict:
    d = copy.deepcopy(VALID)
    for key, fn in changes.items():
        fn(d[key])
    return d


def check(graph, d):
    return validate(graph, plan_from_dict(d))


def test_valid_hand_plan(chain) -> None:
    v = check(chain, VALID)
    assert v.ok, v.summary()
    assert v.errors == ()
    assert v.metrics.compulsory_bytes == 128
    assert v.metrics.noncompulsory_bytes == 0
    assert dict(v.metrics.peak_bytes) == {"sram": 128, "dram": 128}


def test_valid_spill_and_reload_at_another_offset(chain) -> None:
    """t0 stored after step 0, reloaded before step 1 at offset 128: 128 non-compulsory bytes."""
    d = copy.deepcopy(VALID)
    d["placements"][3] = {"buffer": 1, "level": "sram", "offset": 64, "first": 0, "last": 0}
    d["placements"] += [{"buffer": 1, "level": "sram", "offset": 128, "first": 1, "last": 1},
                        {"buffer": 1, "level": "dram", "offset": 128, "first": 0, "last": 1}]
    d["transfers"][1:1] = [{"buffer": 1, "src": "sram", "dst": "dram", "step": 0, "phase": "after"},
                           {"buffer": 1, "src": "dram", "dst": "sram", "step": 1, "phase": "before"}]
    d["metrics"] = {"compulsory_bytes": 128, "noncompulsory_bytes": 128, "peak_bytes": {"sram": 192, "dram": 192}}
    v = check(chain, d)
    assert v.ok, v.summary()


def _only(v, rule: int):
    errs = [e for e in v.errors if e.rule == rule]
    assert errs, f"expected a rule {rule} violation, got {v.summary()}"
    assert not v.ok
    return errs[0]


def test_rule1_order_not_topological(chain) -> None:
    d = edited(steps=lambda s: s.insert(0, s.pop(1)))
    e = _only(check(chain, d), 1)
    assert e.message == "step 0 (relu1): reads buffer 1 (t0) before its producer 'relu0' has run"
    assert e.step == 0 and e.buffers == (1,)


def test_rule1_plan_for_another_graph(chain) -> None:
    d = edited(buffers=lambda b: b[1].update(bytes=32))
    e = _only(check(chain, d), 1)
    assert e.message == "buffer 1 (t0) is 32 bytes, activation in the plan but 64 bytes, activation in the graph"
    d = edited(steps=lambda s: s.pop())
    assert "operator 'relu2' (Relu) is never run" in [x.message for x in check(chain, d).errors]
    d = edited(steps=lambda s: s[1].update(reads=[0]))
    e = _only(check(chain, d), 1)
    assert e.message == "step 1 (relu1): reads buffers [0] but the operator reads [1]"
    d = edited(steps=lambda s: s.append(dict(s[0])))
    assert "step 3 (relu0): operator 'relu0' appears twice in the steps" in [x.message for x in check(chain, d).errors]


def test_rule2_read_without_placement(chain) -> None:
    """t1's sram placement ends after step 1, but relu2 reads it at step 2."""
    d = edited(placements=lambda p: p[4].update(last=1))
    e = _only(check(chain, d), 2)
    assert e.message == "step 2 (relu2): reads buffer 2 (t1), which has no sram placement covering the step"


def test_rule2_read_of_data_never_loaded(chain) -> None:
    d = edited(transfers=lambda t: t.pop(0))
    v = check(chain, d)
    e = _only(v, 2)
    assert e.message == ("step 0 (relu0): reads buffer 0 (x) from sram at [0, 64), which holds no valid data "
                         "(never loaded, or not reloaded after it left)")
    assert _only(v, 6).message == "transfers move 64 byte-hops, less than the compulsory 128"


def test_rule2_write_without_placement(chain) -> None:
    d = edited(placements=lambda p: p.pop(3))
    msgs = [e.message for e in check(chain, d).errors if e.rule == 2]
    assert msgs[0] == "step 0 (relu0): writes buffer 1 (t0), which has no sram placement covering the step"


def test_rule3_transfer_from_level_without_data(chain) -> None:
    d = edited(transfers=lambda t: t.insert(1, {"buffer": 1, "src": "dram", "dst": "sram", "step": 1,
                                                 "phase": "before"}))
    e = _only(check(chain, d), 3)
    assert e.message == ("step 1 (relu1): transfer of buffer 1 (t0) dram -> sram (before): "
                         "no dram placement covers the step")


def test_rule3_transfer_of_stale_data(chain) -> None:
    """y is stored before relu2 has produced it: the sram copy holds nothing yet."""
    d = edited(transfers=lambda t: t[1].update(phase="before"))
    v = check(chain, d)
    e = _only(v, 3)
    assert e.message == ("step 2 (relu2): transfer of buffer 3 (y) sram -> dram (before): the sram copy at "
                         "[64, 128) holds no valid data at this point")
    assert _only(v, 5).message == "graph output buffer 3 (y) does not end valid in its home level dram"


def test_rule3_transfer_into_read_only_level_needs_target(chain) -> None:
    """Writability is not in the plan file: checked only when a target is given."""
    d = copy.deepcopy(VALID)
    d["target"]["levels"] = [{"name": "sram", "capacity": 192, "alignment": 4},
                             {"name": "sdram", "capacity": None, "alignment": 4},
                             {"name": "flash", "capacity": None, "alignment": 4}]
    for b in d["buffers"]:
        if b["home"]:
            b["home"] = "sdram"
    for p in d["placements"]:
        if p["level"] == "dram":
            p["level"] = "sdram"
    d["placements"].append({"buffer": 1, "level": "flash", "offset": 0, "first": 0, "last": 0})
    d["transfers"] = [{"buffer": 0, "src": "sdram", "dst": "sram", "step": 0, "phase": "before"},
                      {"buffer": 1, "src": "sram", "dst": "flash", "step": 0, "phase": "after"},
                      {"buffer": 3, "src": "sram", "dst": "sdram", "step": 2, "phase": "after"}]
    d["metrics"] = {"compulsory_bytes": 128, "noncompulsory_bytes": 128,
                    "peak_bytes": {"sram": 128, "sdram": 128, "flash": 64}}
    plan = plan_from_dict(d)
    assert validate(chain, plan).ok
    v = validate(chain, plan, load_target("mcu-cortex-m7"))
    e = _only(v, 3)
    assert e.message == "step 0 (relu0): transfer of buffer 1 (t0) sram -> flash (after): level flash is not writable"


def test_rule4_overlap(chain) -> None:
    d = edited(placements=lambda p: p[3].update(offset=0))
    v = check(chain, d)
    e = _only(v, 4)
    assert e.message == ("step 0 (relu0): buffer 1 (t0) overlaps buffer 0 (x) in sram at [0, 64) "
                         "(steps [0, 1] and [0, 0])")
    assert set(e.buffers) == {0, 1}
    assert [x.rule for x in v.errors] == [4]  # y still ends at 128: the peak is unchanged


def test_rule4_overlap_partial_and_next_step(chain) -> None:
    """t1 at [48, 112) from step 1 overlaps t0 [64, 128) still live at step 1 (alignment 16)."""
    d = edited(placements=lambda p: p[4].update(offset=48))
    e = _only(check(chain, d), 4)
    assert e.message == ("step 1 (relu1): buffer 2 (t1) overlaps buffer 1 (t0) in sram at [64, 112) "
                         "(steps [1, 2] and [0, 1])")


def test_rule4_alignment_and_capacity(chain) -> None:
    d = edited(placements=lambda p: p[3].update(offset=72))
    msgs = [e.message for e in check(chain, d).errors if e.rule == 4]
    assert "step 0 (relu0): buffer 1 (t0) in sram: offset 72 is not a multiple of the alignment 16" in msgs
    d = edited(placements=lambda p: p[3].update(offset=160))
    msgs = [e.message for e in check(chain, d).errors if e.rule == 4]
    assert msgs == ["step 0 (relu0): buffer 1 (t0) in sram at [160, 224) exceeds the capacity 192"]


def test_rule4_two_placements_of_one_buffer_in_one_level(chain) -> None:
    d = edited(placements=lambda p: p.append({"buffer": 1, "level": "sram", "offset": 128, "first": 1, "last": 1}))
    msgs = [e.message for e in check(chain, d).errors if e.rule == 4]
    assert "step 1 (relu1): buffer 1 (t0) has two placements in sram (steps [0, 1] and [1, 1])" in msgs


def test_rule4_placement_past_the_last_step(chain) -> None:
    d = edited(placements=lambda p: p[0].update(last=5))
    e = _only(check(chain, d), 4)
    assert e.message == "buffer 0 (x) in dram: step range [0, 5] is not inside the plan's 3 steps"


def test_rule5_output_never_stored(chain) -> None:
    d = edited(transfers=lambda t: t.pop(1))
    v = check(chain, d)
    assert _only(v, 5).message == "graph output buffer 3 (y) does not end valid in its home level dram"
    assert _only(v, 6).message == "transfers move 64 byte-hops, less than the compulsory 128"


def test_rule7_wrong_metrics(chain) -> None:
    d = edited(metrics=lambda m: m.update(compulsory_bytes=0, noncompulsory_bytes=128))
    v = check(chain, d)
    assert [e.message for e in v.errors] == [
        "metrics.compulsory_bytes is 0, recomputed 128",
        "metrics.noncompulsory_bytes is 128, recomputed 0",
    ]
    assert {e.rule for e in v.errors} == {7}


def test_weights_read_in_place_cost_nothing(tmp_path) -> None:
    """diamond: W (32 B) is read in place from dram when weights need not be in sram."""
    path = tmp_path / "diamond.onnx"
    onnx.save(diamond_model(), path)
    graph = load_graph(path)
    target = load_target("ethos-u55-256").with_capacity(None)
    plan_out = solve(Problem(graph, target, weights_in_compute_level=False), "naive")
    plan_in = solve(Problem(graph, target, weights_in_compute_level=True), "naive")
    v_out, v_in = validate(graph, plan_out), validate(graph, plan_in)
    assert v_out.ok and v_in.ok
    # x 32 B in, y 32 B out; W 32 B more when it must be in sram.  The shape constant is
    # never read by a computing step, so it costs nothing either way.
    assert v_out.metrics.compulsory_bytes == 64
    assert v_in.metrics.compulsory_bytes == 96
    assert not any(p.buffer == 0 and p.level == "sram" for p in plan_out.placements)


# ---------------------------------------------------------------------------------------
# Property: naive plans of random chains are valid; any offset shift onto a live neighbour
# is caught.
# ---------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 12), size=st.integers(1, 40), weights=st.booleans(), data=st.data())
def test_naive_plans_valid_and_shift_caught(tmp_path, n, size, weights, data) -> None:
    from dataclasses import replace

    from stowage.ir.onnx_import import import_model

    graph = import_model(chain_model(n, size))
    target = load_target(data.draw(st.sampled_from(["ethos-u55-256", "sn40l", "edgetpu"]))).with_capacity(None)
    plan = solve(Problem(graph, target, weights), "naive")
    v = validate(graph, plan)
    assert v.ok and v.metrics == plan.metrics
    comp = [i for i, p in enumerate(plan.placements) if p.level == target.compute_level]
    i = data.draw(st.sampled_from(comp))
    live = [j for j in comp if j != i and not (plan.placements[j].last < plan.placements[i].first
                                               or plan.placements[j].first > plan.placements[i].last)]
    if live:
        j = data.draw(st.sampled_from(live))
        pls = list(plan.placements)
        pls[i] = replace(pls[i], offset=pls[j].offset)
        assert 4 in {e.rule for e in validate(graph, replace(plan, placements=tuple(pls))).errors}


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------
def test_cli_exit_codes(chain_path, tmp_path, capsys) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(VALID))
    assert main(["validate", str(chain_path), str(good)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "compulsory bytes      128" in out

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(edited(placements=lambda p: p[3].update(offset=0))))
    assert main(["validate", str(chain_path), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "rule 4: step 0 (relu0): buffer 1 (t0) overlaps buffer 0 (x) in sram at [0, 64)" in out

    assert main(["validate", str(chain_path), str(bad), "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["valid"] is False and d["errors"][0]["rule"] == 4 and d["metrics"]["compulsory_bytes"] == 128

    broken = tmp_path / "broken.json"
    broken.write_text("{\"format\": \"stowage-plan\"")
    assert main(["validate", str(chain_path), str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stowage: error: plan file is not valid JSON") and err.count("\n") == 1

    assert main(["validate", str(tmp_path / "missing.onnx"), str(good)]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_cli_warns_on_other_model_file(chain_path, tmp_path, capsys) -> None:
    d = copy.deepcopy(VALID)
    d["model"]["sha256"] = "0" * 64
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(d))
    assert main(["validate", str(chain_path), str(p)]) == 0
    assert "is not the model the plan was made from" in capsys.readouterr().err


def test_cli_wrong_model_is_invalid(tmp_path, capsys) -> None:
    other = tmp_path / "chain5.onnx"
    onnx.save(chain_model(5), other)
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(VALID))
    assert main(["validate", str(other), str(p)]) == 1
    assert "plan has 4 buffers, the graph has 6" in capsys.readouterr().out


def test_plans_built_in_code_with_unknown_names_get_violations(chain) -> None:
    from dataclasses import replace

    from stowage.plan import Placement

    plan = plan_from_dict(VALID)
    bad = replace(plan, placements=plan.placements + (Placement(9, "l3", 0, 0, 0),))
    v = validate(chain, bad)
    assert [e.message for e in v.errors] == ["the plan refers to an unknown level l3",
                                              "the plan refers to an unknown buffer 9"]


def test_target_homes_are_checked(chain) -> None:
    plan = plan_from_dict(VALID)
    assert validate(chain, plan, load_target("ethos-u55-256")).ok
    d = copy.deepcopy(VALID)
    d["target"]["levels"] = [{"name": "sram", "capacity": 192, "alignment": 4},
                             {"name": "sdram", "capacity": None, "alignment": 4},
                             {"name": "flash", "capacity": None, "alignment": 4}]
    d["buffers"][0]["home"] = "flash"
    d["buffers"][3]["home"] = "flash"
    for p in d["placements"]:
        if p["level"] == "dram":
            p["level"] = "flash"
    for t in d["transfers"]:
        for k in ("src", "dst"):
            t[k] = "flash" if t[k] == "dram" else t[k]
    d["metrics"] = {"compulsory_bytes": 256, "noncompulsory_bytes": 0,
                    "peak_bytes": {"sram": 128, "sdram": 0, "flash": 128}}
    v = validate(chain, plan_from_dict(d), load_target("mcu-cortex-m7"))
    msgs = [e.message for e in v.errors]
    assert "buffer 0 (x) (input) has home flash, target 'mcu-cortex-m7' keeps inputs in sdram" in msgs
    assert "step 2 (relu2): transfer of buffer 3 (y) sram -> flash (after): level flash is not writable" in msgs
