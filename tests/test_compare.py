"""``stowage compare`` on the tiny CNN: the report files, their tables and embedded pictures,
the best-plan marking, and failures as rows rather than crashes."""

from __future__ import annotations

import re

import pytest

from models.build import TINY_PATH
from stowage.cli import main
from stowage.ir.onnx_import import load_graph
from stowage.solvers.registry import available
from stowage.targets.hierarchy import load_target
from stowage.tools.report import layout_boxes, occupancy, run_comparison

BASELINE = "baseline-fileorder-belady"


def _solvers() -> list[str]:
    names = available()
    return [s for s in ("naive", BASELINE, "baseline-minpeak-greedy", "heuristic") if s in names]


@pytest.mark.slow  # > 1.5 s warm
def test_compare_writes_self_contained_report(tmp_path, capsys):
    out = tmp_path / "report"
    solvers = _solvers()
    rc = main(["-q", "compare", str(TINY_PATH), "--element-bytes", "1", "--capacity", "M_R,12KiB",
               "--solvers", ",".join(solvers), "--time-limit", "5", "-o", str(out)])
    assert rc == 0
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    # One table per capacity: M_R = 8196 B (hand-checked in test_models) and 12 KiB.
    assert "Capacity M_R = 8.00 KiB (8,196 B)" in md and "Capacity 12.00 KiB (12,288 B)" in md
    assert md.count("| solver | status | non-compulsory | compulsory | peak sram | peak dram |") == 2
    for s in solvers:
        assert f"| {s} |" in md or f"**{s}**" in md
    assert "★" in md and "&#9733;" in html
    # Pictures: layouts for each plan, the traffic curve; inlined in the HTML, files for the MD.
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "traffic_vs_capacity.png" in pngs
    # ethos-u55-256 has [compute]: the latency curve and one timeline per capacity's best plan.
    assert "latency_vs_capacity.png" in pngs and "## Estimated time versus capacity" in md
    assert len([p for p in pngs if p.startswith("timeline_")]) == 2
    assert len([p for p in pngs if p.startswith("layout_")]) == 2 * len(solvers)
    for name in pngs:
        assert f"]({name})" in md
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert html.count('src="data:image/png;base64,') == len(pngs)
    # Self-contained: no network references of any kind.
    assert not re.search(r"https?://|//cdn|<script|<link", html)
    assert len(list((out / "plans").glob("*.json"))) == 2 * len(solvers)
    # naive ignores the capacity: flagged, never marked best.
    if "naive" in solvers:
        row = next(line for line in md.splitlines() if line.startswith("| naive |"))
        assert "ignores the capacity" in row


def test_failing_solver_is_a_row_not_a_crash(tmp_path):
    graph = load_graph(TINY_PATH, element_bytes=1)
    target = load_target("ethos-u55-256")
    cmp = run_comparison(graph, target, ["4KiB", "M_R"], [BASELINE], time_limit=5)
    below, at_mr = cmp.capacities
    (r,) = cmp.runs_at(below)
    assert r.plan is None and "below M_R" in r.error
    assert cmp.best_at(below) is None
    (ok,) = cmp.runs_at(at_mr)
    assert ok.plan is not None and cmp.is_best(ok)
    # At M_R the peak (12288 B) does not fit: the baseline spills and reloads something.
    assert ok.noncompulsory > 0
    boxes = layout_boxes(ok.plan)
    assert any(b.spilled for b in boxes) and any(b.reloaded for b in boxes)
    assert max(b.offset + b.bytes for b in boxes) <= at_mr.bytes
    occ = occupancy(ok.plan)
    assert max(occ["sram"]) <= at_mr.bytes
    assert len(occ["sram"]) == len(ok.plan.steps)


def test_three_level_target_gets_occupancy_pictures(tmp_path):
    out = tmp_path / "r"
    rc = main(["-q", "compare", str(TINY_PATH), "--element-bytes", "1", "--target", "sn40l",
               "--capacity", "M_R", "--solvers", BASELINE, "-o", str(out)])
    assert rc == 0
    assert (out / f"occupancy_cap8196_{BASELINE}.png").exists()
    assert "peak hbm" in (out / "report.md").read_text()


def test_unknown_solver_is_a_user_error(tmp_path, capsys):
    rc = main(["-q", "compare", str(TINY_PATH), "--capacity", "M_R", "--solvers", "no-such-solver",
               "-o", str(tmp_path / "x")])
    assert rc == 2
    assert "unknown solver 'no-such-solver'" in capsys.readouterr().err


@pytest.mark.slow  # > 1.5 s: draws six pictures
def test_report_tables_and_two_level_occupancy(tmp_path, monkeypatch):
    import os

    from stowage.tools.report import build_sections, plot_traffic_curves, render_pages

    monkeypatch.chdir(TINY_PATH.parent.parent)  # the repository
    graph = load_graph(TINY_PATH, element_bytes=1)
    cmp = run_comparison(graph, load_target("ethos-u55-256"), ["M_R"], [BASELINE, "heuristic"], time_limit=5)
    # The model path is relative to the working directory, not the machine's absolute path.
    assert cmp.model_path == os.path.join("models", "tiny_cnn.onnx")
    sections, figures = build_sections(cmp)
    names = [f.file for f in figures]
    # Occupancy pictures for a two-level target too, one per plan.
    assert sorted(n for n in names if n.startswith("occupancy_")) == [
        f"occupancy_cap8196_{BASELINE}.png", "occupancy_cap8196_heuristic.png"]
    (s,) = sections
    spills = {t["solver"]: t for t in s["spills"]}
    # compare plans the graph as imported (no in-place fusion: 25 steps).  At M_R with 1-byte
    # elements the stem Relu's 4 KiB output, which gate_scale (step 9) reads again, leaves
    # SRAM while gate_conv1 and gate_conv2 (4 KiB in, 4 KiB out) run: stored after step 2,
    # reloaded before step 9.
    h = spills["heuristic"]
    assert [(r["step"], r["phase"], r["kind"], r["tensor"], r["bytes"]) for r in h["rows"]] == [
        (2, "after", "spill", "stem_relu", "4.00 KiB"), (9, "before", "reload", "stem_relu", "4.00 KiB")]
    assert h["summary"] == "1 spill (4.00 KiB), 1 reload (4.00 KiB)"
    steps = s["steps"]
    assert len(steps["rows"]) == 25 and steps["levels"] == ["sram", "dram"]
    # Step 0: the 3 KiB image in and the stem's 4 KiB output: 7 KiB live in SRAM.
    assert steps["rows"][0]["live"][0] == "7.00 KiB" and steps["rows"][0]["transfers"] == "load image 3.00 KiB"
    md = render_pages(cmp, sections, figures[0])["report.md"]
    assert "### Spills and reloads: heuristic" in md and "### Steps of the best plan" in md
    assert "| 2 | after | spill | stem_relu | 4.00 KiB | sram | dram |" in md
    assert str(TINY_PATH) not in md and "- model: models/tiny_cnn.onnx (25 computing operators" in md
    # Tied curves are named in the legend (smoke: drawing succeeds with a tie present).
    assert plot_traffic_curves(cmp)[:4] == b"\x89PNG"
