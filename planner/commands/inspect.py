"""``stowage inspect``: what the importer sees in a model, and its memory figures."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from stowage.commands._common import add_model_arguments, load_model_from_args, print_json
from stowage.ir.graph import Graph, TensorKind
from stowage.ir.lifetimes import summarize

NAME = "inspect"
HELP = "print a model's operators, tensors, buffers, M_R and peak live bytes (--per-op: a table per operator)"
ORDER = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--per-op", action="store_true",
                   help="one row per operator instead: type, MACs, input/weight/output bytes, footprint "
                   "(distinct bytes it touches plus working memory) and whether it runs in place; "
                   "with --json, the rows as 'per_op'")


def _in_place_summary(fused_ops: list[tuple[str, str, str]]) -> str:
    """``N fused into their operand's step``, and the Concats run in place apart (their
    producers write their slices; nothing is fused into anything)."""
    concats = sum(1 for _, _, into in fused_ops if into.startswith("slices written by "))
    text = f"{len(fused_ops) - concats} fused into their operand's step"
    return text + (f", {concats} Concat(s) written in place by their producers" if concats else "")


def per_op_rows(graph: Graph, fused: Graph | None = None) -> list[dict[str, Any]]:
    """One row per operator that does work (the steps and the in-place operators fused into
    them; views and constant folds are free and left out), in file order.

    Bytes are of distinct buffers: an operator reading one tensor twice counts it once, and an
    in-place operator whose output shares its operand's buffer (``--in-place on``) counts that
    buffer once, which is why its footprint is smaller than with ``--in-place off``.  ``macs``
    is the importer's estimate (``stowage.ir.cost``) when it counts multiply-accumulates, else
    None (``cost`` and ``cost_unit`` carry the estimate whatever its unit).  ``fused`` (the
    graph after ``fuse_in_place``) gives ``can_run_in_place_into`` also when ``graph`` is
    not fused, so ``--in-place off`` still shows which operators could."""
    could: dict[int, str] = {}
    if fused is not None:
        could = {op.index: fused.operators[op.fused_into].name for op in fused.operators
                 if op.fused_into is not None}
    bufs = {b.id: b for b in graph.buffers}
    rows = []
    for op in graph.operators:
        if not (op.computing or op.fused_into is not None):
            continue
        reads = dict.fromkeys(graph.tensor_buffer[n] for n in op.inputs if n and n in graph.tensor_buffer)
        writes = dict.fromkeys(graph.tensor_buffer[n] for n in op.outputs if n and n in graph.tensor_buffer)
        weight = sum(bufs[b].bytes for b in reads if bufs[b].kind == TensorKind.WEIGHT)
        data_in = sum(bufs[b].bytes for b in reads if bufs[b].kind != TensorKind.WEIGHT)
        out = sum(bufs[b].bytes for b in writes)
        footprint = sum(bufs[b].bytes for b in {**reads, **writes}) + op.extra_bytes
        rows.append({
            "index": op.index, "op": op.name, "op_type": op.op_type,
            "macs": op.cost if op.cost_unit == "MACs" else None, "cost": op.cost, "cost_unit": op.cost_unit,
            "input_bytes": data_in, "weight_bytes": weight, "output_bytes": out,
            "footprint_bytes": footprint, "extra_bytes": op.extra_bytes,
            "in_place_into": None if op.fused_into is None else graph.operators[op.fused_into].name,
            "can_run_in_place_into": could.get(op.index),
            "opaque": op.opaque,
        })
    return rows


def _print_per_op(rows: list[dict[str, Any]], in_place: bool) -> None:
    from stowage.format import fmt_bytes, fmt_int, print_table

    cols = ["#", "operator", "type", "MACs", "inputs", "weights", "outputs", "footprint", "in place"]
    body: list[list[object]] = [[
        r["index"], r["op"], r["op_type"], fmt_int(r["macs"]), fmt_bytes(r["input_bytes"]),
        fmt_bytes(r["weight_bytes"]), fmt_bytes(r["output_bytes"]), fmt_bytes(r["footprint_bytes"]),
        f"into {r['in_place_into']}" if r["in_place_into"]
        else (f"can, into {r['can_run_in_place_into']}" if r["can_run_in_place_into"] else ""),
    ] for r in rows]
    fused = sum(1 for r in rows if r["in_place_into"])
    title = (f"{len(rows)} operators, {fused} run in place" if in_place
             else f"{len(rows)} operators (--in-place off: none runs in place; 'can' marks those that would)")
    print_table(cols, body, title=title, numeric={"#", "MACs", "inputs", "weights", "outputs", "footprint"})


def run(args: argparse.Namespace) -> int:
    from stowage.ir.inplace import fuse_in_place, in_place_report
    from stowage.ir.lifetimes import m_r
    from stowage.ir.qdq import qdq_report, qdq_summary

    raw = load_model_from_args(argparse.Namespace(**{**vars(args), "in_place": "off"}))
    fused = fuse_in_place(raw)
    graph = fused if args.in_place == "on" else raw
    if args.per_op:
        per_op = per_op_rows(graph, fused)
        if args.json:
            print_json({"model": graph.name, "in_place": args.in_place == "on", "per_op": per_op})
        else:
            _print_per_op(per_op, args.in_place == "on")
        return 0
    s = summarize(graph)
    # M_R both ways, so a COSMA-protocol user sees the figure the paper's tools report and an
    # NPU user the one with activations run in place.
    both = {"off": (m_r(raw, True), m_r(raw, False)), "on": (m_r(fused, True), m_r(fused, False))}
    fused_ops = in_place_report(fused)
    if args.json:
        d = asdict(s)
        d["opaque"] = [{"op": n, "op_type": t, "why": w} for n, t, w in s.opaque]
        d["element_bytes"] = graph.element_bytes
        d["dims"] = dict(graph.dims)
        d["input_values"] = {k: list(v) for k, v in graph.input_values.items()}
        d["import_notes"] = list(graph.import_notes)
        d["in_place"] = args.in_place == "on"
        d["m_r_in_place"] = {k: {"with_weights": a, "without_weights": b} for k, (a, b) in both.items()}
        d["in_place_ops"] = [{"op": n, "op_type": t, "into": h} for n, t, h in fused_ops]
        d["qdq_groups"] = [{"step": n, "op_type": t, "members": list(ms)} for n, t, ms in qdq_report(raw)]
        print_json(d)
        return 0
    rows = [
        ("model", s.name),
        ("operators", f"{s.operators} ({s.computing_operators} computing; views and constant folds are free)"),
        ("tensors", s.tensors),
        ("buffers (planned)", s.buffers),
        ("weight bytes", f"{s.weight_bytes:,}"),
        ("activation bytes", f"{s.activation_bytes:,}"),
        ("input bytes", f"{s.input_bytes:,}"),
        ("output bytes", f"{s.output_bytes:,}"),
        ("largest activation", f"{s.largest_activation:,} ({s.largest_activation_name})"),
        ("M_R with weights", f"{s.m_r_with_weights:,}"),
        ("M_R without weights", f"{s.m_r_without_weights:,}"),
        ("M_R, in place off / on", (f"{both['off'][0]:,} / {both['on'][0]:,} with weights, "
                                    f"{both['off'][1]:,} / {both['on'][1]:,} without")),
        ("in-place operators", _in_place_summary(fused_ops) + ("" if args.in_place == "on" else " with --in-place on")),
        ("QDQ groups folded (int8 steps)", qdq_summary(raw) if raw.qdq else "not folded (--qdq off)"),
        ("peak live, file order, with weights", f"{s.peak_live_file_order_with_weights:,}"),
        ("peak live, file order, without weights", f"{s.peak_live_file_order_without_weights:,}"),
    ]
    if graph.element_bytes:
        rows.append(("element bytes (override)", graph.element_bytes))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if s.opaque:
        print(f"opaque operators ({len(s.opaque)}):")
        for n, t, why in s.opaque:
            print(f"  {n} ({t}): {why}")
    if graph.import_notes:
        # What the importer decided (fixed values, If branches, overridden or executed shapes).
        print(f"import notes ({len(graph.import_notes)}):")
        for note in graph.import_notes:
            print(f"  {note}")
    return 0
