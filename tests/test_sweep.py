"""Sweeps: grid expansion, resumability, crash handling, and the same table from every executor."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import pytest

from stowage.errors import StowageError, TargetError
from stowage.tools import sweep as sweep_mod
from stowage.tools.sweep import (
    NONDETERMINISTIC_COLUMNS,
    Cell,
    SweepOptions,
    expand_capacities,
    make_cells,
    sweep,
)
from tests.helpers import chain_model, diamond_model, save

#: A fast solver with the tiny CNN's plans checked by hand in tests/test_report_timeline.py.
BASELINE_SOLVER = "baseline-fileorder-belady"


@pytest.fixture
def two_models(tmp_path: Path) -> list[str]:
    d = tmp_path / "models"
    d.mkdir()
    return [str(save(chain_model(4, 64), d / "chain.onnx")), str(save(diamond_model(), d / "diamond.onnx"))]


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in NONDETERMINISTIC_COLUMNS} for r in rows]


def test_expand_capacities_range_and_list():
    assert expand_capacities("M_R..M_P:3,256KiB,M_H") == [
        "M_R..M_P@0", "M_R..M_P@0.5", "M_R..M_P@1", "256KiB", "M_H",
    ]
    # 8 evenly spaced points include both ends.
    pts = expand_capacities("M_R..M_P:8")
    assert len(pts) == 8 and pts[0].endswith("@0") and pts[-1].endswith("@1")
    with pytest.raises(TargetError, match=r"M_R..M_P:N"):
        expand_capacities("M_R..1MiB")
    with pytest.raises(TargetError, match="at least 2"):
        expand_capacities("M_R..M_P:1")


def test_grid_is_product_in_order():
    cells = make_cells(["a", "b"], ["t"], ["1", "2"], ["s1", "s2"])
    assert len(cells) == 8
    assert cells[0] == Cell("a", "t", "1", "s1") and cells[-1] == Cell("b", "t", "2", "s2")


def test_chain_range_resolves_per_model(two_models, tmp_path):
    # chain of 4 Relu on 64 floats: every tensor 256 B, M_R = M_P = 512 (one in, one out).
    res = sweep([two_models[0]], "M_R..M_P:2,M_H", solvers=["minpeak"], results_dir=tmp_path / "r",
                executor="serial", report=False)
    caps = [r["capacity_bytes"] for r in res.rows]
    assert caps == [512, 512, 512]
    assert all(r["noncompulsory_bytes"] == 0 for r in res.rows)
    # The three specs are one capacity for this model: planned once, the others are copies.
    assert res.planned == 1 and res.ran == 3
    assert [r["same_as"] for r in res.rows] == [None, "M_R..M_P@0", "M_R..M_P@0"]
    assert [r["seconds"] for r in res.rows[1:]] == [0.0, 0.0]


@pytest.mark.slow  # > 1.5 s warm
def test_serial_local_dask_give_same_table(two_models, tmp_path):
    args = dict(capacity="M_R,M_P,1KiB", solvers=["minpeak", "naive"], report=False)
    serial = sweep(two_models, results_dir=tmp_path / "s", executor="serial", **args)
    local = sweep(two_models, results_dir=tmp_path / "l", executor="local", workers=2, **args)
    dask = sweep(two_models, results_dir=tmp_path / "d", executor="dask", workers=2, **args)
    assert len(serial.rows) == 12
    assert _strip(serial.rows) == _strip(local.rows) == _strip(dask.rows)
    # Each local worker parsed models once: at most 2 distinct worker ids did all the work.
    assert len({r["worker"] for r in local.rows}) <= 2


def test_rerun_skips_finished_cells_and_failures_are_rows(two_models, tmp_path):
    out = tmp_path / "r"
    first = sweep(two_models, "M_R,16", solvers=["minpeak"], results_dir=out, executor="serial", report=True)
    # 16 bytes is below M_R: recorded as an error row, the sweep goes on.
    errors = [r for r in first.rows if r["status"] == "error"]
    assert len(errors) == 2 and all("M_R" in r["error"] or "capacity" in r["error"] for r in errors)
    assert first.ran == 4 and first.failed == 2
    again = sweep(two_models, "M_R,16", solvers=["minpeak"], results_dir=out, executor="serial", report=True)
    assert again.ran == 0 and again.skipped == 4
    # The failures of the table are still counted by a resume that ran nothing.
    assert again.failed == 2 and again.failed_this_run == 0
    with open(out / "results.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    for name in ("sweep.md", "sweep.html"):
        assert (out / name).exists()
    assert "Pareto front" in (out / "sweep.md").read_text()
    assert "http://" not in (out / "sweep.html").read_text()


def test_options_mismatch_refused(two_models, tmp_path):
    out = tmp_path / "r"
    sweep(two_models[:1], "M_R", solvers=["naive"], results_dir=out, executor="serial", report=False)
    with pytest.raises(StowageError, match="different options"):
        sweep(two_models[:1], "M_R", solvers=["naive"], results_dir=out, executor="serial",
              element_bytes=1, report=False)


def _suicidal_run_cell(cell, options):
    """Stands in for a native crash: the worker process dies while planning 'chain'."""
    if "chain" in cell.model:
        os.kill(os.getpid(), signal.SIGKILL)
    return _real_run_cell(cell, options)


_real_run_cell = sweep_mod.run_cell


def test_killed_worker_is_retried_once_then_recorded(two_models, tmp_path, monkeypatch):
    # The local pool forks, so the patched function is what the workers run.
    monkeypatch.setattr(sweep_mod, "run_cell", _suicidal_run_cell)
    res = sweep(two_models, "M_R", solvers=["naive"], results_dir=tmp_path / "r", executor="local",
                workers=2, report=False)
    by_model = {Path(r["model"]).stem: r for r in res.rows}
    assert by_model["chain"]["status"] == "error"
    assert by_model["chain"]["attempts"] == 2
    assert "died" in by_model["chain"]["error"]
    assert by_model["diamond"]["status"] != "error"


def test_unknown_solver_and_missing_model_fail_fast(two_models, tmp_path):
    with pytest.raises(StowageError, match="unknown solver"):
        sweep(two_models, "M_R", solvers=["nope"], results_dir=tmp_path / "r")
    with pytest.raises(StowageError, match="not found"):
        sweep([str(tmp_path / "missing.onnx")], "M_R", solvers=["naive"], results_dir=tmp_path / "r")


def test_cli_sweep(two_models, tmp_path, capsys):
    from stowage.cli import main

    rc = main(["sweep", *two_models, "--capacity", "M_R,M_P", "--solvers", "minpeak",
               "--executor", "serial", "-o", str(tmp_path / "cli")])
    assert rc == 0
    assert "4 cells" in capsys.readouterr().out
    rc = main(["sweep", two_models[0], "--capacity", "M_R..2", "--solvers", "minpeak", "-o", str(tmp_path / "x")])
    assert rc == 2
    assert "M_R..M_P:N" in capsys.readouterr().err


def test_sweep_options_are_hashable():
    assert hash(SweepOptions(dims=(("batch", 1),)))


def test_result_is_a_list_of_records_with_a_dataframe(two_models, tmp_path):
    res = sweep(two_models, "M_R", solvers=["naive"], results_dir=tmp_path / "r", executor="serial", report=False)
    assert isinstance(res, list) and len(res) == 2 and res[0]["solver"] == "naive"
    df = res.dataframe()
    assert list(df["solver"]) == ["naive", "naive"]


@pytest.mark.slow  # > 1.5 s warm
def test_existing_dask_scheduler_by_address(two_models, tmp_path):
    from distributed import LocalCluster

    serial = sweep(two_models, "M_R,M_P", solvers=["minpeak"], results_dir=tmp_path / "s", executor="serial",
                   report=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        remote = sweep(two_models, "M_R,M_P", solvers=["minpeak"], results_dir=tmp_path / "d", executor="dask",
                       scheduler=cluster.scheduler_address, report=False)
    assert cluster.scheduler_address.startswith("tcp://")
    assert _strip(serial) == _strip(remote)


def test_interrupted_sweep_keeps_finished_cells_and_resumes(two_models, tmp_path):
    out = tmp_path / "r"

    def stop_after_three(done, total, failed, elapsed):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(two_models, "M_R,M_H,M_P", solvers=["minpeak"], results_dir=out, executor="local", workers=2,
              report=False, on_progress=stop_after_three)
    with open(out / "results.csv", newline="") as fh:
        kept = list(csv.DictReader(fh))
    assert len(kept) == 3  # every finished cell was on disk before the interrupt
    resumed = sweep(two_models, "M_R,M_H,M_P", solvers=["minpeak"], results_dir=out, executor="serial",
                    report=False)
    assert resumed.skipped == 3 and resumed.ran == 3 and len(resumed) == 6


def test_unreachable_scheduler_is_a_one_line_error(two_models, tmp_path):
    with pytest.raises(StowageError, match="cannot reach Dask scheduler"):
        sweep(two_models, "M_R", solvers=["naive"], results_dir=tmp_path / "r", executor="dask",
              scheduler="tcp://127.0.0.1:9", report=False, connect_timeout=0.5)


@pytest.mark.slow  # > 1.5 s: imports the CNN and draws the sweep report
def test_rows_and_dataframe_are_typed_and_gap_is_bytes(tmp_path):
    from models.build import TINY_PATH

    # The tiny CNN at M_R (32,784 B): the heuristic spills the stem's 16 KiB output once
    # (store + reload, 32,768 B; tests/test_show.py explains why it must).  16 B is refused.
    res = sweep([str(TINY_PATH)], "M_R,16", solvers=["heuristic"], results_dir=tmp_path / "r", executor="serial",
                report=True)
    at_mr, refused = res.rows
    assert at_mr["capacity_bytes"] == 32_784 and at_mr["noncompulsory_bytes"] == 32_768
    assert at_mr["compulsory_bytes"] == 12_328 and at_mr["traffic_bytes"] == 45_096
    assert at_mr["peak_bytes"]["sram"] == at_mr["compute_peak_bytes"] == 32_784
    assert at_mr["gap"] == 32_768 - at_mr["lower_bound"]  # bytes, like compile
    assert at_mr["gap_ratio"] == round(at_mr["gap"] / 32_768, 4)
    assert isinstance(at_mr["seconds"], float) and at_mr["attempts"] == 1 and at_mr["same_as"] is None
    assert refused["status"] == "error" and refused["capacity_bytes"] == 16 and refused["noncompulsory_bytes"] is None
    df = res.dataframe()
    assert str(df["capacity_bytes"].dtype) == "Int64" and str(df["gap"].dtype) == "Int64"
    assert str(df["seconds"].dtype) == "float64" and str(df["gap_ratio"].dtype) == "float64"
    assert list(df["peak_bytes_sram"].astype("float")[:1]) == [32_784.0]
    assert df["noncompulsory_bytes"].isna().tolist() == [False, True]
    # The report marks the refused capacity and formats numbers.
    md = (tmp_path / "r" / "sweep.md").read_text()
    assert "Refused (1 cells, marked x on the plot): heuristic at 16 B" in md
    assert "| M_R | 32,784 | heuristic |" in md and "| 32,768 | 12,328 | 32,784 |" in md


def test_a_table_with_the_old_ratio_gap_is_refused(two_models, tmp_path):
    from stowage.tools.sweep import LEGACY_COLUMNS, ResultsDirError

    out = tmp_path / "old"
    out.mkdir()
    (out / "results.csv").write_text(",".join(LEGACY_COLUMNS) + "\n")
    with pytest.raises(ResultsDirError, match=r"older stowage .*gap column is a ratio"):
        sweep(two_models[:1], "M_R", solvers=["naive"], results_dir=out, executor="serial", report=False)


def test_a_resumed_duplicate_is_copied_from_the_table(two_models, tmp_path):
    # chain: M_R = M_P = 512 B.  The first run plans M_R; the second adds M_P, which is the
    # same capacity: copied from the table, nothing planned.
    out = tmp_path / "r"
    first = sweep(two_models[:1], "M_R", solvers=["minpeak"], results_dir=out, executor="serial", report=False)
    assert first.planned == 1
    again = sweep(two_models[:1], "M_R,M_P", solvers=["minpeak"], results_dir=out, executor="serial", report=False)
    assert (again.skipped, again.ran, again.planned) == (1, 1, 0)
    assert [(r["capacity_spec"], r["same_as"], r["capacity_bytes"]) for r in again] == [
        ("M_R", None, 512), ("M_P", "M_R", 512)]


def test_latency_columns_are_typed_seconds_and_none_without_compute(tmp_path):
    from models.build import TINY_PATH

    # The tiny CNN at M_P (48 KiB, nothing spilled) on ethos-u55-256: the estimate is the
    # steps' busy times (154.711 us) plus the input load the first step waits for (128 ns +
    # 12,288 B / 0.5 GB/s = 24.704 us) and the output store after the last (128 ns + one 128 B
    # burst / 0.5 GB/s = 0.384 us), which is also the latency bound (docs/timing.md: every
    # first step waits for its load, every last step's output is stored after it);
    # tests/test_report_timeline.py has the same numbers.  A target without [compute] has
    # unknown time: None, not 0.
    plain = tmp_path / "plain.toml"
    plain.write_text(
        'name = "plain"\ncompute_level = "sram"\n[homes]\nweights = "dram"\ninputs = "dram"\noutputs = "dram"\n'
        '[[levels]]\nname = "sram"\ncapacity = "256KiB"\nread_bandwidth = 4.0e9\nwrite_bandwidth = 4.0e9\n'
        '[[levels]]\nname = "dram"\nread_bandwidth = 0.5e9\nwrite_bandwidth = 0.5e9\n')
    res = sweep([str(TINY_PATH)], "M_P", targets=["ethos-u55-256", str(plain)], solvers=[BASELINE_SOLVER],
                results_dir=tmp_path / "r", executor="serial", report=False)
    timed, untimed = res.rows
    assert timed["noncompulsory_bytes"] == 0 and isinstance(timed["estimated_seconds"], float)
    assert timed["latency_bound"] == pytest.approx(154.71123076923077e-6 + 24.704e-6 + 0.384e-6, rel=1e-12)
    assert timed["estimated_seconds"] == pytest.approx(timed["latency_bound"], rel=1e-12)
    assert untimed["status"] != "error" and untimed["estimated_seconds"] is None and untimed["latency_bound"] is None
    with open(tmp_path / "r" / "results.csv", newline="") as fh:
        raw = list(csv.DictReader(fh))
    assert float(raw[0]["estimated_seconds"]) == timed["estimated_seconds"]  # repr: reads back exactly
    assert raw[1]["estimated_seconds"] == raw[1]["latency_bound"] == ""


def test_a_table_without_the_latency_columns_is_refused(two_models, tmp_path):
    from stowage.tools.sweep import PRE_LATENCY_COLUMNS, ResultsDirError

    out = tmp_path / "old"
    out.mkdir()
    (out / "results.csv").write_text(",".join(PRE_LATENCY_COLUMNS) + "\n")
    with pytest.raises(ResultsDirError, match=r"older stowage .*no estimated_seconds and latency_bound"):
        sweep(two_models[:1], "M_R", solvers=["naive"], results_dir=out, executor="serial", report=False)
