"""Design-space sweeps: models x targets x capacities x solvers.

A sweep is a list of *cells*; each cell is one plan (model, target, capacity, solver).  Cells
run on an executor (``serial``, a local process pool, or Dask) and every finished cell is
appended at once to ``RESULTS_DIR/results.csv``, so a crash or Ctrl-C loses nothing already
finished and a rerun with the same arguments skips the cells that are there (resumable).

Why a hand-written local pool instead of ``concurrent.futures``: when a worker process dies
(killed, out of memory, a native crash in a solver) ``ProcessPoolExecutor`` breaks *every*
pending future and cannot say which cell was running.  Here each worker runs one cell at a
time over its own pipe, so a death is charged to exactly that cell, which is retried once on a
fresh worker and then recorded as failed while the rest of the sweep completes.

Capacities are resolved inside the worker because ``M_R``/``M_H``/``M_P`` and fractions
between them depend on the model; each worker parses a model once and keeps it
(``_GRAPH_CACHE``), so the per-cell overhead is the plan itself plus a pipe round trip.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import multiprocessing as mp
import os
import re
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from stowage.errors import StowageError, TargetError
from stowage.solvers.budgets import resolve_capacity, target_budgets

log = logging.getLogger(__name__)

RESULT_COLUMNS = (
    "model", "target", "capacity_spec", "solver", "capacity_bytes", "status",
    "noncompulsory_bytes", "compulsory_bytes", "traffic_bytes", "peak_bytes", "compute_peak_bytes",
    "objective", "lower_bound", "gap", "seconds", "worker", "attempts", "error",
)
KEY_COLUMNS = ("model", "target", "capacity_spec", "solver")
#: Columns that legitimately differ between runs of the same cell (timing and placement).
NONDETERMINISTIC_COLUMNS = ("seconds", "worker")
#: Seconds to wait for an existing Dask scheduler (``scheduler=``) before giving up: long
#: enough for a cluster across a network, short enough that a wrong address fails promptly.
DEFAULT_CONNECT_TIMEOUT = 10.0

_RANGE_RE = re.compile(r"^\s*(M_R|M_H|M_P)\s*\.\.\s*(M_R|M_H|M_P)\s*:\s*(\d+)\s*$", re.IGNORECASE)
_FRAC_RE = re.compile(r"^(M_R|M_H|M_P)\.\.(M_R|M_H|M_P)@([0-9.]+)$")


@dataclass(frozen=True)
class SweepOptions:
    """Settings shared by every cell of a sweep."""

    element_bytes: int | None = None
    weights_in_compute_level: bool = False
    time_limit: float = 10.0
    seed: int = 0
    dims: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Cell:
    model: str
    target: str
    capacity_spec: str
    solver: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.model, self.target, self.capacity_spec, self.solver)


# ---------------------------------------------------------------------------------------
# Expanding the grid
# ---------------------------------------------------------------------------------------
def expand_capacities(spec: str) -> list[str]:
    """``"256KiB,M_R,M_R..M_P:3"`` -> ``["256KiB", "M_R", "M_R..M_P@0", "M_R..M_P@0.5",
    "M_R..M_P@1"]``.  Range points are fractions kept symbolic; the worker resolves them per
    model."""
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        m = _RANGE_RE.match(part)
        if m:
            a, b, n = m.group(1).upper(), m.group(2).upper(), int(m.group(3))
            if n < 2:
                raise TargetError(f"capacity range '{part}': needs at least 2 points (e.g. M_R..M_P:8)")
            out.extend(f"{a}..{b}@{_fmt_frac(i / (n - 1))}" for i in range(n))
        elif ".." in part:
            raise TargetError(
                f"capacity range '{part}' is not of the form M_R..M_P:N (ends from M_R, M_H, M_P; N points)"
            )
        else:
            out.append(part)
    if not out:
        raise TargetError("--capacity: give at least one capacity (sizes, M_R/M_H/M_P, or M_R..M_P:N)")
    return list(dict.fromkeys(out))


def _fmt_frac(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".") or "0"


def expand_models(paths: Iterable[str]) -> list[str]:
    """Files as given; folders contribute their ``*.onnx`` files (sorted, recursive)."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(str(f) for f in path.rglob("*.onnx"))
            if not found:
                raise StowageError(f"model folder {path} contains no .onnx files")
            out.extend(found)
        elif path.exists():
            out.append(str(path))
        else:
            raise StowageError(f"model file not found: {path}")
    return list(dict.fromkeys(out))


def make_cells(models: Sequence[str], targets: Sequence[str], capacities: Sequence[str],
               solvers: Sequence[str]) -> list[Cell]:
    return [Cell(m, t, c, s) for m in models for t in targets for c in capacities for s in solvers]


# ---------------------------------------------------------------------------------------
# Running one cell (in a worker)
# ---------------------------------------------------------------------------------------
_GRAPH_CACHE: dict[tuple[Any, ...], Any] = {}


def _graph(model: str, options: SweepOptions) -> Any:
    from stowage.ir.onnx_import import load_graph

    key = (model, options.element_bytes, options.dims)
    g = _GRAPH_CACHE.get(key)
    if g is None:
        g = load_graph(model, dims=dict(options.dims), element_bytes=options.element_bytes)
        _GRAPH_CACHE[key] = g
    return g


def resolve_cell_capacity(spec: str, graph: Any, target: Any, weights_in_compute_level: bool) -> int | None:
    """Bytes for one cell's capacity.  The sweep adds only its range points on top of the one
    resolver of a single spec (``stowage.solvers.budgets.resolve_capacity``, which ``compile``
    and the comparison report use too): ``M_R..M_P@0.5`` is the point that fraction of the way
    between the two budgets of this graph, rounded to a byte; anything else goes through the
    shared resolver, so sizes, budget names and their error messages are the same everywhere."""
    m = _FRAC_RE.match(spec)
    if m:
        b = target_budgets(graph, target, weights_in_compute_level)
        lo, hi, frac = b.get(m.group(1)), b.get(m.group(2)), float(m.group(3))
        return round(lo + (hi - lo) * frac)
    return resolve_capacity(spec, graph, target, weights_in_compute_level)


def run_cell(cell: Cell, options: SweepOptions) -> dict[str, Any]:
    """Plan one cell and return its result row; errors become a row with ``error`` set."""
    from stowage.solvers.problem import Problem
    from stowage.solvers.registry import solve
    from stowage.targets.hierarchy import load_target

    row: dict[str, Any] = {c: "" for c in RESULT_COLUMNS}
    row.update(zip(KEY_COLUMNS, cell.key))
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    started = time.perf_counter()
    try:
        graph = _graph(cell.model, options)
        target = load_target(cell.target)
        capacity = resolve_cell_capacity(cell.capacity_spec, graph, target, options.weights_in_compute_level)
        row["capacity_bytes"] = capacity if capacity is not None else ""
        problem = Problem(
            graph=graph,
            target=target.with_capacity(capacity),
            weights_in_compute_level=options.weights_in_compute_level,
            time_limit=options.time_limit,
            seed=options.seed,
            workers=1,
        )
        plan = solve(problem, cell.solver)
    except StowageError as exc:
        row.update(status="error", error=str(exc), seconds=round(time.perf_counter() - started, 4))
        return row
    except Exception as exc:  # noqa: BLE001 - a sweep records a failing cell and goes on
        log.debug("cell %s failed:\n%s", cell, traceback.format_exc())
        row.update(status="error", error=f"{type(exc).__name__}: {exc}",
                   seconds=round(time.perf_counter() - started, 4))
        return row
    m = plan.metrics
    lb = plan.solver.lower_bound
    row.update(
        status=plan.solver.status,
        noncompulsory_bytes=m.noncompulsory_bytes,
        compulsory_bytes=m.compulsory_bytes,
        traffic_bytes=m.noncompulsory_bytes + m.compulsory_bytes,
        peak_bytes=json.dumps(dict(m.peak_bytes), sort_keys=True),
        compute_peak_bytes=m.peak_bytes.get(plan.target.compute_level, 0),
        objective=plan.solver.objective if plan.solver.objective is not None else "",
        lower_bound=lb if lb is not None else "",
        gap=_gap(m.noncompulsory_bytes, lb),
        seconds=round(time.perf_counter() - started, 4),
    )
    return row


def _gap(value: int, bound: int | None) -> str:
    if bound is None:
        return ""
    if value == bound:
        return "0"
    if value <= 0:
        return ""
    return f"{(value - bound) / value:.4f}"


# ---------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------
Result = tuple[Cell, dict[str, Any]]


def _serial(cells: Sequence[Cell], options: SweepOptions) -> Iterator[Result]:
    for cell in cells:
        row = run_cell(cell, options)
        row["attempts"] = 1
        yield cell, row


def _worker_main(conn: Connection) -> None:
    """Worker loop: receive (cell, options), send back the row; None ends the loop."""
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        cell, options = msg
        conn.send(run_cell(cell, options))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    cell: Cell | None = None


def _local(cells: Sequence[Cell], options: SweepOptions, workers: int, retries: int = 1) -> Iterator[Result]:
    """Process pool with per-cell crash attribution (see module docstring)."""
    ctx = mp.get_context("spawn") if os.name == "nt" else mp.get_context("fork")
    pending = list(reversed(cells))  # pop() from the end keeps submission order
    attempts: dict[Cell, int] = {}
    pool: list[_Worker] = []

    def start() -> _Worker:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def feed(w: _Worker) -> None:
        if pending:
            w.cell = pending.pop()
            attempts[w.cell] = attempts.get(w.cell, 0) + 1
            w.conn.send((w.cell, options))
        else:
            w.cell = None

    try:
        for _ in range(max(1, min(workers, len(cells)))):
            w = start()
            pool.append(w)
            feed(w)
        while any(w.cell is not None for w in pool):
            busy = [w for w in pool if w.cell is not None]
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for w in busy:
                if w.conn in ready:
                    try:
                        row = w.conn.recv()
                    except (EOFError, ConnectionError):
                        row = None
                    if row is not None:
                        cell = w.cell
                        assert cell is not None
                        row["attempts"] = attempts[cell]
                        feed(w)
                        yield cell, row
                        continue
                if w.process.sentinel in ready or not w.process.is_alive():
                    cell = w.cell
                    assert cell is not None
                    code = w.process.exitcode
                    w.conn.close()
                    pool.remove(w)
                    if attempts[cell] <= retries:
                        log.warning("worker died (exit %s) on %s; retrying once", code, cell)
                        pending.append(cell)
                    else:
                        row = {c: "" for c in RESULT_COLUMNS}
                        row.update(zip(KEY_COLUMNS, cell.key))
                        row.update(status="error", attempts=attempts[cell],
                                   error=f"worker process died (exit code {code}) twice while planning this cell")
                        yield cell, row
                    nw = start()
                    pool.append(nw)
                    feed(nw)
    finally:
        for w in pool:
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in pool:
            w.process.join(timeout=2)
            if w.process.is_alive():
                w.process.kill()


def _dask(cells: Sequence[Cell], options: SweepOptions, workers: int, scheduler: str | None,
          connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Iterator[Result]:
    """Cells on a Dask cluster: the scheduler at ``scheduler`` (given up on after
    ``connect_timeout`` seconds, as a one-line error), else a ``LocalCluster`` of ``workers``
    processes.  A worker that dies is retried once by Dask itself (``allowed-failures``)."""
    try:
        import dask
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise StowageError("--executor dask needs dask.distributed: pip install 'stowage[dask]'") from None
    from distributed.client import FutureCancelledError

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        if scheduler:
            try:
                client = Client(scheduler, timeout=connect_timeout)
            except OSError as exc:
                raise StowageError(f"cannot reach Dask scheduler {scheduler}: {exc}") from None
            cluster = None
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        try:
            futures = {client.submit(run_cell, cell, options, pure=False, key=f"cell-{i}"): cell
                       for i, cell in enumerate(cells)}
            for fut in as_completed(futures):
                cell = futures[fut]
                try:
                    row = fut.result()
                    row["attempts"] = 1
                except (FutureCancelledError, Exception) as exc:  # noqa: BLE001 - KilledWorker etc.
                    row = {c: "" for c in RESULT_COLUMNS}
                    row.update(zip(KEY_COLUMNS, cell.key))
                    row.update(status="error", attempts=2, error=f"{type(exc).__name__}: {exc}")
                yield cell, row
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


# ---------------------------------------------------------------------------------------
# Results table (append-only CSV)
# ---------------------------------------------------------------------------------------
def read_results(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r for r in rows if all(k in r for k in KEY_COLUMNS)]


class _Appender:
    """Appends one row at a time and fsyncs, so finished cells survive a crash."""

    def __init__(self, path: Path) -> None:
        new = not path.exists() or path.stat().st_size == 0
        self.fh = open(path, "a", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.fh, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        if new:
            self.writer.writeheader()
            self._flush()

    def _flush(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def append(self, row: dict[str, Any]) -> None:
        self.writer.writerow(row)
        self._flush()

    def close(self) -> None:
        self.fh.close()


class SweepResult(list):
    """The sweep table: a list of records (one dict per cell, grid order), plus what this run
    did.  ``dataframe()`` gives a pandas DataFrame when pandas is installed."""

    def __init__(self, rows: list[dict[str, str]], results_dir: Path, ran: int, skipped: int,
                 failed: int, files: list[Path]) -> None:
        super().__init__(rows)
        self.results_dir = results_dir
        self.ran = ran
        self.skipped = skipped
        self.failed = failed
        self.files = files

    @property
    def rows(self) -> list[dict[str, str]]:
        return list(self)

    def dataframe(self) -> Any:
        try:
            import pandas as pd
        except ImportError:
            raise StowageError("SweepResult.dataframe() needs pandas: pip install pandas") from None
        return pd.DataFrame(list(self))


def sweep(
    models: Sequence[str],
    capacity: str,
    targets: Sequence[str] = ("ethos-u55-256",),
    solvers: Sequence[str] = ("auto",),
    results_dir: str | os.PathLike[str] = "sweep-results",
    element_bytes: int | None = None,
    weights_in_sram: bool = False,
    time_limit: float = 10.0,
    seed: int = 0,
    dims: dict[str, int] | None = None,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    report: bool = True,
    on_progress: Callable[[int, int, int, float], None] | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> SweepResult:
    """Run (or resume) a sweep and return every row of the table, in grid order.

    ``executor``: ``"serial"``, ``"local"`` (process pool, ``workers`` defaults to the
    machine's cores) or ``"dask"`` (``scheduler="tcp://host:port"`` for an existing cluster,
    else an in-process ``LocalCluster``).  ``connect_timeout``: seconds to wait for that
    scheduler before failing with "cannot reach Dask scheduler" (default 10, what the CLI
    uses; tests pass less).  ``on_progress(done, total, failed, elapsed)`` is called after
    every finished cell."""
    from stowage.solvers.registry import get

    if executor not in ("serial", "local", "dask"):
        raise StowageError(f"unknown executor '{executor}'; use serial, local or dask")
    if scheduler and executor != "dask":
        raise StowageError("--scheduler needs --executor dask")
    if not connect_timeout > 0:
        raise StowageError(f"connect timeout must be positive, got {connect_timeout}")
    for s in solvers:
        get(s)  # unknown solver names fail before any work starts
    from stowage.targets.hierarchy import load_target

    for t in targets:
        load_target(t)
    model_files = expand_models(models)
    caps = expand_capacities(capacity)
    cells = make_cells(model_files, list(targets), caps, list(solvers))
    options = SweepOptions(element_bytes, weights_in_sram, time_limit, seed, tuple(sorted((dims or {}).items())))
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_manifest(out, options, cells)
    csv_path = out / "results.csv"
    done = {tuple(r[k] for k in KEY_COLUMNS) for r in read_results(csv_path)}
    todo = [c for c in cells if c.key not in done]
    skipped = len(cells) - len(todo)
    n_workers = workers or (os.cpu_count() or 1)
    log.info("sweep: %d cells (%d already done), executor %s", len(cells), skipped, executor)

    if executor == "serial":
        stream = _serial(todo, options)
    elif executor == "local":
        stream = _local(todo, options, n_workers)
    else:
        stream = _dask(todo, options, n_workers, scheduler, connect_timeout)
    appender = _Appender(csv_path)
    failed = ran = 0
    t0 = time.perf_counter()
    try:
        for _cell, row in stream:
            appender.append(row)
            ran += 1
            failed += row.get("status") == "error"
            if on_progress:
                on_progress(ran, len(todo), failed, time.perf_counter() - t0)
    finally:
        appender.close()
    order: dict[tuple[str, ...], int] = {c.key: i for i, c in enumerate(cells)}
    latest: dict[tuple[str, ...], dict[str, str]] = {}
    for r in read_results(csv_path):
        k = tuple(r[c] for c in KEY_COLUMNS)
        if k in order:
            latest[k] = r
    rows = sorted(latest.values(), key=lambda r: order[tuple(r[c] for c in KEY_COLUMNS)])
    files = [csv_path]
    files.extend(_write_parquet(out, rows))
    if report:
        from stowage.tools.sweep_report import write_sweep_report

        files.extend(write_sweep_report(rows, out))
    return SweepResult(rows=rows, results_dir=out, ran=ran, skipped=skipped, failed=failed, files=files)


def _check_manifest(out: Path, options: SweepOptions, cells: Sequence[Cell]) -> None:
    """A results folder belongs to one set of options: resuming with different element bytes
    or time limits would silently mix incomparable rows."""
    path = out / "sweep.json"
    current: dict[str, Any] = {"options": asdict(options)}
    current["options"]["dims"] = dict(options.dims)
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous and previous.get("options") != current["options"]:
            raise StowageError(
                f"{out} holds a sweep with different options ({previous.get('options')}); "
                "use another results folder or the same options"
            )
    from stowage.plan import write_text_atomic

    current["cells"] = len(cells)
    write_text_atomic(path, json.dumps(current, indent=1, sort_keys=True) + "\n")


def _write_parquet(out: Path, rows: list[dict[str, str]]) -> list[Path]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return []
    table = pa.Table.from_pylist(rows) if rows else pa.table({c: [] for c in RESULT_COLUMNS})
    path = out / "results.parquet"
    tmp = out / ".results.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return [path]


def as_number(value: str | None) -> float | None:
    if value is None:  # a missing column (``dict.get``)
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v
