"""Exact solver (``exact``, mode ``auto``) at M_R / M_H / M_P, 8-bit, with and without weights.

Two model sets:

* ``--set cosma`` (default): the COSMA networks of ``models/suite.toml`` (group ``cosma``) on
  COSMA's machine (``benchmarks/cosma_target.toml``: scratchpad + unbounded off-chip,
  byte-granular addresses);
* ``--set light``: the onnx wheel's light model zoo on ethos-u55-256 with alignment 1.

For every case: run ``exact`` and the ``heuristic`` (same time limit, same problem), print
status, non-compulsory bytes, the proven lower bound, gap, time, and how much less traffic
the exact plan has; then a summary (proven optimal count, median and max time, exact vs
heuristic).  Every plan passes the validator (``stowage.solvers.registry.solve``).

    python benchmarks/exact_bench.py --set cosma --time-limit 20 --workers 2
    python benchmarks/exact_bench.py --set cosma --time-limit 20 --workers 1 --models transformer --repeat 3
    python benchmarks/exact_bench.py --set light --time-limit 10 --models light_resnet50
    python benchmarks/exact_bench.py --set cosma --without "cut bound,disjunctive bound,order LNS"

``--without`` drops the named phases of exact's pipeline (``AutoPipeline.phases``): the same
run without a change, back to back on the same (possibly loaded) machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# OR-Tools before anything that may import pulp/highspy (both ship a libhighs).
import onnx  # noqa: E402
from ortools.sat.python import cp_model  # noqa: E402,F401

from models.build import load_manifest  # noqa: E402
from stowage.errors import StowageError  # noqa: E402
from stowage.ir.onnx_import import load_graph  # noqa: E402
from stowage.solvers.budgets import budgets  # noqa: E402
from stowage.solvers.exact.params import ExactParams  # noqa: E402
from stowage.solvers.problem import Problem  # noqa: E402
from stowage.solvers.registry import available, solve  # noqa: E402
from stowage.targets.hierarchy import load_target  # noqa: E402

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
COSMA_TARGET = ROOT / "benchmarks" / "cosma_target.toml"


def unaligned(target):
    return dataclasses.replace(target, levels=tuple(dataclasses.replace(lv, alignment=1) for lv in target.levels))


def cases(which: str, names: list[str]):
    if which == "cosma":
        target = load_target(str(COSMA_TARGET))
        for m in load_manifest():
            if m.group == "cosma" and (not names or m.name in names):
                yield m.name, m.path, target
    else:
        target = unaligned(load_target("ethos-u55-256"))
        for p in sorted(LIGHT.glob("*.onnx")):
            if not names or p.stem in names or p.stem.replace("light_", "") in names:
                yield p.stem, p, target


def add_without(ap: argparse.ArgumentParser) -> None:
    """``--without PHASES``: drop phases of exact's pipeline for an A/B run (``apply_without``)."""
    ap.add_argument("--without", default="", help="comma-separated phase names of exact's pipeline to skip")


def apply_without(ap: argparse.ArgumentParser, without: str) -> set[str]:
    """Drop the ``--without`` phases (an argparse error names unknown ones); the set dropped."""
    skip = {n for n in without.split(",") if n}
    unknown = skip_phases(skip)
    if unknown:
        ap.error(f"unknown phases: {sorted(unknown)}")
    return skip


def skip_phases(skip: set[str]) -> set[str]:
    """Drop the named phases from exact's pipeline (``AutoPipeline.phases``) for this process,
    for A/B runs (``--without``); returns the names that are not phases (nothing is dropped
    then)."""
    if not skip:
        return set()
    from stowage.solvers.exact.auto import AutoPipeline

    phases = AutoPipeline.phases
    unknown = skip - {ph.name for ph in phases(AutoPipeline.__new__(AutoPipeline))}
    if not unknown:
        AutoPipeline.phases = lambda self: [ph for ph in phases(self) if ph.name not in skip]  # type: ignore[method-assign]
    return unknown


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", choices=("cosma", "light"), default="cosma")
    ap.add_argument("--time-limit", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--models", default="", help="comma-separated model names (default: all of the set)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run exact this many times per case and report whether the plans are identical "
                         "(order, placements, transfers): the determinism check")
    add_without(ap)
    args = ap.parse_args()
    apply_without(ap, args.without)
    names = [m for m in args.models.split(",") if m]
    has_heur = "heuristic" in available()
    rep = "| same plan |" if args.repeat > 1 else "|"
    print("| model | ops | weights | budget | capacity | status | exact NC bytes | bound | gap | time s | heuristic NC "
          "| exact better by " + rep)
    print("|---|---|---|---|---|---|---|---|---|---|---|---" + ("|---|" if args.repeat > 1 else "|"))
    n_same = 0
    times: list[float] = []
    n_opt = n_cases = n_better = n_worse = 0
    saved = 0
    for name, path, target in cases(args.set, names):
        graph = load_graph(path, element_bytes=1)
        nops = len(graph.computing_ops)
        for weights_in_compute_level in (False, True):
            b = budgets(graph, weights_in_compute_level)
            for bname in ("M_R", "M_H", "M_P"):
                cap = b.get(bname)
                prob = Problem(graph, target.with_capacity(cap), weights_in_compute_level, time_limit=args.time_limit,
                               seed=0, workers=args.workers)
                n_cases += 1
                t0 = time.perf_counter()
                try:
                    plan = solve(prob, "exact", ExactParams())
                except StowageError as exc:
                    print(f"| {name} | {nops} | {weights_in_compute_level} | {bname} | {cap} | error: {exc} ||||||",
                          flush=True)
                    continue
                dt = time.perf_counter() - t0
                times.append(dt)
                same = ""
                if args.repeat > 1:
                    key = (plan.steps, plan.placements, plan.transfers)
                    ok = all((p.steps, p.placements, p.transfers) == key
                             for p in (solve(prob, "exact", ExactParams()) for _ in range(args.repeat - 1)))
                    n_same += ok
                    same = f" {'yes' if ok else 'NO'} |"
                nc, lb = plan.metrics.noncompulsory_bytes, plan.solver.lower_bound
                n_opt += plan.solver.status == "optimal"
                gap = "-" if lb is None else (f"{(nc - lb) / nc:.1%}" if nc else "0%")
                heur, better = "-", "-"
                if has_heur:
                    try:
                        hp = solve(prob, "heuristic")
                        hn = hp.metrics.noncompulsory_bytes
                        heur = str(hn)
                        n_better += nc < hn
                        n_worse += nc > hn
                        saved += hn - nc
                        better = f"{hn - nc} B ({(hn - nc) / hn:.0%})" if hn else ("0" if nc == 0 else f"worse by {nc}")
                    except StowageError as exc:
                        heur = f"error: {exc}"
                print(f"| {name} | {nops} | {weights_in_compute_level} | {bname} | {cap} | {plan.solver.status} "
                      f"| {nc} | "
                      f"{'-' if lb is None else lb} | {gap} | {dt:.2f} | {heur} | {better} |{same}", flush=True)
    if times:
        print()
        print(f"Summary: {n_opt}/{n_cases} proven optimal; solve time median {statistics.median(times):.2f} s, "
              f"max {max(times):.2f} s; exact better than the heuristic on {n_better} cases "
              f"(total {saved} B less), worse on {n_worse}."
              + (f" Same plan in all {args.repeat} runs: {n_same}/{len(times)} cases." if args.repeat > 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
