"""α-CROWN: the lower slopes of the Relu/LeakyRelu relaxations tuned by projected gradient ascent
on the final bound (torch autograd through the same float64 back-substitution), within a budget.

Soundness never depends on the optimiser: the relaxation is valid for EVERY slope in [0, 1]
(verify/bounds/relu.py), the slopes found are clamped into [0, 1] and the returned bound is one
more complete, error-charged back-substitution with them (no gradient). The interval boxes of the
intermediate tensors are the CROWN ones of the default slopes (computed once, sound)."""

from __future__ import annotations

import time

import torch

from verify.bounds.crown import Boxes, back_substitute
from verify.bounds.linear import Ctx, t64


def initial_slopes(graph, boxes: Boxes) -> dict[str, torch.Tensor]:
    """The adaptive CROWN slopes (1 where u > −l, else 0) of every relaxed op, as leaf tensors."""
    out = {}
    for op in graph.nodes:
        if getattr(op, "wants_input_bounds", False) and op.inputs[0] in boxes.np:
            z = boxes.t(op.inputs[0])
            out[op.name] = (z.hi > -z.lo).to(torch.float64).requires_grad_(True)
    return out


def _adam_step(p, g, m1, m2, t: int, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
    """One Adam step (Kingma & Ba; torch.optim.Adam's update, written out because the first
    torch.optim step imports torch._dynamo: seconds per process) on leaf ``p`` in place."""
    m1.mul_(b1).add_(g, alpha=1.0 - b1)
    m2.mul_(b2).addcmul_(g, g, value=1.0 - b2)
    denom = (m2.sqrt() / (1.0 - b2**t) ** 0.5).add_(eps)
    p.addcdiv_(m1, denom, value=-lr / (1.0 - b1**t))


def alpha_lower(graph, boxes: Boxes, c, ctx: Ctx, steps: int = 20, lr: float = 0.1,
                deadline: float | None = None) -> torch.Tensor:
    """Sound lower bound [N, S] of c·y: the best of the CROWN bound and the bound with optimised
    slopes (each spec row keeps its best value; both are sound)."""
    c = t64(c)
    slopes = initial_slopes(graph, boxes)
    best = back_substitute(graph, boxes, graph.output_name, c, Ctx(ctx.ort), cuts=True).detach()
    if not slopes or steps <= 0:
        return best
    params = list(slopes.values())
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    for t in range(1, steps + 1):
        if deadline is not None and time.monotonic() > deadline:
            break
        lb = back_substitute(graph, boxes, graph.output_name, c, Ctx(ctx.ort, slopes))
        if not lb.requires_grad:  # no slope reaches the output (e.g. an op without relaxation between)
            break
        grads = torch.autograd.grad(-lb.sum(), params, allow_unused=True)
        with torch.no_grad():
            for p, g, (m1, m2) in zip(params, grads, moments):
                if g is not None:
                    _adam_step(p, g, m1, m2, t, lr)
                p.clamp_(0.0, 1.0)
    with torch.no_grad():
        fixed = {k: v.detach().clamp(0.0, 1.0) for k, v in slopes.items()}
        final = back_substitute(graph, boxes, graph.output_name, c, Ctx(ctx.ort, fixed), cuts=True)
    return torch.maximum(best, final)
