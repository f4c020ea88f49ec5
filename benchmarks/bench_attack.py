"""Our attack vs torchattacks' APGD-CE and AutoAttack, side by side, same models and samples.

Run (after `pip install --no-deps torchattacks`; it imports without torchvision here):
    python benchmarks/bench_attack.py --linf-checkpoint runs/mnist-small-seed0 --n-mlp 500 --n-linf 200

Models: (1) an undefended ReLU MLP trained on MNIST for one epoch (standard ONNX ops, built with
onnx.helper), (2) an ℓ∞-dist net checkpoint (exported with export/). All attacks run on the SAME
torch evaluation of the ONNX graph (verify.attack.TorchGraph, exact subgradients for torchattacks;
ours may use its smoothed surrogate), one thread, same samples. Every adversarial example, ours or
theirs, is judged the same way: float32 within ε EXACTLY (no tolerance), inside [0, 1], and
misclassified by onnxruntime (strictly). For the ℓ∞-dist model the samples are also certified and
no sample may be both certified and broken (the soundness alarm).
Prints a Markdown table (robust accuracy in %, seconds) for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from verify.attack.box import inside_box, linf_box  # noqa: E402
from verify.attack.pgd import AttackConfig  # noqa: E402
from verify.attack.replay import OrtReplayer  # noqa: E402
from verify.attack.runner import attack_arrays  # noqa: E402
from verify.attack.torch_graph import TorchGraph  # noqa: E402
from common.datasets import load_arrays  # noqa: E402


def undefended_mlp(x: np.ndarray, y: np.ndarray, path: Path) -> Path:
    """A plain ReLU MLP (784-128-10, Adam 1e-3, one epoch, batch 128, seed 0), exported as a user
    would: torch.onnx.export (TorchScript exporter, dynamic batch)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(x.shape[1:])), 128),
                              torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for idx in torch.randperm(len(xt), generator=torch.Generator().manual_seed(0)).split(128):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
        opt.step()
    torch.onnx.export(net.eval(), (xt[:2],), str(path), dynamo=False, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    return path


def judged_robust(path, x, y, adv, eps) -> np.ndarray:
    """Per sample: still correct (True) unless adv is an exact-ε, in-domain, ORT-misclassified input.

    Adversarial examples are first clamped into the exact float32 box (torchattacks' float32
    projection can overshoot ε by one rounding); the number that needed it is returned too."""
    lo, hi = linf_box(x, eps, (0.0, 1.0))
    outside_raw = int(sum(not inside_box(x[i], adv[i], eps, (0.0, 1.0)) for i in range(len(x))))
    adv = np.minimum(np.maximum(adv, lo), hi)
    ort = OrtReplayer(path)
    clean_ok = ort.logits(x).argmax(1) == y
    inside = np.array([inside_box(x[i], adv[i], eps, (0.0, 1.0)) for i in range(len(x))])
    z = ort.logits(adv)
    zy = z[np.arange(len(y)), y]
    other = z.copy()
    other[np.arange(len(y)), y] = -np.inf
    broken = inside & (other.max(1) > zy)
    return clean_ok & ~broken, outside_raw


class _WithParam(torch.nn.Module):
    """torchattacks reads the device from the model's first parameter; TorchGraph has none."""

    def __init__(self, graph):
        super().__init__()
        self.graph = graph
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, x):
        return self.graph(x)


def run_torchattacks(name, path, x, y, eps, seed=0):
    import torchattacks

    model = _WithParam(TorchGraph.from_onnx(path)).eval()
    torch.manual_seed(seed)
    if name == "APGD-CE":
        atk = torchattacks.APGD(model, norm="Linf", eps=eps, steps=100, n_restarts=1, loss="ce", seed=seed)
    else:
        atk = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=seed)
    t0 = time.perf_counter()
    adv = atk(torch.from_numpy(x), torch.from_numpy(y)).detach().numpy().astype(np.float32)
    return adv, time.perf_counter() - t0


def run_ours(path, x, y, eps, cfg, skip=None):
    t0 = time.perf_counter()
    res = attack_arrays(path, x, y, eps, cfg, skip=skip)
    adv = x.copy()
    for i, w in res.witnesses.items():
        adv[i] = w
    return adv, time.perf_counter() - t0


def certified_mask(path, x, y, eps):
    from verify.certify.certifier import CertifyConfig, certify_batch
    from verify.front.model import load_model

    res = certify_batch(load_model(path), x, y, CertifyConfig(eps))
    return np.array([s == "certified" for s in res.status])


def bench_model(label, path, x, y, eps, attacks, certified=None):
    rows = []
    for name, fn in attacks:
        adv, secs = fn()
        robust, outside = judged_robust(path, x, y, adv, eps)
        conflict = 0 if certified is None else int((certified & ~robust).sum())
        rows.append((label, name, 100 * robust.mean(), secs, outside, conflict))
        print(f"  {label:28s} {name:34s} robust {100 * robust.mean():6.2f}%  {secs:8.1f} s  "
              f"outside-ball {outside}  certified∧broken {conflict}", flush=True)
        if conflict:
            raise SystemExit(f"SOUNDNESS ALARM: {conflict} certified samples broken by {name} on {label}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--linf-checkpoint", type=Path, default=None, help="nets checkpoint dir of an ℓ∞-dist MNIST model")
    ap.add_argument("--linf-onnx", type=Path, default=None, help="or an exported ℓ∞-dist ONNX model")
    ap.add_argument("--n-mlp", type=int, default=500)
    ap.add_argument("--n-linf", type=int, default=200)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--skip", default="", help="comma list of attacks to skip: ours,apgd,aa")
    args = ap.parse_args()
    torch.set_num_threads(1)
    skip = set(filter(None, args.skip.split(",")))
    xtr, ytr = load_arrays("mnist", "train", args.data_dir)
    xte, yte = load_arrays("mnist", "test", args.data_dir)
    tmp = Path(tempfile.mkdtemp(prefix="bench_attack_"))
    mlp = undefended_mlp(xtr, ytr, tmp / "mlp.onnx")
    models = [("undefended ReLU MLP", mlp, args.n_mlp)]
    if args.linf_checkpoint is not None:
        from export import export_checkpoint

        export_checkpoint(args.linf_checkpoint, tmp / "linf.onnx")
        models.append((f"ℓ∞-dist net ({args.linf_checkpoint.name})", tmp / "linf.onnx", args.n_linf))
    elif args.linf_onnx is not None:
        models.append((f"ℓ∞-dist net ({args.linf_onnx.name})", args.linf_onnx, args.n_linf))
    cfg = AttackConfig()
    rows = []
    for label, path, n in models:
        x, y = xte[:n], yte[:n]
        cert = certified_mask(path, x, y, args.eps) if "ℓ∞" in label else None
        attacks = []
        if "ours" not in skip:
            attacks.append(("ours (default)", lambda p=path, x=x, y=y: run_ours(p, x, y, args.eps, cfg)))
            if cert is not None:
                attacks.append(("ours, certified samples skipped",
                                lambda p=path, x=x, y=y, c=cert: run_ours(p, x, y, args.eps, cfg, skip=c)))
        if "apgd" not in skip:
            attacks.append(("torchattacks APGD-CE", lambda p=path, x=x, y=y: run_torchattacks("APGD-CE", p, x, y, args.eps)))
        if "aa" not in skip:
            attacks.append(("torchattacks AutoAttack (standard)",
                            lambda p=path, x=x, y=y: run_torchattacks("AA", p, x, y, args.eps)))
        if cert is not None:
            print(f"  {label}: certified {100 * cert.mean():.2f}% at ε = {args.eps}", flush=True)
        rows += bench_model(f"{label}, n = {n}", path, x, y, args.eps, attacks, cert)
    print("\n| model | attack | robust accuracy (%) | time (s) | adv. needing exact ε re-projection |")
    print("|---|---|---|---|---|")
    for label, name, acc, secs, outside, _ in rows:
        print(f"| {label} | {name} | {acc:.2f} | {secs:.1f} | {outside} |")


if __name__ == "__main__":
    main()
