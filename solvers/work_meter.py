"""A process-wide meter of deterministic work: what a search has done, counted in units that do
not depend on the machine's speed or load, so that a search can stop on a *work* budget and
the same command gives the same plan on an idle and on a loaded machine (issue 14, item 6).

Three counters, each fed by the component doing the work:

* ``entries``: conflict-list entries re-packed by the offline packer
  (``alloc.greedy.allocate_offsets``; one packing pass costs the sum of the conflict lists
  plus the intervals), the hot loop of every byte-count simulation;
* ``nodes``: search nodes of the exact packer (``alloc.exact.exact_pack``; both engines count
  the same nodes);
* ``steps``: simulated steps of the spill engine (``spill.engine.SpillEngine.run_steps``).

``seconds(a, b)`` turns the difference of two readings into seconds of work at fixed rates
(``ENTRIES_PER_SECOND``, ``PACK_NODES_PER_SECOND``, ``STEPS_PER_SECOND``: each a third of the
component's idle rate on the 2-core reference VM or less), the unit the planners' budgets are
written in.  A reading is a frozen ``Work`` value; the counters only grow.

The meter is not thread-safe: simulations and packings run in the planner's own thread (CP-SAT
workers do not call into it)."""

from __future__ import annotations

from dataclasses import dataclass

#: Spill-engine steps per second of work.  An online simulation of densenet121's 250 steps
#: takes 8-10 ms idle on the 2-core VM (25,000-30,000 steps/s); a third of that, like the
#: packers' rates (``alloc.greedy.ENTRIES_PER_SECOND``, ``alloc.exact.PACK_NODES_PER_SECOND``).
STEPS_PER_SECOND = 10_000

_COUNTS = {"entries": 0, "nodes": 0, "steps": 0}


@dataclass(frozen=True)
class Work:
    """One reading of the meter (cumulative counts since the process started)."""

    entries: int
    nodes: int
    steps: int


def reading() -> Work:
    """The counters now."""
    return Work(_COUNTS["entries"], _COUNTS["nodes"], _COUNTS["steps"])


def add_entries(n: int) -> None:
    """Count ``n`` conflict-list entries re-packed by the offline packer."""
    _COUNTS["entries"] += n


def add_nodes(n: int) -> None:
    """Count ``n`` search nodes of the exact packer."""
    _COUNTS["nodes"] += n


def add_steps(n: int) -> None:
    """Count ``n`` simulated steps of the spill engine."""
    _COUNTS["steps"] += n


def seconds(since: Work, now: Work | None = None) -> float:
    """Seconds of work between two readings (``now`` defaults to the counters now), at the
    fixed rates of the module docstring."""
    from stowage.solvers.alloc.exact import PACK_NODES_PER_SECOND
    from stowage.solvers.alloc.greedy import ENTRIES_PER_SECOND

    b = reading() if now is None else now
    return ((b.entries - since.entries) / ENTRIES_PER_SECOND + (b.nodes - since.nodes) / PACK_NODES_PER_SECOND
            + (b.steps - since.steps) / STEPS_PER_SECOND)


__all__ = ["STEPS_PER_SECOND", "Work", "add_entries", "add_nodes", "add_steps", "reading", "seconds"]
