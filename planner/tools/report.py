"""Solver comparison: run several solvers at several capacities, then draw and tabulate.

``run_comparison`` produces an immutable ``Comparison`` (one ``Run`` per solver and capacity,
each holding a validated plan or the error that stopped it); ``write_report`` turns it into
``report.html`` (self-contained: PNGs inlined as base64, no network), ``report.md`` with the
PNGs beside it, and the plans as JSON.  Running and rendering are separate so that the
benchmark and the tests can build a comparison without drawing anything.

Pictures (matplotlib, Agg backend):
* memory layout per plan: x = step, y = compute-level address, one rectangle per compute-level
  placement; placements spilled afterwards (vermilion) or reloaded (purple) have colours of their
  own, no kind uses, and every spill and reload step is also marked on the top edge, so they
  show at any scale (a 16 KiB spill on a 668-step model is a 1-2 px sliver);
* non-compulsory traffic versus capacity, one curve per solver (hollow markers of decreasing
  size and distinct dashes; a solver whose curve is identical to another's says so in the
  legend);
* occupancy per level over time, for every target;
* when the target has a ``[compute]`` table (``docs/timing.md``): a timeline of each capacity's
  best plan (the compute engine and each DMA channel as lanes, steps and copies as boxes from
  their start to their end, stalls hatched on the compute lane) and the estimated time versus
  capacity per solver beside the traffic curves, with the latency lower bound.  Without one the
  report says in one line that time is unknown instead of drawing anything invented.

Tables: per capacity the runs; per plan its spills and reloads (``stowage.plan.tables``, the
rows ``stowage show --transfers`` prints); per capacity, for the best plan, every step with its
live bytes per level and transfers.  The model path is shown relative to the working
directory.  Sizes are formatted by ``stowage.format``.
"""

from __future__ import annotations

import base64
import logging
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stowage.errors import CapacityError, StowageError
from stowage.format import axis_unit, fmt_int
from stowage.format import fmt_bytes as _fmt_bytes
from stowage.ir.graph import Graph
from stowage.ir.lifetimes import m_r
from stowage.plan import Plan, plan_to_json
from stowage.plan.files import write_output_set
from stowage.plan.tables import live_bytes, step_rows, transfer_rows
from stowage.solvers.budgets import resolve_capacity
from stowage.targets.hierarchy import Hierarchy

if TYPE_CHECKING:  # matplotlib is imported only when drawing
    from matplotlib.artist import Artist

    from stowage.solvers.timing import Timeline

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Colours (Okabe-Ito palette: distinguishable with common colour-vision deficiencies).
KIND_COLOURS = {
    "activation": "#56B4E9",
    "output": "#009E73",
    "input": "#F0E442",
    "weight": "#999999",
}
SPILL_EDGE = "#D55E00"
RELOAD_EDGE = "#CC79A7"
#: Face colours of spilled / reloaded placements: used by no kind, so a sliver still reads.
SPILL_FACE = "#D55E00"
RELOAD_FACE = "#CC79A7"
CAPACITY_COLOUR = "#0072B2"
#: Copy colours on the timeline's DMA lanes, by transfer kind (``stowage.plan.tables``).
TRANSFER_COLOURS = {
    "load": "#F0E442",
    "store": "#009E73",
    "spill": SPILL_FACE,
    "reload": RELOAD_FACE,
    "move": "#999999",
    "weights": "#CC79A7",
}
STEP_COLOUR = "#56B4E9"
STALL_COLOUR = "#D55E00"
#: Most rows of one spill/reload table and of one per-step table in a report (the rest are
#: counted in a note; ``stowage show`` prints them all).
MAX_TABLE_ROWS = 400


# ---------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Capacity:
    """A compute-level capacity as the user wrote it and as resolved for this graph."""

    spec: str
    bytes: int

    @property
    def label(self) -> str:
        if self.spec.upper() in ("M_R", "M_H", "M_P"):
            return f"{self.spec.upper()} = {fmt_bytes(self.bytes)}"
        return fmt_bytes(self.bytes)

    @property
    def slug(self) -> str:
        return f"cap{self.bytes}"


@dataclass(frozen=True)
class Run:
    solver: str
    capacity: Capacity
    plan: Plan | None
    error: str | None
    seconds: float
    #: The plan's timeline (``stowage.solvers.timing.estimate``); None when the time is unknown
    #: (no ``[compute]`` table, a bandwidth missing) or there is no plan.  ``plan`` then carries
    #: the same times (transfers' start/end/channel, ``metrics.estimated_seconds``).
    timeline: Timeline | None = None

    @property
    def ok(self) -> bool:
        return self.plan is not None

    @property
    def estimated_seconds(self) -> float | None:
        """The estimated makespan in seconds (None: unknown)."""
        return None if self.timeline is None else self.timeline.makespan

    @property
    def compute_peak(self) -> int | None:
        if self.plan is None:
            return None
        return self.plan.metrics.peak_bytes.get(self.plan.target.compute_level, 0)

    @property
    def respects_capacity(self) -> bool:
        """False for reference planners that ignore the capacity (e.g. ``naive``)."""
        peak = self.compute_peak
        return peak is not None and peak <= self.capacity.bytes

    @property
    def noncompulsory(self) -> int | None:
        return None if self.plan is None else self.plan.metrics.noncompulsory_bytes

    @property
    def gap(self) -> int | None:
        """Non-compulsory bytes above the solver's own lower bound (None without a bound)."""
        if self.plan is None or self.plan.solver.lower_bound is None:
            return None
        return self.plan.metrics.noncompulsory_bytes - self.plan.solver.lower_bound


@dataclass(frozen=True)
class Comparison:
    model: str
    model_path: str | None
    target: Hierarchy
    weights_in_compute_level: bool
    element_bytes: int | None
    time_limit: float
    operators: int
    buffers: int
    m_r: int
    capacities: tuple[Capacity, ...]
    solvers: tuple[str, ...]
    runs: tuple[Run, ...]

    @property
    def timed(self) -> bool:
        """True when at least one plan has a timeline: the time pictures are drawn."""
        return any(r.timeline is not None for r in self.runs)

    @property
    def time_note(self) -> str:
        """One line saying why the report has no time pictures ("" when it has them)."""
        if self.timed:
            return ""
        if self.target.compute_engine is None:
            return (f"Time unknown: target '{self.target.name}' has no [compute] table (docs/timing.md), "
                    "so there is no timeline and no latency curve.")
        if not any(r.ok for r in self.runs):
            return "Time unknown: no solver produced a plan."
        return (f"Time unknown: target '{self.target.name}' lacks a bandwidth the time model needs "
                "(docs/timing.md), so there is no timeline and no latency curve.")

    def runs_at(self, cap: Capacity) -> list[Run]:
        return [r for r in self.runs if r.capacity == cap]

    def best_at(self, cap: Capacity) -> Run | None:
        """The valid plan with the least non-compulsory traffic that fits the capacity;
        ties go to the smaller estimated time (when the target has ``[compute]``: the plan
        whose timeline the report draws should be the quickest of the tied ones), then the
        smaller compute-level peak, then the faster solver."""
        fitting = [r for r in self.runs_at(cap) if r.ok and r.respects_capacity]
        if not fitting:
            return None
        unknown = float("inf")
        return min(fitting, key=lambda r: (r.noncompulsory, r.estimated_seconds if r.estimated_seconds is not None
                                           else unknown, r.compute_peak, r.seconds))

    def is_best(self, run: Run) -> bool:
        """Every plan that fits and ties the least non-compulsory traffic is marked best."""
        best = self.best_at(run.capacity)
        return best is not None and run.ok and run.respects_capacity and run.noncompulsory == best.noncompulsory


# ---------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------
# One byte formatter for the whole tool (stowage.format); re-exported here for old callers.
fmt_bytes = _fmt_bytes
_axis_unit = axis_unit


# ---------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------
def resolve_capacities(specs: Sequence[str], graph: Graph, target: Hierarchy,
                       weights_in_compute_level: bool) -> tuple[Capacity, ...]:
    """Turn ``M_R``/``M_H``/``M_P``/sizes into bytes for this graph; duplicates are dropped."""
    out: list[Capacity] = []
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        cap = Capacity(spec, _resolve_one(spec, graph, target, weights_in_compute_level))
        if all(c.bytes != cap.bytes for c in out):
            out.append(cap)
    if not out:
        raise CapacityError("--capacity needs at least one size, e.g. --capacity M_R,M_P or 64KiB,128KiB")
    return tuple(out)


def _resolve_one(spec: str, graph: Graph, target: Hierarchy, weights_in_compute_level: bool) -> int:
    """One capacity spec in bytes, by the resolver ``compile`` and the sweep use
    (``stowage.solvers.budgets.resolve_capacity``); a comparison draws curves over bytes, so
    an unbounded capacity is an error here."""
    value = resolve_capacity(spec, graph, target, weights_in_compute_level)
    if value is None:
        raise CapacityError(f"capacity '{spec}' is unbounded; compare needs finite capacities")
    return int(value)


def run_comparison(
    graph: Graph,
    target: Hierarchy,
    capacity_specs: Sequence[str],
    solvers: Sequence[str],
    *,
    weights_in_compute_level: bool = False,
    time_limit: float = 10.0,
    seed: int = 0,
    on_run: Callable[[int, int, str, Capacity], object] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Run every solver at every capacity.  A solver that fails (capacity below M_R, an
    infeasible budget, an unknown name, a crash) becomes a ``Run`` with its error.
    ``on_run`` is called before each run; ``on_progress`` gets the solvers' own progress lines
    (``Problem.on_progress``)."""
    from stowage.plan.validate import validate
    from stowage.solvers.portfolio import monotone_over
    from stowage.solvers.problem import Problem
    from stowage.solvers.registry import get, solve

    for name in solvers:
        get(name)  # unknown names are a user error before anything runs
    caps = resolve_capacities(capacity_specs, graph, target, weights_in_compute_level)
    runs: list[Run] = []
    # Each solver's plans so far: a plan for a smaller capacity is a candidate at a larger
    # one (``monotone_over``), so along increasing capacities no curve rises (issue 14).
    solved: dict[str, list[tuple[str, Plan]]] = {name: [] for name in solvers}
    total = len(caps) * len(solvers)
    for cap in caps:
        problem = Problem(graph=graph, target=target.with_capacity(cap.bytes),
                          weights_in_compute_level=weights_in_compute_level,
                          time_limit=time_limit, seed=seed, on_progress=on_progress)
        for name in solvers:
            if on_run is not None:
                on_run(len(runs), total, name, cap)
            started = time.perf_counter()
            plan: Plan | None = None
            error: str | None = None
            try:
                plan = solve(problem, name)
                own = plan
                plan = monotone_over(problem, plan, solved[name])
                if plan is not own and not validate(graph, plan).ok:   # never expected: keep the solver's
                    plan = own
                solved[name].append((cap.label, own))
            except StowageError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a comparison records a crash and goes on
                log.debug("solver %s at %d crashed:\n%s", name, cap.bytes, traceback.format_exc())
                error = f"crashed: {type(exc).__name__}: {exc}"
            seconds = time.perf_counter() - started
            timeline: Timeline | None = None
            if plan is not None:
                plan, timeline, error = _timed(graph, problem.target, plan)
            log.info("%s @ %s: %s in %.2fs", name, cap.label, plan.solver.status if plan is not None else error,
                     seconds)
            runs.append(Run(name, cap, plan, error, seconds, timeline))
    return Comparison(
        model=graph.name, model_path=relative_path(graph.source_path), target=target,
        weights_in_compute_level=weights_in_compute_level, element_bytes=graph.element_bytes,
        time_limit=time_limit, operators=len(graph.computing_ops),
        buffers=sum(1 for _ in graph.buffers), m_r=m_r(graph, weights_in_compute_level),
        capacities=caps, solvers=tuple(solvers), runs=tuple(runs),
    )


def _timed(graph: Graph, target: Hierarchy, plan: Plan) -> tuple[Plan | None, Timeline | None, str | None]:
    """The plan with its timeline, as ``stowage.compile`` times plans (``stowage.solvers.timing``:
    ``estimate`` then ``annotate``), checked again by the validator since rule 9 judges the
    times.  A target without ``[compute]`` leaves the plan as it is, with no timeline.  A timed
    plan the validator rejects is a bug in the time model: the run records it as its error."""
    from stowage.plan.validate import validate
    from stowage.solvers.timing import annotate, estimate

    timeline = estimate(graph, plan, target)
    if timeline is None:
        return plan, None, None
    timed = annotate(plan, timeline)
    verdict = validate(graph, timed)
    if not verdict.ok:
        return None, None, f"internal error: the timed plan is invalid: {verdict.errors[0].message}"
    return timed, timeline, None


def relative_path(path: str | None) -> str | None:
    """``path`` relative to the working directory (a report must not embed the absolute path
    of the machine it was made on); unchanged when it is on another drive."""
    if path is None:
        return None
    try:
        return os.path.relpath(path)
    except ValueError:  # Windows: another drive
        return path


# ---------------------------------------------------------------------------------------
# Plan analysis for the pictures
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayoutBox:
    buffer: int
    offset: int
    bytes: int
    first: int
    last: int
    kind: str
    spilled: bool    # stored off-chip when this placement ends, and not a graph output store
    reloaded: bool   # its data came back from a spill level into this placement


def layout_boxes(plan: Plan) -> list[LayoutBox]:
    """Compute-level placements with their spill/reload marks, from the plan alone."""
    compute = plan.target.compute_level
    size = {b.id: b.bytes for b in plan.buffers}
    kind = {b.id: b.kind for b in plan.buffers}
    home = {b.id: b.home for b in plan.buffers}
    # A load into the compute level is a reload unless it is the first load of an input or
    # weight from its home (the compulsory one); a weight loaded twice is reloaded the 2nd time.
    loads_in: set[tuple[int, int]] = set()
    first_home_load: set[int] = set()
    for t in sorted(plan.transfers, key=lambda t: (t.step, t.phase != "before")):
        if t.dst != compute:
            continue
        if t.src == home.get(t.buffer) and kind[t.buffer] in ("input", "weight") and t.buffer not in first_home_load:
            first_home_load.add(t.buffer)
            continue
        loads_in.add((t.buffer, t.step))
    stores_out = {(t.buffer, t.step) for t in plan.transfers
                  if t.src == compute and t.dst != home.get(t.buffer)}
    boxes = []
    for p in plan.placements:
        if p.level != compute:
            continue
        boxes.append(LayoutBox(
            buffer=p.buffer, offset=p.offset, bytes=size[p.buffer], first=p.first, last=p.last,
            kind=kind[p.buffer],
            spilled=any((p.buffer, s) in stores_out for s in range(p.first, p.last + 1)),
            reloaded=(p.buffer, p.first) in loads_in,
        ))
    return boxes


def occupancy(plan: Plan) -> dict[str, list[int]]:
    """Bytes reserved in each level at each step (placements are inclusive step ranges);
    the one computation of ``stowage.plan.tables.live_bytes``."""
    return live_bytes(plan)


# ---------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _plain(text: object) -> str:
    """Text for a matplotlib label, shown as written: a ``$`` in a model, target or level name
    would start mathtext, and malformed mathtext (``$\\frac{$``) raises at ``savefig``."""
    return str(text).replace("$", r"\$")


def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _pyplot().close(fig)
    return buf.getvalue()


def plot_layout(run: Run) -> bytes:
    """The memory layout of one plan: what an engineer looks at first."""
    from matplotlib.collections import PatchCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    plt = _pyplot()
    assert run.plan is not None
    plan = run.plan
    boxes = layout_boxes(plan)
    peak = run.compute_peak or 0
    top = max(run.capacity.bytes, peak, 1)
    unit, scale = _axis_unit(top)
    nsteps = max(len(plan.steps), 1)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    many = len(boxes) > 150
    edge_w = 0.2 if many else 0.5
    plain = [b for b in boxes if not (b.spilled or b.reloaded)]
    marked = [b for b in boxes if b.spilled or b.reloaded]
    spill_steps = sorted({b.last for b in boxes if b.spilled})
    reload_steps = sorted({b.first for b in boxes if b.reloaded})

    def rect(b: LayoutBox) -> Rectangle:
        return Rectangle((b.first, b.offset / scale), b.last - b.first + 1, b.bytes / scale)

    ax.add_collection(PatchCollection(
        [rect(b) for b in plain], facecolors=[KIND_COLOURS.get(b.kind, "#56B4E9") for b in plain],
        edgecolors="#333333", linewidths=edge_w))
    for b in marked:  # few enough to draw one by one with a hatch
        ax.add_patch(Rectangle((b.first, b.offset / scale), b.last - b.first + 1, b.bytes / scale,
                               facecolor=SPILL_FACE if b.spilled else RELOAD_FACE, edgecolor="#333333",
                               alpha=0.85, linewidth=edge_w, hatch="////" if b.spilled else "\\\\\\\\"))
    # Marks on the top edge at every spill (after the step) and reload (before the step): a
    # sliver of a box is still found at any scale.
    ytop = top * 1.06 / scale
    if spill_steps:
        ax.plot([st + 1 for st in spill_steps], [ytop] * len(spill_steps), linestyle="none", marker="v",
                color=SPILL_EDGE, markersize=6, clip_on=False)
    if reload_steps:
        ax.plot(reload_steps, [ytop] * len(reload_steps), linestyle="none", marker="^",
                color=RELOAD_EDGE, markersize=6, clip_on=False)
    ax.axhline(run.capacity.bytes / scale, color=CAPACITY_COLOUR, linestyle="--", linewidth=1.2)
    ax.set_xlim(0, nsteps)
    ax.set_ylim(0, top * 1.06 / scale)
    ax.set_xlabel("step (operator in schedule order)")
    ax.set_ylabel(_plain(f"{plan.target.compute_level} address ({unit})"))
    nspill = sum(1 for b in boxes if b.spilled)
    nreload = sum(1 for b in boxes if b.reloaded)
    ax.set_title(_plain(
        f"{run.solver} at {run.capacity.label}: non-compulsory {fmt_bytes(run.noncompulsory)}, "
        f"peak {fmt_bytes(peak)}; {len(boxes)} placements, {nspill} spilled, {nreload} reloaded"),
        fontsize=9)
    kinds_present = sorted({b.kind for b in boxes})
    handles: list[Artist] = [Patch(facecolor=KIND_COLOURS.get(k, "#56B4E9"), edgecolor="#333333", label=_plain(k))
                             for k in kinds_present]
    if nspill:
        handles.append(Patch(facecolor=SPILL_FACE, edgecolor="#333333", hatch="////",
                             label="spilled after (v: step)"))
    if nreload:
        handles.append(Patch(facecolor=RELOAD_FACE, edgecolor="#333333", hatch="\\\\\\\\",
                             label="reloaded (^: step)"))
    handles.append(Line2D([], [], color=CAPACITY_COLOUR, linestyle="--",
                          label=f"capacity {fmt_bytes(run.capacity.bytes)}"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.25)
    return _png(fig)


def plot_traffic_curves(cmp: Comparison) -> bytes:
    """Non-compulsory traffic versus capacity, one curve per solver (only plans that fit)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    caps = sorted({c.bytes for c in cmp.capacities})
    ymax = max((r.noncompulsory or 0) for r in cmp.runs) if cmp.runs else 0
    xunit, xscale = _axis_unit(max(caps))
    yunit, yscale = _axis_unit(max(ymax, 1))
    markers = "osD^v<>ph*"
    traffic_curves: dict[str, list[tuple[int, float]]] = {}
    for name in cmp.solvers:
        # ``noncompulsory`` is None exactly when the run has no plan (not r.ok).
        traffic_curves[name] = sorted((r.capacity.bytes, r.noncompulsory) for r in cmp.runs
                                      if r.solver == name and r.noncompulsory is not None and r.respects_capacity)
    _plot_curves(ax, cmp.solvers, traffic_curves, markers, xscale, yscale)
    for c in cmp.capacities:
        if c.spec.upper() in ("M_R", "M_H", "M_P"):
            ax.axvline(c.bytes / xscale, color="#bbbbbb", linewidth=0.8, linestyle=":")
            ax.annotate(c.spec.upper(), (c.bytes / xscale, 0.02), xycoords=("data", "axes fraction"),
                        fontsize=8, color="#666666", ha="left", va="bottom", xytext=(3, 0),
                        textcoords="offset points")
    return _capacity_curve_png(fig, ax, xunit, f"non-compulsory traffic ({yunit})",
                               f"{cmp.model} on {cmp.target.name}: spill + reload traffic")


def _time_unit(seconds: float) -> tuple[str, float]:
    """An axis unit for a span of ``seconds``: s, ms or us (the divisor to apply)."""
    if seconds >= 1.0:
        return "s", 1.0
    if seconds >= 1e-3:
        return "ms", 1e-3
    return "\u00b5s", 1e-6


def timeline_lanes(run: Run, dma_channels: int = 1) -> list[tuple[str, list[tuple[float, float, str]]]]:
    """The boxes of the timeline picture, lane by lane (top first): ``compute`` with one
    ``(start, end, "step")`` box per step and one ``(start, end, "stall")`` box per wait before
    a step, then ``DMA n`` per channel (``dma_channels`` of the target, so an idle channel
    still shows as an empty lane) with one box per copy, labelled by its kind (load, store,
    spill, reload, move; ``weights`` for a streamed weight slice).  Kept apart from the
    drawing so tests can check it exactly."""
    from stowage.plan.tables import transfer_kinds

    assert run.plan is not None and run.timeline is not None
    tl = run.timeline
    compute: list[tuple[float, float, str]] = []
    for st in tl.steps:
        if st.stall > 0:
            compute.append((st.start - st.stall, st.start, "stall"))
        compute.append((st.start, st.end, "step"))
    nch = max([dma_channels, *(t.channel + 1 for t in tl.transfers)])
    kinds = transfer_kinds(run.plan)
    dma: list[list[tuple[float, float, str]]] = [[] for _ in range(nch)]
    for t in sorted(tl.transfers, key=lambda t: (t.channel, t.start, t.index)):
        dma[t.channel].append((t.start, t.end, kinds[t.index]))
    for w in tl.weight_loads:   # weight slices streamed on the same channels (docs/timing.md)
        while w.channel >= len(dma):
            dma.append([])
        dma[w.channel].append((w.start, w.end, "weights"))
    for boxes in dma:
        boxes.sort(key=lambda b: b[:2])
    return [("compute", compute), *((f"DMA {c}", boxes) for c, boxes in enumerate(dma))]


def plot_timeline(run: Run, dma_channels: int = 1) -> bytes:
    """The timeline of one plan: when the engine computes, when it waits (stalls) and when
    each DMA channel copies what, so a reload that stalls a short step is seen at once."""
    from matplotlib.patches import Patch

    plt = _pyplot()
    assert run.plan is not None and run.timeline is not None
    tl = run.timeline
    lanes = timeline_lanes(run, dma_channels)
    unit, scale = _time_unit(max(tl.makespan, 1e-12))
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.55 * len(lanes)))
    present: dict[str, str] = {}
    for row, (_, boxes) in enumerate(lanes):
        y = len(lanes) - 1 - row
        for kind in sorted({k for _, _, k in boxes}):
            spans = [(a / scale, (b - a) / scale) for a, b, k in boxes if k == kind]
            if kind == "step":
                colour, hatch = STEP_COLOUR, None
            elif kind == "stall":
                colour, hatch = STALL_COLOUR, "xxxx"
            else:
                colour, hatch = TRANSFER_COLOURS.get(kind, "#999999"), None
            ax.broken_barh(spans, (y - 0.35, 0.7), facecolors=colour, edgecolors="#333333", linewidth=0.3,
                           hatch=hatch, alpha=0.9 if kind != "stall" else 0.6)
            present.setdefault(kind, colour)
    ax.axvline(tl.lower_bound / scale, color=CAPACITY_COLOUR, linestyle="--", linewidth=1)
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels([name for name, _ in reversed(lanes)])
    ax.set_xlim(0, tl.makespan * 1.02 / scale)
    ax.set_ylim(-0.6, len(lanes) - 0.4)
    ax.set_xlabel(f"time ({unit})")
    ax.grid(axis="x", alpha=0.25)
    ax.set_title(_plain(
        f"{run.solver} at {run.capacity.label}: estimated {tl.makespan / scale:.3f} {unit}, "
        f"bound {tl.lower_bound / scale:.3f} {unit}, stall {tl.stall / scale:.3f} {unit}"), fontsize=9)
    order = ["step", "stall", "load", "reload", "spill", "store", "move"]
    handles: list[Artist] = [Patch(facecolor=present[k], edgecolor="#333333", hatch="xxxx" if k == "stall" else None,
                                   label=k) for k in order if k in present]
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], color=CAPACITY_COLOUR, linestyle="--", label="latency bound"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _png(fig)


def latency_points(cmp: Comparison) -> tuple[dict[str, list[tuple[int, float]]], list[tuple[int, float]]]:
    """The capacity-vs-latency curves: per solver ``(capacity bytes, estimated seconds)`` of
    its timed plans that fit, and the latency lower bound per capacity (the bound depends on the
    graph and the target only, so every timed run at a capacity gives the same one)."""
    curves: dict[str, list[tuple[int, float]]] = {}
    bounds: dict[int, float] = {}
    for r in cmp.runs:
        if r.timeline is None or not r.respects_capacity:
            continue
        curves.setdefault(r.solver, []).append((r.capacity.bytes, r.timeline.makespan))
        bounds.setdefault(r.capacity.bytes, r.timeline.lower_bound)
    return ({name: sorted(curves[name]) for name in cmp.solvers if name in curves}, sorted(bounds.items()))


def plot_latency_curves(cmp: Comparison) -> bytes:
    """Estimated time versus capacity, one curve per solver, and the latency lower bound: what
    more memory buys in time, beside what it buys in traffic."""
    plt = _pyplot()
    curves, bounds = latency_points(cmp)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    caps = sorted({c.bytes for c in cmp.capacities})
    top = max([t for pts in curves.values() for _, t in pts] + [b for _, b in bounds] + [1e-12])
    xunit, xscale = _axis_unit(max(caps))
    yunit, yscale = _time_unit(top)
    markers = "osD^v<>ph*"
    _plot_curves(ax, cmp.solvers, curves, markers, xscale, yscale)
    if bounds:
        ax.plot([b[0] / xscale for b in bounds], [b[1] / yscale for b in bounds], color="#666666",
                linestyle=":", linewidth=1.2, label="latency lower bound")
    return _capacity_curve_png(fig, ax, xunit, f"estimated time ({yunit})",
                               f"{cmp.model} on {cmp.target.name}: estimated time")


def _plot_curves(ax: Any, solvers: Sequence[str], curves: Mapping[str, Sequence[tuple[int, float]]], markers: str,
                 xscale: float, yscale: float) -> None:
    """One line per solver with points (capacity, value).  Solvers often tie; hollow markers
    of decreasing size and distinct dash patterns keep every curve visible where they
    coincide, and the legend names the twin."""
    drawn: dict[tuple[tuple[int, float], ...], str] = {}
    for i, name in enumerate(solvers):
        pts = curves.get(name)
        if not pts:
            continue
        twin = drawn.setdefault(tuple(pts), name)
        label = name if twin == name else f"{name} (same as {twin})"
        ax.plot([p[0] / xscale for p in pts], [p[1] / yscale for p in pts], marker=markers[i % len(markers)],
                label=_plain(label), linewidth=1.4, linestyle=("-", "--", "-.", ":")[i % 4],
                markersize=max(4, 11 - 2 * i), markerfacecolor="none", markeredgewidth=1.4, alpha=0.9)


def _capacity_curve_png(fig: Any, ax: Any, xunit: str, ylabel: str, title: str) -> bytes:
    """The axes both capacity curves share (traffic and time against capacity), as a PNG."""
    ax.set_xlabel(f"compute-level capacity ({xunit})")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.25)
    ax.set_title(_plain(title), fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def plot_occupancy(run: Run) -> bytes:
    """Bytes reserved in every level at every step, one panel per level."""
    plt = _pyplot()
    assert run.plan is not None
    occ = occupancy(run.plan)
    levels = run.plan.target.levels
    fig, axes = plt.subplots(len(levels), 1, figsize=(10, 1.6 * len(levels) + 0.6), sharex=True, squeeze=False)
    for ax, lv in zip(axes[:, 0], levels):
        series = occ[lv.name]
        cap = run.capacity.bytes if lv.name == run.plan.target.compute_level else lv.capacity
        used = max(series, default=0)
        # Off-chip levels are orders of magnitude larger than what a plan uses there: scale
        # to the usage and state the capacity in the label instead of flattening the curve.
        shown_cap = cap if cap is not None and cap <= 4 * max(used, 1) else None
        top = max(used, shown_cap or 0, 1)
        unit, scale = _axis_unit(top)
        xs = list(range(len(series) + 1))
        ax.stairs([v / scale for v in series], xs, fill=True, color="#56B4E9", alpha=0.8)
        if shown_cap is not None:
            ax.axhline(shown_cap / scale, color=CAPACITY_COLOUR, linestyle="--", linewidth=1)
        elif used == 0:
            ax.text(0.5, 0.5, "unused", transform=ax.transAxes, ha="center", va="center", color="#888888")
        cap_text = "unbounded" if cap is None else fmt_bytes(cap)
        ax.set_ylabel(_plain(f"{lv.name} ({unit})\ncap {cap_text}"), fontsize=8)
        ax.set_ylim(0, top * 1.1 / scale)
        ax.grid(alpha=0.25)
    axes[-1, 0].set_xlabel("step (operator in schedule order)")
    axes[0, 0].set_title(_plain(f"{run.solver} at {run.capacity.label}: occupancy per level (dashed: capacity)"),
                         fontsize=9)
    return _png(fig)


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figure:
    file: str      # PNG file name beside report.md
    caption: str
    png: bytes

    @property
    def data_uri(self) -> str:
        """The PNG as a ``data:`` URI: ``report.html.j2`` inlines every figure with it, so the
        HTML report is one self-contained file (no network, no files beside it)."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _row(run: Run, best: bool, levels: Sequence[str]) -> dict[str, object]:
    plan = run.plan
    note = ""
    if run.ok and not run.respects_capacity:
        note = "ignores the capacity (peak above it)"
    return {
        "solver": run.solver,
        "best": best,
        "status": plan.solver.status if plan else "error",
        "noncompulsory": fmt_int(plan.metrics.noncompulsory_bytes) if plan else "-",
        "compulsory": fmt_int(plan.metrics.compulsory_bytes) if plan else "-",
        "peaks": [fmt_bytes(plan.metrics.peak_bytes.get(lv, 0)) if plan else "-" for lv in levels],
        "bound": fmt_int(plan.solver.lower_bound) if plan else "-",
        "gap": fmt_int(run.gap),
        "seconds": f"{run.seconds:.2f}",
        "estimated_ms": "-" if run.timeline is None else f"{run.timeline.makespan * 1e3:.3f}",
        "stall_ms": "-" if run.timeline is None else f"{run.timeline.stall * 1e3:.3f}",
        "error": run.error or "",
        "note": note,
    }


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def spill_table(run: Run) -> dict[str, object] | None:
    """The spills and reloads of one plan (transfers that are not the compulsory loads and
    stores), as formatted rows; None when the plan moves nothing beyond those."""
    if run.plan is None:
        return None
    rows = [r for r in transfer_rows(run.plan) if r["kind"] not in ("load", "store")]
    if not rows:
        return None
    spilled = sum(r["bytes"] for r in rows if r["kind"] == "spill")
    reloaded = sum(r["bytes"] for r in rows if r["kind"] == "reload")
    return {
        "solver": run.solver,
        "summary": (f"{_count(sum(r['kind'] == 'spill' for r in rows), 'spill')} ({fmt_bytes(spilled)}), "
                    f"{_count(sum(r['kind'] == 'reload' for r in rows), 'reload')} ({fmt_bytes(reloaded)})"),
        "rows": [{"step": r["step"], "phase": r["phase"], "kind": r["kind"], "tensor": r["tensor"],
                  "bytes": fmt_bytes(r["bytes"]), "src": r["src"], "dst": r["dst"]} for r in rows[:MAX_TABLE_ROWS]],
        "more": max(0, len(rows) - MAX_TABLE_ROWS),
    }


def steps_table(run: Run) -> dict[str, object] | None:
    """Every step of one plan: operator, live bytes per level, and what moves around it."""
    if run.plan is None:
        return None
    plan = run.plan
    levels = [lv.name for lv in plan.target.levels]
    moves: dict[int, list[str]] = {}
    for r in transfer_rows(plan):
        moves.setdefault(r["step"], []).append(f"{r['kind']} {r['tensor']} {fmt_bytes(r['bytes'])}")
    rows = [{"step": r["step"], "op": r["op"], "op_type": r["op_type"],
             "live": [fmt_bytes(r[f"live_{lv}"]) for lv in levels], "transfers": "; ".join(moves.get(r["step"], []))}
            for r in step_rows(plan)]
    return {"solver": run.solver, "levels": levels, "rows": rows[:MAX_TABLE_ROWS],
            "more": max(0, len(rows) - MAX_TABLE_ROWS)}


def build_sections(cmp: Comparison, with_occupancy: bool | None = None) -> tuple[list[dict], list[Figure]]:
    """Per-capacity tables and figures, in report order.  ``with_occupancy`` (default: yes,
    for every target) draws the occupancy-over-time picture of each plan."""
    levels = [lv.name for lv in cmp.target.levels]
    if with_occupancy is None:
        with_occupancy = True
    sections, figures = [], []
    engine = cmp.target.compute_engine
    channels = engine.dma_channels if engine is not None else 1
    for cap in cmp.capacities:
        runs = cmp.runs_at(cap)
        figs = []
        for run in runs:
            if not run.ok:
                continue
            f = Figure(f"layout_{cap.slug}_{_safe(run.solver)}.png",
                       f"{run.solver} at {cap.label}: memory layout", plot_layout(run))
            figs.append(f)
            if with_occupancy:
                figs.append(Figure(f"occupancy_{cap.slug}_{_safe(run.solver)}.png",
                                   f"{run.solver} at {cap.label}: occupancy per level", plot_occupancy(run)))
        best = cmp.best_at(cap)
        if best is not None and best.timeline is not None:
            figs.append(Figure(f"timeline_{cap.slug}_{_safe(best.solver)}.png",
                               f"{best.solver} at {cap.label} (best plan): timeline",
                               plot_timeline(best, channels)))
        figures += figs
        sections.append({
            "capacity": cap,
            "rows": [_row(r, cmp.is_best(r), levels) for r in runs],
            "figures": figs,
            "spills": [t for t in (spill_table(r) for r in runs) if t is not None],
            "steps": steps_table(best) if best is not None else None,
        })
    return sections, figures


def autoescape_for(template_name: str | None) -> bool:
    """HTML templates are named ``*.html.j2``, which ``jinja2.select_autoescape(["html"])``
    does not match (it keys on the last suffix): decide on the name without ``.j2``.  Every
    name in a report (the model's file name, the target's and levels' names, error messages
    quoting operator names) is untrusted, so HTML output escapes everything it interpolates."""
    name = (template_name or "").lower()
    name = name.removesuffix(".j2").removesuffix(".jinja")
    return name.endswith((".html", ".htm", ".xml", ".svg"))


#: HTML specials as entities; what ends a table cell, a code span or starts a link escaped.
#: ``_`` and ``*`` stay: names such as ``M_R`` must read as written, and emphasis is inert.
_MD_SPECIAL = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "`": "\\`", "[": "\\[", "]": "\\]",
               "\\": "\\\\"}


def md_escape(value: object) -> str:
    """Text for a Markdown report: one line (newlines folded), HTML specials as entities (a
    Markdown renderer passes raw HTML through, so ``<script>`` must not survive), and the
    characters that would end a table cell or start code or a link escaped."""
    text = " ".join(str(value).split())
    return "".join(_MD_SPECIAL.get(ch, ch) for ch in text)


def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=autoescape_for,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["md"] = md_escape
    return env


def render_report(cmp: Comparison, with_occupancy: bool | None = None) -> dict[str, str | bytes]:
    """Every file of the report, by name relative to the report folder, rendered in memory:
    report.html, report.md, the PNGs and plans/*.json."""
    sections, figures = build_sections(cmp, with_occupancy)
    curves = Figure("traffic_vs_capacity.png", "non-compulsory traffic versus capacity", plot_traffic_curves(cmp))
    figures.append(curves)
    latency = (Figure("latency_vs_capacity.png", "estimated time versus capacity", plot_latency_curves(cmp))
               if cmp.timed else None)
    if latency is not None:
        figures.append(latency)
    files: dict[str, str | bytes] = {}
    for f in figures:
        files[f.file] = f.png
    for run in cmp.runs:
        if run.plan is not None:
            files[f"plans/{run.capacity.slug}_{_safe(run.solver)}.json"] = plan_to_json(run.plan)
    files.update(render_pages(cmp, sections, curves, latency))
    return files


def render_pages(cmp: Comparison, sections: Sequence[dict], curves: Figure,
                 latency: Figure | None = None) -> dict[str, str]:
    """report.html and report.md from the tables and figures (no drawing: the tests render
    hostile names through here quickly)."""
    env = _environment()
    ctx = {
        "cmp": cmp,
        "levels": [lv.name for lv in cmp.target.levels],
        "sections": sections,
        "curves": curves,
        "latency": latency,
        "time_note": cmp.time_note,
        "fmt_bytes": fmt_bytes,
        "setting": "activations + weights" if cmp.weights_in_compute_level else "activations only",
    }
    return {name: env.get_template(f"{name}.j2").render(**ctx) for name in ("report.html", "report.md")}


def write_report(cmp: Comparison, out_dir: str | os.PathLike[str], with_occupancy: bool | None = None) -> list[Path]:
    """Write report.html, report.md, the PNGs and plans/*.json; return the paths written.

    Everything is rendered first and then replaces the previous report as one set
    (``stowage.plan.files.write_output_set``): a failure (full disk, no permission, Ctrl-C)
    leaves the old report and no temporary file.  Errors are ``OutputError`` (one line)."""
    return write_output_set(out_dir, render_report(cmp, with_occupancy))


__all__ = [
    "Capacity", "Comparison", "Run", "autoescape_for", "fmt_bytes", "latency_points", "layout_boxes", "md_escape",
    "occupancy", "render_pages", "render_report", "resolve_capacities", "run_comparison", "timeline_lanes",
    "write_report",
]
