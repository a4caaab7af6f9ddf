"""Plans -> plan.h + plan.c (+ weights.bin) -> the C replay (tests/c/replay.c), with gcc and g++.

    python benchmarks/header_replay.py [--mode whole|tiled|both] [--targets ethos-u55-256,sn40l]
                                       [--time-limit 5] [--models GLOB]

``whole`` (the original check): every suite model at M_R (8-bit, weights in SRAM) on each
target.  ``tiled``: every suite model at 8-bit on the default target's own capacity (256 KiB
SRAM on ethos-u55-256, below M_R for most: the plans are tiled) and every int8 model of
models/int8 at its natural sizes, with weights.bin checked by the replay.  Prints one line per
plan: replay exit codes for C and C++, cascades and stripes, non-compulsory bytes, and the
replay's own summary line.  Exit 1 if any file fails to compile warning-free or any replay
fails.  Uses the replay harness of tests/test_emit.py (gcc -std=c99 -Wall -Wextra -Werror
-pedantic; g++ -x c++ ... -Werror).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from stowage.api import compile as compile_plan  # noqa: E402
from stowage.backend.emit import EmitError, emit_c  # noqa: E402
from stowage.errors import StowageError  # noqa: E402
from stowage.ir.inplace import fuse_in_place  # noqa: E402
from stowage.ir.onnx_import import load_graph  # noqa: E402
from test_emit import replay  # noqa: E402


def cases(mode: str, targets: list[str], pattern: str) -> list[tuple[str, Path, int | None, str | None, bool]]:
    """(target, model, element bytes, capacity, weights blob) per plan to check."""
    out: list[tuple[str, Path, int | None, str | None, bool]] = []
    suite = sorted((ROOT / "models" / "suite").glob(pattern))
    if mode in ("whole", "both"):
        out += [(t, m, 1, "M_R", False) for t in targets for m in suite]
    if mode in ("tiled", "both"):
        out += [("ethos-u55-256", m, 1, None, False) for m in suite]
        out += [("ethos-u55-256", m, None, None, True) for m in sorted((ROOT / "models" / "int8").glob(pattern))]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("whole", "tiled", "both"), default="both")
    ap.add_argument("--targets", default="ethos-u55-256,sn40l")
    ap.add_argument("--time-limit", type=float, default=5.0)
    ap.add_argument("--models", default="*.onnx", metavar="GLOB")
    args = ap.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for target, m, eb, cap, blob in cases(args.mode, args.targets.split(","), args.models):
            t0 = time.perf_counter()
            g = load_graph(m, element_bytes=eb)
            tiled = cap is None
            if tiled:
                g = fuse_in_place(g)
            label = f"{target:14} {m.stem:28} {'tiled' if tiled else 'M_R':5}"
            try:
                plan = compile_plan(g, target=target, capacity=cap, solver="auto", time_limit=args.time_limit,
                                    weights_in_sram=not tiled)
            except StowageError as exc:  # e.g. the model's weights exceed an MCU's flash
                print(f"{label} not planned: {exc}")
                continue
            try:
                files = emit_c(plan, g, weights=blob)
            except EmitError as exc:  # a graph-only model file: no weight bytes to pack
                print(f"{label} (no weights.bin: {str(exc)[:80]}...)")
                files, blob = emit_c(plan, g), False
            where = Path(tmp) / target / m.stem
            rc = replay(files, where / "c", blob=blob)
            rcx = replay(files, where / "cxx", cxx=True, blob=blob)
            failures += (rc.returncode != 0) + (rcx.returncode != 0)
            stripes = sum(len(c.stripes) for c in plan.cascades)
            print(f"{label} c={rc.returncode} c++={rcx.returncode} cascades={len(plan.cascades):3} "
                  f"stripes={stripes:5} noncompulsory={plan.metrics.noncompulsory_bytes:>10} "
                  f"{time.perf_counter() - t0:6.1f}s  {(rc.stdout + rc.stderr).strip().splitlines()[-1]}",
                  flush=True)
    print(f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
