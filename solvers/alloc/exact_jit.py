"""The compiled inner loop of ``stowage.solvers.alloc.exact`` (numba), node for node the same search.

Why a second copy of the search: the branch and bound needs millions of nodes on the hardest
MiniMalloc instances (the C++ original explores them in seconds); the pure-Python search
manages about 25k nodes/s, this one two orders of magnitude more.  ``alloc.exact`` keeps the
Python search as the reference (and as the fallback when numba is missing); the tests check
that both visit the same number of nodes and return the same offsets.

State lives in flat int64 arrays (CSR lists for overlaps and section members) so that no
Python object is touched per node:

* ``P`` (read-only): sizes, first section, one-past-last section, overlap CSR (ptr, idx),
  section-member CSR (ptr, idx), lifetime widths, the preorder heuristic (0=W, 1=A, 2=T);
* ``M`` (mutable, restored on backtrack): offsets (-1 = unplaced), the last offsets of each
  placed buffer (the solution), minimum offsets, unplaced bytes per section, a cached member
  per section, live-cut counts between sections, counters ``[nodes, node_limit]``.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit, objmode

FOUND, NOTFOUND, ABORTED, TIMEOUT = 0, 1, 2, 3
_BIG = np.int64(1) << np.int64(62)


@njit(cache=True)
def prepare(bufs, P, M):
    """Preorder one partition: sort ``bufs`` (ascending ids) by the heuristic's keys, all
    descending, ties by id; T is the largest *current* unplaced total of the buffer's
    sections, as MiniMalloc computes it when a sub-problem starts."""
    sizes, sec_lo, sec_hi, widths, heur = P[0], P[1], P[2], P[7], P[8]
    total = M[3]
    k = len(bufs)
    order = np.arange(k)
    for hc in range(len(heur) - 1, -1, -1):
        c = heur[hc]
        key = np.empty(k, np.int64)
        for j in range(k):
            i = bufs[order[j]]
            if c == 0:
                v = widths[i]
            elif c == 1:
                v = widths[i] * sizes[i]
            else:
                v = 0
                for s in range(sec_lo[i], sec_hi[i]):
                    if total[s] > v:
                        v = total[s]
            key[j] = -v
        order = order[np.argsort(key, kind="mergesort")]
    return bufs[order]


@njit(cache=True)
def _now():
    with objmode(t="float64"):
        t = time.perf_counter()
    return t


_SEARCH, _PARTS = 0, 1


@njit(cache=True)
def decide(node_limit, P, M, cap, deadline):
    """One restart: the whole problem under one preorder and node budget.

    An explicit-stack depth-first search (numba cannot cache recursive functions): a
    *search* frame is a node trying its candidates one after the other; a *parts* frame
    solves the independent pieces of a dynamic decomposition one after the other.  A frame's
    buffer lists live on flat stacks (``FB`` ids, ``FR`` preorder ranks, ``FO`` candidate
    order) from ``base[d]``; minimum-offset changes go on a trail and are undone on return.
    """
    sizes, sec_lo, sec_hi, ov_ptr, ov_idx, mem_ptr, mem_idx = P[0], P[1], P[2], P[3], P[4], P[5], P[6]
    off, sol, minoff, total, witness, cuts, ctr = M[0], M[1], M[2], M[3], M[4], M[5], M[6]
    n = len(sizes)
    nsec = len(total)
    ctr[0] = 0
    ctr[1] = node_limit
    K = np.int64(n + 1)
    D = 2 * n + 4
    kind = np.zeros(D, np.int64)
    base = np.zeros(D, np.int64)
    fm = np.zeros(D, np.int64)
    slo = np.zeros(D, np.int64)
    shi = np.zeros(D, np.int64)
    loff = np.zeros(D, np.int64)
    lrank = np.zeros(D, np.int64)
    jj = np.zeros(D, np.int64)
    minh = np.zeros(D, np.int64)
    room = np.zeros(D, np.int64)
    curj = np.zeros(D, np.int64)
    trail0 = np.zeros(D, np.int64)
    hat = np.zeros(D, np.bool_)
    cutdec = np.zeros(D, np.bool_)
    pa = np.zeros(D, np.int64)  # parts frame: start section of the next piece
    ps = np.zeros(D, np.int64)  # parts frame: next section to examine
    # The path's lists need up to ~n^2 entries in the worst case but far fewer in practice:
    # start small and double on demand.
    L = min(n * (n + 1) + 4 * n + 16, 8 * n + 64)
    FB = np.empty(L, np.int64)
    FR = np.empty(L, np.int64)
    FO = np.empty(L, np.int64)
    tcap = 0
    for i in range(n):
        tcap += ov_ptr[i + 1] - ov_ptr[i]
    TO = np.empty(tcap + 1, np.int64)
    TV = np.empty(tcap + 1, np.int64)
    tt = 0

    # Root: a parts frame over every buffer.
    d = 0
    kind[0] = _PARTS
    base[0] = 0
    fm[0] = n
    for i in range(n):
        FB[i] = i
    slo[0] = 0
    shi[0] = nsec
    pa[0] = 0
    ps[0] = 0
    action = 1  # 0: enter the search frame d; 1: advance frame d; 2: return ``st`` from frame d
    st = FOUND
    while True:
        if action == 0:
            ctr[0] += 1
            if ctr[0] > ctr[1]:
                st = ABORTED
                action = 2
                continue
            if (ctr[0] & 1023) == 0 and _now() > deadline:
                st = TIMEOUT
                action = 2
                continue
            m = fm[d]
            if m == 0:
                st = FOUND
                action = 2
                continue
            b0 = base[d]
            keys = np.empty(m, np.int64)
            mh = _BIG
            for j in range(m):
                i = FB[b0 + j]
                keys[j] = minoff[i] * K + FR[b0 + j]
                h = minoff[i] + sizes[i]
                if h < mh:
                    mh = h
            FO[b0:b0 + m] = np.argsort(keys)
            mx = 0
            for s in range(slo[d], shi[d]):
                if total[s] > mx:
                    mx = total[s]
            minh[d] = mh
            room[d] = cap - mx
            jj[d] = 0
            curj[d] = -1
            action = 1
            continue

        if action == 1:
            if kind[d] == _PARTS:
                # Start the next non-empty piece, or report the whole decomposition solved.
                b0, m, s_hi = base[d], fm[d], shi[d]
                started = False
                while ps[d] < s_hi:
                    s = ps[d]
                    ps[d] = s + 1
                    if s == s_hi - 1 or cuts[s] == 0:
                        a, b = pa[d], s + 1
                        pa[d] = b
                        k = 0
                        sel = np.empty(m, np.int64)
                        for q in range(m):
                            i = FB[b0 + q]
                            if sec_lo[i] < b and sec_hi[i] > a:
                                sel[k] = i
                                k += 1
                        if k:
                            ordered = prepare(sel[:k], P, M)
                            nb = b0 + m
                            if nb + k > L:
                                L = 2 * (nb + k)
                                FB, FR, FO = _grow(FB, L), _grow(FR, L), _grow(FO, L)
                            FB[nb:nb + k] = ordered
                            FR[nb:nb + k] = np.arange(k)
                            d += 1
                            kind[d] = _SEARCH
                            base[d] = nb
                            fm[d] = k
                            slo[d] = a
                            shi[d] = b
                            loff[d] = -1
                            lrank[d] = -1
                            started = True
                            break
                if started:
                    action = 0
                else:
                    st = FOUND
                    action = 2
                continue
            # A search frame: try its next candidate.
            b0, m = base[d], fm[d]
            s_lo, s_hi = slo[d], shi[d]
            pushed = False
            while jj[d] < m:
                j = FO[b0 + jj[d]]
                jj[d] += 1
                i = FB[b0 + j]
                r = FR[b0 + j]
                mo = minoff[i]
                if mo >= minh[d] or mo > room[d]:
                    break  # dominance / offsets only grow from here: some section cannot fit
                if mo < loff[d] or (mo == loff[d] and r < lrank[d]):
                    continue  # canonical order
                size = sizes[i]
                h = mo + size
                off[i] = mo
                sol[i] = mo
                trail0[d] = tt
                hatless = True
                a_lo, a_hi = s_hi, s_lo
                for p in range(ov_ptr[i], ov_ptr[i + 1]):
                    o = ov_idx[p]
                    if off[o] < 0:
                        hatless = False
                        if minoff[o] < h:
                            TO[tt] = o
                            TV[tt] = minoff[o]
                            tt += 1
                            minoff[o] = h
                            if sec_lo[o] < a_lo:
                                a_lo = sec_lo[o]
                            if sec_hi[o] > a_hi:
                                a_hi = sec_hi[o]
                hat[d] = hatless
                for s in range(sec_lo[i], sec_hi[i]):
                    total[s] -= size
                ok = True
                for s in range(max(a_lo, s_lo), min(a_hi, s_hi)):
                    t = total[s]
                    if t == 0:
                        continue
                    w = witness[s]
                    if off[w] < 0 and minoff[w] + t <= cap:
                        continue
                    f = _BIG
                    for q in range(mem_ptr[s], mem_ptr[s + 1]):
                        x = mem_idx[q]
                        if off[x] < 0 and minoff[x] < f:
                            f = minoff[x]
                            w = x
                    witness[s] = w
                    if f + t > cap:
                        ok = False
                        break
                curj[d] = j
                if not ok:
                    _undo(d, i, False, tt, trail0, TO, TV, minoff, total, cuts, off, sizes, sec_lo, sec_hi)
                    tt = trail0[d]
                    curj[d] = -1
                    if hatless:
                        break
                    continue
                split = False
                for s in range(sec_lo[i], sec_hi[i] - 1):
                    cuts[s] -= 1
                    if cuts[s] == 0 and s_lo <= s < s_hi - 1:
                        split = True
                cutdec[d] = True
                nb = b0 + m
                if nb + m > L:
                    L = 2 * (nb + m)
                    FB, FR, FO = _grow(FB, L), _grow(FR, L), _grow(FO, L)
                c = 0
                for q in range(m):
                    if q != j:
                        FB[nb + c] = FB[b0 + q]
                        FR[nb + c] = FR[b0 + q]
                        c += 1
                d += 1
                base[d] = nb
                fm[d] = m - 1
                slo[d] = s_lo
                shi[d] = s_hi
                if split:
                    # Dynamic decomposition: the pieces start anew (ids ascending).
                    FB[nb:nb + m - 1] = np.sort(FB[nb:nb + m - 1])
                    kind[d] = _PARTS
                    pa[d] = s_lo
                    ps[d] = s_lo
                    action = 1
                else:
                    kind[d] = _SEARCH
                    loff[d] = mo
                    lrank[d] = r
                    action = 0
                pushed = True
                break
            if not pushed:
                st = NOTFOUND
                action = 2
            continue

        # action == 2: frame d is done with status ``st``; hand it to its parent.
        if d == 0:
            return st
        d -= 1
        if kind[d] == _PARTS:
            if st == FOUND:
                action = 1  # the next piece
            else:
                action = 2
            continue
        i = FB[base[d] + curj[d]]
        _undo(d, i, cutdec[d], tt, trail0, TO, TV, minoff, total, cuts, off, sizes, sec_lo, sec_hi)
        tt = trail0[d]
        cutdec[d] = False
        curj[d] = -1
        if st != NOTFOUND:
            action = 2
        elif hat[d]:
            action = 2  # nothing above it: its placement cannot be what made the rest fail
        else:
            action = 1


@njit(cache=True)
def _grow(a, size):
    """``a`` copied into a larger array of ``size`` entries."""
    b = np.empty(size, a.dtype)
    b[:len(a)] = a
    return b


@njit(cache=True)
def _undo(d, i, cut, tt, trail0, TO, TV, minoff, total, cuts, off, sizes, sec_lo, sec_hi):
    """Take back frame d's placement of buffer i (cuts, section totals, minimum offsets)."""
    if cut:
        for s in range(sec_lo[i], sec_hi[i] - 1):
            cuts[s] += 1
    size = sizes[i]
    for s in range(sec_lo[i], sec_hi[i]):
        total[s] += size
    for q in range(tt - 1, trail0[d] - 1, -1):
        minoff[TO[q]] = TV[q]
    off[i] = -1
