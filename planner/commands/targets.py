"""``stowage targets``: list the built-in memory-hierarchy presets with their levels."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from stowage.commands._common import print_json
from stowage.targets.hierarchy import DEFAULT_TARGET, Hierarchy, list_presets, load_target

NAME = "targets"
HELP = "list built-in target presets (or show one target file) with their memory levels"
ORDER = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="?", help="show only this preset or target file")
    p.add_argument("--json", action="store_true", help="print JSON")


def _fmt_size(n: int | None) -> str:
    from stowage.format import fmt_capacity

    return fmt_capacity(n)


def _fmt_bw(bw: float | None) -> str:
    return "-" if bw is None else f"{bw / 1e9:g} GB/s"


def describe(h: Hierarchy) -> str:
    lines = [f"{h.name}{'  (default)' if h.name == DEFAULT_TARGET and h.path is None else ''}"]
    if h.description:
        lines.append(f"  {h.description}")
    lines.append(f"  compute level: {h.compute_level}; homes: weights={h.weights_home} "
                 f"inputs={h.inputs_home} outputs={h.outputs_home}")
    e = h.compute_engine  # docs/timing.md
    lines.append("  compute engine: none (time unknown)" if e is None else
                 f"  compute engine: {e.clock_hz / 1e6:g} MHz, {e.macs_per_cycle} MACs/cycle, "
                 f"{e.dma_channels} DMA channel{'s' if e.dma_channels > 1 else ''}")
    for lv in h.levels:
        flags = "" if lv.writable else "  read-only"
        lines.append(f"  - {lv.name:<8} {_fmt_size(lv.capacity):>12}  align {lv.alignment:<3} "
                     f"read {_fmt_bw(lv.read_bandwidth)}  write {_fmt_bw(lv.write_bandwidth)}{flags}")
    if h.source:
        lines.append(f"  source: {h.source}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    targets = [load_target(args.target)] if args.target else list_presets()
    if args.json:
        print_json([asdict(h) for h in targets])
    else:
        print("\n\n".join(describe(h) for h in targets))
    return 0
