"""The plan layer: the plan model, its JSON file format, and the independent validator.

It sits below the solvers (they build plans) and above the IR and the targets (a plan refers
to both by name).  The validator (``stowage.plan.validate``) imports only ``stowage.ir`` and
this package, so every solver's plan can be checked without the checker knowing solvers.
"""

from stowage.plan.files import write_text_atomic
from stowage.plan.json_format import load_plan, plan_from_dict, plan_from_json, plan_to_dict, plan_to_json, save_plan
from stowage.plan.model import (
    BUFFER_KINDS,
    FORMAT,
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
    PlanStep,
    RowTransfer,
    SolverInfo,
    Stripe,
    TargetRef,
    Transfer,
    WeightLoad,
)

__all__ = [
    "BUFFER_KINDS",
    "FORMAT",
    "PHASES",
    "READABLE_VERSIONS",
    "RING_MODES",
    "STATUSES",
    "VERSION",
    "Cascade",
    "CascadeTensor",
    "LevelRef",
    "Metrics",
    "ModelRef",
    "Placement",
    "Plan",
    "PlanBuffer",
    "PlanOptions",
    "PlanStep",
    "RowTransfer",
    "SolverInfo",
    "Stripe",
    "TargetRef",
    "Transfer",
    "WeightLoad",
    "load_plan",
    "plan_from_dict",
    "plan_from_json",
    "plan_to_dict",
    "plan_to_json",
    "save_plan",
    "write_text_atomic",
]
