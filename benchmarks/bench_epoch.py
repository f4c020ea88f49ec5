"""Training-epoch benchmark of the small MNIST preset's net (pure ℓ∞-dist 5×256), reference vs fast kernel.

    python benchmarks/bench_epoch.py [--iters 3] [--ref-iters 1] [--p 8 13.7 inf] [--out table.md]

For each p, times a fixed number of training iterations (forward, hinge loss, backward, Adam step; batch
512) with the pure-torch reference op and with the fast kernel (`nets.kernels`), side by side on the same
batches, then EXTRAPOLATES to one epoch of 60,000 samples (118 iterations of 512, the data pipeline not
included). Uses real MNIST from ../shared/data when present, else random images (the op's cost does not
depend on the values). The machine is shared: the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nets.kernels import active_backend  # noqa: E402

EPOCH = 60_000
BATCH = 512


def batches(n_iters: int, gen: torch.Generator):
    """(x, y) batches of real MNIST training images when available, else random ones."""
    try:
        from common.datasets import default_data_dir, load_arrays

        data_dir = default_data_dir()
        x, y = load_arrays("mnist", split="train", data_dir=data_dir)
        x = torch.from_numpy(x[: BATCH * n_iters])
        y = torch.from_numpy(y[: BATCH * n_iters])
        src = "MNIST train"
    except Exception:  # noqa: BLE001 - any missing data: random images of the same shape
        x = torch.rand(BATCH * n_iters, 1, 28, 28, generator=gen)
        y = torch.randint(0, 10, (BATCH * n_iters,), generator=gen)
        src = "random images (MNIST not found)"
    return [(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]) for i in range(n_iters)], src


def build(p: float, backend: str, seed: int):
    from nets.models import ModelConfig, build_model, set_backend, set_p

    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch="linf", input_shape=(1, 28, 28), depth=5, width=256))
    set_p(model, p)
    set_backend(model, backend)
    return model


def time_iters(model, data, threads: int, warmup: int = 1) -> tuple[float, float]:
    """(median wall s, median process CPU s) per training iteration over `data` under `threads`
    torch threads, after `warmup` untimed iterations."""
    from nets.losses import hinge_loss

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    opt = torch.optim.Adam(model.parameters(), lr=0.02, betas=(0.9, 0.99), eps=1e-10)
    model.train()
    walls, cpus = [], []
    try:
        for i, (x, y) in enumerate(data[:warmup] + data):
            c = time.process_time()
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = hinge_loss(model(x), y, theta=0.9, mix=0.75)
            loss.backward()
            opt.step()
            if i >= warmup:
                walls.append(time.perf_counter() - t)
                cpus.append(time.process_time() - c)
    finally:
        torch.set_num_threads(old)
    return statistics.median(walls), statistics.median(cpus)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=3, help="timed iterations with the fast kernel")
    ap.add_argument("--ref-iters", type=int, default=1, help="timed iterations with the reference")
    ap.add_argument("--p", nargs="+", default=["8", "13.7", "inf"])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    backend = active_backend("cpu")
    gen = torch.Generator().manual_seed(0)
    data, src = batches(max(args.iters, args.ref_iters), gen)
    load0 = " ".join(f"{v:.1f}" for v in os.getloadavg())
    iters_per_epoch = math.ceil(EPOCH / BATCH)
    nthreads = torch.get_num_threads()
    lines = [
        f"Measured {_dt.date.today().isoformat()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, "
        f"kernel `{backend}`, data: {src}; load average at start {load0} (shared machine).",
        f"Pure ℓ∞-dist net 5×256 (mnist-small), batch {BATCH}, hinge loss + Adam. Seconds per iteration "
        f"are medians of {args.iters} (kernel) / {args.ref_iters} (reference) timed iterations; the epoch "
        f"time is EXTRAPOLATED: {iters_per_epoch} iterations × s/iter (data loading excluded).",
        "",
        "(a) = ONE torch thread, process CPU seconds per iteration (work; robust to the other users of "
        f"this shared machine); (b) = {nthreads} threads, wall seconds (contention included).",
        "",
        "| p | reference s/iter (a) | kernel s/iter (a) | speed-up (a) | reference epoch (a, extrap.) "
        "| kernel epoch (a, extrap.) | reference s/iter (b) | kernel s/iter (b) | speed-up (b) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ptxt in args.p:
        p = math.inf if ptxt in ("inf", "∞") else float(ptxt)
        r1 = time_iters(build(p, "reference", 0), data[: args.ref_iters], 1)[1]
        k1 = time_iters(build(p, "auto", 0), data[: args.iters], 1)[1]
        rw = time_iters(build(p, "reference", 0), data[: args.ref_iters], nthreads)[0]
        kw = time_iters(build(p, "auto", 0), data[: args.iters], nthreads)[0]
        pname = "∞" if math.isinf(p) else f"{p:g}"
        lines.append(f"| {pname} | {r1:.3f} | {k1:.4f} | {r1 / k1:.1f}× | {r1 * iters_per_epoch / 60:.1f} min "
                     f"| {k1 * iters_per_epoch:.1f} s | {rw:.3f} | {kw:.4f} | {rw / kw:.1f}× |")
        print(lines[-1], flush=True)
    lines += ["", f"Load average at end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}."]
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
