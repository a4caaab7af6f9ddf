"""A plan as rows: allocation, transfers with their kind, and live bytes per step.

``stowage show`` prints these tables, the comparison report tabulates spills and steps from
them, and ``Plan.steps_table()`` / ``Plan.to_dataframe()`` hand them to Python users, so the
three cannot disagree about what a transfer is or how many bytes are live at a step.  Rows are
plain dicts of ints and strings (no formatting: that is the caller's, ``stowage.format``).

Transfer kinds are derived from the plan alone (the plan file stores only source, destination,
step and phase):

* ``load``: into the compute level from the buffer's home, the first time, for a graph input or a
  weight (compulsory traffic);
* ``reload``: any other copy into the compute level (data that was spilled, or a weight read a
  second time);
* ``store``: a graph output copied from the compute level to its home, the first time
  (compulsory);
* ``spill``: any other copy out of the compute level;
* ``move``: a copy between two levels neither of which is the compute level.
"""

from __future__ import annotations

from typing import Any

from stowage.plan.model import Plan

__all__ = ["TRANSFER_KINDS", "allocation_rows", "live_bytes", "step_rows", "transfer_kinds", "transfer_rows"]

TRANSFER_KINDS = ("load", "reload", "spill", "store", "move")


def transfer_kinds(plan: Plan) -> list[str]:
    """The kind of each of ``plan.transfers``, in the same order (see the module docstring)."""
    compute = plan.target.compute_level
    buf = {b.id: b for b in plan.buffers}
    order = sorted(range(len(plan.transfers)),
                   key=lambda i: (plan.transfers[i].step, plan.transfers[i].phase != "before", i))
    kinds = [""] * len(plan.transfers)
    loaded: set[int] = set()
    stored: set[int] = set()
    for i in order:
        t = plan.transfers[i]
        b = buf[t.buffer]
        if t.dst == compute:
            first = t.buffer not in loaded
            loaded.add(t.buffer)
            kinds[i] = "load" if first and t.src == b.home and b.kind in ("input", "weight") else "reload"
        elif t.src == compute:
            first = t.buffer not in stored
            stored.add(t.buffer)
            kinds[i] = "store" if first and t.dst == b.home and b.kind == "output" else "spill"
        else:
            kinds[i] = "move"
    return kinds


def live_bytes(plan: Plan) -> dict[str, list[int]]:
    """Bytes reserved in each level at each step (placements are inclusive step ranges), by
    level name in the target's order; one value per plan step."""
    n = len(plan.steps)
    size = {b.id: b.bytes for b in plan.buffers}
    delta = {lv.name: [0] * (n + 1) for lv in plan.target.levels}
    for p in plan.placements:
        d = delta[p.level]
        d[p.first] += size[p.buffer]
        d[min(p.last + 1, n)] -= size[p.buffer]
    out: dict[str, list[int]] = {}
    for name, d in delta.items():
        running, series = 0, []
        for s in range(n):
            running += d[s]
            series.append(running)
        out[name] = series
    return out


def allocation_rows(plan: Plan) -> list[dict[str, Any]]:
    """One row per placement, by level (target order), then offset, then first step:
    ``buffer, tensor, kind, level, offset, end`` (exclusive), ``bytes, first, last``."""
    buf = {b.id: b for b in plan.buffers}
    level_rank = {lv.name: i for i, lv in enumerate(plan.target.levels)}
    rows = []
    for p in sorted(plan.placements, key=lambda p: (level_rank.get(p.level, 99), p.offset, p.first, p.buffer)):
        b = buf[p.buffer]
        rows.append({
            "buffer": p.buffer, "tensor": b.tensors[0] if b.tensors else f"#{p.buffer}", "kind": b.kind,
            "level": p.level, "offset": p.offset, "end": p.offset + b.bytes, "bytes": b.bytes,
            "first": p.first, "last": p.last,
        })
    return rows


def transfer_rows(plan: Plan) -> list[dict[str, Any]]:
    """One row per transfer in execution order (step, then before/after):
    ``step, phase, kind, buffer, tensor, bytes, src, dst``."""
    kinds = transfer_kinds(plan)
    size = {b.id: b.bytes for b in plan.buffers}
    names = {b.id: (b.tensors[0] if b.tensors else f"#{b.id}") for b in plan.buffers}
    order = sorted(range(len(plan.transfers)),
                   key=lambda i: (plan.transfers[i].step, plan.transfers[i].phase != "before", i))
    rows = []
    for i in order:
        t = plan.transfers[i]
        rows.append({"step": t.step, "phase": t.phase, "kind": kinds[i], "buffer": t.buffer,
                     "tensor": names[t.buffer], "bytes": size[t.buffer], "src": t.src, "dst": t.dst})
    return rows


def step_rows(plan: Plan) -> list[dict[str, Any]]:
    """One row per plan step: ``step, op, op_type, fused`` (in-place operators, comma
    separated), ``live_<level>`` (bytes reserved there) for every level, and the transfers
    around it: bytes loaded (``load`` + ``reload``), spilled (``spill``), stored (``store``),
    and ``transfers`` (their count)."""
    live = live_bytes(plan)
    kinds = transfer_kinds(plan)
    size = {b.id: b.bytes for b in plan.buffers}
    per_step: list[dict[str, int]] = [{"loaded": 0, "reloaded": 0, "spilled": 0, "stored": 0, "transfers": 0}
                                      for _ in plan.steps]
    column = {"load": "loaded", "reload": "reloaded", "spill": "spilled", "store": "stored", "move": None}
    for t, k in zip(plan.transfers, kinds):
        if not 0 <= t.step < len(per_step):
            continue
        counts = per_step[t.step]
        counts["transfers"] += 1
        col = column[k]
        if col is not None:
            counts[col] += size[t.buffer]
    rows: list[dict[str, Any]] = []
    for i, st in enumerate(plan.steps):
        row: dict[str, Any] = {"step": i, "op": st.op, "op_type": st.op_type, "fused": ",".join(st.fused)}
        for lv in plan.target.levels:
            row[f"live_{lv.name}"] = live[lv.name][i]
        row.update(per_step[i])
        rows.append(row)
    return rows
