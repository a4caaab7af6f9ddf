"""Arm Vela and Stowage side by side on the same int8 ``.tflite`` files (issues 12 and 13).

For each ``models/tflite/*.tflite`` this runs Vela (``ethos-u-vela`` 5.2) with ``--optimise
Performance`` and ``--optimise Size`` on two systems:

- ``ethos-u55-256`` with ``--system-config Ethos_U55_High_End_Embedded --memory-mode
  Shared_Sram`` (feature maps in SRAM, weights in off-chip flash);
- ``ethos-u65-256`` with ``--system-config Ethos_U65_High_End --memory-mode
  Dedicated_Sram_256KB`` (a 256 KiB NPU SRAM, the arena and weights in DRAM);

and reads SRAM used, off-chip feature-map and weight traffic and the estimated inference time
from Vela's summary CSV (``<model>_summary_<system config>.csv``).  Beside each Vela run it
plans the same file with Stowage (``stowage.compile``, ``--tiling auto``, activations only:
weights stay in their home level) on the matching preset at Vela's SRAM figure, and at the
preset's own 256 KiB: non-compulsory and compulsory bytes, SRAM peak, validity (the one
validator, run again), the ``.tflite`` replay against LiteRT (``stowage.simulate_tflite``),
the estimated time when the target has a compute description, and the planning wall time.

    python benchmarks/vela_compare.py --vela /tmp/tfvenv/bin/vela
    python benchmarks/vela_compare.py --models mobilenet_v2_int8 --no-replay
    python benchmarks/vela_compare.py --vela /tmp/tfvenv/bin/vela --objective latency --solver heuristic

With ``--objective latency`` (issue 15) Stowage plans for the estimated makespan
(``docs/timing.md``; ``auto`` plans for traffic only, so ``--solver`` defaults to ``heuristic``
then) and each row adds the latency bound and whether Stowage's estimate is at most Vela's.

Without Vela (``--vela`` not found) the Vela columns are skipped with a message and only the
256 KiB Stowage rows are made.  Vela runs in a child process in a temporary directory; its
own warnings go to that directory's log, not to this script's output.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import functools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (Stowage preset, Vela accelerator config, system config, memory mode)
SYSTEMS = (
    ("ethos-u55-256", "ethos-u55-256", "Ethos_U55_High_End_Embedded", "Shared_Sram"),
    ("ethos-u65-256", "ethos-u65-256", "Ethos_U65_High_End", "Dedicated_Sram_256KB"),
)
OPTIMISE = ("Performance", "Size")
KIB = 1024


@dataclass(frozen=True)
class VelaRun:
    """One Vela compile, from its summary CSV (bytes, seconds)."""

    sram_bytes: int
    fm_read: int            # feature maps read from DRAM and off-chip flash
    fm_write: int
    weights_read: int       # weights read from DRAM and off-chip flash
    seconds: float
    cycles: int
    cpu_ops: int | None


def find_vela(path: str | None) -> str | None:
    if path:
        p = Path(path)
        return str(p) if p.is_file() and os.access(p, os.X_OK) else shutil.which(path)
    return shutil.which("vela")


def run_vela(vela: str, model: Path, accel: str, system: str, mode: str, optimise: str,
             work: Path) -> VelaRun | str:
    """Vela on ``model``; its summary, or why there is none."""
    out = work / f"{model.stem}-{accel}-{optimise}"
    out.mkdir(parents=True, exist_ok=True)
    cmd = [vela, str(model), "--config", "Arm/vela.ini", "--accelerator-config", accel, "--system-config", system,
           "--memory-mode", mode, "--optimise", optimise, "--output-dir", str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"vela did not run: {exc}"
    (out / "vela.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return f"vela exit {proc.returncode}: {tail[0][:120]}"
    found = sorted(out.glob(f"{model.stem}_summary_*.csv"))
    if not found:
        return "vela wrote no summary CSV"
    with found[0].open(newline="") as f:
        row = next(csv.DictReader(f))

    def n(key: str) -> int:
        return int(float(row.get(key) or 0))

    cpu = None
    for line in proc.stdout.splitlines():
        if line.startswith("CPU operators"):
            cpu = int(line.split("=")[1].split()[0])
    return VelaRun(
        # Vela reports KiB with two decimals (its own rounding of bytes).
        sram_bytes=round(float(row["sram_memory_used"]) * KIB),
        fm_read=n("dram_feature_map_read_bytes") + n("off_chip_flash_feature_map_read_bytes"),
        fm_write=n("dram_feature_map_write_bytes") + n("off_chip_flash_feature_map_write_bytes"),
        weights_read=n("dram_weight_read_bytes") + n("off_chip_flash_weight_read_bytes"),
        seconds=float(row["inference_time"]), cycles=n("cycles_total"), cpu_ops=cpu)


@dataclass(frozen=True)
class StowageRun:
    capacity: int
    cascades: int
    noncompulsory: int
    compulsory: int
    sram_peak: int
    valid: bool
    replay: str            # "bit-exact", "MISMATCH", "-" (not run)
    seconds: float | None  # estimated
    wall: float
    bound: float | None = None   # solver.latency_bound (latency objective), else the timeline's bound


@functools.lru_cache(maxsize=4)
def _graph(model: Path) -> Any:
    from stowage.ir.onnx_import import load_graph

    return load_graph(model)


def plan_stowage(model: Path, target: str, capacity: int, time_limit: float,
                 reference: dict[str, Any] | None, solver: str = "auto", objective: str = "traffic"
                 ) -> StowageRun | str:
    from stowage.api import compile as compile_plan
    from stowage.errors import StowageError
    from stowage.plan.validate import validate
    from stowage.simulate_tflite import Replay

    t0 = time.perf_counter()
    try:
        plan = compile_plan(model, target=target, capacity=capacity, tiling="auto", time_limit=time_limit,
                            solver=solver, objective=objective)
    except StowageError as exc:
        return f"refused: {str(exc)[:100]}"
    wall = time.perf_counter() - t0
    graph = _graph(model)
    ok = validate(graph, plan).ok
    replay = "-"
    if reference is not None:
        replay = "bit-exact" if Replay(graph, plan, reference).run().ok else "MISMATCH"
    m = plan.metrics
    bound = plan.solver.latency_bound
    if bound is None:
        from stowage.solvers.timing import latency_bound
        from stowage.targets.hierarchy import load_target

        bound = latency_bound(graph, plan, load_target(target).with_capacity(capacity))
    return StowageRun(capacity, len(plan.cascades), m.noncompulsory_bytes, m.compulsory_bytes,
                      int(m.peak_bytes.get(plan.target.compute_level, 0)), ok, replay,
                      getattr(m, "estimated_seconds", None), wall, bound)


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vela", metavar="PATH", default=None, help="the vela executable (default: vela on PATH)")
    ap.add_argument("--models", nargs="*", metavar="STEM",
                    help="model file stems under models/tflite (default: every .tflite there)")
    ap.add_argument("--time-limit", type=float, default=20.0, help="Stowage solver time limit per plan (s)")
    ap.add_argument("--no-replay", action="store_true", help="skip the LiteRT replay of each Stowage plan")
    ap.add_argument("--objective", choices=("traffic", "latency"), default="traffic",
                    help="Stowage's objective (latency: docs/timing.md)")
    ap.add_argument("--solver", default=None,
                    help="Stowage's solver (default: auto for traffic, heuristic for latency)")
    args = ap.parse_args()
    solver = args.solver or ("heuristic" if args.objective == "latency" else "auto")

    models = sorted((ROOT / "models" / "tflite").glob("*.tflite"))
    if args.models:
        models = [m for m in models if m.stem in set(args.models)]
    vela = find_vela(args.vela)
    start = time.perf_counter()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"date {now}; machine: {platform.machine()} {os.cpu_count()} cores, load average "
          f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} at start")
    if vela is None:
        print(f"Vela not found ({args.vela or 'vela on PATH'}): Vela columns skipped, Stowage at 256 KiB only")
    else:
        ver = subprocess.run([vela, "--version"], capture_output=True, text=True, check=False).stdout.strip()
        print(f"vela {ver} ({vela})")
    print(f"stowage: solver {solver}, objective {args.objective}, time limit {args.time_limit:g} s")
    print()
    print("| model | target | Vela --optimise | Vela SRAM used | Vela off-chip fm read / write B | Vela weights "
          "read B | Vela ms | Stowage capacity | cascades | non-compulsory B | compulsory B | SRAM peak | valid | "
          "replay | Stowage ms | bound ms | Stowage <= Vela | plan s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|---:|")
    with tempfile.TemporaryDirectory(prefix="vela_compare_") as tmp:
        for model in models:
            reference = None
            if not args.no_replay:
                from stowage.simulate_tflite import reference_run

                reference = reference_run(model)
            for target, accel, system, mode in SYSTEMS:
                rows: list[tuple[str, VelaRun | str | None, int]] = []
                if vela is not None:
                    for opt in OPTIMISE:
                        run = run_vela(vela, model, accel, system, mode, opt, Path(tmp))
                        rows.append((opt, run, run.sram_bytes if isinstance(run, VelaRun) else 256 * KIB))
                rows.append(("-", None, 256 * KIB))
                for opt, v, cap in rows:
                    if isinstance(v, VelaRun):
                        vcols = (f"{v.sram_bytes / KIB:,.2f} KiB | {v.fm_read:,} / {v.fm_write:,} | "
                                 f"{v.weights_read:,} | {v.seconds * 1e3:.2f}")
                    elif isinstance(v, str):
                        vcols = f"{v} | | |"
                    else:
                        vcols = "- | - | - | -"
                    s = plan_stowage(model, target, cap, args.time_limit, reference, solver, args.objective)
                    if isinstance(s, str):
                        scols = f"{cap:,} | {s} | | | | | | | | | |"
                    else:
                        verdict = "-" if not isinstance(v, VelaRun) or s.seconds is None else (
                            "yes" if s.seconds <= v.seconds else "no")
                        scols = (f"{cap:,} | {s.cascades} | {s.noncompulsory:,} | {s.compulsory:,} | "
                                 f"{s.sram_peak:,} | {'yes' if s.valid else 'NO'} | {s.replay} | {_ms(s.seconds)} | "
                                 f"{_ms(s.bound)} | {verdict} | {s.wall:.1f}")
                    print(f"| {model.stem} | {target} | {opt} | {vcols} | {scols} |", flush=True)
    print(f"\nload average at end {' / '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          f"{time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
