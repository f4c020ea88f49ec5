"""Back-substitution through Add / Sub: y = x0 + sign·x1 (numpy broadcasting)."""

from __future__ import annotations

import torch

from verify.bounds.linear import Ctx, Relaxed, TBox, add_down, ort_rounding, zero_bias


def sum_relax(op, a: torch.Tensor, ins: list[TBox], out: TBox, ctx: Ctx, signs) -> Relaxed | None:
    """``A·y = Σ_i sign_i A·x_i`` exactly (sign ±1 is exact; a constant operand is concretised by
    the engine as a point box). A variable operand must have the output's shape (a broadcast
    variable would need its coefficients summed: None, concretised). onnxruntime rounds the sum
    once: Σ|A|·u32·(mag(y) + tiny) is charged under ``ctx.ort``. Integer tensors: None."""
    if not out.lo.is_floating_point() or not all(b is not None and b.lo.is_floating_point() for b in ins):
        return None
    parts = {}
    for i, (b, sg) in enumerate(zip(ins, signs)):
        if op.is_var(i) and tuple(b.lo.shape) != tuple(out.lo.shape):
            return None
        parts[i] = a if sg > 0 else -a  # a constant operand is concretised by the engine
    bias = add_down(zero_bias(a), ort_rounding(a, out.mag, ctx))
    return Relaxed(parts, bias)
