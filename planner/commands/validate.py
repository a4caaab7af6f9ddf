"""``stowage validate``: check a plan file against its model with the independent validator.

Exit 0 for a valid plan, 1 for an invalid one, 2 for unusable input (unreadable model or
plan file).  The model is imported with the plan's own ``--dim`` bindings and element size
unless the command line overrides them, so a plan validates against the graph it was made
for.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from stowage.commands._common import add_model_arguments, print_json

NAME = "validate"
HELP = "check a plan file against its model (the rules of docs/plan-format.md)"
ORDER = 40


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p, in_place=False)
    p.add_argument("plan", metavar="PLAN.json", help="plan file written by 'stowage compile' (OUTDIR/plan.json)")
    p.add_argument("--target", default=None, metavar="PRESET_OR_FILE",
                   help="also check against this memory hierarchy (level names, no transfer into "
                   "a read-only level); the plan file alone does not say which levels are writable")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def load_model_for_plan(args: argparse.Namespace, plan: Any) -> Any:
    """Import the model with the plan's dims and element size (command line wins) and warn
    when the file is not the one the plan was made from."""
    from stowage import progress
    from stowage.ir.onnx_import import load_graph

    dims = dict(plan.options.dims)
    dims.update(dict(args.dim))
    element_bytes = args.element_bytes if args.element_bytes is not None else plan.options.element_bytes
    values: dict[str, Any] = dict(plan.options.input_values)
    values.update(dict(getattr(args, "input_value", []) or []))
    with progress.stage(f"importing {args.model}"):
        graph = load_graph(args.model, dims=dims, element_bytes=element_bytes, input_values=values or None)
    if plan.options.qdq == "fold":
        from stowage.ir.qdq import fold_qdq

        graph = fold_qdq(graph)
    if plan.options.in_place:
        # The plan says how it was made: its steps are those of the fused graph.
        from stowage.ir.inplace import fuse_in_place

        graph = fuse_in_place(graph, concat=plan.options.concat_in_place)
    if plan.options.channel_split:
        from stowage.errors import PlanFormatError
        from stowage.ir.channel_split import split_channels

        try:
            graph = split_channels(graph, plan.options.channel_split)
        except ValueError as exc:
            raise PlanFormatError(f"plan file: options.channel_split: {exc}") from None
    if plan.model.sha256 and graph.source_sha256 and plan.model.sha256 != graph.source_sha256:
        print(f"stowage: warning: {args.model} is not the model the plan was made from "
              f"(sha256 {graph.source_sha256[:12]}... vs {plan.model.sha256[:12]}... in the plan)",
              file=sys.stderr)
    return graph


def run(args: argparse.Namespace) -> int:
    from stowage.plan import load_plan
    from stowage.plan.validate import validate
    from stowage.targets.hierarchy import load_target

    plan = load_plan(args.plan)
    graph = load_model_for_plan(args, plan)
    target = load_target(args.target) if args.target else None
    verdict = validate(graph, plan, target)
    m = verdict.metrics
    if args.json:
        print_json({
            "valid": verdict.ok,
            "errors": [{"rule": e.rule, "step": e.step, "buffers": list(e.buffers), "message": e.message}
                       for e in verdict.errors],
            "metrics": {"compulsory_bytes": m.compulsory_bytes, "noncompulsory_bytes": m.noncompulsory_bytes,
                        "peak_bytes": dict(m.peak_bytes)},
            "writable_levels_checked": target is not None,
        })
        return 0 if verdict.ok else 1
    print(f"plan: {args.plan} ({len(plan.steps)} steps, {len(plan.placements)} placements, "
          f"{len(plan.transfers)} transfers; solver {plan.solver.name}, {plan.solver.status})")
    print(verdict.summary(limit=20))
    print(f"compulsory bytes      {m.compulsory_bytes:,}")
    print(f"non-compulsory bytes  {m.noncompulsory_bytes:,}")
    for level, peak in m.peak_bytes.items():
        print(f"peak bytes {level:<10} {peak:,}")
    if target is None:
        print("(read-only levels not checked: pass --target to check them)")
    return 0 if verdict.ok else 1
