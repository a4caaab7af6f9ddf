"""``sweep.md`` / ``sweep.html``: what an architect reads after a sweep.

Per model and target: non-compulsory traffic versus capacity, one curve per solver; the
Pareto front (capacity vs the best traffic any solver found); and the smallest *sampled*
capacity with zero non-compulsory traffic -- the number that says how much SRAM to build.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections import defaultdict
from pathlib import Path

from stowage.plan import write_text_atomic
from stowage.tools.report import fmt_bytes as _fmt_bytes
from stowage.tools.sweep import as_number


def _ok(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r.get("status") not in ("error", "") and as_number(r.get("capacity_bytes")) is not None]


def pareto_front(rows: list[dict[str, str]]) -> list[tuple[int, int]]:
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


def smallest_zero_traffic(rows: list[dict[str, str]]) -> tuple[int, str] | None:
    """Smallest sampled capacity at which some solver spills nothing, with that solver."""
    zero = [
        (int(float(r["capacity_bytes"])), r["solver"]) for r in _ok(rows)
        if as_number(r.get("noncompulsory_bytes")) == 0
    ]
    return min(zero) if zero else None


def _plot(model: str, target: str, rows: list[dict[str, str]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    by_solver: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in _ok(rows):
        by_solver[r["solver"]].append((float(r["capacity_bytes"]) / 1024, float(r["noncompulsory_bytes"]) / 1024))
    for solver, pts in sorted(by_solver.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=solver)
    front = pareto_front(rows)
    if front:
        ax.step([c / 1024 for c, _ in front], [t / 1024 for _, t in front], where="post",
                color="black", linestyle="--", linewidth=1, label="Pareto front")
    ax.set_xlabel("compute-level capacity (KiB)")
    ax.set_ylabel("non-compulsory traffic (KiB)")
    ax.set_title(f"{Path(model).stem} on {target}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


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


def write_sweep_report(rows: list[dict[str, str]], out: Path) -> list[Path]:
    """Write ``sweep.md``, ``sweep.html`` and one PNG per model and target into ``out``.
    ``OSError`` (full disk, read-only folder) propagates to ``sweep``, which reports it as a
    ``ResultsDirError`` (every cell is already in ``results.csv``)."""
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
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
        cap = f"{z[0]:,} B ({_fmt_bytes(z[0])})" if z else "none sampled"
        md.append(f"| {Path(model).stem} | {target} | {cap} | {z[1] if z else '-'} |")
        summary_rows.append((Path(model).stem, target, cap, z[1] if z else "-"))
    body.append("<table><tr><th>model</th><th>target</th><th>smallest sampled capacity with zero "
                "non-compulsory traffic</th><th>solver</th></tr>")
    body.extend("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in sr) + "</tr>" for sr in summary_rows)
    body.append("</table>")
    files: list[Path] = []
    for (model, target), grp in sorted(groups.items()):
        stem = f"sweep-{Path(model).stem}-{target}".replace("/", "_")
        png = _plot(model, target, grp) if _ok(grp) else None
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
                  + (", ".join(f"{_fmt_bytes(c)} -> {_fmt_bytes(t)}" for c, t in front) or "none"))
        headers = ("capacity", "bytes", "solver", "status", "non-compulsory", "compulsory", "compute peak", "gap",
                   "s", "error")
        md += ["", "| " + " | ".join(headers) + " |", "|---" * len(headers) + "|"]
        body.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in headers) + "</tr>")
        for r in grp:
            cells = [r["capacity_spec"], r["capacity_bytes"], r["solver"], r["status"], r["noncompulsory_bytes"],
                     r["compulsory_bytes"], r["compute_peak_bytes"], r["gap"], r["seconds"], r.get("error", "")]
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
