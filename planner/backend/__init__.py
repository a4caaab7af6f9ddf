"""Backends: lower a plan to firmware artefacts (``emit``: the C header and the schedule JSON)."""
