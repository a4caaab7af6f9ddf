"""Start-up time of the ``stowage`` command (issue 16, item 6): wall time of

* ``stowage --help`` (target: under 0.3 s on an idle 2-core machine), and
* ``stowage compile models/tiny_cnn.onnx -o OUT`` (target: under 1.5 s),

each run as a fresh process ``REPEATS`` times; prints the median and the minimum, the machine,
its load average before and after, and with ``--imports`` the heaviest imports of the compile
run (``python -X importtime``), which is where start-up time goes.

    python benchmarks/startup.py [--repeats 7] [--imports]

The command is run as ``python -m stowage`` with this interpreter, so the numbers are those of
the checkout the interpreter imports (an editable install or ``pip install .``).  A loaded
machine makes every number larger: quote the load average with them (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "models" / "tiny_cnn.onnx"
TARGETS = {"--help": 0.3, "compile": 1.5}


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _time(cmd: list[str], repeats: int) -> tuple[list[float], list[float]]:
    """Wall seconds and CPU seconds (user + system of the child) of each run.  Start-up is
    single-threaded imports, so on a loaded machine the CPU time is close to what the wall
    time would be on an idle one; both are reported."""
    import resource

    wall, cpu = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return wall, cpu


def _heaviest_imports(cmd: list[str], n: int = 12) -> list[tuple[float, str]]:
    """(cumulative seconds, module) of the top-level imports that cost the most."""
    done = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], cwd=ROOT, capture_output=True, text=True)
    rows: list[tuple[float, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:"):].split("|", 2)
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # the column header
        name = parts[2].rstrip()
        if len(name) - len(name.lstrip()) == 1:  # top level: one space, no nesting indent
            rows.append((int(parts[1]) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--imports", action="store_true", help="also list the heaviest imports of compile")
    args = ap.parse_args()
    py = sys.executable
    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "--help": [py, "-m", "stowage", "--help"],
            "compile": [py, "-m", "stowage", "-q", "compile", str(TINY), "-o", str(Path(tmp) / "out")],
        }
        _time(cases["compile"], 1)  # warm the file cache (and __pycache__) once
        results = {name: _time(cmd, args.repeats) for name, cmd in cases.items()}
        heavy = _heaviest_imports(cases["compile"]) if args.imports else []
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {_machine()}")
    print(f"load average (1/5/15 min) before: {load_before}; after: {_load()}")
    print(f"{'command':<10} {'wall median':>12} {'wall min':>9} {'CPU median':>11} {'target':>7}  runs")
    for name, (wall, cpu) in results.items():
        med = statistics.median(wall)
        print(f"{name:<10} {med:>11.3f}s {min(wall):>8.3f}s {statistics.median(cpu):>10.3f}s "
              f"{TARGETS[name]:>6.1f}s  {args.repeats}  {'ok' if med < TARGETS[name] else 'OVER (wall)'}")
    if heavy:
        print("heaviest top-level imports of compile (cumulative):")
        for sec, name in heavy:
            print(f"  {sec:6.3f}s  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
