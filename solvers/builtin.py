"""Imports every built-in solver module so that each registers itself."""

import stowage.solvers.naive  # noqa: F401
import stowage.solvers.exact.pipeline  # noqa: F401  (early: loads OR-Tools before anything imports pulp)
import stowage.solvers.baselines  # noqa: F401
import stowage.solvers.heuristic  # noqa: F401
import stowage.solvers.minpeak  # noqa: F401
import stowage.solvers.exact_alloc_plan  # noqa: F401
import stowage.solvers.divide  # noqa: F401
