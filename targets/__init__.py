"""Memory-hierarchy targets: typed descriptions loaded from TOML files and built-in presets,
and the emitters that lower a plan to firmware artefacts."""

from targets.hierarchy import Hierarchy, Level, load_target, list_presets, parse_size

__all__ = ["Hierarchy", "Level", "load_target", "list_presets", "parse_size"]
