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

Safety ("nothing lost, nothing duplicated"):

- every row is one line, encoded whole and written by one ``os.write`` + ``fsync`` on an
  ``O_APPEND`` descriptor; a failed write is truncated back and raised as a one-line
  ``ResultsDirError``, and a torn tail left by a crash (a last line without newline, or one that
  does not parse) is cut off with a warning before a resume, so a fragment is never glued to the
  next row;
- a results folder is locked (``fcntl.flock`` on ``.sweep.lock`` inside it) for the whole run:
  two sweeps into one folder would run every cell twice and duplicate every row;
- local workers die with their parent: each closes the parent's pipe ends and descriptors it
  inherited through ``fork`` (else it never sees EOF), asks Linux for ``PR_SET_PDEATHSIG`` (a
  busy worker is killed too) or, elsewhere, polls ``os.getppid()``, and ignores SIGINT (the
  parent decides what a Ctrl-C means);
- a grid is capped at ``MAX_CELLS`` cells, checked arithmetically before any cell is built;
- the results folder is checked (creatable, writable, not a file) before any cell runs.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import logging
import math
import multiprocessing as mp
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from stowage.errors import StowageError, TargetError
from stowage.solvers.budgets import resolve_capacity, target_budgets
from stowage.tools.sweep_monotone import Chains

log = logging.getLogger(__name__)

RESULT_COLUMNS = (
    "model", "target", "capacity_spec", "solver", "capacity_bytes", "status",
    "noncompulsory_bytes", "compulsory_bytes", "traffic_bytes", "peak_bytes", "compute_peak_bytes",
    "objective", "lower_bound", "gap", "gap_ratio", "estimated_seconds", "latency_bound", "seconds", "worker",
    "attempts", "same_as", "plan_from", "error",
)
#: The header of tables written before ``plan_from`` (cells took no plans from smaller
#: capacities then, so their traffic could rise with the capacity): refused with a message.
PRE_PLAN_FROM_COLUMNS = tuple(c for c in RESULT_COLUMNS if c != "plan_from")
#: The header of tables written before the latency columns (``estimated_seconds``,
#: ``latency_bound``): refused with a message that says so, since a resumed sweep would mix
#: rows with and without them under one header.
PRE_LATENCY_COLUMNS = (
    "model", "target", "capacity_spec", "solver", "capacity_bytes", "status",
    "noncompulsory_bytes", "compulsory_bytes", "traffic_bytes", "peak_bytes", "compute_peak_bytes",
    "objective", "lower_bound", "gap", "gap_ratio", "seconds", "worker", "attempts", "same_as", "error",
)
#: The header of tables written before ``gap`` was in bytes (it was a ratio) and before
#: ``gap_ratio`` and ``same_as``: refused with a message that says so, not mixed in.
LEGACY_COLUMNS = (
    "model", "target", "capacity_spec", "solver", "capacity_bytes", "status",
    "noncompulsory_bytes", "compulsory_bytes", "traffic_bytes", "peak_bytes", "compute_peak_bytes",
    "objective", "lower_bound", "gap", "seconds", "worker", "attempts", "error",
)
KEY_COLUMNS = ("model", "target", "capacity_spec", "solver")
#: Columns that legitimately differ between runs of the same cell (timing and placement).
NONDETERMINISTIC_COLUMNS = ("seconds", "worker")
#: Typed columns of the rows ``sweep`` returns (the CSV holds text; ``typed_row`` converts).
#: Byte counts and counts are ``int``, ``gap`` is bytes (non-compulsory minus the bound, as
#: ``compile`` prints it) and ``gap_ratio`` that gap over the non-compulsory traffic; an empty
#: field (no plan, no bound) is ``None``.  ``estimated_seconds`` (the plan's makespan by
#: ``stowage.solvers.timing``) and ``latency_bound`` (its lower bound) are seconds, ``None``
#: when the target has no ``[compute]`` table (time unknown, never invented).
INT_COLUMNS = ("capacity_bytes", "noncompulsory_bytes", "compulsory_bytes", "traffic_bytes", "compute_peak_bytes",
               "objective", "lower_bound", "gap", "attempts")
FLOAT_COLUMNS = ("gap_ratio", "estimated_seconds", "latency_bound", "seconds")
#: Seconds to wait for an existing Dask scheduler (``scheduler=``) before giving up: long
#: enough for a cluster across a network, short enough that a wrong address fails promptly.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Most cells one sweep may have (models x targets x capacities x solvers).  Checked by
#: arithmetic before any cell is built, so ``M_R..M_P:100000000`` fails at once instead of
#: allocating 10^8 cells; 10,000 cells is already hours of planning, and a larger design space
#: is better split over several results folders (each is resumable on its own).
MAX_CELLS = 10_000
#: The lock file inside a results folder (``fcntl.flock``; the file stays, the lock dies with
#: its process, so a leftover file never blocks anyone).
LOCK_NAME = ".sweep.lock"
RESULTS_NAME = "results.csv"
MANIFEST_NAME = "sweep.json"
#: Seconds between parent checks of a worker that cannot use ``PR_SET_PDEATHSIG``.
_PARENT_POLL_SECONDS = 0.5
#: Linux ``prctl`` option: deliver a signal when the parent dies.  Module flag so that the
#: tests can exercise the portable fallback on Linux too.
_PR_SET_PDEATHSIG = 1
_USE_PDEATHSIG = True
_USE_PARENT_POLL = True

_RANGE_RE = re.compile(r"^\s*(M_R|M_H|M_P)\s*\.\.\s*(M_R|M_H|M_P)\s*:\s*(\d+)\s*$", re.IGNORECASE)
_FRAC_RE = re.compile(r"^(M_R|M_H|M_P)\.\.(M_R|M_H|M_P)@([0-9.]+)$")


class ResultsDirError(StowageError):
    """The results folder cannot be used: a file where a folder belongs, not writable, full,
    locked by another sweep, or holding a table that is not a sweep's.  One line, exit 2."""


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
def expand_capacities(spec: str, max_points: int = MAX_CELLS) -> list[str]:
    """``"256KiB,M_R,M_R..M_P:3"`` -> ``["256KiB", "M_R", "M_R..M_P@0", "M_R..M_P@0.5",
    "M_R..M_P@1"]``.  Range points are fractions kept symbolic; the worker resolves them per
    model.  More than ``max_points`` points in all is refused before the list is built (a
    mistyped ``:100000000`` must not allocate first and fail later)."""
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        m = _RANGE_RE.match(part)
        if m:
            a, b, digits = m.group(1).upper(), m.group(2).upper(), m.group(3).lstrip("0") or "0"
            # Compare the digit count first: int() of thousands of digits is itself refused by
            # Python (and slow), and any count that long is absurd anyway.
            if len(digits) > len(str(max_points)) or int(digits) + len(out) > max_points:
                others = f" on top of {len(out)} other capacities" if out else ""
                raise TargetError(
                    f"capacity range '{part}' asks for {_fmt_count(digits)} points{others}; a sweep has "
                    f"at most {max_points:,} cells (split it over several results folders)"
                )
            n = int(digits)
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


def _fmt_count(digits: str) -> str:
    """A point count for a message: with thousands separators, or its length when huge."""
    return f"{int(digits):,}" if len(digits) <= 30 else f"a {len(digits)}-digit number of"


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
               solvers: Sequence[str], max_cells: int = MAX_CELLS) -> list[Cell]:
    """The grid in order (models outermost, solvers innermost).  Its size is computed before
    any cell is built and more than ``max_cells`` is a one-line error."""
    n = len(models) * len(targets) * len(capacities) * len(solvers)
    if n > max_cells:
        raise StowageError(
            f"the sweep has {n:,} cells ({len(models)} models x {len(targets)} targets x "
            f"{len(capacities)} capacities x {len(solvers)} solvers); at most {max_cells:,} are allowed "
            "(split it over several results folders)"
        )
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
        gap=m.noncompulsory_bytes - lb if lb is not None else "",
        gap_ratio=_gap_ratio(m.noncompulsory_bytes, lb),
    )
    row.update(_latency_columns(graph, plan, problem.target))
    row["seconds"] = round(time.perf_counter() - started, 4)
    return row


def _latency_columns(graph: Any, plan: Any, target: Any) -> dict[str, str]:
    """``estimated_seconds`` and ``latency_bound`` of a plan as CSV text (``repr`` of the float,
    which reads back exactly); empty when the target has no ``[compute]`` table or a bandwidth
    the time model needs, since an unknown time is reported as unknown, not invented."""
    from stowage.solvers.timing import estimate

    timeline = estimate(graph, plan, target)
    if timeline is None:
        return {"estimated_seconds": "", "latency_bound": ""}
    return {"estimated_seconds": repr(timeline.makespan), "latency_bound": repr(timeline.lower_bound)}


def _gap_ratio(value: int, bound: int | None) -> str:
    """(value - bound) / value to 4 decimals: 0 when the bound is met, empty without a bound
    or when nothing is spilled (no ratio of zero traffic)."""
    if bound is None:
        return ""
    if value == bound:
        return "0"
    if value <= 0:
        return ""
    return f"{(value - bound) / value:.4f}"


def typed_row(raw: dict[str, str]) -> dict[str, Any]:
    """A table record with typed values: ``INT_COLUMNS`` as ``int``, ``FLOAT_COLUMNS`` as
    ``float``, ``peak_bytes`` as ``{level: bytes}``, empty fields as ``None`` (the CSV stores
    text; the rows ``sweep`` returns and the DataFrame carry numbers)."""
    row: dict[str, Any] = dict(raw)
    for c in INT_COLUMNS:
        v = raw.get(c)
        row[c] = None if v in (None, "") else int(float(v))
    for c in FLOAT_COLUMNS:
        v = raw.get(c)
        row[c] = None if v in (None, "") else float(v)
    peaks = raw.get("peak_bytes")
    try:
        row["peak_bytes"] = {str(k): int(n) for k, n in json.loads(peaks).items()} if peaks else None
    except (ValueError, TypeError, AttributeError):
        row["peak_bytes"] = None
    row["same_as"] = raw.get("same_as") or None
    row["plan_from"] = raw.get("plan_from") or None
    return row


# ---------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------
Result = tuple[Cell, dict[str, Any]]


def _serial(cells: Sequence[Cell], options: SweepOptions) -> Iterator[Result]:
    for cell in cells:
        row = run_cell(cell, options)
        row["attempts"] = 1
        yield cell, row


def _set_pdeathsig() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``).
    The only mechanism that also stops a worker busy in native code (a solver holding the
    GIL); False where it is unavailable."""
    if not (_USE_PDEATHSIG and sys.platform.startswith("linux")):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    """Portable fallback: a daemon thread that ends the process once it has been reparented
    (``os.getppid()`` changes when the parent dies).  Works while the main thread runs Python
    or sleeps in C; a kernel that holds the GIL for long only delays it."""

    def loop() -> None:
        while True:
            time.sleep(_PARENT_POLL_SECONDS)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=loop, name="stowage-parent-watch", daemon=True).start()


def _die_with_parent(parent_pid: int) -> None:
    """Make sure this worker does not outlive the sweep that started it (SIGKILL, SIGTERM or
    a crash of the parent runs none of its cleanup)."""
    if not _set_pdeathsig() and _USE_PARENT_POLL:
        _watch_parent(parent_pid)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _worker_main(conn: Connection, parent_pid: int | None = None, inherited: Sequence[Connection] = (),
                 inherited_fds: Sequence[int] = ()) -> None:
    """Worker loop: receive (cell, options), send back the row; None or EOF ends the loop.

    ``inherited``: the parent's ends of every worker pipe (this one's too) and ``inherited_fds``
    the parent's descriptors (results table, folder lock), all copied by ``fork``.  They are
    closed first: while a worker holds the parent's end of its own pipe it never sees EOF when
    the parent dies, and while it holds the lock descriptor the folder stays locked after the
    parent is gone.  (Closing, not unlocking: ``flock(LOCK_UN)`` would release the parent's
    lock, which shares the open file description.)"""
    for c in inherited:
        c.close()
    for fd in inherited_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    # A Ctrl-C reaches the whole process group; the parent decides what it means (it stops
    # the workers), so a worker does not die mid-cell with a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        cell, options = msg
        row = run_cell(cell, options)
        try:
            conn.send(row)
        except OSError:  # the parent is gone: nobody to report to
            return


@dataclass
class _Worker:
    process: Any
    conn: Connection
    cell: Cell | None = None


#: Seconds an idle worker gets to exit after being told to, when the pool shuts down.
_SHUTDOWN_GRACE = 2.0


def _local(cells: Sequence[Cell], options: SweepOptions, workers: int, retries: int = 1,
           inherited_fds: Sequence[int] = ()) -> Iterator[Result]:
    """Process pool with per-cell crash attribution (see module docstring).  ``inherited_fds``:
    descriptors of the parent that a forked worker must close (see ``_worker_main``)."""
    forking = os.name != "nt"
    ctx = mp.get_context("fork") if forking else mp.get_context("spawn")
    pending = list(reversed(cells))  # pop() from the end keeps submission order
    attempts: dict[Cell, int] = {}
    pool: list[_Worker] = []

    def start() -> _Worker:
        parent, child = ctx.Pipe()
        if forking:  # what fork copies into the child; spawn copies nothing
            args: tuple[Any, ...] = (child, os.getpid(), [parent, *(w.conn for w in pool)], list(inherited_fds))
        else:
            args = (child, os.getpid())
        proc = ctx.Process(target=_worker_main, args=args, daemon=True)
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
        # Idle workers are told to stop; a worker still busy (an interrupt, a failed write of
        # the table) is killed at once: its cell is not recorded, so a resume reruns it.
        for w in pool:
            if w.cell is None:
                with contextlib.suppress(OSError):
                    w.conn.send(None)
            else:
                w.process.kill()
        deadline = time.monotonic() + _SHUTDOWN_GRACE
        for w in pool:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=1)
            w.conn.close()


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
_HEADER = ",".join(RESULT_COLUMNS)


def _io_error(action: str, path: Path, exc: OSError, hint: str = "") -> ResultsDirError:
    """One line for an OS error on a results file: what was done, where, the OS's reason and
    its errno name (ENOSPC, EACCES, EROFS, ...), and what to do next."""
    code = errno.errorcode.get(exc.errno or 0, "")
    reason = exc.strerror or str(exc) or type(exc).__name__
    return ResultsDirError(f"cannot {action} {path}: {reason}{f' ({code})' if code else ''}{hint}")


def encode_row(row: dict[str, Any]) -> bytes:
    """One result row as one complete CSV line (newline included).  Newlines inside values
    (an exception message) are folded to spaces, so that a record is exactly one line: that
    is what makes a torn tail detectable and every line parseable on its own."""
    buf = io.StringIO()
    values = ["" if row.get(c) is None else " ".join(str(row.get(c)).splitlines()) for c in RESULT_COLUMNS]
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().encode("utf-8")


def _parse_line(line: bytes) -> list[str] | None:
    """The fields of one table line, or None when it is not a complete record (a fragment, two
    records glued together, bytes that are not UTF-8, a missing key or status)."""
    try:
        text = line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return None
    try:
        records = list(csv.reader([text], strict=True))
    except csv.Error:
        return None
    if len(records) != 1 or len(records[0]) != len(RESULT_COLUMNS):
        return None
    fields = records[0]
    record = dict(zip(RESULT_COLUMNS, fields))
    if not all(record[k] for k in KEY_COLUMNS) or not record["status"]:
        return None
    return fields


def _check_header(path: Path, first_line: bytes) -> None:
    if first_line.decode("utf-8", "replace").rstrip("\r\n") == ",".join(PRE_PLAN_FROM_COLUMNS):
        raise ResultsDirError(
            f"{path} was written by an older stowage (no plan_from column: its cells did not take the plans "
            "of smaller capacities); use another results folder"
        )
    if first_line.decode("utf-8", "replace").rstrip("\r\n") == ",".join(PRE_LATENCY_COLUMNS):
        raise ResultsDirError(
            f"{path} was written by an older stowage (no estimated_seconds and latency_bound columns); "
            "use another results folder"
        )
    if first_line.decode("utf-8", "replace").rstrip("\r\n") == ",".join(LEGACY_COLUMNS):
        raise ResultsDirError(
            f"{path} was written by an older stowage (its gap column is a ratio, today's is bytes); "
            "use another results folder"
        )
    if first_line.decode("utf-8", "replace").rstrip("\r\n") != _HEADER:
        raise ResultsDirError(
            f"{path} is not a stowage sweep table (its first line is not the header "
            f"'{RESULT_COLUMNS[0]},...,{RESULT_COLUMNS[-1]}'); use another results folder"
        )


def repair_results(path: Path) -> int:
    """Cut a torn tail off the table and return how many bytes were removed (0: intact).

    A torn tail is what a crash, a full disk or a kill in the middle of an append leaves: a last
    line without its newline, or a last line that does not parse as a record.  Left in place,
    the next append would be glued to it (a garbage row, and the cell it belonged to missing
    from the table).  Its cell is rerun by the resume.  A header that is not a sweep's is an
    error: that file is not ours to truncate."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise _io_error("read the results table", path, exc) from None
    keep = data.rfind(b"\n") + 1  # drop a last line without newline
    if keep:
        header_end = data.index(b"\n") + 1
        _check_header(path, data[:header_end])
        last = data.rfind(b"\n", 0, keep - 1) + 1
        if last >= header_end and _parse_line(data[last:keep]) is None:
            keep = last
    elif data and not _HEADER.encode().startswith(data.rstrip(b"\r")):
        _check_header(path, data)  # one line, no newline, and not a torn header either
    if keep == len(data):
        return 0
    try:
        with open(path, "r+b") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise _io_error("repair the torn tail of", path, exc) from None
    log.warning("%s: removed a torn last row (%d bytes: %r) left by an interrupted write; its cell "
                "will be planned again", path, len(data) - keep, data[keep:][:80])
    return len(data) - keep


def read_results(path: Path) -> list[dict[str, str]]:
    """The table's records in file order.  Every record is one line (``encode_row``); a line
    that does not parse (a fragment glued to a row by an older version) is skipped with a
    warning, so its cell counts as not done and is planned again."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _io_error("read the results table", path, exc) from None
    lines = data.splitlines(keepends=True)
    if not lines:
        return []
    if not lines[0].endswith(b"\n"):  # a torn header and nothing else
        return []
    _check_header(path, lines[0])
    rows: list[dict[str, str]] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = _parse_line(line) if line.endswith(b"\n") else None
        if fields is None:
            log.warning("%s line %d is not a complete row; ignored (its cell will be planned again)", path, number)
            continue
        rows.append(dict(zip(RESULT_COLUMNS, fields)))
    return rows


class _Appender:
    """Appends whole rows: each is encoded first, then written by one ``os.write`` on an
    ``O_APPEND`` descriptor and ``fsync``'d, so finished cells survive a crash and a row is
    either all there or (after ``repair_results``) not at all.  A failed write (ENOSPC, EIO,
    EROFS...) is truncated back to the last whole row and raised as ``ResultsDirError``: never
    a traceback, never exit 0 with a row missing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            empty = os.fstat(self.fd).st_size == 0
        except OSError as exc:
            raise _io_error("open the results table", path, exc) from None
        if empty:
            self._write((_HEADER + "\n").encode("utf-8"))

    def _write(self, data: bytes) -> None:
        assert self.fd is not None
        fd = self.fd
        start: int | None = None
        try:
            start = os.fstat(fd).st_size
            written = os.write(fd, data)
            # A short write is rare on a regular file (a signal, a disk that just filled); the
            # rest follows at once (O_APPEND, and the folder lock keeps other writers out).
            while written < len(data):
                more = os.write(fd, data[written:])
                if more <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += more
            os.fsync(fd)
        except OSError as exc:
            if start is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)  # else repair_results cuts the fragment on resume
            raise _io_error("append to the results table", self.path, exc,
                            "; the cells finished so far are saved: free space or fix the folder, "
                            "then rerun the same command to resume") from None

    def append(self, row: dict[str, Any]) -> None:
        self._write(encode_row(row))

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


class _FolderLock:
    """An exclusive ``fcntl.flock`` on ``LOCK_NAME`` inside the results folder, held for the
    whole sweep: a second sweep into the same folder would run every cell again and append a
    duplicate of every row.  The kernel drops the lock when its holder dies, so a stale lock
    file never blocks a resume; the file is never deleted (deleting it would let two processes
    lock two different files of the same name)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self.fd: int | None = None
        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory lock (documented in docs/sweep.md)
            log.warning("cannot lock %s on this platform: do not run two sweeps into it at once", folder)
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise _io_error("create the lock file", self.path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            with contextlib.suppress(OSError, UnicodeDecodeError):
                text = os.pread(fd, 200, 0).decode().strip()
                holder = f" (held by {text})" if text else ""
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ResultsDirError(
                    f"results folder {folder} is in use by another sweep: {self.path} is locked{holder}; "
                    "wait for that sweep to finish or use another folder"
                ) from None
            raise _io_error("lock", self.path, exc) from None
        self.fd = fd
        with contextlib.suppress(OSError):  # who holds it, for the message above; best effort
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None

    def __enter__(self) -> _FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def prepare_results_dir(out: Path) -> None:
    """Check the results folder before any work: it must be (or become) a writable folder, and
    the files a sweep writes there must not be folders.  Each problem is one line naming the
    path, instead of a traceback after the first cell."""
    if out.exists() and not out.is_dir():
        raise ResultsDirError(f"results folder {out} is a file, not a folder; remove it or choose another -o")
    for parent in out.parents:  # a file where a folder of the path is expected
        if parent.exists():
            if not parent.is_dir():
                raise ResultsDirError(f"cannot create results folder {out}: {parent} is a file, not a folder")
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _io_error("create results folder", out, exc) from None
    for name in (RESULTS_NAME, MANIFEST_NAME, LOCK_NAME, "sweep.md", "sweep.html", "results.parquet"):
        if (out / name).is_dir():
            raise ResultsDirError(f"{out / name} is a folder; the sweep writes a file there (remove it)")
    # Whether the folder takes new files is probed for real by creating the lock file next
    # (``_FolderLock``), which names the OS's reason (EACCES, EROFS, ENOSPC) precisely.
    for name in (RESULTS_NAME, MANIFEST_NAME, LOCK_NAME):
        if (out / name).exists() and not (out / name).is_file():  # a device, a FIFO, a socket
            raise ResultsDirError(f"{out / name} is not a regular file; the sweep writes a file there (remove it)")
    for name in (RESULTS_NAME, MANIFEST_NAME):
        if (out / name).exists() and not os.access(out / name, os.W_OK):
            raise ResultsDirError(f"{out / name} is not writable; the sweep rewrites or appends to it")


class SweepResult(list):
    """The sweep table: a list of records (one dict per cell, grid order, typed values: see
    ``typed_row``), plus what this run did.  ``dataframe()`` gives a pandas DataFrame with
    numeric dtypes when pandas is installed."""

    def __init__(self, rows: list[dict[str, Any]], results_dir: Path, ran: int, skipped: int,
                 failed: int, files: list[Path], failed_this_run: int | None = None,
                 planned: int | None = None) -> None:
        super().__init__(rows)
        #: Cells this run planned: ``ran`` minus the duplicates filled in from a cell of the
        #: same model, target, solver and capacity in bytes (``same_as``).
        self.planned = ran if planned is None else planned
        self.results_dir = results_dir
        self.ran = ran
        self.skipped = skipped
        #: Failed cells in the whole table (a resume that ran nothing still reports the failures
        #: it found); ``failed_this_run`` counts only the cells this run planned.
        self.failed = failed
        self.failed_this_run = failed if failed_this_run is None else failed_this_run
        self.files = files

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self)

    def dataframe(self) -> Any:
        """The table as a DataFrame: ``INT_COLUMNS`` as pandas' nullable ``Int64`` (a failed
        cell has no traffic, and NaN would turn byte counts into floats), ``FLOAT_COLUMNS`` as
        ``float64``, and ``peak_bytes`` spread into one ``Int64`` column per level
        (``peak_bytes_sram``, ...)."""
        try:
            import pandas as pd
        except ImportError:
            raise StowageError("SweepResult.dataframe() needs pandas: pip install pandas") from None
        levels = list(dict.fromkeys(lv for r in self for lv in (r.get("peak_bytes") or {})))
        records = []
        for r in self:
            rec = {c: r.get(c) for c in RESULT_COLUMNS if c != "peak_bytes"}
            peaks = r.get("peak_bytes") or {}
            rec.update({f"peak_bytes_{lv}": peaks.get(lv) for lv in levels})
            records.append(rec)
        columns = [c for c in RESULT_COLUMNS if c != "peak_bytes"] + [f"peak_bytes_{lv}" for lv in levels]
        df = pd.DataFrame.from_records(records, columns=columns)
        ints = [*INT_COLUMNS, *(f"peak_bytes_{lv}" for lv in levels)]
        return df.astype({**{c: "Int64" for c in ints}, **{c: "float64" for c in FLOAT_COLUMNS}})


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
    max_cells: int = MAX_CELLS,
) -> SweepResult:
    """Run (or resume) a sweep and return every row of the table, in grid order.

    ``executor``: ``"serial"``, ``"local"`` (process pool, ``workers`` defaults to the
    machine's cores) or ``"dask"`` (``scheduler="tcp://host:port"`` for an existing cluster,
    else an in-process ``LocalCluster``).  ``connect_timeout``: seconds to wait for that
    scheduler before failing with "cannot reach Dask scheduler" (default 10, what the CLI
    uses; tests pass less).  ``on_progress(done, total, failed, elapsed)`` is called after
    every finished cell (counts of this run).  ``max_cells``: the largest grid accepted
    (``MAX_CELLS``).  The results folder is validated and locked before any cell runs; any
    problem writing it is a ``ResultsDirError``."""
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
    caps = expand_capacities(capacity, max_points=max_cells)
    cells = make_cells(model_files, list(targets), caps, list(solvers), max_cells=max_cells)
    options = SweepOptions(element_bytes, weights_in_sram, time_limit, seed, tuple(sorted((dims or {}).items())))
    out = Path(results_dir)
    prepare_results_dir(out)
    with _FolderLock(out) as lock:
        return _run_locked(out, cells, options, executor, workers, scheduler, report, on_progress,
                           connect_timeout, [fd for fd in (lock.fd,) if fd is not None])


def _run_locked(out: Path, cells: list[Cell], options: SweepOptions, executor: str, workers: int | None,
                scheduler: str | None, report: bool, on_progress: Callable[[int, int, int, float], None] | None,
                connect_timeout: float, inherited_fds: list[int]) -> SweepResult:
    """The sweep proper, with the results folder locked by the caller."""
    _check_manifest(out, options, cells)
    csv_path = out / RESULTS_NAME
    repair_results(csv_path)
    finished = {tuple(r[k] for k in KEY_COLUMNS): r for r in read_results(csv_path)}
    todo = [c for c in cells if c.key not in finished]
    skipped = len(cells) - len(todo)
    # Identical capacities (M_R..M_P:4 on a model whose M_R = M_P) are planned once: the other
    # cells of the group get a copy of its row, marked ``same_as``.  A representative comes
    # before its duplicates in grid order, so when it is not in the table it is planned now.
    capacities = cell_capacities(cells, options)
    same = duplicate_groups(cells, options, capacities)
    # Monotone in capacity: a cell's row is final once every smaller capacity of its chain
    # has its row (``sweep_monotone``); rows in the table are final already.
    chains = Chains(capacity_chains(cells, capacities, same),
                    {c: finished[c.key] for c in cells if c.key in finished})
    plan_cells: list[Cell] = []
    copies: dict[Cell, list[Cell]] = {}
    from_table: list[tuple[Cell, dict[str, str], Cell]] = []
    for c in todo:
        rep = same.get(c)
        if rep is None:
            plan_cells.append(c)
        elif rep.key in finished:
            from_table.append((c, finished[rep.key], rep))
        else:
            copies.setdefault(rep, []).append(c)
    # Each chain's cells in increasing capacity (solvers still interleaved), so that a
    # finished cell waits for few smaller ones; the order changes no result.
    position = {c: i for i, c in enumerate(cells)}
    models = {m: i for i, m in enumerate(dict.fromkeys(c.model for c in cells))}
    targets = {t: i for i, t in enumerate(dict.fromkeys(c.target for c in cells))}
    plan_cells.sort(key=lambda c: (models[c.model], targets[c.target], capacities.get(c, -1), position[c]))
    n_workers = workers or (os.cpu_count() or 1)
    log.info("sweep: %d cells (%d already done), executor %s", len(cells), skipped, executor)

    appender = _Appender(csv_path)  # opened (header written) before any cell runs
    assert appender.fd is not None
    stream: Iterator[Result]
    if executor == "serial":
        stream = _serial(plan_cells, options)
    elif executor == "local":
        stream = _local(plan_cells, options, n_workers, inherited_fds=[*inherited_fds, appender.fd])
    else:
        stream = _dask(plan_cells, options, n_workers, scheduler, connect_timeout)
    failed_now = ran = planned = 0
    t0 = time.perf_counter()

    def record(row: dict[str, Any]) -> None:
        nonlocal ran, failed_now
        appender.append(row)
        ran += 1
        failed_now += row.get("status") == "error"
        if on_progress:
            on_progress(ran, len(todo), failed_now, time.perf_counter() - t0)

    try:
        for c, table_row, rep in from_table:
            record(copy_row(table_row, c, rep))
        for cell, row in stream:
            planned += 1
            for done, final in chains.add(cell, row):
                assert isinstance(done, Cell)
                record(final)
                for dup in copies.get(done, ()):
                    record(copy_row(final, dup, done))
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # stops the workers now, also when the consumer raised (Ctrl-C, a full disk)
        appender.close()
    order: dict[tuple[str, ...], int] = {c.key: i for i, c in enumerate(cells)}
    latest: dict[tuple[str, ...], dict[str, str]] = {}
    for r in read_results(csv_path):
        k = tuple(r[c] for c in KEY_COLUMNS)
        if k in order:
            latest[k] = r
    rows = [typed_row(r) for r in sorted(latest.values(), key=lambda r: order[tuple(r[c] for c in KEY_COLUMNS)])]
    failed = sum(r.get("status") == "error" for r in rows)
    files = [csv_path]
    try:
        files.extend(_write_parquet(out, rows))
        if report:
            from stowage.tools.sweep_report import write_sweep_report

            files.extend(write_sweep_report(rows, out))
    except OSError as exc:
        raise _io_error("write the sweep report in", out, exc,
                        f"; every cell is saved in {csv_path}, rerun the same command to write the report") from None
    return SweepResult(rows=rows, results_dir=out, ran=ran, skipped=skipped, failed=failed, files=files,
                       failed_this_run=failed_now, planned=planned)


def cell_capacities(cells: Sequence[Cell], options: SweepOptions) -> dict[Cell, int]:
    """Each cell's capacity in bytes, resolved here, in the parent, with the resolver the
    workers use (forked local workers inherit the parsed models).  A model or capacity that
    cannot be resolved, or an unbounded capacity, is left out (its own cell reports any
    error)."""
    from stowage.targets.hierarchy import load_target

    out: dict[Cell, int] = {}
    targets: dict[str, Any] = {}
    unusable: set[str] = set()  # models that do not import: tried once, not once per cell
    for c in cells:
        if c.model in unusable:
            continue
        try:
            graph = _graph(c.model, options)
        except Exception:  # noqa: BLE001 - the model's cells will report what is wrong
            unusable.add(c.model)
            continue
        try:
            if c.target not in targets:
                targets[c.target] = load_target(c.target)
            nbytes = resolve_cell_capacity(c.capacity_spec, graph, targets[c.target],
                                           options.weights_in_compute_level)
        except Exception:  # noqa: BLE001 - the cell itself will report what is wrong
            continue
        if nbytes is not None:
            out[c] = int(nbytes)
    return out


def duplicate_groups(cells: Sequence[Cell], options: SweepOptions,
                     capacities: Mapping[Cell, int] | None = None) -> dict[Cell, Cell]:
    """For every cell whose capacity resolves to the same bytes as an earlier cell of the same
    model, target and solver, that earlier cell (its *representative*, planned in its stead;
    a plan is deterministic for the options, so a copy of its row is what planning again would
    give).  ``capacities``: ``cell_capacities(cells, options)``, computed here when not given;
    a cell it lacks is left alone."""
    nbytes = cell_capacities(cells, options) if capacities is None else capacities
    first: dict[tuple[str, str, str, int], Cell] = {}
    out: dict[Cell, Cell] = {}
    for c in cells:
        if c not in nbytes:
            continue
        rep = first.setdefault((c.model, c.target, c.solver, nbytes[c]), c)
        if rep is not c:
            out[c] = rep
    return out


def capacity_chains(cells: Sequence[Cell], capacities: Mapping[Cell, int],
                    same: Mapping[Cell, Cell]) -> dict[tuple[str, str, str], list[Cell]]:
    """The cells of each (model, target, solver) in increasing capacity, one per distinct
    capacity (``same``'s duplicates follow their representative): along a chain a cell takes
    the plans of the cells before it as candidates (``stowage.tools.sweep_monotone``)."""
    chains: dict[tuple[str, str, str], list[Cell]] = {}
    for c in cells:
        if c in capacities and c not in same:
            chains.setdefault((c.model, c.target, c.solver), []).append(c)
    for ids in chains.values():
        ids.sort(key=lambda c: capacities[c])
    return chains


def copy_row(row: Mapping[str, Any], cell: Cell, rep: Cell) -> dict[str, Any]:
    """``row`` (the representative's) for ``cell``: its own key, ``same_as`` naming the
    representative's capacity spec, no time of its own."""
    copy = dict(row)
    copy.update(zip(KEY_COLUMNS, cell.key))
    copy["same_as"] = rep.capacity_spec
    copy["seconds"] = 0
    return copy


def _check_manifest(out: Path, options: SweepOptions, cells: Sequence[Cell]) -> None:
    """A results folder belongs to one set of options: resuming with different element bytes
    or time limits would silently mix incomparable rows."""
    path = out / MANIFEST_NAME
    current: dict[str, Any] = {"options": asdict(options)}
    current["options"]["dims"] = dict(options.dims)
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # unreadable or torn: rewritten below
            previous = None
        if isinstance(previous, dict) and previous.get("options") != current["options"]:
            raise StowageError(
                f"{out} holds a sweep with different options ({previous.get('options')}); "
                "use another results folder or the same options"
            )
    from stowage.plan import write_text_atomic

    current["cells"] = len(cells)
    try:
        write_text_atomic(path, json.dumps(current, indent=1, sort_keys=True) + "\n")
    except OSError as exc:
        raise _io_error("write", path, exc) from None


def _write_parquet(out: Path, rows: list[dict[str, Any]]) -> list[Path]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return []
    # Typed columns; peak_bytes as its JSON text (levels differ between targets).
    flat = [{**r, "peak_bytes": json.dumps(r["peak_bytes"], sort_keys=True) if r.get("peak_bytes") else None}
            for r in rows]
    table = pa.Table.from_pylist(flat) if rows else pa.table({c: [] for c in RESULT_COLUMNS})
    path = out / "results.parquet"
    tmp = out / ".results.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return [path]


def as_number(value: object) -> float | None:
    """A table value as a float: text (a CSV field), an int, a float; None when empty or NaN."""
    if value is None:  # a missing column (``dict.get``)
        return None
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v
