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
from typing import Any

from stowage.ir.graph import Graph
from stowage.targets.hierarchy import DEFAULT_TARGET, Hierarchy, load_target


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


def add_model_arguments(p: argparse.ArgumentParser, model: bool = True) -> None:
    if model:
        p.add_argument("model", help="ONNX model file (weights optional: a graph-only file imports)")
    p.add_argument("--dim", action="append", type=parse_dim, default=[], metavar="NAME=VALUE",
                   help="bind a symbolic dimension (repeatable), e.g. --dim batch=1")
    p.add_argument("--element-bytes", type=positive_int, default=None, metavar="B",
                   help="override every element's size in bytes (1 = COSMA's 8-bit setting)")


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
    return load_graph(args.model, dims=dims, element_bytes=args.element_bytes, progress=progress.stage)


def load_target_from_args(args: argparse.Namespace) -> Hierarchy:
    return load_target(args.target)


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


__all__ = [
    "add_model_arguments", "add_target_arguments", "load_model_from_args", "load_target_from_args",
    "parse_dim", "positive_int", "positive_seconds", "print_json",
]
