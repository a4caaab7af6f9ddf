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
  without one) and the wall time against the limit; runs past the promise (``time_limit`` +
  10% + 2 s);
* never worse: runs whose traffic is above the best of the four baselines at that capacity
  (the baselines run once per capacity; milliseconds to a second).

``--exact-models STEM,...`` runs the solvers other than ``auto`` on those models only (a subset
when a full ``exact`` sweep would take too long). ``--dim STEM:NAME=VALUE`` binds a dimension
of one model only (PP-OCRv4 rec and det both name their input ``x``). The model's package
(``name version`` of the unzipped wheel's ``*.dist-info``) is a column of the per-model table.

``--busy 0,4`` runs the whole sweep once per entry, side by side in one run, the second time
with that many busy-loop processes spinning on the cores (issue 14, item 6: the same command
and seed give the same plan on an idle and a loaded machine whenever no wall-clock stop
decided).  Each row then has a ``busy`` column and a plan fingerprint (``digest``: order,
placements, transfers), and the summary has one table per load and a comparison across loads:
per (model, setting, capacity, solver), the cases whose runs differ, and those that differ
with no run saying ``stopped_by = time`` (the promise is none).

Every plan goes through the validator (``stowage.solvers.registry.solve``).

    python benchmarks/monotone.py MODEL_OR_FOLDER ... [--solvers auto,exact] [--points 6]
        [--time-limit 10] [--workers 1] [--exact-models STEM,...] [--dim [STEM:]NAME=VALUE ...]
        [--busy 0,4] [--out benchmarks/results/monotone]

Writes OUT.csv (one row per run) and OUT.md (the summary and the violating pairs).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import logging
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from planner_quality import capacities, wheel_of  # noqa: E402

from stowage.errors import StowageError  # noqa: E402
from stowage.ir.inplace import fuse_in_place  # noqa: E402
from stowage.ir.onnx_import import load_graph  # noqa: E402
from stowage.solvers.baselines import BASELINES  # noqa: E402
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


def package_of(path: Path) -> str:
    """``name version`` of the unzipped wheel ``path`` is in (the nearest parent folder with a
    ``*.dist-info``), ``models/suite`` / ``onnx (light zoo)`` for those sets, else ``?``."""
    if path.parent.name == "suite" and path.parent.parent.name == "models":
        return "models/suite"
    if path.parent.name == "light" and "onnx" in path.parts:
        return "onnx (light zoo)"
    for folder in path.parents:
        wheel = wheel_of(path, folder)
        if wheel != "?":
            return wheel
    return "?"


def model_dims(dims: dict[str, int], stem: str) -> dict[str, int]:
    """The dimensions for one model: every ``NAME=VALUE``, then its own ``STEM:NAME=VALUE``."""
    mine = {k: v for k, v in dims.items() if ":" not in k}
    mine.update({k.split(":", 1)[1]: v for k, v in dims.items() if k.split(":", 1)[0] == stem})
    return mine


def run(models: list[Path], solvers: list[str], points: int, time_limit: float, dims: dict[str, int],
        workers: int = 1, exact_models: set[str] | None = None) -> list[dict]:
    """One row per (model, setting, capacity, solver); ``exact_models`` (None = all) limits the
    solvers other than ``auto`` to those model stems.  Each row has the best baseline's
    traffic at its capacity (``best_baseline``)."""
    target = load_target("ethos-u55-256")
    rows: list[dict] = []
    for path in models:
        try:
            g = fuse_in_place(load_graph(path, element_bytes=1, dims=model_dims(dims, path.stem)))
        except Exception as exc:  # noqa: BLE001 - a model the importer cannot read is reported, not fatal
            log.warning("%s: not imported: %s", path.name, str(exc).splitlines()[0][:120])
            continue
        package = package_of(path)
        mine = [s for s in solvers if s == "auto" or exact_models is None or path.stem in exact_models]
        for weights in (False, True):
            b = target_budgets(g, target, weights)
            for label, cap in capacities(b.m_r, b.m_p, b.m_h, points):
                prob = Problem(g, target.with_capacity(cap), weights, time_limit=time_limit, seed=0, workers=workers)
                try:
                    best_base: int | None = min(solve(prob, n).metrics.noncompulsory_bytes for n in BASELINES)
                except StowageError:
                    best_base = None
                for solver in mine:
                    row: dict = {"model": path.stem, "package": package, "ops": len(g.computing_ops),
                                 "weights": weights, "point": label, "capacity": cap, "solver": solver,
                                 "limit": time_limit, "best_baseline": best_base}
                    try:
                        t0 = time.perf_counter()
                        plan = solve(prob, solver)
                        row.update(wall=round(time.perf_counter() - t0, 3), traffic=plan.metrics.noncompulsory_bytes,
                                   bound=plan.solver.lower_bound, status=plan.solver.status,
                                   found_by=plan.solver.found_by or "", stopped_by=plan.solver.stopped_by or "",
                                   digest=digest(plan))
                    except StowageError as exc:
                        row["error"] = str(exc)[:120]
                    rows.append(row)
                    print(row, flush=True)
    return rows


def digest(plan) -> str:
    """A short fingerprint of what a plan does (its order, placements and transfers)."""
    return hashlib.sha1(repr((plan.steps, plan.placements, plan.transfers)).encode()).hexdigest()[:10]


def _busy(stop_at: float) -> None:
    """Spin until the wall-clock time ``stop_at``: one core's worth of load."""
    while time.time() < stop_at:
        pass


def run_loaded(busy: int, *args, **kwargs) -> tuple[list[dict], float, float]:
    """``run`` with ``busy`` busy-loop processes spinning (0: none); the rows get a ``busy``
    column.  Returns the rows and the 1-minute load average at the start and end."""
    procs = [mp.get_context("fork").Process(target=_busy, args=(time.time() + 7200,), daemon=True)
             for _ in range(busy)]
    for p in procs:
        p.start()
    try:
        if procs:
            time.sleep(1.0)
        load0 = os.getloadavg()[0]
        rows = run(*args, **kwargs)
        load1 = os.getloadavg()[0]
    finally:
        for p in procs:
            p.terminate()
            p.join()
    for r in rows:
        r["busy"] = busy
    return rows, load0, load1


def across_loads(rows: list[dict], solvers: list[str]) -> str:
    """The comparison across load settings: per solver, the cases (model, setting, capacity)
    run at every load, those whose plans differ, those that differ although no run says
    ``stopped_by = time`` (the promise: none), and those where every run is unflagged."""
    loads = sorted({r["busy"] for r in rows})
    cases: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        if "traffic" in r:
            cases.setdefault((r["model"], r["weights"], r["point"], r["solver"]), {})[r["busy"]] = r
    lines = [("| solver | cases at every load | unflagged at every load | distinct plans | distinct traffic | "
              "distinct plans, no run flagged |"), "|---|---:|---:|---:|---:|---:|"]
    details = []
    for solver in solvers:
        mine = {k: v for k, v in cases.items() if k[3] == solver and len(v) == len(loads)}
        differ = [k for k, v in mine.items() if len({r["digest"] for r in v.values()}) > 1]
        traffic = [k for k, v in mine.items() if len({r["traffic"] for r in v.values()}) > 1]
        clean = [k for k, v in mine.items() if not any(r["stopped_by"] for r in v.values())]
        broken = [k for k in differ if k in clean]
        lines.append(f"| {solver} | {len(mine)} | {len(clean)} | {len(differ)} | {len(traffic)} | {len(broken)} |")
        for k in traffic:
            v = mine[k]
            shown = ", ".join(f"busy {b}: {v[b]['traffic']:,} B{' (time)' if v[b]['stopped_by'] else ''}"
                              for b in loads)
            details.append(f"- {solver}, {k[0]}, weights={k[1]}, {k[2]}: {shown}")
        for k in broken:
            details.append(f"- {solver}, {k[0]}, weights={k[1]}, {k[2]}: different plans, none flagged")
    return "\n".join(lines + ["", "Traffic that differs across loads:", ""] + (details or ["- none"]))


def past_limit(row: dict) -> bool:
    """Past the promise of issue 14: ``time_limit`` + 10% + 2 s of wall time."""
    return row["wall"] > 1.1 * row["limit"] + 2.0


def worse_than_baseline(row: dict) -> bool:
    return row.get("best_baseline") is not None and row["traffic"] > row["best_baseline"]


def _violations(rs: list[dict]) -> list[tuple[dict, dict]]:
    rs = sorted(rs, key=lambda r: r["capacity"])
    return [(a, b) for a, b in itertools.pairwise(rs) if b["traffic"] > a["traffic"]]


def summary(rows: list[dict], solvers: list[str]) -> str:
    ok = [r for r in rows if "traffic" in r]
    seqs: dict[tuple, list[dict]] = {}
    for r in ok:
        seqs.setdefault((r["model"], r["weights"], r["solver"]), []).append(r)
    auto_mr = {(r["model"], r["weights"]): r["traffic"] for r in ok if r["solver"] == "auto" and r["point"] == "M_R"}
    header = ("| solver | models | runs | violating pairs | sequences with one | above auto at M_R | "
              "worse than best baseline | stopped_by=time | past limit + 10% + 2 s | max wall / limit |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    details: list[str] = []
    for solver in solvers:
        mine = [r for r in ok if r["solver"] == solver]
        pairs, bad_seqs, above = 0, 0, 0
        for (model, weights, s), rs in seqs.items():
            if s != solver:
                continue
            bad = _violations(rs)
            pairs += len(bad)
            bad_seqs += bool(bad)
            for a, b in bad:
                details.append(f"- {solver}, {model}, weights={weights}: {a['point']} {a['traffic']:,} B -> "
                               f"{b['point']} {b['traffic']:,} B (found by {b['found_by']}"
                               f"{', stopped_by=time' if b['stopped_by'] else ''})")
            ref = auto_mr.get((model, weights))
            above += sum(1 for r in rs if ref is not None and r["point"] != "M_R" and r["traffic"] > ref)
        for r in mine:
            if worse_than_baseline(r):
                details.append(f"- {solver}, {r['model']}, weights={r['weights']}, {r['point']}: {r['traffic']:,} B "
                               f"> best baseline {r['best_baseline']:,} B")
            if past_limit(r):
                details.append(f"- {solver}, {r['model']}, weights={r['weights']}, {r['point']}: {r['wall']} s "
                               f"past the limit {r['limit']} s + 10% + 2 s")
        walls = [r["wall"] / r["limit"] for r in mine]
        lines.append(f"| {solver} | {len({r['model'] for r in mine})} | {len(mine)} | {pairs} | {bad_seqs} of "
                     f"{sum(1 for k in seqs if k[2] == solver)} | {above} | "
                     f"{sum(1 for r in mine if worse_than_baseline(r))} | "
                     f"{sum(1 for r in mine if r['stopped_by'])} | {sum(1 for r in mine if past_limit(r))} | "
                     f"{max(walls) if walls else 0:.2f} |")
    per_model = [("| package | model | ops | solver | runs | violating pairs | worse than best baseline | "
                  "stopped_by=time | max wall / limit |"), "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for key in sorted({(r["package"], r["model"], r["solver"]) for r in ok},
                      key=lambda k: (k[0], k[1], solvers.index(k[2]))):
        rs = [r for r in ok if (r["package"], r["model"], r["solver"]) == key]
        pairs = sum(len(_violations([r for r in rs if r["weights"] == w])) for w in (False, True))
        per_model.append(f"| {key[0]} | {key[1]} | {rs[0]['ops']} | {key[2]} | {len(rs)} | {pairs} | "
                         f"{sum(1 for r in rs if worse_than_baseline(r))} | {sum(1 for r in rs if r['stopped_by'])} | "
                         f"{max(r['wall'] / r['limit'] for r in rs):.2f} |")
    errors = [r for r in rows if "error" in r]
    head = "Violations (pairs, worse than a baseline, past the limit):"
    return "\n".join(lines + ["", f"errors: {len(errors)}", "", head, ""] + (details or ["- none"])
                     + ["", "Per model:", ""] + per_model)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="ONNX files or folders of them")
    ap.add_argument("--solvers", default="auto,exact", help="comma-separated (default auto,exact)")
    ap.add_argument("--points", type=int, default=6, help="M_R..M_P points (plus M_H; default 6)")
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=1, help="solver workers (default 1: one process per run)")
    ap.add_argument("--exact-models", default="", help="comma-separated stems: run the solvers other than auto "
                                                       "on these models only (default: every model)")
    ap.add_argument("--dim", action="append", default=[], metavar="[STEM:]NAME=VALUE")
    ap.add_argument("--busy", default="0", help="comma-separated busy-loop counts, one sweep each (default 0)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "monotone")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    dims = {k: int(v) for k, _, v in (d.rpartition("=") for d in args.dim)}
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    if "auto" not in solvers:
        solvers.insert(0, "auto")      # the reference of "above auto at M_R"
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    exact_models = {m.strip() for m in args.exact_models.split(",") if m.strip()} or None
    rows: list[dict] = []
    parts: list[str] = []
    for busy in [int(b) for b in args.busy.split(",") if b.strip()]:
        t1 = time.perf_counter()
        mine, l0, l1 = run_loaded(busy, model_files(args.models), solvers, args.points, args.time_limit, dims,
                                  args.workers, exact_models)
        rows += mine
        parts.append(f"### {busy} busy loops (load {l0:.1f} at the start, {l1:.1f} at the end, "
                     f"{time.perf_counter() - t1:.0f} s)\n\n{summary(mine, solvers)}\n")
    if len(parts) > 1:
        parts.append(f"### Across loads\n\n{across_loads(rows, solvers)}\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["model", "package", "ops", "weights", "point", "capacity", "solver", "limit", "busy", "wall",
              "traffic", "best_baseline", "bound", "status", "found_by", "stopped_by", "digest", "error"]
    with open(args.out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = (f"`python benchmarks/monotone.py {' '.join(sys.argv[1:])}` ({platform.node()}, started "
            f"{time.strftime('%H:%M:%S', time.gmtime(time.time() - (time.perf_counter() - t0)))} UTC, "
            f"load at the start {load0:.1f}, at the end {load:.1f}, "
            f"{time.perf_counter() - t0:.0f} s, 2-core shared VM)\n\n" + "\n".join(parts))
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
