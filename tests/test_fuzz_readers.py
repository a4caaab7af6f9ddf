"""Fuzz tests of the readers (issue 17, item 9): the ONNX importer and the plan JSON reader,
fed mutated copies of small valid files, either refuse them with a one-line
``StowageError`` or return something the rest of the tool handles (a graph that plans, a
plan the validator judges and the simulator executes without raising); the CLI on the
same files exits 0, 1 or 2 with at most one error line and no traceback.

Every test is seeded (``derandomize``) and bounded by its example count, so a run is
reproducible and its time fixed; ``STOWAGE_FUZZ_EXAMPLES`` scales the counts (e.g. 20 for a
long local hunt).  The fast lane keeps the cheap ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from helpers import chain_model, diamond_model
from stowage.cli import main
from stowage.errors import StowageError
from stowage.ir.graph import Graph
from stowage.ir.onnx_import import load_graph
from stowage.plan import Plan, plan_from_json, plan_to_json
from stowage.plan.validate import validate
from stowage.solvers.problem import Problem
from stowage.solvers.registry import solve
from stowage.targets.hierarchy import load_target

ROOT = Path(__file__).resolve().parent.parent
TINY_INT8 = ROOT / "models" / "int8" / "tiny_cnn_int8_qop.onnx"
SCALE = max(1, int(os.environ.get("STOWAGE_FUZZ_EXAMPLES", "1")))


def fuzz(n: int):
    """Seeded, bounded hypothesis settings: ``n`` examples (times ``SCALE``), no deadline."""
    return settings(max_examples=n * SCALE, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def one_line_error(exc: BaseException) -> None:
    assert isinstance(exc, StowageError), f"{type(exc).__name__}: {exc}"
    assert "\n" not in str(exc) and str(exc), repr(str(exc))


def import_or_refuse(path: Path) -> Graph | None:
    try:
        return load_graph(path)
    except Exception as exc:  # noqa: BLE001 - the property: nothing but a StowageError
        one_line_error(exc)
        return None


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def assert_clean_cli(code: int, err: str) -> None:
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("stowage: error:")]
    if code == 2:
        assert len(errors) == 1, err
    others = [ln for ln in err.splitlines() if ln and not ln.startswith(("stowage: error:", "stowage: warning:"))]
    assert not others, err


# ---------------------------------------------------------------------------------------
# Base files
# ---------------------------------------------------------------------------------------
def _bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


BASE_MODELS: dict[str, bytes] = {
    "chain": _bytes(chain_model(3, 16)),
    "diamond": _bytes(diamond_model()),
    "tiny_int8": TINY_INT8.read_bytes(),
}


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="stowage-fuzz-") as d:
        yield Path(d)


# ---------------------------------------------------------------------------------------
# ONNX: byte-level mutants
# ---------------------------------------------------------------------------------------
@st.composite
def byte_mutants(draw) -> bytes:
    data = bytearray(BASE_MODELS[draw(st.sampled_from(sorted(BASE_MODELS)))])
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "zero_run"]))
    if kind == "truncate":
        return bytes(data[:draw(st.integers(0, len(data) - 1))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if kind == "insert":
        i = draw(st.integers(0, len(data)))
        return bytes(data[:i]) + draw(st.binary(min_size=1, max_size=16)) + bytes(data[i:])
    i = draw(st.integers(0, len(data) - 1))
    n = draw(st.integers(1, 64))
    data[i:i + n] = bytes(len(data[i:i + n]))
    return bytes(data)


@fuzz(60)
@given(data=byte_mutants())
def test_onnx_byte_mutants_import_or_are_refused_in_one_line(workdir, data) -> None:
    path = workdir / "mutant.onnx"
    path.write_bytes(data)
    g = import_or_refuse(path)
    if g is not None:
        assert all(b.bytes >= 0 for b in g.buffers)
        assert set(g.outputs) <= set(g.tensors)


# ---------------------------------------------------------------------------------------
# ONNX: structural mutants (wrong dims and dtypes, dangling and duplicate names, cycles)
# ---------------------------------------------------------------------------------------
_DTYPES = [TensorProto.UNDEFINED, TensorProto.STRING, TensorProto.COMPLEX64, TensorProto.BOOL,
           TensorProto.INT64, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.FLOAT8E4M3FN, 99]
_DIMS = [0, -1, -7, 1, 3, 2**31, 2**40, 2**62]


def _value_infos(m: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    return [*m.graph.input, *m.graph.output, *m.graph.value_info]


@st.composite
def structural_mutants(draw) -> bytes:
    m = onnx.ModelProto()
    m.ParseFromString(BASE_MODELS[draw(st.sampled_from(sorted(BASE_MODELS)))])
    g = m.graph
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["dim", "sym_dim", "drop_dim", "dtype", "init_dtype", "init_dims",
                                     "dangling_input", "dangling_output", "dup_name", "dup_output",
                                     "cycle", "drop_init", "op_type", "domain", "opset", "attr"]))
        vis = [v for v in _value_infos(m) if v.type.HasField("tensor_type")]
        node = g.node[draw(st.integers(0, len(g.node) - 1))] if g.node else None
        if kind in ("dim", "sym_dim", "drop_dim") and vis:
            v = vis[draw(st.integers(0, len(vis) - 1))]
            dims = v.type.tensor_type.shape.dim
            if not dims:
                continue
            d = dims[draw(st.integers(0, len(dims) - 1))]
            if kind == "dim":
                d.dim_value = draw(st.sampled_from(_DIMS))
            elif kind == "sym_dim":
                d.dim_param = draw(st.sampled_from(["N", "", "batch size", "1e400"]))
            else:
                del dims[-1]
        elif kind == "dtype" and vis:
            vis[draw(st.integers(0, len(vis) - 1))].type.tensor_type.elem_type = draw(st.sampled_from(_DTYPES))
        elif kind in ("init_dtype", "init_dims") and g.initializer:
            t = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
            if kind == "init_dtype":
                t.data_type = draw(st.sampled_from(_DTYPES))
            elif t.dims:
                t.dims[draw(st.integers(0, len(t.dims) - 1))] = draw(st.sampled_from(_DIMS))
            else:
                t.dims.append(draw(st.sampled_from(_DIMS)))
        elif kind == "dangling_input" and node is not None and node.input:
            node.input[draw(st.integers(0, len(node.input) - 1))] = "nowhere"
        elif kind == "dangling_output" and g.output:
            g.output[0].name = "never_made"
        elif kind == "dup_name" and len(g.node) > 1:
            g.node[0].name = g.node[1].name
        elif kind == "dup_output" and len(g.node) > 1:
            g.node[1].output[0] = g.node[0].output[0]
        elif kind == "cycle" and len(g.node) > 1 and g.node[0].input:
            g.node[0].input[0] = g.node[-1].output[0]
        elif kind == "drop_init" and g.initializer:
            del g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
        elif kind == "op_type" and node is not None:
            node.op_type = draw(st.sampled_from(["NoSuchOp", "", "Conv", "Loop"]))
        elif kind == "domain" and node is not None:
            node.domain = draw(st.sampled_from(["com.example", "ai.onnx.ml", "com.microsoft"]))
        elif kind == "opset" and m.opset_import:
            m.opset_import[0].version = draw(st.sampled_from([0, 1, 7, 10_000, -3]))
        elif kind == "attr" and node is not None:
            node.attribute.append(helper.make_attribute(
                draw(st.sampled_from(["pads", "strides", "axis", "kernel_shape", "group"])),
                draw(st.sampled_from([[-1, -1, -1, -1], [0], 2**40, -5, [2**62, 1]]))))
    return m.SerializeToString()


@fuzz(40)
@given(data=structural_mutants())
def test_onnx_structural_mutants_import_or_are_refused_in_one_line(workdir, data) -> None:
    path = workdir / "structural.onnx"
    path.write_bytes(data)
    g = import_or_refuse(path)
    if g is not None:
        assert all(b.bytes >= 0 for b in g.buffers)


@pytest.mark.slow
@fuzz(25)
@given(data=st.one_of(byte_mutants(), structural_mutants()))
def test_accepted_onnx_mutants_plan_and_the_cli_stays_clean(workdir, data) -> None:
    """What the importer accepts plans (or fails with a one-line error), and ``inspect``,
    ``compile`` and ``simulate`` on it exit 0/1/2 with one-line errors."""
    path = workdir / "cli.onnx"
    path.write_bytes(data)
    out = workdir / "out"
    code, _, err = run_cli(["inspect", "-q", str(path)])
    assert_clean_cli(code, err)
    code, _, err = run_cli(["compile", "-q", str(path), "--solver", "naive", "-o", str(out)])
    assert_clean_cli(code, err)
    if code == 0:
        code, sim_out, err = run_cli(["simulate", "-q", str(path), str(out / "plan.json")])
        assert_clean_cli(code, err)
        # 2: the model's weight data or dtypes cannot be executed (the importer reads only
        # dims and types).  1: the model's real shapes are not the ones the importer
        # accepted (an ``Add`` whose mutated operand broadcasts to more rows): the plan is
        # right for the IR, and the simulator reports, without a traceback, that it does not
        # compute the model.
        assert code in (0, 1, 2)
        if code == 1:
            assert "MISMATCH: " in sim_out


# ---------------------------------------------------------------------------------------
# Plan JSON: mutants of valid plans, also version 2 tiled plans with cascades
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_plans(workdir) -> dict[str, tuple[Path, Graph, Plan, str]]:
    from stowage.api import compile as compile_plan
    from stowage.ir.inplace import fuse_in_place

    chain = workdir / "chain.onnx"
    chain.write_bytes(BASE_MODELS["chain"])
    g = load_graph(chain)
    naive = solve(Problem(g, load_target("ethos-u55-256").with_capacity(None), True), "naive")
    tiled = compile_plan(TINY_INT8, capacity="10KiB", solver="naive")
    assert tiled.cascades and tiled.options.in_place
    tg = fuse_in_place(load_graph(TINY_INT8))
    return {"chain": (chain, g, naive, plan_to_json(naive)),
            "tiled": (TINY_INT8, tg, tiled, plan_to_json(tiled))}


_HOSTILE_VALUES: list[Any] = [None, -1, 0, 1, 2**63, -(2**63), 10**400, 1.5, float("nan"), float("inf"),
                              "", "sram", "x" * 300, True, [], {}, [[[[[]]]]], {"a": {"b": {}}}]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:6]):   # the first few items of long arrays
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def plan_mutants(draw, which: str | None = None) -> tuple[str, str]:
    name = which or draw(st.sampled_from(["chain", "tiled"]))
    text = _BASE_TEXT[name]
    kind = draw(st.sampled_from(["value", "value", "value", "delete", "add_key", "dup_item", "truncate", "flip"]))
    if kind == "truncate":
        return name, text[:draw(st.integers(0, len(text) - 1))]
    if kind == "flip":
        b = bytearray(text.encode())
        for _ in range(draw(st.integers(1, 4))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        return name, b.decode("utf-8", errors="replace")
    d = json.loads(text)
    paths = _PATHS[name]
    path = draw(st.sampled_from(paths[1:]))
    parent = d
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    if kind == "value":
        old = parent[last]
        new = draw(st.sampled_from(_HOSTILE_VALUES + ([old + 1, old - 1, -old] if type(old) is int else [])))
        parent[last] = new
    elif kind == "delete":
        del parent[last]
    elif kind == "add_key" and isinstance(parent[last], dict):
        parent[last]["unexpected"] = draw(st.sampled_from(_HOSTILE_VALUES))
    elif kind == "dup_item" and isinstance(parent[last], list) and parent[last]:
        parent[last].append(parent[last][0])
    return name, json.dumps(d)


_BASE_TEXT: dict[str, str] = {}
_PATHS: dict[str, list[tuple]] = {}


@pytest.fixture(scope="module")
def texts(base_plans) -> None:
    """Fills the strategies' tables (``plan_mutants`` reads them while drawing)."""
    for k, (_, _, _, text) in base_plans.items():
        _BASE_TEXT[k] = text
        _PATHS[k] = _paths(json.loads(text))


def read_or_refuse(text: str) -> Plan | None:
    try:
        return plan_from_json(text)
    except Exception as exc:  # noqa: BLE001 - the property: nothing but a StowageError
        one_line_error(exc)
        return None


def test_the_base_plans_are_valid(base_plans) -> None:
    for _path, graph, plan, text in base_plans.values():
        assert plan_from_json(text) == plan
        assert validate(graph, plan).ok


@fuzz(150)
@given(m=plan_mutants())
def test_plan_mutants_are_read_or_refused_and_the_validator_never_raises(base_plans, texts, m) -> None:
    name, text = m
    plan = read_or_refuse(text)
    if plan is None:
        return
    _, graph, base, _ = base_plans[name]
    v = validate(graph, plan)          # a verdict, never an exception
    if plan == base:
        assert v.ok
    for e in v.errors:
        assert "\n" not in e.message


@fuzz(25)
@given(m=plan_mutants("chain"))
def test_plan_mutants_simulate_to_a_verdict(base_plans, texts, m) -> None:
    from stowage.simulate import simulate

    _, text = m
    plan = read_or_refuse(text)
    if plan is None:
        return
    path, graph, _, _ = base_plans["chain"]
    try:
        r = simulate(path, graph, plan)
    except Exception as exc:  # noqa: BLE001
        one_line_error(exc)     # only unusable input (an element-size override) may raise
        return
    if r.ok:
        assert validate(graph, plan).ok


@pytest.mark.slow
@fuzz(15)
@given(m=plan_mutants("tiled"))
def test_tiled_plan_mutants_simulate_to_a_verdict(base_plans, texts, m) -> None:
    from stowage.simulate import simulate

    _, text = m
    plan = read_or_refuse(text)
    if plan is None:
        return
    path, graph, _, _ = base_plans["tiled"]
    try:
        r = simulate(path, graph, plan)
    except Exception as exc:  # noqa: BLE001
        one_line_error(exc)
        return
    if r.ok:
        assert validate(graph, plan).ok


@fuzz(15)
@given(m=plan_mutants())
def test_cli_on_plan_mutants_exits_0_1_or_2_with_one_line_errors(base_plans, texts, workdir, m) -> None:
    name, text = m
    model = base_plans[name][0]
    f = workdir / "mutant.json"
    f.write_text(text, errors="replace")
    cmds = [["validate", "-q", str(model), str(f)], ["emit", "-q", str(f), "-o", str(workdir / "emit")]]
    if name == "chain":
        cmds.append(["simulate", "-q", str(model), str(f)])
    for argv in cmds:
        code, _, err = run_cli(argv)
        assert_clean_cli(code, err)


def test_a_plan_of_nans_and_huge_numbers_is_refused_by_path() -> None:
    """Hand-picked: the reader names the JSON path of the first bad value."""
    d = json.loads(plan_to_json(solve(Problem(load_graph_from(chain_model(2)),
                                              load_target("ethos-u55-256").with_capacity(None), True), "naive")))
    for path, value, words in ((("placements", 0, "offset"), -1, "$.placements[0].offset: must be >= 0"),
                               (("metrics", "compulsory_bytes"), 1.5,
                                "$.metrics.compulsory_bytes: expected an integer"),
                               (("steps", 0, "reads"), "0", "$.steps[0].reads")):
        dd = json.loads(json.dumps(d))
        parent = dd
        for k in path[:-1]:
            parent = parent[k]
        parent[path[-1]] = value
        with pytest.raises(StowageError) as e:
            plan_from_json(json.dumps(dd))
        assert words in str(e.value)


def load_graph_from(model: onnx.ModelProto) -> Graph:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.onnx"
        onnx.save(model, p)
        return load_graph(p)

