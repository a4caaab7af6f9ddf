"""``stowage emit``: regenerate plan.h + plan.c / schedule.json / plan.json (and weights.bin,
weights.c) from a saved plan.

Without ``--model`` the artifacts come from the plan file alone (step node indices are then
unknown; a tiled plan and the weight blob need the model).  With ``--model`` the plan is first
checked by the independent validator against that model and refused if invalid, so firmware
never receives an unchecked plan by accident.
"""

from __future__ import annotations

import argparse

from stowage.commands._common import add_model_arguments, check_output_folder, plan_output_names, write_plan_outputs

NAME = "emit"
HELP = "write plan.h + plan.c (C99), schedule.json, plan.json and weights.bin for a saved plan"
ORDER = 45


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("plan", metavar="PLAN.json", help="plan file written by 'stowage compile'")
    p.add_argument("--format", default="all", metavar="FORMATS",
                   help="comma-separated: header (plan.h + plan.c), json (plan.json and schedule.json), "
                   "weights (weights.bin; needs --model), weights-c (weights.bin + weights.c; needs --model), "
                   "all (header and json; the default)")
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="the ONNX model the plan was made for: validates the plan first and adds "
                   "ONNX node indices to the step table")
    add_model_arguments(p, model=False)
    p.add_argument("--c-prefix", default=None, metavar="P",
                   help="prefix of every C identifier (default: from the model name)")
    p.add_argument("--separate-io", action="store_true",
                   help="give every graph input and output its own region (the application owns those buffers)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="directory to write into")


def run(args: argparse.Namespace) -> int:
    from stowage.backend.emit import EmitError, check_prefix, parse_formats
    from stowage.commands.validate import load_model_for_plan
    from stowage.plan import load_plan

    if args.c_prefix is not None:
        check_prefix(args.c_prefix)  # fail before the (slow) model import
    formats = parse_formats([args.format])
    if args.model is None and {"weights", "weights-c"} & set(formats):
        raise EmitError("--format weights/weights-c needs --model: the weight bytes are in the model file")
    outdir = check_output_folder(args.output, plan_output_names(formats, with_plan=False))
    plan = load_plan(args.plan)
    if plan.cascades and args.model is None:
        raise EmitError(f"{args.plan} is a tiled plan: its stripe tables need the model (--model MODEL)")
    graph = None
    if args.model is not None:
        from stowage.plan.validate import validate

        args.model = str(args.model)
        graph = load_model_for_plan(args, plan)
        if not plan.cascades and len(graph.buffers) != len(plan.buffers):
            raise EmitError(f"{args.plan} is not a plan of {args.model}: {len(plan.buffers)} buffers in the plan, "
                            f"{len(graph.buffers)} in the model")
        verdict = validate(graph, plan)
        if not verdict.ok:
            raise EmitError(f"{args.plan} is not a valid plan of {args.model} ({len(verdict.errors)} violation(s)); "
                            f"first: rule {verdict.errors[0].rule}: {verdict.errors[0].message}")
    # The selected files replace the previous ones as one set (no mix, no temp file).
    for path in write_plan_outputs(plan, graph, outdir, formats, args.c_prefix, with_plan=False,
                                   separate_io=args.separate_io):
        print(path)
    return 0
