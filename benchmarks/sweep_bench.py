"""Sweep executor benchmark: throughput with 1 vs 2 local workers, and per-cell overhead.

    python benchmarks/sweep_bench.py [--repeats 3] [--out /tmp/sweep-bench]

Cells: six light-zoo models from the onnx wheel x capacities M_R..M_P:4 x two solvers = 48 cells.
Both solvers do a fixed amount of work per cell (the heuristic's search is iteration-bounded;
the 30 s time limit is only a safety stop), so throughput is meaningful.
Per-cell overhead = (sweep wall time with one worker - sum of the cells' own run times) / cells:
what the executor adds (process start, pipe round trips, CSV appends) beyond planning.
Repeats alternate 1 and 2 workers side by side; medians are reported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stowage.tools.sweep import sweep

ZOO = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"
MODELS = ["light_squeezenet.onnx", "light_shufflenet.onnx", "light_inception_v1.onnx", "light_inception_v2.onnx",
          "light_resnet50.onnx", "light_densenet121.onnx"]
SOLVERS = ["baseline-minpeak-greedy", "heuristic"]


def one(out: Path, workers: int, executor: str = "local") -> tuple[float, list[dict[str, str]]]:
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    res = sweep([str(ZOO / m) for m in MODELS], "M_R..M_P:4", solvers=SOLVERS, results_dir=out,
                element_bytes=1, executor=executor, workers=workers, report=False, time_limit=30.0)
    return time.perf_counter() - t0, res.rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="/tmp/stowage-sweep-bench")
    ap.add_argument("--dask", action="store_true", help="also time a Dask LocalCluster with 2 workers")
    args = ap.parse_args()
    out = Path(args.out)
    walls: dict[int, list[float]] = {1: [], 2: []}
    dask_walls: list[float] = []
    overhead: list[float] = []
    cells = 0
    for _ in range(args.repeats):
        for w in (1, 2):
            wall, rows = one(out / f"w{w}", w)
            walls[w].append(wall)
            cells = len(rows)
            if w == 1:
                work = sum(float(r["seconds"] or 0) for r in rows)
                overhead.append((wall - work) / len(rows))
            errors = [r for r in rows if r["status"] == "error"]
            if w == 2 and args.dask:
                dask_walls.append(one(out / "dask", 2, "dask")[0])
            if errors:
                print(f"warning: {len(errors)} cells failed, e.g. {errors[0]['error']}", file=sys.stderr)
    m1, m2 = statistics.median(walls[1]), statistics.median(walls[2])
    print("| cells | 1 worker (median s) | 2 workers (median s) | speed-up | per-cell overhead (median ms) |")
    print("|---|---|---|---|---|")
    print(f"| {cells} | {m1:.2f} | {m2:.2f} | {m1 / m2:.2f}x | {statistics.median(overhead) * 1000:.1f} |")
    if dask_walls:
        print(f"dask LocalCluster, 2 workers: median {statistics.median(dask_walls):.2f} s "
              f"({m1 / statistics.median(dask_walls):.2f}x vs 1 local worker; includes cluster start-up)")
    print(f"raw: 1 worker {[round(x, 2) for x in walls[1]]}, 2 workers {[round(x, 2) for x in walls[2]]}, "
          f"overhead ms {[round(x * 1000, 1) for x in overhead]}")


if __name__ == "__main__":
    main()
