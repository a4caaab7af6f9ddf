"""Memory-hierarchy targets: typed descriptions loaded from TOML files and built-in presets.

The emitters that lower a plan to firmware artefacts are a backend (``stowage.backend``): a
target describes hardware and imports nothing above the IR's errors.
"""

from stowage.targets.hierarchy import Hierarchy, Level, list_presets, load_target, parse_size

__all__ = ["Hierarchy", "Level", "list_presets", "load_target", "parse_size"]
