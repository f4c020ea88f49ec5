"""The GPU check, prepared for the day a CUDA machine is lent: three timed steps, results in one folder.

    python benchmarks/gpu_check.py --out gpu-results            # on a CUDA machine (<= 9.5 min)
    python benchmarks/gpu_check.py --out /tmp/dry --dry-run     # anywhere: CPU, tiny sizes, same code

Steps (each a subprocess with its own time limit, so one hang cannot eat the others' time):
1. `pytest -m gpu` (the compiled Triton kernels against the float64 oracle, determinism): pytest.log,
   junit.xml.
2. Kernel benchmark: `nets.kernels.fast_lp_dist(backend="cuda")` against `torch.cdist`, forward and
   forward+backward, p ∈ {8, 13.7, ∞}, at B×D×N = 512×1024×1024 and the CIFAR-10 net's shapes
   512×3072×5120 and 512×5120×5120 (cdist forward only there: its backward would need B×N×D memory);
   CUDA-event timings, median of --reps after a warm-up that includes Triton's compile: kernels.json.
3. One epoch of the paper's CIFAR-10 6×5120 ℓ∞-dist net (preset `cifar10-linf`, batch 512, p = 8 as in
   its first 100 epochs) on 50,000 CIFAR-shaped random images — an epoch's time does not depend on the
   pixel values, and the real CIFAR-10 train set is not on these machines — for the seed report's
   19.7 s/epoch: epoch.json.
summary.json lists each step's status, return code and wall time. Exit code 0 only when every step
passed. --dry-run runs the same three steps on the CPU at tiny sizes (pytest -m gpu then skips with
its reason); it checks the script, not the GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMITS = {"pytest": 150, "kernels": 150, "epoch": 270}  # seconds per step: 9.5 min at most in all


# ------------------------------------------------------------------ step 2: kernels vs torch.cdist


def _timer(device):
    import torch

    if device.type == "cuda":
        def run(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000.0
    else:
        def run(fn):
            t = time.perf_counter()
            fn()
            return time.perf_counter() - t
    return run


def step_kernels(device_name: str, reps: int, shapes, out: Path) -> int:
    import torch

    from nets.kernels import active_backend, fast_lp_dist

    device = torch.device(device_name)
    backend = active_backend(device)
    timer = _timer(device)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for B, D, N in shapes:
        x = torch.rand(B, D, generator=gen).to(device)
        w = torch.rand(N, D, generator=gen).to(device)
        g = torch.randn(B, N, generator=gen).to(device)
        cdist_bwd = B * N * D <= 2**31  # cdist's backward holds B×N×D
        for p in (8.0, 13.7, math.inf):
            ops = {"kernel": lambda a, b, p=p: fast_lp_dist(a, b, p, backend=device.type),
                   "cdist": lambda a, b, p=p: torch.cdist(a, b, p=p)}
            for name, op in ops.items():
                for mode in ("fwd", "fwd+bwd"):
                    if name == "cdist" and mode == "fwd+bwd" and not cdist_bwd:
                        continue
                    xr, wr = x.clone().requires_grad_(mode != "fwd"), w.clone().requires_grad_(mode != "fwd")

                    def call():
                        with torch.set_grad_enabled(mode != "fwd"):
                            y = op(xr, wr)
                            if y is None:
                                raise RuntimeError(f"no fast kernel on {device}: {backend}")
                            if mode != "fwd":
                                y.backward(g)

                    call()  # warm-up (Triton compiles here)
                    secs = statistics.median(timer(call) for _ in range(reps))
                    rows.append({"B": B, "D": D, "N": N, "p": str(p), "op": name, "mode": mode,
                                 "seconds": secs, "G_pair_el_per_s": B * N * D / secs / 1e9})
                    print(f"{name:6s} {mode:7s} p={p:<6} {B}x{D}x{N}: {secs * 1e3:9.2f} ms", flush=True)
    info = {"device": str(device), "backend": backend, "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "reps": reps, "rows": rows}
    (out / "kernels.json").write_text(json.dumps(info, indent=1))
    return 0


# ------------------------------------------------------------------ step 3: one CIFAR-10 epoch


def step_epoch(device_name: str, n_train: int, width: int, out: Path) -> int:
    import torch

    from nets.data import DataSplits
    from nets.presets import apply_overrides, get_preset
    from nets.train import run_training

    gen = torch.Generator().manual_seed(0)

    def images(n):
        return torch.rand(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen)

    tx, ty = images(n_train)
    ex, ey = images(512)
    splits = DataSplits("cifar10", tx, ty, ex[:0], ey[:0], ex, ey)
    cfg = apply_overrides(get_preset("cifar10-linf"), epochs=1, p_warm_epochs=1.0, anneal_epochs=0.0,
                          width=width, device=device_name, eval_limit=512, eval_batch_size=512)
    res = run_training(cfg, None, splits=splits)
    row = res.history[0]
    info = {"preset": "cifar10-linf", "depth": cfg.depth, "width": cfg.width, "batch_size": cfg.batch_size,
            "train_images": n_train, "p": row.p, "epoch_seconds": round(row.seconds, 3),
            "train_seconds": res.metrics["train_seconds"], "seed_report_seconds": 19.7,
            "device": device_name, "data": "CIFAR-shaped random images (timing only)",
            "note": "epoch_seconds includes the EMA model's evaluation on 512 images"}
    print(json.dumps(info), flush=True)
    (out / "epoch.json").write_text(json.dumps(info, indent=1))
    return 0


# ------------------------------------------------------------------ driver


def _run_step(name: str, cmd: list[str], limit: int, out: Path, env: dict) -> dict:
    t = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        try:
            rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                timeout=limit).returncode
            status = "passed" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            rc, status = None, f"timed out after {limit} s"
    res = {"step": name, "status": status, "rc": rc, "seconds": round(time.perf_counter() - t, 1)}
    print(f"{name}: {status} ({res['seconds']} s) — log in {out / (name + '.log')}", flush=True)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="results folder (created; must be empty)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: check the script itself")
    ap.add_argument("--only", nargs="+", choices=["pytest", "kernels", "epoch"])
    ap.add_argument("--step", choices=["kernels", "epoch"], help=argparse.SUPPRESS)  # internal
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.step:  # a child process of the driver below
        if args.step == "kernels":
            shapes = [(16, 33, 24)] if args.dry_run else [(512, 1024, 1024), (512, 3072, 5120), (512, 5120, 5120)]
            return step_kernels(args.device, 2 if args.dry_run else 5, shapes, args.out)
        return step_epoch(args.device, 256 if args.dry_run else 50_000, 32 if args.dry_run else 5120, args.out)

    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        print(f"error: {args.out} exists and is not an empty folder", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.dry_run else "cuda"
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("error: no CUDA device here (use --dry-run to check the script on a CPU)", file=sys.stderr)
            return 2
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    me = [sys.executable, str(Path(__file__).resolve()), "--out", str(args.out.resolve()), "--device", device]
    me += ["--dry-run"] if args.dry_run else []
    steps = {
        "pytest": [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-rs", "-p", "no:cacheprovider",
                   f"--junitxml={args.out.resolve() / 'junit.xml'}", "tests"],
        "kernels": me + ["--step", "kernels"],
        "epoch": me + ["--step", "epoch"],
    }
    scale = 2 if args.dry_run else 1  # the CPU dry run compiles the C++ kernels on a cold cache
    results = [_run_step(name, cmd, LIMITS[name] * scale, args.out, env)
               for name, cmd in steps.items() if not args.only or name in args.only]
    (args.out / "summary.json").write_text(json.dumps({"dry_run": args.dry_run, "steps": results}, indent=1))
    return 0 if all(r["status"] == "passed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
