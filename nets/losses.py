"""Training losses of ℓ∞-dist nets (Zhang et al. 2021 v1, 2022 v2) and ℓp weight decay.

Conventions: logits z [B, K], labels y [B] (int64). The margin to class j is m_j = z_y − z_j.
A pure ℓ∞-dist net is 1-Lipschitz per logit in ℓ∞, so under a perturbation of size ε every margin
drops by at most 2ε; the +MLP model's trunk g is 1-Lipschitz, so g(x') ∈ [g(x) − ε, g(x) + ε] and
interval propagation through the head bounds the margins (:func:`ibp_margin_lower`).

These functions compute training objectives in float32; they are not certificates (the sound
verifier in verify/ is). :func:`ibp_margin_lower` is nevertheless a true lower bound in exact
arithmetic, which the tests check against sampled points.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "margins",
    "hinge_loss",
    "ibp_margin_lower",
    "worst_logits",
    "ibp_loss",
    "mixture_loss",
    "lp_weight_decay",
    "apply_decoupled_weight_decay_",
]

# Element-wise monotone non-decreasing activations that interval propagation may pass through.
MONOTONE = (nn.Tanh, nn.ReLU, nn.Sigmoid, nn.Identity, nn.LeakyReLU, nn.ELU, nn.Softplus)


def margins(logits: Tensor, y: Tensor) -> Tensor:
    """m[b, j] = z[b, y_b] − z[b, j]  (0 at j = y_b)."""
    return logits.gather(1, y.view(-1, 1)) - logits


def _others_mask(y: Tensor, k: int) -> Tensor:
    return ~F.one_hot(y, k).bool()


def hinge_loss(logits: Tensor, y: Tensor, theta: float, mix: float = 0.75) -> Tensor:
    """v1 multi-class hinge: h_j = max(0, θ − m_j) over j ≠ y;
    loss = mix · mean_b max_j h_j + (1 − mix) · mean_b mean_{j≠y} h_j.

    θ = 2·ε_train makes the loss zero exactly when every margin exceeds 2ε_train (the pure net's
    certification condition at ε_train).
    """
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    k = logits.shape[1]
    h = (theta - margins(logits, y)).clamp(min=0)
    h = h * _others_mask(y, k)  # the true class contributes nothing
    max_term = h.max(dim=1).values.mean()
    mean_term = h.sum(dim=1).mean() / max(k - 1, 1)
    return mix * max_term + (1.0 - mix) * mean_term


def _linear_box(layer: nn.Linear, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    c, r = (hi + lo) / 2, (hi - lo) / 2
    mid = F.linear(c, layer.weight, layer.bias)
    rad = F.linear(r, layer.weight.abs())
    return mid - rad, mid + rad


def _split_head(head: nn.Module) -> tuple[list[nn.Module], nn.Linear]:
    layers = list(head) if isinstance(head, nn.Sequential) else [head]
    if not layers or not isinstance(layers[-1], nn.Linear):
        raise ValueError("IBP head must be an nn.Sequential ending in nn.Linear")
    for m in layers[:-1]:
        if not isinstance(m, (nn.Linear, nn.Flatten) + MONOTONE):
            raise ValueError(f"IBP cannot propagate through {type(m).__name__} in the head")
    return layers[:-1], layers[-1]


def ibp_margin_lower(head: nn.Module, feats: Tensor, eps: float | Tensor, y: Tensor) -> Tensor:
    """Lower bounds of z_y − z_j over the box feats ± eps, propagated through `head`.

    `head`: nn.Sequential of nn.Linear / element-wise monotone activations, ending in nn.Linear
    (W, b). The last layer is merged into the margin (paper Eqn 21): for each j, the bound of
    (W_y − W_j)·t + (b_y − b_j) over the hidden box t ∈ [l, u] is taken directly, which is tighter
    than bounding z_y and z_j separately. Returns [B, K] with 0 at j = y.
    """
    body, last = _split_head(head)
    lo, hi = feats - eps, feats + eps
    for m in body:
        if isinstance(m, nn.Linear):
            lo, hi = _linear_box(m, lo, hi)
        else:  # monotone element-wise or Flatten
            lo, hi = m(lo), m(hi)
    w, b = last.weight, last.bias
    wdiff = w[y].unsqueeze(1) - w.unsqueeze(0)  # [B, K, H]: W_y − W_j
    c, r = ((hi + lo) / 2).unsqueeze(1), ((hi - lo) / 2).unsqueeze(1)
    lower = (wdiff * c).sum(-1) - (wdiff.abs() * r).sum(-1)
    if b is not None:
        lower = lower + (b[y].unsqueeze(1) - b.unsqueeze(0))
    return lower.masked_fill(~_others_mask(y, w.shape[0]), 0.0)


def worst_logits(margin_lower: Tensor) -> Tensor:
    """Logits of the worst case: z'_y = 0, z'_j = −(lower bound of m_j); CE of these upper-bounds
    the CE of every logit vector with those margins."""
    return -margin_lower


def ibp_loss(clean_logits: Tensor, margin_lower: Tensor, y: Tensor, kappa: float) -> Tensor:
    """κ·CE(clean logits) + (1 − κ)·CE(worst-case logits from the margin lower bounds)."""
    if not 0.0 <= kappa <= 1.0:
        raise ValueError(f"kappa must be in [0, 1], got {kappa}")
    return kappa * F.cross_entropy(clean_logits, y) + (1.0 - kappa) * F.cross_entropy(
        worst_logits(margin_lower), y
    )


def mixture_loss(logits: Tensor, y: Tensor, eps: float, lam: float, clip: float = 1.0,
                 margin_lower: Tensor | None = None) -> Tensor:
    """v2 mixture: mean_b max_{j≠y} clamp(1 − m_j/(2ε), 0, clip) + λ·CE(logits).

    `margin_lower`: for +MLP models, the IBP lower bounds at ε replace m_j − 2ε, i.e. the hinge
    becomes clamp(−margin_lower/(2ε), 0, clip); for the pure net m_j − 2ε is the exact worst case.
    """
    if eps <= 0:
        raise ValueError("mixture_loss needs eps > 0 (the hinge is on margin / 2eps)")
    k = logits.shape[1]
    worst = margins(logits, y) - 2.0 * eps if margin_lower is None else margin_lower
    h = (-worst / (2.0 * eps)).clamp(min=0.0, max=clip) * _others_mask(y, k)
    return h.max(dim=1).values.mean() + lam * F.cross_entropy(logits, y)


def _rowwise_half_sq_pnorm(w: Tensor, p: float) -> Tensor:
    """Σ_rows ½‖w_row‖_p², stable for any p ≥ 1 (max-normalised), math.inf allowed."""
    rows = w.reshape(w.shape[0], -1)
    m = rows.abs().amax(dim=1, keepdim=True)
    if math.isinf(p):
        norm = m.squeeze(1)
    else:  # m·(Σ(|w|/m)^p)^{1/p} == ‖w‖_p exactly; every ratio ≤ 1, so nothing overflows
        safe = m.clamp(min=torch.finfo(w.dtype).tiny)
        norm = safe.squeeze(1) * ((rows.abs() / safe) ** p).sum(dim=1) ** (1.0 / p)
    return 0.5 * (norm**2).sum()


def lp_weight_decay(model: nn.Module, p: float, dist_coef: float, head_coef: float | None = None,
                    dist_types: tuple[type, ...] | None = None) -> Tensor:
    """Paper eqn 6: Σ ½‖w_i‖_p² over the rows w_i of every ℓ∞-dist layer (current p; biases ½b²),
    times `dist_coef`; plus `head_coef`·½‖W‖₂² for the weights of nn.Linear layers (the head).

    `dist_types` defaults to nets.layers' LinfDistLinear and LinfDistConv2d.
    """
    if dist_types is None:
        from nets.layers import DIST_LAYERS

        dist_types = tuple(DIST_LAYERS)
    head_coef = dist_coef if head_coef is None else head_coef
    total = torch.zeros((), device=next(model.parameters()).device)
    for m in model.modules():
        if isinstance(m, dist_types) and dist_coef:
            total = total + dist_coef * _rowwise_half_sq_pnorm(m.weight, p)
            if getattr(m, "bias", None) is not None:
                total = total + dist_coef * 0.5 * (m.bias**2).sum()
        elif isinstance(m, nn.Linear) and head_coef:
            total = total + head_coef * 0.5 * (m.weight**2).sum()
    return total


@torch.no_grad()
def apply_decoupled_weight_decay_(model: nn.Module, p: float, step_dist: float, step_head: float,
                                  dist_types: tuple[type, ...] | None = None) -> None:
    """Decoupled form of :func:`lp_weight_decay` (as the authors' AdamW): after the optimiser step,
    w ← w − step_dist·∇(½‖w_row‖_p²) for ℓ∞-dist weights (biases: b ← (1 − step_dist)·b) and
    W ← (1 − step_head)·W for nn.Linear weights. Steps are lr × coefficient."""
    if dist_types is None:
        from nets.layers import DIST_LAYERS

        dist_types = tuple(DIST_LAYERS)
    for m in model.modules():
        if isinstance(m, dist_types) and step_dist:
            with torch.enable_grad():
                w = m.weight.detach().clone().requires_grad_(True)
                (g,) = torch.autograd.grad(_rowwise_half_sq_pnorm(w, p), w)
            m.weight.sub_(step_dist * g)
            if getattr(m, "bias", None) is not None:
                m.bias.mul_(1.0 - step_dist)
        elif isinstance(m, nn.Linear) and step_head:
            m.weight.mul_(1.0 - step_head)
