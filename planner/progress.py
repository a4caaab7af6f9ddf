"""Progress on a terminal for long steps; silent when not a TTY or with ``-q``.

Diagnostics go through ``logging``; this module only draws a transient status line on stderr
so that piped output and log files stay clean.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    return not _quiet and sys.stderr.isatty()


@contextlib.contextmanager
def stage(label: str) -> Iterator[None]:
    """Show ``label ... elapsed`` on stderr while the block runs (TTY only)."""
    if not enabled():
        yield
        return
    stop = threading.Event()
    start = time.perf_counter()

    def draw() -> None:
        while not stop.wait(0.2):
            sys.stderr.write(f"\r{label} ... {time.perf_counter() - start:5.1f}s")
            sys.stderr.flush()

    t = threading.Thread(target=draw, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        sys.stderr.write(f"\r{label} ... done in {time.perf_counter() - start:.1f}s\n")
        sys.stderr.flush()


def status(line: str) -> None:
    """Overwrite the status line (used by solvers for best-so-far / bound / elapsed)."""
    if enabled():
        sys.stderr.write("\r" + line[:120].ljust(80))
        sys.stderr.flush()
