"""Linear bounds on VNN-COMP 2022 mnist_fc / oval21 (issue 15, must-show 1): proved counts and time per
instance of our CROWN / α-CROWN (each guarantee) beside auto_LiRPA 0.7.1 IBP / CROWN / α-CROWN (run
from a SEPARATE venv as a subprocess, benchmarks/lirpa_runner.py; never a project dependency) and
α,β-CROWN's published verdicts, on the same boxes.

    python benchmarks/bench_bounds.py [--bench mnist_fc|oval21] [--limit N] [--lirpa /work/lirpa-venv/bin/python] [--out FILE] [--threads T]

Both tools run with the same number of torch intra-op threads (``--threads``, default 1: on a
machine shared with other jobs, more threads than idle cores make torch's elementwise kernels
10-300x slower, which distorts every time measured).

The properties are "label wins" over an ε box (VNN-LIB 1.0, parsed minimally here: the X_i bounds
and the Y_j >= Y_label disjuncts). Our box is the property's box rounded outward to float32. An
instance is "proved" when the margin lower bound is > 0 for every j. "incorrect" counts our proofs
of instances some published tool reports sat (there must be none), except a sat whose published
counterexample file is empty (no witness).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SUITE = ROOT.parent / "shared" / "benchmarks" / "vnncomp2022"
RESULTS = SUITE / "results"
BENCH = SUITE / "mnist_fc"  # set by --bench


def parse_vnnlib(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(lo, hi) float64 [n] and the label of a "label wins" property (Y_j >= Y_label or
    Y_label <= Y_j disjuncts)."""
    text = path.read_text()
    n = len(re.findall(r"declare-const X_\d+", text))
    lo, hi = np.full(n, np.nan), np.full(n, np.nan)
    for op, i, v in re.findall(r"\(assert \((<=|>=) X_(\d+) ([-+0-9.eE]+)\)\)", text):
        (hi if op == "<=" else lo)[int(i)] = float(v)
    labels = {int(b) for _, b in re.findall(r"\(>= Y_(\d+) Y_(\d+)\)", text)}
    labels |= {int(a) for a, _ in re.findall(r"\(<= Y_(\d+) Y_(\d+)\)", text)}
    assert len(labels) == 1 and not np.isnan(lo).any() and not np.isnan(hi).any()
    return lo, hi, labels.pop()


def outward32(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 box containing the real box whose decimal bounds were read as float64 (one float64
    step out for the decimal conversion, then a directed cast)."""
    from verify.bounds import rounding

    return (rounding.down(np.nextafter(lo, -np.inf))[None], rounding.up(np.nextafter(hi, np.inf))[None])


def published(tool: str) -> dict[tuple[str, str], str]:
    out = {}
    p = RESULTS / tool / f"{BENCH.name}.csv"
    if not p.exists():
        return out
    for row in csv.reader(p.open()):
        if len(row) >= 5:
            out[(Path(row[1]).name, Path(row[2]).name)] = row[4].strip()
    return out


def witnessed(tool: str, key: tuple[str, str]) -> bool:
    """False for a published `sat` whose counterexample file is there but empty (no witness: e.g.
    cgdtest's on oval21 cifar_deep_kw img9845, where five tools, α,β-CROWN included, report unsat)."""
    p = SUITE / "counterexamples" / tool / f"{Path(key[0]).stem}_{Path(key[1]).stem}.counterexample"
    return not (p.exists() and p.stat().st_size == 0)


def ours(instances, methods):
    from verify.bounds.spec import margin_lower
    from verify.front.model import load_model

    models, res = {}, []
    for onnx_rel, vnn_rel in instances:
        m = models.setdefault(onnx_rel, load_model(BENCH / onnx_rel))
        lo, hi, label = parse_vnnlib(BENCH / vnn_rel)
        l32, h32 = (b.reshape(1, *m.input_shape) for b in outward32(lo, hi))
        row = {}
        for name, (ort, steps) in methods.items():
            t = time.perf_counter()
            ml = float(margin_lower(m, l32, h32, np.array([label]), ort=ort, alpha_steps=steps)[0])
            row[name] = (ml, time.perf_counter() - t)
        res.append(row)
    return res


def lirpa(python: str, instances, threads: int) -> list[dict]:
    jobs = []
    for onnx_rel, vnn_rel in instances:
        lo, hi, label = parse_vnnlib(BENCH / vnn_rel)
        jobs.append({"onnx": str(BENCH / onnx_rel), "lo": lo.tolist(), "hi": hi.tolist(), "label": label})
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    p = subprocess.run([python, str(ROOT / "benchmarks" / "lirpa_runner.py")], input=json.dumps(jobs),
                       capture_output=True, text=True, timeout=7200, env=env)
    if p.returncode != 0:  # our numbers are still reported
        print(f"auto_LiRPA runner failed: {p.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="instances per network")
    ap.add_argument("--lirpa", default=None, help="python of the auto_LiRPA venv (skipped if absent)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--bench", default="mnist_fc", choices=["mnist_fc", "oval21"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads, for both tools")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    global BENCH
    BENCH = SUITE / a.bench
    rows = list(csv.reader((BENCH / "instances.csv").open()))
    nets = sorted({r[0] for r in rows})
    inst = [(r[0], r[1]) for net in nets for r in [x for x in rows if x[0] == net][: a.limit]]
    methods = {"CROWN a+b": (True, 0), "CROWN a": (False, 0), "α-CROWN a+b": (True, 20)}
    mine = ours(inst, methods)
    theirs = lirpa(a.lirpa, inst, a.threads) if a.lirpa else None
    abc = published("alpha_beta_crown")
    sat = {k for tool in [d.name for d in RESULTS.iterdir()] for k, v in published(tool).items()
           if v == "sat" and witnessed(tool, k)}
    cols = list(methods) + (["LiRPA IBP", "LiRPA CROWN", "LiRPA α-CROWN"] if theirs else [])
    lines = ["| network | n | " + " | ".join(cols) + " | α,β-CROWN published unsat | incorrect |",
             "|---" * (len(cols) + 4) + "|"]
    for net in nets:
        idx = [i for i, (o, _) in enumerate(inst) if o == net]
        cells, wrong = [], 0
        for c in methods:
            ok = [mine[i][c][0] > 0 for i in idx]
            wrong += sum(o and (Path(inst[i][0]).name, Path(inst[i][1]).name) in sat for o, i in zip(ok, idx))
            cells.append(f"{sum(ok)} ({np.mean([mine[i][c][1] for i in idx]):.2f} s)")
        if theirs:
            for c in ("IBP", "CROWN", "alpha-CROWN"):
                cells.append(f"{sum(theirs[i][c][0] > 0 for i in idx)} ({np.mean([theirs[i][c][1] for i in idx]):.2f} s)")
        pub = sum(abc.get((Path(inst[i][0]).name, Path(inst[i][1]).name)) == "unsat" for i in idx)
        lines.append(f"| {Path(net).stem} | {len(idx)} | " + " | ".join(cells) + f" | {pub} | {wrong} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n" + json.dumps({"ours": mine, "lirpa": theirs}) + "\n")


if __name__ == "__main__":
    main()
