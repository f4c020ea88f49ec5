"""Optimisers of the training loop: Adam, AdamW and MAdam (multiplicative updates), by name.

MAdam (Bernstein, Mingard, Huang, Azizzadenesheli, Yue 2020, "Learning compositional functions via
multiplicative weight updates"): with ĝ = g / sqrt(v̂) the gradient normalised by the bias-corrected
second-moment EMA v (β = 0.999), each weight moves by a relative step

    w ← w · exp(−lr · sign(w) · ĝ),      then |w| ≤ bound (per tensor)

so |w| changes by a factor in [e^−lr, e^lr] per step and w never changes sign. Two failure modes of
the plain rule, handled here (the report's version has both):
- A zero entry never moves (0 · anything = 0): a zero bias stays zero forever. Here every entry that
  is exactly 0 takes an ADDITIVE step w ← −lr · scale · ĝ instead (scale: the tensor's initial RMS,
  or 1 for an all-zero tensor such as a fresh bias), after which it is non-zero and continues
  multiplicatively. Tensors named in `additive` param groups (e.g. biases) can also be put on a
  purely additive normalised step (w ← w − lr · scale · ĝ) by passing `additive=True` for the group.
- The bound: Madam clamps |w| to p_scale × the tensor's initial RMS (p_scale 3). The ℓ∞-dist Net's
  identity init puts −10 entries into N(0, 1) weights, far above 3 × RMS, so the first step would
  clamp them to about ±3.2 and destroy the identity map. Here the bound is max(p_scale · RMS₀,
  max|w₀|): no initial entry is ever clamped, and entries still cannot grow beyond the larger of the
  two.
Entries whose v is 0 (no gradient seen yet) get ĝ = 0, never NaN.
"""

from __future__ import annotations

import torch
from torch import nn

OPTIMIZERS = ("adam", "adamw", "madam")


class MAdam(torch.optim.Optimizer):
    """Multiplicative Adam (see module docstring). Defaults: lr 0.01, β 0.999, p_scale 3."""

    def __init__(self, params, lr: float = 0.01, beta: float = 0.999, p_scale: float = 3.0,
                 additive: bool = False):
        if not lr > 0 or not 0.0 <= beta < 1.0 or not p_scale > 0:
            raise ValueError(f"MAdam needs lr > 0, 0 <= beta < 1, p_scale > 0; got {lr}, {beta}, {p_scale}")
        super().__init__(params, dict(lr=lr, beta=beta, p_scale=p_scale, additive=additive))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, beta = group["lr"], group["beta"]
            for w in group["params"]:
                if w.grad is None:
                    continue
                st = self.state[w]
                if not st:
                    rms = float(w.detach().double().pow(2).mean().sqrt()) if w.numel() else 0.0
                    st["step"] = 0
                    st["v"] = torch.zeros_like(w)
                    st["scale"] = rms if rms > 0 else 1.0
                    st["bound"] = max(group["p_scale"] * st["scale"], float(w.detach().abs().max()) if w.numel() else 0.0)
                st["step"] += 1
                v = st["v"]
                v.mul_(beta).addcmul_(w.grad, w.grad, value=1.0 - beta)
                denom = (v / (1.0 - beta ** st["step"])).sqrt()
                g = torch.where(denom > 0, w.grad / denom.clamp(min=torch.finfo(w.dtype).tiny), torch.zeros_like(w))
                additive = torch.full_like(w, True, dtype=torch.bool) if group["additive"] else (w == 0)
                mult = w * torch.exp(-lr * torch.sign(w) * g)
                w.copy_(torch.where(additive, w - lr * st["scale"] * g, mult))
                w.clamp_(-st["bound"], st["bound"])
        return loss


def make_optimizer(name: str, model: nn.Module, *, lr: float, betas: tuple[float, float] = (0.9, 0.99),
                   eps: float = 1e-10) -> torch.optim.Optimizer:
    """The optimiser `name` (adam | adamw | madam) over `model`'s parameters.

    The training loop applies the paper's decoupled decay itself (ℓp for dist layers, ℓ2 for the head:
    nets.losses.apply_decoupled_weight_decay_) after every optimiser step alike, so "adamw" is torch's
    AdamW with weight_decay 0 — the same update as "adam" plus that decay, the authors' AdamW
    setting. MAdam uses β = betas[1].
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=0.0)
    if name == "madam":
        return MAdam(params, lr=lr, beta=betas[1])
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


