"""Imports every built-in solver module so that each registers itself."""

import solvers.naive  # noqa: F401
