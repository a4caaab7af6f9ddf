"""Offset assignment for buffers with fixed lifetimes: the interval vocabulary
(``interval``), greedy packing (``greedy``), the exact MiniMalloc-style search (``exact``, with
its compiled kernel ``exact_jit``) and MiniMalloc's CSV format (``minimalloc_csv``)."""
