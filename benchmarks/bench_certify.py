"""Certification throughput and the overhead of sound mode vs a plain float32 forward (issue 5, must-show 3).

Side by side, in one process, on the same samples and the same ONNX file:

- ``ort``        onnxruntime float32 forward of the exported file (the portable function body);
- ``forward``    the verifier's float32 forward (bit-identical to onnxruntime for ℓ∞-dist nets);
- ``plain``      the UNSOUND seed-code style certification: float32 forward, radius = margin/2
                 (``plain-ort``: the same with onnxruntime's forward);
- ``sound-*``    ``verify.certify.certifier.Certifier`` with each method (auto / lipschitz / ibp, no bisection).

Overhead = sound time / plain time. Repeats are interleaved and the median is reported.
Model: ``--model FILE.onnx``, or ``--checkpoint DIR`` (exported on the fly), else a random-weight
identity-initialised pure ℓ∞-dist net of the MNIST shape (said so in the output).

    python benchmarks/bench_certify.py --data mnist --n 1000 --eps 0.3 [--model m.onnx] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _model_path(args, tmp: Path) -> tuple[Path, str]:
    if args.model:
        return Path(args.model), f"given file {args.model}"
    from export.onnx_export import export_checkpoint, export_model

    out = tmp / "model.onnx"
    if args.checkpoint:
        export_checkpoint(args.checkpoint, out)
        return out, f"checkpoint {args.checkpoint}"
    import torch

    from nets.models import ModelConfig, build_model

    torch.manual_seed(0)
    shape = (1, 28, 28) if args.data in ("mnist", "fashion-mnist") else (1, 8, 8)
    net = build_model(ModelConfig(arch="linf", input_shape=shape, depth=5, width=args.width)).eval()
    export_model(net, out, dataset=args.data, check=False)
    return out, f"RANDOM-WEIGHT pure net 5x{args.width} (no trained model given)"


def _timed(fn, reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--checkpoint")
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--data-dir")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)

    import onnxruntime as ort

    from verify.certify.certifier import Certifier, CertifyConfig
    from common.datasets import load_arrays
    from verify.front.model import load_model

    x, y = load_arrays(args.data, "test", args.data_dir)
    x, y = x[: args.n], y[: args.n]
    with tempfile.TemporaryDirectory() as d:
        path, origin = _model_path(args, Path(d))
        model = load_model(path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        bs = args.batch_size
        batches = [(x[s:s + bs], y[s:s + bs]) for s in range(0, len(x), bs)]
        certs = {m: Certifier(model, CertifyConfig(args.eps, m, bisect_steps=0)) for m in ("auto", "lipschitz", "ibp")}

        def run_ort():
            return np.concatenate([sess.run(None, {name: xb})[0] for xb, _ in batches])

        def run_forward():
            return np.concatenate([model.forward(xb) for xb, _ in batches])

        def naive(z):  # unsound: float32 margin / 2 (what the seed code reports)
            top = np.sort(z, axis=1)
            m = z[np.arange(len(y)), y] - np.where(np.argmax(z, 1) == y, top[:, -2], top[:, -1])
            return (m / 2 > args.eps).sum()

        def run_plain():
            return naive(run_forward())

        def run_plain_ort():
            return naive(run_ort())

        def run_sound(method):
            res = [certs[method].run(xb, yb) for xb, yb in batches]
            return sum(s == "certified" for r in res for s in r.status)

        fns = {"ort": run_ort, "forward": run_forward, "plain": run_plain, "plain-ort": run_plain_ort,
               **{f"sound-{m}": (lambda m=m: run_sound(m)) for m in certs}}
        times = {k: [] for k in fns}
        outs = {}
        run_plain(), run_sound("auto")  # warm-up (imports, torch threads)
        for _ in range(args.reps):
            for k, fn in fns.items():
                t, outs[k] = _timed(fn, 1)
                times[k].append(t)
        med = {k: statistics.median(v) for k, v in times.items()}
    res = {
        "model": origin, "data": args.data, "n": len(y), "eps": args.eps, "batch_size": bs,
        "lipschitz": certs["auto"].lip,
        "samples_per_s": {k: len(y) / v for k, v in med.items()},
        "seconds": med,
        "overhead_vs_plain": {k: med[k] / med["plain"] for k in med if k.startswith("sound")},
        "overhead_vs_plain_ort": {k: med[k] / med["plain-ort"] for k in med if k.startswith("sound")},
        "certified": {k: int(outs[k]) for k in outs if k.startswith("sound") or k.startswith("plain")},
        "threads": {"torch": torch.get_num_threads(), "ort_intra_op": so.intra_op_num_threads},
    }
    if args.json:
        print(json.dumps(res))
    else:
        print(f"model: {origin}; data: {args.data} n={len(y)} eps={args.eps} batch={bs}; L={res['lipschitz']:.17g}")
        print("| path | samples/s | time vs plain (our forward) | time vs plain-ort | certified |")
        print("|---|---|---|---|---|")
        for k in fns:
            a, b = med[k] / med["plain"], med[k] / med["plain-ort"]
            print(f"| {k} | {res['samples_per_s'][k]:.0f} | {a:.2f}x | {b:.2f}x | {res['certified'].get(k, '')} |")
    return res


if __name__ == "__main__":
    main()
