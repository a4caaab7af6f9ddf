"""Imports every built-in solver module so that each registers itself."""

import solvers.naive  # noqa: F401
import solvers.exact  # noqa: F401  (early: loads OR-Tools before anything imports pulp)
import solvers.baselines  # noqa: F401
import solvers.heuristic  # noqa: F401
import solvers.minpeak  # noqa: F401
import solvers.exact_alloc_plan  # noqa: F401
import solvers.divide  # noqa: F401
