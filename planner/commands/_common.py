"""Arguments and helpers shared by several sub-commands.

One definition of each shared option (``--dim``, ``--element-bytes``, ``--target``,
``--capacity``) and argparse type, so every command spells and validates them the same way.
The module is private to ``stowage.commands`` (the leading underscore also keeps the CLI's
command discovery from taking it for a sub-command).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stowage.ir.graph import Graph
from stowage.targets.hierarchy import DEFAULT_TARGET, Hierarchy, load_target

if TYPE_CHECKING:
    from stowage.plan.model import Plan

#: The file names of ``compile`` / ``emit`` outputs (interface: docs/c-header.md).
PLAN_FILE, SCHEDULE_FILE, HEADER_FILE = "plan.json", "schedule.json", "plan.h"


def parse_dim(text: str) -> tuple[str, int]:
    """argparse type for ``--dim NAME=VALUE``: a symbolic dimension bound to a positive size."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"--dim expects NAME=VALUE, got '{text}'")
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--dim {text}: VALUE must be a positive integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"--dim {text}: VALUE must be a positive integer")
    return name.strip(), v


def parse_input_value(text: str) -> tuple[str, str]:
    """argparse type for ``--input-value NAME=VALUE[,VALUE...]``; the values are checked
    against the input's type and shape at import (``stowage.ir.onnx_values``)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"--input-value expects NAME=VALUE[,VALUE...], got '{text}'")
    return name.strip(), value.strip()


def positive_int(text: str) -> int:
    """argparse type for counts and element sizes: a positive integer."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return v


def positive_seconds(text: str) -> float:
    """argparse type for time limits: a positive number of seconds."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got '{text}'") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got '{text}'")
    return v


def add_model_arguments(p: argparse.ArgumentParser, model: bool = True, in_place: bool = True) -> None:
    """The model and its import options; ``in_place=False`` for commands that read the setting
    from a plan file (``validate``, ``simulate``) instead of the command line."""
    if model:
        p.add_argument("model", help="ONNX model file (weights optional: a graph-only file imports) or .tflite file")
    p.add_argument("--dim", action="append", type=parse_dim, default=[], metavar="NAME=VALUE",
                   help="bind a symbolic dimension (repeatable), e.g. --dim batch=1")
    if model:
        p.add_argument("--input-value", action="append", type=parse_input_value, default=[],
                       metavar="NAME=VALUE[,VALUE...]",
                       help="fix a graph input's value (repeatable): shapes and If branches that depend on "
                       "it are resolved, and the plan records it (docs/ir.md)")
    p.add_argument("--element-bytes", type=positive_int, default=None, metavar="B",
                   help="override every element's size in bytes (1 = COSMA's 8-bit setting)")
    if model and in_place:
        add_in_place_argument(p)
        p.add_argument("--qdq", choices=("fold", "off"), default="fold",
                       help="fold (default): a QDQ model's DequantizeLinear -> op -> QuantizeLinear groups "
                       "are single int8 steps, the float tensors between them never exist (docs/ir.md); "
                       "off: plan the graph as written")


def add_tiling_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tiling", choices=("auto", "off"), default="auto",
                   help="auto (default): below M_R, or where it moves fewer bytes, run cascades of "
                   "operators in stripes of rows (docs/tiling.md); off: whole tensors only (COSMA)")


def add_in_place_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--in-place", choices=("on", "off"), default="on",
                   help="on (default): an elementwise operator may write over the operand it is the "
                   "only reader of (docs/ir.md); off: COSMA's definitions, operands and results never "
                   "share bytes")


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default=DEFAULT_TARGET, metavar="PRESET_OR_FILE",
                   help=f"memory hierarchy: a preset name (see 'stowage targets') or a TOML file "
                   f"(default: {DEFAULT_TARGET})")
    p.add_argument("--capacity", default=None, metavar="SIZE",
                   help="compute-level capacity: bytes, a size with unit (256KiB), or M_R, M_H, M_P")


def load_model_from_args(args: argparse.Namespace) -> Graph:
    from stowage import progress
    from stowage.ir.onnx_import import load_graph

    dims = dict(args.dim)
    values = dict(getattr(args, "input_value", []) or [])
    graph = load_graph(args.model, dims=dims, element_bytes=args.element_bytes, progress=progress.stage,
                       input_values=values or None)
    if getattr(args, "qdq", "off") == "fold":
        from stowage.ir.qdq import fold_qdq

        graph = fold_qdq(graph)
    if getattr(args, "in_place", "off") == "on":
        from stowage.ir.inplace import fuse_in_place

        graph = fuse_in_place(graph)
    return graph


def load_target_from_args(args: argparse.Namespace) -> Hierarchy:
    return load_target(args.target)


def plan_output_names(formats: Iterable[str], with_plan: bool) -> list[str]:
    """The files a ``compile``/``emit`` run writes, in the order it reports them: "json" ->
    plan.json and schedule.json, "header" -> plan.h and plan.c, "weights" -> weights.bin,
    "weights-c" -> weights.bin and weights.c; ``with_plan`` adds plan.json always."""
    from stowage.backend.emit import output_files

    fmts = set(formats)
    names = [PLAN_FILE] if with_plan or "json" in fmts else []
    return names + output_files(fmts)


def check_output_folder(outdir: str, names: Iterable[str] = (), dirs: Iterable[str] = ()) -> Path:
    """Validate ``-o`` before any work (a one-line ``OutputError`` for a file, a missing
    parent, a read-only place, a folder where an output file goes)."""
    from stowage.plan.files import check_output_dir

    return check_output_dir(outdir, files=names, dirs=dirs)


def write_plan_outputs(plan: Plan, graph: Graph | None, outdir: str | Path, formats: Iterable[str],
                       prefix: str | None, with_plan: bool, separate_io: bool = False) -> list[Path]:
    """Render plan.json / schedule.json / plan.h + plan.c / weights.bin / weights.c in memory
    and replace them in ``outdir`` as one set (``stowage.plan.files.write_output_set``): an
    interrupted or failed run leaves the old set or the new one, never new plan.json beside an
    old plan.h, and no temp file.  plan.h's ``<P>_PLAN_SHA256`` is the sha256 of exactly the
    plan.json bytes written here.  ``graph`` is the model's graph (a tiled plan's macro graph
    is built by the emitter; the stripe tables need the model's)."""
    from stowage.backend.emit import render_outputs
    from stowage.plan import plan_to_json
    from stowage.plan.files import write_output_set

    fmts = list(formats)
    texts: dict[str, str | bytes] = {PLAN_FILE: plan_to_json(plan)} if with_plan or "json" in fmts else {}
    texts.update(render_outputs(plan, graph, fmts, prefix, separate_io))
    return write_output_set(outdir, {name: texts[name] for name in plan_output_names(fmts, with_plan)})


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


__all__ = [
    "HEADER_FILE", "PLAN_FILE", "SCHEDULE_FILE", "add_in_place_argument", "add_model_arguments",
    "add_target_arguments", "add_tiling_argument", "check_output_folder", "load_model_from_args",
    "load_target_from_args", "parse_dim", "parse_input_value",
    "plan_output_names", "positive_int", "positive_seconds", "print_json", "write_plan_outputs",
]
