"""Proof by execution: run a plan with real numbers and compare with ONNX Runtime.

Memory is one byte array per level.  The plan is replayed in the validator's event order
(placements begin, ``before`` transfers, the operator, ``after`` transfers, placements end),
but this module shares no code with the validator or the solvers: it only moves bytes.

* A placement that begins is filled with poison (``0xFF``: NaN for floats); a placement that
  ends is poisoned again, so stale or missing data shows up as garbage.
* Home placements of graph inputs and weights (``first == 0``) receive their data up front.
* A step reads each operand from its compute-level placement (weights from their home level
  when the plan does not require them in the compute level), reinterprets the bytes with the
  tensor's dtype and shape (every tensor of a view buffer shares the buffer's bytes), runs the
  operator (ONNX Runtime on a one-node model, or onnx's ``ReferenceEvaluator`` when ORT cannot
  run it) and writes the results into their placements.  Afterwards it re-reads its operands:
  a real kernel writes while it still reads, so a result that lands on an operand is an error.
* Every operand read, and every placement when it is freed, is compared bit for bit with a
  shadow reference value (the node-by-node run on correct inputs); the first difference is
  reported as "step S (op): buffer B (tensor) ... corrupted".  (One exception, for stripes:
  a folded QDQ group's float core run on a band of correct rows may round to the neighbouring
  quantization step; the shadow then follows the plan's rows, docs/tiling.md.)
* Every operator of the model must run exactly once (the steps and their fused in-place
  operators, or a cascade's members); one never run, or run twice, is a mismatch.
* At the end every graph output, read from its home level after the last step (also with no
  steps at all, also outputs no step reads), must equal the node-by-node reference bit for
  bit: the per-operand checks above are bit-exact, so a correct plan reproduces the one-node
  kernels exactly.  It is also compared with a plain ORT run of the whole model on the same
  inputs, whose kernels may sum in another order: bit for bit, else within a tolerance scaled
  by the model's largest reduction (``output_tolerance``, stated in the result).

Before any of this the plan goes through the validator (``stowage.plan.validate``): a
rejected plan is a mismatch whatever execution shows (``SimResult.violations``).  A rejected
plan is still executed when its buffers are the model's, so the result also shows,
independently of the validator, what the mistake does to the data; a plan whose buffers or
cascades are not the model's (another model, other dims) is not executed
(``SimResult.executed``).  Nothing a plan says makes the simulator raise: execution failures
are reported as mismatches.

Plans made with an element-size override (``--element-bytes``) describe bytes that do not
exist in the float model, so they are refused: the validator checks them.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from stowage.errors import ModelError, PlanFormatError, StowageError
from stowage.ir.columns import column_tensors, flattened_pieces, row_axis_of
from stowage.ir.graph import VIEW_OP_TYPES, Graph, Operator, Tensor, TensorKind
from stowage.ir.onnx_shapes import ort_session
from stowage.ir.tiling import ACCUMULATE, MIRROR, RESIZE, TRANSPOSED, WINDOW, RowMap
from stowage.plan import Cascade, CascadeTensor, Placement, Plan, RowTransfer, Stripe

log = logging.getLogger(__name__)

POISON = 0xFF
#: Operators whose stripes run with the stripe's own H padding (``pads`` top and bottom).
_CONV_LIKE = frozenset({"Conv", "QLinearConv", "ConvInteger", "MaxPool", "AveragePool"})
RTOL = 1e-5
ATOL = 1e-6
#: float32 unit roundoff: two summation orders of ``k`` terms differ by at most about
#: ``k * EPS32`` times the sum of the terms' magnitudes.
EPS32 = float(np.finfo(np.float32).eps)
#: Safety factor on that bound for the end-to-end comparison (several reductions in a row).
REDUCTION_SLACK = 4.0


@dataclass(frozen=True)
class Corruption:
    step: int | None
    buffer: int | None
    message: str


@dataclass(frozen=True)
class OutputCheck:
    """One graph output.  ``exact``: bit-exact vs the whole-model ORT run; ``close``: within
    the end-to-end tolerance of it; ``matches_kernels``: bit-exact vs the node-by-node run
    of the same one-node kernels (what a correct plan must reproduce); ``present``: read
    from a home placement at all."""

    name: str
    exact: bool
    close: bool
    max_abs_diff: float
    matches_kernels: bool = True
    present: bool = True
    #: Band roundings the run accepted (a folded QDQ group's float core one quantization step
    #: from the whole tensor's, ``Simulator._follow``) when this output matches the kernels
    #: but not the whole-model run: the difference is theirs (docs/tiling.md), and the output
    #: passes; 0 otherwise.
    band_roundings: int = 0

    @property
    def ok(self) -> bool:
        return self.present and self.matches_kernels and (self.close or self.band_roundings > 0)


@dataclass(frozen=True)
class SimResult:
    ok: bool
    corruptions: tuple[Corruption, ...]
    outputs: tuple[OutputCheck, ...]
    steps: int
    ops_by_runtime: Mapping[str, int] = field(default_factory=dict)
    random_weights: bool = False
    tolerance: str = f"bit-exact, else rtol={RTOL}, atol={ATOL}"
    #: The validator's verdict, one ``"rule N: message"`` per violation (empty: valid).
    violations: tuple[str, ...] = ()
    #: False when the plan was refused without execution (it does not describe the model).
    executed: bool = True

    @property
    def first_problem(self) -> str | None:
        """The first execution problem, else the validator's first violation, else the first
        output that is wrong."""
        if self.corruptions:
            return self.corruptions[0].message
        if self.violations:
            return f"the validator rejects the plan: {self.violations[0]}"
        for o in self.outputs:
            if not o.present:
                return f"graph output '{o.name}' is not in its home level after the last step"
            if not o.matches_kernels:
                return (f"graph output '{o.name}' differs from the node-by-node reference run "
                        "(the plan does not compute it)")
            if not o.close and not o.band_roundings:
                return f"graph output '{o.name}' differs from ONNX Runtime (max abs diff {o.max_abs_diff:g})"
        return None


def np_dtype(dtype_name: str) -> np.dtype:
    return np.dtype(helper.tensor_dtype_to_np_dtype(TensorProto.DataType.Value(dtype_name.upper())))


def _elements(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= max(int(d), 1)
    return n


def reduction_size(graph: Graph) -> int:
    """The largest number of terms any one result of the model sums (at least 1).

    Convolutions sum ``C/group * kh * kw`` products, matrix products their inner dimension,
    softmax and normalisations one axis, pools and reductions the ratio of input to output
    elements.  Two correct kernels may add those terms in another order, so this bounds how
    far a whole-model run may drift from the node-by-node one (``output_tolerance``)."""
    shapes = {n: t.shape for n, t in graph.tensors.items()}
    k = 1
    for op in graph.operators:
        ins = [shapes.get(i, ()) for i in op.inputs]
        outs = [shapes.get(o, ()) for o in op.outputs if o]
        t = op.op_type
        if t in ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv"):
            w = ins[3] if t == "QLinearConv" and len(ins) > 3 else (ins[1] if len(ins) > 1 else ())
            n = _elements(w[1:]) if len(w) > 1 else 1
            if t == "ConvTranspose" and len(w) > 1:
                n = _elements((w[0], *w[2:]))
        elif t in ("MatMul", "MatMulInteger", "QLinearMatMul", "Gemm", "FusedMatMul"):
            a = ins[0] if ins else ()
            trans = bool(op.attributes.get("transA", 0)) if t == "Gemm" else False
            n = (a[0] if trans and len(a) >= 2 else a[-1]) if a else 1
        elif t in ("Softmax", "LogSoftmax", "Hardmax", "LayerNormalization", "LpNormalization",
                   "InstanceNormalization", "GroupNormalization", "MeanVarianceNormalization"):
            n = max(ins[0]) if ins and ins[0] else 1
        elif ins and ins[0] and outs and outs[0]:
            n = _elements(ins[0]) // max(_elements(outs[0]), 1)
        else:
            n = 1
        k = max(k, int(n))
    return k


def output_tolerance(graph: Graph) -> tuple[float, float]:
    """``(rtol, atol)`` of the end-to-end comparison with the whole-model ORT run: a float
    output ``a`` passes against the reference ``b`` when ``max|a - b| <= atol + rtol * max|b|``
    (or elementwise within ``RTOL``/``ATOL``).  ``rtol`` is ``REDUCTION_SLACK * k * EPS32``
    for the model's largest reduction ``k``, never below ``RTOL``: rounding in a sum grows
    with the number of terms and with their magnitude, not with the (possibly cancelled)
    result, hence the norm-wise form.  The plan itself is held to bit-exactness against the
    node-by-node run (``OutputCheck.matches_kernels``); this only checks that the one-node
    kernels compose to the model."""
    return max(RTOL, REDUCTION_SLACK * reduction_size(graph) * EPS32), ATOL


# ---------------------------------------------------------------------------------------
# Running one ONNX node
# ---------------------------------------------------------------------------------------
class NodeRunner:
    """Runs single nodes with ORT (sessions cached by the node's normalised signature, shared
    by every simulation in the process), falling back to the reference evaluator for ops
    ORT cannot load."""

    _shared_cache: ClassVar[dict[bytes, tuple[str, object]]] = {}
    MAX_CACHED = 4096

    def __init__(self, model: onnx.ModelProto) -> None:
        import onnxruntime as ort

        self.ort = ort
        self.opsets = list(model.opset_import)
        # The lowest IR version the opsets need: a model saved by a newer onnx than the
        # installed ORT supports still runs node by node.
        self.ir_version = max(4, helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True))
        self.functions = list(model.functions)
        context = b"".join(o.SerializeToString() for o in self.opsets) + b"".join(
            f.SerializeToString() for f in self.functions)
        self.context = context
        self.cache = NodeRunner._shared_cache
        self.counts: dict[str, int] = defaultdict(int)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session_options = so

    def _model(self, node: onnx.NodeProto, ins: list[np.ndarray | None],
               out_types: list[np.dtype | None], outer: Mapping[str, np.ndarray]) -> onnx.ModelProto:
        inputs = [
            helper.make_tensor_value_info(f"in{i}", helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
            for i, a in enumerate(ins) if a is not None
        ] + [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
            for n, a in sorted(outer.items())
        ]
        outputs = [
            helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(dt), None)
            for o, dt in zip(node.output, out_types) if o and dt is not None
        ]
        g = helper.make_graph([node], "one_node", inputs, outputs)
        return helper.make_model(g, opset_imports=self.opsets, ir_version=self.ir_version,
                                 functions=self.functions)

    def run(self, node: onnx.NodeProto, ins: list[np.ndarray | None],
            out_types: list[np.dtype | None], outer: Mapping[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """Outputs of ``node`` for inputs ``ins`` (None for an omitted optional input); one
        array per output whose dtype is given in ``out_types`` (parallel to
        ``node.output``; None = not wanted, e.g. an unused Dropout mask), in order.
        ``outer`` feeds the outer-scope names that a control-flow node's subgraphs read."""
        outer = dict(outer or {})
        norm = onnx.NodeProto()
        norm.CopyFrom(node)
        norm.name = ""
        del norm.input[:]
        del norm.output[:]
        norm.input.extend(f"in{i}" if a is not None else "" for i, a in enumerate(ins))
        norm.output.extend(f"out{i}" if o and dt is not None else ""
                           for i, (o, dt) in enumerate(zip(node.output, out_types)))
        sig = self.context + norm.SerializeToString() + repr(
            ([(a.dtype.str, a.shape) if a is not None else None for a in ins], [str(d) for d in out_types],
             sorted((n, a.dtype.str, a.shape) for n, a in outer.items()))
        ).encode()
        entry = self.cache.get(sig)
        if entry is None:
            model = self._model(norm, ins, out_types, outer)
            try:
                sess = self.ort.InferenceSession(model.SerializeToString(), self.session_options,
                                                 providers=["CPUExecutionProvider"])
                entry = ("onnxruntime", sess)
            except Exception as exc:  # noqa: BLE001 - ORT raises several types for "not implemented"
                from onnx.reference import ReferenceEvaluator

                log.info("ORT cannot run %s (%s); using onnx.reference", node.op_type, str(exc).splitlines()[0])
                entry = ("onnx.reference", ReferenceEvaluator(model))
            if len(self.cache) >= self.MAX_CACHED:
                self.cache.clear()
            self.cache[sig] = entry
        kind, runner = entry
        self.counts[kind] += 1
        feed = {f"in{i}": a for i, a in enumerate(ins) if a is not None}
        feed.update(outer)
        names = [o for o in norm.output if o]
        res = runner.run(names, feed)  # type: ignore[attr-defined]
        return [np.asarray(r) for r in res]


# ---------------------------------------------------------------------------------------
# Data: weights and inputs
# ---------------------------------------------------------------------------------------
def _initializer_values(model: onnx.ModelProto, base_dir: Path,
                        rng: np.random.Generator) -> tuple[dict[str, np.ndarray], bool]:
    """Initializer arrays; external data that is absent becomes seeded random values."""
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

    values: dict[str, np.ndarray] = {}
    random_used = False
    for t in model.graph.initializer:
        if uses_external_data(t):
            location = next((e.value for e in t.external_data if e.key == "location"), "")
            if not (base_dir / location).is_file():
                # Graph-only model: the data file is absent.
                dt = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
                values[t.name] = _random(rng, dt, tuple(t.dims), scale=0.1)
                random_used = True
                continue
            tt = TensorProto()
            tt.CopyFrom(t)
            try:
                load_external_data_for_tensor(tt, str(base_dir))
            except Exception as exc:  # noqa: BLE001 - onnx raises checker and OS errors here
                raise ModelError(
                    f"cannot read external data of initializer '{t.name}' from {location}: {exc}") from None
            values[t.name] = _to_array(tt)
            continue
        values[t.name] = _to_array(t)
    return values, random_used


def _to_array(t: TensorProto) -> np.ndarray:
    """An initializer's data, or a one-line ModelError when it does not match its dims and
    dtype (the importer reads only dims and dtypes, so it accepts such a file)."""
    try:
        return numpy_helper.to_array(t)
    except Exception as exc:  # noqa: BLE001 - onnx raises ValueError, TypeError, KeyError here
        raise ModelError(f"initializer '{t.name}' cannot be read as {list(t.dims)} of data type "
                         f"{t.data_type}: {' '.join(str(exc).split())[:120]}") from None


def _random(rng: np.random.Generator, dt: np.dtype, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    if dt.kind == "f":
        return (rng.standard_normal(shape) * scale).astype(dt)
    if dt.kind == "b":
        return rng.integers(0, 2, shape).astype(dt)
    if dt.kind in "iu":
        return rng.integers(0, 2, shape).astype(dt)  # small: safe as indices of any axis
    raise ModelError(f"cannot generate random data of dtype {dt}")


def _outer_names(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs read from the enclosing scope (empty for ordinary nodes)."""
    used: set[str] = set()

    def walk(g: onnx.GraphProto, defined: set[str]) -> None:
        local = defined | {i.name for i in g.input} | {t.name for t in g.initializer}
        for n in g.node:
            used.update(i for i in n.input if i and i not in local)
            for a in n.attribute:
                for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                    walk(sub, local)
            local |= {o for o in n.output if o}
        used.update(o.name for o in g.output if o.name not in local)

    for a in node.attribute:
        for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            walk(sub, set())
    return used


def _with_h_pads(node: onnx.NodeProto, top: int, bottom: int) -> onnx.NodeProto:
    """``node`` with its ``pads`` set to ``[top, left, bottom, right]`` (W pads unchanged)."""
    out = onnx.NodeProto()
    out.CopyFrom(node)
    pads = [0, 0, 0, 0]
    keep = []
    for a in out.attribute:
        if a.name == "pads":
            pads = list(a.ints) if len(a.ints) == 4 else pads
        elif a.name != "auto_pad":  # NOTSET or VALID (no pads): explicit pads say the same
            keep.append(a)
    del out.attribute[:]
    out.attribute.extend(keep)
    out.attribute.append(helper.make_attribute("pads", [top, pads[1], bottom, pads[3]]))
    return out


def _tap_node(node: onnx.NodeProto, h: int) -> onnx.NodeProto:
    """A dilated convolution ``node`` run on its gathered tap rows (``Simulator._stripe``):
    ``h`` output rows from ``taps * h`` rows, tap ``i``'s rows at ``i*h``: H dilation ``h``,
    H stride 1 and no H pads (W as in the model)."""
    out = onnx.NodeProto()
    out.CopyFrom(node)
    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    pads = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
    strides = [int(v) for v in a.get("strides", [1, 1])]
    dil = [int(v) for v in a.get("dilations", [1, 1])]
    del out.attribute[:]
    out.attribute.extend(at for at in node.attribute if at.name not in ("pads", "strides", "dilations", "auto_pad"))
    out.attribute.append(helper.make_attribute("pads", [0, pads[1], 0, pads[3]]))
    out.attribute.append(helper.make_attribute("strides", [1, strides[1]]))
    out.attribute.append(helper.make_attribute("dilations", [h, dil[1]]))
    return out


def _band_operands(node: onnx.NodeProto, ins: list[np.ndarray | None], st: Stripe, lo: int,
                   shape: tuple[int, ...]) -> tuple[onnx.NodeProto, list[np.ndarray | None]]:
    """A Slice or constant Pad node and its operands set to run on one band: the operand's rows
    from ``lo`` (NCHW ``shape``) are the band's, so a Slice along H starts at the band's first
    row of its output (``out_lo * step + start - lo``) and takes ``out_hi - out_lo`` rows; a
    Pad's H pads become the stripe's border pads.  Values given as inputs (Slice-10, Pad-11)
    are replaced in copies of the operand arrays, attribute forms (Slice-1, Pad-2) in a copy of
    the node; W and channel values are untouched."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    out = onnx.NodeProto()
    out.CopyFrom(node)
    ins = list(ins)
    h = shape[2]

    def put(name: str, pos: int, values: list[int]) -> None:
        if name in attrs:
            keep = [a for a in out.attribute if a.name != name]
            del out.attribute[:]
            out.attribute.extend(keep)
            out.attribute.append(helper.make_attribute(name, values))
        else:
            old = ins[pos]
            ins[pos] = np.asarray(values, dtype=old.dtype if old is not None else np.int64)

    def got(name: str, pos: int) -> list[int] | None:
        if name in attrs:
            return [int(v) for v in attrs[name]]
        v = ins[pos] if pos < len(ins) else None
        return None if v is None else [int(x) for x in np.asarray(v).reshape(-1)]

    if node.op_type == "Pad":
        pads = got("pads", 1)
        if pads is not None and len(pads) == 8:
            pads[2], pads[6] = st.pad_top, st.pad_bottom
            put("pads", 1, pads)
        return out, ins
    starts, ends = got("starts", 1), got("ends", 2)
    if starts is None or ends is None:
        return out, ins
    axes = got("axes", 3) or list(range(len(starts)))
    steps = got("steps", 4) or [1] * len(starts)
    for k, axis in enumerate(axes):
        if axis % len(shape) == 2:
            first = starts[k] + h if starts[k] < 0 else starts[k]
            first = min(max(first, 0), h) + st.out_lo * steps[k] - lo
            starts[k], ends[k] = first, first + (st.out_hi - st.out_lo - 1) * steps[k] + 1
    put("starts", 1, starts)
    put("ends", 2, ends)
    return out, ins


def resize_band(run: Callable[[np.ndarray], np.ndarray], band: np.ndarray, lo: int, scale: int,
                out_lo: int, out_hi: int) -> np.ndarray:
    """Output rows ``[out_lo, out_hi)`` of a Resize by the integer factor ``scale`` along H,
    from the input rows ``band`` (NCHW, its first row is row ``lo``); ``run(rows)`` resizes
    ``rows`` to ``rows * scale`` rows (W as in the model).  Every coordinate mode kept in bands
    maps output row ``o`` to input coordinate ``x(o)``, and the band's own output row ``o - lo
    * scale`` to ``x(o) - lo``, so its rows are the whole resize's.  A nearest mode can serve
    output rows above ``lo * scale`` from row ``lo`` (rounding up) or below ``hi * scale`` from
    row ``hi - 1`` (half_pixel): copies of those rows go on top and below, which no output row
    of the stripe reads (they are outside ``[lo, hi)``, where its rows are), but which put its
    output rows inside the band's output.  (Linear never needs them: ``lo * scale <= out_lo``
    and ``out_hi <= hi * scale``.)"""
    top = max(0, -((out_lo - lo * scale) // scale))
    bottom = max(0, -(-out_hi // scale) - (lo + band.shape[2]))
    if top or bottom:
        band = np.concatenate([np.repeat(band[:, :, :1], top, axis=2), band,
                               np.repeat(band[:, :, -1:], bottom, axis=2)], axis=2)
        lo -= top
    res = run(band)
    return np.ascontiguousarray(res[:, :, out_lo - lo * scale:out_hi - lo * scale, :])


def _node_by_output(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output if o}


# ---------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------
class Memory:
    """One byte array per level plus placement lookup by (buffer, level, step); shared by the
    ONNX simulator and the TFLite replay (``stowage.simulate_tflite``)."""

    def __init__(self, plan: Plan) -> None:
        used: dict[str, int] = {lv.name: 0 for lv in plan.target.levels}
        self.sizes = {b.id: b.bytes for b in plan.buffers}
        for pl in plan.placements:
            used[pl.level] = max(used[pl.level], pl.offset + self.sizes[pl.buffer])
        for lv in plan.target.levels:
            if lv.capacity is not None and used[lv.name] > lv.capacity:
                log.info("level %s used past its capacity; simulating the larger size", lv.name)
        self.mem = {name: np.full(size, POISON, dtype=np.uint8) for name, size in used.items()}
        by_key: dict[tuple[int, str], list[Placement]] = defaultdict(list)
        for pl in plan.placements:
            by_key[(pl.buffer, pl.level)].append(pl)
        self.index = {}
        for key, pls in by_key.items():
            pls.sort(key=lambda p: p.first)
            self.index[key] = ([p.first for p in pls], pls)

    def find(self, bid: int, level: str | None, step: int) -> Placement | None:
        entry = self.index.get((bid, level)) if level else None
        if entry is None:
            return None
        firsts, pls = entry
        k = bisect.bisect_right(firsts, step) - 1
        return pls[k] if k >= 0 and pls[k].last >= step else None

    def view(self, pl: Placement, nbytes: int | None = None) -> np.ndarray:
        n = self.sizes[pl.buffer] if nbytes is None else nbytes
        return self.mem[pl.level][pl.offset:pl.offset + n]

    def poison(self, pl: Placement) -> None:
        self.view(pl)[:] = POISON



def row_views(mem: Memory, level: str, step: int, ct: CascadeTensor, t: Tensor, axis: int,
              lo: int, hi: int, slots: Mapping[int, int] | None = None) -> list[np.ndarray] | str:
    """Writable byte views ``(outer, inner)`` of rows ``[lo, hi)`` of the tensor ``t`` (rows on
    ``axis``: 2 in NCHW, outer = C; 1 in NHWC, outer = 1; the last axis of a column tensor,
    ``stowage.ir.columns``, outer = the leading axes, inner = one element) in its holder ``ct`` in ``level``
    at ``step``, or why there are none.  A ring holds row ``r`` at byte
    ``(r mod ring_rows) * row_bytes`` of its buffer (``docs/tiling.md``), or at byte
    ``ct.slots[r]`` when its cascade addresses rows by slot; a staging buffer (mode ``staged``)
    holds it in the slot ``slots[r]`` the current stripe's loads gave it."""
    name = t.name
    if axis == 0 and len(t.shape) == 2 and t.shape[0] == 1:
        h, outer = 1, 1   # one row: a TFLite MEAN's (1, C) result (simulate_tflite passes axis 0)
    elif not 2 <= len(t.shape) <= 4 or t.shape[0] != 1 or not 0 < axis < len(t.shape):
        return f"tensor '{name}' (shape {list(t.shape)}) has no rows"
    else:
        h = t.shape[axis]
        outer = int(np.prod(t.shape[1:axis], dtype=np.int64))
    inner = t.bytes // h // outer
    if not 0 <= lo <= hi <= h:
        return f"rows [{lo}, {hi}) of '{name}' are outside its {h} rows"
    if ct.buffer not in mem.sizes:
        return f"'{name}' is held in buffer {ct.buffer}, not in the plan"
    pl = mem.find(ct.buffer, level, step)
    if pl is None:
        return f"'{name}' is held in buffer {ct.buffer}, which has no {level} placement"
    rb = outer * inner
    if ct.mode == "whole":
        if t.bytes > mem.sizes[ct.buffer]:
            return f"'{name}' ({t.bytes} B) does not fit its buffer {ct.buffer} ({mem.sizes[ct.buffer]} B)"
        whole = mem.view(pl, t.bytes).reshape(outer, h, inner)
        return [whole[:, r, :] for r in range(lo, hi)]
    if ct.mode not in ("ring", "streamed", "staged"):
        return f"'{name}' has holder mode '{ct.mode}'"
    if (ct.ring_rows <= 0 and not ct.slots) or ct.row_bytes < rb:
        return (f"ring of '{name}' in buffer {ct.buffer} has {ct.ring_rows} rows of {ct.row_bytes} B "
                f"(a row is {rb} B)")
    space = mem.view(pl)
    views = []
    for r in range(lo, hi):
        if ct.mode == "staged":
            if slots is None or r not in slots:
                return f"row {r} of '{name}' is not staged by the stripe's loads"
            off = slots[r] * ct.row_bytes
        else:
            off = ct.row_offset(r)
            if off < 0:
                return f"row {r} of '{name}' has no slot in its cascade's row region (buffer {ct.buffer})"
        if off + rb > space.size:
            return f"row {r} of '{name}' at byte {off} of ring buffer {ct.buffer} overruns its {space.size} bytes"
        views.append(space[off:off + rb].reshape(outer, inner))
    return views

#: Elementwise operators whose constant operands broadcast against the last axis: on a column
#: stripe (``stowage.ir.columns``) a constant along ``N`` is taken at the band's positions.
_BROADCASTING = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "PRelu", "Pow", "Where"})


class Simulator:
    def __init__(self, model: onnx.ModelProto, graph: Graph, plan: Plan, base_dir: Path, seed: int = 0) -> None:
        if plan.options.element_bytes is not None:
            raise StowageError(
                f"the plan was made with an element-size override (element_bytes={plan.options.element_bytes}); "
                "its bytes do not exist in the model, so it cannot be executed: check it with 'stowage validate'"
            )
        #: The model's graph (in-place fused import); ``graph`` is the graph the plan's steps
        #: are steps of: the macro graph of a tiled plan's cascades, else the same graph.
        self.orig = graph
        if plan.cascades:
            from stowage.plan.validate import plan_graph

            graph = plan_graph(graph, plan)
            # A ring's bytes are the plan's: its ``ring_rows`` only say how rows are laid out
            # in them, and execution shows whether they are enough (rows overwritten too
            # early, or slots past the buffer's end).
            rings = {ct.buffer for c in plan.cascades for ct in c.tensors if ct.mode in ("ring", "streamed", "staged")}
            if len(plan.buffers) == len(graph.buffers) and any(
                    plan.buffers[b].bytes != graph.buffers[b].bytes for b in rings if 0 <= b < len(graph.buffers)):
                graph = dataclasses.replace(graph, buffers=tuple(
                    dataclasses.replace(gb, bytes=pb.bytes) if gb.id in rings else gb
                    for gb, pb in zip(graph.buffers, plan.buffers)))
        if len(plan.buffers) != len(graph.buffers) or any(
            pb.bytes != gb.bytes for pb, gb in zip(plan.buffers, graph.buffers)
        ):
            raise PlanFormatError("the plan's buffers do not match the model (another model, or other --dim values?)")
        self.model, self.graph, self.plan = model, graph, plan
        #: Graph outputs (a tiled plan's macro graph drops those streamed to their home level).
        self.outputs = tuple(self.orig.outputs)
        self.cascade_at = {c.step: c for c in plan.cascades}
        #: Buffers holding rings: their bytes are rows, not a tensor (checked row by row).
        self.ring_bufs = {ct.buffer for c in plan.cascades for ct in c.tensors
                          if ct.mode in ("ring", "streamed", "staged")}
        #: Context added to corruption messages (the stripe being run).
        self.where = ""
        #: Per ring buffer, the tensor whose rows it holds now (in-place results share rings).
        self.ring_content: dict[int, str] = {}
        #: Per staging buffer (mode ``staged``), the slot of each row the current stripe loaded.
        self.stage: dict[int, dict[int, int]] = {}
        self.rng = np.random.default_rng(seed)
        self.runner = NodeRunner(model)
        self.nodes = _node_by_output(model)
        self.compute = plan.target.compute_level
        self.corruptions: list[Corruption] = []
        #: Executions per operator index of the model's graph (``_check_coverage``).
        self.ran: dict[int, int] = defaultdict(int)
        #: The step being executed (None: before or after the steps).
        self.at: int | None = None
        self.reduction = reduction_size(self.orig)
        self.rtol_atol = output_tolerance(self.orig)
        # Buffers computed from corrupted operands: wrong by consequence, not reported again.
        self.tainted: set[int] = set()
        #: Band roundings accepted (``_follow`` of an int8 band one step from the reference).
        self.band_roundings = 0
        self.shadow: dict[str, np.ndarray] = {}
        #: Float tensors inside folded QDQ groups (``stowage.ir.qdq``): no buffer, never in
        #: memory; the value a member computed and whether its operands were clean.
        self.unplanned: dict[str, tuple[np.ndarray, bool]] = {}
        #: The tensor whose bytes a buffer holds now (the last one written into it).
        self.current: dict[int, str] = {}
        #: A Concat-in-place buffer before its Concat step: per offset, the slice tensor last
        #: written there (``Graph.tensor_offsets``).
        self.slice_now: dict[int, dict[int, str]] = {}
        #: Per reduction running on bands: (input rows reduced, per-channel accumulators).
        self.accumulators: dict[int, tuple[int, Any]] = {}
        init, self.random_weights = _initializer_values(model, base_dir, self.rng)
        self.shadow.update(init)
        #: Nodes made for operators the model file does not have (``_derived_node``).
        self.derived: dict[str, onnx.NodeProto] = {}
        # Weights cut from the model's initializers by a channel split (``Graph.derived_weights``).
        for name, (src, axis, lo, hi) in graph.derived_weights.items():
            if src in self.shadow:
                self.shadow[name] = np.ascontiguousarray(np.take(self.shadow[src], np.arange(lo, hi), axis=axis))
        self.inputs = {
            name: _random(self.rng, np_dtype(graph.tensors[name].dtype), graph.tensors[name].shape)
            for name in graph.inputs
        }
        self.shadow.update(self.inputs)
        self._fold_weights()

    # -- setup ---------------------------------------------------------------------------
    def node_of(self, op: Operator) -> onnx.NodeProto:
        src = self.orig.derived_nodes.get(op.name)
        if src is not None:
            return self._derived_node(op, src)
        out = next(o for o in op.outputs if o)
        return self.nodes[out]

    def _derived_node(self, op: Operator, src: str) -> onnx.NodeProto:
        """A node the model file does not have (``stowage.ir.channel_split``): a channel group
        is the model's node with its operands and result renamed to the group's (sliced
        weights, a slice of the result), the join a Concat along the channel axis."""
        hit = self.derived.get(op.name)
        if hit is not None:
            return hit
        if src:
            node = onnx.NodeProto()
            node.CopyFrom(self.nodes[src])
            del node.input[:]
            node.input.extend(op.inputs)
            del node.output[:]
            node.output.extend(op.outputs)
            node.name = op.name
        else:
            node = helper.make_node("Concat", list(op.inputs), list(op.outputs), name=op.name,
                                    axis=int(op.attributes.get("axis", 1)))
        self.derived[op.name] = node
        return node

    def _fold_weights(self) -> None:
        """Weights computed by folded operators (Constant, ConstantOfShape on initializers)."""
        for op in self.orig.operators:
            outs = [o for o in op.outputs if o and o in self.graph.tensors]
            if op.computing or not outs or any(self.graph.tensors[o].kind is not TensorKind.WEIGHT for o in outs):
                continue  # computing ops and views run in the replay
            node = self.node_of(op)
            if all(o in self.shadow for o in node.output if o):
                continue
            if op.op_type in ("Shape", "Size") and op.inputs and op.inputs[0] not in self.shadow:
                # A Shape (Size) of an activation with a known shape folds to its shape
                # (``stowage.ir.build``): computed from the shape, as onnxruntime would.
                dims = np.array(self.graph.tensors[op.inputs[0]].shape, dtype=np.int64)
                if op.op_type == "Size":
                    self.shadow[outs[0]] = np.array(int(np.prod(dims)), dtype=np.int64)
                else:
                    n = len(dims)
                    lo, hi = int(op.attributes.get("start", 0)), int(op.attributes.get("end", n))
                    lo, hi = (lo + n if lo < 0 else lo), (hi + n if hi < 0 else hi)
                    self.shadow[outs[0]] = dims[max(0, min(lo, n)):max(0, min(hi, n))]
                continue
            ins = [self.shadow[i] if i else None for i in node.input]
            for name, value in zip(self.wanted(node), self.runner.run(node, ins, self.out_types(node))):
                self.shadow[name] = value

    def out_types(self, node: onnx.NodeProto) -> list[np.dtype | None]:
        return [np_dtype(self.graph.tensors[o].dtype) if o and o in self.graph.tensors else None
                for o in node.output]

    def wanted(self, node: onnx.NodeProto) -> list[str]:
        """Output names the runner returns (those the IR knows), in order."""
        return [o for o in node.output if o and o in self.graph.tensors]

    # -- byte helpers --------------------------------------------------------------------
    def tensor_bytes(self, name: str) -> np.ndarray:
        """Correct bytes of a tensor.  A view tensor (Reshape, Flatten, ...) is never computed
        on its own: its bytes are those of another tensor of the same buffer."""
        if name not in self.shadow:
            bid = self.graph.tensor_buffer[name]
            if not hasattr(self, "_view_src"):
                # A view's bytes are its operand's: in a buffer an in-place chain rewrites
                # (Split -> Sigmoid in place -> Reshape), not its first tensor's.
                tb = self.graph.tensor_buffer
                self._view_src = {op.outputs[0]: op.inputs[0] for op in self.graph.operators
                                  if op.op_type in VIEW_OP_TYPES and not op.computing and op.inputs and op.outputs
                                  and op.inputs[0] in tb and tb[op.inputs[0]] == tb.get(op.outputs[0])}
            if name in self._view_src:
                return self.tensor_bytes(self._view_src[name])[: self.graph.tensors[name].bytes]
            cur = self.current.get(bid)
            src = cur if cur is not None and cur in self.shadow else next(
                n for n in self.graph.buffers[bid].tensors if n in self.shadow)
            return self.tensor_bytes(src)[: self.graph.tensors[name].bytes]
        arr = np.ascontiguousarray(self.shadow[name])
        return arr.reshape(-1).view(np.uint8)

    def ref_value(self, name: str) -> np.ndarray:
        """The correct value of a tensor (views reinterpret their buffer's bytes)."""
        t = self.graph.tensors[name]
        return self.tensor_bytes(name).view(np_dtype(t.dtype)).reshape(t.shape)

    def buffer_bytes(self, bid: int) -> np.ndarray:
        """The buffer's correct content: the bytes of the tensor last written into it (an
        in-place operator's result replaces its operand's), else its largest tensor's bytes
        (views share them)."""
        if bid in self.current:
            return self.tensor_bytes(self.current[bid])
        b = self.graph.buffers[bid]
        known = [n for n in b.tensors if n in self.shadow]
        best = max(known, key=lambda n: self.graph.tensors[n].bytes)
        return self.tensor_bytes(best)

    def label(self, step: int | None) -> str:
        return f"step {step} ({self.plan.steps[step].op}){self.where}" if step is not None else "end"

    def buf(self, bid: int) -> str:
        return f"buffer {bid} ({self.graph.buffers[bid].tensors[0]})"

    def corrupt(self, step: int | None, bid: int | None, text: str) -> None:
        if bid is not None and bid in self.tainted:
            return
        self.corruptions.append(Corruption(step, bid, f"{self.label(step)}: {text}"))

    def _diff(self, got: np.ndarray, want: np.ndarray) -> str:
        bad = np.flatnonzero(got != want)
        poisoned = bool(np.all(got[bad] == POISON))
        return (f"{bad.size} of {want.size} bytes differ, first at byte {int(bad[0])}"
                + (" (poison: never written or freed)" if poisoned else ""))

    # -- replay --------------------------------------------------------------------------
    def run(self) -> SimResult:
        """Execute the plan; every failure, also one the kernels raise on what the plan fed
        them, becomes a reported problem, never an exception."""
        try:
            outputs_read = self._replay()
        except Exception as exc:
            log.debug("execution stopped", exc_info=True)
            text = " ".join(str(exc).split())[:200]
            self.corruptions.append(Corruption(None, None, f"execution stopped at {self.label(self.at)}: "
                                               f"{type(exc).__name__}: {text}"))
            outputs_read = {}
        self.where = ""
        self._check_coverage()
        checks = self._compare_outputs(outputs_read)
        ok = not self.corruptions and all(c.ok for c in checks)
        rtol, atol = self.rtol_atol
        return SimResult(ok, tuple(self.corruptions), tuple(checks), len(self.plan.steps), dict(self.runner.counts),
                         self.random_weights,
                         tolerance=(f"bit-exact vs the node-by-node run; vs the whole-model run bit-exact, else "
                                    f"max|diff| <= {atol:g} + {rtol:.3g} * max|ref| (largest reduction "
                                    f"{self.reduction} terms) or rtol={RTOL:g}, atol={ATOL:g} elementwise"))

    def _replay(self) -> dict[str, np.ndarray]:
        plan, graph = self.plan, self.graph
        mem = Memory(plan)
        self.memory = mem
        nsteps = len(plan.steps)
        starts: dict[int, list[Placement]] = defaultdict(list)
        ends: dict[int, list[Placement]] = defaultdict(list)
        for pl in plan.placements:
            starts[pl.first].append(pl)
            ends[pl.last].append(pl)
        transfers = defaultdict(list)
        for t in plan.transfers:
            transfers[(t.step, t.phase)].append(t)
        filled: set[Placement] = set()
        by_name = {op.name: op for op in graph.computing_ops}
        outputs_read: dict[str, np.ndarray] = {}
        for s in range(nsteps):
            self.at = s
            for pl in starts.get(s, ()):
                mem.poison(pl)
            if s == 0:
                for pl in starts.get(0, ()):
                    pb = plan.buffers[pl.buffer]
                    if pb.kind in ("input", "weight") and pl.level == pb.home:
                        mem.view(pl)[:] = self.buffer_bytes(pl.buffer)
                        filled.add(pl)
            self._transfers(mem, s, transfers.get((s, "before"), ()), filled)
            st = plan.steps[s]
            cascade = self.cascade_at.get(s)
            if cascade is not None:
                # A tiled step: the cascade's stripes, in order, instead of one operator.
                for i in cascade.ops:
                    if 0 <= i < len(self.orig.operators):
                        for m in self.orig.step_members(self.orig.operators[i]):
                            self.ran[m.index] += 1
                self._cascade(mem, s, cascade, filled)
            else:
                if st.index is not None:
                    op = graph.operators[st.index] if 0 <= st.index < len(graph.operators) else None
                    if op is not None and (not op.computing or op.name != st.op):
                        op = None
                else:
                    op = by_name.get(st.op)
                if op is None:
                    self.corrupt(s, None, f"operator '{st.op}' (index {st.index}) is not a step of the model")
                else:
                    # The step runs its operator, then each in-place operator fused into it,
                    # which writes its result over the operand the step just produced.
                    for member in graph.step_members(op):
                        self.ran[member.index] += 1
                        self._execute(mem, s, member, filled)
            self._transfers(mem, s, transfers.get((s, "after"), ()), filled)
            if s == nsteps - 1:
                # After the last step's transfers, before its placements end (rule 5).
                outputs_read = self._collect_outputs(mem, s)
            self._end_placements(mem, s, ends.get(s, ()), filled)
        self.at = None
        return outputs_read

    def _check_coverage(self) -> None:
        """Every operator of the model ran exactly once (checked here, by execution, besides
        the validator's rule 1)."""
        g = self.orig
        expected = [op for op in g.operators if op.computing or op.fused_into is not None]
        never = [op for op in expected if self.ran.get(op.index, 0) == 0]
        # A DequantizeLinear shared by folded QDQ groups runs once in each of their steps.
        runs: dict[int, int] = defaultdict(int)
        for op in g.computing_ops:
            for m in g.step_members(op):
                runs[m.index] += 1
        twice = [op for op in expected if self.ran.get(op.index, 0) > max(1, runs[op.index])]
        for what, ops in (("never ran", never), ("ran more than once", twice)):
            if ops:
                names = ", ".join(f"'{op.name}' ({op.op_type})" for op in ops[:3])
                more = f" and {len(ops) - 3} more" if len(ops) > 3 else ""
                self.corruptions.append(Corruption(None, None, f"end: operator {names}{more} {what}"))

    def _end_placements(self, mem: Memory, s: int, pls, filled: set[Placement]) -> None:
        for pl in pls:
            if (pl in filled and pl.buffer not in self.tainted and pl.buffer in self.slice_now
                    and pl.buffer not in self.current):
                # A Concat-in-place buffer between its writers: the slices written so far.
                for off, name in sorted(self.slice_now[pl.buffer].items()):
                    want = self.tensor_bytes(name)
                    got = self._at(mem, pl, off, want.size)
                    if not np.array_equal(got, want):
                        self.corrupt(s, pl.buffer, f"slice '{name}' of {self.buf(pl.buffer)} was found corrupted in "
                                     f"{pl.level} at [{pl.offset + off}, {pl.offset + off + want.size}) when its "
                                     f"placement ended: {self._diff(got, want)}")
                        break
            elif pl in filled and pl.buffer not in self.tainted and pl.buffer not in self.ring_bufs:
                want = self.buffer_bytes(pl.buffer)
                got = mem.view(pl, want.size)
                if not np.array_equal(got, want):
                    self.corrupt(s, pl.buffer, f"{self.buf(pl.buffer)} was found corrupted in {pl.level} at "
                                 f"[{pl.offset}, {pl.offset + want.size}) when its placement ended: "
                                 f"{self._diff(got, want)}")
            filled.discard(pl)
            mem.poison(pl)

    def _transfers(self, mem: Memory, s: int, ts, filled: set[Placement]) -> None:
        for t in ts:
            src, dst = mem.find(t.buffer, t.src, s), mem.find(t.buffer, t.dst, s)
            if src is None or dst is None:
                missing = t.src if src is None else t.dst
                self.corrupt(s, t.buffer, f"transfer of {self.buf(t.buffer)} {t.src} -> {t.dst}: "
                             f"no {missing} placement to copy {'from' if src is None else 'into'}")
                continue
            mem.view(dst)[:] = mem.view(src)
            filled.add(dst)

    def _operand_placement(self, mem: Memory, bid: int, s: int) -> Placement | None:
        pl = mem.find(bid, self.compute, s)
        b = self.graph.buffers[bid]
        if pl is None and b.kind is TensorKind.WEIGHT and not self.plan.options.weights_in_compute_level:
            home = self.plan.buffers[bid].home
            pl = mem.find(bid, home, s) if home else None
        return pl

    def tname(self, bid: int, name: str) -> str:
        return self.buf(bid) + ("" if name == self.graph.buffers[bid].tensors[0] else f" (tensor '{name}')")

    def _read(self, mem: Memory, s: int, name: str) -> tuple[np.ndarray, bool]:
        """Read a tensor from memory and check it against the shadow: (value read, correct)."""
        if name not in self.graph.tensor_buffer:
            # Inside a folded QDQ group: the previous member of this step computed it.
            return self.unplanned.get(name, (self.ref_value(name), True))
        t = self.graph.tensors[name]
        bid = self.graph.tensor_buffer[name]
        want = self.tensor_bytes(name)
        pl = self._operand_placement(mem, bid, s)
        if pl is None:
            self.corrupt(s, bid, f"reads {self.tname(bid, name)}, which has no {self.compute} placement")
            return self.ref_value(name), False
        off = self.graph.tensor_offset(name)
        got = self._at(mem, pl, off, want.size).copy()
        ok = bool(np.array_equal(got, want))
        if not ok and bid not in self.tainted:
            self.corrupt(s, bid, f"read of {self.tname(bid, name)} from {pl.level} at "
                         f"[{pl.offset + off}, {pl.offset + off + want.size}) found it corrupted: "
                         f"{self._diff(got, want)}")
        return got.view(np_dtype(t.dtype)).reshape(t.shape), ok

    @staticmethod
    def _at(mem: Memory, pl: Placement, off: int, nbytes: int) -> np.ndarray:
        """Bytes ``[off, off + nbytes)`` of a placement (a Concat slice starts at ``off``)."""
        return mem.view(pl)[off:off + nbytes]

    def _concat_in_place(self, mem: Memory, s: int, op: Operator, filled: set[Placement]) -> None:
        """A Concat whose producers wrote their slices in place copies nothing: read its
        operands where they are (checked as any read), compute the reference Concat with ONNX
        Runtime, and check that the buffer's bytes are that result, which proves the slices'
        offsets."""
        node = self.node_of(op)
        reads = [self._read(mem, s, i) for i in node.input if i]
        ref = self.runner.run(node, [self.ref_value(i) if i else None for i in node.input], self.out_types(node))
        name = self.wanted(node)[0]
        self.shadow[name] = ref[0]
        bid = self.graph.tensor_buffer[name]
        if not all(ok for _, ok in reads):
            self.tainted.add(bid)
        self.current[bid] = name
        self.slice_now.pop(bid, None)
        pl = mem.find(bid, self.compute, s)
        want = self.tensor_bytes(name)
        if pl is None:
            self.corrupt(s, bid, f"Concat in place: {self.buf(bid)} has no {self.compute} placement")
            return
        filled.add(pl)
        got = self._at(mem, pl, 0, want.size)
        if bid not in self.tainted and not np.array_equal(got, want):
            self.corrupt(s, bid, f"Concat in place: {self.buf(bid)} in {pl.level} at [{pl.offset}, "
                         f"{pl.offset + want.size}) is not the Concat's result: {self._diff(got, want)}")

    def _execute(self, mem: Memory, s: int, op: Operator, filled: set[Placement]) -> None:
        if op.op_type == "Concat" and op.inputs and all(i in self.graph.tensor_offsets for i in op.inputs if i):
            self._concat_in_place(mem, s, op, filled)
            return
        node = self.node_of(op)
        before = len(self.corruptions)
        reads = [self._read(mem, s, i) if i else (None, True) for i in node.input]
        ins = [v for v, _ in reads]
        clean = all(ok for _, ok in reads)
        # Outer-scope values read by control-flow subgraphs are not operands in the IR (the
        # plan does not place them): they come from the shadow run.
        outer = {n: self.ref_value(n) for n in _outer_names(node) if n in self.graph.tensors}
        types = self.out_types(node)
        if clean:
            outs = ref = self.runner.run(node, ins, types, outer)
        else:
            # Keep the shadow correct: recompute from the reference operands.
            ref = self.runner.run(node, [self.ref_value(i) if i else None for i in node.input], types, outer)
            try:
                outs = self.runner.run(node, ins, types, outer)
            except Exception as exc:  # noqa: BLE001 - garbage operands may make a kernel fail
                self.corrupt(s, None, f"the operator failed on corrupted operands: {str(exc).splitlines()[0][:120]}")
                outs = ref
        written: list[tuple[str, np.ndarray]] = []
        for name, value, rvalue in zip(self.wanted(node), outs, ref):
            self.shadow[name] = rvalue
            if name not in self.graph.tensor_buffer:
                self.unplanned[name] = (value, clean)  # inside a folded QDQ group: no memory
                continue
            if not clean:
                self.tainted.add(self.graph.tensor_buffer[name])
            written.append((name, value))
        for name, value in written:
            bid = self.graph.tensor_buffer[name]
            pl = mem.find(bid, self.compute, s)
            if pl is None:
                self.corrupt(s, bid, f"writes {self.buf(bid)}, which has no {self.compute} placement")
                continue
            data = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
            t = self.graph.tensors[name]
            if data.size != t.bytes:
                # The model's declared shapes (value_info) disagree with what the kernel makes.
                self.corrupt(s, bid, f"the operator made {data.size} bytes of '{name}' (shape {list(value.shape)}) "
                             f"but the plan's graph has {t.bytes} bytes (shape {list(t.shape)}): the model's "
                             "declared shapes are wrong")
                self.tainted.add(bid)
                continue
            off = self.graph.tensor_offset(name)
            target = self._at(mem, pl, off, data.size)
            if target.size != data.size:
                self.corrupt(s, bid, f"'{name}' ({data.size} B) overruns its {pl.level} placement at "
                             f"[{pl.offset}, {pl.offset + target.size})")
                continue
            target[:] = data
            filled.add(pl)
            if name in self.graph.tensor_offsets:
                self.slice_now.setdefault(bid, {})[off] = name  # one slice of a Concat in place
            else:
                self.current[bid] = name
        # A kernel writes its results while it still reads its operands: they must survive,
        # except the operand an in-place operator declares it overwrites (same buffer).
        written_bufs = {self.graph.tensor_buffer[n] for n, _ in written}
        if len(self.corruptions) == before:
            for name in (i for i in node.input if i and i in self.graph.tensor_buffer):
                bid = self.graph.tensor_buffer[name]
                if bid in written_bufs and op.fused_into is not None:
                    continue
                pl = self._operand_placement(mem, bid, s)
                want = self.tensor_bytes(name)
                off = self.graph.tensor_offset(name)
                if pl is not None and not np.array_equal(self._at(mem, pl, off, want.size), want):
                    self.corrupt(s, bid, f"writing the results overwrote operand {self.tname(bid, name)} in "
                                         f"{pl.level} at [{pl.offset + off}, {pl.offset + off + want.size})")

    # -- tiled steps ---------------------------------------------------------------------
    def _cascade(self, mem: Memory, s: int, casc: Cascade, filled: set[Placement]) -> None:
        """Run cascade ``casc`` (plan step ``s``) stripe by stripe.

        The shadow first gets every member's whole reference value; each stripe then reads its
        operand rows from their holders (checked against the shadow's rows), runs its operator
        on them (the H pads replaced by the stripe's) and writes its rows into its result's
        holder.  Loads run before a stripe, stores after it."""
        g = self.orig
        holders = {g.tensor_buffer[ct.tensor]: ct for ct in casc.tensors if ct.tensor in g.tensor_buffer}
        members = [m for i in casc.ops for m in g.step_members(g.operators[i])]
        self.where = " (reference)"
        self._members = members
        self._followed: dict[str, list[tuple[int, int, np.ndarray]]] = {}
        self._reference(members)
        for j, st in enumerate(casc.stripes):
            if not 0 <= st.op < len(g.operators):
                raise PlanFormatError(f"step {s}: stripe {j} names operator index {st.op}, not in the model")
            op = g.operators[st.op]
            self.where = f", stripe {j} ({op.op_type} '{op.name}', rows [{st.out_lo}, {st.out_hi}))"
            self.stage.clear()   # staged rows live for one stripe (CascadeTensor mode ``staged``)
            for rt in st.transfers:
                if rt.direction == "load":
                    self._row_transfer(mem, s, casc, holders, rt, filled)
            self._stripe(mem, s, casc, holders, st, op, filled)
            for rt in st.transfers:
                if rt.direction == "store":
                    self._row_transfer(mem, s, casc, holders, rt, filled)
                elif rt.direction != "load":
                    self.corrupt(s, None, f"row transfer of '{rt.tensor}' has direction '{rt.direction}'")
        self.where = ""

    def _reference(self, members: list[Operator]) -> None:
        """The whole reference values of ``members`` (in order) from the shadow, with the bands
        the shadow took from the plan (``_follow``) put back on top."""
        for m in members:
            node = self.node_of(m)
            ref = self.runner.run(node, [self.ref_value(i) if i else None for i in node.input], self.out_types(node))
            for name, value in zip(self.wanted(node), ref):
                self.shadow[name] = np.array(value)
                for lo, hi, band in self._followed.get(name, ()):
                    self._band(name, self.shadow[name], lo, hi)[...] = band

    def _follow(self, out: str, lo: int, hi: int, value: np.ndarray) -> None:
        """The shadow takes rows ``[lo, hi)`` of ``out`` from the plan (a float kernel on a band
        rounded differently from the whole tensor's, accepted), and the references of the
        cascade's later members are recomputed from it: computed at the cascade's start, they
        still hold what the whole-tensor rows would have made, and every later stripe that read
        the plan's rows would look wrong by that rounding (PP-OCRv4 det in QDQ int8 at 64 KiB:
        a Conv band one quantization step off, then the Mul reading it)."""
        self._band(out, self.shadow[out], lo, hi)[...] = value
        self._followed.setdefault(out, []).append((lo, hi, np.array(value)))
        members = getattr(self, "_members", [])
        at = next((k for k, m in enumerate(members) if out in m.outputs), None)
        if at is not None and at + 1 < len(members):
            self._reference(members[at + 1:])

    def _holder(self, casc: Cascade, holders: Mapping[int, CascadeTensor], name: str) -> CascadeTensor | None:
        ct = casc.tensor(name)
        return ct if ct is not None else holders.get(self.orig.tensor_buffer.get(name, -1))

    def _row_views(self, mem: Memory, s: int, ct: CascadeTensor, name: str,
                   lo: int, hi: int) -> list[np.ndarray] | str:
        """Writable byte views ``(C, W * element size)`` of rows ``[lo, hi)`` of tensor
        ``name`` in its holder ``ct`` (compute level), or why there are none."""
        return row_views(mem, self.compute, s, ct, self.graph.tensors[name], self._axis(name), lo, hi,
                         self.stage.get(ct.buffer))

    def _content_key(self, ct: CascadeTensor) -> int:
        """``ring_content``'s key for holder ``ct``: its buffer, or for a slot-addressed tensor
        (every ring of its cascade in one region) its own graph buffer."""
        return self.orig.tensor_buffer[ct.tensor] if ct.slots else ct.buffer

    def _axis(self, name: str) -> int:
        """The axis ``name``'s rows run along (H, or the last axis of a column tensor)."""
        return row_axis_of(self.orig, self.orig.tensors[name]) if name in self.orig.tensors else 2

    def _band(self, name: str, value: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Rows ``[lo, hi)`` of ``value``, a value of tensor ``name``."""
        return value[(slice(None),) * self._axis(name) + (slice(lo, hi),)]

    def _read_rows(self, mem: Memory, s: int, casc: Cascade, holders: Mapping[int, CascadeTensor],
                   name: str, lo: int, hi: int) -> tuple[np.ndarray, bool, list[np.ndarray] | None, int | None]:
        """Rows ``[lo, hi)`` of ``name`` as ``(1, C, hi - lo, W)``, checked row by row against
        the shadow: (value, correct, the byte views read, holder buffer)."""
        t = self.graph.tensors[name]
        want_val = self._band(name, self.ref_value(name), lo, hi)
        ct = self._holder(casc, holders, name)
        if ct is None:
            # Not held by the cascade (no rows): read whole, as a whole-tensor step.
            value, ok = self._read(mem, s, name)
            return np.ascontiguousarray(self._band(name, value, lo, hi)), ok, None, None
        views = self._row_views(mem, s, ct, name, lo, hi)
        if isinstance(views, str):
            self.corrupt(s, ct.buffer, f"reads rows [{lo}, {hi}) of '{name}': {views}")
            return np.ascontiguousarray(want_val), False, None, ct.buffer
        ax = self._axis(name)
        c = int(np.prod(t.shape[:ax], dtype=np.int64))
        got = np.stack(views, axis=1) if views else np.zeros((c, 0, t.bytes // t.shape[ax] // c), np.uint8)
        want = np.ascontiguousarray(want_val).view(np.uint8).reshape(got.shape)
        ok = bool(np.array_equal(got, want))
        if not ok:
            bad_rows = np.flatnonzero((got != want).any(axis=(0, 2)))
            r = lo + int(bad_rows[0])
            row_got, row_want = got[:, bad_rows[0], :].reshape(-1), want[:, bad_rows[0], :].reshape(-1)
            self.corrupt(s, ct.buffer, f"read of row {r} of tensor '{name}' ({ct.mode}, buffer {ct.buffer}) found "
                         f"it corrupted ({bad_rows.size} of {hi - lo} rows [{lo}, {hi}) wrong): "
                         f"{self._diff(row_got, row_want)}")
        value = np.ascontiguousarray(got).view(np_dtype(t.dtype)).reshape(want_val.shape)
        return value, ok, views, ct.buffer

    def _band_close(self, got: np.ndarray, want: np.ndarray) -> bool:
        """A float band computed on fewer rows than the whole tensor may round differently
        (another GEMM blocking): it passes within the model's reduction-aware tolerance
        (``output_tolerance``, norm-wise), as the end-to-end outputs do."""
        if np.allclose(got, want, rtol=RTOL, atol=ATOL):
            return True
        if not hasattr(self, "_band_rtol"):
            self._band_rtol = output_tolerance(self.graph)[0]
        g64, w64 = got.astype(np.float64), want.astype(np.float64)
        if not (np.all(np.isfinite(g64)) and np.all(np.isfinite(w64))):
            return False
        return bool(np.max(np.abs(g64 - w64), initial=0.0) <= ATOL + self._band_rtol * np.max(np.abs(w64), initial=0.0))

    def _group_members(self, op: Operator) -> tuple[Operator, ...] | None:
        """The members of the folded QDQ group ``op`` hosts (stowage.ir.qdq), in file order, or
        None when ``op`` is not such a unit (its float tensors have no buffer)."""
        host = op if op.computing else (self.graph.operators[op.fused_into] if op.fused_into is not None else op)
        members = self.graph.step_members(host)
        tb = self.graph.tensor_buffer
        if any(m.op_type in ("DequantizeLinear", "QuantizeLinear")
               and any(n and n in self.graph.tensors and n not in tb for n in (*m.inputs, *m.outputs))
               for m in members):
            return members
        return None

    def _stripe(self, mem: Memory, s: int, casc: Cascade, holders: Mapping[int, CascadeTensor],
                st: Stripe, op: Operator, filled: set[Placement]) -> None:
        before = len(self.corruptions)
        runs: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for name, lo, hi in st.inputs:
            runs[name].append((lo, hi))
        spatial = {name: (rs[0][0], rs[-1][1]) for name, rs in runs.items()}
        clean = True
        read_back: list[tuple[str, int | None, list[np.ndarray], np.ndarray]] = []
        group = self._group_members(op)
        # A folded QDQ group runs its DequantizeLinear -> core -> QuantizeLinear members on the
        # band, the float rows between them living only here (they have no buffer).
        chain = group if group is not None else (op,)
        taps = self._taps(chain, spatial)

        def gather(name: str, conv: Operator, geo: tuple[int, int, int, int], fill: np.ndarray) -> np.ndarray:
            """A dilated convolution's operand for the stripe: per tap ``i`` and output row
            ``o`` of the band, the row ``o*s - p + i*d`` (``fill``, the padding value, outside
            the tensor) at row ``i*h + (o - out_lo)``, read from the runs the stripe lists."""
            nonlocal clean
            s_h, kh, d, p = geo
            h = st.out_hi - st.out_lo
            x = self.graph.tensors[name]
            have: dict[int, np.ndarray] = {}
            for lo, hi in runs[name]:
                value, ok, views, hb = self._read_rows(mem, s, casc, holders, name, lo, hi)
                clean = clean and ok
                if views is not None:
                    read_back.append((name, hb, views, np.stack(views, axis=1) if views else np.zeros(0, np.uint8)))
                for r in range(lo, hi):
                    have[r] = value[:, :, r - lo, :]
            out = np.empty((1, x.shape[1], kh * h, x.shape[3]), dtype=np_dtype(x.dtype))
            out[:] = fill
            for i in range(kh):
                for j in range(h):
                    r = (st.out_lo + j) * s_h - p + i * d
                    if not 0 <= r < x.shape[2]:
                        continue
                    if r not in have:
                        self.corrupt(s, None, f"'{conv.name}' needs row {r} of '{name}' (tap {i} of output row "
                                     f"{st.out_lo + j}), which the stripe does not read")
                        clean = False
                        have[r] = self.ref_value(name)[:, :, r, :]
                    out[:, :, i * h + j, :] = have[r]
            return out

        def flattened(name: str, src: str, w: int) -> np.ndarray:
            """A flattened piece of the Concat along ``N``: the rows of its NCHW source the
            stripe reads, flattened to positions ``[lo*W, hi*W)``, cut to the band's."""
            nonlocal clean
            off = 0
            for n in op.inputs:
                if n == name:
                    break
                off += self.orig.tensors[n].shape[-1] if n else 0
            n_k = self.orig.tensors[name].shape[-1]
            p_lo = min(max(st.out_lo - off, 0), n_k)
            p_hi = max(min(st.out_hi - off, n_k), p_lo)
            lo, hi = spatial[src]
            value, ok, views, hb = self._read_rows(mem, s, casc, holders, src, lo, hi)
            if views is not None:
                read_back.append((src, hb, views, np.stack(views, axis=1) if views else np.zeros(0, np.uint8)))
            clean = clean and ok
            flat = value.reshape(value.shape[0], value.shape[1], -1)
            if not lo * w <= p_lo <= p_hi <= hi * w:
                self.corrupt(s, None, f"the Concat's positions [{p_lo}, {p_hi}) of '{name}' are not in rows "
                             f"[{lo}, {hi}) of '{src}' the stripe reads")
                clean = False
                return np.ascontiguousarray(self.ref_value(name)[..., p_lo:p_hi])
            return np.ascontiguousarray(flat[..., p_lo - lo * w:p_hi - lo * w])

        def operand(name: str) -> np.ndarray:
            nonlocal clean
            if taps is not None and name == taps[1]:
                return gather(name, taps[0], taps[2], taps[3])
            piece = flattened_pieces(self.orig).get(name)
            if piece is not None and piece[0] in spatial and op.op_type in ("Concat", "Transpose"):
                return flattened(name, *piece)
            if name in spatial:
                lo, hi = spatial[name]
                value, ok, views, hb = self._read_rows(mem, s, casc, holders, name, lo, hi)
                if views is not None:
                    read_back.append((name, hb, views, np.stack(views, axis=1) if views else np.zeros(0, np.uint8)))
            else:
                value, ok = self._read(mem, s, name)
                y = self.orig.tensors.get(next((o for o in op.outputs if o), ""))
                if (y is not None and y.name in column_tensors(self.orig) and value.ndim >= 1
                        and value.shape[-1] == y.shape[-1] > 1 and op.op_type in _BROADCASTING):
                    # A constant along N read by a column stripe (YOLO's anchor points and
                    # strides): the kernel takes the band's positions of it.
                    value = value[..., st.out_lo:st.out_hi]
            clean = clean and ok
            return value

        values: dict[str, np.ndarray] = {}
        out = ""
        failed: str | None = None
        pending = False   # an accumulating stripe before the last band: nothing to write yet
        float_core: tuple[str, np.ndarray] | None = None
        # A folded DQ -> Split -> Q group: the stripe names the int8 result of one Q; the Split
        # makes every float result of the band, and only that result's Q runs.
        int8_pick = group is not None and bool(st.output) and st.output not in op.outputs
        for m in chain:
            if int8_pick and m.op_type == "QuantizeLinear" and st.output not in m.outputs:
                continue   # another result's QuantizeLinear
            node = self.node_of(m)
            ins: list[np.ndarray | None] = [None if not n else values[n] if n in values else operand(n)
                                            for n in node.input]
            if taps is not None and m is taps[0]:
                node = _tap_node(node, st.out_hi - st.out_lo)
            elif m.op_type in _CONV_LIKE:
                node = _with_h_pads(node, st.pad_top, st.pad_bottom)
            elif m.op_type in ("Slice", "Pad") and m.domain in ("", "ai.onnx") and self._row_kind(m) == WINDOW:
                node, ins = _band_operands(node, ins, st, self._band_lo(chain, spatial, m),
                                           self.graph.tensors[m.inputs[0]].shape)
            elif self._row_kind(m) == MIRROR:
                node, ins = self._mirror_band(m, node, ins, self._band_lo(chain, spatial, m), st)
            wanted = self.wanted(node)
            pick = 0
            if (len(wanted) != 1 or st.output) and not int8_pick:
                # A Split's stripe writes the one result it names (Stripe.output).
                if st.output not in wanted:
                    raise PlanFormatError(f"step {s}: stripe of '{m.name}' names result '{st.output}', not one of "
                                          f"{wanted}")
                pick = wanted.index(st.output)
            kind = self._row_kind(m)
            if failed is None and not pending:
                try:
                    if kind == TRANSPOSED:
                        values[wanted[0]] = self._transposed_band(m, node, ins, self._band_lo(chain, spatial, m),
                                                                  st.out_lo, st.out_hi)
                    elif kind == RESIZE:
                        values[wanted[0]] = self._resize_band(m, node, ins, self._band_lo(chain, spatial, m),
                                                              st.out_lo, st.out_hi)
                    elif kind == ACCUMULATE:
                        got = self._accumulate_band(m, node, ins)
                        if got is None:
                            pending = True
                        else:
                            values[wanted[0]] = got
                            if got.dtype.kind == "f" and group is not None:
                                float_core = (wanted[0], got)
                    elif int8_pick and len(wanted) > 1:
                        values.update(zip(wanted, self.runner.run(node, ins, self.out_types(node))))
                    else:
                        values[wanted[pick]] = self.runner.run(node, ins, self.out_types(node))[pick]
                    got_f = values.get(wanted[pick])
                    if (group is not None and m.op_type not in ("DequantizeLinear", "QuantizeLinear")
                            and got_f is not None and got_f.dtype.kind == "f"):
                        float_core = (wanted[pick], got_f)   # a folded group's float core (its band)
                except Exception as exc:  # noqa: BLE001 - wrong rows or garbage make a kernel fail
                    failed = str(exc).splitlines()[0][:160]
            out = wanted[pick]
        if pending and failed is None:
            # The band went into the kernel's accumulators (one value per channel, as an NPU's
            # accumulator registers); the result row is written after the last band.
            return
        want = np.ascontiguousarray(self._band(out, self.ref_value(out), st.out_lo, st.out_hi))
        if failed is not None:
            self.corrupt(s, None, f"the operator failed on its rows: {failed}")
            value, clean = want, False
        else:
            value = values[out]
        if value.shape != want.shape:
            self.corrupt(s, None, f"the operator made rows of shape {list(value.shape)} from its operand rows "
                         f"(inputs {[(n, lo, hi) for n, lo, hi in st.inputs]}, pads {st.pad_top}/{st.pad_bottom}), "
                         f"expected {list(want.shape)} for rows [{st.out_lo}, {st.out_hi}) of '{out}'")
            value, clean = want, False
        elif clean:
            got_b = np.ascontiguousarray(value).view(np.uint8)
            want_b = want.view(np.uint8)
            if not np.array_equal(got_b, want_b):
                close = value.dtype.kind == "f" and self._band_close(value, want)
                if not close and float_core is not None and value.dtype.kind in "iu":
                    # A folded DQ -> core -> Q group runs its core in floats: the mean of a
                    # reduction's bands, or a convolution's sums on a band (MLAS picks its
                    # blocking by the operand's shape), come out in another order than the
                    # whole-tensor kernel's and may round to the other side of a quantization
                    # step (benchmarks/qdq_conv_bands.py: 16 of 768,000 values of a YOLOv8
                    # conv; PP-OCRv4 det at 64 KiB); accepted when every operand row read was
                    # correct (``clean``), the float rows hold to the float tolerance and the
                    # result is one step away.  A wrong pad or a wrong row moves the float
                    # rows far beyond that tolerance.  (An integer kernel, QOperator or an
                    # NPU's, has no such effect.)  The shadow then follows (``_follow``).
                    ref_f = self.shadow.get(float_core[0])
                    if ref_f is not None and float_core[1].shape != ref_f.shape:
                        ref_f = self._band(float_core[0], ref_f, st.out_lo, st.out_hi)
                    close = (ref_f is not None and ref_f.shape == float_core[1].shape
                             and self._band_close(float_core[1], ref_f)
                             and int(np.max(np.abs(value.astype(np.int64) - want.astype(np.int64)))) <= 1)
                if close:
                    # Float kernels on fewer rows may round differently: the shadow follows
                    # the plan's values (the final outputs are compared within tolerance).
                    if value.dtype.kind in "iu":
                        self.band_roundings += 1
                    self._follow(out, st.out_lo, st.out_hi, value)
                else:
                    self.corrupt(s, None, f"rows [{st.out_lo}, {st.out_hi}) of '{out}' computed from correct operand "
                                 f"rows {[(n, lo, hi) for n, lo, hi in st.inputs]} with pads "
                                 f"{st.pad_top}/{st.pad_bottom} differ from the reference: "
                                 f"{self._diff(got_b.reshape(-1), want_b.reshape(-1))}")
                    clean = False
        ct = self._holder(casc, holders, out)
        if ct is None:
            self.corrupt(s, None, f"result '{out}' has no holder in the cascade")
            return
        if not clean:
            self.tainted.add(ct.buffer)
        targets = self._row_views(mem, s, ct, out, st.out_lo, st.out_hi)
        if isinstance(targets, str):
            self.corrupt(s, ct.buffer, f"writes rows [{st.out_lo}, {st.out_hi}) of '{out}': {targets}")
            return
        if targets:
            data = np.ascontiguousarray(value).view(np.uint8).reshape(targets[0].shape[0], len(targets), -1)
            for k, v in enumerate(targets):
                v[:] = data[:, k, :]
        pl = mem.find(ct.buffer, self.compute, s)
        if pl is not None and ct.mode == "whole":
            filled.add(pl)
            self.current[ct.buffer] = out
        self.ring_content[self._content_key(ct)] = out
        # The stripe's operand rows must survive its writes, except rows an in-place
        # operator rewrites (same holder).
        if len(self.corruptions) == before:
            # A declared ring alias (the result's ring is its operand's buffer,
            # ``stowage.solvers.tiling.alias``) rewrites those rows too.  In a cascade
            # addressing rows by slot every ring shares the region: an alias is a holder with
            # the same slots.
            alias = ct.mode == "ring" and ct.buffer != self.orig.tensor_buffer.get(out) and not ct.slots
            for name, hb, rviews, old in read_back:
                h_in = self._holder(casc, holders, name) if ct.slots else None
                slot_alias = h_in is not None and h_in.slots == ct.slots
                if hb == ct.buffer and (op.fused_into is not None or alias or slot_alias):
                    continue
                now = np.stack(rviews, axis=1) if rviews else old
                if not np.array_equal(now, old):
                    self.corrupt(s, hb, f"writing rows [{st.out_lo}, {st.out_hi}) of '{out}' overwrote operand "
                                 f"rows {spatial[name]} of '{name}' (buffer {hb})")

    def _taps(self, chain: tuple[Operator, ...], spatial: Mapping[str, tuple[int, int]]
              ) -> tuple[Operator, str, tuple[int, int, int, int], np.ndarray] | None:
        """For a dilated Conv or QLinearConv in ``chain`` (NCHW, dilation > 1 along H, more
        than one tap, from the node's attributes): the convolution, the operand whose rows the
        stripe reads (through a group's DequantizeLinear), ``(stride, taps, dilation, pad_top)``
        along H, and the padding value (0; QLinearConv's input zero point; a group's
        DequantizeLinear's zero point, which dequantizes to 0)."""
        for m in chain:
            if m.op_type not in ("Conv", "QLinearConv") or not m.inputs:
                continue
            a = {at.name: [int(v) for v in helper.get_attribute_value(at)] for at in self.node_of(m).attribute
                 if at.name in ("dilations", "kernel_shape", "strides", "pads")}
            d = a.get("dilations", [1])[0]
            w = self.graph.tensors.get(m.inputs[3 if m.op_type == "QLinearConv" else 1])
            kh = a["kernel_shape"][0] if "kernel_shape" in a else (w.shape[2] if w is not None else 1)
            if d <= 1 or kh <= 1:
                return None
            name, zp = m.inputs[0], m.inputs[2] if m.op_type == "QLinearConv" and len(m.inputs) > 2 else ""
            producers = {o: c for c in chain for o in c.outputs if o}
            if name not in spatial and name in producers and producers[name].op_type == "DequantizeLinear":
                dq = producers[name]
                name, zp = dq.inputs[0], dq.inputs[2] if len(dq.inputs) > 2 else ""
            x = self.graph.tensors[name]
            fill = np.zeros((), np_dtype(x.dtype))
            if zp:
                z = self.ref_value(zp)
                fill = z.reshape(1, -1, 1, 1) if z.size > 1 else z.reshape(())
            geo = (a.get("strides", [1])[0], kh, d, a.get("pads", [0])[0])
            return m, name, geo, fill
        return None

    def _mirror_band(self, m: Operator, node: onnx.NodeProto, ins: list[np.ndarray | None], lo: int,
                     st: Stripe) -> tuple[onnx.NodeProto, list[np.ndarray | None]]:
        """An edge / reflect Pad (``MIRROR``) set to run on one band: the kernel copies, for each
        output row ``o`` of the band, input row ``mirror_row(o)`` from the rows the stripe read
        (from ``lo``), and the node pads W (and channels) as in the model, with no H pads.
        A row the stripe did not read makes the kernel fail (``IndexError``)."""
        rm = next(iter((self._maps(m) or {}).values()))
        band = ins[0]
        assert band is not None
        idx = [rm.mirror_row(o) - lo for o in range(st.out_lo, st.out_hi)]
        if any(not 0 <= i < band.shape[2] for i in idx):
            raise IndexError(f"output rows [{st.out_lo}, {st.out_hi}) copy input rows "
                             f"{[i + lo for i in idx]}, not all in the rows read [{lo}, {lo + band.shape[2]})")
        flat = dataclasses.replace(st, pad_top=0, pad_bottom=0)
        node, ins = _band_operands(node, ins, flat, lo, self.graph.tensors[m.inputs[0]].shape)
        ins[0] = np.ascontiguousarray(band[:, :, idx, :])
        return node, ins

    def _maps(self, m: Operator) -> dict[str, RowMap] | None:
        from stowage.ir.tiling import row_maps

        return row_maps(self.orig, m)

    def _row_kind(self, m: Operator) -> str | None:
        """``RESIZE``, ``TRANSPOSED``, ``MIRROR`` or ``ACCUMULATE`` when ``m``'s stripes are not windows
        (``docs/tiling.md``), ``WINDOW`` when they are, None when ``m`` has no row bands."""
        from stowage.ir.tiling import accumulates, row_maps

        maps = row_maps(self.orig, m)
        if maps is None:
            return None
        if accumulates(maps):
            return ACCUMULATE
        return next((rm.kind for rm in maps.values() if rm.kind in (RESIZE, TRANSPOSED, MIRROR)), WINDOW)

    def _band_lo(self, chain: tuple[Operator, ...], spatial: Mapping[str, tuple[int, int]], m: Operator) -> int:
        """The first row of the band ``m``'s first operand holds (through a group's DQ)."""
        name = m.inputs[0]
        producers = {o: c for c in chain for o in c.outputs if o}
        while name not in spatial and name in producers and producers[name].inputs:
            name = producers[name].inputs[0]
        return spatial[name][0] if name in spatial else 0

    def _resize_band(self, m: Operator, node: onnx.NodeProto, ins: list[np.ndarray | None], lo: int,
                     out_lo: int, out_hi: int) -> np.ndarray:
        """Rows ``[out_lo, out_hi)`` of a Resize by the integer factor ``s`` along H from its
        operand's rows starting at ``lo``: the kernel resizes the band (``sizes`` set to the
        band's, so H scales by exactly ``s`` and W as in the model) and the rows the band
        yields are cut to the stripe's.  Every coordinate mode kept in bands maps output row
        ``o`` of the band to input row ``x(o) - lo``, so the rows agree with the whole resize."""
        x = self.graph.tensors[m.inputs[0]]
        y = self.graph.tensors[m.outputs[0]]
        band = ins[0]
        assert band is not None

        def run(rows: np.ndarray) -> np.ndarray:
            full = list(ins)
            full[0] = rows
            if len(full) > 3 and full[3] is not None:
                full[3] = np.array([y.shape[0], y.shape[1], rows.shape[2] * scale, y.shape[3]], dtype=np.int64)
            return self.runner.run(node, full, self.out_types(node))[0]

        scale = y.shape[2] // x.shape[2]
        return resize_band(run, band, lo, scale, out_lo, out_hi)

    def _transposed_band(self, m: Operator, node: onnx.NodeProto, ins: list[np.ndarray | None], lo: int,
                         out_lo: int, out_hi: int) -> np.ndarray:
        """Rows ``[out_lo, out_hi)`` of a ConvTranspose from its operand's rows starting at
        ``lo``: the kernel runs on the band without H pads, so its row ``j`` is output row
        ``lo * stride - pad_top + j``; the rows the band covers fully are the stripe's."""
        a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        s = int(next(iter(a.get("strides", [1]))))
        p = int(next(iter(a.get("pads", [0]))))
        res = self.runner.run(_with_h_pads(node, 0, 0), ins, self.out_types(node))[0]
        first = lo * s - p
        return np.ascontiguousarray(res[:, :, out_lo - first:out_hi - first, :])

    def _accumulate_band(self, m: Operator, node: onnx.NodeProto, ins: list[np.ndarray | None]) -> np.ndarray | None:
        """Add a band of rows to the reduction ``m``'s accumulators; its result after the last
        band, else None.  Float: the kernel's mean of each band weighted by its rows (a max:
        the max of the bands' maxima), divided by H at the end.  QLinearGlobalAveragePool:
        exact integer sums of the quantized values; the result is the kernel's on a tensor
        with the same per-channel sums and element count, which is all its (integer-summing,
        then requantizing) arithmetic depends on, so int8 plans stay bit-exact."""
        x = self.graph.tensors[m.inputs[0]]
        band = ins[0]
        assert band is not None
        total = x.shape[2]
        done, acc = self.accumulators.get(m.index, (0, None))
        rows = band.shape[2]
        if m.op_type == "QLinearGlobalAveragePool":
            part = band.astype(np.int64).sum(axis=(2, 3))
        else:
            part = self.runner.run(node, ins, self.out_types(node))[0].astype(np.float64)
            if m.op_type in ("GlobalAveragePool", "ReduceMean"):
                part = part * rows
        if acc is None:
            acc = part
        elif m.op_type in ("GlobalMaxPool", "ReduceMax"):
            acc = np.maximum(acc, part)
        else:
            acc = acc + part
        done += rows
        if done < total:
            self.accumulators[m.index] = (done, acc)
            return None
        self.accumulators.pop(m.index, None)
        dt = np_dtype(self.graph.tensors[m.outputs[0]].dtype) if m.outputs[0] in self.graph.tensors else band.dtype
        if m.op_type == "QLinearGlobalAveragePool":
            n = total * x.shape[3]
            base = np.floor_divide(acc, n)
            extra = acc - base * n
            synthetic = np.repeat(base[:, :, None], n, axis=2) + (np.arange(n)[None, None, :] < extra[:, :, None])
            full = list(ins)
            full[0] = synthetic.reshape(1, x.shape[1], 1, n).astype(band.dtype)
            return self.runner.run(node, full, self.out_types(node))[0]
        if m.op_type in ("GlobalAveragePool", "ReduceMean"):
            acc = acc / total
        return np.asarray(acc).astype(dt)

    def _row_transfer(self, mem: Memory, s: int, casc: Cascade, holders: Mapping[int, CascadeTensor],
                      rt: RowTransfer, filled: set[Placement]) -> None:
        what = f"{rt.direction} of rows [{rt.lo}, {rt.hi}) of '{rt.tensor}'"
        ct = self._holder(casc, holders, rt.tensor)
        if ct is None or ct.mode not in ("streamed", "staged") or (ct.mode == "staged" and rt.direction != "load"):
            self.corrupt(s, None, f"{what}: the tensor is not streamed in this cascade")
            return
        if ct.mode == "staged":
            # The stripe's j-th loaded row goes to slot j of the staging buffer.
            stage = self.stage.setdefault(ct.buffer, {})
            for r in range(rt.lo, rt.hi):
                stage[r] = len(stage)
        home_bid = self.orig.tensor_buffer[rt.tensor]
        level = rt.level or ct.level or self.plan.buffers[home_bid].home
        home = mem.find(home_bid, level, s) if level else None
        if home is None:
            self.corrupt(s, home_bid, f"{what}: {self.buf(home_bid)} has no {level} placement")
            return
        # The bytes the ring holds are those of the buffer's last writer (in-place results).
        name = self.ring_content.get(self._content_key(ct), rt.tensor) if rt.direction == "store" else rt.tensor
        t = self.graph.tensors[name]
        ax = self._axis(name)
        if not 2 <= len(t.shape) <= 4 or ax >= len(t.shape) or not 0 <= rt.lo <= rt.hi <= t.shape[ax]:
            self.corrupt(s, home_bid, f"{what}: rows outside the tensor (shape {list(t.shape)})")
            return
        c, h = int(np.prod(t.shape[:ax], dtype=np.int64)), t.shape[ax]
        whole = mem.view(home, t.bytes).reshape(c, h, t.bytes // h // c)
        views = self._row_views(mem, s, ct, name, rt.lo, rt.hi)
        if isinstance(views, str):
            self.corrupt(s, ct.buffer, f"{what}: {views}")
            return
        for k, v in enumerate(views):
            if rt.direction == "load":
                v[:] = whole[:, rt.lo + k, :]
            else:
                whole[:, rt.lo + k, :] = v
        if rt.direction == "load":
            self.ring_content[self._content_key(ct)] = name
        else:
            filled.add(home)
            self.current[home_bid] = name

    def _collect_outputs(self, mem: Memory, s: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name in self.outputs:
            bid = self.graph.tensor_buffer.get(name)
            t = self.graph.tensors.get(name)
            if bid is None or t is None:
                self.corrupt(None, None, f"graph output '{name}' has no buffer in the plan's graph")
                continue
            home = self.plan.buffers[bid].home
            pl = mem.find(bid, home, s) if home else None
            if pl is None:
                self.corrupt(None, bid, f"graph output {self.buf(bid)} has no placement in its home level {home}")
                continue
            raw = mem.view(pl, t.bytes).copy()
            if raw.size != t.bytes:
                self.corrupt(None, bid, f"graph output {self.buf(bid)} ({t.bytes} B) overruns its {pl.level} "
                             f"placement at [{pl.offset}, {pl.offset + raw.size})")
                continue
            out[name] = raw.view(np_dtype(t.dtype)).reshape(t.shape)
        return out

    def _kernel_value(self, name: str) -> np.ndarray | None:
        """The node-by-node reference of output ``name``; None when no step computed it."""
        try:
            return np.ascontiguousarray(self.ref_value(name))
        except (KeyError, StopIteration, ValueError):
            return None

    def _compare_outputs(self, got: Mapping[str, np.ndarray]) -> list[OutputCheck]:
        """Every graph output: present, bit-exact vs the node-by-node run, and vs the
        whole-model run bit-exact or within the scaled tolerance."""
        try:
            ref = self.reference_outputs()
        except Exception as exc:
            log.debug("whole-model run failed", exc_info=True)
            self.corruptions.append(Corruption(None, None, "end: the whole-model reference run failed, so the "
                                               f"outputs cannot be checked: {' '.join(str(exc).split())[:160]}"))
            ref = {}
        rtol, atol = self.rtol_atol
        checks = []
        for name in self.outputs:
            if name not in got:
                checks.append(OutputCheck(name, False, False, float("inf"), False, False))
                continue
            a = got[name]
            k = self._kernel_value(name)
            kernels = k is not None and k.shape == a.shape and bool(np.array_equal(
                np.ascontiguousarray(a).view(np.uint8), k.view(np.uint8)))
            b = ref.get(name)
            if b is None:
                checks.append(OutputCheck(name, False, False, float("inf"), kernels))
                continue
            b = np.asarray(b)
            exact = a.shape == b.shape and a.dtype == b.dtype and np.array_equal(
                np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))
            if exact:
                checks.append(OutputCheck(name, True, True, 0.0, kernels))
                continue
            if a.shape == b.shape and a.dtype.kind == "f" and b.dtype.kind == "f":
                a64, b64 = a.astype(np.float64), b.astype(np.float64)
                with np.errstate(invalid="ignore"):
                    d = np.abs(a64 - b64)
                nan_a, nan_b = np.isnan(a64), np.isnan(b64)
                d[nan_a != nan_b] = np.inf
                d[nan_a & nan_b] = 0.0
                d[np.isinf(a64) & (a64 == b64)] = 0.0
                diff = float(np.max(d, initial=0.0))
                finite = b64[np.isfinite(b64)]
                scale = float(np.max(np.abs(finite), initial=0.0))
                close = bool(np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True)) or diff <= atol + rtol * scale
            else:
                diff, close = float("inf"), False
            # The plan reproduces the one-node kernels (``kernels``) but not the whole-model run:
            # with band roundings accepted on the way, the difference is theirs (each one a
            # float core within tolerance, rounded one quantization step over), so the output
            # passes and says how many (issue 14: a correct plan never fails).
            flips = self.band_roundings if kernels and not close else 0
            checks.append(OutputCheck(name, False, close, diff, kernels, True, flips))
        return checks

    def reference_outputs(self) -> dict[str, np.ndarray]:
        """A plain ORT run of the whole model on the same inputs and weights."""

        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        from onnx.external_data_helper import uses_external_data

        # Embed external initializers (loaded, or generated for a graph-only model) so that
        # ORT sees exactly the weights the plan run uses.
        for t in m.graph.initializer:
            if uses_external_data(t):
                t.CopyFrom(numpy_helper.from_array(self.shadow[t.name], t.name))
        # Node names repeat legally in ONNX, but ORT refuses such a model ("two nodes with
        # same node name") and onnx.reference lacks the com.microsoft kernels: names do not
        # change what a node computes, so make them unique in this copy.
        seen: set[str] = set()
        for k, node in enumerate(m.graph.node):
            if node.name in seen:
                node.name = f"{node.name}__stowage{k}"
            seen.add(node.name)
        try:
            sess: Any = ort_session(m)
            self.reference_runtime = "onnxruntime"
        except Exception as exc:  # noqa: BLE001 - ORT lacks an operator of the model
            from onnx.reference import ReferenceEvaluator

            log.warning("ONNX Runtime cannot run the whole model (%s); reference outputs come from "
                        "onnx.reference", str(exc).splitlines()[0][:120])
            sess = ReferenceEvaluator(m)
            self.reference_runtime = "onnx.reference"
        res = sess.run(list(self.outputs), dict(self.inputs))
        return dict(zip(self.outputs, (np.asarray(r) for r in res)))


def load_model_with_data(path: str | Path) -> onnx.ModelProto:
    """The model with initializer data inline where available (external data is resolved
    by the simulator; absent files become random weights)."""
    from stowage.ir.onnx_import import read_model

    return read_model(path)


def simulate(model_path: str | Path, graph: Graph, plan: Plan, seed: int = 0) -> SimResult:
    """Validate, then execute ``plan`` (made for ``graph``, the model at ``model_path``
    imported as the plan says) and compare its outputs; see the module docstring.

    Raises only for unusable input (``StowageError``: an unreadable model, a plan with an
    element-size override); a plan that is wrong in any way gives a result with ``ok``
    False."""
    from stowage.plan.validate import validate

    if plan.options.element_bytes is not None:
        raise StowageError(
            f"the plan was made with an element-size override (element_bytes={plan.options.element_bytes}); "
            "its bytes do not exist in the model, so it cannot be executed: check it with 'stowage validate'"
        )
    verdict = validate(graph, plan)
    violations = tuple(f"rule {e.rule}: {e.message}" for e in verdict.errors)
    p = Path(model_path)
    model = load_model_with_data(p)
    if graph.input_values:
        # Inputs fixed at import: run the model specialised as the graph was (stowage.ir.onnx_values).
        from stowage.ir.onnx_import import specialized_model

        model = specialized_model(model, graph)
    try:
        sim = Simulator(model, graph, plan, p.parent, seed)
    except StowageError as exc:
        if not isinstance(exc, PlanFormatError):
            raise   # unusable input: the model's data (exit 2)
        return _not_executed(graph, plan, violations, exc)
    except Exception as exc:
        log.debug("simulator setup failed", exc_info=True)
        text = " ".join(str(exc).split())[:160]
        raise ModelError(f"cannot execute the model: {type(exc).__name__}: {text}") from None
    result = sim.run()
    if violations:
        result = dataclasses.replace(result, ok=False, violations=violations)
    return result


def _not_executed(graph: Graph, plan: Plan, violations: tuple[str, ...], exc: PlanFormatError) -> SimResult:
    """The result for a plan that does not describe the model (another model or dims,
    cascades of other operators): there is nothing to execute.  Usually the validator said
    so first; otherwise the simulator's own reason is the mismatch."""
    log.info("plan not executed: %s", exc)
    return SimResult(False, () if violations else (Corruption(None, None, f"not executed: {exc}"),),
                     tuple(OutputCheck(n, False, False, float("inf"), False, False) for n in graph.outputs),
                     len(plan.steps), {}, False, tolerance="not executed", violations=violations,
                     executed=False)
