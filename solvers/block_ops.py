"""Which IR operators Vela's block model describes, and the ``Query`` of each (for ``stowage.solvers.timing``).

An operator is an NPU operation of the block model (``stowage.solvers.block_model``) when its
kind is one Vela compiles to a block operation and its feature maps are 8- or 16-bit integers
(the NPU runs no float; a float model keeps the efficiency model):

- ``conv``: TFLite ``CONV_2D``; ONNX ``Conv``, ``QLinearConv``, ``ConvInteger`` (not depthwise);
- ``depthwise``: ``DEPTHWISE_CONV_2D``, and ``MEAN`` over height and width (Vela rewrites it as a
  depthwise convolution with an H x W kernel); ONNX convolutions with one input channel per group;
- ``vector_product``: ``FULLY_CONNECTED``; ``Gemm``, ``QGemm``, ``MatMul``, ``MatMulInteger``,
  ``QLinearMatMul`` with a weight as second operand;
- ``pooling``: ``AVERAGE_POOL_2D``, ``MAX_POOL_2D``; ``MaxPool``, ``AveragePool``,
  ``QLinearAveragePool`` and the global pools;
- ``elementwise``: ``ADD``, ``SUB``, ``MUL``, ``MAXIMUM``, ``MINIMUM`` and the unary ``RELU*``,
  ``LOGISTIC``, ``TANH``, ``HARD_SWISH``, ``LEAKY_RELU``; ``Add``, ``Sub``, ``Mul``, ``QLinearAdd``,
  ``QLinearMul`` and the unary ``Relu``, ``Clip``, ``Sigmoid``, ...

A fused activation (TFLite's ``fused_activation_function``, or an ONNX activation fused into a
modelled operator's step) runs in the operator's output stage, as in Vela: ``relu`` for the
ReLU family, ``lut`` for sigmoid, tanh and hard-swish (a lookup table).  The ``DequantizeLinear`` and
``QuantizeLinear`` of a folded QDQ group (``stowage.ir.qdq``) cost nothing: the group is one
integer operation on the integer tensors.  Every other operator (``SOFTMAX``, ``CONCATENATION``,
``PAD``, an unfolded ``QuantizeLinear``, ...) has no block model: such a member gets the
efficiency model (``stowage.solvers.timing._block_step``), and a step with no modelled member
keeps the efficiency model's step rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stowage.ir.graph import Graph, Operator, TensorKind
from stowage.solvers import block_model as bm
from stowage.targets.blocks import BlockArch

_TFL_CONV = {"CONV_2D": bm.CONV, "DEPTHWISE_CONV_2D": bm.DEPTHWISE}
_TFL_BINARY = {"ADD": "add", "SUB": "sub", "MUL": "mul", "MAXIMUM": "", "MINIMUM": ""}
_TFL_UNARY = {"RELU": "relu", "RELU6": "relu", "RELU_N1_TO_1": "relu", "RELU_0_TO_1": "relu", "LOGISTIC": "lut",
              "TANH": "lut", "HARD_SWISH": "lut", "LEAKY_RELU": "lut"}
_TFL_ACT = {"RELU": "relu", "RELU6": "relu", "RELU_N1_TO_1": "relu", "RELU_0_TO_1": "relu", "TANH": "lut"}
_ONNX_CONV = frozenset({"Conv", "QLinearConv", "ConvInteger"})
_ONNX_MATMUL = frozenset({"Gemm", "QGemm", "MatMul", "MatMulInteger", "QLinearMatMul"})
_ONNX_POOL = frozenset({"MaxPool", "AveragePool", "QLinearAveragePool", "GlobalAveragePool", "GlobalMaxPool",
                        "QLinearGlobalAveragePool"})
_ONNX_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "QLinearAdd": "add", "QLinearMul": "mul"}
#: ONNX activations: as a step's own operator an elementwise pass, fused after a modelled operator free.
ONNX_ACTIVATIONS = {"Relu": "relu", "Clip": "relu", "LeakyRelu": "lut", "Sigmoid": "lut", "Tanh": "lut",
                    "HardSigmoid": "lut", "HardSwish": "lut", "QLinearSigmoid": "lut", "QLinearLeakyRelu": "lut"}

_BITS = {"int8": 8, "uint8": 8, "int16": 16, "uint16": 16}


_QDQ = ("DequantizeLinear", "QuantizeLinear")


def folded_qdq(graph: Graph, op: Operator) -> bool:
    """Whether ``op`` is the ``DequantizeLinear`` or ``QuantizeLinear`` of a folded QDQ group
    (``stowage.ir.qdq``): its float side has no buffer, the integer kernel of the group's core
    operator does its work (an NPU dequantizes on reading and requantizes in its output stage)."""
    if op.op_type not in _QDQ or op.domain not in ("", "ai.onnx", "com.microsoft"):
        return False
    side = op.outputs[0] if op.op_type == "DequantizeLinear" and op.outputs else (op.inputs[0] if op.inputs else "")
    return bool(side) and side in graph.tensors and side not in graph.tensor_buffer


def integer_sides(graph: Graph) -> dict[str, str]:
    """For each float tensor of a folded QDQ group, the integer tensor an integer kernel reads
    or writes in its place: a ``DequantizeLinear``'s output -> its input, a ``QuantizeLinear``'s
    input -> its output (``stowage.ir.qdq``: the float side has no buffer)."""
    out: dict[str, str] = {}
    for op in graph.operators:
        if folded_qdq(graph, op) and op.inputs and op.outputs:
            if op.op_type == "DequantizeLinear":
                out[op.outputs[0]] = op.inputs[0]
            else:
                out.setdefault(op.inputs[0], op.outputs[0])
    return out


def block_kind(op: Operator) -> str | None:
    """The block kind of ``op`` by its type alone (shapes and element types are checked by
    ``query``); None when the block model never describes it."""
    t = op.op_type
    if op.domain == "tflite":
        if t in _TFL_CONV:
            return _TFL_CONV[t]
        if t == "MEAN":
            return bm.DEPTHWISE
        if t == "FULLY_CONNECTED":
            return bm.VECTOR_PRODUCT
        if t in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            return bm.POOLING
        if t in _TFL_BINARY or t in _TFL_UNARY:
            return bm.ELEMENTWISE
        return None
    if t in _ONNX_CONV:
        return bm.CONV
    if t in _ONNX_MATMUL:
        return bm.VECTOR_PRODUCT
    if t in _ONNX_POOL:
        return bm.POOLING
    if t in _ONNX_BINARY or t in ONNX_ACTIVATIONS:
        return bm.ELEMENTWISE
    return None


#: TFLite activations Vela runs as a lookup table (``lut.convert_to_lut``): 8-bit operand and
#: result of one type (``convert_to_lut8``, ``convert_lrelu``), HARD_SWISH also 16-bit.
_TFL_LUT_TYPES = {"HARD_SWISH": ("int8", "uint8", "int16")}


def tflite_fused_activation(graph: Graph, prev: Operator, op: Operator, arch: BlockArch) -> str | None:
    """``"lut"`` or ``"relu"`` when the TFLite activation ``op`` runs in the output stage of
    ``prev`` as Vela fuses it, else None.  Vela 5.2's rules (``tflite_graph_optimiser.py``):
    a lookup-table activation (HARD_SWISH, LOGISTIC, TANH, LEAKY_RELU: ``convert_hardswish_to_lut``,
    ``convert_tanh_sigmoid_to_lut``, ``convert_lrelu_to_lut`` make it an ``is_nop`` Add with a
    LUT) moves into the operation producing its operand (``fuse_activation_function_with_prev``)
    when that one runs on the NPU with a block type (``block_kind``), its result has this one
    reader, it has no activation of its own, and the SHRAM keeps banks apart for the table
    (``shram_reserved_unused_banks``: ``shram_reserved_end_banks`` here); the ReLU family is
    packed into the producing operation's pass as a post-operation (``pass_packing.py``,
    ``npu_post_ops``) under the same conditions.  (Vela gives a ReLU whose operand and result
    scales differ a pass of its own, ``fixup_relus_with_differing_ifm_ofm_scaling``; the IR
    keeps no scales, so that case is timed as fused too.)"""
    act = _TFL_UNARY.get(op.op_type)
    if op.domain != "tflite" or prev.domain != "tflite" or act is None or not op.inputs:
        return None
    x_name = op.inputs[0]
    outs = [o for o in op.outputs if o]
    if x_name not in prev.outputs or len(outs) != 1 or block_kind(prev) is None:
        return None
    if str(prev.attributes.get("fused_activation_function", "NONE")) != "NONE":
        return None
    if sum(x_name in o.inputs for o in graph.operators) != 1:
        return None
    x, y = graph.tensors.get(x_name), graph.tensors.get(outs[0])
    if x is None or y is None:
        return None
    if act == "lut":
        if arch.shram_reserved_end_banks <= 0:
            return None
        if x.dtype != y.dtype or x.dtype not in _TFL_LUT_TYPES.get(op.op_type, ("int8", "uint8")):
            return None
    elif x.dtype not in _BITS:
        return None
    return act


def _nhwc(shape: Sequence[int], layout: str) -> bm.Shape | None:
    if len(shape) > 4 or any(not isinstance(d, int) or d < 1 for d in shape):
        return None
    if layout == "NCHW" and len(shape) == 4:
        n, c, h, w = shape
        return bm.Shape(n, h, w, c)
    s = [1] * (4 - len(shape)) + list(shape)
    return bm.Shape(s[0], s[1], s[2], s[3])


def _pair(attrs: Mapping[str, object], key: str) -> tuple[int, int]:
    v = attrs.get(key)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v):
        return int(v[0]), int(v[1])
    return 1, 1


def query(graph: Graph, op: Operator, feature_map: bm.Memory, const: bm.Memory,
          formats: Mapping[str, str], activation: str | None = None, sides: Mapping[str, str] | None = None
          ) -> tuple[bm.Query, int, int, int] | None:
    """The block-model query of ``op`` with its feature maps in ``feature_map`` and its weights
    read from ``const``, plus the element sizes of its weights and of its bias/scales and their
    bytes (what one pass over its constants reads; 0 without them); None when
    the model does not describe it (kind, shapes or element types).  ``formats`` gives each
    feature-map tensor's layout (``NHCWB16`` or ``NHWC``); ``activation`` a fused one."""
    kind = block_kind(op)
    if kind is None:
        return None
    tflite = op.domain == "tflite"
    layout = "NHWC" if tflite else "NCHW"
    t = op.op_type
    attrs = op.attributes
    # In a folded QDQ group the core operator's float operands have no buffer: the integer
    # kernel reads the DequantizeLinears' inputs and writes the QuantizeLinears' outputs.
    # (``sides``: ``integer_sides(graph)``).
    sides = sides or {}
    ins = [graph.tensors.get(sides.get(n, n)) if n else None for n in op.inputs]
    outs = [graph.tensors.get(sides.get(n, n)) for n in op.outputs if n]
    if not outs or outs[0] is None or not ins:
        return None
    qlinear = t in ("QLinearConv", "QLinearMatMul", "QGemm")
    x = ins[0]
    w = ins[3] if qlinear and len(ins) > 3 else (ins[1] if len(ins) > 1 else None)
    if t == "QLinearConv":
        bias = ins[8] if len(ins) > 8 else None
    elif t == "QGemm":
        bias = ins[6] if len(ins) > 6 else None
    elif t in ("ConvInteger", "MatMulInteger", "MatMul"):
        bias = None
    else:
        bias = ins[2] if len(ins) > 2 else None
    needs_weight = kind in (bm.CONV, bm.DEPTHWISE, bm.VECTOR_PRODUCT) and t != "MEAN"
    if needs_weight and (w is None or w.kind is not TensorKind.WEIGHT):
        return None     # a product of two feature maps: not a block operation with weights
    y = outs[0]
    if x is None or x.dtype not in _BITS or y.dtype not in _BITS:
        return None

    def operand(tensor_shape: bm.Shape, dtype: str, name: str) -> bm.Operand:
        return bm.Operand(tensor_shape, _BITS[dtype], feature_map, formats.get(name, bm.NHWC))

    act = activation or "none"
    if tflite:
        act = _TFL_ACT.get(str(attrs.get("fused_activation_function", "NONE")), act)
    kernel = bm.Kernel()
    wbytes = bbytes = 0
    ifm2 = None
    variant = ""
    uses_scalar = False
    if kind in (bm.CONV, bm.DEPTHWISE) and t != "MEAN":
        if w is None or len(w.shape) != 4:
            return None
        ifm_s, ofm_s = _nhwc(x.shape, layout), _nhwc(y.shape, layout)
        if ifm_s is None or ofm_s is None:
            return None
        if not tflite:
            group = attrs.get("group", 1)
            if isinstance(group, int) and group > 1:
                if not (w.shape[1] == 1 and group == ifm_s.c):
                    return None     # grouped, not depthwise: no block model
                kind = bm.DEPTHWISE
        kh, kw = _pair(attrs, "kernel_shape") if "kernel_shape" in attrs else \
            ((w.shape[1], w.shape[2]) if tflite else (w.shape[2], w.shape[3]))
        sh, sw = _pair(attrs, "strides")
        dh, dw = _pair(attrs, "dilations")
        kernel = bm.Kernel(kw, kh, sw, sh, dw, dh)
        wbytes = w.bytes // max(1, _numel(w.shape))
        bbytes = bias.bytes // max(1, _numel(bias.shape)) if bias is not None else 4
    elif t == "MEAN":
        ifm_s = _nhwc(x.shape, layout)
        ofm_s = _nhwc(y.shape, layout)
        if ifm_s is None or ofm_s is None or ofm_s.c != ifm_s.c or ofm_s.elements() != ifm_s.n * ifm_s.c:
            return None     # only the mean over height and width (a global pool)
        ofm_s = bm.Shape(ifm_s.n, 1, 1, ifm_s.c)
        kernel = bm.Kernel(ifm_s.w, ifm_s.h)
        wbytes, bbytes = 1, 4
    elif kind == bm.VECTOR_PRODUCT:
        if w is None or len(w.shape) != 2 or len(x.shape) < 1:
            return None
        k = x.shape[-1]
        rows = _numel(x.shape) // k if k else 0
        n_out = y.shape[-1] if y.shape else 0
        if rows < 1 or n_out < 1:
            return None
        ifm_s, ofm_s = bm.Shape(rows, 1, 1, k), bm.Shape(rows, 1, 1, n_out)
        wbytes = w.bytes // max(1, _numel(w.shape))
        bbytes = bias.bytes // max(1, _numel(bias.shape)) if bias is not None else 4
    elif kind == bm.POOLING:
        ifm_s, ofm_s = _nhwc(x.shape, layout), _nhwc(y.shape, layout)
        if ifm_s is None or ofm_s is None:
            return None
        if t.startswith("Global") or t == "QLinearGlobalAveragePool":
            kh, kw = ifm_s.h, ifm_s.w
        elif tflite:
            kh, kw = int(attrs.get("filter_height", 1)), int(attrs.get("filter_width", 1))
        else:
            kh, kw = _pair(attrs, "kernel_shape")
        sh, sw = _pair(attrs, "strides")
        kernel = bm.Kernel(kw, kh, sw, sh)
        variant = "maxpool" if "MAX" in t.upper() else ""
    else:   # elementwise
        ofm_s = _nhwc(y.shape, layout)
        ifm_s = _nhwc(x.shape, layout)
        if ofm_s is None or ifm_s is None:
            return None
        second = ins[3] if t in ("QLinearAdd", "QLinearMul") and len(ins) > 3 else (ins[1] if len(ins) > 1 else None)
        binary = t in _TFL_BINARY or t in _ONNX_BINARY
        if binary:
            if second is None or second.dtype not in _BITS:
                return None
            s2 = _nhwc(second.shape, layout)
            if s2 is None:
                return None
            uses_scalar = len(x.shape) == 0 or len(second.shape) == 0
            ifm2 = operand(s2, second.dtype, second.name)
            variant = _TFL_BINARY.get(t, _ONNX_BINARY.get(t, ""))
        else:
            act = _TFL_UNARY.get(t, ONNX_ACTIVATIONS.get(t, act))
    has_const = kind in (bm.CONV, bm.DEPTHWISE, bm.VECTOR_PRODUCT)
    const_bytes = 0
    if has_const and t != "MEAN":
        const_bytes = (w.bytes if w is not None else 0) + (bias.bytes if bias is not None else 0)
    q = bm.Query(kind=kind, ifm=operand(ifm_s, x.dtype, x.name), ofm=operand(ofm_s, y.dtype, y.name), ifm2=ifm2,
                 kernel=kernel, variant=variant, activation=act, const=const if has_const else None,
                 uses_scalar=uses_scalar)
    return q, wbytes, bbytes, const_bytes


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def feature_map_formats(graph: Graph) -> dict[str, str]:
    """Each activation tensor's layout in the compute level, as Vela chooses it: the NPU's brick
    format ``NHCWB16`` for a 4-D tensor between block operations, ``NHWC`` for a graph input or
    output and for a tensor another kind of operator (or a view: a reshape; an in-place result
    shares its operand's bytes without being a view) reads or writes
    (Vela's ``scheduler.avoid_nhcwb16_for_ofm`` and the CPU/NPU boundary rules, simplified)."""
    # An in-place result (``stowage.ir.inplace``) is the operation's own output, not a view:
    # Vela's fused activation writes one OFM in the operation's format.
    in_place = {o for op in graph.operators if op.fused_into is not None for o in op.outputs if o}
    views: dict[int, int] = {}
    for name, b in graph.tensor_buffer.items():
        if name not in in_place:
            views[b] = views.get(b, 0) + 1
    readers: dict[str, list[Operator]] = {}
    writers: dict[str, Operator] = {}
    for op in graph.operators:
        for n in op.inputs:
            if n:
                readers.setdefault(n, []).append(op)
        for n in op.outputs:
            if n:
                writers[n] = op
    out: dict[str, str] = {}
    for name, tensor in graph.tensors.items():
        if tensor.kind is not TensorKind.ACTIVATION or len(tensor.shape) != 4:
            out[name] = bm.NHWC
            continue
        buf = graph.tensor_buffer.get(name)
        if buf is None or views.get(buf, 0) > 1 or graph.buffers[buf].is_output:
            out[name] = bm.NHWC
            continue
        ops = [*([writers[name]] if name in writers else []), *readers.get(name, [])]
        out[name] = bm.NHCWB16 if ops and all(_npu_side(graph, o, readers, writers) for o in ops) else bm.NHWC
    return out


def _npu_side(graph: Graph, op: Operator, readers: Mapping[str, list[Operator]],
              writers: Mapping[str, Operator]) -> bool:
    """Whether ``op`` runs on the block model's NPU: a modelled kind, or the Q/DQ of a folded
    group whose core operator is one."""
    if block_kind(op) is not None:
        return True
    if not folded_qdq(graph, op):
        return False
    if op.op_type == "DequantizeLinear":
        core = readers.get(op.outputs[0], [])
    else:
        w = writers.get(op.inputs[0])
        core = [w] if w is not None else []
    return bool(core) and all(block_kind(o) is not None for o in core)


__all__ = ["ONNX_ACTIVATIONS", "block_kind", "feature_map_formats", "folded_qdq", "integer_sides", "query",
           "tflite_fused_activation"]
