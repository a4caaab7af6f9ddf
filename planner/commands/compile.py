"""``stowage compile``: plan a model and write OUTDIR/plan.json plus a short summary."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

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
                   help="also write: json (schedule.json), header (plan.h + plan.c), weights (weights.bin), "
                   "weights-c (weights.bin + weights.c), comma-separated (default json,header); see docs/c-header.md")
    p.add_argument("--c-prefix", default=None, metavar="P",
                   help="prefix of every C identifier in plan.h (default: from the model name)")
    p.add_argument("--separate-io", action="store_true",
                   help="in plan.h, give every graph input and output its own region (the application "
                   "owns those buffers) instead of a place in its home level")
    p.add_argument("--json", action="store_true",
                   help="print one JSON summary on stdout instead of the text lines (keys: docs/plan-format.md, "
                   "'compile --json')")
    p.add_argument("--objective", choices=("traffic", "latency"), default="traffic",
                   help="what the solver minimises: traffic (non-compulsory bytes, COSMA's; default) or latency "
                   "(the estimated time, traffic as the tie-break; --solver heuristic, a target with [compute]; "
                   "docs/timing.md)")
    p.add_argument("--per-layer", default=None, metavar="FILE.csv",
                   help="also write one CSV row per step: operator, MACs, compute time, bytes moved per level, "
                   "stall time (docs/timing.md; times empty when the target has no [compute] table)")


def _budgets(graph, target, weights_in_compute_level: bool) -> tuple[int, int, int]:
    """M_R, M_H, M_P of the model for this setting at the compute level's alignment: the same
    numbers ``--capacity M_R|M_H|M_P`` resolves to."""
    from stowage.solvers.budgets import target_budgets

    b = target_budgets(graph, target, weights_in_compute_level)
    return b.m_r, b.m_h, b.m_p


def _fmt(n: int | None) -> str:
    from stowage.format import fmt_bytes_exact

    return fmt_bytes_exact(n, none="unbounded")


def summary_json(model: str, plan, budgets: tuple[int, int, int], written, seconds_total: float) -> dict:
    """``compile --json``: the numbers the text summary prints, as plain integers (bytes),
    for CI scripts; ``gap`` is in bytes like the text (non-compulsory minus the bound)."""
    m, s = plan.metrics, plan.solver
    compute = plan.target.compute_level
    mr, mh, mp = budgets
    return {
        "model": model,
        "target": plan.target.name,
        "compute_level": compute,
        "capacity": plan.target.level(compute).capacity,
        "weights_in_compute_level": plan.options.weights_in_compute_level,
        "steps": len(plan.steps),
        "tiled": bool(plan.cascades),
        "cascades": len(plan.cascades),
        "budgets": {"M_R": mr, "M_H": mh, "M_P": mp},
        "traffic": {"compulsory": m.compulsory_bytes, "noncompulsory": m.noncompulsory_bytes,
                    "total": m.compulsory_bytes + m.noncompulsory_bytes},
        "peaks": dict(m.peak_bytes),
        "solver": s.name,
        "found_by": s.found_by,
        "status": s.status,
        "bound": s.lower_bound,
        "gap": None if s.lower_bound is None else m.noncompulsory_bytes - s.lower_bound,
        "stopped_by": s.stopped_by,
        "whole_tensor_bound": s.whole_tensor_bound,
        "partition_bound": s.partition_bound,
        "joint_bound": s.joint_bound,
        "cascade_order": s.cascade_order,
        "seconds": {"solve": round(s.seconds, 4), "total": round(seconds_total, 4)},
        "files": [str(p) for p in written],
    }


def _check_csv_path(path: str) -> None:
    """Refuse a ``--per-layer`` path that can never be written, before planning."""
    from stowage.plan.files import OutputError

    out = Path(path)
    if out.is_dir():
        raise OutputError(f"--per-layer {path}: is a folder; give a file name")
    if not out.parent.is_dir():
        raise OutputError(f"--per-layer {path}: the parent folder {out.parent} does not exist")
    if (out.exists() and not os.access(out, os.W_OK)) or not os.access(out.parent, os.W_OK | os.X_OK):
        raise OutputError(f"--per-layer {path}: not writable (permission denied)")


def _timing(graph, plan, target, per_layer: bool) -> tuple[dict, str | None]:
    """The time summary (``compile --json`` key ``time``) and the ``--per-layer`` text, both
    computed before any file is written."""
    from stowage.solvers.timing import estimate, per_layer_csv

    tl = estimate(graph, plan, target)
    text = per_layer_csv(graph, plan, tl) if per_layer else None
    if tl is None:
        return {"estimated_seconds": None, "bound_seconds": None, "gap_seconds": None, "stall_seconds": None}, text
    return {"estimated_seconds": tl.makespan, "bound_seconds": tl.lower_bound,
            "gap_seconds": tl.makespan - tl.lower_bound, "stall_seconds": tl.stall}, text


def _write_csv(path: str, text: str) -> None:
    from stowage.plan import write_text_atomic
    from stowage.plan.files import OutputError

    try:
        write_text_atomic(path, text)  # temp file + rename: never a partial file
    except OSError as exc:
        raise OutputError(f"--per-layer {path}: cannot write: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    from stowage import progress
    from stowage.api import compile as compile_plan
    from stowage.backend.emit import check_prefix, parse_formats

    t0 = time.perf_counter()
    formats = parse_formats([args.emit], args.element_bytes)  # bad --emit / --c-prefix / -o fail before planning
    if args.c_prefix is not None:
        check_prefix(args.c_prefix)
    names = plan_output_names(formats, with_plan=True)
    outdir = check_output_folder(args.outdir, names)
    from stowage.solvers.registry import parse_param_overrides

    params = parse_param_overrides(args.solver, args.param)  # bad --param fails before import
    if args.per_layer is not None:
        _check_csv_path(args.per_layer)
    graph = load_model_from_args(args)
    with progress.stage(f"planning with {args.solver}"):
        plan = compile_plan(graph, target=args.target, capacity=args.capacity, solver=args.solver,
                            time_limit=args.time_limit, seed=args.seed, weights_in_sram=args.weights_in_sram,
                            workers=args.workers, params=params, on_progress=progress.status,
                            in_place=args.in_place == "on", tiling=args.tiling, qdq=args.qdq,
                            objective=args.objective)
    if graph.without_concats is not None and not plan.options.concat_in_place:
        graph = graph.without_concats  # tiled below M_R without Concats in place (stowage.compile)
    if plan.options.channel_split:
        from stowage.ir.channel_split import split_channels

        graph = split_channels(graph, plan.options.channel_split)  # weights cut to fit (stowage.compile)
    # The time summary and --per-layer text are computed before any file is written.
    timing, csv_text = _timing(graph, plan, load_target_from_args(args).with_capacity(
        plan.target.level(plan.target.compute_level).capacity), args.per_layer is not None)  # type: ignore[union-attr]
    # plan.json, schedule.json, plan.h/plan.c (and weights) replace the previous ones as one set.
    # The emitter builds a tiled plan's macro graph itself (its stripe tables need the model's).
    written = write_plan_outputs(plan, graph, outdir, formats, args.c_prefix, with_plan=True,
                                 separate_io=args.separate_io)
    mr, mh, mp = _budgets(graph, load_target_from_args(args), args.weights_in_sram)
    m, s = plan.metrics, plan.solver
    cap = plan.target.level(plan.target.compute_level).capacity  # type: ignore[union-attr]
    gap = None if s.lower_bound is None else m.noncompulsory_bytes - s.lower_bound
    if args.per_layer is not None:
        _write_csv(args.per_layer, csv_text or "")
        written.append(Path(args.per_layer))
    if args.json:
        from stowage.commands._common import print_json

        summary = summary_json(graph.name, plan, (mr, mh, mp), written, time.perf_counter() - t0)
        summary["time"] = {**timing, "latency_status": plan.solver.latency_status}
        print_json(summary)
        return 0
    print(f"model {graph.name}: {len(plan.steps)} steps, target {plan.target.name}, "
          f"{plan.target.compute_level} capacity {_fmt(cap)}, weights {'in' if args.weights_in_sram else 'not in'} "
          f"{plan.target.compute_level}")
    print(f"budgets: M_R {_fmt(mr)}, M_H {_fmt(mh)}, M_P {_fmt(mp)}")
    print(f"traffic: compulsory {_fmt(m.compulsory_bytes)}, non-compulsory {_fmt(m.noncompulsory_bytes)}")
    if timing["estimated_seconds"] is None:
        print("time: unknown (the target has no [compute] table; docs/timing.md)")
    else:
        ms = {k: v * 1e3 for k, v in timing.items()}
        print(f"time: estimated {ms['estimated_seconds']:.3f} ms, bound {ms['bound_seconds']:.3f} ms, "
              f"gap {ms['gap_seconds']:.3f} ms, stall {ms['stall_seconds']:.3f} ms (objective {args.objective}"
              + (f", {s.latency_status}" if s.latency_status else "") + ")")
    print("peak: " + ", ".join(f"{lv} {_fmt(v)}" for lv, v in m.peak_bytes.items()))
    whole = (f" (whole-tensor plans: {_fmt(s.whole_tensor_bound)})"
             if s.whole_tensor_bound is not None else "")
    whole += (f" (candidate partitions: cut traffic >= {_fmt(s.partition_bound)})"
              if s.partition_bound is not None else "")
    whole += (f" (joint model, file order: >= {_fmt(s.joint_bound)})" if s.joint_bound is not None else "")
    print(f"solver {s.name}: {s.status}, bound {_fmt(s.lower_bound) if s.lower_bound is not None else 'none'}{whole}, "
          f"gap {_fmt(gap) if gap is not None else 'unknown'}, solve {s.seconds:.2f}s, "
          f"total {time.perf_counter() - t0:.2f}s")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
