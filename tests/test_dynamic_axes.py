"""Dynamic axes (issue 13 item 1): a -1, 0 or unnamed graph-input dimension is a symbolic
dimension bound with ``--dim 'INPUT[AXIS]=V'``; an unbound one is a one-line error naming the
flag.  Sizes: float32, 4 bytes per element."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from stowage import cli
from stowage.errors import ModelError
from stowage.ir.onnx_import import import_model

F = TensorProto.FLOAT


def paddle_like(first_dim: int | str | None = -1) -> onnx.ModelProto:
    """x[D, 8] -> Relu -> h -> Sigmoid -> y[D, 8], D written the way exporters write a dynamic
    axis (PaddlePaddle: -1; some tools 0; or left unnamed), outputs declared with -1 too."""
    x = helper.make_tensor_value_info("x", F, [first_dim, 8])
    y = helper.make_tensor_value_info("y", F, [-1 if first_dim in (-1, 0) else first_dim, 8])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["h"], name="relu"),
                           helper.make_node("Sigmoid", ["h"], ["y"], name="sig")], "paddle", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("dim", [-1, 0, None])
def test_dynamic_axis_is_an_unbound_symbolic_dimension_named_with_its_flag(dim):
    with pytest.raises(ModelError) as exc:
        import_model(paddle_like(dim))
    msg = str(exc.value)
    assert "\n" not in msg
    assert "'x[0]'" in msg and "--dim 'x[0]=1'" in msg
    assert ("dynamic axis 0 of 'x'" if dim in (-1, 0) else "unnamed axis 0 of 'x'") in msg


@pytest.mark.parametrize("dim", [-1, 0, None])
def test_dynamic_axis_bound_with_dim(dim):
    g = import_model(paddle_like(dim), dims={"x[0]": 3})
    # x, h and y are [3, 8] float: 96 bytes each; Relu's footprint is 192.
    assert [g.tensors[n].shape for n in ("x", "h", "y")] == [(3, 8)] * 3
    assert [g.tensors[n].bytes for n in ("x", "h", "y")] == [96] * 3
    assert dict(g.dims) == {"x[0]": 3}


@pytest.mark.slow
def test_cli_inspect_compile_validate_simulate_on_a_dynamic_axis(tmp_path: Path, capsys):
    path = tmp_path / "paddle.onnx"
    onnx.save(paddle_like(-1), str(path))
    assert cli.main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "--dim 'x[0]=1'" in err and "Traceback" not in err
    assert cli.main(["inspect", str(path), "--dim", "x[0]=2", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"input_bytes": 64' in out
    outdir = tmp_path / "out"
    assert cli.main(["compile", str(path), "--dim", "x[0]=2", "-o", str(outdir), "-q"]) == 0
    capsys.readouterr()
    # The plan records the binding: validate and simulate need no --dim.
    assert cli.main(["validate", str(path), str(outdir / "plan.json")]) == 0
    assert cli.main(["simulate", str(path), str(outdir / "plan.json")]) == 0
    assert "match" in capsys.readouterr().out
