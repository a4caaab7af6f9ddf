"""Speed of the plan validator and the simulator.

    python benchmarks/plan_check_bench.py

Validator: naive plans of every light-zoo model (weights in the compute level), plus a
synthetic chain of 10,000 Relus (10k steps).  Simulator: naive plans of every light-zoo
model (first run pays ORT session creation; the table shows the first run).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import chain_model
from stowage.ir.onnx_import import import_model, load_graph
from stowage.plan.validate import validate
from stowage.simulate import simulate
from stowage.solvers.problem import Problem
from stowage.solvers.registry import solve
from stowage.targets.hierarchy import load_target

LIGHT = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    target = load_target("ethos-u55-256").with_capacity(None)
    print("| model | steps | placements | transfers | validate s | valid | simulate s | outputs |")
    print("|---|---:|---:|---:|---:|---|---:|---|")
    for path in sorted(LIGHT.glob("*.onnx")):
        graph = load_graph(path)
        plan = solve(Problem(graph, target, True), "naive", validate=False)
        v, tv = timed(lambda graph=graph, plan=plan: validate(graph, plan))
        r, ts = timed(lambda path=path, graph=graph, plan=plan: simulate(path, graph, plan))
        outs = "bit-exact" if r.ok and all(o.exact for o in r.outputs) else ("match" if r.ok else "MISMATCH")
        print(f"| {path.stem.removeprefix('light_')} | {len(plan.steps)} | {len(plan.placements)} | "
              f"{len(plan.transfers)} | {tv:.3f} | {v.ok} | {ts:.2f} | {outs} |")
    graph = import_model(chain_model(10_000, 64), name="chain10k")
    plan = solve(Problem(graph, target, True), "naive", validate=False)
    v, tv = timed(lambda: validate(graph, plan))
    print(f"| chain of 10,000 Relus | {len(plan.steps)} | {len(plan.placements)} | {len(plan.transfers)} | "
          f"{tv:.3f} | {v.ok} | - | - |")


if __name__ == "__main__":
    main()
