"""Certified accuracy of our own exported models by each proof method, side by side in one run
(issue 15, must-show 4: the new linear bounds beside interval bounds on +MLP and ensemble models).

For every ONNX file and every method, `verify_cli.py certify` is run in-process (the same code path
as the command, its records written to a temporary folder) on the same samples, and its counts and
wall time are tabulated. The methods are the certify ladder's rungs: ``lipschitz`` (margin / 2L),
``ibp`` (interval bounds), ``crown`` (linear back-substitution), ``alpha-crown`` (optimised slopes)
and ``auto`` (the ladder, stopping at the first proof).

    python benchmarks/bench_methods.py MODEL.onnx [MODEL.onnx ...] --data mnist --eps 0.3 \
        [--limit 1000] [--methods ibp,crown,alpha-crown,auto] [--data-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

METHODS = ("lipschitz", "ibp", "crown", "alpha-crown", "auto")


def run(model: Path, method: str, a: argparse.Namespace) -> dict:
    from verify.certify.run import run_certify

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        s = run_certify(model, a.data, eps=a.eps, out=Path(tmp) / "c.jsonl", method=method,
                        domain=(0.0, 1.0), batch_size=a.batch_size, limit=a.limit, shard=None,
                        data_dir=a.data_dir, split="test", bisect_steps=0, progress=None)
        wall = time.perf_counter() - t
    c = s["counts"]
    return {"model": model.name, "method": method, "n": s["n"], "clean": s["clean_accuracy"],
            "certified": c["certified"], "certified_accuracy": s["certified_accuracy"],
            "guarantee": s.get("guarantee"), "seconds": wall}


def table(rows: list[dict]) -> str:
    lines = ["| model | method | n | clean | certified | certified acc. | guarantee | s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['method']} | {r['n']} | {100 * r['clean']:.2f} % | "
                     f"{r['certified']} | {100 * r['certified_accuracy']:.2f} % | {r['guarantee']} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--data", required=True)
    ap.add_argument("--eps", type=float, required=True)
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--methods", default="ibp,crown,alpha-crown,auto")
    ap.add_argument("--json", action="store_true", help="one JSON line per (model, method) instead")
    a = ap.parse_args()
    methods = a.methods.split(",")
    bad = sorted(set(methods) - set(METHODS))
    if bad:
        sys.exit(f"unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}")
    rows = []
    for model in a.models:
        for method in methods:
            rows.append(run(model, method, a))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print("\n".join(json.dumps(r) for r in rows) if a.json else table(rows))


if __name__ == "__main__":
    main()
