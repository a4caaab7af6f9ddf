"""``stowage compile``: plan a model and write OUTDIR/plan.json plus a short summary."""

from __future__ import annotations

import argparse
import time

from stowage.commands._common import (
    add_model_arguments,
    add_target_arguments,
    add_tiling_argument,
    check_output_folder,
    load_model_from_args,
    load_target_from_args,
    plan_output_names,
    positive_int,
    positive_seconds,
    write_plan_outputs,
)

NAME = "compile"
HELP = "plan a model: operator order, scratchpad offsets and spills -> OUTDIR/plan.json"
DESCRIPTION = (
    "Plan MODEL for a memory hierarchy: choose the operator order, the compute-level offsets and "
    "the spills that minimise non-compulsory off-chip traffic, validate the plan and write "
    "OUTDIR/plan.json. Deterministic for a given --seed."
)
ORDER = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_target_arguments(p)
    add_tiling_argument(p)
    p.add_argument("--solver", default="auto", metavar="NAME",
                   help="solver name (see 'stowage solvers'); default: auto")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="set a parameter of the chosen solver (repeatable; 'stowage solvers NAME' lists them), "
                   "e.g. --solver exact --param mode=joint")
    p.add_argument("--time-limit", type=positive_seconds, default=10.0, metavar="SEC",
                   help="time limit of the solver in seconds (default: 10)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument("--weights-in-sram", action="store_true",
                   help="weights must be resident in the compute level while used (COSMA's activations+weights)")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="worker threads for solvers that use them (default: all cores)")
    p.add_argument("-o", "--output", "--outdir", dest="outdir", required=True, metavar="OUTDIR",
                   help="directory to write plan.json into (created if needed)")
    p.add_argument("--emit", default="json,header", metavar="FORMATS",
                   help="also write: json (schedule.json), header (plan.h), or both (default json,header); "
                   "see docs/c-header.md")
    p.add_argument("--c-prefix", default=None, metavar="P",
                   help="prefix of every C identifier in plan.h (default: from the model name)")


def _budgets(graph, target, weights_in_compute_level: bool) -> tuple[int, int, int]:
    """M_R, M_H, M_P of the model for this setting at the compute level's alignment: the same
    numbers ``--capacity M_R|M_H|M_P`` resolves to."""
    from stowage.solvers.budgets import target_budgets

    b = target_budgets(graph, target, weights_in_compute_level)
    return b.m_r, b.m_h, b.m_p


def _fmt(n: int | None) -> str:
    if n is None:
        return "unbounded"
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n} B ({n / size:.1f} {unit})"
    return f"{n} B"


def run(args: argparse.Namespace) -> int:
    from stowage import progress
    from stowage.api import compile as compile_plan
    from stowage.backend.emit import check_prefix, parse_formats

    t0 = time.perf_counter()
    formats = parse_formats([args.emit])  # bad --emit / --c-prefix / -o fail before planning
    if args.c_prefix is not None:
        check_prefix(args.c_prefix)
    names = plan_output_names(formats, with_plan=True)
    outdir = check_output_folder(args.outdir, names)
    from stowage.solvers.registry import parse_param_overrides

    params = parse_param_overrides(args.solver, args.param)  # bad --param fails before import
    graph = load_model_from_args(args)
    with progress.stage(f"planning with {args.solver}"):
        plan = compile_plan(graph, target=args.target, capacity=args.capacity, solver=args.solver,
                            time_limit=args.time_limit, seed=args.seed, weights_in_sram=args.weights_in_sram,
                            workers=args.workers, params=params, on_progress=progress.status,
                            in_place=args.in_place == "on", tiling=args.tiling)
    # plan.json, schedule.json and plan.h replace the previous ones as one set.
    from stowage.plan.validate import plan_graph

    # A tiled plan's tables are those of its macro graph (one step per cascade).
    written = write_plan_outputs(plan, plan_graph(graph, plan), outdir, formats, args.c_prefix, with_plan=True)
    mr, mh, mp = _budgets(graph, load_target_from_args(args), args.weights_in_sram)
    m, s = plan.metrics, plan.solver
    cap = plan.target.level(plan.target.compute_level).capacity  # type: ignore[union-attr]
    gap = None if s.lower_bound is None else m.noncompulsory_bytes - s.lower_bound
    print(f"model {graph.name}: {len(plan.steps)} steps, target {plan.target.name}, "
          f"{plan.target.compute_level} capacity {_fmt(cap)}, weights {'in' if args.weights_in_sram else 'not in'} "
          f"{plan.target.compute_level}")
    print(f"budgets: M_R {_fmt(mr)}, M_H {_fmt(mh)}, M_P {_fmt(mp)}")
    print(f"traffic: compulsory {_fmt(m.compulsory_bytes)}, non-compulsory {_fmt(m.noncompulsory_bytes)}")
    print("peak: " + ", ".join(f"{lv} {_fmt(v)}" for lv, v in m.peak_bytes.items()))
    print(f"solver {s.name}: {s.status}, bound {_fmt(s.lower_bound) if s.lower_bound is not None else 'none'}, "
          f"gap {_fmt(gap) if gap is not None else 'unknown'}, solve {s.seconds:.2f}s, "
          f"total {time.perf_counter() - t0:.2f}s")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
