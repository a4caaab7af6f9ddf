"""The joint model as a MIP through PuLP: CBC (bundled) or HiGHS.

Same decisions as the CP-SAT model (``joint_model``); what CP-SAT expresses with
intervals is written here with big-M constraints, each M as tight as the data allows: the
number of steps for time, the capacity for addresses (an offset plus a size never exceeds
the capacity, so ``off_i + size_i - off_j <= capacity``).  Non-overlap of two segments is a
four-way disjunction (before / after in time, below / above in address).

Two pitfalls measured on these machines drive the plumbing:

* OR-Tools and highspy each ship a ``libhighs``; whichever loads second breaks.  The HiGHS
  path therefore runs in a child process (``python -m stowage.solvers.exact.joint_mip``) that
  never imports OR-Tools; the instance goes in pickled on stdin, the result comes back pickled
  in a file (highspy prints a banner on stdout).
* Under a time limit PuLP's ``LpStatus`` says "Optimal" for merely feasible answers; the
  truth is ``prob.sol_status`` (``LpSolutionOptimal`` vs ``LpSolutionIntegerFeasible``).

The peak tie-breaker is a second solve (traffic fixed at its optimum) when time remains,
rather than a weighted sum whose coefficients would strain the solvers' tolerances.
"""

from __future__ import annotations

import itertools
import logging
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from stowage.solvers.exact.joint_data import JointData, JointSolution, Segment, SolveResult, step_bounds, tighten

log = logging.getLogger(__name__)


class JointMipModel:
    """Builds the PuLP model of a ``JointData``."""

    def __init__(self, data: JointData) -> None:
        import pulp

        self.pulp = pulp
        self.data = data
        self.prob = pulp.LpProblem("stowage_joint", pulp.LpMinimize)
        self._variables()
        self._constraints()
        self.traffic = pulp.lpSum(self._traffic_terms())

    # -- variables -----------------------------------------------------------------------
    def _var(self, name: str, low: float | None = None, up: float | None = None, cat: str = "Continuous") -> Any:
        """A variable of this problem: PuLP >= 3.3 attaches it at creation (``add_variable``;
        constructing ``LpVariable`` directly is deprecated there), older PuLP builds it free."""
        add = getattr(self.prob, "add_variable", None)
        if add is not None:
            return add(name, low, up, cat=cat)
        return self.pulp.LpVariable(name, low, up, cat=cat)

    def _variables(self) -> None:
        d = self.data
        self.bounds = step_bounds(d)
        self.pos_by_op: dict[int, Any] = {}
        for op, (lo, hi) in self.bounds.items():
            self.pos_by_op[op] = lo if lo == hi else self._var(f"pos_{op}", lo, hi, cat="Integer")
        # Per buffer and segment: present, start, end, offset (in alignment units).
        self.segments_by_buffer: dict[int, list[dict[str, Any]]] = {}
        self.covers_by_buffer_user: dict[int, dict[int, list[Any]]] = {}
        for mb in d.buffers:
            lo = min(self.bounds[u][0] for u in mb.users)
            hi = max(self.bounds[u][1] for u in mb.users)
            segs = []
            for k in range(mb.max_segments):
                segs.append({
                    "present": 1 if k == 0 else self._var(f"present_{mb.id}_{k}", cat="Binary"),
                    "start": self._var(f"start_{mb.id}_{k}", lo, hi, cat="Integer"),
                    "end": self._var(f"end_{mb.id}_{k}", lo, hi, cat="Integer"),
                    "slot": self._var(f"slot_{mb.id}_{k}", 0, (d.capacity - mb.size) // d.alignment, cat="Integer"),
                    "size": mb.size, "lo": lo, "hi": hi, "buffer": mb.id,
                })
            self.segments_by_buffer[mb.id] = segs
            if mb.max_segments > 1:
                self.covers_by_buffer_user[mb.id] = {
                    u: [self._var(f"covers_{mb.id}_{u}_{k}", cat="Binary") for k in range(mb.max_segments)]
                    for u in mb.users}
        self.scratch_by_op: dict[int, dict[str, Any]] = {}
        for op, extra in d.scratch:
            lo, hi = self.bounds[op]
            self.scratch_by_op[op] = {
                "present": 1, "start": self.pos_by_op[op], "end": self.pos_by_op[op],
                "slot": self._var(f"scratch_{op}", 0, (d.capacity - extra) // d.alignment, cat="Integer"),
                "size": extra, "lo": lo, "hi": hi, "buffer": -1 - op,
            }
        self.peak = self._var("peak", 0, d.capacity)

    # -- constraints ---------------------------------------------------------------------
    def _constraints(self) -> None:
        d, prob, pulp = self.data, self.prob, self.pulp
        n, cap, al = d.nsteps, d.capacity, d.alignment
        pos = self.pos_by_op
        if d.order is None:
            # Permutation: every pair of operators runs in some order, dependencies fixed.
            anc: dict[int, set[int]] = {}
            for op, preds in d.preds:  # ops in topological (file) order
                anc[op] = set(preds).union(*(anc[p] for p in preds)) if preds else set()
            ops = list(d.ops)
            for i, u in enumerate(ops):
                for v in ops[i + 1:]:
                    if u in anc[v]:
                        prob += pos[u] + 1 <= pos[v]
                    elif v in anc[u]:
                        prob += pos[v] + 1 <= pos[u]
                    else:
                        first = self._var(f"before_{u}_{v}", cat="Binary")
                        prob += pos[u] + 1 <= pos[v] + n * (1 - first)
                        prob += pos[v] + 1 <= pos[u] + n * first
        for mb in d.buffers:
            segs = self.segments_by_buffer[mb.id]
            if mb.producer is not None:
                prob += segs[0]["start"] == pos[mb.producer]
            for a, b in itertools.pairwise(segs):
                prob += b["present"] <= a["present"]
                prob += b["start"] >= a["end"] + 1 - n * (1 - b["present"])
            for s in segs:
                prob += s["end"] >= s["start"]
                prob += self.peak >= al * s["slot"] + mb.size - cap * (1 - s["present"])
            if mb.max_segments == 1:
                for u in mb.users:
                    prob += segs[0]["start"] <= pos[u]
                    prob += segs[0]["end"] >= pos[u]
                continue
            covers = self.covers_by_buffer_user[mb.id]
            for u, cov in covers.items():
                prob += pulp.lpSum(cov) == 1
                for k, c in enumerate(cov):
                    if k > 0:
                        prob += c <= segs[k]["present"]
                    prob += segs[k]["start"] <= pos[u] + n * (1 - c)
                    prob += segs[k]["end"] >= pos[u] - n * (1 - c)
            if mb.producer is not None:
                prob += covers[mb.producer][0] == 1
            for k in range(1, mb.max_segments):
                prob += pulp.lpSum(covers[u][k] for u in mb.users) >= segs[k]["present"]
            if d.order is not None:
                step = {op: s for s, op in enumerate(d.order)}
                ordered = sorted(mb.users, key=lambda u: step[u])
                idx = [pulp.lpSum(k * c for k, c in enumerate(covers[u])) for u in ordered]
                prob += idx[0] == 0
                for a, b in itertools.pairwise(idx):
                    prob += b - a >= 0
                    prob += b - a <= 1
        for sc in self.scratch_by_op.values():
            prob += self.peak >= al * sc["slot"] + sc["size"]
        # Non-overlap of every pair of segments that can be resident at a common step.
        boxes = [s for mb in d.buffers if mb.size > 0 for s in self.segments_by_buffer[mb.id]]
        boxes += list(self.scratch_by_op.values())
        count = 0
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                if a["buffer"] == b["buffer"] or a["hi"] < b["lo"] or b["hi"] < a["lo"]:
                    continue
                count += 1
                z = [self._var(f"sep_{count}_{j}", cat="Binary") for j in range(4)]
                prob += pulp.lpSum(z) >= a["present"] + b["present"] - 1
                prob += a["end"] + 1 <= b["start"] + n * (1 - z[0])
                prob += b["end"] + 1 <= a["start"] + n * (1 - z[1])
                prob += al * a["slot"] + a["size"] <= al * b["slot"] + cap * (1 - z[2])
                prob += al * b["slot"] + b["size"] <= al * a["slot"] + cap * (1 - z[3])

    def _traffic_terms(self) -> list[Any]:
        terms = []
        for mb in self.data.buffers:
            for k, s in enumerate(self.segments_by_buffer[mb.id][1:], start=1):
                cost = mb.reload_cost + (mb.store_cost if k == 1 else 0)
                if cost:
                    terms.append(cost * s["present"])
        return terms

    # -- solve and extract ---------------------------------------------------------------
    def _run(self, backend: str, time_limit: float) -> tuple[int, float | None]:
        pulp = self.pulp
        if backend == "cbc":
            with warnings.catch_warnings():  # PuLP 3 deprecates the bundled-CBC class name
                warnings.simplefilter("ignore", DeprecationWarning)
                solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=max(1, int(time_limit + 0.999)), threads=1)
        elif backend == "highs":
            solver = pulp.HiGHS(msg=False, timeLimit=max(0.1, time_limit), threads=1)
        else:
            raise ValueError(f"unknown MIP backend {backend!r}")
        self.prob.solve(solver)
        bound = None
        if backend == "highs":
            try:
                bound = float(self.prob.solverModel.getInfo().mip_dual_bound)
            except Exception:  # noqa: BLE001 - the bound is an extra; older highspy may not expose it
                bound = None
        return self.prob.sol_status, bound

    def solve(self, backend: str, time_limit: float) -> SolveResult:
        pulp, d = self.pulp, self.data
        t0 = time.perf_counter()
        primary = self.peak if d.mode == "min-peak" else self.traffic
        self.prob.setObjective(primary if not isinstance(primary, (int, float)) else pulp.lpSum([]))
        sol_status, dual = self._run(backend, time_limit)
        # CBC reports a proven-infeasible model as status Infeasible with no solution.
        if sol_status == pulp.LpSolutionInfeasible or (
                self.prob.status == pulp.LpStatusInfeasible and sol_status == pulp.LpSolutionNoSolutionFound):
            return SolveResult(None, "infeasible", None, None, time.perf_counter() - t0, f"pulp-{backend}")
        if sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
            return SolveResult(None, "unknown", None, None, time.perf_counter() - t0, f"pulp-{backend}")
        optimal = sol_status == pulp.LpSolutionOptimal
        value = round(pulp.value(primary) or 0)
        sol = self._extract()
        if optimal and d.mode != "min-peak":
            # Tie-breaker: the lowest peak among plans with optimal traffic.
            left = time_limit - (time.perf_counter() - t0)
            if left > 1.0:
                self.prob += self.traffic <= value
                self.prob.setObjective(self.peak)
                st2, _ = self._run(backend, left)
                if st2 in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
                    sol = self._extract()
        if optimal:
            bound = value
        elif dual is not None and dual == dual:  # not NaN
            bound = max(0, int(dual - 1e-6) + (0 if float(dual).is_integer() else 1))
        else:
            bound = None
        return SolveResult(sol, "optimal" if optimal else "feasible", value, bound,
                           time.perf_counter() - t0, f"pulp-{backend}")

    def _extract(self) -> JointSolution:
        d, pulp = self.data, self.pulp

        def val(x: Any) -> int:
            return round(pulp.value(x)) if not isinstance(x, int) else x

        order = tuple(sorted(d.ops, key=lambda op: val(self.pos_by_op[op])))
        segs = []
        for mb in d.buffers:
            for s in self.segments_by_buffer[mb.id]:
                if val(s["present"]):
                    segs.append(Segment(mb.id, val(s["start"]), val(s["end"]), d.alignment * val(s["slot"])))
        scratch = tuple((op, d.alignment * val(sc["slot"])) for op, sc in self.scratch_by_op.items())
        return tighten(d, JointSolution(order, tuple(segs), scratch))


def solve_mip(data: JointData, backend: str, time_limit: float) -> SolveResult:
    """Solve with CBC in this process, or with HiGHS in a child process.

    HiGHS runs in a child because it crashes when OR-Tools is loaded in the same process.  The
    child writes its result to a file named on its command line, never to stdout: highspy
    prints a banner on stdout (1.16: ``Running HiGHS ...``), which would corrupt the data.
    """
    if backend == "cbc":
        return JointMipModel(data).solve("cbc", time_limit)
    if backend != "highs":
        raise ValueError(f"unknown MIP backend {backend!r}; choose cbc or highs")
    payload = pickle.dumps((data, time_limit))
    with tempfile.TemporaryDirectory(prefix="stowage-highs-") as tmp:
        result_path = Path(tmp) / "result.pickle"
        proc = subprocess.run([sys.executable, "-m", "stowage.solvers.exact.joint_mip", str(result_path)],
                              input=payload, capture_output=True, timeout=time_limit + 60, check=False)
        if proc.returncode != 0 or not result_path.exists():
            raise RuntimeError(f"HiGHS subprocess failed: {proc.stderr.decode(errors='replace').strip()[-400:]}")
        result: SolveResult = pickle.loads(result_path.read_bytes())
    return result


def _child(result_path: str) -> None:
    """Entry point of the HiGHS subprocess: pickled (data, time_limit) on stdin, result to a file."""
    data, time_limit = pickle.loads(sys.stdin.buffer.read())
    if "ortools" in sys.modules:  # pragma: no cover - would crash inside HiGHS
        raise SystemExit("OR-Tools is loaded in the HiGHS process")
    result = JointMipModel(data).solve("highs", time_limit)
    tmp = Path(result_path + ".part")
    tmp.write_bytes(pickle.dumps(result))
    tmp.replace(result_path)


if __name__ == "__main__":
    _child(sys.argv[1])
