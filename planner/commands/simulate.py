"""``stowage simulate``: execute a plan with real numbers and compare with ONNX Runtime.

Exit 0 when the validator accepts the plan, every operator ran once, no operand was ever
found corrupted and every graph output equals the node-by-node run bit for bit (and the
whole-model ORT run within the stated tolerance); 1 on a mismatch (the validator's first
violation, or the step and buffer found wrong); 2 for unusable input.
"""

from __future__ import annotations

import argparse

from stowage.commands._common import add_model_arguments, print_json

NAME = "simulate"
HELP = "execute a plan on byte arrays (one per memory level) and compare with ONNX Runtime"
ORDER = 41


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p, in_place=False)
    p.add_argument("plan", metavar="PLAN.json", help="plan file written by 'stowage compile' (OUTDIR/plan.json)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the random graph inputs (and of weights missing from a graph-only model)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from stowage import progress
    from stowage.commands.validate import load_model_for_plan
    from stowage.ir.tflite_import import is_tflite
    from stowage.plan import load_plan
    from stowage.simulate import simulate

    plan = load_plan(args.plan)
    graph = load_model_for_plan(args, plan)
    tflite = is_tflite(args.model)  # replayed against LiteRT (stowage.simulate_tflite)
    if tflite:
        from stowage.simulate_tflite import describe
        from stowage.simulate_tflite import simulate_tflite as simulate
    with progress.stage(f"simulating {len(plan.steps)} steps"):
        result = simulate(args.model, graph, plan, seed=args.seed)
    if args.json:
        print_json({
            "match": result.ok,
            "valid": not result.violations,
            "violations": list(result.violations),
            "executed": result.executed,
            "steps": result.steps,
            "corruptions": [{"step": c.step, "buffer": c.buffer, "message": c.message} for c in result.corruptions],
            "outputs": [{"name": o.name, "bit_exact": o.exact, "within_tolerance": o.close,
                         "matches_kernels": o.matches_kernels, "present": o.present,
                         "max_abs_diff": o.max_abs_diff, "band_roundings": o.band_roundings}
                        for o in result.outputs],
            "tolerance": result.tolerance,
            "random_weights": result.random_weights,
            "operators_run_by": dict(result.ops_by_runtime),
        })
        return 0 if result.ok else 1
    if not result.executed:
        if result.violations:
            print(f"MISMATCH: the validator rejects the plan ({len(result.violations)} violation(s)), "
                  f"and it does not describe the model, so it was not executed: {result.violations[0]}")
        else:
            print(f"MISMATCH: {result.first_problem}")
        for v in result.violations[1:5]:
            print(f"  also: {v}")
        return 1
    if tflite:
        print("\n".join(describe(result, args.seed)))
        return 0 if result.ok else 1
    runners = ", ".join(f"{n} by {k}" for k, n in sorted(result.ops_by_runtime.items()))
    print(f"simulated {result.steps} steps ({runners or 'no operator'}); inputs seeded with {args.seed}"
          + ("; weights absent from the model file were generated at random" if result.random_weights else ""))
    for o in result.outputs:
        if not o.present:
            how = "MISSING from its home level after the last step"
        elif not o.matches_kernels:
            how = "DIFFERS from the node-by-node reference run"
        else:
            how = "bit-exact" if o.exact else (f"within tolerance (max abs diff {o.max_abs_diff:g})" if o.close
                                               else f"max abs diff {o.max_abs_diff:g} through {o.band_roundings} "
                                               "accepted band rounding(s) of QDQ float cores (docs/tiling.md)"
                                               if o.band_roundings
                                               else f"DIFFERS (max abs diff {o.max_abs_diff:g})")
            how += " vs ONNX Runtime"
        print(f"output {o.name}: {how}")
    if result.ok:
        print("match: the plan computes the model's outputs")
        return 0
    if result.violations:
        print(f"MISMATCH: the validator rejects the plan ({len(result.violations)} violation(s)): "
              f"{result.violations[0]}")
        if result.corruptions:
            print(f"  executed anyway: {result.corruptions[0].message}")
    else:
        print(f"MISMATCH: {result.first_problem}")
    for c in result.corruptions[1:10]:
        print(f"  also: {c.message}")
    if len(result.corruptions) > 10:
        print(f"  ... {len(result.corruptions) - 10} more")
    return 1
