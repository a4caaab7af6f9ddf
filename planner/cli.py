"""The ``stowage`` command.

Each sub-command is a module of ``stowage.commands`` (folder ``planner/commands/``) exposing
``NAME``, ``HELP``, ``ORDER``, ``add_arguments(parser)`` and ``run(args) -> int``; they are
discovered, so adding a command touches no shared file (``docs/architecture.md``).  User
errors (``StowageError``) print one line and exit with the error's code (2 for unusable input)
and no traceback; Ctrl-C prints ``stowage: interrupted`` and exits with 130, also in the
middle of a CP-SAT search (``_searches_stop_on_sigint``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import pkgutil
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
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


#: Module whose ``stop_all_searches`` stops every CP-SAT search; looked up in ``sys.modules``
#: only, so that the CLI never imports OR-Tools itself (``stowage --help`` stays light).
_CP_SAT_MODULE = "stowage.solvers.exact.joint_model"


def _stop_searches() -> None:
    mod = sys.modules.get(_CP_SAT_MODULE)
    if mod is not None:
        mod.stop_all_searches()


def _watch(read_fd: int) -> None:
    """Wakeup-pipe reader: on SIGINT, stop every CP-SAT search, and again every 0.2 s for 2 s
    in case a solve was just starting, so the main thread leaves ``solve`` and raises the
    pending ``KeyboardInterrupt``.  Ends when the pipe is closed (at once, also while retrying)."""
    import select
    import time

    retry_until = 0.0
    while True:
        now = time.monotonic()
        ready, _, _ = select.select([read_fd], [], [], 0.2 if retry_until > now else None)
        if ready:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:  # end of file: the CLI closed the pipe
                return
            if signal.SIGINT in data:
                retry_until = time.monotonic() + 2.0
                _stop_searches()
        elif retry_until:
            _stop_searches()


@contextlib.contextmanager
def _searches_stop_on_sigint() -> Iterator[None]:
    """Make Ctrl-C stop a CP-SAT search promptly.

    Python runs its SIGINT handler (which raises ``KeyboardInterrupt``) only in the main
    thread between bytecodes; a CP-SAT ``solve`` blocks the main thread in C++ until its time
    limit, so the interrupt would wait for it.  Python's C-level handler does write the signal
    number to the wakeup fd at once, so a watcher thread reading that pipe asks the searches
    to stop (``stop_all_searches``); the solve returns and the interrupt is raised.  Only when
    SIGINT has Python's default handler and we are on the main thread; the previous wakeup fd
    is restored on exit."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except (ValueError, OSError):  # pragma: no cover - not the main interpreter
        os.close(read_fd)
        os.close(write_fd)
        yield
        return
    watcher = threading.Thread(target=_watch, args=(read_fd,), name="stowage-sigint", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        os.close(write_fd)  # the last write end: the watcher reads end-of-file and returns
        watcher.join(timeout=5)
        if not watcher.is_alive():
            os.close(read_fd)


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
        with _searches_stop_on_sigint():
            try:
                return int(args._run(args) or 0)
            finally:
                progress.finish()  # no status line outlives the command (also on an error)
    except StowageError as exc:
        print(f"stowage: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # Outputs are committed as sets (stowage.plan.files): an interrupt leaves the old set
        # and no temporary file.
        print("stowage: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        # A path the operating system itself refuses (a name longer than the file system
        # allows, a loop of links) before any command-specific check could: still one line.
        if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EINVAL):
            where = f": {exc.filename}" if exc.filename else ""
            print(f"stowage: error: {exc.strerror or exc}{where[:200]}", file=sys.stderr)
            return 2
        raise
