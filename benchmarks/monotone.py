"""Benchmark (issue 14, item 2): is one compile's traffic monotone in capacity?

For every model (ONNX files or folders; 8-bit, in-place operators fused as the CLI does) and
setting (weights in the compute level or not), on ethos-u55-256 with its sram capacity
replaced by ``M_R..M_P:--points`` and M_H (``planner_quality.capacities``), each solver
(``--solvers``, default ``auto,exact``) plans every capacity *on its own* -- single compiles,
no plan passed between them (``stowage compare`` and ``stowage sweep`` pass plans along and
are monotone by construction) -- and the table counts:

* violating pairs: consecutive capacities where the larger one's traffic is higher;
* pairs above M_R: capacities whose traffic is higher than ``auto``'s at M_R of the same
  model and setting (what a compile above M_R can guarantee by also planning at M_R);
* runs whose plan says ``stopped_by = time`` (a wall-clock stop: the guarantees hold only
  without one) and the wall time against the limit.

Every plan goes through the validator (``stowage.solvers.registry.solve``).

    python benchmarks/monotone.py MODEL_OR_FOLDER ... [--solvers auto,exact] [--points 6]
        [--time-limit 10] [--dim NAME=VALUE ...] [--out benchmarks/results/monotone]

Writes OUT.csv (one row per run) and OUT.md (the summary and the violating pairs).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from planner_quality import capacities  # noqa: E402

from stowage.errors import StowageError  # noqa: E402
from stowage.ir.inplace import fuse_in_place  # noqa: E402
from stowage.ir.onnx_import import load_graph  # noqa: E402
from stowage.solvers.budgets import target_budgets  # noqa: E402
from stowage.solvers.problem import Problem  # noqa: E402
from stowage.solvers.registry import solve  # noqa: E402
from stowage.targets.hierarchy import load_target  # noqa: E402

log = logging.getLogger("benchmarks.monotone")


def model_files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(sorted(p.rglob("*.onnx")) if p.is_dir() else [p])
    return out


def run(models: list[Path], solvers: list[str], points: int, time_limit: float, dims: dict[str, int]) -> list[dict]:
    target = load_target("ethos-u55-256")
    rows: list[dict] = []
    for path in models:
        try:
            g = fuse_in_place(load_graph(path, element_bytes=1, dims=dims))
        except Exception as exc:  # noqa: BLE001 - a model the importer cannot read is reported, not fatal
            log.warning("%s: not imported: %s", path.name, str(exc).splitlines()[0][:120])
            continue
        for weights in (False, True):
            b = target_budgets(g, target, weights)
            for (label, cap), solver in itertools.product(capacities(b.m_r, b.m_p, b.m_h, points), solvers):
                row: dict = {"model": path.stem, "ops": len(g.computing_ops), "weights": weights, "point": label,
                             "capacity": cap, "solver": solver, "limit": time_limit}
                try:
                    t0 = time.perf_counter()
                    plan = solve(Problem(g, target.with_capacity(cap), weights, time_limit=time_limit, seed=0),
                                 solver)
                    row.update(wall=round(time.perf_counter() - t0, 3), traffic=plan.metrics.noncompulsory_bytes,
                               bound=plan.solver.lower_bound, status=plan.solver.status,
                               found_by=plan.solver.found_by or "", stopped_by=plan.solver.stopped_by or "")
                except StowageError as exc:
                    row["error"] = str(exc)[:120]
                rows.append(row)
                print(row, flush=True)
    return rows


def summary(rows: list[dict], solvers: list[str]) -> str:
    ok = [r for r in rows if "traffic" in r]
    seqs: dict[tuple, list[dict]] = {}
    for r in ok:
        seqs.setdefault((r["model"], r["weights"], r["solver"]), []).append(r)
    auto_mr = {(r["model"], r["weights"]): r["traffic"] for r in ok if r["solver"] == "auto" and r["point"] == "M_R"}
    header = ("| solver | runs | violating pairs | sequences with one | above auto at M_R | stopped_by=time | "
              "max wall / limit |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|"]
    details: list[str] = []
    for solver in solvers:
        mine = [r for r in ok if r["solver"] == solver]
        pairs, bad_seqs, above = 0, 0, 0
        for (model, weights, s), rs in seqs.items():
            if s != solver:
                continue
            rs.sort(key=lambda r: r["capacity"])
            bad = [(a, b) for a, b in itertools.pairwise(rs) if b["traffic"] > a["traffic"]]
            pairs += len(bad)
            bad_seqs += bool(bad)
            for a, b in bad:
                details.append(f"- {solver}, {model}, weights={weights}: {a['point']} {a['traffic']:,} B -> "
                               f"{b['point']} {b['traffic']:,} B (found by {b['found_by']}"
                               f"{', stopped_by=time' if b['stopped_by'] else ''})")
            ref = auto_mr.get((model, weights))
            above += sum(1 for r in rs if ref is not None and r["point"] != "M_R" and r["traffic"] > ref)
        walls = [r["wall"] / r["limit"] for r in mine]
        lines.append(f"| {solver} | {len(mine)} | {pairs} | {bad_seqs} of "
                     f"{sum(1 for k in seqs if k[2] == solver)} | {above} | "
                     f"{sum(1 for r in mine if r['stopped_by'])} | {max(walls) if walls else 0:.2f} |")
    errors = [r for r in rows if "error" in r]
    return "\n".join(lines + ["", f"errors: {len(errors)}", "", "Violating pairs:", ""] + (details or ["- none"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="ONNX files or folders of them")
    ap.add_argument("--solvers", default="auto,exact", help="comma-separated (default auto,exact)")
    ap.add_argument("--points", type=int, default=6, help="M_R..M_P points (plus M_H; default 6)")
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "monotone")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    if "auto" not in solvers:
        solvers.insert(0, "auto")      # the reference of "above auto at M_R"
    t0 = time.perf_counter()
    rows = run(model_files(args.models), solvers, args.points, args.time_limit, dims)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["model", "ops", "weights", "point", "capacity", "solver", "limit", "wall", "traffic", "bound",
              "status", "found_by", "stopped_by", "error"]
    with open(args.out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = (f"`python benchmarks/monotone.py {' '.join(sys.argv[1:])}` ({platform.node()}, load {load:.1f}, "
            f"{time.perf_counter() - t0:.0f} s)\n\n{summary(rows, solvers)}\n")
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
