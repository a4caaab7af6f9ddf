"""Crashes the robustness campaign (benchmarks/robustness.py) found, each now a clean result."""

from __future__ import annotations

import pytest

from stowage import cli
from stowage.errors import PlanFormatError
from stowage.plan import plan_from_json


def test_a_plan_nested_too_deeply_is_a_format_error() -> None:
    with pytest.raises(PlanFormatError, match="nested too deeply"):
        plan_from_json("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("argv", [
    ["targets", "a" * 300 + ".toml"],
    ["compile", "models/tiny_cnn.onnx", "-o", "/tmp/" + "b" * 300],
])
def test_names_longer_than_the_file_system_allows_are_one_line_errors(capsys, argv: list[str]) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stowage: error: File name too long")


def test_a_target_without_bandwidths_plans_with_time_unknown(tmp_path) -> None:
    from stowage.api import compile as compile_plan

    t = tmp_path / "nobw.toml"
    t.write_text('name = "nobw"\ncompute_level = "sram"\n'
                 '[compute]\nclock_hz = 1e8\nmacs_per_cycle = 8\n'
                 '[[levels]]\nname = "sram"\ncapacity = "1MiB"\n'
                 '[[levels]]\nname = "dram"\n')
    plan = compile_plan("models/tiny_cnn.onnx", target=str(t), time_limit=2)
    assert plan.metrics.estimated_seconds is None
