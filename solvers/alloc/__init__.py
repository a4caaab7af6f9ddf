"""Offset assignment for buffers with fixed lifetimes: the interval vocabulary
(``interval``), one level's occupancy over time (``occupancy``, shared by the spill engine and
plan assembly), greedy packing (``greedy``), the exact MiniMalloc-style search (``exact``, with
its compiled kernel ``exact_jit``) and MiniMalloc's CSV format (``minimalloc_csv``)."""
