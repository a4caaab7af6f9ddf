"""``[compute.blocks]``: the block parameters of an Ethos-U class NPU, for the time model only.

A target whose ``[compute]`` table has a ``blocks`` sub-table gets its operators' compute time
from Vela's block-configuration cycle model (``stowage.solvers.block_model``) instead of one
efficiency per operator class; ``docs/targets.md`` ("Compute") lists the keys, the presets take
their values from Vela 5.2.0's ``architecture_features.py`` (Apache-2.0).  Bad values are
one-line errors naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: ``[compute.blocks.output_cycles_per_element]`` keys, in the order of Vela's
#: ``output_cycles_per_elem`` tuple (``architecture_features._generate_output_perf_tables``).
OUTPUT_CYCLE_KEYS = ("elementwise_32bit_binary", "elementwise_32bit_unary", "mul_32bit", "acc40_or_mul",
                     "add_simple", "add", "maxpool", "default")
#: ``[compute.blocks.activation_cycles_per_element]`` keys (Vela's ``activation_cycles_per_elem``).
ACTIVATION_CYCLE_KEYS = ("lut", "relu", "none")
#: ``[compute.blocks.shram_granules]`` keys (Vela's ``SHRAMElements`` order).
GRANULE_KEYS = ("ifm8", "ifm16", "ifm8_elementwise", "ifm16_elementwise", "ifm32", "acc16", "acc32", "acc40")



@dataclass(frozen=True)
class BlockArch:
    """The NPU's block parameters (``[compute.blocks]``; Vela's ``ArchitectureFeatures`` for one
    accelerator configuration, ``architecture_features.py``).  Shapes are ``(height, width,
    depth)``."""

    ofm_ublock: tuple[int, int, int]
    ifm_ublock: tuple[int, int, int]
    ofm_block_max: tuple[int, int, int]
    sub_kernel_max: tuple[int, int]
    shram_banks: int
    shram_bank_bytes: int
    shram_reserved_output_banks: int
    shram_reserved_end_banks: int
    shram_granules: Mapping[str, int]
    output_cycles_per_element: Mapping[str, float]
    activation_cycles_per_element: Mapping[str, float]
    ofm_split_depth: int = 16
    cores: int = 1
    dpu_delay_cycles: int = 2

    def __post_init__(self) -> None:
        for name in ("shram_granules", "output_cycles_per_element", "activation_cycles_per_element"):
            object.__setattr__(self, name, dict(getattr(self, name)))

    def __hash__(self) -> int:
        return hash((self.ofm_ublock, self.ifm_ublock, self.ofm_block_max, self.sub_kernel_max, self.shram_banks,
                     self.shram_bank_bytes, self.shram_reserved_output_banks, self.shram_reserved_end_banks,
                     tuple(sorted(self.shram_granules.items())), tuple(sorted(self.output_cycles_per_element.items())),
                     tuple(sorted(self.activation_cycles_per_element.items())), self.ofm_split_depth, self.cores,
                     self.dpu_delay_cycles))




def parse_blocks(raw: Any, err: Callable[[str, str], Exception]) -> BlockArch:
    """``[compute.blocks]`` -> ``BlockArch``; ``err(key, message)`` makes the caller's one-line error."""
    allowed = {"ofm_ublock", "ifm_ublock", "ofm_block_max", "sub_kernel_max", "shram_banks", "shram_bank_bytes",
               "shram_reserved_output_banks", "shram_reserved_end_banks", "shram_granules",
               "output_cycles_per_element", "activation_cycles_per_element", "ofm_split_depth", "cores",
               "dpu_delay_cycles"}
    if not isinstance(raw, Mapping):
        raise err("compute.blocks", "must be a table (docs/targets.md, 'Compute')")
    unknown = set(raw) - allowed
    if unknown:
        raise err(f"compute.blocks.{sorted(unknown)[0]}", f"unknown key; allowed: {', '.join(sorted(allowed))}")

    def whole(key: str, v: Any, lo: int = 1, hi: int = 1 << 16) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise err(f"compute.blocks.{key}", f"must be a whole number from {lo} to {hi}, got {v!r:.40}")
        return v

    def triple(key: str, n: int = 3) -> tuple[int, ...]:
        v = raw.get(key)
        if v is None:
            raise err(f"compute.blocks.{key}", "required in [compute.blocks]")
        if not isinstance(v, list) or len(v) != n:
            axes = "height, width, depth" if n == 3 else "height, width"
            raise err(f"compute.blocks.{key}", f"must be a list of {n} whole numbers ({axes})")
        return tuple(whole(key, x) for x in v)

    def table(key: str, keys: tuple[str, ...], real: bool) -> dict[str, Any]:
        v = raw.get(key)
        if not isinstance(v, Mapping):
            raise err(f"compute.blocks.{key}", f"required table with keys {', '.join(keys)}")
        out: dict[str, Any] = {}
        for k in keys:
            if k not in v:
                raise err(f"compute.blocks.{key}.{k}", "required")
        for k, x in v.items():
            if k not in keys:
                raise err(f"compute.blocks.{key}.{k:.40}", f"unknown key; allowed: {', '.join(keys)}")
            if real:
                ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 <= x <= 1e3
                if not ok:
                    raise err(f"compute.blocks.{key}.{k}", f"must be a finite number from 0 to 1000, got {x!r:.40}")
                out[k] = float(x)
            else:
                out[k] = whole(f"{key}.{k}", x)
        return out

    for key in ("shram_banks", "shram_bank_bytes", "shram_reserved_output_banks", "shram_reserved_end_banks"):
        if key not in raw:
            raise err(f"compute.blocks.{key}", "required in [compute.blocks]")
    ofm_ublock = triple("ofm_ublock")
    ifm_ublock = triple("ifm_ublock")
    ofm_block_max = triple("ofm_block_max")
    sub_kernel_max = triple("sub_kernel_max", 2)
    arch = BlockArch(
        ofm_ublock=(ofm_ublock[0], ofm_ublock[1], ofm_ublock[2]),
        ifm_ublock=(ifm_ublock[0], ifm_ublock[1], ifm_ublock[2]),
        ofm_block_max=(ofm_block_max[0], ofm_block_max[1], ofm_block_max[2]),
        sub_kernel_max=(sub_kernel_max[0], sub_kernel_max[1]),
        shram_banks=whole("shram_banks", raw["shram_banks"]),
        shram_bank_bytes=whole("shram_bank_bytes", raw["shram_bank_bytes"]),
        shram_reserved_output_banks=whole("shram_reserved_output_banks", raw["shram_reserved_output_banks"], 0),
        shram_reserved_end_banks=whole("shram_reserved_end_banks", raw["shram_reserved_end_banks"], 0),
        shram_granules=table("shram_granules", GRANULE_KEYS, real=False),
        output_cycles_per_element=table("output_cycles_per_element", OUTPUT_CYCLE_KEYS, real=True),
        activation_cycles_per_element=table("activation_cycles_per_element", ACTIVATION_CYCLE_KEYS, real=True),
        ofm_split_depth=whole("ofm_split_depth", raw.get("ofm_split_depth", 16)),
        cores=whole("cores", raw.get("cores", 1), 1, 64),
        dpu_delay_cycles=whole("dpu_delay_cycles", raw.get("dpu_delay_cycles", 2), 0, 64),
    )
    if arch.shram_reserved_output_banks + arch.shram_reserved_end_banks >= arch.shram_banks:
        raise err("compute.blocks.shram_banks", "must exceed the reserved output and end banks")
    return arch


__all__ = ["ACTIVATION_CYCLE_KEYS", "GRANULE_KEYS", "OUTPUT_CYCLE_KEYS", "BlockArch", "parse_blocks"]
