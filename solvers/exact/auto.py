"""``exact`` mode ``auto``: bound and pack, as a table of phases run in order.

Every phase either raises the proven lower bound (``lb``), or offers a better incumbent, or
both; the run stops as soon as the incumbent's traffic reaches the bound (``proven``).  The
phases, cheapest proofs first (``AutoPipeline.phases``):

1. two lower bounds valid over ALL orders: ``analysis.traffic_bound`` (computed at the
   start) and the crossing-cover IP (``cover_bound``); an incumbent at the bound is optimal
   at once; then, above M_R, ``auto``'s cheap proofs at M_R: their plan is a plan at this
   capacity, offered as the incumbent before anything costlier runs at the capacity, and
   where they prove M_R it is the very plan ``auto`` returns there (the *plan at M_R* of
   step 5 is then not needed);
2. for good orders (min-peak, file order, each first sunk by ``sink_order``) the order's
   optimum without addresses (``residency_model``, a compact gap model), every order first,
   then packed into addresses best first; a bound for every plan when the graph has a single
   topological order; then the cut bound (``cut_bound``), a bound over all orders from one
   minimum cut per tight operator: the least pressure any order leaves at it (up to
   ``CUT_MAX_OPS`` operators), the quick orders and packings not done yet, and the small
   chain bound of step 4, which needs no reference: where it proves the incumbent optimal
   (the Transformer with weights at M_H) the reference heuristic, 75% of the limit, is not
   run.  Steps 1-2 end on their work budgets; their common wall-clock window
   (``PRE_REFERENCE_SHARE`` of the limit) is only a safety stop;
3. unless that proved optimality: the *reference*, a standalone ``heuristic`` run on the same
   problem -- registered default parameters, the same time limit and seed -- whose plan
   becomes the incumbent and stays a candidate for the final answer;
4. with weights in the compute level, the order of the heuristic's plan without them
   (``activations_order``), planned with the gap model; where the group and disjunctive
   bounds can pay (``relaxations_can_pay``), one move of the *cone descent*
   (``orders.cone_orders``: whole cones of operators moved past a tight operator of the
   incumbent, scored by the gap model), so that the group bound's target is the better plan;
   the group bound (``group_bound``):
   an IP over a group of operators whose buffer sets overlap (which operators run before
   each, what crosses it, what is off-chip there), grown by row generation from the cut
   bound's operators -- valid for all orders, and each round's order is planned;
   the disjunctive bound (``disjunctive_bound``): the crossing bound on a tree of order
   decisions (a before b, or b before a) whose leaves cover every order -- valid for all
   orders, and the one bound that sees the order-dependent pressure of NAS cells (both are
   skipped where they cannot raise the bound: ``relaxations_can_pay``, ``relaxed_cover``);
   then the chain-cut IP (``cover_bound.chain_bound``): an order-aware bound along a chain of
   tight operators (the small chain again only if its run before the reference was cut
   short), then a descent over ``window_orders`` of the incumbent's order scored by the gap
   model;
5. the other warm starts (``minpeak``, greedy orders), the gap model on the incumbent's
   order (sunk, then as is), and the descent again if the incumbent's order changed; then,
   above M_R, the *plan at M_R*: ``auto``'s single pass (``heuristic.auto_once``: its cheap
   proofs, heuristic and baselines) on the same problem at M_R, whose plan is a plan at every
   larger capacity; it is offered as the incumbent (a warm start for the models below) and
   kept as a candidate for the final answer, so exact's traffic is at most ``auto``'s at M_R
   (monotone in capacity against M_R, issue 14); then the cone descent on from the incumbent;
6. the joint model *without addresses* (``JointCpModel(addresses=False)``, order free,
   cumulative capacity only), hinted with the incumbent and floored at the bound: its proven
   bound is a lower bound for the full problem, and its optimum is packed into addresses for
   the residency it chose; a packing that fits makes the relaxed optimum a true optimum;
7. unless proven: above ``AUTO_JOINT_MAX_OPS`` operators, where the order-free model cannot
   take the whole graph, the order LNS (``lns.search``): windows of the incumbent's order
   re-ordered and re-planned by the joint model with everything outside fixed (until
   ``LNS_WALL_SHARE`` of the limit at most, so that the full model gets time);
8. with time left, the full model with addresses (order free up to ``AUTO_JOINT_MAX_OPS``
   operators, the incumbent's order above) tries to improve the incumbent.

After every phase two post-conditions are checked: the incumbent is a feasible model
solution (``check_solution``) and the bound does not exceed its traffic.  A violation is a
bug in a bound or a phase, and raises instead of returning a wrong proof.

**Never worse than the heuristic.**  For the same problem (time limit, seed), exact's
non-compulsory traffic <= heuristic's (warm starts on, the default).  By construction: the
heuristic derives all its budgets from the time limit and seed, so the reference run inside
exact is the very run a user gets from ``--solver heuristic``, and the answer is the best
candidate: exact's incumbent (which starts from the reference's plan) or the reference plan
itself (``_final``: for plans the model cannot read back, and when ``max_segments`` makes the
model infeasible); the plan then says ``found_by = "heuristic"``.  Only an optimum proven in
steps 1-2 skips the reference, and nothing beats it.  The caveat is shared with the
heuristic's own determinism: a run that hits its wall-clock stop (an overloaded machine, or a
limit too short for the graph) may differ from run to run.  On graphs so large that the passes
after the reference would overrun the limit (thousands of operators), the reference gets the
wall time left until exact's final deadline (``AutoPipeline.reference_limit``) and keeps the
room for the passes after it by its own measured simulation time; the read-back of its plan
is skipped when no phase after it has time (``READBACK_UNITS``), and a reference plan that
stays the incumbent is returned as it is, not lowered again.  So the promise holds only where
the heuristic's own search is not cut by its clock.

**Determinism.**  Every phase gets a *work* budget that is a fixed fraction of the time limit
(``AUTO_WORK_BUDGETS``) -- CP-SAT's deterministic time for the models, the scheduler's and
the heuristics' own work budgets for the warm starts, the packers' node budgets -- never a
share of the time left.  So the same problem, seed and worker count give the same plan on a
quiet or a loaded machine.  The wall clock is only a safety stop: one window for the phases
before the reference heuristic (``PRE_REFERENCE_SHARE``), the reference's own stop (and
``REFERENCE_END_SHARE``), the group bound's and the order LNS's windows, and the final
deadline (the time limit minus a reserve for lowering the plan and for the registry's
validation) for the rest.  Whenever one of them cuts or skips a phase, the plan says
``solver.stopped_by = "time"``: it returns the best plan so far with its proven bound, which
may then differ between runs.  (Windows of 15%, 30%, 60% and 70% of the limit used to decide
whether a phase ran at all, silently for the later ones: a reference heuristic that ended by
work at 50% or at 65% of the limit ran the chain bound or not.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from stowage.errors import InfeasibleError, SolverError, StowageError
from stowage.ir.graph import OpIndex
from stowage.plan import Plan
from stowage.solvers.analysis.schedule import safety_seconds
from stowage.solvers.analysis.traffic_bound import traffic_lower_bound
from stowage.solvers.budgets import m_r_cached
from stowage.solvers.exact import lns
from stowage.solvers.exact.cover_bound import chain_bound, cover_bound
from stowage.solvers.exact.cut_bound import CutBound, CutDag, cut_bound
from stowage.solvers.exact.disjunctive_bound import disjunctive_bound
from stowage.solvers.exact.group_bound import group_bound
from stowage.solvers.exact.joint_data import (
    JointSolution,
    check_solution,
    greedy_solution,
    joint_data,
    score_of,
    solution_from_plan,
    traffic_of,
)
from stowage.solvers.exact.joint_model import JointCpModel
from stowage.solvers.exact.lower import infeasible_message, lower_solution
from stowage.solvers.exact.orders import best_orders, cone_orders, sink_order, spill_steps, window_orders
from stowage.solvers.exact.pack import pack_solution
from stowage.solvers.exact.params import AUTO_JOINT_MAX_OPS, ExactParams
from stowage.solvers.exact.relaxed_cover import cheapest_cover
from stowage.solvers.exact.residency_model import ResidencyResult, solve_residency, unique_order
from stowage.solvers.exact.warm_start import WARM_START_SOLVERS, plan_order, warm_starts
from stowage.solvers.problem import Problem
from stowage.solvers.registry import available
from stowage.solvers.spill import SpillResult

log = logging.getLogger(__name__)

#: Work budget of each phase, as a fraction of the time limit (CP-SAT deterministic seconds,
#: or the scheduler's and heuristics' own work units, per second of limit).  These are not
#: shares of one pie: they sum to 2.2, because most phases end well before their budget (a
#: model proven optimal, a descent with no improving move) and the wall-clock deadline stops
#: whatever runs when the limit is reached.  The reference heuristic is not in the table: it
#: runs with the full time limit, as a user's ``--solver heuristic`` would (up to 75% of it).
#: ``order`` is the scheduler's budget for the quick orders; ``pack`` the packers' wall time.
AUTO_WORK_BUDGETS = {"order": 0.05, "cover": 0.1, "gap": 0.05, "chain": 0.15, "improve": 0.1, "pack": 0.05,
                     "warm": 0.3, "gap_warm": 0.1, "relaxed": 0.35, "lns": 0.35, "full": 0.25,
                     "disjunctive": 0.1, "group": 0.15, "acts": 0.1, "relaxed_cover": 0.02, "cone": 0.05}

#: The chain-cut IP's set-up scans every (operator, buffer) pair in Python; above this many
#: pairs (about 2,000 operators x 2,000 buffers) it is skipped, by size, so that the
#: decision does not depend on the machine's speed.
CHAIN_MAX_PAIRS = 4_000_000

#: Gap-model evaluations of ``window_orders`` neighbours per run of ``AutoPipeline.improve``
#: (with the work budget ``AUTO_WORK_BUDGETS["improve"]``: first-improvement descent,
#: deterministic).
IMPROVE_EVALS = 200

#: Gap-model evaluations of ``cone_orders`` neighbours in the phase "cone descent" (with the
#: work budget ``AUTO_WORK_BUDGETS["cone"]``): first-improvement descent, deterministic.  The
#: pivots are the incumbent's spill steps, largest footprint first, so the moves that pay on
#: NAS stems come within the first few dozen (PNASNet-5 at M_H: the Pad of the stage's first
#: cell).
CONE_EVALS = 60

#: The first cone descent's evaluations (before the group bound): fewer, because there it
#: only sets the group bound's target, and where the incumbent is already optimal
#: (PNASNet-5 without weights at M_R) every evaluation is wall time the group bound's proof
#: needs on a loaded machine.  The move that pays at PNASNet-5 at M_H is the 12th.
CONE_FIRST_EVALS = 20

#: Safety window of the phases before the reference heuristic (phases 1-2 and the cheap
#: proofs at M_R, the small chain bound): a wall-clock share of the time limit from exact's
#: start.  Those phases end on their work budgets (``AUTO_WORK_BUDGETS``: CP-SAT's
#: deterministic time, the packers' node budgets, the scheduler's work); this stop is only the
#: safety net, and when it cuts or skips a phase the plan says ``stopped_by = "time"``.  It
#: was two windows of 15% and 30% that decided on a loaded machine and, at a 4 s limit, on an
#: idle one too (densenet121 8-bit with weights at p1: the cheap proofs at M_R, 0.3 s, came
#: after the 30% window, and exact returned a baseline's 2,309,632 B where its plan at M_R
#: is 1,205,760 B).  The reference heuristic ends by ``REFERENCE_END_SHARE`` of the limit
#: whatever this window took (issue 14, items 2 and 6).
PRE_REFERENCE_SHARE = 0.5

#: The reference heuristic's wall-clock safety stop, as a share of the limit from exact's
#: start: its own stop (75% of the limit from its start) decides whenever the phases before it
#: ended by 30% of the limit, so it is then the very run of ``--solver heuristic``; after a
#: longer pre-reference window it stops here (and says so), so that exact keeps its promise
#: of ``time_limit`` + 10% + 2 s.
REFERENCE_END_SHARE = 1.05

#: Evaluations of the crossing bound per second of the disjunctive bound's work budget
#: (``AUTO_WORK_BUDGETS["disjunctive"]``): the budget is counted in evaluations, not seconds,
#: so that the bound does not depend on the machine's speed or load (230-600 evaluations per
#: second on a 600-operator NAS graph on the reference 2-core VM, loaded or not).
DISJUNCTIVE_EVALS_PER_SECOND = 200

#: The cut bound scans every (operator, buffer) pair in Python and solves a maximum flow per
#: tight operator: skipped above this many operators (by size, not by the machine's speed).
CUT_MAX_OPS = 3000

#: Wall-clock share of the time limit by which the group bound (phase 4) stops, whatever its
#: work budget says (on PNASNet-5 its rounds took 8 deterministic seconds, 35 s of wall
#: time at load 6 on the 2-core VM).
GROUP_WALL_SHARE = 0.9

#: Wall-clock share of the time limit by which the order LNS (phase 7) stops, whatever its
#: work budget says: the full model comes after it.
LNS_WALL_SHARE = 0.85

#: Wall-clock share of the time limit by which the chain-cut IP (phase 4) stops: the final
#: deadline (a share of 1 is capped by it).  The IP has its own work budget
#: (``AUTO_WORK_BUDGETS["chain"]``, with twice that as its wall safety); a window of 60% of
#: the limit, after a reference heuristic that ends by work between 30% and 105% of it,
#: skipped the phase or not depending on the machine's load, without a word in the plan.
CHAIN_WALL_SHARE = 1.0

#: Wall-clock share of the time limit (from exact's start) by which the plan at M_R (phase 5,
#: above M_R) must end: the final deadline.  ``auto``'s pass at M_R has its own work budgets;
#: a window of 70% decided by load whether it ran at all (it comes after the reference).  A
#: run the deadline cuts or skips says ``stopped_by = "time"``.
M_R_WALL_SHARE = 1.0

#: Safety window of ``auto``'s cheap proofs at M_R inside ``exact`` (above M_R, before the
#: reference heuristic): the window of the other phases before the reference
#: (``PRE_REFERENCE_SHARE``), no longer a second window after a first one of 15%.
M_R_CHEAP_WALL_SHARE = PRE_REFERENCE_SHARE

#: Wall-clock share of the time limit (from their start) for ``auto``'s cheap proofs, at the
#: capacity and at M_R alike (``heuristic.auto_cheap_proofs``): their phases end on work
#: budgets of 0.25 of the limit (``AUTO_WORK_BUDGETS`` order + cover + gap + pack), so at
#: exact's 15% a loaded machine cut them before the gap model's plan was packed
#: (densenet121 at 4 s and load 8: no plan at 2 of 7 capacities, a non-monotone sweep; with
#: the wall share uncapped every capacity is proven in 0.7-2.6 s).  The same share at M_R
#: and above it, so that the proofs at M_R that ``auto`` runs above M_R are those it runs
#: at M_R itself.
AUTO_CHEAP_WALL_SHARE = 0.5


#: The phases ``cheap_proofs`` runs (``auto``'s use of the pipeline): the cover bound and the
#: gap model on the quick orders.
CHEAP_PHASES = ("cover bound", "gap model on quick orders")


@dataclass(frozen=True)
class Phase:
    """One step of the pipeline: ``run`` is called when the bound is not yet reached, at
    least ``min_left`` wall seconds remain (``None``: no time check) and ``when`` holds.
    ``wall_share`` (a fraction of the time limit) caps the phase's wall clock from the start
    of the run.  ``proves`` says what the phase contributes (logged, and for the reader)."""

    name: str
    run: Callable[[], None]
    proves: str
    min_left: float | None = 0.05
    when: Callable[[], bool] = lambda: True
    wall_share: float | None = None


#: Post-reference passes (read back, check, lower, validate) in units of the model data's
#: build time; measured 2.5 s after a 0.65 s build on 10,000 operators: about 4.  Where they
#: fit in a tenth of the limit, the reference heuristic gets the whole limit (the very run of
#: ``--solver heuristic``); above, the limit that is left (``AutoPipeline.reference_limit``).
POST_REFERENCE_FACTOR = 4.0

#: Reading the reference heuristic's plan back as a model solution and checking it, in units
#: of the model data's build time (``AutoPipeline.data_seconds``, measured at the start of the
#: run, so at this machine's load): 1.7-1.9 on 10,000 operators, idle or at load 8 on the
#: 2-core VM.  The read-back only serves the phases after the reference; with less wall time
#: left than this it is skipped, and the reference plan itself is the answer (what the
#: read-back would have become, as nothing after it has time to improve it).
READBACK_UNITS = 2.5

#: The least share of the limit the reference heuristic gets on graphs where it does not get
#: the whole limit (``reference_limit``): it needs some plan, and its first simulation has no
#: deadline anyway.
REFERENCE_MIN_SHARE = 0.25


class AutoPipeline:
    """State of the bound-and-pack pipeline: the incumbent (and who found it), the best
    proven bound (and what proved it), the clock, and the reference heuristic's plan."""

    def __init__(self, problem: Problem, params: ExactParams, started: float, time_limit: float,
                 workers: int, seed: int) -> None:
        self.problem, self.params, self.workers, self.seed = problem, params, workers, seed
        self.started, self.time_limit = started, time_limit
        reserve = min(2.0, max(0.1, 0.1 * time_limit))
        self.final_deadline = started + max(0.05, time_limit - reserve)
        self.deadline = self.final_deadline
        built = time.perf_counter()
        self.data = joint_data(problem, "joint", None, params.max_segments)
        #: Seconds the model's data took: the passes after the reference heuristic (reading its
        #: plan back, checking and lowering the answer, the registry's validation) take a few
        #: times that, linear in the graph's size.
        self.data_seconds = time.perf_counter() - built
        self.preds = self.data.pred_map()
        self.best: JointSolution | None = None
        self.best_value: int | None = None
        self.best_source = ""
        self.lb = traffic_lower_bound(problem) if problem.capacity is not None else 0
        self.how = "traffic bound"
        self.reference_plan: Plan | None = None
        #: ``auto``'s plan at M_R relabelled for this capacity (``plan_at_m_r``), a candidate
        #: for the final answer like the reference plan.
        self.m_r_plan: Plan | None = None
        #: The cheap proofs at M_R proved their plan optimal there, uncut: it is then the very
        #: plan ``auto`` returns at M_R, and the later phase "plan at M_R" is not needed.
        self.m_r_proven = False
        #: A lower bound at M_R reached the incumbent's traffic: no plan at M_R can beat it.
        self.m_r_moot = False
        self.order_before_warm: tuple[OpIndex, ...] | None = None
        #: The cut bound's result (``group_bound`` starts from its per-operator bounds).
        self.cut_result: CutBound | None = None
        self.incumbent_order: tuple[OpIndex, ...] | None = None
        #: Chain-bound variants (``sometimes_tight``) already run to their end, not cut short
        #: by a phase's wall share: running them again would give the same bound.
        self.chain_done: set[bool] = set()
        #: ``relaxations_can_pay``'s answers, per (incumbent order, bound).
        self.can_pay: dict[tuple[tuple[OpIndex, ...], int], bool] = {}
        self._dag: CutDag | None = None
        #: The quick orders (``quick_gaps``) not yet solved with the gap model, and the
        #: residencies solved but not yet packed: (traffic, rank, solution).
        self.quick_left: list[tuple[OpIndex, ...]] = []
        self.quick_found: list[tuple[int, int, JointSolution]] = []
        #: The wall clock ended the run or skipped a phase (``solver.stopped_by = "time"``).
        self.hit_wall = False
        #: The four baselines' simulations, run first (``run``; ``_best_baseline``).
        self.base_results: list[tuple[str, SpillResult]] | None = None
        #: The reference heuristic's plan read back as a model solution (``reference``): while
        #: it is the incumbent, the reference plan itself is the answer (no lowering).
        self.reference_solution: JointSolution | None = None
        #: The last solution ``check_solution`` passed (by identity): ``offer`` and
        #: ``check_invariants`` see the same incumbent again and again, and one check is
        #: 0.3-0.5 s on 10,000 operators.
        self._verified: JointSolution | None = None
        #: Gap-model evaluations of the window descents so far (``improve``).
        self.descent_evals = 0
        #: Orders whose ``cone_orders`` neighbours were all scanned without a better one, and
        #: the neighbours scored so far (their traffic was no better than the incumbent's then,
        #: and the incumbent's only falls).
        self.cone_scanned: set[tuple[OpIndex, ...]] = set()
        self.cone_tried: set[tuple[OpIndex, ...]] = set()
        #: ``relaxations_can_pay`` before the first cone descent (``can_pay_before_cone``).
        self.paid_before_cone = False

    # -- the table -----------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        pre = PRE_REFERENCE_SHARE
        return [
            Phase("cover bound", self.cover, "a bound over all orders (crossing-cover IP)", None, wall_share=pre),
            Phase("cheap proofs at M_R", self.cheap_at_m_r, "auto's cheap proofs at M_R: a plan at this larger "
                  "capacity, often proven at M_R in a fraction of a second; first, so that a plan at M_R is the "
                  "incumbent before the costlier proofs at this capacity", None, when=self.above_m_r,
                  wall_share=M_R_CHEAP_WALL_SHARE),
            Phase("gap model on quick orders", self.quick_gaps,
                  "plans for good orders; a bound when the graph has one order", wall_share=pre),
            Phase("cut bound", self.cut, "a bound over all orders (the least pressure at each operator, by "
                  "minimum cuts)", wall_share=pre, when=lambda: len(self.data.ops) <= CUT_MAX_OPS),
            Phase("gap model on the other quick orders", self.quick_gaps_rest, "the quick orders and packings "
                  "the cheap proofs' window left, in the window before the reference",
                  when=lambda: bool(self.quick_left or self.quick_found), wall_share=M_R_CHEAP_WALL_SHARE),
            Phase("chain bound before the reference", lambda: self.chain((False,)), "the chain bound (below) "
                  "while the cheap proofs' window lasts: where it proves the incumbent optimal the reference "
                  "heuristic is not needed (the Transformer with weights at M_H: 0.6 s, where the reference takes "
                  "75% of the limit)", wall_share=M_R_CHEAP_WALL_SHARE),
            Phase("reference heuristic", self.reference, "the heuristic's own plan, a candidate answer", None),
            Phase("chain bound", lambda: self.chain((False,)), "an order-aware bound along a chain of tight "
                  "operators (those tight in every order: small, and it closes fast where it proves); only when "
                  "the run before the reference was cut short", wall_share=CHAIN_WALL_SHARE,
                  when=lambda: False not in self.chain_done),
            Phase("activations-only order", self.activations_order, "plans for the order of the heuristic's plan "
                  "of the same problem without weights in the compute level", 0.1,
                  when=lambda: self.problem.weights_in_compute_level and self.params.warm_start
                  and self.problem.capacity is not None),
            Phase("cone descent", lambda: self.improve(CONE_FIRST_EVALS, cone=True, max_moves=1), "a better order: "
                  "whole cones of operators moved past the incumbent's tight operators (``orders.cone_orders``), one "
                  "move, before the group and disjunctive bounds, whose target the incumbent is (only where they "
                  "can pay: ``relaxations_can_pay``)", 0.1,
                  when=lambda: len(self.data.ops) <= CUT_MAX_OPS and self.can_pay_before_cone()),
            Phase("group bound", self.group, "a bound over all orders (the joint pressure of a group of operators "
                  "whose buffer sets overlap, by row generation); plans for the orders it finds", 0.1,
                  when=lambda: len(self.data.ops) <= CUT_MAX_OPS, wall_share=GROUP_WALL_SHARE),
            Phase("disjunctive bound", self.disjunctive, "a bound over all orders (the crossing bound on a tree "
                  "of order decisions)", 0.1),
            Phase("wide chain bound", lambda: self.chain((True,)), "the chain bound with operators tight in "
                  "some orders", wall_share=CHAIN_WALL_SHARE, when=lambda: True not in self.chain_done),
            Phase("window descent", self.improve, "better orders near the incumbent's", 0.1),
            Phase("other warm starts", self.other_warm_starts, "plans of the other heuristics and greedy orders"),
            Phase("gap model on the sunk incumbent order", self.gap_sunk_incumbent,
                  "a better residency for the incumbent's order, sunk", when=lambda: self.best is not None),
            Phase("gap model on the incumbent order", self.gap_incumbent,
                  "the best residency for the incumbent's order", when=lambda: self.incumbent_order is not None),
            Phase("window descent again", self.improve, "better orders near a new incumbent's", 0.1,
                  when=lambda: self.incumbent_order is not None and self.best is not None
                  and self.best.order != self.order_before_warm),
            Phase("plan at M_R", self.plan_at_m_r, "auto's plan at M_R, a plan at this larger capacity: "
                  "never more traffic than at M_R", None, when=lambda: self.above_m_r() and not self.m_r_proven,
                  wall_share=M_R_WALL_SHARE),
            Phase("cone descent again", lambda: self.improve(CONE_EVALS, cone=True), "better orders: the cone "
                  "descent on from the incumbent, after the bounds and the plans of other orders (skipped where its "
                  "neighbours were all tried)", 0.1, when=lambda: len(self.data.ops) <= CUT_MAX_OPS),
            Phase("no-address model", self.relaxed_joint, "a bound over all orders (joint model without addresses)",
                  0.1, when=lambda: self.data.exact),
            Phase("order LNS", self.order_lns, "better orders: windows of the incumbent's order re-ordered and "
                  "re-planned by the joint model", 0.2,
                  when=lambda: len(self.data.ops) > AUTO_JOINT_MAX_OPS and self.best is not None,
                  wall_share=LNS_WALL_SHARE),
            Phase("full model", self.full_model, "better plans (and, up to 40 operators, the bound) from the "
                  "joint model with addresses", 0.2),
        ]

    def run(self) -> Plan:
        self.base_results = self._baselines_first()
        plan = self._run_once()
        if self.hit_wall:
            plan = replace(plan, solver=replace(plan.solver, stopped_by="time"))
        return plan

    def _run_once(self) -> Plan:
        try:
            return self._run()
        except InfeasibleError:
            if self.data.exact:
                raise     # proven for every plan: the heuristic cannot have one either
            # Infeasible with at most ``max_segments`` segments per buffer only: the
            # reference heuristic's plan, when there is one, is still a plan.
            if self.reference_plan is None:
                self.reference()
            if self.reference_plan is None:
                raise
            self.lb = min(self.lb, self.reference_plan.solver.lower_bound or 0)
            return self._final(None)

    def _run(self) -> Plan:
        for phase in self.phases():
            if self.proven() or not phase.when():
                continue
            self.deadline = self.final_deadline
            if phase.wall_share is not None:
                self.deadline = min(self.final_deadline, self.started + phase.wall_share * self.time_limit)
            if phase.min_left is None or self.left() > phase.min_left:
                log.debug("exact[auto]: phase %s (%s)", phase.name, phase.proves)
                phase.run()
                self.check_invariants(phase.name)
                if self.left() <= 0 and not self.proven():
                    # The phase's safety window (or the final deadline) passed while it ran: a
                    # wall-clock stop may have ended it before its work budget did.
                    self.hit_wall = True
            else:
                self.hit_wall = True      # a phase skipped for want of wall time (its window)
        self.deadline = self.final_deadline
        if self.left() <= 0:
            self.hit_wall = True
        if self.best is None and self.reference_plan is None:
            if self.left() <= 0:
                raise SolverError(f"exact: no plan found within {self.time_limit:g}s (raise the time limit)")
            self.offer(greedy_solution(self.data, self.problem.graph.file_order()), "exact: greedy")
        if self.best is None:
            return self._final(None)
        if (self.best is self.reference_solution and self.reference_plan is not None
                and self.reference_plan.metrics.noncompulsory_bytes <= (self.best_value or 0)):
            # The incumbent is the reference plan read back: that plan is the answer as it is
            # (lowering the read-back costs a plan assembly, 0.5-1.4 s on 10,000 operators).
            log.info("exact[auto]: the reference heuristic's plan is the incumbent, lower bound %d (%s)",
                     self.lb, self.how)
            return self._final(None)
        status = "optimal" if self.proven() else "feasible"
        log.info("exact[auto]: traffic %d, lower bound %d (%s), %s, found by %s", self.best_value, self.lb,
                 self.how, status, self.best_source)
        plan = lower_solution(self.problem, self.data, self.best, "exact", status, self.lb, self.started,
                              self.best_source)
        return self._final(plan)

    def check_invariants(self, phase: str) -> None:
        """The post-condition of every phase: a feasible incumbent, and a bound below it."""
        if self.best is None:
            return
        why = self._check(self.best)
        if why is not None:
            raise SolverError(f"exact: internal error after phase '{phase}': the incumbent is infeasible: {why}")
        if self.best_value is not None and self.lb > self.best_value:
            raise SolverError(f"exact: internal error after phase '{phase}': lower bound {self.lb} ({self.how}) "
                              f"above the incumbent's traffic {self.best_value}")

    def _final(self, plan: Plan | None) -> Plan:
        """The best candidate: exact's plan, or the reference heuristic plan or ``auto``'s plan
        at M_R when one has less non-compulsory traffic (when the model could not read it back
        as a solution), under exact's name with exact's proven bound and ``found_by`` saying
        who found it (``heuristic``, ``... at M_R``).  Ties keep exact's plan, then the
        reference."""
        others = [(who, p) for who, p in (("heuristic", self.reference_plan), (self._m_r_label(), self.m_r_plan))
                  if p is not None]
        best_who, best = None, plan
        for who, cand in others:
            if best is None or cand.metrics.noncompulsory_bytes < best.metrics.noncompulsory_bytes:
                best_who, best = who, cand
        if best is None:
            raise SolverError(f"exact: no plan found within {self.time_limit:g}s (raise the time limit)")
        base = self._best_baseline(best)
        if base is not None:
            return base
        if best_who is None:
            return best
        value = best.metrics.noncompulsory_bytes
        status = "optimal" if value <= self.lb else "feasible"
        log.info("exact[auto]: the plan of %s (%d) is the best candidate", best_who, value)
        info = replace(best.solver, name="exact", status=status, lower_bound=self.lb,
                       seconds=time.perf_counter() - self.started, found_by=best_who)
        return replace(best, solver=info)

    def _baselines_first(self) -> list[tuple[str, SpillResult]] | None:
        """The four baselines' simulations with no deadline, before any phase, up to
        ``heuristic.LARGE_GRAPH`` operators and with a bounded capacity (else None):
        milliseconds to a second, and their online runs are memoised, so the reference
        heuristic's own comparison with them costs nothing more.  The reference keeps the
        baselines only while its deadline allows, so on a loaded machine ``exact`` returned
        more than a baseline (densenet121 with weights at 4 s and load 7: 2,811,648 B where
        the file-order Belady baseline moves 2,309,632 B); ``_best_baseline`` keeps them."""
        from stowage.solvers.baselines import baseline_results
        from stowage.solvers.heuristic import LARGE_GRAPH

        if self.problem.capacity is None or len(self.problem.graph.computing_ops) > LARGE_GRAPH:
            return None
        return baseline_results(self.problem)

    def _best_baseline(self, best: Plan) -> Plan | None:
        """A baseline's plan when one moves less than ``best`` (else None), from
        ``base_results``; ``found_by`` names the baseline."""
        from stowage.solvers.portfolio import keep_best_of_baselines

        if self.base_results is None or best.metrics.noncompulsory_bytes <= self.lb:
            return None
        chosen = keep_best_of_baselines(self.problem, "exact", [("exact", best)], self.lb, self.started,
                                        best.solver.stopped_by, results=self.base_results)
        return chosen if chosen.solver.found_by != "exact" else None

    def _m_r_label(self) -> str:
        """``found_by`` of the plan at M_R: who found it there, `` at M_R``."""
        sub = self.m_r_plan
        return f"{(sub.solver.found_by if sub is not None else None) or 'auto'} at M_R"

    # -- state ---------------------------------------------------------------------------
    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def work(self, phase: str) -> float:
        """The phase's deterministic work budget (CP-SAT deterministic time ~ seconds)."""
        return AUTO_WORK_BUDGETS[phase] * self.time_limit

    def proven(self) -> bool:
        return self.best_value is not None and self.best_value <= self.lb

    def _check(self, sol: JointSolution) -> str | None:
        """``check_solution``, run once per solution object (``_verified``)."""
        if sol is self._verified:
            return None
        why = check_solution(self.data, sol)
        if why is None:
            self._verified = sol
        return why

    def offer(self, sol: JointSolution | None, source: str) -> None:
        """Make ``sol`` the incumbent when it is feasible and better; ``source`` is what
        found it (``found_by`` of the plan, when it stays the incumbent)."""
        if sol is None or self._check(sol) is not None:
            return
        if self.best is None or score_of(self.data, sol) < score_of(self.data, self.best):
            self.best, self.best_value, self.best_source = sol, traffic_of(self.data, sol), source
            log.info("exact: incumbent %d from %s", self.best_value, source)

    def raise_bound(self, value: int | None, how: str) -> None:
        if value is not None and value > self.lb:
            self.lb, self.how = value, how

    def infeasible(self) -> InfeasibleError:
        return InfeasibleError(infeasible_message(self.problem, self.data))

    def _wall_hit(self) -> None:
        """A packer's wall-clock stop decided a result: the plan says ``stopped_by=time``."""
        self.hit_wall = True

    def pack(self, sol: JointSolution, source: str) -> None:
        """Give addresses to a no-address solution better than the incumbent."""
        if self.best_value is not None and traffic_of(self.data, sol) >= self.best_value:
            return
        if self.left() > 0.02:
            # The packers are bounded by the wall clock: a fixed share, so that failed
            # packings (fragmentation) cannot eat the time of the later phases.
            # The packers' budgets are the phase's work (``work``), the same on every
            # machine; the wall share is only their safety net (twice the work: room for a
            # loaded machine).
            wall = min(0.5 * self.left(), 2 * self.work("pack"))
            self.offer(pack_solution(self.data, sol, max(0.05, wall), self.seed, on_cut=self._wall_hit,
                                     work=max(0.05, self.work("pack"))), source)

    # -- phases --------------------------------------------------------------------------
    def cover(self) -> None:
        cb = cover_bound(self.data, max(0.05, self.left()), self.workers, self.seed, work=min(self.work("cover"), 10.0))
        if cb.infeasible:
            raise InfeasibleError(f"no plan fits in {self.problem.capacity} bytes of {self.data.compute_level}: "
                                  "buffers that cannot leave it are live together with an operator's operands")
        self.raise_bound(cb.bound, "cover bound")

    def quick_gaps(self) -> None:
        """The gap model on the min-peak and file orders (each sunk first): first every order's
        no-address optimum (cheap), then the packings, best residency first -- a packing is
        the costly part (on the Transformer with weights at M_H, 0.8 s for the first order's
        665,625 B where the second order's 211,988 B is the optimum), and one that fits makes
        every worse one moot.  What the phase's wall share leaves undone waits in
        ``quick_left`` and ``quick_found`` (``quick_gaps_rest``)."""
        budget = min(1.0, self.work("order"))
        self.quick_left = best_orders(self.problem, budget, self.preds, on_cut=self._wall_hit,
                                      safety=safety_seconds(budget, max(0.0, self.left())))
        self.quick_gaps_rest()

    def quick_gaps_rest(self) -> None:
        """The quick orders not yet solved, then the residencies not yet packed (all of them
        at first; after a cut, the rest, in the wider window before the reference heuristic)."""
        while self.quick_left and not self.proven() and self.left() > 0.05:
            order = self.quick_left[0]
            res = self.residency(order, "gap", None)
            if res.solution is not None and res.value is not None and res.value <= self.lb:
                self.pack(res.solution, "exact: gap model")    # at the bound: optimal if it packs
                if self.proven():
                    return
            if res.solution is not None and res.value is not None:
                self.quick_found.append((res.value, len(self.quick_found), res.solution))
            elif self.left() <= 0.05:
                break                     # cut by the window: solved again in the next one
            self.quick_left = self.quick_left[1:]
        while self.quick_found and not self.proven() and self.left() > 0.05:
            self.quick_found.sort(key=lambda f: (f[0], f[1]))
            value, _, sol = self.quick_found[0]
            before = self.best_value
            if before is None or value < before:
                self.pack(sol, "exact: gap model")
                if self.best_value == before and self.left() <= 0.05:
                    break                 # the window cut its packing: packed again in the next one
            self.quick_found = self.quick_found[1:]

    def reference_limit(self) -> float:
        """The reference heuristic's time limit: exact's own, so that it is the very run of
        ``--solver heuristic`` -- except on graphs so large that the passes after it (about
        ``POST_REFERENCE_FACTOR`` times the model data's build time) would not fit in a tenth
        of the limit; there it gets the wall time left until exact's final deadline (at least
        ``REFERENCE_MIN_SHARE`` of the limit).  The heuristic itself keeps the room for the
        passes after it, measured at run time: it times its first whole-order simulation and
        ends its search ``divide.POST_SEARCH_PASSES`` such simulations before its limit (its
        assembly takes ~1.5 of them; exact's validation, ~2.5, follows), and the read-back
        after it is skipped when it would not leave time for another phase (``READBACK_UNITS``).
        On such graphs the heuristic is cut by its wall clock anyway.  A fixed half of the
        limit (the rule before) let exact take 9.5 s for a 4 s limit on 10,000 operators at
        load 8 (``benchmarks/on_time.py``)."""
        post = POST_REFERENCE_FACTOR * self.data_seconds
        if post <= 0.1 * self.time_limit:
            return self.time_limit
        return max(REFERENCE_MIN_SHARE * self.time_limit, self.final_deadline - time.perf_counter())

    def reference(self) -> None:
        """The plan of a standalone ``heuristic`` run on this problem: the same parameters
        (the registered defaults), time limit and seed, so -- the heuristic's search being
        bounded by work -- the same plan a user gets from ``--solver heuristic``.  It is
        offered as the incumbent and kept as a candidate for the final answer (``_final``)."""
        from stowage.solvers.heuristic import HeuristicParams, plan_heuristic

        spec = available().get("heuristic")
        if spec is None or not self.params.warm_start:
            return
        same = replace(self.problem, time_limit=self.reference_limit(), seed=self.seed)
        try:
            # ``--solver heuristic`` itself (``heuristic.heuristic``), with exact's safety stop
            # ``REFERENCE_END_SHARE``: it decides only after a pre-reference window past 30%.
            params = spec.params_cls()
            assert isinstance(params, HeuristicParams)
            plan = plan_heuristic(same, params, "heuristic",
                                  wall_deadline=self.started + REFERENCE_END_SHARE * self.time_limit)
        except StowageError as exc:   # the heuristic found no plan: nothing to match
            log.info("exact: reference heuristic failed: %s", exc)
            return
        self.reference_plan = plan
        if plan.solver.stopped_by is not None:
            self.hit_wall = True          # the heuristic's own clock shaped a candidate
        if self.left() <= READBACK_UNITS * self.data_seconds:
            # No time for a phase after the read-back: the reference plan is the answer
            # (``_final``), as the read-back would have been.
            log.info("exact: %.2f s left, the read-back needs ~%.2f s: the reference plan is the answer",
                     self.left(), READBACK_UNITS * self.data_seconds)
            self.hit_wall = True
            return
        order = plan_order(self.problem, plan)
        if order is not None:
            sol = solution_from_plan(self.data, plan, order, check=False)
            self.offer(sol, "heuristic")
            if sol is not None and self.best is sol:
                self.reference_solution = sol

    def activations_order(self) -> None:
        """With weights in the compute level: the order of the heuristic's plan for the same
        problem without them (its time limit the work budget ``acts``), planned with the gap
        model.  Weights add small buffers that steer the heuristic's own order away from the
        one the activations need: PNASNet-5 at M_R, 13,383,262 B from the heuristic with
        weights, 5,929,817 B in the order it finds without them."""
        spec = available().get("heuristic")
        if spec is None:
            return
        limit = self.work("acts")
        if limit > self.left():
            self.hit_wall = True
            limit = self.left()
        if limit <= 0.1:
            return
        light = replace(self.problem, weights_in_compute_level=False, time_limit=limit, seed=self.seed)
        try:
            plan = spec.fn(light, spec.params_cls())
        except StowageError as exc:
            log.info("exact: activations-only heuristic failed: %s", exc)
            return
        order = plan_order(self.problem, plan)
        if order is not None and self.problem.graph.is_topological(order):
            self.gap_model(order, "gap", None, snug=True)

    def dag(self) -> CutDag:
        """The DAG facts of the cut, group and cover computations, built once per run."""
        if self._dag is None:
            self._dag = CutDag(self.data)
        return self._dag

    def relaxations_can_pay(self) -> bool:
        """Whether the group and disjunctive bounds can still raise the bound: not when the
        incumbent's order has a spill set, each spill paid once, that makes every operator fit
        and costs at most the bound already proven (``relaxed_cover``: that point is feasible in
        both relaxations, so neither can exceed its cost).  A rule about the instance and the
        incumbent, decided by a deterministic work budget; an undecided test runs the bounds."""
        if self.best is None:
            return True
        key = (self.best.order, self.lb)
        if key not in self.can_pay:
            cover = cheapest_cover(self.data, self.best.order, self.lb, self.work("relaxed_cover"),
                                   max(0.01, min(self.left(), 4 * self.work("relaxed_cover"))), self.seed, self.dag())
            self.can_pay[key] = cover is None
            if cover is not None:
                log.info("exact: the incumbent's order fits with spills of %d <= bound %d paid once: the group and "
                         "disjunctive bounds cannot raise the bound", cover, self.lb)
        return self.can_pay[key]

    def can_pay_before_cone(self) -> bool:
        """``relaxations_can_pay`` for the incumbent before the first cone descent, remembered
        (``paid_before_cone``) so that the group bound runs where it would have run without
        the descent: a better order can make the relaxations unable to raise the bound (a
        valid skip), but the group bound's rounds also plan their orders -- on the
        Transformer at M_R (8-bit, 20 s) one of them is the 950,272 B plan, and skipping them
        after the descent's 983,040 B cost it.  Running a bound that cannot pay is only time."""
        self.paid_before_cone = self.relaxations_can_pay()
        return self.paid_before_cone

    def cut(self) -> None:
        """The minimum-cut bound (``cut_bound``); cut short by the wall clock, it still holds."""
        res = cut_bound(self.data, self.deadline, self.dag())
        self.cut_result = res
        if not res.complete:
            self.hit_wall = True
        self.raise_bound(res.bound, "cut bound")

    def group(self) -> None:
        """The group bound (``group_bound``): row generation over groups of operators whose
        buffer sets overlap, from the cut bound's operators (the cut bound is run again here,
        with this phase's deadline, when the cheap proofs' wall share cut it); each round's
        order is planned with the gap model and offered."""
        cut = self.cut_result
        if cut is None or not cut.complete:
            cut = cut_bound(self.data, self.deadline, self.dag())
            self.cut_result = cut
            if not cut.complete:
                self.hit_wall = True
            self.raise_bound(cut.bound, "cut bound")
            if self.proven():
                return
        if not self.paid_before_cone and not self.relaxations_can_pay():
            return

        def evaluate(order: tuple[OpIndex, ...]) -> int | None:
            if self.left() > 0.1:
                self.gap_model(order, "gap", None, snug=True)
            return self.best_value

        res = group_bound(self.data, self.work("group"), self.deadline - 0.05, cut.found, self.workers, self.seed,
                          dag=self.dag(), incumbent=self.best.order if self.best is not None else None,
                          target=self.best_value, evaluate=evaluate)
        if res.hit_wall:
            self.hit_wall = True
        self.raise_bound(res.bound, "group bound")

    def disjunctive(self) -> None:
        """The crossing bound branched on order decisions (``disjunctive_bound``), unless it
        cannot raise the bound (``relaxations_can_pay``)."""
        if not self.relaxations_can_pay():
            return
        evals = max(10, round(self.work("disjunctive") * DISJUNCTIVE_EVALS_PER_SECOND))
        res = disjunctive_bound(self.data, evals, self.deadline - 0.05)
        if res.evals < evals and not res.exhausted and time.perf_counter() >= self.deadline - 0.05:
            self.hit_wall = True
        self.raise_bound(res.bound, "disjunctive bound")

    def chain(self, variants: tuple[bool, ...] = (False, True)) -> None:
        """The chain-cut IP: a bound that sees buffers live in some orders only.
        ``variants``: ``sometimes_tight`` of each run -- the small chain runs before the
        group bound (on the Transformer it proves optimality in 0.2 s, on the NAS networks it
        finds no tight operator), the wide one after the disjunctive bound."""
        hint = self.best if self.best is not None else None
        # One worker on purpose: the IP is small and closes through its LP (full
        # linearization); interleaved multi-worker search spends its turns on other subsolvers
        # (the Transformer at M_R closes in 0.15 s with one worker, not in 3 s with two).
        if len(self.data.ops) * len(self.data.buffers) > CHAIN_MAX_PAIRS:
            return
        for sometimes in variants:            # the small chain first, then the wider one
            if self.proven() or self.left() <= 0.05:
                return
            if sometimes in self.chain_done:
                continue
            full = max(0.05, 2 * self.work("chain"))
            wall = min(self.left(), full)
            cb = chain_bound(self.data, max(0.05, wall), 1, self.seed, work=self.work("chain"), hint=hint,
                             sometimes_tight=sometimes)
            if cb.infeasible:
                raise self.infeasible()
            self.raise_bound(cb.bound, "chain bound")
            if cb.optimal or wall >= full:
                self.chain_done.add(sometimes)   # not cut short by a phase's window

    def improve(self, max_evals: int = IMPROVE_EVALS, cone: bool = False, max_moves: int | None = None) -> None:
        """Descent over ``window_orders`` of the incumbent's order, each neighbour scored by
        its gap-model optimum; the best is packed into addresses.  The windows around the
        current solution's spills (``spill_steps``) are tried first: within the evaluation
        budget that is where a shorter life can pay.  ``max_evals``: the evaluation budget
        (``IMPROVE_EVALS`` in exact; ``auto``'s descent spends fewer).  ``cone``: the
        neighbours are ``cone_orders`` at the spills' steps instead (phases "cone descent",
        work budget ``AUTO_WORK_BUDGETS["cone"]`` each); an order whose neighbours were all
        scanned without a better one is not scanned again (``cone_scanned``).  ``max_moves``:
        stop after that many improving moves (the first cone descent takes one, so that the
        group bound, whose target the incumbent is, runs early)."""
        if self.best is None or (cone and self.best.order in self.cone_scanned):
            return
        order, value = self.best.order, self.best_value
        found: JointSolution | None = None
        evals, moved, spent = 0, True, 0.0
        budget = self.work("cone" if cone else "improve")

        def exhausted() -> bool:
            return evals >= max_evals or spent >= budget or self.left() <= 0.1

        current = self.best
        moves = 0
        while (moved and value is not None and value > self.lb and not exhausted()
               and (max_moves is None or moves < max_moves)):
            moved = False
            focus = spill_steps(self.data, current)
            if cone:        # orders tried before (by the first cone descent) are not scored again
                neighbours = [c for c in cone_orders(self.data, order, focus, max_evals - evals + len(self.cone_tried))
                              if c not in self.cone_tried][:max_evals - evals]
            else:
                neighbours = window_orders(self.data, order, focus)
            for cand in neighbours:
                evals += 1
                if cone:
                    self.cone_tried.add(cand)
                res = solve_residency(self.data, cand, max(0.01, self.left()), 1, self.seed, self.lb,
                                      work=max(0.01, min(self.work("gap"), budget - spent)))
                spent += res.work
                if res.value is not None and res.value < value and res.solution is not None:
                    order, value, found, moved = cand, res.value, res.solution, True
                    current = res.solution
                    moves += 1
                    break
                if exhausted():
                    break
            else:
                if cone:
                    self.cone_scanned.add(order)     # every neighbour scanned: none better
        self.descent_evals += evals
        if value is not None and value > self.lb and evals < max_evals and spent < budget and self.left() <= 0.1:
            # Cut by the wall clock, not by its work: on a quieter machine it might have gone on.
            self.hit_wall = True
        log.info("exact: %s descent %d evaluations (%.2f deterministic s), best %s", "cone" if cone else "window",
                 evals, spent, value)
        if found is not None:
            self.pack(found, "exact: cone descent" if cone else "exact: window descent")

    def other_warm_starts(self) -> None:
        """The warm starts other than the reference heuristic (minpeak, greedy orders), on a
        fixed work budget (deterministic) but never past the deadline."""
        self.order_before_warm = self.best.order if self.best is not None else None
        for start in warm_starts(self.problem, self.data, self.params.warm_start,
                                 min(self.work("warm"), 0.8 * self.left()),
                                 tuple(n for n in WARM_START_SOLVERS if n != "heuristic")):
            self.offer(start.solution, start.source)

    def above_m_r(self) -> bool:
        """Whether the capacity is above M_R (aligned, as ``--capacity M_R`` resolves it) and
        the incumbent still moves bytes: then ``auto``'s plan at M_R is worth a try."""
        cap = self.problem.capacity
        if (cap is None or not self.params.warm_start or self.m_r_moot
                or (self.best_value is not None and self.best_value == 0)):
            return False
        return m_r_cached(self.problem.graph, self.problem.weights_in_compute_level,
                          self.problem.target.compute.alignment) < cap

    def _take_m_r(self, sub: Plan) -> None:
        """Keep ``sub`` (a plan at M_R) relabelled for this capacity as a final candidate and
        offer it as the incumbent."""
        from stowage.solvers.portfolio import at_capacity

        self.m_r_plan = at_capacity(sub, self.problem)
        order = plan_order(self.problem, self.m_r_plan)
        if order is not None:
            self.offer(solution_from_plan(self.data, self.m_r_plan, order), self._m_r_label())

    def _at_m_r(self) -> Problem:
        low = m_r_cached(self.problem.graph, self.problem.weights_in_compute_level,
                         self.problem.target.compute.alignment)
        return replace(self.problem, target=self.problem.target.with_capacity(low), seed=self.seed)

    def cheap_at_m_r(self) -> None:
        """``auto``'s cheap proofs at M_R (``cheap_proofs`` with ``auto``'s work budget), before
        the reference heuristic and inside the cheap proofs' wall share: where they prove M_R
        (densenet121 with weights: 0.4 s), their plan is the one ``auto`` returns at M_R, so
        it is offered here, while the whole limit is still ahead, and the later phase "plan at
        M_R" is skipped.  Cut or skipped by the wall clock, that later phase still runs."""
        from stowage.solvers.heuristic import auto_cheap_proofs

        if self.left() <= 0.05:
            return
        proofs = auto_cheap_proofs(self._at_m_r(), self.deadline, self.time_limit, stop_at=self.best_value)
        if proofs is not None and self.best_value is not None and proofs.bound >= self.best_value:
            # Every plan at M_R moves at least the incumbent's traffic (the Transformer with
            # weights at M_H: 828,426 B at M_R by the cover bound, 211,988 B here): no plan at
            # M_R can win, and exact's traffic is at most auto's there whatever it is.
            log.info("exact: every plan at M_R moves at least %d >= the incumbent's %d: no plan at M_R needed",
                     proofs.bound, self.best_value)
            self.m_r_moot = True
            return
        if proofs is None or proofs.plan is None:
            return
        self._take_m_r(proofs.plan)
        self.m_r_proven = proofs.plan.solver.status == "optimal" and not proofs.hit_wall
        if proofs.hit_wall and self.m_r_plan is not None and self.best_source == self._m_r_label():
            self.hit_wall = True          # a cut at M_R chose the incumbent

    def plan_at_m_r(self) -> None:
        """``auto``'s single pass on this problem at M_R (the same time limit and seed, so its
        work budgets are those of ``--solver auto --capacity M_R``; this phase's wall share is
        only a safety stop), relabelled with this capacity (``portfolio.at_capacity``: a plan
        for a smaller capacity is one for a larger).  Offered as the incumbent and kept as a
        candidate for the final answer (``_final``), so ``exact``'s traffic above M_R is at most
        ``auto``'s at M_R whenever neither run was cut by the wall clock."""
        from stowage.solvers.heuristic import auto_once

        if self.left() <= 0.1:
            self.hit_wall = True          # skipped for want of wall time: it might have won
            return
        try:
            sub = auto_once(self._at_m_r(), self.deadline)
        except StowageError as exc:      # no plan at M_R (a solver error): nothing to offer
            log.info("exact: no plan at M_R: %s", exc)
            return
        if sub.solver.stopped_by is not None:
            self.hit_wall = True
        self._take_m_r(sub)

    def gap_sunk_incumbent(self) -> None:
        assert self.best is not None
        self.incumbent_order = self.best.order
        sunk = sink_order(self.incumbent_order, self.preds)
        if sunk != self.incumbent_order:
            self.gap_model(sunk, "gap", None)

    def gap_incumbent(self) -> None:
        order = self.incumbent_order
        assert order is not None and self.best is not None
        self.gap_model(order, "gap_warm", self.best if self.best.order == order else None)

    def gap_model(self, order: tuple[OpIndex, ...], phase: str, hint: JointSolution | None,
                  snug: bool = False) -> None:
        """The order's no-address optimum (gap model), packed into addresses; its bound holds
        for every plan when the order is the graph's only one.  With ``snug`` (the orders of
        the group bound and the activations-only order), when that residency beats the
        incumbent but does not pack, the gap model with aligned sizes (``aligned``: small
        buffers reloaded at each use) is packed instead: a little more traffic, fewer
        fragments (PNASNet-5 with weights at M_R: 5,929,817 B where the raw residency of
        5,916,402 B did not pack).  Not in the cheap proofs: a second packer run there is one
        more wall-clock stop that can make a proven plan say ``stopped_by=time``."""
        res = self.residency(order, phase, hint)
        if res.solution is None or res.value is None:
            return
        before = self.best_value
        self.pack(res.solution, "exact: gap model")
        if snug and self.best_value == before and (before is None or res.value < before) and self.left() > 0.1:
            packable = solve_residency(self.data, order, max(0.01, self.left()), self.workers, self.seed, 0, None,
                                       work=self.work(phase), aligned=True)
            if packable.solution is not None:
                self.pack(packable.solution, "exact: gap model")

    def residency(self, order: tuple[OpIndex, ...], phase: str, hint: JointSolution | None) -> ResidencyResult:
        """The order's no-address optimum (``solve_residency`` on the phase's work budget); a
        bound for every plan when the order is the graph's only one."""
        only = unique_order(self.data, order)
        res = solve_residency(self.data, order, max(0.01, self.left()), self.workers, self.seed, self.lb, hint,
                              work=self.work(phase))
        if res.status == "infeasible" and only:
            raise self.infeasible()
        if only:
            self.raise_bound(res.bound, "gap model (the only order)")
        return res

    def relaxed_joint(self) -> None:
        """The order-free model without addresses: a bound for every plan; its solution is
        packed like the gap model's."""
        relaxed = JointCpModel(self.data, addresses=False)
        if self.lb > 0 and not isinstance(relaxed.traffic, int):
            relaxed.model.add(relaxed.traffic >= self.lb)
        if self.best is not None:
            relaxed.add_hint(self.best)
        if self.left() <= 0.1:
            return
        res = relaxed.solve(self.left(), self.workers, self.seed, self.params.deterministic,
                            label="exact[no addresses]", work=self.work("relaxed"),
                            on_progress=self.problem.on_progress)
        if res.status == "infeasible":
            raise self.infeasible()
        self.raise_bound(res.bound, "no-address model")
        if res.solution is not None:
            self.pack(res.solution, "exact: no-address model")

    def order_lns(self) -> None:
        """Large-neighbourhood search over the incumbent's order (``lns.search``): plans only,
        no bound (the windows restrict the order)."""
        assert self.best is not None

        def pack(sol: JointSolution) -> JointSolution | None:
            return pack_solution(self.data, sol, max(0.05, min(0.5 * self.left(), 2 * self.work("pack"))), self.seed,
                                 on_cut=self._wall_hit, work=max(0.05, self.work("pack")))

        res = lns.search(self.data, self.best, self.lb, self.work("lns"), self.deadline - 0.1, self.workers,
                         self.seed, pack)
        if res.hit_wall:
            self.hit_wall = True
        self.offer(res.solution, "exact: order LNS")

    def full_model(self) -> None:
        """The model with addresses: order free up to 40 operators, else the incumbent's order."""
        small = len(self.data.ops) <= AUTO_JOINT_MAX_OPS
        if small:
            full = self.data
        elif self.best is not None:
            full = joint_data(self.problem, "fixed-schedule", self.best.order, self.params.max_segments)
        else:
            return
        model = JointCpModel(full)
        if self.best is not None:
            model.add_hint(self.best)
        if self.left() <= 0.1:
            return
        res = model.solve(self.left(), self.workers, self.seed, self.params.deterministic,
                          label=f"exact[{full.mode}]", work=self.work("full"),
                          on_progress=self.problem.on_progress)
        if small and res.status == "infeasible":
            raise self.infeasible()
        if small:
            self.raise_bound(res.bound, "joint model")
        self.offer(res.solution, f"exact: {full.mode} model")


@dataclass(frozen=True)
class CheapProofs:
    """What phases 1-2 of the pipeline (the cheap proofs) give another planner: the best plan
    they packed (``None`` if none; ``optimal`` when it meets the bound), the best lower bound
    and what proved it."""

    plan: Plan | None
    bound: int
    how: str
    #: A phase was cut or skipped by the wall clock (its wall share of the limit), so the
    #: bound and plan may depend on the machine's load.
    hit_wall: bool = False


def cheap_proofs(problem: Problem, solver_name: str, time_limit: float, workers: int, seed: int,
                 wall_deadline: float | None = None, stop_at: int | None = None,
                 wall_share: float = PRE_REFERENCE_SHARE) -> CheapProofs:
    """Run only the cheap proofs (the cover bound, the gap model on the quick orders), on the
    same work budgets as inside ``exact`` and under ``wall_share`` of the limit (exact's own
    ``PRE_REFERENCE_SHARE`` by default; ``auto`` gives them more, ``AUTO_CHEAP_WALL_SHARE``;
    less with ``wall_deadline``).  For ``auto``
    (issue 14): where these prove optimality (most of the suite, in a small share of the
    limit) it returns the proven plan, and it always reports the best bound it has.  A user
    error in the instance (``StowageError``) gives no proof: the caller's own planner then
    reports it.  ``stop_at``: once the bound reaches it, stop and return the bound without a
    plan (``exact`` above M_R passes its incumbent's traffic: a plan at M_R that cannot be
    cheaper is not worth packing)."""
    started = time.perf_counter()
    try:
        pipe = AutoPipeline(problem, ExactParams(), started, time_limit, workers, seed)
        if wall_deadline is not None:
            pipe.final_deadline = min(pipe.final_deadline, wall_deadline)
        for phase in [p for p in pipe.phases() if p.name in CHEAP_PHASES]:
            if pipe.proven():
                break
            if stop_at is not None and pipe.lb >= stop_at:
                return CheapProofs(None, pipe.lb, pipe.how, pipe.hit_wall)
            share = max(wall_share, phase.wall_share or 0.0)
            pipe.deadline = min(pipe.final_deadline, started + share * time_limit)
            if phase.min_left is None or pipe.left() > phase.min_left:
                phase.run()
                pipe.check_invariants(phase.name)
            if pipe.left() <= 0 and not pipe.proven():
                pipe.hit_wall = True
    except StowageError as exc:
        log.info("%s: cheap proofs gave nothing: %s", solver_name, exc)
        return CheapProofs(None, 0, "none")
    plan = None
    if pipe.best is not None:
        status = "optimal" if pipe.proven() else "feasible"
        try:
            plan = lower_solution(problem, pipe.data, pipe.best, solver_name, status, pipe.lb, started,
                                  pipe.best_source)
        except StowageError as exc:   # e.g. M_R on a one-level target whose homes need more
            log.info("%s: cheap proofs gave no plan: %s", solver_name, exc)
            return CheapProofs(None, 0, "none")
    log.info("%s: cheap proofs: bound %d (%s), plan %s", solver_name, pipe.lb, pipe.how, pipe.best_value)
    return CheapProofs(plan, pipe.lb, pipe.how, pipe.hit_wall)


def solve_auto(problem: Problem, params: ExactParams, started: float, time_limit: float, workers: int,
               seed: int) -> Plan:
    """Run the bound-and-pack pipeline; the plan of the best candidate with the best bound."""
    return AutoPipeline(problem, params, started, time_limit, workers, seed).run()


__all__ = ["AUTO_CHEAP_WALL_SHARE", "AUTO_WORK_BUDGETS", "M_R_CHEAP_WALL_SHARE", "M_R_WALL_SHARE", "AutoPipeline",
           "CheapProofs", "Phase", "cheap_proofs", "solve_auto"]
