"""Proof by replay for ``.tflite`` plans: the plan's data movement against a LiteRT run.

ONNX plans are proven by running every operator on the bytes the plan holds
(``stowage.simulate``).  LiteRT has no way to run one operator of a model on given operands,
so a ``.tflite`` plan is proven the other way round:

1. LiteRT (``ai-edge-litert``) runs the whole model once on seeded inputs with
   ``experimental_preserve_all_tensors=True`` and the default delegates off (XNNPACK would
   keep the tensors inside its partitions to itself): every tensor's reference bytes.
2. The plan is replayed on one byte array per memory level, in the validator's event order
   (placements begin and are poisoned with ``0xFF``, home placements of inputs and weights get
   their bytes, ``before`` transfers, the step, ``after`` transfers, placements end).
3. Each step *reads* every operand from the placement the plan gives it (the compute level;
   a weight from its home when weights are not loaded) and compares it byte for byte with the
   reference; it then *writes* its results' reference bytes into their compute-level
   placements and checks that its operands survived the writes (a result placed over a live
   operand).  A placement that ends must still hold what was last written into it, and the
   graph outputs, read from their home level after the last step, must equal LiteRT's.

4. A tiled plan (``plan.cascades``) is replayed on its macro graph
   (``stowage.plan.validate.plan_graph``); a cascade step runs its stripes in order at row
   granularity.  TFLite tensors are NHWC, so a row is ``[:, r, :, :]``, ``W * C`` contiguous
   bytes (``stowage.ir.tiling.row_axis`` is 1), and row ``r`` of a ring is at byte
   ``(r mod ring_rows) * row_bytes`` of the ring's placement.  Per stripe: its loads copy
   rows from the tensor's home placement into the ring; it reads the operand rows its
   operator's window needs (``stowage.ir.tiling.row_maps``; a stripe declaring other rows or
   pads, such as a missing halo row, is wrong, since no kernel runs to show it) from their
   holders (whole, ring or streamed; in-place results share their operand's holder) and
   compares them with the reference rows; it writes its result rows from the reference and
   checks its operand rows survived; its stores copy ring rows home, checked first.  Every
   member of a cascade must make every row of its result exactly once.  A dilated convolution
   reads its taps' runs only (``RowMap.runs``), each from its holder; a staged operand's rows
   are in the slots its stripe's loads gave them; a SPLIT / SPLIT_V stripe writes the result
   it names (``Stripe.output``); a MEAN's stripes read consecutive bands of its operand and
   its one result row is written after the last band (the partial sums are the kernel's).

What this proves: every byte an operator needs is where the plan says when the operator runs
(for a stripe, every row its window covers), no placement, transfer or ring slot clobbers a
live value, and the outputs reach their home level.  What it does not prove: the kernels
themselves (results come from the reference run, not from executing each operator on the
plan's bytes; so it cannot show that a kernel run on a band with the stripe's pads gives the
band's reference rows, which the ONNX simulator does show), and working memory a kernel may
need beyond its operands (im2col buffers, which the IR does not model for TFLite).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from stowage.errors import ModelError, PlanFormatError, StowageError
from stowage.ir.graph import Graph, Operator, Tensor, TensorKind
from stowage.ir.tiling import DILATED, accumulates, row_axis, row_maps
from stowage.plan import Cascade, CascadeTensor, Placement, Plan, RowTransfer, Stripe, Transfer
from stowage.simulate import Corruption, Memory, OutputCheck, SimResult, row_views

log = logging.getLogger(__name__)

POISON = 0xFF
#: The ``operators_run_by`` key of a replay: no operator runs on the plan's bytes.
REFERENCE = "litert (reference values of one whole-model run)"


def _random_input(rng: np.random.Generator, dt: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Seeded inputs over the type's whole range (int8 images use all 256 codes)."""
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    if dt.kind == "b":
        return rng.integers(0, 2, shape).astype(dt)
    if dt in (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16), np.dtype(np.uint16)):
        info = np.iinfo(dt)
        return rng.integers(int(info.min), int(info.max) + 1, shape, dtype=np.int64).astype(dt)
    if dt.kind in "iu":
        return rng.integers(0, 2, shape).astype(dt)  # small: safe as indices of any axis
    raise ModelError(f"cannot generate random input data of dtype {dt}")


def reference_run(model_path: str | Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Every tensor of subgraph 0 after one LiteRT run on seeded inputs, by the importer's
    tensor name, as raw bytes (``uint8``).  Tensors LiteRT holds no data for are absent."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from stowage.ir.tflite_import import parse_model

    p = Path(model_path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model file {p}: {exc.strerror}") from None
    names = parse_model(data, str(p)).tensor_names
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": it is, here
        try:
            it = Interpreter(model_content=data, experimental_preserve_all_tensors=True, num_threads=1,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            it.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"LiteRT cannot load {p.name}: {str(exc).splitlines()[0][:160]}") from None
    rng = np.random.default_rng(seed)
    for d in it.get_input_details():
        it.set_tensor(d["index"], _random_input(rng, np.dtype(d["dtype"]), tuple(int(x) for x in d["shape"])))
    try:
        it.invoke()
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"LiteRT cannot run {p.name}: {str(exc).splitlines()[0][:160]}") from None
    out: dict[str, np.ndarray] = {}
    for d in it.get_tensor_details():
        i = int(d["index"])
        if i >= len(names):
            continue  # tensors of other subgraphs
        try:
            value = it.get_tensor(i)
        except ValueError:
            continue  # no data (an unused or never-allocated tensor)
        out[names[i]] = np.ascontiguousarray(value).reshape(-1).view(np.uint8).copy()
    return out


class Replay:
    """The plan's data movement on byte arrays, every value from ``reference``.

    A tiled plan (``plan.cascades``) is replayed on the graph its steps are steps of (the
    macro graph, ``stowage.plan.validate.plan_graph``); each cascade step runs its stripes
    row by row (``_cascade``)."""

    def __init__(self, graph: Graph, plan: Plan, reference: Mapping[str, np.ndarray]) -> None:
        if plan.options.element_bytes is not None:
            raise StowageError(
                f"the plan was made with an element-size override (element_bytes={plan.options.element_bytes}); "
                "its bytes do not exist in the model, so it cannot be replayed: check it with 'stowage validate'")
        if plan.options.in_place and not graph.in_place:
            # As ``validate``: a plan made with in-place operators is one of the fused graph.
            from stowage.ir.inplace import fuse_in_place

            graph = fuse_in_place(graph)
        #: The model's graph; ``graph`` is the graph of the plan's steps (the same one for a
        #: plan of whole tensors).
        self.orig = graph
        rings = {ct.buffer for c in plan.cascades for ct in c.tensors if ct.mode in ("ring", "streamed", "staged")}
        if plan.cascades:
            from stowage.plan.validate import plan_graph

            graph = plan_graph(graph, plan)   # PlanFormatError: cascades of another graph
            # A ring's bytes are the plan's: ``ring_rows`` only lays rows out in them, and the
            # replay shows whether they are enough (a row overwritten while still needed).
            if len(plan.buffers) == len(graph.buffers):
                graph = dataclasses.replace(graph, buffers=tuple(
                    dataclasses.replace(gb, bytes=pb.bytes) if gb.id in rings else gb
                    for gb, pb in zip(graph.buffers, plan.buffers)))
        if len(plan.buffers) != len(graph.buffers) or any(
                pb.bytes != gb.bytes for pb, gb in zip(plan.buffers, graph.buffers)):
            raise PlanFormatError("the plan's buffers do not match the model (another model, or other options?)")
        self.graph, self.plan, self.ref = graph, plan, reference
        self.compute = plan.target.compute_level
        self.corruptions: list[Corruption] = []
        self.reported: set[object] = set()
        #: The tensor whose bytes a buffer holds now (the last one written into it).
        self.current: dict[int, str] = {}
        self.cascade_at = {c.step: c for c in plan.cascades}
        #: Plan buffers holding rings: their bytes are rows, not one tensor.
        self.ring_bufs = rings
        #: Per ring buffer, the tensor whose rows it holds now (in-place results share rings).
        self.ring_content: dict[int, str] = {}
        #: Per staging buffer (mode ``staged``), the slot of each row the current stripe loaded.
        self.stage: dict[int, dict[int, int]] = {}
        #: Context of corruption messages: the stripe being replayed.
        self.where = ""
        #: Runs per operator of the model (every one must run exactly once).
        self.ran: dict[int, int] = defaultdict(int)
        self.stripes = 0
        for name, t in self.orig.tensors.items():
            if name in reference and reference[name].size != t.bytes:
                raise StowageError(f"LiteRT holds tensor '{name}' in {reference[name].size} bytes, the IR in "
                                   f"{t.bytes}: this model cannot be replayed")

    def want(self, name: str) -> np.ndarray:
        value = self.ref.get(name)
        if value is None:
            raise ModelError(f"LiteRT kept no value for tensor '{name}': the plan cannot be replayed")
        return value

    def buffer_bytes(self, bid: int) -> np.ndarray:
        if bid in self.current:
            return self.want(self.current[bid])
        names = [n for n in self.graph.buffers[bid].tensors if n in self.ref]
        if not names:
            raise ModelError(f"LiteRT kept no value for buffer {bid} ({self.graph.buffers[bid].tensors[0]})")
        return self.want(max(names, key=lambda n: self.graph.tensors[n].bytes))

    def label(self, step: int | None) -> str:
        return f"step {step} ({self.plan.steps[step].op}){self.where}" if step is not None else "end"

    def corrupt(self, step: int | None, bid: int | None, text: str, pl: Placement | None = None,
                key: object = None) -> None:
        """Record a problem; ``pl`` or ``key``: report it once per damaged placement (or
        ring tensor), not at every later read."""
        if bid is not None and pl is not None:
            key = (bid, id(pl))
        if key is not None:
            if key in self.reported:
                return
            self.reported.add(key)
        self.corruptions.append(Corruption(step, bid, f"{self.label(step)}: {text}"))

    @staticmethod
    def _diff(got: np.ndarray, want: np.ndarray) -> str:
        bad = np.flatnonzero(got != want)
        poisoned = bool(np.all(got[bad] == POISON))
        return (f"{bad.size} of {want.size} bytes differ, first at byte {int(bad[0])}"
                + (" (poison: never written or freed)" if poisoned else ""))

    def _operand(self, mem: Memory, bid: int, s: int) -> Placement | None:
        pl = mem.find(bid, self.compute, s)
        if pl is None and self.graph.buffers[bid].kind is TensorKind.WEIGHT \
                and not self.plan.options.weights_in_compute_level:
            pl = mem.find(bid, self.plan.buffers[bid].home, s)
        return pl

    def _read(self, mem: Memory, s: int, name: str) -> None:
        bid = self.graph.tensor_buffer[name]
        want = self.want(name)
        pl = self._operand(mem, bid, s)
        if pl is None:
            self.corrupt(s, bid, f"reads buffer {bid} ('{name}'), which has no {self.compute} placement")
            return
        got = mem.view(pl, want.size)
        if not np.array_equal(got, want):
            self.corrupt(s, bid, f"read of buffer {bid} ('{name}') from {pl.level} at [{pl.offset}, "
                         f"{pl.offset + want.size}) found it corrupted: {self._diff(got, want)}", pl)

    def run(self) -> SimResult:
        plan, graph = self.plan, self.graph
        mem = Memory(plan)
        starts: dict[int, list[Placement]] = defaultdict(list)
        ends: dict[int, list[Placement]] = defaultdict(list)
        for pl in plan.placements:
            starts[pl.first].append(pl)
            ends[pl.last].append(pl)
        transfers: dict[tuple[int, str], list[Transfer]] = defaultdict(list)
        for t in plan.transfers:
            transfers[(t.step, t.phase)].append(t)
        filled: set[Placement] = set()
        by_name = {op.name: op for op in graph.computing_ops}
        nsteps = len(plan.steps)
        outputs: dict[str, np.ndarray] = {}
        for s in range(nsteps):
            for pl in starts.get(s, ()):
                mem.view(pl)[:] = POISON
            if s == 0:
                for pl in starts.get(0, ()):
                    pb = plan.buffers[pl.buffer]
                    if pb.kind in ("input", "weight") and pl.level == pb.home:
                        data = self.buffer_bytes(pl.buffer)
                        mem.view(pl, data.size)[:] = data
                        filled.add(pl)
            self._transfers(mem, s, transfers.get((s, "before"), ()), filled)
            st = plan.steps[s]
            cascade = self.cascade_at.get(s)
            if cascade is not None:
                self._cascade(mem, s, cascade, filled)
            else:
                op = None
                if st.index is not None and 0 <= st.index < len(graph.operators):
                    op = graph.operators[st.index]
                    if not op.computing or op.name != st.op:
                        op = None
                elif st.index is None:
                    op = by_name.get(st.op)
                if op is None:
                    raise PlanFormatError(f"step {s}: operator '{st.op}' is not in the model")
                for member in graph.step_members(op):
                    self.ran[member.index] += 1
                    self._execute(mem, s, member, filled)
            self._transfers(mem, s, transfers.get((s, "after"), ()), filled)
            if s == nsteps - 1:
                outputs = self._collect_outputs(mem, s)
            for pl in ends.get(s, ()):
                if pl in filled and pl.buffer not in self.ring_bufs:
                    want = self.buffer_bytes(pl.buffer)
                    got = mem.view(pl, want.size)
                    if not np.array_equal(got, want):
                        self.corrupt(s, pl.buffer, f"buffer {pl.buffer} was found corrupted in {pl.level} at "
                                     f"[{pl.offset}, {pl.offset + want.size}) when its placement ended: "
                                     f"{self._diff(got, want)}", pl)
                filled.discard(pl)
                mem.view(pl)[:] = POISON
        self._check_coverage()
        checks = []
        for name in self.orig.outputs:
            if name not in outputs:
                continue
            got, want = outputs[name], self.want(name)
            exact = bool(np.array_equal(got, want))
            checks.append(OutputCheck(name, exact, exact, 0.0 if exact else float("inf")))
        ok = not self.corruptions and all(c.exact for c in checks)
        return SimResult(ok, tuple(self.corruptions), tuple(checks), nsteps, {REFERENCE: nsteps}, False,
                         tolerance="bit-exact")

    def _check_coverage(self) -> None:
        """Every operator of the model ran exactly once (for a cascade: its stripes made
        every row of its result, checked in ``_cascade``)."""
        g = self.orig
        expected = [op for op in g.operators if op.computing or op.fused_into is not None]
        for what, ops in (("never ran", [op for op in expected if self.ran.get(op.index, 0) == 0]),
                          ("ran more than once", [op for op in expected if self.ran.get(op.index, 0) > 1])):
            if ops:
                names = ", ".join(f"'{op.name}' ({op.op_type})" for op in ops[:3])
                more = f" and {len(ops) - 3} more" if len(ops) > 3 else ""
                self.corruptions.append(Corruption(None, None, f"end: operator {names}{more} {what}"))

    def _transfers(self, mem: Memory, s: int, ts: Iterable[Transfer], filled: set[Placement]) -> None:
        for t in ts:
            src, dst = mem.find(t.buffer, t.src, s), mem.find(t.buffer, t.dst, s)
            if src is None or dst is None:
                missing = t.src if src is None else t.dst
                self.corrupt(s, t.buffer, f"transfer of buffer {t.buffer} {t.src} -> {t.dst}: no {missing} "
                             f"placement to copy {'from' if src is None else 'into'}")
                continue
            mem.view(dst)[:] = mem.view(src)
            filled.add(dst)

    def _execute(self, mem: Memory, s: int, op: Operator, filled: set[Placement]) -> None:
        before = len(self.corruptions)
        operands = list(dict.fromkeys(i for i in op.inputs if i and i in self.graph.tensors))
        for name in operands:
            self._read(mem, s, name)
        written: set[int] = set()
        for name in (o for o in op.outputs if o and o in self.graph.tensors):
            bid = self.graph.tensor_buffer[name]
            pl = mem.find(bid, self.compute, s)
            if pl is None:
                self.corrupt(s, bid, f"writes buffer {bid} ('{name}'), which has no {self.compute} placement")
                continue
            data = self.want(name)
            mem.view(pl, data.size)[:] = data
            filled.add(pl)
            self.current[bid] = name
            written.add(bid)
        # A kernel writes while it still reads: its operands must survive its results, except
        # the one an in-place operator declares it overwrites.
        if len(self.corruptions) == before:
            for name in operands:
                bid = self.graph.tensor_buffer[name]
                if bid in written and op.fused_into is not None:
                    continue
                pl = self._operand(mem, bid, s)
                want = self.want(name)
                if pl is not None and not np.array_equal(mem.view(pl, want.size), want):
                    self.corrupt(s, bid, f"writing the results overwrote operand buffer {bid} ('{name}') in "
                                 f"{pl.level} at [{pl.offset}, {pl.offset + want.size})", pl)

    # -- tiled steps -----------------------------------------------------------------------
    def _cascade(self, mem: Memory, s: int, casc: Cascade, filled: set[Placement]) -> None:
        """Replay cascade ``casc`` (plan step ``s``) stripe by stripe: loads, the operand rows
        the operator's window needs (read from their holders, compared with the reference),
        its result rows written from the reference into their holder, stores.  Every member
        must make every row of its result exactly once."""
        g = self.orig
        holders = {g.tensor_buffer[ct.tensor]: ct for ct in casc.tensors if ct.tensor in g.tensor_buffer}
        members: dict[int, Operator] = {}
        for i in casc.ops:
            if not 0 <= i < len(g.operators):
                raise PlanFormatError(f"step {s}: cascade operator index {i} is not in the model")
            for m in g.step_members(g.operators[i]):
                members[m.index] = m
                self.ran[m.index] += 1
        made: dict[tuple[int, str], dict[int, int]] = defaultdict(dict)   # (operator, result) -> row -> stripe
        reduced: dict[int, int] = {}   # an accumulating reduction -> the input rows it has reduced
        for j, st in enumerate(casc.stripes):
            op = members.get(st.op)
            if op is None:
                name = g.operators[st.op].name if 0 <= st.op < len(g.operators) else f"#{st.op}"
                self.where = f", stripe {j}"
                self.corrupt(s, None, f"operator {name} is not one of the cascade's operators")
                continue
            self.where = f", stripe {j} ({op.op_type} '{op.name}', rows [{st.out_lo}, {st.out_hi}))"
            self.stripes += 1
            self.stage.clear()   # staged rows live for one stripe (CascadeTensor mode ``staged``)
            for rt in st.transfers:
                if rt.direction == "load":
                    self._row_transfer(mem, s, casc, holders, rt, filled)
                elif rt.direction != "store":
                    self.corrupt(s, None, f"row transfer of '{rt.tensor}' has direction '{rt.direction}'")
            out = _result(op, st.output)
            self._stripe(mem, s, casc, holders, st, op, filled, made[(op.index, out or "")], j, reduced)
            for rt in st.transfers:
                if rt.direction == "store":
                    self._row_transfer(mem, s, casc, holders, rt, filled)
        self.where = ""
        for m in members.values():
            for out in [o for o in m.outputs if o] or [""]:
                if out not in g.tensors or (len(g.tensors[out].shape) != 4 and not accumulates(row_maps(g, m))):
                    self.corrupt(s, None, f"operator '{m.name}' ({m.op_type}) in the cascade has no result rows")
                    continue
                missing = [r for r in range(self._rows(g.tensors[out])[1]) if r not in made[(m.index, out)]]
                if missing:
                    self.corrupt(s, None, f"operator '{m.name}' never made {len(missing)} row(s) of '{out}' "
                                 f"(first: row {missing[0]})")

    def _rows(self, t: Tensor) -> tuple[int, int, int]:
        """``(outer, rows, inner)``: a 4-D tensor as bytes ``(outer, H, inner)``, so row ``r``
        is ``[:, r, :]`` (NHWC: outer 1, a row is ``W * C`` contiguous bytes; NCHW: outer C)."""
        if len(t.shape) != 4:
            return 1, 1, t.bytes   # a MEAN's (1, C) result: one row
        ax = row_axis(self.orig)
        h = t.shape[ax]
        outer = int(np.prod(t.shape[1:ax], dtype=np.int64))
        return outer, h, t.bytes // h // outer

    def _holder(self, casc: Cascade, holders: Mapping[int, CascadeTensor], name: str) -> CascadeTensor | None:
        ct = casc.tensor(name)
        return ct if ct is not None else holders.get(self.orig.tensor_buffer.get(name, -1))

    def _content_key(self, ct: CascadeTensor) -> int:
        """``ring_content``'s key: the holder's buffer, or for a slot-addressed tensor (its
        cascade's rings share one region) its own graph buffer."""
        return self.orig.tensor_buffer[ct.tensor] if ct.slots else ct.buffer

    def _row_views(self, mem: Memory, s: int, ct: CascadeTensor, name: str,
                   lo: int, hi: int) -> list[np.ndarray] | str:
        """Writable byte views ``(outer, inner)`` of rows ``[lo, hi)`` of ``name`` in its
        holder ``ct`` (compute level), or why there are none."""
        t = self.orig.tensors[name]
        return row_views(mem, self.compute, s, ct, t, row_axis(self.orig) if len(t.shape) == 4 else 0, lo, hi,
                         self.stage.get(ct.buffer))

    def _ref_rows(self, name: str, lo: int, hi: int) -> np.ndarray:
        outer, h, inner = self._rows(self.orig.tensors[name])
        return self.want(name).reshape(outer, h, inner)[:, lo:hi, :]

    def _check_rows(self, s: int, ct: CascadeTensor, name: str, lo: int, views: list[np.ndarray],
                    what: str) -> bool:
        """Rows ``lo..`` of ``name`` as ``views`` hold against the reference; else one report."""
        if not views:
            return True
        got = np.stack(views, axis=1)
        want = self._ref_rows(name, lo, lo + len(views))
        if np.array_equal(got, want):
            return True
        bad = np.flatnonzero((got != want).any(axis=(0, 2)))
        k = int(bad[0])
        self.corrupt(s, ct.buffer, f"{what} row {lo + k} of '{name}' ({ct.mode}, buffer {ct.buffer}) found it "
                     f"corrupted ({bad.size} of {len(views)} rows [{lo}, {lo + len(views)}) wrong): "
                     f"{self._diff(got[:, k, :].reshape(-1), want[:, k, :].reshape(-1))}",
                     key=("rows", s, ct.buffer, name))
        return False

    def _stripe(self, mem: Memory, s: int, casc: Cascade, holders: Mapping[int, CascadeTensor],
                st: Stripe, op: Operator, filled: set[Placement], made: dict[int, int], j: int,
                reduced: dict[int, int]) -> None:
        g = self.orig
        out = _result(op, st.output)
        maps = row_maps(g, op)
        if out is None or maps is None or out not in g.tensors:
            several = [o for o in op.outputs if o]
            self.corrupt(s, None, f"{op.op_type} '{op.name}' cannot run on row bands" if maps is None or
                         len(several) < 2 else f"the stripe of {op.op_type} '{op.name}' names result "
                         f"'{st.output}', not one of {several}")
            return
        h_out = self._rows(g.tensors[out])[1]
        if not 0 <= st.out_lo < st.out_hi <= h_out:
            self.corrupt(s, None, f"rows [{st.out_lo}, {st.out_hi}) of '{out}' are outside its {h_out} rows")
            return
        # The rows the operator's window needs (a kernel reads them whatever the stripe
        # declares): a stripe declaring fewer (a missing halo row) or other pads is wrong.
        need: dict[str, list[tuple[int, int]]] = {}
        pads = (0, 0)
        declared: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for name, lo, hi in st.inputs:
            declared[name].append((lo, hi))
        pending = False
        if accumulates(maps):
            # A reduction over H (a MEAN): consecutive bands of its operand, each updating the
            # kernel's accumulators; its one result row is written after the last band.
            (name, rm), = maps.items()
            start = reduced.get(op.index, 0)
            got = declared.get(name, [])
            band = got[0] if len(got) == 1 and start == got[0][0] < got[0][1] <= rm.in_rows else (start, rm.in_rows)
            need[name] = [band]
            reduced[op.index] = band[1]
            pending = band[1] < rm.in_rows
            if (st.out_lo, st.out_hi) != (0, 1):
                self.corrupt(s, None, f"writes rows [{st.out_lo}, {st.out_hi}) of '{out}'; a reduction over H "
                             "updates its one row [0, 1) with every band")
        else:
            for name, rm in maps.items():
                lo, hi, top, bottom = rm.need(st.out_lo, st.out_hi)
                # A dilated convolution reads its taps' runs only (``RowMap.runs``).
                need[name] = list(rm.runs(st.out_lo, st.out_hi)) if rm.kind == DILATED else [(lo, hi)]
                pads = (max(pads[0], top), max(pads[1], bottom))
        if dict(declared) != need or (st.pad_top, st.pad_bottom) != pads:
            def shown(rows: Mapping[str, list[tuple[int, int]]]) -> list[tuple[str, object]]:
                return sorted((n, r[0] if len(r) == 1 else r) for n, r in rows.items())
            self.corrupt(s, None, f"the stripe reads rows {shown(declared)} with pads "
                         f"{st.pad_top}/{st.pad_bottom}, but its operator's window needs {shown(need)} "
                         f"with pads {pads[0]}/{pads[1]}")
        before = len(self.corruptions)
        read_back: list[tuple[str, CascadeTensor, int, list[np.ndarray]]] = []
        for name in dict.fromkeys(i for i in op.inputs if i and i in g.tensors):
            if name not in need:
                self._read(mem, s, name)   # weights, a per-channel scale: whole
                continue
            ct = self._holder(casc, holders, name)
            if ct is None:
                self._read(mem, s, name)   # made outside the cascade and resident whole
                continue
            for lo, hi in need[name]:
                views = self._row_views(mem, s, ct, name, lo, hi)
                if isinstance(views, str):
                    self.corrupt(s, ct.buffer, f"reads rows [{lo}, {hi}) of '{name}': {views}")
                    continue
                if self._check_rows(s, ct, name, lo, views, "read of"):
                    read_back.append((name, ct, lo, views))
        if pending:
            return      # the band is in the accumulators: no result row yet
        ct = self._holder(casc, holders, out)
        if ct is None:
            self.corrupt(s, None, f"result '{out}' has no holder in the cascade")
            return
        targets = self._row_views(mem, s, ct, out, st.out_lo, st.out_hi)
        if isinstance(targets, str):
            self.corrupt(s, ct.buffer, f"writes rows [{st.out_lo}, {st.out_hi}) of '{out}': {targets}")
            return
        data = self._ref_rows(out, st.out_lo, st.out_hi)
        for k, v in enumerate(targets):
            v[:] = data[:, k, :]
        for r in range(st.out_lo, st.out_hi):
            if r in made:
                self.corrupt(s, None, f"row {r} of '{out}' was already made by stripe {made[r]}")
            made.setdefault(r, j)
        pl = mem.find(ct.buffer, self.compute, s)
        if pl is not None and ct.mode == "whole":
            filled.add(pl)
            self.current[ct.buffer] = out
        self.ring_content[self._content_key(ct)] = out
        # A kernel writes its rows while it reads: the operand rows must survive, except those
        # an in-place operator rewrites (same holder).
        if len(self.corruptions) == before:
            for name, hct, lo, views in read_back:
                if hct.buffer == ct.buffer and op.fused_into is not None:
                    continue
                if views and not np.array_equal(np.stack(views, axis=1), self._ref_rows(name, lo, lo + len(views))):
                    self.corrupt(s, hct.buffer, f"writing rows [{st.out_lo}, {st.out_hi}) of '{out}' overwrote "
                                 f"operand rows [{lo}, {lo + len(views)}) of '{name}' (buffer {hct.buffer})")

    def _row_transfer(self, mem: Memory, s: int, casc: Cascade, holders: Mapping[int, CascadeTensor],
                      rt: RowTransfer, filled: set[Placement]) -> None:
        what = f"{rt.direction} of rows [{rt.lo}, {rt.hi}) of '{rt.tensor}'"
        ct = self._holder(casc, holders, rt.tensor)
        if ct is None or ct.mode not in ("streamed", "staged") or rt.tensor not in self.orig.tensor_buffer \
                or (ct.mode == "staged" and rt.direction != "load"):
            self.corrupt(s, None, f"{what}: the tensor is not streamed in this cascade")
            return
        if ct.mode == "staged":
            # The stripe's j-th loaded row goes to slot j of the staging buffer.
            stage = self.stage.setdefault(ct.buffer, {})
            for r in range(rt.lo, rt.hi):
                stage[r] = len(stage)
        home_bid = self.orig.tensor_buffer[rt.tensor]
        level = rt.level or ct.level or self.plan.buffers[home_bid].home
        home = mem.find(home_bid, level, s) if level else None
        if home is None:
            self.corrupt(s, home_bid, f"{what}: buffer {home_bid} has no {level} placement")
            return
        # A store writes home what the ring holds: the rows of the buffer's last writer.
        name = self.ring_content.get(self._content_key(ct), rt.tensor) if rt.direction == "store" else rt.tensor
        t = self.orig.tensors[name]
        flat = len(t.shape) == 2 and t.shape[0] == 1   # a MEAN's (1, C) result: one row
        if (len(t.shape) != 4 and not flat) or not 0 <= rt.lo <= rt.hi <= self._rows(t)[1]:
            self.corrupt(s, home_bid, f"{what}: rows outside the tensor (shape {list(t.shape)})")
            return
        outer, h, inner = self._rows(t)
        whole = mem.view(home, t.bytes).reshape(outer, h, inner)
        views = self._row_views(mem, s, ct, name, rt.lo, rt.hi)
        if isinstance(views, str):
            self.corrupt(s, ct.buffer, f"{what}: {views}")
            return
        if rt.direction == "load":
            for k, v in enumerate(views):
                v[:] = whole[:, rt.lo + k, :]
            self.ring_content[self._content_key(ct)] = name
            return
        self._check_rows(s, ct, name, rt.lo, views, f"{what}: the")
        for k, v in enumerate(views):
            whole[:, rt.lo + k, :] = v
        filled.add(home)
        self.current[home_bid] = name

    def _collect_outputs(self, mem: Memory, s: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name in self.orig.outputs:
            bid = self.graph.tensor_buffer[name]
            home = self.plan.buffers[bid].home
            pl = mem.find(bid, home, s) if home else None
            if pl is None:
                self.corrupt(None, bid, f"graph output buffer {bid} ('{name}') has no placement in its home "
                             f"level {home}")
                continue
            out[name] = mem.view(pl, self.orig.tensors[name].bytes).copy()
        return out


def _result(op: Operator, named: str = "") -> str | None:
    """The result a stripe of ``op`` writes: its one result, or, for an operator with several
    (a Split), the one the stripe names (``Stripe.output``); None when that is not one of them."""
    outs = [o for o in op.outputs if o]
    if len(outs) == 1 and named in ("", outs[0]):
        return outs[0]
    return named if len(outs) > 1 and named in outs else None


def simulate_tflite(model_path: str | Path, graph: Graph, plan: Plan, seed: int = 0) -> SimResult:
    """Validate, then replay ``plan`` (made for ``graph``, the import of ``model_path``) against
    LiteRT.  As ``stowage.simulate.simulate``: a plan the validator rejects is a mismatch
    whatever the replay shows; one that does not describe the model is not replayed."""
    from stowage.plan.validate import validate

    if plan.options.element_bytes is not None:
        raise StowageError(
            f"the plan was made with an element-size override (element_bytes={plan.options.element_bytes}); "
            "its bytes do not exist in the model, so it cannot be replayed: check it with 'stowage validate'")
    verdict = validate(graph, plan)
    violations = tuple(f"rule {e.rule}: {e.message}" for e in verdict.errors)
    try:
        # The steps or cascades may not describe the model (the validator says why, too).
        result = Replay(graph, plan, reference_run(model_path, seed)).run()
    except PlanFormatError as exc:
        log.info("plan not replayed: %s", exc)
        return SimResult(False, () if violations else (Corruption(None, None, f"not executed: {exc}"),),
                         tuple(OutputCheck(n, False, False, float("inf")) for n in graph.outputs),
                         len(plan.steps), {}, False, tolerance="not executed", violations=violations,
                         executed=False)
    if violations:
        result = dataclasses.replace(result, ok=False, violations=violations)
    return result


def describe(result: SimResult, seed: int) -> list[str]:
    """The lines ``stowage simulate`` prints for a replay."""
    if not result.executed:
        return [f"MISMATCH: the plan was not replayed: {result.first_problem}"]
    lines = [(f"replayed {result.steps} steps against one LiteRT run of the whole model (inputs seeded with "
              f"{seed}); operands checked, results written from the reference (kernels not executed)")]
    for o in result.outputs:
        lines.append(f"output {o.name}: {'bit-exact' if o.exact else 'DIFFERS'} vs LiteRT")
    if result.violations:
        lines.append(f"MISMATCH: the validator rejects the plan ({len(result.violations)} violation(s)): "
                     f"{result.violations[0]}")
        lines.extend(f"  also: {v}" for v in result.violations[1:5])
        return lines
    if result.ok:
        lines.append("match: every operand was in place when read, and the outputs reached their home level")
        return lines
    lines.append(f"MISMATCH: {result.first_problem}")
    lines.extend(f"  also: {c.message}" for c in result.corruptions[1:10])
    if len(result.corruptions) > 10:
        lines.append(f"  ... {len(result.corruptions) - 10} more")
    return lines


__all__ = ["REFERENCE", "Replay", "describe", "reference_run", "simulate_tflite"]
