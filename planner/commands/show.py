"""``stowage show``: a plan file as tables people can read.

The plan file is for tools; an engineer checking where a tensor sits, what is spilled and
when, or how full SRAM is at a step wants tables.  ``--allocation`` (buffer, tensor, level,
offset range, steps), ``--transfers`` (step, kind load/reload/spill/store/move, tensor) and
``--steps`` (operator, live bytes per level, transfer bytes) come from
``stowage.plan.tables``, the rows ``Plan.steps_table()`` and ``Plan.to_dataframe()`` give
Python users.  No model is needed: everything is in the plan.
"""

from __future__ import annotations

import argparse
from typing import Any

NAME = "show"
HELP = "print a plan file as tables: --allocation, --transfers, --steps (default: all three)"
DESCRIPTION = (
    "Print PLAN.json (written by 'stowage compile') as tables: --allocation (every placement: buffer, "
    "tensor, level, offset range, steps), --transfers (every copy with its kind: load, reload, spill, "
    "store, or move between two off-chip levels) and --steps (operator, live bytes per level, bytes "
    "moved around it). With none of them, all three. --json prints the same rows as JSON."
)
ORDER = 42

TABLES = ("allocation", "transfers", "steps")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("plan", metavar="PLAN.json", help="plan file written by 'stowage compile' (OUTDIR/plan.json)")
    p.add_argument("--allocation", action="store_true",
                   help="every placement: buffer, tensor, kind, level, offset range [start, end), steps")
    p.add_argument("--transfers", action="store_true",
                   help="every transfer in execution order with its kind (load/reload/spill/store/move)")
    p.add_argument("--steps", action="store_true",
                   help="every step: operator, live bytes per level, bytes loaded/reloaded/spilled/stored")
    p.add_argument("--level", default=None, metavar="NAME",
                   help="--allocation: only placements in this level (e.g. sram)")
    p.add_argument("--json", action="store_true",
                   help="print {\"allocation\": [...], ...} with plain integers instead of tables")


def _allocation(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[object]]]:
    from stowage.format import fmt_bytes, fmt_int

    cols = ["buffer", "tensor", "kind", "level", "offset", "end", "bytes", "steps"]
    out = [[r["buffer"], r["tensor"], r["kind"], r["level"], fmt_int(r["offset"]), fmt_int(r["end"]),
            fmt_bytes(r["bytes"]), f"{r['first']}..{r['last']}"] for r in rows]
    return cols, out


def _transfers(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[object]]]:
    from stowage.format import fmt_bytes

    cols = ["step", "phase", "kind", "buffer", "tensor", "bytes", "from", "to"]
    out = [[r["step"], r["phase"], r["kind"], r["buffer"], r["tensor"], fmt_bytes(r["bytes"]), r["src"], r["dst"]]
           for r in rows]
    return cols, out


def _steps(rows: list[dict[str, Any]], levels: list[str]) -> tuple[list[str], list[list[object]]]:
    from stowage.format import fmt_bytes

    def moved(n: int) -> str:
        return fmt_bytes(n) if n else ""

    cols = ["step", "op", "type", "in place", *(f"live {lv}" for lv in levels),
            "loaded", "reloaded", "spilled", "stored"]
    out = [[r["step"], r["op"], r["op_type"], r["fused"], *(fmt_bytes(r[f"live_{lv}"]) for lv in levels),
            moved(r["loaded"]), moved(r["reloaded"]), moved(r["spilled"]), moved(r["stored"])] for r in rows]
    return cols, out


def run(args: argparse.Namespace) -> int:
    from stowage.commands._common import print_json
    from stowage.errors import StowageError
    from stowage.format import print_table
    from stowage.plan import load_plan
    from stowage.plan import tables as t

    plan = load_plan(args.plan)
    levels = [lv.name for lv in plan.target.levels]
    if args.level is not None and args.level not in levels:
        raise StowageError(f"--level {args.level}: the plan's target has levels {', '.join(levels)}")
    wanted = [name for name in TABLES if getattr(args, name)] or list(TABLES)
    rows: dict[str, list[dict[str, Any]]] = {}
    if "allocation" in wanted:
        rows["allocation"] = [r for r in t.allocation_rows(plan) if args.level in (None, r["level"])]
    if "transfers" in wanted:
        rows["transfers"] = t.transfer_rows(plan)
    if "steps" in wanted:
        rows["steps"] = t.step_rows(plan)
    if args.json:
        print_json(rows)
        return 0
    numeric = {"buffer", "offset", "end", "bytes", "step", "loaded", "reloaded", "spilled", "stored",
               *(f"live {lv}" for lv in levels)}
    for name in wanted:
        if name == "allocation":
            cols, body = _allocation(rows[name])
            title = f"allocation: {len(body)} placements" + (f" in {args.level}" if args.level else "")
        elif name == "transfers":
            cols, body = _transfers(rows[name])
            counts = {k: sum(1 for r in rows[name] if r["kind"] == k) for k in t.TRANSFER_KINDS}
            title = (f"transfers: {len(body)}"
                     + "".join(f", {n} {k}" for k, n in counts.items() if n))
            rows_moved = sum(len(st.transfers) for c in plan.cascades for st in c.stripes)
            if rows_moved:
                # A cascade's row copies (stripes, docs/tiling.md) are not whole-buffer transfers.
                title += (f" (plus {rows_moved} row copies inside the {len(plan.cascades)} tiled cascades, "
                          "not listed)")
        else:
            cols, body = _steps(rows[name], levels)
            title = f"steps: {len(body)}" + (f" ({len(plan.cascades)} tiled cascades)" if plan.cascades else "")
        print_table(cols, body, title=title, numeric=numeric)
    return 0
