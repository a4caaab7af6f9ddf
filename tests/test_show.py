"""``stowage show``, ``compile --json``, ``Plan.steps_table`` / ``to_dataframe`` and the one byte
formatter, on the tiny CNN at M_R, where every number is checked by hand below.

The tiny CNN at M_R = 32,784 B (gate_scale, a Mul, reads the 16 KiB gated tensor and the
16 B gate and writes 16 KiB: 16,384 + 16 + 16,384): the stem's 16 KiB output ``stem_out`` is
read again by gate_scale at step 5, but gate_conv1 and gate_conv2 (16 KiB in, 16 KiB out each)
run in between, so it must leave SRAM: stored after step 1 and reloaded before step 5, 2 x
16,384 = 32,768 B of non-compulsory traffic.  Compulsory: the 1x3x32x32 float32 image (12,288 B)
loaded and the 10 float32 logits (40 B) stored: 12,328 B.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.build import TINY_PATH
from stowage.cli import main
from stowage.format import axis_unit, fmt_bytes, fmt_bytes_exact, fmt_int
from stowage.plan import load_plan
from stowage.plan.tables import transfer_kinds


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("show") / "out"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        # --tiling off: a whole-tensor plan with a spill and a reload (with tiling, a cascade
        # ending in the gate's GlobalAveragePool moves nothing at M_R).
        rc = main(["-q", "compile", str(TINY_PATH), "--capacity", "M_R", "--solver", "heuristic",
                   "--tiling", "off", "-o", str(out), "--json"])
    assert rc == 0
    return json.loads(buf.getvalue()), out / "plan.json"


def test_compile_json_summary(compiled) -> None:
    d, plan_path = compiled
    assert d["model"] == "tiny_cnn" and d["target"] == "ethos-u55-256" and d["compute_level"] == "sram"
    assert d["budgets"] == {"M_R": 32_784, "M_H": 40_968, "M_P": 49_152}
    assert d["capacity"] == 32_784
    assert d["traffic"] == {"compulsory": 12_288 + 40, "noncompulsory": 2 * 16_384, "total": 12_328 + 32_768}
    assert d["peaks"]["sram"] == 32_784
    assert d["solver"] == "heuristic" and d["status"] in ("feasible", "optimal")
    # gap in bytes, as the text summary prints it
    assert d["gap"] == d["traffic"]["noncompulsory"] - d["bound"] >= 0
    assert d["tiled"] is False and d["cascades"] == 0 and d["steps"] == 16
    assert {"plan.json", "schedule.json", "plan.h"} <= {Path(f).name for f in d["files"]}
    assert d["seconds"]["solve"] <= d["seconds"]["total"]
    assert plan_path.is_file()


def test_show_transfers_json_has_kinds(compiled, capsys) -> None:
    _, plan_path = compiled
    assert main(["show", str(plan_path), "--transfers", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["transfers"]
    got = [(r["step"], r["phase"], r["kind"], r["tensor"], r["bytes"], r["src"], r["dst"]) for r in rows]
    assert got == [
        (0, "before", "load", "image", 12_288, "dram", "sram"),
        (1, "after", "spill", "stem_out", 16_384, "sram", "dram"),
        (5, "before", "reload", "stem_out", 16_384, "dram", "sram"),
        (15, "after", "store", "logits", 40, "sram", "dram"),
    ]


def test_show_tables_as_text(compiled, capsys) -> None:
    _, plan_path = compiled
    assert main(["show", str(plan_path)]) == 0
    out = capsys.readouterr().out
    assert "transfers: 4, 1 load, 1 reload, 1 spill, 1 store" in out
    assert "steps: 16" in out
    lines = out.splitlines()
    # Step 0: the image (12 KiB) and the stem's output (16 KiB) are live in SRAM: 28 KiB.
    step0 = next(line for line in lines if line.split()[:2] == ["0", "stem"])
    assert "28.00 KiB" in step0 and "12.00 KiB" in step0  # live sram, loaded
    # A piped table is one row per line (no wrapping): the spill row holds all its cells.
    spill = next(line for line in lines if " spill " in line)
    assert spill.split()[:5] == ["1", "after", "spill", "22", "stem_out"]


def test_show_allocation_filtered_by_level(compiled, capsys) -> None:
    _, plan_path = compiled
    assert main(["show", str(plan_path), "--allocation", "--level", "sram", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["allocation"]
    assert {r["level"] for r in rows} == {"sram"}
    stem = [(r["offset"], r["end"], r["first"], r["last"]) for r in rows if r["tensor"] == "stem_out"]
    # Two placements: before the spill (steps 0..1) and after the reload (step 5), 16 KiB each.
    assert len(stem) == 2 and all(end - off == 16_384 for off, end, _, _ in stem)
    assert sorted((f, la) for _, _, f, la in stem) == [(0, 1), (5, 5)]
    assert max(r["end"] for r in rows) <= 32_784


def test_show_errors_are_one_line(compiled, tmp_path, capsys) -> None:
    _, plan_path = compiled
    assert main(["show", str(plan_path), "--level", "l2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stowage: error: --level l2") and err.count("\n") == 1
    assert main(["show", str(tmp_path / "missing.json")]) == 2
    assert "plan file not found" in capsys.readouterr().err


def test_plan_steps_table_and_dataframe(compiled) -> None:
    _, plan_path = compiled
    plan = load_plan(plan_path)
    steps = plan.steps_table()
    assert len(steps) == 16
    assert steps[0]["op"] == "stem" and steps[0]["live_sram"] == 12_288 + 16_384 and steps[0]["loaded"] == 12_288
    assert steps[1]["spilled"] == 16_384 and steps[5]["reloaded"] == 16_384 and steps[15]["stored"] == 40
    assert max(s["live_sram"] for s in steps) == plan.metrics.peak_bytes["sram"] == 32_784
    assert transfer_kinds(plan).count("spill") == 1
    df = plan.to_dataframe()
    assert str(df["live_sram"].dtype) == "int64" and list(df["op"][:2]) == ["stem", "gate_conv1"]
    tr = plan.to_dataframe("transfers")
    assert list(tr["kind"]) == ["load", "spill", "reload", "store"] and int(tr["bytes"].sum()) == 45_096
    assert len(plan.to_dataframe("allocation")) == len(plan.placements)
    with pytest.raises(ValueError, match="steps, allocation, transfers"):
        plan.to_dataframe("nope")


def test_one_byte_formatter() -> None:
    assert fmt_bytes(None) == "-" and fmt_bytes(0) == "0 B" and fmt_bytes(1023) == "1023 B"
    assert fmt_bytes(1024) == "1.00 KiB" and fmt_bytes(32_784) == "32.02 KiB"
    assert fmt_bytes(3 << 20) == "3.00 MiB" and fmt_bytes(5 << 30) == "5.00 GiB"
    assert fmt_bytes_exact(32_784) == "32,784 B (32.02 KiB)" and fmt_bytes_exact(40) == "40 B"
    assert fmt_bytes_exact(None, none="unbounded") == "unbounded"
    assert fmt_int(12_328) == "12,328" and fmt_int(None) == "-"
    assert axis_unit(2047) == ("B", 1) and axis_unit(2048) == ("KiB", 1024) and axis_unit(3 << 20) == ("MiB", 1 << 20)
    # The comparison report and the sweep report use the same function.
    from stowage.tools import report

    assert report.fmt_bytes is fmt_bytes


def test_compile_json_narrow_bounds_and_tiled_seconds(tmp_path) -> None:
    """Below M_R, ``--solver exact`` on the tiny CNN at 16 KiB: the JSON carries the partition
    and joint models' bounds the text prints (both prove the plan's 32 KiB of non-compulsory
    traffic optimal over their classes), and the solve time covers the whole tiled search, not
    only the last macro solve."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["-q", "compile", str(TINY_PATH), "--capacity", "16384", "--solver", "exact",
                   "-o", str(tmp_path / "out"), "--json"])
    assert rc == 0
    d = json.loads(buf.getvalue())
    assert d["tiled"] is True and d["traffic"]["noncompulsory"] == 32_768
    assert d["partition_bound"] == 32_768 and d["joint_bound"] == 32_768
    assert d["whole_tensor_bound"] is None and d["stopped_by"] is None
    assert d["cascade_order"] in ("file", "min-peak", "branch", "other")
    assert d["bound"] <= d["traffic"]["noncompulsory"]
    plan = load_plan(tmp_path / "out" / "plan.json")
    assert plan.solver.seconds == d["seconds"]["solve"] > 0


def test_compile_json_whole_tensor_plan_has_null_narrow_bounds(compiled) -> None:
    d, _ = compiled
    assert d["partition_bound"] is None and d["joint_bound"] is None and d["stopped_by"] is None
    assert d["cascade_order"] is None
