"""Convex ensembles of classifiers (seed paper 000): fusion (logits) or voting (softmax).

`ConvexEnsemble(members, weights=None, mode="fusion")` computes Σ_k a_k·f_k(x) ("fusion") or
Σ_k a_k·softmax(f_k(x)) ("voting") with a_k ≥ 0, Σ a_k = 1 (validated, rounded to float32 with
exact sum ≤ 1, stored as the buffer `weights`). Fusion is then L-Lipschitz in ℓ∞ (output ℓ∞ norm) whenever every member is L-Lipschitz:
‖Σ a_k (f_k(x) − f_k(x'))‖∞ ≤ Σ a_k L ‖x − x'‖∞ = L ‖x − x'‖∞.
Members trained independently are wrapped after training; joint training just trains the module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from common.errors import ModelError

MODES = ("fusion", "voting")
WEIGHT_TOLERANCE = 1e-6  # |Σ a_k − 1| allowed before renormalising in float64


def convex_weights(weights: Sequence[float] | Tensor | None, n: int) -> list[float]:
    """Validated convex weights as Python floats (uniform when None).

    Raises ModelError unless there are n finite values ≥ 0 whose sum is 1 within 1e-6; the returned
    values are renormalised in float64 so they sum to 1 up to rounding.
    """
    if n < 1:
        raise ModelError("an ensemble needs at least one member")
    if weights is None:
        return _float32_convex([1.0 / n] * n)
    vals = [float(v) for v in (weights.tolist() if isinstance(weights, Tensor) else weights)]
    if len(vals) != n:
        raise ModelError(f"ensemble has {n} members but {len(vals)} weights")
    if not all(math.isfinite(v) and v >= 0 for v in vals):
        raise ModelError(f"ensemble weights must be finite and >= 0, got {vals}")
    total = math.fsum(vals)
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ModelError(f"ensemble weights must sum to 1, got sum {total!r}")
    return _float32_convex([v / total for v in vals])


def _float32_convex(vals: list[float]) -> list[float]:
    """The weights rounded to float32 (the buffer's and the ONNX file's dtype), then lowered by
    float32 ulps (largest first) until their exact sum is <= 1: rounding 2/3 and 1/3 to float32
    gives a sum of 1 + 3e-8, which would make the fused net (1 + 3e-8)-Lipschitz and its static
    bound exceed 1."""
    from fractions import Fraction

    import numpy as np

    w = [np.float32(v) for v in vals]
    while sum(Fraction(float(v)) for v in w) > 1:
        i = max(range(len(w)), key=lambda j: w[j])
        w[i] = np.nextafter(w[i], np.float32(0))
    return [float(v) for v in w]


class ConvexEnsemble(nn.Module):
    """Convex combination of member classifiers; `forward(x) -> [B, num_classes]`."""

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float] | Tensor | None = None,
                 mode: str = "fusion"):
        super().__init__()
        if mode not in MODES:
            raise ModelError(f"unknown ensemble mode {mode!r}; choose one of {', '.join(MODES)}")
        members = list(members)
        vals = convex_weights(weights, len(members))
        classes = {m.config.num_classes for m in members if hasattr(m, "config")}
        if len(classes) > 1:
            raise ModelError(f"ensemble members disagree on num_classes: {sorted(classes)}")
        self.members = nn.ModuleList(members)
        self.mode = mode
        self.register_buffer("weights", torch.tensor(vals, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        out = None
        for a, member in zip(self.weights, self.members):
            z = member(x)
            if self.mode == "voting":
                z = torch.softmax(z, dim=-1)
            out = a.to(z.dtype) * z if out is None else out + a.to(z.dtype) * z
        return out

    @property
    def config(self) -> dict:
        """JSON description `{"ensemble": {"mode", "weights", "members": [ModelConfig dicts]}}`."""
        for m in self.members:
            if not hasattr(m, "config"):
                raise ModelError(f"ensemble member {type(m).__name__} has no .config to describe it")
        return {"ensemble": {"mode": self.mode, "weights": [float(v) for v in self.weights.tolist()],
                             "members": [m.config.to_dict() for m in self.members]}}
