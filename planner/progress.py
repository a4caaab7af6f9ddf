"""Progress for long steps: one status line on a terminal, plain periodic lines in a log.

Diagnostics go through ``logging``; this module only reports how far a long command got, on
stderr, so that stdout (tables, JSON) stays clean.  There is exactly one writer: every
``stage`` and every ``status`` line (a solver's best-so-far from a CP-SAT callback thread, a
sweep's cell count) goes through the one ``_Reporter`` under a lock, which is what keeps two
writers from overwriting each other's line.

* On a terminal: a transient ``rich`` status line (spinner, ``label ... 3.2s``, the latest
  status text).  A stage shorter than ``KEEP_AFTER_SECONDS`` leaves nothing behind; a longer
  one leaves ``label ... done in 3.2s``.
* When stderr is not a terminal (CI logs, ``2> file``): a plain line
  ``stowage: label ... 20s: best 123, bound 100`` at most every ``PLAIN_EVERY_SECONDS``, and
  ``stowage: label ... done in 34.0s`` for a stage that printed one; a command that finishes
  within that interval prints nothing.  (A 68 s ``compare`` used to be silent in CI logs.)
* ``-q`` (``set_quiet(True)``): nothing at all.

``rich`` is imported only when a terminal line is first drawn, so ``stowage --help`` and
piped runs never pay for it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["KEEP_AFTER_SECONDS", "PLAIN_EVERY_SECONDS", "REDRAW_SECONDS", "enabled", "finish", "set_quiet",
           "stage", "status"]

#: Terminal: stages shorter than this are erased when they finish instead of leaving a line.
KEEP_AFTER_SECONDS = 1.0
#: Terminal: redraws per second are ``1 / REDRAW_SECONDS``.
REDRAW_SECONDS = 0.2
#: Not a terminal: at most one plain progress line per this many seconds.
PLAIN_EVERY_SECONDS = 10.0
#: Not a terminal: how often a stage with no status calls checks whether a line is due.
TICK_SECONDS = 1.0
#: Longest status text shown (a solver's line can be long).
MAX_STATUS = 120


class _Reporter:
    """The one writer of progress output (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.quiet = False
        self.stages: list[tuple[str, float]] = []
        self.line = ""
        self.live: Any = None           # rich.live.Live while a terminal line is shown
        self.spinner: Any = None        # its rich.spinner.Spinner (one, so that it turns)
        self.last_plain = 0.0           # when the last plain line was written
        self.printed_plain: set[int] = set()  # stage starts (ids) that printed a plain line
        self.ticker: threading.Thread | None = None
        self.stop_ticker = threading.Event()

    # -- where output goes -------------------------------------------------------------
    @staticmethod
    def stream() -> TextIO:
        return sys.stderr

    def tty(self) -> bool:
        try:
            return bool(self.stream().isatty())
        except (AttributeError, ValueError):  # a closed or replaced stream
            return False

    # -- what is shown -----------------------------------------------------------------
    def text(self) -> str:
        now = time.perf_counter()
        parts = []
        if self.stages:
            label, start = self.stages[-1]
            parts.append(f"{label} ... {now - start:.1f}s")
        if self.line:
            parts.append(self.line[:MAX_STATUS])
        return ": ".join(parts)

    # -- terminal ----------------------------------------------------------------------
    def _renderable(self) -> Any:
        from rich.spinner import Spinner

        if self.spinner is None:
            self.spinner = Spinner("dots")
        self.spinner.update(text=self.text())
        return self.spinner

    def _start_live(self) -> None:
        if self.live is not None:
            return
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.stream(), highlight=False, markup=False, emoji=False)

        class _Line:  # re-rendered on every refresh, so the elapsed time moves
            def __rich__(inner) -> Any:
                return self._renderable()

        self.live = Live(_Line(), console=console, transient=True, auto_refresh=True,
                         refresh_per_second=1 / REDRAW_SECONDS, redirect_stdout=False, redirect_stderr=False)
        self.live.start(refresh=True)  # drawn at once: a quick stage still shows its label

    def _stop_live(self) -> None:
        if self.live is not None:
            live, self.live = self.live, None
            live.stop()

    def _keep(self, message: str) -> None:
        """A line that stays (``done in``) above the transient one."""
        if self.live is not None:
            self.live.console.print(message, markup=False, highlight=False)
        else:
            self.stream().write(message + "\n")
            self.stream().flush()

    # -- plain lines -------------------------------------------------------------------
    def _plain(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_plain < PLAIN_EVERY_SECONDS:
            return
        text = self.text()
        if not text:
            return
        self.last_plain = now
        if self.stages:
            self.printed_plain.add(id(self.stages[-1]))
        stream = self.stream()
        stream.write(f"stowage: {text}\n")
        stream.flush()

    def _tick(self, stop: threading.Event) -> None:
        """Not a terminal: a stage with no status calls still reports now and then.  Each
        outermost stage has its own thread and event, so a stage that starts while the last
        one's ticker is still winding down always gets a ticker of its own."""
        while not stop.wait(TICK_SECONDS):
            with self.lock:
                if not self.stages:
                    return
                self._plain()

    # -- the API -----------------------------------------------------------------------
    def enter(self, label: str) -> tuple[str, float]:
        with self.lock:
            entry = (label, time.perf_counter())
            self.stages.append(entry)
            self.line = ""
            if self.quiet:
                return entry
            if self.tty():
                self._start_live()
            else:
                if len(self.stages) == 1:
                    # An outermost stage: its first line comes a full interval in.
                    self.last_plain = time.monotonic()
                    self.stop_ticker.set()
                    self.stop_ticker = threading.Event()
                    self.ticker = threading.Thread(target=self._tick, args=(self.stop_ticker,),
                                                   name="stowage-progress", daemon=True)
                    self.ticker.start()
            return entry

    def leave(self, entry: tuple[str, float]) -> None:
        with self.lock:
            label, start = entry
            elapsed = time.perf_counter() - start
            printed = id(entry) in self.printed_plain
            self.printed_plain.discard(id(entry))
            tty = not self.quiet and self.tty()
            if tty and len(self.stages) <= 1:
                self._stop_live()  # its last frame still shows this stage, then it is erased
            if entry in self.stages:
                self.stages.remove(entry)
            self.line = ""
            if self.quiet:
                return
            if tty:
                if elapsed >= KEEP_AFTER_SECONDS:
                    self._keep(f"{label} ... done in {elapsed:.1f}s")
            else:
                if printed:
                    self.stream().write(f"stowage: {label} ... done in {elapsed:.1f}s\n")
                    self.stream().flush()
                if not self.stages:
                    self.stop_ticker.set()

    def status(self, line: str) -> None:
        with self.lock:
            self.line = line
            if self.quiet:
                return
            if self.tty():
                if line:
                    self._start_live()
                elif not self.stages:
                    self._stop_live()
            elif line:
                if not self.stages and not self.last_plain:
                    self.last_plain = time.monotonic()
                self._plain()

    def finish(self) -> None:
        with self.lock:
            self.line = ""
            self.stages.clear()
            self.printed_plain.clear()
            self.stop_ticker.set()
            self._stop_live()
            self.last_plain = 0.0


_reporter = _Reporter()


def set_quiet(quiet: bool) -> None:
    """``-q``: no progress output at all (also resets the state of a previous command)."""
    _reporter.finish()
    _reporter.quiet = quiet


def enabled() -> bool:
    """True when a transient terminal line is drawn (stderr is a terminal and not ``-q``)."""
    return not _reporter.quiet and _reporter.tty()


@contextlib.contextmanager
def stage(label: str) -> Iterator[None]:
    """Report ``label`` with its elapsed time while the block runs (see the module docstring)."""
    entry = _reporter.enter(label)
    try:
        yield
    finally:
        _reporter.leave(entry)


def status(line: str) -> None:
    """The latest status text (a solver's best/bound/elapsed, a sweep's cell count), shown
    after the current stage's label; ``""`` clears it (and ends a terminal line that no stage
    holds).  Safe from any thread."""
    _reporter.status(line)


def finish() -> None:
    """End any progress display (a command's last status line) before printing results."""
    _reporter.finish()
