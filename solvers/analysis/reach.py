"""Reachability in an operator DAG as bitsets: which operators must run before / after each.

Both traffic lower bounds need "always before" and "always after" for every operator (a
buffer crosses an operator in every order when its producer is an ancestor and a consumer a
descendant); Python ints as bitsets make that one pass each way over a topological order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence


def reach_bitsets(
    ops: Sequence[int], preds_of: Callable[[int], Iterable[int]]
) -> tuple[dict[int, int], list[int], list[int]]:
    """``ops`` in topological order -> (position of each op, strict-ancestor bitset and
    strict-descendant bitset per position; bit ``j`` stands for ``ops[j]``)."""
    pos = {op: i for i, op in enumerate(ops)}
    n = len(ops)
    anc = [0] * n
    for i, op in enumerate(ops):
        a = 0
        for p in preds_of(op):
            j = pos[p]
            a |= anc[j] | (1 << j)
        anc[i] = a
    desc = [0] * n
    for i in range(n - 1, -1, -1):
        for p in preds_of(ops[i]):
            j = pos[p]
            desc[j] |= desc[i] | (1 << i)
    return pos, anc, desc


def bits(x: int) -> Iterator[int]:
    """The positions of the set bits of ``x``, lowest first (the members of a bitset)."""
    while x:
        low = x & -x
        yield low.bit_length() - 1
        x ^= low


__all__ = ["bits", "reach_bitsets"]
