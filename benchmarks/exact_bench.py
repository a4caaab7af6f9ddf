"""Exact solver on the onnx wheel's light model zoo, 8-bit, at M_R / M_H / M_P.

For each model, with and without weights in the compute level, and each budget: run the
``exact`` solver (mode ``auto``: joint model up to 40 operators, fixed schedule above) and
the ``heuristic`` solver when it is registered; print status, non-compulsory bytes, proven
bound, gap, time, and how much less traffic the exact plan has.  Every plan is validated by
the registry.  Alignment is set to 1 byte (COSMA's model has none, and M_R is defined
without padding).

    python benchmarks/exact_bench.py [--time-limit 10] [--workers 2] [--models squeezenet,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import onnx

from ir.errors import StowageError
from ir.onnx_import import load_graph
from solvers.budgets import budgets
from solvers.exact import ExactParams
from solvers.problem import Problem
from solvers.registry import available, solve
from targets.hierarchy import load_target

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def unaligned(target):
    return dataclasses.replace(target, levels=tuple(dataclasses.replace(lv, alignment=1) for lv in target.levels))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--models", default="")
    args = ap.parse_args()
    names = [m for m in args.models.split(",") if m]
    paths = sorted(p for p in LIGHT.glob("*.onnx") if not names or p.stem.replace("light_", "") in names)
    base = unaligned(load_target("ethos-u55-256"))
    has_heur = "heuristic" in available()
    print("| model | ops | weights | budget | capacity | mode | status | exact NC bytes | bound | gap | time s | heuristic NC | exact better by |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        graph = load_graph(path, element_bytes=1)
        nops = len(graph.computing_ops)
        for wicl in (False, True):
            b = budgets(graph, wicl)
            for bname in ("M_R", "M_H", "M_P"):
                cap = b.get(bname)
                prob = Problem(graph, base.with_capacity(cap), wicl, time_limit=args.time_limit,
                               seed=0, workers=args.workers)
                t0 = time.perf_counter()
                try:
                    plan = solve(prob, "exact", ExactParams())
                except StowageError as exc:
                    print(f"| {path.stem} | {nops} | {wicl} | {bname} | {cap} | - | error: {exc} |||||||", flush=True)
                    continue
                dt = time.perf_counter() - t0
                nc, lb = plan.metrics.noncompulsory_bytes, plan.solver.lower_bound
                gap = "-" if lb is None else (f"{(nc - lb) / nc:.1%}" if nc else "0%")
                mode = "joint" if nops <= 40 else "fixed-schedule"
                heur, better = "-", "-"
                if has_heur:
                    try:
                        hp = solve(prob, "heuristic")
                        heur = str(hp.metrics.noncompulsory_bytes)
                        hn = hp.metrics.noncompulsory_bytes
                        better = f"{hn - nc} B ({(hn - nc) / hn:.0%})" if hn else ("0" if nc == 0 else f"worse by {nc}")
                    except StowageError as exc:
                        heur = f"error: {exc}"
                print(f"| {path.stem} | {nops} | {wicl} | {bname} | {cap} | {mode} | {plan.solver.status} | {nc} | "
                      f"{'-' if lb is None else lb} | {gap} | {dt:.1f} | {heur} | {better} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
