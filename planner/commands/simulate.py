"""``stowage simulate``: execute a plan with real numbers and compare with ONNX Runtime.

Exit 0 when the plan's outputs match a plain ORT run and no operand was ever found corrupted,
1 on a mismatch (the message names the step and the buffer), 2 for unusable input.
"""

from __future__ import annotations

import argparse

from stowage.commands._common import add_model_arguments, print_json

NAME = "simulate"
HELP = "execute a plan on byte arrays (one per memory level) and compare with ONNX Runtime"
ORDER = 41


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p, in_place=False)
    p.add_argument("plan", metavar="PLAN.json", help="plan file written by 'stowage plan'")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the random graph inputs (and of weights missing from a graph-only model)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from stowage import progress
    from stowage.commands.validate import load_model_for_plan
    from stowage.plan import load_plan
    from stowage.simulate import simulate

    plan = load_plan(args.plan)
    graph = load_model_for_plan(args, plan)
    with progress.stage(f"simulating {len(plan.steps)} steps"):
        result = simulate(args.model, graph, plan, seed=args.seed)
    if args.json:
        print_json({
            "match": result.ok,
            "steps": result.steps,
            "corruptions": [{"step": c.step, "buffer": c.buffer, "message": c.message} for c in result.corruptions],
            "outputs": [{"name": o.name, "bit_exact": o.exact, "within_tolerance": o.close,
                         "max_abs_diff": o.max_abs_diff} for o in result.outputs],
            "tolerance": result.tolerance,
            "random_weights": result.random_weights,
            "operators_run_by": dict(result.ops_by_runtime),
        })
        return 0 if result.ok else 1
    runners = ", ".join(f"{n} by {k}" for k, n in sorted(result.ops_by_runtime.items()))
    print(f"simulated {result.steps} steps ({runners}); inputs seeded with {args.seed}"
          + ("; weights absent from the model file were generated at random" if result.random_weights else ""))
    for o in result.outputs:
        how = "bit-exact" if o.exact else (f"within rtol/atol (max abs diff {o.max_abs_diff:g})" if o.close
                                           else f"DIFFERS (max abs diff {o.max_abs_diff:g})")
        print(f"output {o.name}: {how} vs ONNX Runtime")
    if result.ok:
        print("match: the plan computes the model's outputs")
        return 0
    print(f"MISMATCH: {result.first_problem}")
    for c in result.corruptions[1:10]:
        print(f"  also: {c.message}")
    if len(result.corruptions) > 10:
        print(f"  ... {len(result.corruptions) - 10} more")
    return 1
