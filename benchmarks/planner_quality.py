"""Benchmark (issue 14): the default planner on models nobody tuned it for.

For every model -- the onnx wheel's light zoo, ``models/suite``, and any ``--extra`` folder of
ONNX files (e.g. real models unzipped from pip wheels; they are never committed) -- 8-bit
(element_bytes=1), in-place operators fused (the CLI default), with and without weights in
the compute level, on ethos-u55-256 with its sram capacity replaced by ``--points`` capacities
from M_R to M_P (``M_R..M_P:N``, plus M_H), run ``auto`` and the four baselines and record:

* auto vs the best baseline (never worse, by construction: ``stowage.solvers.portfolio``);
* monotonicity: auto's non-compulsory traffic never increases along the capacities;
* wall time vs the limit (the promise: ``time_limit`` + 10% + 2 s) and ``solver.stopped_by``;
* with ``--exact``: ``exact`` (``--exact-limit`` seconds, default 20) at M_R and M_H where the
  best baseline spills, and per set auto's and exact's mean reduction vs the best baseline
  (1 - traffic / best baseline's) over the same cases, the difference in points, and a table
  of the cases where their traffic differs (issue 14: auto within 3 points of exact).
  ``exact`` is not run where auto's plan is proven optimal (its traffic is then auto's).

Every plan goes through the validator (``stowage.solvers.registry.solve``).

    python benchmarks/planner_quality.py --out benchmarks/results/planner_quality [--time-limit 10]
        [--points 6] [--models resnet50,light_squeezenet] [--extra /tmp/wheels/models]
        [--skip-suite] [--skip-light] [--dim NAME=VALUE ...] [--dim STEM:NAME=VALUE ...]
        [--exact [--exact-limit 20]]   # with --points 1: M_R and M_H only

Writes OUT.csv (one row per run, with the model's package -- ``name version`` from the
unzipped wheel's ``*.dist-info`` -- and its file inside the wheel) and OUT.md (the summary and
a per-model table for docs/benchmarks.md).
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
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402

from stowage.errors import StowageError  # noqa: E402
from stowage.ir.inplace import fuse_in_place  # noqa: E402
from stowage.ir.onnx_import import load_graph  # noqa: E402
from stowage.solvers.baselines import BASELINES  # noqa: E402
from stowage.solvers.budgets import target_budgets  # noqa: E402
from stowage.solvers.problem import Problem  # noqa: E402
from stowage.solvers.registry import solve  # noqa: E402
from stowage.targets.hierarchy import load_target  # noqa: E402

log = logging.getLogger("benchmarks.planner_quality")


def wheel_of(path: Path, folder: Path) -> str:
    """``name version`` of the wheel a model came from: the ``*.dist-info/METADATA`` in
    ``folder`` (an unzipped wheel), or ``?`` when there is none."""
    for meta in sorted(folder.glob("*.dist-info/METADATA")):
        fields = dict(line.split(": ", 1) for line in meta.read_text(errors="replace").splitlines()[:20]
                      if ": " in line)
        return f"{fields.get('Name', '?')} {fields.get('Version', '?')}"
    return "?"


def model_paths(skip_light: bool, skip_suite: bool, extra: list[Path], only: set[str] | None) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    if not skip_light:
        light = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"
        out += [("light", p) for p in sorted(light.glob("*.onnx"))]
    if not skip_suite:
        out += [("suite", p) for p in sorted((ROOT / "models" / "suite").glob("*.onnx"))]
    for folder in extra:
        out += [("pip", p) for p in sorted((*folder.rglob("*.onnx"), *folder.rglob("*.tflite")))]
    if only:
        out = [(k, p) for k, p in out if p.stem in only]
    return out


def capacities(m_r: int, m_p: int, m_h: int, points: int) -> list[tuple[str, int]]:
    """``M_R..M_P:points`` (as ``stowage sweep`` spaces them: evenly, ends included) and M_H."""
    caps = [("M_R", m_r)]
    for k in range(1, points - 1):
        caps.append((f"p{k}", m_r + (m_p - m_r) * k // (points - 1)))
    if points > 1:
        caps.append(("M_P", m_p))
    caps.append(("M_H", m_h))
    seen: dict[int, str] = {}
    for label, cap in caps:     # one run per distinct capacity (M_R = M_P for some models)
        seen.setdefault(cap, label)
    return sorted(((label, cap) for cap, label in seen.items()), key=lambda c: c[1])


def source_of(kind: str, path: Path, extra: list[Path]) -> tuple[str, str]:
    """(package, file) of a model: the wheel and the path inside it for ``--extra`` models."""
    if kind != "pip":
        return ("onnx (light zoo)" if kind == "light" else "models/suite"), path.name
    folder = next((f for f in extra if f in path.parents), path.parent)
    return wheel_of(path, folder), str(path.relative_to(folder))


def run_exact(prob: Problem, row: dict, exact_limit: float) -> None:
    """``exact`` on ``prob`` with ``exact_limit`` seconds, into ``row`` (``exact_*`` columns).
    Not run where ``auto``'s plan is proven optimal: no plan has less traffic, so ``exact``'s
    traffic is taken as ``auto``'s (conservative for the auto-vs-exact gap: an ``exact`` run
    cut short could only do worse)."""
    if row["status"] == "optimal":
        row.update(exact=row["auto"], exact_bound=row["bound"], exact_status="optimal", exact_wall=0.0,
                   exact_found_by="(not run: auto proven optimal)", exact_stopped_by="")
        return
    try:
        t0 = time.perf_counter()
        plan = solve(replace(prob, time_limit=exact_limit), "exact")
        row.update(exact=plan.metrics.noncompulsory_bytes, exact_bound=plan.solver.lower_bound,
                   exact_status=plan.solver.status, exact_wall=round(time.perf_counter() - t0, 3),
                   exact_found_by=plan.solver.found_by, exact_stopped_by=plan.solver.stopped_by or "")
    except StowageError as exc:
        row["exact_error"] = str(exc)[:120]


def run(paths: list[tuple[str, Path]], time_limit: float, points: int, rows: list[dict],
        dims: dict[str, int] | None = None, extra: list[Path] | None = None,
        exact_limit: float | None = None) -> None:
    """``exact_limit``: also run ``exact`` (that many seconds) at M_R and M_H where the best
    baseline spills (``run_exact``)."""
    target = load_target("ethos-u55-256")
    for kind, path in paths:
        package, file = source_of(kind, path, extra or [])
        mine = {k: v for k, v in (dims or {}).items() if ":" not in k}
        mine.update({k.split(":", 1)[1]: v for k, v in (dims or {}).items() if k.split(":", 1)[0] == path.stem})
        try:
            g = fuse_in_place(load_graph(path, element_bytes=1, dims=mine))
        except Exception as exc:  # noqa: BLE001 - a model the importer cannot read is reported, not fatal
            log.warning("%s: not imported: %s", path.name, str(exc).splitlines()[0][:120])
            continue
        for weights in (False, True):
            b = target_budgets(g, target, weights)
            for label, cap in capacities(b.m_r, b.m_p, b.m_h, points):
                prob = Problem(g, target.with_capacity(cap), weights, time_limit=time_limit, seed=0)
                row: dict = {"set": kind, "model": path.stem, "package": package, "file": file,
                             "ops": len(g.computing_ops), "weights": weights,
                             "point": label, "capacity": cap, "limit": time_limit}
                try:
                    t0 = time.perf_counter()
                    plan = solve(prob, "auto")
                    row["wall"] = round(time.perf_counter() - t0, 3)
                    row.update(auto=plan.metrics.noncompulsory_bytes, bound=plan.solver.lower_bound,
                               status=plan.solver.status, found_by=plan.solver.found_by,
                               stopped_by=plan.solver.stopped_by or "")
                    bases = {n: solve(prob, n).metrics.noncompulsory_bytes for n in BASELINES}
                    row["best_baseline"] = min(bases.values())
                    if exact_limit and label in ("M_R", "M_H") and row["best_baseline"] > 0:
                        run_exact(prob, row, exact_limit)
                except StowageError as exc:
                    row["error"] = str(exc)[:120]
                rows.append(row)
                log.info("%s", row)
                print(row, flush=True)


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def exact_summary(rows: list[dict]) -> str:
    """auto vs exact (``--exact``): per set, the mean reduction vs the best baseline of each
    over the same cases (M_R and M_H where the best baseline spills and exact returned a plan),
    the difference in points, and the cases where their traffic differs."""
    cases = [r for r in rows if "exact" in r]
    if not cases:
        return "- auto vs exact: no case (no spilling baseline at M_R/M_H, or exact found no plan)"
    head = ("- auto vs exact at M_R and M_H where the best baseline spills; reduction = 1 - traffic / the best "
            "baseline's; exact is not run where auto is proven optimal (its traffic is then auto's):")
    cols = ("| set | cases | exact run | auto mean reduction | exact mean reduction | exact - auto (points) "
            "| auto < exact | auto > exact |")
    lines = [head, "", cols, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind in sorted({r["set"] for r in cases}):
        rs = [r for r in cases if r["set"] == kind]
        a = sum(1 - r["auto"] / r["best_baseline"] for r in rs) / len(rs)
        e = sum(1 - r["exact"] / r["best_baseline"] for r in rs) / len(rs)
        ran = sum(1 for r in rs if not str(r["exact_found_by"]).startswith("(not run"))
        better = sum(1 for r in rs if r["auto"] < r["exact"])
        worse = sum(1 for r in rs if r["auto"] > r["exact"])
        lines.append(f"| {kind} | {len(rs)} | {ran} | {pct(a)} | {pct(e)} | {100 * (e - a):+.1f} "
                     f"| {better} | {worse} |")
    diff = [r for r in cases if r["auto"] != r["exact"]]
    cols = ("| set | model | weights | point | best baseline B | auto B | auto found_by | exact B | exact bound B "
            "| exact found_by | exact status | exact wall s | exact - auto (points) |")
    lines += ["", cols, "|---|---|---|---|---:|---:|---|---:|---:|---|---|---:|---:|"]
    for r in sorted(diff, key=lambda r: (r["exact"] - r["auto"]) / r["best_baseline"]):
        status = f"{r['exact_status']}{' (time)' if r['exact_stopped_by'] else ''}"
        gap = 100 * (r["auto"] - r["exact"]) / r["best_baseline"]
        lines.append(f"| {r['set']} | {r['model']} | {r['weights']} | {r['point']} | {r['best_baseline']} "
                     f"| {r['auto']} | {r['found_by']} | {r['exact']} | {r['exact_bound']} | {r['exact_found_by']} "
                     f"| {status} | {r['exact_wall']} | {gap:+.1f} |")
    if not diff:
        lines.append("| (none: auto's traffic equals exact's in every case) |" + " |" * 12)
    errs = [r for r in rows if "exact_error" in r]
    if errs:
        lines.append("\n- exact errors: " + "; ".join(f"{r['model']} {r['weights']} {r['point']}: {r['exact_error']}"
                                                   for r in errs))
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    ok = [r for r in rows if "auto" in r]
    worse = [r for r in ok if r["auto"] > r["best_baseline"]]
    over = [r for r in ok if r["wall"] > 1.1 * r["limit"] + 2.0]
    stopped = [r for r in ok if r["stopped_by"]]
    # Monotonicity: along the capacities of one (model, setting), auto's traffic never rises.
    seqs: dict[tuple, list[dict]] = {}
    for r in ok:
        seqs.setdefault((r["set"], r["model"], r["weights"]), []).append(r)
    bad = []
    for key, rs in seqs.items():
        rs.sort(key=lambda r: r["capacity"])
        pairs = [(a, b) for a, b in itertools.pairwise(rs) if b["auto"] > a["auto"]]
        if pairs:
            bad.append((key, pairs))
    spilling = [r for r in ok if r["best_baseline"] > 0 and r["point"] in ("M_R", "M_H")]
    red = [1 - r["auto"] / r["best_baseline"] for r in spilling]
    walls = sorted(r["wall"] / r["limit"] for r in ok)
    lines = [
        f"- runs: {len(ok)} (errors: {len(rows) - len(ok)}), models: {len({(r['set'], r['model']) for r in ok})}",
        f"- auto worse than the best baseline: {len(worse)}",
        f"- non-monotone (model, setting) sequences: {len(bad)} of {len(seqs)}"
        + "".join(f"; {k[1]} weights={k[2]}: " + ", ".join(f"{a['point']} {a['auto']} B -> {b['point']} {b['auto']} B"
                                                        for a, b in p) for k, p in bad),
        f"- past time_limit + 10% + 2 s: {len(over)}; stopped_by=time: {len(stopped)}",
        f"- wall / limit: median {walls[len(walls) // 2]:.2f}, max {walls[-1]:.2f}" if walls else "- no runs",
        f"- mean reduction vs the best baseline at M_R and M_H where it spills: "
        f"{100 * sum(red) / len(red):.1f}% over {len(red)} runs" if red else "- no spilling baseline at M_R/M_H",
    ]
    wins: dict[str, int] = {}
    for r in ok:
        who = str(r["found_by"]).split(" at ")[0]
        wins[who] = wins.get(who, 0) + 1
    lines.append("- found_by: " + ", ".join(f"{k} {v}" for k, v in sorted(wins.items(), key=lambda kv: -kv[1])))
    lines += ["", "| package | file | computing ops | runs | auto worse | non-monotone | max wall / limit |",
              "|---|---|---:|---:|---:|---:|---:|"]
    per: dict[tuple[str, str], list[dict]] = {}
    for r in ok:
        per.setdefault((r.get("package", ""), r.get("file", r["model"])), []).append(r)
    for (package, file), rs in per.items():
        nonmono = sum(1 for (s, m, _w), _ in bad if (s, m) == (rs[0]["set"], rs[0]["model"]))
        lines.append(f"| {package} | `{file}` | {rs[0]['ops']} | {len(rs)} | "
                     f"{sum(1 for r in rs if r['auto'] > r['best_baseline'])} | {nonmono} | "
                     f"{max(r['wall'] / r['limit'] for r in rs):.2f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "planner_quality")
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--points", type=int, default=6)
    ap.add_argument("--models", default="")
    ap.add_argument("--extra", type=Path, action="append", default=[])
    ap.add_argument("--skip-suite", action="store_true")
    ap.add_argument("--skip-light", action="store_true")
    ap.add_argument("--exact", action="store_true",
                    help="also run exact at M_R and M_H where the best baseline spills, and compare its mean "
                         "reduction vs the best baseline with auto's (use --points 1 for M_R and M_H only)")
    ap.add_argument("--exact-limit", type=float, default=20.0, help="exact's time limit in seconds (with --exact)")
    ap.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE",
                    help="bind a symbolic input dimension (as stowage compile --dim); names a model lacks are ignored; "
                         "STEM:NAME=VALUE binds it for the model file STEM.onnx only (overrides NAME=VALUE)")
    args = ap.parse_args()
    dims = {k: int(v) for k, _, v in (d.partition("=") for d in args.dim)}
    logging.basicConfig(level=logging.WARNING)
    only = {m.strip() for m in args.models.split(",") if m.strip()} or None
    rows: list[dict] = []
    started = time.time()
    start_stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
    start_load = " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    run(model_paths(args.skip_light, args.skip_suite, args.extra, only), args.time_limit, args.points, rows, dims,
        args.extra, args.exact_limit if args.exact else None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cols = ["set", "model", "package", "file", "ops", "weights", "point", "capacity", "limit", "wall", "auto", "bound",
            "best_baseline",
            "status", "found_by", "stopped_by", "error"]
    if args.exact:
        cols += ["exact", "exact_bound", "exact_status", "exact_wall", "exact_found_by", "exact_stopped_by",
                 "exact_error"]
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in cols})
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    text = (f"# planner quality\n\n`{' '.join(sys.argv)}`\n\nmachine: {platform.platform()}, {os.cpu_count()} cores, "
            f"started {start_stamp}, load average at the start {start_load}, at the end {load[0]:.2f}, "
            f"{time.time() - started:.0f} s\n\n{summary(rows)}\n"
            + (f"\n{exact_summary(rows)}\n" if args.exact else ""))
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
