"""Benchmark (issue 14, item 8): certified gaps of ``exact`` on the NAS networks.

For PNASNet-5, NASNet-A and DARTS (``models/suite.toml``, group ``nas``) -- 8-bit
(element_bytes=1), in-place operators fused (the CLI default), with and without weights in the
compute level, on ethos-u55-256 with its sram capacity set to M_R and M_H -- run ``exact``
(mode ``auto``) with one time limit and record its non-compulsory traffic, its proven lower
bound, the certified gap ``(traffic - bound) / traffic``, who found the plan and how long it
took.  Every plan goes through the validator (``stowage.solvers.registry.solve``).

    python benchmarks/nas_gap.py --time-limit 60 --workers 2 [--models darts] [--out FILE.csv]
    python benchmarks/nas_gap.py --time-limit 60 --workers 2 --without "cut bound,disjunctive bound,order LNS"

``--synthetic SEEDS`` plans instead the 44-operator NAS-like networks of ``nas_like`` (4 cells
of 4 weighted two-operator branches, 8-bit, weights in SRAM at M_R; one per seed, e.g.
``0,1,2,3``): the effect of the order LNS above the joint model's 40-operator limit (run it
with and without ``--without "order LNS"``).

``--without`` drops the named phases of the pipeline (``AutoPipeline.phases``) for the run: the
"before" column of a change, measured on the same graphs (importer and in-place fusion of the
working tree) and the same machine.

Prints a Markdown table (and writes ``--out`` as CSV when given), with ``date``, the load
average and the machine in the header so that figures can be pasted with their context.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# OR-Tools before anything that may import pulp/highspy (both ship a libhighs).
from exact_bench import add_without, apply_without  # noqa: E402  (benchmarks/, next to this script)
from ortools.sat.python import cp_model  # noqa: E402,F401

from models.build import load_manifest  # noqa: E402
from stowage.errors import StowageError  # noqa: E402
from stowage.ir.graph import Graph  # noqa: E402
from stowage.ir.inplace import fuse_in_place  # noqa: E402
from stowage.ir.onnx_import import load_graph  # noqa: E402
from stowage.solvers.budgets import target_budgets  # noqa: E402
from stowage.solvers.exact.params import ExactParams  # noqa: E402
from stowage.solvers.problem import Problem  # noqa: E402
from stowage.solvers.registry import solve  # noqa: E402
from stowage.targets.hierarchy import load_target  # noqa: E402


def gap(nc: int, lb: int | None) -> float | None:
    """The certified gap: the share of the plan's traffic the bound does not account for."""
    if lb is None:
        return None
    return 0.0 if nc == 0 else (nc - lb) / nc


def nas_like(seed: int, cells: int = 4, branches: int = 4) -> Graph:
    """A NAS-style network, the generator of ``tests/test_exact_lns.py`` (one definition):
    per cell, ``branches`` branches of a weighted operator and one more on the two previous
    cells' outputs (or the previous branch), summed pairwise and concatenated; 8-bit tensors.
    4 cells of 4 branches: 44 operators."""
    from dataclasses import replace

    from tests.test_exact_lns import nas_like as build

    return replace(build(seed, cells, branches), name=f"nas_like_{seed}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--models", default="", help="comma-separated names (default: the nas group)")
    ap.add_argument("--budgets", default="M_R,M_H")
    ap.add_argument("--settings", default="acts,weights", help="acts, weights or both")
    ap.add_argument("--out", default="", help="also write the rows as CSV here")
    ap.add_argument("--synthetic", default="", help="comma-separated seeds of nas_like networks to plan instead")
    add_without(ap)
    args = ap.parse_args()
    skip = apply_without(ap, args.without)
    names = {m for m in args.models.split(",") if m}
    target = load_target("ethos-u55-256")
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    print(f"`python benchmarks/nas_gap.py --time-limit {args.time_limit:g} --workers {args.workers}"
          + (f" --models {args.models}" if names else "") + (f' --without "{args.without}"' if skip else "")
          + "`\n")
    print(f"started {started}; machine {platform.platform()}, {os.cpu_count()} cores (shared VM); "
          f"load average at the start {os.getloadavg()[0]:.2f}\n")
    print("| model | ops | weights | budget | capacity | status | exact NC bytes | bound | gap | time s | found by |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows: list[dict] = []
    if args.synthetic:
        graphs = [(f"nas_like_{int(s)}", nas_like(int(s))) for s in args.synthetic.split(",")]
        settings, budget_names = ["weights"], ["M_R"]
    else:
        graphs = [(m.name, fuse_in_place(load_graph(m.path, element_bytes=1))) for m in load_manifest()
                  if m.group == "nas" and (not names or m.name in names)]
        settings, budget_names = args.settings.split(","), args.budgets.split(",")
    for name, graph in graphs:
        for setting in settings:
            weights = setting == "weights"
            b = target_budgets(graph, target, weights)
            for bname in budget_names:
                cap = {"M_R": b.m_r, "M_H": b.m_h, "M_P": b.m_p}[bname]
                prob = Problem(graph, target.with_capacity(cap), weights, time_limit=args.time_limit, seed=0,
                               workers=args.workers)
                row: dict = {"model": name, "ops": len(graph.computing_ops), "weights": weights,
                             "budget": bname, "capacity": cap}
                t0 = time.perf_counter()
                try:
                    plan = solve(prob, "exact", ExactParams())
                except StowageError as exc:
                    row["error"] = str(exc)[:120]
                    print(f"| {name} | {row['ops']} | {weights} | {bname} | {cap} | error: {row['error']} "
                          "||||||", flush=True)
                    rows.append(row)
                    continue
                nc, lb = plan.metrics.noncompulsory_bytes, plan.solver.lower_bound
                g = gap(nc, lb)
                row.update(status=plan.solver.status, nc=nc, bound=lb, gap=g,
                           seconds=round(time.perf_counter() - t0, 2), found_by=plan.solver.found_by,
                           stopped_by=plan.solver.stopped_by or "")
                rows.append(row)
                print(f"| {name} | {row['ops']} | {weights} | {bname} | {cap} | {row['status']} | {nc} | "
                      f"{'-' if lb is None else lb} | {'-' if g is None else f'{g:.1%}'} | {row['seconds']:.1f} | "
                      f"{row['found_by']} |", flush=True)
    gaps = [r["gap"] for r in rows if r.get("gap") is not None]
    print()
    if gaps:
        print(f"Summary: {len(gaps)} cases, certified gap median {statistics.median(gaps):.1%}, max {max(gaps):.1%}; "
              f"below 25%: {sum(g < 0.25 for g in gaps)}, below 10%: {sum(g < 0.10 for g in gaps)}.")
    up = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    print(f"ended {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; uptime: {up}")
    if args.out:
        with open(args.out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
