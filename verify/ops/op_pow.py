"""Pow(X, Y) with a constant scalar float exponent Y in {1, 2, 0.5}; any other exponent, a variable
exponent or an integer base (constant, or variable such as a Cast of the input) is refused.

* Y = 1: the identity (onnxruntime returns X).
* Y = 2: onnxruntime computes x * x (one correctly rounded product, as the ``std::pow`` fallback of
  an exact square is correctly rounded too); RN is monotone in the exact square, so the float32
  squares of the extreme |x| stepped outward bound both results. The minimum is 0 when the box
  holds 0. Not globally Lipschitz (slope 2|x|): ``math.inf``.
* Y = 0.5: a square root (``std::pow(x, 0.5)`` or ``sqrt``): monotone, bounded with the libm error
  model (verify/ops/_elementwise.py) as ``powf`` need not be correctly rounded; a box reaching below 0
  is refused (NaN). Not Lipschitz near 0: ``math.inf``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from verify.ops._elementwise import f32, is_int, monotone_libm, outward
from verify.ops.base import Box, Op, scaled

EXPONENTS = (1.0, 2.0, 0.5)


class Pow(Op):
    op_type = "Pow"
    foldable = False
    inf_safe = True  # inf * inf = inf, sqrt(inf) = inf; no NaN from ±inf for these exponents

    def _y(self) -> float | None:
        c = self.const(1)
        if c is None or np.asarray(c).size != 1 or is_int(c):
            return None
        return float(np.asarray(c).reshape(-1)[0])

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if not self.is_var(0) and self.const(0) is not None and is_int(self.const(0)):
            return "an integer base is not supported"
        y = self._y()
        if y is None:
            return "the exponent must be a constant float scalar"
        if y not in EXPONENTS:
            return f"exponent {y!r} is not supported (only 1, 2 and 0.5)"
        return None

    def _float_base(self, x) -> np.ndarray:
        """The base as float32; an integer base (e.g. a Cast of the input) is integer arithmetic in
        onnxruntime (x² wraps past 2^63, x^0.5 truncates), which these bounds do not model."""
        if is_int(x):
            raise self.fail("an integer base is not supported")
        return f32(x)

    def forward(self, x, _y=None):
        x = self._float_base(x)
        y = self._y()
        with np.errstate(over="ignore", invalid="ignore"):
            if y == 2.0:
                return x * x
            return x if y == 1.0 else np.sqrt(x)

    def torch_forward(self, ctx, x, _y=None):
        y = self._y()
        return x * x if y == 2.0 else x if y == 1.0 else torch.sqrt(x)

    def interval(self, b, _yb=None):
        y = self._y()
        lo, hi = self._float_base(b.lo), self._float_base(b.hi)
        if y == 1.0:
            return Box(lo, hi)
        if y == 0.5:
            if np.any(lo < 0):
                raise self.fail("the base may be negative (x^0.5 is then NaN); cannot certify")
            return monotone_libm(np.sqrt, b)
        big = np.maximum(np.abs(lo), np.abs(hi))
        small = np.where((lo <= 0) & (hi >= 0), np.float32(0), np.minimum(np.abs(lo), np.abs(hi)))
        with np.errstate(over="ignore"):
            return outward(small * small, big * big)

    def lipschitz(self, lx=None, ly=None):
        if ly:
            return math.inf
        if self._y() == 1.0:
            return scaled([lx], 1.0)
        return 0.0 if not lx else math.inf

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
