"""The plan's JSON form: writer and strict reader.

``plan_from_json`` is strict: a missing key, a wrong type, an unknown buffer id or a negative
offset is a ``PlanFormatError`` naming the JSON path, so a hand-edited or truncated plan file
is refused before any tool trusts it.  The format is documented in ``docs/plan-format.md``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, overload

from stowage.errors import PlanFormatError
from stowage.plan.files import write_text_atomic
from stowage.plan.model import (
    BUFFER_KINDS,
    FORMAT,
    PHASES,
    STATUSES,
    VERSION,
    LevelRef,
    Metrics,
    ModelRef,
    Placement,
    Plan,
    PlanBuffer,
    PlanOptions,
    PlanStep,
    SolverInfo,
    TargetRef,
    Transfer,
)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    d = {
        "format": plan.format,
        "version": plan.version,
        "model": asdict(plan.model),
        "target": {
            "name": plan.target.name,
            "compute_level": plan.target.compute_level,
            "levels": [asdict(lv) for lv in plan.target.levels],
        },
        "options": {
            "element_bytes": plan.options.element_bytes,
            "weights_in_compute_level": plan.options.weights_in_compute_level,
            "dims": dict(plan.options.dims),
        },
        "solver": {k: v for k, v in asdict(plan.solver).items() if k != "found_by" or v is not None},
        "buffers": [asdict(b) for b in plan.buffers],
        "steps": [asdict(s) for s in plan.steps],
        "placements": [asdict(p) for p in plan.placements],
        "transfers": [asdict(t) for t in plan.transfers],
        "metrics": {
            "compulsory_bytes": plan.metrics.compulsory_bytes,
            "noncompulsory_bytes": plan.metrics.noncompulsory_bytes,
            "peak_bytes": dict(plan.metrics.peak_bytes),
        },
    }
    return _plain(d)


def plan_to_json(plan: Plan) -> str:
    return json.dumps(plan_to_dict(plan), indent=1, sort_keys=False) + "\n"


class _Reader:
    """Typed access to a JSON object that reports the path of whatever is wrong."""

    def __init__(self, data: Any, path: str) -> None:
        self.data = data
        self.path = path

    def fail(self, msg: str) -> PlanFormatError:
        return PlanFormatError(f"plan file: {self.path}: {msg}")

    def obj(self) -> Mapping[str, Any]:
        if not isinstance(self.data, dict):
            raise self.fail(f"expected an object, got {type(self.data).__name__}")
        return self.data

    def key(self, name: str) -> _Reader:
        d = self.obj()
        if name not in d:
            raise PlanFormatError(f"plan file: {self.path}: missing key '{name}'")
        return _Reader(d[name], f"{self.path}.{name}")

    def opt(self, name: str, default: Any = None) -> _Reader:
        d = self.obj()
        return _Reader(d.get(name, default), f"{self.path}.{name}")

    # ``nullable`` decides whether ``None`` can come back; the overloads tell the type checker so,
    # and every required field is then an ``int``/``str`` at its use without a cast or assert.
    @overload
    def int_(self, minimum: int | None = ..., nullable: Literal[False] = ...) -> int: ...
    @overload
    def int_(self, minimum: int | None = ..., *, nullable: bool) -> int | None: ...

    def int_(self, minimum: int | None = 0, nullable: bool = False) -> int | None:
        v = self.data
        if v is None and nullable:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(f"expected an integer, got {json.dumps(v)[:40]}")
        if minimum is not None and v < minimum:
            raise self.fail(f"must be >= {minimum}, got {v}")
        return v

    def num(self) -> float:
        v = self.data
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(f"expected a number, got {json.dumps(v)[:40]}")
        return float(v)

    @overload
    def str_(self, nullable: Literal[False] = ..., choices: tuple[str, ...] | None = ...) -> str: ...
    @overload
    def str_(self, nullable: bool, choices: tuple[str, ...] | None = ...) -> str | None: ...

    def str_(self, nullable: bool = False, choices: tuple[str, ...] | None = None) -> str | None:
        v = self.data
        if v is None and nullable:
            return None
        if not isinstance(v, str):
            raise self.fail(f"expected a string, got {json.dumps(v)[:40]}")
        if choices is not None and v not in choices:
            raise self.fail(f"'{v}' is not one of {', '.join(choices)}")
        return v

    def bool_(self) -> bool:
        if not isinstance(self.data, bool):
            raise self.fail(f"expected true or false, got {json.dumps(self.data)[:40]}")
        return self.data

    def list_(self) -> list[_Reader]:
        if not isinstance(self.data, list):
            raise self.fail(f"expected an array, got {type(self.data).__name__}")
        return [_Reader(v, f"{self.path}[{i}]") for i, v in enumerate(self.data)]


def plan_from_dict(data: Any) -> Plan:
    r = _Reader(data, "$")
    fmt = r.key("format").str_()
    if fmt != FORMAT:
        raise PlanFormatError(f"plan file: $.format is '{fmt}', expected '{FORMAT}'")
    version = r.key("version").int_()
    if version != VERSION:
        raise PlanFormatError(f"plan file: $.version {version} is not supported (this stowage reads version {VERSION})")
    m = r.key("model")
    model = ModelRef(path=m.key("path").str_(nullable=True), sha256=m.key("sha256").str_(nullable=True))
    t = r.key("target")
    levels = tuple(
        LevelRef(name=lv.key("name").str_(), capacity=lv.key("capacity").int_(1, nullable=True),
                 alignment=lv.key("alignment").int_(1))
        for lv in t.key("levels").list_()
    )
    level_names = [lv.name for lv in levels]
    if not levels:
        raise PlanFormatError("plan file: $.target.levels: at least one level is required")
    if len(set(level_names)) != len(level_names):
        raise PlanFormatError("plan file: $.target.levels: level names must be unique")
    target = TargetRef(name=t.key("name").str_(), compute_level=t.key("compute_level").str_(choices=tuple(level_names)),
                       levels=levels)
    o = r.key("options")
    dims_r = o.opt("dims", {})
    dims = {k: _Reader(v, f"{dims_r.path}.{k}").int_(1) for k, v in dims_r.obj().items()}
    options = PlanOptions(
        element_bytes=o.key("element_bytes").int_(1, nullable=True),
        weights_in_compute_level=o.key("weights_in_compute_level").bool_(),
        dims=dims,
    )
    s = r.key("solver")
    solver = SolverInfo(
        # The status is one of a closed set (docs/plan-format.md): tools branch on it, so an
        # unknown word must not slip through as if it meant something.
        name=s.key("name").str_(), status=s.key("status").str_(choices=STATUSES),
        objective=s.opt("objective").int_(None, nullable=True),
        lower_bound=s.opt("lower_bound").int_(None, nullable=True),
        seconds=s.opt("seconds", 0.0).num(),
        found_by=s.opt("found_by").str_(nullable=True),
    )
    buffers = []
    for i, b in enumerate(r.key("buffers").list_()):
        bid = b.key("id").int_()
        if bid != i:
            raise b.fail(f"buffer ids must be 0, 1, 2, ... in order; found {bid} at position {i}")
        buffers.append(PlanBuffer(
            id=bid,
            tensors=tuple(x.str_() for x in b.key("tensors").list_()),
            bytes=b.key("bytes").int_(),
            kind=b.key("kind").str_(choices=BUFFER_KINDS),
            home=b.key("home").str_(nullable=True, choices=tuple(level_names)),
        ))
    nbuf = len(buffers)

    def buf_id(rd: _Reader) -> int:
        v = rd.int_()
        if v >= nbuf:
            raise rd.fail(f"unknown buffer id {v} (the plan has {nbuf} buffers)")
        return v

    steps = tuple(
        PlanStep(op=st.key("op").str_(), op_type=st.key("op_type").str_(),
                 reads=tuple(buf_id(x) for x in st.key("reads").list_()),
                 writes=tuple(buf_id(x) for x in st.key("writes").list_()))
        for st in r.key("steps").list_()
    )
    placements = []
    for p in r.key("placements").list_():
        pl = Placement(buffer=buf_id(p.key("buffer")), level=p.key("level").str_(choices=tuple(level_names)),
                       offset=p.key("offset").int_(), first=p.key("first").int_(), last=p.key("last").int_())
        if pl.last < pl.first:
            raise p.fail(f"last ({pl.last}) is before first ({pl.first})")
        placements.append(pl)
    transfers = tuple(
        Transfer(buffer=buf_id(x.key("buffer")), src=x.key("src").str_(choices=tuple(level_names)),
                 dst=x.key("dst").str_(choices=tuple(level_names)), step=x.key("step").int_(),
                 phase=x.key("phase").str_(choices=PHASES))
        for x in r.key("transfers").list_()
    )
    mt = r.key("metrics")
    pk = mt.key("peak_bytes")
    metrics = Metrics(
        compulsory_bytes=mt.key("compulsory_bytes").int_(),
        noncompulsory_bytes=mt.key("noncompulsory_bytes").int_(),
        peak_bytes={k: _Reader(v, f"{pk.path}.{k}").int_() for k, v in pk.obj().items()},
    )
    return Plan(model=model, target=target, options=options, solver=solver, buffers=tuple(buffers),
                steps=steps, placements=tuple(placements), transfers=transfers, metrics=metrics,
                format=fmt, version=version)


def plan_from_json(text: str) -> Plan:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanFormatError(f"plan file is not valid JSON: {exc}") from None
    return plan_from_dict(data)


def load_plan(path: str | os.PathLike[str]) -> Plan:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanFormatError(f"plan file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanFormatError(f"cannot read plan file {p}: {exc}") from None
    return plan_from_json(text)


def save_plan(plan: Plan, path: str | os.PathLike[str]) -> None:
    write_text_atomic(path, plan_to_json(plan))
