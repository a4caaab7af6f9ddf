"""TFLite models planned in bands (issue 12): traffic per capacity, the least capacity that plans,
and the LiteRT replay of every plan.

For each ``.tflite`` (default: ``models/tflite/*.tflite`` and the test graph of
``tests/tflite_writer.rows_int8_model``, which has PAD, STRIDED_SLICE, SPLIT / SPLIT_V, dilated
convolutions and MEAN), plan it with ``stowage.compile`` (``auto``, activations only, the
ethos-u55-256 preset's levels) at each capacity and print one markdown row per plan: cascades,
compulsory and non-compulsory bytes, SRAM peak, whether the one validator accepts it, whether
the replay against LiteRT (``stowage.simulate_tflite``) is bit-exact, and the planning wall.
``--least`` also bisects the least capacity that plans (compile's ``CapacityError`` below it).

    python benchmarks/tflite_rows.py                       # the table for this tree
    python benchmarks/tflite_rows.py --kib 128 64 48 --least

Run it with another tree's package on ``PYTHONPATH`` for the "before" column.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))   # tflite_writer: the test graph, built in code
log = logging.getLogger("tflite_rows")


def _plan(path: Path, capacity: int, replay: bool) -> dict[str, object]:
    import stowage
    from stowage.errors import CapacityError
    from stowage.ir.onnx_import import load_graph
    from stowage.plan.validate import validate
    from stowage.simulate_tflite import simulate_tflite

    t0 = time.monotonic()
    try:
        plan = stowage.compile(path, target="ethos-u55-256", capacity=capacity, time_limit=20)
    except CapacityError as exc:
        text = str(exc)
        at = text.find("operator '")
        return {"error": text[at:at + 70] if at >= 0 else text[:70]}   # which operator stops it
    wall = time.monotonic() - t0
    g = load_graph(path)
    ok = validate(g, plan).ok
    rep = "-"
    if replay:
        r = simulate_tflite(path, g, plan)
        ok = ok and not r.violations
        rep = "bit-exact" if r.ok else "MISMATCH"
    m = plan.metrics
    return {"cascades": len(plan.cascades), "compulsory": m.compulsory_bytes, "noncompulsory": m.noncompulsory_bytes,
            "peak": m.peak_bytes.get("sram", 0), "valid": ok, "replay": rep, "wall": wall}


def _least(path: Path, hi: int) -> int | None:
    """The least capacity in bytes (to 1 B below 100 kB, else to 64 B) at which ``compile``
    returns a plan, by bisection below ``hi`` (which must plan)."""
    import stowage
    from stowage.errors import CapacityError

    def plans(c: int) -> bool:
        try:
            stowage.compile(path, target="ethos-u55-256", capacity=c, time_limit=20)
            return True
        except CapacityError:
            return False

    if not plans(hi):
        return None
    lo, res = 64, (1 if hi < 100_000 else 64)
    if plans(lo):
        return lo
    while hi - lo > res:
        mid = (lo + hi) // 2
        if plans(mid):
            hi = mid
        else:
            lo = mid
    return hi


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help=".tflite files (default: models/tflite/*.tflite and the test graph)")
    ap.add_argument("--kib", nargs="*", type=float, default=[256, 128, 96, 64, 48, 32])
    ap.add_argument("--bytes", nargs="*", type=int, default=[], help="capacities in bytes (the small test graph)")
    ap.add_argument("--least", action="store_true", help="bisect the least capacity that plans")
    ap.add_argument("--no-replay", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import stowage

    with tempfile.TemporaryDirectory(prefix="tflite_rows_") as tmp:
        paths = [Path(p) for p in args.models]
        if not paths:
            from tflite_writer import rows_int8_model

            test_graph = Path(tmp) / "rows_int8.tflite"
            test_graph.write_bytes(rows_int8_model())
            paths = sorted((ROOT / "models" / "tflite").glob("*.tflite")) + [test_graph]
        print(f"date {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; stowage from "
              f"{Path(stowage.__file__).parent}; load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print()
        print("| model | capacity | cascades | compulsory B | non-compulsory B | SRAM peak | valid | replay | plan s |")
        print("|---|---:|---:|---:|---:|---:|---|---|---:|")
        for p in paths:
            caps = [int(k * 1024) for k in args.kib] if p.stat().st_size > 100_000 else []
            caps += args.bytes if p.stat().st_size <= 100_000 else []
            if not caps:
                caps = [2240, 1024, 768, 512, 300, 224]
            for c in caps:
                r = _plan(p, c, not args.no_replay)
                if "error" in r:
                    print(f"| {p.stem} | {c:,} | refused: {r['error']} | | | | | | |")
                    continue
                print(f"| {p.stem} | {c:,} | {r['cascades']} | {r['compulsory']:,} | {r['noncompulsory']:,} | "
                      f"{r['peak']:,} | {'yes' if r['valid'] else 'NO'} | {r['replay']} | {r['wall']:.1f} |")
            if args.least:
                least = _least(p, max(caps))
                print(f"| {p.stem} | least that plans: {least:,} B | | | | | | | |" if least else
                      f"| {p.stem} | nothing plans at {max(caps):,} | | | | | | | |")
        print(f"\nload average at end {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
