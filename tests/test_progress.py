"""Progress output: one writer, plain periodic lines when stderr is not a terminal, nothing with
-q, a transient rich line on a terminal.  Intervals are patched down so that each test takes
well under a second."""

from __future__ import annotations

import io
import sys
import threading
import time

import pytest

from stowage import progress


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch):
    def make(tty: bool) -> _Stream:
        s = _Stream(tty)
        monkeypatch.setattr(sys, "stderr", s)
        progress.set_quiet(False)
        return s

    yield make
    progress.set_quiet(False)


def test_quick_command_in_a_pipe_prints_nothing(stderr) -> None:
    s = stderr(False)
    with progress.stage("importing model"):
        progress.status("best 10")
    progress.finish()
    assert s.getvalue() == ""
    assert not progress.enabled()


def test_plain_lines_at_most_every_interval_then_done(stderr, monkeypatch) -> None:
    monkeypatch.setattr(progress, "PLAIN_EVERY_SECONDS", 0.15)
    s = stderr(False)
    with progress.stage("planning with exact"):
        started = time.monotonic()
        for i in range(8):  # 0.4 s of status lines every 0.05 s: 2 or 3 printed, not 8
            progress.status(f"best {100 - i}, bound 90")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
    lines = s.getvalue().splitlines()
    # One line per full interval at most (a loaded machine stretches the sleeps: count by time).
    assert 1 <= len(lines) - 1 <= elapsed / 0.15, lines
    assert all(line.startswith("stowage: planning with exact ... ") for line in lines)
    assert ": best 9" in lines[0] and "bound 90" in lines[0]
    assert lines[-1].startswith("stowage: planning with exact ... done in ")


def test_a_silent_long_stage_still_reports(stderr, monkeypatch) -> None:
    monkeypatch.setattr(progress, "PLAIN_EVERY_SECONDS", 0.1)
    monkeypatch.setattr(progress, "TICK_SECONDS", 0.05)
    s = stderr(False)
    with progress.stage("simulating 16 steps"):
        time.sleep(0.4)  # no status call: the ticker reports
    out = s.getvalue()
    assert "stowage: simulating 16 steps ... 0." in out and "stowage: simulating 16 steps ... done in 0." in out


def test_quiet_prints_nothing_at_all(stderr, monkeypatch) -> None:
    monkeypatch.setattr(progress, "PLAIN_EVERY_SECONDS", 0.0)
    for tty in (False, True):
        s = stderr(tty)
        progress.set_quiet(True)
        with progress.stage("planning"):
            progress.status("best 1")
        progress.finish()
        assert s.getvalue() == "" and not progress.enabled()


def test_status_lines_from_many_threads_never_interleave(stderr, monkeypatch) -> None:
    monkeypatch.setattr(progress, "PLAIN_EVERY_SECONDS", 0.0)  # every call prints
    s = stderr(False)

    def worker(k: int) -> None:
        for i in range(50):
            progress.status(f"worker {k} line {i} " + "x" * 40)

    with progress.stage("compare"):
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    lines = s.getvalue().splitlines()
    body = [line for line in lines if "worker" in line]
    assert len(body) == 200
    assert all(line.startswith("stowage: compare ... ") and line.endswith("x" * 40) for line in body)


def test_terminal_line_is_transient_and_keeps_long_stages(stderr, monkeypatch) -> None:
    monkeypatch.setattr(progress, "KEEP_AFTER_SECONDS", 0.0)
    s = stderr(True)
    assert progress.enabled()
    with progress.stage("importing model"):
        progress.status("parsing")
    with progress.stage("planning"):
        pass
    out = s.getvalue()
    assert "importing model ... done in" in out and "planning ... done in" in out
    assert "stowage:" not in out  # no plain lines on a terminal
