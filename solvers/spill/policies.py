"""Victim choice: which resident buffers leave the compute level when a request does not fit.

* ``belady``  -- evict the buffer whose next use is furthest in the future, again and again
  until the request fits (a size-blind classic);
* ``greedy``  -- per decision, the eviction set with the least *added* traffic: a clean
  buffer (a valid copy exists off-chip: inputs, weights, outputs already stored, buffers
  spilled before) costs its reload, a dirty one its store plus its reload;
* ``cost``    -- the heuristic's policy: added traffic (in byte-hops, i.e. weighted by how
  far the copy travels) divided by ``distance ** beta`` where ``distance`` is the number of
  steps until the victim is needed again, so cheap and long-unused buffers go first.

Online mode asks ``window_victims``: the policy scores every contiguous window ``[x, x +
size)`` that holds no pinned buffer by the victims overlapping it, so an eviction always
opens a hole that is actually usable; Belady keeps evicting in its order until a hole fits and
then keeps only the victims that overlap the hole it uses.  Byte-count mode asks
``bytes_order`` for the candidates in the order they should go.
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING

from stowage.solvers.alloc.interval import align_up

if TYPE_CHECKING:
    from stowage.solvers.spill.engine import SpillEngine

INF = math.inf


def window_victims(eng: SpillEngine, s: int, size: int, pinned: set[int]) -> list[int] | None:
    """The buffers to evict so that ``size`` bytes fit in the arena before step ``s`` without
    touching ``pinned``; ``None`` when no window without a pinned block exists."""
    arena, uses, cfg = eng.state.arena, eng.uses, eng.cfg
    blocks = arena.blocks
    if cfg.policy == "belady":
        cands = [blk for blk in blocks if blk[2] not in pinned and blk[2] >= 0]
        ranked = sorted(cands, key=lambda blk: (-uses.next_use(blk[2], s), -blk[1] + blk[0], blk[2]))
        removed: set[int] = set()
        for blk in ranked:
            removed.add(blk[2])
            rest = [x for x in blocks if x[2] not in removed]
            off = arena.find(size, cfg.fit, rest)
            if off is not None:
                return [x[2] for x in blocks if x[2] in removed and x[0] < off + size and x[1] > off]
        return None
    best: tuple | None = None
    starts = sorted({0, *(align_up(blk[1], eng.alignment) for blk in blocks)})
    cap = eng.capacity if eng.capacity is not None else INF
    for x in starts:
        if x + size > cap:
            break
        k = bisect.bisect_left(blocks, (x, -1, -(10**18)))
        lo = k - 1 if k > 0 and blocks[k - 1][1] > x else k
        victims: list[int] = []
        ok = True
        m = lo
        while m < len(blocks) and blocks[m][0] < x + size:
            key = blocks[m][2]
            if key in pinned or key < 0:
                ok = False
                break
            if blocks[m][1] > x:
                victims.append(key)
            m += 1
        if not ok:
            continue
        score = _window_score(eng, victims, s)
        if best is None or score < best[0]:
            best = (score, victims)
    return None if best is None else best[1]


def _window_score(eng: SpillEngine, victims: list[int], s: int) -> tuple:
    """Lower is better: added traffic (``greedy``) or traffic over distance (``cost``), then
    fewer bytes evicted, then the victims needed latest."""
    buffers, uses = eng.graph.buffers, eng.uses
    nbytes = sum(buffers[v].bytes for v in victims)
    nearest = min((uses.next_use(v, s) for v in victims), default=INF)
    if eng.cfg.policy == "greedy":
        traffic = sum(eng.evict_cost(v) for v in victims)
        return (traffic, nbytes, -nearest)
    weighted = sum(eng.evict_cost(v) / max(1.0, uses.next_use(v, s) - s) ** eng.cfg.beta for v in victims)
    return (weighted, nbytes, -nearest)


def bytes_order(eng: SpillEngine, cands: list[int], s: int) -> list[int]:
    """Byte-count mode: ``cands`` in the order the policy evicts them before step ``s``."""
    buffers, uses, cfg = eng.graph.buffers, eng.uses, eng.cfg
    if cfg.policy == "belady":
        return sorted(cands, key=lambda b: (-uses.next_use(b, s), -buffers[b].bytes, b))
    if cfg.policy == "greedy":
        return sorted(cands, key=lambda b: (eng.evict_cost(b) / buffers[b].bytes, -uses.next_use(b, s), b))
    beta = cfg.beta
    return sorted(cands, key=lambda b: (eng.evict_cost(b) / buffers[b].bytes
                                        / max(1.0, uses.next_use(b, s) - s) ** beta, b))


__all__ = ["bytes_order", "window_victims"]
