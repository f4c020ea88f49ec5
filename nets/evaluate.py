"""Training-time evaluation: clean accuracy and certified accuracy at ε, at p = ∞ in eval mode.

Certification rules (Zhang et al. 2021):
- pure ℓ∞-dist net: every logit is 1-Lipschitz in ℓ∞, so a correct sample is certified at ε when
  every margin z_y − z_j (j ≠ y) exceeds 2ε;
- ℓ∞-dist Net+MLP: the trunk g is 1-Lipschitz, so g(x') ∈ g(x) ± ε; interval propagation through
  the head with the last layer merged into the margin (losses.ibp_margin_lower) must stay > 0;
- fusion ensemble Σ a_k f_k: the weighted sum of the members' margin lower bounds is a lower bound
  of the fused margin; voting ensembles are not certified here (reported as None).

These are float32 ESTIMATES used to monitor training. They are not certificates: the sound,
outward-rounded verifier (verify_cli.py certify on the exported ONNX model) is what proves
robustness. Input clipping to [0, 1] is not used (it could only tighten the bound).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nets.ensemble import ConvexEnsemble
from nets.losses import ibp_margin_lower, margins
from nets.models import is_pure, set_p

__all__ = ["margin_lower_bounds", "evaluate"]


def _member_lower(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(logits, lower bounds of the margins at ε) of one ℓ∞-dist net."""
    if is_pure(model):
        logits = model(x)
        return logits, margins(logits, y) - 2.0 * eps
    feats = model.trunk(x)
    return model.head(feats), ibp_margin_lower(model.head, feats, eps, y)


def margin_lower_bounds(model: nn.Module, x: Tensor, y: Tensor, eps: float
                        ) -> tuple[Tensor, Tensor | None]:
    """(logits, [B, K] margin lower bounds at ε or None when the model kind has no bound here)."""
    if isinstance(model, ConvexEnsemble):
        if model.mode != "fusion":
            return model(x), None
        logits, lower = None, None
        for a, member in zip(model.weights, model.members):
            z, lo = _member_lower(member, x, y, eps)
            a = a.to(z.dtype)
            logits = a * z if logits is None else logits + a * z
            lower = a * lo if lower is None else lower + a * lo
        return logits, lower
    return _member_lower(model, x, y, eps)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, eps: float, batch_size: int = 1000) -> dict:
    """Clean and certified accuracy (fractions in [0, 1]) of `model` on (x, y) at ε.

    Sets p = ∞ and eval mode on `model` (pass the EMA copy, not the model being trained).
    Certified requires correct classification AND every margin lower bound > 0 (strict).
    """
    set_p(model, math.inf)
    model.eval()
    n = len(x)
    correct = certified = 0
    has_bound = True
    for s in range(0, n, batch_size):
        xb, yb = x[s:s + batch_size], y[s:s + batch_size]
        logits, lower = margin_lower_bounds(model, xb, yb, eps)
        ok = logits.argmax(dim=1) == yb
        correct += int(ok.sum())
        if lower is None:
            has_bound = False
            continue
        others = torch.ones_like(lower, dtype=torch.bool).scatter_(1, yb.view(-1, 1), False)
        cert = ok & torch.where(others, lower > 0, torch.ones_like(others)).all(dim=1)
        certified += int(cert.sum())
    return {
        "n": n,
        "eps": float(eps),
        "clean_accuracy": correct / n if n else float("nan"),
        "certified_accuracy": (certified / n if n else float("nan")) if has_bound else None,
    }
