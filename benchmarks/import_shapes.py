"""Import time and sizes of every model in models/suite and models/int8 (issue 13/17 importer
work): whether checking declared shapes instead of trusting them, the com.microsoft rules
and the execution fallback change what the importer produces or how long it takes.

Run it once per revision and compare the two outputs::

    PYTHONPATH=<farm of the revision> python benchmarks/import_shapes.py --repeat 3 > out.tsv

Columns: model, median seconds of ``load_graph`` over ``--repeat`` runs, the number of
tensors, total tensor bytes (a change here is a change of shapes), and the import notes
count (0 before the notes existed).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from stowage.ir.onnx_import import load_graph

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("models", nargs="*", help="default: models/suite/*.onnx and models/int8/*.onnx")
    args = ap.parse_args()
    paths = [Path(p) for p in args.models] or sorted((ROOT / "models" / "suite").glob("*.onnx")) + sorted(
        (ROOT / "models" / "int8").glob("*.onnx"))
    print("model\tmedian_s\ttensors\ttensor_bytes\tnotes")
    for p in paths:
        times = []
        g = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            g = load_graph(p)
            times.append(time.perf_counter() - t0)
        assert g is not None
        notes = len(getattr(g, "import_notes", ()))
        print(f"{p.stem}\t{statistics.median(times):.3f}\t{len(g.tensors)}\t"
              f"{sum(t.bytes for t in g.tensors.values())}\t{notes}", flush=True)


if __name__ == "__main__":
    main()
