"""Imports every built-in solver module so that each registers itself.

OR-Tools is loaded first, before anything could import pulp: pulp imports highspy when it can,
and OR-Tools cannot load after highspy (both ship a ``libhighs``).
"""

from ortools.sat.python import cp_model  # noqa: F401  (import order matters)

import stowage.solvers.baselines
import stowage.solvers.divide
import stowage.solvers.exact.pipeline
import stowage.solvers.exact_alloc_plan
import stowage.solvers.heuristic
import stowage.solvers.minpeak
import stowage.solvers.naive  # noqa: F401  (imported for its registration, like the others)
