"""Solvers registered by name, all with one signature: ``(problem, params) -> Plan``.

The CLI, the API, the comparison report and the benchmarks list and run solvers through this
registry, and ``solve`` passes every plan through the independent validator before returning
it, so no solver path can skip validation.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from stowage.errors import SolverError
from stowage.plan import Plan
from stowage.plan.validate import validate as run_validator
from stowage.solvers.problem import Problem

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
    import stowage.solvers.builtin  # noqa: F401


def available() -> dict[str, SolverSpec]:
    _load_builtin()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> SolverSpec:
    specs = available()
    if name not in specs:
        raise SolverError(f"unknown solver '{name}'; available: {', '.join(specs)}")
    return specs[name]


def objective_solvers() -> list[str]:
    """Solvers that take ``--objective latency``: those whose params have an ``objective``
    field (``heuristic``, ``exact``); the others plan for traffic only."""
    return [name for name, spec in available().items()
            if any(f.name == "objective" for f in dataclasses.fields(spec.params_cls))]


def make_params(name: str, overrides: dict[str, Any] | None = None) -> Any:
    spec = get(name)
    overrides = dict(overrides or {})
    fields = {f.name for f in dataclasses.fields(spec.params_cls)}
    unknown = set(overrides) - fields
    if unknown:
        raise SolverError(
            f"solver '{name}' has no parameter '{sorted(unknown)[0]}'; "
            f"parameters: {', '.join(sorted(fields)) or 'none'}"
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
    if plan.solver.found_by is None:
        plan = replace(plan, solver=replace(plan.solver, found_by=name))
    if validate:
        verdict = run_validator(problem.graph, plan)
        if not verdict.ok:
            raise SolverError(f"solver '{name}' produced an invalid plan: {verdict.errors[0].message}")
    return plan


# ---------------------------------------------------------------------------------------
# Params as documented, typed fields (what `stowage solvers` shows and `--param` sets)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamField:
    name: str
    type: str
    default: Any
    doc: str


def _field_docs(params_cls: type) -> dict[str, str]:
    """Field docs from the params docstring, written as "``name``: what it does" (one or
    several per paragraph); a doc runs to the next such marker or the paragraph's end."""
    import re

    doc = params_cls.__doc__ or ""
    fields = {f.name for f in dataclasses.fields(params_cls)}
    docs: dict[str, str] = {}
    for para in re.split(r"\n\s*\n", doc):
        marks = [m for m in re.finditer(r"``(\w+)``\s*:", para) if m.group(1) in fields]
        for i, m in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(para)
            docs[m.group(1)] = " ".join(para[m.end():end].split())
    docs.update({k: v for k, v in _attribute_docstrings(params_cls).items() if k in fields})
    return docs


def _attribute_docstrings(cls: type) -> dict[str, str]:
    """The other documented style: a string literal right after the field (PEP 257)."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    out: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            out[node.target.id] = " ".join(nxt.value.value.split())
    return out


def param_fields(name: str) -> list[ParamField]:
    spec = get(name)
    docs = _field_docs(spec.params_cls)
    out = []
    for f in dataclasses.fields(spec.params_cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out.append(ParamField(f.name, str(type_name), default, docs.get(f.name, "")))
    return out


def _convert(solver: str, field: ParamField, text: str) -> Any:
    """A ``--param`` string to the field's type, judged from its annotation and default."""
    t = field.type.replace(" ", "")
    low = text.strip().lower()
    if "None" in t and low in ("none", "null", ""):
        return None
    try:
        if t.startswith("bool") or isinstance(field.default, bool):
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if t.startswith("tuple") or isinstance(field.default, tuple):
            inner = float if "float" in t else int if "int" in t else str
            return tuple(inner(x) for x in text.split(",") if x.strip())
        if t.startswith("int") or (isinstance(field.default, int) and not t.startswith("float")):
            return int(text)
        if t.startswith("float") or isinstance(field.default, float):
            return float(text)
    except ValueError:
        raise SolverError(
            f"solver '{solver}': --param {field.name}={text}: expected {field.type}"
        ) from None
    return text


def parse_param_overrides(name: str, items: list[str]) -> dict[str, Any]:
    """``["time_limit=3", "mode=joint"]`` -> typed overrides for ``make_params``."""
    fields = {f.name: f for f in param_fields(name)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise SolverError(f"--param expects NAME=VALUE, got '{item}'")
        if key not in fields:
            raise SolverError(
                f"solver '{name}' has no parameter '{key}'; parameters: {', '.join(fields) or 'none'} "
                f"(see 'stowage solvers {name}')"
            )
        out[key] = _convert(name, fields[key], value)
    return out
