"""Monotone in capacity across a sweep's cells (issue 14, item 2).

A plan for a smaller capacity is a valid plan for a larger one (its placements stay inside the
smaller range; nothing else of the target changes), so along the capacities of one *chain* --
the cells of one model, target and solver (a sweep's options, seed included, are shared by
every cell) -- a cell whose own plan moves more bytes than an earlier cell's takes that plan as
its answer, as ``stowage compare`` does with ``portfolio.monotone_over``.  The row then reports
the smaller cell's plan (its traffic, peaks, objective and time estimate) with this cell's own
capacity, lower bound (status re-derived from it), wall time and worker, and names the cell
whose plan it is in ``plan_from`` (its capacity spec; empty: the cell's own plan).

Why rows and not plans: cells run in parallel workers (a process pool, Dask) and a resumed
sweep finds its earlier cells only as rows of the table.  Every planned cell is planned
independently, exactly as before (its own plan is deterministic for the options); the choice
here is a pure function of those rows, made in the parent in capacity order, so the table is
the same for every executor and for a run and its resume.  The cost: a finished cell is held
back (not yet appended) until every smaller cell of its chain has its row; the sweep submits
each chain's cells in increasing capacity, so a cell waits for at most the cells running beside
it, and an interrupted sweep reruns the held cells when resumed.

What is compared: non-compulsory bytes, then the compute level's peak (``portfolio.plan_key``);
ties keep the cell's own plan, and among earlier cells the smallest capacity wins.  A cell
whose own row is an error stays an error (its solver failed there); earlier error rows offer
nothing.  Rows already in the table are never rewritten: a resume that adds a capacity below
finished cells does not revise them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Columns that describe the plan itself, copied from the earlier cell whose plan is taken.
PLAN_COLUMNS = ("noncompulsory_bytes", "compulsory_bytes", "traffic_bytes", "peak_bytes", "compute_peak_bytes",
                "objective", "estimated_seconds", "latency_bound")


def _number(value: Any) -> int | None:
    """A byte count of a row (CSV text or an int); None when empty or not a number."""
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def row_key(row: Mapping[str, Any]) -> tuple[int, int] | None:
    """What "better" means between rows of one chain: non-compulsory bytes, then the compute
    level's peak (``portfolio.plan_key``); None for a row without a plan (an error)."""
    if row.get("status") in (None, "", "error"):
        return None
    traffic = _number(row.get("noncompulsory_bytes"))
    if traffic is None:
        return None
    return traffic, _number(row.get("compute_peak_bytes")) or 0


def _gap_text(value: int, bound: int | None) -> tuple[str, str]:
    """``gap`` and ``gap_ratio`` as the sweep writes them (``sweep._gap_ratio``'s rule)."""
    if bound is None:
        return "", ""
    if value == bound:
        return str(value - bound), "0"
    if value <= 0:
        return str(value - bound), ""
    return str(value - bound), f"{(value - bound) / value:.4f}"


def monotone_row(own: Mapping[str, Any], earlier: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``own`` (a cell's row), or -- when an ``earlier`` row (the final rows of the same chain
    at smaller capacities, in increasing capacity) has a strictly better plan -- ``own`` with
    the best earlier plan's columns (``PLAN_COLUMNS``), its status re-derived from ``own``'s
    lower bound, ``gap``/``gap_ratio`` recomputed and ``plan_from`` naming the cell that found
    that plan.  Everything else (key, capacity, bound, seconds, worker, attempts) stays
    ``own``'s."""
    out = dict(own)
    out.setdefault("plan_from", "")
    mine = row_key(own)
    if mine is None:
        return out
    best, best_key = None, mine
    for cand in earlier:
        k = row_key(cand)
        if k is not None and k < best_key:
            best, best_key = cand, k
    if best is None:
        return out
    for c in PLAN_COLUMNS:
        out[c] = best.get(c, "")
    bound = _number(own.get("lower_bound"))
    value = best_key[0]
    out["status"] = "optimal" if bound is not None and value <= bound else "feasible"
    out["gap"], out["gap_ratio"] = _gap_text(value, bound)
    out["plan_from"] = best.get("plan_from") or best.get("capacity_spec", "")
    return out


@dataclass
class Chains:
    """Rows held until they can be final.  ``chains`` maps a chain key to its cells' ids in
    increasing capacity (one id per distinct capacity: duplicates follow their
    representative); ``final`` holds the rows already final (those in the table), by id.
    ``add(id, row)`` returns the (id, final row) pairs that became ready, in chain order;
    ids in no chain (an unresolved capacity) pass straight through."""

    chains: Mapping[Any, Sequence[Hashable]]
    final: dict[Hashable, Mapping[str, Any]] = field(default_factory=dict)
    _held: dict[Hashable, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._chain_of = {cid: key for key, ids in self.chains.items() for cid in ids}

    def add(self, cid: Hashable, row: Mapping[str, Any]) -> list[tuple[Hashable, dict[str, Any]]]:
        key = self._chain_of.get(cid)
        if key is None:
            self.final[cid] = row
            return [(cid, dict(row))]
        self._held[cid] = row
        ready: list[tuple[Hashable, dict[str, Any]]] = []
        earlier: list[Mapping[str, Any]] = []
        for other in self.chains[key]:
            if other in self.final:
                earlier.append(self.final[other])
                continue
            if other not in self._held:
                break                     # a smaller capacity still runs: the rest waits
            done = monotone_row(self._held.pop(other), earlier)
            self.final[other] = done
            earlier.append(done)
            ready.append((other, done))
        return ready

    @property
    def held(self) -> int:
        """Rows finished but not yet final (a smaller capacity of their chain still runs)."""
        return len(self._held)


__all__ = ["PLAN_COLUMNS", "Chains", "monotone_row", "row_key"]
