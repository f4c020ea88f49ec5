"""onnxruntime throughput of an exported ℓ∞-dist net vs the torch forward, side by side in one run.

    python benchmarks/bench_onnx.py                       # MNIST-sized pure net 5×512, batch 256
    python benchmarks/bench_onnx.py --checkpoint DIR      # a trained checkpoint instead
    python benchmarks/bench_onnx.py --conv --batch 1 256 2048 --json out.json

Every engine runs in the same process on the same inputs with the same thread count; each figure is
the best of `--repeats` timed runs after one warm-up (the machine is shared: best-of is the least
noisy estimator). "G el/s" counts N·M·D pair-elements of the ℓ∞-dist layers only. The parity column
is the max |ORT − torch| over the batch (pure nets are expected to be bit-identical). "ORT+pyop" is
the optional fast path export.fast_ort (needs onnxruntime-extensions; n/a without it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from export import build_onnx  # noqa: E402
from export.check import ort_session  # noqa: E402
from nets.models import ModelConfig, build_model, dist_layers, set_backend  # noqa: E402


def best_time(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def dist_elements(model: torch.nn.Module, input_shape, n: int) -> int:
    """N·M·D pair-elements of every ℓ∞-dist layer for a batch of ``n`` (via a shape probe)."""
    total, hooks = 0, []

    def hook(mod, inp, out):
        nonlocal total
        w = mod.weight
        per_out = int(np.prod(w.shape[1:]))
        total += int(out.numel()) * per_out

    for layer in dist_layers(model):
        hooks.append(layer.register_forward_hook(hook))
    with torch.no_grad():
        model(torch.zeros(n, *input_shape))
    for hk in hooks:
        hk.remove()
    return total


def bench_model(name: str, model, input_shape, batch: int, threads: int, repeats: int,
                reference: bool = True) -> dict:
    """ORT (function bodies) vs torch backends on one model; returns a result row."""
    model.eval()
    torch.set_num_threads(threads)
    x = np.random.default_rng(0).random((batch, *input_shape), dtype=np.float32)
    xt = torch.from_numpy(x)
    sess = ort_session(build_onnx(model, input_shape=input_shape), threads=threads)
    y_ort = sess.run(None, {"input": x})[0]
    t_ort = best_time(lambda: sess.run(None, {"input": x}), repeats)
    els = dist_elements(model, input_shape, batch)
    row = {"model": name, "batch": batch, "threads": threads, "dist_G_elements": els / 1e9,
           "ort_samples_per_s": batch / t_ort, "ort_G_el_per_s": els / t_ort / 1e9}
    try:
        from export.fast_ort import fast_session

        fast = fast_session(build_onnx(model, input_shape=input_shape), threads=threads)
        y_fast = fast.run(None, {"input": x})[0]
        t_fast = best_time(lambda: fast.run(None, {"input": x}), repeats)
        row["fast_samples_per_s"] = batch / t_fast
        row["fast_bit_identical"] = bool(np.array_equal(y_fast, y_ort))
    except Exception as e:  # optional: onnxruntime-extensions missing (ModelError) or failing
        row["fast_samples_per_s"] = None
        row["fast_error"] = str(e).splitlines()[0]
    for backend in ("reference", "auto") if reference else ("auto",):
        set_backend(model, backend)
        with torch.no_grad():
            y_t = model(xt).numpy()
            t = best_time(lambda: model(xt), repeats)
        row[f"torch_{backend}_samples_per_s"] = batch / t
        row[f"ort_over_torch_{backend}"] = t / t_ort
        row[f"max_abs_diff_{backend}"] = float(np.abs(y_ort - y_t).max())
    try:
        from nets.kernels import active_backend

        row["torch_auto_backend"] = active_backend(torch.device("cpu"))
    except (ImportError, AttributeError):
        row["torch_auto_backend"] = "reference (no nets.kernels.active_backend)"
    return row


def _fmt(v, spec: str) -> str:
    return "skipped" if v is None else spec.format(v)


def models(args) -> list[tuple[str, torch.nn.Module, tuple[int, int, int]]]:
    out = []
    if args.checkpoint:
        from nets.checkpoint import load_checkpoint

        m, meta = load_checkpoint(args.checkpoint)
        members = getattr(m, "members", None)
        cfg = (members[0] if members is not None else m).config
        out.append((f"checkpoint {args.checkpoint}", m, tuple(cfg.input_shape)))
    else:
        torch.manual_seed(0)
        cfg = ModelConfig(arch="linf", input_shape=(1, 28, 28), depth=args.depth, width=args.width)
        out.append((f"pure {args.depth}x{args.width} MNIST (random weights)", build_model(cfg), (1, 28, 28)))
    if args.conv:
        torch.manual_seed(0)
        cfg = ModelConfig(arch="conv-linf-mlp", input_shape=(3, 32, 32), depth=1, width=256, hidden=128,
                          conv_channels=(32, 32, 64), conv_strides=(1, 2, 2))
        out.append(("conv (32,32,64)+256+MLP CIFAR (random weights)", build_model(cfg), (3, 32, 32)))
    return out


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="checkpoint directory to benchmark instead of a random net")
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--batch", type=int, nargs="+", default=[256], help="one or more batch sizes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-reference", dest="reference", action="store_false",
                    help="skip the (slow) pure-torch reference op")
    ap.add_argument("--conv", action="store_true", help="also benchmark a small CIFAR conv model")
    ap.add_argument("--json", type=Path, help="write the result rows as JSON")
    args = ap.parse_args(argv)
    rows = [bench_model(n, m, s, b, args.threads, args.repeats, args.reference)
            for n, m, s in models(args) for b in args.batch]
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"onnxruntime (linf function bodies) vs torch, {args.threads} thread(s), samples/s")
    for col in ("model", "batch", "ORT", "ORT G el/s", "ORT+pyop", "torch ref", "torch auto",
                "ORT/torch ref", "ORT/torch auto", "max|ORT−torch|"):
        t.add_column(col)
    for r in rows:
        fast = "n/a" if r["fast_samples_per_s"] is None else (
            f"{r['fast_samples_per_s']:.0f}" + ("" if r.get("fast_bit_identical") else " (differs!)"))
        t.add_row(r["model"], str(r["batch"]), f"{r['ort_samples_per_s']:.0f}", f"{r['ort_G_el_per_s']:.2f}",
                  fast, _fmt(r.get("torch_reference_samples_per_s"), "{:.0f}"),
                  f"{r['torch_auto_samples_per_s']:.0f}", _fmt(r.get("ort_over_torch_reference"), "{:.2f}×"),
                  f"{r['ort_over_torch_auto']:.2f}×",
                  f"{r['max_abs_diff_auto']:.2g}")
    Console(width=160).print(t)
    Console().print(f"torch 'auto' backend: {rows[0]['torch_auto_backend']}; ORT+pyop = export.fast_ort "
                    f"(onnxruntime-extensions Python ops on nets' kernel): {rows[0].get('fast_error', 'available')}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
