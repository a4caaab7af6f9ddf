"""A capacity that tiles is never refused because the clock cut the cascade search.

Two Slices of the graph input (rows 0:32 and 32:64), each into a 3x3 convolution, joined by an
Add.  An input read by several steps is not streamed in rows, so each Slice run on its own
needs the whole input (4,096 B + its row): the smallest-cascades fallback does not fit
2,560 B, while a cascade holding a Slice with its convolution does.  Before, a wall clock that
ended the least-traffic search before its first round (a loaded machine; here a 1 ms limit)
left no partition and the compile was refused with the floor error, a refusal that depended on
the load.  Now the search is finished on its work budget alone."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from stowage.api import compile as compile_plan
from stowage.api import load_model
from stowage.errors import CapacityError
from stowage.plan.validate import validate


def _two_slices(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 64, 16])
    inits = [numpy_helper.from_array(np.full((8, 4, 3, 3), 0.01, np.float32), "w"),
             numpy_helper.from_array(np.array([2], np.int64), "ax")]
    nodes = []
    for k, (a, b) in enumerate(((0, 32), (32, 64))):
        inits += [numpy_helper.from_array(np.array([a], np.int64), f"s{k}"),
                  numpy_helper.from_array(np.array([b], np.int64), f"e{k}")]
        nodes += [helper.make_node("Slice", ["x", f"s{k}", f"e{k}", "ax"], [f"p{k}"], name=f"slice{k}"),
                  helper.make_node("Conv", [f"p{k}", "w"], [f"c{k}"], pads=[1, 1, 1, 1], name=f"conv{k}")]
    nodes.append(helper.make_node("Add", ["c0", "c1"], ["y"], name="add"))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 32, 16])
    m = helper.make_model(helper.make_graph(nodes, "two_slices", [x], [y], inits),
                          opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, path)
    return path


def test_a_clock_cut_search_still_plans_a_capacity_that_tiles(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _two_slices(tmp_path / "two_slices.onnx")
    g = load_model(path, element_bytes=1)
    # 2,560 B: one cascade, 0 B; 2,304 B: its rows by slot (rings alone find nothing), 12,288 B;
    # 2,176 B too, once the slot search walks segments its ring bound overstates
    # (``partition.BOUND_SLACK``).
    for cap, want in ((2560, 0), (2304, 12288), (2176, 12288)):
        unloaded = compile_plan(path, "ethos-u55-256", capacity=cap, time_limit=10, element_bytes=1)
        assert unloaded.metrics.noncompulsory_bytes == want and unloaded.cascades
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="stowage.solvers.tiling.plan"):
            cut = compile_plan(path, "ethos-u55-256", capacity=cap, time_limit=0.001, element_bytes=1)
        assert any("finishing the least-traffic search" in r.getMessage() for r in caplog.records)
        assert cut.cascades and cut.solver.stopped_by == "time"
        assert validate(g, cut).ok
        # The later phases were cut too, so the plan could move more than the unloaded one, never less.
        assert cut.metrics.noncompulsory_bytes >= want
    # Below what the cascades need the refusal is the floor error, clock or not.
    for limit in (10, 0.001):
        with pytest.raises(CapacityError, match="slice0"):
            compile_plan(path, "ethos-u55-256", capacity=2048, time_limit=limit, element_bytes=1)
