"""Benchmark (issue 14, item 3): do the solvers return on time on a 10,000-operator graph?

The promise (``docs/solvers.md``, "On time and load"): every solver returns within
``time_limit`` + 10% + 2 s of wall time, validation included.  This script plans the random
layered graph of ``tests/test_on_time.py`` (Relu / Add / Concat, a window of 8 recent
tensors) at M_R on a two-level target, once per (solver, time limit), each run on a freshly
built graph (so no per-graph memo carries over between runs), and records the wall time of
``stowage.solvers.registry.solve`` (the solver, its assembly and the validator), the
traffic, ``found_by`` and ``stopped_by``, the process's CPU seconds (what the run costs
without contention: the solvers here are single-threaded, except CP-SAT's workers inside
``exact``) and the load average before and after the run.
The solver modules are imported once before the first run (a process start cost, not the
solver's).

    python benchmarks/on_time.py [--ops 10000] [--limits 10,4] [--solvers auto,divide,heuristic]
        [--repeat 1] [--busy 0] [--out benchmarks/results/on_time]

``--busy N`` starts N busy-loop processes (one core's worth of load each, as in
``benchmarks/load_independence.py``) for the whole run, so that a loaded machine can be
reproduced: on the 2-core VM, 8 of them give a load average of about 8-10.

``--models NAME:CAPACITY ...`` adds suite models (``models/suite/NAME.onnx``, 8-bit, activations
only, in-place operators fused, ethos-u55-256), planned by ``stowage.api.compile`` (validation
included; below M_R it tiles, ``docs/tiling.md``) at ``CAPACITY`` (bytes, ``128KiB``, ``M_R``,
``M_H``), each run on a freshly loaded graph; ``--ops 0`` leaves the layered graph out.

``--trees LABEL=PYTHONPATH,...`` runs every run once per tree, each in its own process with that
``PYTHONPATH`` (e.g. the branch point exported with ``git archive`` and its folder of links,
and the working tree's), one right after the other, so that both sides of a before/after
comparison meet the same load; the table then has a ``tree`` column.  Each process imports the
solver modules before its clock starts.

    python benchmarks/on_time.py --solvers exact,auto --limits 4,10 --busy 3 \
        --models pnasnet5:M_R efficientnet_b0:128KiB --trees before=/tmp/b.farm,after=/tmp/a.farm

Writes OUT.csv (one row per run) and OUT.md (the table for docs/benchmarks.md; with
``--repeat N`` above 1, also one row per case, tree, solver and limit: the median and largest
wall time and how many runs met the promise).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stowage.errors import StowageError  # noqa: E402
from stowage.ir.lifetimes import m_r  # noqa: E402
from stowage.solvers.problem import Problem  # noqa: E402
from stowage.solvers.registry import available, solve  # noqa: E402
from tests.spill_cases import two_level  # noqa: E402
from tests.test_on_time import layered_graph  # noqa: E402

log = logging.getLogger("benchmarks.on_time")


def _busy(stop_at: float) -> None:
    """Spin until the wall-clock time ``stop_at``: one core's worth of load."""
    while time.time() < stop_at:
        pass


def promise(limit: float) -> float:
    """The wall time a solver may take for ``limit``: ``limit`` + 10% + 2 s."""
    return 1.1 * limit + 2.0


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def one_run(ops: int, solver: str, limit: float, seed: int, case: str = "layered") -> dict:
    """One timed run: the layered graph of ``ops`` operators (``case`` "layered"), or a suite
    model at a capacity (``case`` "NAME:CAPACITY", through ``stowage.api.compile``)."""
    if case == "layered":
        g = layered_graph(ops, seed=seed)
        prob = Problem(g, two_level(m_r(g, False)), time_limit=limit)
        run = lambda: solve(prob, solver)  # noqa: E731
    else:
        from stowage.api import compile as compile_plan
        from stowage.ir.inplace import fuse_in_place
        from stowage.ir.onnx_import import load_graph

        name, capacity = case.split(":", 1)
        g = fuse_in_place(load_graph(ROOT / "models" / "suite" / f"{name}.onnx", element_bytes=1))
        run = lambda: compile_plan(g, capacity=capacity, solver=solver, time_limit=limit, seed=seed)  # noqa: E731
    row = {"case": case if case != "layered" else f"layered({len(g.computing_ops)})", "solver": solver,
           "ops": len(g.computing_ops), "limit": limit}
    before = load()
    c0 = time.process_time()
    t0 = time.perf_counter()
    try:
        plan = run()
    except StowageError as exc:     # e.g. minpeak below its peak: a refusal, on time or not
        wall = time.perf_counter() - t0
        return {**row, "wall": round(wall, 2),
                "cpu": round(time.process_time() - c0, 2), "promise": round(promise(limit), 2),
                "met": wall <= promise(limit), "traffic": -1,
                "found_by": f"error: {str(exc)[:60]}", "stopped_by": "", "load_before": round(before, 2),
                "load_after": round(load(), 2), "utc": time.strftime("%H:%M:%S", time.gmtime())}
    wall = time.perf_counter() - t0
    return {**row, "wall": round(wall, 2),
            "cpu": round(time.process_time() - c0, 2), "promise": round(promise(limit), 2),
            "met": wall <= promise(limit),
            "traffic": plan.metrics.noncompulsory_bytes, "found_by": plan.solver.found_by,
            "stopped_by": plan.solver.stopped_by or "", "load_before": round(before, 2), "load_after": round(load(), 2),
            "utc": time.strftime("%H:%M:%S", time.gmtime())}


def run_in_tree(pythonpath: str, ops: int, solver: str, limit: float, seed: int, case: str) -> dict:
    """``one_run`` in a fresh process whose ``stowage`` is the tree on ``pythonpath``."""
    env = {**os.environ, "PYTHONPATH": pythonpath}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", json.dumps([ops, solver, limit, seed, case])]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"on_time: run in {pythonpath} failed: {out.stderr.strip().splitlines()[-1:]}")
    row: dict = json.loads(lines[-1])
    return row


def table(rows: list[dict]) -> str:
    trees = any("tree" in r for r in rows)
    lines = [("| case | " + ("tree | " if trees else "") +
              "solver | limit s | wall s | wall / limit | CPU s | promise s | met | non-compulsory B | found_by | "
              "stopped_by | load 1-min before / after | UTC |"),
             "|---|" + ("---|" if trees else "") + "---|---:|---:|---:|---:|---:|---|---:|---|---|---|---|"]
    for r in rows:
        met = "yes" if r["met"] else "**no**"
        lines.append(f"| {r.get('case', 'layered')} | " + (f"{r.get('tree', '')} | " if trees else "") +
                     f"{r['solver']} | {r['limit']:g} | {r['wall']:.2f} | {r['wall'] / r['limit']:.2f} | "
                     f"{r['cpu']:.2f} | {r['promise']:.1f} | "
                     f"{met} | {r['traffic']:,} | {r['found_by']} | {r['stopped_by'] or '-'} | "
                     f"{r['load_before']:.2f} / {r['load_after']:.2f} | {r['utc']} |")
    return "\n".join(lines)


def medians(rows: list[dict]) -> str:
    """One row per (case, tree, solver, limit) over the repeats: the median and largest wall
    time, how many runs met the promise, and the traffic of each run (the clock may cut them
    differently)."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r.get("case", "layered"), r.get("tree", ""), r["solver"], r["limit"]), []).append(r)
    lines = [("| case | tree | solver | limit s | runs | median wall s | max wall s | median wall / limit | "
              "median CPU s | promise s | met | non-compulsory B (each run) | stopped_by |"),
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for (case, tree, solver, limit), rs in groups.items():
        walls = [r["wall"] for r in rs]
        med = statistics.median(walls)
        met = sum(1 for r in rs if r["met"])
        traffic = ", ".join(f"{r['traffic']:,}" for r in rs)
        stops = ", ".join(sorted({r["stopped_by"] or "-" for r in rs}))
        lines.append(f"| {case} | {tree or '-'} | {solver} | {limit:g} | {len(rs)} | {med:.2f} | {max(walls):.2f} | "
                     f"{med / limit:.2f} | {statistics.median(r['cpu'] for r in rs):.2f} | {promise(limit):.1f} | "
                     f"{met}/{len(rs)} | {traffic} | {stops} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=10_000)
    ap.add_argument("--limits", default="10,4")
    ap.add_argument("--solvers", default="auto,divide,heuristic")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--busy", type=int, default=0, help="busy-loop processes competing for the cores (0: none)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "on_time")
    ap.add_argument("--models", nargs="*", default=[], metavar="NAME:CAPACITY",
                    help="suite models at a capacity (bytes, 128KiB, M_R, M_H), planned by stowage.api.compile")
    ap.add_argument("--trees", default="", metavar="LABEL=PYTHONPATH,...",
                    help="run each case once per tree, in its own process (before/after comparisons)")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)   # internal: one run, JSON out
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    available()    # import the solver modules (OR-Tools, numba...) before the first clock starts
    if args.one:
        ops, solver, limit, seed, case = json.loads(args.one)
        print(json.dumps(one_run(ops, solver, limit, seed, case)), flush=True)
        return 0
    cases = (["layered"] if args.ops > 0 else []) + list(args.models)
    trees = [tuple(t.split("=", 1)) for t in args.trees.split(",") if t.strip()]
    procs = [mp.get_context("fork").Process(target=_busy, args=(time.time() + 3600,), daemon=True)
             for _ in range(args.busy)]
    for p in procs:
        p.start()
    if procs:
        time.sleep(20)    # let the load average rise to the busy loops' level
    started = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
    load_start = " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    rows = []
    for _ in range(args.repeat):
        for case in cases:
            for limit in (float(x) for x in args.limits.split(",")):
                for solver in (s.strip() for s in args.solvers.split(",") if s.strip()):
                    if not trees:
                        row = one_run(args.ops, solver, limit, args.seed, case)
                        rows.append(row)
                        print(row, flush=True)
                    for label, path in trees:
                        row = {"tree": label, **run_in_tree(path, args.ops, solver, limit, args.seed, case)}
                        rows.append(row)
                        print(row, flush=True)
    for p in procs:
        p.terminate()
        p.join()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    load_end = " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    trees_text = "; trees: " + ", ".join(f"{a} = `{b}`" for a, b in trees) if trees else ""
    text = (f"# on time\n\n`{' '.join(sys.argv)}`\n\nmachine: {platform.platform()}{trees_text}, "
            f"{os.cpu_count()} cores, {args.busy} busy-loop processes; started {stamp}, "
            f"load average (1/5/15 min) {load_start} at the start, "
            f"{load_end} at the end, {time.time() - started:.0f} s\n\n{table(rows)}\n"
            + (f"\nMedians over the {args.repeat} repeats:\n\n{medians(rows)}\n" if args.repeat > 1 else ""))
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
