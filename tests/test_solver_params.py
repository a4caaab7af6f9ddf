"""Solver parameters: documented dataclass fields, listed by `stowage solvers`, set by --param."""

from __future__ import annotations

import json

import pytest

from stowage.cli import main
from stowage.errors import SolverError
from stowage.solvers.registry import available, param_fields, parse_param_overrides


def test_every_solver_documents_every_parameter():
    for name in available():
        for f in param_fields(name):
            assert f.doc, f"solver {name}: parameter {f.name} has no doc"


def test_overrides_are_typed_from_the_dataclass():
    got = parse_param_overrides("heuristic", ["improve_iters=5", "betas=1,2.5", "fast=true"])
    assert got == {"improve_iters": 5, "betas": (1.0, 2.5), "fast": True}
    assert parse_param_overrides("exact", ["time_limit=none", "mode=joint"]) == {"time_limit": None, "mode": "joint"}
    with pytest.raises(SolverError, match="no parameter 'bogus'"):
        parse_param_overrides("heuristic", ["bogus=1"])
    with pytest.raises(SolverError, match="expected int"):
        parse_param_overrides("heuristic", ["improve_iters=many"])
    with pytest.raises(SolverError, match="NAME=VALUE"):
        parse_param_overrides("heuristic", ["improve_iters"])


def test_solvers_command_lists_params(capsys):
    assert main(["solvers", "exact", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info[0]["name"] == "exact"
    assert {p["name"] for p in info[0]["params"]} >= {"mode", "time_limit", "workers"}
    assert main(["solvers", "nope"]) == 2


def test_compile_param_reaches_the_solver(tmp_path, capsys):
    from tests.helpers import chain_model, save

    model = save(chain_model(4, 16), tmp_path / "c.onnx")
    out = tmp_path / "out"
    rc = main(["compile", str(model), "--solver", "exact-alloc", "--param", "time_limit=1", "-o", str(out)])
    assert rc == 0 and (out / "plan.json").exists()
    rc = main(["compile", str(model), "--solver", "exact-alloc", "--param", "time_limit=soon",
               "-o", str(tmp_path / "x")])
    assert rc == 2 and not (tmp_path / "x").exists()
    assert "expected" in capsys.readouterr().err
