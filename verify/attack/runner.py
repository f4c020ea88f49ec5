"""Run the attack schedule on a data set and produce replayed witness records.

:func:`attack_arrays` is the library entry point behind ``verify_cli.py attack``. Guarantees:
- clean predictions and every verdict come from onnxruntime on the ONNX file (the judge), never
  from the torch evaluation (the attacker's tool);
- status ``falsified`` only for samples whose float32 witness passed :meth:`OrtReplayer.confirm`;
  ``misclassified`` for samples ORT already gets wrong; ``unknown`` where the attack found nothing
  (no claim of robustness is made);
- results are deterministic given ``AttackConfig.seed``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from verify.attack.box import linf_box
from verify.attack.pgd import AttackConfig, apgd
from verify.attack.replay import OrtReplayer, witness_record
from verify.attack.torch_graph import TorchGraph
from verify.certify.certificates import tool_version
from common.errors import DataError
from verify.certify.header import check_eps

__all__ = ["AttackResult", "attack_arrays", "schedule", "tool_version"]



@dataclass
class AttackResult:
    """Per-sample outcome of an attack run (arrays aligned with the input samples)."""

    eps: float
    labels: np.ndarray
    predicted: np.ndarray          # ORT clean prediction
    status: list[str]              # "misclassified" | "falsified" | "unknown"
    witnesses: dict[int, np.ndarray] = field(default_factory=dict)   # sample position -> float32 x′
    adv_predicted: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    model_sha256: str = ""
    config: dict = field(default_factory=dict)
    domain: tuple[float, float] = (0.0, 1.0)

    @property
    def n(self) -> int:
        return len(self.labels)

    def summary(self) -> dict:
        """n, clean/robust accuracy, falsified count (robust = correct and not falsified)."""
        n = self.n
        correct = int(np.sum(self.predicted == self.labels))
        fals = sum(s == "falsified" for s in self.status)
        return {
            "n": n,
            "eps": self.eps,
            "clean_accuracy": correct / n if n else 0.0,
            "robust_accuracy": (correct - fals) / n if n else 0.0,
            "falsified": fals,
            "misclassified": n - correct,
            "unknown": sum(s == "unknown" for s in self.status),
            "seconds": round(self.seconds, 3),
            "model_sha256": self.model_sha256,
        }

    def records(self, x: np.ndarray, indices: np.ndarray | None = None) -> list[dict]:
        """Witness records (JSON-ready), one per sample, witness attached when falsified."""
        idx = np.arange(self.n) if indices is None else indices
        return [
            witness_record(
                index=int(idx[i]), x=x[i], label=int(self.labels[i]), predicted=int(self.predicted[i]),
                eps=self.eps, status=self.status[i], model_sha256=self.model_sha256,
                tool_version=tool_version(), witness=self.witnesses.get(i), adv_predicted=self.adv_predicted.get(i),
                domain=self.domain, n_total=self.n,
            )
            for i in range(self.n)
        ]

    def header(self, data_sha256: str, n_data: int, limit: int | None) -> dict:
        """The witness file's header (verify/certify/header.py): the first ``self.n`` samples of a data set
        of ``n_data`` samples with identity ``data_sha256``, attacked at ε (method pgd)."""
        from verify.certify.header import make_header

        return make_header(model_sha256=self.model_sha256, data_sha256=data_sha256, n_data=n_data, eps=self.eps,
                           domain=self.domain, method="pgd", guarantee="witness", limit=limit, shard="0/1",
                           n_total=self.n, tool_version=tool_version())


def schedule(cfg: AttackConfig, has_linf: bool, num_classes: int) -> list[tuple[str, int | None, float]]:
    """The ordered runs: (loss, target rank or None, gradient p). Each run is repeated per restart.

    Untargeted runs of ``cfg.losses`` first, then targeted DLR (targeted margin when fewer than 4
    classes) on the top ``n_target_classes`` other classes, all with the exact gradient. With the
    surrogate active (ℓ∞-dist layers), one cheap exact-gradient run of the first loss screens the
    easy samples, then every run uses the smoothed gradient (p = surrogate_p); with
    ``cfg.exact_repeats`` every run is also repeated with the exact gradient.
    """
    use_sur = cfg.surrogate == "on" or (cfg.surrogate == "auto" and has_linf)
    runs = [(loss, None) for loss in cfg.losses]
    tloss = "dlr" if num_classes >= 4 else "margin"
    runs += [(tloss, r) for r in range(min(cfg.n_target_classes, num_classes - 1))]
    if not use_sur:
        return [(loss, t, math.inf) for (loss, t) in runs]
    out = [(runs[0][0], runs[0][1], math.inf)] if runs else []
    for loss, t in runs:
        out.append((loss, t, cfg.surrogate_p))
        if cfg.exact_repeats and (loss, t) != runs[0]:
            out.append((loss, t, math.inf))
    return out


def _validate_inputs(x, y, eps, shape):
    check_eps(eps)
    if x.ndim < 1 or len(x) != len(y):
        raise DataError(f"data has {len(x)} inputs but {len(y)} labels")
    if shape and all(s is not None for s in shape) and tuple(x.shape[1:]) != tuple(shape):
        raise DataError(f"data samples have shape {tuple(x.shape[1:])}, the model expects {tuple(shape)}")


def attack_arrays(model_path: str | Path, x: np.ndarray, y: np.ndarray, eps: float,
                  cfg: AttackConfig | None = None, domain: tuple[float, float] = (0.0, 1.0),
                  skip: np.ndarray | None = None, progress=None) -> AttackResult:
    """Attack every sample of (x, y) at ε; ``skip`` (bool mask) excludes samples from the attack.

    ``progress(done, total)`` (pipeline/progress.py) is called after the inputs are validated and after
    every batch, counting sample-runs (runs × restarts × samples). Returns an :class:`AttackResult`;
    see the module docstring for what each status means.
    """
    cfg = cfg or AttackConfig()
    cfg.validate()
    old_threads = torch.get_num_threads()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _attack(model_path, x, y, eps, cfg, domain, skip, progress or (lambda done, total: None))
    finally:
        torch.set_num_threads(old_threads)


def _attack(model_path, x, y, eps, cfg: AttackConfig, domain, skip, progress) -> AttackResult:
    t0 = time.perf_counter()
    model = TorchGraph.from_onnx(model_path)
    judge = OrtReplayer(model_path)
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    _validate_inputs(x, y, eps, model.input_shape)
    z_clean = judge.logits(x)
    if len(x) and (y.min() < 0 or y.max() >= z_clean.shape[1]):
        raise DataError(f"labels must lie in 0..{z_clean.shape[1] - 1}")
    pred = z_clean.argmax(1) if len(x) else np.zeros(0, np.int64)
    status = ["misclassified" if pred[i] != y[i] else "unknown" for i in range(len(x))]
    res = AttackResult(eps=float(eps), labels=y, predicted=pred, status=status, model_sha256=model.sha256,
                       config=asdict(cfg), domain=(float(domain[0]), float(domain[1])))
    lo, hi = linf_box(x, eps, domain)
    gen = torch.Generator().manual_seed(cfg.seed)
    runs = schedule(cfg, model.has_linf_layers, z_clean.shape[1] if len(x) else 2)
    n, total = len(x), len(runs) * cfg.restarts * len(x)
    progress(0, total)
    for r, (loss, rank, p) in enumerate(runs):
        model.p_grad = p
        for k in range(cfg.restarts):
            first = (r * cfg.restarts + k) * n
            todo = np.flatnonzero([(s == "unknown") and not (skip is not None and skip[i])
                                   for i, s in enumerate(res.status)])
            if len(todo) == 0 or eps == 0:
                break
            for start in range(0, len(todo), cfg.batch_size):
                progress(first + n * start // len(todo), total)
                sel = todo[start:start + cfg.batch_size]
                target = None
                if rank is not None:
                    zc = z_clean[sel].copy()
                    zc[np.arange(len(sel)), y[sel]] = -np.inf
                    target = torch.from_numpy(np.argsort(-zc, axis=1, kind="stable")[:, rank].copy())
                xa, found = apgd(model, torch.from_numpy(x[sel]), torch.from_numpy(y[sel]),
                                 torch.from_numpy(lo[sel]), torch.from_numpy(hi[sel]), loss=loss,
                                 target=target, steps=cfg.steps, rho=cfg.rho, generator=gen)
                cand = sel[found.numpy()]
                if len(cand) == 0:
                    continue
                xa = xa.numpy()[found.numpy()]
                ok = judge.confirm(x[cand], xa, y[cand], eps, domain)
                if ok.any():
                    z_adv = judge.logits(xa[ok])
                    for j, i in enumerate(cand[ok]):
                        res.status[i] = "falsified"
                        res.witnesses[int(i)] = xa[ok][j].copy()
                        res.adv_predicted[int(i)] = int(z_adv[j].argmax())
    progress(total, total)
    res.seconds = time.perf_counter() - t0
    return res
