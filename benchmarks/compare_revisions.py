"""Benchmark: the plans and run times of two revisions of Stowage, side by side.

A refactoring must not change what the planner produces, and should not slow it down.  This
runs ``stowage compile`` of a base revision (a ``git worktree`` of ``--base``) and of the
working tree on the same models, capacities, settings and solvers, one after the other for
each case (so machine load hits both alike), and reports per case whether the plan files are
identical (ignoring ``solver.seconds`` and ``solver.found_by``), the wall time of each side's
process and the solve time its plan records (``solver.seconds``, the median over ``--repeat``
runs); at the end the count of identical cases and the median ratios new/base.

Both the layout before the single ``stowage`` package (``python -m planner`` with the
repository on ``PYTHONPATH``) and the current one (``planner/`` mapped to ``stowage``, run
through a folder of symbolic links) are supported, so a base from before the renovation works.

Models are not downloaded: by default the light model zoo that ships inside the ``onnx``
wheel (not part of ``models/suite``); add more with ``--model PATH[::--dim NAME=V ...]``, e.g.
models that ship inside other pip packages.

    python benchmarks/compare_revisions.py --base 9d9a11c --solvers heuristic,exact \\
        --model 'x/ch_PP-OCRv4_det_infer.onnx::--dim p2o.DynamicDimension.0=1 ...'
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnx

REPO = Path(__file__).resolve().parents[1]
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
DEFAULT_MODELS = ["light_inception_v2", "light_resnet50", "light_shufflenet"]


def runner(tree: Path, scratch: Path) -> tuple[list[str], dict[str, str]]:
    """The command prefix and environment that run ``tree``'s CLI from its sources."""
    env = dict(os.environ)
    if (tree / "ir" / "errors.py").exists():  # the layout before one package: planner/ is importable
        env["PYTHONPATH"] = str(tree)
        return [sys.executable, "-m", "planner"], env
    farm = scratch / "stowage"
    farm.mkdir(parents=True)
    for entry in (tree / "planner").iterdir():
        (farm / entry.name).symlink_to(entry)
    for sub in ("ir", "targets", "solvers"):
        (farm / sub).symlink_to(tree / sub)
    env["PYTHONPATH"] = str(scratch)
    return [sys.executable, "-m", "stowage"], env


def normalised(plan: Path) -> dict:
    d = json.loads(plan.read_text(encoding="utf-8"))
    d["solver"].pop("seconds", None)
    d["solver"].pop("found_by", None)
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare with the working tree")
    ap.add_argument("--solvers", default="heuristic,exact,divide,baseline-minpeak-belady")
    ap.add_argument("--capacities", default="M_R,M_H,M_P")
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="runs per case and side (medians are reported)")
    ap.add_argument("--model", action="append", default=[],
                    help="PATH[::EXTRA ARGS] (repeatable); default: the light zoo shipped with onnx")
    args = ap.parse_args()
    # A killed run still removes its worktree (the ``finally`` below runs on SystemExit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    models: list[tuple[Path, list[str]]] = []
    for spec in args.model or [str(LIGHT / f"{m}.onnx") for m in DEFAULT_MODELS]:
        path, _, extra = spec.partition("::")
        models.append((Path(path).resolve(), shlex.split(extra)))
    with tempfile.TemporaryDirectory(prefix="stowage-revs-") as tmp:
        scratch = Path(tmp)
        base_tree = scratch / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(base_tree), args.base],
                       check=True)
        try:
            sides = {"base": runner(base_tree, scratch / "base-farm"), "new": runner(REPO, scratch / "new-farm")}
            rows = []
            print(f"base {args.base} vs working tree; load {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores",
                  flush=True)
            print("| case | result | base wall s | new wall s | base solve s | new solve s |\n"
                  "|---|---|---:|---:|---:|---:|", flush=True)
            for model, extra in models:
                for weights in (False, True):
                    for cap in args.capacities.split(","):
                        for solver in args.solvers.split(","):
                            case = f"{model.stem} {'w' if weights else 'a'} {cap} {solver}"
                            cli = ["compile", str(model), "--element-bytes", "1", "--capacity", cap,
                                   "--solver", solver, "--time-limit", str(args.time_limit),
                                   "--workers", str(args.workers), *extra] + (["--weights-in-sram"] if weights else [])
                            out, secs, solve = {}, {}, {}
                            walls: dict[str, list[float]] = {"base": [], "new": []}
                            solves: dict[str, list[float]] = {"base": [], "new": []}
                            for _ in range(args.repeat):
                                for side, (prefix, env) in sides.items():  # interleaved: load hits both alike
                                    outdir = scratch / side / case.replace(" ", "_")
                                    t0 = time.perf_counter()
                                    r = subprocess.run([*prefix, "-q", *cli, "-o", str(outdir)], env=env, cwd=tmp,
                                                       capture_output=True, text=True)
                                    walls[side].append(time.perf_counter() - t0)
                                    out[side] = (r.returncode, r.stderr.strip(), outdir / "plan.json")
                                    if r.returncode == 0:
                                        plan = json.loads((outdir / "plan.json").read_text(encoding="utf-8"))
                                        solves[side].append(float(plan["solver"]["seconds"]))
                            for side in sides:
                                secs[side] = statistics.median(walls[side])
                                solve[side] = statistics.median(solves[side]) if solves[side] else float("nan")
                            (rb, eb, pb), (rn, en, pn) = out["base"], out["new"]
                            if rb or rn:
                                same = rb == rn and eb == en
                                result = (f"both exit {rb}" if same
                                          else f"DIFFERENT exit {rb}/{rn}: {eb[-120:]} | {en[-120:]}")
                            else:
                                a, b = normalised(pb), normalised(pn)
                                same = a == b
                                result = "same plan" if same else (
                                    f"DIFFERENT: traffic {a['metrics']['noncompulsory_bytes']} -> "
                                    f"{b['metrics']['noncompulsory_bytes']}, {a['solver']['status']} -> "
                                    f"{b['solver']['status']}")
                            rows.append((same, secs["base"], secs["new"], solve["base"], solve["new"]))
                            print(f"| {case} | {result} | {secs['base']:.2f} | {secs['new']:.2f} | "
                                  f"{solve['base']:.3f} | {solve['new']:.3f} |", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)], check=False)
    n_same = sum(r[0] for r in rows)
    ratio = statistics.median(r[2] / r[1] for r in rows)
    timed = [r[4] / r[3] for r in rows if r[3] > 0.05 and r[4] == r[4]]  # solves long enough to time
    solve_ratio = f"{statistics.median(timed):.3f} over {len(timed)} cases" if timed else "n/a"
    print(f"\n{n_same}/{len(rows)} cases identical; median wall-time ratio new/base {ratio:.3f}; "
          f"median solve-time ratio new/base {solve_ratio} (solves over 0.05 s); load {os.getloadavg()[0]:.2f}")
    return 0 if n_same == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
