"""MobileNetV2's capacity-vs-traffic row model, two accountings (issue 12's 64 KiB goal).

Issue 12's targets at 128 and 64 KiB (150,528 and 213,248 B non-compulsory, 8-bit,
activations only) come from a rough row model in the design notes (``mbv2_tradeoff.py``).
This is a self-contained port of it on stowage's own graph loader, so the figures can be
re-derived and judged without the notes:

* **fused ops** -- every ``Clip`` (ReLU6) is fused into the Conv before it, Flatten is a view:
  64 ops for the suite's MobileNetV2;
* **a segment** ``[i..j]`` of them runs in stripes of ``st`` rows of its last tensor, every op
  making only new rows; a row is freed once every reader in the segment has moved past it, and
  the live bytes are summed *at each instant* (after every op of every stripe), which is the
  per-instant accounting no fixed ring layout reaches (``docs/tiling.md``, "Static rings");
* **a cut** between segments keeps the tensors crossing it whole in SRAM, or sends them to
  DRAM, from where the next segment streams them back in rows.

Two accountings of the traffic a cut plan moves:

``reference``
    the notes' DP, reproduced exactly (213,248 B at 64 KiB, 150,528 B at 128 KiB): one bit
    per boundary; a DRAM boundary charges 2x the bytes of the tensors its segment *makes* that
    live on.  Its own docstring: "a skip tensor crossing a DRAM boundary is charged once".
    Two things it never charges: a tensor made before the segment that crosses the DRAM cut
    (a bystander, or an input also read later), which is "in DRAM" after it without ever being
    written; and a second read when a tensor in DRAM is read by two later segments.
``corrected``
    every byte moved: a tensor sent off-chip is written once (when it crosses its first DRAM
    cut: a tensor the segment makes streams out as it is made, one made earlier is written
    from its whole copy), and read once per later segment that streams it back.  A cut may
    send any subset of the tensors crossing it (a superset of the reference's choices), and a
    tensor stays in DRAM once there.  The DP state is the set of crossing tensors in DRAM.
    It drops one phantom of the notes' walk: Flatten's result (a view, made by no fused op,
    1,280 B) counted whole beside every segment.

Both accountings judge the same per-instant peaks, so the corrected minimum is what the row
model itself allows once every byte is paid.  ``--check`` walks the chosen corrected plan's
segments with stowage's own stripe walk (``solvers/tiling/program.py``, the partition
search's finest band): its static footprint (every ring at its largest window, as plans
allocate them), the most bytes of rows live at one stripe (``stowage.solvers.tiling.slots``)
and those rows packed as small buffers; then it runs the corrected DP again with segments
judged by stowage's walk counted per instant (a cut sending only what its segment makes, as
stowage's partition search does) and packs that plan's rows (``--exact-pack``: the exact
packer tries where the greedy one misses the capacity).  It first prints what stowage's
least-traffic search (``Partitioner.least_traffic``, fixed rings, work unbounded) finds.  Last
(``--headroom``), it judges segments per instant within the capacity less 2, then 4 KiB,
until every segment's rows of the plan found pack greedily within the capacity: the least
traffic a slot-per-row layout of stowage's own programs is known to reach.

    python benchmarks/mbv2_row_model.py                      # the table, 256..64 KiB
    python benchmarks/mbv2_row_model.py --kib 64 --check     # + stowage's walk of the plan
    python benchmarks/mbv2_row_model.py --kib 64 --check --exact-pack 60
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

log = logging.getLogger("mbv2_row_model")

#: The notes' longest segment (fused ops).
MAX_LEN = 12


@dataclass(frozen=True)
class FusedOp:
    """One op of the row model: its type, activation operands (Clip outputs renamed to their
    Conv's), result, and for a Conv its H kernel, stride and top pad."""

    op_type: str
    inputs: tuple[str, ...]
    output: str
    k: int
    s: int
    p: int
    name: str


@dataclass(frozen=True)
class Cut:
    """A segment ``[first..last]`` of fused ops and the tensors sent to DRAM at its end."""

    first: int
    last: int
    sent: frozenset[str]


PeakFn = Callable[[int, int, frozenset[str], frozenset[str]], int]


@dataclass(frozen=True)
class Result:
    traffic: int
    cuts: tuple[Cut, ...]


class RowModel:
    """The notes' row model of one graph (stowage's ``load_graph``, 1 byte per element)."""

    def __init__(self, model: str | Path, stripe_rows: int = 1, max_len: int = MAX_LEN) -> None:
        from stowage import load_graph

        g = load_graph(str(model), element_bytes=1)
        self.graph = g
        self.tensors = g.tensors
        self.st = stripe_rows
        self.max_len = max_len
        ops = [o for o in g.operators if o.computing]
        alias: dict[str, str] = {}
        for o in ops:
            if o.op_type == "Clip":
                alias[o.outputs[0]] = alias.get(o.inputs[0], o.inputs[0])

        def a(n: str) -> str:
            return alias.get(n, n)

        core: list[FusedOp] = []
        for o in ops:
            if o.op_type == "Clip":
                continue
            if o.op_type == "Conv":
                at = o.attributes
                core.append(FusedOp("Conv", (a(o.inputs[0]),), a(o.outputs[0]), int(at["kernel_shape"][0]),
                                    int(at["strides"][0]), int(at["pads"][0]), o.name))
            elif o.op_type == "Add":
                core.append(FusedOp("Add", tuple(a(i) for i in o.inputs), a(o.outputs[0]), 1, 1, 0, o.name))
            else:
                ins = tuple(a(i) for i in o.inputs if i in self.tensors and self.tensors[i].kind.name != "WEIGHT")
                core.append(FusedOp(o.op_type, ins, a(o.outputs[0]), 0, 0, 0, o.name))
        self.core = core
        self.n = len(core)
        self.gin = g.inputs[0]
        self.consumers: dict[str, list[int]] = {}
        for i, c in enumerate(core):
            for t in c.inputs:
                self.consumers.setdefault(t, []).append(i)
        self.prod = {c.output: i for i, c in enumerate(core)}
        self.last_use: dict[str, int] = {}
        for i, c in enumerate(core):
            for t in c.inputs:
                self.last_use[t] = max(self.last_use.get(t, -1), i)
        self._peaks: dict[tuple[int, int, frozenset[str], int, frozenset[str]], int] = {}

    # -- sizes --------------------------------------------------------------------------------
    def shape(self, t: str) -> tuple[int, ...]:
        return tuple(self.tensors[t].shape)

    def row_bytes(self, t: str) -> int:
        s = self.shape(t)
        return s[1] * s[3]

    def nbytes(self, t: str) -> int:
        return int(self.tensors[t].bytes)

    # -- the segment's sets -------------------------------------------------------------------
    def outs(self, i: int, j: int) -> set[str]:
        return {self.core[k].output for k in range(i, j + 1)}

    def leaving(self, i: int, j: int) -> set[str]:
        return {t for t in self.outs(i, j) if self.last_use.get(t, -1) > j}

    def inputs(self, i: int, j: int) -> set[str]:
        outs = self.outs(i, j)
        return {t for k in range(i, j + 1) for t in self.core[k].inputs if t not in outs}

    def bystanders(self, i: int, j: int) -> set[str]:
        ins = self.inputs(i, j)
        return {t for t, last in self.last_use.items() if last > j and self.prod.get(t, -1) < i and t not in ins}

    def crossing(self, b: int) -> frozenset[str]:
        """Tensors live across boundary ``b`` (made before op ``b``, read at or after it)."""
        return frozenset(t for t, last in self.last_use.items() if t in self.prod and self.prod[t] < b <= last)

    # -- the walk -----------------------------------------------------------------------------
    def peak(self, i: int, j: int, streamed: frozenset[str], whole: int, sent: frozenset[str]) -> int:
        """The most bytes live at one instant while ``[i..j]`` runs in stripes: ``whole`` bytes
        held whole from outside, ``streamed`` inputs through rows, results in ``sent`` streamed
        out in rows (the others that live on whole).  The notes' walk, unchanged."""
        key = (i, j, streamed, whole, sent)
        got = self._peaks.get(key)
        if got is not None:
            return got
        core, st = self.core, self.st
        ids = list(range(i, j + 1))
        outs = self.outs(i, j)
        leaving = self.leaving(i, j)
        if len(self.shape(core[j].output)) != 4:          # GAP / Gemm tail: whole tensors
            v = whole + sum(self.nbytes(t) for t in outs) + sum(self.nbytes(t) for t in streamed)
            self._peaks[key] = v
            return v
        rolling = (outs - leaving) | (leaving & sent) | streamed
        end = core[j].output
        h = self.shape(end)[2]
        made = {t: 0 for t in outs}
        got_rows = {t: 0 for t in streamed}
        base = {t: 0 for t in rolling}
        peak = 0
        for a in range(0, h, st):
            want = {end: min(a + st, h)}
            for k in reversed(ids):
                c = core[k]
                if c.output not in want:
                    continue
                for t in c.inputs:
                    need = (min((want[c.output] - 1) * c.s - c.p + c.k, self.shape(t)[2]) if c.op_type == "Conv"
                            else want[c.output])
                    want[t] = max(want.get(t, 0), need)
            for t in outs:
                want.setdefault(t, math.ceil(want[end] * self.shape(t)[2] / h))
            for t in streamed:
                got_rows[t] = max(got_rows[t], want.get(t, 0))
            for k in ids:
                out = core[k].output
                made[out] = max(made[out], want[out])
                live = whole
                for t in outs:
                    live += (made[t] - base[t]) * self.row_bytes(t) if t in rolling else self.nbytes(t)
                for t in streamed:
                    live += (got_rows[t] - base[t]) * self.row_bytes(t)
                peak = max(peak, live)
                for t in (*core[k].inputs, out):
                    if t not in rolling:
                        continue
                    nxt = []
                    for ci in self.consumers.get(t, []):
                        if i <= ci <= j:
                            cc = core[ci]
                            nxt.append(max(0, made[cc.output] * cc.s - cc.p) if cc.op_type == "Conv"
                                       else made[cc.output])
                    top = got_rows[t] if t in got_rows else made[t]
                    base[t] = max(base[t], min(nxt) if nxt else top)
        self._peaks[key] = peak
        return peak

    # -- the notes' accounting ----------------------------------------------------------------
    def reference_segment(self, i: int, j: int, in_dram: bool, out_dram: bool) -> tuple[int, int]:
        """The notes' ``seg``: (peak, traffic) with every tensor crossing the boundary before
        ``i`` in DRAM when ``in_dram`` and the results living on sent when ``out_dram``."""
        ins = self.inputs(i, j)
        streamed = frozenset(t for t in ins if t == self.gin or in_dram)
        whole = (0 if in_dram else sum(self.nbytes(t) for t in self.bystanders(i, j))) \
            + sum(self.nbytes(t) for t in ins - streamed)
        leaving = self.leaving(i, j)
        traffic = 2 * sum(self.nbytes(t) for t in leaving) if out_dram else 0
        sent = frozenset(leaving) if out_dram else frozenset()
        return self.peak(i, j, streamed, whole, sent), traffic

    def reference(self, capacity: int) -> Result | None:
        """The notes' DP (``best``): least traffic with every segment's peak within ``capacity``."""
        n = self.n
        dp: dict[tuple[int, bool], tuple[int, tuple[Cut, ...]]] = {(0, False): (0, ())}
        for j in range(n):
            for out_dram in (False, True):
                cand: tuple[int, tuple[Cut, ...]] | None = None
                for i in range(max(0, j - self.max_len + 1), j + 1):
                    for in_dram in (False, True):
                        if (i, in_dram) not in dp:
                            continue
                        pk, tr = self.reference_segment(i, j, in_dram, out_dram and j < n - 1)
                        if pk > capacity:
                            continue
                        v = dp[(i, in_dram)][0] + tr
                        if cand is None or v < cand[0]:
                            sent = frozenset(self.crossing(j + 1)) if out_dram and j < n - 1 else frozenset()
                            cand = (v, dp[(i, in_dram)][1] + (Cut(i, j, sent),))
                if cand:
                    dp[(j + 1, out_dram)] = cand
        done = [dp[k] for k in ((n, False), (n, True)) if k in dp]
        if not done:
            return None
        best = min(done, key=lambda r: r[0])
        return Result(best[0], best[1])

    # -- every byte moved ---------------------------------------------------------------------
    def corrected_segment(self, i: int, j: int, in_dram: frozenset[str],
                          send: frozenset[str]) -> tuple[int, int]:
        """(peak, traffic) of ``[i..j]`` when the tensors ``in_dram`` (crossing boundary ``i``)
        are off-chip and ``send`` (crossing boundary ``j + 1``, not yet off-chip) go off-chip
        at its end.  Traffic: one read of every operand off-chip, one write of every tensor
        sent."""
        ins = self.inputs(i, j)
        streamed = frozenset(t for t in ins if t == self.gin or t in in_dram)
        # A bystander is a tensor some fused op makes: the notes' walk also counts Flatten's
        # result (a view, made by no fused op: 1,280 B) whole beside every segment.
        whole = sum(self.nbytes(t) for t in self.bystanders(i, j) if t not in in_dram and t in self.prod) \
            + sum(self.nbytes(t) for t in ins - streamed)
        sent = frozenset(send & self.outs(i, j))
        return self.peak(i, j, streamed, whole, sent), self.corrected_traffic(i, j, in_dram, send)

    def corrected_traffic(self, i: int, j: int, in_dram: frozenset[str], send: frozenset[str]) -> int:
        """One read of every operand of ``[i..j]`` off-chip, one write of every tensor sent."""
        return sum(self.nbytes(t) for t in self.inputs(i, j) if t in in_dram) + sum(self.nbytes(t) for t in send)

    def corrected(self, capacity: int, peak: PeakFn | None = None, made_only: bool = False) -> Result | None:
        """Least traffic, every byte paid, over cut points and which crossing tensors go off-chip.
        ``peak(i, j, in_dram, send)``: the segment's peak (default: the row model's);
        ``made_only``: a cut sends only tensors its segment makes (stowage's partition rule)."""
        n = self.n
        dp: dict[tuple[int, frozenset[str]], tuple[int, tuple[Cut, ...]]] = {(0, frozenset()): (0, ())}
        for j in range(n):
            nxt = self.crossing(j + 1) if j < n - 1 else frozenset()
            for i in range(max(0, j - self.max_len + 1), j + 1):
                for (start, d_in), (v0, cuts) in list(dp.items()):
                    if start != i:
                        continue
                    stay = d_in & nxt
                    for send in _subsets((nxt - stay) & self.outs(i, j) if made_only else nxt - stay):
                        if peak is None:
                            pk, tr = self.corrected_segment(i, j, d_in, send)
                        else:
                            pk, tr = peak(i, j, d_in, send), self.corrected_traffic(i, j, d_in, send)
                        if pk > capacity:
                            continue
                        key = (j + 1, stay | send)
                        v = v0 + tr
                        if key not in dp or v < dp[key][0]:
                            dp[key] = (v, cuts + (Cut(i, j, send),))
        done = [v for (pos, _d), v in dp.items() if pos == n]
        if not done:
            return None
        best = min(done, key=lambda r: r[0])
        return Result(best[0], best[1])

    def corrected_cost(self, cuts: Sequence[Cut]) -> tuple[int, list[tuple[int, int]]]:
        """The corrected traffic of any cut plan (a reference plan too) and its segments'
        ``(peak, traffic)``: what the plan really moves."""
        d: frozenset[str] = frozenset()
        total, parts = 0, []
        for c in cuts:
            nxt = self.crossing(c.last + 1) if c.last < self.n - 1 else frozenset()
            send = frozenset(c.sent & nxt) - d
            pk, tr = self.corrected_segment(c.first, c.last, d, send)
            total += tr
            parts.append((pk, tr))
            d = (d & nxt) | send
        return total, parts

    # -- naming -------------------------------------------------------------------------------
    def block(self, k: int) -> str:
        """``features.N/conv.M`` for a fused op (the ONNX node name, shortened)."""
        name = self.core[k].name.strip("/")
        parts = [p for p in name.split("/") if p.startswith(("features.", "conv.")) or p in ("Add",)]
        short = "/".join(dict.fromkeys(p for p in parts if "." in p or p == "Add"))
        return short or name

    def describe(self, cuts: Iterable[Cut]) -> str:
        out = []
        for c in cuts:
            s = f"{c.first}..{c.last}"
            if c.sent:
                s += " | " + ", ".join(f"{self.block(self.prod[t])} {'x'.join(map(str, self.shape(t)[1:]))}"
                                       for t in sorted(c.sent, key=lambda t: self.prod[t]))
            out.append(s)
        return "; ".join(out)


def _subsets(s: frozenset[str]) -> list[frozenset[str]]:
    items = sorted(s)
    return [frozenset(c) for r in range(len(items) + 1) for c in combinations(items, r)]


class StowageWalk:
    """Stowage's own stripe walk (``solvers/tiling/program.py``) of the row model's segments,
    with the partition search's finest band (``Partitioner.ladder``), the same tensors
    off-chip, whole buffers and bystanders counted as the search counts them."""

    def __init__(self, model: RowModel) -> None:
        from stowage.api import load_model
        from stowage.solvers.tiling.partition import Partitioner

        self.m = model
        self.g = load_model(str(MODEL), 1, None, True)
        self.part = Partitioner(self.g, False, 1, work=None)
        if [self.g.operators[o].name for o in self.part.order] != [c.name for c in model.core]:
            raise SystemExit("stowage's steps are not the row model's fused ops")
        self._memo: dict[tuple[int, int, frozenset[int], frozenset[int]], dict[str, int | str]] = {}

    def measure(self, i: int, j: int, in_dram: frozenset[str], send: frozenset[str],
                pack: bool = False, capacity: int = 0, exact_seconds: float = 0.0) -> dict[str, int | str]:
        """``static`` (rings at their largest window), ``instant`` (rows live at one stripe)
        and, with ``pack``, ``packed`` (those rows packed greedily), in bytes; ``error`` when
        stowage cannot run the segment so.  ``exact_seconds``: when the greedy packing misses
        ``capacity``, the exact packer (``solvers.alloc.exact``) tries that long (``exact``:
        what it found)."""
        from stowage.solvers.tiling.program import NotTileable
        from stowage.solvers.tiling.slots import pack_rows, row_lifetimes

        g, part = self.g, self.part
        touched = set().union(*part.touch[i:j + 1])
        off = frozenset(g.tensor_buffer[t] for t in in_dram if t in g.tensor_buffer)
        dram = frozenset(g.tensor_buffer[t] for t in in_dram | send if t in g.tensor_buffer) & touched
        key = (i, j, dram, off)
        got = self._memo.get(key)
        if got is not None and (not pack or "packed" in got):
            packed = got.get("packed")
            if (exact_seconds > 0 and capacity and isinstance(packed, int) and packed > capacity
                    and "exact" not in got):
                got = {k: v for k, v in got.items() if k != "packed"}
            else:
                return got
        by = part.bystanders(i, j, off)
        if i == j and not dram:
            whole = part.plain(i).peak - part.bystanders(i, i) + by
            if not part.tileable[i]:
                res: dict[str, int | str] = {"static": whole, "instant": whole, "packed": whole, "band": "whole"}
                self._memo[key] = res
                return res
        h, pace = part.ladder(i, j)[0]
        res = {"band": f"{h} of {pace or 'end'}"}
        try:
            if not all(part.tileable[i:j + 1]):
                raise NotTileable("a step needs whole tensors")
            prog = part.program(i, j, h, record=True, dram=dram, pace=pace)
        except NotTileable as e:
            res["error"] = str(e)
        else:
            # Whole buffers and the steps' working memory: everything but the rings.
            whole_b = prog.footprint(g, False) - prog.ring_bytes(g)
            lives = row_lifetimes(g, prog)
            res["static"] = prog.footprint(g, False) + by
            res["instant"] = lives.peak + whole_b + by
            if pack:
                res["packed"] = pack_rows(lives)[0] + whole_b + by
                if exact_seconds > 0 and capacity and int(res["packed"]) > capacity:
                    from stowage.solvers.alloc.exact import solve_allocation
                    from stowage.solvers.alloc.interval import Interval

                    ivs = [Interval(k, r.first, r.last, r.size) for k, r in enumerate(lives.rows)]
                    fit = solve_allocation(ivs, capacity - whole_b - by, exact_seconds)
                    res["exact"] = ("fits" if fit.offsets is not None else
                                    "proven impossible" if fit.status == "infeasible" else
                                    f"none found in {exact_seconds:g} s")
        self._memo[key] = res
        return res

    def instant(self, i: int, j: int, in_dram: frozenset[str], send: frozenset[str]) -> int:
        r = self.measure(i, j, in_dram, send)
        v = r.get("instant")
        return v if isinstance(v, int) else 1 << 60

    def table(self, cuts: Sequence[Cut], capacity: int = 0,
              exact_seconds: float = 0.0) -> list[dict[str, int | str]]:
        """One row per segment of ``cuts``: the row model's peak and stowage's three figures."""
        rows = []
        d: frozenset[str] = frozenset()
        for c in cuts:
            nxt = self.m.crossing(c.last + 1) if c.last < self.m.n - 1 else frozenset()
            send = frozenset(c.sent) - d
            row_pk, _ = self.m.corrected_segment(c.first, c.last, d, send)
            r = dict(self.measure(c.first, c.last, d, send, pack=True, capacity=capacity,
                                  exact_seconds=exact_seconds))
            r["seg"], r["row_model"] = f"{c.first}..{c.last}", row_pk
            rows.append(r)
            d = (d & nxt) | send
        return rows


MODEL = ROOT / "models" / "suite" / "mobilenet_v2.onnx"


def _print_check(walk: StowageWalk, what: str, cuts: Sequence[Cut], capacity: int, exact_seconds: float) -> None:
    print(f"\nstowage's stripe walk of {what} (bytes):\n")
    print("| segment | band | row model peak | stowage: static rings | stowage: live rows per instant "
          "| stowage: rows packed (greedy) | exact packer within the capacity |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in walk.table(cuts, capacity, exact_seconds):
        if "error" in r:
            print(f"| {r['seg']} | | {r['row_model']:,} | whole tensors ({r['error']}) | | | |")
        else:
            print(f"| {r['seg']} | {r['band']} | {r['row_model']:,} | {r['static']:,} | {r['instant']:,} "
                  f"| {r['packed']:,} | {r.get('exact', '')} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kib", nargs="*", type=int, default=[256, 192, 160, 128, 112, 96, 80, 64])
    ap.add_argument("--stripe", type=int, default=1, help="stripe rows of each segment's end tensor (notes: 1)")
    ap.add_argument("--check", action="store_true", help="walk the corrected plans with stowage's stripe walk")
    ap.add_argument("--exact-pack", type=float, default=0.0, metavar="SEC",
                    help="with --check: seconds for the exact packer on a segment the greedy packing misses")
    ap.add_argument("--headroom", nargs="*", type=int, default=[2, 4], metavar="KIB",
                    help="with --check: judge segments per instant within the capacity less this, until "
                         "every segment's rows pack (greedy) within the capacity")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    m = RowModel(MODEL, args.stripe)
    print("| capacity | reference (notes) | the reference plan, every byte paid | corrected minimum | corrected plan "
          "(segments of fused ops \\| tensors sent at its end) |")
    print("|---|---:|---:|---:|---|")
    plans: dict[int, Result] = {}
    for kib in args.kib:
        cap = kib * 1024
        ref = m.reference(cap)
        cor = m.corrected(cap)
        paid = "infeasible" if ref is None else f"{m.corrected_cost(ref.cuts)[0]:,}"
        got = "infeasible" if cor is None else f"{cor.traffic:,}"
        print(f"| {kib} KiB | {'infeasible' if ref is None else f'{ref.traffic:,}'} | {paid} | "
              f"{got} | {'' if cor is None else m.describe(cor.cuts)} |")
        if ref is not None:
            log.info("  %d KiB reference plan: %s", kib, m.describe(ref.cuts))
        if cor is not None:
            plans[kib] = cor
    if args.check:
        walk = StowageWalk(m)
        for kib in args.kib:
            static = walk.part.least_traffic(kib * 1024)
            print(f"\nstowage's least-traffic search at {kib} KiB, rings at their largest window, work unbounded, "
                  f"cascades up to {walk.part.reach} steps: "
                  + ("no partition" if static is None else
                     f"{sum(sg.traffic for sg in static):,} B, cascades "
                     + "; ".join(f"{walk.part.pos[sg.ops[0]]}..{walk.part.pos[sg.ops[-1]]}" for sg in static)))
        for kib, cor in plans.items():
            _print_check(walk, f"the corrected plan at {kib} KiB", cor.cuts, kib * 1024, 0.0)
            inst = m.corrected(kib * 1024, walk.instant, made_only=True)
            if inst is None:
                print(f"\nno plan at {kib} KiB with stowage's walk counted per instant")
                continue
            print(f"\ncorrected accounting, segments judged by stowage's walk counted per instant, a cut sending "
                  f"only what its segment makes: {inst.traffic:,} B at {kib} KiB: {m.describe(inst.cuts)}")
            _print_check(walk, f"that plan at {kib} KiB", inst.cuts, kib * 1024, args.exact_pack)
            # Rows per instant leave fragmentation to the packing: judge segments with some
            # headroom and keep the least traffic whose every segment's rows pack within the
            # capacity.
            for room in args.headroom:
                tight = m.corrected((kib - room) * 1024, walk.instant, made_only=True)
                if tight is None:
                    print(f"\nper instant within {kib - room} KiB: no plan")
                    continue
                rows = walk.table(tight.cuts, kib * 1024)
                worst = max(int(r.get("packed", 1 << 60)) for r in rows)
                print(f"\nper instant within {kib - room} KiB: {tight.traffic:,} B: {m.describe(tight.cuts)}; "
                      f"largest cascade with its rows packed (greedy): {worst:,} B, "
                      + ("within" if worst <= kib * 1024 else "over") + f" {kib} KiB")
                if worst <= kib * 1024:
                    _print_check(walk, f"that plan (judged within {kib - room} KiB)", tight.cuts, kib * 1024, 0.0)
                    break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
