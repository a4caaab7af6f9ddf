"""Robustness campaign (issue 17, "Done when"): hostile inputs, faults and interruptions
across the CLI, with a table per category.

    python benchmarks/robustness.py [--quick] [--jobs 2] [--out benchmarks/results/robustness.md]

Hostile inputs (at least 1,000 distinct ones by default): mutated ONNX models (truncations,
byte flips, wrong dims and dtypes, dangling and duplicate names, cycles), mutated plan files
(also version 2 tiled plans with cascades), hostile target TOML (numbers that overflow,
deep nesting, ``extends`` of ``/dev/zero`` or a FIFO), hostile MiniMalloc CSVs (also 100,000
rows), hostile flag values and output paths; each is fed to the commands that read it
(``inspect``, ``compile``, ``validate``, ``simulate``, ``emit``, ``alloc``, ``sweep``,
``compare``, ``targets``).  Each command runs in a forked child of a process that has
imported stowage already (so a case costs milliseconds, not an interpreter start), with
stdout and stderr captured, an address-space limit (``--mem-limit``, default 4 GiB) and a
wall-clock limit (``--timeout``).

Faults and interruptions (at least 50) run real ``python -m stowage`` processes: a full disk
(small tmpfs mounts filled to several levels: compile, emit, compare, sweep, alloc, then a
resume after space is freed), a read-only mount, two sweeps started together into one
folder, SIGKILL / SIGTERM / SIGINT of a sweep's parent (then: no worker left running, and a
resume ends with every cell exactly once), SIGINT during a CP-SAT compile (a one-line
"interrupted", exit 130, the previous output set intact), SIGKILL during a compile (the
visible set is never a mix once the next run has recovered it).  Mounting needs root.

Columns: tried / clean errors (exit 1 or 2 with at most one ``stowage: error:`` line and no
traceback; an interrupt's exit 130 with "interrupted") / successes (exit 0) / crashes (a
traceback, an exception out of ``main``, a signal death, a multi-line error, any other exit
code) / hangs (past the time limit) / memory blow-ups (``MemoryError`` or peak RSS above
``--rss-limit``) / partial outputs (a temporary file left behind, new files after a failed
run, an incomplete or mixed output set, a torn CSV row) / lost or duplicated cells (a sweep
cell missing or present twice after the resume).  The target is 0 in every failure column.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY_INT8 = ROOT / "models" / "int8" / "tiny_cnn_int8_qop.onnx"
TINY_FLOAT = ROOT / "models" / "tiny_cnn.onnx"
PYTHON = sys.executable
COLUMNS = ["tried", "clean errors", "successes", "crashes", "hangs", "memory blow-ups",
           "partial outputs", "lost/dup cells"]
FAILURES = COLUMNS[3:]


# ---------------------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Outcome:
    code: int | None            # exit code; None: hung (killed)
    out: str
    err: str
    seconds: float
    max_rss_kb: int = 0
    signal: int | None = None


@dataclasses.dataclass
class Row:
    category: str
    name: str
    verdict: str                # one of COLUMNS[1:]
    detail: str = ""


class Ledger:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, category: str, name: str, verdict: str, detail: str = "") -> None:
        assert verdict in COLUMNS[1:], verdict
        self.rows.append(Row(category, name, verdict, detail))

    def table(self) -> str:
        cats: dict[str, Counter] = defaultdict(Counter)
        for r in self.rows:
            cats[r.category][r.verdict] += 1
            cats[r.category]["tried"] += 1
        lines = ["| category | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
        total: Counter = Counter()
        for cat, c in cats.items():
            total.update(c)
            lines.append(f"| {cat} | " + " | ".join(str(c[k]) for k in COLUMNS) + " |")
        lines.append("| **total** | " + " | ".join(f"**{total[k]}**" for k in COLUMNS) + " |")
        return "\n".join(lines)

    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.verdict in FAILURES]


def classify(o: Outcome, rss_limit_kb: int, interrupt: bool = False) -> tuple[str, str]:
    """The verdict of one command run (before output checks)."""
    if o.code is None:
        return "hangs", f"killed after {o.seconds:.0f} s"
    if "MemoryError" in o.err or o.code == 98 or (o.max_rss_kb and o.max_rss_kb > rss_limit_kb):
        return "memory blow-ups", f"peak RSS {o.max_rss_kb / 1024:.0f} MiB; {o.err.strip()[-160:]}"
    if o.signal is not None:
        return "crashes", f"killed by signal {o.signal}"
    if "Traceback" in o.err or o.code == 99:
        return "crashes", _last_line(o.err)
    errors = [ln for ln in o.err.splitlines() if ln.startswith("stowage: error:")]
    if o.code == 0:
        return "successes", ""
    if interrupt and o.code == 130:
        if "stowage: interrupted" in o.err:
            return "clean errors", "interrupted"
        return "crashes", "exit 130 without 'stowage: interrupted'"
    if o.code in (1, 2) and len(errors) <= 1:
        if o.code == 2 and not errors:
            return "crashes", f"exit 2 without an error line: {_last_line(o.err)}"
        return "clean errors", errors[0][15:120] if errors else _last_line(o.out)
    return "crashes", f"exit {o.code}: {_last_line(o.err)}"


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


# ---------------------------------------------------------------------------------------
# Forked runner: main(argv) in a child of an already-warm process
# ---------------------------------------------------------------------------------------
class ForkRunner:
    def __init__(self, jobs: int, timeout: float, mem_limit: int, tmp: Path) -> None:
        self.jobs, self.timeout, self.mem_limit, self.tmp = jobs, timeout, mem_limit, tmp
        self.seq = 0

    def _child(self, argv: list[str], out_path: Path, err_path: Path, cwd: Path | None) -> None:
        code = 99
        try:
            os.setpgid(0, 0)
            resource.setrlimit(resource.RLIMIT_AS, (self.mem_limit, self.mem_limit))
            fo = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            fe = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fo, 1)
            os.dup2(fe, 2)
            sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), write_through=True)
            sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), write_through=True)
            if cwd is not None:
                os.chdir(cwd)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            from stowage.cli import main

            try:
                code = int(main(argv) or 0)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 2
        except MemoryError:
            with contextlib.suppress(Exception):
                os.write(2, b"\nMemoryError\n")
            code = 98
        except BaseException:  # noqa: BLE001 - an exception out of main is a crash
            with contextlib.suppress(Exception):
                os.write(2, traceback.format_exc().encode())
            code = 99
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def run_many(self, jobs: list[tuple[list[str], Path | None]]) -> list[Outcome]:
        results: list[Outcome | None] = [None] * len(jobs)
        pending = list(enumerate(jobs))
        running: dict[int, tuple[int, float, Path, Path]] = {}
        while pending or running:
            while pending and len(running) < self.jobs:
                k, (argv, cwd) = pending.pop(0)
                self.seq += 1
                o, e = self.tmp / f"out{self.seq}", self.tmp / f"err{self.seq}"
                pid = os.fork()
                if pid == 0:
                    self._child(argv, o, e, cwd)
                running[pid] = (k, time.monotonic(), o, e)
            time.sleep(0.005)
            for pid, (k, t0, o, e) in list(running.items()):
                done, status, ru = os.wait4(pid, os.WNOHANG)
                elapsed = time.monotonic() - t0
                if done == 0:
                    if elapsed > self.timeout:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(pid, signal.SIGKILL)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                        os.wait4(pid, 0)
                        results[k] = Outcome(None, _read(o), _read(e), elapsed)
                        del running[pid]
                    continue
                sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
                code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
                # Leftover children of the command (a sweep's workers) go with it.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                results[k] = Outcome(code, _read(o), _read(e), elapsed, ru.ru_maxrss, sig)
                del running[pid]
                o.unlink(missing_ok=True)
                e.unlink(missing_ok=True)
        return [r for r in results if r is not None]


def _read(p: Path) -> str:
    try:
        return p.read_text(errors="replace")
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------
# Output checks
# ---------------------------------------------------------------------------------------
def is_temp(name: str) -> bool:
    return name.startswith((".stowage-new-", ".stowage-commit-", ".stowage-probe-")) or ".tmp-" in name


def listing(d: Path) -> dict[str, bytes]:
    """Regular files under ``d`` (relative path -> sha256), hidden ones included."""
    out: dict[str, bytes] = {}
    if not d.is_dir():
        return out
    for p in sorted(d.rglob("*")):
        with contextlib.suppress(OSError):
            if p.is_file():
                out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).digest()
    return out


SHA_RE = re.compile(rb'_PLAN_SHA256\s+"([0-9a-f]{64})"')


def set_problem(d: Path, before: dict[str, bytes], code: int | None, kind: str) -> str:
    """Why the output folder ``d`` is partial after a run (empty string: it is fine)."""
    after = listing(d)
    temps = [n for n in after if any(is_temp(part) for part in Path(n).parts)]
    if temps:
        return f"temporary files left: {temps[:3]}"
    if kind == "sweep":
        return torn_rows(d / "results.csv")
    if code != 0:
        changed = [n for n in after if before.get(n) != after[n] and not n.endswith(".sweep.lock")]
        if changed:
            return f"files changed by a failed run: {changed[:4]}"
        return ""
    if kind == "compile":
        return mixed_set(d)
    return ""


def mixed_set(d: Path) -> str:
    pj, ph = d / "plan.json", d / "plan.h"
    if not pj.is_file() and not ph.is_file():
        return ""
    if not pj.is_file():
        return "plan.h without plan.json"
    if ph.is_file():
        m = SHA_RE.search(ph.read_bytes())
        if m is None:
            return "plan.h without a PLAN_SHA256 macro"
        if m.group(1).decode() != hashlib.sha256(pj.read_bytes()).hexdigest():
            return "plan.h and plan.json are from different runs (PLAN_SHA256 differs)"
    return ""


def torn_rows(path: Path) -> str:
    if not path.is_file():
        return ""
    text = path.read_text(errors="replace")
    if text and not text.endswith("\n"):
        return "results.csv ends in a torn row"
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return ""
    width = len(rows[0])
    bad = [i for i, r in enumerate(rows) if len(r) != width]
    return f"results.csv rows of the wrong width: {bad[:3]}" if bad else ""


def cell_problem(path: Path, expected: set[tuple[str, ...]]) -> str:
    """Lost or duplicated cells in a finished sweep's results.csv."""
    if not path.is_file():
        return "no results.csv"
    rows = list(csv.DictReader(io.StringIO(path.read_text(errors="replace"))))
    keys = Counter((Path(r["model"]).stem, r["target"], r["capacity_spec"], r["solver"]) for r in rows)
    dup = [k for k, n in keys.items() if n > 1]
    lost = [k for k in expected if k not in keys]
    extra = [k for k in keys if k not in expected]
    parts = []
    if dup:
        parts.append(f"{len(dup)} duplicated, e.g. {dup[0]}")
    if lost:
        parts.append(f"{len(lost)} lost, e.g. {lost[0]}")
    if extra:
        parts.append(f"{len(extra)} unexpected, e.g. {extra[0]}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------
# Hostile input generators (seeded)
# ---------------------------------------------------------------------------------------
def base_models(work: Path) -> dict[str, Path]:
    sys.path.insert(0, str(ROOT / "tests"))
    import onnx

    from helpers import chain_model, diamond_model

    out = {}
    for name, m in (("chain", chain_model(3, 16)), ("diamond", diamond_model())):
        p = work / f"{name}.onnx"
        onnx.save(m, p)
        out[name] = p
    out["tiny_int8"] = TINY_INT8
    out["tiny_cnn"] = TINY_FLOAT
    return out


def onnx_mutants(models: dict[str, Path], n: int, rng: random.Random, work: Path) -> list[tuple[str, Path]]:
    import onnx
    from onnx import TensorProto, helper

    dtypes = [TensorProto.UNDEFINED, TensorProto.STRING, TensorProto.COMPLEX64, TensorProto.BOOL,
              TensorProto.INT64, TensorProto.FLOAT16, TensorProto.BFLOAT16, 99]
    dims = [0, -1, -7, 1, 3, 2**31, 2**40, 2**62]
    out = []
    names = sorted(models)
    d = work / "onnx"
    d.mkdir()
    for i in range(n):
        base = models[names[i % len(names)]]
        raw = bytearray(base.read_bytes())
        kind = rng.choice(["truncate", "flip", "insert", "zeros", "struct", "struct", "struct", "struct"])
        if kind == "truncate":
            data = bytes(raw[:rng.randrange(len(raw))])
        elif kind == "flip":
            for _ in range(rng.randint(1, 8)):
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            data = bytes(raw)
        elif kind == "insert":
            k = rng.randrange(len(raw) + 1)
            data = bytes(raw[:k]) + rng.randbytes(rng.randint(1, 16)) + bytes(raw[k:])
        elif kind == "zeros":
            k = rng.randrange(len(raw))
            raw[k:k + 64] = bytes(len(raw[k:k + 64]))
            data = bytes(raw)
        else:
            m = onnx.ModelProto()
            m.ParseFromString(bytes(raw))
            g = m.graph
            how = []
            for _ in range(rng.randint(1, 3)):
                what = rng.choice(["dim", "sym", "dtype", "init_dtype", "init_dims", "dangling_in",
                                   "dangling_out", "dup_name", "dup_output", "cycle", "drop_init",
                                   "op_type", "domain", "opset", "attr", "drop_node", "ext_data"])
                how.append(what)
                vis = [v for v in (*g.input, *g.output, *g.value_info) if v.type.HasField("tensor_type")]
                node = rng.choice(g.node) if g.node else None
                if what in ("dim", "sym") and vis:
                    dd = rng.choice(vis).type.tensor_type.shape.dim
                    if dd:
                        x = rng.choice(dd)
                        if what == "dim":
                            x.dim_value = rng.choice(dims)
                        else:
                            x.dim_param = rng.choice(["N", "", "batch size", "1e400"])
                elif what == "dtype" and vis:
                    rng.choice(vis).type.tensor_type.elem_type = rng.choice(dtypes)
                elif what in ("init_dtype", "init_dims") and g.initializer:
                    t = rng.choice(g.initializer)
                    if what == "init_dtype":
                        t.data_type = rng.choice(dtypes)
                    elif t.dims:
                        t.dims[rng.randrange(len(t.dims))] = rng.choice(dims)
                elif what == "dangling_in" and node is not None and node.input:
                    node.input[rng.randrange(len(node.input))] = "nowhere"
                elif what == "dangling_out" and g.output:
                    g.output[0].name = "never_made"
                elif what == "dup_name" and len(g.node) > 1:
                    g.node[0].name = g.node[-1].name
                elif what == "dup_output" and len(g.node) > 1:
                    g.node[1].output[0] = g.node[0].output[0]
                elif what == "cycle" and len(g.node) > 1 and g.node[0].input:
                    g.node[0].input[0] = g.node[-1].output[0]
                elif what == "drop_init" and g.initializer:
                    del g.initializer[rng.randrange(len(g.initializer))]
                elif what == "op_type" and node is not None:
                    node.op_type = rng.choice(["NoSuchOp", "", "Conv", "Loop", "If"])
                elif what == "domain" and node is not None:
                    node.domain = rng.choice(["com.example", "ai.onnx.ml", "com.microsoft"])
                elif what == "opset" and m.opset_import:
                    m.opset_import[0].version = rng.choice([0, 1, 7, 10_000, -3])
                elif what == "attr" and node is not None:
                    node.attribute.append(helper.make_attribute(
                        rng.choice(["pads", "strides", "axis", "kernel_shape", "group"]),
                        rng.choice([[-1, -1, -1, -1], [0], 2**40, -5, [2**62, 1]])))
                elif what == "drop_node" and len(g.node) > 1:
                    del g.node[rng.randrange(len(g.node))]
                elif what == "ext_data" and g.initializer:
                    t = rng.choice(g.initializer)
                    t.data_location = TensorProto.EXTERNAL
                    del t.external_data[:]
                    e = t.external_data.add()
                    e.key, e.value = "location", rng.choice(["../../etc/passwd", "/etc/passwd", "missing.bin",
                                                             "a" * 300, "/dev/zero"])
            kind = "struct:" + "+".join(how)
            data = m.SerializeToString()
        p = d / f"m{i:04d}.onnx"
        p.write_bytes(data)
        out.append((f"{base.stem}/{kind}", p))
    return out


HOSTILE_JSON = [None, -1, 0, 1, 2**63, -(2**63), 10**400, 1.5, "NaN", "Infinity", "", "sram", "x" * 300,
                True, [], {}, [[[[[]]]]], {"a": {"b": {}}}, "<script>alert(1)</script>", "a\nb"]


def plan_mutants(bases: dict[str, str], n: int, rng: random.Random, work: Path) -> list[tuple[str, str, Path]]:
    d = work / "plans"
    d.mkdir()
    out = []
    names = sorted(bases)
    for i in range(n):
        name = names[i % len(names)]
        text = bases[name]
        kind = rng.choice(["value"] * 5 + ["delete", "add_key", "dup_item", "truncate", "flip", "deep"])
        if kind == "truncate":
            t = text[:rng.randrange(len(text))]
        elif kind == "flip":
            b = bytearray(text.encode())
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            t = b.decode("utf-8", errors="replace")
        elif kind == "deep":
            t = text[:-2] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
        else:
            doc = json.loads(text)
            paths = _json_paths(doc)
            path = rng.choice(paths[1:])
            parent = doc
            for k in path[:-1]:
                parent = parent[k]
            last = path[-1]
            if kind == "value":
                old = parent[last]
                choices = HOSTILE_JSON + ([old + 1, old - 1, -old, old * 1000] if type(old) is int else [])
                v = rng.choice(choices)
                parent[last] = float(v) if v in ("NaN", "Infinity") else v
            elif kind == "delete":
                del parent[last]
            elif kind == "add_key" and isinstance(parent[last], dict):
                parent[last]["unexpected"] = rng.choice(HOSTILE_JSON)
            elif kind == "dup_item" and isinstance(parent[last], list) and parent[last]:
                parent[last].append(parent[last][0])
            kind += ":" + ".".join(map(str, path))
            t = json.dumps(doc)
        p = d / f"p{i:04d}.json"
        p.write_text(t, errors="replace")
        out.append((name, kind[:60], p))
    return out


def _json_paths(node, prefix=()):
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _json_paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:5]):
            out += _json_paths(v, prefix + (i,))
    return out


TOML_NUMBERS = ["1e400", "inf", "nan", "-inf", "-1", "0", '"' + "9" * 5000 + '"', "9" * 5000, str(2**63), str(2**48),
                '"256QiB"', '"1e400KiB"', "true", "[]", "{}", '"-5KiB"', "1.5", '"0x10"', '""', "2.5e-300"]


def target_mutants(n: int, rng: random.Random, work: Path) -> list[tuple[str, Path]]:
    base = (ROOT / "targets" / "presets" / "ethos-u55-256.toml").read_text()
    d = work / "targets"
    d.mkdir()
    fifo = d / "fifo.toml"
    with contextlib.suppress(OSError):
        os.mkfifo(fifo)
    specials: list[tuple[str, str]] = [
        ("extends /dev/zero", 'extends = "/dev/zero"\n' + base),
        ("extends /dev/urandom", 'extends = "/dev/urandom"\n' + base),
        ("extends a FIFO", f'extends = "{fifo}"\n' + base),
        ("extends a folder", f'extends = "{d}"\n' + base),
        ("extends itself", 'extends = "SELF"\n' + base),
        ("extends missing", 'extends = "missing.toml"\n' + base),
        ("extends a preset", 'extends = "ethos-u55-256"\nname = "x"\n'),
        ("deep arrays", "name = 'x'\nz = " + "[" * 5000 + "]" * 5000 + "\n" + base),
        ("deep tables", "name = 'x'\nz = " + "{a = " * 2000 + "1" + "}" * 2000 + "\n" + base),
        ("empty", ""),
        ("NULs", "\0" * 100),
        ("BOM", "\ufeff" + base),
        ("binary", rng.randbytes(300).decode("latin-1")),
        ("one level", ('name = "one"\ncompute_level = "sram"\n[homes]\nweights = "sram"\ninputs = "sram"\n'
                       'outputs = "sram"\n[[levels]]\nname = "sram"\ncapacity = "256KiB"\nalignment = 16\n')),
        ("no levels", 'name = "x"\ncompute_level = "sram"\nlevels = []\n'),
        ("dup levels", base + '\n[[levels]]\nname = "sram"\ncapacity = "1KiB"\nalignment = 16\n'),
        ("100 levels", 'name = "many"\ncompute_level = "l0"\n[homes]\nweights = "l99"\ninputs = "l99"\n'
                       'outputs = "l99"\n' + "".join(f'[[levels]]\nname = "l{i}"\nalignment = 16\n'
                                                     + ('capacity = "1MiB"\n' if i < 99 else "") for i in range(100))),
        ("script name", base.replace('name = "ethos-u55-256"', 'name = "<script>alert(1)</script>"')),
        ("newline name", base.replace('name = "ethos-u55-256"', 'name = "a\\nb\\r\\u0000"')),
        ("long name", base.replace('name = "ethos-u55-256"', f'name = "{"n" * 5000}"')),
        ("unknown compute", base.replace('compute_level = "sram"', 'compute_level = "l2"')),
        ("unknown home", base.replace('weights = "dram"', 'weights = "flash"')),
        ("big file", base + "#" + "x" * (20 * 2**20) + "\n"),
    ]
    fields = ["capacity", "alignment", "read_bandwidth", "write_bandwidth", "latency_cycles", "burst_bytes",
              "clock_hz", "macs_per_cycle", "dma_channels", "conv"]
    out = []
    for i in range(n):
        if i < len(specials):
            name, text = specials[i]
        else:
            lines = base.splitlines()
            idx = [k for k, ln in enumerate(lines) if any(ln.startswith(f + " =") for f in fields)]
            kind = rng.choice(["number", "number", "number", "delete", "truncate", "garbage"])
            if kind == "number" and idx:
                k = rng.choice(idx)
                key = lines[k].split("=")[0].strip()
                v = rng.choice(TOML_NUMBERS)
                lines[k] = f"{key} = {v}"
                name = f"{key} = {v[:20]}"
            elif kind == "delete" and idx:
                k = rng.choice(idx + [0, 4])
                name = f"deleted '{lines[k][:30]}'"
                del lines[k]
            elif kind == "truncate":
                cut = rng.randrange(len(base))
                lines = base[:cut].splitlines()
                name = f"truncated at {cut}"
            else:
                k = rng.randrange(len(lines))
                lines.insert(k, rng.choice(["[[levels", "= 3", "x = ", "[homes]", "name = 1", "capacity = 'M_R'"]))
                name = f"garbage line {k}"
            text = "\n".join(lines) + "\n"
        p = d / f"t{i:04d}.toml"
        p.write_text(text.replace("SELF", str(p)), errors="replace")
        out.append((name, p))
    return out


def csv_mutants(n: int, rng: random.Random, work: Path) -> list[tuple[str, Path]]:
    d = work / "csv"
    d.mkdir()
    good = "id,lower,upper,size\nb1,0,3,4\nb2,3,9,4\nb3,0,9,4\nb4,9,21,4\n"
    bad_values = ["-1", "nan", "inf", "1e400", "9" * 5000, str(2**63), str(2**48), "", "x", "1.5", "0x10",
                  " 3 ", "+4", "٣"]
    specials = [
        ("empty", ""), ("header only", "id,lower,upper,size\n"), ("no header", "b1,0,3,4\n"),
        ("binary", rng.randbytes(200).decode("latin-1")), ("NULs", "\0" * 64),
        ("CRLF", good.replace("\n", "\r\n")), ("BOM", "\ufeff" + good),
        ("lower > upper", "id,lower,upper,size\nb1,5,3,4\n"), ("lower == upper", "id,lower,upper,size\nb1,3,3,4\n"),
        ("dup ids", good + "b1,0,3,4\n"), ("missing column", "id,lower,upper\nb1,0,3\n"),
        ("extra column", "id,lower,upper,size,x\nb1,0,3,4,5\n"), ("too big", "id,lower,upper,size\nb1,0,3,999999999\n"),
        ("100k rows", "id,lower,upper,size\n" + "".join(f"b{i},{i % 997},{i % 997 + 3},{16 + i % 5}\n"
                                                         for i in range(100_000))),
        ("10k rows", "id,lower,upper,size\n" + "".join(f"b{i},{i},{i + 2},16\n" for i in range(10_000))),
        ("quoted newline", 'id,lower,upper,size\n"b\n1",0,3,4\n'),
        ("script id", "id,lower,upper,size\n<script>,0,3,4\n"),
        ("long line", "id,lower,upper,size\n" + "b" * (2 * 2**20) + ",0,3,4\n"),
    ]
    out = []
    for i in range(n):
        if i < len(specials):
            name, text = specials[i]
        else:
            rows = [ln.split(",") for ln in good.splitlines()]
            r, c = rng.randrange(1, len(rows)), rng.randrange(1, 4)
            v = rng.choice(bad_values)
            rows[r][c] = v
            name = f"row {r} col {rows[0][c]} = {v[:20]}"
            text = "\n".join(",".join(x) for x in rows) + "\n"
        p = d / f"c{i:04d}.csv"
        p.write_text(text, errors="replace")
        out.append((name, p))
    return out


HOSTILE_NUMBERS = ["1e400", "inf", "nan", "-inf", "-1", "0", "9" * 5000, str(2**63), str(2**64), "1e-300",
                   "", " ", "x", "0x10", "1_000", "١٢٣"]


def flag_cases(models: dict[str, Path], work: Path) -> list[tuple[str, list[str], Path | None, str]]:
    """(name, argv, output folder to check or None, output kind)."""
    chain = str(models["chain"])
    out: list[tuple[str, list[str], Path | None, str]] = []
    k = 0

    def o() -> Path:
        nonlocal k
        k += 1
        return work / "flags" / f"o{k}"

    for v in HOSTILE_NUMBERS + ["M_X", "M_R..M_P:3", "256QiB", "1e3", "-5KiB", "1e400KiB", "M_R*2"]:
        d = o()
        out.append((f"compile --capacity {v[:16]!r}", ["compile", "-q", chain, "--solver", "naive",
                                                        "--capacity", v, "-o", str(d)], d, "compile"))
    for flag in ("--time-limit", "--seed", "--workers", "--element-bytes"):
        for v in HOSTILE_NUMBERS[:10]:
            d = o()
            out.append((f"compile {flag} {v[:16]!r}", ["compile", "-q", chain, "--solver", "naive", flag, v,
                                                        "-o", str(d)], d, "compile"))
    for v in ["x", "=1", "batch=-1", "batch=1e400", "batch=" + "9" * 40, "batch=0", "a=1=2"]:
        out.append((f"inspect --dim {v[:16]!r}", ["inspect", "-q", chain, "--dim", v], None, ""))
    for v in ["nope=1", "time_limit=nan", "=", "x", "seed=" + "9" * 5000, "p=" + "[" * 5000]:
        d = o()
        out.append((f"compile --param {v[:16]!r}", ["compile", "-q", chain, "--param", v, "-o", str(d)], d, "compile"))
    for v in ["1abc", "a b", "<script>", "", "p" * 5000, "int", "__x"]:
        d = o()
        out.append((f"compile --c-prefix {v[:16]!r}", ["compile", "-q", chain, "--solver", "naive", "--c-prefix", v,
                                                        "-o", str(d)], d, "compile"))
    for v in ["nope", "", "header,header", "json,all"]:
        d = o()
        out.append((f"compile --emit {v!r}", ["compile", "-q", chain, "--solver", "naive", "--emit", v,
                                               "-o", str(d)], d, "compile"))
    for v in ["nope", "", "naive,naive", "exact"]:
        d = o()
        out.append((f"compile --solver {v!r}", ["compile", "-q", chain, "--solver", v, "--time-limit", "2",
                                                 "-o", str(d)], d, "compile"))
    for v in ["M_R..M_P:100000000", "M_R..M_P:0", "M_R..M_P:-1", "M_R..M_P:nan", "1e400", "M_P..M_R:3",
              "M_R,M_R", "", "9" * 5000, "M_R..M_P:3,M_R..M_P:100000"]:
        d = o()
        out.append((f"sweep --capacity {v[:20]!r}", ["sweep", "-q", chain, "--solvers", "naive", "--executor",
                                                      "serial", "--capacity", v, "-o", str(d)], d, "sweep"))
    for v in ["nope", "", "/dev/zero", str(work / "targets")]:
        d = o()
        out.append((f"sweep --target {v[:20]!r}", ["sweep", "-q", chain, "--solvers", "naive", "--executor", "serial",
                                                    "--capacity", "M_R", "--target", v, "-o", str(d)], d, "sweep"))
    for v in ["1e400", "nan", "M_X", "", "M_R..M_P:100000000"]:
        d = o()
        out.append((f"compare --capacity {v[:16]!r}", ["compare", "-q", chain, "--solvers", "naive",
                                                        "--capacity", v, "-o", str(d)], d, "report"))
    for v in ["nope", "", "naive,nope"]:
        d = o()
        out.append((f"compare --solvers {v!r}", ["compare", "-q", chain, "--solvers", v, "-o", str(d)], d, "report"))
    for v in ["nope", "../../etc/passwd", "/dev/zero", "/etc/passwd", "", "a" * 5000]:
        out.append((f"targets {v[:20]!r}", ["targets", v], None, ""))
    for v in HOSTILE_NUMBERS[:10]:
        out.append((f"alloc --capacity {v[:16]!r}", ["alloc", "-q", "--capacity", v, "--time-limit", "2",
                                                      str(work / "csv" / "c0020.csv")], None, ""))
    return out


def path_cases(models: dict[str, Path], plan: Path, work: Path) -> list[tuple[str, list[str], Path | None, str]]:
    chain = str(models["chain"])
    d = work / "paths"
    d.mkdir()
    f = d / "a_file"
    f.write_text("not a folder\n")
    (d / "loop").symlink_to(d / "loop")
    clash = d / "clash"
    (clash / "plan.json").mkdir(parents=True)
    targets = [("a regular file", str(f)), ("under a file", str(f / "sub")), ("/dev/null", "/dev/null"),
               ("/dev/full", "/dev/full"), ("name too long", str(d / ("n" * 300))), ("newline name", str(d / "a\nb")),
               ("symlink loop", str(d / "loop")), ("plan.json is a folder", str(clash)), ("/proc", "/proc/robust"),
               ("empty", "")]
    out = []
    for name, t in targets:
        out.append((f"compile -o {name}", ["compile", "-q", chain, "--solver", "naive", "-o", t], None, ""))
        out.append((f"emit -o {name}", ["emit", "-q", str(plan), "-o", t], None, ""))
        out.append((f"compare -o {name}", ["compare", "-q", chain, "--solvers", "naive", "--capacity", "M_P",
                                           "-o", t], None, ""))
        out.append((f"sweep -o {name}", ["sweep", "-q", chain, "--solvers", "naive", "--executor", "serial",
                                         "--capacity", "M_P", "-o", t], None, ""))
        out.append((f"alloc -o {name}", ["alloc", "-q", "--capacity", "64", "--time-limit", "2",
                                         str(work / "csv" / "c0020.csv"), "-o", t], None, ""))
    return out


# ---------------------------------------------------------------------------------------
# The hostile-input phase
# ---------------------------------------------------------------------------------------
def run_cases(runner: ForkRunner, ledger: Ledger, category: str,
              cases: list[tuple[str, list[str], Path | None, str]], rss_limit_kb: int,
              after: Callable[[int, Outcome], None] | None = None) -> list[Outcome]:
    befores = [listing(c[2]) if c[2] is not None else {} for c in cases]
    # In a scratch folder: ``-o ""`` and relative paths must land there, never in the checkout.
    outcomes = runner.run_many([(c[1], runner.tmp / "cwd") for c in cases])
    for k, ((name, argv, outdir, kind), o) in enumerate(zip(cases, outcomes)):
        verdict, detail = classify(o, rss_limit_kb)
        if verdict in ("successes", "clean errors") and outdir is not None:
            why = set_problem(outdir, befores[k], o.code, kind)
            if why:
                verdict, detail = "partial outputs", why
        ledger.add(category, f"{argv[0]} {name}", verdict, detail)
        if after is not None:
            after(k, o)
    return outcomes


def hostile_phase(args, runner: ForkRunner, ledger: Ledger, work: Path) -> tuple[int, list[tuple[str, str]]]:
    from stowage.api import compile as compile_plan
    from stowage.ir.onnx_import import load_graph
    from stowage.plan import plan_to_json, save_plan
    from stowage.solvers.problem import Problem
    from stowage.solvers.registry import solve
    from stowage.targets.hierarchy import load_target

    rng = random.Random(args.seed)
    scale = 0.25 if args.quick else 1.0
    models = base_models(work)
    rss = args.rss_limit * 1024
    inputs = 0

    # ONNX mutants: inspect, compile; simulate what compiled.
    muts = onnx_mutants(models, int(400 * scale), rng, work)
    inputs += len(muts)
    for sub in ("onnx_out", "emit_out", "target_out", "csv_out", "flags"):
        (work / sub).mkdir()
    inspected = run_cases(runner, ledger, "ONNX models", [(n, ["inspect", "-q", str(p)], None, "") for n, p in muts],
                          rss)
    # compile: every mutant inspect accepted, and every fourth of the others (the same import
    # refuses them; this checks that compile refuses them as cleanly and writes nothing).
    comp = [(n, p) for k, ((n, p), o) in enumerate(zip(muts, inspected)) if o.code == 0 or k % 4 == 0]
    cases = [(n, ["compile", "-q", str(p), "--solver", "naive", "-o", str(work / "onnx_out" / p.stem)],
              work / "onnx_out" / p.stem, "compile") for n, p in comp]
    compiled = run_cases(runner, ledger, "ONNX models", cases, rss)
    sims = [(name, ["simulate", "-q", str(p), str(work / "onnx_out" / p.stem / "plan.json")], None, "")
            for (name, p), o in zip(comp, compiled) if o.code == 0]
    sim_outcomes = run_cases(runner, ledger, "ONNX models", sims, rss)
    mismatches = [(n, _last_line(o.out)) for (n, *_), o in zip(sims, sim_outcomes) if o.code == 1]
    print(f"  ONNX: {len(muts)} mutants, {len(sims)} compiled, {len(mismatches)} of those do not simulate",
          flush=True)

    # Plan mutants: validate, simulate, emit.
    g_chain = load_graph(models["chain"])
    from stowage.ir.inplace import fuse_in_place

    bases = {
        "chain": plan_to_json(solve(Problem(fuse_in_place(g_chain), load_target("ethos-u55-256").with_capacity(None),
                                            True), "naive")),
        "diamond": plan_to_json(compile_plan(models["diamond"], capacity="M_R")),
        "tiny_int8_tiled": plan_to_json(compile_plan(TINY_INT8, capacity="10KiB", solver="naive")),
        "tiny_int8_whole": plan_to_json(compile_plan(TINY_INT8, capacity="M_R", tiling="off", solver="naive")),
    }
    model_of = {"chain": models["chain"], "diamond": models["diamond"], "tiny_int8_tiled": TINY_INT8,
                "tiny_int8_whole": TINY_INT8}
    pm = plan_mutants(bases, int(300 * scale), rng, work)
    inputs += len(pm)
    cases = []
    for k, (base, kind, p) in enumerate(pm):
        m = str(model_of[base])
        cases.append((f"{base}/{kind}", ["validate", "-q", m, str(p)], None, ""))
        if k % 2 == 0:
            cases.append((f"{base}/{kind}", ["simulate", "-q", m, str(p)], None, ""))
        if k % 3 == 0:
            d = work / "emit_out" / p.stem
            cases.append((f"{base}/{kind}", ["emit", "-q", str(p), "-o", str(d)], d, "compile"))
    run_cases(runner, ledger, "plan files", cases, rss)

    # Targets.
    tm = target_mutants(int(120 * scale) if not args.quick else 40, rng, work)
    inputs += len(tm)
    cases = []
    for name, p in tm:
        cases.append((name, ["targets", str(p)], None, ""))
        d = work / "target_out" / p.stem
        cases.append((name, ["compile", "-q", str(models["chain"]), "--solver", "naive", "--target", str(p),
                             "-o", str(d)], d, "compile"))
    run_cases(runner, ledger, "target files", cases, rss)

    # CSVs.
    cm = csv_mutants(int(80 * scale) if not args.quick else 30, rng, work)
    inputs += len(cm)
    cases = [(name, ["alloc", "-q", "--capacity", "1MiB", "--time-limit", "5", str(p), "-o",
                     str(work / "csv_out" / f"{p.stem}.csv")], None, "") for name, p in cm]
    run_cases(runner, ledger, "alloc CSVs", cases, rss)

    # Flags and output paths.
    fc = flag_cases(models, work)
    inputs += len(fc)
    run_cases(runner, ledger, "flag values", fc, rss)
    good_plan = work / "good_plan.json"
    save_plan(solve(Problem(fuse_in_place(g_chain), load_target("ethos-u55-256").with_capacity(None), True), "naive"),
              good_plan)
    pc = path_cases(models, good_plan, work)
    inputs += len(pc)
    run_cases(runner, ledger, "output paths", pc, rss)
    return inputs, mismatches


# ---------------------------------------------------------------------------------------
# Faults and interruptions (real processes)
# ---------------------------------------------------------------------------------------
def stowage_cmd(*argv: str) -> list[str]:
    return [PYTHON, "-m", "stowage", *argv]


def run_proc(argv: list[str], timeout: float, env: dict | None = None) -> Outcome:
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True,
                         cwd=tempfile.gettempdir())
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return Outcome(None, out.decode(errors="replace"), err.decode(errors="replace"), time.monotonic() - t0)
    code = p.returncode
    return Outcome(code if code >= 0 else -1, out.decode(errors="replace"), err.decode(errors="replace"),
                   time.monotonic() - t0, signal=-code if code < 0 else None)


def tagged_processes(tag: str) -> list[int]:
    """Live processes (not zombies) whose environment carries ``tag``."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if f"STOWAGE_CAMPAIGN_TAG={tag}".encode() not in (d / "environ").read_bytes():
                continue
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            pids.append(int(d.name))
    return pids


class Mount:
    """A tmpfs of ``size`` bytes at a fresh folder (root only), optionally read-only."""

    def __init__(self, base: Path, name: str, size: int, readonly: bool = False) -> None:
        self.path = base / name
        self.path.mkdir(parents=True)
        opts = f"size={size}" + (",ro" if readonly else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(self.path)], check=True)

    def fill(self, leave: int) -> None:
        """Fill the mount so that about ``leave`` bytes remain free."""
        st = os.statvfs(self.path)
        free = st.f_bavail * st.f_frsize
        filler = self.path / "filler"
        with open(filler, "ab") as f:
            with contextlib.suppress(OSError):
                f.write(b"\0" * max(0, free - leave))

    def free(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)

    def umount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


def fault_phase(args, ledger: Ledger, work: Path, models: dict[str, Path]) -> None:
    chain = str(models["chain"])
    env = dict(os.environ)
    rss = args.rss_limit * 1024
    csv_file = work / "csv" / "c0020.csv"
    plan_file = work / "good_plan.json"
    mounts: list[Mount] = []
    base = work / "mnt"
    try:
        # --- full disk ------------------------------------------------------------------
        levels = [0, 256, 2048, 6144, 12288, 24576, 49152] if not args.quick else [0, 4096]
        for leave in levels:
            m = Mount(base, f"full{leave}", 512 * 1024)
            mounts.append(m)
            prev = m.path / "prev"   # a previous, complete output set to keep intact
            o = run_proc(stowage_cmd("compile", "-q", chain, "--solver", "naive", "-o", str(prev)), 120, env)
            assert o.code == 0, o.err
            m.fill(leave)
            cmds = [
                ("compile (new folder)", stowage_cmd("compile", "-q", chain, "--solver", "naive", "-o",
                                                     str(m.path / "new")), m.path / "new", "compile"),
                ("compile (over a set)", stowage_cmd("compile", "-q", chain, "--solver", "naive", "--seed", "1",
                                                     "--c-prefix", "other", "-o", str(prev)), prev, "compile"),
                ("emit", stowage_cmd("emit", "-q", str(plan_file), "-o", str(m.path / "emit")), m.path / "emit",
                 "compile"),
                ("compare", stowage_cmd("compare", "-q", chain, "--solvers", "naive", "--capacity", "M_P",
                                        "-o", str(m.path / "report")), m.path / "report", "report"),
                ("alloc", stowage_cmd("alloc", "-q", "--capacity", "1MiB", str(csv_file), "-o",
                                      str(m.path / "sol.csv")), None, ""),
            ]
            for name, argv, d, kind in cmds:
                before = listing(d) if d is not None else {}
                o = run_proc(argv, 120, env)
                verdict, detail = classify(o, rss)
                if verdict in ("successes", "clean errors") and d is not None:
                    why = set_problem(d, before, o.code, kind)
                    if why:
                        verdict, detail = "partial outputs", why
                if name == "alloc" and o.code != 0 and (m.path / "sol.csv").exists():
                    verdict, detail = "partial outputs", "sol.csv written by a failed run"
                ledger.add("full disk", f"{name}, {leave} B free", verdict, detail)
            # A sweep on the full disk, then the same sweep after space is freed.
            sw = m.path / "sweep"
            caps = "M_R,M_H,M_P,64KiB,128KiB,256KiB"
            argv = stowage_cmd("sweep", "-q", chain, str(models["diamond"]), "--solvers",
                               "naive,baseline-fileorder-greedy",
                               "--capacity", caps, "--executor", "serial", "-o", str(sw))
            o = run_proc(argv, 300, env)
            verdict, detail = classify(o, rss)
            why = torn_rows(sw / "results.csv")
            if why and verdict in ("successes", "clean errors"):
                verdict, detail = "partial outputs", why
            ledger.add("full disk", f"sweep, {leave} B free", verdict, detail)
            m.free()
            o = run_proc(argv, 300, env)
            verdict, detail = classify(o, rss)
            expected = {(mm, "ethos-u55-256", c, s) for mm in ("chain", "diamond") for c in caps.split(",")
                        for s in ("naive", "baseline-fileorder-greedy")}
            if verdict == "successes":
                why = torn_rows(sw / "results.csv")
                cells = cell_problem(sw / "results.csv", expected)
                if why:
                    verdict, detail = "partial outputs", why
                elif cells:
                    verdict, detail = "lost/dup cells", cells
            ledger.add("full disk", f"sweep resumed after freeing space ({leave} B)", verdict, detail)
            print(f"  full disk, {leave} B free: done", flush=True)

        # --- read-only mount -------------------------------------------------------------
        ro = Mount(base, "ro", 1024 * 1024, readonly=True)
        mounts.append(ro)
        for name, argv in [
            ("compile", stowage_cmd("compile", "-q", chain, "--solver", "naive", "-o", str(ro.path / "x"))),
            ("emit", stowage_cmd("emit", "-q", str(plan_file), "-o", str(ro.path / "x"))),
            ("compare", stowage_cmd("compare", "-q", chain, "--solvers", "naive", "-o", str(ro.path / "x"))),
            ("sweep", stowage_cmd("sweep", "-q", chain, "--solvers", "naive", "--capacity", "M_R",
                                  "--executor", "serial", "-o", str(ro.path / "x"))),
            ("alloc", stowage_cmd("alloc", "-q", "--capacity", "1MiB", str(csv_file), "-o", str(ro.path / "x.csv"))),
        ]:
            o = run_proc(argv, 120, env)
            verdict, detail = classify(o, rss)
            if verdict == "successes":
                verdict, detail = "crashes", "exit 0 on a read-only file system"
            ledger.add("read-only mount", name, verdict, detail)
        print("  read-only mount: done", flush=True)

        # --- concurrent sweeps into one folder ------------------------------------------
        caps = "M_R,M_H,M_P,16KiB,32KiB,64KiB,128KiB,256KiB"
        for trial in range(4 if not args.quick else 1):
            d = work / f"concurrent{trial}"
            argv = stowage_cmd("sweep", "-q", chain, str(models["diamond"]), str(TINY_INT8), "--solvers",
                               "naive,heuristic", "--capacity", caps, "--time-limit", "2", "--workers", "1",
                               "-o", str(d))
            procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                      start_new_session=True, cwd=work) for _ in range(2)]
            outs = []
            for p in procs:
                try:
                    out, err = p.communicate(timeout=600)
                    outs.append(Outcome(p.returncode, out.decode(), err.decode(), 0.0))
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    outs.append(Outcome(None, "", "", 600.0))
            expected = {(m, "ethos-u55-256", c, s) for m in ("chain", "diamond", "tiny_cnn_int8_qop")
                        for c in caps.split(",") for s in ("naive", "heuristic")}
            for k, o in enumerate(outs):
                verdict, detail = classify(o, rss)
                ledger.add("concurrent sweeps", f"trial {trial}, sweep {k}", verdict, detail)
            # After both: one complete, duplicate-free table (resume to finish what a refused
            # sweep did not run).
            o = run_proc(argv, 600, env)
            verdict, detail = classify(o, rss)
            if verdict == "successes":
                cells = cell_problem(d / "results.csv", expected)
                torn = torn_rows(d / "results.csv")
                if torn:
                    verdict, detail = "partial outputs", torn
                elif cells:
                    verdict, detail = "lost/dup cells", cells
            ledger.add("concurrent sweeps", f"trial {trial}, table after both", verdict, detail)
        print("  concurrent sweeps: done", flush=True)

        # --- killed sweeps ----------------------------------------------------------------
        kills = ([(signal.SIGKILL, t) for t in (2.5, 4.0, 5.5, 7.0, 9.0, 12.0)]
                 + [(signal.SIGTERM, 5.0), (signal.SIGTERM, 8.0), (signal.SIGINT, 5.0), (signal.SIGINT, 8.0)])
        if args.quick:
            kills = kills[:2] + kills[-1:]
        for trial, (sig, delay) in enumerate(kills):
            d = work / f"killed{trial}"
            tag = f"{os.getpid()}-{trial}-{time.time_ns()}"
            tenv = dict(env, STOWAGE_CAMPAIGN_TAG=tag)
            argv = stowage_cmd("sweep", "-q", chain, str(models["diamond"]), str(TINY_INT8), "--solvers",
                               "naive,heuristic", "--capacity", caps, "--time-limit", "2", "--workers", "2",
                               "-o", str(d))
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tenv, cwd=work)
            time.sleep(delay)
            p.send_signal(sig)
            try:
                _, err = p.communicate(timeout=30)
                err_s = err.decode(errors="replace")
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                err_s = "(the parent did not exit within 30 s of the signal)"
            deadline = time.monotonic() + 10
            left = tagged_processes(tag)
            while left and time.monotonic() < deadline:
                time.sleep(0.25)
                left = tagged_processes(tag)
            name = f"{signal.Signals(sig).name} after {delay:g} s"
            if left:
                ledger.add("killed sweeps", name, "hangs", f"{len(left)} worker(s) still running 10 s later")
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                continue
            if sig != signal.SIGKILL and ("Traceback" in err_s or p.returncode not in (0, 1, 2, 130, -sig)):
                ledger.add("killed sweeps", name, "crashes", _last_line(err_s))
                continue
            torn = torn_rows(d / "results.csv") if (d / "results.csv").exists() else ""
            o = run_proc(argv, 600, env)
            verdict, detail = classify(o, rss)
            if verdict == "successes":
                expected = {(m, "ethos-u55-256", c, s) for m in ("chain", "diamond", "tiny_cnn_int8_qop")
                            for c in caps.split(",") for s in ("naive", "heuristic")}
                cells = cell_problem(d / "results.csv", expected)
                torn2 = torn_rows(d / "results.csv")
                if torn2:
                    verdict, detail = "partial outputs", torn2
                elif cells:
                    verdict, detail = "lost/dup cells", cells
                elif torn:
                    detail = f"torn tail repaired on resume ({torn})"
            ledger.add("killed sweeps", name + ", then resumed", verdict, detail)
        print("  killed sweeps: done", flush=True)

        # --- interrupted compiles -------------------------------------------------------------
        # NASNet-A at M_R: exact's CP-SAT search runs for the whole time limit (no proof),
        # so the signal lands inside a solve (import and bounds take about 5-15 s).
        big = ROOT / "models" / "suite" / "nasnet_a.onnx"
        for trial, delay in enumerate((10.0, 14.0, 18.0, 22.0, 26.0) if not args.quick else (20.0,)):
            d = work / f"sigint{trial}"
            o = run_proc(stowage_cmd("compile", "-q", chain, "--solver", "naive", "-o", str(d)), 120, env)
            before = listing(d)
            argv = stowage_cmd("compile", "-q", str(big), "--solver", "exact", "--time-limit", "120",
                               "--capacity", "M_R", "-o", str(d))
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=work)
            time.sleep(delay)
            t0 = time.monotonic()
            finished_before = p.poll() is not None
            p.send_signal(signal.SIGINT)
            try:
                out, err = p.communicate(timeout=30)
                o = Outcome(p.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
                            time.monotonic() - t0)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                o = Outcome(None, "", "", 30.0)
            verdict, detail = classify(o, rss, interrupt=True)
            if verdict in ("clean errors", "successes"):
                why = set_problem(d, before, o.code, "compile")
                if o.code != 0 and listing(d) != before:
                    why = why or "the previous output set changed"
                if why:
                    verdict, detail = "partial outputs", why
                detail = (detail + (f"; exit {o.code}, {o.seconds:.1f} s after SIGINT" if not finished_before
                                    else "; (finished before the signal)")).strip("; ")
            ledger.add("interrupted compiles", f"SIGINT after {delay:g} s (exact, CP-SAT)", verdict, detail)
        for trial, delay in enumerate((2.0, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0) if not args.quick else (3.0,)):
            d = work / f"sigkill{trial}"
            run_proc(stowage_cmd("compile", "-q", chain, "--solver", "naive", "--c-prefix", "old", "-o", str(d)),
                     120, env)
            argv = stowage_cmd("compile", "-q", str(models["tiny_cnn"]), "--solver", "naive", "-o", str(d))
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=work)
            time.sleep(delay)
            p.kill()
            p.wait()
            # The next run on the folder recovers it (roll forward); the visible set must
            # then be one set, with no temporary file.
            o = run_proc(stowage_cmd("validate", "-q", chain, str(d / "plan.json")), 120, env)
            o2 = run_proc(stowage_cmd("compile", "-q", chain, "--solver", "naive", "--emit", "json", "-o",
                                      str(work / f"sigkill_other{trial}")), 120, env)
            _ = o, o2
            o3 = run_proc(stowage_cmd("compile", "-q", str(models["tiny_cnn"]), "--solver", "naive", "-o", str(d)),
                          120, env)
            verdict, detail = classify(o3, rss)
            why = set_problem(d, {}, 0, "compile") if verdict == "successes" else ""
            if why:
                verdict, detail = "partial outputs", why
            ledger.add("interrupted compiles", f"SIGKILL after {delay:g} s, then recompiled", verdict, detail)
        print("  interrupted compiles: done", flush=True)
    finally:
        for m in mounts:
            m.umount()


# ---------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="about a quarter of the hostile inputs, few faults")
    ap.add_argument("--jobs", type=int, default=2, help="commands run at once (default 2)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per command before it counts as a hang")
    ap.add_argument("--mem-limit", type=int, default=4 << 30, help="address-space limit per command, bytes")
    ap.add_argument("--rss-limit", type=int, default=2048, help="peak RSS above this many MiB is a blow-up")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--no-faults", action="store_true", help="hostile inputs only")
    ap.add_argument("--faults-only", action="store_true", help="faults and interruptions only")
    ap.add_argument("--log", type=Path, default=None, help="write every case and its verdict as CSV")
    ap.add_argument("--out", type=Path, default=None, help="also write the tables and failures as Markdown")
    args = ap.parse_args()

    t0 = time.monotonic()
    # Warm the parent: every child is a fork of a process that has imported these.
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401

    import stowage.cli
    import stowage.simulate
    import stowage.solvers.builtin  # noqa: F401
    from stowage.cli import _commands

    _commands()
    ledger = Ledger()
    with tempfile.TemporaryDirectory(prefix="stowage-robustness-") as tmp:
        work = Path(tmp)
        runner = ForkRunner(args.jobs, args.timeout, args.mem_limit, work)
        (work / "cwd").mkdir()
        if args.faults_only:
            inputs, mismatches = 0, []
            fault_setup(work)
        else:
            print("hostile inputs ...", flush=True)
            inputs, mismatches = hostile_phase(args, runner, ledger, work)
        n_hostile = len(ledger.rows)
        t1 = time.monotonic()
        print(f"  {inputs} hostile inputs, {n_hostile} command runs in {t1 - t0:.0f} s", flush=True)
        if not args.no_faults:
            if os.geteuid() != 0:
                print("faults need root (tmpfs mounts): skipped", flush=True)
            else:
                print("faults and interruptions ...", flush=True)
                fault_phase(args, ledger, work, base_models_cached(work))
        t2 = time.monotonic()
    n_faults = len(ledger.rows) - n_hostile
    load = os.getloadavg()
    header = (f"{inputs} hostile inputs ({n_hostile} command runs) and {n_faults} fault and interruption "
              f"cases in {t2 - t0:.0f} s (faults {t2 - t1:.0f} s); {os.cpu_count()} cores, load average "
              f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end; seed {args.seed}"
              + ("; --quick" if args.quick else ""))
    table = ledger.table()
    fails = ledger.failures()
    lines = [header, "", table, ""]
    if fails:
        lines.append(f"Failures ({len(fails)}):")
        lines.append("")
        for r in fails[:60]:
            lines.append(f"- {r.category} / {r.verdict}: `{r.name[:80]}`: {r.detail[:240]}")
    else:
        lines.append("No failures.")
    if mismatches:
        lines += ["", (f"Accepted ONNX mutants whose naive plan does not simulate (exit 1, a clean mismatch; "
                       f"{len(mismatches)}):"), ""]
        lines += [f"- `{n}`: {d[:200]}" for n, d in mismatches[:15]]
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.log is not None:
        with open(args.log, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["category", "case", "verdict", "detail"])
            for r in ledger.rows:
                w.writerow([r.category, r.name[:200], r.verdict, r.detail[:300]])
    return 1 if fails else 0


def fault_setup(work: Path) -> None:
    """The files the fault phase reads, when the hostile phase did not make them."""
    from stowage.ir.inplace import fuse_in_place
    from stowage.ir.onnx_import import load_graph
    from stowage.plan import save_plan
    from stowage.solvers.problem import Problem
    from stowage.solvers.registry import solve
    from stowage.targets.hierarchy import load_target

    models = base_models(work)
    csv_mutants(21, random.Random(0), work)
    g = fuse_in_place(load_graph(models["chain"]))
    save_plan(solve(Problem(g, load_target("ethos-u55-256").with_capacity(None), True), "naive"),
              work / "good_plan.json")


def base_models_cached(work: Path) -> dict[str, Path]:
    return {"chain": work / "chain.onnx", "diamond": work / "diamond.onnx", "tiny_int8": TINY_INT8,
            "tiny_cnn": TINY_FLOAT}


if __name__ == "__main__":
    sys.exit(main())
