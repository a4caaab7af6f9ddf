"""Residency and replacement for a fixed operator order: the spill engine and its parts."""
