"""Tiled execution in the IR: which input rows an output band needs, and cascades as steps.

An operator can run on a band of output rows ``[a, b)`` (a *stripe*) when each of its
spatial operands is needed only on a band of rows too (``RowMap``): a convolution or pooling
along H needs ``[a*s - p, (b-1)*s - p + k_eff)`` clipped to the tensor, with the rows outside
it supplied as zero padding at the border; an elementwise operator, a broadcast over H and a
Concat along channels need the same rows; a Resize by an integer factor along H needs the
rows its output rows interpolate from (``RowMap.kind == "resize"``), a ConvTranspose the input
rows whose kernel footprint meets the band (``"transposed"``), a dilated Conv or QLinearConv
only its taps' rows (``"dilated"``: ``RowMap.runs``).  A Split along channels makes each
of its results from the same rows (one ``RowUnit`` per result); a Slice reads the same rows when it
cuts channels or W, and rows ``start + o*step`` when it cuts H (a window of one row with stride
``step`` and a negative top pad ``-start``); a constant Pad along H shifts the rows by its top pad
and adds zero rows at the borders (a window of one row whose clipped part is the stripe's pads),
an edge or reflect Pad (and TFLite's MIRROR_PAD) copies rows from inside the tensor into its
borders (``"mirror"``: a border band reads the rows it mirrors); Upsample is the deprecated
Resize (asymmetric coordinates, nearest rounding down).  A reduction over H and W with kept dims
(GlobalAveragePool, GlobalMaxPool, ReduceMean/ReduceMax, QLinearGlobalAveragePool)
runs on bands of its *input* and accumulates into its one-row result (``"accumulate"``): it
can only end a cascade, since its result is complete after the last band.  Everything else
(Gemm, Softmax, Reshape and Transpose, a wrap Pad, ...) needs whole tensors and ends a cascade.
A folded QDQ group (``stowage.ir.qdq``) is one unit, or one per result for a Split.
Tensors are NCHW with batch 1, rows are axis 2; a TFLite graph is NHWC, rows are axis 1, and its
SPLIT / SPLIT_V, STRIDED_SLICE / SLICE, PAD / PADV2, MIRROR_PAD, MEAN and dilated convolutions have the
same maps as their ONNX counterparts (``_tflite_*_map``).

A **cascade** (``CascadeSpec``) is a run of steps, contiguous in file order, executed stripe
by stripe as one step of a *macro graph* (``macro_graph``).  Each buffer it touches is
*whole* (its own buffer, read and written band by band), a *ring* (an interior buffer nobody
outside reads: only a window of rows is ever live, so it gets a buffer of ``rows * row_bytes``)
or *streamed* (a graph input or output that stays in its home level and passes through a ring
by row transfers).  The macro graph is a plain ``Graph``: every whole-tensor planner, bound and
the validator's rules 1-7 apply to it unchanged; the rows are checked separately (rule 8).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from types import MappingProxyType

from stowage.ir.columns import column_tensors, flattened_pieces, has_rows, row_axis_of, transposed_columns
from stowage.ir.graph import Buffer, BufferId, Graph, Operator, OpIndex, Tensor, TensorKind

#: Operators that only combine the same rows of their operands.
_ROWWISE = frozenset({
    "Relu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Selu",
    "Celu", "Softplus", "Gelu", "Mish", "Neg", "Abs", "Exp", "Sqrt", "Reciprocal", "Erf",
    "QuantizeLinear", "DequantizeLinear", "Cast", "Add", "Sub", "Mul", "Div", "Max", "Min", "Sum",
    "PRelu", "BatchNormalization", "Identity",
})
_QLINEAR_ROWWISE = frozenset({"QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu"})
_CONV_LIKE = frozenset({"Conv", "QLinearConv", "ConvInteger", "MaxPool", "AveragePool"})
#: Reductions over H and W that accumulate band by band (``ACCUMULATE``).
_ACCUMULATE = frozenset({"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax"})
_QLINEAR_ACCUMULATE = frozenset({"QLinearGlobalAveragePool"})
#: TFLite builtins (domain ``tflite``; the importer gives them ONNX-style ``strides``,
#: ``dilations``, ``kernel_shape`` and ``pads`` attributes).
_TFLITE_CONV_LIKE = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D"})
_TFLITE_ROWWISE = frozenset({
    "ADD", "SUB", "MUL", "RELU", "RELU6", "RELU_N1_TO_1", "LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU",
    "QUANTIZE", "DEQUANTIZE", "PRELU", "MAXIMUM", "MINIMUM",
})


#: RowMap kinds.  ``window``: a convolution-like window (elementwise ops are a window of 1).
#: ``resize``: output row ``o`` interpolates input rows near ``o / scale`` (``Resize``).
#: ``accumulate``: the operator reduces its input over H (and W) into a one-row result; its
#: stripes are bands of the *input* (``need`` is the identity on them) and each one updates
#: the result, which is complete only after the band holding the last input row.
#: ``transposed``: a transposed convolution (ConvTranspose), input row ``i`` adding to output
#: rows ``[i*stride - pad_top, i*stride - pad_top + kernel)``.
#: ``dilated``: a Conv or QLinearConv (NCHW) with dilation ``d > 1`` along H: output row ``o``
#: reads only the rows of its taps, ``o*stride - pad_top + i*d`` for ``i`` in ``0..taps-1``
#: inside the tensor (``runs``), not the whole dilated extent.
#: ``concat``: one piece of a Concat along the rows (a detection head's Concat along ``N``,
#: ``stowage.ir.columns``): output row ``o`` is the piece's row ``o - offset`` (``pad_top`` is
#: the offset), and the output rows outside the piece read none of it and are no padding.
#: ``flatten``: a flattened piece of a Concat along ``N`` (``columns.flattened_pieces``), read
#: through its NCHW source: output row ``o`` is the piece's position ``o - offset`` (``pad_top``
#: is the offset), which is in row ``(o - offset) // scale`` of the source (``scale`` is its
#: ``W``).  As for ``concat``, the output rows outside the piece read none of it.
#: ``mirror``: a Pad along H in ``reflect``, ``edge`` or ``symmetric`` mode (``mode``; TFLite's
#: MIRROR_PAD REFLECT / SYMMETRIC): output row ``o`` is input row ``o - pad_top`` inside the
#: tensor and, in a border, the row that mode mirrors it onto (``mirror_row``), so a band at a
#: border reads rows from inside the tensor: their hull (``need``), with the dense window's
#: pads (how many of the band's rows are border rows, made from the rows read).
WINDOW, RESIZE, ACCUMULATE, TRANSPOSED, DILATED = "window", "resize", "accumulate", "transposed", "dilated"
CONCAT, FLATTEN, MIRROR = "concat", "flatten", "mirror"
#: Border modes of a ``MIRROR`` map, and the most border rows each allows (``H - 1`` for reflect,
#: which never repeats the edge row; ``H`` for symmetric; any number for edge).
MIRROR_MODES = frozenset({"reflect", "edge", "symmetric"})
#: Operators whose dilated rows read sparsely (``DILATED``): zero padding (the input's zero
#: point for QLinearConv), so the rows between and outside the taps are never read.
_SPARSE_TAPS = frozenset({"Conv", "QLinearConv"})
#: Resize coordinate transformations whose output rows map to input rows by the integer scale
#: alone (align_corners and tf_crop_and_resize do not; tf_half_pixel_for_nearest would, but
#: onnxruntime does not run it, so no plan of it could be simulated).
RESIZE_COORDS = frozenset({"half_pixel", "pytorch_half_pixel", "asymmetric"})
NEAREST_MODES = frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})
#: Upsample's modes as Resize modes (``RowMap.mode``).
UPSAMPLE_MODES = {"nearest": "nearest:asymmetric:floor", "linear": "linear:asymmetric"}


@dataclass(frozen=True)
class RowMap:
    """Output rows ``[a, b)`` need input rows ``[a*stride - pad_top, (b-1)*stride - pad_top +
    kernel)`` (``kernel`` is the dilated extent), clipped to ``[0, in_rows)`` (kind
    ``window``).  Kind ``resize``: the rows output rows ``[a, b)`` of a Resize by the integer
    factor ``scale`` along H read (``mode`` is ``nearest:<coordinate mode>:<nearest mode>`` or
    ``linear:<coordinate mode>``; linear reads two rows per output row, the halo).  Kind
    ``transposed``: the input rows whose footprint ``[i*stride - pad_top, ... + kernel)``
    meets ``[a, b)``.  Kind ``accumulate``: "output rows" are the input rows a band reduces
    (the identity).  Kind ``flatten``: a flattened piece at offset ``pad_top`` of a Concat
    along ``N`` (or of a Transpose ``(0, 2, 1)``, offset 0), read through its NCHW source of
    ``in_rows`` rows of ``scale`` positions each.  Kind ``dilated``: a window with ``dilation``
    between its ``kernel`` extent's taps, read sparsely: ``runs`` are the rows a band reads,
    ``need`` their hull."""

    stride: int
    kernel: int
    pad_top: int
    in_rows: int
    kind: str = WINDOW
    scale: int = 1
    mode: str = ""
    #: Rows between two taps (kind ``dilated``; ``kernel`` is ``dilation * (taps - 1) + 1``).
    dilation: int = 1
    #: Output rows (kind ``dilated``: which taps ever come inside the tensor; 0: unknown).
    out_rows: int = 0

    def mirror_row(self, o: int) -> int:
        """Kind ``mirror``: the input row output row ``o`` copies.  ``j = o - pad_top``; above
        the tensor reflect takes row ``-j``, symmetric ``-j - 1``, edge row 0; below it reflect
        takes ``2(H - 1) - j``, symmetric ``2H - 1 - j``, edge row ``H - 1`` (ONNX Pad,
        LiteRT's MIRROR_PAD)."""
        j, h = o - self.pad_top, self.in_rows
        if 0 <= j < h:
            return j
        if self.mode == "edge":
            return 0 if j < 0 else h - 1
        if self.mode == "symmetric":
            return -j - 1 if j < 0 else 2 * h - 1 - j
        return -j if j < 0 else 2 * (h - 1) - j

    def _mirror_span(self, a: int, b: int) -> tuple[int, int]:
        """``(lowest, highest + 1)`` input row output rows ``[a, b)`` of a ``mirror`` map copy:
        ``mirror_row`` falls above the tensor, rises inside it and falls below it, so the
        extremes are at the ends of those three pieces."""
        p, h = self.pad_top, self.in_rows
        cand = {o for o in (a, b - 1, p - 1, p, p + h - 1, p + h) if a <= o < b}
        vals = [self.mirror_row(o) for o in cand]
        return min(vals), max(vals) + 1

    @property
    def taps(self) -> int:
        """Kernel taps along H (1 for every kind but ``window`` and ``dilated``)."""
        return (self.kernel - 1) // self.dilation + 1

    def runs(self, a: int, b: int) -> tuple[tuple[int, int], ...]:
        """The rows output rows ``[a, b)`` read, as ascending disjoint runs ``[lo, hi)``: for a
        ``dilated`` map, tap ``i`` reads ``[a*s - p + i*d, (b-1)*s - p + i*d + 1)`` clipped to the
        tensor (every ``s``-th row of it; runs of taps that touch are merged); for every other
        kind the one run ``need`` gives.  A tap's run starts and ends at rows it reads."""
        if self.kind != DILATED:
            lo, hi = self.need(a, b)[:2]
            return ((lo, hi),) if hi > lo else ()
        s, p, d = self.stride, self.pad_top, self.dilation
        out: list[tuple[int, int]] = []
        for i in range(self.taps):
            lo = a * s - p + i * d
            last = (b - 1) * s - p + i * d
            if lo < 0:   # the tap's first row inside the tensor (its rows are ``s`` apart)
                lo %= s
            if last >= self.in_rows:
                last -= -(-(last - self.in_rows + 1) // s) * s
            hi = last + 1
            if hi <= lo:
                continue
            if out and lo <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        return tuple(out)

    @property
    def accumulate(self) -> bool:
        """Whether the operator reduces these rows, band by band, into one result row."""
        return self.kind == ACCUMULATE

    def need(self, a: int, b: int) -> tuple[int, int, int, int]:
        """``(lo, hi, pad_top, pad_bottom)`` for output rows ``[a, b)``."""
        if self.kind == RESIZE:
            return resize_taps(self.mode, self.scale, self.in_rows, a)[0], \
                resize_taps(self.mode, self.scale, self.in_rows, b - 1)[1], 0, 0
        if self.kind == TRANSPOSED:
            # Input rows i with [i*s - p, i*s - p + k) meeting [a, b).
            lo_t = -(-(a + self.pad_top - self.kernel + 1) // self.stride)
            hi_t = (b - 1 + self.pad_top) // self.stride + 1
            return max(lo_t, 0), min(hi_t, self.in_rows), 0, 0
        if self.kind == DILATED:
            # The hull of the tap rows; pads are the dense window's (its rows outside the tensor).
            lo_d = a * self.stride - self.pad_top
            hi_d = (b - 1) * self.stride - self.pad_top + self.kernel
            r = self.runs(a, b)
            lo_h = r[0][0] if r else max(0, min(lo_d, self.in_rows))
            return lo_h, r[-1][1] if r else lo_h, max(0, -lo_d), max(0, hi_d - self.in_rows)
        if self.kind == MIRROR:
            lo_m, hi_m = self._mirror_span(a, b)
            lo_d, hi_d = a - self.pad_top, b - self.pad_top
            return lo_m, hi_m, max(0, min(hi_d, 0) - lo_d), max(0, hi_d - max(lo_d, self.in_rows))
        if self.kind == FLATTEN:
            n = self.in_rows * self.scale
            lo_p = min(max(a - self.pad_top, 0), n)
            hi_p = max(min(b - self.pad_top, n), lo_p)
            return lo_p // self.scale, -(-hi_p // self.scale) if hi_p > lo_p else lo_p // self.scale, 0, 0
        lo = a * self.stride - self.pad_top
        hi = (b - 1) * self.stride - self.pad_top + self.kernel
        if self.kind == CONCAT:   # the rows of this piece in the band; the rest are other pieces'
            lo_c = min(max(lo, 0), self.in_rows)
            return lo_c, max(min(hi, self.in_rows), lo_c), 0, 0
        # A band wholly in a border (a Pad's zero rows) reads no rows: its pads are its rows.
        return (min(max(lo, 0), self.in_rows), max(min(hi, self.in_rows), 0),
                max(0, min(hi, 0) - lo), max(0, hi - max(lo, self.in_rows)))

    def first_needed(self, a: int) -> int:
        """The lowest input row any output row ``>= a`` needs (rows below it can be freed)."""
        if self.kind == RESIZE:
            return resize_taps(self.mode, self.scale, self.in_rows, a)[0]
        if self.kind == TRANSPOSED:
            return min(self.need(a, a + 1)[0], self.in_rows)
        if self.kind == FLATTEN:
            return min(max(a - self.pad_top, 0) // self.scale, self.in_rows)
        if self.kind == MIRROR:
            # Every output row from ``a`` on (``out_rows``: the Pad's result height).
            return self._mirror_span(a, self.out_rows)[0] if a < self.out_rows else self.in_rows
        if self.kind == DILATED:
            # Per tap, the first output row >= a whose tap row is inside the tensor.
            s, p, d = self.stride, self.pad_top, self.dilation
            low = self.in_rows
            last = self.out_rows or a + self.in_rows + p
            for i in range(self.taps):
                o = max(a, -(-(p - i * d) // s))
                r = o * s - p + i * d
                if o < last and 0 <= r < low:
                    low = r
            return low
        return max(0, min(a * self.stride - self.pad_top, self.in_rows))


def resize_taps(mode: str, scale: int, in_rows: int, o: int) -> tuple[int, int]:
    """Input rows ``[lo, hi)`` output row ``o`` of a Resize by ``scale`` along H reads, in exact
    arithmetic (ONNX Resize: ``x = f(o)`` by the coordinate mode, then the nearest row by the
    nearest mode, or rows ``floor(x)`` and ``floor(x) + 1`` for linear; all clamped to the
    tensor, as onnxruntime does).  Monotone in ``o``, so a band needs the taps of its ends."""
    parts = mode.split(":")
    coord = parts[1] if len(parts) > 1 else "half_pixel"
    o_f = Fraction(o)
    if coord == "asymmetric":
        x = o_f / scale
    else:  # half_pixel, pytorch_half_pixel (the same when the output has more than one row)
        x = (o_f + Fraction(1, 2)) / scale - Fraction(1, 2)
    top = in_rows - 1
    if parts[0] == "linear":
        x = min(max(x, Fraction(0)), Fraction(top))
        i0 = math.floor(x)
        return i0, min(i0 + 1, top) + 1
    nearest = parts[2] if len(parts) > 2 else "round_prefer_floor"
    if nearest == "floor":
        i = math.floor(x)
    elif nearest == "ceil":
        i = math.ceil(x)
    elif nearest == "round_prefer_ceil":
        i = math.floor(x + Fraction(1, 2))
    else:
        i = math.ceil(x - Fraction(1, 2))
    i = min(max(i, 0), top)
    return i, i + 1


def _is_rows(t: Tensor) -> bool:
    return len(t.shape) == 4 and t.shape[0] == 1


def row_axis(graph: Graph) -> int:
    """The axis of a 4-D activation that tiling cuts into rows (H): 2 in NCHW, 1 in NHWC."""
    return 1 if graph.layout == "NHWC" else 2


def rows(graph: Graph, t: Tensor) -> int:
    """Rows of an activation: its height, or its last axis for a column tensor
    (``stowage.ir.columns``); 1 for a tensor of another rank (a TFLite MEAN's 2-D result: one
    row, complete after the reduction's last band)."""
    return t.shape[row_axis_of(graph, t)] if has_rows(graph, t) else 1


def _ints(v: object, n: int, default: int) -> list[int]:
    if isinstance(v, (list, tuple)) and len(v) >= n:
        return [int(x) for x in v]
    return [default] * n


def _text(v: object, default: str) -> str:
    if isinstance(v, bytes):
        return v.decode()
    return v if isinstance(v, str) else default


def _accumulate_map(graph: Graph, op: Operator, y: Tensor) -> dict[str, RowMap] | None:
    """A reduction over H (and W) with kept dims, in NCHW: its input in bands, accumulated into
    the one-row result ``y`` (``ACCUMULATE``)."""
    std = op.domain in ("", "ai.onnx") and op.op_type in _ACCUMULATE
    if not (std or (op.domain == "com.microsoft" and op.op_type in _QLINEAR_ACCUMULATE)):
        return None
    if graph.layout == "NHWC" or not op.inputs or y.shape[2] != 1:
        return None
    x = graph.tensors.get(op.inputs[0])
    if x is None or not _is_rows(x) or x.shape[1] != y.shape[1] or y.shape[3] not in (1, x.shape[3]):
        return None
    a = op.attributes
    if int(a.get("channels_last", 0) or 0):
        return None
    if op.op_type.startswith("Reduce"):
        if not int(a.get("keepdims", 1)):
            return None
        axes = a.get("axes")
        if axes is not None and {int(v) % 4 for v in axes} - {2, 3}:
            return None
        if axes is None and len(op.inputs) < 2:
            return None  # no axes: every axis, channels included
    elif y.shape[3] != 1:
        return None
    return {x.name: RowMap(1, 1, 0, x.shape[2], kind=ACCUMULATE)}


def _resize_map(graph: Graph, op: Operator, y: Tensor) -> dict[str, RowMap] | None:
    """A Resize by an integer factor along H, nearest or linear, in NCHW (``RESIZE``).  Resize-10
    (two inputs: asymmetric coordinates with its own rounding) and the opset-18 ``axes`` /
    antialias forms are left whole.  Upsample (opsets 7-9) is the same map with asymmetric
    coordinates and, for nearest, rounding down (``UPSAMPLE_MODES``; onnxruntime runs it so)."""
    if op.domain not in ("", "ai.onnx") or op.op_type not in ("Resize", "Upsample") or graph.layout == "NHWC":
        return None
    a = op.attributes
    if op.op_type == "Upsample":
        x = graph.tensors.get(op.inputs[0]) if op.inputs else None
        kind = _text(a.get("mode"), "nearest")
        if (x is None or not _is_rows(x) or x.shape[:2] != y.shape[:2] or y.shape[2] % x.shape[2]
                or kind not in UPSAMPLE_MODES):
            return None
        return {x.name: RowMap(1, 1, 0, x.shape[2], kind=RESIZE, scale=y.shape[2] // x.shape[2],
                               mode=UPSAMPLE_MODES[kind])}
    if len(op.inputs) < 3 or "axes" in a or int(a.get("antialias", 0) or 0):
        return None
    x = graph.tensors.get(op.inputs[0])
    if x is None or not _is_rows(x) or x.shape[:2] != y.shape[:2] or y.shape[2] % x.shape[2]:
        return None
    kind = _text(a.get("mode"), "nearest")
    coord = _text(a.get("coordinate_transformation_mode"), "half_pixel")
    if coord not in RESIZE_COORDS or kind not in ("nearest", "linear"):
        return None
    if kind == "linear":
        mode = f"linear:{coord}"
    else:
        nearest = _text(a.get("nearest_mode"), "round_prefer_floor")
        if nearest not in NEAREST_MODES:
            return None
        mode = f"nearest:{coord}:{nearest}"
    return {x.name: RowMap(1, 1, 0, x.shape[2], kind=RESIZE, scale=y.shape[2] // x.shape[2], mode=mode)}


def _transposed_map(graph: Graph, op: Operator, y: Tensor) -> dict[str, RowMap] | None:
    """A ConvTranspose in NCHW with explicit pads, no ``output_shape`` or ``output_padding``
    along H, whose kernel is at least its stride (every output row gets a term)."""
    if op.domain not in ("", "ai.onnx") or op.op_type != "ConvTranspose" or graph.layout == "NHWC":
        return None
    a = op.attributes
    x = graph.tensors.get(op.inputs[0]) if op.inputs else None
    w = graph.tensors.get(op.inputs[1]) if len(op.inputs) > 1 else None
    if x is None or w is None or not _is_rows(x) or len(w.shape) != 4 or "output_shape" in a:
        return None
    if _text(a.get("auto_pad"), "NOTSET") != "NOTSET" or _ints(a.get("output_padding"), 2, 0)[0]:
        return None
    k = _ints(a.get("kernel_shape"), 2, w.shape[2])[0]
    s = _ints(a.get("strides"), 2, 1)[0]
    d = _ints(a.get("dilations"), 2, 1)[0]
    pads = _ints(a.get("pads"), 4, 0)
    k_eff = d * (k - 1) + 1
    if k_eff < s or y.shape[2] != (x.shape[2] - 1) * s + k_eff - pads[0] - pads[2]:
        return None
    return {x.name: RowMap(s, k_eff, pads[0], x.shape[2], kind=TRANSPOSED)}


def _channel_axis(graph: Graph) -> tuple[int, int]:
    """The channel axis of a 4-D activation, as a non-negative and a negative index."""
    return (1, -3) if row_axis(graph) == 2 else (3, -1)


def _split_map(graph: Graph, op: Operator) -> dict[str, RowMap] | None:
    """A Split along channels (ONNX ``Split``, NCHW): every result has the operand's rows, so
    each is made from the same band of it (``row_units`` gives one unit per result)."""
    if op.domain not in ("", "ai.onnx") or op.op_type != "Split" or graph.layout == "NHWC" or not op.inputs:
        return None
    if int(op.attributes.get("axis", 0)) not in _channel_axis(graph):
        return None
    x = graph.tensors.get(op.inputs[0])
    outs = [graph.tensors.get(o) for o in op.outputs if o]
    if x is None or not _is_rows(x) or not outs:
        return None
    if any(y is None or not _is_rows(y) or y.shape[2] != x.shape[2] for y in outs):
        return None
    return {x.name: RowMap(1, 1, 0, x.shape[2])}


def slice_rows(a: Mapping[str, object], shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """``(start, step, count)`` of the rows (axis 2) a Slice with attribute-form operands ``a``
    (``starts``, ``ends``, ``axes``, ``steps``; ``stowage.ir.operand_values``) takes from a
    tensor of ``shape``, with ONNX's clamping; ``(0, 1, H)`` when it does not cut H; None when
    the values are unknown or it reverses H."""
    starts, ends = a.get("starts"), a.get("ends")
    if not isinstance(starts, (list, tuple)) or not isinstance(ends, (list, tuple)) or len(starts) != len(ends):
        return None
    axes = a.get("axes", tuple(range(len(starts))))
    steps = a.get("steps", (1,) * len(starts))
    if not isinstance(axes, (list, tuple)) or not isinstance(steps, (list, tuple)) \
            or not len(axes) == len(steps) == len(starts):
        return None
    h = shape[2]
    found = (0, 1, h)
    for ax, st, en, step in zip(axes, starts, ends, steps):
        if int(ax) % len(shape) != 2:
            continue
        step = int(step)
        if step <= 0:
            return None
        st, en = int(st), int(en)
        st = min(max(st + h if st < 0 else st, 0), h)
        en = min(max(en + h if en < 0 else en, 0), h)
        found = (st, step, max(0, -(-(en - st) // step)))
    return found


def _slice_map(graph: Graph, op: Operator, y: Tensor) -> dict[str, RowMap] | None:
    """A Slice of a 4-D NCHW activation with known operands: output row ``o`` is input row
    ``start + o*step`` (a window of one row, stride ``step``, top pad ``-start``; the identity
    when it cuts only channels or W)."""
    if op.domain not in ("", "ai.onnx") or op.op_type != "Slice" or graph.layout == "NHWC" or not op.inputs:
        return None
    x = graph.tensors.get(op.inputs[0])
    if x is None or not _is_rows(x):
        return None
    cut = slice_rows(op.attributes, x.shape)
    if cut is None or cut[2] != y.shape[2] or y.shape[2] == 0:
        return None
    start, step, _ = cut
    return {x.name: RowMap(stride=step, kernel=1, pad_top=-start, in_rows=x.shape[2])}


def pad_rows(a: Mapping[str, object], rank: int) -> tuple[int, int] | None:
    """``(top, bottom)`` rows a constant Pad with attribute-form ``pads`` adds along axis 2
    (negative: rows cut), or None when it is not a constant Pad with known pads."""
    pads = a.get("pads")
    if _text(a.get("mode"), "constant") != "constant" or not isinstance(pads, (list, tuple)) or len(pads) != 2 * rank:
        return None
    return int(pads[2]), int(pads[2 + rank])


def mirror_pad_rows(mode: str, top: int, bottom: int, h: int) -> bool:
    """Whether a Pad in border ``mode`` (``MIRROR_MODES``) adding ``top`` / ``bottom`` rows to
    ``h`` rows has a ``MIRROR`` map: no rows cut, and no more border rows than the mode
    mirrors from inside the tensor (reflect ``h - 1``, symmetric ``h``; edge any)."""
    if mode not in MIRROR_MODES or min(top, bottom) < 0 or h < 1:
        return False
    most = {"reflect": h - 1, "symmetric": h}.get(mode)
    return most is None or max(top, bottom) <= most


def _pad_map(graph: Graph, op: Operator, y: Tensor) -> dict[str, RowMap] | None:
    """A constant Pad of a 4-D NCHW activation with known pads: output row ``o`` is input row
    ``o - top``, and the rows outside the input are the stripe's border pads (a window of one
    row with top pad ``top``).  An ``edge`` or ``reflect`` Pad is the ``MIRROR`` map: its
    border rows copy rows inside the tensor (Pad-18's ``axes`` and ``wrap`` stay whole)."""
    if op.domain not in ("", "ai.onnx") or op.op_type != "Pad" or graph.layout == "NHWC" or not op.inputs:
        return None
    x = graph.tensors.get(op.inputs[0])
    if x is None or not _is_rows(x):
        return None
    mode = _text(op.attributes.get("mode"), "constant")
    if mode in ("edge", "reflect"):
        tb = pad_rows({**op.attributes, "mode": "constant"}, 4)
        if (tb is None or y.shape[2] != x.shape[2] + tb[0] + tb[1]
                or not mirror_pad_rows(mode, tb[0], tb[1], x.shape[2])):
            return None
        return {x.name: RowMap(stride=1, kernel=1, pad_top=tb[0], in_rows=x.shape[2], kind=MIRROR, mode=mode,
                               out_rows=y.shape[2])}
    tb = pad_rows(op.attributes, 4)
    if tb is None or y.shape[2] != x.shape[2] + tb[0] + tb[1] or y.shape[2] <= 0:
        return None
    return {x.name: RowMap(stride=1, kernel=1, pad_top=tb[0], in_rows=x.shape[2])}


# -- TFLite builtins (NHWC: rows are axis 1, channels axis 3) ------------------------------
#: TFLite convolutions with zero padding (the input's zero point when quantized), so a dilated
#: one reads only its taps' rows (``DILATED``).
_TFLITE_SPARSE_TAPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D"})


def _tflite_operand(op: Operator, name: str) -> list[int] | None:
    """A constant integer operand the TFLite importer recorded as an attribute
    (``stowage.ir.tflite_import.OPERAND_ATTRIBUTES``), or None when it is unknown."""
    v = op.attributes.get(name)
    if isinstance(v, (list, tuple)) and all(isinstance(x, int) for x in v):
        return [int(x) for x in v]
    return None


def _tflite_split_map(graph: Graph, op: Operator) -> dict[str, RowMap] | None:
    """A TFLite ``SPLIT`` (operands: axis, x) or ``SPLIT_V`` (x, size_splits, axis) along
    channels (axis 3 of NHWC): every result has the operand's rows (``row_units``: one unit per
    result), as the ONNX Split."""
    if op.domain != "tflite" or op.op_type not in ("SPLIT", "SPLIT_V") or graph.layout != "NHWC":
        return None
    axis = _tflite_operand(op, "axis")
    at = 1 if op.op_type == "SPLIT" else 0
    if axis is None or len(axis) != 1 or len(op.inputs) <= at or axis[0] % 4 != 3:
        return None
    x = graph.tensors.get(op.inputs[at])
    outs = [graph.tensors.get(o) for o in op.outputs if o]
    if x is None or not _is_rows(x) or not outs:
        return None
    if any(y is None or not _is_rows(y) or y.shape[1] != x.shape[1] for y in outs):
        return None
    return {x.name: RowMap(1, 1, 0, x.shape[1])}


def tflite_slice_rows(op: Operator, shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """``(start, step, count)`` of the rows (axis 1, NHWC) a TFLite ``STRIDED_SLICE`` or
    ``SLICE`` takes from a tensor of ``shape``, by LiteRT's rules (``strided_slice.h``: a set
    ``begin_mask`` / ``end_mask`` bit takes the axis from its start / to its end, a negative
    index counts from the end, both clamped to the axis); ``(0, 1, H)`` when it does not cut H;
    None when its operands are unknown, it reverses H, or it uses the ellipsis, new-axis,
    shrink-axis or offset forms (which change the rank or the meaning of ``end``)."""
    a = op.attributes
    rank = len(shape)
    begin = _tflite_operand(op, "begin")
    if begin is None or len(begin) != rank or rank < 2:
        return None
    h = shape[1]
    if op.op_type == "SLICE":
        size = _tflite_operand(op, "size")
        if size is None or len(size) != rank:
            return None
        st = begin[1]
        n = h - st if size[1] == -1 else size[1]
        if not 0 <= st <= h or n < 0 or st + n > h:
            return None
        return st, 1, n
    end, strides = _tflite_operand(op, "end"), _tflite_operand(op, "strides")
    if end is None or strides is None or len(end) != rank or len(strides) != rank:
        return None
    if any(int(a.get(k, 0) or 0) for k in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask")) or a.get("offset"):
        return None
    step = strides[1]
    if step <= 0:
        return None
    bm, em = int(a.get("begin_mask", 0) or 0), int(a.get("end_mask", 0) or 0)
    st = 0 if bm & 2 else begin[1]
    en = h if em & 2 else end[1]
    st = min(max(st + h if st < 0 else st, 0), h)
    en = min(max(en + h if en < 0 else en, 0), h)
    return st, step, max(0, -(-(en - st) // step))


def _tflite_slice_map(graph: Graph, op: Operator, y: Tensor) -> dict[str, RowMap] | None:
    """A TFLite ``STRIDED_SLICE`` or ``SLICE`` of a 4-D NHWC activation with known operands:
    output row ``o`` is input row ``start + o*step`` (the identity when it cuts only W or C)."""
    if op.domain != "tflite" or op.op_type not in ("STRIDED_SLICE", "SLICE") or graph.layout != "NHWC":
        return None
    x = graph.tensors.get(op.inputs[0]) if op.inputs else None
    if x is None or not _is_rows(x):
        return None
    cut = tflite_slice_rows(op, x.shape)
    if cut is None or cut[2] != y.shape[1] or y.shape[1] == 0:
        return None
    start, step, _ = cut
    return {x.name: RowMap(stride=step, kernel=1, pad_top=-start, in_rows=x.shape[1])}


def tflite_pad_rows(op: Operator) -> tuple[int, int] | None:
    """``(top, bottom)`` rows a TFLite ``PAD`` / ``PADV2`` of a 4-D tensor adds along H (its
    ``paddings`` operand, ``[[before, after]] * 4`` flattened), or None when unknown."""
    pads = _tflite_operand(op, "paddings")
    if pads is None or len(pads) != 8 or min(pads) < 0:
        return None
    return pads[2], pads[3]


def _tflite_pad_map(graph: Graph, op: Operator, y: Tensor) -> dict[str, RowMap] | None:
    """A TFLite ``PAD`` or ``PADV2`` (a constant: zero, the zero point, or PADV2's value) of a
    4-D NHWC activation with known paddings: output row ``o`` is input row ``o - top`` and the
    rows outside the input are the stripe's border pads, as the ONNX constant Pad."""
    if op.domain != "tflite" or op.op_type not in ("PAD", "PADV2") or graph.layout != "NHWC" or not op.inputs:
        return None
    x = graph.tensors.get(op.inputs[0])
    tb = tflite_pad_rows(op)
    if x is None or not _is_rows(x) or tb is None or y.shape[1] != x.shape[1] + tb[0] + tb[1]:
        return None
    return {x.name: RowMap(stride=1, kernel=1, pad_top=tb[0], in_rows=x.shape[1])}


#: LiteRT's MirrorPadMode (``MirrorPadOptions.mode``) as a ``MIRROR`` border mode.
TFLITE_MIRROR_MODES = {0: "reflect", 1: "symmetric"}


def _tflite_mirror_pad_map(graph: Graph, op: Operator, y: Tensor) -> dict[str, RowMap] | None:
    """A TFLite ``MIRROR_PAD`` (REFLECT or SYMMETRIC) of a 4-D NHWC activation with known
    paddings: the ``MIRROR`` map along H, as the ONNX reflect Pad (its border rows copy rows
    inside the tensor)."""
    if op.domain != "tflite" or op.op_type != "MIRROR_PAD" or graph.layout != "NHWC" or not op.inputs:
        return None
    x = graph.tensors.get(op.inputs[0])
    tb = tflite_pad_rows(op)
    mode = TFLITE_MIRROR_MODES.get(int(op.attributes.get("mode", 0) or 0))
    if x is None or not _is_rows(x) or tb is None or mode is None or y.shape[1] != x.shape[1] + tb[0] + tb[1]:
        return None
    if not mirror_pad_rows(mode, tb[0], tb[1], x.shape[1]):
        return None
    return {x.name: RowMap(stride=1, kernel=1, pad_top=tb[0], in_rows=x.shape[1], kind=MIRROR, mode=mode,
                           out_rows=y.shape[1])}


def _tflite_mean_map(graph: Graph, op: Operator, y: Tensor) -> dict[str, RowMap] | None:
    """A TFLite ``MEAN`` over H and W (axes 1 and 2 of NHWC): its input in bands, accumulated
    into the one-row result (``ACCUMULATE``), as ONNX ReduceMean; with ``keep_dims`` false the
    result is ``(1, C)``, one row all the same (complete after the last band, read whole)."""
    if op.domain != "tflite" or op.op_type != "MEAN" or graph.layout != "NHWC" or not op.inputs:
        return None
    axis = _tflite_operand(op, "axis")
    x = graph.tensors.get(op.inputs[0])
    if axis is None or x is None or not _is_rows(x) or {v % 4 for v in axis} != {1, 2}:
        return None
    if y.shape != ((1, 1, 1, x.shape[3]) if op.attributes.get("keep_dims") else (1, x.shape[3])):
        return None
    return {x.name: RowMap(1, 1, 0, x.shape[1], kind=ACCUMULATE)}


def accumulates(maps: Mapping[str, RowMap] | None) -> bool:
    """Whether a unit with these row maps reduces its input into a one-row result."""
    return bool(maps) and any(m.kind == ACCUMULATE for m in maps.values())  # type: ignore[union-attr]


def row_maps(graph: Graph, op: Operator) -> dict[str, RowMap] | None:
    """Per spatial operand (tensor name), the rows an output band needs; None when the
    operator cannot run on bands.  Operands not in the result (weights, a per-channel scale
    with one row) are read whole by every stripe."""
    outs = [o for o in op.outputs if o]
    if len(outs) == 1 and outs[0] in transposed_columns(graph):
        return _swap_map(graph, op)
    cols = column_tensors(graph)
    if cols and any(n in cols for n in (*op.inputs, *outs)):
        return column_maps(graph, op)
    # onnxruntime's quantized elementwise ops are "opaque" to the importer (a non-standard
    # domain) but their row semantics are known.
    known = op.domain == "com.microsoft" and op.op_type in (
        _QLINEAR_ROWWISE | {"QLinearConv", "QLinearConcat", *_QLINEAR_ACCUMULATE})
    split = _split_map(graph, op) or _tflite_split_map(graph, op)
    if split is not None:
        return split   # several results, one map (each result is a unit of its own: row_units)
    if len(outs) != 1 or (op.opaque and not known):
        return None
    y = graph.tensors.get(outs[0])
    if y is not None and op.domain == "tflite" and op.op_type == "MEAN":
        return _tflite_mean_map(graph, op, y)   # its result may be 2-D (``keep_dims`` false)
    if y is None or not _is_rows(y):
        return None
    ax = row_axis(graph)
    h_out = y.shape[ax]
    t = op.op_type
    a = op.attributes
    special = (_accumulate_map(graph, op, y) or _resize_map(graph, op, y) or _transposed_map(graph, op, y)
               or _slice_map(graph, op, y) or _pad_map(graph, op, y) or _tflite_slice_map(graph, op, y)
               or _tflite_pad_map(graph, op, y) or _tflite_mirror_pad_map(graph, op, y)
               or _tflite_mean_map(graph, op, y))
    if special is not None:
        return special
    if ((op.domain in ("", "ai.onnx") and t in _CONV_LIKE) or (op.domain == "com.microsoft" and t == "QLinearConv")
            or (op.domain == "tflite" and t in _TFLITE_CONV_LIKE)):
        x = graph.tensors.get(op.inputs[0]) if op.inputs else None
        if x is None or not _is_rows(x) or a.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET", "VALID", b"VALID"):
            return None
        if int(a.get("ceil_mode", 0) or 0):
            return None
        if "kernel_shape" in a:
            k = _ints(a["kernel_shape"], 2, 1)[0]
        else:
            w_name = op.inputs[3] if t == "QLinearConv" else op.inputs[1] if len(op.inputs) > 1 else ""
            w = graph.tensors.get(w_name)
            if w is None or len(w.shape) != 4:
                return None
            k = w.shape[2]
        s = _ints(a.get("strides"), 2, 1)[0]
        d = _ints(a.get("dilations"), 2, 1)[0]
        pads = _ints(a.get("pads"), 4, 0)
        rm = RowMap(stride=s, kernel=d * (k - 1) + 1, pad_top=pads[0], in_rows=x.shape[ax])
        if (h_out - 1) * s - pads[0] + rm.kernel > x.shape[ax] + pads[2]:
            return None  # the attribute pads do not describe this output height
        sparse = (t in _SPARSE_TAPS and ax == 2) or (op.domain == "tflite" and t in _TFLITE_SPARSE_TAPS)
        if d > 1 and k > 1 and sparse:
            rm = replace(rm, kind=DILATED, dilation=d, out_rows=h_out)
            if any(not rm.runs(o, o + 1) for o in range(h_out)):
                return None  # an output row made of padding alone: no rows to read
        return {x.name: rm}
    rowwise = ((op.domain in ("", "ai.onnx") and t in _ROWWISE)
               or (op.domain == "com.microsoft" and t in _QLINEAR_ROWWISE)
               or (op.domain == "tflite" and t in _TFLITE_ROWWISE))
    # Concat along channels: axis 1 in NCHW, 3 in NHWC.
    channel = (1, -3) if ax == 2 else (3, -1)
    # (QLinearConcat requantizes each operand to the result's scale, element by element, then
    # concatenates: per row the same as a Concat; its scales and zero points are read whole.)
    concat = ((op.domain in ("", "ai.onnx") and t == "Concat" and int(a.get("axis", 0)) in channel)
              or (op.domain == "com.microsoft" and t == "QLinearConcat" and int(a.get("axis", 0)) in channel)
              or (op.domain == "tflite" and t == "CONCATENATION" and int(a.get("axis", 0)) in channel))
    if not (rowwise or concat):
        return None
    maps: dict[str, RowMap] = {}
    for name in op.inputs:
        if not name or name not in graph.tensors:
            continue
        x = graph.tensors[name]
        if x.kind is TensorKind.WEIGHT:
            continue
        if _is_rows(x) and x.shape[ax] == h_out:
            maps[name] = RowMap(1, 1, 0, h_out)
        elif (len(x.shape) < 2 or (len(x.shape) == 4 and x.shape[ax] == 1)
              or (ax == 2 and x.shape[-2:] == (1, 1)[: len(x.shape)])
              or (ax == 1 and len(x.shape) == 1)):
            continue  # broadcast over the rows (a scale, a zero point): read whole
        else:
            return None
    return maps or None


def _swap_map(graph: Graph, op: Operator) -> dict[str, RowMap] | None:
    """A Transpose ``(0, 2, 1)`` making a position-major ``(1, N, C)`` tensor
    (``columns.transposed_columns``): output row ``n`` is position ``n`` of its operand, the
    same row of a column tensor, or row ``n // W`` of a flattened piece's NCHW source
    (``FLATTEN`` with no offset)."""
    if op.domain not in ("", "ai.onnx") or op.op_type != "Transpose" or not op.inputs:
        return None
    x = op.inputs[0]
    flat = flattened_pieces(graph).get(x)
    if flat is not None:
        src = graph.tensors[flat[0]]
        return {src.name: RowMap(1, 1, 0, src.shape[2], kind=FLATTEN, scale=flat[1])}
    if x in column_tensors(graph):
        return {x: RowMap(1, 1, 0, graph.tensors[x].shape[-1])}
    return None


def column_maps(graph: Graph, op: Operator) -> dict[str, RowMap] | None:
    """Row maps of an operator on column tensors (rows along the last axis ``N``,
    ``stowage.ir.columns``), or None when it needs whole tensors.  Every supported operator
    treats each position ``n`` on its own, so an output band reads the same band of each
    operand, except a Concat along ``N``, whose piece ``k`` (starting at output row
    ``offset_k``) gives output rows ``[offset_k, offset_k + N_k)`` (``CONCAT``): elementwise
    operators (an operand with one position, rank below 2 or a weight is read whole), a
    Concat or Split along another axis, a Transpose keeping the last axis, a Softmax over
    another axis (the DFL's softmax over its bins), a Slice of other axes and a 1x1 Conv of
    stride 1 without padding (per position)."""
    if op.domain not in ("", "ai.onnx") or op.opaque:
        return None
    cols = column_tensors(graph)
    outs = [o for o in op.outputs if o]
    if not outs or any(o not in cols for o in outs):
        return None
    y = graph.tensors[outs[0]]
    n, rank = y.shape[-1], len(y.shape)
    if any(graph.tensors[o].shape[-1] != n for o in outs):
        return None
    t, a = op.op_type, op.attributes
    data = [x for x in op.inputs if x and x in graph.tensors and graph.tensors[x].kind is not TensorKind.WEIGHT]
    if t == "Concat" and int(a.get("axis", 0)) % rank == rank - 1:
        maps: dict[str, RowMap] = {}
        flat = flattened_pieces(graph)
        off = 0
        for name in op.inputs:
            x = graph.tensors.get(name) if name else None
            if x is None or (name not in cols and name not in flat) or len(x.shape) != rank:
                return None
            if x.shape[-1]:
                # A flattened piece is read through its NCHW source's H rows (``FLATTEN``).
                src, width = flat.get(name, (name, 0))
                if src in maps:
                    return None   # one tensor as two pieces: one map per operand name
                maps[src] = (RowMap(1, 1, off, x.shape[-1] // width, kind=FLATTEN, scale=width) if width
                             else RowMap(1, 1, off, x.shape[-1], kind=CONCAT))
            off += x.shape[-1]
        return maps if off == n else None
    if t in _ROWWISE or t == "Concat" or t == "Split":
        if t == "Split" and int(a.get("axis", 0)) % rank == rank - 1:
            return None
        if t == "Concat" and len(outs) != 1:
            return None
    elif t == "Transpose":
        perm = a.get("perm")
        if not isinstance(perm, (list, tuple)) or len(perm) != rank or int(perm[-1]) != rank - 1:
            return None
    elif t in ("Softmax", "LogSoftmax"):
        if int(a.get("axis", -1)) % rank == rank - 1:
            return None
    elif t == "Slice":
        starts = a.get("starts")
        if not isinstance(starts, (list, tuple)):
            return None   # operands computed at run time
        axes = a.get("axes", tuple(range(len(starts))))
        if not isinstance(axes, (list, tuple)) or any(int(v) % rank == rank - 1 for v in axes):
            return None   # a Slice along N itself: not done yet (docs/tiling.md)
        data = data[:1]
    elif t == "Conv":
        w = graph.tensors.get(op.inputs[1]) if len(op.inputs) > 1 else None
        k = tuple(a.get("kernel_shape", w.shape[2:] if w is not None else ()))
        if (rank != 4 or k != (1, 1) or tuple(a.get("strides", (1, 1))) != (1, 1)
                or tuple(a.get("pads", (0, 0, 0, 0))) != (0, 0, 0, 0) or tuple(a.get("dilations", (1, 1))) != (1, 1)
                or _text(a.get("auto_pad"), "NOTSET") != "NOTSET"):
            return None
        data = data[:1]
    else:
        return None
    maps = {}
    for name in data:
        x = graph.tensors[name]
        if name in cols and x.shape[-1] == n:
            maps[name] = RowMap(1, 1, 0, n)
        elif len(x.shape) < 2 or x.shape[-1] == 1 or t not in _ROWWISE:
            if t not in _ROWWISE:
                return None
            continue   # broadcast along N (a scalar, a per-channel constant): read whole
        else:
            return None
    return maps or None


@dataclass(frozen=True)
class RowUnit:
    """What one stripe runs: operator ``op`` (a step's operator, a fused in-place operator, or
    the core of a folded QDQ group, which runs its DequantizeLinear -> core -> QuantizeLinear
    members on the band), writing rows of ``output`` from rows of the spatial operands in
    ``maps``.  An operator with several results (a Split) is one unit per result, in order,
    each with the same maps: a stripe writes one tensor (``Stripe.output`` names it)."""

    op: Operator
    output: str
    maps: Mapping[str, RowMap]


def _unplanned(graph: Graph, m: Operator) -> bool:
    """Whether ``m`` is a member of a folded QDQ group: a Q/DQ touching a tensor that has no
    buffer (the floats between the pairs).  A folded constant without a buffer alone is not."""
    return (m.op_type in ("DequantizeLinear", "QuantizeLinear")
            and any(n and n in graph.tensors and n not in graph.tensor_buffer for n in (*m.inputs, *m.outputs)))


def _qdq_units(graph: Graph, op: Operator, members: tuple[Operator, ...]) -> list[RowUnit] | None:
    """A folded QDQ group (``stowage.ir.qdq``) as row units: its int8 operands (the activation
    DQs' inputs) map to rows as the core's float operands do, and its result is the Q's int8
    output.  A core with several results (a Split along channels: ``DQ -> Split -> Q`` per
    result, as onnxruntime's quantizer writes it) is one unit per result, in the core's order,
    each writing its own Q's int8 output (``Stripe.output`` names it), as the float Split."""
    core = [m for m in members if m.op_type not in ("DequantizeLinear", "QuantizeLinear")]
    qs = [m for m in members if m.op_type == "QuantizeLinear"]
    if len(core) == 1 and len([o for o in core[0].outputs if o]) > 1:
        return _qdq_split_units(graph, core[0], members, qs)
    unit = _qdq_unit(graph, core, qs, members)
    return None if unit is None else [unit]


def _qdq_split_units(graph: Graph, core: Operator, members: tuple[Operator, ...],
                     qs: list[Operator]) -> list[RowUnit] | None:
    """The units of a folded QDQ group around a Split: one per result, each result read by
    exactly one QuantizeLinear (the unit's int8 output), all with the Split's map onto the
    int8 operand."""
    outs = [o for o in core.outputs if o]
    q_of: dict[str, Operator] = {}
    for q in qs:
        if not q.inputs or q.inputs[0] not in outs or q.inputs[0] in q_of or not q.outputs \
                or q.outputs[0] not in graph.tensor_buffer:
            return None
        q_of[q.inputs[0]] = q
    if set(q_of) != set(outs):
        return None
    one = _qdq_unit(graph, [core], [q_of[outs[0]]], members)
    if one is None:
        return None
    return [RowUnit(core, q_of[o].outputs[0], one.maps) for o in outs]


def _qdq_unit(graph: Graph, core: list[Operator], qs: list[Operator], members: tuple[Operator, ...]) -> RowUnit | None:
    """One row unit of a folded QDQ group with at most one core and one Q (``_qdq_units``)."""
    if len(core) > 1 or len(qs) != 1 or not qs[0].outputs or qs[0].outputs[0] not in graph.tensor_buffer:
        return None
    head = core[0] if core else qs[0]
    inner = core[0] if core else None
    rm = row_maps(graph, inner) if inner is not None else None
    dq_of = {m.outputs[0]: m for m in members if m.op_type == "DequantizeLinear" and m.outputs}
    maps: dict[str, RowMap] = {}
    if inner is None:
        # A requantization DQ -> Q: the same rows.
        d = next(iter(dq_of.values()), None)
        if d is None or not d.inputs or d.inputs[0] not in graph.tensor_buffer:
            return None
        t = graph.tensors[d.inputs[0]]
        if not _is_rows(t):
            return None
        maps[d.inputs[0]] = RowMap(1, 1, 0, rows(graph, t))
        return RowUnit(head, qs[0].outputs[0], maps)
    if rm is None:
        return None
    for name, m in rm.items():
        d = dq_of.get(name)
        if d is None or not d.inputs or d.inputs[0] not in graph.tensor_buffer:
            return None
        maps[d.inputs[0]] = m
    if not qs[0].inputs or qs[0].inputs[0] not in inner.outputs:
        return None   # the Q reads the core's result (its own one, for a Split: ``_qdq_split_units``)
    return RowUnit(head, qs[0].outputs[0], maps)


def row_units(graph: Graph, op: Operator) -> list[RowUnit] | None:
    """The units a step's stripes run, in order, or None when the step cannot run on bands."""
    members = graph.step_members(op)
    if graph.tensor_offsets and any(n in graph.tensor_offsets for m in members for n in (*m.inputs, *m.outputs)):
        return None  # a Concat in place (ir.concat_inplace): its slices are byte ranges, not rows
    if any(_unplanned(graph, m) for m in members):
        return _qdq_units(graph, op, members)
    units: list[RowUnit] = []
    for m in members:
        rm = row_maps(graph, m)
        outs = [o for o in m.outputs if o]
        if rm is None or not outs:
            return None
        units.extend(RowUnit(m, o, rm) for o in outs)   # several only for a Split (row_maps)
    return units


def step_row_maps(graph: Graph, op: Operator) -> dict[OpIndex, dict[str, RowMap]] | None:
    """Row maps of every unit a step runs (``row_units``), or None when it cannot run on bands."""
    units = row_units(graph, op)
    return None if units is None else {u.op.index: dict(u.maps) for u in units}


def row_bytes(t: Tensor, axis: int = 2) -> int:
    """Bytes of one row of a 4-D tensor: ``[:, :, r, :]`` in NCHW (``axis`` 2), ``[:, r]`` in
    NHWC (``axis`` 1)."""
    return t.bytes // t.shape[axis]


@dataclass(frozen=True)
class CascadeSpec:
    """Steps ``ops`` (contiguous in file order) run stripe by stripe as one macro step.
    ``rings``: interior buffers held as a ring of that many rows; ``streamed``: graph inputs or
    outputs kept in their home level and moved through a ring of that many rows.  ``aliases``:
    interior buffers whose rows an elementwise operator writes over an operand's ring (buffer ->
    that ring's buffer, in ``rings``; ``stowage.solvers.tiling.alias``): no step of the macro
    graph touches them.  Every other buffer the steps touch is whole.  ``region`` (bytes, 0:
    none): the cascade addresses its rows by slot (``CascadeTensor.slots``): the rows of every
    ring, alias and streamed buffer live in one new buffer of that many bytes, and none of
    those buffers is touched by a step of the macro graph (their row counts say nothing)."""

    ops: tuple[OpIndex, ...]
    rings: Mapping[BufferId, int] = field(default_factory=dict)
    streamed: Mapping[BufferId, int] = field(default_factory=dict)
    aliases: Mapping[BufferId, BufferId] = field(default_factory=dict)
    region: int = 0

    def __post_init__(self) -> None:
        for name in ("rings", "streamed", "aliases"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))


def ring_tensor_name(graph: Graph, k: int, bid: BufferId) -> str:
    """The macro graph's tensor for the staging ring of a streamed buffer in cascade ``k``."""
    return f"{graph.buffers[bid].tensors[0]}@ring{k}"


def region_tensor_name(graph: Graph, k: int, first: OpIndex) -> str:
    """The macro graph's tensor for the row region of slot-addressed cascade ``k``."""
    return f"{graph.operators[first].name}@rows{k}"


def buffer_row_bytes(graph: Graph, bid: BufferId) -> int:
    """Bytes of the widest row among the tensors of buffer ``bid`` (each along its own row
    axis; a buffer mixing row layouts, ``columns.mixed_buffer``, is never held in rows); the
    whole buffer when no tensor of it has rows (a TFLite MEAN's 2-D result, one row)."""
    shaped = [row_bytes(graph.tensors[n], row_axis_of(graph, graph.tensors[n]))
              for n in graph.buffers[bid].tensors if has_rows(graph, graph.tensors[n])]
    return max(shaped) if shaped else graph.buffers[bid].bytes


def macro_graph(graph: Graph, specs: Sequence[CascadeSpec]) -> tuple[Graph, dict[tuple[int, BufferId], BufferId]]:
    """The graph whose steps are the cascades (and the steps outside them), and, per
    ``(cascade, buffer)`` held in a ring, the macro buffer holding the ring.

    A cascade becomes one operator at its first step's index (so file order stays
    topological), named ``cascade<k>:<first op>``, op type ``Cascade``: it reads the whole
    buffers made outside it (and the weights its steps read), and writes its whole results and
    its rings.  A ring buffer keeps its id with ``rows * row_bytes`` bytes; a streamed buffer
    keeps its id (untouched by any step: rule 8 checks its rows) and its ring is a new buffer;
    so does a buffer written over another's ring (``CascadeSpec.aliases``).
    """
    ops = list(graph.operators)
    bufs = list(graph.buffers)
    tensors = dict(graph.tensors)
    tbuf = dict(graph.tensor_buffer)
    ring_of: dict[tuple[int, BufferId], BufferId] = {}
    streamed_out: set[BufferId] = set()
    stored_by: dict[BufferId, OpIndex] = {}     # streamed intermediate -> the cascade storing it
    loads: list[tuple[OpIndex, BufferId]] = []  # (cascade, streamed intermediate it loads)
    for k, spec in enumerate(specs):
        members = [m for i in spec.ops for m in graph.step_members(graph.operators[i])]
        written = {b for i in spec.ops for b in graph.op_writes(graph.operators[i])}
        read = [b for i in spec.ops for b in graph.op_reads(graph.operators[i])]
        ins: list[str] = []
        outs: list[str] = []
        for b in dict.fromkeys(read):
            if b not in written and b not in spec.streamed:
                ins.append(graph.buffers[b].tensors[0])
        region = spec.region > 0
        for b in dict.fromkeys(bb for i in spec.ops for bb in graph.op_writes(graph.operators[i])):
            if b in spec.aliases:
                continue  # its rows live in another ring: untouched, like a streamed buffer
            if region and b in spec.rings:
                continue  # its rows live in the region: untouched, like a streamed buffer
            if b in spec.rings:
                bufs[b] = replace(bufs[b], bytes=spec.rings[b] * buffer_row_bytes(graph, b))
                ring_of[(k, b)] = b
                outs.append(graph.buffers[b].tensors[0])
            elif b in spec.streamed:
                streamed_out.add(b)
                stored_by[b] = spec.ops[0]
            else:
                outs.append(graph.buffers[b].tensors[0])
        if region:
            name = region_tensor_name(graph, k, spec.ops[0])
            nb = len(bufs)
            tensors[name] = Tensor(name=name, shape=(spec.region,), dtype="uint8", bytes=spec.region,
                                   kind=TensorKind.ACTIVATION, producer=spec.ops[0])
            bufs.append(Buffer(id=nb, tensors=(name,), bytes=spec.region, kind=TensorKind.ACTIVATION,
                               producer=spec.ops[0], consumers=()))
            tbuf[name] = nb
            for b in (*spec.rings, *spec.streamed, *spec.aliases):
                ring_of[(k, b)] = nb
            outs.append(name)
        for b, nrows in spec.streamed.items() if not region else ():
            name = ring_tensor_name(graph, k, b)
            nbytes = nrows * buffer_row_bytes(graph, b)
            nb = len(bufs)
            tensors[name] = Tensor(name=name, shape=(nbytes,), dtype="uint8", bytes=nbytes,
                                   kind=TensorKind.ACTIVATION, producer=spec.ops[0])
            bufs.append(Buffer(id=nb, tensors=(name,), bytes=nbytes, kind=TensorKind.ACTIVATION,
                               producer=spec.ops[0], consumers=()))
            tbuf[name] = nb
            ring_of[(k, b)] = nb
            outs.append(name)
        first = graph.operators[spec.ops[0]]
        loads += [(first.index, b) for b in spec.streamed if b not in written]
        ops[first.index] = Operator(
            index=first.index, name=f"cascade{k}:{first.name}", op_type="Cascade", domain="stowage",
            inputs=tuple(ins), outputs=tuple(outs),
            cost=sum(m.cost for m in members if m.cost_unit == first.cost_unit), cost_unit=first.cost_unit,
            extra_bytes=sum(graph.operators[i].extra_bytes for i in spec.ops),
        )
        for m in members:
            if m.index != first.index:
                ops[m.index] = replace(m, computing=False, fused=(), fused_into=first.index)
    # A cascade loading rows another one stored off-chip runs after it: no buffer of the macro
    # graph says so (the tensor never enters the compute level whole).
    for k_op, b in loads:
        if b in stored_by and stored_by[b] != k_op:
            ops[k_op] = replace(ops[k_op], after=tuple(sorted({*ops[k_op].after, stored_by[b]})))
    macro = replace(graph, operators=tuple(ops), tensors=tensors, tensor_buffer=tbuf,
                    outputs=tuple(o for o in graph.outputs if tbuf[o] not in streamed_out))
    # Producers and readers are steps of the macro graph; a streamed buffer has none.
    producer: dict[BufferId, OpIndex] = {}
    readers: dict[BufferId, list[OpIndex]] = {}
    for op in macro.computing_ops:
        for b in macro.op_writes(op):
            producer.setdefault(b, op.index)
        for b in macro.op_reads(op):
            readers.setdefault(b, []).append(op.index)
    fixed = tuple(
        replace(b, producer=producer.get(b.id) if b.kind is not TensorKind.INPUT and b.kind is not TensorKind.WEIGHT
                else None,
                consumers=tuple(readers.get(b.id, ())),
                is_output=b.is_output and b.id not in streamed_out)
        for b in bufs
    )
    return replace(macro, buffers=fixed), ring_of


__all__ = [
    "ACCUMULATE",
    "CONCAT",
    "DILATED",
    "FLATTEN",
    "MIRROR",
    "MIRROR_MODES",
    "RESIZE",
    "TFLITE_MIRROR_MODES",
    "TRANSPOSED",
    "UPSAMPLE_MODES",
    "WINDOW",
    "CascadeSpec",
    "RowMap",
    "RowUnit",
    "accumulates",
    "buffer_row_bytes",
    "column_maps",
    "macro_graph",
    "mirror_pad_rows",
    "pad_rows",
    "region_tensor_name",
    "resize_taps",
    "ring_tensor_name",
    "row_axis",
    "row_bytes",
    "row_maps",
    "row_units",
    "rows",
    "slice_rows",
    "step_row_maps",
    "tflite_pad_rows",
    "tflite_slice_rows",
]
