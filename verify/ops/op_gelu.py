"""Gelu (opset 20), approximate = "none": x Φ(x) = x/2 (1 + erf(x/√2)); "tanh":
x/2 (1 + tanh(√(2/π) (x + 0.044715 x³))).

Shape: both decrease on (-inf, x*] and increase on [x*, inf) with x* ≈ -0.7518 ("none") or -0.7525
("tanh"), both inside BRACKET; the minimum is ≈ -0.16997 / -0.17004 > GELU_MIN. So on [l, u] the
maximum is max(f(l), f(u)) and the minimum is min(f(l), f(u)) unless [l, u] meets BRACKET, where
it is at least max(GELU_MIN, min(f(l), f(u)) - 1.13 (u - l)) (mean value theorem with the slope
bound below; a point box stays tight). f is evaluated in float64 at the endpoints.

onnxruntime's float32 error (its kernel or the function body: a scaled argument, erf or tanh, 1 +,
two products): the erf/tanh value is within the libm model (LIBM_REL relative + LIBM_ABS absolute,
verify/ops/_elementwise.py) plus the effect of the rounded argument (slope <= 1.13 times a relative
error of a few units of 2^-24 of |x| + 0.045 |x|³, capped at 2), and the products add γ_6 of
|x| (1 + |erf|) <= 2|x|. err(x) = |x|/2 δ(x) + 2 |x| γ_6 + 2^-140 grows with |x|, so its value at
the endpoint of largest magnitude holds on the whole box. Inputs beyond 2^120 in magnitude are
refused (an implementation computing x (1 + erf) first would overflow, and -inf · 0 is NaN).
Measured against onnxruntime in tests/test_ops_new_soundness.py.

Lipschitz: sup |f'| is 1.12890 ("none") / 1.12899 ("tanh") (at x ≈ ±1.4; checked on a grid in the
tests); we use 1.13.
"""

from __future__ import annotations

import math

import numpy as np
import torch.nn.functional as F

from verify.ops._elementwise import LIBM_ABS, LIBM_REL, f32
from verify.ops.op_erf import erf64
from verify.ops.base import Box, Op, scaled
from verify.bounds.rounding import U32, down, gamma, up

BRACKET = (-0.76, -0.745)
GELU_MIN = -0.171
GELU_SLOPE = 1.13
HUGE = 2.0**120


def gelu64(x: np.ndarray, approximate: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
        return 0.5 * x * (1.0 + np.tanh(inner))
    return 0.5 * x * (1.0 + erf64(x / math.sqrt(2.0)))


def gelu_error(ax: np.ndarray) -> np.ndarray:
    """Upper bound (float64, generous) of |onnxruntime's float32 Gelu - the real Gelu| at |x| = ax."""
    arg = np.minimum(2.0, (ax + 0.05 * ax**3) * 2.0**-20)
    delta = LIBM_REL + LIBM_ABS + arg
    return (0.5 * ax * delta + 2.0 * ax * gamma(6, U32)) * (1.0 + 2.0**-20) + 2.0**-140


class Gelu(Op):
    op_type = "Gelu"
    foldable = False
    known_attrs = frozenset({"approximate"})

    def unsupported(self):
        if self._mode() not in ("none", "tanh"):
            return f"approximate = {self._mode()!r} is not supported"
        return super().unsupported()

    def _mode(self) -> str:
        return str(self.attr("approximate", "none"))

    def forward(self, x):
        return gelu64(f32(x), self._mode()).astype(np.float32)

    def torch_forward(self, ctx, x):
        return F.gelu(x, approximate=self._mode())

    def interval(self, b):
        lo, hi = b.lo.astype(np.float64), b.hi.astype(np.float64)
        if np.any(np.maximum(np.abs(lo), np.abs(hi)) > HUGE):
            raise self.fail("an input may exceed 2^120 in magnitude (onnxruntime may overflow); cannot certify")
        fl, fh = gelu64(lo, self._mode()), gelu64(hi, self._mode())
        top = np.maximum(fl, fh)
        # inside the bracket the minimum may be interior: GELU_MIN, or (mean value theorem) the
        # smaller endpoint value minus the slope bound times the width, whichever is larger
        near = np.maximum(GELU_MIN, np.minimum(fl, fh) - GELU_SLOPE * (hi - lo) * (1 + 2.0**-40))
        bottom = np.where((lo <= BRACKET[1]) & (hi >= BRACKET[0]), near, np.minimum(fl, fh))
        err = gelu_error(np.maximum(np.abs(lo), np.abs(hi)))
        return Box(down(bottom - err), up(top + err))

    def lipschitz(self, lx=None):
        return scaled([lx], GELU_SLOPE)

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
