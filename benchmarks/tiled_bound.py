"""The lower bound over every tiling against the tiled plans (issue 12's "proven gap").

For each model (8-bit sizes, activations only, in-place operators fused, ethos-u55-256) and
capacity, it compiles with ``--tiling auto`` and prints one markdown row: the plan's
non-compulsory bytes, the per-buffer bound alone (``stowage.solvers.tiling.bound`` before the
run bound existed), the bound the plan reports (``solver.lower_bound``: per-buffer plus run
bound), the gap ``(plan - bound) / plan`` for each, and the seconds the bound takes.

    python benchmarks/tiled_bound.py
    python benchmarks/tiled_bound.py --models mobilenet_v2 --kib 128 96 64 --solver exact --time-limit 60
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _gap(plan: int, bound: int) -> str:
    return "0%" if plan == bound else f"{100 * (plan - bound) / plan:.1f}%"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["mobilenet_v2", "efficientnet_b0", "lraspp_mobilenet_v3"])
    ap.add_argument("--kib", nargs="*", type=int, default=[256, 128, 96, 64])
    ap.add_argument("--solver", default="auto")
    ap.add_argument("--time-limit", type=float, default=10.0)
    args = ap.parse_args()

    from stowage.api import compile as compile_plan
    from stowage.errors import StowageError
    from stowage.ir.inplace import fuse_in_place
    from stowage.ir.onnx_import import load_graph
    from stowage.solvers.tiling.bound import tiled_lower_bound

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; machine: {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}; target ethos-u55-256; 8-bit; activations only; --solver {args.solver} "
          f"--time-limit {args.time_limit:g}")
    print("| model | capacity | plan non-compulsory B | per-buffer bound (before) | gap before | "
          "reported bound (after) | gap after | status | bound s | compile s |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for name in args.models:
        g = fuse_in_place(load_graph(ROOT / "models" / "suite" / f"{name}.onnx", element_bytes=1))
        for kib in args.kib:
            cap = kib * 1024
            t0 = time.perf_counter()
            b = tiled_lower_bound(g, cap, False)
            tb = time.perf_counter() - t0
            before = b.bytes - b.runs
            t0 = time.perf_counter()
            try:
                plan = compile_plan(g, capacity=cap, solver=args.solver, time_limit=args.time_limit)
            except StowageError as exc:
                print(f"| {name} | {kib} KiB | refused: {str(exc)[:80]} | {before:,} | | {b.bytes:,} | | | "
                      f"{tb:.2f} | {time.perf_counter() - t0:.1f} |", flush=True)
                continue
            dt = time.perf_counter() - t0
            traffic = plan.metrics.noncompulsory_bytes
            lb = plan.solver.lower_bound
            print(f"| {name} | {kib} KiB | {traffic:,} | {before:,} | {_gap(traffic, before) if traffic else '-'} | "
                  f"{lb if lb is None else f'{lb:,}'} | {_gap(traffic, lb or 0) if traffic else '-'} | "
                  f"{plan.solver.status} | {tb:.2f} | {dt:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
