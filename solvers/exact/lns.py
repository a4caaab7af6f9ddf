"""Large-neighbourhood search over the operator order, for graphs the joint model cannot take whole.

Above ``AUTO_JOINT_MAX_OPS`` operators the order-free joint model stops proving and, worse,
stops finding: ``exact`` then kept the incumbent's order and only re-planned the residency
for it (``full model`` on a fixed schedule).  An order a few swaps away may need far less
traffic -- on a 44-operator int8 network with weights in SRAM at M_R the incumbent's order
needed 124,429 B where an order-aware model found 1,556 B.

The search (``search``): repeatedly take a *window* of consecutive steps of the incumbent's
order, fix every operator outside it to its step, let the joint CP-SAT model
(``joint_model.JointCpModel``) re-order the operators inside the window and re-plan the
residency (and, on graphs up to ``ADDRESS_MAX_OPS`` operators, the addresses) of every buffer,
hinted with the incumbent and cut off at the incumbent's traffic.  A strictly better answer
(traffic, then peak) becomes the incumbent; a no-address answer must first be packed into
addresses (``pack.pack_solution``).  Every accepted solution passes ``check_solution``.

Why the window stays correct: operators outside keep their steps, those inside may take any
step inside the window subject to the model's own all-different and precedence constraints,
so every answer is a topological order and a feasible solution of the unrestricted model --
the search only finds plans; it proves nothing (its restricted bounds are discarded).

Which windows (``windows``): first those around the incumbent's costliest spills (the steps
where a spilled buffer leaves and where it comes back: re-ordering there can keep it
resident), then a sliding cover of the order with half-window strides.  A pass with no
improvement doubles the width (up to the whole order).

Determinism: every solve gets a fixed CP-SAT deterministic-time budget (``iteration_work``),
charged in full whether used or not, and at most ``MAX_ITERATIONS`` solves; the windows
depend only on the incumbent.  So the same start, budget, seed and workers give the same
result on an idle or a loaded machine.  The wall deadline is a safety stop only
(``LnsResult.hit_wall``: the pipeline then reports ``solver.stopped_by = "time"``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from stowage.solvers.exact.joint_data import (
    JointData,
    JointSolution,
    check_solution,
    score_of,
    segments_by_buffer,
    traffic_of,
)
from stowage.solvers.exact.joint_model import JointCpModel

log = logging.getLogger(__name__)

#: Steps in the first windows; a pass over all windows without improvement doubles it.
WINDOW = 12

#: Up to this many operators the window model keeps addresses (``NoOverlap2D``): its answers
#: are plans as they stand.  Above, the model is the no-address relaxation and an answer must
#: be packed -- the address model of a 600-operator graph is too large to re-solve often.
ADDRESS_MAX_OPS = 120

#: At most this many window solves per search (with the work budget, whichever ends first).
MAX_ITERATIONS = 400


@dataclass(frozen=True)
class LnsResult:
    """``solution``: the best solution found, strictly better than the start (None: none);
    ``iterations``: window solves run; ``improved``: how many improved the incumbent;
    ``work``: deterministic time charged; ``hit_wall``: the wall deadline ended the search."""

    solution: JointSolution | None
    value: int | None
    iterations: int
    improved: int
    work: float
    hit_wall: bool


def spill_windows(data: JointData, sol: JointSolution, width: int) -> list[tuple[int, int]]:
    """Windows of ``width`` steps around the spills of ``sol``, costliest spill first: one
    centred where the buffer leaves the compute level, one where it comes back."""
    n = len(sol.order)
    cost = {mb.id: (mb.reload_cost, mb.store_cost) for mb in data.buffers}
    events: list[tuple[int, int, int]] = []          # (-cost, step, buffer)
    for bid, segs in segments_by_buffer(sol).items():
        reload, store = cost[bid]
        for k in range(1, len(segs)):
            c = reload + (store if k == 1 else 0)
            events.append((-c, segs[k - 1].end, bid))
            events.append((-c, segs[k].start, bid))
    out: list[tuple[int, int]] = []
    for _c, s, _b in sorted(events):
        lo = max(0, min(s - width // 2, n - width))
        win = (lo, min(n - 1, lo + width - 1))
        if win not in out:
            out.append(win)
    return out


def windows(data: JointData, sol: JointSolution, width: int) -> list[tuple[int, int]]:
    """The windows of one pass: around the spills first, then a sliding cover (stride
    ``width // 2``).  Inclusive step ranges, each of at most ``width`` steps."""
    n = len(sol.order)
    if width >= n:
        return [(0, n - 1)]
    out = spill_windows(data, sol, width)
    stride = max(1, width // 2)
    for lo in range(0, n - width + stride, stride):
        lo = min(lo, n - width)
        win = (lo, lo + width - 1)
        if win not in out:
            out.append(win)
    return out


def window_model(data: JointData, sol: JointSolution, lo: int, hi: int, addresses: bool) -> JointCpModel:
    """The joint model with every operator outside steps ``lo..hi`` fixed to its step in
    ``sol`` and those inside free within the window; hinted with ``sol`` and cut off at its
    traffic (no worse answers)."""
    jm = JointCpModel(data, addresses=addresses)
    m = jm.model
    step = {op: s for s, op in enumerate(sol.order)}
    for op, var in jm.pos_by_op.items():
        s = step[op]
        if lo <= s <= hi:
            m.add(var >= lo)
            m.add(var <= hi)
        else:
            m.add(var == s)
    if not isinstance(jm.traffic, int):
        m.add(jm.traffic <= traffic_of(data, sol))
    jm.add_hint(sol)
    return jm


def search(data: JointData, start: JointSolution, lower_bound: int, work: float, deadline: float,
           workers: int, seed: int, pack: Callable[[JointSolution], JointSolution | None],
           iteration_work: float | None = None) -> LnsResult:
    """Improve ``start`` (a feasible solution of ``data``, mode ``joint``) by window re-solves
    until its traffic reaches ``lower_bound``, the deterministic ``work`` budget is spent,
    ``MAX_ITERATIONS`` solves ran, or ``deadline`` (``time.perf_counter()``) passed.
    ``pack`` gives addresses to a no-address answer (None when it does not fit)."""
    n = len(start.order)
    addresses = n <= ADDRESS_MAX_OPS
    per = iteration_work if iteration_work is not None else max(0.1, min(2.0, work / 20))
    best, best_score = start, score_of(data, start)
    found: JointSolution | None = None
    iterations = improved = 0
    spent = 0.0
    width = min(WINDOW, n)
    hit_wall = False

    def done() -> bool:
        return best_score[0] <= lower_bound or spent + per > work + 1e-9 or iterations >= MAX_ITERATIONS

    while not done():
        moved = False
        for lo, hi in windows(data, best, width):
            if done():
                break
            left = deadline - time.perf_counter()
            if left <= 0.05:
                hit_wall = True
                break
            jm = window_model(data, best, lo, hi, addresses)
            res = jm.solve(left, workers, seed + iterations, True, label="exact[lns]", work=per)
            iterations += 1
            spent += per
            cand = res.solution
            if cand is None or res.value is None or res.value > best_score[0]:
                continue
            if not addresses:
                if res.value >= best_score[0]:
                    continue
                cand = pack(cand)
                if cand is None:
                    continue
            if check_solution(data, cand) is not None or score_of(data, cand) >= best_score:
                continue
            best, best_score, found = cand, score_of(data, cand), cand
            improved += 1
            moved = True
            log.info("exact[lns]: window %d..%d of %d steps: traffic %d", lo, hi, n, best_score[0])
            break                       # new incumbent: its own windows next
        if hit_wall:
            break
        if not moved:
            if width >= n:
                break
            width = min(n, 2 * width)
    value = traffic_of(data, found) if found is not None else None
    log.info("exact[lns]: %d window solves, %d improvements, best %s (%.1f deterministic s charged)",
             iterations, improved, value, spent)
    return LnsResult(found, value, iterations, improved, spent, hit_wall)


__all__ = ["ADDRESS_MAX_OPS", "MAX_ITERATIONS", "WINDOW", "LnsResult", "search", "spill_windows", "window_model",
           "windows"]
