"""Import + inspect speed: the largest light-zoo model and synthetic N-node graphs.

Each case runs ``stowage inspect --json`` in-process (import + shape inference + summary) and
reports the best of ``--repeat`` wall-clock times.  Synthetic graphs: a *chain* (each Relu
reads the previous one) and a *ladder* (each Add reads the previous result and the graph
input, so one buffer has N consumers -- the shape that exposed a quadratic consumer scan), plus
a *reversed* chain whose file order is not topological (exercises the sort).

    python benchmarks/import_bench.py [--nodes 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from stowage import cli

LIGHT_ZOO = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def light_models() -> list[Path]:
    return sorted(LIGHT_ZOO.glob("*.onnx"))


def synthetic(kind: str, n: int) -> onnx.ModelProto:
    nodes = []
    prev = "x"
    for i in range(n):
        out = "y" if i == n - 1 else f"t{i}"
        if kind == "ladder":
            nodes.append(helper.make_node("Add", [prev, "x"], [out], name=f"n{i}"))
        else:
            nodes.append(helper.make_node("Relu", [prev], [out], name=f"n{i}"))
        prev = out
    if kind == "reversed":
        nodes.reverse()
    g = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def time_inspect(path: Path, repeat: int) -> tuple[float, dict]:
    import json

    best = float("inf")
    result: dict = {}
    for _ in range(repeat):
        out = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(out):
            code = cli.main(["-q", "inspect", "--json", str(path)])
        best = min(best, time.perf_counter() - t0)
        assert code == 0
        result = json.loads(out.getvalue())
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    largest = max(light_models(), key=lambda p: len(onnx.load(str(p), load_external_data=False).graph.node))
    cases: list[tuple[str, Path]] = [(largest.stem, largest)]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("chain", "ladder", "reversed"):
            for n in (args.nodes // 4, args.nodes):
                p = Path(tmp) / f"{kind}{n}.onnx"
                onnx.save(synthetic(kind, n), str(p))
                cases.append((f"{kind} {n} nodes", p))
        print(f"| model | onnx nodes | computing ops | buffers | inspect wall time (best of {args.repeat}) |")
        print("|---|---:|---:|---:|---:|")
        for name, path in cases:
            seconds, d = time_inspect(path, args.repeat)
            print(f"| {name} | {d['operators']} | {d['computing_operators']} | {d['buffers']} | {seconds:.2f} s |")


if __name__ == "__main__":
    main()
