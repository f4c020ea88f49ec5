"""Mod(A, B) (numpy broadcasting). fmod = 0 (integers only, ONNX): the remainder with the divisor's
sign (Python's %); fmod = 1: C's fmod, the dividend's sign (exact in IEEE arithmetic, as
``std::fmod``). Integers (shape arithmetic): point boxes only, a zero divisor is a ModelError.
Floats: exact on point boxes; otherwise, with a constant divisor c, |fmod(x, c)| < |c| and
|fmod(x, c)| <= |x| with the sign of x give the box. Lipschitz: ``math.inf`` for a variable input
(the remainder jumps)."""

from __future__ import annotations

import math

import numpy as np
import torch

from verify.ops._elementwise import f32, is_int, same_kind
from verify.ops.base import Box, Op


class Mod(Op):
    op_type = "Mod"
    inf_safe = False
    known_attrs = frozenset({"fmod"})

    def _fmod(self) -> bool:
        return bool(int(self.attr("fmod", 0)))

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if self.is_var(1):
            return "the divisor must be a constant"
        c = self.const(1)
        if c is not None and not is_int(c) and not self._fmod():
            return "fmod = 0 on floats is not valid ONNX"
        return None

    def forward(self, a, b):
        a, b = same_kind([a, b])
        if is_int(a):
            if np.any(b == 0):
                raise self.fail("integer modulo by zero")
            return np.fmod(a, b) if self._fmod() else np.mod(a, b)
        with np.errstate(invalid="ignore"):
            return np.fmod(f32(a), f32(b))

    def torch_forward(self, ctx, a, b):
        return torch.fmod(a, b) if self._fmod() else torch.remainder(a, b)

    def interval(self, a, b):
        if np.array_equal(a.lo, a.hi) and np.array_equal(b.lo, b.hi):
            return Box.point(self.forward(a.lo, b.lo))
        if is_int(a.lo) or is_int(b.lo):
            raise self.fail("integer arithmetic on values that depend on the input")
        c = np.abs(f32(b.lo))
        if np.any(c == 0) or not np.all(np.isfinite(c)):
            raise self.fail("a zero or infinite divisor; cannot certify")
        lo, hi = f32(a.lo), f32(a.hi)
        top = np.minimum(c, np.maximum(hi, 0))  # |r| < |c|, |r| <= |x|, sign of x
        bottom = -np.minimum(c, np.maximum(-lo, 0))
        return Box(bottom.astype(np.float32), top.astype(np.float32))

    def lipschitz(self, la=None, lb=None):
        return 0.0 if not la and not lb else math.inf

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
