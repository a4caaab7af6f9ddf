"""``stowage solvers``: every registered solver with its description and parameters."""

from __future__ import annotations

import argparse

from stowage.commands._common import print_json

NAME = "solvers"
HELP = "list the registered solvers and their parameters (set them with compile --param NAME=VALUE)"
ORDER = 15


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("solver", nargs="?", help="show only this solver")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from stowage.solvers.registry import available, get, param_fields

    names = [get(args.solver).name] if args.solver else list(available())
    if args.json:
        print_json([
            {"name": n, "description": get(n).description,
             "params": [{"name": f.name, "type": f.type, "default": f.default if not isinstance(f.default, tuple)
                         else list(f.default), "doc": f.doc} for f in param_fields(n)]}
            for n in names
        ])
        return 0
    for n in names:
        print(f"{n}: {get(n).description}")
        for f in param_fields(n):
            default = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
            print(f"    --param {f.name}={default}  ({f.type}){'  ' + f.doc if f.doc else ''}")
    return 0
