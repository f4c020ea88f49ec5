"""Back-substitution through Add / Sub / Sum: y = Σ_i sign_i·x_i (numpy broadcasting)."""

from __future__ import annotations

from functools import reduce

import torch

from verify.bounds.linear import Ctx, Relaxed, TBox, add_down, dot_up, ort_rounding, up, zero_bias
from verify.bounds.rounding import TINY32, U32, U64, gamma


def sum_relax(op, a: torch.Tensor, ins: list[TBox], out: TBox, ctx: Ctx, signs) -> Relaxed | None:
    """``A·y = Σ_i sign_i A·x_i`` exactly (sign ±1 is exact; a constant operand is concretised by
    the engine as a point box). A variable operand must have the output's shape (a broadcast
    variable would need its coefficients summed: None, concretised). Under ``ctx.ort``: two operands,
    onnxruntime rounds the sum once, Σ|A|·u32·(mag(y) + tiny); k > 2 (Sum), its k-term float32 sum
    in any order errs by at most the interval's bound (rounding.dot_error_bound),
    γ32_k·Σ mag(x_i)·(1 + 2^-20) + (k + 1)·2^-149, Σ mag computed in float64 and inflated by
    1 + 2γ64_k. The real sum (theorem (a)) needs no charge. Integer tensors: None."""
    if not out.lo.is_floating_point() or not all(b is not None and b.lo.is_floating_point() for b in ins):
        return None
    parts = {}
    for i, (b, sg) in enumerate(zip(ins, signs)):
        if op.is_var(i) and tuple(b.lo.shape) != tuple(out.lo.shape):
            return None
        parts[i] = a if sg > 0 else -a  # a constant operand is concretised by the engine
    if len(ins) <= 2 or not ctx.ort:
        return Relaxed(parts, add_down(zero_bias(a), ort_rounding(a, out.mag, ctx)))
    k = len(ins)
    mag = up(reduce(torch.add, [torch.broadcast_to(b.mag, out.lo.shape) for b in ins]) * (1.0 + 2.0 * gamma(k, U64)))
    e = up(up(gamma(k, U32) * (1.0 + 2.0**-20) * mag) + (k + 1) * TINY32)
    return Relaxed(parts, -dot_up(a.abs(), e))
