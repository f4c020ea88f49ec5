"""Tightness of the sound certifier on a trained pure ℓ∞-dist net (issue 5, must-show 2).

For a nets checkpoint (exported here to ONNX) and its test set:

1. radii: the sound Lipschitz radius of every correctly classified sample is ≥ m/2 − 1e-5, where m
   is the exact margin of the exported float32 weights (evaluated in float64 from the ONNX file,
   error ~1e-13, far below the tolerance);
2. agreement: the samples certified by the sound `lipschitz` method are exactly those certified by
   the training-time evaluation (nets.evaluate: float32 margin − 2ε > 0), except samples whose
   margin/2 lies within rounding (1e-5) of ε — each disagreement is listed with its margin/2 − ε;
3. `auto` (IBP with the [0, 1] input domain) may certify MORE: those extra samples are counted.

    python benchmarks/tightness_certify.py CHECKPOINT_DIR [--n 10000] [--eps E] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOL = 1e-5


def exact_logits64(onnx_path, x: np.ndarray) -> np.ndarray:
    """float64 logits of a pure exported net (Flatten, linf::LinfDist, Add/Sub const, Neg)."""
    import onnx
    from onnx import numpy_helper as nh

    m = onnx.load(str(onnx_path))
    consts = {t.name: nh.to_array(t).astype(np.float64) for t in m.graph.initializer}
    vals = {m.graph.input[0].name: x.astype(np.float64)}
    for node in m.graph.node:
        a = vals[node.input[0]]
        if node.op_type == "Flatten":
            out = a.reshape(a.shape[0], -1)
        elif node.op_type == "LinfDist":
            w = consts[node.input[1]]
            out = np.concatenate([np.abs(a[:, None, :] - w[None, s:s + 16]).max(-1)
                                  for s in range(0, len(w), 16)], axis=1)
            if len(node.input) > 2 and node.input[2]:
                out = out + consts[node.input[2]]
        elif node.op_type == "Neg":
            out = -a
        elif node.op_type in ("Add", "Sub"):
            c = consts[node.input[1]]
            out = a + c if node.op_type == "Add" else a - c
        else:
            raise SystemExit(f"exact_logits64: unsupported node {node.op_type} (pure nets only)")
        vals[node.output[0]] = out
    return vals[m.graph.output[0].name]


def _margin(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    zz = z.astype(np.float64).copy()
    own = zz[np.arange(len(y)), y].copy()
    zz[np.arange(len(y)), y] = -np.inf
    return own - zz.max(1)


def run(ckpt, n=None, eps=None, data_dir=None, onnx_path=None, batch=500) -> dict:
    import torch

    from export.onnx_export import export_checkpoint
    from nets.checkpoint import load_checkpoint
    from nets.losses import margins
    from verify.certify.certifier import Certifier, CertifyConfig
    from common.datasets import load_arrays
    from verify.front.model import load_model

    net, meta = load_checkpoint(ckpt)
    eps = float(eps if eps is not None else meta.get("train", {}).get("eps_test", meta.get("eps_train", 0.1)))
    x, y = load_arrays(meta.get("dataset", "mnist"), "test", data_dir)
    x, y = (x[:n], y[:n]) if n else (x, y)
    with tempfile.TemporaryDirectory() as d:
        path = Path(onnx_path) if onnx_path else Path(d) / "m.onnx"
        if not onnx_path:
            export_checkpoint(ckpt, path)
        model = load_model(path)
        t0 = time.perf_counter()
        res = {m: [Certifier(model, CertifyConfig(eps, m, bisect_steps=0)).run(x[s:s + batch], y[s:s + batch])
                   for s in range(0, len(y), batch)] for m in ("lipschitz", "auto")}
        t_sound = time.perf_counter() - t0
        m_exact = _margin(np.concatenate([exact_logits64(path, x[s:s + batch])
                                          for s in range(0, len(y), batch)]), y)
    with torch.no_grad():  # training-time evaluation (nets.evaluate's rule, per sample)
        z = torch.cat([net(torch.from_numpy(x[s:s + batch])) for s in range(0, len(y), batch)])
        yt = torch.from_numpy(y)
        mt = margins(z, yt)
        mt[torch.arange(len(y)), yt] = float("inf")
        ok = z.argmax(1) == yt
        train_cert = (ok & ((mt - 2 * eps) > 0).all(1)).numpy()
        m_train = mt.min(1).values.double().numpy()
    status = {k: np.array([s for r in v for s in r.status]) for k, v in res.items()}
    radius = {k: np.concatenate([r.radius for r in v]) for k, v in res.items()}
    correct = m_exact > 0
    deficit = m_exact[correct] / 2 - radius["lipschitz"][correct]
    ours = status["lipschitz"] == "certified"
    disagree = np.nonzero(ours != train_cert)[0]
    explained = [int(i) for i in disagree if abs(m_train[i] / 2 - eps) <= TOL * (1 + abs(m_train[i]))]
    out = {
        "checkpoint": str(ckpt), "dataset": meta.get("dataset"), "n": len(y), "eps": eps,
        "clean_accuracy": float(correct.mean()),
        "train_eval_certified": int(train_cert.sum()), "sound_lipschitz_certified": int(ours.sum()),
        "sound_auto_certified": int((status["auto"] == "certified").sum()),
        "auto_extra_over_train_eval": int(((status["auto"] == "certified") & ~train_cert).sum()),
        "max_radius_deficit_vs_exact_half_margin": float(deficit.max()) if deficit.size else 0.0,
        "radii_ok": bool((deficit <= TOL).all()),
        "disagreements": [{"index": int(i), "half_margin_minus_eps": float(m_train[i] / 2 - eps),
                           "train_eval": bool(train_cert[i]), "sound": bool(ours[i]),
                           "explained": int(i) in explained} for i in disagree],
        "all_disagreements_explained": len(explained) == len(disagree),
        "sound_seconds": t_sound,
    }
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--n", type=int)
    ap.add_argument("--eps", type=float)
    ap.add_argument("--data-dir")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    out = run(a.checkpoint, a.n, a.eps, a.data_dir)
    if a.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
    return out


if __name__ == "__main__":
    main()
