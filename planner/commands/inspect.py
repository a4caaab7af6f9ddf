"""``stowage inspect``: what the importer sees in a model, and its memory figures."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from stowage.commands._common import add_model_arguments, load_model_from_args, print_json
from stowage.ir.lifetimes import summarize

NAME = "inspect"
HELP = "print a model's operators, tensors, buffers, M_R and peak live bytes"
ORDER = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from stowage.ir.inplace import fuse_in_place, in_place_report
    from stowage.ir.lifetimes import m_r

    raw = load_model_from_args(argparse.Namespace(**{**vars(args), "in_place": "off"}))
    fused = fuse_in_place(raw)
    graph = fused if args.in_place == "on" else raw
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
        d["in_place"] = args.in_place == "on"
        d["m_r_in_place"] = {k: {"with_weights": a, "without_weights": b} for k, (a, b) in both.items()}
        d["in_place_ops"] = [{"op": n, "op_type": t, "into": h} for n, t, h in fused_ops]
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
        ("in-place operators", f"{len(fused_ops)} fused into their operand's step"
         + ("" if args.in_place == "on" else " with --in-place on")),
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
    return 0
