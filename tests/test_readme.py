"""The README as a test: every ``python`` and ``sh`` block in README.md runs, in order, in a
fresh folder that has the repository's ``models/`` (so the README's relative paths work).

Why: the README's Python snippet once failed as written (a module shadowed ``stowage.validate``),
and nothing noticed.  Now a block that stops working fails here.

Markers (an HTML comment on the line before a block; invisible on GitHub):

* ``<!-- readme-test: skip (why) -->``: not run (the block installs packages or runs this
  very suite); the reason is required, and the test checks that every skipped block says one;
* ``<!-- readme-test: drop-install (why) -->``: ``pip install ... &&`` prefixes are removed
  and the rest runs (the package is already installed where the tests run).

Shell lines that are a plain ``stowage ...`` command run in this process through
``stowage.cli.main`` (a second of imports saved per line); anything else runs in ``bash`` with
``stowage`` and ``python`` meaning this interpreter.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(skip|drop-install)\b\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int          # 1-based line of the opening fence
    marker: str | None  # "skip", "drop-install" or None
    reason: str


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block of the README with the marker on the line before it."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        mk = _MARKER.match(prev)
        blocks.append(Block(m.group(1) or "", "\n".join(lines[start + 1:j]) + "\n", start + 1,
                            mk.group(1) if mk else None, mk.group(2) if mk else ""))
        i = j + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
PY = [b for b in BLOCKS if b.lang == "python"]
SH = [b for b in BLOCKS if b.lang in ("sh", "bash", "shell", "console")]


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "models").symlink_to(REPO / "models", target_is_directory=True)
    return work


def test_readme_has_blocks_and_every_skip_says_why() -> None:
    assert len(PY) >= 1 and len(SH) >= 3
    assert {b.lang for b in BLOCKS} <= {"python", "sh"}, "a block in a language this test does not run"
    for b in BLOCKS:
        if b.marker:
            assert b.reason.startswith("(") and len(b.reason) > 10, f"README line {b.line}: say why"
    # The Quick start's two commands, exactly as CI and the issue quote them.
    codes = [b.code.strip() for b in SH]
    assert "pip install . && stowage compile models/tiny_cnn.onnx --target ethos-u55-256 -o out" in codes
    assert 'pip install ".[test]" && ruff check . && mypy && python -m pytest -q' in codes


def _drop_install(line: str) -> str:
    """``pip install X && cmd`` -> ``cmd``."""
    parts = [p.strip() for p in line.split("&&")]
    return " && ".join(p for p in parts if not p.startswith("pip install"))


def _run_shell_line(line: str, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stowage.cli import main

    words = shlex.split(line)
    if words and words[0] == "stowage" and not set("&|;<>$`") & set(line):
        rc = main(words[1:])
        _, err = capsys.readouterr()
        assert rc == 0, f"README: {line!r} exited {rc}: {err.strip()}"
        return
    shim = work / ".bin"
    shim.mkdir(exist_ok=True)
    for name, cmd in (("stowage", f'"{sys.executable}" -m stowage'), ("python", f'"{sys.executable}"')):
        path = shim / name
        path.write_text(f'#!/bin/sh\nexec {cmd} "$@"\n')
        path.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"README: {line!r} exited {done.returncode}: {done.stderr.strip()[-500:]}"


@pytest.mark.slow  # > 1.5 s: plans the tiny CNN three times
def test_readme_shell_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    work = _workdir(tmp_path)
    monkeypatch.chdir(work)
    ran = 0
    for b in SH:
        if b.marker == "skip":
            continue
        for line in b.code.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if b.marker == "drop-install":
                line = _drop_install(line)
            assert "pip install" not in line, f"README line {b.line}: mark blocks that install packages"
            _run_shell_line(line, work, capsys)
            ran += 1
    assert ran >= 4
    assert (work / "out" / "plan.json").is_file() and (work / "out-mr" / "plan.json").is_file()


@pytest.mark.slow  # > 1.5 s: plans the tiny CNN and sweeps four capacities
@pytest.mark.parametrize("block", PY, ids=lambda b: f"line{b.line}")
def test_readme_python_blocks_run(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if block.marker == "skip":
        pytest.skip(block.reason)
    monkeypatch.chdir(_workdir(tmp_path))
    exec(compile(block.code, f"README.md:{block.line}", "exec"), {"__name__": "__readme__"})


def test_help_lists_the_plain_functions_and_no_module_shadows_them() -> None:
    import pydoc
    import types

    import stowage
    import stowage.plan.validate  # a submodule import must not shadow the function
    import stowage.tools.sweep

    for name in ("compile", "load_graph", "load_target", "validate", "sweep"):
        fn = getattr(stowage, name)
        assert isinstance(fn, types.FunctionType), name
        assert getattr(stowage, name) is fn  # the same function on the second look-up too
    text = pydoc.render_doc(stowage, renderer=pydoc.plaintext)
    functions = text.split("FUNCTIONS", 1)[1]
    for name in ("compile(", "load_graph(", "load_target(", "validate(", "sweep("):
        assert name in functions
    assert (REPO / "planner" / "py.typed").is_file()
