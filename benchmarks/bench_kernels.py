"""Distance-kernel benchmark: the fast kernels vs torch.cdist (and the pure-torch reference), side by side.

    python benchmarks/bench_kernels.py [--reps 3] [--quick] [--out table.md]

Cases (the must-show list of issue 3):
1. forward p = ∞ at B=512, D=784, N=1024 and B=512, D=N=1024: G pair-el/s (B·N·D / s), speed-up over
   torch.cdist, and the fraction of a nominal 2-core AVX2 ceiling (~40 G el/s, docs/FACTS.md F8).
2. forward+backward at p = 8 and p = 13.7, same shape, vs torch.cdist (and the reference); p = 13.7
   once more with LINFVERIFY_POW=explog (exp2/log2 powers: the kernel before the split form).
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
from nets.kernels._build import wide_status  # noqa: E402
from nets.kernels.cpu import POW_ENV, cpu_lp_dist  # noqa: E402

CEILING_G = 40.0  # nominal sub+abs+max AVX2 ceiling of 2 cores (docs/FACTS.md F8)


def timed(fns, reps) -> list[tuple[float, float, float]]:
    """(median wall seconds, median process CPU seconds, best wall seconds) of each fn in `fns`,
    called reps[i] times after one warm-up call each. The calls are interleaved (a b a b ...), so
    every fn sees the same spells of contention on this shared machine, whose speed drifts by up
    to 2x over minutes.

    CPU seconds sum over all threads: the work done, which contention from other processes on a
    shared machine inflates far less than wall time."""
    for fn in fns:
        fn()
    walls: list[list[float]] = [[] for _ in fns]
    cpus: list[list[float]] = [[] for _ in fns]
    for r in range(max(reps)):
        for i, fn in enumerate(fns):
            if r >= reps[i]:
                continue
            c = time.process_time()
            t = time.perf_counter()
            fn()
            walls[i].append(time.perf_counter() - t)
            cpus[i].append(time.process_time() - c)
    return [(statistics.median(w), statistics.median(c), min(w)) for w, c in zip(walls, cpus)]


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


def measure(ops, x, w, g, reps, threads: int):
    """timed() of each op's forward (g None) or forward+backward under `threads` torch threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return timed([fwd(op, x, w) if g is None else fwd_bwd(op, x, w, g) for op in ops], reps)
    finally:
        torch.set_num_threads(old)


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
    nthreads = torch.get_num_threads()
    gen = torch.Generator().manual_seed(0)
    load0 = load()
    lines = [
        f"Measured {_dt.date.today().isoformat()} on {machine()}; kernel backend `{backend}` "
        f"(finite p on the `{wide_status()}` build). Load average at start: {load0}.",
        "",
        "Two measurements per case, side by side on the same inputs: (a) ONE torch thread, process CPU "
        "time — the work ratio, robust to other users of this shared machine; (b) "
        f"{nthreads} threads, wall time — what a user sees now, contention included. Medians of "
        f"{args.reps} runs (cdist/reference backward cases: {args.slow_reps}), kernel and cdist runs "
        "interleaved so that both see the same spells of contention (this shared machine's speed drifts "
        "by up to 2x within minutes). '× cdist (b, best runs)' is the ratio of the fastest run of each.",
        "",
        "| case | B×D×N | kernel G el/s, 1 core (a) | × cdist (a) | × reference (a) | "
        f"kernel s ({nthreads} thr, wall) | cdist s ({nthreads} thr, wall) | × cdist (b) | "
        f"× cdist (b, best runs) | % of 2-core ceiling (b) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def case(name, x, w, g, p, slow, ceiling):
        B_, D_ = x.shape
        n_el = B_ * w.shape[0] * D_
        kern = lambda a, b: cpu_lp_dist(a, b, p)  # noqa: E731
        cd = lambda a, b: torch.cdist(a, b, p=p)  # noqa: E731
        reps_slow = args.slow_reps if slow else args.reps
        ref = None if args.no_reference else reference_op(p)
        ops, reps = [kern, cd], [args.reps, reps_slow]
        if ref:
            ops, reps = ops + [ref], reps + [args.slow_reps]
        one = measure(ops, x, w, g, reps, 1)
        k1, c1 = one[0][1], one[1][1]
        r1 = one[2][1] if ref else None
        (kw, _, kb), (cw, _, cb) = measure([kern, cd], x, w, g, [args.reps, reps_slow], nthreads)
        frac = f"{100 * n_el / kw / 1e9 / CEILING_G:.0f}%" if ceiling else "—"
        xref = f"{r1 / k1:.0f}×" if r1 else "—"
        lines.append(f"| {name} | {B_}×{D_}×{w.shape[0]} | {n_el / k1 / 1e9:.2f} | {c1 / k1:.1f}× | {xref} | "
                     f"{kw:.4f} | {cw:.3f} | {cw / kw:.1f}× | {cb / kb:.1f}× | {frac} |")
        print(lines[-1], flush=True)

    for D, N in [(784, 1024), (1024, 1024)]:
        x = torch.rand(B, D, generator=gen)
        w = torch.rand(N, D, generator=gen)
        case("fwd p=∞", x, w, None, math.inf, False, True)
    D, N = 784, 1024
    x = torch.rand(B, D, generator=gen)
    w = torch.rand(N, D, generator=gen)
    g = torch.randn(B, N, generator=gen)
    for p in (math.inf, 8.0, 13.7):
        pname = "∞" if math.isinf(p) else f"{p:g}"
        case(f"fwd+bwd p={pname}", x, w, g, p, True, False)
    os.environ[POW_ENV] = "explog"  # the same op with every non-integer power by exp2/log2 (before)
    try:
        case("fwd+bwd p=13.7, exp2/log2", x, w, g, 13.7, True, False)
    finally:
        del os.environ[POW_ENV]
    for p in (8.0, 13.7, 200.5):
        case(f"fwd p={p:g}", x, w, None, p, True, False)
    lines += ["", f"Load average at end: {load()}."]
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
