"""Hunts for false lower bounds (a bound above the traffic of some valid plan is a false proof).

Two checks, each printing one line per violation and a summary:

``tiled``: the bound over every tiling (``stowage.solvers.tiling.bound``) against the least
traffic of any valid plan in a COSMA protocol results file (whole-tensor plans are tiled plans
with no cascade, so the bound must not exceed any of them).

``concat``: ``exact``'s bound on random branchy graphs whose Concat runs in place (buffers with
several writers: ``stowage.ir.concat_inplace``), against the plans of six other solvers.

    python benchmarks/bound_checks.py tiled --csv benchmarks/results/cosma_full/cosma.csv
    python benchmarks/bound_checks.py concat --seeds 40
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from models.build import load_manifest  # noqa: E402
from stowage.errors import StowageError  # noqa: E402
from stowage.ir.onnx_import import load_graph  # noqa: E402
from stowage.solvers.tiling.bound import tiled_lower_bound  # noqa: E402


def check_tiled(path: str) -> int:
    rows = list(csv.DictReader(open(path)))
    best: dict[tuple[str, str, int], int] = {}
    for r in rows:
        if not r["noncompulsory_bytes"]:
            continue
        k = (r["model"], r["setting"], int(r["capacity_bytes"]))
        best[k] = min(best.get(k, 1 << 62), int(r["noncompulsory_bytes"]))
    paths = {m.name: m.path for m in load_manifest()}
    graphs = {}
    bad = positive = 0
    for (model, setting, cap), traffic in sorted(best.items()):
        if model not in graphs:
            graphs[model] = load_graph(paths[model], element_bytes=1)
        b = tiled_lower_bound(graphs[model], cap, setting != "activations").bytes
        positive += b > 0
        if b > traffic:
            bad += 1
            print(f"FALSE BOUND {model} {setting} {cap}: bound {b} > plan {traffic}")
        elif b > 0:
            print(f"{model} {setting} {cap}: bound {b:,}, least plan {traffic:,}")
    print(f"cases {len(best)}, bound positive in {positive}, false bounds {bad}")
    return 1 if bad else 0


def check_concat(seeds: int) -> int:
    from stowage.ir.concat_inplace import fuse_concats
    from stowage.ir.inplace import fuse_in_place
    from stowage.ir.lifetimes import m_r, peak_live
    from stowage.ir.onnx_import import import_model
    from stowage.solvers.problem import Problem
    from stowage.solvers.registry import solve
    from stowage.targets.hierarchy import load_target
    from test_concat_inplace import random_branches_model

    others = ("heuristic", "divide", "baseline-fileorder-belady", "baseline-minpeak-greedy",
              "baseline-fileorder-greedy", "baseline-minpeak-belady")
    target = load_target("ethos-u55-256")
    n = bad = proven = 0
    for seed in range(seeds):
        g = fuse_concats(fuse_in_place(import_model(random_branches_model(seed), element_bytes=1), concat=False),
                         at_m_r_only=False)
        for weights in (False, True):
            lo, hi = m_r(g, weights), peak_live(g, None, weights)
            for a in (0.0, 0.3, 0.7):
                cap = (int(lo + a * (hi - lo)) + 15) // 16 * 16
                t = target.with_capacity(cap)
                try:
                    ex = solve(Problem(g, t, weights, time_limit=3), "exact")
                except StowageError:
                    continue  # the capacity rounded below an aligned M_R
                least = min([ex.metrics.noncompulsory_bytes] +
                            [solve(Problem(g, t, weights, time_limit=2), s).metrics.noncompulsory_bytes
                             for s in others])
                n += 1
                proven += ex.solver.status == "optimal"
                if (ex.solver.lower_bound or 0) > least:
                    bad += 1
                    print(f"FALSE BOUND seed {seed} weights {weights} cap {cap}: "
                          f"{ex.solver.lower_bound} > {least}")
    print(f"cases {n}, exact proven optimal {proven}, false bounds {bad}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="check", required=True)
    t = sub.add_parser("tiled")
    t.add_argument("--csv", default=str(ROOT / "benchmarks" / "results" / "cosma_full" / "cosma.csv"))
    c = sub.add_parser("concat")
    c.add_argument("--seeds", type=int, default=40)
    a = p.parse_args(argv)
    return check_tiled(a.csv) if a.check == "tiled" else check_concat(a.seeds)


if __name__ == "__main__":
    raise SystemExit(main())
