"""Distance-kernel benchmark: the fast kernels vs torch.cdist (and the pure-torch reference), side by side.

    python benchmarks/bench_kernels.py [--reps 3] [--quick] [--out table.md]

Cases (the must-show list of issue 3):
1. forward p = ∞ at B=512, D=784, N=1024 and B=512, D=N=1024: G pair-el/s (B·N·D / s), speed-up over
   torch.cdist, and the fraction of a nominal 2-core AVX2 ceiling (~40 G el/s, FACTS.md).
2. forward+backward at p = 8 and p = 13.7, same shape, vs torch.cdist (and the reference).
Every ratio is measured in the same run on the same inputs; the median of `--reps` runs is reported
(the slow cdist/reference backward runs are timed `--slow-reps` times, default 1). The machine is
shared: the load average at start and end is printed so contention is visible.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nets.kernels import active_backend  # noqa: E402
from nets.kernels.cpu import cpu_lp_dist  # noqa: E402

CEILING_G = 40.0  # nominal sub+abs+max AVX2 ceiling of 2 cores (FACTS.md)


def timed(fn, reps: int) -> float:
    """Median wall time of `reps` calls after one warm-up call."""
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def fwd(op, x, w):
    def run():
        with torch.no_grad():
            op(x, w)
    return run


def fwd_bwd(op, x, w, g):
    xr = x.clone().requires_grad_(True)
    wr = w.clone().requires_grad_(True)

    def run():
        xr.grad = wr.grad = None
        op(xr, wr).backward(g)
    return run


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"


def load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def reference_op(p):
    try:
        from nets.ops import reference_lp_dist
    except ImportError:
        return None
    return lambda a, b: reference_lp_dist(a, b, p)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--slow-reps", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="B=128 instead of 512 (smoke run)")
    ap.add_argument("--no-reference", action="store_true", help="skip the pure-torch reference")
    ap.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = ap.parse_args(argv)

    backend = active_backend("cpu")
    if not backend.startswith("cpu-"):
        print(f"no CPU kernel: {backend}", file=sys.stderr)
        return 1
    B = 128 if args.quick else 512
    gen = torch.Generator().manual_seed(0)
    load0 = load()
    lines = [
        f"Measured {_dt.date.today().isoformat()} on {machine()}; kernel backend `{backend}`.",
        f"Load average at start: {load0} (shared machine: absolute numbers are contended, ratios are "
        "side by side on the same inputs). Median of "
        f"{args.reps} runs (cdist/reference fwd+bwd: {args.slow_reps}).",
        "",
        "| case | B×D×N | kernel s | kernel G el/s | cdist s | × cdist | reference s | × reference | % of 40 G el/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def row(case, shape, tk, tc, tr, n_el, ceiling):
        gk = n_el / tk / 1e9
        frac = f"{100 * gk / CEILING_G:.0f}%" if ceiling else "—"
        ref = f"{tr:.3f}" if tr else "—"
        xref = f"{tr / tk:.0f}×" if tr else "—"
        lines.append(f"| {case} | {shape} | {tk:.4f} | {gk:.2f} | {tc:.3f} | {tc / tk:.1f}× | {ref} | {xref} | {frac} |")
        print(lines[-1], flush=True)

    for D, N in [(784, 1024), (1024, 1024)]:
        x = torch.rand(B, D, generator=gen)
        w = torch.rand(N, D, generator=gen)
        n_el = B * N * D
        tk = timed(fwd(lambda a, b: cpu_lp_dist(a, b, math.inf), x, w), args.reps)
        tc = timed(fwd(lambda a, b: torch.cdist(a, b, p=math.inf), x, w), args.reps)
        ref = None if args.no_reference else reference_op(math.inf)
        tr = timed(fwd(ref, x, w), max(1, args.slow_reps)) if ref else None
        row("fwd p=∞", f"{B}×{D}×{N}", tk, tc, tr, n_el, True)

    D, N = 784, 1024
    x = torch.rand(B, D, generator=gen)
    w = torch.rand(N, D, generator=gen)
    g = torch.randn(B, N, generator=gen)
    for p in (math.inf, 8.0, 13.7):
        tk = timed(fwd_bwd(lambda a, b: cpu_lp_dist(a, b, p), x, w, g), args.reps)
        tc = timed(fwd_bwd(lambda a, b: torch.cdist(a, b, p=p), x, w, g), args.slow_reps)
        ref = None if args.no_reference else reference_op(p)
        tr = timed(fwd_bwd(ref, x, w, g), args.slow_reps) if ref else None
        pname = "∞" if math.isinf(p) else f"{p:g}"
        row(f"fwd+bwd p={pname}", f"{B}×{D}×{N}", tk, tc, tr, B * N * D, False)
    for p in (8.0, 13.7, 200.5):
        tk = timed(fwd(lambda a, b: cpu_lp_dist(a, b, p), x, w), args.reps)
        tc = timed(fwd(lambda a, b: torch.cdist(a, b, p=p), x, w), args.slow_reps)
        pname = f"{p:g}"
        row(f"fwd p={pname}", f"{B}×{D}×{N}", tk, tc, None, B * N * D, False)
    lines.append("")
    lines.append(f"Load average at end: {load()}.")
    table = "\n".join(lines)
    print()
    print(table)
    if args.out:
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(table + "\n")
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
