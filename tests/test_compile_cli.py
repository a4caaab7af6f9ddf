"""``stowage compile`` and ``stowage.compile``: files written, determinism, errors."""

from __future__ import annotations

import json

import pytest

from stowage.api import compile as compile_plan
from stowage.cli import main
from stowage.errors import CapacityError, SolverError
from stowage.plan import load_plan
from tests.helpers import save
from tests.spill_cases import fanout_model


@pytest.fixture
def model(tmp_path):
    return save(fanout_model(), tmp_path / "fanout.onnx")


def _plan_json(path):
    d = json.loads(path.read_text())
    d["solver"].pop("seconds")
    return d


def test_compile_writes_plan_and_summary(model, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["compile", str(model), "--element-bytes", "1", "--capacity", "M_R", "--time-limit", "2",
               "--in-place", "off", "-o", str(out)])
    assert rc == 0
    plan = load_plan(out / "plan.json")
    assert plan.target.levels[0].capacity == 48      # M_R of the fanout graph at 1 byte/element
    assert plan.metrics.noncompulsory_bytes == 16    # see tests/test_heuristic.py
    text = capsys.readouterr().out
    assert "M_R 48 B" in text and "non-compulsory 16 B" in text and "solver auto" in text


def test_compile_is_deterministic(model, tmp_path):
    for d in ("a", "b"):
        assert main(["compile", str(model), "--element-bytes", "1", "--capacity", "48", "--seed", "7",
                     "--time-limit", "2", "-o", str(tmp_path / d)]) == 0
    assert _plan_json(tmp_path / "a" / "plan.json") == _plan_json(tmp_path / "b" / "plan.json")


def test_below_m_r_exits_2_and_writes_nothing(model, tmp_path, capsys):
    out = tmp_path / "none"
    rc = main(["compile", str(model), "--element-bytes", "1", "--capacity", "40", "-o", str(out)])
    assert rc == 2
    assert not out.exists()
    assert "M_R = 48 bytes" in capsys.readouterr().err


def test_api_accepts_graph_and_rejects_unknown_solver(model):
    plan = compile_plan(model, capacity="64", element_bytes=1, solver="baseline-fileorder-belady",
                        time_limit=1.0)
    assert plan.metrics.noncompulsory_bytes == 0
    with pytest.raises(SolverError, match="unknown solver"):
        compile_plan(model, capacity="64", element_bytes=1, solver="nope")
    with pytest.raises(CapacityError):
        compile_plan(model, capacity=10, element_bytes=1)
