"""The ``stowage`` command.

Each sub-command is a module of ``stowage.commands`` (folder ``planner/commands/``) exposing
``NAME``, ``HELP``, ``ORDER``, ``add_arguments(parser)`` and ``run(args) -> int``; they are
discovered, so adding a command touches no shared file (``docs/architecture.md``).  User
errors (``StowageError``) print one line and exit with the error's code (2 for unusable input)
and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

import stowage.commands as commands_pkg
from stowage import __version__, progress
from stowage.errors import StowageError

log = logging.getLogger("stowage")


def _commands() -> list:
    mods = []
    for info in pkgutil.iter_modules(commands_pkg.__path__):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(f"stowage.commands.{info.name}"))
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are bad input like any other: one line, exit 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"stowage: error: {' '.join(message.split())} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stowage",
        description="Compiler-style memory planner for DNN accelerators: when each operator runs, "
        "where each tensor lives in scratchpad SRAM, and what is spilled off-chip.",
    )
    parser.add_argument("--version", action="version", version=f"stowage {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output")
        p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="log more")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", 0) or 0
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Third-party libraries (onnxruntime's symbolic shape inference, onnx) log chatter at
    # WARNING that means nothing to a stowage user; Python warnings go through logging too.
    # Both show with -vv.
    for noisy in ("onnxruntime", "onnx"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose >= 2 else logging.ERROR)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if verbose >= 2 else logging.ERROR)
    progress.set_quiet(bool(getattr(args, "quiet", False)))
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except StowageError as exc:
        print(f"stowage: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("stowage: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
