"""Solvers: exact and heuristic planners and the COSMA baselines, registered by name."""

from stowage.solvers.problem import Problem
from stowage.solvers.registry import available, get, register, solve

__all__ = ["Problem", "available", "get", "register", "solve"]
