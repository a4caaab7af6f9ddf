"""Every suite model -> plan at M_R (8-bit, weights in SRAM) -> plan.h -> C replay, with gcc
and g++, on a two-level and the three-level target.

    python benchmarks/header_replay.py [--targets ethos-u55-256,sn40l] [--time-limit 5]

Prints one line per (target, model): replay exit codes for C and C++, non-compulsory bytes
(spills make the replay exercise reloads), and the replay's own summary line.  Exit 1 if any
header fails to compile warning-free or any replay fails.  Uses the replay harness of
tests/test_emit.py (gcc -std=c99 -Wall -Wextra -Werror -pedantic; g++ -x c++ ... -Werror).
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
from stowage.backend.emit import emit_header  # noqa: E402
from stowage.errors import StowageError  # noqa: E402
from stowage.ir.onnx_import import load_graph  # noqa: E402
from test_emit import replay  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="ethos-u55-256,sn40l")
    ap.add_argument("--time-limit", type=float, default=5.0)
    args = ap.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.targets.split(","):
            for m in sorted((ROOT / "models" / "suite").glob("*.onnx")):
                t0 = time.perf_counter()
                g = load_graph(m, element_bytes=1)
                try:
                    plan = compile_plan(g, target=target, capacity="M_R", solver="auto",
                                        time_limit=args.time_limit, weights_in_sram=True)
                except StowageError as exc:  # e.g. the model's weights exceed an MCU's flash
                    print(f"{target:14} {m.stem:20} does not fit: {exc}")
                    continue
                header = emit_header(plan, g)
                rc = replay(header, Path(tmp) / target / m.stem)
                rcx = replay(header, Path(tmp) / target / f"{m.stem}-cxx", cxx=True)
                failures += (rc.returncode != 0) + (rcx.returncode != 0)
                print(f"{target:14} {m.stem:20} c={rc.returncode} c++={rcx.returncode} "
                      f"noncompulsory={plan.metrics.noncompulsory_bytes:>10} {time.perf_counter() - t0:5.1f}s  "
                      f"{(rc.stdout + rc.stderr).strip().splitlines()[-1]}")
    print(f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
