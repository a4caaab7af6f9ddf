"""The plan's JSON form: writer and strict reader.

``plan_from_json`` is strict: a missing key, a wrong type, an unknown buffer id or a negative
offset is a ``PlanFormatError`` naming the JSON path, so a hand-edited or truncated plan file
is refused before any tool trusts it.  The format is documented in ``docs/plan-format.md``.
"""

from __future__ import annotations

import json
import math
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
    LATENCY_STATUSES,
    PHASES,
    READABLE_VERSIONS,
    RING_MODES,
    STATUSES,
    VERSION,
    Cascade,
    CascadeTensor,
    LevelRef,
    Metrics,
    ModelRef,
    Placement,
    Plan,
    PlanBuffer,
    PlanOptions,
    PlanSlice,
    PlanStep,
    RowTransfer,
    SolverInfo,
    Stripe,
    TargetRef,
    Transfer,
    WeightLoad,
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
        # Always the current version: the writer emits its keys (a version 1 plan read in is
        # written back as version 2, with null step indices).
        "version": VERSION,
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
            "in_place": plan.options.in_place,
            # Only when a Concat runs in place, so that other plans stay byte for byte as before.
            **({"concat_in_place": True} if plan.options.concat_in_place else {}),
            **({"channel_split": dict(plan.options.channel_split)} if plan.options.channel_split else {}),
            "qdq": plan.options.qdq,
            # Only when values were fixed, so that other plans stay byte for byte as before.
            **({"input_values": {k: list(v) for k, v in plan.options.input_values.items()}}
               if plan.options.input_values else {}),
        },
        "solver": {k: v for k, v in asdict(plan.solver).items()
                   if k not in _OPTIONAL_SOLVER_KEYS or v is not None},
        "buffers": [_buffer_dict(b) for b in plan.buffers],
        "steps": [_step_dict(s) for s in plan.steps],
        "placements": [asdict(p) for p in plan.placements],
        # start / end / channel only on a timed plan (optional keys, docs/timing.md).
        "transfers": [{k: v for k, v in asdict(t).items() if v is not None or k not in _TIME_KEYS}
                      for t in plan.transfers],
        "metrics": {
            "compulsory_bytes": plan.metrics.compulsory_bytes,
            "noncompulsory_bytes": plan.metrics.noncompulsory_bytes,
            "peak_bytes": dict(plan.metrics.peak_bytes),
            "estimated_seconds": plan.metrics.estimated_seconds,
        },
    }
    if plan.cascades:
        d["cascades"] = [_cascade_dict(c) for c in plan.cascades]
    if plan.weight_loads:
        # Only on a timed plan whose engine streams weights (docs/timing.md, "Weight streams").
        d["weight_loads"] = [asdict(w) for w in plan.weight_loads]
    return _plain(d)


_TIME_KEYS = ("start", "end", "channel")
#: ``solver.cascade_order``'s words: the file order, ``stowage.solvers.tiling.orders.ORDERS``,
#: or ``other`` (an order none of those names).
CASCADE_ORDERS = ("file", "min-peak", "branch", "other")
#: Solver keys written only when set, so that older plans stay byte for byte as before.
_OPTIONAL_SOLVER_KEYS = ("found_by", "stopped_by", "latency_bound", "latency_status", "whole_tensor_bound",
                         "partition_bound", "joint_bound", "cascade_order")


def _time(x: _Reader, key: str) -> float | None:
    """An optional timeline key: absent or null is None, else a finite number >= 0."""
    v = x.opt(key)
    if v.data is None:
        return None
    t = v.num()
    if not math.isfinite(t) or t < 0:
        raise v.fail(f"must be a finite number of seconds >= 0, got {t}")
    return t


def _cascade_dict(c: Cascade) -> dict[str, Any]:
    return {
        "step": c.step, "ops": list(c.ops), "end": c.end, "stripe_rows": c.stripe_rows,
        "tensors": [_tensor_dict(t) for t in c.tensors],
        # One compact array per stripe: a plan of MobileNetV2 has thousands of them.
        "stripes": [{"op": s.op, "out": [s.out_lo, s.out_hi],
                     "in": [[t, lo, hi] for t, lo, hi in s.inputs],
                     "pad": [s.pad_top, s.pad_bottom],
                     "dma": [[x.direction, x.tensor, x.lo, x.hi, x.level] for x in s.transfers],
                     # which result, only for an operator with several (a Split)
                     **({"result": s.output} if s.output else {})}
                    for s in c.stripes],
    }


def _tensor_dict(t: CascadeTensor) -> dict[str, Any]:
    d = asdict(t)
    if t.slots:
        d["slots"] = list(t.slots)
    else:
        del d["slots"]  # optional key: ring-addressed cascades stay as before
    return d


def _buffer_dict(b: PlanBuffer) -> dict[str, Any]:
    d = asdict(b)
    if not b.slices:
        del d["slices"]  # optional key: plans without a Concat in place stay as before
    return d


def _step_dict(step: PlanStep) -> dict[str, Any]:
    d = asdict(step)
    if not step.fused:
        del d["fused"]
    return d


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


def _input_values(r: _Reader) -> dict[str, tuple[int | float | bool, ...]]:
    """``options.input_values`` (optional): input name -> a non-empty array of finite numbers
    or booleans, the values the plan assumed."""
    out: dict[str, tuple[int | float | bool, ...]] = {}
    for name, v in r.obj().items():
        item = _Reader(v, f"{r.path}.{name}")
        vals: list[int | float | bool] = []
        for it in item.list_():
            x = it.data
            if not (isinstance(x, (bool, int)) or (isinstance(x, float) and math.isfinite(x))):
                raise it.fail(f"expected a finite number or a boolean, got {json.dumps(x)[:40]}")
            vals.append(x)
        if not vals:
            raise item.fail("at least one value is required")
        out[name] = tuple(vals)
    return out


def _channel_split(r: _Reader) -> dict[str, int]:
    """``options.channel_split``: operator name -> channel groups (>= 2)."""
    return {k: _Reader(v, f"{r.path}.{k}").int_(2) for k, v in r.obj().items()}


def plan_from_dict(data: Any) -> Plan:
    r = _Reader(data, "$")
    fmt = r.key("format").str_()
    if fmt != FORMAT:
        raise PlanFormatError(f"plan file: $.format is '{fmt}', expected '{FORMAT}'")
    version = r.key("version").int_()
    if version not in READABLE_VERSIONS:
        raise PlanFormatError(f"plan file: $.version {version} is not supported (this stowage reads versions "
                              f"{', '.join(map(str, READABLE_VERSIONS))})")
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
        in_place=o.opt("in_place", False).bool_() if version >= 2 else False,
        concat_in_place=o.opt("concat_in_place", False).bool_() if version >= 2 else False,
        qdq=o.opt("qdq", "off").str_(choices=("fold", "off")) if version >= 2 else "off",
        input_values=_input_values(o.opt("input_values", {})),
        channel_split=_channel_split(o.opt("channel_split", {})),
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
        stopped_by=s.opt("stopped_by").str_(nullable=True),
        latency_bound=_time(s, "latency_bound"),
        latency_status=s.opt("latency_status").str_(nullable=True, choices=LATENCY_STATUSES),
        whole_tensor_bound=s.opt("whole_tensor_bound").int_(0, nullable=True),
        partition_bound=s.opt("partition_bound").int_(0, nullable=True),
        joint_bound=s.opt("joint_bound").int_(0, nullable=True),
        cascade_order=s.opt("cascade_order").str_(nullable=True, choices=CASCADE_ORDERS),
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
            slices=tuple(PlanSlice(tensor=x.key("tensor").str_(), offset=x.key("offset").int_(),
                                   bytes=x.key("bytes").int_()) for x in b.opt("slices", []).list_()),
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
                 writes=tuple(buf_id(x) for x in st.key("writes").list_()),
                 # Version 2 names each step's operator by index too (node names may repeat).
                 index=st.opt("index").int_(nullable=True) if version >= 2 else None,
                 fused=tuple(x.str_() for x in st.opt("fused", []).list_()) if version >= 2 else ())
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
                 phase=x.key("phase").str_(choices=PHASES), start=_time(x, "start"), end=_time(x, "end"),
                 channel=x.opt("channel").int_(nullable=True))
        for x in r.key("transfers").list_()
    )
    mt = r.key("metrics")
    pk = mt.key("peak_bytes")
    metrics = Metrics(
        compulsory_bytes=mt.key("compulsory_bytes").int_(),
        noncompulsory_bytes=mt.key("noncompulsory_bytes").int_(),
        peak_bytes={k: _Reader(v, f"{pk.path}.{k}").int_() for k, v in pk.obj().items()},
        estimated_seconds=_time(mt, "estimated_seconds"),
    )
    cascades = tuple(_read_cascade(c, nbuf, len(steps), tuple(level_names))
                     for c in r.opt("cascades", []).list_()) if version >= 2 else ()
    weight_loads = tuple(_read_weight_load(w, nbuf, len(steps), tuple(level_names))
                         for w in r.opt("weight_loads", []).list_())
    return Plan(model=model, target=target, options=options, solver=solver, buffers=tuple(buffers),
                steps=steps, placements=tuple(placements), transfers=transfers, metrics=metrics,
                format=fmt, version=version, cascades=cascades, weight_loads=weight_loads)


def _read_weight_load(w: _Reader, nbuf: int, nsteps: int, levels: tuple[str, ...]) -> WeightLoad:
    """One ``weight_loads`` entry (optional key of version 2, ``docs/plan-format.md``)."""
    buf = w.key("buffer")
    bid = buf.int_()
    if bid >= nbuf:
        raise buf.fail(f"unknown buffer id {bid} (the plan has {nbuf} buffers)")
    st = w.key("step")
    step = st.int_()
    if step >= nsteps:
        raise st.fail(f"unknown step {step} (the plan has {nsteps} steps)")
    lo, hi = w.key("channels_lo").int_(), w.key("channels_hi").int_()
    if hi <= lo:
        raise w.key("channels_hi").fail(f"must be above channels_lo ({lo}), got {hi}")

    def t(key: str) -> float:
        v = _time(w, key)
        if v is None:
            raise w.key(key).fail("must be a finite number of seconds >= 0, got null")
        return v

    return WeightLoad(step=step, op=w.key("op").str_(), buffer=bid, src=w.key("src").str_(choices=levels),
                      dst=w.key("dst").str_(choices=levels), channels_lo=lo, channels_hi=hi,
                      bytes=w.key("bytes").int_(minimum=1), offset=w.key("offset").int_(),
                      channel=w.key("channel").int_(), start=t("start"), end=t("end"),
                      read_start=t("read_start"), read_end=t("read_end"))


def _pair(rd: _Reader) -> tuple[int, int]:
    items = rd.list_()
    if len(items) != 2:
        raise rd.fail(f"expected [lo, hi], got {len(items)} numbers")
    lo, hi = items[0].int_(), items[1].int_()
    if hi < lo:
        raise rd.fail(f"hi ({hi}) is below lo ({lo})")
    return lo, hi


def _read_cascade(c: _Reader, nbuf: int, nsteps: int, levels: tuple[str, ...]) -> Cascade:
    step = c.key("step").int_()
    if step >= nsteps:
        raise c.key("step").fail(f"step {step} does not exist (the plan has {nsteps} steps)")
    tensors = []
    for t in c.key("tensors").list_():
        buf = t.key("buffer").int_()
        if buf >= nbuf:
            raise t.key("buffer").fail(f"unknown buffer id {buf} (the plan has {nbuf} buffers)")
        tensors.append(CascadeTensor(
            tensor=t.key("tensor").str_(), mode=t.key("mode").str_(choices=RING_MODES), buffer=buf,
            ring_rows=t.opt("ring_rows", 0).int_(), row_bytes=t.opt("row_bytes", 0).int_(),
            level=t.opt("level").str_(nullable=True, choices=levels),
            slots=tuple(x.int_(minimum=-1) for x in t.opt("slots", []).list_())))
    stripes = []
    for s in c.key("stripes").list_():
        out_lo, out_hi = _pair(s.key("out"))
        inputs = []
        for x in s.key("in").list_():
            items = x.list_()
            if len(items) != 3:
                raise x.fail("expected [tensor, lo, hi]")
            lo, hi = _pair(_Reader(x.data[1:], x.path))
            inputs.append((items[0].str_(), lo, hi))
        pad_top, pad_bottom = _pads(s.key("pad"))
        moves = []
        for x in s.opt("dma", []).list_():
            items = x.list_()
            if len(items) != 5:
                raise x.fail("expected [direction, tensor, lo, hi, level]")
            lo, hi = _pair(_Reader(x.data[2:4], x.path))
            moves.append(RowTransfer(tensor=items[1].str_(), lo=lo, hi=hi, level=items[4].str_(choices=levels),
                                     direction=items[0].str_(choices=("load", "store"))))
        stripes.append(Stripe(op=s.key("op").int_(), out_lo=out_lo, out_hi=out_hi, inputs=tuple(inputs),
                              pad_top=pad_top, pad_bottom=pad_bottom, transfers=tuple(moves),
                              output=s.opt("result", "").str_()))
    return Cascade(step=step, ops=tuple(x.int_() for x in c.key("ops").list_()), end=c.key("end").str_(),
                   stripe_rows=c.key("stripe_rows").int_(1), tensors=tuple(tensors), stripes=tuple(stripes))


def _pads(rd: _Reader) -> tuple[int, int]:
    items = rd.list_()
    if len(items) != 2:
        raise rd.fail(f"expected [pad_top, pad_bottom], got {len(items)} numbers")
    return items[0].int_(), items[1].int_()


def plan_from_json(text: str) -> Plan:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanFormatError(f"plan file is not valid JSON: {exc}") from None
    except RecursionError:
        # json.loads recurses once per nesting level: a hostile file nested 100,000 deep.
        raise PlanFormatError("plan file is nested too deeply to be a stowage plan") from None
    try:
        return plan_from_dict(data)
    except RecursionError:
        raise PlanFormatError("plan file is nested too deeply to be a stowage plan") from None


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
