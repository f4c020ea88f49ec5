"""Run whole VNN-COMP ``instances.csv`` files through the ``vnnlib`` command's code path (issue 13).

For each benchmark folder (default: both of ../shared/benchmarks/vnncomp2022) every instance
(onnx, vnnlib, timeout) is decided by ``verify.vnnlib.run.run_instance`` in this process, with the
time limit ``min(--cap, csv timeout)`` (``--csv-timeout``: the csv's own). The table puts our
verdict counts beside α,β-CROWN's published ones (``results/alpha_beta_crown/<bench>.csv``), with the
time per instance, and counts *incorrect* verdicts:
- an ``unsat`` of ours where a published counterexample (``counterexamples/<tool>/<onnx>_<vnnlib>
  .counterexample``) replays: its X, rounded to float32, inside the box exactly and onnxruntime's
  outputs there satisfying the property exactly;
- a ``sat`` of ours whose results file, read back, does not replay the same way.
A counterexample is checked against the outward-rounded float32 box, the set an ``unsat`` proof
covers: tools print the bound 0.03 as float32(0.03), a hair above the decimal the file wrote, so
against the box as written (exactly) none of mnist_fc's would replay. Empty or malformed
counterexample files (cgdtest publishes empty ones) do not replay.
Also listed: instances where our verdict contradicts α,β-CROWN's (sat vs unsat). Each published
results file has one row more than its benchmark: the competition's warm-up run of
``test/test_nano``; rows are matched to instances by (onnx, vnnlib) names, so it is never counted.
Times are ours per instance (property parsing included, the model loaded once per file).

    python benchmarks/bench_vnncomp.py [--cap 20] [--csv-timeout] [--out FILE.md] [--records FILE.jsonl]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent / ".." / "shared" / "benchmarks" / "vnncomp2022"
VERDICTS = ("unsat", "sat", "unknown", "timeout")


def published(root: Path, bench: str, tool: str = "alpha_beta_crown") -> dict[tuple[str, str], tuple[str, float]]:
    """(onnx stem, vnnlib stem) -> (result, runtime) of a tool's results csv."""
    path = root / "results" / tool / f"{bench}.csv"
    if not path.exists():
        return {}
    rows = list(csv.reader(path.open()))
    return {(Path(r[1]).stem, Path(r[2]).stem): (r[4].strip(), float(r[5])) for r in rows if len(r) >= 6}


def counterexamples(root: Path, onnx: Path, prop: Path) -> list[Path]:
    return sorted((root / "counterexamples").glob(f"*/{onnx.stem}_{prop.stem}.counterexample"))


def run_one(root: Path, bench: str, row, cap: float, csv_timeout: bool, models: dict) -> dict:
    from common.errors import LinfVerifyError
    from verify.front.model import load_model
    from common.runtime import ort_session
    from verify.vnnlib.run import replay_text, result_text, run_instance
    from verify.vnnlib.spec import read_property

    onnx, prop, limit = root / bench / row[0].strip(), root / bench / row[1].strip(), float(row[2])
    limit = limit if csv_timeout else min(cap, limit)
    if onnx not in models:  # loaded once per file, outside the timed part
        models[onnx] = (load_model(onnx), ort_session(onnx))
    model, sess = models[onnx]
    rec = {"benchmark": bench, "onnx": onnx.stem, "vnnlib": prop.stem, "limit": limit}
    try:
        res = run_instance(onnx, prop, limit, model=model)
    except LinfVerifyError as e:
        rec.update(verdict="error", seconds=0.0, error=str(e), incorrect=False)
        return rec
    rec.update(verdict=res.verdict, seconds=round(res.seconds, 3), method=res.method, incorrect=False)
    p = read_property(prop)
    ces = [c for c in counterexamples(root, onnx, prop) if _replays(sess, p, c, model.input_shape)]
    rec["published_counterexamples"] = len(counterexamples(root, onnx, prop))
    rec["replaying_counterexamples"] = [str(c.relative_to(root)) for c in ces]
    if res.verdict == "sat":
        rec["incorrect"] = replay_text(sess, p, result_text(res), model.input_shape) is None
    elif res.verdict == "unsat":
        rec["incorrect"] = bool(ces)
    return rec


def _replays(sess, prop, path: Path, input_shape) -> bool:
    """A published counterexample replays in the proof's (outward-rounded float32) box; an empty or
    malformed file does not."""
    from common.errors import PropertyError
    from verify.vnnlib.run import replay_text

    try:
        return replay_text(sess, prop, path.read_text(), input_shape, outer=True) is not None
    except PropertyError:
        return False


def table(records: list[dict], root: Path, benches: list[str]) -> str:
    lines = ["| benchmark | instances | ours unsat / sat / unknown / timeout (error) | α,β-CROWN unsat / sat / unknown / timeout (other) "
             "| ours s/instance (median, max) | α,β-CROWN s/instance (median) | incorrect | contradicts α,β-CROWN "
             "| published counterexamples replaying (instances) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for b in benches:
        recs = [r for r in records if r["benchmark"] == b]
        if not recs:
            continue
        pub = published(root, b)
        ours = Counter(r["verdict"] for r in recs)
        theirs = Counter(pub.get((r["onnx"], r["vnnlib"]), ("missing", 0))[0] for r in recs)
        their_t = [pub[(r["onnx"], r["vnnlib"])][1] for r in recs if (r["onnx"], r["vnnlib"]) in pub]
        t = [r["seconds"] for r in recs]
        clash = sum(1 for r in recs if {r["verdict"], pub.get((r["onnx"], r["vnnlib"]), ("",))[0]} == {"sat", "unsat"})
        other = sum(v for k, v in theirs.items() if k not in VERDICTS)
        lines.append(
            f"| {b} | {len(recs)} | {' / '.join(str(ours[v]) for v in VERDICTS)} ({ours['error']}) "
            f"| {' / '.join(str(theirs[v]) for v in VERDICTS)} ({other}) "
            f"| {statistics.median(t):.1f}, {max(t):.1f} | {statistics.median(their_t) if their_t else float('nan'):.1f} "
            f"| {sum(r['incorrect'] for r in recs)} | {clash} "
            f"| {sum(len(r.get('replaying_counterexamples', [])) for r in recs)} of "
            f"{sum(r.get('published_counterexamples', 0) for r in recs)} "
            f"({sum(bool(r.get('replaying_counterexamples')) for r in recs)}) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="folder holding <benchmark>/instances.csv, results/, counterexamples/")
    ap.add_argument("--benchmarks", nargs="+", default=["mnist_fc", "oval21"])
    ap.add_argument("--cap", type=float, default=20.0, help="time limit per instance, s (default 20)")
    ap.add_argument("--csv-timeout", action="store_true", help="use each instance's own timeout from instances.csv")
    ap.add_argument("--limit", type=int, default=None, help="only the first N instances of each benchmark")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    ap.add_argument("--records", type=Path, default=None, help="write one JSON line per instance here")
    args = ap.parse_args(argv)
    if not (args.root / args.benchmarks[0] / "instances.csv").exists():
        print(f"no {args.root / args.benchmarks[0] / 'instances.csv'}: the VNN-COMP benchmarks are missing", file=sys.stderr)
        return 2
    records, models, t0 = [], {}, time.monotonic()
    for b in args.benchmarks:
        rows = [r for r in csv.reader((args.root / b / "instances.csv").open()) if r]
        for row in rows[: args.limit]:
            rec = run_one(args.root, b, row, args.cap, args.csv_timeout, models)
            records.append(rec)
            print(json.dumps({k: rec[k] for k in ("benchmark", "onnx", "vnnlib", "verdict", "seconds", "incorrect")}), flush=True)
    if args.records:
        args.records.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = table(records, args.root, args.benchmarks)
    out += f"\n{len(records)} instances in {time.monotonic() - t0:.0f} s (cap {'csv' if args.csv_timeout else args.cap} s per instance)\n"
    if args.out:
        args.out.write_text(out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
