"""Progress on a terminal for long steps; silent when not a TTY or with ``-q``.

Diagnostics go through ``logging``; this module only draws a transient status line on stderr
so that piped output and log files stay clean.  A step that finishes quickly leaves nothing
behind; one that took a while leaves ``label ... done in 3.2s``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator

_quiet = False

#: Steps shorter than this are erased when they finish instead of leaving a line.
KEEP_AFTER_SECONDS = 1.0
#: Delay before the first redraw, and between redraws.
REDRAW_SECONDS = 0.2


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    return not _quiet and sys.stderr.isatty()


@contextlib.contextmanager
def stage(label: str) -> Iterator[None]:
    """Show ``label ...`` with elapsed time on stderr while the block runs (TTY only)."""
    if not enabled():
        yield
        return
    stream = sys.stderr
    stop = threading.Event()
    start = time.perf_counter()
    width = [0]

    def write(text: str) -> None:
        stream.write("\r" + text.ljust(width[0]))
        width[0] = max(width[0], len(text))
        stream.flush()

    write(f"{label} ...")

    def draw() -> None:
        while not stop.wait(REDRAW_SECONDS):
            write(f"{label} ... {time.perf_counter() - start:5.1f}s")

    t = threading.Thread(target=draw, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        elapsed = time.perf_counter() - start
        if elapsed >= KEEP_AFTER_SECONDS:
            write(f"{label} ... done in {elapsed:.1f}s")
            stream.write("\n")
        else:
            stream.write("\r" + " " * width[0] + "\r")
        stream.flush()


def status(line: str) -> None:
    """Overwrite the status line (used by solvers for best-so-far / bound / elapsed)."""
    if enabled():
        sys.stderr.write("\r" + line[:120].ljust(80))
        sys.stderr.flush()
