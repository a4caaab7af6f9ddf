"""What each step reads, writes and needs in the compute level, computed once per graph.

Why a table: ``Graph.op_reads`` / ``op_writes`` walk a step's members (fused in-place and QDQ
operators) every time they are asked, and ``ir.lifetimes.op_buffers`` on top of them.  A
planner asks for every step many times -- the scheduler's model, the use lists of every order
it simulates, the engine at every step, the assembler and its metrics -- and on a
10,000-operator graph each full pass cost 0.2-0.5 s of the time limit (issue 14, on time).
The table holds the same answers, indexed by operator index, memoised per graph
(``solvers.cache``), so that each is computed once."""

from __future__ import annotations

from dataclasses import dataclass

from stowage.ir.graph import Graph
from stowage.ir.lifetimes import op_buffers
from stowage.solvers.cache import graph_cached


@dataclass(frozen=True)
class StepTable:
    """Per operator index (all operators; non-computing ones as the graph answers for them):
    ``reads`` and ``writes`` (``Graph.op_reads`` / ``op_writes``), ``written`` (the same as
    a set) and ``needs`` (``op_buffers`` in the table's weights setting)."""

    reads: tuple[tuple[int, ...], ...]
    writes: tuple[tuple[int, ...], ...]
    written: tuple[frozenset[int], ...]
    needs: tuple[tuple[int, ...], ...]


def step_table(graph: Graph, weights_in_compute_level: bool) -> StepTable:
    """The ``StepTable`` of ``graph`` in one weights setting, memoised per graph."""
    def compute() -> StepTable:
        ops = graph.operators
        reads = tuple(graph.op_reads(op) for op in ops)
        writes = tuple(graph.op_writes(op) for op in ops)
        return StepTable(reads, writes, tuple(frozenset(w) for w in writes),
                         tuple(op_buffers(graph, op, weights_in_compute_level) for op in ops))

    return graph_cached("analysis.steps", graph, weights_in_compute_level, compute)


__all__ = ["StepTable", "step_table"]
