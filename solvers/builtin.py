"""Imports every built-in solver module so that each registers itself."""

import solvers.naive  # noqa: F401
import solvers.baselines  # noqa: F401
import solvers.heuristic  # noqa: F401
import solvers.minpeak  # noqa: F401
