"""The one way stowage writes a byte count for people.

Every command, table, report and plot label formats sizes here, so that ``compile``, ``show``,
``inspect``, ``compare`` and ``sweep`` print the same number the same way (before, each had its
own formatter: ``32784 B (32.0 KiB)`` in one place, ``32.02 KiB`` in another, ``32,784`` in a
third).  Binary units (KiB = 1024 bytes), because scratchpads and their alignments are powers
of two.  Machine output (``--json``, CSV, plan files) never goes through here: it carries plain
integers.

This module imports nothing from stowage (layer 0 with ``stowage.errors``), so every layer may
use it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["UNITS", "axis_unit", "fmt_bytes", "fmt_bytes_exact", "fmt_capacity", "fmt_int", "fmt_seconds",
           "print_table"]

#: (name, bytes), largest first.
UNITS: tuple[tuple[str, int], ...] = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def fmt_bytes(n: float | None, *, none: str = "-") -> str:
    """A size rounded for reading: ``512 B``, ``32.02 KiB``, ``1.50 MiB`` (``none`` for
    ``None``: an unknown bound, an unbounded level).  Two decimals, so that sizes that differ
    by an alignment step at a few KiB still read differently."""
    if n is None:
        return none
    for unit, scale in UNITS:
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def fmt_bytes_exact(n: float | None, *, none: str = "-") -> str:
    """The exact count and its rounded reading: ``32,784 B (32.02 KiB)``; below 1 KiB just
    ``512 B``.  For summaries where the exact number matters (a capacity to paste into
    ``--capacity``, a gap of a few bytes)."""
    if n is None:
        return none
    exact = f"{int(n):,} B"
    if abs(n) < 1024:
        return exact
    return f"{exact} ({fmt_bytes(n)})"


def fmt_capacity(n: int | None, *, none: str = "unbounded") -> str:
    """A configured size as its author would write it: ``256 KiB`` when it is a whole number
    of a unit, else exact bytes (``1000 B``); ``none`` for an unbounded level."""
    if n is None:
        return none
    for unit, scale in UNITS:
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def fmt_int(n: int | None, *, none: str = "-") -> str:
    """An integer with thousands separators (``12,328``); ``none`` for ``None``."""
    return none if n is None else f"{n:,}"


def fmt_seconds(s: float | None, *, none: str = "-") -> str:
    """Seconds with two decimals (``0.25s``), the resolution the summaries report."""
    return none if s is None else f"{s:.2f}s"


def axis_unit(max_bytes: float) -> tuple[str, int]:
    """The unit for a plot axis whose largest value is ``max_bytes``: the largest unit that
    still leaves at least 2 of it (so the tick labels are not all below 1)."""
    for unit, scale in UNITS:
        if max_bytes >= 2 * scale:
            return unit, scale
    return "B", 1


def print_table(columns: list[str], rows: list[list[object]], *, title: str | None = None,
                numeric: set[str] | frozenset[str] = frozenset(), file: Any = None) -> None:
    """Print a table through ``rich`` (imported here: only the commands that print tables pay
    for it).  Columns named in ``numeric`` are right-aligned.  On a terminal it wraps to the
    window; into a pipe or a file it is as wide as it needs (no wrapping, no colour), so that
    ``grep`` and ``awk`` see one row per line."""
    import sys

    from rich import box
    from rich.console import Console
    from rich.table import Table

    stream = file if file is not None else sys.stdout
    tty = bool(getattr(stream, "isatty", lambda: False)())
    console = Console(file=stream, width=None if tty else 100_000, no_color=not tty,
                      highlight=False, soft_wrap=not tty, emoji=False, markup=False)
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for c in columns:
        table.add_column(c, justify="right" if c in numeric else "left", no_wrap=not tty)
    for r in rows:
        table.add_row(*(str(v) for v in r))
    console.print(table)
