"""One exception hierarchy for the whole tool.

Every error a user can cause (bad model, bad target, impossible capacity, bad plan file) is a
``StowageError`` whose message is one actionable line; the CLI prints it and exits with the
error's ``exit_code`` and no traceback.  Programming errors stay ordinary exceptions.
"""

from __future__ import annotations


class StowageError(Exception):
    """Base of every user-facing error. ``str(err)`` is a single line that names the problem."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        # Errors are printed on one line: fold any newline a library message smuggles in.
        super().__init__(" ".join(str(message).split()))


class ModelError(StowageError):
    """The ONNX model cannot be read or does not describe a plannable graph."""


class TargetError(StowageError):
    """A memory-hierarchy description is malformed or names something that does not exist."""


class CapacityError(StowageError):
    """The requested capacity cannot hold what one operator needs (below M_R)."""


class PlanFormatError(StowageError):
    """A plan file is not a well-formed stowage plan."""


class SolverError(StowageError):
    """A solver was misused (unknown name, bad parameter) or failed to produce a plan."""


class InfeasibleError(SolverError):
    """The problem is proven infeasible; the message says why (capacity needed, operator)."""
