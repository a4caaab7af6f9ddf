"""Solvers registered by name, all with one signature: ``(problem, params) -> Plan``.

The CLI, the API, the comparison report and the benchmarks list and run solvers through this
registry, and ``solve`` passes every plan through the independent validator before returning
it, so no solver path can skip validation.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ir.errors import SolverError
from planner.plan import Plan
from solvers.problem import Problem

log = logging.getLogger(__name__)

SolverFn = Callable[[Problem, Any], Plan]


@dataclass(frozen=True)
class SolverSpec:
    name: str
    fn: SolverFn
    params_cls: type
    description: str


_REGISTRY: dict[str, SolverSpec] = {}


def register(name: str, params_cls: type, description: str) -> Callable[[SolverFn], SolverFn]:
    """Decorator: ``@register("greedy", GreedyParams, "one line")``.  ``params_cls`` is a
    dataclass whose fields all have defaults; its field docs become CLI help."""
    if not dataclasses.is_dataclass(params_cls):
        raise TypeError(f"params of solver {name} must be a dataclass")

    def deco(fn: SolverFn) -> SolverFn:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"solver '{name}' registered twice")
        _REGISTRY[name] = SolverSpec(name, fn, params_cls, description)
        return fn

    return deco


def _load_builtin() -> None:
    # Import for the side effect of registration.
    import solvers.builtin  # noqa: F401


def available() -> dict[str, SolverSpec]:
    _load_builtin()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> SolverSpec:
    specs = available()
    if name not in specs:
        raise SolverError(f"unknown solver '{name}'; available: {', '.join(specs)}")
    return specs[name]


def make_params(name: str, overrides: dict[str, Any] | None = None) -> Any:
    spec = get(name)
    overrides = dict(overrides or {})
    fields = {f.name for f in dataclasses.fields(spec.params_cls)}
    unknown = set(overrides) - fields
    if unknown:
        raise SolverError(
            f"solver '{name}' has no parameter '{sorted(unknown)[0]}'; parameters: {', '.join(sorted(fields)) or 'none'}"
        )
    return spec.params_cls(**overrides)


def solve(problem: Problem, name: str = "auto", params: Any = None, validate: bool = True) -> Plan:
    """Run a solver by name and return its plan, validated."""
    spec = get(name)
    if params is None:
        params = spec.params_cls()
    t0 = time.perf_counter()
    plan = spec.fn(problem, params)
    log.info("solver %s finished in %.2fs: %s", name, time.perf_counter() - t0, plan.solver.status)
    if validate:
        from planner.validate import validate as run_validator

        verdict = run_validator(problem.graph, plan)
        if not verdict.ok:
            raise SolverError(f"solver '{name}' produced an invalid plan: {verdict.errors[0].message}")
    return plan
