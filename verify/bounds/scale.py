"""Back-substitution through an elementwise affine map ``y = c·x + t`` with constant ``c`` and ``t``
(BatchNormalization in inference form, Mul and Div by a constant): ``A·y = (A c)·x + A·t``."""

from __future__ import annotations

import numpy as np
import torch

from verify.bounds.rounding import U64, step_up64
from verify.bounds.linear import Ctx, Relaxed, TBox, add_down, dot_lo, dot_up, ort_rounding, rescaled_err, t64, up


def scaled_relax(a: torch.Tensor, x: TBox, c: torch.Tensor, c_err: torch.Tensor | None = None,
                 t: torch.Tensor | None = None, t_err: torch.Tensor | None = None,
                 e_out: torch.Tensor | None = None, index: int = 0) -> Relaxed:
    """The step ``A·y ≥ A_in·x + bias`` for ``y = c*·x + t* (+ e)``, ``|e| ≤ e_out``.

    ``c``, ``t`` (float64, broadcastable to x's shape [N, *s]) approximate the exact reals c*, t*
    with ``|c* − c| ≤ c_err``, ``|t* − t| ≤ t_err`` (None: exact, or absent for t and e_out).
    ``A_in = fl64(A·c)``: one rounded product each, within u·|A_in|·(1 + 2u) of A·c when normal
    and within 2^-1075 when it underflows (both charged by linear.rescaled_err). The rest: ``Σ A·t`` bounded below (linear.dot_lo),
    ``−Σ |A|·(c_err·mag(x) + t_err + e_out)`` bounded by linear.dot_up. ``index``: x's input."""
    shape = tuple(x.lo.shape)
    a_in = a * torch.broadcast_to(c, shape).unsqueeze(1)
    mag = x.mag
    bias = -rescaled_err(a_in, mag)
    err = torch.zeros((), dtype=torch.float64)
    if c_err is not None:
        err = up(c_err * mag)
    for e in (t_err, e_out):
        if e is not None:
            err = up(err + e)
    if c_err is not None or t_err is not None or e_out is not None:
        bias = add_down(bias, -dot_up(a.abs(), torch.broadcast_to(err, shape)))
    if t is not None:
        bias = add_down(bias, dot_lo(a, torch.broadcast_to(t, shape)))
    return Relaxed({index: a_in}, bias)


def by_constant_relax(a: torch.Tensor, ins: list[TBox], out: TBox, ctx: Ctx, k: int, const,
                      invert: bool = False) -> Relaxed | None:
    """Mul (``invert`` False) or Div (True) of the variable input ``k`` by the float constant
    ``const``: ``y = c·x``, c = const or 1/const. 1/const is computed in float64, one rounding:
    within u·|c|·(1 + 2u) of the exact reciprocal (charged). onnxruntime rounds the result once
    (linear.ort_rounding, under ``ctx.ort``). None when x is broadcast to a larger output (its
    coefficients would need summing) or the constant is not a float."""
    const = np.asarray(const)
    if not np.issubdtype(const.dtype, np.floating) or tuple(ins[k].lo.shape) != tuple(out.lo.shape):
        return None
    c = const.astype(np.float64)
    c_err = None
    if invert:
        c = 1.0 / c
        c_err = t64(step_up64(U64 * np.abs(c) * (1 + 4 * U64)))
    r = scaled_relax(a, ins[k], t64(c), c_err, index=k)
    r.bias = add_down(r.bias, ort_rounding(a, out.mag, ctx))
    return r
