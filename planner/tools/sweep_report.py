"""``sweep.md`` / ``sweep.html``: what an architect reads after a sweep.

Per model and target: non-compulsory traffic versus capacity, one curve per solver; the
Pareto front (capacity vs the best traffic any solver found); and the smallest *sampled*
capacity with zero non-compulsory traffic -- the number that says how much SRAM to build.
Capacities a solver refused (below M_R, infeasible) are marked on the plot (a red x on the
axis, and a shaded band up to the largest refused capacity), so a curve that starts late says
why.  Numbers in the tables go through ``stowage.format`` (``12,328`` bytes, ``32.00 KiB``).
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from stowage.format import axis_unit, fmt_bytes, fmt_bytes_exact, fmt_int
from stowage.plan import write_text_atomic
from stowage.tools.sweep import as_number

REFUSED_COLOUR = "#D55E00"


Row = dict[str, Any]


def _ok(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.get("status") not in ("error", "") and as_number(r.get("capacity_bytes")) is not None]


def refused(rows: list[Row]) -> list[tuple[int, str]]:
    """(capacity, solver) of the cells that failed at a known capacity, capacity ascending."""
    return sorted((int(float(r["capacity_bytes"])), r["solver"]) for r in rows
                  if r.get("status") == "error" and as_number(r.get("capacity_bytes")) is not None)


def pareto_front(rows: list[Row]) -> list[tuple[int, int]]:
    """Non-dominated (capacity, best non-compulsory traffic) points, capacity ascending."""
    best: dict[int, int] = {}
    for r in _ok(rows):
        cap, traffic = int(float(r["capacity_bytes"])), int(float(r["noncompulsory_bytes"]))
        best[cap] = min(traffic, best.get(cap, traffic))
    front: list[tuple[int, int]] = []
    for cap in sorted(best):
        if not front or best[cap] < front[-1][1]:
            front.append((cap, best[cap]))
    return front


def smallest_zero_traffic(rows: list[Row]) -> tuple[int, str] | None:
    """Smallest sampled capacity at which some solver spills nothing, with that solver."""
    zero = [
        (int(float(r["capacity_bytes"])), r["solver"]) for r in _ok(rows)
        if as_number(r.get("noncompulsory_bytes")) == 0
    ]
    return min(zero) if zero else None


def _plot(model: str, target: str, rows: list[Row]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ok = _ok(rows)
    bad = refused(rows)
    xs = [float(r["capacity_bytes"]) for r in ok] + [float(c) for c, _ in bad]
    xunit, xscale = axis_unit(max(xs, default=1.0))
    yunit, yscale = axis_unit(max((float(r["noncompulsory_bytes"]) for r in ok), default=1.0))
    by_solver: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in ok:
        by_solver[r["solver"]].append((float(r["capacity_bytes"]) / xscale, float(r["noncompulsory_bytes"]) / yscale))
    markers = "osD^v<>ph*"
    for i, (solver, pts) in enumerate(sorted(by_solver.items())):
        pts.sort()
        # Tied solvers share points: hollow markers of decreasing size and distinct dashes
        # keep every curve visible.
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=markers[i % len(markers)], label=solver,
                linestyle=("-", "--", "-.", ":")[i % 4], markersize=max(4, 10 - 2 * i), markerfacecolor="none",
                markeredgewidth=1.3)
    front = pareto_front(rows)
    if front:
        ax.step([c / xscale for c, _ in front], [t / yscale for _, t in front], where="post",
                color="black", linestyle="--", linewidth=1, label="Pareto front")
    if bad:
        top = max(c for c, _ in bad) / xscale
        ax.axvspan(min(min(xs) / xscale, top), top, color=REFUSED_COLOUR, alpha=0.08, linewidth=0)
        ax.plot([c / xscale for c, _ in bad], [0.0] * len(bad), linestyle="none", marker="x", color=REFUSED_COLOUR,
                markersize=8, clip_on=False, label=f"refused ({len(bad)} cells)")
    ax.set_xlabel(f"compute-level capacity ({xunit})")
    ax.set_ylabel(f"non-compulsory traffic ({yunit})")
    ax.set_title(f"{Path(model).stem} on {target}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _int(v: Any) -> str:
    n = as_number(v)
    return fmt_int(None if n is None else int(n))


def _ratio(v: Any) -> str:
    n = as_number(v)
    return "-" if n is None else f"{n:.2%}"


def _secs(v: Any) -> str:
    n = as_number(v)
    return "-" if n is None else f"{n:.2f}"


def _ms(v: Any) -> str:
    """Seconds of the time model in milliseconds (a network's estimate is a few ms); "-" when
    the time is unknown (a target without ``[compute]``)."""
    n = as_number(v)
    return "-" if n is None else f"{n * 1e3:.3f}"


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    """Temp file + rename, and no temp file left behind when the write fails (a full disk):
    a picture is either the new one or the old one.  ``OSError`` propagates; the sweep turns it
    into one line."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_sweep_report(rows: list[Row], out: Path) -> list[Path]:
    """Write ``sweep.md``, ``sweep.html`` and one PNG per model and target into ``out``.
    ``OSError`` (full disk, read-only folder) propagates to ``sweep``, which reports it as a
    ``ResultsDirError`` (every cell is already in ``results.csv``)."""
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["target"])].append(r)
    md = ["# Sweep results", ""]
    body = ["<h1>Sweep results</h1>"]
    failed = [r for r in rows if r.get("status") == "error"]
    md.append(f"{len(rows)} cells, {len(failed)} failed. Table: `results.csv`.")
    md.append("")
    md.append("| model | target | smallest sampled capacity with zero non-compulsory traffic | solver |")
    md.append("|---|---|---|---|")
    summary_rows = []
    for (model, target), grp in sorted(groups.items()):
        z = smallest_zero_traffic(grp)
        cap = fmt_bytes_exact(z[0]) if z else "none sampled"
        md.append(f"| {Path(model).stem} | {target} | {cap} | {z[1] if z else '-'} |")
        summary_rows.append((Path(model).stem, target, cap, z[1] if z else "-"))
    body.append("<table><tr><th>model</th><th>target</th><th>smallest sampled capacity with zero "
                "non-compulsory traffic</th><th>solver</th></tr>")
    body.extend("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in sr) + "</tr>" for sr in summary_rows)
    body.append("</table>")
    files: list[Path] = []
    for (model, target), grp in sorted(groups.items()):
        stem = f"sweep-{Path(model).stem}-{target}".replace("/", "_")
        png = _plot(model, target, grp) if _ok(grp) or refused(grp) else None
        md += ["", f"## {Path(model).stem} on {target}", ""]
        body.append(f"<h2>{html.escape(Path(model).stem)} on {html.escape(target)}</h2>")
        if png:
            png_path = out / f"{stem}.png"
            _write_bytes_atomic(png_path, png)
            files.append(png_path)
            md += [f"![traffic vs capacity]({png_path.name})", ""]
            body.append(f'<img alt="traffic vs capacity" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
        front = pareto_front(grp)
        md.append("Pareto front (capacity -> best non-compulsory traffic): "
                  + (", ".join(f"{fmt_bytes(c)} -> {fmt_bytes(t)}" for c, t in front) or "none"))
        bad = refused(grp)
        if bad:
            md.append("")
            md.append(f"Refused ({len(bad)} cells, marked x on the plot): "
                      + ", ".join(f"{solver} at {fmt_bytes(c)}" for c, solver in bad))
        headers = ("capacity", "bytes", "solver", "status", "non-compulsory", "compulsory", "compute peak",
                   "gap (B)", "gap ratio", "est. ms", "bound ms", "s", "same as", "plan from", "error")
        md += ["", "| " + " | ".join(headers) + " |", "|---" * len(headers) + "|"]
        body.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in headers) + "</tr>")
        for r in grp:
            cells = [r["capacity_spec"], _int(r.get("capacity_bytes")), r["solver"], r["status"],
                     _int(r.get("noncompulsory_bytes")), _int(r.get("compulsory_bytes")),
                     _int(r.get("compute_peak_bytes")), _int(r.get("gap")), _ratio(r.get("gap_ratio")),
                     _ms(r.get("estimated_seconds")), _ms(r.get("latency_bound")), _secs(r.get("seconds")),
                     r.get("same_as") or "", r.get("plan_from") or "", r.get("error") or ""]
            md.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
            body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        body.append("</table>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>Stowage sweep</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    write_text_atomic(out / "sweep.md", "\n".join(md) + "\n")
    write_text_atomic(out / "sweep.html", page)
    return files + [out / "sweep.md", out / "sweep.html"]
