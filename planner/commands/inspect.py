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
    graph = load_model_from_args(args)
    s = summarize(graph)
    if args.json:
        d = asdict(s)
        d["opaque"] = [{"op": n, "op_type": t, "why": w} for n, t, w in s.opaque]
        d["element_bytes"] = graph.element_bytes
        d["dims"] = dict(graph.dims)
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
