"""Vela's per-operator cycle model for Ethos-U class NPUs, ported (used by ``stowage.solvers.timing`` only).

A step's compute time on an engine whose target has a ``[compute.blocks]`` table is not one
efficiency per operator class but what Arm's Vela compiler estimates for the operator from its
*block configuration*: the output block the NPU computes at a time (chosen, as Vela chooses it,
as the block with the fewest input and weight fetches per output element that fits the shared
buffer, SHRAM), the micro-blocks and sub-kernels the MAC array steps through, the output
stage's cycles per element, and the fixed command overhead of each block.  The same block
configuration says how often the engine reads its operands: the input once per block of
output channels, the weights once per block of output positions, each access scaled by the
burst efficiency of the block's row length.

This is a port of Vela 5.2.0's legacy Python core (Apache-2.0, ``ethos-u-vela``; the functions
named in each docstring are in ``ethosu/vela/``), not a dependency on it.  Vela 5.2's default
compiler core (Regor, C++) refines the same model; its source is not in the wheel.  What is not
ported: Vela's weight compression (we read the weights' raw bytes), its graph rewrites (a
``MEAN`` is one pooling here; ``SOFTMAX`` has no block model and keeps the efficiency model),
the 16-bit and 40-bit accumulator details beyond the block search, and the multi-core U65-512.

Everything here works on shapes (``Shape``: batch, height, width, depth) and returns cycles and
element counts; ``stowage.solvers.timing`` turns them into seconds and bytes per level.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from stowage.targets.blocks import BlockArch

#: Vela's ``NpuBlockType`` values this model knows (``operation.py``).
CONV, DEPTHWISE, VECTOR_PRODUCT, POOLING, ELEMENTWISE, REDUCE_SUM = (
    "conv", "depthwise", "vector_product", "pooling", "elementwise", "reduce_sum")
#: Feature-map formats (``tensor.TensorFormat``): NHCWB16 is the NPU's brick format, 16 channels deep.
NHWC, NHCWB16 = "NHWC", "NHCWB16"

def _round_up(a: int, b: int) -> int:
    return ((a + b - 1) // b) * b


def _div_up(a: int, b: int) -> int:
    return (a + b - 1) // b


@dataclass(frozen=True)
class Shape:
    """An NHWC shape (Vela's ``Shape4D``)."""

    n: int
    h: int
    w: int
    c: int

    def elements(self) -> int:
        return self.n * self.h * self.w * self.c

    def elements_wh(self) -> int:
        return self.h * self.w

    def min(self, o: Shape) -> Shape:
        return Shape(min(self.n, o.n), min(self.h, o.h), min(self.w, o.w), min(self.c, o.c))

    def round_up(self, o: Shape) -> Shape:
        return Shape(_round_up(self.n, o.n), _round_up(self.h, o.h), _round_up(self.w, o.w), _round_up(self.c, o.c))

    def div_up(self, o: Shape) -> Shape:
        return Shape(_div_up(self.n, o.n), _div_up(self.h, o.h), _div_up(self.w, o.w), _div_up(self.c, o.c))

    def with_c(self, c: int) -> Shape:
        return Shape(self.n, self.h, self.w, c)

    def with_h(self, h: int) -> Shape:
        return Shape(self.n, h, self.w, self.c)


@dataclass(frozen=True)
class Kernel:
    """Vela's ``operation.Kernel``: size, stride and dilation (x = width, y = height)."""

    w: int = 1
    h: int = 1
    sx: int = 1
    sy: int = 1
    dx: int = 1
    dy: int = 1

    def elements_wh(self) -> int:
        return self.w * self.h

    def area_w(self) -> int:
        return (self.w - 1) * self.dx + 1

    def area_h(self) -> int:
        return (self.h - 1) * self.dy + 1


@dataclass(frozen=True)
class Memory:
    """What the model needs of the level a tensor is read from or written to, in compute-clock
    cycles: bytes per cycle, first-access latency, burst length (Vela's
    ``memory_bandwidths_per_cycle``, ``memory_latency``, ``memory_burst_length``)."""

    bytes_per_cycle: float
    latency: float
    burst: int


@dataclass(frozen=True)
class Operand:
    shape: Shape
    bits: int
    memory: Memory
    format: str = NHCWB16


@dataclass(frozen=True)
class Query:
    """One NPU operation (Vela's ``PerformanceQuery``).  ``variant`` is Vela's op type where the
    output stage depends on it (``add``, ``sub``, ``mul``, ``maxpool``, else ``""``);
    ``activation`` the fused activation (``lut``, ``relu`` or ``none``); ``const`` the memory
    the weights and scales are read from (None: the operation has none)."""

    kind: str
    ifm: Operand
    ofm: Operand
    ifm2: Operand | None = None
    kernel: Kernel = Kernel()
    variant: str = ""
    activation: str = "none"
    const: Memory | None = None
    uses_scalar: bool = False


@dataclass(frozen=True)
class BlockConfig:
    """Vela's ``ArchitectureBlockConfig``: the blocks one command computes and reads."""

    ofm_block: Shape
    ifm_block: Shape
    acc_bits: int = 32
    part_kernel: bool = False


@dataclass(frozen=True)
class OpCost:
    """Vela's estimate of one operation: NPU cycles, MACs, the block configuration, and the
    elements the engine reads and writes (Vela's ``ElementAccess``) with each stream's
    burst-efficiency scale (``_estimate_memory_transfer_efficiency``: bytes moved per byte used)."""

    cycles: int
    macs: int
    config: BlockConfig
    ifm_read: int
    ifm2_read: int
    ofm_write: int
    weight_read: int
    scale_read: int
    ifm_scale: float
    ifm2_scale: float
    ofm_scale: float


_ACC_BITS = {"acc16": 16, "acc32": 32, "acc40": 40}


def _try_layout(arch: BlockArch, ew: str, ofm: Shape, ifm: Shape, ifm_bits: int, ifm_granule: int, acc_bits: int,
                acc_granule: int, lut_banks: int) -> bool:
    """Whether the IFM and accumulator blocks fit the SHRAM (``architecture_allocator._try_block_config``)."""
    ifm_bytes = ifm.elements_wh() * _round_up(math.ceil(ifm.c * ifm_bits / 8), 8)
    ifm_banks = _round_up(_div_up(ifm_bytes, arch.shram_bank_bytes) * 2, ifm_granule)
    lut_start = arch.shram_banks - lut_banks
    ifm_end = arch.shram_reserved_output_banks + ifm_banks
    ifm2_start = ifm_end
    acc_start = lut_start
    if ew == "no":
        acc_bytes = (ofm.elements_wh() * _round_up(ofm.c, 8) * acc_bits) // 8
        acc_banks = _round_up(_div_up(acc_bytes, arch.shram_bank_bytes) * 2, acc_granule)
        acc_start -= acc_banks
    else:
        ifm2_banks = ifm_banks if ew == "full" else 0
        if ifm2_start + ifm2_banks > acc_start:
            return False
        ifm_end = acc_start
    return ifm_end <= acc_start


def _part_kernel(ifm: Shape, ifm_bits: int, kernel: Kernel) -> bool:
    """``architecture_allocator._choose_kernel_method``: part-kernel or depth-first traversal."""
    if ifm.c <= 8:
        return True
    k = kernel.elements_wh()
    depth_util = ifm.c / _round_up(ifm.c, 32 if ifm_bits == 8 else 16)
    part_util = ifm.c * k / (_round_up(ifm.c, 8) * _round_up(k, 4 if ifm_bits == 8 else 2))
    return part_util > depth_util


def _required(value: int, stride: int, border: int) -> int:
    return (value - 1) * stride + border


def find_block_config(arch: BlockArch, q: Query) -> BlockConfig | None:
    """The block Vela compiles the operation with (``architecture_allocator.find_block_config``):
    over every output block up to ``ofm_block_max`` in micro-block steps whose IFM and
    accumulator blocks fit the SHRAM, the one with the fewest IFM and weight element fetches per
    output element (halved when the whole IFM fits twice in the block buffers; ties go to the
    larger IFM coverage among small blocks).  None when nothing fits."""
    split = arch.ofm_split_depth
    ifm_shape = q.ifm.shape
    if q.ifm2 is not None and q.ifm2.shape.elements() > ifm_shape.elements():
        ifm_shape = q.ifm2.shape
    ofm_shape = q.ofm.shape
    ifm_bits = q.ifm.bits
    kernel = q.kernel
    ew = "no" if q.kind != ELEMENTWISE else ("scalar" if q.uses_scalar else "full")
    is_pooling = q.kind == POOLING
    is_depthwise = q.kind == DEPTHWISE
    equal_depth = ew != "no" or is_pooling or is_depthwise
    is_conv = q.kind == CONV or is_depthwise
    part = is_conv and _part_kernel(ifm_shape, ifm_bits, kernel)
    acc = "acc40" if ifm_bits == 16 and q.kind != POOLING else "acc32"
    acc_granule = arch.shram_granules[acc]
    acc_bits = _ACC_BITS[acc]
    if ew != "no":
        ifm_granule = arch.shram_granules[{8: "ifm8_elementwise", 16: "ifm16_elementwise"}.get(ifm_bits, "ifm32")]
    else:
        ifm_granule = arch.shram_granules[{8: "ifm8", 16: "ifm16"}.get(ifm_bits, "ifm32")]
    lut_banks = max(2 if q.activation == "lut" else 0, arch.shram_reserved_end_banks)
    skh, skw = arch.sub_kernel_max
    ifm_repeats = _div_up(kernel.area_w(), skw) * _div_up(kernel.area_h(), skh)
    if ifm_bits == 16:
        ifm_blockdepth = _round_up(min(ifm_shape.c, 16), 4)
    else:
        ifm_blockdepth = _round_up(min(ifm_shape.c, 16 if part else 32), arch.ifm_ublock[2])
    weight_fetch_wh = kernel.area_w() * kernel.area_h() if is_conv else 0
    ub = Shape(1, *arch.ofm_ublock)
    mh, mw, mc = arch.ofm_block_max
    space = ofm_shape.min(Shape(1, mh, mw, mc)).round_up(ub)
    best_cost = math.inf
    best_coverage = math.inf
    best: BlockConfig | None = None
    depth = max(ub.c, min(space.c, split))
    if depth < ofm_shape.c:
        depth = _round_up(depth, split)
    while depth <= space.c:
        wont_fit: set[tuple[int, int]] = set()
        for height in range(ub.h, space.h + 1, ub.h):
            for width in range(ub.w, space.w + 1, ub.w):
                if (height, width) in wont_fit:
                    continue
                ofm_block = Shape(1, height, width, depth)
                ih = _round_up(_required(height, kernel.sy, min(kernel.area_h(), skh)), ub.h)
                iw = _round_up(_required(width, kernel.sx, min(kernel.area_w(), skw)), ub.w)
                ifm_block = Shape(1, ih, iw, depth if equal_depth else ifm_blockdepth)
                fitted = ofm_block
                if ofm_shape.h == 1 and kernel.h == 1 and ub.h == 2:   # fit_block_for_ofm (Conv1D)
                    fitted = ofm_block.with_h(min(height, ofm_shape.h))
                if _try_layout(arch, ew, fitted, ifm_block, ifm_bits, ifm_granule, acc_bits, acc_granule, lut_banks):
                    full = ofm_shape.div_up(fitted)
                    blocks_wh = (ofm_shape.h / fitted.h) * (ofm_shape.w / fitted.w)
                    blocks_c = ofm_shape.c / fitted.c
                    weight_fetch: float = weight_fetch_wh * ifm_shape.c * full.elements_wh()
                    if not is_depthwise:
                        weight_fetch *= fitted.c * blocks_c
                    ifm_fetch: float = ifm_block.elements_wh() * ifm_shape.c * ifm_repeats * blocks_wh
                    if not equal_depth:
                        ifm_fetch *= full.c
                    if q.kind == ELEMENTWISE:
                        cost = max(ofm_shape.elements() / (height * width * depth), 1)
                    else:
                        cost = (ifm_fetch + weight_fetch) / ofm_shape.elements()
                    if ifm_shape.elements() < ifm_block.elements() * 2:
                        cost /= 2
                    if cost <= best_cost:
                        choose = False
                        if cost == best_cost:
                            cov = ifm_shape.min(ifm_block)
                            coverage = ifm_shape.elements_wh() / cov.elements_wh()
                            if coverage <= best_coverage and height <= 4 and width <= 4:
                                best_coverage = coverage
                                choose = True
                        else:
                            best_coverage = math.inf
                            choose = True
                        if choose:
                            best_cost = cost
                            best = BlockConfig(ofm_block, ifm_block, acc_bits, part)
                else:
                    wont_fit.add((width, height))   # Vela's transposed-block shortcut, as written
        depth += ub.c
        if depth < ofm_shape.c:
            depth = _round_up(depth, split)
    return best


def _transfer_scale(arch_burst: int, is_read: bool, fmt: str, bits: int, block: Shape, shape: Shape,
                    cores: int) -> float:
    """Bytes moved per byte used for a block access (``npu_performance._estimate_memory_transfer_efficiency``)."""
    if fmt == NHCWB16:
        stride_c = bits * 16 * shape.w / 8
        if stride_c == block.c:
            burst = bits * block.c * block.w
        elif is_read:
            burst = 16 * bits * block.w
        else:
            burst = 16 * bits * block.w * cores
    else:
        stride_z = bits / 8
        if is_read:
            burst = bits * block.c * block.w if stride_z == block.c else bits * block.c
        elif block.c <= 16 and stride_z == block.c:
            burst = bits * block.c * block.w
        else:
            burst = min(64 * 8, 16 * bits * cores, block.c * bits)
    burst_bytes = min(arch_burst, int(burst) // 8)
    return arch_burst / burst_bytes if burst_bytes > 0 else float(arch_burst)


def _minimum_memory_cycles(arch: BlockArch, q: Query, cfg: BlockConfig) -> tuple[float, float]:
    """One IFM block in and one OFM block out (``npu_performance._estimate_minimum_memory_cycles``)."""
    ifm_bytes = q.ifm.shape.min(cfg.ifm_block).elements()
    m = q.ifm.memory
    ifm = m.latency + ifm_bytes * _transfer_scale(m.burst, True, q.ifm.format, q.ifm.bits, cfg.ifm_block,
                                                  q.ifm.shape, arch.cores) / m.bytes_per_cycle
    ofm_bytes = q.ofm.shape.min(cfg.ofm_block).elements()
    m = q.ofm.memory
    ofm = m.latency + ofm_bytes * _transfer_scale(m.burst, False, q.ofm.format, q.ofm.bits, cfg.ofm_block,
                                                  q.ofm.shape, arch.cores) / m.bytes_per_cycle
    return ifm, ofm


def _output_cycles_per_element(arch: BlockArch, q: Query, cfg: BlockConfig) -> float:
    """``npu_performance._estimate_output_cycles_per_element``."""
    if q.kind == ELEMENTWISE and q.ifm.bits == 32:
        key = "elementwise_32bit_binary" if q.ifm2 is not None else "elementwise_32bit_unary"
    elif q.variant == "mul" and q.ofm.bits == 32:
        key = "mul_32bit"
    elif q.variant == "mul" or (q.kind in (CONV, DEPTHWISE, POOLING, REDUCE_SUM, VECTOR_PRODUCT)
                                 and cfg.acc_bits == 40):
        key = "acc40_or_mul"
    elif q.variant in ("add", "sub"):
        key = "add"   # Vela's "advanced" Add/Sub; its simple variant is never selected
    elif q.variant == "maxpool":
        key = "maxpool"
    else:
        key = "default"
    per = max(arch.output_cycles_per_element[key], arch.activation_cycles_per_element[q.activation])
    if q.kind == ELEMENTWISE:
        n = cfg.ofm_block.elements()
        ifm_c, ofm_c = _minimum_memory_cycles(arch, q, cfg)
        cmd = (ifm_c + ofm_c + per * n) / 4
        per = max(per, cmd / n)
    return per


def _conv_cycles(arch: BlockArch, q: Query, cfg: BlockConfig) -> int:
    """``npu_performance._estimate_conv_cycles``: the DPU's cycles per output block (micro-blocks
    times kernel steps per sub-kernel), the output stage's, the command overhead, times blocks.
    The pipeline delay between kernel steps of a one-micro-block block is ``dpu_delay_cycles``
    (Vela: 2, or 3 for the U55-64/128 with 40-bit accumulators; the U55-32's own delay rules are
    not ported: no preset has that configuration)."""
    ifm_block = q.ifm.shape.min(cfg.ifm_block)
    ofm_block = q.ofm.shape.min(cfg.ofm_block)
    uh, uw, uc = arch.ofm_ublock
    kernel = q.kernel
    if uh == 2 and q.kind in (CONV, DEPTHWISE, VECTOR_PRODUCT) and q.ofm.shape.h == 1 \
            and q.ofm.shape.w % 2 == 0 and kernel.h == 1:
        ub = Shape(1, 1, 4, uc)
        ofm_block = ofm_block.with_h(1)
    else:
        ub = Shape(1, uh, uw, uc)
    nx = _div_up(ofm_block.w, ub.w)
    ny = _div_up(ofm_block.h, ub.h)
    nxy = nx * ny
    nz = _div_up(ofm_block.c, ub.c)
    skh, skw = (1, 1) if q.kind in (VECTOR_PRODUCT, ELEMENTWISE) else arch.sub_kernel_max
    sub_x = [min(kernel.w - i * skw, skw) for i in range(_div_up(kernel.w, skw))]
    sub_y = [min(kernel.h - i * skh, skh) for i in range(_div_up(kernel.h, skh))]
    dpu = 0.0
    wb = 32 * ub.c // 8
    for elems in (x * y for y in sub_y for x in sub_x):
        if q.kind == POOLING:
            steps = 1
            cycles = max(4, elems) * nxy * nz
            if q.ifm.bits == 16:
                cycles *= 2
        elif q.kind == DEPTHWISE:
            cycles = 4 * nxy * (2 if q.ifm.bits == 16 else 1)
            steps = _div_up(elems, 4)
            cycles = max(wb, cycles) * steps * nz
        elif (q.kind == CONV and not cfg.part_kernel) or q.kind in (VECTOR_PRODUCT, REDUCE_SUM):
            steps = elems
            cycles = max(wb, 4 * nxy) * steps * nz
        else:
            steps = _div_up(elems, 2 if q.ifm.bits == 16 else 4)
            cycles = max(wb, 4 * nxy) * steps * _div_up(ifm_block.c, 8) * nz
        delay = 0
        if nx == 1 and ny == 1:   # one micro-block per block: the pipeline waits between kernel steps
            if nz == 1:
                delay = arch.dpu_delay_cycles * steps
            elif steps > 1:
                delay = arch.dpu_delay_cycles * (steps - 1) * nz
        if q.kind == CONV and cfg.part_kernel:
            delay *= _div_up(ifm_block.c, 8)
        dpu += cycles + delay
    if q.kind in (CONV, VECTOR_PRODUCT, REDUCE_SUM):
        dpu *= _div_up(q.ifm.shape.c, ifm_block.c)
    dpu /= arch.cores
    n_blocks = q.ofm.shape.div_up(ofm_block).elements()
    out = math.ceil(_output_cycles_per_element(arch, q, cfg) * ofm_block.elements())
    out_f = float(out)
    if q.const is not None:
        out_f = max(out_f, 10 * ofm_block.c * q.const.latency / 256)
    ifm_c, ofm_c = _minimum_memory_cycles(arch, q, cfg)
    cmd = (ifm_c + ofm_c + out_f + dpu) / 4
    dpu = max(dpu, cmd)
    out_f = max(out_f, cmd)
    total = dpu * n_blocks + out_f if dpu > out_f else out_f * n_blocks + dpu
    return int(total)


@functools.lru_cache(maxsize=1 << 16)
def op_cost(arch: BlockArch, q: Query) -> OpCost | None:
    """Vela's cycles and element accesses of one operation (``npu_performance.measure_cycle_cost``
    and ``measure_element_access`` with the block of ``find_block_config``); None when no block
    fits (the caller keeps the efficiency model).  Cached: the block search is the slow part of a
    timeline, and a plan's steps repeat the same operations estimate after estimate."""
    cfg = find_block_config(arch, q)
    if cfg is None:
        return None
    k = q.kernel
    if q.kind in (CONV, DEPTHWISE, VECTOR_PRODUCT, POOLING, REDUCE_SUM):
        depth = 1 if q.kind in (DEPTHWISE, POOLING) else q.ifm.shape.c
        macs = k.elements_wh() * depth * q.ofm.shape.elements()
        cycles = _conv_cycles(arch, q, cfg)
    else:
        macs = 0
        rounding = Shape(1, 1, 1, 16 if q.ofm.format == NHCWB16 else 1)
        cycles = math.ceil(_output_cycles_per_element(arch, q, cfg) * q.ofm.shape.round_up(rounding).elements())
    # measure_element_access
    ifm_block = q.ifm.shape.min(cfg.ifm_block)
    ofm_block = q.ofm.shape.min(cfg.ofm_block)
    ifm_round = Shape(1, 1, 1, 16 if q.ifm.format == NHCWB16 else 1)
    ofm_round = Shape(1, 1, 1, 16 if q.ofm.format == NHCWB16 else 1)
    ifm_read = ifm2_read = weight_read = scale_read = 0
    if q.kind != ELEMENTWISE:
        blocks = q.ofm.shape.div_up(ofm_block)
        block_depth = ofm_block.c
        if q.kind in (DEPTHWISE, POOLING):
            blocks = blocks.with_c(1)
            block_depth = q.ifm.shape.c
        skh, skw = (1, 1) if q.kind == VECTOR_PRODUCT else arch.sub_kernel_max
        # Vela divides the width by the first limit and the height by the second (both 8 here).
        subkernels = _div_up(k.w, skh) * _div_up(k.h, skw)
        count = blocks.elements()
        ifm_fetch = ifm_block.round_up(ifm_round).elements_wh() * q.ifm.shape.round_up(ifm_round).c
        kernel_read = k.elements_wh() * (1 if q.kind in (DEPTHWISE, POOLING) else q.ifm.shape.c)
        ifm_read = ifm_fetch * subkernels * count
        if q.kind not in (POOLING, REDUCE_SUM):
            weight_read = kernel_read * block_depth * count
            scale_read = q.ofm.shape.c
    else:
        full = q.ofm.shape.round_up(ifm_round).elements()
        if q.ifm.shape.elements() == 1:
            if q.ifm.bits > 8:
                ifm_read = q.ifm.shape.round_up(ifm_round).elements()
            if q.ifm2 is not None:
                ifm2_read = full
        else:
            ifm_read = full
            if q.ifm2 is not None:
                if q.ifm2.shape.elements() > 1:
                    ifm2_read = full
                elif q.ifm2.bits > 8:
                    ifm2_read = q.ifm2.shape.round_up(ifm_round).elements()
    ofm_write = q.ofm.shape.round_up(ofm_round).elements()
    c = arch.cores
    ifm_scale = _transfer_scale(q.ifm.memory.burst, True, q.ifm.format, q.ifm.bits, cfg.ifm_block, q.ifm.shape, c)
    ifm2_scale = 1.0 if q.ifm2 is None else _transfer_scale(q.ifm2.memory.burst, True, q.ifm2.format, q.ifm2.bits,
                                                            cfg.ifm_block, q.ifm2.shape, c)
    ofm_scale = _transfer_scale(q.ofm.memory.burst, False, q.ofm.format, q.ofm.bits, cfg.ofm_block, q.ofm.shape, c)
    return OpCost(cycles=cycles, macs=macs, config=cfg, ifm_read=ifm_read, ifm2_read=ifm2_read, ofm_write=ofm_write,
                  weight_read=weight_read, scale_read=scale_read, ifm_scale=ifm_scale, ifm2_scale=ifm2_scale,
                  ofm_scale=ofm_scale)


__all__ = ["CONV", "DEPTHWISE", "ELEMENTWISE", "NHCWB16", "NHWC", "POOLING", "REDUCE_SUM", "VECTOR_PRODUCT",
           "BlockArch", "BlockConfig", "Kernel", "Memory", "OpCost", "Operand", "Query", "Shape", "find_block_config",
           "op_cost"]
